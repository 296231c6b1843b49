// Runs the real mailfs binary (MAILFS_BINARY) the way a user and
// /etc/fstab do: refusals, --help, --version, a daemonized mount, a
// foreground mount, and mount -t fuse.mailfs through mount.fuse3.
//
// Every directory is made under $TMPDIR/mailfs-test-XXXXXX and every mount
// is undone by a guard, even when a test fails; scripts/test unmounts
// whatever a crashed run leaves under that prefix.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/redis_server.h"

namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

extern "C" char** environ;

constexpr auto kTimeout = seconds(20);

// A child process with its stdout and stderr captured.
class Process {
 public:
  // Starts argv[0] (a path, or a name looked up in PATH) with the current
  // environment plus `env` ("NAME=value", overriding).
  static std::unique_ptr<Process> Start(const std::vector<std::string>& argv,
                                        const std::vector<std::string>& env = {}) {
    std::vector<std::string> environment = env;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string entry = *e;
      std::string name = entry.substr(0, entry.find('='));
      bool overridden = false;
      for (const std::string& given : env) overridden |= given.starts_with(name + "=");
      if (!overridden) environment.push_back(entry);
    }
    std::vector<char*> c_argv, c_env;
    for (const std::string& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
    c_argv.push_back(nullptr);
    for (const std::string& e : environment) c_env.push_back(const_cast<char*>(e.c_str()));
    c_env.push_back(nullptr);

    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return nullptr;
    pid_t pid = fork();
    if (pid == 0) {
      int null = open("/dev/null", O_RDONLY);
      dup2(null, 0);
      dup2(out[1], 1);
      dup2(err[1], 2);
      execvpe(c_argv[0], c_argv.data(), c_env.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    auto process = std::unique_ptr<Process>(new Process());
    process->pid_ = pid;
    process->out_fd_ = out[0];
    process->err_fd_ = err[0];
    return process;
  }

  ~Process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) close(out_fd_);
    if (err_fd_ >= 0) close(err_fd_);
  }

  pid_t pid() const { return pid_; }

  // Collects the output until both pipes close, then waits for the exit.
  // False if that takes longer than `timeout`; the process is then killed.
  bool Wait(Clock::duration timeout = kTimeout) {
    auto deadline = Clock::now() + timeout;
    while (out_fd_ >= 0 || err_fd_ >= 0) {
      pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) break;
      if (poll(fds, 2, static_cast<int>(left)) < 0 && errno != EINTR) break;
      Drain(fds[0], &out_fd_, &stdout_);
      Drain(fds[1], &err_fd_, &stderr_);
    }
    while (pid_ > 0) {
      int status;
      pid_t done = waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        pid_ = 0;
      } else if (Clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = 0;
        exit_code_ = -1;
        return false;
      } else {
        std::this_thread::sleep_for(milliseconds(10));
      }
    }
    return exit_code_ != -1;
  }

  int exit_code() const { return exit_code_; }  // 128+N for signal N; -1 for a timeout
  const std::string& out() const { return stdout_; }
  const std::string& err() const { return stderr_; }
  std::string Describe() const {
    return std::string("exit ") + std::to_string(exit_code_) + "\n--- stdout:\n" + stdout_ +
           "--- stderr:\n" + stderr_;
  }

 private:
  Process() = default;
  static void Drain(const pollfd& p, int* fd, std::string* into) {
    if (*fd < 0 || p.revents == 0) return;
    char buffer[4096];
    ssize_t n = read(*fd, buffer, sizeof(buffer));
    if (n > 0) {
      into->append(buffer, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      close(*fd);
      *fd = -1;
    }
  }

  pid_t pid_ = 0;
  int out_fd_ = -1;
  int err_fd_ = -1;
  int exit_code_ = -1;
  std::string stdout_;
  std::string stderr_;
};

std::unique_ptr<Process> RunCommand(const std::vector<std::string>& argv,
                                    const std::vector<std::string>& env = {}) {
  auto process = Process::Start(argv, env);
  if (process) process->Wait();
  return process;
}

