// DESIGN.md "Operations": mkdir, rmdir, rename of mailboxes and messages,
// unlink and link, as syscalls, checked against the store. Refusals are in
// refusal_test.cc; the same operations through the tools in tools_test.cc.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

bool Contains(const std::vector<uint32_t>& v, uint32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

const MailboxDigest* FindMailbox(const StoreDigest& d, const std::string& name) {
  for (const auto& m : d.mailboxes) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

class OperationsTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    SeedStandardStore(store());
  }
  // A mount whose names and attributes the kernel does not cache, so every
  // lookup asks the driver: for checking what a name resolves to in the
  // driver, not in the kernel's dentry cache.
  void MountUncached() {
    MountOptions options;
    options.entry_timeout_seconds = 0;
    options.attr_timeout_seconds = 0;
    MountStore(options);
  }
};

TEST_P(OperationsTest, MkdirAddsAMailbox) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  ASSERT_SYSCALL_OK(::mkdir(P("Projects").c_str(), 0755));
  EXPECT_TRUE(StoreHasMailbox(store(), "Projects"));
  ASSERT_SYSCALL_OK(::mkdir(P("Archive/2025").c_str(), 0700));
  EXPECT_TRUE(StoreHasMailbox(store(), "Archive/2025"));
  ASSERT_SYSCALL_OK(::mkdir(P("Projects/Grüße").c_str(), 0755));
  EXPECT_TRUE(StoreHasMailbox(store(), "Projects/Grüße"));
  struct stat st;
  ASSERT_EQ(Stat(P("Archive/2025"), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  auto listed = ListDir(P("Archive/2025"));
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  EXPECT_TRUE(StoreMessages(store(), "Projects").empty());
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));
}

TEST_P(OperationsTest, RmdirDeletesAnEmptyMailbox) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  ASSERT_SYSCALL_OK(::rmdir(P("Work").c_str()));
  EXPECT_FALSE(StoreHasMailbox(store(), "Work"));
  struct stat st;
  EXPECT_EQ(ErrnoName(Stat(P("Work"), &st)), ErrnoName(ENOENT));
  // Emptied first through the mount, then removed.
  for (uint32_t uid : StoreUids(store(), "Archive/2024")) {
    ASSERT_SYSCALL_OK(::unlink(P("Archive/2024/" + Name(uid)).c_str()));
  }
  ASSERT_SYSCALL_OK(::rmdir(P("Archive/2024").c_str()));
  EXPECT_FALSE(StoreHasMailbox(store(), "Archive/2024"));
  EXPECT_TRUE(StoreHasMailbox(store(), "Archive"));
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));
}

TEST_P(OperationsTest, RenamingAMailboxTakesItsChildrenAlong) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = Digest();
  ASSERT_SYSCALL_OK(::rename(P("Archive").c_str(), P("Old").c_str()));
  auto after = Digest();
  EXPECT_FALSE(StoreHasMailbox(store(), "Archive"));
  EXPECT_FALSE(StoreHasMailbox(store(), "Archive/2024"));
  for (auto [from, to] : {std::pair{"Archive", "Old"}, std::pair{"Archive/2024", "Old/2024"}}) {
    auto* a = FindMailbox(before, from);
    auto* b = FindMailbox(after, to);
    ASSERT_TRUE(a && b) << from << " -> " << to;
    // The same mailbox: id, UID validity and every message kept.
    EXPECT_EQ(b->mailbox_id, a->mailbox_id);
    EXPECT_EQ(b->uid_validity, a->uid_validity);
    EXPECT_EQ(b->messages, a->messages);
  }
  struct stat st;
  EXPECT_EQ(ErrnoName(Stat(P("Archive"), &st)), ErrnoName(ENOENT));
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));

  // Into another mailbox.
  ASSERT_SYSCALL_OK(::rename(P("Work").c_str(), P("Old/2024/Work").c_str()));
  EXPECT_TRUE(StoreHasMailbox(store(), "Old/2024/Work"));
  EXPECT_FALSE(StoreHasMailbox(store(), "Work"));
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));
}

