#include "backends/maildir/folder.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "backends/maildir/format/mutf7.h"

namespace mailfs::maildir {
namespace {

constexpr char kUidlistName[] = "dovecot-uidlist";
// Bursts of moves (see Folder::Receive): the lock is kept until the burst
// pauses this long, and for this long at most, then left alone for a
// moment so that another process waiting for it (Dovecot waits for a
// dotlock with inotify) gets it; moves are synced once the burst pauses,
// or once the oldest unsynced one is kMaxUnsynced old.
constexpr auto kBurstIdle = std::chrono::milliseconds(5);
constexpr auto kBurstMaxHold = std::chrono::milliseconds(100);
constexpr auto kBurstPause = std::chrono::milliseconds(10);
constexpr auto kMaxUnsynced = std::chrono::milliseconds(1000);
constexpr size_t kHeaderScanLimit = 64 * 1024;

// A reader over a message file that it keeps open, so the bytes stay
// readable after an expunge (the file is unlinked, the inode lives on).
class MessageFile final : public ContentReader {
 public:
  MessageFile(int fd, uint64_t size) : fd_(fd), size_(size) {}
  ~MessageFile() override { close(fd_); }
  MessageFile(const MessageFile&) = delete;
  MessageFile& operator=(const MessageFile&) = delete;
  uint64_t size() const override { return size_; }
  Result<size_t> ReadAt(uint64_t offset, std::span<char> out) const override {
    return FdContent(fd_, size_).ReadAt(offset, out);
  }
  int fd() const override { return fd_; }

