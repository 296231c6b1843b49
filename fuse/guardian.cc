#include "fuse/guardian.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace mailfs {
namespace {

constexpr const char* kFusectlDir = "/sys/fs/fuse/connections";
constexpr long kPollNanoseconds = 250'000'000;

// Everything the guardian needs, made before fork: the child of a process
// that may have threads must not allocate (another thread may have held
// the allocator's lock at the fork), so it only reads these.
struct Plan {
  pid_t daemon = 0;
  std::string stat_path;   // "/proc/1234/stat"
  std::string abort_path;  // "/sys/fs/fuse/connections/57/abort"
  // The device, root and mount point fields of the mount's line in
  // /proc/self/mountinfo, with the spaces around them:
  //   36 35 0:57 / /tmp/m rw,nosuid,nodev,relatime - fuse.mailfs mailfs rw,...
  // gives " 0:57 / /tmp/m ". No other field of a line holds a space, so
  // this matches that line and no other.
  std::string mount_fields;
  std::vector<char> buffer;  // for reading mountinfo; longer than mount_fields
};

// The state letter of /proc/PID/stat ("1234 (mailfs) Z 1 1234 ..."): R, S,
// D, Z and so on; 0 when it cannot be read. The command name may hold ')'
// and spaces, but no later field holds ')', so the state follows the last.
char ProcessState(const char* stat_path) {
  char text[512];
  int fd = ::open(stat_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = ::read(fd, text, sizeof text);
  ::close(fd);
  std::string_view stat(text, n > 0 ? static_cast<size_t>(n) : 0);
  size_t paren = stat.rfind(')');
  if (paren == std::string_view::npos || paren + 2 >= stat.size()) return 0;
  return stat[paren + 2];
}

// Whether the file at `path` holds `needle`, read piece by piece through
// `buffer` (longer than `needle`), whatever its size.
bool FileContains(const char* path, std::string_view needle, std::vector<char>& buffer) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool found = false;
  size_t kept = 0;  // the end of the last piece, where the needle may begin
  while (!found) {
    ssize_t n = ::read(fd, buffer.data() + kept, buffer.size() - kept);
    if (n <= 0) break;
    size_t filled = kept + static_cast<size_t>(n);
    found = std::string_view(buffer.data(), filled).find(needle) != std::string_view::npos;
    kept = std::min(filled, needle.size() - 1);
    std::memmove(buffer.data(), buffer.data() + filled - kept, kept);
  }
  ::close(fd);
  return found;
}

[[noreturn]] void RunGuardian(Plan& plan) {
  // Its command line is the daemon's; its name in ps and top says what it is.
  ::prctl(PR_SET_NAME, "mailfs-guardian");
  int null = ::open("/dev/null", O_RDWR);
  if (null >= 0) {
    for (int fd = 0; fd <= 2; ++fd) ::dup2(null, fd);
  }
  ::close_range(3, ~0U, 0);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &ignore, nullptr);

  bool aborted = false;
  const timespec pause{0, kPollNanoseconds};
  while (::getppid() == plan.daemon) {
    if (!aborted && ProcessState(plan.stat_path.c_str()) == 'Z' &&
        FileContains("/proc/self/mountinfo", plan.mount_fields, plan.buffer)) {
      int fd = ::open(plan.abort_path.c_str(), O_WRONLY | O_CLOEXEC);
      aborted = fd >= 0 && ::write(fd, "1", 1) == 1;
      if (fd >= 0) ::close(fd);
    }
    ::nanosleep(&pause, nullptr);
  }
  ::_exit(0);
}

}  // namespace

std::string FusectlAbortFile(dev_t device) {
  std::string connection = fmt::format("{}/{}", kFusectlDir, minor(device));
  std::error_code ec;
  if (!std::filesystem::exists(connection, ec)) {
    ::mount("fusectl", kFusectlDir, "fusectl", 0, nullptr);
  }
  return connection + "/abort";
}

pid_t StartGuardian(dev_t device, std::string_view mountinfo_point) {
  Plan plan;
  plan.daemon = ::getpid();
  plan.stat_path = fmt::format("/proc/{}/stat", plan.daemon);
  plan.abort_path = FusectlAbortFile(device);
  plan.mount_fields = fmt::format(" {}:{} / {} ", major(device), minor(device), mountinfo_point);
  plan.buffer.resize(plan.mount_fields.size() + 16384);
  pid_t pid = ::fork();
  if (pid == 0) RunGuardian(plan);
  return pid;
}

void StopGuardian(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

std::string MountinfoEscape(std::string_view path) {
  std::string escaped;
  for (char c : path) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\\') {
      escaped += fmt::format("\\{:03o}", static_cast<unsigned char>(c));
    } else {
      escaped += c;
    }
  }
  return escaped;
}

}  // namespace mailfs
