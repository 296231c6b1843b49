// The Maildir backend on hostile or broken data (issue 3, point 6), through
// OpenMaildirMailboxSet and the MailboxSet/MailboxData API, without a mount.
// Each test writes a Maildir by hand (files written directly, a uidlist with
// Dovecot's header), breaks one thing, and checks what the issue asks:
// the bad input is logged with its path, skipped and never followed; every
// good message keeps its UID and its bytes; the store keeps working (an
// append succeeds and the uidlist it leaves parses cleanly, also for
// Dovecot); nothing outside the Maildir is read or written.
//
// The mount-level twin of these tests is tests/mount/maildir_hostile_test.cc.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backends/maildir/format/keywords.h"
#include "backends/maildir/format/mutf7.h"
#include "backends/maildir/format/uidlist.h"
#include "backends/maildir/maildir_backend.h"
#include "tests/support/backend_factories.h"
#include "tests/support/dovecot.h"
#include "tests/support/hand_maildir.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/test_util.h"

namespace mailfs::test {
namespace {

using namespace std::string_literals;

constexpr uint32_t kAllUids = std::numeric_limits<uint32_t>::max();

std::string Replace(std::string text, std::string_view from, std::string_view to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// The UID whose bytes are `bytes`, or 0; a failure if there are several.
uint32_t UidOf(const std::map<uint32_t, std::string>& contents, const std::string& bytes) {
  uint32_t found = 0;
  for (const auto& [uid, b] : contents) {
    if (b != bytes) continue;
    if (found != 0) ADD_FAILURE() << "the same bytes under UIDs " << found << " and " << uid;
    found = uid;
  }
  return found;
}

std::string Describe(const std::map<uint32_t, std::string>& contents) {
  std::string out;
  for (const auto& [uid, bytes] : contents) {
    size_t subject = bytes.find("Subject: ");
    out += std::to_string(uid) + "=" +
           (subject == std::string::npos
                ? "?"
                : bytes.substr(subject + 9, bytes.find('\n', subject) - subject - 9)) +
           "; ";
  }
  return out;
}

class MaildirHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.Path("mail");
    outside_ = tmp_.Path("outside");
    ASSERT_TRUE(MakeMaildirDirs(root_));
    ASSERT_EQ(::mkdir(outside_.c_str(), 0755), 0) << std::strerror(errno);
    canary_path_ = outside_ + "/canary";
    canary_ = HostileTestMessage("CANARY-outside-the-maildir");
    ASSERT_TRUE(WriteBytes(canary_path_, canary_));
    ASSERT_TRUE(BackdateAtime(canary_path_));
  }

  std::shared_ptr<MailboxSet> OpenStore() {
    MaildirOptions options;
    options.root = root_;
    options.lock_timeout = std::chrono::seconds(5);
    auto store = OpenMaildirMailboxSet(options);
    if (!store.ok()) {
      ADD_FAILURE() << "OpenMaildirMailboxSet(" << root_ << "): " << store.status().ToString();
      return nullptr;
    }
    return *store;
  }

  static std::shared_ptr<MailboxData> Get(MailboxSet& store, std::string_view name) {
    auto mailbox = store.GetMailbox(name);
    if (!mailbox.ok()) {
      ADD_FAILURE() << "GetMailbox(" << name << "): " << mailbox.status().ToString();
      return nullptr;
    }
    return *mailbox;
  }

  // The file outside the Maildir was neither read nor changed, and nothing
  // was created beside it or beside the Maildir.
  void ExpectOutsideUntouched() {
    auto atime = AtimeOf(canary_path_);
    ASSERT_TRUE(atime.has_value());
    EXPECT_EQ(atime->tv_sec, 1000000000) << canary_path_ << " was read";
    EXPECT_EQ(ReadBytes(canary_path_), canary_);
    ASSERT_TRUE(BackdateAtime(canary_path_));  // the check itself read it
    EXPECT_EQ(Sorted(ListDir(outside_).value_or(std::vector<std::string>{})),
              std::vector<std::string>{"canary"});
    EXPECT_EQ(Sorted(ListDir(tmp_.path()).value_or(std::vector<std::string>{})),
              (std::vector<std::string>{"mail", "outside"}));
  }

  // Every hand-written message is still in its file, byte for byte: nothing
  // was rewritten, renamed away or deleted.
  static void ExpectFilesIntact(const std::vector<HandMessage>& messages) {
    for (const HandMessage& m : messages) {
      EXPECT_EQ(ReadBytes(m.path), m.bytes) << m.path;
    }
  }

  // Appends a message through the backend, then checks that the uidlist
  // left behind parses cleanly with every message under its UID, that a
  // second store opened afterwards (a restart) shows exactly the same, and
  // that Dovecot reads the same too.
  void AppendAndVerify(MailboxSet& store, const std::map<uint32_t, std::string>& before,
                       uint32_t uid_validity, bool check_dovecot = true) {
    auto inbox = Get(store, "INBOX");
    ASSERT_NE(inbox, nullptr);
    std::string appended = HostileTestMessage("appended-after-repair");
    auto uid = inbox->Append(MakeAppendMessage(appended), false);
    MAILFS_ASSERT_OK(uid);
    if (!before.empty()) {
      EXPECT_GT(*uid, before.rbegin()->first);
    }
    std::map<uint32_t, std::string> expected = before;
    expected[*uid] = appended;
    EXPECT_EQ(BackendContents(*inbox), expected);
    EXPECT_EQ(UidlistMismatch(root_, uid_validity, expected), "");

    auto reopened = OpenStore();
    ASSERT_NE(reopened, nullptr);
    auto again = Get(*reopened, "INBOX");
    ASSERT_NE(again, nullptr);
    EXPECT_EQ(again->uid_validity(), uid_validity);
    EXPECT_EQ(BackendContents(*again), expected) << "after reopening the store";

    if (check_dovecot) {
      EXPECT_EQ(DovecotMismatch(root_, scratch_.Path("dovecot-copy"), uid_validity, expected), "");
    }
  }

