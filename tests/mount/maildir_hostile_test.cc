// Hostile or broken data in a Maildir, through a real mount (issue 3,
// point 6): what `ls`, `cat`, `grep`, `getfattr` and `setfattr` show and
// answer when the store holds a corrupt uidlist line, uidlist names that
// leave the directory, symlinks, more than 26 keywords, files that are not
// messages, entries that cannot be read, and broken folders. The bad input
// is logged with its path, skipped and never followed; every good message
// keeps its UID and bytes; the mount keeps working and what it writes
// afterwards leaves a uidlist that parses cleanly, for Dovecot too.
//
// The backend-level twin (with the unreadable-file case run as another
// user) is tests/unit/maildir_hostile_test.cc.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/maildir/format/keywords.h"
#include "backends/maildir/format/mutf7.h"
#include "backends/maildir/maildir_backend.h"
#include "tests/support/hand_maildir.h"
#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

using namespace std::string_literals;

class MaildirHostileMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.Path("mail");
    outside_ = tmp_.Path("outside");
    ASSERT_TRUE(MakeMaildirDirs(root_));
    ASSERT_EQ(::mkdir(outside_.c_str(), 0755), 0) << std::strerror(errno);
    canary_path_ = outside_ + "/canary";
    canary_ = HostileTestMessage("CANARY-outside-the-maildir");
    ASSERT_TRUE(WriteBytes(canary_path_, canary_));
  }

  // Mounts the Maildir as `mailfs maildir:ROOT` would.
  void Mount() {
    MaildirOptions options;
    options.root = root_;
    options.lock_timeout = std::chrono::seconds(5);
    auto store = OpenMaildirMailboxSet(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    mount_ = MountedStore::Create(*store);
    ASSERT_NE(mount_, nullptr);
  }

  std::string P(std::string_view relative) const { return mount_->Path(relative); }
  CommandResult Sh(const std::string& command) const { return mount_->Run(command); }

  // `ls -1` of a mailbox directory of the mount, as UIDs; anything listed
  // that is not <uid>.eml is a failure.
  std::vector<uint32_t> LsUids(std::string_view mailbox) {
    auto ls = Sh("ls -1 " + ShellQuote(P(mailbox)));
    EXPECT_TRUE(ls.ok()) << ls.Describe();
    std::vector<uint32_t> uids;
    for (const std::string& name : Lines(ls.out)) {
      size_t digits = name.find_first_not_of("0123456789");
      if (digits == 0 || digits == std::string::npos || name.substr(digits) != ".eml") {
        ADD_FAILURE() << "ls " << mailbox << " shows '" << name << "'";
        continue;
      }
      uids.push_back(static_cast<uint32_t>(std::stoul(name)));
    }
    std::sort(uids.begin(), uids.end());
    return uids;
  }

  // What the mount shows for a mailbox: UID -> bytes read with cat. Each
  // file's user.mail.uid must be its name's UID.
  std::map<uint32_t, std::string> MountContents(std::string_view mailbox) {
    std::map<uint32_t, std::string> out;
    for (uint32_t uid : LsUids(mailbox)) {
      std::string file = ShellQuote(P(std::string(mailbox) + "/" + Name(uid)));
      auto cat = Sh("cat " + file);
      EXPECT_TRUE(cat.ok()) << cat.Describe();
      auto attr = Sh("getfattr --only-values -n user.mail.uid " + file);
      EXPECT_TRUE(attr.ok()) << attr.Describe();
      EXPECT_EQ(attr.out, std::to_string(uid));
      out[uid] = cat.out;
    }
    return out;
  }

  // Appends with cp through the mount; returns the new UID (0 on failure).
  uint32_t CpIntoInbox(std::string_view tag) {
    std::string source = mount_->scratch() + "/" + std::string(tag) + ".eml";
    WriteLocalFile(source, HostileTestMessage(tag));
    auto before = LsUids("INBOX");
    auto cp = Sh("cp " + ShellQuote(source) + " " + ShellQuote(P("INBOX/")));
    EXPECT_TRUE(cp.ok()) << cp.Describe();
    auto fresh = NewUids(before, LsUids("INBOX"));
    EXPECT_EQ(fresh.size(), 1u);
    return fresh.empty() ? 0 : fresh.front();
  }

  void ExpectCanaryUnread() {
    auto atime = AtimeOf(canary_path_);
    ASSERT_TRUE(atime.has_value());
    EXPECT_EQ(atime->tv_sec, 1000000000) << canary_path_ << " was read";
  }

  LogCapture log_;  // first: before any store logs
  TempDir tmp_;
  std::string root_, outside_, canary_path_, canary_;
  std::unique_ptr<MountedStore> mount_;
};

