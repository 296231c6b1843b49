#include "fuse/driver.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <tuple>
#include <utility>

#include "src/mailbox_name.h"

namespace mailfs {
namespace {

constexpr std::string_view kAttrPrefix = "user.mail.";
constexpr std::string_view kKeywordPrefix = "keyword.";
constexpr size_t kMessageHeadBytes = 1024;
constexpr blksize_t kPendingBlockSize = 1 << 20;

// "17.eml" -> 17; anything else (leading zeros, 0, overflow) -> 0.
uint32_t CanonicalUid(std::string_view name) {
  if (name.size() < 5 || name.substr(name.size() - 4) != ".eml") return 0;
  std::string_view digits = name.substr(0, name.size() - 4);
  if (digits.empty() || digits.front() == '0') return 0;
  uint32_t uid = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), uid);
  if (ec != std::errc() || end != digits.data() + digits.size()) return 0;
  return uid;
}

std::string CanonicalName(uint32_t uid) { return fmt::format("{}.eml", uid); }

bool IsScratchName(std::string_view name) { return !name.empty() && name.front() == '.'; }

// 2026-11-27T10:27:42Z
std::string FormatDate(UnixSeconds t) {
  time_t tt = static_cast<time_t>(t);
  struct tm tm {};
  gmtime_r(&tt, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Accepts what FormatDate writes, an offset instead of Z ("+02:00"), or
// plain seconds since the epoch.
bool ParseDate(std::string_view text, UnixSeconds* out) {
  std::string s(text);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (!s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
    return ec == std::errc() && end == s.data() + s.size();
  }
  struct tm tm {};
  const char* rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) return false;
  int64_t offset = 0;
  if (*rest == 'Z' && rest[1] == '\0') {
  } else if ((*rest == '+' || *rest == '-') && strlen(rest) == 6 && rest[3] == ':') {
    int hh = (rest[1] - '0') * 10 + (rest[2] - '0');
    int mm = (rest[4] - '0') * 10 + (rest[5] - '0');
    offset = (hh * 3600 + mm * 60) * (*rest == '+' ? 1 : -1);
  } else {
    return false;
  }
  *out = static_cast<UnixSeconds>(timegm(&tm)) - offset;
  return true;
}

int64_t Now() { return static_cast<int64_t>(time(nullptr)); }

bool IsEmpty(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && st.st_size == 0;
}

// Copies every byte of `from` into `to` (both files from offset 0).
int CopyFileBytes(int from, int to) {
  struct stat st {};
  if (::fstat(from, &st) != 0) return EIO;
  loff_t in = 0, out = 0;
  while (in < st.st_size) {
    ssize_t n = ::copy_file_range(from, &in, to, &out, static_cast<size_t>(st.st_size - in), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == ENOSPC || errno == EDQUOT ? ENOSPC : EIO;
    if (n == 0) break;  // the file is shorter than it was
  }
  return 0;
}

// The process (thread group) of a thread, from /proc/<tid>/status; a
// thread that is gone maps to itself. About 50 us: see ThreadGroups.
pid_t ReadThreadGroup(pid_t thread) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(thread));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return thread;
  // "Name:\tcp\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n...": the
  // group is on the fourth line, well inside the first read.
  char buffer[512];
  ssize_t n;
  do {
    n = ::read(fd, buffer, sizeof buffer - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return thread;
  buffer[n] = '\0';
  const char* line = strstr(buffer, "\nTgid:");
  if (line == nullptr) return thread;
  long tgid = strtol(line + 6, nullptr, 10);
  return tgid > 0 ? static_cast<pid_t>(tgid) : thread;
}

// Whether `thread` is now a thread of process `group`: /proc/<group>/task/
// <thread> exists exactly then (proc finds the task by its id and checks
// that it belongs to the group). One access(), about 3 us.
bool IsThreadOf(pid_t thread, pid_t group) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d", static_cast<int>(group),
           static_cast<int>(thread));
  return ::access(path, F_OK) == 0;
}

int ErrnoOf(const Status& status) {
  if (!status.ok() && (status.code() == ErrorCode::kIo || status.code() == ErrorCode::kCorrupt ||
                       status.code() == ErrorCode::kUnavailable)) {
    spdlog::error("{}", status.ToString());
  }
  return ToErrno(status);
}

}  // namespace

// Which process each recent caller thread belongs to. FUSE requests name
// the calling thread; create, open, opendir and flush need its process,
// and reading /proc/<tid>/status for it on every create and close cost
// ~50 us each. So the last answers are kept, and one is used only after
// IsThreadOf confirms it (~3 us).
//
// Why a confirmed entry is right even though thread ids are reused: the
// requests that ask are synchronous, and once the daemon has read one the
// kernel keeps the calling thread waiting, killable or not, until it is
// answered (request_wait_answer: "Either request is already in userspace,
// or it was forced. Wait it out"). So while the request is handled its
// thread id belongs to the caller and cannot be freed and given to another
// thread. If the cached thread exited and its id went to a thread of
// another process, /proc/<cached group>/task/<tid> does not exist now and
// the status file is read again; if it went to another thread of the same
// process, the cached group is still the right answer. If the group's own
// number was reused, the check answers for the process that has that
// number now, which then is the caller's.
struct Driver::ThreadGroups {
  pid_t ProcessOf(pid_t thread) {
    pid_t cached = 0;
    {
      std::lock_guard lock(mu);
      for (const auto& [t, group] : entries) {
        if (t == thread) {
          cached = group;
          break;
        }
      }
    }
    if (cached != 0 && IsThreadOf(thread, cached)) return cached;
    pid_t group = ReadThreadGroup(thread);
    std::lock_guard lock(mu);
    auto slot = std::find_if(entries.begin(), entries.end(),
                             [thread](const auto& e) { return e.first == thread; });
    if (slot == entries.end()) {
      slot = entries.begin() + next;
      next = (next + 1) % entries.size();
    }
    *slot = {thread, group};
    return group;
  }

  std::mutex mu;
  std::array<std::pair<pid_t, pid_t>, 64> entries{};  // GUARDED_BY(mu): (thread, process)
  size_t next = 0;                                    // GUARDED_BY(mu): the slot to reuse next
};

// A file in the spool directory, unnamed (O_TMPFILE), that holds the bytes
// of a file being written.
struct SpoolFile {
  explicit SpoolFile(int fd) : fd(fd) {}
  ~SpoolFile() { ::close(fd); }
  SpoolFile(const SpoolFile&) = delete;
  SpoolFile& operator=(const SpoolFile&) = delete;
  const int fd;
};

static int OpenSpoolFile(const std::string& spool_dir) {
  int fd = ::open(spool_dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
  // A filesystem without O_TMPFILE: a named file, unlinked at once.
  std::string path = spool_dir + "/spool-XXXXXX";
  fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd >= 0) ::unlink(path.c_str());
  return fd;
}

// Empty spool files made ahead, on a thread of their own, so that a create
// does not wait for the filesystem to find a free inode. On ext4 without a
// journal (as here) that means stepping over each recently freed inode of
// the directory's group: after a big delete a create took 120-150 µs
// instead of 55. With four made ahead, `cp` of 500 messages took 8 % less
// (median of 8 runs each). The thread starts with the first Take: a store
// must not start threads before the daemon forks, nor does the driver.
struct Driver::SpoolFiles {
  explicit SpoolFiles(std::string dir) : dir(std::move(dir)) {}
  ~SpoolFiles() {
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    wanted.notify_all();
    if (maker.joinable()) maker.join();
    for (int fd : ready) ::close(fd);
  }

  // A new empty spool file, or -1 with errno set.
  int Take() {
    {
      std::lock_guard lock(mu);
      if (!maker.joinable()) maker = std::thread([this] { Make(); });
      if (!ready.empty()) {
        int fd = ready.back();
        ready.pop_back();
        wanted.notify_one();
        return fd;
      }
    }
    return OpenSpoolFile(dir);  // none made yet, or they cannot be
  }

  void Make() {
    std::unique_lock lock(mu);
    while (!stopping) {
      if (ready.size() >= kReady || failing) {
        // One that failed is tried again by the next Take, not in a loop.
        failing = false;
        wanted.wait(lock);
        continue;
      }
      lock.unlock();
      int fd = OpenSpoolFile(dir);
      lock.lock();
      if (fd < 0) {
        failing = true;
      } else {
        ready.push_back(fd);
      }
    }
  }

  static constexpr size_t kReady = 4;
  const std::string dir;
  std::mutex mu;
  std::condition_variable wanted;  // a file was taken, or stopping
  std::vector<int> ready;          // GUARDED_BY(mu)
  bool failing = false;            // GUARDED_BY(mu)
  bool stopping = false;           // GUARDED_BY(mu)
  std::thread maker;               // GUARDED_BY(mu)
};

struct Driver::PendingFile {
  enum class State { kOpen, kCommitting, kStored, kDiscarded };

  std::shared_ptr<SpoolFile> Spool() const { return spool.load(); }

  Ino ino = 0;
  Ino parent = 0;
  std::string name;
  bool scratch = false;
  // Once a spool file is handed to an append, the store may have made that
  // very file the message (linked it into a Maildir), so nothing writes to
  // it again: the next change copies it to a new spool file first
  // (WritableSpool). Writes hold write_mu shared; handing over and copying
  // hold it alone, so no write is half done when the file is handed over.
  std::atomic<std::shared_ptr<SpoolFile>> spool;
  std::shared_mutex write_mu;
  bool spool_handed_over = false;  // GUARDED_BY(write_mu)
  FlagSet flags;
  int64_t mtime = 0;
  pid_t creator = 0;          // the process (not thread) that created it
  int writers = 0;            // open writable handles
  int unflushed_writers = 0;  // of those, not closed since their last write
  // Bytes written since the last append. A descriptor that was dup'ed or
  // inherited (`{ cat a; cat b; } > f`) can write after another copy of it
  // was closed and appended; the next close appends the whole file again
  // and expunges the earlier version, so the store ends with one message.
  bool dirty = false;
  uint32_t stored_uid = 0;      // the UID of the last append, while writers remain
  bool sync_requested = false;  // fsync() before close: the append must be durable
  bool sync_failed = false;     // ...and it could not be made so: close() says EIO
  State state = State::kOpen;
};

struct Driver::Node {
  // What only directories and files being written have, apart, so that a
  // message's node (one per listed message, a million for a big mailbox)
  // stays small.
  struct Extras {
    std::string mailbox_name;              // kDirectory: the mailbox's current name
    std::shared_ptr<PendingFile> pending;  // kPending, or a message still open
    // A message just appended from this file, for the next GetAttr: its
    // size and internal date as stored, known without asking the store.
    bool appended_attrs = false;
    uint64_t appended_size = 0;
    UnixSeconds appended_date = 0;
  };

  Extras& extras() {
    if (!extras_) extras_ = std::make_unique<Extras>();
    return *extras_;
  }
  const std::string& mailbox_name() { return extras().mailbox_name; }
  const std::shared_ptr<PendingFile>& pending() const {
    static const std::shared_ptr<PendingFile> kNone;
    return extras_ ? extras_->pending : kNone;
  }
  Extras* extras_if_any() { return extras_.get(); }

  uint64_t lookups = 0;
  uint32_t key = 0;  // kMessage
  uint32_t uid = 0;  // kMessage
  NodeKind kind;

