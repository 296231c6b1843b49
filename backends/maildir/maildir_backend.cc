// The Maildir store: the mailbox list, subscriptions and UID validities of
// a Maildir root, one Folder per mailbox, and a watcher thread that follows
// what other programs (Dovecot, pymap, an MDA) change.
//
// Lock order: Store::mu, then a Folder's mu, then the ChangeLog's own
// mutex. Folder code never takes Store::mu. Copy and Move hold one folder's
// mutex at a time.
//
// A mailbox is identified by the GUID in its dovecot-uidlist header (what
// pymap reports as MAILBOXID): it moves with the directory, so a handle
// follows renames, also renames made by Dovecot, which keeps the uidlist.
#include "backends/maildir/maildir_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "backends/maildir/files.h"
#include "backends/maildir/folder.h"
#include "backends/maildir/format/layout.h"
#include "backends/maildir/format/mutf7.h"
#include "backends/maildir/format/subscriptions.h"
#include "backends/maildir/format/uidlist.h"
#include "src/mailbox_name.h"

namespace mailfs {
namespace {

using maildir::Dotlock;
using maildir::ErrnoStatus;
using maildir::Folder;
using maildir::Layout;
using maildir::NameEncoding;

constexpr uint32_t kWatchMask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF |
                                IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK;

// How long the watcher lets inotify events gather after the first.
constexpr auto kWatchGather = std::chrono::milliseconds(2);

// Dovecot's trash names: a mailbox being deleted is renamed to this first.
std::string_view TrashName(Layout layout) {
  return layout == Layout::kMaildirPlusPlus ? "..DOVECOT-TRASHED" : "..DOVECOT-TrasH";
}

// Removes a directory tree that holds no mail any more (a deleted
// mailbox's leftovers: index files, tmp/). Never follows symlinks.
void RemoveTree(const std::string& path) {
  DIR* d = opendir(path.c_str());
  if (d != nullptr) {
    while (struct dirent* e = readdir(d)) {
      std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      std::string child = path + "/" + std::string(name);
      struct stat st {};
      if (lstat(child.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        RemoveTree(child);
      } else {
        unlink(child.c_str());
      }
    }
    closedir(d);
  }
  rmdir(path.c_str());
}

// True when cur/ or new/ of `dir` holds any message file.
bool HoldsMessages(const std::string& dir) {
  for (const char* sub : {"/cur", "/new"}) {
    DIR* d = opendir((dir + sub).c_str());
    if (d == nullptr) continue;
    bool found = false;
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') {
        found = true;
        break;
      }
    }
    closedir(d);
    if (found) return true;
  }
  return false;
}

// HoldsMessages for a directory and every directory below it.
bool HoldsMailDeep(const std::string& dir, int depth = 0) {
  if (depth > 64) return true;  // be safe: treat as holding mail
  if (HoldsMessages(dir)) return true;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return false;
  std::vector<std::string> children;
  while (struct dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == ".." || name == "cur" || name == "new" || name == "tmp") continue;
    if (e->d_type == DT_DIR) children.emplace_back(name);
  }
  closedir(d);
  for (const auto& child : children) {
    if (HoldsMailDeep(dir + "/" + child, depth + 1)) return true;
  }
  return false;
}

Status NoSuchMailbox(std::string_view name) {
  return Status::NotFound(ErrorScope::kMailbox, fmt::format("no mailbox {}", name));
}

Status NotEmpty(std::string_view name, std::string_view what) {
  return Status::Error(ErrorCode::kNotEmpty, ErrorScope::kMailbox,
                       fmt::format("{} still has {}", name, what));
}

// The mailbox GUID and UID validity in a folder's uidlist header, or
// nullopt when it has none (missing, or a header without G).
struct UidlistIdentity {
  std::string guid;
  uint32_t uid_validity = 0;
};
std::optional<UidlistIdentity> ReadIdentity(const std::string& dir) {
  std::string path = dir + "/dovecot-uidlist";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return std::nullopt;
  char buffer[512];
  ssize_t n = read(fd, buffer, sizeof buffer);
  close(fd);
  if (n <= 0) return std::nullopt;
  std::string_view head(buffer, static_cast<size_t>(n));
  size_t eol = head.find('\n');
  if (eol == std::string_view::npos) return std::nullopt;
  auto parsed = maildir::Uidlist::Parse(head.substr(0, eol + 1));
  if (!parsed.ok() || parsed->header.guid.empty()) return std::nullopt;
  return UidlistIdentity{parsed->header.guid, parsed->header.uid_validity};
}

struct Listing {
  std::map<std::string, std::string> mailboxes;  // name -> directory relative to the root
  std::vector<std::string> directories;          // every directory to watch for list changes
  std::vector<maildir::DecodedMailboxName> decoded;
};

struct WatchRole {
  std::weak_ptr<Folder> folder;
  int sub = 0;  // 0: the folder's directory, 1: new/, 2: cur/
  bool list = false;
};

