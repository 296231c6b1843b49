// Dovecot and a mailfs mount on the same Maildir (issue 3, point 7): what
// is written through the mount with the ordinary tools is exactly what
// Dovecot reads (UIDs, flags, keywords, sizes, bytes, dates, mailbox names,
// UID validity), and what Dovecot writes shows up in the mount within a
// second, with the UID Dovecot gave it.
//
// Dovecot runs privately through tests/support/dovecot.h (doveadm only, as
// uid 5000, with its index files in the store as a real Dovecot keeps
// them). Every doveadm line on stderr fails the test: doveadm exits 0 after
// "Broken file", "Fixed a duplicate" and the like, which are exactly the
// interop bugs these tests look for.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backends/registry.h"
#include "tests/support/dovecot.h"
#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

// How long a change made by Dovecot may take to show in the mount (issue 3,
// point 4).
constexpr milliseconds kLiveUpdateDeadline{1000};

struct LayoutCase {
  std::string name;  // test name suffix
  bool fs;           // LAYOUT=fs; else Maildir++
};

void PrintTo(const LayoutCase& c, std::ostream* os) { *os << c.name; }

std::string LayoutCaseName(const ::testing::TestParamInfo<LayoutCase>& info) {
  return info.param.name;
}

// A message whose Message-ID, subject and body carry `tag`, LF line ends
// (what Dovecot itself stores).
std::string Tagged(std::string_view tag) {
  return "From: Dovecot Interop <interop@example.org>\nSubject: interop " + std::string(tag) +
         "\nMessage-ID: <" + std::string(tag) + "@mailfs.test>\n\nbody of " + std::string(tag) +
         "\n";
}

std::vector<std::string> SplitFlags(std::string_view text) {
  std::vector<std::string> flags;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) flags.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  std::sort(flags.begin(), flags.end());
  return flags;
}

std::string JoinFlags(const std::vector<std::string>& flags) {
  std::string out;
  for (const auto& f : flags) out += (out.empty() ? "" : " ") + f;
  return out;
}

// UIDs of the canonical names in a mailbox directory of the mount;
// anything else listed is reported.
std::optional<std::vector<uint32_t>> MountUids(const std::string& dir) {
  int err = 0;
  auto names = ListDir(dir, &err);
  if (!names) {
    ADD_FAILURE() << "readdir " << dir << ": " << ErrnoName(err);
    return std::nullopt;
  }
  std::vector<uint32_t> uids;
  for (const auto& name : *names) {
    struct stat st;
    if (Stat(dir + "/" + name, &st) == 0 && S_ISDIR(st.st_mode)) continue;
    uint32_t uid = 0;
    if (name.ends_with(".eml") && name.size() > 4 &&
        name.find_first_not_of("0123456789") == name.size() - 4) {
      uid = static_cast<uint32_t>(std::stoul(name.substr(0, name.size() - 4)));
    }
    if (uid == 0) {
      ADD_FAILURE() << dir << " lists '" << name << "', which is not <uid>.eml";
      continue;
    }
    uids.push_back(uid);
  }
  std::sort(uids.begin(), uids.end());
  return uids;
}

// Every directory of the mount, as mailbox names ("Archive/2024").
std::vector<std::string> MountMailboxes(const std::string& root) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory()) {
      names.push_back(std::filesystem::relative(it->path(), root).string());
    }
  }
  if (ec) ADD_FAILURE() << "walking " << root << ": " << ec.message();
  std::sort(names.begin(), names.end());
  return names;
}

uint32_t XattrNumber(const std::string& path, const std::string& name) {
  int err = 0;
  auto value = GetXattr(path, name, &err);
  if (!value) {
    ADD_FAILURE() << "getfattr -n " << name << " " << path << ": " << ErrnoName(err);
    return 0;
  }
  return static_cast<uint32_t>(std::stoul(*value));
}

std::vector<std::string> MountFlags(const std::string& path) {
  int err = 0;
  auto value = GetXattr(path, "user.mail.flags", &err);
  if (!value) {
    ADD_FAILURE() << "getfattr -n user.mail.flags " << path << ": " << ErrnoName(err);
    return {};
  }
  return SplitFlags(*value);
}

// A copy of the Dovecot message with `tag` in its bytes; nullopt (and a
// failure) when there is not exactly one.
std::optional<DovecotMessage> FindTagged(const std::vector<DovecotMessage>& messages,
                                         std::string_view tag) {
  std::optional<DovecotMessage> found;
  for (const auto& m : messages) {
    if (m.bytes.find(tag) == std::string::npos) continue;
    if (found) {
      ADD_FAILURE() << "two messages carry " << tag << ": UIDs " << found->uid << " and " << m.uid;
      return std::nullopt;
    }
    found = m;
  }
  if (!found) ADD_FAILURE() << "Dovecot has no message carrying " << tag;
  return found;
}

// Opens the Maildir at `path` the way `mailfs maildir:PATH` does.
std::shared_ptr<MailboxSet> OpenMaildir(const std::string& path, bool fs) {
  SourceOptions options;
  if (fs) options["layout"] = "fs";
  auto store = OpenSource("maildir:" + path, options);
  if (!store.ok()) {
    ADD_FAILURE() << "OpenSource(maildir:" << path << (fs ? ", layout=fs" : "")
                  << "): " << store.status().ToString();
    return nullptr;
  }
  return *store;
}

