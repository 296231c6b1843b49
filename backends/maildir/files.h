// File operations the Maildir backend builds on: errno to Status, whole-file
// reads, crash-safe replacement of a small file (write a temporary in the
// same directory, fsync, rename), and Dovecot's dotlock.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "src/status.h"

namespace mailfs::maildir {

// The Status for a failed system call: ENOENT is kNotFound, ENOSPC and
// EDQUOT kNoSpace, EACCES/EPERM/EROFS kReadOnly, anything else kIo. The
// detail names the operation, the path and strerror.
Status ErrnoStatus(int error, std::string_view operation, std::string_view path,
                   ErrorScope scope = ErrorScope::kStore);

// Who new files and directories belong to. mailfs usually runs as root
// (FUSE mounts), while the store belongs to its user, whom Dovecot runs as:
// files mailfs creates must stay readable and writable by that user, so
// when running as root they are given the owner of the store's root, and
// their mode follows the directory's, as Dovecot does.
struct FileOwner {
  bool chown = false;  // running as root and the root is someone else's
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t file_mode = 0600;  // directory mode & 0666
  mode_t dir_mode = 0700;

  static FileOwner Of(const struct stat& root);
  // Applies the owner to a new file or directory; failures only logged:
  // the data is safe either way.
  void Apply(int fd, std::string_view path_for_log) const;
  void ApplyAt(int dir_fd, const char* name, std::string_view path_for_log) const;
};

// Creates whichever of cur/, new/ and tmp/ `dir` lacks, owned like the
// store (Dovecot creates what is missing on first access too).
Status MakeMaildirSubdirectories(const std::string& dir, const FileOwner& owner);

// True when a readdir entry is a directory itself (a symlink to one is not).
bool IsDirectoryEntry(DIR* dir, const struct dirent* entry);

// The whole file. kNotFound if it does not exist.
Result<std::string> ReadWholeFile(const std::string& path);
// The file from `offset` on, and the size fstat gave (so a caller can tell
// a replaced file by its inode first).
struct FileTail {
  std::string bytes;
  struct stat st {};
};
Result<FileTail> ReadFileFrom(const std::string& path, uint64_t offset);

// Replaces `path` with `bytes`: writes `temp_path` (in the same directory),
// fsyncs it when `fsync`, renames it over `path` and fsyncs the directory.
// On failure `path` is unchanged and the temporary removed.
Status ReplaceFile(const std::string& path, const std::string& temp_path, std::string_view bytes,
                   bool fsync, const FileOwner& owner);

// fsync of a directory, so that a rename or link in it survives a crash.
Status SyncDirectory(const std::string& path);

// One file or directory for SyncAll: its path (for errors, and to open it),
// and whether fdatasync is enough (the bytes and the size, not the times).
struct SyncTarget {
  std::string path;
  bool data_only = false;
  int fd = -1;  // when open already (not closed by SyncAll); else path is opened
};

// fsyncs every target at once, each on a thread of its own (the last on
// the caller's), and returns the first failure once all are done. A
// journaling filesystem commits syncs that arrive together in one journal
// commit, where one after the other each pays a commit. Without a journal
// (ext4 on the benchmark machine, see BENCHMARKS.md) each sync still pays
// its own cache flush: together they cost no less there, and no more.
Status SyncAll(std::span<const SyncTarget> targets);

// This machine's name as Dovecot writes it into lock files.
const std::string& HostName();

// The file a dotlock is link()ed from, kept between locks: without one,
// Acquire creates, writes and removes a temporary file for every lock (a
// new inode and a handful of directory changes each time). It holds
// "<pid>:<hostname>" and is named `.mailfs-lock.<host>.<pid>.<n>`, a name
// no other source shares, in a directory its owner chooses (a folder keeps
// it in its tmp/, where Dovecot removes files unchanged for 36 h, should
// this process die without removing it). Made on first use and again
// whenever it is found missing; removed by the destructor. Not
// synchronized: its owner uses it under its own lock.
class DotlockSource {
 public:
  DotlockSource() = default;
  ~DotlockSource() { Remove(); }
  DotlockSource(const DotlockSource&) = delete;
  DotlockSource& operator=(const DotlockSource&) = delete;

  // Where the file is to be; another directory forgets (and removes) the
  // file in the old one.
  void SetDirectory(const std::string& dir);
  const std::string& path() const { return path_; }
  void Remove();

  // Removes from `dir` what processes of this host that are gone left
  // there (killed before their destructor ran): sources, and temporary
  // files of Acquire, named ".mailfs-lock.<host>.<pid>.<n>". Returns how
  // many it removed.
  static size_t RemoveDeadOnes(const std::string& dir);

 private:
  friend class Dotlock;
  // Writes the file if it was not made yet; its identity becomes the lock's.
  Status Make(std::string_view content);

  std::string name_;
  std::string path_;
  bool made_ = false;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// Dovecot's dotlock (MAILDIR.md section 3): `<file>.lock`, created with
// O_CREAT|O_EXCL, holding "<pid>:<hostname>". While another process holds
// it, Acquire waits; it overrides a lock whose pid is on this host and
// gone once the lock is over 2 s old, and any lock that neither it nor
// `<file>` changed for `stale_after` (Dovecot: 120 s). A live local pid's
// lock is never overridden. Releasing removes the lock only if it is still
// the one this object created.
class Dotlock {
 public:
  Dotlock() = default;
  ~Dotlock();
  Dotlock(Dotlock&& other) noexcept;
  Dotlock& operator=(Dotlock&& other) noexcept;
  Dotlock(const Dotlock&) = delete;
  Dotlock& operator=(const Dotlock&) = delete;

  // Locks `file` (e.g. ".../dovecot-uidlist"). kUnavailable after `timeout`
  // (zero: one attempt); kNotFound if the directory is gone; kReadOnly if
  // the directory cannot be written. With a `source`, the lock is a link to
  // it (made if missing) instead of to a temporary file of its own; a
  // source that cannot be used (another filesystem) is simply not used.
  static Result<Dotlock> Acquire(const std::string& file, std::chrono::milliseconds timeout,
                                 std::chrono::seconds stale_after = std::chrono::seconds(120),
                                 DotlockSource* source = nullptr);

  bool held() const { return !lock_path_.empty(); }
  void Release();
  // The locked file's directory was renamed: the lock is now `file`.lock.
  void MovedTo(const std::string& file) {
    if (held()) lock_path_ = file + ".lock";
  }

 private:
  std::string lock_path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace mailfs::maildir