TEST_P(OperationsTest, RenamingInboxMovesItsMessagesAndLeavesInboxEmpty) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = Digest();
  ASSERT_SYSCALL_OK(::rename(P("INBOX").c_str(), P("Saved").c_str()));
  auto after = Digest();
  auto* old_inbox = FindMailbox(before, "INBOX");
  auto* saved = FindMailbox(after, "Saved");
  auto* new_inbox = FindMailbox(after, "INBOX");
  ASSERT_TRUE(old_inbox && saved && new_inbox);
  EXPECT_EQ(saved->messages, old_inbox->messages);
  EXPECT_EQ(saved->uid_validity, old_inbox->uid_validity);
  EXPECT_TRUE(new_inbox->messages.empty());
  auto listed = ListDir(P("INBOX"));
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty()) << ::testing::PrintToString(*listed);
  for (const auto& m : saved->messages) {
    auto bytes = ReadFile(P("Saved/" + Name(m.uid)));
    ASSERT_TRUE(bytes) << m.uid;
    EXPECT_EQ(ContentHash(*bytes), m.content_hash);
  }
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));
  // INBOX takes new mail again.
  auto w = WriteFile(P("INBOX/fresh.eml"), TestMessage("fresh"));
  EXPECT_TRUE(w.ok()) << w.Describe();
  EXPECT_EQ(StoreMessages(store(), "INBOX").size(), 1u);
}

TEST_P(OperationsTest, MoveToAnotherMailboxTakesItsNextUidAndKeepsFlagsAndDate) {
  // A message whose UID Archive does not have (else the move replaces).
  auto archive_before = StoreUids(store(), "Archive");
  uint32_t uid = 0;
  for (uint32_t u : StoreUids(store(), "INBOX")) {
    if (!Contains(archive_before, u)) uid = u;
  }
  ASSERT_NE(uid, 0u);
  ASSERT_TRUE(StoreMailbox(store(), "INBOX")
                  ->Update(uid, Flags("\\Answered $Moved"), FlagOp::kReplace)
                  .ok());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto source = *StoreInfo(store(), "INBOX", uid);
  std::string bytes = StoreBytes(store(), "INBOX", source.uid);
  uint32_t next = StoreSnapshot(store(), "Archive").next_uid;
  ASSERT_SYSCALL_OK(
      ::rename(P("INBOX/" + Name(source.uid)).c_str(), P("Archive/" + Name(source.uid)).c_str()));
  EXPECT_FALSE(Contains(StoreUids(store(), "INBOX"), source.uid));
  auto added = NewUids(archive_before, StoreUids(store(), "Archive"));
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(added[0], next);
  auto moved = StoreInfo(store(), "Archive", added[0]);
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->flags, source.flags);
  EXPECT_EQ(moved->internal_date, source.internal_date);
  EXPECT_EQ(StoreBytes(store(), "Archive", added[0]), bytes);
  struct stat st;
  EXPECT_EQ(ErrnoName(Stat(P("INBOX/" + Name(source.uid)), &st)), ErrnoName(ENOENT));
  auto read = ReadFile(P("Archive/" + Name(added[0])));
  ASSERT_TRUE(read);
  EXPECT_EQ(*read, bytes);
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));
}

TEST_P(OperationsTest, RenameWithinAMailboxIsAnAlias) {
  ASSERT_NO_FATAL_FAILURE(MountUncached());
  uint32_t uid = StoreUids(store(), "INBOX").front();
  std::string bytes = StoreBytes(store(), "INBOX", uid);
  struct stat canonical;
  ASSERT_EQ(Stat(P("INBOX/" + Name(uid)), &canonical), 0);
  auto before = Digest();
  ASSERT_SYSCALL_OK(::rename(P("INBOX/" + Name(uid)).c_str(), P("INBOX/important.eml").c_str()));
  EXPECT_EQ(ToString(Digest()), ToString(before));
  auto listed = ListDir(P("INBOX"));
  ASSERT_TRUE(listed);
  EXPECT_EQ(std::count(listed->begin(), listed->end(), Name(uid)), 1);
  EXPECT_EQ(std::count(listed->begin(), listed->end(), "important.eml"), 0);
  struct stat alias, again;
  ASSERT_EQ(Stat(P("INBOX/important.eml"), &alias), 0);
  EXPECT_EQ(alias.st_ino, canonical.st_ino);
  auto read = ReadFile(P("INBOX/important.eml"));
  ASSERT_TRUE(read);
  EXPECT_EQ(*read, bytes);
  ASSERT_EQ(Stat(P("INBOX/" + Name(uid)), &again), 0);
  EXPECT_EQ(again.st_ino, canonical.st_ino);
  EXPECT_EQ(GetXattr(P("INBOX/important.eml"), "user.mail.uid").value_or("?"), std::to_string(uid));
  // Flags set through the alias reach the message.
  EXPECT_EQ(SetXattr(P("INBOX/important.eml"), "user.mail.flagged", ""), 0);
  EXPECT_TRUE(StoreInfo(store(), "INBOX", uid)->flags.Has(SystemFlag::kFlagged));
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));
}