 private:
  int fd_;
  uint64_t size_;
};

// One process-wide clock for new file names: Dovecot keeps names unique
// within a process by bumping the microseconds.
std::pair<uint64_t, uint32_t> UniqueTime() {
  static std::mutex mu;
  static uint64_t last_secs = 0;
  static uint32_t last_usecs = 0;
  struct timeval now {};
  gettimeofday(&now, nullptr);
  std::lock_guard lock(mu);
  uint64_t secs = static_cast<uint64_t>(now.tv_sec);
  uint32_t usecs = static_cast<uint32_t>(now.tv_usec);
  if (secs < last_secs || (secs == last_secs && usecs <= last_usecs)) {
    secs = last_secs;
    usecs = last_usecs + 1;
    if (usecs >= 1000000) {
      ++secs;
      usecs = 0;
    }
  }
  last_secs = secs;
  last_usecs = usecs;
  return {secs, usecs};
}

ObjectBytes ThreadBytesFor(std::string_view header) {
  std::string key = ThreadKey(header);
  return key.empty() ? RandomObjectBytes() : Hash128("thread-key:" + key);
}

// Up to kHeaderScanLimit bytes from the start of a file, or an error.
Result<std::string> ReadHead(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ErrnoStatus(errno, "open", path, ErrorScope::kMessage);
  std::string head(kHeaderScanLimit, '\0');
  ssize_t n = pread(fd, head.data(), head.size(), 0);
  int error = errno;
  close(fd);
  if (n < 0) return ErrnoStatus(error, "read", path, ErrorScope::kMessage);
  head.resize(static_cast<size_t>(n));
  return head;
}

// Calls each(name, in_new) for the message files of cur/ and new/: regular
// files with a safe name, as they are read (a million-message folder never
// holds all its names at once). Symlinks and other oddities are logged and
// skipped, never followed.
template <typename Each>
Status ForEachMessageFile(const std::string& dir, Each&& each) {
  for (bool in_new : {false, true}) {
    std::string sub = dir + (in_new ? "/new" : "/cur");
    DIR* d = opendir(sub.c_str());
    if (d == nullptr) {
      if (errno == ENOENT) continue;
      return ErrnoStatus(errno, "opendir", sub, ErrorScope::kMailbox);
    }
    while (struct dirent* e = readdir(d)) {
      std::string_view name = e->d_name;
      if (name.empty() || name[0] == '.') continue;
      unsigned char type = e->d_type;
      if (type == DT_UNKNOWN) {
        struct stat st {};
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        type = S_ISREG(st.st_mode) ? DT_REG : S_ISLNK(st.st_mode) ? DT_LNK : DT_DIR;
      }
      if (type != DT_REG) {
        if (type == DT_LNK) spdlog::warn("maildir: skipping symlink {}/{}", sub, name);
        continue;
      }
      if (auto reason = UnsafeFileNameReason(name)) {
        spdlog::warn("maildir: skipping {}/{}: {}", sub, PrintableForLog(name), *reason);
        continue;
      }
      each(name, in_new);
    }
    closedir(d);
  }
  return Status::Ok();
}

NameFlags NameFlagsOf(const Entry& entry) {
  NameFlags flags;
  flags.system = entry.system;
  flags.keywords = entry.letters;
  return flags;
}

}  // namespace

// --- Reading ---------------------------------------------------------------------

Status Folder::Ensure() {
  if (deleted_) {
    return Status::NotFound(ErrorScope::kMailbox, fmt::format("mailbox {} was deleted", name_));
  }
  if (!loaded_ || stale_) return Reload();
  return Status::Ok();
}

bool Folder::IsReadOnly() const {
  const std::string dir = UnlockedDir();
  return access(dir.c_str(), W_OK) != 0 || access((dir + "/cur").c_str(), W_OK) != 0 ||
         access((dir + "/new").c_str(), W_OK) != 0;
}

Status Folder::CheckWritable() const {
  if (IsReadOnly()) return Status::ReadOnly(fmt::format("{} is read-only ({})", name_, dir_));
  return Status::Ok();
}

Status Folder::LoadKeywords() {
  auto bytes = ReadWholeFile(dir_ + "/dovecot-keywords");
  if (!bytes.ok()) {
    if (bytes.status().code() == ErrorCode::kNotFound) {
      keywords_ = KeywordTable();
      return Status::Ok();
    }
    return bytes.status();
  }
  auto table = KeywordTable::Parse(*bytes);
  if (!table.ok()) return table.status();
  for (const KeywordsProblem& problem : table->problems()) {
    spdlog::warn("maildir: {}/dovecot-keywords line {}: {}", dir_, problem.line, problem.reason);
  }
  keywords_ = std::move(table).value();
  return Status::Ok();
}

Status Folder::ScanWholeUidlist(std::string_view bytes, const struct stat& st, MessageIndex* out) {
  // Every line becomes an entry named by its base name, not yet listed;
  // Reload then matches the files with them. Lines are counted first so
  // that the index is allocated once, at its final size.
  out->Reserve(static_cast<size_t>(std::count(bytes.begin(), bytes.end(), '\n')));
  auto scan = Uidlist::Scan(bytes, [&](const UidlistLine& line) -> uint32_t {
    std::string_view base = line.BaseName();
    uint32_t earlier = 0;
    if (Entry* old = out->FindBase(base)) {
      earlier = old->uid;  // Dovecot's "Duplicate file entry": the later line wins
      out->Remove(earlier);
    }
    Entry entry;
    entry.uid = line.uid;
    entry.ids = IdsFromFields(line.ext);
    entry.name = base;
    out->Add(std::move(entry));
    return earlier;
  });
  if (!scan.ok()) {
    out->Clear();
    return scan.status();
  }
  for (const UidlistProblem& problem : scan->problems) {
    spdlog::warn("maildir: {}/{} line {}: {}", dir_, kUidlistName, problem.line, problem.reason);
  }
  size_t eol = bytes.find('\n');
  uidlist_header_line_ = std::string(bytes.substr(0, eol + 1));
  uidlist_ino_ = st.st_ino;
  // Only complete lines count as read; an unterminated tail is read again.
  size_t complete = bytes.rfind('\n') + 1;
  uidlist_offset_ = complete;
  uidlist_ends_in_newline_ = complete == bytes.size();
  uidlist_needs_rewrite_ = !scan->problems.empty() || scan->header.version != kUidlistVersion ||
                           scan->header.guid.empty();
  uidlist_records_ = scan->records;
  next_uid_ = scan->NextUid();
  if (scan->header.uid_validity != 0) {
    if (loaded_ && uid_validity_ != scan->header.uid_validity) {
      spdlog::warn("maildir: {}: UIDVALIDITY changed from {} to {}", dir_, uid_validity_,
                   scan->header.uid_validity);
    }
    uid_validity_ = scan->header.uid_validity;
  }
  return Status::Ok();
}

Status Folder::Reload() {
  struct stat dir_stat {};
  if (stat(dir_.c_str(), &dir_stat) != 0) {
    if (errno == ENOENT) {
      return Status::NotFound(ErrorScope::kMailbox, fmt::format("mailbox {} is gone", name_));
    }
    return ErrnoStatus(errno, "stat", dir_, ErrorScope::kMailbox);
  }
  readonly_ = IsReadOnly();
  if (!readonly_) {
    // Dovecot creates what is missing when it opens a folder.
    (void)MakeMaildirSubdirectories(dir_, context_.owner);
  }

  // The uidlist first, then the directories: a file renamed in after the
  // listing gets its line after it too, so it is at worst pending.
  // The new index is built straight from the uidlist's lines (one entry
  // each, named by the base name), then the files are matched with it as
  // readdir returns them: at no point are the file's bytes, its parsed
  // records, the directory's names and the index all held at once, which
  // for a million messages cost 500 bytes each.
  MessageIndex fresh;
  {
    auto tail = ReadFileFrom(UidlistPath(), 0);
    if (tail.ok()) {
      Status parsed = ScanWholeUidlist(tail->bytes, tail->st, &fresh);
      if (!parsed.ok()) {
        spdlog::warn("maildir: {}: {}; it will be rewritten", UidlistPath(), parsed.ToString());
        uidlist_needs_rewrite_ = true;
        uidlist_ino_ = 0;
        uidlist_offset_ = 0;
      }
    } else if (tail.status().code() == ErrorCode::kNotFound ||
               tail.status().code() == ErrorCode::kCorrupt) {
      // Missing, or not a file (a symlink, a directory): Dovecot would start
      // a new one too. The next write replaces it; nothing is followed.
      if (tail.status().code() == ErrorCode::kCorrupt) {
        spdlog::warn("maildir: {}; it will be replaced", tail.status().detail());
      }
      uidlist_needs_rewrite_ = true;
      uidlist_ino_ = 0;
      uidlist_offset_ = 0;
    } else {
      return tail.status();
    }
  }
  if (uid_validity_ == 0) uid_validity_ = 1;
  if (Status s = LoadKeywords(); !s.ok()) return s;

  // Match the files with the entries, keeping what the old index knew of
  // unchanged files.
  std::map<std::string, Pending, std::less<>> pending;
  FolderChanges changes;
  Status listed = ForEachMessageFile(dir_, [&](std::string_view name, bool in_new) {
    std::string_view base = BaseName(name);
    Entry* entry = fresh.FindBase(base);
    if ((entry != nullptr && entry->listed) || pending.contains(base)) {
      spdlog::warn("maildir: {}: two files share the base name of {}; ignoring the second", dir_,
                   name);
      return;
    }
    if (entry == nullptr) {
      if (!rejected_.contains(base)) pending.emplace(base, Pending{std::string(name), in_new});
      return;
    }
    auto parsed = ParseFileName(name);
    if (!parsed.ok()) return;  // stays unlisted: an orphan line
    entry->system = parsed->flags.system;
    entry->letters = parsed->flags.keywords;
    entry->in_new = in_new;
    if (Entry* old = loaded_ ? index_.Find(entry->uid) : nullptr) {
      if (old->base() == base) {
        if (old->name == name && old->in_new == in_new) {
          entry->stat_known = old->stat_known;
          entry->mtime = old->mtime;
          entry->size = old->size;
        }
        if (old->system != entry->system || old->letters != entry->letters) {
          changes.flags_changed.push_back(entry->uid);
        }
      } else {
        changes.expunged.push_back(entry->uid);
        changes.added.push_back(entry->uid);
      }
    } else if (loaded_) {
      changes.added.push_back(entry->uid);
    }
    entry->name = name;
    entry->listed = true;
  });
  if (!listed.ok()) return listed;
  // Lines without a file: orphans, out of the index.
  orphans_.clear();
  fresh.RemoveIf([&](Entry& e) {
    if (e.listed) return false;
    orphans_[std::string(e.base())] = Orphan{e.uid, e.ids};
    return true;
  });
  if (loaded_) {
    index_.ForEach([&](Entry& old) {
      if (fresh.Find(old.uid) == nullptr) changes.expunged.push_back(old.uid);
    });
  }
  std::sort(changes.added.begin(), changes.added.end());
  std::sort(changes.expunged.begin(), changes.expunged.end());
  index_ = std::move(fresh);
  pending_ = std::move(pending);
  loaded_ = true;
  stale_ = false;
  Post(changes);
  if (!pending_.empty() && !readonly_) {
    // Never wait here: a reader must not block on another writer's lock.
    if (Status s = AssignPending(std::chrono::milliseconds(0)); !s.ok()) {
      spdlog::warn("maildir: {}: cannot give UIDs to new files yet: {}", dir_, s.ToString());
    }
  }
  return Status::Ok();
}

Status Folder::RefreshUidlist(FolderChanges* changes) {
  struct stat st {};
  if (stat(UidlistPath().c_str(), &st) != 0) {
    if (errno != ENOENT) return ErrnoStatus(errno, "stat", UidlistPath());
    uidlist_needs_rewrite_ = true;
    uidlist_ino_ = 0;
    uidlist_offset_ = 0;
    return Status::Ok();
  }
  if (st.st_ino == uidlist_ino_ && static_cast<uint64_t>(st.st_size) == uidlist_offset_) {
    return Status::Ok();
  }
  if (st.st_ino != uidlist_ino_ || static_cast<uint64_t>(st.st_size) < uidlist_offset_ ||
      !uidlist_ends_in_newline_ || uidlist_header_line_.empty()) {
    // Replaced or truncated: read everything again.
    return Reload();
  }
  auto tail = ReadFileFrom(UidlistPath(), uidlist_offset_);
  if (!tail.ok()) return tail.status();
  if (tail->st.st_ino != uidlist_ino_) return Reload();
  size_t complete = tail->bytes.rfind('\n');
  if (complete == std::string::npos) return Status::Ok();  // a line being written
  std::string_view lines(tail->bytes.data(), complete + 1);
  auto parsed = Uidlist::Parse(uidlist_header_line_ + std::string(lines));
  if (!parsed.ok()) return Reload();
  if (!parsed->problems.empty()) uidlist_needs_rewrite_ = true;
  for (const UidlistRecord& record : parsed->records) {
    if (record.uid < next_uid_) {
      spdlog::warn("maildir: {}: appended UID {} is not above {}", UidlistPath(), record.uid,
                   next_uid_);
      uidlist_needs_rewrite_ = true;
      continue;
    }
    next_uid_ = record.uid + 1;
    ++uidlist_records_;
    std::string_view base = record.BaseName();
    if (index_.FindBase(base) != nullptr) continue;
    MessageIds ids = IdsFromFields(record.ext);
    auto pending = pending_.find(base);
    if (pending == pending_.end()) {
      orphans_[std::string(base)] = Orphan{record.uid, ids};
      continue;
    }
    auto name = ParseFileName(pending->second.name);
    if (name.ok()) {
      Entry entry;
      entry.uid = record.uid;
      entry.ids = ids;
      entry.system = name->flags.system;
      entry.letters = name->flags.keywords;
      entry.in_new = pending->second.in_new;
      entry.name = std::move(pending->second.name);
      index_.Add(std::move(entry));
      changes->added.push_back(record.uid);
    }
    pending_.erase(pending);
  }
  uidlist_offset_ += lines.size();
  return Status::Ok();
}

void Folder::ApplyUidlistChange() {
  if (!loaded_ || deleted_) return;
  FolderChanges changes;
  Status s = RefreshUidlist(&changes);
  if (!s.ok()) spdlog::warn("maildir: {}: {}", dir_, s.ToString());
  Post(changes);
}

void Folder::ApplyKeywordsChange() {
  if (!loaded_ || deleted_) return;
  KeywordTable before = keywords_;
  if (Status s = LoadKeywords(); !s.ok()) {
    spdlog::warn("maildir: {}: {}", dir_, s.ToString());
    return;
  }
  if (before == keywords_) return;
  FolderChanges changes;
  index_.ForEach([&](Entry& e) {
    if (e.letters != 0) changes.flags_changed.push_back(e.uid);
  });
  Post(changes);
}

void Folder::ApplyFileEvents(const std::vector<FileEvent>& events) {
  if (!loaded_ || deleted_ || stale_) return;
  FolderChanges changes;
  std::set<uint32_t> suspects;
  for (const FileEvent& event : events) {
    const std::string& name = event.name;
    const bool in_new = event.in_new;
    if (name.empty() || name[0] == '.' || UnsafeFileNameReason(name)) continue;
    std::string_view base = BaseName(name);
    Entry* entry = index_.FindBase(base);
    // An event that only says what the index already shows needs no look
    // at the disk: a name the index has that appeared, or a name it does
    // not have (nor waits to number) that went. Those are the events of
    // this process's own flag changes and moves, one or two per message.
    // Events come in order, so a later change of the same file comes with
    // an event of its own.
    bool indexed = entry != nullptr && entry->name == name && entry->in_new == in_new;
    if (event.gone ? !indexed && !pending_.contains(base) : indexed) continue;
    std::string path = Path(in_new, name);
    struct stat st {};
    bool exists = lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
    if (!exists) {
      if (entry != nullptr && entry->name == name && entry->in_new == in_new) {
        suspects.insert(entry->uid);
      }
      auto pending = pending_.find(base);
      if (pending != pending_.end() && pending->second.name == name) pending_.erase(pending);
      continue;
    }
    auto parsed = ParseFileName(name);
    if (!parsed.ok()) continue;
    if (entry != nullptr) {
      if (entry->name == name && entry->in_new == in_new) {
        suspects.erase(entry->uid);
        continue;
      }
      struct stat current {};
      if (lstat(Path(entry->in_new, entry->name).c_str(), &current) == 0 &&
          current.st_ino != st.st_ino) {
        spdlog::warn("maildir: {}: two files share the base name of {}; ignoring the second", dir_,
                     name);
        continue;
      }
      bool flags_differ =
          entry->system != parsed->flags.system || entry->letters != parsed->flags.keywords;
      entry->name = name;
      entry->in_new = in_new;
      entry->system = parsed->flags.system;
      entry->letters = parsed->flags.keywords;
      suspects.erase(entry->uid);
      if (flags_differ) changes.flags_changed.push_back(entry->uid);
      continue;
    }
    auto orphan = orphans_.find(base);
    if (orphan != orphans_.end()) {
      Entry fresh;
      fresh.uid = orphan->second.uid;
      fresh.ids = orphan->second.ids;
      fresh.system = parsed->flags.system;
      fresh.letters = parsed->flags.keywords;
      fresh.in_new = in_new;
      fresh.name = name;
      orphans_.erase(orphan);
      changes.added.push_back(fresh.uid);
      index_.Add(std::move(fresh));
      continue;
    }
    // A file rejected before (empty, not yet a message) may have been
    // written since: an event for it earns it another look.
    if (auto rejected = rejected_.find(base); rejected != rejected_.end())
      rejected_.erase(rejected);
    pending_[std::string(base)] = Pending{name, in_new};
  }
  for (uint32_t uid : suspects) {
    Entry* entry = index_.Find(uid);
    if (entry == nullptr) continue;
    struct stat st {};
    if (lstat(Path(entry->in_new, entry->name).c_str(), &st) == 0) continue;
    // Gone. Its uidlist line stays until a rewrite, so if the file comes
    // back (a rename seen in two halves) it gets its UID back.
    Entry removed = index_.Remove(uid);
    orphans_[std::string(removed.base())] = Orphan{uid, removed.ids};
    changes.expunged.push_back(uid);
  }
  std::sort(changes.expunged.begin(), changes.expunged.end());
  Post(changes);
  if (!pending_.empty() && !readonly_) {
    if (Status s = AssignPending(std::chrono::milliseconds(0)); !s.ok()) {
      spdlog::debug("maildir: {}: new files wait for a UID: {}", dir_, s.ToString());
    }
  }
}

// --- Writing the uidlist -------------------------------------------------------------

Result<Dotlock> Folder::LockUidlist(std::chrono::milliseconds timeout) {
  if (burst_lock_.held()) return std::move(burst_lock_);
  // The lock is link()ed from a file of ours in tmp/, kept from one lock
  // to the next (see DotlockSource).
  lock_source_.SetDirectory(dir_ + "/tmp");
  auto lock = Dotlock::Acquire(UidlistPath(), timeout, std::chrono::seconds(120), &lock_source_);
  if (lock.ok() && !lock_files_swept_) {
    // Once per folder, what an earlier mailfs killed before it could
    // clean up left: its source in tmp/, or a lock's temporary file.
    lock_files_swept_ = true;
    DotlockSource::RemoveDeadOnes(dir_ + "/tmp");
    DotlockSource::RemoveDeadOnes(dir_);
  }
  return lock;
}

Status Folder::CreateUidlist(const std::string& dir, uint32_t uid_validity, const std::string& guid,
                             const FolderContext& context) {
  Uidlist uidlist;
  uidlist.header.uid_validity = uid_validity;
  uidlist.header.next_uid = 1;
  uidlist.header.guid = guid;
  auto bytes = uidlist.Serialize();
  if (!bytes.ok()) return bytes.status();
  return ReplaceFile(dir + "/" + kUidlistName, dir + "/dovecot-uidlist.tmp", *bytes, context.fsync,
                     context.owner);
}

Status Folder::WriteRecords(const std::vector<UidlistRecord>& records,
                            const std::vector<std::string>& synced_dirs, bool durable) {
  std::vector<SyncTarget> targets;
  const bool sync = context_.fsync && durable;
  if (sync) {
    for (const std::string& dir : synced_dirs) targets.push_back(SyncTarget{dir, false});
  }
  auto rewrite = [&] {
    // ReplaceFile makes the new file durable; the directories follow. Should
    // their sync fail, the new file keeps lines of files the caller moves
    // back: lines without a file, which readers skip.
    Status s = RewriteUidlist(records);
    return s.ok() ? SyncAll(targets) : s;
  };
  if (uidlist_needs_rewrite_ || uidlist_ino_ == 0) return rewrite();
  auto lines = FormatUidlistAppendLines(records, next_uid_);
  if (!lines.ok()) return lines.status();
  std::string path = UidlistPath();
  int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ErrnoStatus(errno, "open", path, ErrorScope::kMailbox);
  struct stat st {};
  Status status;
  if (fstat(fd, &st) != 0) {
    status = ErrnoStatus(errno, "stat", path, ErrorScope::kMailbox);
  } else if (st.st_ino != uidlist_ino_ || static_cast<uint64_t>(st.st_size) != uidlist_offset_) {
    // Changed since RefreshUidlist under our lock: someone ignores the lock.
    close(fd);
    return rewrite();
  }
  std::string_view rest = *lines;
  while (status.ok() && !rest.empty()) {
    ssize_t n = write(fd, rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      status = ErrnoStatus(errno, "write", path, ErrorScope::kMailbox);
      break;
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  if (status.ok() && sync) {
    // fdatasync: the line and the file's size must survive, its times need
    // not. Synced at once with the directories the new files went to.
    targets.push_back(SyncTarget{path, true, fd});
    status = SyncAll(targets);
  }
  if (!status.ok()) {
    // Take back a partial line so the file stays appendable.
    if (ftruncate(fd, static_cast<off_t>(uidlist_offset_)) != 0) uidlist_needs_rewrite_ = true;
    close(fd);
    return status;
  }
  close(fd);
  uidlist_offset_ += lines->size();
  uidlist_records_ += records.size();
  next_uid_ = records.back().uid + 1;
  return Status::Ok();
}

Status Folder::RewriteUidlist(const std::vector<UidlistRecord>& added) {
  Uidlist uidlist;
  bool from_file = false;
  if (auto bytes = ReadWholeFile(UidlistPath()); bytes.ok()) {
    if (auto parsed = Uidlist::Parse(*bytes); parsed.ok()) {
      uidlist = std::move(parsed).value();
      from_file = true;
    }
  }
  // Keep the line of every file that is on disk now (listed under the
  // lock, so no line of a message that exists is dropped); drop the rest.
  std::set<std::string, std::less<>> on_disk;
  if (Status s = ForEachMessageFile(
          dir_, [&](std::string_view name, bool) { on_disk.emplace(BaseName(name)); });
      !s.ok()) {
    return s;
  }
  std::vector<UidlistRecord> records;
  uint32_t next_uid = std::max(next_uid_, from_file ? uidlist.NextUid() : 1u);
  if (from_file) {
    for (UidlistRecord& record : uidlist.records) {
      if (on_disk.contains(record.BaseName())) records.push_back(std::move(record));
    }
  } else {
    // Unreadable or missing: our index is the best record of the UIDs.
    index_.ForEach([&](Entry& e) {
      UidlistRecord record;
      record.uid = e.uid;
      MessageIds ids = e.ids;
      record.ext =
          FieldsForIds(ids.has_email ? ids.email : Hash128("email:" + std::string(e.base())),
                       ids.has_thread ? ids.thread : Hash128("thread:" + std::string(e.base())));
      record.name = std::string(e.base());
      records.push_back(std::move(record));
    });
    uidlist.header.uid_validity = uid_validity_;
  }
  for (const UidlistRecord& record : added) {
    if (!records.empty() && record.uid <= records.back().uid) {
      return Status::Error(
          ErrorCode::kCorrupt, ErrorScope::kMailbox,
          fmt::format("{}: UID {} not above {}", UidlistPath(), record.uid, records.back().uid));
    }
    records.push_back(record);
    next_uid = std::max(next_uid, record.uid + 1);
  }
  uidlist.records = std::move(records);
  uidlist.header.version = kUidlistVersion;
  if (uidlist.header.uid_validity == 0) uidlist.header.uid_validity = uid_validity_;
  if (!IsValidUidlistGuid(uidlist.header.guid)) {
    uidlist.header.guid = IsValidUidlistGuid(guid_) ? guid_ : HexOf(RandomObjectBytes());
  }
  uidlist.header.next_uid = next_uid;
  auto bytes = uidlist.Serialize();
  if (!bytes.ok()) return bytes.status();
  Status written = ReplaceFile(UidlistPath(), dir_ + "/dovecot-uidlist.tmp", *bytes, context_.fsync,
                               context_.owner);
  if (!written.ok()) return written;
  struct stat st {};
  if (stat(UidlistPath().c_str(), &st) != 0) return ErrnoStatus(errno, "stat", UidlistPath());
  uidlist_header_line_ = bytes->substr(0, bytes->find('\n') + 1);
  uidlist_ino_ = st.st_ino;
  uidlist_offset_ = bytes->size();
  uidlist_ends_in_newline_ = true;
  uidlist_needs_rewrite_ = false;
  uidlist_records_ = uidlist.records.size();
  next_uid_ = next_uid;
  // Lines of files that are gone were dropped.
  std::erase_if(orphans_, [&](const auto& item) { return !on_disk.contains(item.first); });
  return Status::Ok();
}

Status Folder::AssignPending(std::chrono::milliseconds timeout) {
  if (pending_.empty() || readonly_ || deleted_) return Status::Ok();
  auto lock = LockUidlist(timeout);
  if (!lock.ok()) return lock.status();
  FolderChanges changes;
  if (Status s = RefreshUidlist(&changes); !s.ok()) return s;
  // Dovecot's order: the time in the name, then the rest.
  std::vector<std::pair<FileNameSortKey, std::string>> order;
  for (const auto& [base, pending] : pending_) order.emplace_back(SortKeyOf(pending.name), base);
  std::sort(order.begin(), order.end());
  std::vector<UidlistRecord> records;
  std::vector<Entry> entries;
  uint32_t uid = next_uid_;
  for (const auto& [key, base] : order) {
    const Pending& pending = pending_.at(base);
    std::string path = Path(pending.in_new, pending.name);
    auto head = ReadHead(path);
    if (!head.ok()) {
      if (head.status().code() != ErrorCode::kNotFound) {
        spdlog::warn("maildir: skipping {}: {}", path, head.status().ToString());
        rejected_.insert(base);
      }
      continue;
    }
    if (!LooksLikeMessage(*head)) {
      spdlog::warn("maildir: skipping {}: not a message", path);
      rejected_.insert(base);
      continue;
    }
    auto parsed = ParseFileName(pending.name);
    if (!parsed.ok()) continue;
    if (uid > kMaxUid) {
      return Status::Error(ErrorCode::kNoSpace, ErrorScope::kMailbox,
                           fmt::format("{}: out of UIDs", dir_));
    }
    Entry entry;
    entry.uid = uid++;
    MessageIds ids;
    ids.email = RandomObjectBytes();
    ids.thread = ThreadBytesFor(*head);
    ids.has_email = ids.has_thread = true;
    entry.ids = ids;
    entry.system = parsed->flags.system;
    entry.letters = parsed->flags.keywords;
    entry.in_new = pending.in_new;
    entry.name = pending.name;
    UidlistRecord record;
    record.uid = entry.uid;
    record.ext = FieldsForIds(ids.email, ids.thread);
    record.name = base;
    records.push_back(std::move(record));
    entries.push_back(std::move(entry));
  }
  for (const auto& base : rejected_) pending_.erase(base);
  if (!records.empty()) {
    if (Status s = WriteRecords(records); !s.ok()) return s;
    for (Entry& entry : entries) {
      pending_.erase(std::string(entry.base()));
      changes.added.push_back(entry.uid);
      index_.Add(std::move(entry));
    }
  }
  Post(changes);
  return Status::Ok();
}

// --- Keywords --------------------------------------------------------------------------

bool Folder::NeedsNewKeywordLetters(const FlagSet& flags) const {
  for (const std::string& keyword : flags.keywords()) {
    if (!keywords_.LetterFor(keyword)) return true;
  }
  return false;
}

Result<NameFlags> Folder::LettersFor(const FlagSet& flags, uint32_t keep_unknown_letters) {
  NameFlags name_flags;
  name_flags.system = flags.system_bits();
  name_flags.keywords = keep_unknown_letters;
  bool assigned = false;
  for (const std::string& keyword : flags.keywords()) {
    auto letter = keywords_.LetterFor(keyword);
    if (!letter) {
      auto fresh = keywords_.Assign(keyword);
      if (!fresh.ok()) {
        (void)LoadKeywords();  // forget letters given in this call
        return fresh.status();
      }
      letter = *fresh;
      assigned = true;
    }
    name_flags.AddLetter(*letter);
  }
  if (assigned) {
    // Under the uidlist lock, as Dovecot writes it; its own dotlock name
    // serves as the temporary file.
    Status s = ReplaceFile(dir_ + "/dovecot-keywords", dir_ + "/dovecot-keywords.lock",
                           keywords_.Serialize(), context_.fsync, context_.owner);
    if (!s.ok()) {
      (void)LoadKeywords();
      return s;
    }
  }
  return name_flags;
}

// --- Messages ------------------------------------------------------------------------------

std::string Folder::NewBaseName(uint64_t size, uint64_t vsize) {
  auto [secs, usecs] = UniqueTime();
  NewFileNameParts parts;
  parts.secs = secs;
  parts.usecs = usecs;
  parts.pid = static_cast<uint64_t>(getpid());
  parts.hostname = HostName();
  parts.size = size;
  parts.vsize = vsize;
  return NewFileName(parts);
}

bool Folder::FillStat(Entry& entry) {
  struct stat st {};
  if (lstat(Path(entry.in_new, entry.name).c_str(), &st) != 0) return false;
  entry.mtime = st.st_mtime;
  entry.size = static_cast<uint64_t>(st.st_size);
  entry.stat_known = true;
  return true;
}

MessageInfo Folder::InfoOf(const Entry& entry) const {
  MessageInfo info;
  info.uid = entry.uid;
  info.flags = FlagsOf(entry, keywords_);
  info.internal_date = entry.mtime;
  info.size = entry.size;
  info.email_id = EmailIdOf(entry.ids, entry.base());
  info.thread_id = ThreadIdOf(entry.ids, entry.base());
  return info;
}

void Folder::Post(const FolderChanges& changes) {
  if (context_.changes == nullptr) return;
  if (!changes.expunged.empty()) {
    context_.changes->Post(Change{Change::Kind::kMessagesExpunged, name_, changes.expunged});
  }
  if (!changes.added.empty()) {
    context_.changes->Post(Change{Change::Kind::kMessagesAdded, name_, changes.added});
  }
  if (!changes.flags_changed.empty()) {
    context_.changes->Post(Change{Change::Kind::kFlagsChanged, name_, changes.flags_changed});
  }
}

Result<MessageInfo> Folder::Get(uint32_t uid) {
  if (Status s = Ensure(); !s.ok()) return s;
  for (int attempt = 0; attempt < 2; ++attempt) {
    Entry* entry = index_.Find(uid);
    if (entry == nullptr) break;
    if (entry->stat_known || FillStat(*entry)) return InfoOf(*entry);
    if (Status s = Reload(); !s.ok()) return s;  // renamed or gone meanwhile
  }
  return Status::NotFound(ErrorScope::kMessage, fmt::format("{}: no UID {}", name_, uid));
}

Status Folder::StatUnknown(uint32_t first, uint32_t last, std::unique_lock<std::mutex>& lock) {
  // stat() the files the index has no size and date for without holding
  // the lock (a first listing of a big folder stats every file), a chunk
  // at a time, so that a million-message folder never holds a million
  // paths at once.
  constexpr size_t kChunk = 4096;
  uint32_t from = first;
  while (from <= last) {
    std::vector<std::pair<uint32_t, std::string>> unknown;
    bool more = false;
    index_.ForRangeWhile(from, last, [&](Entry& e) {
      if (e.stat_known) return true;
      if (unknown.size() == kChunk) {
        more = true;
        return false;
      }
      unknown.emplace_back(e.uid, Path(e.in_new, e.name));
      return true;
    });
    if (unknown.empty()) return Status::Ok();
    std::vector<std::pair<bool, struct stat>> stats(unknown.size());
    lock.unlock();
    for (size_t i = 0; i < unknown.size(); ++i) {
      stats[i].first = lstat(unknown[i].second.c_str(), &stats[i].second) == 0;
    }
    lock.lock();
    if (Status s = Ensure(); !s.ok()) return s;
    for (size_t i = 0; i < unknown.size(); ++i) {
      Entry* entry = index_.Find(unknown[i].first);
      if (entry == nullptr || entry->stat_known || !stats[i].first) continue;
      if (Path(entry->in_new, entry->name) != unknown[i].second) continue;
      entry->mtime = stats[i].second.st_mtime;
      entry->size = static_cast<uint64_t>(stats[i].second.st_size);
      entry->stat_known = true;
    }
    if (!more || unknown.back().first == UINT32_MAX) break;
    from = unknown.back().first + 1;
  }
  return Status::Ok();
}

template <typename Item, typename Make>
Result<std::vector<Item>> Folder::Collect(uint32_t first, uint32_t last,
                                          std::unique_lock<std::mutex>& lock, Make make) {
  if (Status s = Ensure(); !s.ok()) return s;
  std::vector<Item> found;
  if (first > last) return found;
  if (Status s = StatUnknown(first, last, lock); !s.ok()) return s;
  // At its final size at once: growing it would hold the old and the new
  // array together (for a whole million-message folder, 36 MB at peak).
  if (first == 1 && last == UINT32_MAX) found.reserve(index_.size());
  bool missing = false;
  index_.ForRangeWhile(first, last, [&](Entry& e) {
    if (!e.stat_known && !FillStat(e)) {
      missing = true;
      return false;
    }
    found.push_back(make(e));
    return true;
  });
  if (missing) {
    // A file went away under its known name: reread, then answer.
    if (Status s = Reload(); !s.ok()) return s;
    found.clear();
    index_.ForRange(first, last, [&](Entry& e) {
      if (e.stat_known || FillStat(e)) found.push_back(make(e));
    });
  }
  return found;
}

Result<std::vector<MessageInfo>> Folder::Find(uint32_t first, uint32_t last,
                                              std::unique_lock<std::mutex>& lock) {
  return Collect<MessageInfo>(first, last, lock, [this](const Entry& e) { return InfoOf(e); });
}

Result<std::vector<ListedMessage>> Folder::List(std::unique_lock<std::mutex>& lock) {
  return Collect<ListedMessage>(1, UINT32_MAX, lock, [](const Entry& e) {
    return ListedMessage{e.uid, e.mtime, e.size};
  });
}

Result<std::shared_ptr<const ContentReader>> Folder::Open(uint32_t uid) {
  if (Status s = Ensure(); !s.ok()) return s;
  for (int attempt = 0; attempt < 2; ++attempt) {
    Entry* entry = index_.Find(uid);
    if (entry == nullptr) break;
    std::string path = Path(entry->in_new, entry->name);
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
      struct stat st {};
      if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int error = errno;
        close(fd);
        return ErrnoStatus(error == 0 ? EIO : error, "stat", path, ErrorScope::kMessage);
      }
      return std::shared_ptr<const ContentReader>(
          std::make_shared<MessageFile>(fd, static_cast<uint64_t>(st.st_size)));
    }
    if (errno != ENOENT) {
      Status failed = ErrnoStatus(errno, "open", path, ErrorScope::kMessage);
      spdlog::error("maildir: {}", failed.ToString());
      // An unreadable message is an I/O error, not a missing one.
      return Status::Error(ErrorCode::kIo, ErrorScope::kMessage, failed.detail());
    }
    if (Status s = Reload(); !s.ok()) return s;
  }
  return Status::NotFound(ErrorScope::kMessage, fmt::format("{}: no UID {}", name_, uid));
}

namespace {

// Gives `fd`, a file without a name, the name `path`. Only a file that has
// exactly `size` bytes and no name yet: the store never shares an inode
// with a file someone else can reach. False when it cannot be linked (on
// another filesystem, say); the caller copies the bytes instead.
bool LinkUnnamedFile(int fd, uint64_t size, const std::string& path) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 0 ||
      static_cast<uint64_t>(st.st_size) != size) {
    return false;
  }
  // linkat(fd, "", ..., AT_EMPTY_PATH) would need CAP_DAC_READ_SEARCH;
  // through /proc any owner of the descriptor may.
  std::string proc_path = fmt::format("/proc/self/fd/{}", fd);
  if (linkat(AT_FDCWD, proc_path.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) == 0) {
    return true;
  }
  static std::atomic<bool> told{false};  // once: it is the same for every message
  if (!told.exchange(true)) {
    spdlog::info("maildir: new messages are copied into {}, not linked: {}", path, strerror(errno));
  }
  return false;
}