// The store lives in its own temporary directory (owned by uid 5000), the
// mount in another; Dovecot is created first and seeds the store, as it
// would have before anyone mounted it.
class DovecotInterop {
 protected:
  void SetUpStore(bool fs) {
    fs_ = fs;
    store_dir_ = store_tmp_.Path("mail");
    ASSERT_EQ(::mkdir(store_dir_.c_str(), 0755), 0) << std::strerror(errno);
    ASSERT_TRUE(PrepareStoreForDovecot(store_dir_));
    dovecot_ = Dovecot::Create({.maildir = store_dir_, .layout_fs = fs});
    ASSERT_NE(dovecot_, nullptr);
  }

  std::unique_ptr<MountedStore> MountNew() {
    auto store = OpenMaildir(store_dir_, fs_);
    if (!store) return nullptr;
    return MountedStore::Create(std::move(store));
  }

  // The mailbox's directory in the store (not the mount).
  std::string StorePath(std::string_view encoded_mailbox) const {
    if (fs_) return store_dir_ + "/" + std::string(encoded_mailbox);
    std::string dotted(encoded_mailbox);
    std::replace(dotted.begin(), dotted.end(), '/', '.');
    return store_dir_ + "/." + dotted;
  }

  // The heart of these tests: Dovecot and the mount agree on every mailbox
  // name, UID validity, UIDNEXT, message count, and per message on UID,
  // flags, size, internal date and bytes. Polls for up to a second so that
  // a change Dovecot made has time to reach the mount.
  void ExpectMountMatchesDovecot(const MountedStore& mount) {
    auto deadline = steady_clock::now() + kLiveUpdateDeadline;
    while (true) {
      bool last = steady_clock::now() >= deadline;
      std::string diff = MountVersusDovecot(mount);
      if (diff.empty() || last) {
        EXPECT_EQ(diff, "") << "mount " << mount.root() << " vs Dovecot on " << store_dir_;
        return;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }

  // "" when they agree, else every difference found. A doveadm error or a
  // failing syscall on the mount is a test failure at once, also while
  // polling: neither is a matter of timing.
  std::string MountVersusDovecot(const MountedStore& mount) {
    std::ostringstream diff;
    auto names = dovecot_->MailboxList();
    auto statuses = dovecot_->AllMailboxStatus();
    if (!names || !statuses) return "doveadm failed";
    auto dirs = MountMailboxes(mount.root());
    if (dirs != *names) {
      diff << "mailboxes: mount " << ::testing::PrintToString(dirs) << ", Dovecot "
           << ::testing::PrintToString(*names) << "\n";
    }
    for (const auto& status : *statuses) {
      const std::string dir = mount.Path(status.name);
      struct stat st;
      if (Stat(dir, &st) != 0) {
        diff << status.name << ": not in the mount\n";
        continue;
      }
      uint32_t validity = XattrNumber(dir, "user.mail.uidvalidity");
      uint32_t uidnext = XattrNumber(dir, "user.mail.uidnext");
      uint32_t count = XattrNumber(dir, "user.mail.messages");
      if (validity != status.uidvalidity) {
        diff << status.name << ": uidvalidity mount " << validity << ", Dovecot "
             << status.uidvalidity << "\n";
      }
      if (uidnext != status.uidnext) {
        diff << status.name << ": uidnext mount " << uidnext << ", Dovecot " << status.uidnext
             << "\n";
      }
      if (count != status.messages) {
        diff << status.name << ": messages mount " << count << ", Dovecot " << status.messages
             << "\n";
      }
      auto messages = dovecot_->Fetch(status.name);
      auto uids = MountUids(dir);
      if (!messages || !uids) return diff.str() + "cannot read " + status.name;
      std::vector<uint32_t> dovecot_uids;
      for (const auto& m : *messages) dovecot_uids.push_back(m.uid);
      if (*uids != dovecot_uids) {
        diff << status.name << ": UIDs mount " << ::testing::PrintToString(*uids) << ", Dovecot "
             << ::testing::PrintToString(dovecot_uids) << "\n";
        continue;
      }
      for (const auto& m : *messages) {
        const std::string file = dir + "/" + Name(m.uid);
        const std::string where = status.name + "/" + Name(m.uid);
        if (Stat(file, &st) != 0) {
          diff << where << ": cannot stat\n";
          continue;
        }
        if (static_cast<uint64_t>(st.st_size) != m.size) {
          diff << where << ": size mount " << st.st_size << ", Dovecot " << m.size << "\n";
        }
        if (st.st_mtime != m.received) {
          diff << where << ": date mount " << st.st_mtime << ", Dovecot " << m.received << "\n";
        }
        if (m.vsize != maildir::VirtualSize(m.bytes)) {
          diff << where << ": Dovecot's size.virtual " << m.vsize << " (the W= of the name), "
               << "the bytes have " << maildir::VirtualSize(m.bytes) << " with CRLF\n";
        }
        auto flags = MountFlags(file);
        if (flags != m.flags) {
          diff << where << ": flags mount '" << JoinFlags(flags) << "', Dovecot '" << m.FlagString()
               << "'\n";
        }
        int err = 0;
        auto bytes = ReadFile(file, &err);
        if (!bytes) {
          diff << where << ": read: " << ErrnoName(err) << "\n";
        } else if (*bytes != m.bytes) {
          diff << where << ": bytes differ (mount " << bytes->size() << " bytes, Dovecot "
               << m.bytes.size() << ")\n";
        }
      }
    }
    return diff.str();
  }

  // Polls readdir of `dir` until a UID not in `before` is listed.
  std::optional<uint32_t> WaitForNewUid(const std::string& dir, const std::vector<uint32_t>& before,
                                        milliseconds timeout, milliseconds* took) {
    auto start = steady_clock::now();
    while (true) {
      int err = 0;
      auto names = ListDir(dir, &err);
      if (names) {
        for (const auto& name : *names) {
          if (!name.ends_with(".eml")) continue;
          uint32_t uid = static_cast<uint32_t>(std::strtoul(name.c_str(), nullptr, 10));
          if (uid != 0 && std::find(before.begin(), before.end(), uid) == before.end()) {
            *took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
            return uid;
          }
        }
      }
      if (steady_clock::now() - start > timeout) return std::nullopt;
      std::this_thread::sleep_for(milliseconds(20));
    }
  }

  TempDir store_tmp_;
  std::string store_dir_;
  bool fs_ = false;
  std::unique_ptr<Dovecot> dovecot_;
};

// Both layouts. The seeded store, made by Dovecot:
//   INBOX          UIDs 1-3: "\Seen", "\Flagged $Junk", no flags (in new/)
//   Archive        UID 1
//   Archive/2024   UID 1, "\Answered"
class MaildirDovecotTest : public DovecotInterop, public ::testing::TestWithParam<LayoutCase> {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(SetUpStore(GetParam().fs));
    for (int i = 1; i <= 3; ++i) {
      ASSERT_TRUE(dovecot_->Save("INBOX", Tagged("inbox-" + std::to_string(i))));
    }
    ASSERT_TRUE(dovecot_->FlagsAdd("INBOX", 1, "\\Seen"));
    ASSERT_TRUE(dovecot_->FlagsAdd("INBOX", 2, "\\Flagged $Junk"));
    ASSERT_TRUE(dovecot_->MailboxCreate("Archive"));
    ASSERT_TRUE(dovecot_->MailboxCreate("Archive/2024"));
    ASSERT_TRUE(dovecot_->Save("Archive", Tagged("archive-1")));
    ASSERT_TRUE(dovecot_->Save("Archive/2024", Tagged("archive-2024-1")));
    ASSERT_TRUE(dovecot_->FlagsAdd("Archive/2024", 1, "\\Answered"));
    // Dovecot made these files as uid 5000; mailfs (root) must keep the
    // store usable for it.
    mount_ = MountNew();
    ASSERT_NE(mount_, nullptr);
  }

  std::string P(std::string_view relative) const { return mount_->Path(relative); }
  CommandResult Sh(const std::string& command) const { return mount_->Run(command); }
  DovecotMailboxStatus Status(std::string_view mailbox) {
    auto s = dovecot_->MailboxStatus(mailbox);
    return s.value_or(DovecotMailboxStatus{});
  }
  std::vector<DovecotMessage> Messages(std::string_view mailbox) {
    return dovecot_->Fetch(mailbox).value_or(std::vector<DovecotMessage>{});
  }

  std::unique_ptr<MountedStore> mount_;
};

TEST_P(MaildirDovecotTest, MountShowsWhatDovecotWrote) {
  ExpectMountMatchesDovecot(*mount_);
  auto inbox = Messages("INBOX");
  ASSERT_EQ(inbox.size(), 3u);
  EXPECT_EQ(JoinFlags(MountFlags(P("INBOX/2.eml"))), "$Junk \\Flagged");
}

// cp appends with the UID Dovecot then reports; cp -a carries flags (a
// keyword included, into a mailbox that has no dovecot-keywords yet) and the
// date; a CRLF message keeps its bytes and gets the right ,W=.
TEST_P(MaildirDovecotTest, CpAndCpA) {
  const std::string plain = Tagged("cp-plain");
  std::string crlf = Tagged("cp-crlf");
  for (size_t i = 0; (i = crlf.find('\n', i)) != std::string::npos; i += 2) crlf.insert(i, "\r");
  WriteLocalFile(mount_->scratch() + "/plain.eml", plain);
  WriteLocalFile(mount_->scratch() + "/crlf.eml", crlf);
  const uint32_t inbox_next = Status("INBOX").uidnext;
  const uint32_t archive_next = Status("Archive").uidnext;
  const DovecotMessage source = Messages("INBOX").at(1);  // UID 2: \Flagged $Junk
  ASSERT_EQ(source.uid, 2u);

  auto r = Sh("cp " + ShellQuote(mount_->scratch() + "/plain.eml") + " INBOX/new.eml && cp " +
              ShellQuote(mount_->scratch() + "/crlf.eml") +
              " INBOX/crlf.eml && cp -a INBOX/2.eml " + "Archive/");
  ASSERT_TRUE(r.ok()) << r.Describe();

  auto inbox = Messages("INBOX");
  auto m = FindTagged(inbox, "cp-plain");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->uid, inbox_next);
  EXPECT_EQ(m->bytes, plain);
  EXPECT_TRUE(m->flags.empty()) << m->FlagString();
  m = FindTagged(inbox, "cp-crlf");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->uid, inbox_next + 1);
  EXPECT_EQ(m->bytes, crlf);
  EXPECT_EQ(m->vsize, crlf.size());

  auto archive = Messages("Archive");
  m = FindTagged(archive, "inbox-2");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->uid, archive_next);
  EXPECT_EQ(m->bytes, source.bytes);
  EXPECT_EQ(m->FlagString(), "$Junk \\Flagged");
  EXPECT_EQ(m->received, source.received);
  ExpectMountMatchesDovecot(*mount_);

  // Dovecot can change what mailfs wrote (file ownership and modes), and a
  // fresh mount of the store shows the same UIDs and UID validity.
  ASSERT_TRUE(dovecot_->FlagsAdd("INBOX", inbox_next, "\\Seen $FromDovecot"));
  ASSERT_TRUE(dovecot_->FlagsAdd("Archive", archive_next, "\\Answered"));
  ExpectMountMatchesDovecot(*mount_);
  mount_->Unmount();
  mount_ = MountNew();
  ASSERT_NE(mount_, nullptr);
  ExpectMountMatchesDovecot(*mount_);
}

