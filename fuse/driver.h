// The filesystem's logic: the tree, names, attributes and every operation of
// DESIGN.md, as methods that return 0 or an errno. lowlevel.cc is the only
// caller and the only place that talks to libfuse; nothing here includes a
// FUSE header, so this layer can be driven without mounting.
//
// INODE NUMBERS
//   1                      the root
//   2 .. 2^32-1            mailbox directories and files being written,
//                          from a counter; never reused
//   key << 32 | uid        a stored message: `key` (>= 1) numbers one
//                          (mailbox id, uid validity) pair in this mount, so
//                          a message keeps its number while it exists and no
//                          number is ever given to two messages
//   A file written through the mount keeps the number it had while being
//   written after it becomes a message (message_ino_override_), so the
//   kernel's inode and st_ino do not change at close.
//
// LOCKING
//   mu_ guards every table below. It is never held across a call into the
//   store or a blocking system call on a spool file, and never held while a
//   cache invalidation is sent (the notifier thread takes the list of
//   invalidations, then releases mu_, then talks to the kernel).
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "src/changes.h"
#include "src/mailbox.h"

namespace mailfs {

using Ino = uint64_t;
inline constexpr Ino kRootIno = 1;

struct DriverOptions {
  std::string spool_dir;  // must exist
  double entry_timeout = 60.0;
  double attr_timeout = 60.0;
  // How long the kernel may remember that a name does not exist. Only
  // names that cannot be a message's canonical name get it (see Lookup).
  double negative_timeout = 1.0;
  // Answer a read-only open of a stored message "not implemented": the
  // kernel then stops sending opens for the whole mount, so a warm read
  // never reaches the daemon. Files opened after that arrive with handle
  // 0 and are served by inode (see Read and Write).
  bool no_open = true;
};

// What lookup-like operations answer: the inode and its attributes. Every
// successful answer counts one kernel reference (see Forget).
struct EntryReply {
  Ino ino = 0;
  struct stat attr {};
  double entry_timeout = 0;
  double attr_timeout = 0;
};

// A kernel cache invalidation for the notifier thread to send.
struct Invalidation {
  enum class Kind { kInode, kEntry } kind;
  Ino ino = 0;       // kInode: the inode; kEntry: the parent directory
  std::string name;  // kEntry: the name in `ino`
};

// Attribute changes of setattr; absent members are not changed.
struct SetAttrRequest {
  bool set_size = false;
  uint64_t size = 0;
  bool set_mtime = false;
  int64_t mtime = 0;  // seconds
  bool set_mode_or_owner = false;
};

class Driver {
 public:
  Driver(std::shared_ptr<MailboxSet> store, DriverOptions options);
  ~Driver();
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  // On ENOENT, `out->entry_timeout` is how long the kernel may cache the
  // name's absence (0: not at all).
  int Lookup(Ino parent, std::string_view name, EntryReply* out);
  // Drops `count` kernel references. More than were given is a bug: aborts.
  void Forget(Ino ino, uint64_t count);
  int GetAttr(Ino ino, struct stat* out, double* timeout);
  int SetAttr(Ino ino, const SetAttrRequest& request, struct stat* out, double* timeout);

  // Directory listing: OpenDir takes a snapshot that ReadDir serves by
  // offset, so a listing is consistent while entries change. `shared` is
  // false when the listing depends on the caller (files being written are
  // listed only for the process writing them), so the kernel must not keep
  // it for other processes.
  int OpenDir(Ino ino, pid_t caller, uint64_t* handle, bool* shared);
  // Calls `add` for entries from `offset` until it returns false (buffer
  // full). With `plus`, entries carry attributes and count a reference,
  // but only for those `add` accepted.
  using DirFiller =
      std::function<bool(std::string_view name, const EntryReply& entry, uint64_t next_offset)>;
  int ReadDir(Ino ino, uint64_t handle, uint64_t offset, bool plus, const DirFiller& add);
  void ReleaseDir(uint64_t handle);

  int Mkdir(Ino parent, std::string_view name, EntryReply* out);
  int Rmdir(Ino parent, std::string_view name);
  int Unlink(Ino parent, std::string_view name);
  // flags: RENAME_NOREPLACE / RENAME_EXCHANGE from renameat2.
  int Rename(Ino parent, std::string_view name, Ino new_parent, std::string_view new_name,
             unsigned flags);
  int Link(Ino ino, Ino new_parent, std::string_view new_name, EntryReply* out);