// One line of /proc/self/mountinfo, the fields we look at.
struct MountEntry {
  std::string mount_point;
  std::string fs_type;
  std::string source;
  std::string super_options;
};

// Undoes the octal escapes of /proc/self/mountinfo ("\040" for a space).
std::string Unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      out += static_cast<char>(std::stoi(field.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

std::optional<MountEntry> FindMount(const fs::path& path) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  std::optional<MountEntry> found;
  while (std::getline(mountinfo, line)) {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point, options, field;
    fields >> id >> parent >> dev >> root >> mount_point >> options;
    while (fields >> field && field != "-") {
    }
    MountEntry entry;
    fields >> entry.fs_type >> entry.source >> entry.super_options;
    entry.mount_point = Unescape(mount_point);
    entry.source = Unescape(entry.source);
    if (entry.mount_point == path.string()) found = entry;  // the last one is on top
  }
  return found;
}

bool IsMounted(const fs::path& path) { return FindMount(path).has_value(); }

bool WaitUntil(const std::function<bool()>& condition, Clock::duration timeout = kTimeout) {
  auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

// The processes that run with `word` among their arguments (a mailfs
// daemon has its mount point there).
std::vector<pid_t> PidsWithArgument(const std::string& word) {
  std::vector<pid_t> pids;
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator("/proc", ignored)) {
    std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmdline(entry.path() / "cmdline");
    std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    std::istringstream in(args);
    std::string arg;
    while (std::getline(in, arg, '\0')) {
      if (arg == word) {
        pids.push_back(static_cast<pid_t>(std::stol(name)));
        break;
      }
    }
  }
  return pids;
}

bool ProcessWithArgumentRuns(const std::string& word) { return !PidsWithArgument(word).empty(); }

// Whether `path` is a directory, asked from a child process: a hung mount
// blocks whoever stats it, and only a child can be killed out of that.
bool IsDirectoryOnMount(const fs::path& path) {
  auto process = RunCommand({"test", "-d", path.string()});
  return process && process->exit_code() == 0;
}

// Unmounts `path` when it goes out of scope, if anything is mounted there:
// lazily, so that a hung mount cannot hang the test.
class MountGuard {
 public:
  explicit MountGuard(fs::path path) : path_(std::move(path)) {}
  MountGuard(const MountGuard&) = delete;
  MountGuard& operator=(const MountGuard&) = delete;
  // A daemon that does not exit after the unmount (a hung mount) is killed.
  ~MountGuard() {
    for (int i = 0; i < 3 && IsMounted(path_); ++i) {
      RunCommand({"fusermount3", "-u", "-z", path_.string()});
      if (IsMounted(path_)) RunCommand({"umount", "-l", path_.string()});
    }
    if (!WaitUntil([&] { return !ProcessWithArgumentRuns(path_.string()); }, seconds(5))) {
      for (pid_t pid : PidsWithArgument(path_.string())) kill(pid, SIGKILL);
    }
  }

 private:
  fs::path path_;
};

// A private directory, removed at the end unless something is still
// mounted inside it (removing through a mount would empty the store).
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "mailfs-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = fs::canonical(pattern);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    if (path_.empty()) return;
    std::ifstream mountinfo("/proc/self/mountinfo");
    std::string line;
    while (std::getline(mountinfo, line)) {
      if (line.find(std::string(" ") + path_.string() + "/") != std::string::npos) return;
    }
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }
  // An empty directory inside, ready to be a mount point.
  fs::path MakeDir(const std::string& name) const {
    fs::create_directory(path_ / name);
    return path_ / name;
  }

 private:
  fs::path path_;
};

// The lines of `text`; a last line without '\n' counts too.
std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