// mv to another mailbox is a move (next UID there, flags and date kept);
// mv within a mailbox is only a new name for the same message.
TEST_P(MaildirDovecotTest, MvWithinAndBetweenMailboxes) {
  const DovecotMessage first = Messages("INBOX").at(0);  // \Seen
  const uint32_t archive_next = Status("Archive").uidnext;
  const uint32_t year_next = Status("Archive/2024").uidnext;
  auto r =
      Sh("mv INBOX/1.eml Archive/ && mv INBOX/2.eml INBOX/renamed.eml && "
         "mv Archive/1.eml Archive/2024/");
  ASSERT_TRUE(r.ok()) << r.Describe();

  auto inbox = Messages("INBOX");
  std::vector<uint32_t> uids;
  for (const auto& m : inbox) uids.push_back(m.uid);
  EXPECT_EQ(uids, (std::vector<uint32_t>{2, 3})) << "the rename within INBOX changed its UIDs";
  EXPECT_EQ(ReadFile(P("INBOX/renamed.eml")), inbox.at(0).bytes);

  auto archive = Messages("Archive");
  ASSERT_EQ(archive.size(), 1u);
  EXPECT_EQ(archive[0].uid, archive_next);
  EXPECT_EQ(archive[0].bytes, first.bytes);
  EXPECT_EQ(archive[0].FlagString(), "\\Seen");
  EXPECT_EQ(archive[0].received, first.received);
  auto moved = FindTagged(Messages("Archive/2024"), "archive-1");
  ASSERT_TRUE(moved.has_value());
  EXPECT_EQ(moved->uid, year_next);
  ExpectMountMatchesDovecot(*mount_);
}

