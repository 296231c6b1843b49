#include "tests/support/mount_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "backends/dict/dict_backend.h"
#include "src/mailbox_name.h"

#if __has_include("tests/support/backend_factories.h")
#include "tests/support/backend_factories.h"
#define MAILFS_HAVE_BACKEND_FACTORIES 1
#endif

extern char** environ;

namespace mailfs::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Mount registry and watchdog.

std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}
std::set<std::string>& ActiveMounts() {
  static std::set<std::string> mounts;
  return mounts;
}
// Every temporary directory this process made: anything mounted below one
// of them is ours, even when Mount::Start never returned.
std::set<std::string>& OurTempDirs() {
  static std::set<std::string> dirs;
  return dirs;
}

// Parses /proc/self/mountinfo; mount points are octal-escaped there.
std::vector<std::string> MountPoints() {
  std::vector<std::string> points;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point;
    fields >> id >> parent >> devno >> root >> point;
    std::string decoded;
    for (size_t i = 0; i < point.size(); ++i) {
      if (point[i] == '\\' && i + 3 < point.size()) {
        decoded += static_cast<char>(std::stoi(point.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        decoded += point[i];
      }
    }
    points.push_back(decoded);
  }
  return points;
}

// Detaches a mount whatever state its daemon is in.
void ForceUnmount(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) == 0) return;
  RunShell("fusermount3 -u -z " + ShellQuote(path) + " 2>/dev/null", "", seconds(10));
}

class Watchdog {
 public:
  static Watchdog& Get() {
    static Watchdog* dog = new Watchdog();  // never destroyed: its thread outlives main
    return *dog;
  }
  void Arm(std::string name, seconds timeout) {
    std::lock_guard lock(mu_);
    name_ = std::move(name);
    deadline_ = steady_clock::now() + timeout;
    armed_ = true;
    cv_.notify_all();
  }
  void Extend(seconds timeout) {
    std::lock_guard lock(mu_);
    deadline_ = steady_clock::now() + timeout;
  }
  void Disarm() {
    std::lock_guard lock(mu_);
    armed_ = false;
  }

 private:
  Watchdog() : thread_([this] { Loop(); }) { thread_.detach(); }
  void Loop() {
    std::unique_lock lock(mu_);
    while (true) {
      if (!armed_) {
        cv_.wait(lock);
        continue;
      }
      if (cv_.wait_until(lock, deadline_) == std::cv_status::timeout && armed_ &&
          steady_clock::now() >= deadline_) {
        std::fprintf(stderr,
                     "\n*** mount test watchdog: %s did not finish in time (a hung mount?); "
                     "detaching its mounts and aborting ***\n",
                     name_.c_str());
        std::set<std::string> dirs;
        {
          std::lock_guard reg(RegistryMutex());
          dirs = OurTempDirs();
        }
        for (const auto& point : MountPoints()) {
          for (const auto& dir : dirs) {
            if (point.rfind(dir + "/", 0) == 0) ::umount2(point.c_str(), MNT_DETACH);
          }
        }
        for (const auto& dir : dirs) {
          std::error_code ec;
          std::filesystem::remove_all(dir, ec);
        }
        std::fflush(stderr);
        std::_Exit(124);
      }
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::string name_;
  steady_clock::time_point deadline_;
  bool armed_ = false;
  std::thread thread_;
};

constexpr seconds kDefaultTestTimeout{120};

class WatchdogListener : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo& info) override {
    Watchdog::Get().Arm(std::string(info.test_suite_name()) + "." + info.name(),
                        kDefaultTestTimeout);
  }
  void OnTestEnd(const ::testing::TestInfo&) override { Watchdog::Get().Disarm(); }
};

// Removes mounts of an earlier, crashed run of these tests (our layout:
// /tmp/mailfs-test-XXXXXX/mnt) whose daemon is gone (ENOTCONN). Live mounts,
// and mounts of other test programs that share the prefix, are left alone.
// The stat runs on a detached thread: a mount whose daemon hangs would
// block it forever.
void CleanStaleMounts() {
  for (const auto& point : MountPoints()) {
    if (point.rfind(kTempPrefix, 0) != 0 || !point.ends_with("/mnt")) continue;
    auto dead = std::make_shared<std::atomic<int>>(-1);
    std::thread([point, dead] {
      struct stat st;
      *dead = (::stat(point.c_str(), &st) != 0 && errno == ENOTCONN) ? 1 : 0;
    }).detach();
    for (int i = 0; i < 100 && *dead < 0; ++i) std::this_thread::sleep_for(milliseconds(10));
    if (*dead != 1) continue;
    std::fprintf(stderr, "mount tests: removing a stale mount %s\n", point.c_str());
    ForceUnmount(point);
    std::error_code ec;
    std::filesystem::remove_all(std::filesystem::path(point).parent_path(), ec);
  }
}

class MountEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    ::testing::UnitTest::GetInstance()->listeners().Append(new WatchdogListener);
    CleanStaleMounts();
    // A missing /dev/fuse is a failure of every mount test, reported by
    // MountedStore::Create; say it once up front too.
    if (::access("/dev/fuse", R_OK | W_OK) != 0) {
      std::fprintf(stderr, "mount tests: /dev/fuse is not usable: %s\n", std::strerror(errno));
    }
  }
  void TearDown() override {
    std::set<std::string> left;
    {
      std::lock_guard lock(RegistryMutex());
      left = ActiveMounts();
    }
    for (const auto& m : left) {
      ADD_FAILURE() << "mount left behind at the end of the run: " << m;
      ForceUnmount(m);
    }
  }
};

[[maybe_unused]] ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new MountEnvironment);

uint64_t Fnv1a(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

// ---------------------------------------------------------------------------
// Backends.

void PrintTo(const MountBackend& backend, std::ostream* os) { *os << backend.name; }

std::vector<MountBackend> MountBackends() {
  std::vector<MountBackend> backends;
#ifdef MAILFS_HAVE_BACKEND_FACTORIES
  for (const auto& f : AllBackendFactories()) {
    backends.push_back(MountBackend{f.name, f.make, f.make_readonly});
  }
#else
  backends.push_back(
      MountBackend{"dict", [] { return std::shared_ptr<MailboxSet>(NewDictMailboxSet()); },
                   [](MailboxSet& store, std::string_view name) {
                     return static_cast<DictMailboxSet&>(store).SetReadOnly(name, true);
                   }});
#endif
  return backends;
}

std::string MountBackendName(const ::testing::TestParamInfo<MountBackend>& info) {
  std::string name;
  for (char c : info.param.name) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

// ---------------------------------------------------------------------------
// Commands.

std::string CommandResult::Describe() const {
  std::ostringstream os;
  if (timed_out) os << "timed out, ";
  os << "exit " << exit_code;
  if (!out.empty()) os << "\n--- stdout ---\n" << out.substr(0, 4000);
  if (!err.empty()) os << "\n--- stderr ---\n" << err.substr(0, 4000);
  return os.str();
}

std::string ShellQuote(std::string_view word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += "'";
  return out;
}

std::string ReadFd(int fd, off_t offset) {
  std::string out;
  if (fd < 0) return out;
  char buf[65536];
  while (true) {
    ssize_t n = ::pread(fd, buf, sizeof buf, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, n);
    offset += n;
  }
  return out;
}

std::vector<std::string> CLocaleEnvironment() { return {"LANG", "LANGUAGE", "LC_ALL=C"}; }

pid_t SpawnProcess(const std::vector<std::string>& argv, const SpawnOptions& options,
                   std::string* error) {
  if (argv.empty()) {
    *error = "posix_spawn: no command";
    return -1;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  for (auto [fd, target] : {std::pair{options.stdout_fd, 1}, std::pair{options.stderr_fd, 2}}) {
    if (fd >= 0) {
      posix_spawn_file_actions_adddup2(&actions, fd, target);
    } else {
      posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_WRONLY, 0);
    }
  }
  if (!options.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);

  // The test's environment with options.environment applied: every
  // variable it names is dropped, then its NAME=value entries are added.
  char** envp = environ;
  std::vector<std::string> env_strings;
  std::vector<char*> env_ptrs;
  if (!options.environment.empty()) {
    auto name_of = [](std::string_view entry) { return entry.substr(0, entry.find('=')); };
    for (char** e = environ; e && *e; ++e) {
      std::string_view v(*e);
      bool changed = std::any_of(options.environment.begin(), options.environment.end(),
                                 [&](const std::string& c) { return name_of(c) == name_of(v); });
      if (!changed) env_strings.emplace_back(v);
    }
    for (const auto& c : options.environment) {
      if (c.find('=') != std::string::npos) env_strings.push_back(c);
    }
    for (auto& s : env_strings) env_ptrs.push_back(s.data());
    env_ptrs.push_back(nullptr);
    envp = env_ptrs.data();
  }
  std::vector<std::string> args = argv;
  std::vector<char*> arg_ptrs;
  for (auto& a : args) arg_ptrs.push_back(a.data());
  arg_ptrs.push_back(nullptr);

  pid_t pid = -1;
  int rc = options.search_path
               ? ::posix_spawnp(&pid, arg_ptrs[0], &actions, &attr, arg_ptrs.data(), envp)
               : ::posix_spawn(&pid, arg_ptrs[0], &actions, &attr, arg_ptrs.data(), envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    *error = "posix_spawn " + argv[0] + ": " + std::strerror(rc);
    if (!options.cwd.empty()) *error += " (cwd " + options.cwd + ")";
    return -1;
  }
  return pid;
}

ShellProcess::ShellProcess(std::string command, std::string cwd) : command_(std::move(command)) {
  out_fd_ = ::memfd_create("stdout", MFD_CLOEXEC);
  err_fd_ = ::memfd_create("stderr", MFD_CLOEXEC);
  if (out_fd_ < 0 || err_fd_ < 0) {
    start_error_ = std::string("memfd_create: ") + std::strerror(errno);
    return;
  }
  pid_ = SpawnProcess({"/bin/sh", "-c", command_},
                      {.stdout_fd = out_fd_,
                       .stderr_fd = err_fd_,
                       .cwd = std::move(cwd),
                       .environment = CLocaleEnvironment()},
                      &start_error_);
}

ShellProcess::~ShellProcess() {
  if (pid_ > 0 && !result_) {
    ::kill(-pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
}

CommandResult ShellProcess::Wait(milliseconds timeout) {
  if (result_) return *result_;
  CommandResult r;
  if (pid_ <= 0) {
    r.err = start_error_;
    result_ = r;
    return r;
  }
  auto deadline = steady_clock::now() + timeout;
  int status = 0;
  auto pause = milliseconds(1);
  while (true) {
    pid_t w = ::waitpid(pid_, &status, WNOHANG);
    if (w == pid_) break;
    if (w < 0 && errno != EINTR) {
      r.err = std::string("waitpid: ") + std::strerror(errno);
      result_ = r;
      return r;
    }
    if (steady_clock::now() >= deadline) {
      r.timed_out = true;
      ::kill(-pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, milliseconds(20));
  }
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.exit_code = 128 + WTERMSIG(status);
  }
  r.out = ReadFd(out_fd_);
  r.err = ReadFd(err_fd_);
  if (r.timed_out) r.err += "\n[killed after " + std::to_string(timeout.count()) + " ms]";
  result_ = r;
  return r;
}

CommandResult RunShell(const std::string& command, const std::string& cwd, milliseconds timeout) {
  ShellProcess p(command, cwd);
  return p.Wait(timeout);
}

// ---------------------------------------------------------------------------
// Temporary directories and mounts.

TempDir::TempDir() {
  std::string templ = std::string(kTempPrefix) + "XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << templ << ": " << std::strerror(errno);
    return;
  }
  path_ = templ;
  std::lock_guard lock(RegistryMutex());
  OurTempDirs().insert(path_);
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  // Never descend into something still mounted.
  for (const auto& point : MountPoints()) {
    if (point == path_ || point.rfind(path_ + "/", 0) == 0) {
      ADD_FAILURE() << "not removing " << path_ << ": " << point << " is still mounted";
      return;
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (ec) ADD_FAILURE() << "removing " << path_ << ": " << ec.message();
  std::lock_guard lock(RegistryMutex());
  OurTempDirs().erase(path_);
}

std::string TempDir::Path(std::string_view relative) const {
  return relative.empty() ? path_ : path_ + "/" + std::string(relative);
}

bool IsMounted(const std::string& path) {
  for (const auto& point : MountPoints()) {
    if (point == path) return true;
  }
  return false;
}

std::unique_ptr<MountedStore> MountedStore::Create(std::shared_ptr<MailboxSet> store,
                                                   MountOptions options) {
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    ADD_FAILURE() << "/dev/fuse is not usable (" << std::strerror(errno)
                  << "): the mount tests need FUSE and fail without it";
    return nullptr;
  }
  if (!store) {
    ADD_FAILURE() << "no store to mount";
    return nullptr;
  }
  std::unique_ptr<MountedStore> m(new MountedStore());
  m->store_ = std::move(store);
  m->base_ = std::make_unique<TempDir>();
  if (m->base_->path().empty()) return nullptr;
  m->root_ = m->base_->Path("mnt");
  m->scratch_ = m->base_->Path("scratch");
  m->spool_ = m->base_->Path("spool");
  for (const auto& d : {m->root_, m->scratch_, m->spool_}) {
    if (::mkdir(d.c_str(), 0755) != 0) {
      ADD_FAILURE() << "mkdir " << d << ": " << std::strerror(errno);
      return nullptr;
    }
  }
  if (options.spool_dir.empty()) options.spool_dir = m->spool_;
  auto mounted = Mount::Start(m->store_, m->root_, options);
  if (!mounted.ok()) {
    ADD_FAILURE() << "Mount::Start(" << m->root_ << ") failed: " << mounted.status().ToString();
    if (IsMounted(m->root_)) {
      ADD_FAILURE() << "a failed Mount::Start left " << m->root_ << " mounted";
      ForceUnmount(m->root_);
    }
    return nullptr;
  }
  m->mount_ = std::move(mounted).value();
  {
    std::lock_guard lock(RegistryMutex());
    ActiveMounts().insert(m->root_);
  }
  if (!IsMounted(m->root_)) {
    ADD_FAILURE() << "Mount::Start succeeded but " << m->root_ << " is not in mountinfo";
    return nullptr;  // the destructor cleans up
  }
  struct stat st;
  if (::stat(m->root_.c_str(), &st) != 0) {
    ADD_FAILURE() << "stat of the mount root " << m->root_ << ": " << std::strerror(errno);
    return nullptr;
  }
  return m;
}

void MountedStore::Unmount() {
  if (mount_) {
    mount_->Unmount();
    mount_.reset();
  }
  if (!root_.empty() && IsMounted(root_)) {
    ADD_FAILURE() << "Mount::Unmount left " << root_ << " mounted; detaching it";
    ForceUnmount(root_);
  }
  {
    std::lock_guard lock(RegistryMutex());
    ActiveMounts().erase(root_);
  }
  // After the unmount no file may wait in the spool.
  if (!spool_.empty() && std::filesystem::exists(spool_)) {
    std::error_code ec;
    std::vector<std::string> left;
    for (auto it = std::filesystem::recursive_directory_iterator(spool_, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file()) left.push_back(it->path().string());
    }
    if (!left.empty()) {
      ADD_FAILURE() << "files left in the spool after unmount: " << ::testing::PrintToString(left);
    }
  }
}

MountedStore::~MountedStore() {
  Unmount();
  base_.reset();  // removes the temp dir unless something is still mounted
}

std::string MountedStore::Path(std::string_view relative) const {
  return relative.empty() ? root_ : root_ + "/" + std::string(relative);
}

CommandResult MountedStore::Run(const std::string& command, milliseconds timeout) const {
  return RunShell(command, root_, timeout);
}

void SetTestTimeout(seconds timeout) { Watchdog::Get().Extend(timeout); }

// ---------------------------------------------------------------------------
// Digests.

uint64_t ContentHash(std::string_view bytes) { return Fnv1a(bytes); }

StoreDigest TakeStoreDigest(MailboxSet& store) {
  StoreDigest d;
  auto subscribed = store.ListSubscribed();
  if (!subscribed.ok()) {
    d.error = "ListSubscribed: " + subscribed.status().ToString();
    return d;
  }
  d.subscribed = *subscribed;
  auto names = store.ListMailboxes();
  if (!names.ok()) {
    d.error = "ListMailboxes: " + names.status().ToString();
    return d;
  }
  for (const auto& name : *names) {
    MailboxDigest m;
    m.name = name;
    auto box = store.GetMailbox(name);
    if (!box.ok()) {
      d.error += "GetMailbox(" + name + "): " + box.status().ToString() + "; ";
      continue;
    }
    m.mailbox_id = (*box)->mailbox_id();
    m.readonly = (*box)->readonly();
    auto snap = (*box)->Snapshot();
    if (!snap.ok()) {
      d.error += "Snapshot(" + name + "): " + snap.status().ToString() + "; ";
      continue;
    }
    m.uid_validity = snap->uid_validity;
    m.next_uid = snap->next_uid;
    m.exists = snap->exists;
    m.unseen = snap->unseen;
    auto infos = (*box)->Find(1, UINT32_MAX);
    if (!infos.ok()) {
      d.error += "Find(" + name + "): " + infos.status().ToString() + "; ";
      continue;
    }
    for (const auto& info : *infos) {
      MessageDigest md{info.uid,  info.flags.ToString(), info.internal_date,
                       info.size, info.email_id,         info.thread_id,
                       0};
      auto reader = (*box)->Open(info.uid);
      if (!reader.ok()) {
        d.error += "Open(" + name + "/" + std::to_string(info.uid) +
                   "): " + reader.status().ToString() + "; ";
        continue;
      }
      auto bytes = ReadAll(**reader);
      if (!bytes.ok()) {
        d.error += "ReadAll: " + bytes.status().ToString() + "; ";
        continue;
      }
      md.content_hash = Fnv1a(*bytes);
      m.messages.push_back(md);
    }
    d.mailboxes.push_back(std::move(m));
  }
  return d;
}

std::string ToString(const StoreDigest& d) {
  std::ostringstream os;
  if (!d.error.empty()) os << "ERROR " << d.error << "\n";
  os << "subscribed:";
  for (const auto& s : d.subscribed) os << " [" << s << "]";
  os << "\n";
  for (const auto& m : d.mailboxes) {
    os << "mailbox [" << m.name << "] id=" << m.mailbox_id << (m.readonly ? " readonly" : "")
       << " uidvalidity=" << m.uid_validity << " uidnext=" << m.next_uid << " exists=" << m.exists
       << " unseen=" << m.unseen << "\n";
    for (const auto& msg : m.messages) {
      os << "  uid=" << msg.uid << " flags=[" << msg.flags << "] date=" << msg.internal_date
         << " size=" << msg.size << " emailid=" << msg.email_id << " threadid=" << msg.thread_id
         << " hash=" << std::hex << msg.content_hash << std::dec << "\n";
    }
  }
  return os.str();
}

std::vector<std::string> ExpectedTree(MailboxSet& store) {
  std::set<std::string> lines;
  for (const auto& name : StoreMailboxes(store)) {
    // The mailbox and each \Noselect parent show as directories.
    for (size_t pos = name.find('/'); pos != std::string::npos; pos = name.find('/', pos + 1)) {
      lines.insert("D " + name.substr(0, pos) + "/");
    }
    lines.insert("D " + name + "/");
    for (const auto& info : StoreMessages(store, name)) {
      lines.insert("F " + name + "/" + std::to_string(info.uid) + ".eml " +
                   std::to_string(info.size) + " " + std::to_string(info.internal_date));
    }
  }
  return {lines.begin(), lines.end()};
}

std::vector<std::string> MountedTree(const std::string& root) {
  std::set<std::string> lines;
  std::function<void(const std::string&)> walk = [&](const std::string& rel) {
    std::string dir = rel.empty() ? root : root + "/" + rel;
    int err = 0;
    auto names = ListDir(dir, &err);
    if (!names) {
      lines.insert("ERROR readdir " + rel + ": " + ErrnoName(err));
      return;
    }
    for (const auto& n : *names) {
      if (n.starts_with(".")) continue;
      std::string child = rel.empty() ? n : rel + "/" + n;
      struct stat st;
      if (::lstat((root + "/" + child).c_str(), &st) != 0) {
        lines.insert("ERROR stat " + child + ": " + ErrnoName(errno));
        continue;
      }
      if (S_ISDIR(st.st_mode)) {
        lines.insert("D " + child + "/");
        walk(child);
      } else {
        lines.insert("F " + child + " " + std::to_string(st.st_size) + " " +
                     std::to_string(st.st_mtim.tv_sec));
      }
    }
  };
  walk("");
  return {lines.begin(), lines.end()};
}

// ---------------------------------------------------------------------------
// Store helpers.

std::string TestMessage(std::string_view tag, std::string_view body) {
  std::string m;
  m += "From: Alice <alice@example.org>\r\n";
  m += "To: Bob <bob@example.org>\r\n";
  m += "Subject: test message " + std::string(tag) + "\r\n";
  m += "Date: Tue, 01 Sep 2020 12:00:00 +0000\r\n";
  m += "Message-ID: <" + std::string(tag) + "@mailfs.test>\r\n";
  m += "\r\n";
  m += "Hello, this is message " + std::string(tag) + ".\r\n";
  if (!body.empty()) {
    m += body;
    m += "\r\n";
  }
  return m;
}

std::shared_ptr<MailboxData> StoreMailbox(MailboxSet& store, std::string_view mailbox) {
  auto box = store.GetMailbox(mailbox);
  if (!box.ok()) {
    ADD_FAILURE() << "GetMailbox(" << mailbox << "): " << box.status().ToString();
    return nullptr;
  }
  return *box;
}

FlagSet Flags(std::string_view text) {
  auto f = FlagSet::Parse(text);
  if (!f.ok()) {
    ADD_FAILURE() << "FlagSet::Parse(" << text << "): " << f.status().ToString();
    return {};
  }
  return *f;
}

uint32_t StoreAppend(MailboxSet& store, std::string_view mailbox, std::string_view bytes,
                     std::string_view flags, UnixSeconds date, bool recent) {
  auto box = StoreMailbox(store, mailbox);
  if (!box) return 0;
  AppendMessage msg;
  msg.content = std::make_shared<StringContent>(std::string(bytes));
  msg.flags = Flags(flags);
  msg.internal_date = date;
  auto uid = box->Append(msg, recent);
  if (!uid.ok()) {
    ADD_FAILURE() << "Append to " << mailbox << ": " << uid.status().ToString();
    return 0;
  }
  return *uid;
}

std::vector<MessageInfo> StoreMessages(MailboxSet& store, std::string_view mailbox) {
  auto box = StoreMailbox(store, mailbox);
  if (!box) return {};
  auto infos = box->Find(1, UINT32_MAX);
  if (!infos.ok()) {
    ADD_FAILURE() << "Find in " << mailbox << ": " << infos.status().ToString();
    return {};
  }
  return *infos;
}

std::vector<uint32_t> StoreUids(MailboxSet& store, std::string_view mailbox) {
  std::vector<uint32_t> uids;
  for (const auto& i : StoreMessages(store, mailbox)) uids.push_back(i.uid);
  return uids;
}

std::optional<MessageInfo> StoreInfo(MailboxSet& store, std::string_view mailbox, uint32_t uid) {
  auto box = store.GetMailbox(mailbox);
  if (!box.ok()) return std::nullopt;
  auto info = (*box)->Get(uid);
  if (!info.ok()) return std::nullopt;
  return *info;
}

std::string StoreBytes(MailboxSet& store, std::string_view mailbox, uint32_t uid) {
  auto box = StoreMailbox(store, mailbox);
  if (!box) return {};
  auto reader = box->Open(uid);
  if (!reader.ok()) {
    ADD_FAILURE() << "Open " << mailbox << "/" << uid << ": " << reader.status().ToString();
    return {};
  }
  auto bytes = ReadAll(**reader);
  if (!bytes.ok()) {
    ADD_FAILURE() << "ReadAll " << mailbox << "/" << uid << ": " << bytes.status().ToString();
    return {};
  }
  return *bytes;
}

MailboxSnapshot StoreSnapshot(MailboxSet& store, std::string_view mailbox) {
  auto box = StoreMailbox(store, mailbox);
  if (!box) return {};
  auto snap = box->Snapshot();
  if (!snap.ok()) {
    ADD_FAILURE() << "Snapshot " << mailbox << ": " << snap.status().ToString();
    return {};
  }
  return *snap;
}

std::vector<std::string> StoreMailboxes(MailboxSet& store) {
  auto names = store.ListMailboxes();
  if (!names.ok()) {
    ADD_FAILURE() << "ListMailboxes: " << names.status().ToString();
    return {};
  }
  return *names;
}

bool StoreHasMailbox(MailboxSet& store, std::string_view mailbox) {
  auto names = StoreMailboxes(store);
  return std::find(names.begin(), names.end(), mailbox) != names.end();
}

std::vector<std::string> StoreSubscribed(MailboxSet& store) {
  auto names = store.ListSubscribed();
  if (!names.ok()) {
    ADD_FAILURE() << "ListSubscribed: " << names.status().ToString();
    return {};
  }
  return *names;
}

void SeedStandardStore(MailboxSet& store) {
  StoreAppend(store, "INBOX", TestMessage("inbox-1"), "\\Seen", 1'600'000'017);
  StoreAppend(store, "INBOX", TestMessage("inbox-2", "the word zanzibar is only here"),
              "\\Flagged $Junk", 1'600'086'423);
  uint32_t gone = StoreAppend(store, "INBOX", TestMessage("inbox-3"), "", 1'600'172'829);
  StoreAppend(store, "INBOX", TestMessage("inbox-4", "last one"), "", 1'600'259'235);
  if (auto box = StoreMailbox(store, "INBOX")) {
    uint32_t uids[] = {gone};
    auto st = box->Delete(uids);
    if (!st.ok()) ADD_FAILURE() << "Delete: " << st.ToString();
  }
  for (const char* name : {"Archive", "Archive/2024", "Work"}) {
    auto id = store.AddMailbox(name);
    if (!id.ok()) ADD_FAILURE() << "AddMailbox(" << name << "): " << id.status().ToString();
  }
  StoreAppend(store, "Archive", TestMessage("archive-1"), "\\Seen \\Answered", 1'500'000'001);
  StoreAppend(store, "Archive", TestMessage("archive-2"), "\\Deleted", 1'500'000'002);
  StoreAppend(store, "Archive/2024", TestMessage("archive-2024-1"), "", 1'704'067'205);
}

// ---------------------------------------------------------------------------
// Syscall helpers.

std::string ErrnoName(int err) {
  if (err == 0) return "0 (success)";
  const char* name = ::strerrorname_np(err);
  return std::string(name ? name : std::to_string(err).c_str()) + " (" + std::strerror(err) + ")";
}

int ErrnoOf(long rc) { return rc == -1 ? errno : 0; }

ScopedFd::~ScopedFd() {
  if (fd_ >= 0) ::close(fd_);
}

int ScopedFd::Close() {
  int fd = fd_;
  fd_ = -1;
  return ::close(fd);
}

std::string WriteOutcome::Describe() const {
  return "open: " + ErrnoName(open_errno) + ", write: " + ErrnoName(write_errno) +
         ", close: " + (close_called ? ErrnoName(close_errno) : std::string("not reached"));
}

WriteOutcome WriteFile(const std::string& path, std::string_view bytes, int flags, size_t chunk) {
  WriteOutcome w;
  if (flags == 0) flags = O_WRONLY | O_CREAT | O_EXCL;
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) {
    w.open_errno = errno;
    return w;
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, std::min(chunk, bytes.size() - done));
    if (n < 0) {
      if (errno == EINTR) continue;
      w.write_errno = errno;
      break;
    }
    done += n;
  }
  w.close_called = true;
  if (::close(fd) != 0) w.close_errno = errno;
  return w;
}

std::optional<std::string> ReadFile(const std::string& path, int* err) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (err) *err = errno;
    return std::nullopt;
  }
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (err) *err = errno;
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, n);
  }
  ::close(fd);
  return out;
}

std::optional<std::string> PreadFile(const std::string& path, uint64_t offset, size_t count,
                                     int* err) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (err) *err = errno;
    return std::nullopt;
  }
  std::string out(count, '\0');
  size_t done = 0;
  while (done < count) {
    ssize_t n = ::pread(fd, out.data() + done, count - done, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (err) *err = errno;
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    done += n;
  }
  ::close(fd);
  out.resize(done);
  return out;
}

std::optional<std::vector<std::string>> ListDir(const std::string& path, int* err) {
  DIR* dir = ::opendir(path.c_str());
  if (!dir) {
    if (err) *err = errno;
    return std::nullopt;
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(dir)) {
    std::string_view n(e->d_name);
    if (n != "." && n != "..") names.emplace_back(n);
    errno = 0;
  }
  int e = errno;
  ::closedir(dir);
  if (e != 0) {
    if (err) *err = e;
    return std::nullopt;
  }
  return names;
}

std::optional<std::string> GetXattr(const std::string& path, const std::string& name, int* err) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    ssize_t size = ::getxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (size < 0) {
      if (err) *err = errno;
      return std::nullopt;
    }
    std::string value(size + 16, '\0');
    ssize_t n = ::getxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (n < 0) {
      if (errno == ERANGE) continue;
      if (err) *err = errno;
      return std::nullopt;
    }
    value.resize(n);
    return value;
  }
  if (err) *err = ERANGE;
  return std::nullopt;
}

std::optional<std::vector<std::string>> ListXattr(const std::string& path, int* err) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    ssize_t size = ::listxattr(path.c_str(), nullptr, 0);
    if (size < 0) {
      if (err) *err = errno;
      return std::nullopt;
    }
    std::string buf(size + 64, '\0');
    ssize_t n = ::listxattr(path.c_str(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == ERANGE) continue;
      if (err) *err = errno;
      return std::nullopt;
    }
    std::vector<std::string> names;
    for (size_t pos = 0; pos < static_cast<size_t>(n);) {
      size_t end = buf.find('\0', pos);
      if (end == std::string::npos || end > static_cast<size_t>(n)) end = n;
      if (end > pos) names.push_back(buf.substr(pos, end - pos));
      pos = end + 1;
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  if (err) *err = ERANGE;
  return std::nullopt;
}

int SetXattr(const std::string& path, const std::string& name, std::string_view value, int flags) {
  return ErrnoOf(::setxattr(path.c_str(), name.c_str(), value.data(), value.size(), flags));
}

int RemoveXattr(const std::string& path, const std::string& name) {
  return ErrnoOf(::removexattr(path.c_str(), name.c_str()));
}

int Stat(const std::string& path, struct stat* st) { return ErrnoOf(::stat(path.c_str(), st)); }

bool Eventually(const std::function<bool()>& condition, milliseconds timeout) {
  auto deadline = steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
}

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    lines.emplace_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return lines;
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::optional<UnixSeconds> ParseDateAttribute(std::string_view value) {
  std::string v(value);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.pop_back();
  size_t start = v.find_first_not_of(" \t\"");
  if (start == std::string::npos) return std::nullopt;
  v = v.substr(start);
  while (!v.empty() && v.back() == '"') v.pop_back();
  if (!v.empty() && v.find_first_not_of("0123456789", v[0] == '-' ? 1 : 0) == std::string::npos) {
    return std::stoll(v);
  }
  if (!v.empty() && v.back() == 'Z') v = v.substr(0, v.size() - 1) + "+0000";
  for (const char* format : {"%d-%b-%Y %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S %z",
                             "%a, %d %b %Y %H:%M:%S %z", "%d %b %Y %H:%M:%S %z"}) {
    struct tm tm = {};
    const char* end = ::strptime(v.c_str(), format, &tm);
    if (end != nullptr && *end == '\0')
      return static_cast<UnixSeconds>(::timegm(&tm)) - tm.tm_gmtoff;
  }
  return std::nullopt;
}

void WriteLocalFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) ADD_FAILURE() << "writing " << path << " failed";
}

