// The in-memory index of one Maildir folder: which file holds which UID,
// with its flags, and what dovecot-uidlist said last. It is refreshed only
// when something changed (inotify events naming the files, a uidlist whose
// size or inode moved), never re-read per message.
//
// Memory: one 40-byte Entry per message, its file name in a pool block
// (the name's length plus one, rounded up to 8), and 4 to 8 bytes of
// hash slots to find it by base name: about 100 bytes a message for the
// Dovecot names of a million-message folder.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
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

// A file name in one pointer: its bytes follow a length prefix in a block
// of a pool of 8-byte size classes (a std::string spends 32 bytes on itself
// and malloc rounds each block up to 16 bytes plus 8 of its own: a 47-byte
// name cost 64 bytes in a block, it costs 48 here). Blocks freed go back to
// the pool for the next names, never to malloc. Names are not
// NUL-terminated.
class CompactName {
 public:
  CompactName() = default;
  CompactName(std::string_view text) : data_(Allocate(text)) {}  // NOLINT: implicit by design
  CompactName(const CompactName& other) : data_(Allocate(other.view())) {}
  CompactName(CompactName&& other) noexcept : data_(std::exchange(other.data_, nullptr)) {}
  ~CompactName() { Free(data_); }
  CompactName& operator=(const CompactName& other) {
    if (this != &other) *this = other.view();
    return *this;
  }
  CompactName& operator=(CompactName&& other) noexcept {
    if (this != &other) {
      Free(data_);
      data_ = std::exchange(other.data_, nullptr);
    }
    return *this;
  }
  CompactName& operator=(std::string_view text) {
    char* data = Allocate(text);  // first: `text` may be this name
    Free(data_);
    data_ = data;
    return *this;
  }
  operator std::string_view() const { return view(); }  // NOLINT
  std::string_view view() const { return ViewOf(data_); }
  friend bool operator==(const CompactName& a, std::string_view b) { return a.view() == b; }

 private:
  // The block: one length byte, or 0xff and a 4-byte length, then the
  // bytes. nullptr for the empty name.
  static constexpr unsigned char kLongName = 0xff;
  static char* Allocate(std::string_view text);
  static void Free(char* data);
  static std::string_view ViewOf(const char* data) {
    if (data == nullptr) return {};
    auto first = static_cast<unsigned char>(data[0]);
    if (first != kLongName) return {data + 1, first};
    uint32_t length = 0;
    std::memcpy(&length, data + 1, sizeof(length));
    return {data + 1 + sizeof(length), length};
  }
  char* data_ = nullptr;
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

// One message: 40 bytes (a million-message folder holds a million).
struct Entry {
  uint32_t uid = 0;
  uint32_t letters : 26 = 0;    // keyword letters in the name, bit i = 'a' + i
  bool in_new : 1 = false;      // in new/: \Recent, not yet claimed
  bool alive : 1 = true;        // false: a tombstone awaiting compaction
  bool stat_known : 1 = false;  // mtime and size are filled in
  bool listed : 1 = false;      // Folder::Reload: its file was seen in new/ or cur/
  int64_t mtime = 0;
  uint64_t size : 56 = 0;   // 64 PiB: more than any file system holds
  uint64_t system : 8 = 0;  // SystemFlag bits from the name
  CompactName name;         // the current file name in new/ or cur/
  PackedIds ids;

  std::string_view base() const { return BaseName(name); }
};
static_assert(sizeof(Entry) == 40);

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