TEST_P(MaildirDovecotTest, RmExpungesOnlyThatMessage) {
  const auto before = Status("INBOX");
  auto r = Sh("rm INBOX/2.eml");
  ASSERT_TRUE(r.ok()) << r.Describe();
  auto inbox = Messages("INBOX");
  ASSERT_EQ(inbox.size(), 2u);
  EXPECT_EQ(inbox[0].uid, 1u);
  EXPECT_EQ(inbox[1].uid, 3u);
  EXPECT_EQ(Status("INBOX").uidnext, before.uidnext);
  EXPECT_EQ(Status("INBOX").uidvalidity, before.uidvalidity);
  ExpectMountMatchesDovecot(*mount_);
}

// ln is a copy: a new UID in the target, the source stays.
TEST_P(MaildirDovecotTest, LnCopies) {
  const uint32_t archive_next = Status("Archive").uidnext;
  auto r = Sh("ln INBOX/2.eml Archive/ && ln INBOX/3.eml Archive/2024/copy.eml");
  ASSERT_TRUE(r.ok()) << r.Describe();
  auto inbox = Messages("INBOX");
  ASSERT_EQ(inbox.size(), 3u);
  auto copy = FindTagged(Messages("Archive"), "inbox-2");
  ASSERT_TRUE(copy.has_value());
  EXPECT_EQ(copy->uid, archive_next);
  EXPECT_EQ(copy->bytes, inbox[1].bytes);
  EXPECT_EQ(copy->FlagString(), "$Junk \\Flagged");
  EXPECT_TRUE(FindTagged(Messages("Archive/2024"), "inbox-3").has_value());
  ExpectMountMatchesDovecot(*mount_);
}

// Flags and keywords set with setfattr are the flags Dovecot reads; a
// keyword new to the mailbox goes into dovecot-keywords.
TEST_P(MaildirDovecotTest, SetfattrFlagsAndKeywords) {
  auto r =
      Sh("setfattr -n user.mail.seen INBOX/3.eml && "
         "setfattr -n 'user.mail.keyword.$Todo' INBOX/3.eml && "
         "setfattr -x user.mail.flagged INBOX/2.eml && "
         "setfattr -n user.mail.flags -v '\\Answered \\Draft $Later' INBOX/1.eml && "
         "setfattr -n user.mail.deleted Archive/2024/1.eml");
  ASSERT_TRUE(r.ok()) << r.Describe();
  auto inbox = Messages("INBOX");
  ASSERT_EQ(inbox.size(), 3u);
  EXPECT_EQ(inbox[0].FlagString(), "$Later \\Answered \\Draft");
  EXPECT_EQ(inbox[1].FlagString(), "$Junk");
  EXPECT_EQ(inbox[2].FlagString(), "$Todo \\Seen");
  auto year = Messages("Archive/2024");
  ASSERT_EQ(year.size(), 1u);
  EXPECT_EQ(year[0].FlagString(), "\\Answered \\Deleted");
  ExpectMountMatchesDovecot(*mount_);

  // Dovecot extends the dovecot-keywords file mailfs wrote; the mount
  // shows the new keyword.
  ASSERT_TRUE(dovecot_->FlagsAdd("INBOX", 3, "$FromDovecot"));
  ExpectMountMatchesDovecot(*mount_);
  EXPECT_EQ(JoinFlags(MountFlags(P("INBOX/3.eml"))), "$FromDovecot $Todo \\Seen");
}

