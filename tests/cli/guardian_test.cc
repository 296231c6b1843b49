// The guardian of a mount (fuse/guardian.h): when the process serving a
// mount is dying but a thread of it is left, the guardian aborts the FUSE
// connection, so that whatever waits on the mount gets ENOTCONN instead of
// waiting forever.
//
// A SIGKILLed mailfs whose notifier thread is stuck in the kernel only
// happens now and then (MaildirCrashTest.SigkillDuringBurstOfMovesLosesNothing
// found it about one run in four), so this test makes the same state on
// purpose: zombie_leader_mount (tests/helpers/) mounts the demo store
// through Mount::Start, as mailfs does, and on SIGUSR1 ends its main thread
// with pthread_exit while the FUSE threads go on. Its main thread is then a
// zombie while another thread lives and holds /dev/fuse, as in the real
// hang. Without a guardian that mount goes on answering for good; with it,
// it must answer ENOTCONN within a few seconds.
//
// Also checked: the guardian holds no descriptor but /dev/null (a FUSE
// descriptor would keep the connection alive by itself), survives SIGINT,
// SIGTERM and SIGHUP, and exits once the process it guards is gone. The
// helper, its guardian and the mount are undone by a guard, also when the
// test fails.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// The state letter of /proc/PID/stat ("1234 (name) Z 1 ..."), and its
// parent; state 0 when the process is gone.
struct ProcStat {
  char state = 0;
  pid_t parent = 0;
};
ProcStat ReadProcStat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  ProcStat stat;
  if (paren == std::string::npos) return stat;
  std::istringstream fields(text.substr(paren + 1));
  fields >> stat.state >> stat.parent;
  return stat;
}

// The processes whose parent is `pid`.
std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> children;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t child = static_cast<pid_t>(std::stol(name));
    if (ReadProcStat(child).parent == pid) children.push_back(child);
  }
  return children;
}

// The open descriptors of `pid` and what they point to.
std::map<std::string, std::string> Descriptors(pid_t pid) {
  std::map<std::string, std::string> fds;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code link_ec;
    fds[entry.path().filename().string()] = fs::read_symlink(entry.path(), link_ec).string();
  }
  return fds;
}

// Kills the helper's process group (the helper and its guardian) and
// reaps the helper, then detaches the mount.
class HelperGuard {
 public:
  HelperGuard(pid_t pid, std::string mnt) : pid_(pid), mnt_(std::move(mnt)) {}
  ~HelperGuard() {
    Kill();
    for (int i = 0; i < 3 && IsMounted(mnt_); ++i) {
      if (::umount2(mnt_.c_str(), MNT_DETACH) != 0) {
        RunShell("fusermount3 -u -z " + ShellQuote(mnt_), "", seconds(10));
      }
    }
  }
  HelperGuard(const HelperGuard&) = delete;
  HelperGuard& operator=(const HelperGuard&) = delete;

  // SIGKILL to the helper's group and the helper reaped. Only while it is
  // unreaped: after that its pid, and so the group id, may be reused.
  void Kill() {
    if (reaped_) return;
    ::kill(-pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  // SIGKILL to the helper alone, then reaped.
  void KillHelperOnly() {
    if (reaped_) return;
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  bool Running() {
    if (reaped_) return false;
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) reaped_ = true;
    return !reaped_;
  }

 private:
  pid_t pid_;
  std::string mnt_;
  bool reaped_ = false;
};

TEST(GuardianTest, AbortsTheConnectionWhenTheServingProcessIsLeftWithAZombieMainThread) {
  ASSERT_EQ(::access("/dev/fuse", R_OK | W_OK), 0)
      << "/dev/fuse is not usable (" << std::strerror(errno) << "): this test needs FUSE";
  TempDir base;
  ASSERT_FALSE(base.path().empty());
  const std::string mnt = base.Path("mnt");
  ASSERT_SYSCALL_OK(::mkdir(mnt.c_str(), 0755));
  const std::string log = base.Path("helper.log");
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(log_fd, 0) << std::strerror(errno);
  std::string error;
  pid_t pid = SpawnProcess({ZOMBIE_LEADER_MOUNT_BINARY, mnt},
                           {.stdout_fd = log_fd, .stderr_fd = log_fd}, &error);
  ::close(log_fd);
  ASSERT_GT(pid, 0) << error;
  HelperGuard helper(pid, mnt);
  auto helper_log = [&] {
    std::ifstream in(log);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };

  ASSERT_TRUE(Eventually([&] { return IsMounted(mnt) || !helper.Running(); }, seconds(20)));
  ASSERT_TRUE(IsMounted(mnt)) << "the helper did not mount; its output:\n" << helper_log();
  // The stat runs in a child: a hung mount hangs whoever stats it.
  CommandResult serving = RunShell("stat -c %F " + ShellQuote(mnt + "/INBOX"), "", seconds(10));
  ASSERT_TRUE(serving.ok()) << serving.Describe();
  EXPECT_EQ(serving.out, "directory\n");

  // The guardian: the helper's only child, holding /dev/null only.
  std::vector<pid_t> children = ChildrenOf(pid);
  ASSERT_EQ(children.size(), 1u) << "the mount should have forked one guardian";
  const pid_t guardian = children[0];
  const std::map<std::string, std::string> only_null = {
      {"0", "/dev/null"}, {"1", "/dev/null"}, {"2", "/dev/null"}};
  std::map<std::string, std::string> fds;
  EXPECT_TRUE(Eventually([&] { return (fds = Descriptors(guardian)) == only_null; }))
      << "the guardian's descriptors: " << ::testing::PrintToString(fds);
  // Ctrl-C and its like reach the whole process group; the guardian stays.
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ASSERT_SYSCALL_OK(::kill(guardian, sig));
  std::this_thread::sleep_for(milliseconds(300));
  const char state = ReadProcStat(guardian).state;
  EXPECT_TRUE(state != 0 && state != 'Z') << "the guardian did not survive SIGINT/TERM/HUP";

  // The helper's main thread ends; the FUSE threads go on.
  ASSERT_SYSCALL_OK(::kill(pid, SIGUSR1));
  ASSERT_TRUE(Eventually([&] { return ReadProcStat(pid).state == 'Z'; }))
      << "the helper's main thread did not end";
  const auto zombie_since = Clock::now();

  // The guardian polls every 250 ms; a few seconds is plenty. Each stat
  // asks for a new name: the kernel answers for a name (or the root) it
  // knows from its cache, without asking the connection.
  std::string last;
  int probe = 0;
  EXPECT_TRUE(Eventually(
      [&] {
        const std::string name = mnt + "/probe-" + std::to_string(++probe);
        CommandResult r = RunShell("stat " + ShellQuote(name), "", seconds(5));
        last = r.Describe();
        return r.exit_code == 1 &&
               r.err.find("Transport endpoint is not connected") != std::string::npos;
      },
      seconds(5)))
      << "the mount still answers (or hangs) 5 s after the serving process's main thread "
         "became a zombie; the last stat: "
      << last;
  std::printf("[ guardian ] connection aborted %lld ms after the main thread ended\n",
              static_cast<long long>(
                  std::chrono::duration_cast<milliseconds>(Clock::now() - zombie_since).count()));

  // Once the process it guards is gone, the guardian exits (it may stay a
  // zombie of whoever inherited it).
  helper.KillHelperOnly();
  EXPECT_TRUE(Eventually([&] {
    char state = ReadProcStat(guardian).state;
    return state == 0 || state == 'Z';
  })) << "the guardian still runs after the process it guards is gone";
}

}  // namespace
}  // namespace mailfs::test
