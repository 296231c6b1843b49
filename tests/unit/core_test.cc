// Unit tests for the core model in src/: flags, mailbox names, errors, the
// change log and message helpers.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "src/changes.h"
#include "src/flags.h"
#include "src/mailbox_name.h"
#include "src/message.h"
#include "src/status.h"
#include "tests/support/test_util.h"

namespace mailfs {
namespace {

using namespace std::chrono_literals;

FlagSet MustParse(std::string_view text) {
  auto flags = FlagSet::Parse(text);
  EXPECT_TRUE(flags.ok()) << text << ": " << flags.status().ToString();
  return flags.ok() ? *flags : FlagSet();
}

// --- flags -----------------------------------------------------------------

TEST(FlagSetTest, ParsesSystemFlagsCaseInsensitively) {
  FlagSet flags = MustParse("\\seen \\ANSWERED \\fLaGgEd \\Deleted \\draft");
  for (SystemFlag flag : kAllSystemFlags) EXPECT_TRUE(flags.Has(flag)) << SystemFlagName(flag);
  EXPECT_TRUE(flags.keywords().empty());
  EXPECT_EQ(flags.ToString(), "\\Answered \\Deleted \\Draft \\Flagged \\Seen");
}

TEST(FlagSetTest, ParsesKeywordsExactlyAndSorted) {
  FlagSet flags = MustParse("  $Junk   Work $junk ");
  EXPECT_EQ(flags.keywords(), (std::vector<std::string>{"$Junk", "$junk", "Work"}));
  EXPECT_TRUE(flags.HasKeyword("$Junk"));
  EXPECT_FALSE(flags.HasKeyword("$JUNK"));
  EXPECT_EQ(flags.system_bits(), 0);
}

TEST(FlagSetTest, EmptyTextIsTheEmptySet) {
  EXPECT_TRUE(MustParse("").empty());
  EXPECT_TRUE(MustParse("   ").empty());
  EXPECT_EQ(FlagSet().ToString(), "");
}

TEST(FlagSetTest, RejectsRecentUnknownSystemFlagsAndBadKeywords) {
  for (std::string_view bad :
       {"\\Recent", "\\recent", "\\Foo", "\\", "\\Seen \\Bogus", "a(b", "a)b", "{x", "100%",
        "wild*", "\"q\"", "back\\slash", "a]", "caf\xc3\xa9", "tab\tx"}) {
    auto flags = FlagSet::Parse(bad);
    MAILFS_EXPECT_CODE(flags, kInvalidArgument) << "'" << bad << "'";
  }
}

TEST(FlagSetTest, ToStringOrdersSystemFlagsThenKeywordsAndRoundTrips) {
  FlagSet flags;
  flags.AddKeyword("zeta");
  flags.Add(SystemFlag::kSeen);
  flags.AddKeyword("$Alpha");
  flags.Add(SystemFlag::kAnswered);
  flags.Add(SystemFlag::kDraft);
  EXPECT_EQ(flags.ToString(), "\\Answered \\Draft \\Seen $Alpha zeta");
  EXPECT_EQ(MustParse(flags.ToString()), flags);
  EXPECT_EQ(MustParse("zeta \\Seen $Alpha \\Draft \\Answered"), flags);
}

TEST(FlagSetTest, AddAndRemove) {
  FlagSet flags;
  flags.Add(SystemFlag::kFlagged);
  flags.AddKeyword("$Work");
  flags.AddKeyword("$Work");
  EXPECT_EQ(flags.keywords().size(), 1u);
  flags.Remove(SystemFlag::kFlagged);
  flags.Remove(SystemFlag::kSeen);  // absent: no effect
  flags.RemoveKeyword("$Work");
  flags.RemoveKeyword("$Other");
  EXPECT_TRUE(flags.empty());
}

TEST(FlagSetTest, ApplyAddsDeletesAndReplaces) {
  FlagSet flags = MustParse("\\Seen $A");
  flags.Apply(FlagOp::kAdd, MustParse("\\Flagged $B $A"));
  EXPECT_EQ(flags, MustParse("\\Seen \\Flagged $A $B"));
  flags.Apply(FlagOp::kDelete, MustParse("\\Seen $A $C \\Draft"));
  EXPECT_EQ(flags, MustParse("\\Flagged $B"));
  flags.Apply(FlagOp::kReplace, MustParse("\\Deleted $Z"));
  EXPECT_EQ(flags, MustParse("\\Deleted $Z"));
  flags.Apply(FlagOp::kReplace, FlagSet());
  EXPECT_TRUE(flags.empty());
}

TEST(FlagsTest, IsValidKeyword) {
  for (std::string_view good : {"$Junk", "NonJunk", "a", "x-y.z", "$MDNSent", "[brackets", "a+b"}) {
    EXPECT_TRUE(IsValidKeyword(good)) << good;
  }
  for (std::string_view bad : {"", "\\Seen", "a b", "a(", "a)", "a{", "a%", "a*", "a\"", "a\\",
                               "a]", "\x7f", "\x01", "\xc3\xa9"}) {
    EXPECT_FALSE(IsValidKeyword(bad)) << bad;
  }
}

TEST(FlagsTest, SystemFlagNames) {
  EXPECT_EQ(SystemFlagName(SystemFlag::kSeen), "\\Seen");
  EXPECT_EQ(SystemFlagName(SystemFlag::kAnswered), "\\Answered");
  EXPECT_EQ(SystemFlagName(SystemFlag::kFlagged), "\\Flagged");
  EXPECT_EQ(SystemFlagName(SystemFlag::kDeleted), "\\Deleted");
  EXPECT_EQ(SystemFlagName(SystemFlag::kDraft), "\\Draft");
  EXPECT_EQ(SystemFlagAttributeName(SystemFlag::kSeen), "seen");
  EXPECT_EQ(SystemFlagAttributeName(SystemFlag::kAnswered), "answered");
  EXPECT_EQ(SystemFlagAttributeName(SystemFlag::kFlagged), "flagged");
  EXPECT_EQ(SystemFlagAttributeName(SystemFlag::kDeleted), "deleted");
  EXPECT_EQ(SystemFlagAttributeName(SystemFlag::kDraft), "draft");
}

// --- mailbox names -------------------------------------------------------------

std::string MustNormalize(std::string_view name) {
  auto normalized = NormalizeMailboxName(name);
  EXPECT_TRUE(normalized.ok()) << name << ": " << normalized.status().ToString();
  return normalized.ok() ? *normalized : "<invalid>";
}

TEST(MailboxNameTest, InboxIsNormalizedInTheFirstLevelOnly) {
  EXPECT_EQ(MustNormalize("inbox"), "INBOX");
  EXPECT_EQ(MustNormalize("InBoX"), "INBOX");
  EXPECT_EQ(MustNormalize("inbox/x"), "INBOX/x");
  EXPECT_EQ(MustNormalize("Inbox/inbox"), "INBOX/inbox");
  EXPECT_EQ(MustNormalize("a/inbox"), "a/inbox");
  EXPECT_EQ(MustNormalize("inboxes"), "inboxes");
  EXPECT_EQ(MustNormalize("inbo"), "inbo");
  EXPECT_EQ(MustNormalize("Archive/2024"), "Archive/2024");
  EXPECT_EQ(MustNormalize("Grüße/日本"), "Grüße/日本");
  EXPECT_EQ(MustNormalize("a./b"), "a./b");  // only a leading dot is reserved
}

TEST(MailboxNameTest, RejectsReservedEmptyAndMalformedNames) {
  for (std::string_view bad : {"",
                               "/",
                               "/a",
                               "a/",
                               "a//b",
                               ".hidden",
                               "a/.b",
                               ".",
                               "a/..",
                               "\xff",
                               "\xc3",
                               "a\xc3(b",
                               "\xc0\xaf",
                               "\xe0\x80\xaf",
                               "\xed\xa0\x80",
                               "\xf4\x90\x80\x80",
                               "a\tb",
                               "a\nb",
                               "\x01",
                               "a\x7f"}) {
    MAILFS_EXPECT_CODE(NormalizeMailboxName(bad), kInvalidName)
        << "'" << bad << "' (" << bad.size() << " bytes)";
  }
  // A NUL inside the name is a control character too.
  MAILFS_EXPECT_CODE(NormalizeMailboxName(std::string_view("a\0b", 3)), kInvalidName);
}

TEST(MailboxNameTest, IsInbox) {
  EXPECT_TRUE(IsInbox("INBOX"));
  EXPECT_FALSE(IsInbox("inbox"));  // takes a normalized name
  EXPECT_FALSE(IsInbox("INBOX/x"));
}

TEST(MailboxNameTest, ParentAndLeaf) {
  EXPECT_EQ(ParentName("A/B/C"), "A/B");
  EXPECT_EQ(ParentName("A"), "");
  EXPECT_EQ(LeafName("A/B/C"), "C");
  EXPECT_EQ(LeafName("A"), "A");
}

TEST(MailboxNameTest, IsSameOrBelow) {
  EXPECT_TRUE(IsSameOrBelow("A/B", "A/B"));
  EXPECT_TRUE(IsSameOrBelow("A/B/C", "A/B"));
  EXPECT_TRUE(IsSameOrBelow("A/B/C", "A"));
  EXPECT_FALSE(IsSameOrBelow("A/BC", "A/B"));
  EXPECT_FALSE(IsSameOrBelow("A", "A/B"));
  EXPECT_FALSE(IsSameOrBelow("B/A", "A"));
}

TEST(MailboxNameTest, JoinMailboxName) {
  EXPECT_EQ(JoinMailboxName("", "x"), "x");
  EXPECT_EQ(JoinMailboxName("A", "B"), "A/B");
  EXPECT_EQ(JoinMailboxName("A/B", "C"), "A/B/C");
  EXPECT_EQ(JoinMailboxName(ParentName("A/B/C"), LeafName("A/B/C")), "A/B/C");
}

// --- errors ------------------------------------------------------------------

TEST(StatusTest, ToErrnoMapsEveryCode) {
  struct Case {
    ErrorCode code;
    int errno_value;
  };
  const Case cases[] = {
      {ErrorCode::kOk, 0},
      {ErrorCode::kNotFound, ENOENT},
      {ErrorCode::kExists, EEXIST},
      {ErrorCode::kExpunged, ENOENT},
      {ErrorCode::kInvalidName, EINVAL},
      {ErrorCode::kInvalidArgument, EINVAL},
      {ErrorCode::kNotEmpty, ENOTEMPTY},
      {ErrorCode::kReadOnly, EROFS},
      {ErrorCode::kNotPermitted, EPERM},
      {ErrorCode::kUnavailable, EIO},
      {ErrorCode::kIo, EIO},
      {ErrorCode::kCorrupt, EIO},
      {ErrorCode::kNotSupported, ENOTSUP},
      {ErrorCode::kNoSpace, ENOSPC},
  };
  for (const Case& c : cases) {
    Status status =
        c.code == ErrorCode::kOk ? Status::Ok() : Status::Error(c.code, ErrorScope::kNone, "test");
    EXPECT_EQ(ToErrno(status), c.errno_value) << ErrorCodeName(c.code);
    EXPECT_NE(ErrorCodeName(c.code), "unknown error");
  }
}

TEST(StatusTest, HelpersCarryCodeScopeAndDetail) {
  Status status = Status::NotFound(ErrorScope::kMailbox, "Archive/2024");
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.code(), ErrorCode::kNotFound);
  EXPECT_EQ(status.scope(), ErrorScope::kMailbox);
  EXPECT_EQ(status.detail(), "Archive/2024");
  EXPECT_EQ(status.ToString(), "not found (mailbox): Archive/2024");
  EXPECT_EQ(Status::Exists("x").code(), ErrorCode::kExists);
  EXPECT_EQ(Status::InvalidName("x").code(), ErrorCode::kInvalidName);
  EXPECT_EQ(Status::InvalidArgument("x").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(Status::ReadOnly("x").code(), ErrorCode::kReadOnly);
  EXPECT_EQ(Status::Io("x").scope(), ErrorScope::kStore);
  EXPECT_TRUE(Status::Ok().ok());
  EXPECT_EQ(Status::Ok().ToString(), "ok");
}

TEST(StatusTest, ResultHoldsAValueOrAnError) {
  Result<int> value = 42;
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, 42);
  EXPECT_TRUE(value.status().ok());
  Result<int> error = Status::Io("disk on fire");
  EXPECT_FALSE(error.ok());
  EXPECT_EQ(error.status().code(), ErrorCode::kIo);
}

// --- the change log --------------------------------------------------------------

Change Added(std::string mailbox, uint32_t uid) {
  return Change{Change::Kind::kMessagesAdded, std::move(mailbox), {uid}};
}

TEST(ChangeLogTest, ReturnsChangesPostedAfterTheCursorInOrder) {
  ChangeLog log;
  log.Post(Added("INBOX", 1));
  uint64_t cursor = log.Cursor();
  log.Post(Added("INBOX", 2));
  log.Post(Change{Change::Kind::kMailboxAdded, "Archive", {}});
  ChangeBatch batch = log.WaitSince(&cursor, 1s);
  EXPECT_FALSE(batch.overflowed);
  EXPECT_FALSE(batch.stopped);
  EXPECT_EQ(batch.changes,
            (std::vector<Change>{Added("INBOX", 2), {Change::Kind::kMailboxAdded, "Archive", {}}}));
  EXPECT_EQ(cursor, log.Cursor());
}

TEST(ChangeLogTest, TimesOutWithAnEmptyBatch) {
  ChangeLog log;
  uint64_t cursor = log.Cursor();
  auto start = std::chrono::steady_clock::now();
  ChangeBatch batch = log.WaitSince(&cursor, 50ms);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 45ms);
  EXPECT_TRUE(batch.changes.empty());
  EXPECT_FALSE(batch.overflowed);
  EXPECT_FALSE(batch.stopped);
  EXPECT_EQ(cursor, log.Cursor());
}