// user.mail.subscribed is the subscriptions file Dovecot reads.
TEST_P(MaildirDovecotTest, SetfattrSubscribes) {
  auto r =
      Sh("setfattr -n user.mail.subscribed Archive/2024 && "
         "setfattr -n user.mail.subscribed INBOX && mkdir 'Grüße & Co' && "
         "setfattr -n user.mail.subscribed 'Grüße & Co'");
  ASSERT_TRUE(r.ok()) << r.Describe();
  auto subscribed = dovecot_->SubscriptionList();
  ASSERT_TRUE(subscribed.has_value());
  EXPECT_EQ(Sorted(*subscribed), (std::vector<std::string>{"Archive/2024", "Grüße & Co", "INBOX"}));
  r = Sh("setfattr -x user.mail.subscribed Archive/2024");
  ASSERT_TRUE(r.ok()) << r.Describe();
  subscribed = dovecot_->SubscriptionList();
  ASSERT_TRUE(subscribed.has_value());
  EXPECT_EQ(Sorted(*subscribed), (std::vector<std::string>{"Grüße & Co", "INBOX"}));
}

// mkdir, mkdir -p, a name that needs mUTF-7 on disk, rmdir, and directory
// renames (a subtree, and a leaf): Dovecot lists the same names, keeps UID
// validity and UIDs across the rename, and can open every mailbox.
TEST_P(MaildirDovecotTest, MkdirRmdirAndDirectoryRename) {
  WriteLocalFile(mount_->scratch() + "/m.eml", Tagged("deep"));
  auto r =
      Sh("mkdir Projects && mkdir -p Projects/2025/Q1 && mkdir 'Grüße & Co' && "
         "mkdir Empty && cp " +
         ShellQuote(mount_->scratch() + "/m.eml") + " Projects/2025/Q1/ && cp " +
         ShellQuote(mount_->scratch() + "/m.eml") + " 'Grüße & Co/'");
  ASSERT_TRUE(r.ok()) << r.Describe();
  // Dovecot's own encoding of the name on disk, in both layouts.
  struct stat st;
  EXPECT_EQ(::stat(StorePath("Gr&APwA3w-e &- Co").c_str(), &st), 0)
      << "no " << StorePath("Gr&APwA3w-e &- Co");
  auto names = dovecot_->MailboxList();
  ASSERT_TRUE(names.has_value());
  for (const char* name :
       {"Projects", "Projects/2025", "Projects/2025/Q1", "Grüße & Co", "Empty"}) {
    EXPECT_TRUE(std::count(names->begin(), names->end(), name)) << name;
  }
  ExpectMountMatchesDovecot(*mount_);

  const auto q1 = Status("Projects/2025/Q1");
  const auto year = Status("Archive/2024");
  r =
      Sh("mv Projects Work && mv Archive/2024 Archive/2025 && rmdir Empty && "
         "rm 'Grüße & Co/1.eml' && rmdir 'Grüße & Co'");
  ASSERT_TRUE(r.ok()) << r.Describe();
  names = dovecot_->MailboxList();
  ASSERT_TRUE(names.has_value());
  for (const char* gone :
       {"Projects", "Projects/2025", "Projects/2025/Q1", "Archive/2024", "Empty", "Grüße & Co"}) {
    EXPECT_FALSE(std::count(names->begin(), names->end(), gone)) << gone << " is still listed";
  }
  const auto renamed = Status("Work/2025/Q1");
  EXPECT_EQ(renamed.uidvalidity, q1.uidvalidity);
  EXPECT_EQ(renamed.guid, q1.guid);
  EXPECT_EQ(renamed.messages, 1u);
  const auto leaf = Status("Archive/2025");
  EXPECT_EQ(leaf.uidvalidity, year.uidvalidity);
  auto moved = Messages("Work/2025/Q1");
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0].uid, 1u);
  ExpectMountMatchesDovecot(*mount_);

  // Dovecot can write into the mailboxes mailfs made (ownership, modes).
  ASSERT_TRUE(dovecot_->Save("Work/2025/Q1", Tagged("after-rename")));
  ASSERT_TRUE(dovecot_->Save("Work", Tagged("into-parent")));
  ExpectMountMatchesDovecot(*mount_);
}

