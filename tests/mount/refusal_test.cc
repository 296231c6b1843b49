// Every refusal of DESIGN.md, one test each per backend: the syscall fails
// with the errno the contract names, the store is exactly as it was
// ("Every refusal above leaves the store exactly as it was"), and the mount
// still shows what the store holds.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

struct Refusal {
  std::string name;  // a test name
  // Errnos the contract allows (usually one).
  std::vector<int> expected;
  // The operation, returning 0 or the errno it failed with.
  std::function<int(const MountedStore&)> act;
  // Store changes before mounting (read-only mailboxes, extra mailboxes).
  std::function<void(MailboxSet&, const MountBackend&)> seed;
  // Steps after mounting and before the "before" digest.
  std::function<void(const MountedStore&)> prepare;
};

void PrintTo(const Refusal& r, std::ostream* os) { *os << r.name; }

uint32_t Uid(const MountedStore& m, const std::string& mailbox, size_t index) {
  auto uids = StoreUids(m.store(), mailbox);
  EXPECT_LT(index, uids.size()) << mailbox;
  return index < uids.size() ? uids[index] : 0;
}
std::string Msg(const MountedStore& m, const std::string& mailbox, size_t index) {
  return m.Path(mailbox + "/" + std::to_string(Uid(m, mailbox, index)) + ".eml");
}
std::string Unused(const MountedStore& m, const std::string& mailbox) {
  return m.Path(mailbox + "/" + std::to_string(StoreSnapshot(m.store(), mailbox).next_uid + 7) +
                ".eml");
}
int OpenErrno(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}
// Once a stored message has been read, the kernel no longer asks the
// mount before opening a file (no-open): a write-open of a message then
// succeeds and its first write (or truncation) is what is refused.
int WriteErrnoAfterRead(const MountedStore& m, const std::string& path, int flags) {
  if (!ReadFile(Msg(m, "INBOX", 1))) return -1;
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int err = ::write(fd, "x", 1) < 0 ? errno : 0;
  ::close(fd);
  return err;
}
int Mkdir(const std::string& p) { return ErrnoOf(::mkdir(p.c_str(), 0755)); }
int Rmdir(const std::string& p) { return ErrnoOf(::rmdir(p.c_str())); }
int Rename(const std::string& a, const std::string& b) {
  return ErrnoOf(::rename(a.c_str(), b.c_str()));
}
int Link(const std::string& a, const std::string& b) {
  return ErrnoOf(::link(a.c_str(), b.c_str()));
}
int Unlink(const std::string& p) { return ErrnoOf(::unlink(p.c_str())); }
int GetErrno(const std::string& path, const std::string& name) {
  int err = 0;
  auto v = GetXattr(path, name, &err);
  return v ? 0 : err;
}

void ReadOnlyArchive(MailboxSet& store, const MountBackend& backend) {
  auto st = backend.make_readonly(store, "Archive");
  if (!st.ok()) ADD_FAILURE() << "make_readonly: " << st.ToString();
}

