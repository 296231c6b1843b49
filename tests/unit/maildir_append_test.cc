// Appends to a Maildir folder from many threads at once (issue 5: group
// commit), through OpenMaildirMailboxSet and the MailboxData API, without a
// mount. Appends that wait for the folder while another commits are
// committed together: one uidlist lock, one uidlist write and one sync for
// the group. What must hold whatever the grouping:
//  - every append that reports success has its own UID, and one thread's
//    UIDs increase in the order it appended;
//  - every such message is in cur/ under a file whose uidlist line names
//    that UID, with the bytes appended; a restarted store and Dovecot see
//    exactly the same;
//  - an append that fails leaves nothing (no file in cur/, new/ or tmp/,
//    no uidlist line) and does not take the others down with it; a failure
//    of a shared step (the uidlist cannot be written) fails the whole group
//    and leaves none of it stored.
// To make a group form for certain, the tests hold dovecot-uidlist.lock
// themselves (as Dovecot would) until every append waits, and count the
// times the backend then took the lock.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backends/maildir/format/uidlist.h"
#include "backends/maildir/maildir_backend.h"
#include "tests/support/backend_factories.h"
#include "tests/support/hand_maildir.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/test_util.h"

namespace mailfs::test {
namespace {

using namespace std::chrono_literals;

// A content that fails to read after its first bytes, as a spool file on
// a failing disk would: the append fails while the message is staged.
class FailingContent final : public ContentReader {
 public:
  uint64_t size() const override { return 1 << 20; }
  Result<size_t> ReadAt(uint64_t offset, std::span<char> out) const override {
    if (offset > 0) return Status::Io("the spool cannot be read");
    std::string_view head = "Subject: never stored\n\n";
    size_t n = std::min(out.size(), head.size());
    std::copy_n(head.data(), n, out.data());
    return n;
  }
};

// Counts IN_CREATE of one name in one directory (a dotlock being taken).
class CreationCounter {
 public:
  CreationCounter(const std::string& dir, std::string name) : name_(std::move(name)) {
    fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd_ < 0 || inotify_add_watch(fd_, dir.c_str(), IN_CREATE) < 0) {
      ADD_FAILURE() << "inotify on " << dir << ": " << std::strerror(errno);
    }
  }
  ~CreationCounter() {
    if (fd_ >= 0) close(fd_);
  }
  CreationCounter(const CreationCounter&) = delete;
  CreationCounter& operator=(const CreationCounter&) = delete;

  // Every creation queued so far.
  int Count() {
    alignas(struct inotify_event) char buffer[64 * 1024];
    for (;;) {
      ssize_t n = read(fd_, buffer, sizeof buffer);
      if (n <= 0) break;
      for (ssize_t at = 0; at < n;) {
        auto* event = reinterpret_cast<struct inotify_event*>(buffer + at);
        at += static_cast<ssize_t>(sizeof(struct inotify_event) + event->len);
        if (event->len > 0 && name_ == event->name) ++count_;
      }
    }
    return count_;
  }