 private:
  std::unique_ptr<Extras> extras_;
};

struct Driver::MailboxRef {
  std::shared_ptr<MailboxData> data;
  // The last answer of data->readonly() and when it was asked (see
  // ShownReadOnly).
  bool readonly = false;
  std::optional<int64_t> readonly_asked_ms;  // steady clock; empty: never asked
  bool recent_claimed = false;
  std::set<uint32_t> recent;  // \Recent in this mount's session
  // Names given to messages by mv/cp within the mount; they keep resolving.
  std::map<std::string, uint32_t, std::less<>> aliases;
};

struct Driver::FileHandle {
  std::shared_ptr<const ContentReader> reader;  // a stored message
  std::shared_ptr<PendingFile> pending;         // a file being written
  bool writable = false;
  bool flushed = false;
  // The process that opened it. A forked child closing its inherited copy
  // also sends a flush; only the opener's close is "the writer closed it".
  pid_t opener = 0;
};

// A listing: ".", "..", the child mailboxes, the messages, then the
// caller's files being written, numbered in that order by offset. Messages
// are kept as 24-byte ListedMessages and named on the fly: a listing of a
// million messages must not cost a string and a MessageInfo each.
struct Driver::DirHandle {
  struct Named {
    std::string name;
    NodeKind kind;
    Ino ino = 0;
    bool readonly = false;  // kDirectory
  };
  Ino ino = 0;
  bool readonly = false;  // the mailbox's messages
  uint32_t key = 0;       // the mailbox's identity, for message inodes
  std::vector<Named> children;
  std::vector<ListedMessage> messages;
  std::vector<Named> pending;

  size_t size() const { return 2 + children.size() + messages.size() + pending.size(); }
};

struct Driver::Resolved {
  NodeKind kind = NodeKind::kRoot;
  Ino ino = 0;
  std::string mailbox_name;           // kDirectory: the child mailbox's name
  std::shared_ptr<MailboxData> data;  // kMessage
  uint32_t key = 0;
  uint32_t uid = 0;
  MessageInfo info;
  std::shared_ptr<PendingFile> pending;  // kPending
};

Driver::Driver(std::shared_ptr<MailboxSet> store, DriverOptions options)
    : store_(std::move(store)),
      options_(std::move(options)),
      owner_uid_(getuid()),
      owner_gid_(getgid()),
      mount_time_(Now()),
      thread_groups_(std::make_unique<ThreadGroups>()),
      spool_files_(std::make_unique<SpoolFiles>(options_.spool_dir)),
      nodes_(&node_pool_) {
  AddNode(kRootIno, NodeKind::kRoot);
}

Driver::~Driver() = default;

// ---------------------------------------------------------------------------
// Tables

Driver::Node* Driver::FindNode(Ino ino) {
  auto it = nodes_.find(ino);
  return it == nodes_.end() ? nullptr : &it->second;
}

Driver::Node& Driver::AddNode(Ino ino, NodeKind kind) {
  auto [it, inserted] = nodes_.try_emplace(ino);
  if (inserted) it->second.kind = kind;
  return it->second;
}

Ino Driver::DirectoryIno(const std::string& mailbox_name) {
  auto [it, inserted] = directory_inos_.try_emplace(mailbox_name, 0);
  if (inserted) {
    it->second = next_ino_++;
    Node& node = AddNode(it->second, NodeKind::kDirectory);
    node.extras().mailbox_name = mailbox_name;
  }
  return it->second;
}

uint32_t Driver::RefKey(const std::shared_ptr<MailboxData>& data) {
  auto identity = std::make_pair(data->mailbox_id(), data->uid_validity());
  auto [it, inserted] = ref_keys_.try_emplace(identity, 0);
  if (inserted) {
    refs_.push_back(std::make_unique<MailboxRef>());
    refs_.back()->data = data;
    it->second = static_cast<uint32_t>(refs_.size());
  }
  return it->second;
}

Ino Driver::MessageIno(uint32_t key, uint32_t uid) const {
  Ino ino = (static_cast<Ino>(key) << 32) | uid;
  auto it = message_ino_override_.find(ino);
  return it == message_ino_override_.end() ? ino : it->second;
}

void Driver::CountLookup(Ino ino) {
  Node* node = FindNode(ino);
  if (node != nullptr) ++node->lookups;
}

void Driver::Forget(Ino ino, uint64_t count) {
  std::lock_guard lock(mu_);
  Node* node = FindNode(ino);
  if (node == nullptr) {
    if (ino == kRootIno) return;
    spdlog::critical("forget of unknown inode {}", ino);
    std::abort();
  }
  if (node->lookups < count) {
    spdlog::critical("lookup count underflow on inode {}: {} < {}", ino, node->lookups, count);
    std::abort();
  }
  node->lookups -= count;
  if (node->lookups > 0) return;
  // Directories keep their number for the life of the mount; messages are
  // numbered by identity and files being written by their table entry.
  if (node->kind == NodeKind::kMessage ||
      (node->kind == NodeKind::kPending &&
       node->pending()->state == PendingFile::State::kDiscarded)) {
    nodes_.erase(ino);
  }
}

// ---------------------------------------------------------------------------
// Resolution

int Driver::DirectoryName(Ino ino, std::string* name) {
  std::lock_guard lock(mu_);
  Node* node = FindNode(ino);
  if (node == nullptr) return ENOENT;
  switch (node->kind) {
    case NodeKind::kRoot:
      name->clear();
      return 0;
    case NodeKind::kDirectory:
      *name = node->mailbox_name();
      return 0;
    default:
      return ENOTDIR;
  }
}

int Driver::ResolveMailbox(const std::string& name, std::shared_ptr<MailboxData>* data,
                           uint32_t* key) {
  if (name.empty()) return ENOENT;
  auto mailbox = store_->GetMailbox(name);
  if (!mailbox.ok()) return ErrnoOf(mailbox.status());
  *data = *mailbox;
  {
    std::lock_guard lock(mu_);
    *key = RefKey(*data);
  }
  ClaimRecentOnce(*key, *data);
  return 0;
}

void Driver::NoteOwnAddition(const std::string& mailbox, uint32_t uid) {
  // The change feed reports each addition once; one it never reports (a
  // store that does not report its own) must not pile up. Dropping an
  // entry costs one claim later, never a wrong answer.
  if (own_added_.size() >= 1024) {
    const int64_t old = Now() - 60;
    std::erase_if(own_added_, [old](const auto& entry) { return entry.second < old; });
    if (own_added_.size() >= 4096) own_added_.clear();
  }
  own_added_[std::make_pair(mailbox, uid)] = Now();
}

void Driver::ClaimRecentOnce(uint32_t key, const std::shared_ptr<MailboxData>& data) {
  {
    std::lock_guard lock(mu_);
    MailboxRef& ref = *refs_[key - 1];
    if (ref.recent_claimed) return;
    ref.recent_claimed = true;
  }
  auto claimed = data->ClaimRecent();
  if (!claimed.ok()) {
    spdlog::warn("claiming \\Recent: {}", claimed.status().ToString());
    return;
  }
  std::lock_guard lock(mu_);
  refs_[key - 1]->recent.insert(claimed->begin(), claimed->end());
}

bool Driver::MailboxOrParentExists(const std::string& name) {
  auto names = store_->ListMailboxes();
  if (!names.ok()) return false;
  for (const auto& m : *names) {
    if (IsSameOrBelow(m, name)) return true;
  }
  return false;
}

int Driver::ResolveChild(Ino parent, std::string_view name, Resolved* out) {
  std::string parent_name;
  if (int err = DirectoryName(parent, &parent_name)) return err;
  std::string name_str(name);

  if (parent != kRootIno) {
    std::shared_ptr<MailboxData> data;
    uint32_t key = 0;
    if (ResolveMailbox(parent_name, &data, &key) == 0) {
      // The canonical name first; an alias (a name given by mv, or one a
      // replaced message had) when no message has that UID.
      uint32_t alias_uid = 0;
      {
        std::lock_guard lock(mu_);
        auto& aliases = refs_[key - 1]->aliases;
        auto it = aliases.find(name);
        if (it != aliases.end()) alias_uid = it->second;
      }
      for (uint32_t uid : {CanonicalUid(name), alias_uid}) {
        if (uid == 0) continue;
        auto info = data->Get(uid);
        if (info.ok()) {
          out->kind = NodeKind::kMessage;
          out->data = data;
          out->key = key;
          out->uid = uid;
          out->info = *info;
          std::lock_guard lock(mu_);
          out->ino = MessageIno(key, uid);
          return 0;
        }
        if (info.status().code() != ErrorCode::kNotFound &&
            info.status().code() != ErrorCode::kExpunged) {
          return ErrnoOf(info.status());
        }
      }
    }
  }
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(std::make_pair(parent, name_str));
    if (it != pending_.end()) {
      out->kind = NodeKind::kPending;
      out->pending = it->second;
      out->ino = it->second->ino;
      return 0;
    }
  }
  std::string child = JoinMailboxName(parent_name, name);
  auto normalized = NormalizeMailboxName(child);
  if (normalized.ok() && *normalized == child && MailboxOrParentExists(child)) {
    out->kind = NodeKind::kDirectory;
    out->mailbox_name = child;
    std::lock_guard lock(mu_);
    out->ino = DirectoryIno(child);
    return 0;
  }
  return ENOENT;
}

int Driver::MessageByNode(Ino ino, std::shared_ptr<MailboxData>* data, uint32_t* uid,
                          uint32_t* key) {
  std::lock_guard lock(mu_);
  Node* node = FindNode(ino);
  if (node == nullptr) return ENOENT;
  if (node->kind != NodeKind::kMessage) return EINVAL;
  *data = refs_[node->key - 1]->data;
  *uid = node->uid;
  if (key != nullptr) *key = node->key;
  return 0;
}

bool Driver::ShownReadOnly(uint32_t key, const std::shared_ptr<MailboxData>& data) {
  // Asked for the mode bits of every getattr, lookup and listing, and on
  // Maildir each answer is three access() calls: one answer serves a
  // mailbox for a second. Nothing refuses a change on this answer alone
  // (the store refuses changes to a read-only mailbox itself), and the
  // kernel keeps attributes for attr_timeout anyway, so a chmod or chattr
  // of the Maildir shows in the mode bits at most a second later than the
  // kernel asks again.
  constexpr int64_t kReadOnlyLifetimeMs = 1000;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  {
    std::lock_guard lock(mu_);
    MailboxRef& ref = *refs_[key - 1];
    if (ref.readonly_asked_ms && now - *ref.readonly_asked_ms < kReadOnlyLifetimeMs) {
      return ref.readonly;
    }
  }
  bool readonly = data->readonly();
  std::lock_guard lock(mu_);
  MailboxRef& ref = *refs_[key - 1];
  ref.readonly = readonly;
  ref.readonly_asked_ms = now;
  return readonly;
}

// ---------------------------------------------------------------------------
// Attributes

void Driver::FillDirectoryAttr(Ino ino, bool readonly, struct stat* st) const {
  *st = {};
  st->st_ino = ino;
  st->st_mode = S_IFDIR | (readonly ? 0555 : 0755);
  st->st_nlink = 2;
  st->st_uid = owner_uid_;
  st->st_gid = owner_gid_;
  st->st_blksize = 4096;
  st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = mount_time_;
}