class Store : public std::enable_shared_from_this<Store> {
 public:
  explicit Store(MaildirOptions options, maildir::FileOwner owner) : options_(std::move(options)) {
    context_.owner = owner;
    context_.fsync = options_.fsync;
    context_.lock_timeout = options_.lock_timeout;
    context_.changes = &changes_;
    context_.schedule = [this](Clock::time_point when) { ScheduleDeferred(when); };
    root_fd_ = open(options_.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  ~Store() {
    StopWatcher();
    StopDeferred();
    if (root_fd_ >= 0) close(root_fd_);
  }

  const MaildirOptions& options() const { return options_; }
  ChangeLog& changes() { return changes_; }

  // Called at the start of every operation: starts the watcher once (not
  // at open: main may still fork), and without one, makes the folder
  // reread the disk, since nothing else tells it of changes.
  void Prepare(Folder* folder) {
    std::call_once(watcher_once_, [this] { StartWatcher(); });
    if (folder != nullptr && !watching_.load()) folder->MarkStale();
  }

  std::mutex mu;

  // The mailbox list, rescanned when it may have changed. REQUIRES(mu)
  Result<const Listing*> CurrentListing() {
    if (!listing_valid_ || !watching_.load()) {
      Listing fresh;
      if (Status s = Scan(&fresh); !s.ok()) return s;
      PostListDiff(listing_scanned_ ? &listing_ : nullptr, fresh);
      listing_ = std::move(fresh);
      listing_valid_ = listing_scanned_ = true;
      Relocate();
      for (const std::string& dir : listing_.directories) AddWatch(dir, nullptr, 0, true);
    }
    return &listing_;
  }
  // REQUIRES(mu)
  void InvalidateListingLocked() { listing_valid_ = false; }

  NameEncoding Encoding() {
    if (options_.encoding) return *options_.encoding;
    return maildir::DetectNameEncoding(listing_.decoded);
  }

  std::string DirOf(const std::string& rel) const {
    return rel.empty() ? options_.root : options_.root + "/" + rel;
  }

  // The folder of a listed mailbox, made ready (uidlist with a GUID).
  // REQUIRES(mu)
  Result<std::shared_ptr<Folder>> FolderFor(const std::string& name, const std::string& rel) {
    auto cached = by_name_.find(name);
    if (cached != by_name_.end() && !cached->second->deleted()) return cached->second;
    std::string dir = DirOf(rel);
    auto identity = ReadIdentity(dir);
    if (!identity) {
      auto made = GiveUidlist(dir);
      if (!made.ok()) return made.status();
      identity = *made;
    }
    std::shared_ptr<Folder>& folder = folders_[identity->guid];
    if (folder == nullptr || folder->deleted()) {
      folder = std::make_shared<Folder>(context_, dir, name, identity->guid);
      AddWatch(dir, folder, 0, false);
      AddWatch(dir + "/new", folder, 1, false);
      AddWatch(dir + "/cur", folder, 2, false);
    } else if (folder->dir() != dir || folder->name() != name) {
      std::lock_guard folder_lock(folder->mu);
      folder->Relocate(dir, name);
    }
    by_name_[name] = folder;
    return folder;
  }

  // A new UIDVALIDITY from the root's counter, as Dovecot hands them out:
  // the empty marker file dovecot-uidvalidity.<hex> is renamed to the next
  // value (the rename is the cross-process lock), and dovecot-uidvalidity
  // holds the last value. The first is the current time. REQUIRES(mu)
  uint32_t NextUidValidity() {
    const std::string& root = options_.root;
    for (int attempt = 0; attempt < 20; ++attempt) {
      std::optional<uint32_t> current;
      if (DIR* d = opendir(root.c_str())) {
        while (struct dirent* e = readdir(d)) {
          std::string_view name = e->d_name;
          constexpr std::string_view kPrefix = "dovecot-uidvalidity.";
          if (name.size() == kPrefix.size() + 8 && name.starts_with(kPrefix)) {
            uint32_t value = 0;
            if (sscanf(e->d_name + kPrefix.size(), "%8x", &value) == 1) current = value;
          }
        }
        closedir(d);
      }
      uint32_t now = static_cast<uint32_t>(time(nullptr));
      uint32_t next = current ? *current + 1 : now;
      if (next == 0) next = 1;
      std::string next_marker = fmt::format("{}/dovecot-uidvalidity.{:08x}", root, next);
      bool claimed = false;
      if (current) {
        std::string marker = fmt::format("{}/dovecot-uidvalidity.{:08x}", root, *current);
        claimed = renameat2(AT_FDCWD, marker.c_str(), AT_FDCWD, next_marker.c_str(),
                            RENAME_NOREPLACE) == 0;
      } else {
        int fd = open(next_marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        if (fd >= 0) {
          context_.owner.Apply(fd, next_marker);
          close(fd);
          claimed = true;
        }
      }
      if (!claimed) continue;  // another process took it: look again
      (void)maildir::ReplaceFile(root + "/dovecot-uidvalidity", root + "/dovecot-uidvalidity.tmp",
                                 fmt::format("{:08x}", next), false, context_.owner);
      return next;
    }
    // The counter is unusable (a read-only root?): time still gives a value.
    return static_cast<uint32_t>(time(nullptr));
  }

  // Creates the uidlist of a folder that has none, or gives a GUID to one
  // without (Dovecot would do the same on first access). REQUIRES(mu)
  Result<UidlistIdentity> GiveUidlist(const std::string& dir) {
    auto lock = Dotlock::Acquire(dir + "/dovecot-uidlist", options_.lock_timeout);
    if (!lock.ok()) return lock.status();
    if (auto identity = ReadIdentity(dir)) return *identity;
    std::string guid = maildir::HexOf(maildir::RandomObjectBytes());
    auto bytes = maildir::ReadWholeFile(dir + "/dovecot-uidlist");
    if (bytes.ok()) {
      auto parsed = maildir::Uidlist::Parse(*bytes);
      if (parsed.ok()) {
        // Keep every UID; only the GUID is new.
        parsed->header.guid = guid;
        parsed->header.next_uid = parsed->NextUid();
        auto serialized = parsed->Serialize();
        if (!serialized.ok()) return serialized.status();
        Status s = maildir::ReplaceFile(dir + "/dovecot-uidlist", dir + "/dovecot-uidlist.tmp",
                                        *serialized, options_.fsync, context_.owner);
        if (!s.ok()) return s;
        return UidlistIdentity{guid, parsed->header.uid_validity};
      }
      spdlog::warn("maildir: {}/dovecot-uidlist: {}; starting a new one", dir,
                   parsed.status().ToString());
    } else if (bytes.status().code() == ErrorCode::kCorrupt) {
      spdlog::warn("maildir: {}; starting a new one", bytes.status().detail());
    } else if (bytes.status().code() != ErrorCode::kNotFound) {
      return bytes.status();  // an I/O error: never replace what may be fine
    }
    uint32_t uid_validity = NextUidValidity();
    Status s = Folder::CreateUidlist(dir, uid_validity, guid, context_);
    if (!s.ok()) return s;
    return UidlistIdentity{guid, uid_validity};
  }

  const maildir::FolderContext& context() const { return context_; }

  // syncfs() of the filesystem of the root, and of any other that a
  // folder in use lives on (a mount point inside the store). The root's
  // descriptor is open from the start: syncfs reports a writeback error
  // only to descriptors open when it happened (and once to each), so one
  // opened now would miss the errors of messages written earlier.
  Status Sync() {
    if (root_fd_ < 0) return ErrnoStatus(EBADF, "open", options_.root);
    // Bursts of moves end here: their locks go, their syncs are done (and
    // syncfs below reports what failed).
    FinishDeferred();
    Status status;
    struct stat root_stat {};
    if (fstat(root_fd_, &root_stat) != 0) return ErrnoStatus(errno, "stat", options_.root);
    if (syncfs(root_fd_) != 0) status = ErrnoStatus(errno, "syncfs", options_.root);
    std::vector<std::shared_ptr<Folder>> folders;
    {
      std::lock_guard lock(mu);
      folders = LoadedFolders();
    }
    std::set<dev_t> synced{root_stat.st_dev};
    for (const auto& folder : folders) {
      // Not under the folder's lock, which a group commit may hold.
      const std::string dir = folder->UnlockedDir();
      int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) continue;  // gone meanwhile: nothing of it to sync
      struct stat st {};
      if (fstat(fd, &st) == 0 && synced.insert(st.st_dev).second && syncfs(fd) != 0 &&
          status.ok()) {
        status = ErrnoStatus(errno, "syncfs", dir);
      }
      close(fd);
    }
    return status;
  }

  // After a rename or delete by this store. REQUIRES(mu)
  void ForgetNames() { by_name_.clear(); }
  std::vector<std::shared_ptr<Folder>> LoadedFolders() {
    std::vector<std::shared_ptr<Folder>> out;
    for (auto& [guid, folder] : folders_) out.push_back(folder);
    return out;
  }

  // --- Deferred work of folders (Folder::Tick) ------------------------------------

  using Clock = std::chrono::steady_clock;

  // A folder wants Tick called by `when`: wakes the thread if it would
  // sleep longer, so that a burst of moves costs a wake-up per pause, not
  // one per move.
  void ScheduleDeferred(Clock::time_point when) {
    std::lock_guard lock(deferred_mu_);
    if (deferred_stopping_) return;
    if (!deferred_thread_.joinable()) {
      deferred_thread_ = std::thread([this] { DeferredLoop(); });
    }
    if (when < deferred_next_) {
      deferred_next_ = when;
      deferred_cv_.notify_one();
    }
  }

  // Ticks every folder with deferred work; returns the earliest time one
  // wants to be ticked again.
  Clock::time_point TickFolders(bool finish) {
    std::vector<std::shared_ptr<Folder>> folders;
    {
      std::lock_guard lock(mu);
      folders = LoadedFolders();
    }
    Clock::time_point next = Clock::time_point::max();
    for (const auto& folder : folders) {
      if (folder->has_deferred()) next = std::min(next, folder->Tick(Clock::now(), finish));
    }
    return next;
  }

  void FinishDeferred() { (void)TickFolders(/*finish=*/true); }

  void DeferredLoop() {
    std::unique_lock lock(deferred_mu_);
    while (!deferred_stopping_) {
      if (Clock::now() < deferred_next_) {
        if (deferred_next_ == Clock::time_point::max()) {
          deferred_cv_.wait(lock);
        } else {
          deferred_cv_.wait_until(lock, deferred_next_);
        }
        continue;
      }
      deferred_next_ = Clock::time_point::max();
      lock.unlock();
      Clock::time_point next = TickFolders(/*finish=*/false);
      lock.lock();
      deferred_next_ = std::min(deferred_next_, next);
    }
  }

  void StopDeferred() {
    {
      std::lock_guard lock(deferred_mu_);
      deferred_stopping_ = true;
      deferred_cv_.notify_one();
    }
    if (deferred_thread_.joinable()) deferred_thread_.join();
    FinishDeferred();
  }

 private:
  Status Scan(Listing* out) {
    const std::string& root = options_.root;
    out->mailboxes[std::string(kInbox)] = "";
    out->directories.push_back(root);
    if (options_.layout == Layout::kMaildirPlusPlus) {
      DIR* d = opendir(root.c_str());
      if (d == nullptr) return ErrnoStatus(errno, "opendir", root);
      while (struct dirent* e = readdir(d)) {
        std::string_view entry = e->d_name;
        if (!maildir::IsMaildirPlusPlusFolderEntry(entry)) continue;
        if (!maildir::IsDirectoryEntry(d, e)) continue;
        auto decoded = maildir::MailboxNameOfDirectory(entry, Layout::kMaildirPlusPlus);
        if (!decoded.ok()) {
          spdlog::warn("maildir: ignoring folder {}: {}", maildir::PrintableForLog(entry),
                       decoded.status().ToString());
          continue;
        }
        out->mailboxes.emplace(decoded->name, std::string(entry));
        out->decoded.push_back(std::move(decoded).value());
      }
      closedir(d);
      return Status::Ok();
    }
    ScanFs("", 0, out);
    return Status::Ok();
  }

  void ScanFs(const std::string& rel, int depth, Listing* out) {
    if (depth > 64) return;
    std::string dir = DirOf(rel);
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) return;
    std::vector<std::string> children;
    while (struct dirent* e = readdir(d)) {
      std::string_view entry = e->d_name;
      if (!maildir::IsFsChildEntry(entry)) continue;
      if (!maildir::IsDirectoryEntry(d, e)) continue;
      children.emplace_back(entry);
    }
    closedir(d);
    for (const std::string& child : children) {
      std::string child_rel = rel.empty() ? child : rel + "/" + child;
      auto decoded = maildir::MailboxNameOfDirectory(child_rel, Layout::kFs);
      if (!decoded.ok()) {
        spdlog::warn("maildir: ignoring folder {}: {}", maildir::PrintableForLog(child_rel),
                     decoded.status().ToString());
        continue;
      }
      out->directories.push_back(DirOf(child_rel));
      struct stat st {};
      bool selectable = !IsInbox(decoded->name) &&
                        stat((DirOf(child_rel) + "/cur").c_str(), &st) == 0 && S_ISDIR(st.st_mode);
      if (selectable) out->mailboxes.emplace(decoded->name, child_rel);
      out->decoded.push_back(std::move(decoded).value());
      ScanFs(child_rel, depth + 1, out);
    }
  }

  // Posts what a rescan found added or removed. REQUIRES(mu)
  void PostListDiff(const Listing* before, const Listing& after) {
    if (before == nullptr) return;
    for (const auto& [name, rel] : before->mailboxes) {
      auto it = after.mailboxes.find(name);
      if (it == after.mailboxes.end() || it->second != rel) {
        changes_.Post(Change{Change::Kind::kMailboxRemoved, name, {}});
      }
    }
    for (const auto& [name, rel] : after.mailboxes) {
      auto it = before->mailboxes.find(name);
      if (it == before->mailboxes.end() || it->second != rel) {
        changes_.Post(Change{Change::Kind::kMailboxAdded, name, {}});
      }
    }
  }

  // Points every loaded folder at where its GUID is now, and marks those
  // whose directory is gone as deleted. REQUIRES(mu)
  void Relocate() {
    by_name_.clear();
    std::map<std::string, std::pair<std::string, std::string>> found;  // guid -> name, dir
    for (auto& [guid, folder] : folders_) {
      if (folder->deleted()) continue;
      auto it = listing_.mailboxes.find(folder->name());
      if (it != listing_.mailboxes.end() && DirOf(it->second) == folder->dir()) {
        auto identity = ReadIdentity(folder->dir());
        if (identity && identity->guid == guid) continue;  // unchanged
      }
      if (found.empty()) {
        for (const auto& [name, rel] : listing_.mailboxes) {
          if (auto identity = ReadIdentity(DirOf(rel))) {
            found[identity->guid] = {name, DirOf(rel)};
          }
        }
        found.emplace("", std::pair<std::string, std::string>{});  // scanned
      }
      std::lock_guard folder_lock(folder->mu);
      auto where = found.find(guid);
      if (where == found.end() || guid.empty()) {
        folder->MarkDeleted();
      } else {
        folder->Relocate(where->second.second, where->second.first);
      }
    }
    std::erase_if(folders_, [](const auto& item) { return item.second->deleted(); });
  }

  // --- The watcher -------------------------------------------------------------

  void StartWatcher() {
    inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (inotify_fd_ < 0 || wake_fd_ < 0) {
      spdlog::warn("maildir: no inotify ({}); rereading the store on every operation",
                   strerror(errno));
      return;
    }
    {
      std::lock_guard lock(mu);
      AddWatch(options_.root, nullptr, 0, true);
    }
    watching_ = true;
    thread_ = std::thread([this] { WatchLoop(); });
  }

  void StopWatcher() {
    if (thread_.joinable()) {
      stopping_ = true;
      uint64_t one = 1;
      (void)!write(wake_fd_, &one, sizeof one);
      thread_.join();
    }
    if (inotify_fd_ >= 0) close(inotify_fd_);
    if (wake_fd_ >= 0) close(wake_fd_);
    inotify_fd_ = wake_fd_ = -1;
  }

  // REQUIRES(mu)
  void AddWatch(const std::string& dir, const std::shared_ptr<Folder>& folder, int sub, bool list) {
    if (inotify_fd_ < 0) return;
    int wd = inotify_add_watch(inotify_fd_, dir.c_str(), kWatchMask);
    if (wd < 0) {
      if (errno != ENOENT) {
        spdlog::warn("maildir: cannot watch {}: {}; changes by others show late", dir,
                     strerror(errno));
        watching_ = false;
      }
      return;
    }
    std::lock_guard lock(watch_mu_);
    WatchRole& role = roles_[wd];
    if (folder != nullptr) {
      role.folder = folder;
      role.sub = sub;
    }
    role.list = role.list || list;
  }

  struct FolderEvents {
    std::vector<Folder::FileEvent> files;
    bool uidlist = false;
    bool keywords = false;
    bool stale = false;
  };

  void WatchLoop() {
    std::vector<char> buffer(256 * 1024);
    while (!stopping_) {
      struct pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      int ready = poll(fds, 2, 1000);
      if (stopping_) break;
      if (ready < 0 && errno != EINTR) break;
      // Let the events of a burst gather for a moment (mv or setfattr of
      // many files makes two or three per message, most of them this
      // process's own): one wake-up and one lock of a folder for many.
      if (ready > 0) std::this_thread::sleep_for(kWatchGather);
      std::map<Folder*, std::pair<std::shared_ptr<Folder>, FolderEvents>> events;
      bool list_changed = false;
      bool overflow = false;
      // Drain everything queued, so both halves of a rename are seen together.
      for (;;) {
        ssize_t n = read(inotify_fd_, buffer.data(), buffer.size());
        if (n <= 0) break;
        for (ssize_t offset = 0; offset < n;) {
          auto* event = reinterpret_cast<struct inotify_event*>(buffer.data() + offset);
          offset += static_cast<ssize_t>(sizeof(struct inotify_event) + event->len);
          if ((event->mask & IN_Q_OVERFLOW) != 0) {
            overflow = true;
            continue;
          }
          WatchRole role;
          {
            std::lock_guard lock(watch_mu_);
            auto it = roles_.find(event->wd);
            if (it == roles_.end()) continue;
            if ((event->mask & IN_IGNORED) != 0) {
              roles_.erase(it);
              continue;
            }
            role = it->second;
          }
          std::string name = event->len > 0 ? std::string(event->name) : std::string();
          bool is_dir = (event->mask & IN_ISDIR) != 0;
          if (role.list && (is_dir || name.empty())) list_changed = true;
          auto folder = role.folder.lock();
          if (folder == nullptr) continue;
          auto& slot = events[folder.get()];
          slot.first = folder;
          if (name.empty()) {
            // The directory itself changed (attributes, moved, deleted).
            slot.second.stale = slot.second.stale || (event->mask & (IN_DELETE_SELF)) != 0;
            if ((event->mask & (IN_MOVE_SELF | IN_DELETE_SELF)) != 0) list_changed = true;
            continue;
          }
          if (role.sub == 0) {
            if (name == "dovecot-uidlist") slot.second.uidlist = true;
            if (name == "dovecot-keywords") slot.second.keywords = true;
          } else if (!is_dir) {
            slot.second.files.push_back(Folder::FileEvent{
                std::move(name), role.sub == 1, (event->mask & (IN_DELETE | IN_MOVED_FROM)) != 0});
          }
        }
      }
      if (overflow) {
        spdlog::warn("maildir: inotify queue overflowed; rereading every folder");
        list_changed = true;
      }
      for (auto& [key, item] : events) {
        auto& [folder, what] = item;
        std::lock_guard lock(folder->mu);
        if (what.stale) folder->MarkStale();
        if (!what.files.empty()) folder->ApplyFileEvents(what.files);
        if (what.uidlist) folder->ApplyUidlistChange();
        if (what.keywords) folder->ApplyKeywordsChange();
      }
      if (list_changed) {
        std::lock_guard lock(mu);
        listing_valid_ = false;
        (void)CurrentListing();
      }
      // Periodic work: files still waiting for a UID (the lock was busy),
      // and folders to reread after an overflow.
      std::vector<std::shared_ptr<Folder>> folders;
      {
        std::lock_guard lock(mu);
        folders = LoadedFolders();
      }
      for (auto& folder : folders) {
        std::lock_guard lock(folder->mu);
        if (!folder->loaded() || folder->deleted()) continue;
        if (overflow) {
          if (Status s = folder->Reload(); !s.ok()) spdlog::warn("maildir: {}", s.ToString());
        } else if (folder->has_pending()) {
          (void)folder->AssignPending(std::chrono::milliseconds(0));
        }
      }
    }
  }

  const MaildirOptions options_;
  maildir::FolderContext context_;
  ChangeLog changes_;
  int root_fd_ = -1;  // for Sync

  Listing listing_;               // GUARDED_BY(mu)
  bool listing_valid_ = false;    // GUARDED_BY(mu)
  bool listing_scanned_ = false;  // GUARDED_BY(mu): listing_ holds a scan to diff with
  // Every folder opened, by GUID; and by name while the listing holds.
  std::map<std::string, std::shared_ptr<Folder>> folders_;            // GUARDED_BY(mu)
  std::unordered_map<std::string, std::shared_ptr<Folder>> by_name_;  // GUARDED_BY(mu)

  std::once_flag watcher_once_;
  std::atomic<bool> watching_{false};
  std::atomic<bool> stopping_{false};
  int inotify_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::mutex watch_mu_;
  std::unordered_map<int, WatchRole> roles_;  // GUARDED_BY(watch_mu_)

  // The thread that runs Folder::Tick (started by the first ScheduleDeferred).
  std::mutex deferred_mu_;
  std::condition_variable deferred_cv_;
  Clock::time_point deferred_next_ = Clock::time_point::max();  // GUARDED_BY(deferred_mu_)
  bool deferred_stopping_ = false;                              // GUARDED_BY(deferred_mu_)
  std::thread deferred_thread_;
};

// --- MailboxData ------------------------------------------------------------------------

class MaildirMailbox final : public MailboxData {
 public:
  MaildirMailbox(std::shared_ptr<Store> store, std::shared_ptr<Folder> folder)
      : store_(std::move(store)), folder_(std::move(folder)) {}