// ---------------------------------------------------------------------------
// The fixture.

void MountTest::SetUp() {
  store_ = GetParam().make();
  ASSERT_TRUE(store_) << "backend " << GetParam().name << " made no store";
}

void MountTest::TearDown() {
  if (mount_) mount_.reset();
}

void MountTest::MountStore(MountOptions options) {
  ASSERT_FALSE(mount_) << "already mounted";
  mount_ = MountedStore::Create(store_, std::move(options));
  ASSERT_TRUE(mount_) << "could not mount the " << GetParam().name << " store";
}

void MountTest::MakeReadOnly(std::string_view mailbox) {
  if (!GetParam().make_readonly) {
    GTEST_SKIP() << "backend " << GetParam().name << " cannot make a mailbox read-only";
  }
  auto st = GetParam().make_readonly(*store_, mailbox);
  ASSERT_TRUE(st.ok()) << "make_readonly(" << mailbox << "): " << st.ToString();
}

std::string Name(uint32_t uid) { return std::to_string(uid) + ".eml"; }

std::vector<uint32_t> NewUids(const std::vector<uint32_t>& before,
                              const std::vector<uint32_t>& after) {
  std::vector<uint32_t> added;
  for (uint32_t uid : after) {
    if (std::find(before.begin(), before.end(), uid) == before.end()) added.push_back(uid);
  }
  return added;
}

}  // namespace mailfs::test