// Dovecot delivering into the mounted store: the message is listed within
// a second under the UID Dovecot gave it; Dovecot's flag changes and
// expunges show just as fast.
TEST_P(MaildirDovecotTest, DoveadmSaveShowsUpWithinOneSecond) {
  for (std::string mailbox : {"INBOX", "Archive/2024"}) {
    SCOPED_TRACE(mailbox);
    auto before = MountUids(P(mailbox));
    ASSERT_TRUE(before.has_value());
    const std::string tag = "delivered-" + std::to_string(before->size());
    ASSERT_TRUE(dovecot_->Save(mailbox, Tagged(tag)));
    milliseconds took{0};
    auto uid = WaitForNewUid(P(mailbox), *before, kLiveUpdateDeadline, &took);
    ASSERT_TRUE(uid.has_value()) << "nothing new in " << P(mailbox) << " after "
                                 << kLiveUpdateDeadline.count() << " ms";
    RecordProperty("delivery_ms_" + std::string(mailbox == "INBOX" ? "inbox" : "nested"),
                   std::to_string(took.count()));
    auto m = FindTagged(Messages(mailbox), tag);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(*uid, m->uid) << "the mount lists a UID Dovecot did not assign";
    EXPECT_EQ(ReadFile(P(mailbox + "/" + Name(m->uid))), m->bytes);

    // A flag change by Dovecot.
    ASSERT_TRUE(dovecot_->FlagsAdd(mailbox, m->uid, "\\Seen $Later"));
    const std::string file = P(mailbox + "/" + Name(m->uid));
    EXPECT_TRUE(Eventually([&] { return JoinFlags(MountFlags(file)) == "$Later \\Seen"; },
                           kLiveUpdateDeadline))
        << "flags in the mount: '" << JoinFlags(MountFlags(file)) << "'";
    // An expunge by Dovecot.
    ASSERT_TRUE(dovecot_->Expunge(mailbox, m->uid));
    EXPECT_TRUE(Eventually(
        [&] {
          auto uids = MountUids(P(mailbox));
          return uids && std::count(uids->begin(), uids->end(), m->uid) == 0;
        },
        kLiveUpdateDeadline))
        << Name(m->uid) << " still listed after Dovecot expunged it";
  }
  ExpectMountMatchesDovecot(*mount_);
}

INSTANTIATE_TEST_SUITE_P(Layouts, MaildirDovecotTest,
                         ::testing::Values(LayoutCase{"maildirpp", false}, LayoutCase{"fs", true}),
                         LayoutCaseName);

// ---------------------------------------------------------------------------
// A burst of moves: `find INBOX -exec mv -t Archive {} +` is one rename per
// message, and the mount keeps Archive's uidlist lock between them and
// syncs once the burst pauses. Dovecot must see every moved message at
// once, with the UIDs the mount gave them; the lock must not outlive the
// burst (doveadm save into Archive right after succeeds, and the lock file
// is gone within a second); an append and a new keyword through the mount
// right after the burst take the kept lock over instead of waiting for it.

class MaildirDovecotMoveBurstTest : public DovecotInterop, public ::testing::Test {
 protected:
  CommandResult Sh(const std::string& command) const { return mount_->Run(command); }
  DovecotMailboxStatus Status(std::string_view mailbox) {
    return dovecot_->MailboxStatus(mailbox).value_or(DovecotMailboxStatus{});
  }
  std::vector<DovecotMessage> Messages(std::string_view mailbox) {
    return dovecot_->Fetch(mailbox).value_or(std::vector<DovecotMessage>{});
  }

  // Message `i` straight into INBOX's cur/ with flag letters `flags`, as
  // a delivery would put it (owned by Dovecot's user); Dovecot numbers it
  // when it next looks.
  void Deliver(int i, const std::string& bytes, std::string_view flags) {
    const std::string path = store_dir_ + "/cur/" + std::to_string(1700000000 + i) + ".M" +
                             std::to_string(i) + "P1.test,S=" + std::to_string(bytes.size()) +
                             ",W=" + std::to_string(maildir::VirtualSize(bytes)) + ":2," +
                             std::string(flags);
    WriteLocalFile(path, bytes);
    ASSERT_EQ(::chown(path.c_str(), kDovecotMailUid, kDovecotMailGid), 0) << std::strerror(errno);
  }

  std::unique_ptr<MountedStore> mount_;
};