  std::string mailbox_id() const override { return folder_->guid(); }

  bool readonly() const override { return folder_->IsReadOnly(); }

  uint32_t uid_validity() const override {
    auto lock = Lock();
    (void)folder_->Ensure();
    return folder_->uid_validity();
  }

  FlagSet permanent_flags() const override { return FlagSet::AllSystemFlags(); }

  bool accepts_keywords() const override { return true; }

  std::optional<UnixSeconds> AppendedDate(UnixSeconds requested) const override {
    // The file's mtime (Folder::Stage); 0 means the time of the append.
    // Only dates every file system keeps exactly (1970-2038) are vouched for.
    if (requested <= 0 || requested > INT32_MAX) return std::nullopt;
    return requested;
  }

  Result<uint32_t> Append(const AppendMessage& message, bool recent) override {
    store_->Prepare(folder_.get());
    // The bytes are written and fsynced without the folder's lock (only its
    // directory is needed), so appends to one mailbox stage while another
    // commits, and readers are not held up; Commit then takes the lock,
    // together with whatever other appends are waiting for it (group
    // commit). A deleted folder fails here (no tmp/) or in Commit.
    if (folder_->IsReadOnly()) {
      auto lock = Lock();
      if (Status s = folder_->Ensure(); !s.ok()) return s;  // deleted, rather
      return Status::ReadOnly(fmt::format("{} is read-only", folder_->name()));
    }
    auto staged = Folder::Stage(folder_->UnlockedDir(), message, store_->context());
    if (!staged.ok()) return staged.status();
    Result<uint32_t> uid = folder_->Commit(*staged, message.flags, recent);
    if (!uid.ok()) unlink(staged->tmp_path.c_str());
    return uid;
  }