// The process's umask, which open() applies to a new file's mode and
// fchmod() does not. Read without changing it (umask() would, for every
// thread at once).
mode_t ProcessUmask() {
  static const mode_t mask = [] {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("Umask:", 0) == 0)
        return static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8));
    }
    return static_cast<mode_t>(022);
  }();
  return mask;
}

}  // namespace

Result<Folder::Staged> Folder::Stage(const std::string& dir, const AppendMessage& message,
                                     const FolderContext& context) {
  if (message.content == nullptr) return Status::InvalidArgument("append without content");
  // Write the file into tmp/ first, without the folder's lock. Its final
  // name carries S= and W=, which are known only once every byte is written.
  auto [secs, usecs] = UniqueTime();
  Staged staged;
  staged.tmp_base =
      fmt::format("{}.M{}P{}.{}", secs, usecs, getpid(), SanitizeHostname(HostName()));
  staged.tmp_path = dir + "/tmp/" + staged.tmp_base;
  const ContentReader& content = *message.content;
  // A file handed over whole (the driver's spool file) becomes the message
  // itself: linked into tmp/, not copied. That saves writing every byte a
  // second time and, on ext4, creating one inode and freeing another per
  // message (without a journal, ext4 skips recently freed inodes one by
  // one when it creates the next). Its bytes are still read once, for W=.
  const bool adopted = content.adoptable() && content.fd() >= 0 &&
                       LinkUnnamedFile(content.fd(), content.size(), staged.tmp_path);
  int fd = content.fd();
  if (!adopted) {
    fd = open(staged.tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
              context.owner.file_mode);
    if (fd < 0) return ErrnoStatus(errno, "create", staged.tmp_path, ErrorScope::kMailbox);
  }
  context.owner.Apply(fd, staged.tmp_path);
  Status status;
  // A linked file keeps the mode it was made with; give it the one a file
  // created here gets.
  if (adopted && fchmod(fd, context.owner.file_mode & ~ProcessUmask()) != 0) {
    status = ErrnoStatus(errno, "chmod", staged.tmp_path, ErrorScope::kMailbox);
  }
  VirtualSizeCounter counter;
  std::string head;
  // Sized to the message (up to 256 KiB) and not zeroed: most messages are
  // a few KiB, and clearing 256 KiB for each cost more than copying it.
  const size_t buffer_size =
      static_cast<size_t>(std::clamp<uint64_t>(content.size(), 4096, 256 * 1024));
  std::unique_ptr<char[]> buffer(new char[buffer_size]);
  for (uint64_t offset = 0; status.ok() && offset < content.size();) {
    auto n = content.ReadAt(offset, std::span<char>(buffer.get(), buffer_size));
    if (!n.ok()) {
      status = n.status();
      break;
    }
    if (*n == 0) break;
    std::string_view chunk(buffer.get(), *n);
    counter.Add(chunk);
    if (head.size() < kHeaderScanLimit)
      head.append(chunk.substr(0, kHeaderScanLimit - head.size()));
    while (!adopted && !chunk.empty()) {
      ssize_t written = write(fd, chunk.data(), chunk.size());
      if (written < 0) {
        if (errno == EINTR) continue;
        status = ErrnoStatus(errno, "write", staged.tmp_path, ErrorScope::kMailbox);
        break;
      }
      chunk.remove_prefix(static_cast<size_t>(written));
    }
    offset += *n;
  }
  staged.mtime = message.internal_date != 0 ? message.internal_date : static_cast<int64_t>(secs);
  if (status.ok()) {
    struct timespec times[2] = {{static_cast<time_t>(secs), 0},
                                {static_cast<time_t>(staged.mtime), 0}};
    if (futimens(fd, times) != 0) status = ErrnoStatus(errno, "utimens", staged.tmp_path);
  }
  if (status.ok() && context.fsync && fsync(fd) != 0) {
    status = ErrnoStatus(errno, "fsync", staged.tmp_path, ErrorScope::kMailbox);
  }
  // The adopted descriptor stays its owner's to close.
  if (!adopted && close(fd) != 0 && status.ok()) {
    status = ErrnoStatus(errno, "close", staged.tmp_path);
  }
  if (!status.ok()) {
    unlink(staged.tmp_path.c_str());
    return status;
  }
  staged.size = counter.size();
  staged.vsize = counter.vsize();
  staged.thread = ThreadBytesFor(head);
  return staged;
}