void Driver::FillMessageAttr(Ino ino, uint64_t size, UnixSeconds internal_date, bool readonly,
                             struct stat* st) const {
  *st = {};
  st->st_ino = ino;
  st->st_mode = S_IFREG | (readonly ? 0444 : 0644);
  st->st_nlink = 1;
  st->st_uid = owner_uid_;
  st->st_gid = owner_gid_;
  st->st_size = static_cast<off_t>(size);
  st->st_blksize = 4096;
  st->st_blocks = static_cast<blkcnt_t>((size + 511) / 512);
  st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = internal_date;
}

int Driver::FillPendingAttr(const PendingFile& file, struct stat* st) const {
  struct stat spool {};
  if (::fstat(file.Spool()->fd, &spool) != 0) return errno;
  *st = {};
  st->st_mode = S_IFREG | 0644;
  st->st_nlink = 1;
  st->st_uid = owner_uid_;
  st->st_gid = owner_gid_;
  st->st_size = spool.st_size;
  // What `cp` and `cat` take for their buffer size: one write request of
  // up to the connection's max_write (1 MiB) instead of 128 KiB ones, each
  // of which also costs the kernel a getxattr(security.capability).
  st->st_blksize = kPendingBlockSize;
  st->st_blocks = spool.st_blocks;
  st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = file.mtime;
  return 0;
}

int Driver::EntryForMessage(uint32_t key, const std::shared_ptr<MailboxData>& data,
                            const MessageInfo& info, EntryReply* out) {
  bool readonly = ShownReadOnly(key, data);
  std::lock_guard lock(mu_);
  out->ino = MessageIno(key, info.uid);
  Node& node = AddNode(out->ino, NodeKind::kMessage);
  if (node.kind == NodeKind::kMessage) {
    node.key = key;
    node.uid = info.uid;
  }
  ++node.lookups;
  FillMessageAttr(out->ino, info.size, info.internal_date, readonly, &out->attr);
  out->entry_timeout = options_.entry_timeout;
  out->attr_timeout = options_.attr_timeout;
  return 0;
}

int Driver::Lookup(Ino parent, std::string_view name, EntryReply* out) {
  Resolved r;
  if (int err = ResolveChild(parent, name, &r)) {
    // The kernel may remember the absence for a while (cp asks three times
    // for each new file: two stats, then the lookup inside its create),
    // but only of a name that cannot begin to exist behind its back:
    //  - a canonical name (17.eml) appears when a message gets that UID, by
    //    an append, copy or move here or elsewhere, and the change feed
    //    would invalidate it only later: not cached;
    //  - any other name becomes a message, a file being written, an alias
    //    or a mailbox only by an operation on that very name through the
    //    kernel (create, rename, link, mkdir), which replaces the negative
    //    entry, or by a mailbox appearing in the store, which the change
    //    feed invalidates by name (kMailboxAdded). Only a feed that
    //    overflowed could leave one stale, for at most negative_timeout.
    if (err == ENOENT && CanonicalUid(name) == 0) out->entry_timeout = options_.negative_timeout;
    return err;
  }
  switch (r.kind) {
    case NodeKind::kMessage:
      return EntryForMessage(r.key, r.data, r.info, out);
    case NodeKind::kPending: {
      std::lock_guard lock(mu_);
      if (int err = FillPendingAttr(*r.pending, &out->attr)) return err;
      out->ino = out->attr.st_ino = r.ino;
      CountLookup(r.ino);
      return 0;  // timeouts 0: size changes while it is written
    }
    case NodeKind::kDirectory: {
      std::shared_ptr<MailboxData> data;
      uint32_t key = 0;
      bool readonly = ResolveMailbox(r.mailbox_name, &data, &key) == 0 && ShownReadOnly(key, data);
      std::lock_guard lock(mu_);
      FillDirectoryAttr(r.ino, readonly, &out->attr);
      out->ino = r.ino;
      out->entry_timeout = options_.entry_timeout;
      out->attr_timeout = options_.attr_timeout;
      CountLookup(r.ino);
      return 0;
    }
    case NodeKind::kRoot:
      break;
  }
  return ENOENT;
}

int Driver::GetAttr(Ino ino, struct stat* out, double* timeout) {
  NodeKind kind;
  std::string mailbox_name;
  std::shared_ptr<PendingFile> pending;
  {
    std::lock_guard lock(mu_);
    Node* node = FindNode(ino);
    if (node == nullptr) return ENOENT;
    kind = node->kind;
    mailbox_name = node->mailbox_name();
    pending = node->pending();
  }
  *timeout = options_.attr_timeout;
  switch (kind) {
    case NodeKind::kRoot:
      FillDirectoryAttr(ino, false, out);
      return 0;
    case NodeKind::kDirectory: {
      std::shared_ptr<MailboxData> data;
      uint32_t key = 0;
      if (ResolveMailbox(mailbox_name, &data, &key) == 0) {
        FillDirectoryAttr(ino, ShownReadOnly(key, data), out);
        return 0;
      }
      if (!MailboxOrParentExists(mailbox_name)) return ENOENT;
      FillDirectoryAttr(ino, false, out);
      return 0;
    }
    case NodeKind::kMessage: {
      std::shared_ptr<MailboxData> data;
      uint32_t uid = 0;
      uint32_t key = 0;
      if (int err = MessageByNode(ino, &data, &uid, &key)) return err;
      uint64_t size = 0;
      UnixSeconds date = 0;
      bool known = false;
      {
        // `cp` stats each file right after closing it, and the writes made
        // the kernel's attributes stale: the first answer after the append
        // comes from what was appended (size and date never change), not
        // from a Get, which on Redis is a round trip.
        std::lock_guard lock(mu_);
        Node* node = FindNode(ino);
        Node::Extras* extras = node != nullptr ? node->extras_if_any() : nullptr;
        if (extras != nullptr && extras->appended_attrs) {
          known = true;
          extras->appended_attrs = false;
          size = extras->appended_size;
          date = extras->appended_date;
        }
      }
      if (!known) {
        auto info = data->Get(uid);
        if (!info.ok()) return ErrnoOf(info.status());
        size = info->size;
        date = info->internal_date;
      }
      FillMessageAttr(ino, size, date, ShownReadOnly(key, data), out);
      return 0;
    }
    case NodeKind::kPending: {
      std::lock_guard lock(mu_);
      if (pending->state == PendingFile::State::kDiscarded) return ENOENT;
      *timeout = 0;
      if (int err = FillPendingAttr(*pending, out)) return err;
      out->st_ino = ino;
      return 0;
    }
  }
  return ENOENT;
}

int Driver::SetAttr(Ino ino, const SetAttrRequest& request, struct stat* out, double* timeout) {
  std::shared_ptr<PendingFile> pending;
  {
    std::lock_guard lock(mu_);
    Node* node = FindNode(ino);
    if (node == nullptr) return ENOENT;
    // A message just appended from a file still open for writing keeps
    // its file: a date set now reaches the re-append at the last close.
    pending = node->pending();
    if (node->kind == NodeKind::kMessage && request.set_size) return EACCES;
  }
  if (pending) {
    if (request.set_size) {
      if (pending->state != PendingFile::State::kOpen) return EACCES;
      if (int err = WritableSpool(*pending, [&](int fd) {
            return ::ftruncate(fd, static_cast<off_t>(request.size)) != 0 ? errno : 0;
          })) {
        return err;
      }
    }
    if (request.set_mtime) {
      std::lock_guard lock(mu_);
      pending->mtime = request.mtime;
    }
  }
  // Mail has no owners or modes, and a stored message's internal date is
  // fixed: chmod, chown and utimens on stored messages are accepted and
  // change nothing, so cp -a, rsync -a and tar -x complete.
  return GetAttr(ino, out, timeout);
}

// ---------------------------------------------------------------------------
// Directories

int Driver::OpenDir(Ino ino, pid_t caller, uint64_t* handle, bool* shared) {
  std::string name;
  if (int err = DirectoryName(ino, &name)) return err;
  auto dir = std::make_unique<DirHandle>();
  dir->ino = ino;

  auto names = store_->ListMailboxes();
  if (!names.ok()) return ErrnoOf(names.status());
  std::set<std::string> children;
  for (const auto& m : *names) {
    if (!name.empty() && !(IsSameOrBelow(m, name) && m.size() > name.size())) continue;
    std::string_view rest = std::string_view(m).substr(name.empty() ? 0 : name.size() + 1);
    children.emplace(rest.substr(0, rest.find(kDelimiter)));
  }
  if (!name.empty() && children.empty() &&
      std::find(names->begin(), names->end(), name) == names->end()) {
    return ENOENT;  // deleted
  }

  std::shared_ptr<MailboxData> data;
  uint32_t key = 0;
  int resolved = name.empty() ? ENOENT : ResolveMailbox(name, &data, &key);
  // ENOENT: a \Noselect parent, listed with its children only. Any other
  // failure must not pass for an empty mailbox: a backup or rsync --delete
  // would take the mail for gone.
  if (resolved != 0 && resolved != ENOENT) return resolved;
  if (resolved == 0) {
    auto listed = data->List();
    if (!listed.ok()) return ErrnoOf(listed.status());
    dir->messages = std::move(*listed);
    dir->readonly = ShownReadOnly(key, data);
    dir->key = key;
  }

  std::vector<bool> child_readonly;
  for (const auto& child : children) {
    std::shared_ptr<MailboxData> child_data;
    uint32_t child_key = 0;
    child_readonly.push_back(
        ResolveMailbox(JoinMailboxName(name, child), &child_data, &child_key) == 0 &&
        ShownReadOnly(child_key, child_data));
  }

  pid_t caller_process = thread_groups_->ProcessOf(caller);
  std::lock_guard lock(mu_);
  size_t child_index = 0;
  for (const auto& child : children) {
    std::string full = JoinMailboxName(name, child);
    dir->children.push_back(
        {child, NodeKind::kDirectory, DirectoryIno(full), child_readonly[child_index++]});
  }
  // The caller's own files in progress and scratch files.
  *shared = true;
  for (auto it = pending_.lower_bound(std::make_pair(ino, std::string()));
       it != pending_.end() && it->first.first == ino; ++it) {
    *shared = false;
    if (it->second->creator == caller_process) {
      dir->pending.push_back({it->first.second, NodeKind::kPending, it->second->ino, false});
    }
  }
  *handle = reinterpret_cast<uint64_t>(dir.get());
  dir_handles_.emplace(dir.get(), std::move(dir));
  return 0;
}