  Result<uint32_t> Copy(uint32_t uid, MailboxData& destination, bool recent) override {
    return Transfer(uid, destination, recent, /*move=*/false);
  }

  Result<uint32_t> Move(uint32_t uid, MailboxData& destination, bool recent) override {
    return Transfer(uid, destination, recent, /*move=*/true);
  }

  Result<MessageInfo> Get(uint32_t uid) override {
    auto lock = Lock();
    return folder_->Get(uid);
  }

  Result<std::shared_ptr<const ContentReader>> Open(uint32_t uid) override {
    auto lock = Lock();
    return folder_->Open(uid);
  }

  Result<FlagSet> Update(uint32_t uid, const FlagSet& flags, FlagOp op) override {
    auto lock = Lock();
    return folder_->Update(uid, flags, op);
  }

  Status Delete(std::span<const uint32_t> uids) override {
    auto lock = Lock();
    return folder_->Delete(uids);
  }

  Result<std::vector<uint32_t>> ClaimRecent() override {
    auto lock = Lock();
    return folder_->ClaimRecent();
  }

  Status Cleanup() override {
    auto lock = Lock();
    return folder_->Cleanup();
  }

  Result<MailboxSnapshot> Snapshot() override {
    auto lock = Lock();
    if (Status s = folder_->Ensure(); !s.ok()) return s;
    return folder_->Snapshot();
  }

