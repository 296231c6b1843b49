// Crash safety of the maildir backend (issue 3, points 5 and 7): "SIGKILL
// during a bulk cp of 1000 messages, 5 times: afterwards doveadm
// force-resync succeeds, and every message whose copy had completed is
// there".
//
// The real mailfs binary (MAILFS_BINARY) serves a Maildir in a separate
// process, with the default durability (fsync on), so that it can be
// SIGKILLed while a shell loop copies messages into INBOX:
//
//   for f in src-R/*; do cp "$f" mnt/INBOX/ || exit 1; echo "$f" >> done-R.log; done
//
// cp exits 0 only when close() returned 0, so done-R.log lists exactly the
// copies that had completed (give or take the last one: a copy that
// completed just before the kill may miss its line, which only makes the
// test weaker, never wrong). Each round kills mailfs after a different
// number of completed copies (50..900, from a fixed seed; MAILFS_CRASH_SEED
// overrides it), detaches the dead mount and then checks the store:
//  - the uidlist mailfs left behind parses with no problem (strictly
//    increasing UIDs, unique base names) before anyone else touches it;
//  - in odd rounds mailfs reopens the crashed store first: it must take
//    over its dead self's dotlock and show a UID for every message file
//    (within 10 s: the lock may only be overridden when over 2 s old), and
//    Dovecot must then find the same UIDs; in even rounds Dovecot comes
//    first;
//  - Dovecot opens INBOX (mailbox status) and `doveadm force-resync`s it
//    with nothing on stderr;
//  - `doveadm fetch` of every message: each completed copy of every round
//    so far is there exactly once with the bytes of its source file; no
//    message has bytes that are not a source file's; at most the one copy
//    in flight per round is there without a done-log line;
//  - UIDs are unique and ascending, UIDVALIDITY stays, and a message keeps
//    its UID from round to round;
//  - the next mount of the store (the next round's, and one more at the
//    end) lists exactly Dovecot's UIDs; the last one also reads every
//    message and compares it with Dovecot's bytes.
// The round lines on stdout say where each kill landed (copies done, the
// copy in flight and whether it was stored, what the crash left in tmp/,
// files without a uidlist line, a stale lock) and how long each step took.
// The rounds share one store, so earlier rounds' messages must survive the
// later crashes.
//
// Dovecot runs privately through tests/support/dovecot.h (doveadm as uid
// 5000, its index files in the store as a real Dovecot keeps them); a
// missing doveadm or /dev/fuse fails the test. Every process and mount is
// undone by a guard, also when the test fails.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backends/maildir/format/uidlist.h"
#include "tests/support/dovecot.h"
#include "tests/support/fixture_expectations.h"  // Sha256Hex
#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr int kRounds = 5;
constexpr int kMessagesPerRound = 1000;
// mailfs is killed after this many completed copies, drawn per round.
constexpr int kMinCompletedAtKill = 50;
constexpr int kMaxCompletedAtKill = 900;
// And after a further random pause of up to this long, so that the kill
// lands anywhere in a copy, not only right after a done-log line.
constexpr int kMaxExtraDelayMicros = 20'000;
constexpr uint32_t kDefaultSeed = 20'260'301;

constexpr auto kMountTimeout = seconds(20);
// The whole copy loop of one round must reach its kill point in this time.
constexpr auto kCopyTimeout = seconds(120);
// How long a SIGKILLed mailfs may take to be gone (its guardian looks
// every 250 ms).
constexpr auto kCrashExitTimeout = seconds(10);
// How long a mount may take to give UIDs to the files a crash left without
// one; a dead mailfs's dotlock is overridden once it is over 2 s old.
constexpr auto kRecoveryTimeout = seconds(10);

uint32_t Seed() {
  const char* text = std::getenv("MAILFS_CRASH_SEED");
  uint32_t seed = kDefaultSeed;
  if (text != nullptr && *text != '\0') {
    std::from_chars(text, text + std::strlen(text), seed);
  }
  return seed;
}

// ---------------------------------------------------------------------------
// Child processes.

