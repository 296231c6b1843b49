// The in-memory backend, after pymap.backend.dict.
//
// One mutex guards the whole store. Every operation is a few map lookups,
// so finer locking would buy little, and a single lock makes Move and
// RenameMailbox atomic for free. Message bytes are immutable and shared
// (shared_ptr<const std::string>), so an open reader keeps them alive after
// an expunge without holding the lock.
//
// Lock order: Store::mu, then the ChangeLog's own mutex (changes are posted
// while mu is held, so the feed is in the same order as the mutations and a
// reader woken by a change sees it applied). The ChangeLog never calls out.
//
// Choices the contract leaves open (the conformance suite checks them):
// - Subscriptions are names, not mailboxes: DeleteMailbox and RenameMailbox
//   leave them alone, as pymap's dict backend does (RFC 3501 6.3.4 forbids
//   dropping a subscription because its mailbox was deleted).
// - The target of a rename must be vacant: neither `after` nor any name
//   below it may exist, so a rename never merges two trees. pymap refuses a
//   \Noselect `after` the same way, and on the mount a directory that has
//   children is not an empty target.
// - Deleting a \Noselect parent (a name that only has children) answers
//   kNotEmpty rather than kNotFound, as rmdir of a non-empty directory does.
#include "backends/dict/dict_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <unordered_map>
#include <utility>

#include "src/mailbox_name.h"

namespace mailfs {
namespace {

// pymap's ObjectId shape: a kind letter ('F' mailbox, 'M' email, 'T'
// thread) and 24 random lowercase hex digits (96 bits).
std::string RandomObjectId(char kind) {
  thread_local std::mt19937_64 rng = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  uint64_t high = rng() & 0xffffffffu;
  uint64_t low = rng();
  return fmt::format("{}{:08x}{:016x}", kind, high, low);
}

// UID validity values: the creation time in seconds, like Dovecot, then
// counting up, so two mailboxes created in the same second (or a mailbox
// deleted and created again at once) still get different values.
uint32_t NewUidValidity() {
  static std::atomic<uint32_t> next{static_cast<uint32_t>(std::time(nullptr))};
  uint32_t value = next.fetch_add(1);
  return value != 0 ? value : next.fetch_add(1);  // 0 means "none" in IMAP
}

// The bytes of a new message. Shares them when the reader already holds
// them in memory, else reads them; called without the lock, since reading
// a file may block.
Result<std::shared_ptr<const std::string>> TakeBytes(const ContentReader& content) {
  if (auto* in_memory = dynamic_cast<const StringContent*>(&content)) return in_memory->bytes();
  auto bytes = ReadAll(content);
  if (!bytes.ok()) return bytes.status();
  return std::make_shared<const std::string>(std::move(bytes).value());
}

struct StoredMessage {
  MessageInfo info;
  std::shared_ptr<const std::string> bytes;
  bool recent = false;
};

struct MailboxState {
  std::string name;
  uint32_t uid_validity = 0;
  uint32_t next_uid = 1;
  bool readonly = false;
  std::map<uint32_t, StoredMessage> messages;

  // Stores a message under the next UID and returns that UID.
  uint32_t Add(MessageInfo info, std::shared_ptr<const std::string> bytes, bool recent) {
    uint32_t uid = next_uid++;
    info.uid = uid;
    messages[uid] = StoredMessage{std::move(info), std::move(bytes), recent};
    return uid;
  }
};

// Everything a set and its mailbox handles share. Handles hold it by
// shared_ptr, so a handle that outlives its MailboxSet keeps working.
struct Store {
  std::mutex mu;
  // name -> mailbox id, sorted bytewise as ListMailboxes answers. GUARDED_BY(mu)
  std::map<std::string, std::string, std::less<>> names;
  // mailbox id -> state; a deleted mailbox's id is gone. GUARDED_BY(mu)
  std::unordered_map<std::string, MailboxState> mailboxes;
  std::set<std::string, std::less<>> subscribed;  // GUARDED_BY(mu)
  // ThreadKey -> thread id. Never shrinks, so a reply that arrives after its
  // thread's first message was expunged still joins the thread. GUARDED_BY(mu)
  std::unordered_map<std::string, std::string> threads;
  ChangeLog changes;

  // REQUIRES(mu)
  MailboxState* FindById(const std::string& id) {
    auto it = mailboxes.find(id);
    return it == mailboxes.end() ? nullptr : &it->second;
  }