  LogCapture log_;  // first: before any store logs
  TempDir tmp_;
  TempDir scratch_;  // the test's own files, beside neither
  std::string root_, outside_, canary_path_, canary_;
};

// --- 1. A corrupt uidlist line -------------------------------------------------------

struct CorruptLineCase {
  std::string name;
  // The uidlist after its header, with {g1} {g2} {g4} for the base names of
  // the good messages (UIDs 1, 2, 4) and {v} for the victim's, whose line
  // is the broken one (or missing). The header says N5.
  std::string body;
};

void PrintTo(const CorruptLineCase& c, std::ostream* os) { *os << c.name; }

class CorruptUidlistLineTest : public MaildirHostileTest,
                               public ::testing::WithParamInterface<CorruptLineCase> {};

TEST_P(CorruptUidlistLineTest, OthersKeepTheirUidsAndAppendRepairsTheFile) {
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1);
  HandMessage g2 = WriteHandMessage(root_, "good-2", 2, false, ":2,FS");
  HandMessage g4 = WriteHandMessage(root_, "good-4", 4, false, ":2,");
  HandMessage victim = WriteHandMessage(root_, "victim", 3);
  const uint32_t header_next = 5;
  std::string body = GetParam().body;
  body = Replace(body, "{g1}", g1.base);
  body = Replace(body, "{g2}", g2.base);
  body = Replace(body, "{g4}", g4.base);
  body = Replace(body, "{v}", victim.base);
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-uidlist", HandUidlistHeader(header_next) + body));

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Get(*store, "INBOX");
  ASSERT_NE(inbox, nullptr);
  EXPECT_EQ(inbox->uid_validity(), kHandUidValidity);
  auto contents = BackendContents(*inbox);
  EXPECT_EQ(contents[1], g1.bytes);
  EXPECT_EQ(contents[2], g2.bytes);
  EXPECT_EQ(contents[4], g4.bytes);
  // The victim's line is not trusted: its file is a new message, with the
  // UID Dovecot would give it, max(N, last good UID + 1).
  const uint32_t victim_uid = UidOf(contents, victim.bytes);
  EXPECT_EQ(victim_uid, std::max<uint32_t>(header_next, 4 + 1)) << Describe(contents);
  EXPECT_EQ(contents.size(), 4u) << Describe(contents);
  EXPECT_TRUE(log_.Has({root_ + "/dovecot-uidlist"})) << log_.Dump();
  ExpectFilesIntact({g1, g2, g4, victim});

  AppendAndVerify(*store, contents, kHandUidValidity);
  ExpectFilesIntact({g1, g2, g4, victim});
}

INSTANTIATE_TEST_SUITE_P(
    Maildir, CorruptUidlistLineTest,
    ::testing::Values(
        CorruptLineCase{"Garbage", "1 :{g1}\n\x01\xff\xfe garbage, not a line\n2 :{g2}\n4 :{g4}\n"},
        CorruptLineCase{"NonNumberUid", "1 :{g1}\n2 :{g2}\nthree :{v}\n4 :{g4}\n"},
        CorruptLineCase{"NegativeUid", "1 :{g1}\n2 :{g2}\n-3 :{v}\n4 :{g4}\n"},
        CorruptLineCase{"UidZero", "0 :{v}\n1 :{g1}\n2 :{g2}\n4 :{g4}\n"},
        CorruptLineCase{"UidsOutOfOrder", "1 :{g1}\n2 :{g2}\n4 :{g4}\n3 :{v}\n"},
        CorruptLineCase{"DuplicateUid", "1 :{g1}\n2 :{g2}\n2 :{v}\n4 :{g4}\n"},
        // A hostile line must not use up the UID space (Append would then
        // fail for good).
        CorruptLineCase{"UidTooHigh", "1 :{g1}\n2 :{g2}\n4 :{g4}\n4294967295 :{v}\n"},
        CorruptLineCase{"UidOverflows", "1 :{g1}\n2 :{g2}\n4 :{g4}\n99999999999999999999 :{v}\n"},
        CorruptLineCase{"NoColon", "1 :{g1}\n2 :{g2}\n3 {v}\n4 :{g4}\n"},
        CorruptLineCase{"EmptyName", "1 :{g1}\n2 :{g2}\n3 :\n4 :{g4}\n"},
        CorruptLineCase{"UnterminatedLastLine", "1 :{g1}\n2 :{g2}\n4 :{g4}\n5 :{v}"},
        CorruptLineCase{"NulInLine", "1 :{g1}\n2 :{g2}\n3 :{v}\0x\n4 :{g4}\n"s}),
    [](const auto& info) { return info.param.name; });