// 1. Corrupt uidlist lines: garbage, a non-number UID, UIDs out of order,
// an unterminated last line. The good messages keep their UIDs; the files
// of the bad lines become new messages, in the order of their names' times
// from N on (Dovecot's rule); a cp through the mount then leaves a uidlist
// that parses cleanly and that Dovecot reads the same way.
TEST_F(MaildirHostileMountTest, CorruptUidlistLinesKeepOtherUidsAndTheMountWorks) {
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1);
  HandMessage g2 = WriteHandMessage(root_, "good-2", 2, false, ":2,FS");
  HandMessage g4 = WriteHandMessage(root_, "good-4", 4, false, ":2,");
  std::vector<HandMessage> victims = {WriteHandMessage(root_, "victim-no-line", 10),
                                      WriteHandMessage(root_, "victim-x-uid", 11),
                                      WriteHandMessage(root_, "victim-unordered", 12, true),
                                      WriteHandMessage(root_, "victim-unterminated", 13)};
  const uint32_t header_next = 5;
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-uidlist",
                         HandUidlistHeader(header_next) + "1 :" + g1.base +
                             "\n\x01\xff garbage\n2 :" + g2.base + "\nx3 :" + victims[1].base +
                             "\n4 :" + g4.base + "\n3 :" + victims[2].base +
                             "\n6 :" + victims[3].base));
  ASSERT_NO_FATAL_FAILURE(Mount());

  std::map<uint32_t, std::string> expected = {{1, g1.bytes}, {2, g2.bytes}, {4, g4.bytes}};
  uint32_t next = std::max<uint32_t>(header_next, 4 + 1);
  for (const HandMessage& v : victims) expected[next++] = v.bytes;
  EXPECT_EQ(MountContents("INBOX"), expected);
  auto flags = Sh("getfattr --only-values -n user.mail.flags " + ShellQuote(P("INBOX/2.eml")));
  EXPECT_EQ(flags.out, "\\Flagged \\Seen") << flags.Describe();
  EXPECT_TRUE(log_.Has({root_ + "/dovecot-uidlist"})) << log_.Dump();

  uint32_t appended = CpIntoInbox("appended-by-cp");
  EXPECT_EQ(appended, next);
  expected[appended] = HostileTestMessage("appended-by-cp");
  EXPECT_EQ(MountContents("INBOX"), expected);
  EXPECT_EQ(UidlistMismatch(root_, kHandUidValidity, expected), "");
  auto validity = Sh("getfattr --only-values -n user.mail.uidvalidity " + ShellQuote(P("INBOX")));
  EXPECT_EQ(validity.out, std::to_string(kHandUidValidity)) << validity.Describe();
  mount_->Unmount();
  EXPECT_EQ(DovecotMismatch(root_, tmp_.Path("dovecot-copy"), kHandUidValidity, expected), "");
  for (const HandMessage& m : {g1, g2, g4}) EXPECT_EQ(ReadBytes(m.path), m.bytes) << m.path;
}

