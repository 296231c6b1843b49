// The in-memory index of one Maildir folder: which file holds which UID,
// with its flags, and what dovecot-uidlist said last. It is refreshed only
// when something changed (inotify events naming the files, a uidlist whose
// size or inode moved), never re-read per message.
//
// Memory: one Entry per message (about 100 bytes plus the file name), one
// hash-map slot per message to find it by base name.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "backends/maildir/format/filename.h"
#include "backends/maildir/format/keywords.h"
#include "backends/maildir/format/uidlist.h"
#include "src/flags.h"

namespace mailfs::maildir {

using ObjectBytes = std::array<uint8_t, 16>;

// A stable 128-bit hash (two FNV-1a passes), for ids derived from names.
ObjectBytes Hash128(std::string_view text);
ObjectBytes RandomObjectBytes();
std::string HexOf(const ObjectBytes& bytes);

// The email and thread ids of a message, as pymap keeps them in uidlist
// fields: "E(M<32 hex>)" and "T(T<32 hex>)". Zero bytes: not stored, derive
// them from the base name.
struct MessageIds {
  ObjectBytes email{};
  ObjectBytes thread{};
  bool has_email = false;
  bool has_thread = false;
};
MessageIds IdsFromFields(const std::vector<std::string>& ext);
MessageIds IdsFromFields(std::span<const std::string_view> ext);
std::vector<std::string> FieldsForIds(const ObjectBytes& email, const ObjectBytes& thread);
// "M<hex>" / "T<hex>" for a message with these ids and base name.
std::string EmailIdOf(const MessageIds& ids, std::string_view base);
std::string ThreadIdOf(const MessageIds& ids, std::string_view base);

// A file name held in exactly as many bytes as it has (a std::string
// would spend 32 bytes on itself and round its heap block up).
class CompactName {
 public:
  CompactName() = default;
  CompactName(std::string_view text) { Assign(text); }  // NOLINT: implicit by design
  CompactName(const CompactName& other) { Assign(other); }
  CompactName(CompactName&& other) noexcept : data_(std::move(other.data_)), size_(other.size_) {
    other.size_ = 0;
  }
  CompactName& operator=(const CompactName& other) {
    if (this != &other) Assign(other);
    return *this;
  }
  CompactName& operator=(CompactName&& other) noexcept {
    data_ = std::move(other.data_);
    size_ = other.size_;
    other.size_ = 0;
    return *this;
  }
  CompactName& operator=(std::string_view text) {
    Assign(text);
    return *this;
  }
  operator std::string_view() const { return {data_.get(), size_}; }  // NOLINT
  std::string_view view() const { return *this; }
  friend bool operator==(const CompactName& a, std::string_view b) { return a.view() == b; }

 private:
  void Assign(std::string_view text) {
    auto data = std::make_unique<char[]>(text.size());
    std::copy(text.begin(), text.end(), data.get());
    data_ = std::move(data);
    size_ = static_cast<uint32_t>(text.size());
  }
  std::unique_ptr<char[]> data_;
  uint32_t size_ = 0;
};

// The ids of a message, allocated only when the uidlist stores them (a
// message Dovecot delivered has none: they derive from its base name).
class PackedIds {
 public:
  PackedIds() = default;
  PackedIds(const PackedIds& other) { *this = other.get(); }
  PackedIds(PackedIds&&) noexcept = default;
  PackedIds& operator=(const PackedIds& other) {
    if (this != &other) *this = other.get();
    return *this;
  }
  PackedIds& operator=(PackedIds&&) noexcept = default;
  PackedIds& operator=(const MessageIds& ids) {
    stored_ = ids.has_email || ids.has_thread ? std::make_unique<MessageIds>(ids) : nullptr;
    return *this;
  }
  MessageIds get() const { return stored_ ? *stored_ : MessageIds(); }
  operator MessageIds() const { return get(); }  // NOLINT