// A uidlist whose header cannot be used: Dovecot deletes and recreates it
// with a new UIDVALIDITY. No message may be lost on the way.
TEST_F(MaildirHostileTest, UnusableUidlistHeaderLosesNoMessage) {
  std::vector<HandMessage> messages = {WriteHandMessage(root_, "a", 1),
                                       WriteHandMessage(root_, "b", 2, true),
                                       WriteHandMessage(root_, "c", 3, false, ":2,RS")};
  ASSERT_TRUE(WriteBytes(
      root_ + "/dovecot-uidlist",
      "\xff\xfegarbage header\n1 :" + messages[0].base + "\n2 :" + messages[1].base + "\n"));
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Get(*store, "INBOX");
  ASSERT_NE(inbox, nullptr);
  auto contents = BackendContents(*inbox);
  ASSERT_EQ(contents.size(), messages.size()) << Describe(contents);
  // New UIDs, in the order of the names' times as Dovecot gives them.
  uint32_t last = 0;
  for (const HandMessage& m : messages) {
    uint32_t uid = UidOf(contents, m.bytes);
    EXPECT_GT(uid, last) << m.tag;
    last = uid;
  }
  EXPECT_NE(inbox->uid_validity(), 0u);
  EXPECT_TRUE(log_.Has({root_ + "/dovecot-uidlist"})) << log_.Dump();
  ExpectFilesIntact(messages);
  AppendAndVerify(*store, contents, inbox->uid_validity());
}

// --- 2. A uidlist line whose name leaves the directory --------------------------------

TEST_F(MaildirHostileTest, UidlistNamesWithSlashOrDotDotAreNeverFollowed) {
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1);
  HandMessage g2 = WriteHandMessage(root_, "good-2", 2, true);
  // A real file cur/x: the line "4 :cur/x" must not give it UID 4, since
  // names in the uidlist are base names, never paths.
  HandMessage x{"cur-x", HostileTestMessage("cur-x"), "x", root_ + "/cur/x", 0};
  ASSERT_TRUE(WriteBytes(x.path, x.bytes));
  // Relative to cur/ (where a message file would be opened) this is the
  // canary; relative to the root, too, one level up.
  const uint32_t header_next = 8;
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-uidlist",
                         HandUidlistHeader(header_next) + "1 :" + g1.base + "\n2 :" + g2.base +
                             "\n3 :../../outside/canary\n4 :cur/x\n5 :..\n6 :" + canary_path_ +
                             "\n7 :../outside/canary\n"));

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Get(*store, "INBOX");
  ASSERT_NE(inbox, nullptr);
  auto contents = BackendContents(*inbox);
  EXPECT_EQ(contents[1], g1.bytes);
  EXPECT_EQ(contents[2], g2.bytes);
  EXPECT_EQ(UidOf(contents, x.bytes), header_next) << Describe(contents);
  EXPECT_EQ(contents.size(), 3u) << Describe(contents);
  for (uint32_t uid = 3; uid < header_next; ++uid) {
    MAILFS_EXPECT_CODE(inbox->Get(uid), kNotFound) << "UID " << uid;
    MAILFS_EXPECT_CODE(inbox->Open(uid), kNotFound) << "UID " << uid;
  }
  EXPECT_EQ(UidOf(contents, canary_), 0u);
  EXPECT_TRUE(log_.Has({root_ + "/dovecot-uidlist"})) << log_.Dump();
  ExpectOutsideUntouched();

  AppendAndVerify(*store, contents, kHandUidValidity);
  ExpectOutsideUntouched();
  ExpectFilesIntact({g1, g2, x});
}

// --- 3. Symlinks in cur/ and new/ ----------------------------------------------------------

TEST_F(MaildirHostileTest, SymlinksInCurAndNewAreNotShownNorFollowed) {
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1);
  HandMessage g2 = WriteHandMessage(root_, "good-2", 2);
  // Message-like names, so that only their being symlinks disqualifies them.
  const std::string out_base = "1700000600.M10P4242.hostile,S=" + std::to_string(canary_.size());
  const std::string twin_base = "1700000660.M11P4242.hostile,S=" + std::to_string(g1.bytes.size());
  const std::string new_base = "1700000720.M12P4242.hostile";
  const std::string dangling_base = "1700000780.M13P4242.hostile";
  std::vector<std::string> links = {
      root_ + "/cur/" + out_base + ":2,S",
      root_ + "/cur/" + twin_base + ":2,S",
      root_ + "/new/" + new_base,
      root_ + "/cur/" + dangling_base + ":2,",
  };
  ASSERT_EQ(::symlink(canary_path_.c_str(), links[0].c_str()), 0) << std::strerror(errno);
  ASSERT_EQ(::symlink(g1.path.substr(g1.path.rfind('/') + 1).c_str(), links[1].c_str()), 0);
  ASSERT_EQ(::symlink("../../outside/canary", links[2].c_str()), 0);
  ASSERT_EQ(::symlink("/nonexistent/mailfs-hostile", links[3].c_str()), 0);
  ASSERT_TRUE(BackdateAtime(canary_path_));
  // Lines for two of them: following the link would give them these UIDs.
  const uint32_t header_next = 5;
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-uidlist",
                         HandUidlistHeader(header_next) + "1 :" + g1.base + "\n2 :" + g2.base +
                             "\n3 :" + out_base + "\n4 :" + twin_base + "\n"));

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Get(*store, "INBOX");
  ASSERT_NE(inbox, nullptr);
  auto contents = BackendContents(*inbox);
  EXPECT_EQ(contents, (std::map<uint32_t, std::string>{{1, g1.bytes}, {2, g2.bytes}}))
      << Describe(contents);
  MAILFS_EXPECT_CODE(inbox->Get(3), kNotFound);
  MAILFS_EXPECT_CODE(inbox->Open(3), kNotFound);
  MAILFS_EXPECT_CODE(inbox->Get(4), kNotFound);
  for (const std::string& link : {links[0], links[2]}) {
    EXPECT_TRUE(log_.Has({link})) << link << " not logged\n" << log_.Dump();
  }
  ExpectOutsideUntouched();

  // A symlink that appears while the store is open (the watcher sees it).
  const std::string live = root_ + "/new/1700000840.M14P4242.hostile";
  ASSERT_EQ(::symlink(canary_path_.c_str(), live.c_str()), 0);
  HandMessage g3 = WriteHandMessage(root_, "good-3-live", 15, true);
  EXPECT_TRUE(Eventually([&] { return UidOf(BackendContents(*inbox), g3.bytes) != 0; }));
  contents = BackendContents(*inbox);
  EXPECT_EQ(UidOf(contents, g3.bytes), header_next) << Describe(contents);
  EXPECT_EQ(contents.size(), 3u) << Describe(contents);
  ExpectOutsideUntouched();

  AppendAndVerify(*store, contents, kHandUidValidity, /*check_dovecot=*/false);
  ExpectOutsideUntouched();
  for (const std::string& link : links) {
    struct stat st;
    EXPECT_TRUE(::lstat(link.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) << link << " was removed";
  }
  ExpectFilesIntact({g1, g2, g3});
}