  int Create(Ino parent, std::string_view name, mode_t mode, int flags, pid_t caller,
             EntryReply* out, uint64_t* handle);
  // ENOSYS for a read-only open of a stored message when options.no_open.
  int Open(Ino ino, int flags, pid_t caller, uint64_t* handle, bool* keep_cache);
  // Reads into `buffer` (resized to what was read). Handle 0: a descriptor
  // the kernel opened without asking (no-open), served by inode.
  // `stored` is what StoredReader gave for this request, if the caller
  // asked already (it is read from without looking the inode up again).
  int Read(Ino ino, uint64_t handle, uint64_t offset, size_t size, std::string* buffer,
           const std::shared_ptr<const ContentReader>& stored = nullptr);
  // The reader of a stored message (handle, or inode for handle 0), or
  // null for a file being written: lets the caller splice from its file.
  int StoredReader(Ino ino, uint64_t handle, std::shared_ptr<const ContentReader>* reader);
  // Handle 0: only a file still being written by its creator takes the
  // bytes; a stored message refuses them with EACCES.
  int Write(Ino ino, uint64_t handle, uint64_t offset, std::string_view data, size_t* written);
  // close(2) of one descriptor: when the last writer of a new file closes,
  // the file is appended and the append's result is returned.
  // `caller` is the closing thread (a forked child's close is not the
  // writer's close).
  int Flush(uint64_t handle, pid_t caller);
  int Fsync(uint64_t handle);
  void Release(uint64_t handle);

  int GetXattr(Ino ino, std::string_view name, std::string* value);
  int ListXattr(Ino ino, std::string* names);  // NUL-separated
  // flags: XATTR_CREATE / XATTR_REPLACE.
  int SetXattr(Ino ino, std::string_view name, std::string_view value, int flags);
  int RemoveXattr(Ino ino, std::string_view name);

  int StatFs(struct statvfs* out);

  // For the notifier thread: the invalidations that `batch` calls for, plus
  // those the driver queued itself (a name that vanished at close). Also
  // claims \Recent for new messages of mailboxes this mount has shown.
  std::vector<Invalidation> TakeInvalidations(const ChangeBatch& batch);

  MailboxSet& store() { return *store_; }

 private:
  enum class NodeKind { kRoot, kDirectory, kMessage, kPending };
  struct PendingFile;
  struct Node;
  struct MailboxRef;
  struct FileHandle;
  struct DirHandle;
  struct Resolved;
  struct ThreadGroups;
  struct SpoolFiles;

  // Tables (all GUARDED_BY(mu_)).
  Node* FindNode(Ino ino);
  Node& AddNode(Ino ino, NodeKind kind);
  Ino DirectoryIno(const std::string& mailbox_name);
  uint32_t RefKey(const std::shared_ptr<MailboxData>& data);
  Ino MessageIno(uint32_t key, uint32_t uid) const;
  uint64_t AdoptHandle(std::unique_ptr<FileHandle> handle);
  void CountLookup(Ino ino);
  // A reader for a stored message read without a handle, from a small
  // cache: the kernel reads a large message in many requests.
  int CachedReader(Ino ino, std::shared_ptr<const ContentReader>* reader);

  // Resolution (take mu_ themselves, call the store without it).
  int DirectoryName(Ino ino, std::string* name);
  int ResolveMailbox(const std::string& name, std::shared_ptr<MailboxData>* data, uint32_t* key);
  bool MailboxOrParentExists(const std::string& name);
  int ResolveChild(Ino parent, std::string_view name, Resolved* out);
  int MessageByNode(Ino ino, std::shared_ptr<MailboxData>* data, uint32_t* uid,
                    uint32_t* key = nullptr);
  // data->readonly() for the mode bits shown, asked at most once a second.
  bool ShownReadOnly(uint32_t key, const std::shared_ptr<MailboxData>& data);

  // Attributes.
  void FillDirectoryAttr(Ino ino, bool readonly, struct stat* st) const;
  void FillMessageAttr(Ino ino, uint64_t size, UnixSeconds internal_date, bool readonly,
                       struct stat* st) const;
  int FillPendingAttr(const PendingFile& file, struct stat* st) const;
  int EntryForMessage(uint32_t key, const std::shared_ptr<MailboxData>& data,
                      const MessageInfo& info, EntryReply* out);
  void ClaimRecentOnce(uint32_t key, const std::shared_ptr<MailboxData>& data);
  // Records that this mount added `uid` to `mailbox` (REQUIRES mu_), so
  // that its report in the change feed claims no \Recent.
  void NoteOwnAddition(const std::string& mailbox, uint32_t uid);