Result<uint32_t> Folder::Commit(const Staged& staged, const FlagSet& flags, bool recent) {
  CommitRequest request;
  request.staged = &staged;
  request.flags = &flags;
  request.recent = recent;
  std::unique_lock queue_lock(queue_mu_);
  queue_.push_back(&request);
  while (!request.done) {
    if (committing_) {
      queue_cv_.wait(queue_lock);
      continue;
    }
    // Nobody is committing: commit everything queued, this one included.
    // The next group forms meanwhile, for whoever wakes first.
    committing_ = true;
    std::vector<CommitRequest*> group;
    group.swap(queue_);
    queue_lock.unlock();
    struct Finish {
      Folder* folder;
      std::vector<CommitRequest*>& group;
      std::unique_lock<std::mutex>& queue_lock;
      ~Finish() {  // also if CommitGroup throws: never strand the queue
        if (!queue_lock.owns_lock()) queue_lock.lock();
        for (CommitRequest* r : group) r->done = true;
        folder->committing_ = false;
        folder->queue_cv_.notify_all();
      }
    } finish{this, group, queue_lock};
    std::lock_guard lock(mu);
    CommitGroup(group);
  }
  return std::move(request.result);
}

void Folder::CommitGroup(std::span<CommitRequest* const> group) {
  auto fail_all = [&](const Status& status) {
    for (CommitRequest* request : group) request->result = status;
  };
  if (Status s = Ensure(); !s.ok()) return fail_all(s);
  if (Status s = CheckWritable(); !s.ok()) return fail_all(s);
  auto lock = LockUidlist(context_.lock_timeout);
  if (!lock.ok()) return fail_all(lock.status());
  FolderChanges changes;
  Status refreshed = RefreshUidlist(&changes);
  Post(changes);
  if (!refreshed.ok()) return fail_all(refreshed);

  // Move each file in under the next UID. One that cannot be moved in
  // fails alone, before anything is shared.
  struct Placed {
    CommitRequest* request;
    std::string final_path;
    std::string name;
    bool in_new;
    NameFlags letters;
    MessageIds ids;
    UidlistRecord record;
  };
  std::vector<Placed> placed;
  uint32_t uid = next_uid_;
  bool to_new = false, to_cur = false;
  for (CommitRequest* request : group) {
    const Staged& staged = *request->staged;
    if (uid > kMaxUid) {
      request->result = Status::Error(ErrorCode::kNoSpace, ErrorScope::kMailbox,
                                      fmt::format("{}: out of UIDs", dir_));
      continue;
    }
    auto letters = LettersFor(*request->flags, 0);
    if (!letters.ok()) {
      request->result = letters.status();
      continue;
    }
    std::string base = staged.tmp_base + fmt::format(",S={},W={}", staged.size, staged.vsize);
    bool in_new = request->recent;
    std::string name = base;
    if (!(in_new && request->flags->empty())) {
      auto flagged = WithFlags(base, *letters);
      if (!flagged.ok()) {
        request->result = flagged.status();
        continue;
      }
      name = *flagged;
    }
    std::string final_path = Path(in_new, name);
    if (renameat2(AT_FDCWD, staged.tmp_path.c_str(), AT_FDCWD, final_path.c_str(),
                  RENAME_NOREPLACE) != 0) {
      request->result = ErrnoStatus(errno, "rename", staged.tmp_path, ErrorScope::kMailbox);
      continue;
    }
    (in_new ? to_new : to_cur) = true;
    MessageIds ids;
    ids.email = RandomObjectBytes();
    ids.thread = staged.thread;
    ids.has_email = ids.has_thread = true;
    UidlistRecord record;
    record.uid = uid++;
    record.ext = FieldsForIds(ids.email, ids.thread);
    record.name = std::move(base);
    placed.push_back(Placed{request, std::move(final_path), std::move(name), in_new, *letters, ids,
                            std::move(record)});
  }
  if (placed.empty()) return;

  // One uidlist write and one sync for the whole group.
  std::vector<UidlistRecord> records;
  records.reserve(placed.size());
  for (const Placed& p : placed) records.push_back(p.record);
  std::vector<std::string> dirs;
  if (to_new) dirs.push_back(dir_ + "/new");
  if (to_cur) dirs.push_back(dir_ + "/cur");
  if (Status status = WriteRecords(records, dirs); !status.ok()) {
    // Nothing may stay stored when the append reports failure.
    for (Placed& p : placed) {
      const std::string& tmp_path = p.request->staged->tmp_path;
      if (rename(p.final_path.c_str(), tmp_path.c_str()) != 0) unlink(p.final_path.c_str());
      p.request->result = status;
    }
    return;
  }
  FolderChanges added;
  for (Placed& p : placed) {
    Entry entry;
    entry.uid = p.record.uid;
    entry.ids = p.ids;
    entry.system = p.letters.system;
    entry.letters = p.letters.keywords;
    entry.in_new = p.in_new;
    entry.mtime = p.request->staged->mtime;
    entry.size = p.request->staged->size;
    entry.stat_known = true;
    entry.name = std::move(p.name);
    index_.Add(std::move(entry));
    added.added.push_back(p.record.uid);
    p.request->result = p.record.uid;
  }
  Post(added);
}

