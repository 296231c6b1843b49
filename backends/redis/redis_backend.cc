#include "backends/redis/redis_backend.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "backends/maildir/format/mutf7.h"
#include "backends/redis/format/content.h"
#include "backends/redis/format/record.h"
#include "backends/redis/scripts.h"
#include "src/mailbox_name.h"

namespace mailfs {
namespace {

using redis::Command;
using redis::Reply;

constexpr std::string_view kDataVersion = "4";
constexpr std::chrono::milliseconds kWatchBlock{200};
constexpr std::chrono::milliseconds kWatchGather{20};  // after reading changes
constexpr std::chrono::milliseconds kListPollInterval{500};
constexpr std::chrono::milliseconds kCleanupInterval{2000};
constexpr int kMailboxTtlSeconds = 600;             // pymap's CleanupAction.mailbox_ttl
constexpr int kContentTtlSeconds = 3600;            // pymap's CleanupAction.content_ttl
constexpr std::string_view kStagedTtlMs = "60000";  // see Store::StagedKey

Status Corrupt(ErrorScope scope, std::string detail) {
  spdlog::error("redis: bad data: {}", detail);
  return Status::Error(ErrorCode::kCorrupt, scope, std::move(detail));
}

Status NoMailbox(std::string_view what) {
  return Status::NotFound(ErrorScope::kMailbox, std::string(what));
}

std::string RandomHex(size_t digits) {
  thread_local std::mt19937_64 random(std::random_device{}());
  std::string out;
  while (out.size() < digits) out += fmt::format("{:016x}", random());
  out.resize(digits);
  return out;
}

// A mailbox name as pymap stores it in `mailboxes` and `uidv`.
std::string EncodeName(std::string_view name) {
  auto encoded = maildir::mutf7::Encode(name);
  return encoded.ok() ? *encoded : std::string(name);
}

// A name found in `mailboxes` or `subscribed`: mUTF-7 (pymap's mailbox
// keys) or UTF-8 (pymap's subscriptions); empty if neither is a valid name.
std::string DecodeName(std::string_view stored) {
  auto level = maildir::mutf7::DecodeLevel(stored);
  if (!level.ok()) return {};
  auto normalized = NormalizeMailboxName(level->text);
  return normalized.ok() ? *normalized : std::string();
}

// An error reply of our scripts without the "ERR " that Redis puts before
// an error code it does not know.
std::string_view ErrorText(const Reply& reply) {
  std::string_view text = reply.str();
  if (text.starts_with("ERR ")) text.remove_prefix(4);
  return text;
}

// Every <msg-id> in a header value, without its whitespace.
void AddMessageIds(std::string_view value, std::vector<std::string>* ids) {
  for (size_t open = value.find('<'); open != std::string_view::npos;
       open = value.find('<', open)) {
    size_t close = value.find('>', open);
    if (close == std::string_view::npos) break;
    std::string id;
    for (char c : value.substr(open, close - open + 1)) {
      if (!std::isspace(static_cast<unsigned char>(c))) id += c;
    }
    ids->push_back(std::move(id));
    open = close;
  }
}

// The thread keys to look up and record for a new message: pymap's
// (msg-id and subject, so that pymap's threads and ours agree), then one
// per msg-id with an empty subject, so that a reply joins its root
// whatever its subject says (pymap makes the same keys for messages
// without a Subject).
std::vector<std::string> ThreadKeysFor(std::string_view message) {
  std::vector<std::string> keys = redis::ThreadKeysOf(message);
  std::vector<std::string> ids;
  for (std::string_view header : {"Message-ID", "In-Reply-To", "References"}) {
    AddMessageIds(HeaderValue(message, header), &ids);
  }
  for (std::string& id : ids) {
    std::string key = id + std::string(1, '\0');
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(std::move(key));
  }
  return keys;
}

// The keys of one mailbox, in the order the scripts take them.
struct MailboxKeys {
  std::string max_uid, uids, seq, content, changes, recent, deleted, unseen;

  std::vector<std::string> All() const {
    return {max_uid, uids, seq, content, changes, recent, deleted, unseen};
  }
};

// Everything one mount shares: the pool, the key layout, the change feed
// and the watcher that follows other writers.
class Store {
 public:
  Store(const RedisOptions& options, std::string ns)
      : options_(options),
        pool_(options.address, options.pool_size, redis::scripts::All()),
        ns_(std::move(ns)) {
    const std::string& sep = options_.separator;
    ns_prefix_ = options_.prefix + sep + "ns" + sep;
    ns_root_ = ns_prefix_ + ns_ + sep;
    mailboxes_ = ns_root_ + "mailboxes";
    order_ = ns_root_ + "order";
    max_order_ = ns_root_ + "max-order";
    uidv_ = ns_root_ + "uidv";
    subscribed_ = ns_root_ + "subscribed";
    max_modseq_ = ns_root_ + "maxmodseq";
    content_refs_ = ns_root_ + "contentrefs";
    thread_keys_ = ns_root_ + "threadkeys";
    content_prefix_ = ns_root_ + "content" + sep;
    mailbox_prefix_ = ns_root_ + "mbx" + sep;
    std::string cleanup = options_.prefix + sep + "cleanup" + sep + std::string(kDataVersion) + sep;
    cleanup_mailboxes_ = cleanup + "mbx";
    cleanup_contents_ = cleanup + "content";
  }

  ~Store() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      // Ends an XREAD BLOCK at once instead of waiting it out.
      if (watcher_fd_ >= 0) shutdown(watcher_fd_, SHUT_RDWR);
    }
    wake_.notify_all();
    changes_.Stop();
    if (watcher_.joinable()) watcher_.join();
  }

  const RedisOptions& options() const { return options_; }
  const std::string& ns() const { return ns_; }
  const std::string& mailboxes_key() const { return mailboxes_; }
  const std::string& order_key() const { return order_; }
  const std::string& max_order_key() const { return max_order_; }
  const std::string& uidv_key() const { return uidv_; }
  const std::string& subscribed_key() const { return subscribed_; }
  const std::string& max_modseq_key() const { return max_modseq_; }
  const std::string& content_refs_key() const { return content_refs_; }
  const std::string& thread_keys_key() const { return thread_keys_; }
  const std::string& cleanup_contents_key() const { return cleanup_contents_; }
  const std::string& cleanup_mailboxes_key() const { return cleanup_mailboxes_; }
  const std::string& content_prefix() const { return content_prefix_; }
  const std::string& mailbox_prefix() const { return mailbox_prefix_; }
  std::string ContentKey(std::string_view email_id) const {
    return content_prefix_ + std::string(email_id);
  }
  // Where an append stages the content hash it is about to add, for the
  // length of one MULTI (message_add renames it into place or deletes
  // it). Never seen by another client; the TTL is for a server that
  // stopped half way through a retry.
  std::string StagedKey() const { return ns_root_ + "staged" + options_.separator + RandomHex(16); }
  MailboxKeys KeysOf(std::string_view mailbox_id) const {
    std::string root = mailbox_prefix_ + std::string(mailbox_id) + options_.separator;
    return {root + "max-uid", root + "uids",   root + "seq",     root + "content",
            root + "changes", root + "recent", root + "deleted", root + "unseen"};
  }

  // --- talking to the server ---
  Result<std::vector<Reply>> Pipeline(std::span<const Command> commands) {
    auto lease = pool_.Acquire();
    if (!lease.ok()) return Logged(lease.status());
    auto replies = (*lease)->Pipeline(commands);
    if (!replies.ok()) return Logged(replies.status());
    return replies;
  }
  Result<Reply> Run(const Command& command) {
    auto replies = Pipeline(std::span<const Command>(&command, 1));
    if (!replies.ok()) return replies.status();
    return (*replies)[0];
  }
  Result<Reply> Eval(const redis::Script& script, std::span<const std::string_view> keys,
                     std::span<const std::string_view> args) {
    auto lease = pool_.Acquire();
    if (!lease.ok()) return Logged(lease.status());
    auto reply = (*lease)->Eval(script, keys, args);
    if (!reply.ok()) return Logged(reply.status());
    return reply;
  }
  Result<Reply> Eval(const redis::Script& script, std::span<const std::string> keys,
                     std::span<const std::string> args) {
    return Eval(script, redis::Views(keys), redis::Views(args));
  }
  Result<Reply> Transaction(std::span<const redis::CommandView> commands,
                            std::span<const redis::Script* const> scripts) {
    auto lease = pool_.Acquire();
    if (!lease.ok()) return Logged(lease.status());
    auto reply = (*lease)->Transaction(commands, scripts);
    if (!reply.ok()) return Logged(reply.status());
    return reply;
  }