// 2 and 3. Uidlist names with '/' or "..", and symlinks in cur/ and new/
// (to a file outside the Maildir and to another message): nothing shows
// them, and nothing outside the Maildir is read, through any tool.
TEST_F(MaildirHostileMountTest, PathNamesAndSymlinksAreNeverFollowed) {
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1);
  HandMessage g2 = WriteHandMessage(root_, "good-2", 2, true);
  HandMessage x{"cur-x", HostileTestMessage("cur-x"), "x", root_ + "/cur/x", 0};
  ASSERT_TRUE(WriteBytes(x.path, x.bytes));
  const std::string out_base = "1700000600.M10P4242.hostile,S=" + std::to_string(canary_.size());
  const std::string twin_base = "1700000660.M11P4242.hostile,S=" + std::to_string(g1.bytes.size());
  ASSERT_EQ(::symlink(canary_path_.c_str(), (root_ + "/cur/" + out_base + ":2,S").c_str()), 0);
  ASSERT_EQ(::symlink(g1.path.c_str(), (root_ + "/cur/" + twin_base + ":2,S").c_str()), 0);
  ASSERT_EQ(::symlink("../../outside/canary", (root_ + "/new/1700000720.M12P4242.h").c_str()), 0);
  const uint32_t header_next = 8;
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-uidlist",
                         HandUidlistHeader(header_next) + "1 :" + g1.base + "\n2 :" + g2.base +
                             "\n3 :../../outside/canary\n4 :cur/x\n5 :" + canary_path_ +
                             "\n6 :" + out_base + "\n7 :" + twin_base + "\n"));
  ASSERT_TRUE(BackdateAtime(canary_path_));
  ASSERT_NO_FATAL_FAILURE(Mount());

  // x has no usable line: it is a new message, UID N.
  std::map<uint32_t, std::string> expected = {{1, g1.bytes}, {2, g2.bytes}, {header_next, x.bytes}};
  EXPECT_EQ(MountContents("INBOX"), expected);
  auto ls_root = Sh("ls -1A " + ShellQuote(P("")));
  EXPECT_EQ(Lines(ls_root.out), std::vector<std::string>{"INBOX"}) << ls_root.Describe();
  auto grep = Sh("grep -r CANARY " + ShellQuote(P("")));
  EXPECT_EQ(grep.exit_code, 1) << "grep found the file outside the Maildir: " << grep.Describe();
  for (uint32_t uid = 3; uid < header_next; ++uid) {
    auto cat = Sh("cat " + ShellQuote(P("INBOX/" + Name(uid))));
    EXPECT_NE(cat.exit_code, 0) << "UID " << uid << " reads: " << cat.out;
    EXPECT_EQ(cat.out, "");
  }
  ExpectCanaryUnread();
  EXPECT_EQ(ReadBytes(canary_path_), canary_);
  ASSERT_TRUE(BackdateAtime(canary_path_));

  uint32_t appended = CpIntoInbox("appended-by-cp");
  EXPECT_GT(appended, header_next);
  expected[appended] = HostileTestMessage("appended-by-cp");
  EXPECT_EQ(MountContents("INBOX"), expected);
  EXPECT_EQ(UidlistMismatch(root_, kHandUidValidity, expected), "");
  ExpectCanaryUnread();
  EXPECT_EQ(Sorted(ListDir(outside_).value_or(std::vector<std::string>{})),
            std::vector<std::string>{"canary"});
}

// 4. More than 26 keywords: a 27th distinct keyword is ENOSPC (kNoSpace
// through ToErrno), and the store is left exactly as it was.
TEST_F(MaildirHostileMountTest, TwentySeventhKeywordIsEnospcAndChangesNothing) {
  std::string keywords;
  for (int i = 0; i < 26; ++i) keywords += std::to_string(i) + " $kw" + std::to_string(i) + "\n";
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-keywords", keywords));
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1, false, ":2,Sa");
  ASSERT_TRUE(
      WriteBytes(root_ + "/dovecot-uidlist", HandUidlistHeader(2) + "1 :" + g1.base + "\n"));
  ASSERT_NO_FATAL_FAILURE(Mount());
  const std::string file = P("INBOX/1.eml");
  const std::string quoted = ShellQuote(file);
  auto flags_before = Sh("getfattr --only-values -n user.mail.flags " + quoted);
  EXPECT_EQ(flags_before.out, "\\Seen $kw0") << flags_before.Describe();
  const auto files_before = MessageFilesByBase(root_);
  const auto cur_before = Sorted(ListDir(root_ + "/cur").value_or(std::vector<std::string>{}));

  auto add = Sh("setfattr -n 'user.mail.keyword.$Extra' " + quoted);
  EXPECT_NE(add.exit_code, 0);
  EXPECT_NE(add.err.find("No space left on device"), std::string::npos) << add.Describe();
  EXPECT_EQ(SetXattr(file, "user.mail.keyword.$Extra", ""), ENOSPC);
  EXPECT_EQ(SetXattr(file, "user.mail.flags", "\\Seen $kw0 $Extra"), ENOSPC);

  auto flags_after = Sh("getfattr --only-values -n user.mail.flags " + quoted);
  EXPECT_EQ(flags_after.out, flags_before.out);
  EXPECT_EQ(ReadBytes(root_ + "/dovecot-keywords"), keywords);
  EXPECT_EQ(MessageFilesByBase(root_), files_before);
  EXPECT_EQ(Sorted(ListDir(root_ + "/cur").value_or(std::vector<std::string>{})), cur_before);

  // A keyword that has a letter still works.
  auto known = Sh("setfattr -n 'user.mail.keyword.$kw25' " + quoted);
  EXPECT_TRUE(known.ok()) << known.Describe();
  auto flags_known = Sh("getfattr --only-values -n user.mail.flags " + quoted);
  EXPECT_EQ(flags_known.out, "\\Seen $kw0 $kw25");
  EXPECT_EQ(ReadBytes(root_ + "/dovecot-keywords"), keywords);
}