  // REQUIRES(mu)
  MailboxState* FindByName(std::string_view name) {
    auto it = names.find(name);
    return it == names.end() ? nullptr : FindById(it->second);
  }

  // True if some mailbox lies strictly below `name`. REQUIRES(mu)
  bool HasChildren(std::string_view name) {
    std::string prefix = std::string(name) + kDelimiter;
    auto it = names.lower_bound(prefix);
    return it != names.end() && IsSameOrBelow(it->first, name);
  }

  // Creates an empty mailbox and returns its id. REQUIRES(mu)
  std::string Create(const std::string& name) {
    std::string id = RandomObjectId('F');
    MailboxState& state = mailboxes[id];
    state.name = name;
    state.uid_validity = NewUidValidity();
    names[name] = id;
    return id;
  }

  // REQUIRES(mu)
  std::string ThreadIdFor(const std::string& key) {
    if (key.empty()) return RandomObjectId('T');
    auto [it, inserted] = threads.try_emplace(key);
    if (inserted) it->second = RandomObjectId('T');
    return it->second;
  }

  // REQUIRES(mu): posting under the lock keeps the feed in mutation order.
  void Post(Change::Kind kind, std::string mailbox, std::vector<uint32_t> uids = {}) {
    changes.Post(Change{kind, std::move(mailbox), std::move(uids)});
  }
};

Status MailboxGone(const std::string& id) {
  return Status::NotFound(ErrorScope::kMailbox, fmt::format("mailbox {} was deleted", id));
}

Status NoSuchMessage(const MailboxState& box, uint32_t uid) {
  return Status::NotFound(ErrorScope::kMessage, fmt::format("{}: no UID {}", box.name, uid));
}

Status IsReadOnly(const MailboxState& box) {
  return Status::ReadOnly(fmt::format("{} is read-only", box.name));
}

// A MailboxData names its mailbox by id, so it follows renames and notices
// a delete.
class DictMailbox final : public MailboxData {
 public:
  DictMailbox(std::shared_ptr<Store> store, std::string id, uint32_t uid_validity)
      : store_(std::move(store)), id_(std::move(id)), uid_validity_(uid_validity) {}

  std::string mailbox_id() const override { return id_; }

  bool readonly() const override {
    std::lock_guard lock(store_->mu);
    const MailboxState* box = store_->FindById(id_);
    return box != nullptr && box->readonly;
  }

  // Cached: an id keeps its UID validity for life, even across INBOX renames.
  uint32_t uid_validity() const override { return uid_validity_; }

  FlagSet permanent_flags() const override { return FlagSet::AllSystemFlags(); }

  bool accepts_keywords() const override { return true; }

  std::optional<UnixSeconds> AppendedDate(UnixSeconds requested) const override {
    return requested;  // kept as given
  }

  Result<uint32_t> Append(const AppendMessage& message, bool recent) override {
    if (message.content == nullptr) return Status::InvalidArgument("append without content");
    auto bytes = TakeBytes(*message.content);
    if (!bytes.ok()) return bytes.status();
    std::string thread_key = ThreadKey(**bytes);

    std::lock_guard lock(store_->mu);
    auto box = Writable();
    if (!box.ok()) return box.status();
    if (Status s = CheckStorable(message.flags); !s.ok()) return s;
    MessageInfo info;
    info.flags = message.flags;
    info.internal_date = message.internal_date;
    info.size = (*bytes)->size();
    info.email_id = RandomObjectId('M');
    info.thread_id = store_->ThreadIdFor(thread_key);
    uint32_t uid = (*box)->Add(std::move(info), std::move(bytes).value(), recent);
    store_->Post(Change::Kind::kMessagesAdded, (*box)->name, {uid});
    return uid;
  }

  Result<uint32_t> Copy(uint32_t uid, MailboxData& destination, bool recent) override {
    return Transfer(uid, destination, recent, /*remove_here=*/false);
  }

  Result<uint32_t> Move(uint32_t uid, MailboxData& destination, bool recent) override {
    return Transfer(uid, destination, recent, /*remove_here=*/true);
  }

  Result<MessageInfo> Get(uint32_t uid) override {
    std::lock_guard lock(store_->mu);
    auto message = Find(uid);
    if (!message.ok()) return message.status();
    return (*message)->info;
  }

  Result<std::shared_ptr<const ContentReader>> Open(uint32_t uid) override {
    std::lock_guard lock(store_->mu);
    auto message = Find(uid);
    if (!message.ok()) return message.status();
    return std::shared_ptr<const ContentReader>(std::make_shared<StringContent>((*message)->bytes));
  }

