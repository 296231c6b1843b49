// One Maildir folder (a mailbox) as the backend keeps it: its directory,
// the in-memory index of its messages, and the operations on its files.
// Every method REQUIRES mu unless it says otherwise; the store holds one
// Folder per mailbox GUID, shared by every handle on that mailbox.
//
// What is on disk (Dovecot's format, shared/MAILDIR.md):
//   <dir>/cur/1795767212.M105402P15256.vm,S=4745,W=4826:2,FS
//   <dir>/new/1795767213.M199784P15501.vm,S=20,W=23
//   <dir>/dovecot-uidlist      "3 V1795767213 N15 G8717ff24...\n1 :<base>\n..."
//   <dir>/dovecot-keywords     "0 $Forwarded\n1 $Junk\n"
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "backends/maildir/files.h"
#include "backends/maildir/format/filename.h"
#include "backends/maildir/format/keywords.h"
#include "backends/maildir/format/uidlist.h"
#include "backends/maildir/index.h"
#include "src/changes.h"
#include "src/mailbox.h"

namespace mailfs::maildir {

// What a folder needs from its store.
struct FolderContext {
  FileOwner owner;
  bool fsync = true;
  std::chrono::milliseconds lock_timeout{30000};
  ChangeLog* changes = nullptr;
  // Asks the store to call Folder::Tick of every folder with deferred work
  // (see Receive) no later than the given time. Unset: nothing is deferred.
  std::function<void(std::chrono::steady_clock::time_point)> schedule;
};

// A change to report once the folder's work is done.
struct FolderChanges {
  std::vector<uint32_t> added, expunged, flags_changed;
  bool empty() const { return added.empty() && expunged.empty() && flags_changed.empty(); }
};

class Folder {
 public:
  Folder(const FolderContext& context, std::string dir, std::string name, std::string guid)
      : context_(context), dir_(std::move(dir)), name_(std::move(name)), guid_(std::move(guid)) {}
  Folder(const Folder&) = delete;
  Folder& operator=(const Folder&) = delete;
  // Ends a burst of moves (Tick with finish).
  ~Folder();

  std::mutex mu;

  const std::string& guid() const { return guid_; }
  const std::string& dir() const { return dir_; }
  // The same without mu (for staging a new message while others commit).
  std::string UnlockedDir() const {
    std::lock_guard lock(dir_mu_);
    return dir_;
  }
  const std::string& name() const { return name_; }
  // A rename moved the folder (the store calls this with mu held).
  // Reread at the new place before the next use: events seen while the
  // directories moved may have been applied to the old path.
  void Relocate(std::string dir, std::string name) {
    burst_lock_.MovedTo(dir + "/dovecot-uidlist");  // a kept lock moved along
    {
      std::lock_guard lock(dir_mu_);
      dir_ = std::move(dir);
    }
    name_ = std::move(name);
    stale_ = true;
  }
  bool deleted() const { return deleted_; }
  void MarkDeleted() { deleted_ = true; }
  uint32_t uid_validity() const { return uid_validity_; }
  // Whether the folder's directories can be written now (permissions, an
  // immutable attribute, a read-only mount); asked live, not cached. Does
  // not need mu.
  bool IsReadOnly() const;
  bool loaded() const { return loaded_; }
  bool has_pending() const { return !pending_.empty(); }

  // Reads the folder fully if it never was, or if a change was missed
  // (MarkStale). Then the index is exact as of this call.
  Status Ensure();
  // Forget the index's trust: the next Ensure rereads everything.
  void MarkStale() { stale_ = true; }
  // Rereads the uidlist and both directories and reports what changed.
  Status Reload();
  // A file in new/ or cur/ that inotify says appeared (created, moved in,
  // written) or went (deleted, moved out), named as the event names it.
  struct FileEvent {
    std::string name;
    bool in_new = false;
    bool gone = false;
  };
  // Reconciles each file an event names with the disk; an event that the
  // index already agrees with (this process's own renames, mostly) costs
  // nothing.
  void ApplyFileEvents(const std::vector<FileEvent>& events);
  // dovecot-uidlist or dovecot-keywords changed on disk.
  void ApplyUidlistChange();
  void ApplyKeywordsChange();
  // Gives UIDs to files that have none, waiting at most `timeout` for the
  // uidlist lock. Leaves them pending when the lock is not available.
  Status AssignPending(std::chrono::milliseconds timeout);