TEST_P(OperationsTest, RenameOntoAnExistingMessageReplacesIt) {
  ASSERT_NO_FATAL_FAILURE(MountUncached());
  auto uids = StoreUids(store(), "INBOX");
  ASSERT_GE(uids.size(), 3u);
  uint32_t x = uids[2], target = uids[0], other = uids[1];
  std::string x_bytes = StoreBytes(store(), "INBOX", x);
  auto other_before = StoreInfo(store(), "INBOX", other);
  ASSERT_SYSCALL_OK(::rename(P("INBOX/" + Name(x)).c_str(), P("INBOX/" + Name(target)).c_str()));
  auto after = StoreUids(store(), "INBOX");
  EXPECT_FALSE(Contains(after, target)) << "the replaced message was not expunged";
  EXPECT_TRUE(Contains(after, x)) << "a rename within a mailbox keeps the UID";
  EXPECT_EQ(after.size(), uids.size() - 1);
  EXPECT_EQ(StoreInfo(store(), "INBOX", other), other_before);
  int err = 0;
  auto read = ReadFile(P("INBOX/" + Name(target)), &err);
  ASSERT_TRUE(read) << "the replaced name does not resolve: " << ErrnoName(err);
  EXPECT_EQ(*read, x_bytes);
  auto listed = ListDir(P("INBOX"));
  ASSERT_TRUE(listed);
  EXPECT_EQ(std::count(listed->begin(), listed->end(), Name(target)), 0);
  EXPECT_EQ(std::count(listed->begin(), listed->end(), Name(x)), 1);
}

TEST_P(OperationsTest, MoveOntoAMessageInAnotherMailboxReplacesIt) {
  ASSERT_NO_FATAL_FAILURE(MountUncached());
  uint32_t x = StoreUids(store(), "Archive").front();
  // A target whose number differs from the source's: see
  // MoveOntoTheSameNumberInAnotherMailboxKeepsBoth for the other case.
  uint32_t target = 0;
  for (uint32_t uid : StoreUids(store(), "INBOX")) {
    if (uid != x) target = uid;
  }
  ASSERT_NE(target, 0u);
  std::string x_bytes = StoreBytes(store(), "Archive", x);
  auto x_info = StoreInfo(store(), "Archive", x);
  auto inbox_before = StoreUids(store(), "INBOX");
  uint32_t next = StoreSnapshot(store(), "INBOX").next_uid;
  ASSERT_SYSCALL_OK(::rename(P("Archive/" + Name(x)).c_str(), P("INBOX/" + Name(target)).c_str()));
  EXPECT_FALSE(Contains(StoreUids(store(), "Archive"), x));
  auto inbox_after = StoreUids(store(), "INBOX");
  EXPECT_FALSE(Contains(inbox_after, target));
  auto added = NewUids(inbox_before, inbox_after);
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(added[0], next);
  EXPECT_EQ(StoreBytes(store(), "INBOX", added[0]), x_bytes);
  EXPECT_EQ(StoreInfo(store(), "INBOX", added[0])->flags, x_info->flags);
  int err = 0;
  auto read = ReadFile(P("INBOX/" + Name(target)), &err);
  ASSERT_TRUE(read) << "the replaced name does not resolve: " << ErrnoName(err);
  EXPECT_EQ(*read, x_bytes);
}

// `mv Archive/1.eml INBOX/` asks the kernel to rename onto INBOX/1.eml, the
// same request as naming the target. When INBOX has a UID 1 of its own, that
// is a coincidence of numbering, not a request to destroy INBOX's message:
// the move happens, both messages are kept, and INBOX/1.eml stays INBOX's.
TEST_P(OperationsTest, MoveOntoTheSameNumberInAnotherMailboxKeepsBoth) {
  ASSERT_NO_FATAL_FAILURE(MountUncached());
  uint32_t x = StoreUids(store(), "Archive").front();
  ASSERT_TRUE(Contains(StoreUids(store(), "INBOX"), x)) << "the seed must share a UID";
  std::string x_bytes = StoreBytes(store(), "Archive", x);
  std::string resident_bytes = StoreBytes(store(), "INBOX", x);
  auto inbox_before = StoreUids(store(), "INBOX");
  uint32_t next = StoreSnapshot(store(), "INBOX").next_uid;
  auto mv = Sh("mv Archive/" + Name(x) + " INBOX/");
  ASSERT_TRUE(mv.ok()) << mv.Describe();
  EXPECT_FALSE(Contains(StoreUids(store(), "Archive"), x));
  auto inbox_after = StoreUids(store(), "INBOX");
  EXPECT_TRUE(Contains(inbox_after, x)) << "the resident message was destroyed";
  EXPECT_EQ(StoreBytes(store(), "INBOX", x), resident_bytes);
  ASSERT_EQ(NewUids(inbox_before, inbox_after), std::vector<uint32_t>{next});
  EXPECT_EQ(StoreBytes(store(), "INBOX", next), x_bytes);
  // The kernel is told that the name is the resident message again.
  EXPECT_TRUE(Eventually([&] { return ReadFile(P("INBOX/" + Name(x))) == resident_bytes; }))
      << "INBOX/" << Name(x) << " does not show the resident message";
}