  Result<std::vector<MessageInfo>> Find(uint32_t first_uid, uint32_t last_uid) override {
    auto lock = Lock();
    return folder_->Find(first_uid, last_uid, lock);
  }
  Result<std::vector<ListedMessage>> List() override {
    auto lock = Lock();
    return folder_->List(lock);
  }

 private:
  std::unique_lock<std::mutex> Lock() const {
    store_->Prepare(folder_.get());
    return std::unique_lock<std::mutex>(folder_->mu);
  }

  Result<uint32_t> Transfer(uint32_t uid, MailboxData& destination, bool recent, bool move) {
    auto* target = dynamic_cast<MaildirMailbox*>(&destination);
    if (target == nullptr || target->store_ != store_) {
      return Status::Error(ErrorCode::kNotSupported, ErrorScope::kMailbox,
                           "the destination belongs to another store");
    }
    for (int attempt = 0; attempt < 3; ++attempt) {
      Result<Folder::Source> source = Status::Io("unset");
      {
        auto lock = Lock();
        // A read-only source needs no check here (three access() calls a
        // message): its rename fails with kReadOnly.
        source = folder_->Describe(uid);
      }
      if (!source.ok()) return source.status();
      Result<uint32_t> received = Status::Io("unset");
      {
        auto lock = target->Lock();
        received = target->folder_->Receive(*source, move, recent);
      }
      if (received.ok()) {
        if (move) {
          auto lock = Lock();
          folder_->Forget(uid);
        }
        return received;
      }
      if (received.status().code() != ErrorCode::kNotFound ||
          received.status().scope() != ErrorScope::kMessage) {
        return received.status();
      }
      // The file was renamed (a flag change) or taken: look again.
      auto lock = Lock();
      folder_->MarkStale();
    }
    return Status::NotFound(ErrorScope::kMessage, fmt::format("no UID {}", uid));
  }

