// DESIGN.md "Writing": a file created in a mailbox is appended when its last
// writer closes it, and close() returns the append's result.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

bool Listed(const std::string& dir, const std::string& name) {
  auto names = ListDir(dir);
  return names && std::count(names->begin(), names->end(), name) > 0;
}

class WriteTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    SeedStandardStore(store());
  }
};

TEST_P(WriteTest, CreateWriteCloseAppendsOneMessage) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = StoreUids(store(), "INBOX");
  uint32_t next = StoreSnapshot(store(), "INBOX").next_uid;
  std::string message = TestMessage("written", std::string(200000, 'x'));
  // Small writes, to cross many write requests.
  auto w = WriteFile(P("INBOX/draft.eml"), message, 0, 1000);
  ASSERT_TRUE(w.ok()) << w.Describe();

  // Stored when close returned.
  auto added = NewUids(before, StoreUids(store(), "INBOX"));
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(added[0], next);
  EXPECT_TRUE(StoreBytes(store(), "INBOX", added[0]) == message);

  // readdir shows the canonical name only.
  EXPECT_TRUE(Listed(P("INBOX"), Name(added[0])));
  EXPECT_FALSE(Listed(P("INBOX"), "draft.eml"));
  // The name used at creation keeps resolving to the message.
  struct stat alias, canonical;
  ASSERT_EQ(Stat(P("INBOX/draft.eml"), &alias), 0);
  ASSERT_EQ(Stat(P("INBOX/" + Name(added[0])), &canonical), 0);
  EXPECT_EQ(alias.st_ino, canonical.st_ino);
  EXPECT_EQ(static_cast<size_t>(alias.st_size), message.size());
  auto read = ReadFile(P("INBOX/draft.eml"));
  ASSERT_TRUE(read);
  EXPECT_TRUE(*read == message);
  EXPECT_EQ(GetXattr(P("INBOX/draft.eml"), "user.mail.uid").value_or("?"),
            std::to_string(added[0]));
  // Nothing else changed.
  EXPECT_EQ(StoreMailboxes(store()),
            (std::vector<std::string>{"Archive", "Archive/2024", "INBOX", "Work"}));
}

TEST_P(WriteTest, AliasResolvesWhenTheKernelAsksAgain) {
  // With no kernel caching every lookup reaches the driver.
  MountOptions options;
  options.entry_timeout_seconds = 0;
  options.attr_timeout_seconds = 0;
  ASSERT_NO_FATAL_FAILURE(MountStore(options));
  auto before = StoreUids(store(), "Work");
  ASSERT_TRUE(WriteFile(P("Work/keep.eml"), TestMessage("keep")).ok());
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u);
  ASSERT_TRUE(ListDir(P("Work")));
  struct stat st;
  ASSERT_EQ(Stat(P("Work/keep.eml"), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), TestMessage("keep").size());
  auto read = ReadFile(P("Work/keep.eml"));
  ASSERT_TRUE(read);
  EXPECT_EQ(*read, TestMessage("keep"));
}

TEST_P(WriteTest, ShellRedirectionAppends) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = StoreUids(store(), "Work");
  // The shell opens with O_WRONLY|O_CREAT|O_TRUNC; printf may write in pieces.
  auto sh =
      Sh("printf 'Subject: redirected\\nMessage-ID: <redir@mailfs.test>\\n\\nbody %d\\n' 42"
         " > Work/redirected.eml");
  ASSERT_TRUE(sh.ok()) << sh.Describe();
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(StoreBytes(store(), "Work", added[0]),
            "Subject: redirected\nMessage-ID: <redir@mailfs.test>\n\nbody 42\n");
  // The same through the syscalls the shell uses.
  auto w = WriteFile(P("Work/trunc.eml"), TestMessage("trunc"), O_WRONLY | O_CREAT | O_TRUNC);
  EXPECT_TRUE(w.ok()) << w.Describe();
}