TEST(ChangeLogTest, WakesAWaiterWhenAChangeIsPosted) {
  ChangeLog log;
  uint64_t cursor = log.Cursor();
  ChangeBatch batch;
  std::thread waiter([&] { batch = log.WaitSince(&cursor, 30s); });
  std::this_thread::sleep_for(50ms);
  auto start = std::chrono::steady_clock::now();
  log.Post(Added("INBOX", 7));
  waiter.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_EQ(batch.changes, std::vector<Change>{Added("INBOX", 7)});
}

TEST(ChangeLogTest, ReportsOverflowWhenTheCursorFellBehind) {
  ChangeLog log(/*capacity=*/2);
  uint64_t old_cursor = log.Cursor();
  for (uint32_t uid = 1; uid <= 3; ++uid) log.Post(Added("INBOX", uid));
  uint64_t recent_cursor = old_cursor + 1;  // still within the kept window

  ChangeBatch batch = log.WaitSince(&old_cursor, 1s);
  EXPECT_TRUE(batch.overflowed);
  EXPECT_EQ(old_cursor, log.Cursor());
  batch = log.WaitSince(&old_cursor, 10ms);  // caught up again
  EXPECT_FALSE(batch.overflowed);
  EXPECT_TRUE(batch.changes.empty());

  batch = log.WaitSince(&recent_cursor, 1s);
  EXPECT_FALSE(batch.overflowed);
  EXPECT_EQ(batch.changes, (std::vector<Change>{Added("INBOX", 2), Added("INBOX", 3)}));
}