// --- 4. More than 26 keywords -----------------------------------------------------------------

std::string KeywordName(int i) { return "$kw" + std::to_string(i); }

TEST_F(MaildirHostileTest, TwentySeventhKeywordFailsWithNoSpaceAndChangesNothing) {
  // 25 letters taken; the message has the first one.
  std::string keywords;
  for (int i = 0; i < 25; ++i) keywords += std::to_string(i) + " " + KeywordName(i) + "\n";
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-keywords", keywords));
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1, false, ":2,Sa");
  ASSERT_TRUE(
      WriteBytes(root_ + "/dovecot-uidlist", HandUidlistHeader(2) + "1 :" + g1.base + "\n"));

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Get(*store, "INBOX");
  ASSERT_NE(inbox, nullptr);
  auto info = inbox->Get(1);
  MAILFS_ASSERT_OK(info);
  EXPECT_EQ(info->flags, Flags("\\Seen " + KeywordName(0)));

  // The 26th keyword takes the last letter, z.
  auto with26 = inbox->Update(1, Flags("$Extra26"), FlagOp::kAdd);
  MAILFS_ASSERT_OK(with26);
  EXPECT_TRUE(with26->HasKeyword("$Extra26"));
  auto table = maildir::KeywordTable::Parse(ReadBytes(root_ + "/dovecot-keywords").value_or(""));
  MAILFS_ASSERT_OK(table);
  EXPECT_EQ(table->LetterFor("$Extra26"), 'z');

  // Snapshot of everything a refused change must leave alone.
  const auto keywords_before = ReadBytes(root_ + "/dovecot-keywords");
  const auto files_before = MessageFilesByBase(root_);
  const auto cur_before = Sorted(ListDir(root_ + "/cur").value_or(std::vector<std::string>{}));
  const auto info_before = inbox->Get(1);
  MAILFS_ASSERT_OK(info_before);

  // A 27th distinct keyword: kNoSpace (ENOSPC), by add, replace and append.
  MAILFS_EXPECT_CODE(inbox->Update(1, Flags("$Extra27"), FlagOp::kAdd), kNoSpace);
  MAILFS_EXPECT_CODE(
      inbox->Update(1, Flags("\\Seen " + KeywordName(0) + " $Extra27"), FlagOp::kReplace),
      kNoSpace);
  MAILFS_EXPECT_CODE(inbox->Append(MakeAppendMessage(HostileTestMessage("too-many-keywords"),
                                                     Flags("\\Seen $Extra27")),
                                   false),
                     kNoSpace);
  EXPECT_EQ(ToErrno(Status::Error(ErrorCode::kNoSpace, ErrorScope::kMessage, "")), ENOSPC);

  EXPECT_EQ(ReadBytes(root_ + "/dovecot-keywords"), keywords_before);
  EXPECT_EQ(MessageFilesByBase(root_), files_before);
  EXPECT_EQ(Sorted(ListDir(root_ + "/cur").value_or(std::vector<std::string>{})), cur_before);
  // Nothing staged is left in tmp/ (the folder's dotlock source, a hidden
  // file that stays while the store is open, is no message).
  std::vector<std::string> tmp_files =
      ListDir(root_ + "/tmp").value_or(std::vector<std::string>{"?"});
  std::erase_if(tmp_files,
                [](const std::string& name) { return name.starts_with(".mailfs-lock."); });
  EXPECT_EQ(tmp_files, std::vector<std::string>{});
  auto info_after = inbox->Get(1);
  MAILFS_ASSERT_OK(info_after);
  EXPECT_EQ(*info_after, *info_before);
  EXPECT_EQ(BackendContents(*inbox), (std::map<uint32_t, std::string>{{1, g1.bytes}}));

  // Keywords that have a letter still work.
  auto known = inbox->Update(1, Flags(KeywordName(24)), FlagOp::kAdd);
  MAILFS_EXPECT_OK(known);
  if (known.ok()) {
    EXPECT_TRUE(known->HasKeyword(KeywordName(24)));
  }
  EXPECT_EQ(ReadBytes(root_ + "/dovecot-keywords"), keywords_before);
}

