// DESIGN.md "Consistency": a change made behind the mount's back (here:
// straight through the store, as Dovecot or another mount would) becomes
// visible to ls, stat and read promptly. The kernel is allowed to cache
// names and attributes for a minute, so what makes these pass is the
// driver's notifier thread invalidating exactly what the change feed
// reported.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

constexpr auto kPrompt = std::chrono::seconds(1);

bool Listed(const std::string& dir, const std::string& name) {
  auto names = ListDir(dir);
  return names && std::find(names->begin(), names->end(), name) != names->end();
}

class InvalidationTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    SeedStandardStore(store());
    MountOptions options;
    // Long enough that only an invalidation can explain a prompt update.
    options.entry_timeout_seconds = 3600;
    options.attr_timeout_seconds = 3600;
    options.negative_timeout_seconds = 3600;
    ASSERT_NO_FATAL_FAILURE(MountStore(options));
  }
};

TEST_P(InvalidationTest, MessageAppendedElsewhereAppearsInListing) {
  auto before = ListDir(P("INBOX"));
  ASSERT_TRUE(before);  // the kernel has now seen (and may cache) the listing
  uint32_t uid = StoreAppend(store(), "INBOX", TestMessage("from-elsewhere"));
  ASSERT_NE(uid, 0u);
  std::string name = std::to_string(uid) + ".eml";
  EXPECT_TRUE(Eventually([&] { return Listed(P("INBOX"), name); }, kPrompt))
      << name << " did not appear in the listing";
  auto bytes = ReadFile(P("INBOX/" + name));
  ASSERT_TRUE(bytes);
  EXPECT_EQ(*bytes, StoreBytes(store(), "INBOX", uid));
}

TEST_P(InvalidationTest, MessageExpungedElsewhereDisappears) {
  auto uids = StoreUids(store(), "INBOX");
  ASSERT_FALSE(uids.empty());
  std::string name = std::to_string(uids.front()) + ".eml";
  struct stat st {};
  ASSERT_EQ(Stat(P("INBOX/" + name), &st), 0);  // cached positive entry
  uint32_t doomed[] = {uids.front()};
  ASSERT_TRUE(StoreMailbox(store(), "INBOX")->Delete(doomed).ok());
  EXPECT_TRUE(Eventually([&] { return Stat(P("INBOX/" + name), &st) == ENOENT; }, kPrompt))
      << name << " is still there after it was expunged";
  EXPECT_FALSE(Listed(P("INBOX"), name));
}

TEST_P(InvalidationTest, MailboxAddedAndRemovedElsewhere) {
  ASSERT_TRUE(ListDir(root()));
  ASSERT_TRUE(store().AddMailbox("Elsewhere").ok());
  EXPECT_TRUE(Eventually([&] { return Listed(root(), "Elsewhere"); }, kPrompt));
  struct stat st {};
  ASSERT_EQ(Stat(P("Elsewhere"), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  ASSERT_TRUE(store().DeleteMailbox("Elsewhere").ok());
  EXPECT_TRUE(Eventually([&] { return Stat(P("Elsewhere"), &st) == ENOENT; }, kPrompt))
      << "a deleted mailbox is still visible";
}

TEST_P(InvalidationTest, FlagChangedElsewhereShowsInXattr) {
  auto uids = StoreUids(store(), "INBOX");
  ASSERT_FALSE(uids.empty());
  std::string path = P("INBOX/" + std::to_string(uids.back()) + ".eml");
  ASSERT_TRUE(GetXattr(path, "user.mail.flags"));
  ASSERT_TRUE(
      StoreMailbox(store(), "INBOX")->Update(uids.back(), Flags("\\Answered"), FlagOp::kAdd).ok());
  EXPECT_TRUE(Eventually(
      [&] {
        int err = 0;
        return GetXattr(path, "user.mail.answered", &err).has_value();
      },
      kPrompt));
}

// The kernel may remember that a name does not exist: a mailbox that
// appears elsewhere after a failed lookup of its name must still show.
TEST_P(InvalidationTest, MailboxAddedElsewhereAfterAFailedLookup) {
  struct stat st {};
  ASSERT_EQ(Stat(P("Later"), &st), ENOENT);
  ASSERT_EQ(Stat(P("Later"), &st), ENOENT);  // now from the kernel's cache, if it keeps it
  ASSERT_TRUE(store().AddMailbox("Later").ok());
  EXPECT_TRUE(Eventually([&] { return Stat(P("Later"), &st) == 0; }, kPrompt))
      << "a mailbox added after a failed lookup of its name stays invisible";
}

// A canonical name can begin to exist without the kernel seeing that name
// (an append gives the next UID): its absence is never cached, so the
// message written through the mount is there the moment close() returns.
TEST_P(InvalidationTest, CanonicalNameExistsRightAfterTheAppendThatMadeIt) {
  auto snapshot = StoreMailbox(store(), "INBOX")->Snapshot();
  ASSERT_TRUE(snapshot.ok());
  std::string next = P("INBOX/" + std::to_string(snapshot->next_uid) + ".eml");
  struct stat st {};
  ASSERT_EQ(Stat(next, &st), ENOENT);
  ASSERT_EQ(Stat(P("INBOX/new.eml"), &st), ENOENT);
  auto written = WriteFile(P("INBOX/new.eml"), TestMessage("the next uid"));
  ASSERT_TRUE(written.ok()) << written.Describe();
  EXPECT_EQ(Stat(next, &st), 0) << next << " is missing right after the append";
  EXPECT_EQ(Stat(P("INBOX/new.eml"), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), TestMessage("the next uid").size());
}

// Messages delivered by another session are \Recent in this mount even
// while this mount appends its own (whose reports it does not claim for).
TEST_P(InvalidationTest, DeliveredElsewhereIsRecentWhileThisMountAppends) {
  ASSERT_TRUE(ListDir(P("INBOX")));  // the mount has shown INBOX: it claims from now on
  for (int i = 0; i < 3; ++i) {
    auto written = WriteFile(P("INBOX/own" + std::to_string(i) + ".eml"),
                             TestMessage("own " + std::to_string(i)));
    ASSERT_TRUE(written.ok()) << written.Describe();
  }
  uint32_t delivered = StoreAppend(store(), "INBOX", TestMessage("delivered"), "", 1'650'000'000,
                                   /*recent=*/true);
  ASSERT_NE(delivered, 0u);
  auto written = WriteFile(P("INBOX/own-last.eml"), TestMessage("own last"));
  ASSERT_TRUE(written.ok()) << written.Describe();
  std::string path = P("INBOX/" + std::to_string(delivered) + ".eml");
  EXPECT_TRUE(Eventually([&] { return GetXattr(path, "user.mail.recent").has_value(); }, kPrompt))
      << "a message delivered elsewhere is not \\Recent in the mount";
  EXPECT_TRUE(GetXattr(P("INBOX/own-last.eml"), "user.mail.recent"));
}

INSTANTIATE_TEST_SUITE_P(Backends, InvalidationTest, ::testing::ValuesIn(MountBackends()),
                         MountBackendName);

}  // namespace
}  // namespace mailfs::test