TEST_P(WriteTest, CpIntoAMailboxAppends) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  std::string message = TestMessage("copied-in");
  WriteLocalFile(mount_->scratch() + "/letter.txt", message);
  auto before = StoreUids(store(), "Work");
  auto cp = Sh("cp " + ShellQuote(mount_->scratch() + "/letter.txt") + " Work/");
  ASSERT_TRUE(cp.ok()) << cp.Describe();
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(StoreBytes(store(), "Work", added[0]), message);
  auto cat = Sh("cat Work/letter.txt");
  EXPECT_TRUE(cat.ok()) << cat.Describe();
  EXPECT_EQ(cat.out, message);
}

TEST_P(WriteTest, NotAMessageFailsAtCloseAndLeavesNothing) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = Digest();
  auto w = WriteFile(P("INBOX/notes.eml"), "remember the milk\nSubject: no\n\nbody\n");
  EXPECT_EQ(ErrnoName(w.open_errno), ErrnoName(0));
  EXPECT_EQ(ErrnoName(w.write_errno), ErrnoName(0));
  ASSERT_TRUE(w.close_called);
  EXPECT_EQ(ErrnoName(w.close_errno), ErrnoName(EINVAL));
  EXPECT_EQ(ToString(Digest()), ToString(before));
  // The name disappears.
  struct stat st;
  EXPECT_TRUE(Eventually([&] { return Stat(P("INBOX/notes.eml"), &st) == ENOENT; },
                         std::chrono::seconds(2)))
      << "the name of a refused file still resolves";
  EXPECT_FALSE(Listed(P("INBOX"), "notes.eml"));
  // And the same name can be used again.
  auto again = WriteFile(P("INBOX/notes.eml"), TestMessage("notes"));
  EXPECT_TRUE(again.ok()) << again.Describe();
}

TEST_P(WriteTest, CpOfANonMessageFails) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  WriteLocalFile(mount_->scratch() + "/list.txt", "eggs\nmilk\n");
  auto before = Digest();
  auto cp = Sh("cp " + ShellQuote(mount_->scratch() + "/list.txt") + " INBOX/list.txt");
  EXPECT_NE(cp.exit_code, 0) << cp.Describe();
  EXPECT_FALSE(cp.timed_out);
  EXPECT_NE(cp.err.find("Invalid argument"), std::string::npos) << cp.err;
  EXPECT_EQ(ToString(Digest()), ToString(before));
  struct stat st;
  EXPECT_TRUE(Eventually([&] { return Stat(P("INBOX/list.txt"), &st) == ENOENT; },
                         std::chrono::seconds(2)));
}

TEST_P(WriteTest, ZeroByteFileStoresNothing) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = Digest();
  ScopedFd fd(::open(P("INBOX/empty.eml").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_GE(fd.get(), 0) << ErrnoName(errno);
  fd.Close();  // its result is not specified for an empty file
  EXPECT_EQ(ToString(Digest()), ToString(before));
  auto touch = Sh("touch INBOX/touched.eml");
  EXPECT_EQ(ToString(Digest()), ToString(before)) << touch.Describe();
  EXPECT_FALSE(Listed(P("INBOX"), "empty.eml"));
  EXPECT_FALSE(Listed(P("INBOX"), "touched.eml"));
}

TEST_P(WriteTest, FlagsSetBeforeCloseBecomeTheMessageFlags) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = StoreUids(store(), "Work");
  std::string path = P("Work/flagged.eml");
  ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_GE(fd.get(), 0) << ErrnoName(errno);
  std::string message = TestMessage("flagged");
  ASSERT_EQ(::write(fd.get(), message.data(), message.size()),
            static_cast<ssize_t>(message.size()));
  // By descriptor and by path, while the file is open. (The tools, which
  // run in child processes, are in ToolsOnAFileBeingWrittenDoNotStoreItEarly.)
  std::string flags = "\\Seen $Project";
  EXPECT_SYSCALL_OK(::fsetxattr(fd.get(), "user.mail.flags", flags.data(), flags.size(), 0));
  EXPECT_EQ(SetXattr(path, "user.mail.flagged", ""), 0);
  EXPECT_EQ(SetXattr(path, "user.mail.keyword.$Later", ""), 0);
  EXPECT_EQ(RemoveXattr(path, "user.mail.seen"), 0);
  // Reading them back before the close shows what will be stored.
  auto pending = GetXattr(path, "user.mail.flags");
  ASSERT_TRUE(pending);
  auto parsed = FlagSet::Parse(*pending);
  ASSERT_TRUE(parsed.ok()) << *pending;
  EXPECT_EQ(*parsed, Flags("\\Flagged $Project $Later"));
  // Nothing is stored before the close.
  EXPECT_EQ(StoreUids(store(), "Work"), before);
  ASSERT_SYSCALL_OK(fd.Close());

  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u);
  auto info = StoreInfo(store(), "Work", added[0]);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->flags, Flags("\\Flagged $Project $Later"));
  EXPECT_EQ(StoreBytes(store(), "Work", added[0]), message);
}