  std::shared_ptr<Store> store_;
  std::shared_ptr<Folder> folder_;
};

// --- MailboxSet ----------------------------------------------------------------------------

class MaildirMailboxSet final : public MailboxSet {
 public:
  explicit MaildirMailboxSet(std::shared_ptr<Store> store) : store_(std::move(store)) {}

  Result<std::vector<std::string>> ListMailboxes() override {
    store_->Prepare(nullptr);
    std::lock_guard lock(store_->mu);
    auto listing = store_->CurrentListing();
    if (!listing.ok()) return listing.status();
    std::vector<std::string> names;
    for (const auto& [name, rel] : (*listing)->mailboxes) names.push_back(name);
    return names;
  }

  Result<std::vector<std::string>> ListSubscribed() override {
    store_->Prepare(nullptr);
    auto subscriptions = ReadSubscriptions();
    if (!subscriptions.ok()) return subscriptions.status();
    std::vector<std::string> names = subscriptions->names;
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    return names;
  }

  Status SetSubscribed(std::string_view name, bool subscribed) override {
    store_->Prepare(nullptr);
    auto normalized = NormalizeMailboxName(name);
    if (!normalized.ok()) return normalized.status();
    auto valid = maildir::ValidateMailboxName(*normalized, layout());
    if (!valid.ok()) return valid.status();
    const std::string path = root() + "/subscriptions";
    auto lock = Dotlock::Acquire(path, store_->options().lock_timeout, std::chrono::seconds(30));
    if (!lock.ok()) return lock.status();
    auto current = ReadSubscriptions();
    if (!current.ok()) return current.status();
    std::vector<std::string>& names = current->names;
    auto found = std::find(names.begin(), names.end(), *normalized);
    if ((found != names.end()) == subscribed) return Status::Ok();
    if (subscribed) {
      names.push_back(*normalized);
    } else {
      names.erase(found);
    }
    std::vector<std::string> kept;
    for (const auto& skipped : current->skipped) kept.push_back(skipped.raw);
    NameEncoding encoding;
    {
      std::lock_guard store_lock(store_->mu);
      (void)store_->CurrentListing();
      encoding = store_->Encoding();
    }
    auto bytes = maildir::SerializeSubscriptions(names, current->version, layout(), encoding, kept);
    if (!bytes.ok()) return bytes.status();
    Status s = maildir::ReplaceFile(path, root() + "/subscriptions.tmp", *bytes,
                                    store_->options().fsync, store_->context().owner);
    if (!s.ok()) return s;
    store_->changes().Post(Change{Change::Kind::kSubscriptions, *normalized, {}});
    return Status::Ok();
  }

  Result<std::shared_ptr<MailboxData>> GetMailbox(std::string_view name) override {
    store_->Prepare(nullptr);
    auto normalized = Validate(name);
    if (!normalized.ok()) return normalized.status();
    std::lock_guard lock(store_->mu);
    auto listing = store_->CurrentListing();
    if (!listing.ok()) return listing.status();
    auto it = (*listing)->mailboxes.find(*normalized);
    if (it == (*listing)->mailboxes.end()) return NoSuchMailbox(*normalized);
    auto folder = store_->FolderFor(it->first, it->second);
    if (!folder.ok()) return folder.status();
    return std::shared_ptr<MailboxData>(std::make_shared<MaildirMailbox>(store_, *folder));
  }

  Result<std::string> AddMailbox(std::string_view name) override {
    store_->Prepare(nullptr);
    auto normalized = Validate(name);
    if (!normalized.ok()) return normalized.status();
    std::lock_guard lock(store_->mu);
    auto listing = store_->CurrentListing();
    if (!listing.ok()) return listing.status();
    if ((*listing)->mailboxes.contains(*normalized)) {
      return Status::Exists(fmt::format("mailbox exists: {}", *normalized));
    }
    auto rel = maildir::MailboxDirectory(*normalized, layout(), store_->Encoding());
    if (!rel.ok()) return rel.status();
    std::string dir = store_->DirOf(*rel);
    const auto& owner = store_->context().owner;
    if (layout() == Layout::kFs) {
      // Parents are plain directories without cur/: \Noselect names.
      if (Status s = MakeParents(*rel); !s.ok()) return s;
    }
    if (mkdir(dir.c_str(), owner.dir_mode) == 0) {
      owner.ApplyAt(AT_FDCWD, dir.c_str(), dir);
    } else if (errno != EEXIST || layout() == Layout::kMaildirPlusPlus) {
      if (errno == EEXIST) return Status::Exists(fmt::format("mailbox exists: {}", *normalized));
      return ErrnoStatus(errno, "mkdir", dir, ErrorScope::kMailbox);
    }
    if (Status s = maildir::MakeMaildirSubdirectories(dir, owner); !s.ok()) return s;
    if (layout() == Layout::kMaildirPlusPlus) MarkFolder(dir);
    std::string guid = maildir::HexOf(maildir::RandomObjectBytes());
    Status created = Folder::CreateUidlist(dir, store_->NextUidValidity(), guid, store_->context());
    if (!created.ok()) return created;
    if (store_->options().fsync) (void)maildir::SyncDirectory(root());
    store_->InvalidateListingLocked();
    (void)store_->CurrentListing();  // posts kMailboxAdded
    return guid;
  }