 private:
  std::string name_;
  int fd_ = -1;
  int count_ = 0;
};

class MaildirAppendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.Path("mail");
    ASSERT_TRUE(MakeMaildirDirs(root_));
  }

  std::shared_ptr<MailboxSet> OpenStore(bool fsync = true) {
    MaildirOptions options;
    options.root = root_;
    options.fsync = fsync;
    options.lock_timeout = 30s;
    auto store = OpenMaildirMailboxSet(options);
    if (!store.ok()) {
      ADD_FAILURE() << "OpenMaildirMailboxSet(" << root_ << "): " << store.status().ToString();
      return nullptr;
    }
    return *store;
  }

  static std::shared_ptr<MailboxData> Inbox(MailboxSet& store) {
    auto mailbox = store.GetMailbox("INBOX");
    if (!mailbox.ok()) {
      ADD_FAILURE() << "GetMailbox(INBOX): " << mailbox.status().ToString();
      return nullptr;
    }
    return *mailbox;
  }

  // Holds dovecot-uidlist.lock as another process of this host would: with
  // this process's pid, which is alive, so the backend waits for it.
  void HoldUidlistLock() {
    ASSERT_TRUE(WriteBytes(root_ + "/dovecot-uidlist.lock",
                           std::to_string(getpid()) + ":" + HostNameForLock()));
  }
  void ReleaseUidlistLock() {
    ASSERT_EQ(unlink((root_ + "/dovecot-uidlist.lock").c_str()), 0) << std::strerror(errno);
  }
  static std::string HostNameForLock() {
    char name[256] = {};
    gethostname(name, sizeof name - 1);
    return name;
  }

  // The message files in tmp/ (not the backend's hidden lock source).
  std::vector<std::string> TmpFiles() const {
    std::vector<std::string> files;
    for (const std::string& name : ListDir(root_ + "/tmp").value_or(std::vector<std::string>{})) {
      if (!name.empty() && name[0] != '.') files.push_back(name);
    }
    return files;
  }

  // Waits until `count` staged files are in tmp/, then a little more, so
  // that each of their appends has queued for the folder.
  bool WaitForStaged(size_t count) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (TmpFiles().size() < count) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(5ms);
    }
    std::this_thread::sleep_for(300ms);
    return true;
  }

  // Every line of the uidlist, after checking that it parses cleanly.
  std::vector<maildir::UidlistRecord> UidlistRecords() {
    auto bytes = ReadBytes(root_ + "/dovecot-uidlist");
    if (!bytes) {
      ADD_FAILURE() << "no uidlist";
      return {};
    }
    auto parsed = maildir::Uidlist::Parse(*bytes);
    if (!parsed.ok()) {
      ADD_FAILURE() << parsed.status().ToString();
      return {};
    }
    EXPECT_TRUE(parsed->problems.empty()) << *bytes;
    return parsed->records;
  }

  TempDir tmp_;
  TempDir scratch_;
  std::string root_;
};