Result<FlagSet> Folder::Update(uint32_t uid, const FlagSet& flags, FlagOp op) {
  if (Status s = Ensure(); !s.ok()) return s;
  // No CheckWritable up front (three access() calls per message): the
  // rename below fails with EACCES, EPERM or EROFS, which are kReadOnly
  // too. Only a change that needs no rename asks.
  Dotlock lock;
  for (int attempt = 0; attempt < 3; ++attempt) {
    Entry* entry = index_.Find(uid);
    if (entry == nullptr) break;
    FlagSet before = FlagsOf(*entry, keywords_);
    FlagSet after = before;
    after.Apply(op, flags);
    if (after == before) {
      if (Status s = CheckWritable(); !s.ok()) return s;
      return after;
    }
    if (!lock.held() && NeedsNewKeywordLetters(after)) {
      auto acquired = LockUidlist(context_.lock_timeout);
      if (!acquired.ok()) return acquired.status();
      lock = std::move(acquired).value();
      if (Status s = LoadKeywords(); !s.ok()) return s;
      continue;  // the table may have changed: start over
    }
    // Letters with no keyword are kept in the name, as Dovecot keeps them.
    uint32_t unknown = 0;
    for (int i = 0; i < 26; ++i) {
      if ((entry->letters & (1u << i)) != 0 && !keywords_.KeywordFor(static_cast<char>('a' + i))) {
        unknown |= 1u << i;
      }
    }
    auto letters = LettersFor(after, unknown);
    if (!letters.ok()) return letters.status();
    auto name = WithFlags(entry->name, *letters);
    if (!name.ok()) return name.status();
    entry = index_.Find(uid);  // LettersFor does not touch the index; be safe
    std::string from = Path(entry->in_new, entry->name);
    std::string to = Path(entry->in_new, *name);
    if (rename(from.c_str(), to.c_str()) != 0) {
      if (errno != ENOENT) return ErrnoStatus(errno, "rename", from, ErrorScope::kMessage);
      if (Status s = Reload(); !s.ok()) return s;  // renamed by someone else: retry
      continue;
    }
    entry->name = std::move(name).value();
    entry->system = letters->system;
    entry->letters = letters->keywords;
    FolderChanges changes;
    changes.flags_changed.push_back(uid);
    Post(changes);
    return FlagsOf(*entry, keywords_);
  }
  return Status::NotFound(ErrorScope::kMessage, fmt::format("{}: no UID {}", name_, uid));
}