std::string ProjectVersion() {
  std::ifstream cmake(fs::path(MAILFS_SOURCE_DIR) / "CMakeLists.txt");
  std::string text((std::istreambuf_iterator<char>(cmake)), std::istreambuf_iterator<char>());
  std::smatch match;
  if (std::regex_search(text, match, std::regex(R"(project\(mailfs VERSION ([0-9.]+))"))) {
    return match[1];
  }
  return "?";
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "cannot create a temporary directory";
  }
  // Checks a refusal: status 1, nothing on stdout, one line on stderr that
  // starts with "mailfs: ", and nothing mounted at `mountpoint`.
  void ExpectRefused(const std::vector<std::string>& args, const fs::path& mountpoint,
                     const std::string& expected_words) {
    std::vector<std::string> argv = {MAILFS_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    MountGuard guard(mountpoint);
    auto process = RunCommand(argv);
    ASSERT_TRUE(process);
    SCOPED_TRACE(process->Describe());
    EXPECT_EQ(process->exit_code(), 1);
    EXPECT_EQ(process->out(), "");
    std::vector<std::string> lines = Lines(process->err());
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_TRUE(lines[0].starts_with("mailfs: ")) << lines[0];
    EXPECT_NE(lines[0].find(expected_words), std::string::npos)
        << "'" << lines[0] << "' should mention '" << expected_words << "'";
    EXPECT_TRUE(process->err().ends_with("\n"));
    EXPECT_FALSE(IsMounted(mountpoint));
  }

  TempDir dir_;
};

TEST_F(CliTest, HelpListsSourcesOptionsAndExamples) {
  auto process = RunCommand({MAILFS_BINARY, "--help"});
  ASSERT_TRUE(process);
  SCOPED_TRACE(process->Describe());
  EXPECT_EQ(process->exit_code(), 0);
  EXPECT_EQ(process->err(), "");
  for (const char* word : {"usage: mailfs SOURCE MOUNTPOINT",
                           "demo",
                           "memory",
                           "layout=",
                           "names=",
                           "login=",
                           "prefix=",
                           "users_prefix=",
                           "separator=",
                           "password_file=",
                           "spool=",
                           "-f",
                           "-d",
                           "-s",
                           "-o opt",
                           "allow_other",
                           "mailfs demo ~/mail",
                           "mailfs memory /tmp/m -f",
                           "fusermount3 -u MOUNTPOINT",
                           "demo /home/me/mail fuse.mailfs defaults 0 0"}) {
    EXPECT_NE(process->out().find(word), std::string::npos) << "missing: " << word;
  }
  auto short_form = RunCommand({MAILFS_BINARY, "-h"});
  ASSERT_TRUE(short_form);
  EXPECT_EQ(short_form->exit_code(), 0);
  EXPECT_EQ(short_form->out(), process->out());
}

TEST_F(CliTest, VersionPrintsTheProjectVersion) {
  auto process = RunCommand({MAILFS_BINARY, "--version"});
  ASSERT_TRUE(process);
  SCOPED_TRACE(process->Describe());
  EXPECT_EQ(process->exit_code(), 0);
  EXPECT_EQ(process->out(), std::string("mailfs ") + ProjectVersion() + "\n");
  EXPECT_EQ(process->err(), "");
}

TEST_F(CliTest, RefusesBadCommandLines) {
  fs::path m = dir_.MakeDir("m");
  {
    SCOPED_TRACE("no arguments");
    ExpectRefused({}, m, "missing SOURCE and MOUNTPOINT");
  }
  {
    SCOPED_TRACE("one argument");
    ExpectRefused({"demo"}, m, "missing MOUNTPOINT");
  }
  {
    SCOPED_TRACE("three arguments");
    ExpectRefused({"demo", m.string(), "extra"}, m, "unexpected argument 'extra'");
  }
  {
    SCOPED_TRACE("unknown option");
    ExpectRefused({"demo", m.string(), "--bogus"}, m, "unknown option '--bogus'");
  }
  {
    SCOPED_TRACE("unknown -o option");
    ExpectRefused({"demo", m.string(), "-o", "rw,bogus"}, m, "unknown option '-o bogus'");
  }
  {
    SCOPED_TRACE("-o without a value");
    ExpectRefused({"demo", m.string(), "-o"}, m, "-o");
  }
  {
    SCOPED_TRACE("nonempty");
    ExpectRefused({"demo", m.string(), "-o", "nonempty"}, m, "nonempty");
  }
}