  Status DeleteMailbox(std::string_view name) override {
    store_->Prepare(nullptr);
    auto normalized = Validate(name);
    if (!normalized.ok()) return normalized.status();
    if (IsInbox(*normalized)) {
      return Status::Error(ErrorCode::kNotPermitted, ErrorScope::kMailbox,
                           "INBOX cannot be deleted");
    }
    std::lock_guard lock(store_->mu);
    store_->InvalidateListingLocked();
    auto listing = store_->CurrentListing();
    if (!listing.ok()) return listing.status();
    const auto& mailboxes = (*listing)->mailboxes;
    for (const auto& [other, rel] : mailboxes) {
      if (other != *normalized && IsSameOrBelow(other, *normalized)) {
        return NotEmpty(*normalized, "child mailboxes");
      }
    }
    auto it = mailboxes.find(*normalized);
    if (it == mailboxes.end()) return NoSuchMailbox(*normalized);
    const std::string rel = it->second;
    const std::string dir = store_->DirOf(rel);
    if (HoldsMessages(dir)) return NotEmpty(*normalized, "messages");
    auto folder = store_->FolderFor(it->first, rel);
    // Dovecot's way: rename out of sight first, then remove. A message
    // delivered in between is found in the trash and the rename undone.
    std::string trash = root() + "/" + std::string(TrashName(layout()));
    if (HoldsMailDeep(trash)) {
      return Status::Error(
          ErrorCode::kUnavailable, ErrorScope::kMailbox,
          fmt::format("{} holds mail (an interrupted operation?); not touching it", trash));
    }
    RemoveTree(trash);  // a leftover of an interrupted delete
    if (rename(dir.c_str(), trash.c_str()) != 0) {
      return ErrnoStatus(errno, "rename", dir, ErrorScope::kMailbox);
    }
    if (HoldsMessages(trash)) {
      if (rename(trash.c_str(), dir.c_str()) != 0) {
        spdlog::error("maildir: cannot move {} back to {}: {}", trash, dir, strerror(errno));
      }
      return NotEmpty(*normalized, "messages");
    }
    if (folder.ok()) {
      std::lock_guard folder_lock((*folder)->mu);
      (*folder)->MarkDeleted();
    }
    RemoveTree(trash);
    if (layout() == Layout::kFs) RemoveEmptyParents(rel);
    if (store_->options().fsync) (void)maildir::SyncDirectory(root());
    store_->ForgetNames();
    store_->InvalidateListingLocked();
    (void)store_->CurrentListing();  // posts kMailboxRemoved
    return Status::Ok();
  }

  Status RenameMailbox(std::string_view before_name, std::string_view after_name) override {
    store_->Prepare(nullptr);
    auto before = Validate(before_name);
    if (!before.ok()) return before.status();
    auto after = Validate(after_name);
    if (!after.ok()) return after.status();
    if (IsSameOrBelow(*after, *before)) {
      return Status::InvalidName(
          fmt::format("cannot rename {} to itself or below: {}", *before, *after));
    }
    std::lock_guard lock(store_->mu);
    store_->InvalidateListingLocked();
    auto listing = store_->CurrentListing();
    if (!listing.ok()) return listing.status();
    const auto& mailboxes = (*listing)->mailboxes;
    std::vector<std::pair<std::string, std::string>> moving;  // name, rel
    for (const auto& [name, rel] : mailboxes) {
      if (IsInbox(*before) ? name == *before : IsSameOrBelow(name, *before)) {
        moving.emplace_back(name, rel);
      }
    }
    if (moving.empty()) return NoSuchMailbox(*before);
    for (const auto& [name, rel] : mailboxes) {
      if (!IsSameOrBelow(name, *after)) continue;
      bool moves =
          std::any_of(moving.begin(), moving.end(), [&](const auto& m) { return m.first == name; });
      if (!moves) return Status::Exists(fmt::format("rename target is taken: {}", name));
    }
    Status status = IsInbox(*before)          ? RenameInbox(*after)
                    : layout() == Layout::kFs ? RenameFs(*before, *after)
                                              : RenameMaildirPlusPlus(*before, *after, moving);
    if (store_->options().fsync) (void)maildir::SyncDirectory(root());
    store_->ForgetNames();
    store_->InvalidateListingLocked();
    (void)store_->CurrentListing();  // relocates folders, posts the changes
    return status;
  }

  uint64_t ChangeCursor() override { return store_->changes().Cursor(); }

  ChangeBatch WaitForChanges(uint64_t* cursor, std::chrono::milliseconds timeout) override {
    store_->Prepare(nullptr);
    return store_->changes().WaitSince(cursor, timeout);
  }

  void StopWaiting() override { store_->changes().Stop(); }

  // With fsync=no, appends, flag changes and the rest reach the disk when
  // the kernel writes them back; this makes everything done so far durable
  // (the driver calls it on fsync() and at unmount). With fsync=yes,
  // appends, copies, moves and expunges are durable already, flag changes
  // (renames) are not, so it is still worth calling.
  Status Sync() override { return store_->Sync(); }

  // The root's tmp/: unnamed files there are invisible to Dovecot and go
  // with the process, and are linked into a folder when appended.
  std::string SpoolDirectory() const override { return root() + "/tmp"; }

 private:
  Layout layout() const { return store_->options().layout; }
  const std::string& root() const { return store_->options().root; }

  Result<std::string> Validate(std::string_view name) {
    auto normalized = NormalizeMailboxName(name);
    if (!normalized.ok()) return normalized.status();
    return maildir::ValidateMailboxName(*normalized, layout());
  }

  Result<maildir::Subscriptions> ReadSubscriptions() {
    auto bytes = maildir::ReadWholeFile(root() + "/subscriptions");
    if (!bytes.ok()) {
      if (bytes.status().code() == ErrorCode::kNotFound) return maildir::Subscriptions{};
      return bytes.status();
    }
    maildir::Subscriptions parsed = maildir::ParseSubscriptions(*bytes, layout());
    for (const auto& skipped : parsed.skipped) {
      spdlog::warn("maildir: {}/subscriptions line {}: {}", root(), skipped.line, skipped.reason);
    }
    return parsed;
  }

  // fs layout: directories left without mail or children by a delete or
  // rename go too (Dovecot removes an emptied parent on rename).
  void RemoveEmptyParents(std::string rel) {
    for (size_t slash = rel.rfind('/'); slash != std::string::npos; slash = rel.rfind('/')) {
      rel.resize(slash);
      std::string dir = store_->DirOf(rel);
      struct stat st {};
      if (stat((dir + "/cur").c_str(), &st) == 0) return;  // a mailbox
      if (rmdir(dir.c_str()) != 0) return;                 // has children
    }
  }

  // The empty `maildirfolder` file Dovecot puts in each Maildir++ folder.
  void MarkFolder(const std::string& dir) {
    const auto& owner = store_->context().owner;
    std::string marker = dir + "/maildirfolder";
    int fd = open(marker.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, owner.file_mode);
    if (fd >= 0) {
      owner.Apply(fd, marker);
      close(fd);
    }
  }

  Status MakeParents(const std::string& rel) {
    const auto& owner = store_->context().owner;
    for (size_t slash = rel.find('/'); slash != std::string::npos;
         slash = rel.find('/', slash + 1)) {
      std::string parent = store_->DirOf(rel.substr(0, slash));
      if (mkdir(parent.c_str(), owner.dir_mode) == 0) {
        owner.ApplyAt(AT_FDCWD, parent.c_str(), parent);
      } else if (errno != EEXIST) {
        return ErrnoStatus(errno, "mkdir", parent, ErrorScope::kMailbox);
      }
    }
    return Status::Ok();
  }