// A process started with SpawnProcess (its own process group, stdin from
// /dev/null), stdout and stderr appended to `log`, in the C locale. The
// destructor SIGKILLs the whole group and reaps it, so nothing outlives a
// failed test.
class Child {
 public:
  static std::unique_ptr<Child> Spawn(const std::vector<std::string>& argv, const std::string& cwd,
                                      const std::string& log) {
    int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      ADD_FAILURE() << "opening " << log << ": " << std::strerror(errno);
      return nullptr;
    }
    std::string error;
    pid_t pid = SpawnProcess(
        argv,
        {.stdout_fd = log_fd, .stderr_fd = log_fd, .cwd = cwd, .environment = CLocaleEnvironment()},
        &error);
    ::close(log_fd);
    if (pid < 0) {
      ADD_FAILURE() << error;
      return nullptr;
    }
    return std::unique_ptr<Child>(new Child(pid));
  }

  ~Child() { KillGroup(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // 128+N when killed by signal N; -1 while it runs.
  int exit_code() const { return exit_code_; }

  // Reaps the process if it has exited; true while it runs.
  bool Running() {
    if (exited_) return false;
    int status = 0;
    pid_t w = ::waitpid(pid_, &status, WNOHANG);
    if (w == pid_) Record(status);
    return !exited_;
  }

  // Waits up to `timeout` for the process to exit; true when it did.
  bool WaitExit(Clock::duration timeout) {
    auto deadline = Clock::now() + timeout;
    while (Running()) {
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return true;
  }

  // SIGKILL to the process itself, without waiting for it.
  void SendKill() {
    if (!exited_) ::kill(pid_, SIGKILL);
  }

  // SIGKILL to the process itself, then reaps it.
  void Kill() {
    if (exited_) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    Record(status);
  }

  // SIGKILL to the whole process group (a shell and its cp), then reaps the
  // leader. Only while the leader is unreaped: after that its pid, and so
  // the group id, may belong to someone else.
  void KillGroup() {
    if (!exited_) ::kill(-pid_, SIGKILL);
    Kill();
  }

 private:
  explicit Child(pid_t pid) : pid_(pid) {}
  void Record(int status) {
    exited_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  pid_t pid_;
  bool exited_ = false;
  int exit_code_ = -1;
};

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string Tail(const std::string& text, size_t max = 3000) {
  return text.size() <= max ? text : "..." + text.substr(text.size() - max);
}

// Detaches whatever is mounted at `path`; true when nothing is left there.
bool Detach(const std::string& path) {
  for (int i = 0; i < 3 && IsMounted(path); ++i) {
    if (::umount2(path.c_str(), MNT_DETACH) != 0) {
      RunShell("fusermount3 -u -z " + ShellQuote(path), "", seconds(10));
    }
  }
  return !IsMounted(path);
}

// Aborts the FUSE connection mounted at `mnt` (fusectl's abort file, by the
// device number /proc/self/mountinfo gives; no stat of the mount, which
// could wait for a dead daemon). Nothing when it is not mounted. Only for
// a crash that failed (MailfsMount::Crash).
void AbortFuseConnection(const std::string& mnt) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string id, parent, device, root, point;
    if (!(fields >> id >> parent >> device >> root >> point) || point != mnt) continue;
    std::string minor = device.substr(device.find(':') + 1);
    std::ofstream abort("/sys/fs/fuse/connections/" + minor + "/abort");
    abort << "1";
  }
}

// `mailfs maildir:STORE MOUNTPOINT -f` in its own process. The destructor
// SIGKILLs it (if it still runs) and detaches the mount point: a mount never
// outlives the test, whatever failed.
class MailfsMount {
 public:
  // Starts mailfs and waits until INBOX is visible. nullptr (after a
  // failure report) when it does not mount.
  static std::unique_ptr<MailfsMount> Start(const std::string& store, const std::string& mnt,
                                            const std::string& spool, const std::string& log) {
    if (::access("/dev/fuse", R_OK | W_OK) != 0) {
      ADD_FAILURE() << "/dev/fuse is not usable (" << std::strerror(errno)
                    << "): this test needs FUSE and fails without it";
      return nullptr;
    }
    std::unique_ptr<MailfsMount> m(new MailfsMount(mnt, log));
    m->process_ = Child::Spawn(
        {MAILFS_BINARY, "maildir:" + store, mnt, "-f", "-o", "spool=" + spool}, "", log);
    if (!m->process_) return nullptr;
    auto deadline = Clock::now() + kMountTimeout;
    while (!IsMounted(mnt)) {
      if (!m->process_->Running()) {
        ADD_FAILURE() << "mailfs exited (" << m->process_->exit_code()
                      << ") before mounting; its log:\n"
                      << Tail(ReadText(log));
        return nullptr;
      }
      if (Clock::now() > deadline) {
        ADD_FAILURE() << mnt << " was not mounted within " << kMountTimeout.count()
                      << " s; mailfs's log:\n"
                      << Tail(ReadText(log));
        return nullptr;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    struct stat st;
    if (::stat((mnt + "/INBOX").c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      ADD_FAILURE() << "no INBOX directory in the mount " << mnt << ": " << std::strerror(errno)
                    << "; mailfs's log:\n"
                    << Tail(ReadText(log));
      return nullptr;
    }
    return m;
  }

  ~MailfsMount() {
    if (process_) process_->KillGroup();
    Detach(mnt_);
  }
  MailfsMount(const MailfsMount&) = delete;
  MailfsMount& operator=(const MailfsMount&) = delete;

  const std::string& log() const { return log_; }
  Child& process() { return *process_; }

  // SIGKILL: the crash under test. The mount stays (dead) until Detach.
  // mailfs must then be gone within seconds, without help: the kernel
  // aborts its FUSE connection once its last thread has exited, and should
  // a thread be stuck in a reverse invalidation (waiting, uninterruptibly,
  // for a directory lock that a rename into this very mount holds while it
  // waits for the dead daemon), mailfs's guardian (fuse/guardian.h) aborts
  // the connection instead. Without the guardian,
  // SigkillDuringBurstOfMovesLosesNothing hung about one run in four here.
  // Should mailfs stay, the test fails and aborts the connection itself,
  // so that it can go on and clean up instead of hanging.
  void Crash() {
    process_->SendKill();
    if (process_->WaitExit(kCrashExitTimeout)) return;
    ADD_FAILURE() << "mailfs still runs " << kCrashExitTimeout.count()
                  << " s after SIGKILL: nothing aborted its FUSE connection";
    AbortFuseConnection(mnt_);
    process_->Kill();
  }

  // The mount of a dead mailfs, gone.
  bool DetachDead() { return Detach(mnt_); }

  // A clean unmount: fusermount3 -u, then mailfs must exit 0.
  void Unmount() {
    CommandResult r = RunShell("fusermount3 -u " + ShellQuote(mnt_), "", seconds(20));
    EXPECT_TRUE(r.ok()) << "fusermount3 -u " << mnt_ << ": " << r.Describe();
    EXPECT_TRUE(process_->WaitExit(seconds(20))) << "mailfs did not exit after the unmount";
    EXPECT_EQ(process_->exit_code(), 0) << "mailfs's log:\n" << Tail(ReadText(log_));
    EXPECT_TRUE(Detach(mnt_));
  }

 private:
  MailfsMount(std::string mnt, std::string log) : mnt_(std::move(mnt)), log_(std::move(log)) {}
  std::string mnt_;
  std::string log_;
  std::unique_ptr<Child> process_;
};

// ---------------------------------------------------------------------------
// The messages.

struct SourceMessage {
  int round = 0;
  int index = 0;
  std::string tag;   // "r2-0417"
  std::string path;  // relative to the test's base directory, as done-R.log lists it
  std::string sha256;
};

// A small message with LF line ends (what Dovecot stores); its Message-ID,
// subject and body carry the tag, and its length varies a little.
std::string MessageBytes(const std::string& tag, int index) {
  std::ostringstream m;
  m << "From: Crash Test <crash@example.org>\n"
    << "To: Mailfs <mailfs@example.org>\n"
    << "Subject: crash " << tag << "\n"
    << "Date: Sun, 01 Mar 2026 12:" << (10 + index % 50) << ":00 +0000\n"
    << "Message-ID: <" << tag << "@crash.mailfs.test>\n"
    << "\n"
    << "Body of " << tag << ".\n";
  for (int i = 0; i < index % 7; ++i) m << "Line " << i << " of " << tag << ".\n";
  return m.str();
}

// The tag of a message's Message-ID, for failure reports; "?" without one.
std::string TagOf(const std::string& bytes) {
  size_t start = bytes.find("Message-ID: <");
  if (start == std::string::npos) return "?";
  start += std::strlen("Message-ID: <");
  size_t end = bytes.find('@', start);
  return end == std::string::npos ? "?" : bytes.substr(start, end - start);
}

// The "N.eml" names of a mount's INBOX as UIDs, sorted; other names fail.
std::vector<uint32_t> MountedUids(const std::string& inbox) {
  int err = 0;
  auto names = ListDir(inbox, &err);
  if (!names) {
    ADD_FAILURE() << "listing " << inbox << ": " << ErrnoName(err);
    return {};
  }
  std::vector<uint32_t> uids;
  for (const auto& name : *names) {
    uint32_t uid = 0;
    auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), uid);
    if (ec != std::errc() || std::string_view(ptr) != ".eml") {
      ADD_FAILURE() << "unexpected name in " << inbox << ": " << name;
      continue;
    }
    uids.push_back(uid);
  }
  std::sort(uids.begin(), uids.end());
  return uids;
}

std::string Describe(const std::vector<uint32_t>& uids) {
  std::ostringstream os;
  os << uids.size() << " UIDs";
  if (!uids.empty()) os << " " << uids.front() << ".." << uids.back();
  return os.str();
}

// What the uidlist mailfs left looks like, before Dovecot touches it.
struct UidlistState {
  size_t records = 0;
  std::set<std::string> base_names;
};

// Parses INBOX's dovecot-uidlist: it must parse with no problem at all
// (strictly increasing UIDs, unique base names, no torn last line).
std::optional<UidlistState> CheckUidlist(const std::string& store, const std::string& when) {
  std::string path = store + "/dovecot-uidlist";
  if (!fs::exists(path)) {
    ADD_FAILURE() << when << ": " << path << " does not exist";
    return std::nullopt;
  }
  std::string bytes = ReadText(path);
  auto parsed = maildir::Uidlist::Parse(bytes);
  if (!parsed.ok()) {
    ADD_FAILURE() << when << ": " << path << " does not parse: " << parsed.status().ToString()
                  << "\n"
                  << bytes.substr(0, 500);
    return std::nullopt;
  }
  for (const auto& problem : parsed->problems) {
    ADD_FAILURE() << when << ": " << path << " line " << problem.line << ": " << problem.reason;
  }
  UidlistState state;
  state.records = parsed->records.size();
  for (const auto& r : parsed->records) state.base_names.insert(std::string(r.BaseName()));
  return state;
}

// Base names (before ':') of the files in a Maildir subdirectory.
std::set<std::string> BaseNamesIn(const std::string& dir) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    names.insert(name.substr(0, name.find(':')));
  }
  return names;
}

