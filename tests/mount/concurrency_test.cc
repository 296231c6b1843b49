// Many writers appending into one mailbox through the mount while readers
// list and read it: every acknowledged message is stored exactly once, with
// unique increasing UIDs and its exact bytes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

constexpr int kWriters = 8;
constexpr int kMessagesPerWriter = 500;

// What writer `w` writes as its message `i`: the same text the shell loop
// below prints (LF line ends; printf's %d).
std::string WrittenMessage(int w, int i) {
  std::string tag = "w" + std::to_string(w) + "-m" + std::to_string(i);
  return "From: writer" + std::to_string(w) + "@example.org\nSubject: concurrent " + tag +
         "\nMessage-ID: <" + tag + "@mailfs.test>\n\nbody marker " + tag + "\n";
}

class ConcurrencyTest : public MountTest {};

TEST_P(ConcurrencyTest, ParallelAppendsWhileListingAndReading) {
  SetTestTimeout(std::chrono::seconds(240));
  ASSERT_TRUE(store().AddMailbox("Load").ok());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  std::string stop = mount_->scratch() + "/stop";

  // Writers: one file per message, made outside the mount by the shell and
  // copied in by cp (one open, write, close on the mount; a failed close
  // fails the loop). Shell redirection straight into the mount is covered
  // by WriteTest.ShellRedirectionAppends.
  std::vector<std::unique_ptr<ShellProcess>> writers;
  for (int w = 0; w < kWriters; ++w) {
    std::string local = ShellQuote(mount_->scratch() + "/writer" + std::to_string(w));
    std::string script = "i=0; while [ $i -lt " + std::to_string(kMessagesPerWriter) +
                         " ]; do "
                         "printf 'From: writer%d@example.org\\nSubject: concurrent w%d-m%d\\n"
                         "Message-ID: <w%d-m%d@mailfs.test>\\n\\nbody marker w%d-m%d\\n' " +
                         std::to_string(w) + " " + std::to_string(w) + " $i " + std::to_string(w) +
                         " $i " + std::to_string(w) + " $i > " + local + " && cp " + local +
                         " Load/w" + std::to_string(w) +
                         "-m$i.eml || { echo \"write $i failed\" >&2; exit 1; }; i=$((i+1)); done";
    writers.push_back(std::make_unique<ShellProcess>(script, root()));
    ASSERT_TRUE(writers.back()->started()) << writers.back()->start_error();
  }
  // Readers: ls -l and cat of everything listed, until told to stop. Any
  // failure ends the loop with an error.
  std::vector<std::unique_ptr<ShellProcess>> readers;
  for (int r = 0; r < 2; ++r) {
    std::string script = "n=0; while [ ! -e " + ShellQuote(stop) +
                         " ]; do "
                         "ls -l Load > /dev/null || { echo 'ls failed' >&2; exit 1; }; "
                         "set -- Load/*.eml; if [ -e \"$1\" ]; then "
                         "cat \"$@\" > /dev/null || { echo 'cat failed' >&2; exit 1; }; fi; "
                         "n=$((n+1)); done; echo $n";
    readers.push_back(std::make_unique<ShellProcess>(script, root()));
    ASSERT_TRUE(readers.back()->started()) << readers.back()->start_error();
  }

  auto start = std::chrono::steady_clock::now();
  for (int w = 0; w < kWriters; ++w) {
    auto r = writers[w]->Wait(std::chrono::seconds(150));
    EXPECT_TRUE(r.ok()) << "writer " << w << ": " << r.Describe();
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  WriteLocalFile(stop, "");
  for (int r = 0; r < 2; ++r) {
    auto result = readers[r]->Wait(std::chrono::seconds(60));
    EXPECT_TRUE(result.ok()) << "reader " << r << ": " << result.Describe();
    EXPECT_FALSE(result.out.empty() || result.out == "0\n")
        << "reader " << r << " never completed a pass";
  }
  RecordProperty("append_seconds", std::to_string(std::chrono::duration<double>(elapsed).count()));
  EXPECT_LT(elapsed, std::chrono::seconds(60)) << "4000 appends took too long";

  // The store: exactly the written messages, once each.
  std::map<uint64_t, std::string> expected;  // hash -> tag
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < kMessagesPerWriter; ++i) {
      expected[ContentHash(WrittenMessage(w, i))] =
          "w" + std::to_string(w) + "-m" + std::to_string(i);
    }
  }
  ASSERT_EQ(expected.size(), static_cast<size_t>(kWriters * kMessagesPerWriter));
  auto messages = StoreMessages(store(), "Load");
  EXPECT_EQ(messages.size(), expected.size());
  std::set<uint64_t> found;
  uint32_t last_uid = 0;
  int garbled = 0, duplicated = 0;
  for (const auto& info : messages) {
    EXPECT_GT(info.uid, last_uid) << "UIDs not unique and increasing";
    last_uid = info.uid;
    std::string bytes = StoreBytes(store(), "Load", info.uid);
    uint64_t hash = ContentHash(bytes);
    if (!expected.count(hash)) {
      if (++garbled <= 5)
        ADD_FAILURE() << "UID " << info.uid << " holds unwritten bytes:\n" << bytes;
      continue;
    }
    if (!found.insert(hash).second && ++duplicated <= 5) {
      ADD_FAILURE() << expected[hash] << " stored twice";
    }
  }
  EXPECT_EQ(garbled, 0);
  EXPECT_EQ(duplicated, 0);
  int missing = 0;
  for (const auto& [hash, tag] : expected) {
    if (!found.count(hash) && ++missing <= 5) ADD_FAILURE() << tag << " is missing";
  }
  EXPECT_EQ(missing, 0);

  // The mount lists the same UIDs, in order.
  auto listed = ListDir(P("Load"));
  ASSERT_TRUE(listed);
  std::vector<std::string> names;
  for (const auto& info : messages) names.push_back(std::to_string(info.uid) + ".eml");
  EXPECT_EQ(*listed, names);
}

INSTANTIATE_TEST_SUITE_P(Backends, ConcurrencyTest, ::testing::ValuesIn(MountBackends()),
                         MountBackendName);

}  // namespace
}  // namespace mailfs::test
