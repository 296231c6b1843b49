// The tools users use, through the mount: cp, cp -a across mounts, mv, rm,
// ln, mkdir, rmdir, rsync -a, sed -i, tar. Each checks the tool's exit
// status and what the store holds afterwards.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

// A mailbox's messages as a sorted list of "hash flags date", so that two
// mailboxes can be compared whatever UIDs they assigned.
std::vector<std::string> Contents(MailboxSet& store, const std::string& mailbox,
                                  bool with_flags_and_dates = true) {
  std::vector<std::string> out;
  for (const auto& info : StoreMessages(store, mailbox)) {
    std::string line = std::to_string(ContentHash(StoreBytes(store, mailbox, info.uid)));
    if (with_flags_and_dates) {
      line += " [" + info.flags.ToString() + "] " + std::to_string(info.internal_date);
    }
    out.push_back(line);
  }
  std::sort(out.begin(), out.end());
  return out;
}

class ToolsTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    SeedStandardStore(store());
  }
  // A second, independent store of the same backend, mounted.
  std::unique_ptr<MountedStore> SecondMount(const std::vector<std::string>& mailboxes = {}) {
    auto other = GetParam().make();
    EXPECT_TRUE(other);
    if (!other) return nullptr;
    for (const auto& m : mailboxes) EXPECT_TRUE(other->AddMailbox(m).ok()) << m;
    return MountedStore::Create(other);
  }
  std::string Scratch(std::string_view name) { return mount_->scratch() + "/" + std::string(name); }
};

TEST_P(ToolsTest, CpAOfMessagesToAnotherMountCarriesFlagsAndDates) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto other = SecondMount();
  ASSERT_TRUE(other);
  auto cp = Sh("cp -a INBOX/*.eml " + ShellQuote(other->Path("INBOX")) + "/");
  EXPECT_TRUE(cp.ok()) << cp.Describe();
  EXPECT_EQ(cp.err, "");
  EXPECT_EQ(Contents(other->store(), "INBOX"), Contents(store(), "INBOX"));
  // The copies read back as the originals.
  for (const auto& info : StoreMessages(other->store(), "INBOX")) {
    auto bytes = ReadFile(other->Path("INBOX/" + Name(info.uid)));
    ASSERT_TRUE(bytes);
    EXPECT_EQ(*bytes, StoreBytes(other->store(), "INBOX", info.uid));
  }
}

TEST_P(ToolsTest, CpAOfAMailboxTreeToAnotherMount) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto other = SecondMount();
  ASSERT_TRUE(other);
  auto cp = Sh("cp -a Archive " + ShellQuote(other->root()) + "/");
  EXPECT_TRUE(cp.ok()) << cp.Describe();
  EXPECT_EQ(cp.err, "");
  ASSERT_TRUE(StoreHasMailbox(other->store(), "Archive"));
  ASSERT_TRUE(StoreHasMailbox(other->store(), "Archive/2024"));
  EXPECT_EQ(Contents(other->store(), "Archive"), Contents(store(), "Archive"));
  EXPECT_EQ(Contents(other->store(), "Archive/2024"), Contents(store(), "Archive/2024"));
  // Copying back onto the first mount under a new name.
  auto back = Sh("cp -a " + ShellQuote(other->Path("Archive")) + " Copy");
  EXPECT_TRUE(back.ok()) << back.Describe();
  EXPECT_EQ(Contents(store(), "Copy"), Contents(store(), "Archive"));
  EXPECT_EQ(Contents(store(), "Copy/2024"), Contents(store(), "Archive/2024"));
}

TEST_P(ToolsTest, CpOfAMessageIntoAnotherMailboxOfTheSameMount) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  uint32_t uid = StoreUids(store(), "INBOX").front();
  auto before = StoreUids(store(), "Work");
  auto cp = Sh("cp INBOX/" + Name(uid) + " Work/");
  EXPECT_TRUE(cp.ok()) << cp.Describe();
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(StoreBytes(store(), "Work", added[0]), StoreBytes(store(), "INBOX", uid));
}

TEST_P(ToolsTest, MvBetweenMountsCarriesFlagsAndDates) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto other = SecondMount({"Work"});
  ASSERT_TRUE(other);
  auto source = StoreMessages(store(), "INBOX")[1];  // \Flagged $Junk
  std::string bytes = StoreBytes(store(), "INBOX", source.uid);
  auto mv = Sh("mv INBOX/" + Name(source.uid) + " " + ShellQuote(other->Path("Work")) + "/");
  EXPECT_TRUE(mv.ok()) << mv.Describe();
  EXPECT_EQ(mv.err, "");
  auto uids = StoreUids(store(), "INBOX");
  EXPECT_EQ(std::count(uids.begin(), uids.end(), source.uid), 0) << "the source stayed";
  auto moved = StoreMessages(other->store(), "Work");
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0].flags, source.flags);
  EXPECT_EQ(moved[0].internal_date, source.internal_date);
  EXPECT_EQ(StoreBytes(other->store(), "Work", moved[0].uid), bytes);
}