// Many threads append to one folder at once, several messages each.
TEST_F(MaildirAppendTest, ConcurrentAppendsGetDistinctIncreasingUids) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 12;
  constexpr int kEach = 6;
  std::vector<std::vector<std::pair<uint32_t, std::string>>> appended(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // A handle of its own per thread, as the driver has per open file.
      auto inbox = Inbox(*store);
      if (inbox == nullptr) return;
      for (int i = 0; i < kEach; ++i) {
        std::string bytes =
            HostileTestMessage("thread-" + std::to_string(t) + "-message-" + std::to_string(i));
        auto uid = inbox->Append(MakeAppendMessage(bytes), false);
        if (!uid.ok()) {
          ++failures;
          ADD_FAILURE() << uid.status().ToString();
          continue;
        }
        appended[t].emplace_back(*uid, bytes);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_EQ(failures.load(), 0);

  std::map<uint32_t, std::string> expected;
  for (int t = 0; t < kThreads; ++t) {
    for (size_t i = 1; i < appended[t].size(); ++i) {
      EXPECT_LT(appended[t][i - 1].first, appended[t][i].first) << "thread " << t;
    }
    for (const auto& [uid, bytes] : appended[t]) {
      EXPECT_TRUE(expected.emplace(uid, bytes).second) << "UID " << uid << " given twice";
    }
  }
  EXPECT_EQ(expected.size(), size_t{kThreads * kEach});
  auto inbox = Inbox(*store);
  ASSERT_NE(inbox, nullptr);
  EXPECT_EQ(BackendContents(*inbox), expected);
  auto uid_validity = inbox->uid_validity();
  EXPECT_EQ(UidlistMismatch(root_, uid_validity, expected), "");
  EXPECT_EQ(UidlistRecords().size(), expected.size());
  EXPECT_EQ(TmpFiles(), std::vector<std::string>{});

  auto reopened = OpenStore();
  ASSERT_NE(reopened, nullptr);
  auto again = Inbox(*reopened);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(BackendContents(*again), expected) << "after reopening the store";
  EXPECT_EQ(DovecotMismatch(root_, scratch_.Path("dovecot-copy"), uid_validity, expected), "");
}

// While another process holds the lock, appends queue; once it lets go,
// they are committed in (at most a few) groups, not one lock each. Appends
// that fail, while staging or in the group itself, fail alone.
TEST_F(MaildirAppendTest, WaitingAppendsCommitAsAGroupAndFailuresStayAlone) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Inbox(*store);
  ASSERT_NE(inbox, nullptr);
  ASSERT_NE(inbox->uid_validity(), 0u);  // the folder is read and its uidlist made
  HoldUidlistLock();
  CreationCounter locks(root_, "dovecot-uidlist.lock");

  constexpr int kGood = 10;
  // Flags with more keywords than a Maildir folder has letters (26): the
  // append is refused while its group commits.
  FlagSet too_many;
  for (int i = 0; i < 27; ++i) too_many.AddKeyword("$Keyword" + std::to_string(i));
  FlagSet one_keyword;
  one_keyword.AddKeyword("$Important");
  one_keyword.Add(SystemFlag::kSeen);

  std::map<int, std::string> bytes_of;
  std::map<int, Result<uint32_t>> results;
  std::mutex results_mu;
  std::vector<std::thread> threads;
  auto run = [&](int id, AppendMessage message) {
    threads.emplace_back([&, id, message = std::move(message)] {
      auto handle = Inbox(*store);
      if (handle == nullptr) return;
      auto uid = handle->Append(message, false);
      std::lock_guard lock(results_mu);
      results.emplace(id, std::move(uid));
    });
  };
  for (int i = 0; i < kGood; ++i) {
    bytes_of[i] = HostileTestMessage("grouped-" + std::to_string(i));
    run(i, MakeAppendMessage(bytes_of[i], i == 3 ? one_keyword : FlagSet()));
  }
  const int kRefused = 100, kUnreadable = 101;
  run(kRefused, MakeAppendMessage(HostileTestMessage("refused"), too_many));
  run(kUnreadable, AppendMessage{std::make_shared<FailingContent>(), {}, 0});
  // Every good append and the refused one are staged and waiting.
  ASSERT_TRUE(WaitForStaged(kGood + 1)) << TmpFiles().size() << " staged";
  EXPECT_EQ(UidlistRecords().size(), 0u);  // nothing committed under the foreign lock
  ReleaseUidlistLock();
  for (std::thread& thread : threads) thread.join();

  ASSERT_EQ(results.size(), size_t{kGood + 2});
  MAILFS_EXPECT_CODE(results.at(kUnreadable), kIo);
  MAILFS_EXPECT_CODE(results.at(kRefused), kNoSpace);  // no 27th keyword letter
  std::map<uint32_t, std::string> expected;
  for (int i = 0; i < kGood; ++i) {
    const auto& uid = results.at(i);
    MAILFS_EXPECT_OK(uid);
    if (uid.ok()) {
      EXPECT_TRUE(expected.emplace(*uid, bytes_of[i]).second) << "UID " << *uid;
    }
  }
  ASSERT_EQ(expected.size(), size_t{kGood});
  // The first waiter took the lock alone (it was waiting for it when the
  // others queued), the rest as one group; a straggler may make a third.
  // One lock per append would be 11.
  EXPECT_LE(locks.Count(), 3);

  EXPECT_EQ(BackendContents(*inbox), expected);
  EXPECT_EQ(UidlistMismatch(root_, inbox->uid_validity(), expected), "");
  EXPECT_EQ(UidlistRecords().size(), expected.size());  // no line for the failed ones
  EXPECT_EQ(TmpFiles(), std::vector<std::string>{});
  auto info = inbox->Get(*results.at(3));
  MAILFS_ASSERT_OK(info);
  EXPECT_TRUE(info->flags.Has(SystemFlag::kSeen));
  EXPECT_TRUE(info->flags.HasKeyword("$Important"));
  EXPECT_EQ(ReadBytes(root_ + "/dovecot-keywords"), "0 $Important\n");

  auto reopened = OpenStore();
  ASSERT_NE(reopened, nullptr);
  auto again = Inbox(*reopened);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(BackendContents(*again), expected) << "after reopening the store";
}

