#include "backends/maildir/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

namespace mailfs::maildir {

Status ErrnoStatus(int error, std::string_view operation, std::string_view path, ErrorScope scope) {
  ErrorCode code = ErrorCode::kIo;
  switch (error) {
    case ENOENT:
      code = ErrorCode::kNotFound;
      break;
    case ENOSPC:
    case EDQUOT:
      code = ErrorCode::kNoSpace;
      break;
    case EACCES:
    case EPERM:
    case EROFS:
      code = ErrorCode::kReadOnly;
      break;
    default:
      break;
  }
  return Status::Error(code, scope, fmt::format("{} {}: {}", operation, path, strerror(error)));
}

FileOwner FileOwner::Of(const struct stat& root) {
  FileOwner owner;
  owner.chown = geteuid() == 0 && (root.st_uid != 0 || root.st_gid != 0);
  owner.uid = root.st_uid;
  owner.gid = root.st_gid;
  owner.dir_mode = (root.st_mode & 07777) | 0700;
  owner.file_mode = (root.st_mode & 0666) | 0600;
  return owner;
}

void FileOwner::Apply(int fd, std::string_view path_for_log) const {
  if (chown && fchown(fd, uid, gid) != 0) {
    spdlog::warn("maildir: cannot give {} to {}:{}: {}", path_for_log, uid, gid, strerror(errno));
  }
}

void FileOwner::ApplyAt(int dir_fd, const char* name, std::string_view path_for_log) const {
  if (chown && fchownat(dir_fd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
    spdlog::warn("maildir: cannot give {} to {}:{}: {}", path_for_log, uid, gid, strerror(errno));
  }
}

namespace {

// Reads fd from its current position to the end.
Status ReadRest(int fd, const std::string& path, std::string* out) {
  char buffer[65536];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read", path);
    }
    if (n == 0) return Status::Ok();
    out->append(buffer, static_cast<size_t>(n));
  }
}

Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write", path);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Status MakeMaildirSubdirectories(const std::string& dir, const FileOwner& owner) {
  for (const char* sub : {"/cur", "/new", "/tmp"}) {
    std::string path = dir + sub;
    if (mkdir(path.c_str(), owner.dir_mode) == 0) {
      owner.ApplyAt(AT_FDCWD, path.c_str(), path);
    } else if (errno != EEXIST) {
      return ErrnoStatus(errno, "mkdir", path, ErrorScope::kMailbox);
    }
  }
  return Status::Ok();
}

bool IsDirectoryEntry(DIR* dir, const struct dirent* entry) {
  if (entry->d_type != DT_UNKNOWN) return entry->d_type == DT_DIR;
  struct stat st {};
  return fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

Result<std::string> ReadWholeFile(const std::string& path) {
  auto tail = ReadFileFrom(path, 0);
  if (!tail.ok()) return tail.status();
  return std::move(tail->bytes);
}

Result<FileTail> ReadFileFrom(const std::string& path, uint64_t offset) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ELOOP) {
    // Never followed: a symlink where a store file belongs is bad data.
    return Status::Error(ErrorCode::kCorrupt, ErrorScope::kStore,
                         fmt::format("{} is a symbolic link", path));
  }
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  FileTail tail;
  Status status;
  if (fstat(fd, &tail.st) != 0) {
    status = ErrnoStatus(errno, "stat", path);
  } else if (!S_ISREG(tail.st.st_mode)) {
    status = Status::Error(ErrorCode::kCorrupt, ErrorScope::kStore,
                           fmt::format("{} is not a regular file", path));
  } else if (offset > static_cast<uint64_t>(tail.st.st_size)) {
    // Shorter than what was read before: the caller rereads it whole.
    tail.bytes.clear();
  } else if (lseek(fd, static_cast<off_t>(offset), SEEK_SET) < 0) {
    status = ErrnoStatus(errno, "seek", path);
  } else {
    tail.bytes.reserve(static_cast<size_t>(tail.st.st_size - static_cast<off_t>(offset)));
    status = ReadRest(fd, path, &tail.bytes);
  }
  close(fd);
  if (!status.ok()) return status;
  return tail;
}

