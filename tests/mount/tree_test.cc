// DESIGN.md "The tree": what ls, stat, cat, grep and find see, compared with
// the store.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "backends/dict/dict_backend.h"
#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

// The first level of every mailbox name: what the root directory holds.
std::vector<std::string> TopLevelNames(MailboxSet& store) {
  std::set<std::string> top;
  for (const auto& name : StoreMailboxes(store)) top.insert(name.substr(0, name.find('/')));
  return {top.begin(), top.end()};
}

// Names of the direct children of `mailbox` ("" for the root), \Noselect
// parents included.
std::set<std::string> ChildNames(MailboxSet& store, const std::string& mailbox) {
  std::set<std::string> children;
  std::string prefix = mailbox.empty() ? "" : mailbox + "/";
  for (const auto& name : StoreMailboxes(store)) {
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string rest = name.substr(prefix.size());
    children.insert(rest.substr(0, rest.find('/')));
  }
  return children;
}

std::vector<std::string> CanonicalNames(const std::vector<uint32_t>& uids) {
  std::vector<std::string> names;
  for (uint32_t uid : uids) names.push_back(std::to_string(uid) + ".eml");
  return names;
}

class TreeTest : public MountTest {};

TEST_P(TreeTest, RootListsTheTopLevelMailboxes) {
  SeedStandardStore(store());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto expected = TopLevelNames(store());
  ASSERT_FALSE(expected.empty());

  auto listed = ListDir(root());
  ASSERT_TRUE(listed);
  EXPECT_EQ(Sorted(*listed), expected);

  auto ls = Sh("ls -1");
  ASSERT_TRUE(ls.ok()) << ls.Describe();
  EXPECT_EQ(Sorted(Lines(ls.out)), expected);
}

TEST_P(TreeTest, MailboxListsExactlyCanonicalNamesInUidOrderAndChildren) {
  SeedStandardStore(store());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  for (std::string mailbox : {"INBOX", "Archive", "Archive/2024", "Work"}) {
    SCOPED_TRACE(mailbox);
    auto uids = StoreUids(store(), mailbox);
    auto children = ChildNames(store(), mailbox);
    auto listed = ListDir(P(mailbox));
    ASSERT_TRUE(listed);

    std::vector<std::string> messages;
    std::set<std::string> others;
    for (const auto& name : *listed) {
      if (name.ends_with(".eml")) {
        messages.push_back(name);
      } else {
        others.insert(name);
      }
    }
    // Directory order: the .eml names come in ascending UID order.
    EXPECT_EQ(messages, CanonicalNames(uids));
    EXPECT_EQ(others, children);

    // ls -U keeps the directory order too.
    auto ls = Sh("ls -1U " + ShellQuote(mailbox));
    ASSERT_TRUE(ls.ok()) << ls.Describe();
    std::vector<std::string> ls_messages;
    for (const auto& line : Lines(ls.out)) {
      if (line.ends_with(".eml")) ls_messages.push_back(line);
    }
    EXPECT_EQ(ls_messages, CanonicalNames(uids));
  }
}