// 4. A dovecot-keywords with more than 26 lines and bad lines: read without
// a crash; the good lines give the message its keywords.
TEST_F(MaildirHostileMountTest, HostileKeywordsFileIsRead) {
  std::string keywords = "0 $Junk\n1 $Todo\n26 $TooFar\n-1 $Neg\ngarbage\n\xff\0\x01\n"s +
                         "2 bad(kw\n3\n99999999999999999999 $Huge\n";
  for (int i = 100; i < 140; ++i) keywords += std::to_string(i) + " $kw" + std::to_string(i) + "\n";
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-keywords", keywords));
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1, false, ":2,Sabcd");
  ASSERT_TRUE(
      WriteBytes(root_ + "/dovecot-uidlist", HandUidlistHeader(2) + "1 :" + g1.base + "\n"));
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto dump = Sh("getfattr -d " + ShellQuote(P("INBOX/1.eml")));
  EXPECT_TRUE(dump.ok()) << dump.Describe();
  auto flags = Sh("getfattr --only-values -n user.mail.flags " + ShellQuote(P("INBOX/1.eml")));
  EXPECT_EQ(flags.out, "\\Seen $Junk $Todo") << flags.Describe();
  EXPECT_EQ(MountContents("INBOX"), (std::map<uint32_t, std::string>{{1, g1.bytes}}));
  EXPECT_TRUE(log_.Has({root_ + "/dovecot-keywords"})) << log_.Dump();
}

// 5. Files that are not messages (binary, empty, text without a header) in
// new/, at mount time and delivered while mounted: no UID, logged, left
// alone; the good messages around them appear as usual.
TEST_F(MaildirHostileMountTest, NonMessagesAreSkippedAndTheMountKeepsWorking) {
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1);
  std::vector<std::pair<std::string, std::string>> junk = {
      {root_ + "/new/1700000300.M300P4242.hostile",
       "\x7f"
       "ELF\x02\x01\0\0\xff"s},
      {root_ + "/new/1700000301.M301P4242.hostile", ""},
      {root_ + "/new/1700000302.M302P4242.hostile", "hello, no header here\n"},
  };
  for (const auto& [path, bytes] : junk) ASSERT_TRUE(WriteBytes(path, bytes));
  HandMessage g2 = WriteHandMessage(root_, "good-2-new", 310, true);
  const uint32_t header_next = 2;
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-uidlist",
                         HandUidlistHeader(header_next) + "1 :" + g1.base + "\n"));
  ASSERT_NO_FATAL_FAILURE(Mount());
  std::map<uint32_t, std::string> expected = {{1, g1.bytes}, {header_next, g2.bytes}};
  EXPECT_EQ(MountContents("INBOX"), expected);
  for (const auto& [path, bytes] : junk) EXPECT_TRUE(log_.Has({path})) << path << log_.Dump();

  // Delivered while mounted, as an MDA does (tmp/, then rename into new/).
  const std::string live = root_ + "/new/1700000400.M400P4242.hostile";
  ASSERT_TRUE(WriteBytes(root_ + "/tmp/live", "\0\0\0\x01 garbage"s));
  ASSERT_EQ(::rename((root_ + "/tmp/live").c_str(), live.c_str()), 0);
  junk.emplace_back(live, "\0\0\0\x01 garbage"s);
  HandMessage g3 = WriteHandMessage(root_, "good-3-live", 401, true);
  expected[header_next + 1] = g3.bytes;
  EXPECT_TRUE(Eventually([&] { return LsUids("INBOX").size() >= expected.size(); }));
  EXPECT_EQ(MountContents("INBOX"), expected);
  EXPECT_TRUE(Eventually([&] { return log_.Has({live}); })) << log_.Dump();

  uint32_t appended = CpIntoInbox("appended-by-cp");
  EXPECT_EQ(appended, header_next + 2);
  expected[appended] = HostileTestMessage("appended-by-cp");
  EXPECT_EQ(MountContents("INBOX"), expected);
  EXPECT_EQ(UidlistMismatch(root_, kHandUidValidity, expected), "");
  for (const auto& [path, bytes] : junk) EXPECT_EQ(ReadBytes(path), bytes) << path;
}

