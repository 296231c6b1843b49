#include "backends/maildir/index.h"

#include <fmt/format.h>

#include <algorithm>
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
  std::string hex;
  hex.reserve(32);
  for (uint8_t b : bytes) hex += fmt::format("{:02x}", b);
  return hex;
}

MessageIds IdsFromFields(const std::vector<std::string>& ext) {
  MessageIds ids;
  for (const std::string& field : ext) {
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

std::vector<std::string> FieldsForIds(const ObjectBytes& email, const ObjectBytes& thread) {
  return {fmt::format("E(M{})", HexOf(email)), fmt::format("T(T{})", HexOf(thread))};
}

std::string EmailIdOf(const MessageIds& ids, std::string_view base) {
  return "M" + HexOf(ids.has_email ? ids.email : Hash128(fmt::format("email:{}", base)));
}

std::string ThreadIdOf(const MessageIds& ids, std::string_view base) {
  // A message nobody gave a thread id (Dovecot has none) is its own thread.
  return "T" + HexOf(ids.has_thread ? ids.thread : Hash128(fmt::format("thread:{}", base)));
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

Entry* MessageIndex::FindBase(std::string_view base) {
  uint32_t uid = 0;
  auto it = by_base_.find(BaseHash(base));
  if (it == by_base_.end()) return nullptr;
  Entry* entry = Find(it->second);
  if (entry != nullptr && entry->base() == base) return entry;
  auto overflow = by_base_overflow_.find(base);
  if (overflow == by_base_overflow_.end()) return nullptr;
  uid = overflow->second;
  return Find(uid);
}

Entry& MessageIndex::Add(Entry entry) {
  entry.alive = true;
  uint64_t hash = BaseHash(entry.base());
  auto [slot, inserted] = by_base_.try_emplace(hash, entry.uid);
  if (!inserted) {
    Entry* holder = Find(slot->second);
    if (holder == nullptr) {
      slot->second = entry.uid;
    } else {
      by_base_overflow_[std::string(entry.base())] = entry.uid;
    }
  }
  ++live_;
  auto it = LowerBound(entry.uid);
  if (it != entries_.end() && it->uid == entry.uid) {
    *it = std::move(entry);  // a tombstone of the same UID comes back
    return *it;
  }
  return *entries_.insert(it, std::move(entry));
}

Entry MessageIndex::Remove(uint32_t uid) {
  Entry* entry = Find(uid);
  if (entry == nullptr) return {};
  Entry removed = *entry;
  uint64_t hash = BaseHash(entry->base());
  auto slot = by_base_.find(hash);
  if (slot != by_base_.end() && slot->second == uid) by_base_.erase(slot);
  auto overflow = by_base_overflow_.find(entry->base());
  if (overflow != by_base_overflow_.end() && overflow->second == uid) {
    by_base_overflow_.erase(overflow);
  }
  entry->alive = false;
  entry->name = std::string();
  --live_;
  MaybeCompact();
  return removed;
}

void MessageIndex::Clear() {
  entries_.clear();
  by_base_.clear();
  by_base_overflow_.clear();
  live_ = 0;
}

void MessageIndex::MaybeCompact() {
  size_t dead = entries_.size() - live_;
  if (dead < 64 || dead < live_ / 4) return;
  std::erase_if(entries_, [](const Entry& e) { return !e.alive; });
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