TEST(ChangeLogTest, StopWakesWaitersAndLaterWaitsReturnAtOnce) {
  ChangeLog log;
  std::atomic<int> stopped{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&] {
      uint64_t cursor = log.Cursor();
      if (log.WaitSince(&cursor, 30s).stopped) ++stopped;
    });
  }
  std::this_thread::sleep_for(50ms);
  auto start = std::chrono::steady_clock::now();
  log.Stop();
  for (std::thread& waiter : waiters) waiter.join();
  EXPECT_EQ(stopped.load(), 2);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  uint64_t cursor = log.Cursor();
  start = std::chrono::steady_clock::now();
  EXPECT_TRUE(log.WaitSince(&cursor, 30s).stopped);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

// --- messages --------------------------------------------------------------------

TEST(MessageTest, LooksLikeMessage) {
  EXPECT_TRUE(LooksLikeMessage("From: a@example.org\r\n"));
  EXPECT_TRUE(LooksLikeMessage("X-Custom:no-space"));
  EXPECT_TRUE(LooksLikeMessage("Return-Path: <a@b>\n"));
  EXPECT_FALSE(LooksLikeMessage(""));
  EXPECT_FALSE(LooksLikeMessage(": no name"));
  EXPECT_FALSE(LooksLikeMessage("From a@example.org Thu Jan  1 00:00:00 2026"));  // mbox
  EXPECT_FALSE(LooksLikeMessage("Subject"));
  EXPECT_FALSE(LooksLikeMessage("Sub ject: x"));
  EXPECT_FALSE(LooksLikeMessage("\r\nFrom: x"));
  EXPECT_FALSE(
      LooksLikeMessage("Gr\xc3\xbc\xc3\x9f"
                       "e: x"));
  EXPECT_FALSE(LooksLikeMessage("hello world\n"));
}

