#include "backends/maildir/index.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <random>

namespace mailfs::maildir {
namespace {

uint64_t Fnv1a(std::string_view text, uint64_t seed) {
  uint64_t hash = seed;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

uint64_t BaseHash(std::string_view base) { return Fnv1a(base, 0xcbf29ce484222325ULL); }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "<prefix><32 hex><suffix>" -> bytes.
std::optional<ObjectBytes> ParseHexField(std::string_view field, std::string_view prefix,
                                         std::string_view suffix) {
  if (field.size() != prefix.size() + 32 + suffix.size() || !field.starts_with(prefix) ||
      !field.ends_with(suffix)) {
    return std::nullopt;
  }
  std::string_view hex = field.substr(prefix.size(), 32);
  ObjectBytes bytes{};
  for (size_t i = 0; i < 16; ++i) {
    int high = HexDigit(hex[2 * i]);
    int low = HexDigit(hex[2 * i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    bytes[i] = static_cast<uint8_t>(high * 16 + low);
  }
  return bytes;
}

}  // namespace

ObjectBytes Hash128(std::string_view text) {
  uint64_t a = Fnv1a(text, 0xcbf29ce484222325ULL);
  uint64_t b = Fnv1a(text, 0x84222325cbf29ce4ULL ^ a);
  ObjectBytes bytes{};
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<uint8_t>(a >> (56 - 8 * i));
    bytes[8 + i] = static_cast<uint8_t>(b >> (56 - 8 * i));
  }
  return bytes;
}

ObjectBytes RandomObjectBytes() {
  thread_local std::mt19937_64 rng = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  ObjectBytes bytes{};
  uint64_t a = rng();
  uint64_t b = rng();
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<uint8_t>(a >> (8 * i));
    bytes[8 + i] = static_cast<uint8_t>(b >> (8 * i));
  }
  return bytes;
}

std::string HexOf(const ObjectBytes& bytes) {
  // Called for two ids of every message a lookup or listing reports: no
  // formatting library here (it showed at the top of the profile).
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(32, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    hex[2 * i] = kDigits[bytes[i] >> 4];
    hex[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return hex;
}

namespace {

template <typename Fields>
MessageIds IdsOf(const Fields& ext) {
  MessageIds ids;
  for (std::string_view field : ext) {
    if (auto email = ParseHexField(field, "E(M", ")")) {
      ids.email = *email;
      ids.has_email = true;
    } else if (auto thread = ParseHexField(field, "T(T", ")")) {
      ids.thread = *thread;
      ids.has_thread = true;
    } else if (auto guid = ParseHexField(field, "G", ""); guid && !ids.has_email) {
      // Dovecot's message GUID (saved by dsync): its EMAILID.
      ids.email = *guid;
      ids.has_email = true;
    }
  }
  return ids;
}

}  // namespace

MessageIds IdsFromFields(const std::vector<std::string>& ext) { return IdsOf(ext); }
MessageIds IdsFromFields(std::span<const std::string_view> ext) { return IdsOf(ext); }

std::vector<std::string> FieldsForIds(const ObjectBytes& email, const ObjectBytes& thread) {
  return {fmt::format("E(M{})", HexOf(email)), fmt::format("T(T{})", HexOf(thread))};
}

std::string EmailIdOf(const MessageIds& ids, std::string_view base) {
  return "M" + HexOf(ids.has_email ? ids.email : Hash128("email:" + std::string(base)));
}

std::string ThreadIdOf(const MessageIds& ids, std::string_view base) {
  // A message nobody gave a thread id (Dovecot has none) is its own thread.
  return "T" + HexOf(ids.has_thread ? ids.thread : Hash128("thread:" + std::string(base)));
}

// --- CompactName ---------------------------------------------------------------

namespace {

// Blocks of 8-byte size classes up to kMaxPooled bytes, carved from 64 KiB
// slabs; larger blocks (a hostile uidlist's long names) come from new[].
// One pool for the process, behind a mutex: folders load in parallel.
// Under AddressSanitizer every block comes from new[], so that a use
// after free is still caught.
class NamePool {
 public:
  static constexpr size_t kGrain = 8;
  static constexpr size_t kMaxPooled = 264;  // NAME_MAX (255) and its prefix, rounded
  static constexpr size_t kSlab = 64 * 1024;

  static NamePool& Get() {
    static NamePool* pool = new NamePool;  // never destroyed: entries may outlive statics
    return *pool;
  }

  char* Allocate(size_t bytes) {
    if (!Pooled(bytes)) return new char[bytes];
    size_t size = Rounded(bytes);
    std::lock_guard lock(mu_);
    if (void*& head = free_[size / kGrain]; head != nullptr) {
      char* block = static_cast<char*>(head);
      std::memcpy(&head, block, sizeof(void*));
      return block;
    }
    if (slab_left_ < size) {
      slab_ = new char[kSlab];  // what is left of the last one (< 264 bytes) is lost
      slab_left_ = kSlab;
    }
    char* block = slab_;
    slab_ += size;
    slab_left_ -= size;
    return block;
  }

  void Free(char* block, size_t bytes) {
    if (!Pooled(bytes)) {
      delete[] block;
      return;
    }
    std::lock_guard lock(mu_);
    void*& head = free_[Rounded(bytes) / kGrain];
    std::memcpy(block, &head, sizeof(void*));
    head = block;
  }

 private:
  static bool Pooled(size_t bytes) {
#if defined(__SANITIZE_ADDRESS__)
    (void)bytes;
    return false;
#else
    return bytes <= kMaxPooled;
#endif
  }
  // At least a pointer, for the free list.
  static size_t Rounded(size_t bytes) {
    return std::max(sizeof(void*), (bytes + kGrain - 1) / kGrain * kGrain);
  }

  std::mutex mu_;
  std::array<void*, kMaxPooled / kGrain + 1> free_{};
  char* slab_ = nullptr;
  size_t slab_left_ = 0;
};

size_t PrefixSize(size_t length) { return length < 0xff ? 1 : 1 + sizeof(uint32_t); }

}  // namespace

char* CompactName::Allocate(std::string_view text) {
  if (text.empty()) return nullptr;
  size_t prefix = PrefixSize(text.size());
  char* data = NamePool::Get().Allocate(prefix + text.size());
  if (prefix == 1) {
    data[0] = static_cast<char>(text.size());
  } else {
    data[0] = static_cast<char>(kLongName);
    uint32_t length = static_cast<uint32_t>(text.size());
    std::memcpy(data + 1, &length, sizeof(length));
  }
  std::memcpy(data + prefix, text.data(), text.size());
  return data;
}

void CompactName::Free(char* data) {
  if (data == nullptr) return;
  size_t length = ViewOf(data).size();
  NamePool::Get().Free(data, PrefixSize(length) + length);
}

// --- MessageIndex ---------------------------------------------------------------

std::vector<Entry>::iterator MessageIndex::LowerBound(uint32_t uid) {
  return std::lower_bound(entries_.begin(), entries_.end(), uid,
                          [](const Entry& e, uint32_t u) { return e.uid < u; });
}

Entry* MessageIndex::Find(uint32_t uid) {
  auto it = LowerBound(uid);
  if (it == entries_.end() || it->uid != uid || !it->alive) return nullptr;
  return &*it;
}

size_t MessageIndex::SlotOf(std::string_view base, uint32_t exact_uid) const {
  // Finds the slot holding the entry with this base name (exact_uid 0),
  // or the slot holding exactly exact_uid.
  size_t mask = slots_.size() - 1;
  for (size_t i = BaseHash(base) & mask;; i = (i + 1) & mask) {
    uint32_t uid = slots_[i];
    if (uid == 0) return SIZE_MAX;
    if (uid == kTombstone) continue;
    if (exact_uid != 0) {
      if (uid == exact_uid) return i;
      continue;
    }
    auto it = std::lower_bound(entries_.begin(), entries_.end(), uid,
                               [](const Entry& e, uint32_t u) { return e.uid < u; });
    if (it != entries_.end() && it->uid == uid && it->alive && it->base() == base) return i;
  }
}

void MessageIndex::InsertSlot(std::string_view base, uint32_t uid) {
  if ((used_slots_ + 1) * 2 > slots_.size()) {
    Rehash(std::max<size_t>(64, (live_ + 1) * 4));  // entries_ already holds the new one
    return;
  }
  size_t mask = slots_.size() - 1;
  for (size_t i = BaseHash(base) & mask;; i = (i + 1) & mask) {
    if (slots_[i] == 0) {
      slots_[i] = uid;
      ++used_slots_;
      return;
    }
  }
}

void MessageIndex::Rehash(size_t wanted) {
  size_t size = 64;
  while (size < wanted) size *= 2;
  slots_.assign(size, 0);
  used_slots_ = 0;
  size_t mask = size - 1;
  for (const Entry& e : entries_) {
    if (!e.alive) continue;
    for (size_t i = BaseHash(e.base()) & mask;; i = (i + 1) & mask) {
      if (slots_[i] == 0) {
        slots_[i] = e.uid;
        ++used_slots_;
        break;
      }
    }
  }
}

void MessageIndex::Assign(std::vector<Entry> sorted) {
  entries_ = std::move(sorted);
  for (Entry& e : entries_) e.alive = true;
  live_ = entries_.size();
  Rehash(std::max<size_t>(64, live_ * 2));
}

void MessageIndex::Reserve(size_t entries) {
  entries_.reserve(entries);
  size_t wanted = std::max<size_t>(64, entries * 2);
  if (slots_.size() < wanted) Rehash(wanted);
}

Entry* MessageIndex::FindBase(std::string_view base) {
  if (slots_.empty()) return nullptr;
  size_t slot = SlotOf(base, 0);
  return slot == SIZE_MAX ? nullptr : Find(slots_[slot]);
}

Entry& MessageIndex::Add(Entry entry) {
  entry.alive = true;
  ++live_;
  auto it = LowerBound(entry.uid);
  Entry* added;
  if (it != entries_.end() && it->uid == entry.uid) {
    *it = std::move(entry);  // a tombstone of the same UID comes back
    added = &*it;
  } else {
    added = &*entries_.insert(it, std::move(entry));
  }
  InsertSlot(added->base(), added->uid);
  return *Find(added->uid);
}

Entry MessageIndex::Remove(uint32_t uid) {
  Entry* entry = Find(uid);
  if (entry == nullptr) return {};
  size_t slot = SlotOf(entry->base(), uid);
  if (slot != SIZE_MAX) slots_[slot] = kTombstone;
  Entry removed = std::move(*entry);
  entry->alive = false;
  entry->name = CompactName();
  entry->ids = PackedIds();
  --live_;
  MaybeCompact();
  return removed;
}

void MessageIndex::Clear() {
  entries_.clear();
  slots_.clear();
  used_slots_ = 0;
  live_ = 0;
}

void MessageIndex::MaybeCompact() {
  size_t dead = entries_.size() - live_;
  if (dead < 64 || dead < live_ / 4) return;
  std::erase_if(entries_, [](const Entry& e) { return !e.alive; });
  Rehash(std::max<size_t>(64, live_ * 2));
}

FlagSet FlagsOf(const Entry& entry, const KeywordTable& keywords) {
  FlagSet flags;
  for (SystemFlag flag : kAllSystemFlags) {
    if ((entry.system & static_cast<uint8_t>(flag)) != 0) flags.Add(flag);
  }
  for (int i = 0; i < 26; ++i) {
    if ((entry.letters & (1u << i)) == 0) continue;
    if (auto keyword = keywords.KeywordFor(static_cast<char>('a' + i))) flags.AddKeyword(*keyword);
  }
  return flags;
}

}  // namespace mailfs::maildir