int Driver::ReadDir(Ino ino, uint64_t handle, uint64_t offset, bool plus, const DirFiller& add) {
  auto* dir = reinterpret_cast<DirHandle*>(handle);
  const size_t total = dir->size();
  const size_t first_message = 2 + dir->children.size();
  const size_t first_pending = first_message + dir->messages.size();
  std::string message_name;
  // One lock for the whole reply: filling it is memory work only.
  std::lock_guard lock(mu_);
  for (uint64_t index = offset; index < total; ++index) {
    EntryReply entry;
    std::string_view name;
    NodeKind kind;
    uint32_t uid = 0;
    if (index < 2) {
      name = index == 0 ? "." : "..";
      entry.attr.st_ino = ino;
      entry.attr.st_mode = S_IFDIR;
      if (!add(name, entry, index + 1)) break;
      continue;
    }
    if (index < first_message) {
      const DirHandle::Named& child = dir->children[index - 2];
      name = child.name;
      kind = NodeKind::kDirectory;
      entry.ino = child.ino;
      FillDirectoryAttr(child.ino, child.readonly, &entry.attr);
    } else if (index < first_pending) {
      const ListedMessage& message = dir->messages[index - first_message];
      message_name = CanonicalName(message.uid);
      name = message_name;
      kind = NodeKind::kMessage;
      uid = message.uid;
      entry.ino = MessageIno(dir->key, message.uid);
      FillMessageAttr(entry.ino, message.size, message.internal_date, dir->readonly, &entry.attr);
    } else {
      const DirHandle::Named& file = dir->pending[index - first_pending];
      name = file.name;
      kind = NodeKind::kPending;
      entry.ino = file.ino;
      Node* node = FindNode(file.ino);
      if (node == nullptr || node->kind != NodeKind::kPending) continue;
      if (FillPendingAttr(*node->pending(), &entry.attr) != 0) continue;
      entry.attr.st_ino = file.ino;
    }
    if (plus && kind != NodeKind::kPending) {
      entry.entry_timeout = options_.entry_timeout;
      entry.attr_timeout = options_.attr_timeout;
    }
    if (!plus) entry.ino = 0;
    if (!add(name, entry, index + 1)) break;
    if (plus) {
      Node& node = AddNode(entry.ino, kind);
      if (kind == NodeKind::kMessage && node.kind == NodeKind::kMessage) {
        node.key = dir->key;
        node.uid = uid;
      }
      ++node.lookups;
    }
  }
  return 0;
}

void Driver::ReleaseDir(uint64_t handle) {
  std::lock_guard lock(mu_);
  dir_handles_.erase(reinterpret_cast<DirHandle*>(handle));
}

uint64_t Driver::AdoptHandle(std::unique_ptr<FileHandle> handle) {
  auto* raw = handle.get();
  file_handles_.emplace(raw, std::move(handle));
  return reinterpret_cast<uint64_t>(raw);
}

int Driver::Mkdir(Ino parent, std::string_view name, EntryReply* out) {
  std::string parent_name;
  if (int err = DirectoryName(parent, &parent_name)) return err;
  std::shared_ptr<MailboxData> parent_data;
  uint32_t parent_key = 0;
  if (ResolveMailbox(parent_name, &parent_data, &parent_key) == 0 && parent_data->readonly()) {
    return EROFS;
  }
  std::string full = JoinMailboxName(parent_name, name);
  auto normalized = NormalizeMailboxName(full);
  if (!normalized.ok()) return ErrnoOf(normalized.status());
  if (*normalized != full) return EEXIST;  // "inbox" at the top is INBOX
  auto added = store_->AddMailbox(full);
  if (!added.ok()) return ErrnoOf(added.status());
  std::lock_guard lock(mu_);
  out->ino = DirectoryIno(full);
  FillDirectoryAttr(out->ino, false, &out->attr);
  out->entry_timeout = options_.entry_timeout;
  out->attr_timeout = options_.attr_timeout;
  CountLookup(out->ino);
  return 0;
}

int Driver::Rmdir(Ino parent, std::string_view name) {
  Resolved r;
  if (int err = ResolveChild(parent, name, &r)) return err;
  if (r.kind != NodeKind::kDirectory) return ENOTDIR;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.lower_bound(std::make_pair(r.ino, std::string()));
    if (it != pending_.end() && it->first.first == r.ino) return ENOTEMPTY;
  }
  Status deleted = store_->DeleteMailbox(r.mailbox_name);
  if (deleted.code() == ErrorCode::kNotFound && MailboxOrParentExists(r.mailbox_name)) {
    return ENOTEMPTY;  // a \Noselect parent: it has children
  }
  if (!deleted.ok()) return ErrnoOf(deleted);
  std::lock_guard lock(mu_);
  directory_inos_.erase(r.mailbox_name);
  return 0;
}

// ---------------------------------------------------------------------------
// Messages: unlink, rename, link

int Driver::ExpungeName(uint32_t key, const std::shared_ptr<MailboxData>& data, uint32_t uid) {
  if (data->readonly()) return EROFS;
  uint32_t uids[] = {uid};
  Status deleted = data->Delete(uids);
  if (!deleted.ok()) return ErrnoOf(deleted);
  std::lock_guard lock(mu_);
  MailboxRef& ref = *refs_[key - 1];
  ref.recent.erase(uid);
  std::erase_if(ref.aliases, [uid](const auto& alias) { return alias.second == uid; });
  return 0;
}

int Driver::Unlink(Ino parent, std::string_view name) {
  Resolved r;
  if (int err = ResolveChild(parent, name, &r)) return err;
  switch (r.kind) {
    case NodeKind::kMessage:
      return ExpungeName(r.key, r.data, r.uid);
    case NodeKind::kPending:
      DiscardPending(r.pending, false);
      return 0;
    case NodeKind::kDirectory:
      return EISDIR;
    case NodeKind::kRoot:
      break;
  }
  return ENOENT;
}

int Driver::Rename(Ino parent, std::string_view name, Ino new_parent, std::string_view new_name,
                   unsigned flags) {
  if (flags & RENAME_EXCHANGE) return EINVAL;
  Resolved source;
  if (int err = ResolveChild(parent, name, &source)) return err;
  switch (source.kind) {
    case NodeKind::kDirectory:
      return RenameMailbox(parent, name, new_parent, new_name, flags);
    case NodeKind::kMessage:
      return RenameMessage(source, new_parent, new_name, flags);
    case NodeKind::kPending:
      return RenamePending(source, new_parent, new_name, flags);
    case NodeKind::kRoot:
      break;
  }
  return ENOENT;
}