// A shared step of the group fails (the uidlist cannot be replaced: a
// directory took its place): every append of the group fails and none of
// them stays stored.
TEST_F(MaildirAppendTest, FailedUidlistWriteFailsTheWholeGroupAndStoresNothing) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Inbox(*store);
  ASSERT_NE(inbox, nullptr);
  std::string first = HostileTestMessage("before-the-breakage");
  auto first_uid = inbox->Append(MakeAppendMessage(first), false);
  MAILFS_ASSERT_OK(first_uid);
  auto cur_before = Sorted(ListDir(root_ + "/cur").value_or(std::vector<std::string>{}));
  ASSERT_EQ(cur_before.size(), 1u);

  HoldUidlistLock();
  std::vector<Result<uint32_t>> results(6, Status::Io("not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] {
      auto handle = Inbox(*store);
      if (handle == nullptr) return;
      results[i] = handle->Append(
          MakeAppendMessage(HostileTestMessage("doomed-" + std::to_string(i))), false);
    });
  }
  ASSERT_TRUE(WaitForStaged(results.size()));
  ASSERT_EQ(rename((root_ + "/dovecot-uidlist").c_str(), (root_ + "/uidlist-aside").c_str()), 0);
  ASSERT_EQ(mkdir((root_ + "/dovecot-uidlist").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((root_ + "/dovecot-uidlist/x").c_str(), 0755), 0);  // rename() cannot replace it
  ReleaseUidlistLock();
  for (std::thread& thread : threads) thread.join();
  for (const auto& result : results) EXPECT_FALSE(result.ok());
  EXPECT_EQ(Sorted(ListDir(root_ + "/cur").value_or(std::vector<std::string>{})), cur_before);
  EXPECT_EQ(ListDir(root_ + "/new").value_or(std::vector<std::string>{"?"}),
            std::vector<std::string>{});
  EXPECT_EQ(TmpFiles(), std::vector<std::string>{});

  // Put the uidlist back (with the store closed, so that its watcher cannot
  // write a uidlist of its own meanwhile): the next store carries on.
  inbox.reset();
  store.reset();
  ASSERT_EQ(rmdir((root_ + "/dovecot-uidlist/x").c_str()), 0);
  ASSERT_EQ(rmdir((root_ + "/dovecot-uidlist").c_str()), 0);
  ASSERT_EQ(rename((root_ + "/uidlist-aside").c_str(), (root_ + "/dovecot-uidlist").c_str()), 0);
  auto reopened = OpenStore();
  ASSERT_NE(reopened, nullptr);
  auto again = Inbox(*reopened);
  ASSERT_NE(again, nullptr);
  std::string later = HostileTestMessage("after-the-repair");
  auto later_uid = again->Append(MakeAppendMessage(later), false);
  MAILFS_ASSERT_OK(later_uid);
  EXPECT_GT(*later_uid, *first_uid);
  std::map<uint32_t, std::string> expected{{*first_uid, first}, {*later_uid, later}};
  EXPECT_EQ(BackendContents(*again), expected);
  EXPECT_EQ(UidlistMismatch(root_, again->uid_validity(), expected), "");
}

// The dotlock is link()ed from a file the folder keeps in tmp/: it is
// there between appends, made again when something removed it (Dovecot
// cleans tmp/), and gone with the store; no lock is left behind. What a
// killed mailfs left is removed at the folder's first lock.
TEST_F(MaildirAppendTest, DotlockSourceLivesInTmpAndComesBack) {
  auto hidden_in_tmp = [&] {
    std::vector<std::string> hidden;
    for (const std::string& name : ListDir(root_ + "/tmp").value_or(std::vector<std::string>{})) {
      if (!name.empty() && name[0] == '.') hidden.push_back(name);
    }
    return hidden;
  };
  // What a mailfs killed earlier left: its source in tmp/, a lock's
  // temporary file beside the uidlist. A process that is still there
  // (pid 1) keeps its file.
  pid_t dead = fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) _exit(0);
  ASSERT_EQ(waitpid(dead, nullptr, 0), dead);
  const std::string prefix = ".mailfs-lock." + HostNameForLock() + ".";
  const std::string dead_source = root_ + "/tmp/" + prefix + std::to_string(dead) + ".3";
  const std::string dead_temp = root_ + "/" + prefix + std::to_string(dead) + ".8";
  const std::string live_source = root_ + "/tmp/" + prefix + "1.2";
  for (const std::string& path : {dead_source, dead_temp, live_source}) {
    ASSERT_TRUE(WriteBytes(path, "x"));
  }
  std::map<uint32_t, std::string> expected;
  uint32_t uid_validity = 0;
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    auto inbox = Inbox(*store);
    ASSERT_NE(inbox, nullptr);
    for (int i = 0; i < 3; ++i) {
      std::string bytes = HostileTestMessage("lock-source-" + std::to_string(i));
      auto uid = inbox->Append(MakeAppendMessage(bytes), false);
      MAILFS_ASSERT_OK(uid);
      expected[*uid] = bytes;
      EXPECT_FALSE(ReadBytes(dead_source).has_value());
      EXPECT_FALSE(ReadBytes(dead_temp).has_value());
      EXPECT_EQ(ReadBytes(live_source), "x") << "the live process's file is kept";
      auto sources = hidden_in_tmp();
      std::erase(sources, live_source.substr(live_source.rfind('/') + 1));
      ASSERT_EQ(sources.size(), 1u);
      EXPECT_EQ(sources[0].rfind(".mailfs-lock.", 0), 0u) << sources[0];
      EXPECT_EQ(ReadBytes(root_ + "/tmp/" + sources[0]),
                std::to_string(getpid()) + ":" + HostNameForLock());
      EXPECT_FALSE(ReadBytes(root_ + "/dovecot-uidlist.lock").has_value());
      // Removed behind the folder's back after the second append.
      if (i == 1) {
        ASSERT_EQ(unlink((root_ + "/tmp/" + sources[0]).c_str()), 0);
      }
    }
    EXPECT_EQ(BackendContents(*inbox), expected);
    uid_validity = inbox->uid_validity();
  }
  EXPECT_EQ(hidden_in_tmp(),
            std::vector<std::string>{live_source.substr(live_source.rfind('/') + 1)});
  EXPECT_EQ(UidlistMismatch(root_, uid_validity, expected), "");
}