TEST_F(MaildirHostileTest, HostileKeywordsFileIsReadWithoutCrash) {
  // Valid lines for a and b; every other kind of bad line; more than 26
  // lines in all; an index far beyond z.
  std::string keywords = "0 $Junk\n1 $Todo\n";
  keywords += "26 $TooFar\n27 $Further\n4294967296 $Huge\n-1 $Negative\n";
  keywords += "garbage without index\n";
  keywords += "\xff\xfe\0\x01 binary\n"s;
  keywords += "2 bad(keyword\n3\n \n7 \\Seen\n";
  for (int i = 100; i < 140; ++i) keywords += std::to_string(i) + " $kw" + std::to_string(i) + "\n";
  keywords += "5 $Unterminated";
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-keywords", keywords));
  // The first message uses the letters of the good lines and of bad ones
  // (c: a bad keyword, d: no keyword, f: the unterminated line, h: \Seen).
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1, false, ":2,Sabcdfh");
  HandMessage g2 = WriteHandMessage(root_, "good-2", 2, false, ":2,S");
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-uidlist",
                         HandUidlistHeader(3) + "1 :" + g1.base + "\n2 :" + g2.base + "\n"));

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Get(*store, "INBOX");
  ASSERT_NE(inbox, nullptr);
  auto info = inbox->Get(1);
  MAILFS_ASSERT_OK(info);
  EXPECT_EQ(info->flags, Flags("\\Seen $Junk $Todo"));
  EXPECT_EQ(BackendContents(*inbox),
            (std::map<uint32_t, std::string>{{1, g1.bytes}, {2, g2.bytes}}));
  EXPECT_TRUE(log_.Has({root_ + "/dovecot-keywords"})) << log_.Dump();

  // A new keyword gets a free letter; the keywords already in use keep
  // theirs, and so keep their meaning in every file name.
  auto updated = inbox->Update(2, Flags("$New"), FlagOp::kAdd);
  MAILFS_ASSERT_OK(updated);
  EXPECT_EQ(*updated, Flags("\\Seen $New"));
  auto table = maildir::KeywordTable::Parse(ReadBytes(root_ + "/dovecot-keywords").value_or(""));
  MAILFS_ASSERT_OK(table);
  EXPECT_TRUE(table->problems().empty()) << "mailfs wrote a keywords file with bad lines";
  EXPECT_EQ(table->LetterFor("$Junk"), 'a');
  EXPECT_EQ(table->LetterFor("$Todo"), 'b');
  EXPECT_TRUE(table->LetterFor("$New").has_value());
  // g1 keeps what it had. (It may also show $New now: Dovecot gives a new
  // keyword the lowest free index, and a letter without a line in the file,
  // like g1's c, takes the meaning of the keyword that gets it.)
  info = inbox->Get(1);
  MAILFS_ASSERT_OK(info);
  EXPECT_TRUE(info->flags.Has(SystemFlag::kSeen) && info->flags.HasKeyword("$Junk") &&
              info->flags.HasKeyword("$Todo"))
      << info->flags.ToString();
  EXPECT_EQ(ReadBytes(g1.path), g1.bytes);
}

// --- 5. Files that are not messages -----------------------------------------------------

TEST_F(MaildirHostileTest, NonMessagesInNewAreSkippedAndLogged) {
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1);
  HandMessage g2 = WriteHandMessage(root_, "good-2", 2);
  struct Junk {
    std::string path, bytes;
  };
  std::vector<Junk> junk = {
      {root_ + "/new/1700000300.M300P4242.hostile",
       "\x7f"
       "ELF\x02\x01\x01\0\0\xff\xfe"s},
      {root_ + "/new/1700000301.M301P4242.hostile", ""},
      {root_ + "/new/1700000302.M302P4242.hostile", "hello world, no header here\n"},
      {root_ + "/cur/1700000303.M303P4242.hostile:2,S", std::string(5000, '\0')},
  };
  for (const Junk& j : junk) ASSERT_TRUE(WriteBytes(j.path, j.bytes));
  // A good message without a UID yet, named later than the junk: the junk
  // must not use up UIDs before it.
  HandMessage g3 = WriteHandMessage(root_, "good-3-new", 310, true);
  const uint32_t header_next = 3;
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-uidlist", HandUidlistHeader(header_next) + "1 :" +
                                                         g1.base + "\n2 :" + g2.base + "\n"));

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Get(*store, "INBOX");
  ASSERT_NE(inbox, nullptr);
  auto contents = BackendContents(*inbox);
  EXPECT_EQ(contents, (std::map<uint32_t, std::string>{
                          {1, g1.bytes}, {2, g2.bytes}, {header_next, g3.bytes}}))
      << Describe(contents);
  for (const Junk& j : junk) {
    EXPECT_TRUE(log_.Has({j.path})) << j.path << " not logged\n" << log_.Dump();
  }

  // Junk delivered while the store is open, then a good message.
  Junk live{root_ + "/new/1700000400.M400P4242.hostile", "\0\0\0\x01garbage"s};
  ASSERT_TRUE(WriteBytes(root_ + "/tmp/live", live.bytes));
  ASSERT_EQ(::rename((root_ + "/tmp/live").c_str(), live.path.c_str()), 0);
  junk.push_back(live);
  HandMessage g4 = WriteHandMessage(root_, "good-4-live", 401, true);
  EXPECT_TRUE(Eventually([&] { return UidOf(BackendContents(*inbox), g4.bytes) != 0; }));
  contents = BackendContents(*inbox);
  EXPECT_EQ(UidOf(contents, g4.bytes), header_next + 1) << Describe(contents);
  EXPECT_EQ(contents.size(), 4u) << Describe(contents);
  EXPECT_TRUE(Eventually([&] { return log_.Has({live.path}); })) << log_.Dump();

  AppendAndVerify(*store, contents, kHandUidValidity, /*check_dovecot=*/false);
  // Skipped, not deleted: the files are someone's data.
  for (const Junk& j : junk) EXPECT_EQ(ReadBytes(j.path), j.bytes) << j.path;
  ExpectFilesIntact({g1, g2, g3, g4});
}

// --- 6. Unreadable files ----------------------------------------------------------------------