TEST_F(CliTest, RefusesAnUnknownSource) {
  fs::path m = dir_.MakeDir("m");
  ExpectRefused({"bogus:", m.string()}, m, "bogus:");
}

TEST_F(CliTest, RefusesABackendOptionTheSourceDoesNotTake) {
  fs::path m = dir_.MakeDir("m");
  ExpectRefused({"demo", m.string(), "-o", "layout=fs"}, m, "layout");
}

TEST_F(CliTest, RefusesAMissingMountPoint) {
  fs::path m = dir_.path() / "none";
  ExpectRefused({"demo", m.string()}, m, "does not exist");
  EXPECT_FALSE(fs::exists(m));
}

TEST_F(CliTest, RefusesAMountPointThatIsAFile) {
  fs::path m = dir_.path() / "file";
  std::ofstream(m) << "x";
  ExpectRefused({"demo", m.string()}, m, "is not a directory");
  ExpectRefused({"demo", m.string(), "-f"}, m, "is not a directory");
}

TEST_F(CliTest, RefusesANonEmptyMountPoint) {
  fs::path m = dir_.MakeDir("m");
  std::ofstream(m / "keep") << "x";
  ExpectRefused({"demo", m.string()}, m, "is not empty");
  ExpectRefused({"demo", m.string(), "-f"}, m, "is not empty");
  EXPECT_TRUE(fs::exists(m / "keep"));
}

// A failure inside Mount::Start (here: a spool directory that does not
// exist) is also one line, in the background and in the foreground.
TEST_F(CliTest, RefusesWhatTheMountRefuses) {
  fs::path m = dir_.MakeDir("m");
  std::string spool = (dir_.path() / "no-spool").string();
  ExpectRefused({"demo", m.string(), "-o", "spool=" + spool}, m, "no-spool");
  ExpectRefused({"demo", m.string(), "-f", "--spool=" + spool}, m, "no-spool");
}

// The default: mailfs returns once mounted and serves from the background
// until fusermount3 -u, then the daemon exits.
TEST_F(CliTest, DaemonMountsAndUnmounts) {
  ASSERT_TRUE(fs::exists("/dev/fuse")) << "/dev/fuse is missing: FUSE cannot work here";
  fs::path m = dir_.MakeDir("m");
  MountGuard guard(m);
  auto process = RunCommand({MAILFS_BINARY, "demo", m.string()});
  ASSERT_TRUE(process);
  SCOPED_TRACE(process->Describe());
  ASSERT_EQ(process->exit_code(), 0);
  std::optional<MountEntry> entry = FindMount(m);
  ASSERT_TRUE(entry.has_value()) << m << " is not mounted";
  EXPECT_EQ(entry->fs_type, "fuse.mailfs");
  EXPECT_EQ(entry->source, "demo");
  EXPECT_TRUE(IsDirectoryOnMount(m / "INBOX"));

  auto unmount = RunCommand({"fusermount3", "-u", m.string()});
  ASSERT_TRUE(unmount);
  EXPECT_EQ(unmount->exit_code(), 0) << unmount->Describe();
  EXPECT_FALSE(IsMounted(m));
  EXPECT_TRUE(WaitUntil([&] { return !ProcessWithArgumentRuns(m.string()); }))
      << "the mailfs daemon for " << m << " still runs after the unmount";
}