// With fsync=no nothing on the append path syncs; Sync() makes it durable
// (syncfs) and reports success.
TEST_F(MaildirAppendTest, RelaxedStoreSyncsOnRequest) {
  auto store = OpenStore(/*fsync=*/false);
  ASSERT_NE(store, nullptr);
  auto inbox = Inbox(*store);
  ASSERT_NE(inbox, nullptr);
  std::string bytes = HostileTestMessage("relaxed");
  auto uid = inbox->Append(MakeAppendMessage(bytes), false);
  MAILFS_ASSERT_OK(uid);
  MAILFS_EXPECT_OK(store->Sync());
  EXPECT_EQ(BackendContents(*inbox), (std::map<uint32_t, std::string>{{*uid, bytes}}));
  auto durable = OpenStore();
  ASSERT_NE(durable, nullptr);
  MAILFS_EXPECT_OK(durable->Sync());
}

// The driver hands a finished spool file over whole (an unnamed O_TMPFILE
// file): the Maildir file becomes that very inode, linked into tmp/ and
// renamed into cur/, with the name, mode and times a copied one gets.
class MaildirAdoptTest : public MaildirAppendTest {
 protected:
  // An unnamed file in `dir` holding `bytes`; -1 (and a failure) if not.
  static int UnnamedFile(const std::string& dir, std::string_view bytes) {
    int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
      ADD_FAILURE() << "O_TMPFILE in " << dir << ": " << std::strerror(errno);
      return -1;
    }
    if (write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
      ADD_FAILURE() << "write: " << std::strerror(errno);
    }
    return fd;
  }

  // The only file in cur/, stat'ed.
  struct stat OnlyCurFile(std::string* name) {
    struct stat st {};
    auto names = ListDir(root_ + "/cur");
    if (!names || names->size() != 1) {
      ADD_FAILURE() << "expected one file in cur/";
      return st;
    }
    *name = names->front();
    if (stat((root_ + "/cur/" + *name).c_str(), &st) != 0) ADD_FAILURE() << std::strerror(errno);
    return st;
  }

  // An append of the file `fd` holds, offered for adoption or not.
  static AppendMessage Offered(int fd, size_t size, bool adoptable = true) {
    AppendMessage message;
    message.content = std::make_shared<FdContent>(fd, size, adoptable);
    return message;
  }

  static std::string Message() {
    // Bare LFs as well as CRLFs, so that W= differs from S=.
    return "Subject: handed over\r\nMessage-ID: <adopt@mailfs.test>\n\nfirst line\nsecond\r\n";
  }
};