Status Folder::Delete(std::span<const uint32_t> uids) {
  if (Status s = Ensure(); !s.ok()) return s;
  if (Status s = CheckWritable(); !s.ok()) return s;
  FolderChanges changes;
  bool removed_new = false, removed_cur = false;
  for (uint32_t uid : uids) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      Entry* entry = index_.Find(uid);
      if (entry == nullptr) break;
      std::string path = Path(entry->in_new, entry->name);
      if (unlink(path.c_str()) == 0) {
        (entry->in_new ? removed_new : removed_cur) = true;
        Entry removed = index_.Remove(uid);
        orphans_[std::string(removed.base())] = Orphan{uid, removed.ids};
        changes.expunged.push_back(uid);
        break;
      }
      if (errno != ENOENT) {
        Post(changes);
        return ErrnoStatus(errno, "unlink", path, ErrorScope::kMessage);
      }
      if (Status s = Reload(); !s.ok()) return s;
    }
  }
  Status status;
  if (context_.fsync && removed_cur) status = SyncDirectory(dir_ + "/cur");
  if (context_.fsync && removed_new && status.ok()) status = SyncDirectory(dir_ + "/new");
  std::sort(changes.expunged.begin(), changes.expunged.end());
  Post(changes);
  return status;
}

Result<std::vector<uint32_t>> Folder::ClaimRecent() {
  if (Status s = Ensure(); !s.ok()) return s;
  std::vector<uint32_t> claimed;
  index_.ForEach([&](Entry& e) {
    if (!e.in_new) return;
    claimed.push_back(e.uid);
    if (readonly_) return;
    // new/ -> cur/, with ":2," and the flags the name already had.
    auto name = WithFlags(e.name, NameFlagsOf(e));
    if (!name.ok()) return;
    std::string from = Path(true, e.name);
    std::string to = Path(false, *name);
    if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
      if (errno != ENOENT)
        spdlog::warn("maildir: cannot move {} to cur/: {}", from, strerror(errno));
      return;
    }
    e.name = std::move(name).value();
    e.in_new = false;
  });
  return claimed;
}

