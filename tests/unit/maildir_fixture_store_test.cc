// The Maildir backend on the real stores of tests/data/fixtures/ (written by
// Dovecot in both layouts and by pymap), without a mount: every mailbox,
// UID, flag, keyword, size, internal date, sha256 and subscription the
// MailboxSet reports, against the fixture's expected.json (see
// tests/support/fixture_expectations.h). The mount test of the same
// fixtures is tests/mount/maildir_fixture_test.cc; when both fail, look
// here first.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "backends/maildir/maildir_backend.h"
#include "backends/registry.h"
#include "tests/support/fixture_expectations.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/test_util.h"

namespace mailfs::test {
namespace {

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : " ") + s;
  return out;
}

// expected.json's flag names as a FlagSet (so order and case do not matter).
FlagSet ExpectedFlags(const FixtureMessage& m) {
  Result<FlagSet> flags = FlagSet::Parse(Join(m.flags));
  EXPECT_TRUE(flags.ok()) << "expected.json flags '" << Join(m.flags)
                          << "': " << flags.status().ToString();
  return flags.ok() ? *flags : FlagSet();
}

std::vector<std::string> SelectableNames(const StoreFixture& fx) {
  std::vector<std::string> names;
  for (const FixtureMailbox& mb : fx.mailboxes) {
    if (mb.selectable) names.push_back(mb.name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

class MaildirFixtureStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>();
    ASSERT_FALSE(dir_->path().empty());
    fixture_ = ExtractStoreFixture(GetParam(), dir_->path());
    ASSERT_TRUE(fixture_.has_value()) << "fixture " << GetParam() << " cannot be used";
  }

  // Checks the whole store against the fixture.
  void CheckStore(MailboxSet& store) {
    const StoreFixture& fx = *fixture_;
    const std::string& f = fx.name;

    Result<std::vector<std::string>> listed = store.ListMailboxes();
    MAILFS_ASSERT_OK(listed);
    EXPECT_EQ(*listed, SelectableNames(fx)) << f << ": ListMailboxes";

    Result<std::vector<std::string>> subscribed = store.ListSubscribed();
    MAILFS_EXPECT_OK(subscribed);
    if (subscribed.ok()) {
      EXPECT_EQ(*subscribed, fx.subscriptions) << f << ": ListSubscribed";
    }

    for (const FixtureMailbox& mb : fx.mailboxes) {
      SCOPED_TRACE(f + ": mailbox " + mb.name);
      if (!mb.selectable) {
        MAILFS_EXPECT_CODE(store.GetMailbox(mb.name), kNotFound);
        continue;
      }
      Result<std::shared_ptr<MailboxData>> got = store.GetMailbox(mb.name);
      MAILFS_EXPECT_OK(got);
      if (!got.ok()) continue;
      MailboxData& box = **got;
      EXPECT_EQ(box.uid_validity(), mb.uid_validity) << "uid_validity";

      Result<MailboxSnapshot> snap = box.Snapshot();
      MAILFS_EXPECT_OK(snap);
      if (snap.ok()) {
        EXPECT_EQ(snap->uid_validity, mb.uid_validity) << "Snapshot uid_validity";
        EXPECT_EQ(snap->next_uid, mb.uid_next) << "Snapshot next_uid";
        EXPECT_EQ(snap->exists, mb.messages.size()) << "Snapshot exists";
        EXPECT_EQ(snap->unseen, mb.unseen) << "Snapshot unseen";
      }

      Result<std::vector<MessageInfo>> found = box.Find(1, std::numeric_limits<uint32_t>::max());
      MAILFS_EXPECT_OK(found);
      if (!found.ok()) continue;
      std::vector<uint32_t> want_uids, got_uids;
      for (const FixtureMessage& m : mb.messages) want_uids.push_back(m.uid);
      for (const MessageInfo& info : *found) got_uids.push_back(info.uid);
      EXPECT_EQ(got_uids, want_uids) << "Find: the UIDs";

      for (const FixtureMessage& m : mb.messages) {
        SCOPED_TRACE("uid " + std::to_string(m.uid));
        auto it = std::find_if(found->begin(), found->end(),
                               [&](const MessageInfo& i) { return i.uid == m.uid; });
        if (it == found->end()) continue;  // reported above
        const MessageInfo& info = *it;
        EXPECT_EQ(info.flags.ToString(), ExpectedFlags(m).ToString()) << "flags";
        EXPECT_EQ(info.internal_date, m.internal_date) << "internal date";
        EXPECT_EQ(info.size, m.size) << "size";

        Result<MessageInfo> single = box.Get(m.uid);
        MAILFS_EXPECT_OK(single);
        if (single.ok()) {
          EXPECT_EQ(*single, info) << "Get differs from Find";
        }

        Result<std::shared_ptr<const ContentReader>> reader = box.Open(m.uid);
        MAILFS_EXPECT_OK(reader);
        if (!reader.ok()) continue;
        EXPECT_EQ((*reader)->size(), m.size) << "Open: size";
        Result<std::string> bytes = ReadAll(**reader);
        MAILFS_EXPECT_OK(bytes);
        if (!bytes.ok()) continue;
        EXPECT_EQ(bytes->size(), m.size) << "Open: bytes read";
        EXPECT_EQ(Sha256Hex(*bytes), m.sha256) << "Open: sha256";
      }
    }
  }

  std::unique_ptr<TempDir> dir_;  // outlives the store opened on it
  std::optional<StoreFixture> fixture_;
};

TEST(Sha256, KnownAnswers) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_EQ(Sha256Hex("\n"), "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b");
}

TEST_P(MaildirFixtureStoreTest, OpenMaildirMailboxSetShowsExpected) {
  MaildirOptions options;
  options.root = fixture_->root;
  options.layout = fixture_->layout;
  options.create = false;
  Result<std::shared_ptr<MailboxSet>> store = OpenMaildirMailboxSet(options);
  MAILFS_ASSERT_OK(store);
  CheckStore(**store);
}

// The same through the registry, as mailfs opens it ("maildir:PATH" and
// the fixture's options): the backend's answer must not depend on the way in.
TEST_P(MaildirFixtureStoreTest, OpenSourceShowsExpected) {
  Result<std::shared_ptr<MailboxSet>> store =
      OpenSource("maildir:" + fixture_->root, fixture_->options);
  MAILFS_ASSERT_OK(store);
  CheckStore(**store);
}

// Opening a store and reading it twice gives the same answers (the second
// read is served from whatever index the first built).
TEST_P(MaildirFixtureStoreTest, SecondReadShowsExpected) {
  Result<std::shared_ptr<MailboxSet>> store =
      OpenSource("maildir:" + fixture_->root, fixture_->options);
  MAILFS_ASSERT_OK(store);
  CheckStore(**store);
  CheckStore(**store);
}

std::string FixtureTestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MaildirFixtureStoreTest,
                         ::testing::ValuesIn(StoreFixtureNames()), FixtureTestName);

}  // namespace
}  // namespace mailfs::test