Status ReplaceFile(const std::string& path, const std::string& temp_path, std::string_view bytes,
                   bool fsync, const FileOwner& owner) {
  int fd = open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                owner.file_mode);
  if (fd < 0) return ErrnoStatus(errno, "create", temp_path);
  owner.Apply(fd, temp_path);
  Status status = WriteAll(fd, bytes, temp_path);
  if (status.ok() && fsync && ::fsync(fd) != 0) status = ErrnoStatus(errno, "fsync", temp_path);
  if (close(fd) != 0 && status.ok()) status = ErrnoStatus(errno, "close", temp_path);
  if (status.ok() && rename(temp_path.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus(errno, "rename", temp_path);
  }
  if (!status.ok()) {
    unlink(temp_path.c_str());
    return status;
  }
  return fsync ? SyncDirectory(DirectoryOf(path)) : Status::Ok();
}

Status SyncDirectory(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  Status status;
  if (::fsync(fd) != 0) status = ErrnoStatus(errno, "fsync", path);
  close(fd);
  return status;
}

namespace {

Status SyncTargetNow(const SyncTarget& target) {
  int fd = target.fd;
  if (fd < 0) {
    fd = open(target.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return ErrnoStatus(errno, "open", target.path);
  }
  Status status;
  if ((target.data_only ? ::fdatasync(fd) : ::fsync(fd)) != 0) {
    status = ErrnoStatus(errno, target.data_only ? "fdatasync" : "fsync", target.path);
  }
  if (target.fd < 0) close(fd);
  return status;
}

}  // namespace

Status SyncAll(std::span<const SyncTarget> targets) {
  if (targets.empty()) return Status::Ok();
  std::vector<Status> results(targets.size());
  std::vector<std::thread> helpers;
  helpers.reserve(targets.size() - 1);
  for (size_t i = 0; i + 1 < targets.size(); ++i) {
    try {
      helpers.emplace_back([&results, &targets, i] { results[i] = SyncTargetNow(targets[i]); });
    } catch (const std::system_error&) {
      results[i] = SyncTargetNow(targets[i]);  // no thread to be had: one after the other
    }
  }
  results.back() = SyncTargetNow(targets.back());
  for (std::thread& helper : helpers) helper.join();
  for (Status& result : results) {
    if (!result.ok()) return result;
  }
  return Status::Ok();
}

const std::string& HostName() {
  static const std::string name = [] {
    char buffer[256] = {};
    if (gethostname(buffer, sizeof buffer - 1) != 0 || buffer[0] == '\0')
      return std::string("localhost");
    return std::string(buffer);
  }();
  return name;
}

// --- Dotlock ------------------------------------------------------------------

namespace {

// What Acquire watches to decide that a foreign lock is stale: the lock's
// and the locked file's identity and times.
struct LockObservation {
  bool lock_exists = false;
  dev_t lock_dev = 0;
  ino_t lock_ino = 0;
  struct timespec lock_ctime {};
  off_t lock_size = 0;
  ino_t file_ino = 0;
  struct timespec file_mtime {};
  struct timespec file_ctime {};
  off_t file_size = 0;