// A Redis source through the real binary: the daemon keeps the connections
// it opened before it forked, and writes through the mount reach Redis. An
// unreachable server is refused with one line and nothing mounted.
TEST_F(CliTest, DaemonMountsARedisSource) {
  ASSERT_TRUE(fs::exists("/dev/fuse")) << "/dev/fuse is missing: FUSE cannot work here";
  std::string address = mailfs::test::SharedRedisAddress();
  ASSERT_FALSE(address.empty()) << "MAILFS_TEST_REDIS is not set (run through scripts/test)";
  fs::path m = dir_.MakeDir("m");
  ExpectRefused({"redis://127.0.0.1:1", m.string(), "-o", "login=cli"}, m, "127.0.0.1:1");

  MountGuard guard(m);
  std::string prefix = "/mailfs-test/cli-" + std::to_string(getpid());
  auto process = RunCommand(
      {MAILFS_BINARY, "redis://" + address, m.string(), "-o", "login=cli,prefix=" + prefix});
  ASSERT_TRUE(process);
  SCOPED_TRACE(process->Describe());
  ASSERT_EQ(process->exit_code(), 0);
  std::optional<MountEntry> entry = FindMount(m);
  ASSERT_TRUE(entry.has_value()) << m << " is not mounted";
  EXPECT_EQ(entry->source, "redis://" + address);
  std::ofstream(m / "INBOX" / "new.eml") << "Subject: through the daemon\r\n\r\nbody\r\n";
  EXPECT_TRUE(fs::exists(m / "INBOX" / "1.eml"));
  std::string ns = mailfs::test::RedisCli(address, {"HGET", prefix + "/ns", "cli"});
  ASSERT_TRUE(ns.starts_with("4/")) << ns;
  std::string inbox = mailfs::test::RedisCli(
      address, {"HGET", prefix + "/ns/" + ns.substr(2) + "/mailboxes", "INBOX"});
  EXPECT_EQ(mailfs::test::RedisCli(
                address, {"HLEN", prefix + "/ns/" + ns.substr(2) + "/mbx/" + inbox + "/uids"}),
            "1");

  auto unmount = RunCommand({"fusermount3", "-u", m.string()});
  ASSERT_TRUE(unmount);
  EXPECT_EQ(unmount->exit_code(), 0) << unmount->Describe();
  EXPECT_TRUE(WaitUntil([&] { return !ProcessWithArgumentRuns(m.string()); }))
      << "the mailfs daemon for " << m << " still runs after the unmount";
}

TEST_F(CliTest, PassesFuseOptionsThrough) {
  fs::path m = dir_.MakeDir("m");
  MountGuard guard(m);
  auto process = RunCommand({MAILFS_BINARY, "memory", m.string(), "-o",
                             "allow_other,default_permissions,fsname=mine", "-s"});
  ASSERT_TRUE(process);
  SCOPED_TRACE(process->Describe());
  ASSERT_EQ(process->exit_code(), 0);
  std::optional<MountEntry> entry = FindMount(m);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->source, "mine");
  EXPECT_NE(entry->super_options.find("allow_other"), std::string::npos) << entry->super_options;
  EXPECT_NE(entry->super_options.find("default_permissions"), std::string::npos)
      << entry->super_options;
  EXPECT_TRUE(IsDirectoryOnMount(m / "INBOX"));
}

// With -f, mailfs serves until unmounted and then exits 0.
TEST_F(CliTest, ForegroundExitsZeroAfterUnmount) {
  fs::path m = dir_.MakeDir("m");
  MountGuard guard(m);
  auto process = Process::Start({MAILFS_BINARY, "memory", m.string(), "-f"});
  ASSERT_TRUE(process);
  ASSERT_TRUE(WaitUntil([&] { return IsMounted(m); })) << m << " was never mounted";
  EXPECT_TRUE(IsDirectoryOnMount(m / "INBOX"));

  auto unmount = RunCommand({"fusermount3", "-u", m.string()});
  ASSERT_TRUE(unmount);
  EXPECT_EQ(unmount->exit_code(), 0) << unmount->Describe();
  ASSERT_TRUE(process->Wait()) << "mailfs -f did not exit after the unmount";
  EXPECT_EQ(process->exit_code(), 0) << process->Describe();
  EXPECT_FALSE(IsMounted(m));
}