// 6. Entries that cannot be read as a message. The mount serves from this
// test process, which runs as root, and root reads a mode-000 file; so the
// mode-000 case runs at backend level as uid 5000 (the unit test). Here:
// a directory and FIFOs with message names, with uidlist lines (opening a
// FIFO would block forever: the watchdog fails a test that hangs).
TEST_F(MaildirHostileMountTest, DirectoriesAndFifosWithMessageNamesDoNotBreakTheMount) {
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1);
  HandMessage g4 = WriteHandMessage(root_, "good-4", 4);
  const std::string dir_base = "1700000120.M2P4242.hostile,S=10";
  const std::string fifo_base = "1700000180.M3P4242.hostile,S=10";
  ASSERT_EQ(::mkdir((root_ + "/cur/" + dir_base + ":2,S").c_str(), 0755), 0);
  ASSERT_EQ(::mkfifo((root_ + "/cur/" + fifo_base + ":2,S").c_str(), 0644), 0);
  ASSERT_EQ(::mkfifo((root_ + "/new/1700000500.M5P4242.hostile").c_str(), 0644), 0);
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-uidlist", HandUidlistHeader(5) + "1 :" + g1.base +
                                                         "\n2 :" + dir_base + "\n3 :" + fifo_base +
                                                         "\n4 :" + g4.base + "\n"));
  ASSERT_NO_FATAL_FAILURE(Mount());
  std::map<uint32_t, std::string> expected = {{1, g1.bytes}, {4, g4.bytes}};
  EXPECT_EQ(MountContents("INBOX"), expected);
  for (uint32_t uid : {2u, 3u}) {
    auto cat = Sh("cat " + ShellQuote(P("INBOX/" + Name(uid))));
    EXPECT_NE(cat.exit_code, 0) << cat.out;
  }
  auto grep = Sh("grep -rc body " + ShellQuote(P("INBOX")));
  EXPECT_TRUE(grep.ok()) << grep.Describe();
  EXPECT_EQ(Lines(grep.out).size(), expected.size()) << grep.out;

  // A FIFO delivered while mounted, then a good message.
  ASSERT_EQ(::mkfifo((root_ + "/new/1700000560.M6P4242.hostile").c_str(), 0644), 0);
  HandMessage g5 = WriteHandMessage(root_, "good-5-live", 7, true);
  expected[5] = g5.bytes;
  EXPECT_TRUE(Eventually([&] { return LsUids("INBOX").size() >= expected.size(); }));
  EXPECT_EQ(MountContents("INBOX"), expected);
}