int Driver::RenameMailbox(Ino parent, std::string_view name, Ino new_parent,
                          std::string_view new_name, unsigned flags) {
  std::string parent_name, new_parent_name;
  if (int err = DirectoryName(parent, &parent_name)) return err;
  if (int err = DirectoryName(new_parent, &new_parent_name)) return err;
  std::string before = JoinMailboxName(parent_name, name);
  std::string after = JoinMailboxName(new_parent_name, new_name);
  auto normalized = NormalizeMailboxName(after);
  if (!normalized.ok()) return ErrnoOf(normalized.status());
  if (*normalized != after) return EEXIST;

  Resolved target;
  if (ResolveChild(new_parent, new_name, &target) == 0) {
    if (flags & RENAME_NOREPLACE) return EEXIST;
    if (target.kind != NodeKind::kDirectory) return ENOTDIR;
    std::shared_ptr<MailboxData> data;
    uint32_t key = 0;
    bool has_messages = false;
    if (ResolveMailbox(target.mailbox_name, &data, &key) == 0) {
      auto snapshot = data->Snapshot();
      has_messages = snapshot.ok() && snapshot->exists > 0;
    }
    auto names = store_->ListMailboxes();
    bool has_children =
        names.ok() && std::any_of(names->begin(), names->end(), [&](const std::string& m) {
          return m != target.mailbox_name && IsSameOrBelow(m, target.mailbox_name);
        });
    return has_messages || has_children ? ENOTEMPTY : EEXIST;
  }

  Status renamed = store_->RenameMailbox(before, after);
  if (!renamed.ok()) return ErrnoOf(renamed);

  std::lock_guard lock(mu_);
  if (IsInbox(before)) {
    // Only INBOX's messages moved: its inode now names `after`; its
    // children stay under INBOX, so the kernel must forget them under the
    // renamed directory.
    Ino moved = directory_inos_[before];
    directory_inos_.erase(before);
    directory_inos_[after] = moved;
    FindNode(moved)->extras().mailbox_name = after;
    for (const auto& [dir_name, dir_ino] : directory_inos_) {
      if (IsSameOrBelow(dir_name, before) && ParentName(dir_name) == before) {
        queued_invalidations_.push_back(
            {Invalidation::Kind::kEntry, moved, std::string(LeafName(dir_name))});
      }
    }
    return 0;
  }
  std::vector<std::pair<std::string, Ino>> moved;
  for (auto it = directory_inos_.begin(); it != directory_inos_.end();) {
    if (IsSameOrBelow(it->first, before)) {
      moved.emplace_back(after + it->first.substr(before.size()), it->second);
      it = directory_inos_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [new_dir_name, dir_ino] : moved) {
    FindNode(dir_ino)->extras().mailbox_name = new_dir_name;
    directory_inos_[new_dir_name] = dir_ino;
  }
  return 0;
}

// The mailbox a message may be put into through `dir`: a \Noselect parent
// becomes a mailbox first, as when a file is written into it.
static int MailboxForWriting(MailboxSet& store, const std::string& name,
                             std::shared_ptr<MailboxData>* data) {
  if (name.empty()) return EPERM;  // messages live in mailboxes, not at the top
  auto mailbox = store.GetMailbox(name);
  if (!mailbox.ok() && mailbox.status().code() == ErrorCode::kNotFound) {
    auto added = store.AddMailbox(name);
    if (!added.ok() && added.status().code() != ErrorCode::kExists) {
      return ErrnoOf(added.status());
    }
    mailbox = store.GetMailbox(name);
  }
  if (!mailbox.ok()) return ErrnoOf(mailbox.status());
  *data = *mailbox;
  return 0;
}

int Driver::RenameMessage(const Resolved& source, Ino new_parent, std::string_view new_name,
                          unsigned flags) {
  std::string dest_name;
  if (int err = DirectoryName(new_parent, &dest_name)) return err;
  Resolved target;
  bool has_target = ResolveChild(new_parent, new_name, &target) == 0;
  if (has_target) {
    if (target.kind == NodeKind::kDirectory) return EISDIR;
    if (target.kind == NodeKind::kPending) return EBUSY;
    if (target.key == source.key && target.uid == source.uid) return 0;
    if (flags & RENAME_NOREPLACE) return EEXIST;
  }
  if (dest_name.empty()) return EPERM;
  std::shared_ptr<MailboxData> dest;
  if (int err = MailboxForWriting(*store_, dest_name, &dest)) return err;
  uint32_t dest_key;
  {
    std::lock_guard lock(mu_);
    dest_key = RefKey(dest);
  }

  if (dest_key == source.key) {
    // Within one mailbox: the new name becomes an alias; onto another
    // message it replaces that message.
    if (source.data->readonly()) return EROFS;
    if (has_target) {
      if (int err = ExpungeName(target.key, target.data, target.uid)) return err;
    }
    std::lock_guard lock(mu_);
    auto& aliases = refs_[source.key - 1]->aliases;
    std::erase_if(aliases, [&](const auto& a) { return a.second == source.uid; });
    if (CanonicalUid(new_name) != source.uid) aliases[std::string(new_name)] = source.uid;
    return 0;
  }

  // Between mailboxes: a move. `mv INBOX/5.eml Archive/` lands on
  // Archive's own 5.eml when Archive has a UID 5; that is a coincidence of
  // numbering, not a request to replace, so the other message is kept.
  bool replace = has_target &&
                 !(new_name == CanonicalName(source.uid) && CanonicalUid(new_name) == target.uid);
  auto moved = source.data->Move(source.uid, *dest, false);
  if (!moved.ok()) return ErrnoOf(moved.status());
  uint32_t new_uid = *moved;
  if (replace) {
    if (int err = ExpungeName(target.key, target.data, target.uid)) {
      spdlog::warn("moved {} but could not replace {}: errno {}", new_name, target.uid, err);
    }
  }
  std::lock_guard lock(mu_);
  Ino composed_old = (static_cast<Ino>(source.key) << 32) | source.uid;
  Ino composed_new = (static_cast<Ino>(dest_key) << 32) | new_uid;
  message_ino_override_.erase(composed_old);
  if (source.ino != composed_new) message_ino_override_[composed_new] = source.ino;
  if (Node* node = FindNode(source.ino); node != nullptr && node->kind == NodeKind::kMessage) {
    node->key = dest_key;
    node->uid = new_uid;
  }
  std::erase_if(refs_[source.key - 1]->aliases,
                [&](const auto& a) { return a.second == source.uid; });
  refs_[dest_key - 1]->recent.insert(new_uid);
  NoteOwnAddition(dest_name, new_uid);
  if (has_target && !replace) {
    // The kernel now thinks new_name is the moved message: correct it.
    queued_invalidations_.push_back(
        {Invalidation::Kind::kEntry, new_parent, std::string(new_name)});
  } else if (CanonicalUid(new_name) != new_uid) {
    refs_[dest_key - 1]->aliases[std::string(new_name)] = new_uid;
  }
  return 0;
}

int Driver::RenamePending(const Resolved& source, Ino new_parent, std::string_view new_name,
                          unsigned flags) {
  const std::shared_ptr<PendingFile>& file = source.pending;
  Resolved target;
  bool has_target = ResolveChild(new_parent, new_name, &target) == 0;
  uint32_t replace_uid = 0;
  if (has_target) {
    if (target.kind == NodeKind::kDirectory) return EISDIR;
    if (target.kind == NodeKind::kPending && target.pending == file) return 0;
    if (flags & RENAME_NOREPLACE) return EEXIST;
    if (target.kind == NodeKind::kPending) {
      DiscardPending(target.pending, false);
    } else {
      replace_uid = target.uid;
    }
  }
  bool to_scratch = IsScratchName(new_name);
  std::string dest_name;
  if (int err = DirectoryName(new_parent, &dest_name)) return err;
  if (!to_scratch && dest_name.empty()) return EPERM;
  if (replace_uid != 0 && to_scratch) return EBUSY;

  Ino old_parent;
  std::string old_name;
  bool was_scratch;
  bool commit_now;
  {
    std::lock_guard lock(mu_);
    if (file->state != PendingFile::State::kOpen) return ENOENT;
    if (replace_uid != 0 && file->writers > 0) return EBUSY;
    old_parent = file->parent;
    old_name = file->name;
    was_scratch = file->scratch;
    pending_.erase(std::make_pair(old_parent, old_name));
    file->parent = new_parent;
    file->name = std::string(new_name);
    file->scratch = to_scratch;
    pending_[std::make_pair(new_parent, file->name)] = file;
    // A scratch file that nobody holds open any more becomes a message now
    // (rsync's temporary, sed -i's output); otherwise at its last close.
    // "Closed" is the writers' close() (flush), not the release the kernel
    // sends after it without waiting: `close(fd); rename(...)` must find
    // the message stored when rename returns. A descriptor still held
    // (a child's copy) may write more: that is appended again at release.
    commit_now = !to_scratch && (file->writers == 0 ||
                                 (file->unflushed_writers == 0 && !IsEmpty(file->Spool()->fd)));
    if (commit_now) file->state = PendingFile::State::kCommitting;
  }
  if (!commit_now) return 0;
  int err = Commit(file, replace_uid, /*empty_is_error=*/true);
  if (err != 0) {
    // Put it back where it was, so the caller still has its file.
    std::lock_guard lock(mu_);
    pending_.erase(std::make_pair(new_parent, file->name));
    file->parent = old_parent;
    file->name = old_name;
    file->scratch = was_scratch;
    file->state = PendingFile::State::kOpen;
    pending_[std::make_pair(old_parent, old_name)] = file;
  }
  return err;
}

int Driver::Link(Ino ino, Ino new_parent, std::string_view new_name, EntryReply* out) {
  std::shared_ptr<MailboxData> source;
  uint32_t uid = 0;
  if (int err = MessageByNode(ino, &source, &uid)) return err == EINVAL ? EPERM : err;
  std::string dest_name;
  if (int err = DirectoryName(new_parent, &dest_name)) return err;
  std::shared_ptr<MailboxData> dest;
  if (int err = MailboxForWriting(*store_, dest_name, &dest)) return err;
  auto copied = source->Copy(uid, *dest, false);
  if (!copied.ok()) return ErrnoOf(copied.status());
  auto info = dest->Get(*copied);
  if (!info.ok()) return ErrnoOf(info.status());
  uint32_t dest_key;
  {
    std::lock_guard lock(mu_);
    dest_key = RefKey(dest);
    refs_[dest_key - 1]->recent.insert(*copied);
    NoteOwnAddition(dest_name, *copied);
    if (CanonicalUid(new_name) != *copied) {
      refs_[dest_key - 1]->aliases[std::string(new_name)] = *copied;
    }
  }
  return EntryForMessage(dest_key, dest, *info, out);
}

// ---------------------------------------------------------------------------
// Files: create, open, read, write, close

int Driver::Create(Ino parent, std::string_view name, mode_t mode, int flags, pid_t caller,
                   EntryReply* out, uint64_t* handle) {
  (void)flags;
  if (!S_ISREG(mode)) return EPERM;
  std::string parent_name;
  if (int err = DirectoryName(parent, &parent_name)) return err;
  bool scratch = IsScratchName(name);
  if (!scratch) {
    if (parent_name.empty()) return EPERM;  // messages live in mailboxes
    std::shared_ptr<MailboxData> data;
    uint32_t key = 0;
    if (ResolveMailbox(parent_name, &data, &key) == 0 && data->readonly()) return EROFS;
  }
  int fd = spool_files_->Take();
  if (fd < 0) {
    int err = errno;
    spdlog::error("cannot create a spool file in {}: {}", options_.spool_dir, strerror(err));
    return err == ENOSPC ? ENOSPC : EIO;
  }
  auto file = std::make_shared<PendingFile>();
  file->spool = std::make_shared<SpoolFile>(fd);
  file->parent = parent;
  file->name = std::string(name);
  file->scratch = scratch;
  file->mtime = Now();
  file->creator = thread_groups_->ProcessOf(caller);
  file->writers = 1;
  file->unflushed_writers = 1;

  std::lock_guard lock(mu_);
  auto key = std::make_pair(parent, file->name);
  if (pending_.count(key) != 0) return EEXIST;
  file->ino = next_ino_++;
  Node& node = AddNode(file->ino, NodeKind::kPending);
  node.extras().pending = file;
  node.lookups = 1;
  pending_[key] = file;
  if (int err = FillPendingAttr(*file, &out->attr)) return err;
  out->ino = out->attr.st_ino = file->ino;
  // The kernel may keep both: the name keeps resolving to this inode when
  // the file becomes a message (or the name is invalidated when it is
  // dropped, see DiscardPending), and whatever changes the attributes of a
  // file being written goes through the kernel: a write or a truncate (the
  // kernel updates the size and marks the times stale), setattr (answered
  // with the new attributes) or setxattr (marks them stale). So `cp`'s
  // fstat after its create, and its stat after the close, do not each
  // cost a lookup.
  out->entry_timeout = options_.entry_timeout;
  out->attr_timeout = options_.attr_timeout;
  *handle = AdoptHandle(
      std::make_unique<FileHandle>(FileHandle{nullptr, file, true, false, file->creator}));
  return 0;
}

int Driver::Open(Ino ino, int flags, pid_t caller, uint64_t* handle, bool* keep_cache) {
  std::shared_ptr<PendingFile> pending;
  {
    std::lock_guard lock(mu_);
    Node* node = FindNode(ino);
    if (node == nullptr) return ENOENT;
    if (node->kind == NodeKind::kRoot || node->kind == NodeKind::kDirectory) return EISDIR;
    if (node->kind == NodeKind::kPending) pending = node->pending();
  }
  bool writable = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  if (!pending) {
    // Stored messages are immutable.
    if (writable) return EACCES;
    if (options_.no_open) return ENOSYS;
    std::shared_ptr<MailboxData> data;
    uint32_t uid = 0;
    if (int err = MessageByNode(ino, &data, &uid)) return err;
    auto reader = data->Open(uid);
    if (!reader.ok()) return ErrnoOf(reader.status());
    *keep_cache = true;
    std::lock_guard lock(mu_);
    *handle =
        AdoptHandle(std::make_unique<FileHandle>(FileHandle{*reader, nullptr, false, false, 0}));
    return 0;
  }
  pid_t opener = thread_groups_->ProcessOf(caller);
  if (flags & O_TRUNC) {
    {
      std::lock_guard lock(mu_);
      if (pending->state != PendingFile::State::kOpen) return EACCES;
    }
    if (int err =
            WritableSpool(*pending, [](int fd) { return ::ftruncate(fd, 0) != 0 ? errno : 0; }))
      return err;
  }
  std::lock_guard lock(mu_);
  if (pending->state == PendingFile::State::kDiscarded) return ENOENT;
  if (writable && pending->state != PendingFile::State::kOpen) return EACCES;
  if (writable) {
    ++pending->writers;
    ++pending->unflushed_writers;
  }
  *keep_cache = false;
  *handle = AdoptHandle(
      std::make_unique<FileHandle>(FileHandle{nullptr, pending, writable, false, opener}));
  return 0;
}

int Driver::CachedReader(Ino ino, std::shared_ptr<const ContentReader>* reader) {
  {
    std::lock_guard lock(mu_);
    for (auto it = recent_readers_.begin(); it != recent_readers_.end(); ++it) {
      if (it->first != ino) continue;
      *reader = it->second;
      std::rotate(it, it + 1, recent_readers_.end());
      return 0;
    }
  }
  std::shared_ptr<MailboxData> data;
  uint32_t uid = 0;
  if (int err = MessageByNode(ino, &data, &uid)) return err;
  auto opened = data->Open(uid);
  if (!opened.ok()) return ErrnoOf(opened.status());
  *reader = *opened;
  // Enough for the files a few readers (grep -r, cat, cp) have in flight.
  // A Maildir reader holds a descriptor; one without (Redis) holds the
  // bytes, which are limited too.
  constexpr size_t kMaxCachedReaders = 16;
  constexpr uint64_t kMaxCachedBytes = 64 << 20;
  auto held_bytes = [](const std::shared_ptr<const ContentReader>& r) -> uint64_t {
    return r->fd() >= 0 ? 0 : r->size();
  };
  std::lock_guard lock(mu_);
  recent_readers_.emplace_back(ino, *reader);
  uint64_t bytes = 0;
  for (const auto& [cached_ino, cached] : recent_readers_) bytes += held_bytes(cached);
  while (recent_readers_.size() > 1 &&
         (recent_readers_.size() > kMaxCachedReaders || bytes > kMaxCachedBytes)) {
    bytes -= held_bytes(recent_readers_.front().second);
    recent_readers_.erase(recent_readers_.begin());
  }
  return 0;
}

int Driver::StoredReader(Ino ino, uint64_t handle, std::shared_ptr<const ContentReader>* reader) {
  if (handle != 0) {
    *reader = reinterpret_cast<FileHandle*>(handle)->reader;
    return 0;
  }
  NodeKind kind;
  std::shared_ptr<PendingFile> pending;
  if (int err = NodeState(ino, &kind, &pending)) return err;
  if (kind != NodeKind::kMessage) {
    reader->reset();
    return 0;
  }
  return CachedReader(ino, reader);
}

int Driver::Read(Ino ino, uint64_t handle, uint64_t offset, size_t size, std::string* buffer,
                 const std::shared_ptr<const ContentReader>& stored) {
  std::shared_ptr<const ContentReader> reader = stored;
  std::shared_ptr<PendingFile> pending;
  if (reader) {
    // The caller looked the reader up already (StoredReader).
  } else if (handle != 0) {
    auto* fh = reinterpret_cast<FileHandle*>(handle);
    reader = fh->reader;
    pending = fh->pending;
  } else {
    NodeKind kind;
    if (int err = NodeState(ino, &kind, &pending)) return err;
    if (kind != NodeKind::kMessage && kind != NodeKind::kPending) return EISDIR;
    if (kind == NodeKind::kMessage) {
      pending.reset();
      if (int err = CachedReader(ino, &reader)) return err;
    }
  }
  buffer->resize(size);
  if (reader) {
    auto n = reader->ReadAt(offset, std::span<char>(buffer->data(), size));
    if (!n.ok()) return ErrnoOf(n.status());
    buffer->resize(*n);
    return 0;
  }
  std::shared_ptr<SpoolFile> spool = pending->Spool();
  ssize_t n;
  do {
    n = ::pread(spool->fd, buffer->data(), size, static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  buffer->resize(static_cast<size_t>(n));
  return 0;
}

int Driver::Write(Ino ino, uint64_t handle, uint64_t offset, std::string_view data,
                  size_t* written) {
  std::shared_ptr<PendingFile> file;
  if (handle != 0) {
    auto* fh = reinterpret_cast<FileHandle*>(handle);
    if (!fh->pending || !fh->writable) return EACCES;
    file = fh->pending;
    std::lock_guard lock(mu_);
    if (file->state == PendingFile::State::kDiscarded) return ENOENT;
    if (fh->flushed) {  // a duplicate descriptor writes after another one closed
      fh->flushed = false;
      ++file->unflushed_writers;
    }
    file->dirty = true;
  } else {
    // Opened without asking us (no-open): such a descriptor is not counted
    // among the writers, so its bytes are taken only while the creator's
    // descriptor keeps the file open; its close appends them.
    NodeKind kind;
    if (int err = NodeState(ino, &kind, &file)) return err;
    if (kind != NodeKind::kPending) return EACCES;
    std::lock_guard lock(mu_);
    if (file->state == PendingFile::State::kDiscarded) return ENOENT;
    if (file->state != PendingFile::State::kOpen) return EACCES;
    file->dirty = true;
  }
  return WritableSpool(*file, [&](int fd) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n =
          ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno == ENOSPC || errno == EDQUOT ? ENOSPC : EIO;
      }
      done += static_cast<size_t>(n);
    }
    *written = done;
    return 0;
  });
}