  Result<FlagSet> Update(uint32_t uid, const FlagSet& flags, FlagOp op) override {
    std::lock_guard lock(store_->mu);
    auto box = Writable();
    if (!box.ok()) return box.status();
    if (Status s = CheckStorable(flags); !s.ok()) return s;
    auto it = (*box)->messages.find(uid);
    if (it == (*box)->messages.end()) return NoSuchMessage(**box, uid);
    FlagSet& stored = it->second.info.flags;
    FlagSet before = stored;
    stored.Apply(op, flags);
    // Only a real change is posted: each one costs the driver an invalidation.
    if (stored != before) store_->Post(Change::Kind::kFlagsChanged, (*box)->name, {uid});
    return stored;
  }

  Status Delete(std::span<const uint32_t> uids) override {
    std::lock_guard lock(store_->mu);
    auto box = Writable();
    if (!box.ok()) return box.status();
    std::vector<uint32_t> expunged;
    for (uint32_t uid : uids) {
      if ((*box)->messages.erase(uid) > 0) expunged.push_back(uid);
    }
    if (!expunged.empty()) {
      std::sort(expunged.begin(), expunged.end());
      store_->Post(Change::Kind::kMessagesExpunged, (*box)->name, std::move(expunged));
    }
    return Status::Ok();
  }

  Result<std::vector<uint32_t>> ClaimRecent() override {
    std::lock_guard lock(store_->mu);
    MailboxState* box = store_->FindById(id_);
    if (box == nullptr) return MailboxGone(id_);
    std::vector<uint32_t> claimed;
    for (auto& [uid, message] : box->messages) {
      if (message.recent) claimed.push_back(uid);
      message.recent = false;
    }
    return claimed;
  }

  Status Cleanup() override {
    std::lock_guard lock(store_->mu);
    return store_->FindById(id_) != nullptr ? Status::Ok() : MailboxGone(id_);
  }

  Result<MailboxSnapshot> Snapshot() override {
    std::lock_guard lock(store_->mu);
    const MailboxState* box = store_->FindById(id_);
    if (box == nullptr) return MailboxGone(id_);
    MailboxSnapshot snapshot;
    snapshot.mailbox_id = id_;
    snapshot.readonly = box->readonly;
    snapshot.uid_validity = box->uid_validity;
    snapshot.next_uid = box->next_uid;
    snapshot.exists = static_cast<uint32_t>(box->messages.size());
    for (const auto& [uid, message] : box->messages) {
      if (message.recent) ++snapshot.recent;
      if (!message.info.flags.Has(SystemFlag::kSeen)) {
        ++snapshot.unseen;
        if (snapshot.first_unseen == 0) snapshot.first_unseen = uid;
      }
    }
    return snapshot;
  }

  Result<std::vector<MessageInfo>> Find(uint32_t first_uid, uint32_t last_uid) override {
    std::lock_guard lock(store_->mu);
    const MailboxState* box = store_->FindById(id_);
    if (box == nullptr) return MailboxGone(id_);
    std::vector<MessageInfo> found;
    if (first_uid > last_uid) return found;
    auto end = box->messages.upper_bound(last_uid);
    for (auto it = box->messages.lower_bound(first_uid); it != end; ++it) {
      found.push_back(it->second.info);
    }
    return found;
  }

 private:
  // This mailbox if it still exists and accepts changes. REQUIRES(store_->mu)
  Result<MailboxState*> Writable() const {
    MailboxState* box = store_->FindById(id_);
    if (box == nullptr) return MailboxGone(id_);
    if (box->readonly) return IsReadOnly(*box);
    return box;
  }

  // Message `uid` of this mailbox. REQUIRES(store_->mu)
  Result<const StoredMessage*> Find(uint32_t uid) const {
    const MailboxState* box = store_->FindById(id_);
    if (box == nullptr) return MailboxGone(id_);
    auto it = box->messages.find(uid);
    if (it == box->messages.end()) return NoSuchMessage(*box, uid);
    return &it->second;
  }

  // Every FlagSet is storable here (all system flags, any keyword); the
  // check stays so that permanent_flags() and the stores can never disagree.
  Status CheckStorable(const FlagSet& flags) const {
    FlagSet allowed = permanent_flags();
    if ((flags.system_bits() & ~allowed.system_bits()) != 0 ||
        (!accepts_keywords() && !flags.keywords().empty())) {
      return Status::InvalidArgument(fmt::format("cannot store flags: {}", flags.ToString()));
    }
    return Status::Ok();
  }