  // The Status for an error reply that no caller expects.
  Status ErrorReply(const Reply& reply, ErrorScope scope, std::string_view what) {
    std::string_view text = ErrorText(reply);
    if (text.starts_with("CORRUPT") || text.starts_with("WRONGTYPE")) {
      return Corrupt(scope, fmt::format("{}: {}", what, text));
    }
    if (text.starts_with("OOM")) {
      spdlog::error("redis: {}: {}", what, text);
      return Status::Error(ErrorCode::kNoSpace, ErrorScope::kStore, std::string(text));
    }
    spdlog::error("redis: {}: {}", what, text);
    return Status::Error(ErrorCode::kIo, ErrorScope::kStore, fmt::format("{}: {}", what, text));
  }

  // --- sizes: content never changes under an email id ---
  std::optional<uint64_t> CachedSize(const std::string& email_id) {
    std::lock_guard lock(mu_);
    auto it = sizes_.find(email_id);
    if (it == sizes_.end()) return std::nullopt;
    return it->second;
  }
  void RememberSize(const std::string& email_id, uint64_t size) {
    std::lock_guard lock(mu_);
    sizes_[email_id] = size;
  }

  // --- the change feed ---
  void Post(Change::Kind kind, std::string mailbox, std::vector<uint32_t> uids = {}) {
    changes_.Post(Change{kind, std::move(mailbox), std::move(uids)});
  }
  ChangeLog& changes() { return changes_; }

  // Starts following a mailbox's changes stream from its current end.
  void Follow(const std::string& mailbox_id, const std::string& name) {
    {
      std::lock_guard lock(mu_);
      auto it = followed_.find(mailbox_id);
      if (it != followed_.end()) {
        it->second.name = name;
        return;
      }
    }
    MailboxKeys keys = KeysOf(mailbox_id);
    std::vector<Command> commands = {{"XREVRANGE", keys.changes, "+", "-", "COUNT", "1"},
                                     {"GET", keys.max_uid}};
    auto replies = Pipeline(commands);
    std::string last_id = "0-0";
    long long max_uid = 0;
    if (replies.ok()) {
      const Reply& top = (*replies)[0];
      if (top.is_array() && top.size() > 0) last_id = std::string(top[0][0].str());
      (*replies)[1].ToInteger(&max_uid);
    }
    {
      std::lock_guard lock(mu_);
      followed_.try_emplace(mailbox_id,
                            Followed{name, last_id, static_cast<uint32_t>(max_uid), {}});
    }
    StartWatcher();
  }
  void Unfollow(const std::string& mailbox_id) {
    std::lock_guard lock(mu_);
    followed_.erase(mailbox_id);
  }
  std::string NameOf(const std::string& mailbox_id, std::string fallback) {
    std::lock_guard lock(mu_);
    auto it = followed_.find(mailbox_id);
    return it != followed_.end() ? it->second.name : fallback;
  }
  void Rename(const std::string& mailbox_id, const std::string& name) {
    std::lock_guard lock(mu_);
    auto it = followed_.find(mailbox_id);
    if (it != followed_.end()) it->second.name = name;
  }

  // Mailbox names resolved to (id, UID validity): the driver resolves the
  // mailbox on every lookup, and each resolution would otherwise be a round
  // trip. Dropped on every change to the mailbox list this mount makes and
  // every one the watcher's poll sees, so a name another writer changed is
  // stale for at most one poll; a handle to a mailbox deleted meanwhile
  // fails its operations with kNotFound anyway.
  struct Resolved {
    std::string id;
    uint32_t uid_validity = 0;
    // The handle made for it, shared while anybody holds it: handles keep
    // no state of their own, and making one builds its keys. Weak, as a
    // handle holds the Store.
    std::weak_ptr<MailboxData> handle;
  };
  std::optional<Resolved> ResolvedMailbox(const std::string& name, uint64_t* generation) {
    std::lock_guard lock(mu_);
    *generation = resolved_generation_;
    auto it = resolved_.find(name);
    if (it == resolved_.end()) return std::nullopt;
    return it->second;
  }
  // Keeps a resolution made at `generation` unless the list changed since.
  void RememberResolved(const std::string& name, Resolved resolved, uint64_t generation) {
    std::lock_guard lock(mu_);
    if (generation == resolved_generation_) resolved_[name] = std::move(resolved);
  }
  void ForgetResolved() {
    std::lock_guard lock(mu_);
    ForgetResolvedLocked();
  }

  // The names ListMailboxes last answered, for at most kListPollInterval
  // and only while the list has not changed since: the driver asks for the
  // list on every lookup of a name that is not a message (each new file
  // of a `cp`), and this saves that round trip. The same generation as
  // the resolved names: dropped on every change this mount makes and every
  // one the watcher's poll sees, so another writer's new mailbox shows
  // within one poll, as it does through the kernel's caches anyway.
  std::optional<std::vector<std::string>> CachedNames(uint64_t* generation) {
    std::lock_guard lock(mu_);
    *generation = resolved_generation_;
    if (!names_ || names_generation_ != resolved_generation_ ||
        std::chrono::steady_clock::now() - names_at_ > kListPollInterval) {
      return std::nullopt;
    }
    return *names_;
  }
  void RememberNames(const std::vector<std::string>& names, uint64_t generation,
                     std::chrono::steady_clock::time_point asked_at) {
    std::lock_guard lock(mu_);
    if (generation != resolved_generation_) return;
    names_ = names;
    names_generation_ = generation;
    names_at_ = asked_at;
  }

  // A change this mount made to `mailbox_id`, by the id of its entry in
  // the mailbox's changes stream: true if the caller must post it, false
  // if the watcher has read that entry already and posted it. Either way
  // it is posted once: when the caller does, the watcher skips the entry.
  // The watcher usually reads the entry first (Redis wakes its XREAD in
  // the same step as it answers the script), so neither can simply leave
  // it to the other. An empty id (nothing written) is the caller's.
  bool ReportOwnChange(const std::string& mailbox_id, std::string_view id) {
    if (id.empty()) return true;
    std::lock_guard lock(mu_);
    auto it = followed_.find(mailbox_id);
    if (it == followed_.end()) return true;  // nobody reads that stream
    Followed& followed = it->second;
    StreamId parsed = ParseStreamId(id);
    if (parsed <= ParseStreamId(followed.last_id)) return false;
    followed.own.insert(parsed);
    return true;
  }

  void StartWatcher() {
    std::lock_guard lock(mu_);
    if (watcher_started_ || stopping_) return;
    watcher_started_ = true;
    watcher_ = std::thread([this] { Watch(); });
  }

  int DrainCleanup(redis::Connection* connection, int limit);

 private:
  // REQUIRES(mu_)
  void ForgetResolvedLocked() {
    resolved_.clear();
    ++resolved_generation_;
  }

  // A stream entry id, "<ms>-<seq>", as numbers (they order that way).
  using StreamId = std::pair<uint64_t, uint64_t>;
  static StreamId ParseStreamId(std::string_view text) {
    StreamId id{0, 0};
    size_t dash = text.find('-');
    std::string_view ms = text.substr(0, dash);
    std::from_chars(ms.data(), ms.data() + ms.size(), id.first);
    if (dash != std::string_view::npos) {
      std::string_view seq = text.substr(dash + 1);
      std::from_chars(seq.data(), seq.data() + seq.size(), id.second);
    }
    return id;
  }

  struct Followed {
    std::string name;
    std::string last_id;
    // The highest UID added to the stream that the watcher has read (it
    // tells an added message from a flag change). Only the watcher sets it,
    // in stream order, own changes included.
    uint32_t max_uid = 0;
    std::set<StreamId> own;  // this mount's changes, posted, not yet read here
  };

  Status Logged(Status status) {
    auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(log_mu_);
    if (status.detail() != last_logged_ || now - last_logged_at_ > std::chrono::seconds(5)) {
      spdlog::error("{}", status.detail());
      last_logged_ = status.detail();
      last_logged_at_ = now;
    }
    return status;
  }