TEST(MessageTest, HeaderValueUnfoldsAndIgnoresCase) {
  const std::string message =
      "Message-ID: <one@example.org>\r\n"
      "subject: first\r\n"
      " line two\r\n"
      "\tline three\r\n"
      "References: <a@x>\r\n"
      "  <b@x>\r\n"
      "Subject: second\r\n"
      "X-Empty:\r\n"
      "Subjectivity: no\r\n"
      "\r\n"
      "In-Reply-To: <body@example.org>\r\n";
  EXPECT_EQ(HeaderValue(message, "message-id"), "<one@example.org>");
  EXPECT_EQ(HeaderValue(message, "MESSAGE-ID"), "<one@example.org>");
  // The first field wins; folds are joined with their whitespace kept.
  EXPECT_EQ(HeaderValue(message, "Subject"), "first line two\tline three");
  EXPECT_EQ(HeaderValue(message, "References"), "<a@x>  <b@x>");
  EXPECT_EQ(HeaderValue(message, "X-Empty"), "");
  EXPECT_EQ(HeaderValue(message, "Subjectivity"), "no");
  // The blank line ends the header section.
  EXPECT_EQ(HeaderValue(message, "In-Reply-To"), "");
  EXPECT_EQ(HeaderValue(message, "Missing"), "");
}