size_t CountFiles(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    ++n;
  }
  return n;
}

size_t CountLines(const std::string& path) {
  std::string text = ReadText(path);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

TEST(MaildirCrashTest, SigkillDuringBulkCopyLosesNoCompletedCopy) {
  SetTestTimeout(seconds(300));
  ASSERT_EQ(::access("/dev/fuse", R_OK | W_OK), 0)
      << "/dev/fuse is not usable (" << std::strerror(errno) << "): this test needs FUSE";
  TempDir base;
  ASSERT_FALSE(base.path().empty());
  const std::string store = base.Path("store");
  const std::string mnt = base.Path("mnt");
  const std::string spool = base.Path("spool");
  for (const auto& dir : {store, store + "/cur", store + "/new", store + "/tmp", mnt, spool}) {
    ASSERT_SYSCALL_OK(::mkdir(dir.c_str(), 0755));
  }
  // Dovecot (uid 5000) must own the store; mailfs, as root, gives what it
  // creates the owner of the store's root.
  ASSERT_TRUE(PrepareStoreForDovecot(store));
  auto dovecot = Dovecot::Create({.maildir = store});
  ASSERT_TRUE(dovecot) << "doveadm is needed";

  const uint32_t seed = Seed();
  std::mt19937 rng(seed);
  std::printf("[ crash    ] seed %u (MAILFS_CRASH_SEED overrides it)\n", seed);

  std::map<std::string, const SourceMessage*> by_sha;  // every source message, all rounds
  std::vector<std::unique_ptr<SourceMessage>> sources;
  std::set<std::string> completed;         // tags of completed copies, all rounds
  std::map<std::string, uint32_t> uid_of;  // tag -> UID Dovecot gave it
  std::optional<uint32_t> uid_validity;
  std::vector<uint32_t> dovecot_uids;  // after the last check
  const auto test_start = Clock::now();

  for (int round = 1; round <= kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + " (seed " + std::to_string(seed) + ")");
    const auto round_start = Clock::now();
    // 1000 new messages, distinct from every other round's.
    const std::string src = "src-" + std::to_string(round);
    ASSERT_SYSCALL_OK(::mkdir(base.Path(src).c_str(), 0755));
    std::map<std::string, const SourceMessage*> by_path;
    for (int i = 0; i < kMessagesPerRound; ++i) {
      auto m = std::make_unique<SourceMessage>();
      m->round = round;
      m->index = i;
      char tag[32];
      std::snprintf(tag, sizeof tag, "r%d-%04d", round, i);
      m->tag = tag;
      m->path = src + "/" + m->tag + ".eml";
      std::string bytes = MessageBytes(m->tag, i);
      m->sha256 = Sha256Hex(bytes);
      WriteLocalFile(base.Path(m->path), bytes);
      by_sha[m->sha256] = m.get();
      by_path[m->path] = m.get();
      sources.push_back(std::move(m));
    }
    ASSERT_EQ(by_sha.size(), sources.size()) << "source messages must be distinct";

    const std::string mailfs_log = base.Path("mailfs-" + std::to_string(round) + ".log");
    auto mount = MailfsMount::Start(store, mnt, spool, mailfs_log);
    ASSERT_TRUE(mount);
    // This is a fresh mount of what the previous round left: it must show
    // exactly Dovecot's UIDs.
    EXPECT_EQ(MountedUids(mnt + "/INBOX"), dovecot_uids)
        << "the mount at the start of round " << round << " shows "
        << Describe(MountedUids(mnt + "/INBOX")) << ", Dovecot had " << Describe(dovecot_uids);

    // The copy loop; mailfs dies after `kill_after` completed copies.
    const int kill_after =
        std::uniform_int_distribution<int>(kMinCompletedAtKill, kMaxCompletedAtKill)(rng);
    const int extra_delay_us = std::uniform_int_distribution<int>(0, kMaxExtraDelayMicros)(rng);
    const std::string done_log = "done-" + std::to_string(round) + ".log";
    const std::string loop_log = base.Path("loop-" + std::to_string(round) + ".log");
    auto loop = Child::Spawn({"/bin/sh", "-c",
                              "for f in " + src +
                                  "/*; do cp \"$f\" mnt/INBOX/ || exit 1; "
                                  "echo \"$f\" >> " +
                                  done_log + "; done"},
                             base.path(), loop_log);
    ASSERT_TRUE(loop);
    const auto copy_start = Clock::now();
    size_t done_lines = 0;
    while ((done_lines = CountLines(base.Path(done_log))) < static_cast<size_t>(kill_after)) {
      ASSERT_TRUE(loop->Running())
          << "the copy loop stopped (exit " << loop->exit_code() << ") after " << done_lines
          << " copies, before mailfs was killed:\n"
          << Tail(ReadText(loop_log)) << "\nmailfs's log:\n"
          << Tail(ReadText(mailfs_log));
      ASSERT_LT(Clock::now() - copy_start, kCopyTimeout)
          << "only " << done_lines << " of " << kill_after << " copies in " << kCopyTimeout.count()
          << " s";
      std::this_thread::sleep_for(milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(extra_delay_us));
    mount->Crash();
    const auto copy_time = Clock::now() - copy_start;
    // Every cp after the kill fails at once (the connection is gone), and
    // the loop stops at the first failure.
    EXPECT_TRUE(loop->WaitExit(seconds(10))) << "the copy loop still runs after the kill";
    loop->KillGroup();
    const std::string loop_output = ReadText(loop_log);
    ASSERT_TRUE(mount->DetachDead()) << mnt << " stays mounted after the kill";
    mount.reset();

    // done-R.log is final now.
    std::set<std::string> completed_now;
    {
      std::istringstream in(ReadText(base.Path(done_log)));
      std::string line;
      while (std::getline(in, line)) {
        auto it = by_path.find(line);
        ASSERT_NE(it, by_path.end()) << "unexpected done-log line '" << line << "'";
        completed_now.insert(it->second->tag);
      }
    }
    completed.insert(completed_now.begin(), completed_now.end());
    // The kill point is a lower bound: a copy may have completed while the
    // kill was on its way.
    EXPECT_GE(completed_now.size(), static_cast<size_t>(kill_after));
    EXPECT_LT(completed_now.size(), static_cast<size_t>(kMessagesPerRound));

    // The store as the crash left it, before Dovecot touches it.
    auto uidlist = CheckUidlist(store, "after the kill, before Dovecot");
    std::set<std::string> files = BaseNamesIn(store + "/new");
    for (const auto& name : BaseNamesIn(store + "/cur")) files.insert(name);
    size_t without_line = 0;
    for (const auto& name : files) without_line += uidlist && !uidlist->base_names.contains(name);
    const size_t tmp_left = CountFiles(store + "/tmp");
    const bool lock_left = fs::exists(store + "/dovecot-uidlist.lock");
    const std::string lock_content = lock_left ? ReadText(store + "/dovecot-uidlist.lock") : "";
    // A dotlock reads "<pid>:<host>"; a dead local pid lets Dovecot (and
    // mailfs) override it after 2 s. An empty one (killed between creating
    // the lock and writing its pid) counts as held until nothing changed for
    // 120 s: until then Dovecot shows the mailbox as it had indexed it (here
    // empty, UIDVALIDITY 0) without a word, and mailfs cannot append.
    EXPECT_FALSE(lock_left && lock_content.empty())
        << "the crash left an empty dovecot-uidlist.lock: mailfs was killed between creating it "
           "(O_CREAT|O_EXCL) and writing its pid, so Dovecot and mailfs take it as held for 120 s";
    const bool uidlist_tmp_left = fs::exists(store + "/dovecot-uidlist.tmp");

    // Odd rounds: mailfs is the first to open the crashed store (it must
    // take over its dead self's lock and give UIDs to files that have none),
    // and Dovecot must then agree with the UIDs it showed. Even rounds:
    // Dovecot comes first, and the next round's mount must agree with it.
    const bool mailfs_first = round % 2 == 1;
    std::optional<std::vector<uint32_t>> recovered_uids;
    Clock::duration recovery_time{};
    if (mailfs_first) {
      auto recovery = MailfsMount::Start(
          store, mnt, spool, base.Path("mailfs-" + std::to_string(round) + "-recovery.log"));
      ASSERT_TRUE(recovery) << "mailfs cannot mount the store its crash left";
      // Every message file gets a UID, but a file the crash left without
      // one (renamed into cur/, no uidlist line yet) only once the dead
      // mailfs's dotlock may be overridden: when it is over 2 s old, as
      // Dovecot decides too.
      const auto recovery_start = Clock::now();
      std::vector<uint32_t> uids;
      EXPECT_TRUE(Eventually(
          [&] {
            uids = MountedUids(mnt + "/INBOX");
            return uids.size() == files.size();
          },
          kRecoveryTimeout))
          << "mailfs, reopening the crashed store, shows " << Describe(uids) << " for "
          << files.size() << " message files, after " << kRecoveryTimeout.count() << " s";
      recovery_time = Clock::now() - recovery_start;
      recovered_uids = uids;
      recovery->Unmount();
      CheckUidlist(store, "after mailfs reopened the crashed store, before Dovecot");
    }

    // Dovecot: an ordinary open first (complaints show here), then the
    // force-resync the issue asks for, then every message.
    const auto dovecot_start = Clock::now();
    auto status = dovecot->MailboxStatus("INBOX");
    EXPECT_TRUE(status) << "Dovecot complained when opening INBOX after the crash";
    EXPECT_TRUE(dovecot->ForceResync("INBOX")) << "doveadm force-resync INBOX after the crash";
    auto messages = dovecot->Fetch("INBOX");
    ASSERT_TRUE(messages) << "doveadm fetch INBOX after the crash";
    status = dovecot->MailboxStatus("INBOX");
    ASSERT_TRUE(status);
    const auto dovecot_time = Clock::now() - dovecot_start;
    EXPECT_NE(status->uidvalidity, 0u)
        << "Dovecot could not lock the uidlist (mail_max_lock_timeout=5s) and shows INBOX as "
           "it had indexed it, without a word on stderr";
    if (uid_validity) {
      EXPECT_EQ(status->uidvalidity, *uid_validity) << "UIDVALIDITY changed";
    }
    uid_validity = status->uidvalidity;
    EXPECT_EQ(status->messages, messages->size());

    // Every message is a source message, exactly once, with exact bytes.
    std::map<std::string, uint32_t> present;  // tag -> UID
    dovecot_uids.clear();
    for (const auto& m : *messages) {
      if (!dovecot_uids.empty()) {
        EXPECT_GT(m.uid, dovecot_uids.back()) << "UIDs not unique and ascending";
      }
      dovecot_uids.push_back(m.uid);
      auto it = by_sha.find(m.sha256);
      if (it == by_sha.end()) {
        ADD_FAILURE() << "UID " << m.uid << " (" << m.storage_id << ", " << m.size
                      << " bytes, Message-ID tag " << TagOf(m.bytes)
                      << ") has bytes of no source message:\n"
                      << m.bytes.substr(0, 400);
        continue;
      }
      const std::string& tag = it->second->tag;
      if (present.contains(tag)) {
        ADD_FAILURE() << tag << " is stored twice: UIDs " << present[tag] << " and " << m.uid;
        continue;
      }
      present[tag] = m.uid;
    }
    std::vector<std::string> missing;
    for (const auto& tag : completed) {
      if (!present.contains(tag)) missing.push_back(tag);
    }
    EXPECT_TRUE(missing.empty()) << missing.size() << " completed copies are missing, e.g. "
                                 << missing.front() << " (and "
                                 << (missing.size() > 1 ? missing[1] : "-") << ")";
    // At most the copy in flight at each kill is there without a done-log line.
    std::vector<std::string> extra;
    for (const auto& [tag, uid] : present) {
      if (!completed.contains(tag)) extra.push_back(tag);
    }
    EXPECT_LE(extra.size(), static_cast<size_t>(round))
        << "more unlogged messages than rounds: " << ::testing::PrintToString(extra);
    // Earlier messages keep their UIDs.
    for (const auto& [tag, uid] : uid_of) {
      auto it = present.find(tag);
      if (it != present.end()) {
        EXPECT_EQ(it->second, uid) << tag << " changed its UID";
      }
    }
    for (const auto& [tag, uid] : present) uid_of.emplace(tag, uid);
    if (recovered_uids) {
      EXPECT_EQ(*recovered_uids, dovecot_uids)
          << "mailfs, reopening the crashed store, showed " << Describe(*recovered_uids)
          << "; Dovecot then found " << Describe(dovecot_uids);
    }
    CheckUidlist(store, "after Dovecot");

    // The copy in flight when mailfs died (the first source not logged).
    std::string in_flight = "-";
    for (int i = 0; i < kMessagesPerRound; ++i) {
      const SourceMessage& s = *sources[sources.size() - kMessagesPerRound + i];
      if (!completed_now.contains(s.tag)) {
        in_flight = s.tag + (present.contains(s.tag) ? " (stored)" : " (not stored)");
        break;
      }
    }
    std::string cp_error = "-";
    for (const auto& line : Lines(loop_output)) {
      if (line.starts_with("cp:")) cp_error = line;
    }
    auto ms = [](Clock::duration d) {
      return static_cast<long long>(std::chrono::duration_cast<milliseconds>(d).count());
    };
    std::printf(
        "[ crash    ] round %d: killed at %d+%d us, %zu completed in %lld ms (%.0f copies/s); "
        "in flight %s; left by mailfs: %zu tmp/ files, %zu files without uidlist line, "
        "lock %s, uidlist.tmp %s; reopened first by %s%s; Dovecot: %zu messages (%zu unlogged), "
        "checked in %lld ms; round %lld ms\n"
        "[ crash    ]   cp: %s\n",
        round, kill_after, extra_delay_us, completed_now.size(), ms(copy_time),
        1000.0 * static_cast<double>(completed_now.size()) / static_cast<double>(ms(copy_time) + 1),
        in_flight.c_str(), tmp_left, without_line,
        lock_left ? ("left '" + lock_content + "'").c_str() : "gone",
        uidlist_tmp_left ? "left" : "gone", mailfs_first ? "mailfs" : "Dovecot",
        mailfs_first
            ? (" (all UIDs shown after " + std::to_string(ms(recovery_time)) + " ms)").c_str()
            : "",
        messages->size(), extra.size(), ms(dovecot_time), ms(Clock::now() - round_start),
        cp_error.c_str());
    std::fflush(stdout);
    if (HasFailure()) {
      std::printf("[ crash    ] mailfs's log of round %d:\n%s\n", round,
                  Tail(ReadText(mailfs_log)).c_str());
      break;
    }
  }

  // One more mount: the same UIDs as Dovecot, each with Dovecot's bytes.
  {
    SCOPED_TRACE("the mount after the last round");
    auto mount = MailfsMount::Start(store, mnt, spool, base.Path("mailfs-final.log"));
    ASSERT_TRUE(mount);
    EXPECT_EQ(MountedUids(mnt + "/INBOX"), dovecot_uids);
    auto messages = dovecot->Fetch("INBOX");
    ASSERT_TRUE(messages);
    size_t differ = 0;
    for (const auto& m : *messages) {
      int err = 0;
      auto bytes = ReadFile(mnt + "/INBOX/" + Name(m.uid), &err);
      if (!bytes || *bytes != m.bytes) {
        if (++differ <= 5) {
          ADD_FAILURE() << "UID " << m.uid << " reads differently through the mount"
                        << (bytes ? "" : ": " + ErrnoName(err));
        }
      }
    }
    EXPECT_EQ(differ, 0u);
    mount->Unmount();
    CheckUidlist(store, "after the final unmount");
  }
  std::printf("[ crash    ] %zu messages in the store, %zu completed copies; total %lld ms\n",
              uid_of.size(), completed.size(),
              static_cast<long long>(
                  std::chrono::duration_cast<milliseconds>(Clock::now() - test_start).count()));
}

// SIGKILL during a burst of moves (`find A -exec mv -t B {} +`, one rename
// per message), 4 rounds back and forth between INBOX and Archive. A move
// keeps the target's uidlist lock between the moves of a burst and syncs
// only once the burst pauses, so a kill finds the lock held, uidlist lines
// of files still in the source, and moves not synced. None of that may
// lose or duplicate a message: afterwards both uidlists parse cleanly; a
// fresh mailfs (odd rounds) or Dovecot (even rounds) opens the store
// first, overriding the dead lock; Dovecot force-resyncs both mailboxes;
// every message is in exactly one of them with its bytes (so nothing is
// lost and nothing was copied); and a later mount shows Dovecot's UIDs.
TEST(MaildirCrashTest, SigkillDuringBurstOfMovesLosesNothing) {
  SetTestTimeout(seconds(300));
  ASSERT_EQ(::access("/dev/fuse", R_OK | W_OK), 0)
      << "/dev/fuse is not usable (" << std::strerror(errno) << "): this test needs FUSE";
  constexpr int kMoveRounds = 4;
  constexpr int kMovedMessages = 800;
  TempDir base;
  ASSERT_FALSE(base.path().empty());
  const std::string store = base.Path("store");
  const std::string archive = store + "/.Archive";
  const std::string mnt = base.Path("mnt");
  const std::string spool = base.Path("spool");
  for (const auto& dir : {store, store + "/cur", store + "/new", store + "/tmp", mnt, spool}) {
    ASSERT_SYSCALL_OK(::mkdir(dir.c_str(), 0755));
  }
  // The messages go straight into INBOX's cur/, as a delivery leaves them.
  std::map<std::string, std::string> tag_of_sha;
  for (int i = 0; i < kMovedMessages; ++i) {
    char tag[32];
    std::snprintf(tag, sizeof tag, "mv-%04d", i);
    const std::string bytes = MessageBytes(tag, i);
    tag_of_sha[Sha256Hex(bytes)] = tag;
    WriteLocalFile(store + "/cur/" + std::to_string(1700000000 + i) + ".M" + std::to_string(i) +
                       "P1.crash:2," + (i % 2 == 0 ? "S" : ""),
                   bytes);
  }
  ASSERT_TRUE(PrepareStoreForDovecot(store));
  auto dovecot = Dovecot::Create({.maildir = store});
  ASSERT_TRUE(dovecot) << "doveadm is needed";
  ASSERT_TRUE(dovecot->MailboxCreate("Archive"));
  ASSERT_TRUE(dovecot->MailboxStatus("INBOX"));  // numbers the messages

  const uint32_t seed = Seed();
  std::mt19937 rng(seed);
  std::printf("[ crash    ] seed %u (MAILFS_CRASH_SEED overrides it)\n", seed);
  std::map<std::string, std::vector<uint32_t>> dovecot_uids;  // mailbox -> UIDs
  for (int round = 1; round <= kMoveRounds; ++round) {
    SCOPED_TRACE("move round " + std::to_string(round) + " (seed " + std::to_string(seed) + ")");
    const auto round_start = Clock::now();
    const bool to_archive = round % 2 == 1;
    const std::string from = to_archive ? "INBOX" : "Archive";
    const std::string to = to_archive ? "Archive" : "INBOX";
    const std::string from_dir = to_archive ? store : archive;
    const std::string to_dir = to_archive ? archive : store;
    const size_t in_source = CountFiles(from_dir + "/cur") + CountFiles(from_dir + "/new");
    const size_t in_target = CountFiles(to_dir + "/cur") + CountFiles(to_dir + "/new");
    ASSERT_GT(in_source, 20u) << "too few messages left to move";
    const size_t kill_after =
        in_target + std::uniform_int_distribution<size_t>(in_source / 10, in_source * 9 / 10)(rng);
    const int extra_delay_us = std::uniform_int_distribution<int>(0, 2000)(rng);

    const std::string log = base.Path("mailfs-mv-" + std::to_string(round) + ".log");
    auto mount = MailfsMount::Start(store, mnt, spool, log);
    ASSERT_TRUE(mount);
    const std::string loop_log = base.Path("mv-" + std::to_string(round) + ".log");
    auto mover = Child::Spawn(
        {"/bin/sh", "-c", "find mnt/" + from + " -name '*.eml' -exec mv -t mnt/" + to + " {} +"},
        base.path(), loop_log);
    ASSERT_TRUE(mover);
    const auto start = Clock::now();
    size_t moved = 0;
    while ((moved = CountFiles(to_dir + "/cur") + CountFiles(to_dir + "/new")) < kill_after) {
      ASSERT_TRUE(mover->Running())
          << "mv stopped (exit " << mover->exit_code() << ") after " << moved << " files:\n"
          << Tail(ReadText(loop_log)) << "\nmailfs's log:\n"
          << Tail(ReadText(log));
      ASSERT_LT(Clock::now() - start, kCopyTimeout);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(extra_delay_us));
    mount->Crash();
    EXPECT_TRUE(mover->WaitExit(seconds(10))) << "mv still runs after the kill";
    mover->KillGroup();
    ASSERT_TRUE(mount->DetachDead());
    mount.reset();
    const bool lock_left = fs::exists(to_dir + "/dovecot-uidlist.lock");
    const size_t moved_at_kill =
        CountFiles(to_dir + "/cur") + CountFiles(to_dir + "/new") - in_target;
    CheckUidlist(store, "INBOX after the kill");
    CheckUidlist(archive, "Archive after the kill");

    if (round % 2 == 1) {
      // mailfs first: it must override its dead self's lock and number
      // every file in both mailboxes.
      auto recovery = MailfsMount::Start(
          store, mnt, spool, base.Path("mailfs-mv-" + std::to_string(round) + "-recovery.log"));
      ASSERT_TRUE(recovery);
      for (const auto& [name, dir] :
           {std::pair{std::string("INBOX"), store}, std::pair{std::string("Archive"), archive}}) {
        const size_t files = CountFiles(dir + "/cur") + CountFiles(dir + "/new");
        std::vector<uint32_t> uids;
        EXPECT_TRUE(Eventually(
            [&] {
              uids = MountedUids(mnt + "/" + name);
              return uids.size() == files;
            },
            kRecoveryTimeout))
            << name << ": the reopened store shows " << Describe(uids) << " for " << files
            << " files";
      }
      recovery->Unmount();
    }
    // Dovecot: every message exactly once, in one of the two mailboxes.
    std::map<std::string, std::string> where;  // tag -> mailbox
    for (const std::string mailbox : {"INBOX", "Archive"}) {
      EXPECT_TRUE(dovecot->MailboxStatus(mailbox)) << mailbox;
      EXPECT_TRUE(dovecot->ForceResync(mailbox)) << mailbox;
      auto messages = dovecot->Fetch(mailbox);
      ASSERT_TRUE(messages) << mailbox;
      std::vector<uint32_t>& uids = dovecot_uids[mailbox];
      uids.clear();
      for (const auto& m : *messages) {
        uids.push_back(m.uid);
        auto it = tag_of_sha.find(m.sha256);
        if (it == tag_of_sha.end()) {
          ADD_FAILURE() << mailbox << " UID " << m.uid << " has bytes of no message";
          continue;
        }
        auto [at, fresh] = where.emplace(it->second, mailbox);
        if (!fresh) {
          ADD_FAILURE() << it->second << " is in " << at->second << " and in " << mailbox;
        }
      }
    }
    EXPECT_EQ(where.size(), tag_of_sha.size()) << "messages lost";
    CheckUidlist(store, "INBOX after Dovecot");
    CheckUidlist(archive, "Archive after Dovecot");
    std::printf(
        "[ crash    ] move round %d: %s -> %s, killed after %zu of %zu moves (+%d us), "
        "lock %s; Dovecot: %zu in INBOX, %zu in Archive; round %lld ms\n",
        round, from.c_str(), to.c_str(), moved_at_kill, in_source, extra_delay_us,
        lock_left ? "left" : "gone", dovecot_uids["INBOX"].size(), dovecot_uids["Archive"].size(),
        static_cast<long long>(
            std::chrono::duration_cast<milliseconds>(Clock::now() - round_start).count()));
    std::fflush(stdout);
    if (HasFailure()) {
      std::printf("[ crash    ] mailfs's log:\n%s\n", Tail(ReadText(log)).c_str());
      break;
    }
  }
  // A last mount shows what Dovecot shows.
  auto mount = MailfsMount::Start(store, mnt, spool, base.Path("mailfs-mv-final.log"));
  ASSERT_TRUE(mount);
  EXPECT_EQ(MountedUids(mnt + "/INBOX"), dovecot_uids["INBOX"]);
  EXPECT_EQ(MountedUids(mnt + "/Archive"), dovecot_uids["Archive"]);
  mount->Unmount();
}

}  // namespace
}  // namespace mailfs::test
