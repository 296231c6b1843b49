#include "fuse/mount.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "fuse/driver.h"
#include "fuse/guardian.h"
#include "fuse/lowlevel.h"

namespace mailfs {
namespace {

// How long the notifier waits on the change feed before it looks at its
// own queue again (invalidations the driver queued itself).
constexpr auto kNotifierPoll = std::chrono::milliseconds(100);
// How long the notifier lets changes gather after the first: a burst (mv
// or setfattr of many files, one request each) posts a change per message,
// and in one batch each directory's invalidation is sent once, and the
// notifier thread wakes once, not once per message.
constexpr auto kNotifierGather = std::chrono::milliseconds(2);
// How long an unmount waits for the kernel to end the connection before it
// aborts it (a descriptor still open on the mount keeps it alive).
constexpr auto kUnmountGrace = std::chrono::seconds(10);

// The device of the mount at `point`, from /proc/self/mountinfo
// ("36 35 0:39 / /tmp/m rw ... - fuse.mailfs mailfs rw,..."); 0 if absent.
// `point` is the canonical path spelled as mountinfo spells it
// (MountinfoEscape). It must be resolved before mounting: resolving it
// afterwards would stat the mount, which waits for the INIT the loop has
// not answered.
dev_t MountDevice(const std::string& point) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  dev_t found = 0;
  while (std::getline(mountinfo, line)) {
    unsigned id, parent, major_number, minor_number;
    char field[4096];
    if (std::sscanf(line.c_str(), "%u %u %u:%u %*s %4095s", &id, &parent, &major_number,
                    &minor_number, field) == 5 &&
        point == field) {
      found = makedev(major_number, minor_number);  // the last one is on top
    }
  }
  return found;
}

// True when `dir` can be a spool: a directory where an unnamed file
// (O_TMPFILE) can be made.
bool CanHoldUnnamedFiles(const std::string& dir) {
  if (dir.empty()) return false;
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    spdlog::info("the store's spool directory {} cannot be used ({}); spooling under /var/tmp", dir,
                 std::strerror(errno));
    return false;
  }
  ::close(fd);
  return true;
}

class MountImpl final : public Mount {
 public:
  ~MountImpl() override { Unmount(); }

  static Result<std::unique_ptr<Mount>> Start(std::shared_ptr<MailboxSet> store,
                                              const std::string& mountpoint,
                                              const MountOptions& options);
  void Unmount() override;
  int Wait() override;
  const std::string& mountpoint() const override { return mountpoint_; }

 private:
  void RunNotifier(uint64_t cursor);
  void AbortConnection();
  void Cleanup();

  std::shared_ptr<MailboxSet> store_;
  std::string mountpoint_;
  std::string spool_dir_;
  bool own_spool_dir_ = false;
  bool signal_handlers_ = false;
  dev_t device_ = 0;
  pid_t guardian_ = -1;  // fuse/guardian.h
  std::unique_ptr<Driver> driver_;
  fuse_session* session_ = nullptr;
  fuse_loop_config* loop_config_ = nullptr;
  std::thread loop_thread_;
  std::thread notifier_thread_;
  std::atomic<bool> stop_notifier_{false};

  std::mutex mu_;
  std::condition_variable loop_done_cv_;
  bool loop_done_ = false;   // GUARDED_BY(mu_)
  int loop_result_ = 0;      // GUARDED_BY(mu_)
  bool cleaned_up_ = false;  // GUARDED_BY(mu_)
};