int Driver::WritableSpool(PendingFile& file, const std::function<int(int fd)>& change) {
  for (;;) {
    {
      std::shared_lock writing(file.write_mu);
      if (!file.spool_handed_over) return change(file.Spool()->fd);
    }
    std::unique_lock copying(file.write_mu);
    if (!file.spool_handed_over) continue;  // another writer copied it meanwhile
    int fd = spool_files_->Take();
    if (fd < 0) return errno == ENOSPC ? ENOSPC : EIO;
    auto copy = std::make_shared<SpoolFile>(fd);
    if (int err = CopyFileBytes(file.Spool()->fd, copy->fd)) return err;
    file.spool = std::move(copy);
    file.spool_handed_over = false;
  }
}

int Driver::Flush(uint64_t handle, pid_t caller) {
  if (handle == 0) return 0;  // opened without asking us: nothing to append
  auto* fh = reinterpret_cast<FileHandle*>(handle);
  if (!fh->pending || !fh->writable) return 0;
  // A child's copy closing (at its exec or exit) is not the writer's close;
  // whatever it wrote is appended at the opener's close or at release.
  if (thread_groups_->ProcessOf(caller) != fh->opener) return 0;
  std::shared_ptr<PendingFile> file = fh->pending;
  {
    std::lock_guard lock(mu_);
    if (!fh->flushed) {
      fh->flushed = true;
      --file->unflushed_writers;
    }
    if (file->unflushed_writers > 0 || file->scratch || !file->dirty ||
        (file->state != PendingFile::State::kOpen && file->state != PendingFile::State::kStored)) {
      return 0;
    }
    // `cmd > file` opens, dup2()s and closes the first descriptor before
    // anything is written: an empty file waits for its last release.
    if (file->state == PendingFile::State::kOpen && IsEmpty(file->Spool()->fd)) return 0;
    file->state = PendingFile::State::kCommitting;
  }
  int err = Commit(file, 0, /*empty_is_error=*/false);
  if (err != 0) {
    AbandonCommit(file);
    return err;
  }
  std::lock_guard lock(mu_);
  return std::exchange(file->sync_failed, false) ? EIO : 0;
}

void Driver::AbandonCommit(const std::shared_ptr<PendingFile>& file) {
  bool keep_earlier_version;
  {
    std::lock_guard lock(mu_);
    keep_earlier_version = file->stored_uid != 0;
    if (keep_earlier_version) file->state = PendingFile::State::kStored;
  }
  if (!keep_earlier_version) DiscardPending(file, /*invalidate_name=*/true);
}

int Driver::Fsync(uint64_t handle) {
  // A file being written becomes durable as a whole when it is appended
  // at close; fsync() before that asks for that append to be durable even
  // where the store was opened with relaxed durability.
  if (handle != 0) {
    auto* fh = reinterpret_cast<FileHandle*>(handle);
    std::lock_guard lock(mu_);
    if (fh->pending && fh->pending->state == PendingFile::State::kOpen) {
      fh->pending->sync_requested = true;
      return 0;
    }
  }
  return ErrnoOf(store_->Sync());
}

void Driver::Release(uint64_t handle) {
  std::unique_ptr<FileHandle> fh;
  {
    std::lock_guard lock(mu_);
    auto it = file_handles_.find(reinterpret_cast<FileHandle*>(handle));
    if (it == file_handles_.end()) return;
    fh = std::move(it->second);
    file_handles_.erase(it);
  }
  if (!fh->pending || !fh->writable) return;
  std::shared_ptr<PendingFile> file = fh->pending;
  bool commit = false;
  {
    std::lock_guard lock(mu_);
    --file->writers;
    if (!fh->flushed) --file->unflushed_writers;
    if (file->writers > 0 || file->scratch) return;
    // Normally the last close already appended the file (Flush). One
    // released with unappended bytes (its writer died between write and
    // close) must still not be lost; one still empty stores nothing.
    commit =
        (file->state == PendingFile::State::kOpen || file->state == PendingFile::State::kStored) &&
        file->dirty;
    if (commit) file->state = PendingFile::State::kCommitting;
  }
  if (commit) {
    if (int err = Commit(file, 0, /*empty_is_error=*/false)) {
      spdlog::warn("{}: not stored at release: {}", file->name, strerror(err));
      AbandonCommit(file);
    }
  }
  bool never_stored;
  {
    std::lock_guard lock(mu_);
    never_stored =
        file->state == PendingFile::State::kOpen || file->state == PendingFile::State::kCommitting;
    if (Node* node = FindNode(file->ino);
        node != nullptr && node->kind == NodeKind::kMessage && node->pending() == file) {
      node->extras().pending.reset();  // no descriptor left that could change it
    }
  }
  if (never_stored) DiscardPending(file, /*invalidate_name=*/true);
}

int Driver::Commit(const std::shared_ptr<PendingFile>& file, uint32_t replace_uid,
                   bool empty_is_error) {
  std::string dir_name;
  Ino parent;
  std::string name;
  FlagSet flags;
  int64_t mtime;
  uint32_t earlier_uid;
  {
    std::lock_guard lock(mu_);
    file->dirty = false;
    earlier_uid = file->stored_uid;
    parent = file->parent;
    name = file->name;
    flags = file->flags;
    mtime = file->mtime;
    Node* dir = FindNode(parent);
    if (dir == nullptr || dir->kind != NodeKind::kDirectory ||
        directory_inos_.count(dir->mailbox_name()) == 0) {
      return ENOENT;  // the mailbox was removed while the file was written
    }
    dir_name = dir->mailbox_name();
  }
  std::shared_ptr<SpoolFile> spool;
  {
    // Writes in progress end first, and later ones go to a copy.
    std::unique_lock handing_over(file->write_mu);
    file->spool_handed_over = true;
    spool = file->Spool();
  }
  struct stat st {};
  if (::fstat(spool->fd, &st) != 0) return EIO;
  if (st.st_size == 0) return empty_is_error ? EINVAL : 0;  // zero bytes store nothing
  auto content = std::make_shared<FdContent>(spool->fd, static_cast<uint64_t>(st.st_size),
                                             /*adoptable=*/true);
  std::string head(std::min<uint64_t>(kMessageHeadBytes, st.st_size), '\0');
  auto got = content->ReadAt(0, std::span<char>(head.data(), head.size()));
  if (!got.ok()) return ErrnoOf(got.status());
  head.resize(*got);
  if (!LooksLikeMessage(head)) {
    spdlog::info("{}/{}: not stored: the first line is not a header field", dir_name, name);
    return EINVAL;
  }
  std::shared_ptr<MailboxData> data;
  if (int err = MailboxForWriting(*store_, dir_name, &data)) return err;
  // A read-only mailbox: Append refuses (kReadOnly, EROFS) without asking
  // twice.
  {
    std::lock_guard lock(mu_);
    ++appending_[dir_name];
  }
  auto uid = data->Append(AppendMessage{content, flags, mtime}, false);
  {
    // The store may report the new message before this line runs; while
    // an append is in flight, TakeInvalidations holds its claim back.
    std::lock_guard lock(mu_);
    if (uid.ok()) NoteOwnAddition(dir_name, *uid);
    if (--appending_[dir_name] == 0) appending_.erase(dir_name);
  }
  if (!uid.ok()) return ErrnoOf(uid.status());
  std::optional<UnixSeconds> stored_date = data->AppendedDate(mtime);
  bool sync_requested;
  bool sync_failed = false;
  {
    std::lock_guard lock(mu_);
    sync_requested = file->sync_requested;
  }
  if (sync_requested) {
    // The message is stored; only its durability is in doubt. close()
    // reports that, as a failed fsync() would.
    if (Status synced = store_->Sync(); !synced.ok()) {
      spdlog::error("{}/{}: stored as UID {} but not made durable: {}", dir_name, name, *uid,
                    synced.ToString());
      sync_failed = true;
    }
  }

  uint32_t key;
  {
    std::lock_guard lock(mu_);
    key = RefKey(data);
    auto it = pending_.find(std::make_pair(parent, name));
    if (it != pending_.end() && it->second == file) pending_.erase(it);
    file->state = PendingFile::State::kStored;
    file->stored_uid = *uid;
    message_ino_override_[(static_cast<Ino>(key) << 32) | *uid] = file->ino;
    if (Node* node = FindNode(file->ino); node != nullptr) {
      node->kind = NodeKind::kMessage;
      node->key = key;
      node->uid = *uid;
      Node::Extras& extras = node->extras();
      extras.appended_attrs = stored_date.has_value();
      extras.appended_size = static_cast<uint64_t>(st.st_size);
      extras.appended_date = stored_date.value_or(0);
      // node->pending stays while descriptors remain: attributes they set
      // must reach a later re-append (see PendingFile::dirty).
    }
    MailboxRef& ref = *refs_[key - 1];
    ref.recent.insert(*uid);
    if (CanonicalUid(name) != *uid) ref.aliases[name] = *uid;
  }
  for (uint32_t replaced : {replace_uid, earlier_uid}) {
    if (replaced == 0) continue;
    if (int err = ExpungeName(key, data, replaced)) {
      spdlog::warn("{}/{} stored as UID {}, but UID {} was not replaced: {}", dir_name, name, *uid,
                   replaced, strerror(err));
    }
  }
  if (sync_failed) {
    std::lock_guard lock(mu_);
    file->sync_failed = true;
  }
  return 0;
}