TEST_F(MaildirDovecotMoveBurstTest, MvOfManyMessagesIsWhatDovecotSees) {
  SetTestTimeout(seconds(120));
  constexpr int kMessages = 300;
  ASSERT_NO_FATAL_FAILURE(SetUpStore(/*fs=*/false));
  ASSERT_TRUE(dovecot_->MailboxCreate("Archive"));
  // The messages go straight into INBOX's cur/ (as a delivery would), and
  // Dovecot numbers them.
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_NO_FATAL_FAILURE(
        Deliver(i, Tagged("burst-" + std::to_string(i)), i % 3 == 0 ? "S" : ""));
  }
  auto before = Messages("INBOX");
  ASSERT_EQ(before.size(), static_cast<size_t>(kMessages));
  const uint32_t archive_next = Status("Archive").uidnext;
  mount_ = MountNew();
  ASSERT_NE(mount_, nullptr);

  auto r = Sh("find INBOX -name '*.eml' -exec mv -t Archive {} +");
  ASSERT_TRUE(r.ok()) << r.Describe();
  // Straight after the burst: an append and a new keyword through the
  // mount, in the folder whose lock the burst may still keep.
  WriteLocalFile(mount_->scratch() + "/after.eml", Tagged("after-burst-cp"));
  const auto cp_start = steady_clock::now();
  r = Sh("cp " + ShellQuote(mount_->scratch() + "/after.eml") + " Archive/after.eml");
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_LT(steady_clock::now() - cp_start, seconds(2)) << "the append waited for the lock";
  r = Sh("setfattr -n user.mail.keyword.AfterBurst Archive/" + Name(archive_next));
  ASSERT_TRUE(r.ok()) << r.Describe();
  // doveadm save waits for the lock if the mount still keeps it (up to
  // mail_max_lock_timeout=5s, then it fails or shows nothing).
  ASSERT_TRUE(dovecot_->Save("Archive", Tagged("after-burst-save")));
  const std::string lock = StorePath("Archive") + "/dovecot-uidlist.lock";
  EXPECT_TRUE(Eventually([&] { return !std::filesystem::exists(lock); }, seconds(1)))
      << lock << " outlives the burst";

  EXPECT_TRUE(Messages("INBOX").empty());
  auto archive = Messages("Archive");
  ASSERT_EQ(archive.size(), static_cast<size_t>(kMessages + 2));
  std::map<std::string, const DovecotMessage*> moved;  // bytes -> message in Archive
  for (const auto& m : archive) moved[m.bytes] = &m;
  for (const auto& m : before) {
    auto it = moved.find(m.bytes);
    if (it == moved.end()) {
      ADD_FAILURE() << "INBOX UID " << m.uid << " is not in Archive";
      continue;
    }
    const DovecotMessage& there = *it->second;
    EXPECT_GE(there.uid, archive_next);
    EXPECT_LT(there.uid, archive_next + kMessages);
    std::vector<std::string> flags = m.flags;
    if (there.uid == archive_next) {  // the one given a keyword after the burst
      flags.push_back("AfterBurst");
      std::sort(flags.begin(), flags.end());
    }
    EXPECT_EQ(JoinFlags(there.flags), JoinFlags(flags)) << "INBOX UID " << m.uid;
    EXPECT_EQ(there.received, m.received) << "INBOX UID " << m.uid;
  }
  EXPECT_TRUE(FindTagged(archive, "after-burst-cp").has_value());
  EXPECT_TRUE(FindTagged(archive, "after-burst-save").has_value());
  ExpectMountMatchesDovecot(*mount_);
  mount_->Unmount();
  mount_ = MountNew();
  ASSERT_NE(mount_, nullptr);
  ExpectMountMatchesDovecot(*mount_);
}

// A burst of moves keeps the target's uidlist lock between moves, but
// lets go of it when the burst pauses for 5 ms and after 100 ms at most
// (README, Choices): a doveadm save started in the middle of a long burst
// gets the lock and lands among the moved messages instead of waiting for
// the burst to end. (With neither rule, doveadm gives up after its 5 s
// lock timeout and this fails; either rule alone is enough for it here.)
TEST_F(MaildirDovecotMoveBurstTest, DovecotGetsTheLockDuringALongBurst) {
  SetTestTimeout(seconds(180));
  constexpr int kMessages = 3000;
  ASSERT_NO_FATAL_FAILURE(SetUpStore(/*fs=*/false));
  ASSERT_TRUE(dovecot_->MailboxCreate("Archive"));
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_NO_FATAL_FAILURE(Deliver(i, Tagged("long-burst-" + std::to_string(i)), ""));
  }
  mount_ = MountNew();
  ASSERT_NE(mount_, nullptr);

  std::atomic<bool> burst_done{false};
  CommandResult moved;
  std::thread mover([&] {
    moved = Sh("find INBOX -name '*.eml' -exec mv -t Archive {} +");
    burst_done = true;
  });
  const std::string archive_cur = StorePath("Archive") + "/cur";
  const bool started = Eventually(
      [&] {
        return burst_done ||
               ListDir(archive_cur).value_or(std::vector<std::string>{}).size() >= 100;
      },
      seconds(60));
  const bool saved_during_burst =
      started && !burst_done && dovecot_->Save("Archive", Tagged("during-burst"));
  const bool burst_still_running = !burst_done;
  mover.join();
  ASSERT_TRUE(moved.ok()) << moved.Describe();
  ASSERT_TRUE(started) << "the burst never began";
  ASSERT_TRUE(saved_during_burst)
      << "the burst ended before doveadm save began (too fast a machine?)";
  EXPECT_TRUE(burst_still_running) << "doveadm save returned only after the burst";

  auto archive = Messages("Archive");
  ASSERT_EQ(archive.size(), static_cast<size_t>(kMessages + 1));
  auto saved = FindTagged(archive, "during-burst");
  ASSERT_TRUE(saved.has_value());
  size_t moved_after_it = 0;
  for (const auto& m : archive) moved_after_it += m.uid > saved->uid;
  EXPECT_GT(moved_after_it, 0u) << "the save got the lock only after the last move";
  ExpectMountMatchesDovecot(*mount_);
}

// ---------------------------------------------------------------------------
// Two mounts of one store and doveadm save, appending into one mailbox at
// the same time: 3 writers x 500 messages. doveadm save runs ~50-70
// messages a second here (one process per message, each taking the uidlist
// lock), so its 500 take 8-15 s; the two cp loops finish earlier, and the
// whole test stays well under a minute. Not about layout: Maildir++ only.

constexpr int kMessagesPerWriter = 500;

// What writer `w` writes as message `i`: the same text as the printf in
// the shell loops below.
std::string WriterMessage(int w, int i) {
  const std::string tag = "w" + std::to_string(w) + "-m" + std::to_string(i);
  return "From: writer" + std::to_string(w) + "@example.org\nSubject: concurrent " + tag +
         "\nMessage-ID: <" + tag + "@mailfs.test>\n\nbody marker " + tag + "\n";
}