TEST(MessageTest, HeaderValueWithLfLineEndsAndNoBody) {
  EXPECT_EQ(HeaderValue("A: 1\nB: 2\n 3", "b"), "2 3");
  EXPECT_EQ(HeaderValue("A: 1", "A"), "1");
  EXPECT_EQ(HeaderValue("", "A"), "");
}

TEST(MessageTest, StringContentReadsAtOffsets) {
  StringContent content(std::string("0123456789"));
  EXPECT_EQ(content.size(), 10u);
  char buffer[4];
  auto n = content.ReadAt(3, buffer);
  MAILFS_ASSERT_OK(n);
  EXPECT_EQ(std::string(buffer, *n), "3456");
  n = content.ReadAt(8, buffer);
  MAILFS_ASSERT_OK(n);
  EXPECT_EQ(std::string(buffer, *n), "89");
  n = content.ReadAt(10, buffer);
  MAILFS_ASSERT_OK(n);
  EXPECT_EQ(*n, 0u);
  n = content.ReadAt(1000, buffer);
  MAILFS_ASSERT_OK(n);
  EXPECT_EQ(*n, 0u);
  EXPECT_EQ(content.fd(), -1);
  auto all = ReadAll(content);
  MAILFS_ASSERT_OK(all);
  EXPECT_EQ(*all, "0123456789");
}