  void Watch();
  bool WaitFor(std::chrono::milliseconds duration) {
    std::unique_lock lock(mu_);
    wake_.wait_for(lock, duration, [this] { return stopping_; });
    return !stopping_;
  }
  void ApplyStreams(const Reply& reply);
  void PollListing(redis::Connection& connection);

  const RedisOptions options_;
  redis::Pool pool_;
  const std::string ns_;
  std::string ns_prefix_, ns_root_, mailboxes_, order_, max_order_, uidv_, subscribed_, max_modseq_,
      content_refs_, thread_keys_, content_prefix_, mailbox_prefix_, cleanup_mailboxes_,
      cleanup_contents_;

  ChangeLog changes_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;         // GUARDED_BY(mu_)
  bool watcher_started_ = false;  // GUARDED_BY(mu_)
  int watcher_fd_ = -1;           // GUARDED_BY(mu_): its socket
  std::thread watcher_;
  std::unordered_map<std::string, uint64_t> sizes_;  // GUARDED_BY(mu_)
  std::map<std::string, Followed> followed_;         // GUARDED_BY(mu_): by mailbox id
  std::map<std::string, Resolved> resolved_;         // GUARDED_BY(mu_): by name
  uint64_t resolved_generation_ = 0;                 // GUARDED_BY(mu_)
  std::optional<std::vector<std::string>> names_;    // GUARDED_BY(mu_): see CachedNames
  uint64_t names_generation_ = 0;                    // GUARDED_BY(mu_)
  std::chrono::steady_clock::time_point names_at_;   // GUARDED_BY(mu_)
  std::map<std::string, std::string> listing_;       // GUARDED_BY(mu_): name -> id
  bool have_listing_ = false;                        // GUARDED_BY(mu_)
  std::set<std::string> subscriptions_;              // GUARDED_BY(mu_)
  bool have_subscriptions_ = false;                  // GUARDED_BY(mu_)

  std::mutex log_mu_;
  std::string last_logged_;                               // GUARDED_BY(log_mu_)
  std::chrono::steady_clock::time_point last_logged_at_;  // GUARDED_BY(log_mu_)
};

int Store::DrainCleanup(redis::Connection* connection, int limit) {
  std::vector<std::string> keys = {cleanup_mailboxes_, cleanup_contents_};
  std::vector<std::string> args = {ns_prefix_, options_.separator,
                                   std::to_string(kMailboxTtlSeconds),
                                   std::to_string(kContentTtlSeconds)};
  int done = 0;
  while (done < limit) {
    Result<Reply> reply =
        connection != nullptr
            ? connection->Eval(redis::scripts::CleanupOne(), redis::Views(keys), redis::Views(args))
            : Eval(redis::scripts::CleanupOne(), keys, args);
    if (!reply.ok()) break;
    if (reply->is_error()) {
      ErrorReply(*reply, ErrorScope::kStore, "cleanup");
      break;
    }
    if (reply->integer() == 0) break;
    ++done;
  }
  return done;
}

void Store::ApplyStreams(const Reply& reply) {
  // [[stream key, [[id, [field, value, ...]], ...]], ...]
  for (size_t s = 0; s < reply.size(); ++s) {
    Reply stream = reply[s];
    std::string key(stream[0].str());
    Reply entries = stream[1];
    struct Entry {
      StreamId id;
      uint32_t uid;
      bool expunge;
    };
    std::vector<Entry> read;
    read.reserve(entries.size());
    for (size_t e = 0; e < entries.size(); ++e) {
      Reply fields = entries[e][1];
      long long uid = 0;
      std::string_view type;
      for (size_t f = 0; f + 1 < fields.size(); f += 2) {
        if (fields[f].str() == "uid") fields[f + 1].ToInteger(&uid);
        if (fields[f].str() == "type") type = fields[f + 1].str();
      }
      if (uid <= 0 || uid > UINT32_MAX) continue;
      read.push_back(
          {ParseStreamId(entries[e][0].str()), static_cast<uint32_t>(uid), type == "expunge"});
    }
    {
      std::lock_guard lock(mu_);
      Followed* followed = nullptr;
      for (auto& [id, candidate] : followed_) {
        if (KeysOf(id).changes == key) {
          followed = &candidate;
          break;
        }
      }
      if (followed == nullptr) continue;
      std::vector<uint32_t> added, flagged, expunged;
      if (entries.size() > 0) {
        followed->last_id = std::string(entries[entries.size() - 1][0].str());
      }
      for (const Entry& entry : read) {
        if (followed->own.erase(entry.id) > 0) {
          // This mount's own change, posted by the operation that made it.
          if (!entry.expunge) followed->max_uid = std::max(followed->max_uid, entry.uid);
          continue;
        }
        if (entry.expunge) {
          expunged.push_back(entry.uid);
        } else if (entry.uid > followed->max_uid) {
          added.push_back(entry.uid);
          followed->max_uid = entry.uid;
        } else {
          flagged.push_back(entry.uid);
        }
      }
      // Own ids at or below the last one read that were not among the
      // entries (trimmed before the watcher read them) will not come.
      StreamId last = ParseStreamId(followed->last_id);
      followed->own.erase(followed->own.begin(), followed->own.upper_bound(last));
      // Posted before mu_ is released: an operation that finds its change
      // read here (ReportOwnChange) returns with it in the feed.
      const std::string& name = followed->name;
      if (!added.empty()) Post(Change::Kind::kMessagesAdded, name, std::move(added));
      if (!flagged.empty()) Post(Change::Kind::kFlagsChanged, name, std::move(flagged));
      if (!expunged.empty()) Post(Change::Kind::kMessagesExpunged, name, std::move(expunged));
    }
  }
}

void Store::PollListing(redis::Connection& connection) {
  std::vector<Command> commands = {{"HGETALL", mailboxes_}, {"SMEMBERS", subscribed_}};
  auto replies = connection.Pipeline(commands);
  if (!replies.ok() || (*replies)[0].is_error() || (*replies)[1].is_error()) return;
  std::map<std::string, std::string> listing;
  const Reply& all = (*replies)[0];
  for (size_t i = 0; i + 1 < all.size(); i += 2) {
    std::string name = DecodeName(all[i].str());
    if (!name.empty()) listing[name] = std::string(all[i + 1].str());
  }
  std::set<std::string> subscriptions;
  const Reply& members = (*replies)[1];
  for (size_t i = 0; i < members.size(); ++i) {
    std::string name = DecodeName(members[i].str());
    if (!name.empty()) subscriptions.insert(name);
  }
  std::vector<Change> found;
  {
    std::lock_guard lock(mu_);
    if (have_listing_) {
      for (const auto& [name, id] : listing_) {
        auto it = listing.find(name);
        if (it == listing.end() || it->second != id) {
          found.push_back({Change::Kind::kMailboxRemoved, name, {}});
        }
      }
      for (const auto& [name, id] : listing) {
        auto it = listing_.find(name);
        if (it == listing_.end() || it->second != id) {
          found.push_back({Change::Kind::kMailboxAdded, name, {}});
        }
      }
    }
    if (have_subscriptions_) {
      std::vector<std::string> differ;
      std::set_symmetric_difference(subscriptions.begin(), subscriptions.end(),
                                    subscriptions_.begin(), subscriptions_.end(),
                                    std::back_inserter(differ));
      for (auto& name : differ) found.push_back({Change::Kind::kSubscriptions, name, {}});
    }
    // Follow renames; stop following mailboxes that are gone.
    std::map<std::string, std::string> names_by_id;
    for (const auto& [name, id] : listing) names_by_id[id] = name;
    for (auto it = followed_.begin(); it != followed_.end();) {
      auto named = names_by_id.find(it->first);
      if (named == names_by_id.end()) {
        it = followed_.erase(it);
      } else {
        it->second.name = named->second;
        ++it;
      }
    }
    if (!have_listing_ || !found.empty()) ForgetResolvedLocked();
    listing_ = std::move(listing);
    have_listing_ = true;
    subscriptions_ = std::move(subscriptions);
    have_subscriptions_ = true;
  }
  for (auto& change : found) changes_.Post(std::move(change));
}