TEST_P(ToolsTest, MvWithinBetweenAndOntoMessages) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto uids = StoreUids(store(), "INBOX");
  ASSERT_GE(uids.size(), 3u);

  // Within a mailbox: an alias, the store unchanged.
  auto before = Digest();
  auto within = Sh("mv INBOX/" + Name(uids[0]) + " INBOX/first.eml");
  EXPECT_TRUE(within.ok()) << within.Describe();
  EXPECT_EQ(ToString(Digest()), ToString(before));
  auto alias = ReadFile(P("INBOX/first.eml"));
  ASSERT_TRUE(alias);
  EXPECT_EQ(*alias, StoreBytes(store(), "INBOX", uids[0]));

  // Between mailboxes: the next UID there.
  uint32_t next = StoreSnapshot(store(), "Work").next_uid;
  std::string bytes = StoreBytes(store(), "INBOX", uids[1]);
  auto between = Sh("mv INBOX/" + Name(uids[1]) + " Work/");
  EXPECT_TRUE(between.ok()) << between.Describe();
  EXPECT_EQ(StoreUids(store(), "Work"), std::vector<uint32_t>{next});
  EXPECT_EQ(StoreBytes(store(), "Work", next), bytes);
  auto inbox = StoreUids(store(), "INBOX");
  EXPECT_EQ(std::count(inbox.begin(), inbox.end(), uids[1]), 0);

  // Onto an existing message: it is replaced.
  std::string replacement = StoreBytes(store(), "INBOX", uids[2]);
  auto onto = Sh("mv -f INBOX/" + Name(uids[2]) + " INBOX/" + Name(uids[0]));
  EXPECT_TRUE(onto.ok()) << onto.Describe();
  inbox = StoreUids(store(), "INBOX");
  EXPECT_EQ(std::count(inbox.begin(), inbox.end(), uids[0]), 0) << "the target stayed";
  int err = 0;
  auto now = ReadFile(P("INBOX/" + Name(uids[0])), &err);
  ASSERT_TRUE(now) << "the replaced name does not resolve: " << ErrnoName(err);
  EXPECT_EQ(*now, replacement);
}

TEST_P(ToolsTest, MvOfWholeDirectories) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto archive = Contents(store(), "Archive");
  auto archive2024 = Contents(store(), "Archive/2024");
  // Into an existing directory, as mv does.
  auto into = Sh("mv Archive Work");
  EXPECT_TRUE(into.ok()) << into.Describe();
  EXPECT_FALSE(StoreHasMailbox(store(), "Archive"));
  EXPECT_EQ(Contents(store(), "Work/Archive"), archive);
  EXPECT_EQ(Contents(store(), "Work/Archive/2024"), archive2024);
  // To a new name.
  auto rename = Sh("mv Work Projects");
  EXPECT_TRUE(rename.ok()) << rename.Describe();
  EXPECT_EQ(Contents(store(), "Projects/Archive"), archive);
  EXPECT_EQ(Contents(store(), "Projects/Archive/2024"), archive2024);
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));
}

TEST_P(ToolsTest, RmExpungesAndRmRRemovesAMailboxTree) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto uids = StoreUids(store(), "INBOX");
  auto rm = Sh("rm INBOX/" + Name(uids[0]));
  EXPECT_TRUE(rm.ok()) << rm.Describe();
  auto after = StoreUids(store(), "INBOX");
  EXPECT_EQ(after, std::vector<uint32_t>(uids.begin() + 1, uids.end()));

  auto rmr = Sh("rm -r Archive");
  EXPECT_TRUE(rmr.ok()) << rmr.Describe();
  EXPECT_FALSE(StoreHasMailbox(store(), "Archive"));
  EXPECT_FALSE(StoreHasMailbox(store(), "Archive/2024"));
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));
}

TEST_P(ToolsTest, LnCopiesIntoAnotherMailbox) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto source = StoreMessages(store(), "INBOX")[0];
  auto ln = Sh("ln INBOX/" + Name(source.uid) + " Work/");
  EXPECT_TRUE(ln.ok()) << ln.Describe();
  auto work = StoreMessages(store(), "Work");
  ASSERT_EQ(work.size(), 1u);
  EXPECT_EQ(work[0].flags, source.flags);
  EXPECT_EQ(StoreBytes(store(), "Work", work[0].uid), StoreBytes(store(), "INBOX", source.uid));
  EXPECT_TRUE(StoreInfo(store(), "INBOX", source.uid));
}