 private:
  std::unique_ptr<MessageIds> stored_;
};

struct Entry {
  uint32_t uid = 0;
  uint32_t letters = 0;     // keyword letters in the name, bit i = 'a' + i
  uint8_t system = 0;       // SystemFlag bits from the name
  bool in_new = false;      // in new/: \Recent, not yet claimed
  bool alive = true;        // false: a tombstone awaiting compaction
  bool stat_known = false;  // mtime and size are filled in
  bool listed = false;      // Folder::Reload: its file was seen in new/ or cur/
  int64_t mtime = 0;
  uint64_t size = 0;
  CompactName name;  // the current file name in new/ or cur/
  PackedIds ids;

  std::string_view base() const { return BaseName(name); }
};

// A uidlist line whose file is not (or not yet) on disk.
struct Orphan {
  uint32_t uid = 0;
  MessageIds ids;
};

// A file on disk that has no UID yet.
struct Pending {
  std::string name;
  bool in_new = false;
};

// The messages of a folder, ordered by UID. Not synchronized: the folder's
// mutex guards it.
class MessageIndex {
 public:
  // The live entry with this UID, or nullptr.
  Entry* Find(uint32_t uid);
  // The live entry whose file has this base name, or nullptr.
  Entry* FindBase(std::string_view base);
  // Adds an entry (UIDs normally arrive in ascending order; an older UID,
  // a file that came back, is inserted in place).
  Entry& Add(Entry entry);
  // Removes the entry; returns it.
  Entry Remove(uint32_t uid);
  void Clear();
  // Replaces the contents with these entries, sorted by UID, all live.
  void Assign(std::vector<Entry> sorted);
  // Makes room for this many entries, so that adding them one at a time
  // never holds the old and the grown array at once.
  void Reserve(size_t entries);
  // Removes every live entry for which `pred` returns true (it may take
  // from the entry what it needs first), in one pass.
  template <typename F>
  void RemoveIf(F&& pred) {
    size_t before = entries_.size();
    std::erase_if(entries_, [&](Entry& e) { return !e.alive || pred(e); });
    if (entries_.size() == before) return;
    live_ = entries_.size();
    Rehash(std::max<size_t>(64, live_ * 2));
  }

  size_t size() const { return live_; }
  // Live entries in UID order.
  template <typename F>
  void ForEach(F&& f) {
    for (Entry& e : entries_) {
      if (e.alive) f(e);
    }
  }
  // Live entries with first <= uid <= last.
  template <typename F>
  void ForRange(uint32_t first, uint32_t last, F&& f) {
    auto it = LowerBound(first);
    for (; it != entries_.end() && it->uid <= last; ++it) {
      if (it->alive) f(*it);
    }
  }
  // The same, until `f` returns false.
  template <typename F>
  void ForRangeWhile(uint32_t first, uint32_t last, F&& f) {
    auto it = LowerBound(first);
    for (; it != entries_.end() && it->uid <= last; ++it) {
      if (it->alive && !f(*it)) return;
    }
  }

 private:
  std::vector<Entry>::iterator LowerBound(uint32_t uid);
  void MaybeCompact();

  std::vector<Entry> entries_;  // sorted by uid; dead ones kept until compaction
  size_t live_ = 0;
  // Base name -> UID: an open-addressing table of UIDs (0 = free,
  // kTombstone = removed), probed linearly from the hash of the base name.
  // 4 bytes a slot at most half full: far below a node-based map.
  static constexpr uint32_t kTombstone = 0xffffffff;
  size_t SlotOf(std::string_view base, uint32_t exact_uid) const;
  void InsertSlot(std::string_view base, uint32_t uid);
  void Rehash(size_t slots);
  std::vector<uint32_t> slots_;
  size_t used_slots_ = 0;  // live + tombstones
};

// Flags of a file name read with a folder's keyword table: letters without
// a keyword are ignored (as Dovecot does) but kept in the name.
FlagSet FlagsOf(const Entry& entry, const KeywordTable& keywords);

}  // namespace mailfs::maildir