void Store::Watch() {
  std::unique_ptr<redis::Connection> connection;
  auto backoff = std::chrono::milliseconds(50);
  auto last_poll = std::chrono::steady_clock::time_point();
  auto last_cleanup = std::chrono::steady_clock::now();
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        watcher_fd_ = -1;
        return;
      }
    }
    if (connection == nullptr || connection->broken()) {
      {
        std::lock_guard lock(mu_);
        watcher_fd_ = -1;
      }
      connection.reset();
      auto opened = redis::Connection::Open(options_.address, {});
      if (!opened.ok()) {
        Logged(opened.status());
        if (!WaitFor(backoff)) return;
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
        continue;
      }
      connection = std::move(opened).value();
      backoff = std::chrono::milliseconds(50);
      std::lock_guard lock(mu_);
      if (stopping_) return;
      watcher_fd_ = connection->fd();
    }
    auto now = std::chrono::steady_clock::now();
    if (now - last_poll >= kListPollInterval) {
      PollListing(*connection);
      last_poll = now;
    }
    if (now - last_cleanup >= kCleanupInterval) {
      DrainCleanup(connection.get(), 100);
      last_cleanup = now;
    }
    Command xread = {"XREAD",  "COUNT", "1000", "BLOCK", std::to_string(kWatchBlock.count()),
                     "STREAMS"};
    std::vector<std::string> ids;
    {
      std::lock_guard lock(mu_);
      for (const auto& [id, followed] : followed_) {
        xread.push_back(KeysOf(id).changes);
        ids.push_back(followed.last_id);
      }
    }
    if (ids.empty()) {
      if (!WaitFor(kWatchBlock)) return;
      continue;
    }
    xread.insert(xread.end(), ids.begin(), ids.end());
    connection->SetTimeout(kWatchBlock + options_.address.command_timeout);
    auto reply = connection->Run(xread);
    if (!reply.ok()) {
      std::lock_guard lock(mu_);
      if (!stopping_) Logged(reply.status());
      continue;
    }
    if (reply->is_error()) {
      // A changes key of the wrong type: report it, and wait before trying
      // again rather than spinning on it.
      ErrorReply(*reply, ErrorScope::kMailbox, "following changes");
      if (!WaitFor(std::chrono::milliseconds(1000))) return;
      continue;
    }
    if (reply->is_array()) {
      ApplyStreams(*reply);
      // Under a stream of appends every one would wake the XREAD again:
      // let the next ones gather for a moment and read them at once.
      if (!WaitFor(kWatchGather)) return;
    }
  }
}

Status FromScriptError(Store& store, const Reply& reply, std::string_view what) {
  std::string_view text = ErrorText(reply);
  if (text.starts_with("NOMAILBOX")) return NoMailbox(fmt::format("{}: mailbox was deleted", what));
  if (text.starts_with("NOTFOUND")) {
    return Status::NotFound(ErrorScope::kMessage, fmt::format("{}: no such message", what));
  }
  return store.ErrorReply(reply, ErrorScope::kMessage, what);
}

// A message's bytes inside the reply that brought them, not copied again.
class ReplyContent final : public ContentReader {
 public:
  explicit ReplyContent(Reply reply) : reply_(std::move(reply)), bytes_(reply_.str()) {}
  uint64_t size() const override { return bytes_.size(); }
  Result<size_t> ReadAt(uint64_t offset, std::span<char> out) const override {
    if (offset >= bytes_.size()) return size_t{0};
    size_t n = std::min<uint64_t>(out.size(), bytes_.size() - offset);
    std::memcpy(out.data(), bytes_.data() + offset, n);
    return n;
  }

 private:
  const Reply reply_;  // owns the bytes
  const std::string_view bytes_;
};

class RedisMailbox final : public MailboxData {
 public:
  RedisMailbox(std::shared_ptr<Store> store, std::string id, std::string name,
               uint32_t uid_validity)
      : store_(std::move(store)),
        id_(std::move(id)),
        name_(std::move(name)),
        keys_(store_->KeysOf(id_)),
        uid_validity_(uid_validity) {}

  std::string mailbox_id() const override { return id_; }
  bool readonly() const override { return false; }  // pymap has no read-only mailboxes
  uint32_t uid_validity() const override { return uid_validity_; }
  FlagSet permanent_flags() const override { return FlagSet::AllSystemFlags(); }
  bool accepts_keywords() const override { return true; }

  std::optional<UnixSeconds> AppendedDate(UnixSeconds requested) const override {
    // Stored as Append formats it, read back as Get parses it.
    auto date = redis::ParseRecordDate(redis::FormatRecordDate(requested));
    if (!date.ok()) return std::nullopt;
    return *date;
  }

  Result<uint32_t> Append(const AppendMessage& message, bool recent) override {
    if (message.content == nullptr) return Status::InvalidArgument("append without content");
    // The bytes as they are when they are in memory already; read once
    // otherwise. From here to hiredis's output buffer they are not copied.
    std::shared_ptr<const std::string> bytes;
    if (const auto* in_memory = dynamic_cast<const StringContent*>(message.content.get())) {
      bytes = in_memory->bytes();
    } else {
      auto read = ReadAll(*message.content);
      if (!read.ok()) return read.status();
      bytes = std::make_shared<const std::string>(std::move(read).value());
    }
    const std::string_view full = *bytes;
    redis::ContentFields fields = redis::BuildContentFields(full);
    std::string email_id = redis::EmailIdOf(full);
    const std::string flags = redis::EncodeStrings(redis::FlagsToRecord(message.flags));
    const std::string date = redis::FormatRecordDate(message.internal_date);
    const std::string thread_id = "T" + RandomHex(32);
    const std::string thread_keys = redis::EncodeStrings(ThreadKeysFor(full));
    const std::string length = std::to_string(full.size());
    const std::string staged = store_->StagedKey();
    std::string content_key = store_->ContentKey(email_id);
    const std::string_view keys[] = {keys_.max_uid,
                                     keys_.uids,
                                     keys_.seq,
                                     keys_.content,
                                     keys_.changes,
                                     keys_.recent,
                                     keys_.deleted,
                                     keys_.unseen,
                                     store_->max_modseq_key(),
                                     store_->thread_keys_key(),
                                     store_->content_refs_key(),
                                     content_key,
                                     store_->mailboxes_key(),
                                     store_->order_key(),
                                     staged};
    const std::string_view args[] = {recent ? "1" : "0", flags,       date, email_id,
                                     thread_id,          thread_keys, id_,  length};
    // One round trip: the content hash staged with plain commands (its
    // bytes go nowhere near Lua), and message_add, in one MULTI.
    const std::string_view stage[] = {
        "HSET",           staged,   "full",        full,          "full-json",
        fields.full_json, "header", fields.header, "header-json", fields.header_json};
    const std::string_view expire[] = {"PEXPIRE", staged, kStagedTtlMs};
    const std::string key_count = std::to_string(std::size(keys));
    std::vector<std::string_view> add = {"EVALSHA", redis::scripts::MessageAdd().sha1, key_count};
    add.insert(add.end(), std::begin(keys), std::end(keys));
    add.insert(add.end(), std::begin(args), std::end(args));
    const size_t content_key_at = 3 + 11, email_id_at = 3 + std::size(keys) + 3;
    const redis::CommandView commands[] = {stage, expire, add};
    const redis::Script* const scripts[] = {&redis::scripts::MessageAdd()};
    // adler32 clashes are likely enough among millions of messages: other
    // bytes under the same id get a random id instead of sharing content.
    for (int attempt = 0; attempt < 8; ++attempt) {
      auto reply = store_->Transaction(commands, scripts);
      if (!reply.ok()) return reply.status();
      // A command the server would not queue (out of memory, say).
      if (reply->is_error()) return store_->ErrorReply(*reply, ErrorScope::kMailbox, Where());
      const Reply result = (*reply)[2];
      if (result.is_error()) {
        if (ErrorText(result).starts_with("COLLISION")) {
          email_id = "M" + RandomHex(8);
          content_key = store_->ContentKey(email_id);
          add[content_key_at] = content_key;
          add[email_id_at] = email_id;
          continue;
        }
        return FromScriptError(*store_, result, Where());
      }
      long long uid = 0;
      if (!result[0].ToInteger(&uid) || uid <= 0 || uid > UINT32_MAX) {
        return Corrupt(ErrorScope::kMailbox, fmt::format("{}: max-uid out of range", Where()));
      }
      auto u = static_cast<uint32_t>(uid);
      store_->RememberSize(email_id, full.size());
      // {uid, email id, thread id, stream id}
      if (store_->ReportOwnChange(id_, result[3].str())) {
        store_->Post(Change::Kind::kMessagesAdded, Name(), {u});
      }
      return u;
    }
    return Status::Io(fmt::format("{}: no free email id", Where()));
  }