  // Append in two steps, so that writing the bytes holds no lock: Stage
  // (no lock needed) writes and fsyncs the file in `dir`/tmp/; Commit
  // gives it the next UID and moves it into new/ or cur/. On a failed
  // Commit the staged file is still in tmp/: the caller removes it.
  struct Staged {
    std::string tmp_path;
    std::string tmp_base;  // the base name without S= and W=
    uint64_t size = 0;
    uint64_t vsize = 0;
    int64_t mtime = 0;
    ObjectBytes thread{};
  };
  static Result<Staged> Stage(const std::string& dir, const AppendMessage& message,
                              const FolderContext& context);
  // Commit takes mu itself and must be called WITHOUT it. It commits
  // appends in groups: while one thread commits, others queue, and the next
  // to commit takes every queued append at once, under one uidlist lock,
  // with one uidlist write and one sync of the uidlist and the directories
  // for all (made durable together, see SyncAll), instead of a lock and
  // three syncs each. UIDs follow the queue's order. Each append gets its
  // own result: one that fails alone (flags it cannot store, its staged file
  // gone) leaves the others alone; a failure of the shared steps (the lock,
  // the uidlist write, a sync) fails the whole group, leaving none stored.
  Result<uint32_t> Commit(const Staged& staged, const FlagSet& flags, bool recent);

  // The operations of MailboxData; see src/mailbox.h.
  Result<MessageInfo> Get(uint32_t uid);
  Result<std::vector<MessageInfo>> Find(uint32_t first, uint32_t last,
                                        std::unique_lock<std::mutex>& lock);
  Result<std::vector<ListedMessage>> List(std::unique_lock<std::mutex>& lock);
  Result<std::shared_ptr<const ContentReader>> Open(uint32_t uid);
  Result<FlagSet> Update(uint32_t uid, const FlagSet& flags, FlagOp op);
  Status Delete(std::span<const uint32_t> uids);
  Result<std::vector<uint32_t>> ClaimRecent();
  Status Cleanup();
  MailboxSnapshot Snapshot();

  // For Copy and Move. The source side, with the source's mu held: where
  // the message's file is, and what the copy must carry.
  struct Source {
    std::string path;
    std::string base;
    FlagSet flags;
    MessageIds ids;
    std::string email_id, thread_id;
    int64_t mtime = 0;
    uint64_t size = 0;  // with mtime: the file's, which a link or rename keeps
  };
  Result<Source> Describe(uint32_t uid);
  // The target side, with this folder's mu held: links (or, for a move,
  // renames) `source.path` in under the next UID. kNotFound when the
  // source file is gone (a flag change renamed it: the caller refreshes
  // the source and retries).
  //
  // Moves come in bursts (`mv *.eml Archive/` is one request per message),
  // so a move keeps the uidlist lock for the next one (Tick releases it
  // once the burst pauses for kBurstIdle), and its syncs are deferred to
  // Tick (once per burst, not once per message), also with fsync on: a
  // move never risks mail, whatever a crash keeps of it. The rename is
  // atomic, so the file is in the source or in the target (on a
  // filesystem without atomic renames, possibly in both); a uidlist line
  // whose file is elsewhere is skipped by every reader (Dovecot too), and
  // a file without a line gets a new UID. The move is durable once the
  // burst pauses (Tick syncs the target directory and uidlist), or at
  // fsync() or unmount (Store::Sync), whichever comes first. A copy keeps
  // syncing before it returns: the new link is new data.
  Result<uint32_t> Receive(const Source& source, bool move, bool recent);
  // After a move: the message left this folder.
  void Forget(uint32_t uid);

  // The deferred work of a burst of moves (see Receive): releases the
  // uidlist lock kept between them once the burst pauses (or has held it
  // for kBurstMaxHold), and syncs what its moves changed once it pauses
  // (or the oldest is kMaxUnsynced old). `finish`: all of it now. Takes mu
  // itself (call it WITHOUT mu) and lets go of it before syncing. Returns
  // when it wants to be called again (time_point::max(): nothing left).
  // Sync failures are logged; the next fsync() or unmount (Store::Sync,
  // syncfs) reports them to the caller.
  std::chrono::steady_clock::time_point Tick(std::chrono::steady_clock::time_point now,
                                             bool finish);
  // Whether Tick has anything to do; without mu.
  bool has_deferred() const { return deferred_.load(std::memory_order_relaxed); }

  // Writes a new, empty uidlist with this folder's validity and GUID.
  static Status CreateUidlist(const std::string& dir, uint32_t uid_validity,
                              const std::string& guid, const FolderContext& context);