TEST_P(ToolsTest, MkdirAndRmdir) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto mk = Sh("mkdir -p Deep/er/est && mkdir Lists");
  EXPECT_TRUE(mk.ok()) << mk.Describe();
  for (const char* name : {"Deep", "Deep/er", "Deep/er/est", "Lists"}) {
    EXPECT_TRUE(StoreHasMailbox(store(), name)) << name;
  }
  auto again = Sh("mkdir Lists");
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("File exists"), std::string::npos) << again.err;
  auto rmdir = Sh("rmdir Deep/er/est Deep/er Deep Lists");
  EXPECT_TRUE(rmdir.ok()) << rmdir.Describe();
  for (const char* name : {"Deep", "Deep/er", "Deep/er/est", "Lists"}) {
    EXPECT_FALSE(StoreHasMailbox(store(), name)) << name;
  }
  auto full = Sh("rmdir Archive/2024");
  EXPECT_NE(full.exit_code, 0);
  EXPECT_NE(full.err.find("not empty"), std::string::npos) << full.err;
  EXPECT_TRUE(StoreHasMailbox(store(), "Archive/2024"));
}

TEST_P(ToolsTest, SetfattrAndGetfattrRoundTrip) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  uint32_t uid = StoreUids(store(), "INBOX").back();
  std::string file = "INBOX/" + Name(uid);
  auto set = Sh("setfattr -n user.mail.flags -v '\\Answered $Label1' " + file +
                " && setfattr -n user.mail.seen " + file);
  EXPECT_TRUE(set.ok()) << set.Describe();
  EXPECT_EQ(StoreInfo(store(), "INBOX", uid)->flags, Flags("\\Answered \\Seen $Label1"));
  auto get = Sh("getfattr --only-values -n user.mail.flags " + file);
  ASSERT_TRUE(get.ok()) << get.Describe();
  auto parsed = FlagSet::Parse(get.out);
  ASSERT_TRUE(parsed.ok()) << get.out;
  EXPECT_EQ(*parsed, Flags("\\Answered \\Seen $Label1"));
  // A dump restores onto another message.
  uint32_t other = StoreUids(store(), "INBOX").front();
  auto dump = Sh("getfattr -n user.mail.flags " + file + " > " + ShellQuote(Scratch("flags.dump")) +
                 " && sed -i 's|" + file + "|INBOX/" + Name(other) + "|' " +
                 ShellQuote(Scratch("flags.dump")) +
                 " && setfattr --restore=" + ShellQuote(Scratch("flags.dump")));
  EXPECT_TRUE(dump.ok()) << dump.Describe();
  EXPECT_EQ(StoreInfo(store(), "INBOX", other)->flags, Flags("\\Answered \\Seen $Label1"));
}

TEST_P(ToolsTest, RsyncIntoAMailboxAppendsAndIsIdempotent) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  std::string src = Scratch("rsync-src");
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  std::map<std::string, std::pair<std::string, UnixSeconds>> files;
  for (int i = 0; i < 3; ++i) {
    std::string name = "letter" + std::to_string(i) + ".eml";
    std::string bytes = TestMessage("rsync-" + std::to_string(i));
    UnixSeconds date = 1'400'000'000 + i * 1000 + 7;
    WriteLocalFile(src + "/" + name, bytes);
    struct timespec times[2] = {{date, 0}, {date, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, (src + "/" + name).c_str(), times, 0), 0);
    files[name] = {bytes, date};
  }
  auto rsync = Sh("rsync -a " + ShellQuote(src) + "/ Work/");
  EXPECT_TRUE(rsync.ok()) << rsync.Describe();
  EXPECT_EQ(rsync.err, "");
  auto stored = StoreMessages(store(), "Work");
  ASSERT_EQ(stored.size(), files.size());
  std::vector<std::string> expected, actual;
  for (const auto& [name, file] : files) {
    expected.push_back(std::to_string(ContentHash(file.first)) + " " + std::to_string(file.second));
  }
  for (const auto& info : stored) {
    actual.push_back(std::to_string(ContentHash(StoreBytes(store(), "Work", info.uid))) + " " +
                     std::to_string(info.internal_date));
  }
  EXPECT_EQ(Sorted(actual), Sorted(expected));
  // No rsync temporaries left behind.
  auto listed = ListDir(P("Work"));
  ASSERT_TRUE(listed);
  for (const auto& n : *listed) EXPECT_FALSE(n.starts_with(".")) << n;

  // The names rsync used resolve with the same size and time, so a second
  // run transfers nothing.
  auto before = Digest();
  auto again = Sh("rsync -a --itemize-changes " + ShellQuote(src) + "/ Work/");
  EXPECT_TRUE(again.ok()) << again.Describe();
  EXPECT_EQ(ToString(Digest()), ToString(before));
  for (const auto& line : Lines(again.out)) {
    EXPECT_FALSE(line.starts_with(">f")) << "transferred again: " << line;
  }
}