Status Folder::Cleanup() {
  if (Status s = Ensure(); !s.ok()) return s;
  if (readonly_) return Status::Ok();
  // Dovecot's compress rule: rewrite once about a quarter of the lines
  // belong to messages that are gone.
  if (uidlist_records_ * 75 / 100 < index_.size() && !uidlist_needs_rewrite_) return Status::Ok();
  auto lock = LockUidlist(context_.lock_timeout);
  if (!lock.ok()) return lock.status();
  FolderChanges changes;
  if (Status s = RefreshUidlist(&changes); !s.ok()) return s;
  Post(changes);
  return RewriteUidlist({});
}

MailboxSnapshot Folder::Snapshot() {
  MailboxSnapshot snapshot;
  snapshot.mailbox_id = guid_;
  snapshot.readonly = IsReadOnly();
  snapshot.uid_validity = uid_validity_;
  snapshot.next_uid = next_uid_;
  snapshot.exists = static_cast<uint32_t>(index_.size());
  index_.ForEach([&](Entry& e) {
    if (e.in_new) ++snapshot.recent;
    if ((e.system & static_cast<uint8_t>(SystemFlag::kSeen)) == 0) {
      ++snapshot.unseen;
      if (snapshot.first_unseen == 0) snapshot.first_unseen = e.uid;
    }
  });
  return snapshot;
}

// --- Copy and move ------------------------------------------------------------------------