  // REQUIRES(store_->mu)
  Status RenameMaildirPlusPlus(const std::string& before, const std::string& after,
                               const std::vector<std::pair<std::string, std::string>>& moving) {
    // Ascending order: in "A/B" -> "A", the child "A/B/B" takes the
    // directory of "A/B" only after "A/B" has left it.
    for (const auto& [name, rel] : moving) {
      std::string new_name = after + name.substr(before.size());
      auto new_rel = maildir::MailboxDirectory(new_name, layout(), store_->Encoding());
      if (!new_rel.ok()) return new_rel.status();
      std::string from = store_->DirOf(rel);
      std::string to = store_->DirOf(*new_rel);
      if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
        if (errno == EEXIST) return Status::Exists(fmt::format("rename target is taken: {}", to));
        return ErrnoStatus(errno, "rename", from, ErrorScope::kMailbox);
      }
    }
    return Status::Ok();
  }

  // REQUIRES(store_->mu)
  Status RenameFs(const std::string& before, const std::string& after) {
    auto from_rel = maildir::MailboxDirectory(before, layout(), store_->Encoding());
    auto to_rel = maildir::MailboxDirectory(after, layout(), store_->Encoding());
    if (!from_rel.ok()) return from_rel.status();
    if (!to_rel.ok()) return to_rel.status();
    // The directory as it is on disk may be spelled in the other dialect.
    for (const auto& [name, rel] : store_->CurrentListing().value()->mailboxes) {
      if (name == before) from_rel = rel;
    }
    std::string from = store_->DirOf(*from_rel);
    std::string to = store_->DirOf(*to_rel);
    if (IsSameOrBelow(before, after)) {
      // "A/B" -> "A" where A is only B's parent: B must leave A before A,
      // emptied, can go and B take its place. Park it under the trash name,
      // which no reader lists.
      std::string parked = root() + "/" + std::string(TrashName(layout()));
      struct stat st {};
      if (lstat(parked.c_str(), &st) == 0) {
        return Status::Error(ErrorCode::kUnavailable, ErrorScope::kMailbox,
                             fmt::format("{} exists (an interrupted delete?)", parked));
      }
      if (rename(from.c_str(), parked.c_str()) != 0) {
        return ErrnoStatus(errno, "rename", from, ErrorScope::kMailbox);
      }
      RemoveEmptyParents(*from_rel);
      from = parked;
    }
    if (Status s = MakeParents(*to_rel); !s.ok()) return s;
    // A leftover empty directory at the target (a \Noselect name with no
    // children left) is replaced; one with content is not.
    if (rename(from.c_str(), to.c_str()) != 0) {
      if (errno == EEXIST || errno == ENOTEMPTY) {
        return Status::Exists(fmt::format("rename target is taken: {}", after));
      }
      return ErrnoStatus(errno, "rename", from, ErrorScope::kMailbox);
    }
    RemoveEmptyParents(*from_rel);
    return Status::Ok();
  }

  // IMAP's INBOX rename: INBOX's mail and uidlist become the mailbox
  // `after`; a new, empty INBOX takes their place. REQUIRES(store_->mu)
  Status RenameInbox(const std::string& after) {
    auto rel = maildir::MailboxDirectory(after, layout(), store_->Encoding());
    if (!rel.ok()) return rel.status();
    if (layout() == Layout::kFs) {
      if (Status s = MakeParents(*rel); !s.ok()) return s;
    }
    const auto& owner = store_->context().owner;
    std::string dir = store_->DirOf(*rel);
    if (mkdir(dir.c_str(), owner.dir_mode) != 0) {
      if (errno == EEXIST) return Status::Exists(fmt::format("rename target is taken: {}", after));
      return ErrnoStatus(errno, "mkdir", dir, ErrorScope::kMailbox);
    }
    owner.ApplyAt(AT_FDCWD, dir.c_str(), dir);
    // Hold INBOX's folder meanwhile, so the watcher does not reread it
    // half-moved; it follows its GUID to the new directory.
    auto folder = store_->FolderFor(std::string(kInbox), "");
    std::unique_lock<std::mutex> folder_lock;
    if (folder.ok()) folder_lock = std::unique_lock<std::mutex>((*folder)->mu);
    // The uidlist last: until it moves, the messages keep their UIDs in
    // INBOX; a crash in between leaves files Dovecot gives new UIDs, never
    // lost ones.
    for (const char* entry :
         {"cur", "new", "tmp", "dovecot-keywords", "dovecot.index", "dovecot.index.log",
          "dovecot.index.log.2", "dovecot.index.cache", "dovecot-uidlist"}) {
      std::string from = root() + "/" + entry;
      std::string to = dir + "/" + entry;
      if (rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
        return ErrnoStatus(errno, "rename", from, ErrorScope::kMailbox);
      }
    }
    if (layout() == Layout::kMaildirPlusPlus) MarkFolder(dir);
    (void)maildir::MakeMaildirSubdirectories(root(), owner);  // Folder::Reload retries
    if (folder.ok()) (*folder)->Relocate(dir, after);
    std::string guid = maildir::HexOf(maildir::RandomObjectBytes());
    return Folder::CreateUidlist(root(), store_->NextUidValidity(), guid, store_->context());
  }

  std::shared_ptr<Store> store_;
};

}  // namespace

Result<std::shared_ptr<MailboxSet>> OpenMaildirMailboxSet(const MaildirOptions& options) {
  if (options.root.empty() || options.root[0] != '/') {
    return Status::InvalidArgument(fmt::format("maildir root must be absolute: {}", options.root));
  }
  MaildirOptions normalized = options;
  while (normalized.root.size() > 1 && normalized.root.back() == '/') normalized.root.pop_back();
  struct stat st {};
  if (stat(normalized.root.c_str(), &st) != 0) {
    if (errno != ENOENT || !options.create) {
      return ErrnoStatus(errno, "open maildir", normalized.root);
    }
    if (mkdir(normalized.root.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, "create maildir", normalized.root);
    }
    if (stat(normalized.root.c_str(), &st) != 0) {
      return ErrnoStatus(errno, "open maildir", normalized.root);
    }
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(fmt::format("{} is not a directory", normalized.root));
  }
  maildir::FileOwner owner = maildir::FileOwner::Of(st);
  if (access(normalized.root.c_str(), W_OK) == 0) {
    (void)maildir::MakeMaildirSubdirectories(normalized.root, owner);
  }
  auto store = std::make_shared<Store>(std::move(normalized), owner);
  return std::shared_ptr<MailboxSet>(std::make_shared<MaildirMailboxSet>(std::move(store)));
}

}  // namespace mailfs