// The tests run as root, for whom a file's mode does not stop a read. To
// test a file the backend really cannot open, the store runs in a child
// process that drops to uid/gid 5000 (the owner of the store, as with
// Dovecot) for good with setresuid, so that a file of mode 000 gives EACCES
// as it would for a real user. The child cannot use gtest: it reports what
// it saw as lines on a pipe, and the parent checks them.
TEST_F(MaildirHostileTest, UnreadableFileGivesEioOrIsSkippedAsAnotherUser) {
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1);
  HandMessage locked = WriteHandMessage(root_, "locked-with-uid", 2);
  HandMessage g3 = WriteHandMessage(root_, "good-3", 3);
  HandMessage locked_new = WriteHandMessage(root_, "locked-new", 4, true);
  HandMessage g5 = WriteHandMessage(root_, "good-5-new", 5, true);
  const uint32_t header_next = 4;
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-uidlist", HandUidlistHeader(header_next) +
                                                         "1 :" + g1.base + "\n2 :" + locked.base +
                                                         "\n3 :" + g3.base + "\n"));
  ASSERT_TRUE(PrepareStoreForDovecot(root_));
  ASSERT_EQ(::chmod(locked.path.c_str(), 0), 0);
  ASSERT_EQ(::chmod(locked_new.path.c_str(), 0), 0);

  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    ::close(fds[0]);
    ::alarm(60);  // a hang kills the child, which the parent reports
    std::string report;
    auto say = [&](const std::string& line) { report += line + "\n"; };
    if (::setgroups(0, nullptr) != 0 ||
        ::setresgid(kDovecotMailGid, kDovecotMailGid, kDovecotMailGid) != 0 ||
        ::setresuid(kDovecotMailUid, kDovecotMailUid, kDovecotMailUid) != 0) {
      say(std::string("setup setresuid failed: ") + std::strerror(errno));
    } else if (int fd = ::open(locked.path.c_str(), O_RDONLY); fd >= 0) {
      say("setup the mode-000 file is readable as uid 5000");
      ::close(fd);
    } else {
      MaildirOptions options;
      options.root = root_;
      options.lock_timeout = std::chrono::seconds(5);
      auto store = OpenMaildirMailboxSet(options);
      auto inbox = store.ok() ? (*store)->GetMailbox("INBOX")
                              : Result<std::shared_ptr<MailboxData>>(store.status());
      if (!inbox.ok()) {
        say("setup open: " + inbox.status().ToString());
      } else {
        auto infos = (*inbox)->Find(1, kAllUids);
        if (!infos.ok()) say("setup find: " + infos.status().ToString());
        for (const MessageInfo& info : infos.ok() ? *infos : std::vector<MessageInfo>{}) {
          auto reader = (*inbox)->Open(info.uid);
          std::string bytes;
          std::string code = "ok";
          if (!reader.ok()) {
            code = std::string(ErrorCodeName(reader.status().code()));
          } else if (auto all = ReadAll(**reader); all.ok()) {
            bytes = *all;
          } else {
            code = std::string(ErrorCodeName(all.status().code()));
          }
          // The tag of the bytes (their subject), enough to tell them apart.
          size_t at = bytes.find("Subject: hostile ");
          std::string tag =
              at == std::string::npos ? "-" : bytes.substr(at + 17, bytes.find('\n', at) - at - 17);
          say("msg " + std::to_string(info.uid) + " " + code + " " + tag +
              (bytes.empty() || bytes == HostileTestMessage(tag) ? "" : " MISMATCH"));
        }
        auto appended =
            (*inbox)->Append(MakeAppendMessage(HostileTestMessage("appended-as-5000")), false);
        say("append " + (appended.ok() ? std::to_string(*appended)
                                       : std::string(ErrorCodeName(appended.status().code()))));
        for (const std::string& line : log_.Lines()) {
          if (line.find(locked_new.path) != std::string::npos)
            say("logged the unreadable file in new/");
        }
      }
    }
    (void)!::write(fds[1], report.data(), report.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string report;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) report.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the child died (status " << status << "); it reported:\n"
      << report;

  std::vector<std::string> lines = Lines(report);
  for (const std::string& line : lines) EXPECT_FALSE(line.starts_with("setup")) << line;
  std::set<std::string> got(lines.begin(), lines.end());
  EXPECT_TRUE(got.contains("msg 1 ok good-1")) << report;
  EXPECT_TRUE(got.contains("msg 3 ok good-3")) << report;
  // The good file without a UID gets the next one; the unreadable one
  // without a UID is skipped (it cannot be told from a non-message), and
  // so it does not use up a UID.
  EXPECT_TRUE(got.contains("msg " + std::to_string(header_next) + " ok good-5-new")) << report;
  EXPECT_TRUE(got.contains("logged the unreadable file in new/")) << report;
  // The unreadable file with a UID: EIO (kIo) when opened, or not listed.
  bool locked_listed = false;
  for (const std::string& line : lines) {
    if (line.starts_with("msg 2 ")) {
      locked_listed = true;
      EXPECT_EQ(line, "msg 2 " + std::string(ErrorCodeName(ErrorCode::kIo)) + " -") << report;
    }
    EXPECT_EQ(line.find("locked-new"), std::string::npos) << "got a UID: " << line;
    EXPECT_EQ(line.find("MISMATCH"), std::string::npos) << line;
  }
  EXPECT_TRUE(got.contains("append " + std::to_string(header_next + 1))) << report;
  if (!locked_listed) std::cout << "note: the unreadable message is not listed\n";
  // Nothing was changed for them.
  ASSERT_EQ(::chmod(locked.path.c_str(), 0644), 0);
  ASSERT_EQ(::chmod(locked_new.path.c_str(), 0644), 0);
  ExpectFilesIntact({g1, locked, g3, locked_new, g5});
  auto uidlist = maildir::Uidlist::Parse(ReadBytes(root_ + "/dovecot-uidlist").value_or(""));
  MAILFS_ASSERT_OK(uidlist);
  bool kept = false;
  for (const auto& record : uidlist->records) {
    if (record.uid == 2) kept = record.BaseName() == locked.base;
    EXPECT_NE(record.BaseName(), locked_new.base) << "the unreadable new file got a UID";
  }
  EXPECT_TRUE(kept) << "the unreadable message lost its UID";
}