 private:
  std::string Path(bool in_new, std::string_view name) const {
    return dir_ + (in_new ? "/new/" : "/cur/") + std::string(name);
  }
  std::string UidlistPath() const { return dir_ + "/dovecot-uidlist"; }
  Status CheckWritable() const;
  // Reads the whole uidlist (full) or only what was appended since the
  // last read, and matches new lines with pending files.
  Status RefreshUidlist(FolderChanges* changes);
  // Reads a whole uidlist into `out` (empty): one unlisted entry a line,
  // named by its base name. Takes the file's header, size and inode.
  Status ScanWholeUidlist(std::string_view bytes, const struct stat& st, MessageIndex* out);
  Status LoadKeywords();
  // Takes a file name found in cur/ or new/ into the index (or pending).
  // Appends lines for new records, or rewrites the file when it must be.
  // REQUIRES the uidlist dotlock.
  // With fsync on, the new lines are durable on success, and so are
  // `synced_dirs` (where the new files were renamed to), synced together
  // with the uidlist. On failure appended lines are taken back; a file
  // rewritten before a directory's sync failed keeps them (lines without
  // a file once the caller moves its files back, which readers skip).
  // With `durable` false nothing is synced (the caller defers it).
  Status WriteRecords(const std::vector<UidlistRecord>& records,
                      const std::vector<std::string>& synced_dirs = {}, bool durable = true);
  Status RewriteUidlist(const std::vector<UidlistRecord>& added);
  // Letters for `flags` in this folder, assigning new keyword letters
  // (and rewriting dovecot-keywords) as needed. REQUIRES the dotlock when
  // `may_assign`.
  Result<NameFlags> LettersFor(const FlagSet& flags, uint32_t keep_unknown_letters);
  bool NeedsNewKeywordLetters(const FlagSet& flags) const;
  // The uidlist dotlock; the one a burst of moves kept, if it holds one
  // (handed over: the caller's release ends the burst's hold).
  Result<Dotlock> LockUidlist(std::chrono::milliseconds timeout);
  // One append waiting in the commit queue; lives on its caller's stack.
  struct CommitRequest {
    const Staged* staged = nullptr;
    const FlagSet* flags = nullptr;
    bool recent = false;
    Result<uint32_t> result = Status::Io("not committed");
    bool done = false;  // GUARDED_BY(queue_mu_)
  };
  // Commits a group taken from the queue: sets every request's result.
  // REQUIRES mu.
  void CommitGroup(std::span<CommitRequest* const> group);
  // A name for a new file: Dovecot's "<secs>.M<usecs>P<pid>.<host>,S=,W=".
  std::string NewBaseName(uint64_t size, uint64_t vsize);
  void Post(const FolderChanges& changes);
  bool FillStat(Entry& entry);
  MessageInfo InfoOf(const Entry& entry) const;
  // Size and date of the entries in [first, last] not known yet.
  Status StatUnknown(uint32_t first, uint32_t last, std::unique_lock<std::mutex>& lock);
  // make(entry) of every entry in [first, last], with its size and date.
  template <typename Item, typename Make>
  Result<std::vector<Item>> Collect(uint32_t first, uint32_t last,
                                    std::unique_lock<std::mutex>& lock, Make make);

  const FolderContext& context_;
  // The commit queue (see Commit). Lock order: queue_mu_ is never held
  // while taking mu; a committer takes its group, lets go of queue_mu_,
  // then takes mu.
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::vector<CommitRequest*> queue_;  // GUARDED_BY(queue_mu_)
  bool committing_ = false;            // GUARDED_BY(queue_mu_)
  // What the uidlist's dotlock is link()ed from: a file of ours in tmp/.
  DotlockSource lock_source_;
  bool lock_files_swept_ = false;  // RemoveDeadOnes ran for this folder
  // A burst of moves into this folder (see Receive and Tick), GUARDED_BY(mu):
  // the uidlist lock kept between its moves, when the burst began and when
  // it last moved a message, and when the next burst may keep the lock
  // again (a pause after a hold of kBurstMaxHold, for other waiters).
  using Clock = std::chrono::steady_clock;
  Dotlock burst_lock_;
  Clock::time_point burst_started_{}, burst_last_{}, burst_resume_{};
  // What moves changed and nobody synced yet (path -> fdatasync enough),
  // and since when. GUARDED_BY(mu)
  std::map<std::string, bool> unsynced_;
  Clock::time_point unsynced_since_{};
  std::atomic<bool> deferred_{false};  // burst_lock_ held or unsynced_ not empty
  // Written with mu and dir_mu_ held, so read with either (UnlockedDir).
  mutable std::mutex dir_mu_;
  std::string dir_;
  std::string name_;
  const std::string guid_;
  bool deleted_ = false;
  bool loaded_ = false;
  bool stale_ = true;
  bool readonly_ = false;

  uint32_t uid_validity_ = 0;
  // The uidlist as last read: its header line (to parse appended lines
  // with), inode, how far it was read, and whether the next write must
  // rewrite it (a broken line, version 1, no GUID).
  std::string uidlist_header_line_;
  ino_t uidlist_ino_ = 0;
  uint64_t uidlist_offset_ = 0;
  bool uidlist_ends_in_newline_ = true;
  bool uidlist_needs_rewrite_ = false;
  size_t uidlist_records_ = 0;
  uint32_t next_uid_ = 1;

  KeywordTable keywords_;
  MessageIndex index_;
  // Lines of the uidlist whose file was not seen (yet): by base name.
  std::map<std::string, Orphan, std::less<>> orphans_;
  // Files without a UID: by base name.
  std::map<std::string, Pending, std::less<>> pending_;
  // Base names of files that are not messages (or cannot be read): logged
  // once, never given a UID.
  std::set<std::string, std::less<>> rejected_;
};

}  // namespace mailfs::maildir