void Driver::DiscardPending(const std::shared_ptr<PendingFile>& file, bool invalidate_name) {
  std::lock_guard lock(mu_);
  auto it = pending_.find(std::make_pair(file->parent, file->name));
  if (it != pending_.end() && it->second == file) pending_.erase(it);
  file->state = PendingFile::State::kDiscarded;
  if (Node* node = FindNode(file->ino);
      node != nullptr && node->kind == NodeKind::kPending && node->lookups == 0) {
    nodes_.erase(file->ino);
  }
  if (invalidate_name) {
    queued_invalidations_.push_back({Invalidation::Kind::kEntry, file->parent, file->name});
  }
}

// ---------------------------------------------------------------------------
// Extended attributes

namespace {

enum class AttrKind { kNone, kFlags, kSystemFlag, kKeyword, kReadOnly, kInternalDate, kSubscribed };

struct AttrName {
  AttrKind kind = AttrKind::kNone;
  SystemFlag flag = SystemFlag::kSeen;
  std::string_view rest;  // after "user.mail."
  std::string_view keyword;
};

// Classifies a message attribute name.
AttrName ParseMessageAttr(std::string_view name) {
  AttrName a;
  if (name.substr(0, kAttrPrefix.size()) != kAttrPrefix) return a;
  a.rest = name.substr(kAttrPrefix.size());
  if (a.rest == "flags") {
    a.kind = AttrKind::kFlags;
  } else if (a.rest.substr(0, kKeywordPrefix.size()) == kKeywordPrefix) {
    a.kind = AttrKind::kKeyword;
    a.keyword = a.rest.substr(kKeywordPrefix.size());
  } else if (a.rest == "internaldate") {
    a.kind = AttrKind::kInternalDate;
  } else if (a.rest == "uid" || a.rest == "emailid" || a.rest == "threadid" || a.rest == "recent") {
    a.kind = AttrKind::kReadOnly;
  } else {
    for (SystemFlag f : kAllSystemFlags) {
      if (a.rest == SystemFlagAttributeName(f)) {
        a.kind = AttrKind::kSystemFlag;
        a.flag = f;
      }
    }
  }
  return a;
}

constexpr std::string_view kMailboxReadOnlyAttrs[] = {
    "uidvalidity", "uidnext", "messages", "unseen", "recent", "mailboxid", "permanentflags"};

// The attribute names a message with these flags has, NUL-separated.
void AppendFlagAttrNames(const FlagSet& flags, std::string* names) {
  auto add = [names](std::string_view n) {
    names->append(kAttrPrefix);
    names->append(n);
    names->push_back('\0');
  };
  add("flags");
  for (SystemFlag f : kAllSystemFlags) {
    if (flags.Has(f)) add(SystemFlagAttributeName(f));
  }
  for (const auto& k : flags.keywords()) add(fmt::format("keyword.{}", k));
}

int FlagAttrValue(const AttrName& a, const FlagSet& flags, std::string* value) {
  switch (a.kind) {
    case AttrKind::kFlags:
      *value = flags.ToString();
      return 0;
    case AttrKind::kSystemFlag:
      value->clear();
      return flags.Has(a.flag) ? 0 : ENODATA;
    case AttrKind::kKeyword:
      value->clear();
      return flags.HasKeyword(a.keyword) ? 0 : ENODATA;
    default:
      return ENODATA;
  }
}

// The change a flag attribute asks for: setxattr (remove=false) or
// removexattr (remove=true). EINVAL for a malformed flag.
int FlagChange(const AttrName& a, std::string_view value, bool remove, FlagOp* op, FlagSet* flags) {
  switch (a.kind) {
    case AttrKind::kFlags: {
      *op = FlagOp::kReplace;
      if (remove) return 0;
      std::string text(value);
      while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.pop_back();
      auto parsed = FlagSet::Parse(text);
      if (!parsed.ok()) return EINVAL;
      *flags = *parsed;
      return 0;
    }
    case AttrKind::kSystemFlag:
      *op = remove ? FlagOp::kDelete : FlagOp::kAdd;
      flags->Add(a.flag);
      return 0;
    case AttrKind::kKeyword:
      if (!IsValidKeyword(a.keyword)) return EINVAL;
      *op = remove ? FlagOp::kDelete : FlagOp::kAdd;
      flags->AddKeyword(a.keyword);
      return 0;
    default:
      return ENOTSUP;
  }
}

}  // namespace

int Driver::MessageXattr(Ino ino, std::string_view name, std::string* value) {
  // `ls -l` asks every file for security.selinux and
  // system.posix_acl_access: answer names that are not ours before asking
  // the store, which for Redis would cost a round trip each.
  AttrName a = ParseMessageAttr(name);
  if (a.kind == AttrKind::kNone) return ENODATA;
  std::shared_ptr<MailboxData> data;
  uint32_t uid = 0;
  if (int err = MessageByNode(ino, &data, &uid)) return err;
  auto info = data->Get(uid);
  if (!info.ok()) return ErrnoOf(info.status());
  switch (a.kind) {
    case AttrKind::kFlags:
    case AttrKind::kSystemFlag:
    case AttrKind::kKeyword:
      return FlagAttrValue(a, info->flags, value);
    case AttrKind::kInternalDate:
      *value = FormatDate(info->internal_date);
      return 0;
    case AttrKind::kReadOnly:
      if (a.rest == "uid") {
        *value = std::to_string(uid);
      } else if (a.rest == "emailid") {
        *value = info->email_id;
      } else if (a.rest == "threadid") {
        *value = info->thread_id;
      } else {  // recent
        std::lock_guard lock(mu_);
        Node* node = FindNode(ino);
        if (node == nullptr || refs_[node->key - 1]->recent.count(uid) == 0) return ENODATA;
        value->clear();
        return 0;
      }
      return value->empty() ? ENODATA : 0;
    default:
      return ENODATA;
  }
}

int Driver::MailboxXattr(Ino ino, std::string_view name, std::string* value) {
  if (name.substr(0, kAttrPrefix.size()) != kAttrPrefix) return ENODATA;
  std::string_view rest = name.substr(kAttrPrefix.size());
  std::string mailbox_name;
  if (int err = DirectoryName(ino, &mailbox_name)) return err;
  if (mailbox_name.empty()) return ENODATA;
  if (rest == "subscribed") {
    auto subscribed = store_->ListSubscribed();
    if (!subscribed.ok()) return ErrnoOf(subscribed.status());
    value->clear();
    return std::find(subscribed->begin(), subscribed->end(), mailbox_name) != subscribed->end()
               ? 0
               : ENODATA;
  }
  if (std::find(std::begin(kMailboxReadOnlyAttrs), std::end(kMailboxReadOnlyAttrs), rest) ==
      std::end(kMailboxReadOnlyAttrs)) {
    return ENODATA;
  }
  std::shared_ptr<MailboxData> data;
  uint32_t key = 0;
  if (ResolveMailbox(mailbox_name, &data, &key) != 0) return ENODATA;  // \Noselect
  if (rest == "mailboxid") {
    *value = data->mailbox_id();
    return 0;
  }
  if (rest == "permanentflags") {
    *value = data->permanent_flags().ToString();
    if (data->accepts_keywords()) *value += value->empty() ? "\\*" : " \\*";
    return 0;
  }
  if (rest == "recent") {
    std::lock_guard lock(mu_);
    *value = std::to_string(refs_[key - 1]->recent.size());
    return 0;
  }
  auto snapshot = data->Snapshot();
  if (!snapshot.ok()) return ErrnoOf(snapshot.status());
  uint32_t number = rest == "uidvalidity" ? snapshot->uid_validity
                    : rest == "uidnext"   ? snapshot->next_uid
                    : rest == "messages"  ? snapshot->exists
                                          : snapshot->unseen;
  *value = std::to_string(number);
  return 0;
}

int Driver::GetXattr(Ino ino, std::string_view name, std::string* value) {
  // Mail has no security labels or ACLs. "Not supported" rather than "no
  // such attribute" lets `ls -l` stop asking for security.selinux and
  // system.posix_acl_access after the first file (it remembers the answer
  // per device); otherwise each file costs it two round trips.
  if (!name.starts_with("user.")) return EOPNOTSUPP;
  std::shared_ptr<PendingFile> pending;
  NodeKind kind;
  if (int err = NodeState(ino, &kind, &pending)) return err;
  switch (kind) {
    case NodeKind::kMessage:
      return MessageXattr(ino, name, value);
    case NodeKind::kRoot:
    case NodeKind::kDirectory:
      return MailboxXattr(ino, name, value);
    case NodeKind::kPending: {
      AttrName a = ParseMessageAttr(name);
      std::lock_guard lock(mu_);
      if (a.kind == AttrKind::kInternalDate) {
        *value = FormatDate(pending->mtime);
        return 0;
      }
      return FlagAttrValue(a, pending->flags, value);
    }
  }
  return ENODATA;
}

int Driver::ListXattr(Ino ino, std::string* names) {
  names->clear();
  std::shared_ptr<PendingFile> pending;
  NodeKind kind;
  if (int err = NodeState(ino, &kind, &pending)) return err;
  auto add = [names](std::string_view n) {
    names->append(kAttrPrefix);
    names->append(n);
    names->push_back('\0');
  };
  switch (kind) {
    case NodeKind::kRoot:
      return 0;
    case NodeKind::kPending: {
      std::lock_guard lock(mu_);
      AppendFlagAttrNames(pending->flags, names);
      add("internaldate");
      return 0;
    }
    case NodeKind::kMessage: {
      std::shared_ptr<MailboxData> data;
      uint32_t uid = 0;
      if (int err = MessageByNode(ino, &data, &uid)) return err;
      auto info = data->Get(uid);
      if (!info.ok()) return ErrnoOf(info.status());
      AppendFlagAttrNames(info->flags, names);
      std::string unused;
      if (MessageXattr(ino, "user.mail.recent", &unused) == 0) add("recent");
      add("uid");
      add("internaldate");
      if (!info->email_id.empty()) add("emailid");
      if (!info->thread_id.empty()) add("threadid");
      return 0;
    }
    case NodeKind::kDirectory: {
      std::string value;
      for (std::string_view attr : kMailboxReadOnlyAttrs) {
        if (MailboxXattr(ino, fmt::format("{}{}", kAttrPrefix, attr), &value) == 0) add(attr);
      }
      if (MailboxXattr(ino, "user.mail.subscribed", &value) == 0) add("subscribed");
      return 0;
    }
  }
  return 0;
}