Result<std::unique_ptr<Mount>> MountImpl::Start(std::shared_ptr<MailboxSet> store,
                                                const std::string& mountpoint,
                                                const MountOptions& options) {
  auto mount = std::make_unique<MountImpl>();
  mount->store_ = std::move(store);
  mount->mountpoint_ = mountpoint;

  mount->spool_dir_ = options.spool_dir;
  if (mount->spool_dir_.empty() && CanHoldUnnamedFiles(mount->store_->SpoolDirectory())) {
    mount->spool_dir_ = mount->store_->SpoolDirectory();
  }
  if (mount->spool_dir_.empty()) {
    std::string tmpl = "/var/tmp/mailfs-spool-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return Status::Io(
          fmt::format("cannot create a spool directory under /var/tmp: {}", std::strerror(errno)));
    }
    mount->spool_dir_ = tmpl;
    mount->own_spool_dir_ = true;
  } else {
    struct stat st {};
    if (::stat(mount->spool_dir_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Status::InvalidArgument(
          fmt::format("spool directory {} does not exist", mount->spool_dir_));
    }
  }

  DriverOptions driver_options;
  driver_options.spool_dir = mount->spool_dir_;
  driver_options.entry_timeout = options.entry_timeout_seconds;
  driver_options.attr_timeout = options.attr_timeout_seconds;
  driver_options.negative_timeout = options.negative_timeout_seconds;
  mount->driver_ = std::make_unique<Driver>(mount->store_, driver_options);

  std::vector<std::string> argv_strings = {"mailfs", "-o", "fsname=mailfs,subtype=mailfs"};
  if (options.debug) argv_strings.push_back("-d");
  argv_strings.insert(argv_strings.end(), options.fuse_args.begin(), options.fuse_args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  const fuse_lowlevel_ops& ops = DriverOperations();
  mount->session_ = fuse_session_new(&args, &ops, sizeof ops, mount->driver_.get());
  fuse_opt_free_args(&args);
  if (mount->session_ == nullptr) {
    return Status::InvalidArgument("FUSE rejected the mount options");
  }
  std::error_code ec;
  std::string mountinfo_point =
      MountinfoEscape(std::filesystem::weakly_canonical(mountpoint, ec).string());
  if (fuse_session_mount(mount->session_, mountpoint.c_str()) != 0) {
    fuse_session_destroy(mount->session_);
    mount->session_ = nullptr;
    return Status::Io(fmt::format("cannot mount on {} (is /dev/fuse available?)", mountpoint));
  }
  if (options.daemonize && fuse_daemonize(0) != 0) {
    fuse_session_unmount(mount->session_);
    fuse_session_destroy(mount->session_);
    mount->session_ = nullptr;
    return Status::Io("cannot detach from the terminal");
  }
  // The fusectl connection number is the mount's device minor.
  mount->device_ = MountDevice(mountinfo_point);
  // The guardian (fuse/guardian.h) is there before the first request, and
  // forked before libfuse's signal handlers are installed.
  if (mount->device_ != 0) {
    mount->guardian_ = StartGuardian(mount->device_, mountinfo_point);
    if (mount->guardian_ < 0) {
      spdlog::warn("cannot start the guardian of {}: {}", mountpoint, std::strerror(errno));
    }
  } else {
    spdlog::warn("{} is not in /proc/self/mountinfo: no guardian watches the mount", mountpoint);
  }
  if (options.handle_signals && fuse_set_signal_handlers(mount->session_) == 0) {
    mount->signal_handlers_ = true;
  }

  mount->loop_config_ = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(mount->loop_config_, std::max(1u, options.max_threads));
  fuse_loop_cfg_set_clone_fd(mount->loop_config_, 0);
  MountImpl* self = mount.get();
  bool single_threaded = options.max_threads <= 1;
  // A signal must reach a thread of the session loop: only its read() of
  // /dev/fuse returns EINTR and sees the exit flag libfuse's handler set.
  // So the caller (and the notifier, started below) block the signals and
  // the loop thread, whose workers inherit its mask, unblocks them.
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, sig);
  if (mount->signal_handlers_) pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  self->loop_thread_ = std::thread([self, single_threaded, signals] {
    pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
    int result = single_threaded ? fuse_session_loop(self->session_)
                                 : fuse_session_loop_mt(self->session_, self->loop_config_);
    std::lock_guard lock(self->mu_);
    self->loop_done_ = true;
    self->loop_result_ = result;
    self->loop_done_cv_.notify_all();
  });
  // The cursor is taken before Start returns, not when the thread gets to
  // run: a change made right after mounting must not be skipped.
  uint64_t cursor = self->store_->ChangeCursor();
  self->notifier_thread_ = std::thread([self, cursor] { self->RunNotifier(cursor); });
  return std::unique_ptr<Mount>(std::move(mount));
}