// 7. Broken folders: a `.X` that is a plain file, a folder name that is not
// UTF-8 (ignored, logged, left alone), one that is not valid modified UTF-7
// (shown literally, MAILDIR.md §7), and a folder whose dovecot-uidlist is a
// directory. None of them stops the rest of the mount.
TEST_F(MaildirHostileMountTest, BrokenFoldersLeaveTheRestWorking) {
  HandMessage g1 = WriteHandMessage(root_, "inbox-1", 1);
  ASSERT_TRUE(
      WriteBytes(root_ + "/dovecot-uidlist", HandUidlistHeader(2) + "1 :" + g1.base + "\n"));
  ASSERT_TRUE(WriteBytes(root_ + "/.Plain", HostileTestMessage("plain-file")));
  const std::string bad_entry = ".bad\xff\xfename";
  ASSERT_TRUE(MakeMaildirDirs(root_ + "/" + bad_entry));
  HandMessage b1 = WriteHandMessage(root_ + "/" + bad_entry, "bad-1", 2);
  ASSERT_TRUE(MakeMaildirDirs(root_ + "/.Tom & Jerry"));
  HandMessage t1 = WriteHandMessage(root_ + "/.Tom & Jerry", "tom-1", 3);
  const std::string broken = root_ + "/.Broken";
  ASSERT_TRUE(MakeMaildirDirs(broken));
  HandMessage k1 = WriteHandMessage(broken, "broken-1", 4);
  ASSERT_EQ(::mkdir((broken + "/dovecot-uidlist").c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(Mount());

  auto ls = Sh("ls -1A " + ShellQuote(P("")));
  EXPECT_TRUE(ls.ok()) << ls.Describe();
  std::vector<std::string> shown = Lines(ls.out);
  std::erase(shown, "Broken");  // may be listed; what matters is below
  EXPECT_EQ(shown, (std::vector<std::string>{"INBOX", "Tom & Jerry"}));
  EXPECT_TRUE(log_.Has({maildir::PrintableForLog(bad_entry)})) << log_.Dump();
  // The broken folder answers (an error or its messages), and quickly.
  auto broken_ls = Sh("ls -1 " + ShellQuote(P("Broken")));
  EXPECT_FALSE(broken_ls.timed_out);
  // An empty listing would tell rsync --delete or a backup that the
  // mailbox's mail is gone: when the mailbox cannot be read, EIO
  // (DESIGN.md, Errors); when it can, its message.
  if (broken_ls.ok()) {
    EXPECT_EQ(Lines(broken_ls.out).size(), 1u)
        << "ls Broken succeeds but shows " << Lines(broken_ls.out).size()
        << " messages; the folder's cur/ holds one\n"
        << log_.Dump();
  } else {
    EXPECT_NE(broken_ls.err.find("Input/output error"), std::string::npos) << broken_ls.Describe();
  }
  EXPECT_EQ(MountContents("INBOX"), (std::map<uint32_t, std::string>{{1, g1.bytes}}));
  auto tom = MountContents("Tom & Jerry");
  EXPECT_EQ(tom.size(), 1u);
  if (!tom.empty()) {
    EXPECT_EQ(tom.begin()->second, t1.bytes);
  }
  uint32_t appended = CpIntoInbox("appended-by-cp");
  EXPECT_EQ(appended, 2u);
  for (const HandMessage& m : {g1, b1, t1, k1}) EXPECT_EQ(ReadBytes(m.path), m.bytes) << m.path;
  EXPECT_EQ(ReadBytes(root_ + "/.Plain"), HostileTestMessage("plain-file"));
  struct stat st;
  EXPECT_TRUE(::lstat((broken + "/dovecot-uidlist").c_str(), &st) == 0 && S_ISDIR(st.st_mode));
}

// DESIGN.md: mkdir or a directory rename to a name the store cannot hold
// is EINVAL. Dovecot's layouts refuse different names: Maildir++ a '.'
// inside a level (it separates levels on disk), fs a level named cur, new
// or tmp (they hold the mail). Nothing may change in the store.
TEST(MaildirNamesTest, NamesTheLayoutCannotHoldAreEinvalAndChangeNothing) {
  for (maildir::Layout layout : {maildir::Layout::kMaildirPlusPlus, maildir::Layout::kFs}) {
    SCOPED_TRACE(layout == maildir::Layout::kFs ? "fs" : "maildir++");
    TempDir tmp;
    MaildirOptions options;
    options.root = tmp.Path("mail");
    options.layout = layout;
    auto store = OpenMaildirMailboxSet(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->AddMailbox("Work").ok());
    auto mount = MountedStore::Create(*store);
    ASSERT_NE(mount, nullptr);
    const std::vector<std::string> unstorable =
        layout == maildir::Layout::kFs ? std::vector<std::string>{"cur", "Work/new", "Work/tmp"}
                                       : std::vector<std::string>{"a.b", "Work/v1.2"};
    StoreDigest before = TakeStoreDigest(**store);
    ASSERT_TRUE(before.error.empty()) << before.error;
    for (const std::string& name : unstorable) {
      EXPECT_EQ(ErrnoOf(::mkdir(mount->Path(name).c_str(), 0755)), EINVAL) << "mkdir " << name;
    }
    // A rename below itself the kernel refuses before asking: rename to a
    // top-level name only.
    const std::string target = unstorable.front();
    EXPECT_EQ(ErrnoOf(::rename(mount->Path("Work").c_str(), mount->Path(target).c_str())), EINVAL)
        << "mv Work " << target;
    EXPECT_EQ(TakeStoreDigest(**store), before);
    if (layout == maildir::Layout::kMaildirPlusPlus) {
      // (In fs, cur/ new/ tmp/ exist on disk anyway: they are INBOX's and Work's.)
      for (std::string_view folder : {".a.b", ".Work.v1.2"}) {
        struct stat st;
        EXPECT_NE(::lstat((options.root + "/" + std::string(folder)).c_str(), &st), 0)
            << folder << " made";
      }
    }
  }
}

}  // namespace
}  // namespace mailfs::test
