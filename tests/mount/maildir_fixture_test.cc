// The real stores of tests/data/fixtures/ (written by Dovecot in both
// layouts and by pymap) mounted through the Maildir backend: what find,
// stat, getxattr/listxattr and sha256sum see on the mount, against each
// fixture's expected.json (tests/support/fixture_expectations.h): every
// mailbox directory, UID, flag, keyword, size, internal date, sha256,
// UID validity, UIDNEXT and subscription. Each fixture is extracted into a
// temporary directory first; mounting claims \Recent (new/ files move to
// cur/), which must change nothing the mount shows. The same checks
// without a mount, to tell a backend bug from a driver bug:
// tests/unit/maildir_fixture_store_test.cc.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "backends/registry.h"
#include "src/flags.h"
#include "tests/support/fixture_expectations.h"
#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

constexpr std::string_view kKeywordPrefix = "user.mail.keyword.";

// Every mailbox directory the mount must show: the mailboxes and their
// parents (a \Noselect parent is a directory without messages).
std::set<std::string> ExpectedDirectories(const StoreFixture& fx) {
  std::set<std::string> dirs;
  for (const FixtureMailbox& mb : fx.mailboxes) {
    for (size_t slash = mb.name.find('/'); slash != std::string::npos;
         slash = mb.name.find('/', slash + 1)) {
      dirs.insert(mb.name.substr(0, slash));
    }
    dirs.insert(mb.name);
  }
  return dirs;
}

class MaildirFixtureMountTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    SetTestTimeout(std::chrono::seconds(300));
    data_ = std::make_unique<TempDir>();
    ASSERT_FALSE(data_->path().empty());
    fixture_ = ExtractStoreFixture(GetParam(), data_->path());
    ASSERT_TRUE(fixture_.has_value()) << "fixture " << GetParam() << " cannot be used";
    Result<std::shared_ptr<MailboxSet>> store =
        OpenSource("maildir:" + fixture_->root, fixture_->options);
    MAILFS_ASSERT_OK(store);
    store_ = *store;
    before_ = TakeStoreDigest(*store_);
    ASSERT_EQ(before_.error, "") << fixture_->name << ": reading the store before mounting";
    mount_ = MountedStore::Create(store_);
    ASSERT_NE(mount_, nullptr);
  }

  void TearDown() override {
    if (mount_) mount_->Unmount();
    mount_.reset();
    store_.reset();
  }

  std::string Where(const FixtureMailbox& mb) const {
    return fixture_->name + ": mailbox '" + mb.name + "'";
  }
  std::string Where(const FixtureMailbox& mb, const FixtureMessage& m) const {
    return Where(mb) + " uid " + std::to_string(m.uid);
  }

  // "value", or "<absent: ENODATA>" so that a comparison shows what was there.
  static std::string Attr(const std::string& path, const std::string& name) {
    int err = 0;
    std::optional<std::string> v = GetXattr(path, name, &err);
    return v ? *v : "<absent: " + ErrnoName(err) + ">";
  }
  static bool HasAttr(const std::string& path, const std::string& name) {
    return GetXattr(path, name).has_value();
  }

  void CheckMailboxAttributes(const FixtureMailbox& mb) {
    const std::string dir = mount_->Path(mb.name);
    EXPECT_EQ(HasAttr(dir, "user.mail.subscribed"), mb.subscribed)
        << Where(mb) << ": user.mail.subscribed (present when subscribed)";
    if (!mb.selectable) return;
    EXPECT_EQ(Attr(dir, "user.mail.uidvalidity"), std::to_string(mb.uid_validity))
        << Where(mb) << ": user.mail.uidvalidity";
    EXPECT_EQ(Attr(dir, "user.mail.uidnext"), std::to_string(mb.uid_next))
        << Where(mb) << ": user.mail.uidnext";
    EXPECT_EQ(Attr(dir, "user.mail.messages"), std::to_string(mb.messages.size()))
        << Where(mb) << ": user.mail.messages";
    EXPECT_EQ(Attr(dir, "user.mail.unseen"), std::to_string(mb.unseen))
        << Where(mb) << ": user.mail.unseen";
  }

  void CheckMessage(const FixtureMailbox& mb, const FixtureMessage& m) {
    const std::string path = mount_->Path(mb.name + "/" + Name(m.uid));
    struct stat st {};
    int err = Stat(path, &st);
    EXPECT_EQ(ErrnoName(err), ErrnoName(0)) << Where(mb, m) << ": stat " << path;
    if (err != 0) return;
    EXPECT_TRUE(S_ISREG(st.st_mode)) << Where(mb, m) << ": not a regular file";
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), m.size) << Where(mb, m) << ": size (st_size)";
    EXPECT_EQ(static_cast<UnixSeconds>(st.st_mtime), m.internal_date)
        << Where(mb, m) << ": internal date (st_mtime)";

    EXPECT_EQ(Attr(path, "user.mail.uid"), std::to_string(m.uid))
        << Where(mb, m) << ": user.mail.uid";
    const std::string date = Attr(path, "user.mail.internaldate");
    std::optional<UnixSeconds> parsed = ParseDateAttribute(date);
    EXPECT_TRUE(parsed.has_value()) << Where(mb, m) << ": user.mail.internaldate '" << date << "'";
    if (parsed) {
      EXPECT_EQ(*parsed, m.internal_date)
          << Where(mb, m) << ": user.mail.internaldate '" << date << "'";
    }

    // user.mail.flags: every flag, space separated.
    std::vector<std::string> want = m.flags;
    std::sort(want.begin(), want.end());
    const std::string flags_attr = Attr(path, "user.mail.flags");
    std::vector<std::string> got = SplitSpaces(flags_attr);
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, want) << Where(mb, m) << ": user.mail.flags '" << flags_attr << "'";

    // One attribute per system flag, present exactly when the flag is set.
    for (SystemFlag flag : kAllSystemFlags) {
      const std::string attr = "user.mail." + std::string(SystemFlagAttributeName(flag));
      const bool set = std::count(want.begin(), want.end(), std::string(SystemFlagName(flag))) > 0;
      EXPECT_EQ(HasAttr(path, attr), set) << Where(mb, m) << ": " << attr;
    }

    // user.mail.keyword.<kw>: exactly the keywords, as listxattr lists them,
    // and each readable.
    std::vector<std::string> want_keywords;
    for (const std::string& f : want) {
      if (!f.starts_with("\\")) want_keywords.push_back(f);
    }
    std::optional<std::vector<std::string>> names = ListXattr(path, &err);
    EXPECT_TRUE(names.has_value()) << Where(mb, m) << ": listxattr: " << ErrnoName(err);
    if (names) {
      std::vector<std::string> got_keywords;
      for (const std::string& n : *names) {
        if (n.starts_with(kKeywordPrefix)) got_keywords.push_back(n.substr(kKeywordPrefix.size()));
      }
      std::sort(got_keywords.begin(), got_keywords.end());
      EXPECT_EQ(got_keywords, want_keywords) << Where(mb, m) << ": keywords (listxattr)";
    }
    for (const std::string& kw : want_keywords) {
      EXPECT_TRUE(HasAttr(path, std::string(kKeywordPrefix) + kw))
          << Where(mb, m) << ": getxattr " << kKeywordPrefix << kw;
    }
  }

  // sha256sum over every message of the mailbox, read through the mount.
  void CheckHashes(const FixtureMailbox& mb) {
    if (mb.messages.empty()) return;
    std::string command = "sha256sum --";
    for (const FixtureMessage& m : mb.messages) command += " " + Name(m.uid);
    CommandResult r = RunShell(command, mount_->Path(mb.name));
    EXPECT_TRUE(r.ok()) << Where(mb) << ": " << command << ": " << r.Describe();
    std::map<std::string, std::string> got;  // "7.eml" -> hash
    for (const std::string& line : Lines(r.out)) {
      size_t space = line.find("  ");
      if (space != std::string::npos) got[line.substr(space + 2)] = line.substr(0, space);
    }
    for (const FixtureMessage& m : mb.messages) {
      auto it = got.find(Name(m.uid));
      EXPECT_EQ(it == got.end() ? "<not read>" : it->second, m.sha256)
          << Where(mb, m) << ": sha256 of the bytes read through the mount";
    }
  }

  std::unique_ptr<TempDir> data_;  // the extracted store; outlives the mount
  std::optional<StoreFixture> fixture_;
  std::shared_ptr<MailboxSet> store_;
  StoreDigest before_;
  std::unique_ptr<MountedStore> mount_;
};