Result<Folder::Source> Folder::Describe(uint32_t uid) {
  if (Status s = Ensure(); !s.ok()) return s;
  for (int attempt = 0; attempt < 2; ++attempt) {
    Entry* entry = index_.Find(uid);
    if (entry == nullptr) break;
    if (!entry->stat_known && !FillStat(*entry)) {
      if (Status s = Reload(); !s.ok()) return s;
      continue;
    }
    Source source;
    source.path = Path(entry->in_new, entry->name);
    source.base = std::string(entry->base());
    source.flags = FlagsOf(*entry, keywords_);
    source.ids = entry->ids;
    // The copy carries explicit ids, so they survive a new base name.
    if (!source.ids.has_email) source.ids.email = Hash128("email:" + source.base);
    if (!source.ids.has_thread) source.ids.thread = Hash128("thread:" + source.base);
    source.ids.has_email = source.ids.has_thread = true;
    source.mtime = entry->mtime;
    source.size = entry->size;
    return source;
  }
  return Status::NotFound(ErrorScope::kMessage, fmt::format("{}: no UID {}", name_, uid));
}

Result<uint32_t> Folder::Receive(const Source& source, bool move, bool recent) {
  if (Status s = Ensure(); !s.ok()) return s;
  // No CheckWritable: taking the lock, the link or the rename fail with
  // kReadOnly where the folder cannot be written.
  auto lock = LockUidlist(context_.lock_timeout);
  if (!lock.ok()) return lock.status();
  // A move keeps the lock for the next one of its burst (see the header),
  // unless the last burst held it for kBurstMaxHold a moment ago: then
  // others waiting for it get their turn first.
  const Clock::time_point now = Clock::now();
  const bool burst = move && context_.schedule;
  const bool keep_lock = burst && now >= burst_resume_;
  struct Keep {
    Folder* folder;
    Dotlock& lock;
    bool burst, keep_lock;
    Clock::time_point now;
    ~Keep() {
      if (!burst) return;
      if (keep_lock && lock.held() && !folder->burst_lock_.held()) {
        folder->burst_started_ = now;
        folder->burst_lock_ = std::move(lock);
      }
      folder->burst_last_ = now;
      folder->deferred_ = true;
      auto when = now + kBurstIdle;
      if (folder->burst_lock_.held()) when = std::min(when, folder->burst_started_ + kBurstMaxHold);
      folder->context_.schedule(when);
    }
  } keep{this, *lock, burst, keep_lock, now};
  FolderChanges changes;
  if (Status s = RefreshUidlist(&changes); !s.ok()) return s;
  Post(changes);
  auto letters = LettersFor(source.flags, 0);
  if (!letters.ok()) return letters.status();

  // Dovecot keeps the base name (a hard link under the same name); a base
  // this folder already knows, even from a stale line, gets a new one.
  std::string base = source.base;
  if (index_.FindBase(base) != nullptr || pending_.contains(base) || orphans_.contains(base) ||
      rejected_.contains(base)) {
    auto parsed = ParseFileName(base);
    struct stat st {};
    if (stat(source.path.c_str(), &st) != 0) {
      return ErrnoStatus(errno, "stat", source.path, ErrorScope::kMessage);
    }
    uint64_t size = static_cast<uint64_t>(st.st_size);
    uint64_t vsize = 0;
    if (parsed.ok() && parsed->vsize && parsed->size == size) {
      vsize = *parsed->vsize;
    } else {
      auto bytes = ReadWholeFile(source.path);
      if (!bytes.ok()) return bytes.status();
      vsize = VirtualSize(*bytes);
    }
    base = NewBaseName(size, vsize);
  }
  bool in_new = recent;
  std::string name = base;
  if (!(in_new && source.flags.empty())) {
    auto flagged = WithFlags(base, *letters);
    if (!flagged.ok()) return flagged.status();
    name = *flagged;
  }
  std::string target = Path(in_new, name);
  int result =
      move ? renameat2(AT_FDCWD, source.path.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE)
           : link(source.path.c_str(), target.c_str());
  if (result != 0 && !move && (errno == EXDEV || errno == EPERM || errno == EMLINK)) {
    // No hard links here: copy the bytes through tmp/.
    auto bytes = ReadWholeFile(source.path);
    if (!bytes.ok()) return bytes.status();
    std::string tmp = dir_ + "/tmp/" + base;
    Status s = ReplaceFile(target, tmp, *bytes, context_.fsync, context_.owner);
    if (!s.ok()) return s;
    struct timespec times[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(source.mtime), 0}};
    utimensat(AT_FDCWD, target.c_str(), times, 0);
    result = 0;
  }
  if (result != 0) {
    if (errno == ENOENT) {
      return Status::NotFound(ErrorScope::kMessage, fmt::format("{} is gone", source.path));
    }
    return ErrnoStatus(errno, move ? "rename" : "link", source.path, ErrorScope::kMessage);
  }
  uint32_t uid = next_uid_;
  UidlistRecord record;
  record.uid = uid;
  record.ext = FieldsForIds(source.ids.email, source.ids.thread);
  record.name = base;
  const std::string target_dir = dir_ + (in_new ? "/new" : "/cur");
  const bool deferred = burst && context_.fsync;
  Status status = WriteRecords({record}, {target_dir}, /*durable=*/!deferred);
  if (!status.ok()) {
    // Undo: the message must be where it was, and only there.
    if (move) {
      if (rename(target.c_str(), source.path.c_str()) != 0) {
        spdlog::error("maildir: cannot move {} back to {}: {}", target, source.path,
                      strerror(errno));
      }
    } else {
      unlink(target.c_str());
    }
    return status;
  }
  Entry entry;
  entry.uid = uid;
  entry.ids = source.ids;
  entry.system = letters->system;
  entry.letters = letters->keywords;
  entry.in_new = in_new;
  entry.name = std::move(name);
  // The same file (renamed, or linked): no stat() for its first getattr.
  entry.mtime = source.mtime;
  entry.size = source.size;
  entry.stat_known = true;
  index_.Add(std::move(entry));
  if (deferred) {
    // Synced by Tick once the burst pauses (see the header).
    if (unsynced_.empty()) unsynced_since_ = now;
    unsynced_[target_dir] = false;
    unsynced_[UidlistPath()] = true;
  }
  changes = FolderChanges();
  changes.added.push_back(uid);
  Post(changes);
  return uid;
}

Folder::~Folder() { Tick(Clock::now(), /*finish=*/true); }

Folder::Clock::time_point Folder::Tick(Clock::time_point now, bool finish) {
  std::vector<SyncTarget> targets;
  Clock::time_point next = Clock::time_point::max();
  {
    std::lock_guard lock(mu);
    const bool paused = finish || now - burst_last_ >= kBurstIdle;
    if (burst_lock_.held()) {
      if (paused || now - burst_started_ >= kBurstMaxHold) {
        if (!paused) burst_resume_ = now + kBurstPause;
        burst_lock_.Release();
      } else {
        next = std::min(burst_last_ + kBurstIdle, burst_started_ + kBurstMaxHold);
      }
    }
    if (!unsynced_.empty()) {
      if (paused || now - unsynced_since_ >= kMaxUnsynced) {
        for (auto& [path, data_only] : unsynced_) targets.push_back(SyncTarget{path, data_only});
        unsynced_.clear();
      } else {
        next = std::min(next, std::min(burst_last_ + kBurstIdle, unsynced_since_ + kMaxUnsynced));
      }
    }
    deferred_ = burst_lock_.held() || !unsynced_.empty();
  }
  // Without mu: a sync waits for the disk, and moves go on meanwhile.
  if (!targets.empty()) {
    Status synced = SyncAll(targets);
    // A folder renamed or deleted meanwhile: syncfs at fsync() or unmount
    // covers wherever its files are now.
    if (!synced.ok() && synced.code() != ErrorCode::kNotFound) {
      spdlog::error("maildir: cannot make moves durable: {}", synced.ToString());
    }
  }
  return next;
}

void Folder::Forget(uint32_t uid) {
  Entry* entry = index_.Find(uid);
  if (entry == nullptr) return;
  Entry removed = index_.Remove(uid);
  orphans_[std::string(removed.base())] = Orphan{uid, removed.ids};
  FolderChanges changes;
  changes.expunged.push_back(uid);
  Post(changes);
}

}  // namespace mailfs::maildir