std::vector<Refusal> Refusals() {
  std::vector<Refusal> r;
  auto add = [&r](std::string name, std::vector<int> expected,
                  std::function<int(const MountedStore&)> act,
                  std::function<void(MailboxSet&, const MountBackend&)> seed = {},
                  std::function<void(const MountedStore&)> prepare = {}) {
    r.push_back({std::move(name), std::move(expected), std::move(act), std::move(seed),
                 std::move(prepare)});
  };

  // mkdir
  add("MkdirExisting", {EEXIST}, [](auto& m) { return Mkdir(m.Path("Work")); });
  add("MkdirInbox", {EEXIST}, [](auto& m) { return Mkdir(m.Path("INBOX")); });
  add("MkdirExistingNested", {EEXIST}, [](auto& m) { return Mkdir(m.Path("Archive/2024")); });
  add("MkdirReservedName", {EINVAL}, [](auto& m) { return Mkdir(m.Path(".hidden")); });
  add("MkdirReservedNestedName", {EINVAL}, [](auto& m) { return Mkdir(m.Path("Archive/.x")); });

  // rmdir
  add("RmdirWithMessages", {ENOTEMPTY}, [](auto& m) { return Rmdir(m.Path("Archive/2024")); });
  add("RmdirWithMessagesAndChildren", {ENOTEMPTY},
      [](auto& m) { return Rmdir(m.Path("Archive")); });
  add(
      "RmdirWithChildrenOnly", {ENOTEMPTY}, [](auto& m) { return Rmdir(m.Path("Lists")); },
      [](MailboxSet& s, auto&) {
        EXPECT_TRUE(s.AddMailbox("Lists").ok());
        EXPECT_TRUE(s.AddMailbox("Lists/fuse").ok());
      });
  add(
      "RmdirNoselectParent", {ENOTEMPTY}, [](auto& m) { return Rmdir(m.Path("A")); },
      [](MailboxSet& s, auto&) { EXPECT_TRUE(s.AddMailbox("A/B").ok()); });
  add(
      "RmdirEmptyInbox", {EPERM}, [](auto& m) { return Rmdir(m.Path("INBOX")); },
      [](MailboxSet& s, auto&) {
        auto uids = StoreUids(s, "INBOX");
        EXPECT_TRUE(StoreMailbox(s, "INBOX")->Delete(uids).ok());
      });
  // INBOX is never deleted; which reason is given first is not fixed.
  add("RmdirInboxWithMessages", {EPERM, ENOTEMPTY}, [](auto& m) { return Rmdir(m.Path("INBOX")); });
  add("RmdirMissing", {ENOENT}, [](auto& m) { return Rmdir(m.Path("Nope")); });

  // rename of a mailbox
  add("RenameMailboxOntoEmptyMailbox", {EEXIST, ENOTEMPTY},
      [](auto& m) { return Rename(m.Path("Archive"), m.Path("Work")); });
  add("RenameMailboxOntoFullMailbox", {EEXIST, ENOTEMPTY},
      [](auto& m) { return Rename(m.Path("Work"), m.Path("Archive")); });
  add("RenameMailboxOntoInbox", {EEXIST, ENOTEMPTY},
      [](auto& m) { return Rename(m.Path("Work"), m.Path("INBOX")); });
  add("RenameMailboxIntoItself", {EINVAL},
      [](auto& m) { return Rename(m.Path("Archive"), m.Path("Archive/2024/Archive")); });
  add("RenameMailboxToReservedName", {EINVAL},
      [](auto& m) { return Rename(m.Path("Work"), m.Path(".Work")); });
  add("RenameMissingMailbox", {ENOENT},
      [](auto& m) { return Rename(m.Path("Nope"), m.Path("Other")); });

  // messages
  add("MoveMissingMessage", {ENOENT},
      [](auto& m) { return Rename(Unused(m, "INBOX"), m.Path("Archive/x.eml")); });
  add(
      "MoveMessageExpungedBehindTheMount", {ENOENT},
      [](auto& m) {
        return Rename(
            m.Path("INBOX/" + std::to_string(StoreSnapshot(m.store(), "INBOX").next_uid - 1) +
                   ".eml"),
            m.Path("Archive/x.eml"));
      },
      {},
      [](const MountedStore& m) {
        // Known to the kernel, then gone from the store.
        uint32_t uid = StoreUids(m.store(), "INBOX").back();
        EXPECT_EQ(uid + 1, StoreSnapshot(m.store(), "INBOX").next_uid);
        struct stat st;
        EXPECT_EQ(Stat(m.Path("INBOX/" + std::to_string(uid) + ".eml"), &st), 0);
        uint32_t uids[] = {uid};
        EXPECT_TRUE(StoreMailbox(m.store(), "INBOX")->Delete(uids).ok());
      });
  add("UnlinkMissingMessage", {ENOENT}, [](auto& m) { return Unlink(Unused(m, "INBOX")); });
  add("LinkMissingMessage", {ENOENT},
      [](auto& m) { return Link(Unused(m, "INBOX"), m.Path("Archive/x.eml")); });
  add("OpenMessageWriteOnly", {EACCES},
      [](auto& m) { return OpenErrno(Msg(m, "INBOX", 0), O_WRONLY); });
  add("OpenMessageReadWrite", {EACCES},
      [](auto& m) { return OpenErrno(Msg(m, "INBOX", 0), O_RDWR); });
  add("OpenMessageAppend", {EACCES},
      [](auto& m) { return OpenErrno(Msg(m, "INBOX", 0), O_WRONLY | O_APPEND); });
  add("OpenMessageTruncate", {EACCES},
      [](auto& m) { return OpenErrno(Msg(m, "INBOX", 0), O_WRONLY | O_TRUNC); });
  add("WriteMessageOpenedWriteOnlyAfterRead", {EACCES},
      [](auto& m) { return WriteErrnoAfterRead(m, Msg(m, "INBOX", 0), O_WRONLY); });
  add("WriteMessageOpenedReadWriteAfterRead", {EACCES},
      [](auto& m) { return WriteErrnoAfterRead(m, Msg(m, "INBOX", 0), O_RDWR); });
  add("AppendToMessageAfterRead", {EACCES},
      [](auto& m) { return WriteErrnoAfterRead(m, Msg(m, "INBOX", 0), O_WRONLY | O_APPEND); });
  add("OpenMessageTruncateAfterRead", {EACCES},
      [](auto& m) { return WriteErrnoAfterRead(m, Msg(m, "INBOX", 0), O_WRONLY | O_TRUNC); });
  add("CreateOverMessageAfterRead", {EACCES}, [](auto& m) {
    return WriteErrnoAfterRead(m, Msg(m, "INBOX", 0), O_WRONLY | O_CREAT | O_TRUNC);
  });
  add("CreateOverMessage", {EACCES},  // what the shell's > does
      [](auto& m) { return OpenErrno(Msg(m, "INBOX", 0), O_WRONLY | O_CREAT | O_TRUNC); });
  add("TruncateMessage", {EACCES},
      [](auto& m) { return ErrnoOf(::truncate(Msg(m, "INBOX", 0).c_str(), 0)); });
  add("TruncateMessageLonger", {EACCES},
      [](auto& m) { return ErrnoOf(::truncate(Msg(m, "INBOX", 0).c_str(), 1 << 20)); });
  add("WriteNotAMessage", {EINVAL}, [](auto& m) {
    auto w =
        WriteFile(m.Path("INBOX/notes.eml"), "this first line is not a header field\n\nbody\n");
    if (w.open_errno || w.write_errno) return w.open_errno ? w.open_errno : w.write_errno;
    return w.close_errno;
  });
  add("WriteBlankFirstLine", {EINVAL}, [](auto& m) {
    auto w = WriteFile(m.Path("INBOX/blank.eml"), "\nSubject: late\n\nbody\n");
    if (w.open_errno || w.write_errno) return w.open_errno ? w.open_errno : w.write_errno;
    return w.close_errno;
  });

  // read-only mailbox
  add(
      "CreateInReadOnlyMailbox", {EROFS},
      [](auto& m) { return OpenErrno(m.Path("Archive/new.eml"), O_WRONLY | O_CREAT | O_EXCL); },
      ReadOnlyArchive);
  add(
      "UnlinkInReadOnlyMailbox", {EROFS}, [](auto& m) { return Unlink(Msg(m, "Archive", 0)); },
      ReadOnlyArchive);
  add(
      "MoveOutOfReadOnlyMailbox", {EROFS},
      [](auto& m) { return Rename(Msg(m, "Archive", 0), m.Path("INBOX/x.eml")); }, ReadOnlyArchive);
  add(
      "MoveIntoReadOnlyMailbox", {EROFS},
      [](auto& m) { return Rename(Msg(m, "INBOX", 0), m.Path("Archive/x.eml")); }, ReadOnlyArchive);
  add(
      "MoveOntoMessageInReadOnlyMailbox", {EROFS},
      [](auto& m) { return Rename(Msg(m, "INBOX", 0), Msg(m, "Archive", 0)); }, ReadOnlyArchive);
  add(
      "LinkIntoReadOnlyMailbox", {EROFS},
      [](auto& m) { return Link(Msg(m, "INBOX", 0), m.Path("Archive/x.eml")); }, ReadOnlyArchive);
  add(
      "SetFlagsInReadOnlyMailbox", {EROFS},
      [](auto& m) { return SetXattr(Msg(m, "Archive", 0), "user.mail.flags", "\\Flagged"); },
      ReadOnlyArchive);
  add(
      "AddSystemFlagInReadOnlyMailbox", {EROFS},
      [](auto& m) { return SetXattr(Msg(m, "Archive", 1), "user.mail.seen", ""); },
      ReadOnlyArchive);
  add(
      "RemoveSystemFlagInReadOnlyMailbox", {EROFS},
      [](auto& m) { return RemoveXattr(Msg(m, "Archive", 0), "user.mail.seen"); }, ReadOnlyArchive);
  add(
      "AddKeywordInReadOnlyMailbox", {EROFS},
      [](auto& m) { return SetXattr(Msg(m, "Archive", 0), "user.mail.keyword.$Junk", ""); },
      ReadOnlyArchive);

  // attributes
  add("FlagsUnknownSystemFlag", {EINVAL},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.flags", "\\Bogus"); });
  add("FlagsRecent", {EINVAL},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.flags", "\\Recent"); });
  add("FlagsMalformedKeyword", {EINVAL},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.flags", "bad(kw"); });
  add("FlagsOneBadAmongGood", {EINVAL}, [](auto& m) {
    return SetXattr(Msg(m, "INBOX", 0), "user.mail.flags", "\\Answered $Ok \\Bogus");
  });
  add("FlagsControlCharacter", {EINVAL},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.flags", "$A\x01"); });
  add("KeywordMalformed", {EINVAL},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.keyword.bad(kw", ""); });
  add("KeywordSystemFlagSpelling", {EINVAL},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.keyword.\\Seen", ""); });
  add("KeywordEmpty", {EINVAL},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.keyword.", ""); });
  add("SetUnknownMessageAttribute", {ENOTSUP},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.colour", "red"); });
  add("SetUnknownSystemFlagAttribute", {ENOTSUP},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.recentish", ""); });
  add("SetForeignMessageAttribute", {ENOTSUP},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.comment", "hi"); });
  add("SetUnknownMailboxAttribute", {ENOTSUP},
      [](auto& m) { return SetXattr(m.Path("INBOX"), "user.mail.colour", "red"); });
  add("SetMessageAttributeOnMailbox", {ENOTSUP},
      [](auto& m) { return SetXattr(m.Path("INBOX"), "user.mail.seen", ""); });
  add("GetUnknownMessageAttribute", {ENODATA},
      [](auto& m) { return GetErrno(Msg(m, "INBOX", 0), "user.mail.colour"); });
  add("GetForeignMessageAttribute", {ENODATA},
      [](auto& m) { return GetErrno(Msg(m, "INBOX", 0), "user.comment"); });
  add("GetUnknownMailboxAttribute", {ENODATA},
      [](auto& m) { return GetErrno(m.Path("INBOX"), "user.mail.colour"); });
  add("GetAbsentFlag", {ENODATA},
      [](auto& m) { return GetErrno(Msg(m, "INBOX", 0), "user.mail.draft"); });
  // Read-only attributes of a stored message or a mailbox. DESIGN.md names
  // no errno; status.h maps "writing a read-only attribute" to
  // kNotPermitted (EPERM). EACCES is accepted as the other reasonable answer.
  add("SetUidAttribute", {EPERM, EACCES},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.uid", "99"); });
  add("SetInternalDateOfStoredMessage", {EPERM, EACCES},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.internaldate", "1"); });
  add("SetRecentAttribute", {EPERM, EACCES},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.recent", ""); });
  add("SetEmailIdAttribute", {EPERM, EACCES},
      [](auto& m) { return SetXattr(Msg(m, "INBOX", 0), "user.mail.emailid", "Mx"); });
  add("RemoveUidAttribute", {EPERM, EACCES},
      [](auto& m) { return RemoveXattr(Msg(m, "INBOX", 0), "user.mail.uid"); });
  add("SetMailboxUidNext", {EPERM, EACCES},
      [](auto& m) { return SetXattr(m.Path("INBOX"), "user.mail.uidnext", "1000"); });
  add("SetMailboxUidValidity", {EPERM, EACCES},
      [](auto& m) { return SetXattr(m.Path("INBOX"), "user.mail.uidvalidity", "1"); });
  return r;
}

class RefusalTest : public ::testing::TestWithParam<std::tuple<MountBackend, Refusal>> {};

TEST_P(RefusalTest, FailsWithTheContractErrnoAndLeavesTheStoreAsItWas) {
  const auto& [backend, refusal] = GetParam();
  using SeedFunction = void (*)(MailboxSet&, const MountBackend&);
  const SeedFunction* seed = refusal.seed.target<SeedFunction>();
  if (seed && *seed == ReadOnlyArchive && !backend.make_readonly) {
    GTEST_SKIP() << "backend " << backend.name << " cannot make a mailbox read-only";
  }
  std::shared_ptr<MailboxSet> store = backend.make();
  ASSERT_TRUE(store) << backend.name << " made no store";
  SeedStandardStore(*store);
  if (refusal.seed) refusal.seed(*store, backend);
  ASSERT_FALSE(HasFailure());
  auto mount = MountedStore::Create(store);
  ASSERT_TRUE(mount);
  // Let the mount see everything once, as a user's shell would.
  EXPECT_EQ(MountedTree(mount->root()), ExpectedTree(*store));
  if (refusal.prepare) refusal.prepare(*mount);
  ASSERT_FALSE(HasFailure());

  auto before = TakeStoreDigest(*store);
  ASSERT_EQ(before.error, "");
  int err = refusal.act(*mount);
  std::vector<std::string> allowed;
  for (int e : refusal.expected) allowed.push_back(ErrnoName(e));
  EXPECT_NE(std::find(refusal.expected.begin(), refusal.expected.end(), err),
            refusal.expected.end())
      << refusal.name << " gave " << ErrnoName(err) << ", expected one of "
      << ::testing::PrintToString(allowed);
  EXPECT_EQ(ToString(TakeStoreDigest(*store)), ToString(before)) << "the store changed";
  EXPECT_TRUE(Eventually([&] { return MountedTree(mount->root()) == ExpectedTree(*store); },
                         std::chrono::seconds(2)));
  EXPECT_EQ(MountedTree(mount->root()), ExpectedTree(*store))
      << "the mount disagrees with the store";
}

std::string RefusalTestName(
    const ::testing::TestParamInfo<std::tuple<MountBackend, Refusal>>& info) {
  return std::get<0>(info.param).name + "_" + std::get<1>(info.param).name;
}

INSTANTIATE_TEST_SUITE_P(Contract, RefusalTest,
                         ::testing::Combine(::testing::ValuesIn(MountBackends()),
                                            ::testing::ValuesIn(Refusals())),
                         RefusalTestName);

}  // namespace
}  // namespace mailfs::test