TEST_P(ToolsTest, SedInPlaceReplacesTheMessageWithANewUid) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto uids = StoreUids(store(), "INBOX");
  uint32_t uid = uids.front();
  std::string original = StoreBytes(store(), "INBOX", uid);
  ASSERT_NE(original.find("Hello"), std::string::npos);
  std::string edited = original;
  for (size_t pos = 0; (pos = edited.find("Hello", pos)) != std::string::npos;) {
    edited.replace(pos, 5, "Howdy");
  }
  uint32_t next = StoreSnapshot(store(), "INBOX").next_uid;
  auto others_before = StoreMessages(store(), "INBOX");
  std::erase_if(others_before, [&](const MessageInfo& i) { return i.uid == uid; });

  auto sed = Sh("sed -i 's/Hello/Howdy/' INBOX/" + Name(uid));
  EXPECT_TRUE(sed.ok()) << sed.Describe();
  EXPECT_EQ(sed.err, "");
  auto after = StoreMessages(store(), "INBOX");
  std::vector<MessageInfo> added, others;
  for (const auto& info : after) {
    if (info.uid == uid) ADD_FAILURE() << "the original UID is still there";
    bool old = std::any_of(others_before.begin(), others_before.end(),
                           [&](const MessageInfo& o) { return o.uid == info.uid; });
    (old ? others : added).push_back(info);
  }
  ASSERT_EQ(added.size(), 1u);
  EXPECT_GE(added[0].uid, next);
  EXPECT_EQ(StoreBytes(store(), "INBOX", added[0].uid), edited);
  EXPECT_EQ(others, others_before) << "other messages changed";
  int err = 0;
  auto now = ReadFile(P("INBOX/" + Name(uid)), &err);
  ASSERT_TRUE(now) << "the edited message's name does not resolve: " << ErrnoName(err);
  EXPECT_EQ(*now, edited);
  auto listed = ListDir(P("INBOX"));
  ASSERT_TRUE(listed);
  for (const auto& n : *listed) EXPECT_FALSE(n.starts_with("sed")) << n;
}

TEST_P(ToolsTest, TarOfTheTreeAndExtractionIntoAnotherMount) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  std::string archive = Scratch("mail.tar");
  auto create = Sh("tar -cf " + ShellQuote(archive) + " .");
  EXPECT_TRUE(create.ok()) << create.Describe();
  EXPECT_EQ(create.err, "");
  auto list = RunShell("tar -tf " + ShellQuote(archive), "");
  ASSERT_TRUE(list.ok()) << list.Describe();
  std::set<std::string> entries;
  for (const auto& line : Lines(list.out)) entries.insert(line);
  std::set<std::string> expected = {"./"};
  for (const auto& mailbox : StoreMailboxes(store())) {
    expected.insert("./" + mailbox + "/");
    for (uint32_t uid : StoreUids(store(), mailbox)) {
      expected.insert("./" + mailbox + "/" + Name(uid));
    }
  }
  EXPECT_EQ(entries, expected);
  // The archived bytes are the stored ones.
  uint32_t uid = StoreUids(store(), "INBOX").front();
  auto member = RunShell("tar -xOf " + ShellQuote(archive) + " ./INBOX/" + Name(uid), "");
  ASSERT_TRUE(member.ok()) << member.Describe();
  EXPECT_EQ(member.out, StoreBytes(store(), "INBOX", uid));

  auto other = SecondMount({"Restored"});
  ASSERT_TRUE(other);
  auto extract = RunShell("tar -xf " + ShellQuote(archive) + " -C Restored", other->root());
  EXPECT_TRUE(extract.ok()) << extract.Describe();
  EXPECT_EQ(extract.err, "");
  for (const auto& mailbox : StoreMailboxes(store())) {
    ASSERT_TRUE(StoreHasMailbox(other->store(), "Restored/" + mailbox)) << mailbox;
    EXPECT_EQ(Contents(other->store(), "Restored/" + mailbox, false),
              Contents(store(), mailbox, false))
        << mailbox;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, ToolsTest, ::testing::ValuesIn(MountBackends()),
                         MountBackendName);

}  // namespace
}  // namespace mailfs::test