TEST_F(MaildirAdoptTest, AnUnnamedFileHandedOverBecomesTheMessageFile) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Inbox(*store);
  ASSERT_NE(inbox, nullptr);
  const std::string bytes = Message();
  ScopedFd fd(UnnamedFile(scratch_.path(), bytes));
  ASSERT_GE(fd.get(), 0);
  AppendMessage message = Offered(fd.get(), bytes.size());
  message.internal_date = 1700000000;
  auto uid = inbox->Append(message, false);
  MAILFS_ASSERT_OK(uid);

  struct stat spool {};
  ASSERT_EQ(fstat(fd.get(), &spool), 0);
  std::string name;
  struct stat stored = OnlyCurFile(&name);
  EXPECT_EQ(stored.st_dev, spool.st_dev);
  EXPECT_EQ(stored.st_ino, spool.st_ino) << "copied, not linked";
  EXPECT_EQ(stored.st_nlink, 1u);
  EXPECT_EQ(stored.st_mtime, 1700000000);
  size_t bare_lfs = 0;
  for (size_t i = 0; i < bytes.size(); ++i)
    bare_lfs += bytes[i] == '\n' && (i == 0 || bytes[i - 1] != '\r');
  EXPECT_NE(name.find(fmt::format(",S={},W={}:2,", bytes.size(), bytes.size() + bare_lfs)),
            std::string::npos)
      << name;
  EXPECT_EQ(ReadBytes(root_ + "/cur/" + name), bytes);
  EXPECT_EQ(BackendContents(*inbox), (std::map<uint32_t, std::string>{{*uid, bytes}}));
  EXPECT_TRUE(TmpFiles().empty());

  // A copied message gets the same mode.
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{*uid}));
  MAILFS_ASSERT_OK(inbox->Append(MakeAppendMessage(bytes), false));
  struct stat copied = OnlyCurFile(&name);
  EXPECT_NE(copied.st_ino, spool.st_ino);
  EXPECT_EQ(stored.st_mode, copied.st_mode);
}

// What is not an unnamed file handed over is copied, and the original
// left as it was: a file not offered, a file with a name (the store never
// shares an inode with a file someone else reaches), one on another
// filesystem.
TEST_F(MaildirAdoptTest, OtherFilesAreCopied) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Inbox(*store);
  ASSERT_NE(inbox, nullptr);
  const std::string bytes = Message();

  ScopedFd not_offered(UnnamedFile(scratch_.path(), bytes));
  std::string named_path = scratch_.Path("named.eml");
  ASSERT_TRUE(WriteBytes(named_path, bytes));
  ScopedFd named(open(named_path.c_str(), O_RDWR | O_CLOEXEC));
  // /dev/shm is a tmpfs; the store is not.
  ScopedFd elsewhere(UnnamedFile("/dev/shm", bytes));
  struct {
    const char* what;
    int fd;
    bool adoptable;
  } cases[] = {{"not offered", not_offered.get(), false},
               {"named", named.get(), true},
               {"on another filesystem", elsewhere.get(), true}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    ASSERT_GE(c.fd, 0);
    struct stat before {};
    ASSERT_EQ(fstat(c.fd, &before), 0);
    auto uid = inbox->Append(Offered(c.fd, bytes.size(), c.adoptable), false);
    MAILFS_ASSERT_OK(uid);
    std::string name;
    struct stat stored = OnlyCurFile(&name);
    EXPECT_FALSE(stored.st_dev == before.st_dev && stored.st_ino == before.st_ino);
    struct stat after {};
    ASSERT_EQ(fstat(c.fd, &after), 0);
    EXPECT_EQ(after.st_nlink, before.st_nlink);
    EXPECT_EQ(ReadBytes(root_ + "/cur/" + name), bytes);
    MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{*uid}));
  }
  EXPECT_EQ(ReadBytes(named_path), bytes);
  EXPECT_TRUE(TmpFiles().empty());
}

// An append that fails after the file was linked into tmp/ takes the name
// away again: nothing is left in the store, and the file is unnamed as it
// was handed over.
TEST_F(MaildirAdoptTest, AFailedAppendLeavesTheFileUnnamed) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto inbox = Inbox(*store);
  ASSERT_NE(inbox, nullptr);
  const std::string bytes = Message();
  ScopedFd fd(UnnamedFile(scratch_.path(), bytes));
  ASSERT_GE(fd.get(), 0);
  // cur/ cannot take the file: the rename out of tmp/ fails.
  ASSERT_EQ(rename((root_ + "/cur").c_str(), (root_ + "/cur.away").c_str()), 0);
  ASSERT_TRUE(WriteBytes(root_ + "/cur", "not a directory"));
  auto uid = inbox->Append(Offered(fd.get(), bytes.size()), false);
  EXPECT_FALSE(uid.ok());
  struct stat after {};
  ASSERT_EQ(fstat(fd.get(), &after), 0);
  // It was adopted before the failure: linked, and given the store's mode
  // (0644 here) instead of the 0600 it was made with.
  EXPECT_NE(after.st_mode & 07777, 0600u) << "never linked: the test proves nothing";
  EXPECT_EQ(after.st_nlink, 0u);
  EXPECT_TRUE(TmpFiles().empty());
}

}  // namespace
}  // namespace mailfs::test