  Result<uint32_t> Copy(uint32_t uid, MailboxData& destination, bool recent) override {
    return Transfer(uid, destination, recent, false);
  }
  Result<uint32_t> Move(uint32_t uid, MailboxData& destination, bool recent) override {
    return Transfer(uid, destination, recent, true);
  }

  // One round trip when the size is known (it is after an append, a
  // listing or an earlier Get), two otherwise.
  Result<MessageInfo> Get(uint32_t uid) override { return Record(uid, /*want_size=*/true); }

  // Two round trips: the record names the content key. (A script could
  // make it one, but Redis's Lua hashes every byte of a string it makes:
  // that costs the server more than the second round trip, measured.)
  Result<std::shared_ptr<const ContentReader>> Open(uint32_t uid) override {
    auto info = Record(uid, /*want_size=*/false);
    if (!info.ok()) return info.status();
    auto full = store_->Run({"HGET", store_->ContentKey(info->email_id), "full"});
    if (!full.ok()) return full.status();
    if (full->is_error()) return store_->ErrorReply(*full, ErrorScope::kMessage, Where());
    if (!full->is_string()) {
      return Corrupt(ErrorScope::kMessage, fmt::format("{}: UID {}: content {} is missing", Where(),
                                                       uid, info->email_id));
    }
    store_->RememberSize(info->email_id, full->str().size());
    return std::shared_ptr<const ContentReader>(std::make_shared<ReplyContent>(*full));
  }