// Sends the kernel the invalidations the change feed calls for. Runs on its
// own thread: libfuse forbids sending them from inside a request handler,
// and the driver's lock is not held while they are sent.
void MountImpl::RunNotifier(uint64_t cursor) {
  while (!stop_notifier_.load()) {
    ChangeBatch batch = store_->WaitForChanges(&cursor, kNotifierPoll);
    if (stop_notifier_.load()) break;
    if (!batch.changes.empty() && !batch.stopped) {
      std::this_thread::sleep_for(kNotifierGather);
      ChangeBatch more = store_->WaitForChanges(&cursor, std::chrono::milliseconds(0));
      batch.changes.insert(batch.changes.end(), std::make_move_iterator(more.changes.begin()),
                           std::make_move_iterator(more.changes.end()));
      batch.overflowed = batch.overflowed || more.overflowed;
      batch.stopped = more.stopped;
    }
    for (const Invalidation& inv : driver_->TakeInvalidations(batch)) {
      int err = 0;
      if (inv.kind == Invalidation::Kind::kInode) {
        err = fuse_lowlevel_notify_inval_inode(session_, inv.ino, 0, 0);
      } else {
        err =
            fuse_lowlevel_notify_inval_entry(session_, inv.ino, inv.name.c_str(), inv.name.size());
      }
      // ENOENT: the kernel did not have it cached, which is fine.
      if (err != 0 && err != -ENOENT && !stop_notifier_.load()) {
        spdlog::debug("invalidation of inode {} '{}' failed: {}", inv.ino, inv.name,
                      std::strerror(-err));
      }
    }
    if (batch.stopped) break;
  }
}

// Ends the connection through fusectl when a lazy unmount leaves it alive.
void MountImpl::AbortConnection() {
  if (device_ == 0) return;
  std::ofstream abort_file(FusectlAbortFile(device_));
  abort_file << "1";
}

void MountImpl::Unmount() {
  {
    std::lock_guard lock(mu_);
    if (cleaned_up_ || session_ == nullptr) return;
  }
  fuse_session_exit(session_);
  // A lazy unmount ends the connection once nothing uses the mount, which
  // wakes the workers blocked reading /dev/fuse.
  if (::umount2(mountpoint_.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    spdlog::warn("unmounting {}: {}", mountpoint_, std::strerror(errno));
  }
  {
    std::unique_lock lock(mu_);
    if (!loop_done_cv_.wait_for(lock, kUnmountGrace, [this] { return loop_done_; })) {
      lock.unlock();
      spdlog::warn("{} still busy after unmount; aborting the connection", mountpoint_);
      AbortConnection();
    }
  }
  Wait();
}

int MountImpl::Wait() {
  if (loop_thread_.joinable()) loop_thread_.join();
  Cleanup();
  std::lock_guard lock(mu_);
  return loop_result_ < 0 ? 1 : 0;
}

void MountImpl::Cleanup() {
  {
    std::lock_guard lock(mu_);
    if (cleaned_up_ || session_ == nullptr) return;
    cleaned_up_ = true;
  }
  stop_notifier_.store(true);
  if (notifier_thread_.joinable()) notifier_thread_.join();
  if (signal_handlers_) fuse_remove_signal_handlers(session_);
  fuse_session_unmount(session_);
  fuse_session_destroy(session_);
  session_ = nullptr;
  // Unmounted: nothing is left for the guardian to guard.
  StopGuardian(guardian_);
  guardian_ = -1;
  if (loop_config_ != nullptr) fuse_loop_cfg_destroy(loop_config_);
  loop_config_ = nullptr;
  driver_.reset();
  // A store with relaxed durability makes everything durable now.
  if (Status synced = store_->Sync(); !synced.ok()) {
    spdlog::error("{}: changes may not be durable: {}", mountpoint_, synced.ToString());
  }
  if (own_spool_dir_) {
    std::error_code ec;
    std::filesystem::remove_all(spool_dir_, ec);
  }
}

}  // namespace

Result<std::unique_ptr<Mount>> Mount::Start(std::shared_ptr<MailboxSet> store,
                                            const std::string& mountpoint,
                                            const MountOptions& options) {
  return MountImpl::Start(std::move(store), mountpoint, options);
}

}  // namespace mailfs