TEST(MessageTest, StringContentSharesItsBytes) {
  auto bytes = std::make_shared<const std::string>("shared");
  StringContent content(bytes);
  EXPECT_EQ(content.bytes().get(), bytes.get());
}

// A temporary file holding `bytes`, removed with the object.
class TempFile {
 public:
  explicit TempFile(const std::string& bytes) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr ? dir : "/tmp") + "/mailfs-core-test-XXXXXX";
    fd_ = mkstemp(path_.data());
    if (fd_ >= 0 && write(fd_, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~TempFile() {
    if (fd_ >= 0) close(fd_);
    unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  int fd() const { return fd_; }

 private:
  std::string path_;
  int fd_ = -1;
};

TEST(MessageTest, FdContentReadsAtOffsets) {
  std::string bytes;
  for (int i = 0; i < 10000; ++i) bytes += static_cast<char>('a' + i % 26);
  TempFile file(bytes);
  ASSERT_GE(file.fd(), 0);
  FdContent content(file.fd(), bytes.size());
  EXPECT_EQ(content.size(), bytes.size());
  EXPECT_EQ(content.fd(), file.fd());
  std::string buffer(100, '#');
  auto n = content.ReadAt(5000, buffer);
  MAILFS_ASSERT_OK(n);
  EXPECT_EQ(buffer.substr(0, *n), bytes.substr(5000, 100));
  n = content.ReadAt(bytes.size() - 30, buffer);
  MAILFS_ASSERT_OK(n);
  EXPECT_EQ(buffer.substr(0, *n), bytes.substr(bytes.size() - 30));
  n = content.ReadAt(bytes.size(), buffer);
  MAILFS_ASSERT_OK(n);
  EXPECT_EQ(*n, 0u);
  auto all = ReadAll(content);
  MAILFS_ASSERT_OK(all);
  EXPECT_EQ(*all, bytes);
}

TEST(MessageTest, FdContentNeverReadsPastItsSize) {
  // The reader stands for exactly `size` bytes even if the file has more
  // (a file still being appended to, a prefix of a spool file).
  TempFile file("0123456789");
  ASSERT_GE(file.fd(), 0);
  FdContent content(file.fd(), 6);
  std::string buffer(10, '#');
  auto n = content.ReadAt(0, buffer);
  MAILFS_ASSERT_OK(n);
  EXPECT_EQ(buffer.substr(0, *n), "012345");
  n = content.ReadAt(4, buffer);
  MAILFS_ASSERT_OK(n);
  EXPECT_EQ(buffer.substr(0, *n), "45");
  n = content.ReadAt(6, buffer);
  MAILFS_ASSERT_OK(n);
  EXPECT_EQ(*n, 0u);
}

TEST(MessageTest, FdContentReportsReadErrors) {
  FdContent content(-1, 10);
  char buffer[4];
  MAILFS_EXPECT_CODE(content.ReadAt(0, buffer), kIo);
  MAILFS_EXPECT_CODE(ReadAll(content), kIo);
}

TEST(MessageTest, ReadAllReportsContentShorterThanItsSize) {
  TempFile file("abc");
  ASSERT_GE(file.fd(), 0);
  FdContent content(file.fd(), 10);  // claims more than the file holds
  MAILFS_EXPECT_CODE(ReadAll(content), kIo);
}

}  // namespace
}  // namespace mailfs