  Result<FlagSet> Update(uint32_t uid, const FlagSet& flags, FlagOp op) override {
    std::vector<std::string> keys = keys_.All();
    keys.push_back(store_->max_modseq_key());
    keys.push_back(store_->mailboxes_key());
    keys.push_back(store_->order_key());
    std::string_view mode = op == FlagOp::kAdd      ? "ADD"
                            : op == FlagOp::kDelete ? "DELETE"
                                                    : "REPLACE";
    std::vector<std::string> args = {std::to_string(uid), std::string(mode),
                                     redis::EncodeStrings(redis::FlagsToRecord(flags)), id_};
    auto reply = store_->Eval(redis::scripts::MessageUpdate(), keys, args);
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) {
      if (ErrorText(*reply).starts_with("NOTFOUND")) return NoMessage(uid);
      return FromScriptError(*store_, *reply, Where());
    }
    // {record, stream id or '' when nothing changed}
    auto record = redis::DecodeRecord((*reply)[0].str());
    if (!record.ok()) return Corrupt(ErrorScope::kMessage, record.status().detail());
    FlagSet now = redis::FlagsFromRecord(record->flags);
    if (store_->ReportOwnChange(id_, (*reply)[1].str())) {
      store_->Post(Change::Kind::kFlagsChanged, Name(), {uid});
    }
    return now;
  }

  Status Delete(std::span<const uint32_t> uids) override {
    if (uids.empty()) return Status::Ok();
    std::vector<std::string> keys = keys_.All();
    keys.push_back(store_->max_modseq_key());
    keys.push_back(store_->cleanup_contents_key());
    keys.push_back(store_->mailboxes_key());
    keys.push_back(store_->order_key());
    std::vector<std::string> args = {redis::EncodeUids(uids), store_->ns(), id_};
    auto reply = store_->Eval(redis::scripts::MessageDelete(), keys, args);
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) return FromScriptError(*store_, *reply, Where());
    // {uids expunged, their stream ids}
    const Reply present = (*reply)[0];
    const Reply changes = (*reply)[1];
    std::vector<uint32_t> expunged;
    for (size_t i = 0; i < present.size(); ++i) {
      long long uid = 0;
      if (present[i].ToInteger(&uid) && store_->ReportOwnChange(id_, changes[i].str())) {
        expunged.push_back(static_cast<uint32_t>(uid));
      }
    }
    std::sort(expunged.begin(), expunged.end());
    if (!expunged.empty())
      store_->Post(Change::Kind::kMessagesExpunged, Name(), std::move(expunged));
    return Status::Ok();
  }

  Result<std::vector<uint32_t>> ClaimRecent() override {
    // One round trip: the script checks that the mailbox still exists.
    const std::string_view keys[] = {keys_.recent, store_->mailboxes_key(), store_->order_key()};
    const std::string_view args[] = {id_};
    auto reply = store_->Eval(redis::scripts::ClaimRecent(), keys, args);
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) return FromScriptError(*store_, *reply, Where());
    std::vector<uint32_t> claimed;
    for (size_t i = 0; i < reply->size(); ++i) {
      long long uid = 0;
      if ((*reply)[i].ToInteger(&uid) && uid > 0 && uid <= UINT32_MAX) {
        claimed.push_back(static_cast<uint32_t>(uid));
      }
    }
    std::sort(claimed.begin(), claimed.end());
    return claimed;
  }

  Status Cleanup() override {
    if (Status s = IsLive(); !s.ok()) return s;
    store_->DrainCleanup(nullptr, 1000);
    return Status::Ok();
  }

  Result<MailboxSnapshot> Snapshot() override {
    std::vector<std::string> keys = keys_.All();
    keys.push_back(store_->mailboxes_key());
    keys.push_back(store_->order_key());
    std::vector<std::string> args = {id_};
    auto reply = store_->Eval(redis::scripts::Snapshot(), keys, args);
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) return FromScriptError(*store_, *reply, Where());
    MailboxSnapshot snapshot;
    snapshot.mailbox_id = id_;
    snapshot.uid_validity = uid_validity_;
    snapshot.next_uid = static_cast<uint32_t>((*reply)[0].integer() + 1);
    snapshot.exists = static_cast<uint32_t>((*reply)[1].integer());
    snapshot.recent = static_cast<uint32_t>((*reply)[2].integer());
    snapshot.unseen = static_cast<uint32_t>((*reply)[3].integer());
    snapshot.first_unseen = static_cast<uint32_t>((*reply)[4].integer());
    return snapshot;
  }

  Result<std::vector<MessageInfo>> Find(uint32_t first_uid, uint32_t last_uid) override {
    std::vector<MessageInfo> found;
    if (first_uid > last_uid) return found;
    // A short range asks for exactly its UIDs; anything longer reads the
    // whole hash in one reply (what `ls -l` of a mailbox does).
    std::vector<Command> commands = {{"ZSCORE", store_->order_key(), id_}};
    bool ranged = last_uid - first_uid < 1024;
    if (ranged) {
      Command uids = {"HMGET", keys_.uids};
      Command contents = {"HMGET", keys_.content};
      for (uint64_t uid = first_uid; uid <= last_uid; ++uid) {
        uids.push_back(std::to_string(uid));
        contents.push_back(std::to_string(uid));
      }
      commands.push_back(std::move(uids));
      commands.push_back(std::move(contents));
    } else {
      commands.push_back({"HGETALL", keys_.uids});
    }
    auto replies = store_->Pipeline(commands);
    if (!replies.ok()) return replies.status();
    if (Status s = CheckLive((*replies)[0]); !s.ok()) return s;
    const Reply& records = (*replies)[1];
    if (records.is_error()) return store_->ErrorReply(records, ErrorScope::kMailbox, Where());
    std::vector<std::pair<uint32_t, std::string_view>> raw;
    std::vector<std::string> content_ids;
    if (ranged) {
      const Reply& contents = (*replies)[2];
      for (size_t i = 0; i < records.size(); ++i) {
        if (records[i].is_nil()) continue;
        raw.emplace_back(first_uid + static_cast<uint32_t>(i), records[i].str());
        content_ids.emplace_back(contents[i].str());
      }
    } else {
      raw.reserve(records.size() / 2);
      for (size_t i = 0; i + 1 < records.size(); i += 2) {
        long long uid = 0;
        if (!records[i].ToInteger(&uid) || uid <= 0 || uid > UINT32_MAX) {
          spdlog::error("redis: bad data: {}: field '{}' is not a UID; skipped", keys_.uids,
                        records[i].str());
          continue;
        }
        if (uid < first_uid || uid > last_uid) continue;
        raw.emplace_back(static_cast<uint32_t>(uid), records[i + 1].str());
      }
      std::sort(raw.begin(), raw.end());
    }
    return Decode(raw, content_ids, /*skip_bad=*/true);
  }

 private:
  std::string Where() const { return fmt::format("mailbox {} ({})", Name(), id_); }
  std::string Name() const { return store_->NameOf(id_, name_); }

  Status NoMessage(uint32_t uid) const {
    return Status::NotFound(ErrorScope::kMessage, fmt::format("{}: no UID {}", Name(), uid));
  }

  // `reply` is ZSCORE order id: nil means deleted, unless the mailbox is
  // only in `mailboxes` (an INBOX made by pymap's rename).
  Status CheckLive(const Reply& reply) {
    if (reply.is_error()) return store_->ErrorReply(reply, ErrorScope::kMailbox, Where());
    if (!reply.is_nil()) return Status::Ok();
    auto ids = store_->Run({"HVALS", store_->mailboxes_key()});
    if (!ids.ok()) return ids.status();
    if (ids->is_error()) return store_->ErrorReply(*ids, ErrorScope::kMailbox, Where());
    for (size_t i = 0; i < ids->size(); ++i) {
      if ((*ids)[i].str() == id_) return Status::Ok();
    }
    return NoMailbox(fmt::format("{} was deleted", Where()));
  }
  Status IsLive() {
    auto reply = store_->Run({"ZSCORE", store_->order_key(), id_});
    if (!reply.ok()) return reply.status();
    return CheckLive(*reply);
  }

  // The metadata of `uid`, its size too if `want_size`: its record, the
  // mailbox's liveness and the email id in `content`, pipelined.
  Result<MessageInfo> Record(uint32_t uid, bool want_size) {
    const std::string uid_text = std::to_string(uid);
    std::vector<Command> commands = {{"ZSCORE", store_->order_key(), id_},
                                     {"HGET", keys_.uids, uid_text},
                                     {"HGET", keys_.content, uid_text}};
    auto replies = store_->Pipeline(commands);
    if (!replies.ok()) return replies.status();
    if (Status s = CheckLive((*replies)[0]); !s.ok()) return s;
    const Reply& record = (*replies)[1];
    if (record.is_error()) return store_->ErrorReply(record, ErrorScope::kMailbox, Where());
    if (record.is_nil()) return NoMessage(uid);
    std::vector<std::pair<uint32_t, std::string_view>> raw = {{uid, record.str()}};
    std::vector<std::string> content_ids = {std::string((*replies)[2].str())};
    auto infos = Decode(raw, content_ids, /*skip_bad=*/false, want_size);
    if (!infos.ok()) return infos.status();
    if (!want_size && (*infos)[0].email_id.empty()) {
      return Corrupt(ErrorScope::kMessage,
                     fmt::format("{}: UID {}: no email id, so no content", Where(), uid));
    }
    return std::move((*infos)[0]);
  }

  // Decodes records and adds sizes: from the cache, else HSTRLEN of each
  // content's `full`, pipelined. `content_ids` (from `content`, parallel to
  // `raw`, or empty) stands in for a record without an email id.
  Result<std::vector<MessageInfo>> Decode(
      const std::vector<std::pair<uint32_t, std::string_view>>& raw,
      const std::vector<std::string>& content_ids, bool skip_bad, bool want_sizes = true) {
    std::vector<MessageInfo> infos;
    infos.reserve(raw.size());
    std::vector<size_t> unsized;
    std::vector<bool> ok(raw.size(), true);
    for (size_t i = 0; i < raw.size(); ++i) {
      MessageInfo info;
      info.uid = raw[i].first;
      auto record = redis::DecodeRecord(raw[i].second);
      Result<UnixSeconds> date =
          record.ok() ? redis::ParseRecordDate(record->date) : Result<UnixSeconds>(record.status());
      if (!record.ok() || !date.ok()) {
        std::string detail =
            fmt::format("{}: UID {}: {}", Where(), info.uid,
                        record.ok() ? date.status().detail() : record.status().detail());
        if (!skip_bad) return Corrupt(ErrorScope::kMessage, detail);
        Corrupt(ErrorScope::kMessage, detail + "; not listed");
        ok[i] = false;
        infos.push_back(std::move(info));
        continue;
      }
      info.flags = redis::FlagsFromRecord(record->flags);
      info.internal_date = *date;
      info.email_id = record->email_id;
      if (info.email_id.empty() && i < content_ids.size()) info.email_id = content_ids[i];
      info.thread_id = record->thread_id;
      if (!want_sizes) {
        // The caller has them.
      } else if (auto size = store_->CachedSize(info.email_id)) {
        info.size = *size;
      } else {
        unsized.push_back(i);
      }
      infos.push_back(std::move(info));
    }
    if (!unsized.empty()) {
      // HSTRLEN answers 0 for a missing hash or field too: only those ask
      // again, whether `full` exists (an empty message is rare).
      std::vector<Command> commands;
      commands.reserve(unsized.size());
      for (size_t i : unsized) {
        commands.push_back({"HSTRLEN", store_->ContentKey(infos[i].email_id), "full"});
      }
      auto lengths = store_->Pipeline(commands);
      if (!lengths.ok()) return lengths.status();
      commands.clear();
      std::vector<size_t> empty;
      for (size_t n = 0; n < unsized.size(); ++n) {
        const Reply& length = (*lengths)[n];
        if (length.is_integer() && length.integer() == 0) {
          empty.push_back(n);
          commands.push_back({"HEXISTS", store_->ContentKey(infos[unsized[n]].email_id), "full"});
        }
      }
      std::vector<bool> exists(unsized.size(), true);
      if (!commands.empty()) {
        auto replies = store_->Pipeline(commands);
        if (!replies.ok()) return replies.status();
        for (size_t e = 0; e < empty.size(); ++e) exists[empty[e]] = (*replies)[e].integer() == 1;
      }
      for (size_t n = 0; n < unsized.size(); ++n) {
        size_t i = unsized[n];
        const Reply& length = (*lengths)[n];
        if (length.is_error() || !exists[n] || infos[i].email_id.empty()) {
          std::string detail =
              fmt::format("{}: UID {}: content {} is missing{}", Where(), infos[i].uid,
                          infos[i].email_id, length.is_error() ? " or not a hash" : "");
          if (!skip_bad) return Corrupt(ErrorScope::kMessage, detail);
          Corrupt(ErrorScope::kMessage, detail + "; not listed");
          ok[i] = false;
          continue;
        }
        infos[i].size = static_cast<uint64_t>(length.integer());
        store_->RememberSize(infos[i].email_id, infos[i].size);
      }
    }
    if (std::find(ok.begin(), ok.end(), false) != ok.end()) {
      std::vector<MessageInfo> good;
      good.reserve(infos.size());
      for (size_t i = 0; i < infos.size(); ++i) {
        if (ok[i]) good.push_back(std::move(infos[i]));
      }
      return good;
    }
    return infos;
  }

  Result<uint32_t> Transfer(uint32_t uid, MailboxData& destination, bool recent, bool move) {
    auto* target = dynamic_cast<RedisMailbox*>(&destination);
    if (target == nullptr || target->store_ != store_) {
      return Status::Error(ErrorCode::kNotSupported, ErrorScope::kMailbox,
                           "the destination belongs to another store");
    }
    std::vector<std::string> keys = keys_.All();
    for (std::string& key : target->keys_.All()) keys.push_back(std::move(key));
    keys.push_back(store_->max_modseq_key());
    keys.push_back(store_->content_refs_key());
    keys.push_back(store_->mailboxes_key());
    keys.push_back(store_->order_key());
    std::vector<std::string> args = {std::to_string(uid),      recent ? "1" : "0", id_, target->id_,
                                     store_->content_prefix(), move ? "1" : "0"};
    auto reply = store_->Eval(redis::scripts::MessageCopy(), keys, args);
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) {
      if (ErrorText(*reply).starts_with("NOTFOUND")) return NoMessage(uid);
      if (ErrorText(*reply).starts_with("NOMAILBOX destination")) {
        return NoMailbox(fmt::format("{} was deleted", target->Where()));
      }
      return FromScriptError(*store_, *reply, Where());
    }
    long long new_uid = 0;
    if (!(*reply)[0].ToInteger(&new_uid) || new_uid <= 0 || new_uid > UINT32_MAX) {
      return Corrupt(ErrorScope::kMailbox,
                     fmt::format("{}: max-uid out of range", target->Where()));
    }
    auto u = static_cast<uint32_t>(new_uid);
    // {new uid, destination stream id, source stream id or ''}
    if (store_->ReportOwnChange(target->id_, (*reply)[1].str())) {
      store_->Post(Change::Kind::kMessagesAdded, target->Name(), {u});
    }
    if (move && store_->ReportOwnChange(id_, (*reply)[2].str())) {
      store_->Post(Change::Kind::kMessagesExpunged, Name(), {uid});
    }
    return u;
  }

  const std::shared_ptr<Store> store_;
  const std::string id_;
  const std::string name_;  // when opened; Store::NameOf follows renames
  const MailboxKeys keys_;
  const uint32_t uid_validity_;
};