  // Copy, or Move when remove_here, in one critical section: the message is
  // never in neither mailbox nor left in both.
  Result<uint32_t> Transfer(uint32_t uid, MailboxData& destination, bool recent, bool remove_here) {
    auto* target = dynamic_cast<DictMailbox*>(&destination);
    if (target == nullptr || target->store_ != store_) {
      return Status::Error(ErrorCode::kNotSupported, ErrorScope::kMailbox,
                           "the destination belongs to another store");
    }
    std::lock_guard lock(store_->mu);
    MailboxState* source = store_->FindById(id_);
    if (source == nullptr) return MailboxGone(id_);
    if (remove_here && source->readonly) return IsReadOnly(*source);
    auto dest = target->Writable();
    if (!dest.ok()) return dest.status();
    auto it = source->messages.find(uid);
    if (it == source->messages.end()) return NoSuchMessage(*source, uid);

    // std::map keeps references valid across inserts, so this holds even
    // when source and destination are the same mailbox.
    const StoredMessage& original = it->second;
    uint32_t new_uid = (*dest)->Add(original.info, original.bytes, recent);
    store_->Post(Change::Kind::kMessagesAdded, (*dest)->name, {new_uid});
    if (remove_here) {
      source->messages.erase(uid);
      store_->Post(Change::Kind::kMessagesExpunged, source->name, {uid});
    }
    return new_uid;
  }

  const std::shared_ptr<Store> store_;
  const std::string id_;
  const uint32_t uid_validity_;
};

class DictMailboxSetImpl final : public DictMailboxSet {
 public:
  DictMailboxSetImpl() : store_(std::make_shared<Store>()) {
    std::lock_guard lock(store_->mu);
    store_->Create(std::string(kInbox));
  }

  Result<std::vector<std::string>> ListMailboxes() override {
    std::lock_guard lock(store_->mu);
    std::vector<std::string> names;
    names.reserve(store_->names.size());
    for (const auto& [name, id] : store_->names) names.push_back(name);
    return names;
  }

  Result<std::vector<std::string>> ListSubscribed() override {
    std::lock_guard lock(store_->mu);
    return std::vector<std::string>(store_->subscribed.begin(), store_->subscribed.end());
  }

  Status SetSubscribed(std::string_view name, bool subscribed) override {
    auto normalized = NormalizeMailboxName(name);
    if (!normalized.ok()) return normalized.status();
    std::lock_guard lock(store_->mu);
    bool changed = subscribed ? store_->subscribed.insert(*normalized).second
                              : store_->subscribed.erase(*normalized) > 0;
    if (changed) store_->Post(Change::Kind::kSubscriptions, *normalized);
    return Status::Ok();
  }

  Result<std::shared_ptr<MailboxData>> GetMailbox(std::string_view name) override {
    auto normalized = NormalizeMailboxName(name);
    if (!normalized.ok()) return normalized.status();
    std::lock_guard lock(store_->mu);
    auto it = store_->names.find(*normalized);
    if (it == store_->names.end()) return NoSuchMailbox(*normalized);
    const MailboxState& box = store_->mailboxes.at(it->second);
    return std::shared_ptr<MailboxData>(
        std::make_shared<DictMailbox>(store_, it->second, box.uid_validity));
  }

  Result<std::string> AddMailbox(std::string_view name) override {
    auto normalized = NormalizeMailboxName(name);
    if (!normalized.ok()) return normalized.status();
    std::lock_guard lock(store_->mu);
    if (store_->names.contains(*normalized)) {
      return Status::Exists(fmt::format("mailbox exists: {}", *normalized));
    }
    std::string id = store_->Create(*normalized);
    store_->Post(Change::Kind::kMailboxAdded, *normalized);
    return id;
  }

