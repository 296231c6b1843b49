// GoogleTest helpers: assertions on Status and Result that show the error,
// not just "false", and printers so that a failed EXPECT_EQ on a core type
// shows its fields rather than its bytes.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "src/changes.h"
#include "src/flags.h"
#include "src/mailbox.h"
#include "src/message.h"
#include "src/status.h"

namespace mailfs {

// Found by GoogleTest through argument-dependent lookup.
inline void PrintTo(const Status& status, std::ostream* out) { *out << status.ToString(); }

inline void PrintTo(const FlagSet& flags, std::ostream* out) {
  *out << "{" << flags.ToString() << "}";
}

inline void PrintTo(const MessageInfo& info, std::ostream* out) {
  *out << "{uid " << info.uid << ", flags {" << info.flags.ToString() << "}, date "
       << info.internal_date << ", size " << info.size << ", email " << info.email_id << ", thread "
       << info.thread_id << "}";
}

inline void PrintTo(const MailboxSnapshot& s, std::ostream* out) {
  *out << "{id " << s.mailbox_id << (s.readonly ? ", readonly" : "") << ", uidvalidity "
       << s.uid_validity << ", next_uid " << s.next_uid << ", exists " << s.exists << ", recent "
       << s.recent << ", unseen " << s.unseen << ", first_unseen " << s.first_unseen << "}";
}

inline std::string_view ChangeKindName(Change::Kind kind) {
  switch (kind) {
    case Change::Kind::kMailboxAdded:
      return "MailboxAdded";
    case Change::Kind::kMailboxRemoved:
      return "MailboxRemoved";
    case Change::Kind::kMessagesAdded:
      return "MessagesAdded";
    case Change::Kind::kMessagesExpunged:
      return "MessagesExpunged";
    case Change::Kind::kFlagsChanged:
      return "FlagsChanged";
    case Change::Kind::kSubscriptions:
      return "Subscriptions";
  }
  return "?";
}

inline void PrintTo(const Change& change, std::ostream* out) {
  *out << ChangeKindName(change.kind) << "(" << change.mailbox;
  for (uint32_t uid : change.uids) *out << " " << uid;
  *out << ")";
}

namespace test {

// The bytes of a file the tests ship (tests/data/...), "" if unreadable.
inline std::string ReadTestFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// The words of `text`, split at whitespace ("\\Seen $Work" -> 2 words).
inline std::vector<std::string> SplitSpaces(std::string_view text) {
  std::vector<std::string> words;
  std::istringstream in{std::string(text)};
  std::string word;
  while (in >> word) words.push_back(word);
  return words;
}

inline const Status& StatusOf(const Status& status) { return status; }
template <typename T>
const Status& StatusOf(const Result<T>& result) {
  return result.status();
}

inline ::testing::AssertionResult IsOk(const Status& status) {
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << status.ToString();
}

inline ::testing::AssertionResult HasCode(const Status& status, ErrorCode code) {
  if (status.code() == code) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "expected " << ErrorCodeName(code) << ", got " << status.ToString();
}

}  // namespace test
}  // namespace mailfs

#define MAILFS_ASSERT_OK(expr) ASSERT_TRUE(::mailfs::test::IsOk(::mailfs::test::StatusOf(expr)))
#define MAILFS_EXPECT_OK(expr) EXPECT_TRUE(::mailfs::test::IsOk(::mailfs::test::StatusOf(expr)))
#define MAILFS_EXPECT_CODE(expr, code) \
  EXPECT_TRUE(::mailfs::test::HasCode(::mailfs::test::StatusOf(expr), ::mailfs::ErrorCode::code))
#define MAILFS_ASSERT_CODE(expr, code) \
  ASSERT_TRUE(::mailfs::test::HasCode(::mailfs::test::StatusOf(expr), ::mailfs::ErrorCode::code))