class RedisMailboxSet final : public MailboxSet {
 public:
  explicit RedisMailboxSet(std::shared_ptr<Store> store) : store_(std::move(store)) {}

  Result<std::vector<std::string>> ListMailboxes() override {
    uint64_t generation = 0;
    if (auto names = store_->CachedNames(&generation)) return std::move(*names);
    auto asked_at = std::chrono::steady_clock::now();
    auto listing = Listing();
    if (!listing.ok()) return listing.status();
    std::vector<std::string> names;
    names.reserve(listing->size() + 1);
    for (const auto& [name, entry] : *listing) names.push_back(name);
    if (!listing->contains(std::string(kInbox))) {
      names.push_back(std::string(kInbox));
      std::sort(names.begin(), names.end());
    }
    store_->RememberNames(names, generation, asked_at);
    return names;
  }

  Result<std::vector<std::string>> ListSubscribed() override {
    auto members = store_->Run({"SMEMBERS", store_->subscribed_key()});
    if (!members.ok()) return members.status();
    if (members->is_error())
      return store_->ErrorReply(*members, ErrorScope::kStore, "subscriptions");
    std::set<std::string> names;
    for (size_t i = 0; i < members->size(); ++i) {
      std::string name = DecodeName((*members)[i].str());
      if (name.empty()) {
        spdlog::warn("redis: subscription '{}' is not a mailbox name; ignored",
                     maildir::PrintableForLog((*members)[i].str()));
        continue;
      }
      names.insert(std::move(name));
    }
    return std::vector<std::string>(names.begin(), names.end());
  }

  Status SetSubscribed(std::string_view name, bool subscribed) override {
    auto normalized = NormalizeMailboxName(name);
    if (!normalized.ok()) return normalized.status();
    // pymap keeps subscriptions in UTF-8; an unsubscribe also removes the
    // mUTF-7 spelling that other writers may have used.
    Command command = subscribed ? Command{"SADD", store_->subscribed_key(), *normalized}
                                 : Command{"SREM", store_->subscribed_key(), *normalized,
                                           EncodeName(*normalized)};
    auto replies = store_->Pipeline(std::span<const Command>(&command, 1));
    if (!replies.ok()) return replies.status();
    const Reply& reply = (*replies)[0];
    if (reply.is_error()) return store_->ErrorReply(reply, ErrorScope::kStore, "subscriptions");
    if (reply.integer() > 0) store_->Post(Change::Kind::kSubscriptions, *normalized);
    return Status::Ok();
  }

  Result<std::shared_ptr<MailboxData>> GetMailbox(std::string_view name) override {
    auto normalized = NormalizeMailboxName(name);
    if (!normalized.ok()) return normalized.status();
    uint64_t generation = 0;
    if (auto resolved = store_->ResolvedMailbox(*normalized, &generation)) {
      if (auto handle = resolved->handle.lock()) {
        store_->Follow(resolved->id, *normalized);
        return handle;
      }
      auto handle = Handle(*normalized, resolved->id, resolved->uid_validity);
      store_->RememberResolved(*normalized, {resolved->id, resolved->uid_validity, handle},
                               generation);
      return handle;
    }
    std::string key = EncodeName(*normalized);
    std::vector<Command> commands = {{"HGET", store_->mailboxes_key(), key},
                                     {"HGET", store_->uidv_key(), key}};
    auto replies = store_->Pipeline(commands);
    if (!replies.ok()) return replies.status();
    Reply id = (*replies)[0];
    Reply validity = (*replies)[1];
    if (id.is_error()) return store_->ErrorReply(id, ErrorScope::kStore, "mailboxes");
    if (id.is_nil()) {
      // Stored in another spelling (UTF-8 by another writer)?
      auto listing = Listing();
      if (!listing.ok()) return listing.status();
      auto it = listing->find(*normalized);
      if (it == listing->end()) return NoMailbox(fmt::format("no mailbox {}", *normalized));
      key = it->second.first;
      auto again = store_->Pipeline(std::vector<Command>{{"HGET", store_->mailboxes_key(), key},
                                                         {"HGET", store_->uidv_key(), key}});
      if (!again.ok()) return again.status();
      id = (*again)[0];
      validity = (*again)[1];
      if (!id.is_string()) return NoMailbox(fmt::format("no mailbox {}", *normalized));
    }
    long long uid_validity = 0;
    if (!validity.ToInteger(&uid_validity) || uid_validity <= 0 || uid_validity > UINT32_MAX) {
      return Corrupt(ErrorScope::kMailbox,
                     fmt::format("mailbox {}: {} holds no valid UIDVALIDITY for it ({})",
                                 *normalized, store_->uidv_key(),
                                 validity.is_nil() ? "missing" : std::string(validity.str())));
    }
    std::string mailbox_id(id.str());
    auto handle = Handle(*normalized, mailbox_id, static_cast<uint32_t>(uid_validity));
    store_->RememberResolved(*normalized, {mailbox_id, static_cast<uint32_t>(uid_validity), handle},
                             generation);
    return handle;
  }

  Result<std::string> AddMailbox(std::string_view name) override {
    auto normalized = NormalizeMailboxName(name);
    if (!normalized.ok()) return normalized.status();
    auto listing = Listing();
    if (!listing.ok()) return listing.status();
    if (listing->contains(*normalized)) {
      return Status::Exists(fmt::format("mailbox exists: {}", *normalized));
    }
    std::string id = "F" + RandomHex(32);
    Status added = Add(*normalized, id);
    if (!added.ok()) return added;
    return id;
  }