  // Writing.
  // Appends a closed file as a message (replacing `replace_uid` if not 0).
  // Zero bytes store nothing: 0, or EINVAL when `empty_is_error`. On any
  // other failure the file is left as it was for the caller to discard.
  int Commit(const std::shared_ptr<PendingFile>& file, uint32_t replace_uid, bool empty_is_error);
  // After a failed append: an earlier version stays stored, else the file
  // is dropped and its name disappears.
  void AbandonCommit(const std::shared_ptr<PendingFile>& file);
  // Runs `change` (a write or a truncate) on the file's spool file, after
  // copying it to a new one if it was handed to an append (see
  // PendingFile::spool). Returns `change`'s errno, or the copy's.
  int WritableSpool(PendingFile& file, const std::function<int(int fd)>& change);
  void DiscardPending(const std::shared_ptr<PendingFile>& file, bool invalidate_name);
  int ExpungeName(uint32_t key, const std::shared_ptr<MailboxData>& data, uint32_t uid);
  int RenameMailbox(Ino parent, std::string_view name, Ino new_parent, std::string_view new_name,
                    unsigned flags);
  int RenameMessage(const Resolved& source, Ino new_parent, std::string_view new_name,
                    unsigned flags);
  int RenamePending(const Resolved& source, Ino new_parent, std::string_view new_name,
                    unsigned flags);

  // Extended attributes.
  int NodeState(Ino ino, NodeKind* kind, std::shared_ptr<PendingFile>* pending);
  int WriteMailboxXattr(Ino ino, std::string_view name, bool remove);
  int MessageXattr(Ino ino, std::string_view name, std::string* value);
  int MailboxXattr(Ino ino, std::string_view name, std::string* value);
  // Changes a stored message's flags; `still_open` (may be null) is the file
  // it was appended from while descriptors remain, which gets them too.
  int UpdateFlags(Ino ino, FlagOp op, const FlagSet& flags,
                  const std::shared_ptr<PendingFile>& still_open);

  const std::shared_ptr<MailboxSet> store_;
  const DriverOptions options_;
  const uid_t owner_uid_;
  const gid_t owner_gid_;
  const int64_t mount_time_;
  const std::unique_ptr<ThreadGroups> thread_groups_;  // has its own lock
  const std::unique_ptr<SpoolFiles> spool_files_;      // has its own lock

  std::mutex mu_;
  // Every inode the kernel may know, and every directory ever shown. Its
  // hash nodes (48 bytes; one per listed message, a million for a big
  // mailbox) come from a pool: malloc would make each a 64-byte block.
  // Freed nodes are reused for new ones, not returned to malloc.
  std::pmr::unsynchronized_pool_resource node_pool_;
  std::pmr::unordered_map<Ino, Node> nodes_;   // on node_pool_ (the constructor)
  std::map<std::string, Ino> directory_inos_;  // mailbox name -> inode
  Ino next_ino_ = 2;
  // Mailbox identities seen by this mount; index + 1 is the key.
  std::vector<std::unique_ptr<MailboxRef>> refs_;
  std::map<std::pair<std::string, uint32_t>, uint32_t> ref_keys_;
  // Messages written through the mount keep the inode they were written as.
  std::unordered_map<Ino, Ino> message_ino_override_;
  // Files being written (and scratch files), by (parent inode, name).
  std::map<std::pair<Ino, std::string>, std::shared_ptr<PendingFile>, std::less<>> pending_;
  std::vector<Invalidation> queued_invalidations_;
  // Messages this mount added whose change feed report has not been seen
  // yet: (mailbox name, UID) -> when (seconds).
  std::map<std::pair<std::string, uint32_t>, int64_t> own_added_;
  // Appends under way, by mailbox name, and UIDs reported meanwhile that
  // may turn out to be theirs (see TakeInvalidations).
  std::map<std::string, int> appending_;
  std::vector<std::pair<std::string, uint32_t>> unsettled_;
  // Every open handle, so that those the kernel never released (a mount
  // torn down with files open) are freed with the driver.
  std::unordered_map<FileHandle*, std::unique_ptr<FileHandle>> file_handles_;
  std::unordered_map<DirHandle*, std::unique_ptr<DirHandle>> dir_handles_;
  // Readers of messages read without a handle, most recent last.
  std::vector<std::pair<Ino, std::shared_ptr<const ContentReader>>> recent_readers_;
};

}  // namespace mailfs