// find's view of the whole tree: the directories are exactly the mailboxes
// and their parents, the files exactly <uid>.eml of the expected UIDs.
TEST_P(MaildirFixtureMountTest, TreeHasEveryMailboxAndMessage) {
  const StoreFixture& fx = *fixture_;
  CommandResult dirs = mount_->Run("find . -mindepth 1 -type d -printf '%P\\n'");
  ASSERT_TRUE(dirs.ok()) << dirs.Describe();
  const std::set<std::string> want_dirs = ExpectedDirectories(fx);
  std::vector<std::string> got_dirs = Sorted(Lines(dirs.out));
  EXPECT_EQ(got_dirs, std::vector<std::string>(want_dirs.begin(), want_dirs.end()))
      << fx.name << ": the mailbox directories";

  CommandResult files = mount_->Run("find . -mindepth 1 ! -type d -printf '%P\\n'");
  ASSERT_TRUE(files.ok()) << files.Describe();
  std::vector<std::string> want_files;
  for (const FixtureMailbox& mb : fx.mailboxes) {
    for (const FixtureMessage& m : mb.messages) want_files.push_back(mb.name + "/" + Name(m.uid));
  }
  EXPECT_EQ(Sorted(Lines(files.out)), Sorted(want_files)) << fx.name << ": the message files";
}

// readdir of each mailbox: its messages in ascending UID order (DESIGN.md),
// then nothing but child mailboxes; a \Noselect parent holds no messages.
TEST_P(MaildirFixtureMountTest, EachMailboxListsItsUidsInOrder) {
  for (const FixtureMailbox& mb : fixture_->mailboxes) {
    int err = 0;
    std::optional<std::vector<std::string>> entries = ListDir(mount_->Path(mb.name), &err);
    EXPECT_TRUE(entries.has_value()) << Where(mb) << ": readdir: " << ErrnoName(err);
    if (!entries) continue;
    std::vector<std::string> got, want;
    for (const std::string& e : *entries) {
      if (e.ends_with(".eml")) got.push_back(e);
    }
    for (const FixtureMessage& m : mb.messages) want.push_back(Name(m.uid));
    EXPECT_EQ(got, want) << Where(mb) << ": the messages readdir lists, in order";
  }
}

TEST_P(MaildirFixtureMountTest, MailboxAttributesAndSubscriptions) {
  for (const FixtureMailbox& mb : fixture_->mailboxes) CheckMailboxAttributes(mb);
}

TEST_P(MaildirFixtureMountTest, EveryMessageSizeDateUidFlagsKeywords) {
  for (const FixtureMailbox& mb : fixture_->mailboxes) {
    for (const FixtureMessage& m : mb.messages) CheckMessage(mb, m);
  }
}

TEST_P(MaildirFixtureMountTest, EveryMessageSha256ThroughTheMount) {
  for (const FixtureMailbox& mb : fixture_->mailboxes) CheckHashes(mb);
}

// Mounting claimed \Recent (moving new/ files to cur/); after the unmount,
// a store opened afresh on the same directory still holds the same
// mailboxes, UIDs, flags, dates and bytes as before the mount.
TEST_P(MaildirFixtureMountTest, MountingChangesNothingButRecent) {
  // Make the mount read every mailbox, so that it claims \Recent everywhere.
  CommandResult r = mount_->Run("find . -type f | wc -l");
  ASSERT_TRUE(r.ok()) << r.Describe();
  mount_->Unmount();
  mount_.reset();
  store_.reset();
  Result<std::shared_ptr<MailboxSet>> reopened =
      OpenSource("maildir:" + fixture_->root, fixture_->options);
  MAILFS_ASSERT_OK(reopened);
  EXPECT_EQ(ToString(TakeStoreDigest(**reopened)), ToString(before_))
      << fixture_->name << ": the store after a mount and unmount";
}

std::string FixtureTestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MaildirFixtureMountTest,
                         ::testing::ValuesIn(StoreFixtureNames()), FixtureTestName);

}  // namespace
}  // namespace mailfs::test