  Status DeleteMailbox(std::string_view name) override {
    auto normalized = NormalizeMailboxName(name);
    if (!normalized.ok()) return normalized.status();
    if (IsInbox(*normalized)) {
      return Status::Error(ErrorCode::kNotPermitted, ErrorScope::kMailbox,
                           "INBOX cannot be deleted");
    }
    auto listing = Listing();
    if (!listing.ok()) return listing.status();
    for (const auto& [other, entry] : *listing) {
      if (other != *normalized && IsSameOrBelow(other, *normalized)) {
        return NotEmpty(*normalized, "child mailboxes");
      }
    }
    auto it = listing->find(*normalized);
    if (it == listing->end()) return NoMailbox(fmt::format("no mailbox {}", *normalized));
    store_->ForgetResolved();
    std::vector<std::string> keys = {store_->mailboxes_key(), store_->order_key(),
                                     store_->cleanup_mailboxes_key()};
    std::vector<std::string> args = {it->second.first, store_->ns(), store_->mailbox_prefix(),
                                     store_->options().separator};
    auto reply = store_->Eval(redis::scripts::MailboxDelete(), keys, args);
    // Again once it is done: a listing or resolution read while the script
    // ran must not be kept.
    store_->ForgetResolved();
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) {
      std::string_view text = ErrorText(*reply);
      if (text.starts_with("NOTFOUND")) return NoMailbox(fmt::format("no mailbox {}", *normalized));
      if (text.starts_with("NOTEMPTY children")) return NotEmpty(*normalized, "child mailboxes");
      if (text.starts_with("NOTEMPTY")) return NotEmpty(*normalized, "messages");
      return store_->ErrorReply(*reply, ErrorScope::kMailbox,
                                fmt::format("delete {}", *normalized));
    }
    store_->Unfollow(it->second.second);
    store_->Post(Change::Kind::kMailboxRemoved, *normalized);
    return Status::Ok();
  }

  Status RenameMailbox(std::string_view before_name, std::string_view after_name) override {
    auto before = NormalizeMailboxName(before_name);
    if (!before.ok()) return before.status();
    auto after = NormalizeMailboxName(after_name);
    if (!after.ok()) return after.status();
    auto listing = Listing();
    if (!listing.ok()) return listing.status();
    std::vector<std::string> existing;
    for (const auto& [name, entry] : *listing) existing.push_back(name);
    auto names = NamesToRename(existing, *before, *after);
    if (!names.ok()) return names.status();
    const std::vector<std::string>& moving = *names;
    auto members = store_->Run({"SMEMBERS", store_->subscribed_key()});
    if (!members.ok()) return members.status();
    std::vector<std::string> args = {std::to_string(moving.size())};
    std::vector<std::pair<std::string, std::string>> renamed;  // new name, id
    for (const std::string& old_name : moving) {
      std::string new_name = *after + old_name.substr(before->size());
      const auto& [key, id] = listing->at(old_name);
      args.push_back(key);
      args.push_back(EncodeName(new_name));
      args.push_back(id);
      renamed.emplace_back(new_name, id);
    }
    std::string inbox_id = IsInbox(*before) ? "F" + RandomHex(32) : "";
    args.push_back(inbox_id);
    std::vector<std::string> subscription_pairs;
    for (size_t i = 0; i < members->size(); ++i) {
      std::string_view member = (*members)[i].str();
      std::string name = DecodeName(member);
      if (name.empty() || IsInbox(*before) ||
          !std::binary_search(moving.begin(), moving.end(), name)) {
        continue;
      }
      subscription_pairs.emplace_back(member);
      subscription_pairs.push_back(*after + name.substr(before->size()));
    }
    args.push_back(std::to_string(subscription_pairs.size() / 2));
    args.insert(args.end(), subscription_pairs.begin(), subscription_pairs.end());
    store_->ForgetResolved();
    std::vector<std::string> keys = {store_->mailboxes_key(), store_->uidv_key(),
                                     store_->order_key(), store_->max_order_key(),
                                     store_->subscribed_key()};
    auto reply = store_->Eval(redis::scripts::MailboxRename(), keys, args);
    // Again once it is done: a listing or resolution read while the script
    // ran must not be kept.
    store_->ForgetResolved();
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) {
      std::string_view text = ErrorText(*reply);
      if (text.starts_with("EXISTS"))
        return Status::Exists(fmt::format("rename target is taken: {}", *after));
      if (text.starts_with("CHANGED")) {
        return Status::Error(ErrorCode::kUnavailable, ErrorScope::kMailbox,
                             "mailboxes changed during the rename; try again");
      }
      return store_->ErrorReply(*reply, ErrorScope::kMailbox, fmt::format("rename {}", *before));
    }
    for (const auto& [new_name, id] : renamed) store_->Rename(id, new_name);
    for (const std::string& old_name : moving)
      store_->Post(Change::Kind::kMailboxRemoved, old_name);
    for (const auto& [new_name, id] : renamed) store_->Post(Change::Kind::kMailboxAdded, new_name);
    if (IsInbox(*before)) store_->Post(Change::Kind::kMailboxAdded, std::string(kInbox));
    for (size_t i = 0; i + 1 < subscription_pairs.size(); i += 2) {
      store_->Post(Change::Kind::kSubscriptions, DecodeName(subscription_pairs[i]));
      store_->Post(Change::Kind::kSubscriptions, subscription_pairs[i + 1]);
    }
    return Status::Ok();
  }

  uint64_t ChangeCursor() override {
    store_->StartWatcher();
    return store_->changes().Cursor();
  }
  ChangeBatch WaitForChanges(uint64_t* cursor, std::chrono::milliseconds timeout) override {
    store_->StartWatcher();
    return store_->changes().WaitSince(cursor, timeout);
  }
  void StopWaiting() override { store_->changes().Stop(); }

  // Creates `name` with `id` (pymap's mailbox_add). kExists if taken.
  Status Add(const std::string& name, const std::string& id) {
    store_->ForgetResolved();
    std::vector<std::string> keys = {store_->mailboxes_key(), store_->order_key(),
                                     store_->max_order_key(), store_->uidv_key()};
    std::vector<std::string> args = {EncodeName(name), id};
    auto reply = store_->Eval(redis::scripts::MailboxAdd(), keys, args);
    // Again once it is done: a listing or resolution read while the script
    // ran must not be kept.
    store_->ForgetResolved();
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) {
      if (ErrorText(*reply).starts_with("EXISTS")) {
        return Status::Exists(fmt::format("mailbox exists: {}", name));
      }
      return store_->ErrorReply(*reply, ErrorScope::kMailbox, fmt::format("create {}", name));
    }
    store_->Post(Change::Kind::kMailboxAdded, name);
    return Status::Ok();
  }

 private:
  std::shared_ptr<MailboxData> Handle(const std::string& name, const std::string& id,
                                      uint32_t uid_validity) {
    store_->Follow(id, name);
    return std::make_shared<RedisMailbox>(store_, id, name, uid_validity);
  }

  // name -> (stored key, mailbox id), for every mailbox in `mailboxes`.
  using ListingMap = std::map<std::string, std::pair<std::string, std::string>>;

  Result<ListingMap> Listing() {
    auto all = store_->Run({"HGETALL", store_->mailboxes_key()});
    if (!all.ok()) return all.status();
    if (all->is_error()) return store_->ErrorReply(*all, ErrorScope::kStore, "mailbox list");
    ListingMap listing;
    for (size_t i = 0; i + 1 < all->size(); i += 2) {
      std::string_view key = (*all)[i].str();
      std::string name = DecodeName(key);
      if (name.empty()) {
        spdlog::error("redis: bad data: {}: '{}' is not a mailbox name; not listed",
                      store_->mailboxes_key(), maildir::PrintableForLog(key));
        continue;
      }
      // Two spellings of one name: the canonical (mUTF-7) one wins.
      if (listing.contains(name) && EncodeName(name) != key) continue;
      listing[name] = {std::string(key), std::string((*all)[i + 1].str())};
    }
    return listing;
  }

  static Status NotEmpty(std::string_view name, std::string_view what) {
    return Status::Error(ErrorCode::kNotEmpty, ErrorScope::kMailbox,
                         fmt::format("{} still has {}", name, what));
  }

  const std::shared_ptr<Store> store_;
};

}  // namespace

Result<std::shared_ptr<MailboxSet>> OpenRedisMailboxSet(const RedisOptions& options) {
  // hiredis writes with write(2): a server that went away would kill the
  // process with SIGPIPE instead of failing the command with EPIPE. libfuse
  // ignores SIGPIPE in a mount's process too; do it here for any other.
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    signal(SIGPIPE, SIG_IGN);
  }
  if (options.login.empty()) return Status::InvalidArgument("redis: no login name");
  if (options.separator.empty()) return Status::InvalidArgument("redis: empty key separator");
  // pymap's _get_namespace: HSETNX a fresh namespace, then read what won.
  std::string namespaces = options.prefix + options.separator + "ns";
  auto connection = redis::Connection::Open(options.address, redis::scripts::All());
  if (!connection.ok()) return connection.status();
  std::vector<Command> commands = {
      {"HSETNX", namespaces, options.login, std::string(kDataVersion) + "/" + RandomHex(32)},
      {"HGET", namespaces, options.login}};
  auto replies = (*connection)->Pipeline(commands);
  if (!replies.ok()) return replies.status();
  for (const Reply& reply : *replies) {
    if (reply.is_error()) {
      return Corrupt(ErrorScope::kStore, fmt::format("{}: {}", namespaces, reply.str()));
    }
  }
  std::string_view value = (*replies)[1].str();
  size_t slash = value.find('/');
  if (slash == std::string_view::npos || value.substr(0, slash) != kDataVersion ||
      slash + 1 == value.size()) {
    return Corrupt(
        ErrorScope::kStore,
        fmt::format("{}: the namespace of '{}' is '{}', not data version {} "
                    "(pymap's IncompatibleData); refusing to touch it",
                    namespaces, options.login, maildir::PrintableForLog(value), kDataVersion));
  }
  auto store = std::make_shared<Store>(options, std::string(value.substr(slash + 1)));
  auto set = std::make_shared<RedisMailboxSet>(store);
  // pymap adds INBOX at every session start.
  Status inbox = set->Add(std::string(kInbox), "F" + RandomHex(32));
  if (!inbox.ok() && inbox.code() != ErrorCode::kExists) return inbox;
  return std::shared_ptr<MailboxSet>(set);
}

}  // namespace mailfs