  Status DeleteMailbox(std::string_view name) override {
    auto normalized = NormalizeMailboxName(name);
    if (!normalized.ok()) return normalized.status();
    if (IsInbox(*normalized)) {
      return Status::Error(ErrorCode::kNotPermitted, ErrorScope::kMailbox,
                           "INBOX cannot be deleted");
    }
    std::lock_guard lock(store_->mu);
    // Children first: a \Noselect parent is a non-empty directory, not a
    // missing one.
    if (store_->HasChildren(*normalized)) return NotEmpty(*normalized, "child mailboxes");
    auto it = store_->names.find(*normalized);
    if (it == store_->names.end()) return NoSuchMailbox(*normalized);
    if (!store_->mailboxes.at(it->second).messages.empty()) {
      return NotEmpty(*normalized, "messages");
    }
    store_->mailboxes.erase(it->second);
    store_->names.erase(it);
    store_->Post(Change::Kind::kMailboxRemoved, *normalized);
    return Status::Ok();
  }

  Status RenameMailbox(std::string_view before_name, std::string_view after_name) override {
    auto before = NormalizeMailboxName(before_name);
    if (!before.ok()) return before.status();
    auto after = NormalizeMailboxName(after_name);
    if (!after.ok()) return after.status();
    std::lock_guard lock(store_->mu);
    std::vector<std::string> existing;
    existing.reserve(store_->names.size());
    for (const auto& [name, id] : store_->names) existing.push_back(name);
    auto names = NamesToRename(existing, *before, *after);
    if (!names.ok()) return names.status();
    const std::vector<std::string>& moving = *names;
    if (IsInbox(*before)) {
      RenameInbox(*after);
    } else {
      RenameSubtree(*before, *after, moving);
    }
    return Status::Ok();
  }

  uint64_t ChangeCursor() override { return store_->changes.Cursor(); }

  ChangeBatch WaitForChanges(uint64_t* cursor, std::chrono::milliseconds timeout) override {
    return store_->changes.WaitSince(cursor, timeout);
  }

  void StopWaiting() override { store_->changes.Stop(); }

  Status SetReadOnly(std::string_view name, bool readonly) override {
    auto normalized = NormalizeMailboxName(name);
    if (!normalized.ok()) return normalized.status();
    std::lock_guard lock(store_->mu);
    MailboxState* box = store_->FindByName(*normalized);
    if (box == nullptr) return NoSuchMailbox(*normalized);
    box->readonly = readonly;
    return Status::Ok();
  }

 private:
  static Status NoSuchMailbox(std::string_view name) {
    return Status::NotFound(ErrorScope::kMailbox, fmt::format("no mailbox {}", name));
  }

  static Status NotEmpty(std::string_view name, std::string_view what) {
    return Status::Error(ErrorCode::kNotEmpty, ErrorScope::kMailbox,
                         fmt::format("{} still has {}", name, what));
  }

  // REQUIRES(store_->mu)
  void RenameSubtree(std::string_view before, std::string_view after,
                     const std::vector<std::string>& moving) {
    std::vector<std::pair<std::string, std::string>> renamed;  // old name, id
    for (const std::string& old_name : moving) {
      auto it = store_->names.find(old_name);
      renamed.emplace_back(old_name, it->second);
      store_->names.erase(it);
    }
    // Remove every old name before adding new ones: in "A/B" -> "A", the
    // child "A/B/B" takes the name "A/B" that its parent gives up.
    for (const auto& [old_name, id] : renamed) {
      std::string new_name = std::string(after) + old_name.substr(before.size());
      store_->names[new_name] = id;
      store_->mailboxes.at(id).name = new_name;
    }
    for (const auto& [old_name, id] : renamed) {
      store_->Post(Change::Kind::kMailboxRemoved, old_name);
    }
    for (const auto& [old_name, id] : renamed) {
      store_->Post(Change::Kind::kMailboxAdded, store_->mailboxes.at(id).name);
    }
  }

  // IMAP's INBOX rename: the mailbox (id, UID validity, messages) becomes
  // `after`, and a fresh INBOX takes its place. REQUIRES(store_->mu)
  void RenameInbox(std::string_view after) {
    std::string inbox(kInbox);
    std::string id = store_->names.at(inbox);
    store_->names.erase(inbox);
    store_->names[std::string(after)] = id;
    store_->mailboxes.at(id).name = after;
    store_->Create(inbox);
    store_->Post(Change::Kind::kMailboxAdded, std::string(after));
    // INBOX is now another mailbox: whoever cached it must drop it.
    store_->Post(Change::Kind::kMailboxRemoved, inbox);
    store_->Post(Change::Kind::kMailboxAdded, inbox);
  }

  const std::shared_ptr<Store> store_;
};

}  // namespace

std::shared_ptr<DictMailboxSet> NewDictMailboxSet() {
  return std::make_shared<DictMailboxSetImpl>();
}

}  // namespace mailfs