TEST_P(OperationsTest, UnlinkExpungesOnlyThatUid) {
  // Other messages carry \Deleted: they must stay.
  auto uids = StoreUids(store(), "INBOX");
  ASSERT_GE(uids.size(), 3u);
  for (uint32_t uid : uids) {
    ASSERT_TRUE(StoreMailbox(store(), "INBOX")->Update(uid, Flags("\\Deleted"), FlagOp::kAdd).ok());
  }
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = Digest();
  uint32_t victim = uids[1];
  ASSERT_SYSCALL_OK(::unlink(P("INBOX/" + Name(victim)).c_str()));
  auto after = StoreUids(store(), "INBOX");
  std::vector<uint32_t> expected;
  for (uint32_t uid : uids) {
    if (uid != victim) expected.push_back(uid);
  }
  EXPECT_EQ(after, expected);
  // Everything else exactly as before.
  StoreDigest trimmed = before;
  for (auto& m : trimmed.mailboxes) {
    if (m.name != "INBOX") continue;
    for (const auto& d : m.messages) {
      if (d.uid == victim && d.flags.find("\\Seen") == std::string::npos) m.unseen -= 1;
    }
    std::erase_if(m.messages, [&](const MessageDigest& d) { return d.uid == victim; });
    m.exists -= 1;
  }
  EXPECT_EQ(ToString(Digest()), ToString(trimmed));
  struct stat st;
  EXPECT_EQ(ErrnoName(Stat(P("INBOX/" + Name(victim)), &st)), ErrnoName(ENOENT));
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));
}

TEST_P(OperationsTest, UnlinkOfAnAliasExpungesItsMessage) {
  ASSERT_NO_FATAL_FAILURE(MountUncached());
  auto before = StoreUids(store(), "Work");
  ASSERT_TRUE(WriteFile(P("Work/temp.eml"), TestMessage("temp")).ok());
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u);
  ASSERT_SYSCALL_OK(::unlink(P("Work/temp.eml").c_str()));
  EXPECT_EQ(StoreUids(store(), "Work"), before);
  struct stat st;
  EXPECT_EQ(ErrnoName(Stat(P("Work/" + Name(added[0])), &st)), ErrnoName(ENOENT));
}

TEST_P(OperationsTest, LinkCopiesIntoAnotherMailbox) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto source = StoreMessages(store(), "INBOX")[1];
  std::string bytes = StoreBytes(store(), "INBOX", source.uid);
  uint32_t next = StoreSnapshot(store(), "Work").next_uid;
  auto inbox_before = StoreMessages(store(), "INBOX");
  ASSERT_SYSCALL_OK(
      ::link(P("INBOX/" + Name(source.uid)).c_str(), P("Work/" + Name(source.uid)).c_str()));
  EXPECT_EQ(StoreMessages(store(), "INBOX"), inbox_before) << "the source changed";
  auto work = StoreMessages(store(), "Work");
  ASSERT_EQ(work.size(), 1u);
  EXPECT_EQ(work[0].uid, next);
  EXPECT_EQ(work[0].flags, source.flags);
  EXPECT_EQ(work[0].internal_date, source.internal_date);
  EXPECT_EQ(work[0].email_id, source.email_id) << "copies of one message share the email id";
  EXPECT_EQ(StoreBytes(store(), "Work", work[0].uid), bytes);
  struct stat st;
  ASSERT_EQ(Stat(P("INBOX/" + Name(source.uid)), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
  ASSERT_EQ(Stat(P("Work/" + Name(work[0].uid)), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
  auto read = ReadFile(P("Work/" + Name(work[0].uid)));
  ASSERT_TRUE(read);
  EXPECT_EQ(*read, bytes);
  EXPECT_EQ(MountedTree(root()), ExpectedTree(store()));
}

INSTANTIATE_TEST_SUITE_P(Backends, OperationsTest, ::testing::ValuesIn(MountBackends()),
                         MountBackendName);

}  // namespace
}  // namespace mailfs::test