  bool operator==(const LockObservation& o) const {
    auto same = [](const timespec& a, const timespec& b) {
      return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
    };
    return lock_exists == o.lock_exists && lock_dev == o.lock_dev && lock_ino == o.lock_ino &&
           same(lock_ctime, o.lock_ctime) && lock_size == o.lock_size && file_ino == o.file_ino &&
           same(file_mtime, o.file_mtime) && same(file_ctime, o.file_ctime) &&
           file_size == o.file_size;
  }
};

LockObservation Observe(const std::string& lock_path, const std::string& file) {
  LockObservation seen;
  struct stat st {};
  if (lstat(lock_path.c_str(), &st) == 0) {
    seen.lock_exists = true;
    seen.lock_dev = st.st_dev;
    seen.lock_ino = st.st_ino;
    seen.lock_ctime = st.st_ctim;
    seen.lock_size = st.st_size;
  }
  if (stat(file.c_str(), &st) == 0) {
    seen.file_ino = st.st_ino;
    seen.file_mtime = st.st_mtim;
    seen.file_ctime = st.st_ctim;
    seen.file_size = st.st_size;
  }
  return seen;
}

// True when the lock names a process of this host that no longer exists
// and has been there for over 2 s (Dovecot's rule: a pid can be reused, and
// a lock just created may not have its content yet).
bool HeldByDeadLocalProcess(const std::string& lock_path) {
  auto content = ReadWholeFile(lock_path);
  if (!content.ok()) return false;
  size_t colon = content->find(':');
  if (colon == std::string::npos || colon == 0) return false;
  if (content->substr(colon + 1) != HostName()) return false;
  pid_t pid = 0;
  for (char c : content->substr(0, colon)) {
    if (c < '0' || c > '9' || pid > 100000000) return false;
    pid = pid * 10 + (c - '0');
  }
  if (pid <= 0 || pid == getpid()) return false;
  if (kill(pid, 0) == 0 || errno != ESRCH) return false;
  struct stat st {};
  if (lstat(lock_path.c_str(), &st) != 0) return false;
  return time(nullptr) - st.st_mtime > 2;
}

}  // namespace

Dotlock::~Dotlock() { Release(); }

Dotlock::Dotlock(Dotlock&& other) noexcept
    : lock_path_(std::move(other.lock_path_)), dev_(other.dev_), ino_(other.ino_) {
  other.lock_path_.clear();
}

Dotlock& Dotlock::operator=(Dotlock&& other) noexcept {
  if (this != &other) {
    Release();
    lock_path_ = std::move(other.lock_path_);
    dev_ = other.dev_;
    ino_ = other.ino_;
    other.lock_path_.clear();
  }
  return *this;
}

void Dotlock::Release() {
  if (lock_path_.empty()) return;
  struct stat st {};
  // Someone may have overridden a lock we held too long: leave theirs.
  if (lstat(lock_path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
    if (unlink(lock_path_.c_str()) != 0) {
      spdlog::warn("maildir: cannot remove {}: {}", lock_path_, strerror(errno));
    }
  } else {
    spdlog::warn("maildir: {} was overridden by another process while held", lock_path_);
  }
  lock_path_.clear();
}

namespace {

// Writes `content` into the file just created as `fd` at `path` and closes
// it; `st` gets its identity (how a lock is known as ours later). On
// failure the file is removed: a half-written lock must not hold anyone off.
Status FillNewLockFile(int fd, const std::string& path, std::string_view content, struct stat* st) {
  Status status = WriteAll(fd, content, path);
  if (status.ok() && fstat(fd, st) != 0) status = ErrnoStatus(errno, "stat", path);
  close(fd);
  if (!status.ok()) unlink(path.c_str());
  return status;
}

// ".mailfs-lock.<host>.": how the private files a dotlock is linked from
// begin, for this host.
std::string LockFilePrefix() {
  std::string host = HostName();
  std::replace(host.begin(), host.end(), '/', '_');
  return ".mailfs-lock." + host + ".";
}

}  // namespace

void DotlockSource::SetDirectory(const std::string& dir) {
  if (name_.empty()) {
    static std::atomic<uint64_t> sources{0};
    name_ = fmt::format("{}{}.{}", LockFilePrefix(), getpid(), ++sources);
  }
  std::string path = dir + "/" + name_;
  if (path == path_) return;
  Remove();
  path_ = std::move(path);
}

void DotlockSource::Remove() {
  if (!made_) return;
  made_ = false;
  // Only our own file: after a folder moved, the path may be the new
  // folder's, and the file went along with the old one.
  struct stat st {};
  if (lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
    unlink(path_.c_str());
  }
}

size_t DotlockSource::RemoveDeadOnes(const std::string& dir) {
  const std::string prefix = LockFilePrefix();
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return 0;
  size_t removed = 0;
  while (struct dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (!name.starts_with(prefix)) continue;
    std::string_view rest = name.substr(prefix.size());
    size_t dot = rest.find('.');
    if (dot == std::string_view::npos || dot == 0 || dot > 9) continue;
    pid_t pid = 0;
    bool digits = true;
    for (char c : rest.substr(0, dot)) {
      digits = digits && c >= '0' && c <= '9';
      pid = pid * 10 + (c - '0');
    }
    if (!digits || pid <= 0 || pid == getpid()) continue;
    if (kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to ask
    if (unlinkat(dirfd(d), e->d_name, 0) == 0) ++removed;
  }
  closedir(d);
  return removed;
}

Status DotlockSource::Make(std::string_view content) {
  if (made_) return Status::Ok();
  if (path_.empty()) return Status::InvalidArgument("dotlock source without a path");
  // A new inode every time: whatever is at the path (this process's file
  // from before a folder moved) may be linked as a lock right now.
  unlink(path_.c_str());
  int fd = open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return ErrnoStatus(errno, "lock", path_, ErrorScope::kMailbox);
  struct stat st {};
  if (Status status = FillNewLockFile(fd, path_, content, &st); !status.ok()) return status;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  made_ = true;
  return Status::Ok();
}

Result<Dotlock> Dotlock::Acquire(const std::string& file, std::chrono::milliseconds timeout,
                                 std::chrono::seconds stale_after, DotlockSource* source) {
  const std::string lock_path = file + ".lock";
  const std::string content = fmt::format("{}:{}", getpid(), HostName());
  const auto start = std::chrono::steady_clock::now();
  LockObservation last_seen;
  auto last_change = start;
  bool first = true;
  // The lock is never empty: its content is written to a private file
  // first, which is then link()ed to the lock name (Dovecot's mode with
  // dotlock_use_excl=no). Creating the lock with O_EXCL and writing after
  // would leave an empty lock if mailfs were killed in between, and an
  // empty lock holds Dovecot (and us) off for 120 s. The private file is
  // the caller's `source` if it has one, else made for this call only.
  static std::atomic<uint64_t> counter{0};
  std::string temp_path;
  struct RemoveTemp {
    const std::string& path;
    ~RemoveTemp() {
      if (!path.empty()) unlink(path.c_str());
    }
  } remove_temp{temp_path};
  auto make_temp = [&]() -> Status {
    std::string path =
        fmt::format("{}/.mailfs-lock.{}.{}.{}", DirectoryOf(file), HostName(), getpid(), ++counter);
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) return ErrnoStatus(errno, "lock", path, ErrorScope::kMailbox);
    temp_path = std::move(path);
    Status written = WriteAll(fd, content, temp_path);
    close(fd);
    return written;
  };
  bool use_source = source != nullptr && source->Make(content).ok();
  bool source_remade = false;
  if (!use_source) {
    if (Status s = make_temp(); !s.ok()) return s;
  }
  for (;;) {
    if (link((use_source ? source->path_ : temp_path).c_str(), lock_path.c_str()) == 0) {
      Dotlock lock;
      lock.lock_path_ = lock_path;
      if (use_source) {
        lock.dev_ = source->dev_;
        lock.ino_ = source->ino_;
        return lock;
      }
      struct stat st {};
      if (lstat(lock_path.c_str(), &st) != 0) {
        Status failed = ErrnoStatus(errno, "stat", lock_path);
        unlink(lock_path.c_str());
        lock.lock_path_.clear();
        return failed;
      }
      lock.dev_ = st.st_dev;
      lock.ino_ = st.st_ino;
      return lock;
    }
    if (use_source && (errno == ENOENT || errno == EXDEV)) {
      // The source is gone (Dovecot removed it from tmp/, or the folder
      // moved) or on another filesystem than the lock: make it again once,
      // else do without it.
      bool remake = errno == ENOENT && !source_remade;
      source->Remove();
      source_remade = true;
      if (remake && source->Make(content).ok()) continue;
      use_source = false;
      if (Status s = make_temp(); !s.ok()) return s;
      continue;
    }
    if (errno == EPERM || errno == EOPNOTSUPP || errno == ENOSYS) {
      // No hard links on this filesystem: O_EXCL, as Dovecot's default.
      int fd = open(lock_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (fd >= 0) {
        struct stat st {};
        if (Status s = FillNewLockFile(fd, lock_path, content, &st); !s.ok()) return s;
        Dotlock lock;
        lock.lock_path_ = lock_path;
        lock.dev_ = st.st_dev;
        lock.ino_ = st.st_ino;
        return lock;
      }
    }
    if (errno != EEXIST) return ErrnoStatus(errno, "lock", lock_path, ErrorScope::kMailbox);

    if (HeldByDeadLocalProcess(lock_path)) {
      spdlog::warn("maildir: overriding {}: its process is gone", lock_path);
      unlink(lock_path.c_str());
      continue;
    }
    auto now = std::chrono::steady_clock::now();
    LockObservation seen = Observe(lock_path, file);
    if (first || !(seen == last_seen)) {
      last_seen = seen;
      last_change = now;
      first = false;
    } else if (now - last_change >= stale_after) {
      spdlog::warn("maildir: overriding {}: unchanged for {} s", lock_path, stale_after.count());
      unlink(lock_path.c_str());
      continue;
    }
    if (now - start >= timeout) {
      auto holder = ReadWholeFile(lock_path);
      return Status::Error(
          ErrorCode::kUnavailable, ErrorScope::kMailbox,
          fmt::format("{} is held by {}", lock_path, holder.ok() ? *holder : std::string("?")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace mailfs::maildir