int Driver::NodeState(Ino ino, NodeKind* kind, std::shared_ptr<PendingFile>* pending) {
  std::lock_guard lock(mu_);
  Node* node = FindNode(ino);
  if (node == nullptr) return ENOENT;
  *kind = node->kind;
  *pending = node->pending();
  return 0;
}

// Of a mailbox's attributes only user.mail.subscribed can be written:
// setting it subscribes, removing it unsubscribes.
int Driver::WriteMailboxXattr(Ino ino, std::string_view name, bool remove) {
  std::string_view rest = name.substr(kAttrPrefix.size());
  std::string mailbox_name;
  if (int err = DirectoryName(ino, &mailbox_name)) return err;
  if (rest == "subscribed") {
    Status s = store_->SetSubscribed(mailbox_name, !remove);
    return s.ok() ? 0 : ErrnoOf(s);
  }
  bool known = std::find(std::begin(kMailboxReadOnlyAttrs), std::end(kMailboxReadOnlyAttrs),
                         rest) != std::end(kMailboxReadOnlyAttrs);
  return known ? EPERM : ENOTSUP;
}

int Driver::UpdateFlags(Ino ino, FlagOp op, const FlagSet& flags,
                        const std::shared_ptr<PendingFile>& still_open) {
  std::shared_ptr<MailboxData> data;
  uint32_t uid = 0;
  if (int err = MessageByNode(ino, &data, &uid)) return err;
  // No readonly() here: Update refuses with kReadOnly itself (EROFS), and
  // asking first costs a maildir folder three access() calls a message.
  FlagSet permanent = data->permanent_flags();
  if ((flags.system_bits() & ~permanent.system_bits()) != 0 ||
      (!flags.keywords().empty() && !data->accepts_keywords())) {
    return EINVAL;  // a flag this mailbox cannot store
  }
  auto updated = data->Update(uid, flags, op);
  if (!updated.ok()) return ErrnoOf(updated.status());
  if (still_open) {  // a message appended from a file still open: a re-append keeps the flags
    std::lock_guard lock(mu_);
    still_open->flags.Apply(op, flags);
  }
  return 0;
}

int Driver::SetXattr(Ino ino, std::string_view name, std::string_view value, int flags) {
  std::shared_ptr<PendingFile> pending;
  NodeKind kind;
  if (int err = NodeState(ino, &kind, &pending)) return err;
  if (name.substr(0, kAttrPrefix.size()) != kAttrPrefix) return ENOTSUP;
  if (kind == NodeKind::kRoot) return ENOTSUP;
  if (kind == NodeKind::kDirectory) return WriteMailboxXattr(ino, name, /*remove=*/false);

  AttrName a = ParseMessageAttr(name);
  if (a.kind == AttrKind::kNone) return ENOTSUP;
  if (kind == NodeKind::kPending) {
    // cp -a copies every attribute of a stored message along; the ones
    // that describe the store (uid, ids, recent) mean nothing here.
    std::lock_guard lock(mu_);
    if (a.kind == AttrKind::kReadOnly) return 0;
    if (a.kind == AttrKind::kInternalDate) {
      UnixSeconds date;
      if (!ParseDate(value, &date)) return EINVAL;
      pending->mtime = date;
      return 0;
    }
    FlagOp op;
    FlagSet change;
    if (int err = FlagChange(a, value, false, &op, &change)) return err;
    pending->flags.Apply(op, change);
    return 0;
  }
  if (a.kind == AttrKind::kReadOnly || a.kind == AttrKind::kInternalDate) return EPERM;
  FlagOp op;
  FlagSet change;
  if (int err = FlagChange(a, value, false, &op, &change)) return err;
  if (flags & (XATTR_CREATE | XATTR_REPLACE)) {
    std::string current;
    bool present = MessageXattr(ino, name, &current) == 0;
    if ((flags & XATTR_CREATE) && present) return EEXIST;
    if ((flags & XATTR_REPLACE) && !present) return ENODATA;
  }
  return UpdateFlags(ino, op, change, pending);
}

int Driver::RemoveXattr(Ino ino, std::string_view name) {
  std::shared_ptr<PendingFile> pending;
  NodeKind kind;
  if (int err = NodeState(ino, &kind, &pending)) return err;
  if (name.substr(0, kAttrPrefix.size()) != kAttrPrefix) return ENOTSUP;
  if (kind == NodeKind::kRoot) return ENOTSUP;
  if (kind == NodeKind::kDirectory) return WriteMailboxXattr(ino, name, /*remove=*/true);
  AttrName a = ParseMessageAttr(name);
  if (a.kind == AttrKind::kNone) return ENOTSUP;
  if (a.kind == AttrKind::kReadOnly || a.kind == AttrKind::kInternalDate) {
    return kind == NodeKind::kPending ? 0 : EPERM;
  }
  FlagOp op;
  FlagSet change;
  if (int err = FlagChange(a, {}, true, &op, &change)) return err;
  if (kind == NodeKind::kPending) {
    std::lock_guard lock(mu_);
    std::string unused;
    if (a.kind != AttrKind::kFlags && FlagAttrValue(a, pending->flags, &unused) != 0) {
      return ENODATA;
    }
    pending->flags.Apply(op, change);
    return 0;
  }
  if (a.kind != AttrKind::kFlags) {
    std::string unused;
    if (int err = MessageXattr(ino, name, &unused)) return err;  // ENODATA when not set
  }
  return UpdateFlags(ino, op, change, pending);
}

int Driver::StatFs(struct statvfs* out) {
  // Space is what the spool has: new messages wait there first.
  if (::statvfs(options_.spool_dir.c_str(), out) != 0) return errno;
  out->f_namemax = 255;
  return 0;
}

// ---------------------------------------------------------------------------
// Change feed

std::vector<Invalidation> Driver::TakeInvalidations(const ChangeBatch& batch) {
  std::vector<std::pair<uint32_t, std::shared_ptr<MailboxData>>> to_claim;
  std::vector<Invalidation> out;
  // The identities behind the names that lost messages, looked up before
  // taking mu_ (the store may block).
  std::map<std::string, std::shared_ptr<MailboxData>> expunged_data;
  for (const Change& change : batch.changes) {
    if (change.kind != Change::Kind::kMessagesExpunged) continue;
    if (expunged_data.count(change.mailbox) != 0) continue;
    auto mailbox = store_->GetMailbox(change.mailbox);
    if (mailbox.ok()) expunged_data[change.mailbox] = *mailbox;
  }
  {
    std::lock_guard lock(mu_);
    out.swap(queued_invalidations_);
    std::map<std::string, uint32_t> expunged_refs;
    for (const auto& [name, data] : expunged_data) {
      auto it = ref_keys_.find(std::make_pair(data->mailbox_id(), data->uid_validity()));
      if (it != ref_keys_.end()) expunged_refs[name] = it->second;
    }
    auto dir_ino = [this](const std::string& name) -> Ino {
      if (name.empty()) return kRootIno;
      auto it = directory_inos_.find(name);
      return it == directory_inos_.end() ? 0 : it->second;
    };
    if (batch.overflowed) {
      out.push_back({Invalidation::Kind::kInode, kRootIno, {}});
      for (const auto& [name, ino] : directory_inos_) {
        out.push_back({Invalidation::Kind::kInode, ino, {}});
      }
    }
    for (const Change& change : batch.changes) {
      switch (change.kind) {
        case Change::Kind::kMessagesAdded:
        case Change::Kind::kMessagesExpunged: {
          Ino dir = dir_ino(change.mailbox);
          if (dir == 0) break;
          out.push_back({Invalidation::Kind::kInode, dir, {}});
          if (change.kind == Change::Kind::kMessagesExpunged) {
            MailboxRef* ref = nullptr;
            if (auto it = expunged_refs.find(change.mailbox); it != expunged_refs.end()) {
              ref = refs_[it->second - 1].get();
            }
            for (uint32_t uid : change.uids) {
              out.push_back({Invalidation::Kind::kEntry, dir, CanonicalName(uid)});
              if (ref == nullptr) continue;
              ref->recent.erase(uid);
              for (auto a = ref->aliases.begin(); a != ref->aliases.end();) {
                if (a->second != uid) {
                  ++a;
                  continue;
                }
                out.push_back({Invalidation::Kind::kEntry, dir, a->first});
                a = ref->aliases.erase(a);
              }
            }
          }
          break;
        }
        case Change::Kind::kMailboxAdded:
        case Change::Kind::kMailboxRemoved: {
          // The name and every ancestor the kernel may have looked up.
          std::string name = change.mailbox;
          while (!name.empty()) {
            std::string parent(ParentName(name));
            Ino dir = dir_ino(parent);
            if (dir != 0) {
              out.push_back({Invalidation::Kind::kEntry, dir, std::string(LeafName(name))});
              out.push_back({Invalidation::Kind::kInode, dir, {}});
            }
            name = parent;
          }
          break;
        }
        case Change::Kind::kFlagsChanged:  // flags are attributes the kernel does not cache
        case Change::Kind::kSubscriptions:
          break;
      }
    }
    // Each invalidation once: a batch of a burst of moves names the same
    // directories once per message.
    std::set<std::tuple<Invalidation::Kind, Ino, std::string>> seen;
    std::erase_if(out, [&](const Invalidation& inv) {
      return !seen.emplace(inv.kind, inv.ino, inv.name).second;
    });
    // New messages may be \Recent in the store, to be claimed for this
    // session (below), unless this mount added them itself: it appends,
    // copies and moves with recent=false, so the store holds no \Recent
    // for those, and cp of a thousand files would otherwise claim a
    // thousand times (on Maildir each claim walks the whole index; on
    // Redis it is a round trip). A change that names any other UID, or
    // changes that were lost (overflow), claim as before. A UID reported
    // while this mount appends to that mailbox may be its own, not yet
    // noted: it is looked at again on the next call (the notifier calls at
    // least every 100 ms).
    bool claim = batch.overflowed;
    std::vector<std::pair<std::string, uint32_t>> added;
    added.swap(unsettled_);
    for (const Change& change : batch.changes) {
      if (change.kind != Change::Kind::kMessagesAdded) continue;
      if (change.uids.empty()) claim = true;
      for (uint32_t uid : change.uids) added.emplace_back(change.mailbox, uid);
    }
    for (auto& mailbox_uid : added) {
      if (auto own = own_added_.find(mailbox_uid); own != own_added_.end()) {
        own_added_.erase(own);
      } else if (appending_.count(mailbox_uid.first) != 0 && unsettled_.size() < 4096) {
        unsettled_.push_back(std::move(mailbox_uid));
      } else {
        claim = true;
      }
    }
    for (size_t i = 0; claim && i < refs_.size(); ++i) {
      if (refs_[i]->recent_claimed) to_claim.emplace_back(i + 1, refs_[i]->data);
    }
  }
  // Messages delivered by others are \Recent in this mount's session.
  for (auto& [key, data] : to_claim) {
    auto claimed = data->ClaimRecent();
    if (!claimed.ok() || claimed->empty()) continue;
    std::lock_guard lock(mu_);
    refs_[key - 1]->recent.insert(claimed->begin(), claimed->end());
  }
  return out;
}

}  // namespace mailfs