TEST_P(WriteTest, DateSetBeforeCloseBecomesTheInternalDate) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  // futimens on the open descriptor.
  {
    auto before = StoreUids(store(), "Work");
    ScopedFd fd(::open(P("Work/dated.eml").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ASSERT_GE(fd.get(), 0) << ErrnoName(errno);
    std::string message = TestMessage("dated");
    ASSERT_EQ(::write(fd.get(), message.data(), message.size()),
              static_cast<ssize_t>(message.size()));
    struct timespec times[2] = {{1'234'567'890, 0}, {981'173'106, 500'000'000}};
    EXPECT_SYSCALL_OK(::futimens(fd.get(), times));
    struct stat st;
    ASSERT_EQ(Stat(P("Work/dated.eml"), &st), 0);
    EXPECT_EQ(st.st_mtim.tv_sec, 981'173'106);
    ASSERT_SYSCALL_OK(fd.Close());
    auto added = NewUids(before, StoreUids(store(), "Work"));
    ASSERT_EQ(added.size(), 1u);
    EXPECT_EQ(StoreInfo(store(), "Work", added[0])->internal_date, 981'173'106);
    ASSERT_EQ(Stat(P("Work/" + Name(added[0])), &st), 0);
    EXPECT_EQ(st.st_mtim.tv_sec, 981'173'106);
  }
  // utimensat by path while the descriptor keeps the file open.
  {
    auto before = StoreUids(store(), "Work");
    ScopedFd fd(
        ::open(P("Work/touched.eml").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ASSERT_GE(fd.get(), 0) << ErrnoName(errno);
    std::string message = TestMessage("touched");
    ASSERT_EQ(::write(fd.get(), message.data(), message.size()),
              static_cast<ssize_t>(message.size()));
    struct timespec times[2] = {{UTIME_NOW, 0}, {1'049'522'828, 0}};
    EXPECT_SYSCALL_OK(::utimensat(AT_FDCWD, P("Work/touched.eml").c_str(), times, 0));
    ASSERT_SYSCALL_OK(fd.Close());
    auto added = NewUids(before, StoreUids(store(), "Work"));
    ASSERT_EQ(added.size(), 1u);
    EXPECT_EQ(StoreInfo(store(), "Work", added[0])->internal_date, 1'049'522'828);
  }
}

// A child process gets a copy of every descriptor (even close-on-exec ones,
// until its exec), and its close sends the mount a flush: that is not the
// last writer closing, so nothing may be stored yet. This is what a shell
// script does with `exec 3>file; setfattr ... file; touch -d ... file`.
TEST_P(WriteTest, ToolsOnAFileBeingWrittenDoNotStoreItEarly) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = StoreUids(store(), "Work");
  ScopedFd fd(
      ::open(P("Work/scripted.eml").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_GE(fd.get(), 0) << ErrnoName(errno);
  std::string head = "Subject: scripted\r\nMessage-ID: <scripted@mailfs.test>\r\n\r\n";
  ASSERT_EQ(::write(fd.get(), head.data(), head.size()), static_cast<ssize_t>(head.size()));
  auto tools =
      Sh("setfattr -n user.mail.seen Work/scripted.eml && "
         "setfattr -n 'user.mail.keyword.$Later' Work/scripted.eml && "
         "touch -d '2003-04-05 06:07:08 UTC' Work/scripted.eml");
  EXPECT_TRUE(tools.ok()) << tools.Describe();
  EXPECT_EQ(StoreUids(store(), "Work"), before) << "stored while the writer still had it open";
  std::string tail = "the rest of the body\r\n";
  EXPECT_EQ(::write(fd.get(), tail.data(), tail.size()), static_cast<ssize_t>(tail.size()))
      << ErrnoName(errno);
  ASSERT_SYSCALL_OK(fd.Close());
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u) << ::testing::PrintToString(StoreMessages(store(), "Work"));
  EXPECT_EQ(StoreBytes(store(), "Work", added[0]), head + tail);
  auto info = StoreInfo(store(), "Work", added[0]);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->flags, Flags("\\Seen $Later"));
  EXPECT_EQ(info->internal_date, 1'049'522'828);
}

TEST_P(WriteTest, InternalDateAttributeSetsTheDateAndOtherReadOnlyOnesAreIgnored) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  // The value as the mount itself shows it on an existing message.
  auto source = StoreMessages(store(), "Archive");
  ASSERT_FALSE(source.empty());
  auto date = GetXattr(P("Archive/" + Name(source[0].uid)), "user.mail.internaldate");
  ASSERT_TRUE(date);
  auto before = StoreUids(store(), "Work");
  ScopedFd fd(::open(P("Work/carried.eml").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_GE(fd.get(), 0) << ErrnoName(errno);
  std::string message = TestMessage("carried");
  ASSERT_EQ(::write(fd.get(), message.data(), message.size()),
            static_cast<ssize_t>(message.size()));
  EXPECT_SYSCALL_OK(::fsetxattr(fd.get(), "user.mail.internaldate", date->data(), date->size(), 0));
  // What cp -a copies along: accepted and ignored.
  for (const char* attr :
       {"user.mail.uid", "user.mail.emailid", "user.mail.threadid", "user.mail.recent"}) {
    std::string v = GetXattr(P("Archive/" + Name(source[0].uid)), attr).value_or("x");
    SCOPED_TRACE(attr);
    EXPECT_SYSCALL_OK(::fsetxattr(fd.get(), attr, v.data(), v.size(), 0));
  }
  ASSERT_SYSCALL_OK(fd.Close());
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u);
  auto info = StoreInfo(store(), "Work", added[0]);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->internal_date, source[0].internal_date);
  EXPECT_NE(info->uid, 0u);
  EXPECT_TRUE(info->flags.empty());
}

TEST_P(WriteTest, ScratchDotFilesAreNeverStored) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = Digest();
  std::string message = TestMessage("scratch");
  auto w = WriteFile(P("INBOX/.draft.eml.swp"), message);
  ASSERT_TRUE(w.ok()) << w.Describe();
  EXPECT_EQ(ToString(Digest()), ToString(before));
  // It behaves like a file for its maker: stat, read, append, reread.
  struct stat st;
  ASSERT_EQ(Stat(P("INBOX/.draft.eml.swp"), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), message.size());
  auto read = ReadFile(P("INBOX/.draft.eml.swp"));
  ASSERT_TRUE(read);
  EXPECT_EQ(*read, message);
  auto more = WriteFile(P("INBOX/.draft.eml.swp"), "more\r\n", O_WRONLY | O_APPEND);
  EXPECT_TRUE(more.ok()) << more.Describe();
  read = ReadFile(P("INBOX/.draft.eml.swp"));
  ASSERT_TRUE(read);
  EXPECT_EQ(*read, message + "more\r\n");
  // Not a message even when it holds garbage, and removable.
  auto junk = WriteFile(P("INBOX/.junk"), "not a message at all");
  EXPECT_TRUE(junk.ok()) << junk.Describe();
  EXPECT_SYSCALL_OK(::unlink(P("INBOX/.junk").c_str()));
  EXPECT_EQ(Stat(P("INBOX/.junk"), &st), ENOENT);
  EXPECT_EQ(ToString(Digest()), ToString(before));
}

TEST_P(WriteTest, RenamingAScratchFileToAVisibleNameAppendsIt) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  std::string message = TestMessage("saved-by-rename");
  auto w = WriteFile(P("Work/.save.tmp"), message);
  ASSERT_TRUE(w.ok()) << w.Describe();
  struct timespec times[2] = {{UTIME_OMIT, 0}, {1'111'111'111, 0}};
  EXPECT_SYSCALL_OK(::utimensat(AT_FDCWD, P("Work/.save.tmp").c_str(), times, 0));
  EXPECT_EQ(SetXattr(P("Work/.save.tmp"), "user.mail.flags", "\\Seen"), 0);
  auto before = StoreUids(store(), "Work");
  EXPECT_SYSCALL_OK(::rename(P("Work/.save.tmp").c_str(), P("Work/saved.eml").c_str()));
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(StoreBytes(store(), "Work", added[0]), message);
  auto info = StoreInfo(store(), "Work", added[0]);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->internal_date, 1'111'111'111);
  EXPECT_EQ(info->flags, Flags("\\Seen"));
  struct stat st;
  EXPECT_EQ(ErrnoName(Stat(P("Work/.save.tmp"), &st)), ErrnoName(ENOENT));
  auto read = ReadFile(P("Work/saved.eml"));
  ASSERT_TRUE(read);
  EXPECT_EQ(*read, message);
  EXPECT_TRUE(Listed(P("Work"), Name(added[0])));
}

// The kernel sends the release of a closed file after close() has returned,
// without waiting: rename right after close must not depend on it. Holding
// a second descriptor (a dup: the release waits for both) makes the late
// release certain instead of a matter of timing.
TEST_P(WriteTest, RenamingAScratchFileRightAfterCloseAppendsItBeforeRenameReturns) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  std::string message = TestMessage("renamed-after-close");
  ScopedFd fd(::open(P("Work/.partial").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_GE(fd.get(), 0) << ErrnoName(errno);
  ASSERT_EQ(::write(fd.get(), message.data(), message.size()),
            static_cast<ssize_t>(message.size()));
  ScopedFd held(::dup(fd.get()));
  ASSERT_GE(held.get(), 0) << ErrnoName(errno);
  ASSERT_SYSCALL_OK(fd.Close());
  auto before = StoreUids(store(), "Work");
  EXPECT_SYSCALL_OK(::rename(P("Work/.partial").c_str(), P("Work/partial.eml").c_str()));
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(StoreBytes(store(), "Work", added[0]), message);
  ASSERT_SYSCALL_OK(held.Close());
  // The release changes nothing: still one message, the same bytes.
  EXPECT_EQ(NewUids(before, StoreUids(store(), "Work")), added);
  auto read = ReadFile(P("Work/" + Name(added[0])));
  ASSERT_TRUE(read);
  EXPECT_EQ(*read, message);
}

TEST_P(WriteTest, RenamingANonMessageScratchFileIsRefused) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  ASSERT_TRUE(WriteFile(P("Work/.list"), "eggs\nmilk\n").ok());
  auto before = Digest();
  EXPECT_ERRNO(EINVAL, ::rename(P("Work/.list").c_str(), P("Work/list.eml").c_str()));
  EXPECT_EQ(ToString(Digest()), ToString(before));
  struct stat st;
  EXPECT_EQ(ErrnoName(Stat(P("Work/list.eml"), &st)), ErrnoName(ENOENT));
}

TEST_P(WriteTest, ChmodAndChownAreAcceptedAndChangeNothing) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto uid = StoreUids(store(), "INBOX").front();
  std::string file = P("INBOX/" + Name(uid));
  struct stat file_before, dir_before, after;
  ASSERT_EQ(Stat(file, &file_before), 0);
  ASSERT_EQ(Stat(P("Work"), &dir_before), 0);
  auto digest = Digest();
  EXPECT_SYSCALL_OK(::chmod(file.c_str(), 0600));
  EXPECT_SYSCALL_OK(::chown(file.c_str(), 1234, 5678));
  EXPECT_SYSCALL_OK(::chmod(P("Work").c_str(), 0700));
  EXPECT_SYSCALL_OK(::chown(P("Work").c_str(), 1234, 5678));
  auto tools = Sh("chmod 600 INBOX/*.eml && chown 1:1 INBOX/*.eml && chmod -R go-rx Archive");
  EXPECT_TRUE(tools.ok()) << tools.Describe();
  ASSERT_EQ(Stat(file, &after), 0);
  EXPECT_EQ(after.st_mode, file_before.st_mode);
  EXPECT_EQ(after.st_uid, file_before.st_uid);
  EXPECT_EQ(after.st_gid, file_before.st_gid);
  ASSERT_EQ(Stat(P("Work"), &after), 0);
  EXPECT_EQ(after.st_mode, dir_before.st_mode);
  EXPECT_EQ(after.st_uid, dir_before.st_uid);
  EXPECT_EQ(ToString(Digest()), ToString(digest));

  // On a file being written too.
  ScopedFd fd(::open(P("Work/mode.eml").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  ASSERT_GE(fd.get(), 0) << ErrnoName(errno);
  std::string message = TestMessage("mode");
  ASSERT_EQ(::write(fd.get(), message.data(), message.size()),
            static_cast<ssize_t>(message.size()));
  EXPECT_SYSCALL_OK(::fchmod(fd.get(), 0400));
  EXPECT_SYSCALL_OK(::fchown(fd.get(), 42, 42));
  EXPECT_SYSCALL_OK(fd.Close());
  EXPECT_EQ(StoreMessages(store(), "Work").size(), 1u);
}

TEST_P(WriteTest, TheMessageIsStoredWhenTheLastWriterCloses) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = StoreUids(store(), "Work");
  std::string path = P("Work/two-writers.eml");
  ScopedFd first(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_GE(first.get(), 0) << ErrnoName(errno);
  std::string head = "Subject: two writers\r\nMessage-ID: <two@mailfs.test>\r\n\r\n";
  ASSERT_EQ(::write(first.get(), head.data(), head.size()), static_cast<ssize_t>(head.size()));
  ScopedFd second(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  ASSERT_GE(second.get(), 0) << "a second writer of a file being written: " << ErrnoName(errno);
  EXPECT_SYSCALL_OK(first.Close());
  EXPECT_EQ(StoreUids(store(), "Work"), before) << "stored before the last writer closed";
  std::string tail = "body from the second writer\r\n";
  ASSERT_EQ(::write(second.get(), tail.data(), tail.size()), static_cast<ssize_t>(tail.size()));
  ASSERT_SYSCALL_OK(second.Close());
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(StoreBytes(store(), "Work", added[0]), head + tail);
}

// A descriptor dup()ed before the close that appended the file may write
// more; that is appended again at its close. The message stored first
// keeps its bytes meanwhile, although a Maildir store made the very file
// written into its message (the write goes to a copy).
TEST_P(WriteTest, WritesAfterAnAppendLeaveTheAppendedMessageAsItWas) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = StoreUids(store(), "Work");
  std::string path = P("Work/written-twice.eml");
  ScopedFd first(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_GE(first.get(), 0) << ErrnoName(errno);
  ScopedFd copy(::dup(first.get()));
  ASSERT_GE(copy.get(), 0);
  std::string head = "Subject: written twice\r\nMessage-ID: <twice@mailfs.test>\r\n\r\nfirst\r\n";
  ASSERT_EQ(::write(first.get(), head.data(), head.size()), static_cast<ssize_t>(head.size()));
  EXPECT_SYSCALL_OK(first.Close());
  auto appended = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(appended.size(), 1u) << "not appended at the close";
  EXPECT_EQ(StoreBytes(store(), "Work", appended[0]), head);

  std::string tail = "second\r\n";
  ASSERT_EQ(::write(copy.get(), tail.data(), tail.size()), static_cast<ssize_t>(tail.size()));
  EXPECT_EQ(StoreBytes(store(), "Work", appended[0]), head)
      << "the stored message changed with the file";
  ASSERT_SYSCALL_OK(copy.Close());
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u) << "the first version is replaced";
  EXPECT_NE(added[0], appended[0]);
  EXPECT_EQ(StoreBytes(store(), "Work", added[0]), head + tail);
}

TEST_P(WriteTest, AReaderOfAFileBeingWrittenDoesNotStoreIt) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto before = StoreUids(store(), "Work");
  std::string path = P("Work/read-while-writing.eml");
  ScopedFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_GE(fd.get(), 0) << ErrnoName(errno);
  std::string message = TestMessage("rw");
  ASSERT_EQ(::write(fd.get(), message.data(), message.size()),
            static_cast<ssize_t>(message.size()));
  std::string back(message.size(), '\0');
  EXPECT_EQ(::pread(fd.get(), back.data(), back.size(), 0), static_cast<ssize_t>(message.size()));
  EXPECT_EQ(back, message);
  EXPECT_EQ(StoreUids(store(), "Work"), before);
  ASSERT_SYSCALL_OK(fd.Close());
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(StoreBytes(store(), "Work", added[0]), message);
}

// Once a stored message has been read, the kernel opens files without asking
// the mount (no-open: warm reads cost nothing). Files being written are
// created, not opened, so they keep their handle: close() still returns the
// append's result, and another descriptor can read what was written so far.
TEST_P(WriteTest, CloseStillReportsTheAppendAfterReadsStopAskingTheMount) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  std::string stored = P("INBOX/" + Name(StoreUids(store(), "INBOX").front()));
  ASSERT_TRUE(ReadFile(stored));
  {
    ScopedFd fd(::open(stored.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_GE(fd.get(), 0) << "the kernel still asks the mount before opening: "
                           << ErrnoName(errno);
    EXPECT_EQ(::write(fd.get(), "x", 1), -1);
    EXPECT_EQ(ErrnoName(errno), ErrnoName(EACCES));
  }

  auto before = StoreUids(store(), "Work");
  auto bad = WriteFile(P("Work/not-a-message.eml"), "no header here\n\nbody\n");
  EXPECT_EQ(ErrnoName(bad.close_errno), ErrnoName(EINVAL)) << bad.Describe();
  EXPECT_EQ(StoreUids(store(), "Work"), before);

  std::string path = P("Work/after-read.eml");
  ScopedFd writer(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  ASSERT_GE(writer.get(), 0) << ErrnoName(errno);
  std::string message = TestMessage("after read", std::string(300000, 'y'));
  ASSERT_EQ(::write(writer.get(), message.data(), message.size()),
            static_cast<ssize_t>(message.size()));
  EXPECT_EQ(ReadFile(path), message) << "a second descriptor reads the file being written";
  EXPECT_EQ(StoreUids(store(), "Work"), before) << "stored before its writer closed";
  ASSERT_SYSCALL_OK(writer.Close());
  auto added = NewUids(before, StoreUids(store(), "Work"));
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(StoreBytes(store(), "Work", added[0]), message);
  EXPECT_EQ(ReadFile(P("Work/" + Name(added[0]))), message);
}

TEST_P(WriteTest, ManyFilesInARowGetIncreasingUids) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  std::vector<std::string> written;
  for (int i = 0; i < 50; ++i) {
    written.push_back(TestMessage("row-" + std::to_string(i)));
    auto w = WriteFile(P("Work/row-" + std::to_string(i) + ".eml"), written.back());
    ASSERT_TRUE(w.ok()) << i << ": " << w.Describe();
  }
  auto messages = StoreMessages(store(), "Work");
  ASSERT_EQ(messages.size(), written.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i > 0) {
      EXPECT_LT(messages[i - 1].uid, messages[i].uid);
    }
    EXPECT_EQ(StoreBytes(store(), "Work", messages[i].uid), written[i]);
  }
  auto listed = ListDir(P("Work"));
  ASSERT_TRUE(listed);
  std::vector<std::string> expected;
  for (const auto& m : messages) expected.push_back(Name(m.uid));
  EXPECT_EQ(*listed, expected);
}

INSTANTIATE_TEST_SUITE_P(Backends, WriteTest, ::testing::ValuesIn(MountBackends()),
                         MountBackendName);

}  // namespace
}  // namespace mailfs::test