// Ctrl-C in the foreground unmounts and exits 0.
TEST_F(CliTest, ForegroundUnmountsOnSigint) {
  fs::path m = dir_.MakeDir("m");
  MountGuard guard(m);
  auto process = Process::Start({MAILFS_BINARY, "demo", m.string(), "-f"});
  ASSERT_TRUE(process);
  ASSERT_TRUE(WaitUntil([&] { return IsMounted(m); })) << m << " was never mounted";
  ASSERT_EQ(kill(process->pid(), SIGINT), 0);
  ASSERT_TRUE(process->Wait()) << "mailfs -f did not exit on SIGINT";
  EXPECT_EQ(process->exit_code(), 0) << process->Describe();
  EXPECT_FALSE(IsMounted(m));
}

// Mounts with `argv` (a mount(8) or mount.fuse3 command line ending in
// "demo MOUNTPOINT"), checks the mount, and unmounts it with umount(8).
void MountAndUmount(const std::vector<std::string>& argv, const fs::path& m,
                    const std::vector<std::string>& env = {}) {
  MountGuard guard(m);
  auto process = RunCommand(argv, env);
  ASSERT_TRUE(process);
  SCOPED_TRACE(process->Describe());
  ASSERT_EQ(process->exit_code(), 0);
  std::optional<MountEntry> entry = FindMount(m);
  ASSERT_TRUE(entry.has_value()) << m << " is not mounted";
  EXPECT_EQ(entry->fs_type, "fuse.mailfs");
  EXPECT_EQ(entry->source, "demo");
  EXPECT_TRUE(IsDirectoryOnMount(m / "INBOX"));

  auto unmount = RunCommand({"umount", m.string()});
  ASSERT_TRUE(unmount);
  EXPECT_EQ(unmount->exit_code(), 0) << unmount->Describe();
  EXPECT_FALSE(IsMounted(m));
  EXPECT_TRUE(WaitUntil([&] { return !ProcessWithArgumentRuns(m.string()); }))
      << "the mailfs daemon for " << m << " still runs after umount";
}

// What /etc/fstab does: mount(8) runs mount.fuse3 (util/mount.fuse.c in
// libfuse), which drops the options it handles itself (_netdev, nofail,
// auto, noauto, user, users, nouser, setuid=, drop_privileges), adds dev
// and suid as root, and runs /bin/sh -c "'mailfs' 'SOURCE' 'MOUNTPOINT'
// '-o' 'OPTIONS'". mount(8) clears PATH for its helpers, so the shell finds
// "mailfs" only in the default /usr/local/sbin:...:/bin; a type
// "fuse./path/to/mailfs" names the binary instead, which lets this test
// run the binary under test through the same chain without installing it.
TEST_F(CliTest, MountsThroughMountAndMountFuse3) {
  if (geteuid() != 0) GTEST_SKIP() << "mount -t fuse... needs root";
  const std::string type = std::string("fuse.") + MAILFS_BINARY;
  {
    SCOPED_TRACE("mount -t fuse./path/to/mailfs");
    MountAndUmount({"mount", "-t", type, "demo", dir_.MakeDir("plain").string()},
                   dir_.path() / "plain");
  }
  {
    SCOPED_TRACE("mount -t fuse./path/to/mailfs -o (fstab options)");
    MountAndUmount({"mount", "-t", type, "-o",
                    "defaults,noatime,nodev,nosuid,noexec,_netdev,nofail,rw,x-systemd.after=a",
                    "demo", dir_.MakeDir("options").string()},
                   dir_.path() / "options");
  }
}

// mount.fuse3 run directly, as mount(8) runs it for type fuse.mailfs: here
// the PATH given is kept, so "mailfs" is looked up in the build directory.
TEST_F(CliTest, MountsThroughMountFuse3ByName) {
  if (geteuid() != 0) GTEST_SKIP() << "mount.fuse3 with dev,suid needs root";
  std::string path = fs::path(MAILFS_BINARY).parent_path().string() + ":" +
                     (getenv("PATH") ? getenv("PATH") : "/usr/sbin:/usr/bin:/sbin:/bin");
  MountAndUmount({"mount.fuse3", "demo", dir_.MakeDir("m").string(), "-o", "rw,noatime,_netdev",
                  "-t", "fuse.mailfs"},
                 dir_.path() / "m", {"PATH=" + path});
}

}  // namespace