TEST_P(TreeTest, ChildMailboxesAreDirectoriesAndMessagesRegularFiles) {
  SeedStandardStore(store());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  struct stat st;
  ASSERT_EQ(Stat(P("Archive/2024"), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(Stat(P("Archive"), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  for (uint32_t uid : StoreUids(store(), "Archive")) {
    ASSERT_EQ(Stat(P("Archive/" + std::to_string(uid) + ".eml"), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_TRUE((st.st_mode & 07777) == 0444 || (st.st_mode & 07777) == 0644)
        << std::oct << st.st_mode;
  }
}

TEST_P(TreeTest, StatMatchesTheStore) {
  SeedStandardStore(store());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  for (std::string mailbox : {"INBOX", "Archive", "Archive/2024"}) {
    for (const auto& info : StoreMessages(store(), mailbox)) {
      std::string path = P(mailbox + "/" + std::to_string(info.uid) + ".eml");
      SCOPED_TRACE(path);
      struct stat st;
      ASSERT_EQ(Stat(path, &st), 0);
      EXPECT_EQ(static_cast<uint64_t>(st.st_size), info.size);
      EXPECT_EQ(st.st_mtim.tv_sec, info.internal_date);
      EXPECT_EQ(st.st_nlink, 1u);
    }
  }
  // The stat tool agrees: size and mtime per file.
  auto out = Sh("stat -c '%n %s %Y %h' INBOX/*.eml");
  ASSERT_TRUE(out.ok()) << out.Describe();
  std::vector<std::string> expected;
  for (const auto& info : StoreMessages(store(), "INBOX")) {
    expected.push_back("INBOX/" + std::to_string(info.uid) + ".eml " + std::to_string(info.size) +
                       " " + std::to_string(info.internal_date) + " 1");
  }
  EXPECT_EQ(Sorted(Lines(out.out)), Sorted(expected));
}

TEST_P(TreeTest, InodesAreStableAndUnique) {
  SeedStandardStore(store());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  std::map<ino_t, std::string> seen;
  for (std::string mailbox : {"INBOX", "Archive", "Archive/2024"}) {
    for (uint32_t uid : StoreUids(store(), mailbox)) {
      std::string path = P(mailbox + "/" + std::to_string(uid) + ".eml");
      struct stat a, b;
      ASSERT_EQ(Stat(path, &a), 0) << path;
      // Read it in between: opening must not change the number.
      ASSERT_TRUE(ReadFile(path));
      ASSERT_EQ(Stat(path, &b), 0) << path;
      EXPECT_EQ(a.st_ino, b.st_ino) << path;
      auto [it, inserted] = seen.emplace(a.st_ino, path);
      EXPECT_TRUE(inserted) << path << " shares inode " << a.st_ino << " with " << it->second;
    }
  }
  for (std::string dir : {"INBOX", "Archive", "Archive/2024", "Work"}) {
    struct stat st;
    ASSERT_EQ(Stat(P(dir), &st), 0);
    auto [it, inserted] = seen.emplace(st.st_ino, dir);
    EXPECT_TRUE(inserted) << dir << " shares inode " << st.st_ino << " with " << it->second;
  }
  // ls -i agrees with stat(2).
  auto ls = Sh("ls -i1 INBOX");
  ASSERT_TRUE(ls.ok()) << ls.Describe();
  for (const auto& line : Lines(ls.out)) {
    auto space = line.find_first_of(' ', line.find_first_not_of(' '));
    ASSERT_NE(space, std::string::npos) << line;
    ino_t ino = std::stoull(line.substr(0, space));
    std::string name = line.substr(space + 1);
    struct stat st;
    ASSERT_EQ(Stat(P("INBOX/" + name), &st), 0);
    EXPECT_EQ(st.st_ino, ino) << name;
  }
}

TEST_P(TreeTest, InodeStaysWhileTheMessageExists) {
  SeedStandardStore(store());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto uids = StoreUids(store(), "INBOX");
  ASSERT_GE(uids.size(), 2u);
  std::string path = P("INBOX/" + std::to_string(uids.back()) + ".eml");
  struct stat before, after;
  ASSERT_EQ(Stat(path, &before), 0);
  // Changes around it (another message expunged, flags changed) keep the number.
  EXPECT_SYSCALL_OK(::unlink(P("INBOX/" + std::to_string(uids.front()) + ".eml").c_str()));
  EXPECT_EQ(SetXattr(path, "user.mail.flagged", ""), 0);
  ASSERT_EQ(Stat(path, &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
}

TEST_P(TreeTest, ReadOnlyMailboxHasNoWriteBits) {
  SeedStandardStore(store());
  ASSERT_NO_FATAL_FAILURE(MakeReadOnly("Archive"));
  if (IsSkipped()) return;  // the backend has no read-only mailboxes
  ASSERT_NO_FATAL_FAILURE(MountStore());
  struct stat st;
  ASSERT_EQ(Stat(P("Archive"), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0222, 0u) << std::oct << st.st_mode;
  // The other mailboxes keep theirs.
  ASSERT_EQ(Stat(P("INBOX"), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST_P(TreeTest, CatReturnsExactlyTheStoredBytes) {
  SeedStandardStore(store());
  // Bytes that a text-mode path would mangle: CRLF and bare LF mixed,
  // 8-bit, NUL, no final newline, and one large message over many pages.
  std::string odd = "Subject: odd\r\nX-Bin: \xff\xfe\x80\r\n\r\nline\nbare lf\r\nnul:";
  odd += '\0';
  odd += "end-without-newline";
  uint32_t odd_uid = StoreAppend(store(), "INBOX", odd, "", 1'610'000'000);
  std::string big = TestMessage("big");
  for (int i = 0; big.size() < 3 * 1024 * 1024 + 17; ++i) {
    big += "line " + std::to_string(i) + " of a big message, with some padding text\r\n";
  }
  uint32_t big_uid = StoreAppend(store(), "INBOX", big, "", 1'610'000'001);
  ASSERT_NO_FATAL_FAILURE(MountStore());

  for (uint32_t uid : StoreUids(store(), "INBOX")) {
    std::string name = "INBOX/" + std::to_string(uid) + ".eml";
    SCOPED_TRACE(name);
    std::string stored = StoreBytes(store(), "INBOX", uid);
    auto cat = Sh("cat " + name);
    ASSERT_TRUE(cat.ok()) << cat.Describe();
    EXPECT_TRUE(cat.out == stored)
        << "cat gave " << cat.out.size() << " bytes, store has " << stored.size();
    auto read = ReadFile(P(name));
    ASSERT_TRUE(read);
    EXPECT_TRUE(*read == stored);
  }
  EXPECT_EQ(StoreBytes(store(), "INBOX", odd_uid), odd);
  EXPECT_EQ(StoreBytes(store(), "INBOX", big_uid), big);

  // Reads at odd offsets and across the end.
  std::string path = P("INBOX/" + std::to_string(big_uid) + ".eml");
  for (uint64_t offset : {uint64_t{0}, uint64_t{1}, uint64_t{4095}, uint64_t{131071},
                          uint64_t{big.size() - 10}, uint64_t{big.size()}}) {
    auto part = PreadFile(path, offset, 70000);
    ASSERT_TRUE(part);
    EXPECT_TRUE(*part == big.substr(offset, 70000)) << "offset " << offset;
  }
}

TEST_P(TreeTest, GrepFindsABodyWord) {
  SeedStandardStore(store());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  // Which message holds the word, by the store.
  std::vector<std::string> expected;
  for (const auto& mailbox : StoreMailboxes(store())) {
    for (uint32_t uid : StoreUids(store(), mailbox)) {
      if (StoreBytes(store(), mailbox, uid).find("zanzibar") != std::string::npos) {
        expected.push_back("./" + mailbox + "/" + std::to_string(uid) + ".eml");
      }
    }
  }
  ASSERT_EQ(expected.size(), 1u);
  auto grep = Sh("grep -rl zanzibar .");
  ASSERT_TRUE(grep.ok()) << grep.Describe();
  EXPECT_EQ(Sorted(Lines(grep.out)), expected);
  auto none = Sh("grep -rl no-such-word-anywhere .");
  EXPECT_EQ(none.exit_code, 1) << none.Describe();
  EXPECT_EQ(none.err, "");
}

TEST_P(TreeTest, FindListsEveryMessageAndMailbox) {
  SeedStandardStore(store());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  std::vector<std::string> files, dirs;
  for (const auto& mailbox : StoreMailboxes(store())) {
    dirs.push_back("./" + mailbox);
    for (uint32_t uid : StoreUids(store(), mailbox)) {
      files.push_back("./" + mailbox + "/" + std::to_string(uid) + ".eml");
    }
  }
  auto find_files = Sh("find . -name '*.eml'");
  ASSERT_TRUE(find_files.ok()) << find_files.Describe();
  EXPECT_EQ(Sorted(Lines(find_files.out)), Sorted(files));
  auto count = Sh("find . -name '*.eml' | wc -l");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(std::stoul(count.out), files.size());
  auto find_dirs = Sh("find . -mindepth 1 -type d");
  ASSERT_TRUE(find_dirs.ok()) << find_dirs.Describe();
  EXPECT_EQ(Sorted(Lines(find_dirs.out)), Sorted(dirs));
  // The whole tree, with sizes and dates, as the store says.
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));
}

TEST_P(TreeTest, NestedMailboxesAreNestedDirectories) {
  for (const char* name :
       {"Lists", "Lists/fuse", "Lists/fuse/devel", "Lists/rust", "Entwürfe", "Entwürfe/Grüße"}) {
    ASSERT_TRUE(store().AddMailbox(name).ok()) << name;
  }
  StoreAppend(store(), "Lists/fuse/devel", TestMessage("deep"), "", 1'650'000'000);
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto listed = ListDir(P("Lists"));
  ASSERT_TRUE(listed);
  EXPECT_EQ(Sorted(*listed), (std::vector<std::string>{"fuse", "rust"}));
  listed = ListDir(P("Lists/fuse"));
  ASSERT_TRUE(listed);
  EXPECT_EQ(*listed, std::vector<std::string>{"devel"});
  auto uids = StoreUids(store(), "Lists/fuse/devel");
  ASSERT_EQ(uids.size(), 1u);
  auto bytes = ReadFile(P("Lists/fuse/devel/" + std::to_string(uids[0]) + ".eml"));
  ASSERT_TRUE(bytes);
  EXPECT_EQ(*bytes, TestMessage("deep"));
  // Names are UTF-8 on the mount whatever the store keeps.
  struct stat st;
  EXPECT_EQ(Stat(P("Entwürfe/Grüße"), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));
}

TEST_P(TreeTest, NoselectParentIsADirectoryWithoutMessages) {
  ASSERT_TRUE(store().AddMailbox("A/B").ok());
  ASSERT_FALSE(StoreHasMailbox(store(), "A")) << "the backend listed a \\Noselect parent";
  StoreAppend(store(), "A/B", TestMessage("in-b"));
  ASSERT_NO_FATAL_FAILURE(MountStore());

  struct stat st;
  ASSERT_EQ(Stat(P("A"), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  auto listed = ListDir(P("A"));
  ASSERT_TRUE(listed);
  EXPECT_EQ(*listed, std::vector<std::string>{"B"});
  auto root_list = ListDir(root());
  ASSERT_TRUE(root_list);
  EXPECT_EQ(std::count(root_list->begin(), root_list->end(), "A"), 1);
  // Looking at it creates nothing.
  EXPECT_FALSE(StoreHasMailbox(store(), "A"));
}

TEST_P(TreeTest, WritingIntoANoselectParentCreatesTheMailbox) {
  ASSERT_TRUE(store().AddMailbox("A/B").ok());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  std::string message = TestMessage("into-a");
  auto w = WriteFile(P("A/new.eml"), message);
  ASSERT_TRUE(w.ok()) << w.Describe();
  ASSERT_TRUE(StoreHasMailbox(store(), "A"));
  auto uids = StoreUids(store(), "A");
  ASSERT_EQ(uids.size(), 1u);
  EXPECT_EQ(StoreBytes(store(), "A", uids[0]), message);
  EXPECT_TRUE(StoreHasMailbox(store(), "A/B"));
  auto listed = ListDir(P("A"));
  ASSERT_TRUE(listed);
  EXPECT_EQ(Sorted(*listed), Sorted({"B", std::to_string(uids[0]) + ".eml"}));
}

TEST_P(TreeTest, UnknownNamesDoNotExist) {
  SeedStandardStore(store());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto uids = StoreUids(store(), "INBOX");
  ASSERT_FALSE(uids.empty());
  struct stat st;
  std::string next = std::to_string(StoreSnapshot(store(), "INBOX").next_uid);
  for (std::string name :
       {"INBOX/" + next + ".eml", std::string("INBOX/notes.txt"), std::string("NoSuchMailbox"),
        std::string(".hidden"), "INBOX/" + std::to_string(uids[0]) + ".txt",
        "INBOX/0" + std::to_string(uids[0]) + ".eml"}) {
    EXPECT_EQ(ErrnoName(Stat(P(name), &st)), ErrnoName(ENOENT)) << name;
  }
  // The gap left by the expunged third message.
  ASSERT_GE(uids.size(), 3u);
  EXPECT_NE(uids[1] + 1, uids[2]) << "the seed should leave a UID gap";
  EXPECT_EQ(ErrnoName(Stat(P("INBOX/" + std::to_string(uids[1] + 1) + ".eml"), &st)),
            ErrnoName(ENOENT));
}

TEST_P(TreeTest, ChangesBehindTheMountBecomeVisible) {
  SeedStandardStore(store());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  // Fill the kernel's caches first.
  ASSERT_TRUE(ListDir(P("INBOX")));
  auto before = StoreUids(store(), "INBOX");
  for (uint32_t uid : before) {
    struct stat st;
    ASSERT_EQ(Stat(P("INBOX/" + std::to_string(uid) + ".eml"), &st), 0);
  }

  // A delivery behind the mount's back.
  std::string message = TestMessage("delivered");
  uint32_t uid = StoreAppend(store(), "INBOX", message, "", 1'700'000'000);
  std::string name = std::to_string(uid) + ".eml";
  EXPECT_TRUE(Eventually([&] {
    auto listed = ListDir(P("INBOX"));
    return listed && std::count(listed->begin(), listed->end(), name) == 1;
  })) << name
      << " did not appear in readdir";
  auto read = ReadFile(P("INBOX/" + name));
  ASSERT_TRUE(read);
  EXPECT_EQ(*read, message);

  // A flag change behind its back shows in the attribute.
  ASSERT_TRUE(StoreMailbox(store(), "INBOX")->Update(uid, Flags("\\Answered"), FlagOp::kAdd).ok());
  EXPECT_TRUE(Eventually([&] {
    auto v = GetXattr(P("INBOX/" + name), "user.mail.flags");
    return v && FlagSet::Parse(*v).ok() && *FlagSet::Parse(*v) == Flags("\\Answered");
  })) << "user.mail.flags did not follow the store";

  // An expunge behind its back.
  uint32_t gone = before.front();
  uint32_t gone_uids[] = {gone};
  ASSERT_TRUE(StoreMailbox(store(), "INBOX")->Delete(gone_uids).ok());
  std::string gone_name = std::to_string(gone) + ".eml";
  auto listing = [&] {
    return ::testing::PrintToString(ListDir(P("INBOX")).value_or(std::vector<std::string>{}));
  };
  auto expected_listing = [&] {
    std::vector<std::string> names;
    for (uint32_t uid : StoreUids(store(), "INBOX")) names.push_back(std::to_string(uid) + ".eml");
    return ::testing::PrintToString(names);
  };
  EXPECT_TRUE(Eventually([&] { return listing() == expected_listing(); }))
      << "readdir after an expunge behind the mount: " << listing() << ", the store has "
      << expected_listing();
  EXPECT_TRUE(Eventually([&] {
    struct stat st;
    return Stat(P("INBOX/" + gone_name), &st) == ENOENT;
  })) << gone_name
      << " was expunged in the store but stat still finds it";

  // A mailbox created behind its back.
  ASSERT_TRUE(store().AddMailbox("Later").ok());
  EXPECT_TRUE(Eventually([&] {
    struct stat st;
    return Stat(P("Later"), &st) == 0 && S_ISDIR(st.st_mode);
  }));
  EXPECT_TRUE(Eventually([&] { return MountedTree(root()) == ExpectedTree(store()); }));
}

INSTANTIATE_TEST_SUITE_P(Backends, TreeTest, ::testing::ValuesIn(MountBackends()),
                         MountBackendName);

// The demo store (dict only): what `mailfs demo MOUNTPOINT` shows.
TEST(DemoTreeTest, RootShowsInboxSentTrashAndMatchesTheStore) {
  std::shared_ptr<MailboxSet> store = NewDemoMailboxSet();
  auto mount = MountedStore::Create(store);
  ASSERT_TRUE(mount);
  auto ls = mount->Run("ls -1");
  ASSERT_TRUE(ls.ok()) << ls.Describe();
  auto names = Lines(ls.out);
  for (const char* expected : {"INBOX", "Sent", "Trash"}) {
    EXPECT_EQ(std::count(names.begin(), names.end(), expected), 1) << expected;
  }
  EXPECT_EQ(Sorted(names), TopLevelNames(*store));
  EXPECT_EQ(MountedTree(mount->root()), ExpectedTree(*store));
  // Trash is read-only in the demo: no write bits.
  struct stat st;
  ASSERT_EQ(Stat(mount->Path("Trash"), &st), 0);
  EXPECT_EQ(st.st_mode & 0222, 0u);
  // Every message reads back as stored.
  for (const auto& mailbox : StoreMailboxes(*store)) {
    for (uint32_t uid : StoreUids(*store, mailbox)) {
      auto bytes = ReadFile(mount->Path(mailbox + "/" + std::to_string(uid) + ".eml"));
      ASSERT_TRUE(bytes);
      EXPECT_TRUE(*bytes == StoreBytes(*store, mailbox, uid)) << mailbox << "/" << uid;
    }
  }
}

}  // namespace
}  // namespace mailfs::test