// As root, entries of cur/ and new/ that cannot be read as a message file:
// a directory and FIFOs with message names (opening a FIFO blocks forever:
// a backend that does would hang here, and alarm() fails the test).
TEST_F(MaildirHostileTest, DirectoriesAndFifosWithMessageNamesAreSkipped) {
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1);
  HandMessage g4 = WriteHandMessage(root_, "good-4", 4);
  const std::string dir_base = "1700000120.M2P4242.hostile,S=10";
  const std::string fifo_base = "1700000180.M3P4242.hostile,S=10";
  const std::string fifo_new = root_ + "/new/1700000500.M5P4242.hostile";
  ASSERT_EQ(::mkdir((root_ + "/cur/" + dir_base + ":2,S").c_str(), 0755), 0);
  ASSERT_TRUE(WriteBytes(root_ + "/cur/" + dir_base + ":2,S/inside", HostileTestMessage("in-dir")));
  ASSERT_EQ(::mkfifo((root_ + "/cur/" + fifo_base + ":2,S").c_str(), 0644), 0);
  ASSERT_EQ(::mkfifo(fifo_new.c_str(), 0644), 0);
  ASSERT_TRUE(WriteBytes(root_ + "/dovecot-uidlist", HandUidlistHeader(5) + "1 :" + g1.base +
                                                         "\n2 :" + dir_base + "\n3 :" + fifo_base +
                                                         "\n4 :" + g4.base + "\n"));
  ::alarm(60);
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Get(*store, "INBOX");
  ASSERT_NE(inbox, nullptr);
  auto contents = BackendContents(*inbox);
  EXPECT_EQ(contents, (std::map<uint32_t, std::string>{{1, g1.bytes}, {4, g4.bytes}}))
      << Describe(contents);
  MAILFS_EXPECT_CODE(inbox->Open(2), kNotFound);
  MAILFS_EXPECT_CODE(inbox->Open(3), kNotFound);
  // A FIFO delivered while the store is open, then a good message.
  const std::string fifo_live = root_ + "/new/1700000560.M6P4242.hostile";
  ASSERT_EQ(::mkfifo(fifo_live.c_str(), 0644), 0);
  HandMessage g5 = WriteHandMessage(root_, "good-5-live", 7, true);
  EXPECT_TRUE(Eventually([&] { return UidOf(BackendContents(*inbox), g5.bytes) != 0; }));
  contents = BackendContents(*inbox);
  EXPECT_EQ(contents.size(), 3u) << Describe(contents);
  AppendAndVerify(*store, contents, kHandUidValidity, /*check_dovecot=*/false);
  ::alarm(0);
  EXPECT_EQ(ReadBytes(root_ + "/cur/" + dir_base + ":2,S/inside"), HostileTestMessage("in-dir"));
}

// --- 7. Broken folders and metadata files -------------------------------------------------

TEST_F(MaildirHostileTest, UidlistThatIsADirectoryBreaksOnlyItsMailbox) {
  HandMessage g1 = WriteHandMessage(root_, "inbox-1", 1);
  ASSERT_TRUE(
      WriteBytes(root_ + "/dovecot-uidlist", HandUidlistHeader(2) + "1 :" + g1.base + "\n"));
  const std::string broken = root_ + "/.Broken";
  ASSERT_TRUE(MakeMaildirDirs(broken));
  HandMessage b1 = WriteHandMessage(broken, "broken-1", 2);
  ASSERT_EQ(::mkdir((broken + "/dovecot-uidlist").c_str(), 0755), 0);
  ASSERT_TRUE(WriteBytes(broken + "/dovecot-uidlist/keep", "someone's file"));

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto listed = store->ListMailboxes();
  MAILFS_ASSERT_OK(listed);
  EXPECT_TRUE(std::find(listed->begin(), listed->end(), "INBOX") != listed->end());
  auto mailbox = store->GetMailbox("Broken");
  if (mailbox.ok()) {
    // Served after all: then every message must be there.
    auto contents = BackendContents(**mailbox);
    EXPECT_EQ(UidOf(contents, b1.bytes) != 0, true) << Describe(contents);
  } else {
    EXPECT_NE(mailbox.status().code(), ErrorCode::kNotFound) << mailbox.status().ToString();
    EXPECT_TRUE(mailbox.status().detail().find(broken + "/dovecot-uidlist") != std::string::npos ||
                log_.Has({broken + "/dovecot-uidlist"}))
        << mailbox.status().ToString() << "\n"
        << log_.Dump();
  }
  // The rest works.
  auto inbox = Get(*store, "INBOX");
  ASSERT_NE(inbox, nullptr);
  EXPECT_EQ(BackendContents(*inbox), (std::map<uint32_t, std::string>{{1, g1.bytes}}));
  AppendAndVerify(*store, {{1, g1.bytes}}, kHandUidValidity, /*check_dovecot=*/false);
  // Nothing of the broken mailbox was removed.
  EXPECT_EQ(ReadBytes(broken + "/dovecot-uidlist/keep"), "someone's file");
  ExpectFilesIntact({g1, b1});
}