std::string WriterLoop(int w, const std::string& deliver) {
  const std::string n = std::to_string(w);
  return "i=0; while [ $i -lt " + std::to_string(kMessagesPerWriter) +
         " ]; do printf 'From: writer%d@example.org\\nSubject: concurrent w%d-m%d\\n"
         "Message-ID: <w%d-m%d@mailfs.test>\\n\\nbody marker w%d-m%d\\n' " +
         n + " " + n + " $i " + n + " $i " + n + " $i " + deliver +
         " || { echo \"message $i failed\" >&2; exit 1; }; i=$((i+1)); done";
}

class MaildirDovecotConcurrencyTest : public DovecotInterop, public ::testing::Test {};

TEST_F(MaildirDovecotConcurrencyTest, TwoMountsAndDoveadmSaveAppendAtOnce) {
  SetTestTimeout(seconds(240));
  ASSERT_NO_FATAL_FAILURE(SetUpStore(/*fs=*/false));
  ASSERT_TRUE(dovecot_->MailboxCreate("Load"));
  auto a = MountNew();
  ASSERT_NE(a, nullptr);
  auto b = MountNew();
  ASSERT_NE(b, nullptr);

  // Writers 0 and 1: printf into a local file, cp into Load of mount a or
  // b. Writer 2: printf piped into doveadm save.
  std::vector<std::unique_ptr<ShellProcess>> writers;
  for (int w = 0; w < 2; ++w) {
    const MountedStore& mount = w == 0 ? *a : *b;
    const std::string local = ShellQuote(mount.scratch() + "/w" + std::to_string(w));
    const std::string deliver = "> " + local + " && cp " + local + " " +
                                ShellQuote(mount.Path("Load")) + "/w" + std::to_string(w) +
                                "-m$i.eml";
    writers.push_back(std::make_unique<ShellProcess>(WriterLoop(w, deliver), mount.root()));
  }
  writers.push_back(std::make_unique<ShellProcess>(
      WriterLoop(2, "| " + dovecot_->ShellCommand({"save", "-m", "Load"})), "/"));
  for (auto& w : writers) ASSERT_TRUE(w->started()) << w->start_error();

  auto start = steady_clock::now();
  for (size_t w = 0; w < writers.size(); ++w) {
    CommandResult r = writers[w]->Wait(seconds(150));
    EXPECT_TRUE(r.ok()) << "writer " << w << ": " << r.Describe();
    // doveadm exits 0 after logging errors: its stderr must be empty.
    EXPECT_EQ(r.err, "") << "writer " << w;
  }
  const double elapsed = std::chrono::duration<double>(steady_clock::now() - start).count();
  RecordProperty("append_seconds", std::to_string(elapsed));

  // Dovecot: exactly the 1500 written messages, once each, unique UIDs.
  std::map<std::string, std::string> expected;  // bytes -> tag
  for (int w = 0; w < 3; ++w) {
    for (int i = 0; i < kMessagesPerWriter; ++i) {
      expected[WriterMessage(w, i)] = "w" + std::to_string(w) + "-m" + std::to_string(i);
    }
  }
  auto messages = dovecot_->Fetch("Load");
  ASSERT_TRUE(messages.has_value());
  EXPECT_EQ(messages->size(), expected.size());
  std::set<uint32_t> uids;
  std::set<std::string> found;
  int bad = 0;
  for (const auto& m : *messages) {
    if (!uids.insert(m.uid).second && ++bad <= 5) ADD_FAILURE() << "UID " << m.uid << " twice";
    auto it = expected.find(m.bytes);
    if (it == expected.end()) {
      if (++bad <= 5) ADD_FAILURE() << "UID " << m.uid << " holds unwritten bytes:\n" << m.bytes;
    } else if (!found.insert(it->second).second && ++bad <= 5) {
      ADD_FAILURE() << it->second << " stored twice";
    }
  }
  int missing = 0;
  for (const auto& [bytes, tag] : expected) {
    if (!found.count(tag) && ++missing <= 5) ADD_FAILURE() << tag << " is missing";
  }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(missing, 0);

  // Both mounts list the same UIDs with the same bytes.
  std::vector<uint32_t> dovecot_uids(uids.begin(), uids.end());
  for (const MountedStore* mount : {a.get(), b.get()}) {
    SCOPED_TRACE(mount->root());
    std::vector<uint32_t> listed;
    EXPECT_TRUE(Eventually(
        [&] {
          auto got = MountUids(mount->Path("Load"));
          if (got) listed = *got;
          return got && *got == dovecot_uids;
        },
        seconds(5)))
        << "the mount lists " << listed.size() << " UIDs, Dovecot " << dovecot_uids.size();
    int differ = 0;
    for (const auto& m : *messages) {
      auto bytes = ReadFile(mount->Path("Load/" + Name(m.uid)));
      if (bytes != m.bytes && ++differ <= 5) {
        ADD_FAILURE() << "Load/" << Name(m.uid) << " differs from Dovecot's";
      }
    }
    EXPECT_EQ(differ, 0);
  }
  auto status = dovecot_->MailboxStatus("Load");
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(XattrNumber(a->Path("Load"), "user.mail.uidnext"), status->uidnext);
  EXPECT_EQ(XattrNumber(b->Path("Load"), "user.mail.uidnext"), status->uidnext);
  EXPECT_TRUE(dovecot_->ForceResync("Load"));
}

}  // namespace
}  // namespace mailfs::test