TEST_F(MaildirHostileTest, UidlistThatIsASymlinkIsNotFollowed) {
  HandMessage g1 = WriteHandMessage(root_, "good-1", 1);
  HandMessage g2 = WriteHandMessage(root_, "good-2", 2);
  // A valid uidlist outside: followed, it would give these UIDs.
  const std::string target = outside_ + "/uidlist";
  const std::string foreign = "3 V1234 N1002 G00000000000000000000000000001234\n1000 :" + g1.base +
                              "\n1001 :" + g2.base + "\n";
  ASSERT_TRUE(WriteBytes(target, foreign));
  ASSERT_TRUE(BackdateAtime(target));
  ASSERT_EQ(::symlink(target.c_str(), (root_ + "/dovecot-uidlist").c_str()), 0);

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Get(*store, "INBOX");
  ASSERT_NE(inbox, nullptr);
  EXPECT_NE(inbox->uid_validity(), 1234u);
  auto contents = BackendContents(*inbox);
  EXPECT_EQ(contents.size(), 2u) << Describe(contents);
  EXPECT_NE(UidOf(contents, g1.bytes), 0u);
  EXPECT_NE(UidOf(contents, g2.bytes), 0u);
  EXPECT_FALSE(contents.contains(1000) || contents.contains(1001)) << Describe(contents);
  EXPECT_TRUE(log_.Has({root_ + "/dovecot-uidlist"})) << log_.Dump();
  auto atime = AtimeOf(target);
  ASSERT_TRUE(atime.has_value());
  EXPECT_EQ(atime->tv_sec, 1000000000) << target << " was read through the symlink";
  EXPECT_EQ(ReadBytes(target), foreign) << target << " was written through the symlink";
  AppendAndVerify(*store, contents, inbox->uid_validity(), /*check_dovecot=*/false);
  EXPECT_EQ(ReadBytes(target), foreign);
  ExpectFilesIntact({g1, g2});
}

TEST_F(MaildirHostileTest, DotFolderThatIsAPlainFileIsIgnored) {
  HandMessage g1 = WriteHandMessage(root_, "inbox-1", 1);
  const std::string plain = root_ + "/.Plain";
  ASSERT_TRUE(WriteBytes(plain, HostileTestMessage("plain-file")));
  ASSERT_TRUE(MakeMaildirDirs(root_ + "/.Real"));
  HandMessage r1 = WriteHandMessage(root_ + "/.Real", "real-1", 2);

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto listed = store->ListMailboxes();
  MAILFS_ASSERT_OK(listed);
  EXPECT_EQ(*listed, (std::vector<std::string>{"INBOX", "Real"}));
  MAILFS_EXPECT_CODE(store->GetMailbox("Plain"), kNotFound);
  auto real = Get(*store, "Real");
  ASSERT_NE(real, nullptr);
  auto contents = BackendContents(*real);
  EXPECT_EQ(contents.size(), 1u);
  EXPECT_NE(UidOf(contents, r1.bytes), 0u);
  auto inbox = Get(*store, "INBOX");
  ASSERT_NE(inbox, nullptr);
  EXPECT_NE(UidOf(BackendContents(*inbox), g1.bytes), 0u);
  EXPECT_EQ(ReadBytes(plain), HostileTestMessage("plain-file"));
}

TEST_F(MaildirHostileTest, FolderNamesThatDoNotDecodeAreIgnoredOrLiteral) {
  HandMessage g1 = WriteHandMessage(root_, "inbox-1", 1);
  // Not UTF-8: ignored (Dovecot would rename it during LIST; mailfs must
  // not touch it).
  const std::string bad_entry = ".bad\xff\xfename";
  const std::string bad = root_ + "/" + bad_entry;
  ASSERT_TRUE(MakeMaildirDirs(bad));
  HandMessage b1 = WriteHandMessage(bad, "bad-1", 2);
  // Pure ASCII but not valid modified UTF-7: taken literally (MAILDIR.md).
  ASSERT_TRUE(MakeMaildirDirs(root_ + "/.Tom & Jerry"));
  HandMessage t1 = WriteHandMessage(root_ + "/.Tom & Jerry", "tom-1", 3);
  ASSERT_TRUE(MakeMaildirDirs(root_ + "/.&AOQ"));
  HandMessage u1 = WriteHandMessage(root_ + "/.&AOQ", "unterminated-1", 4);

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto listed = store->ListMailboxes();
  MAILFS_ASSERT_OK(listed);
  EXPECT_EQ(*listed, (std::vector<std::string>{"&AOQ", "INBOX", "Tom & Jerry"}));
  EXPECT_TRUE(log_.Has({maildir::PrintableForLog(bad_entry)})) << log_.Dump();
  for (auto [name, message] : {std::pair{"Tom & Jerry", &t1}, std::pair{"&AOQ", &u1}}) {
    auto mailbox = Get(*store, name);
    ASSERT_NE(mailbox, nullptr) << name;
    EXPECT_NE(UidOf(BackendContents(*mailbox), message->bytes), 0u) << name;
  }
  auto inbox = Get(*store, "INBOX");
  ASSERT_NE(inbox, nullptr);
  EXPECT_NE(UidOf(BackendContents(*inbox), g1.bytes), 0u);
  // The undecodable folder is still there, untouched.
  ExpectFilesIntact({g1, b1, t1, u1});
  auto names = ListDir(bad);
  ASSERT_TRUE(names.has_value());
  EXPECT_EQ(Sorted(*names), (std::vector<std::string>{"cur", "new", "tmp"}));
}

}  // namespace
}  // namespace mailfs::test
