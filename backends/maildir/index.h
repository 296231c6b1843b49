// The in-memory index of one Maildir folder: which file holds which UID,
// with its flags, and what dovecot-uidlist said last. It is refreshed only
// when something changed (inotify events naming the files, a uidlist whose
// size or inode moved), never re-read per message.
//
// Memory: one Entry per message (about 100 bytes plus the file name), one
// hash-map slot per message to find it by base name.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
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
std::vector<std::string> FieldsForIds(const ObjectBytes& email, const ObjectBytes& thread);
// "M<hex>" / "T<hex>" for a message with these ids and base name.
std::string EmailIdOf(const MessageIds& ids, std::string_view base);
std::string ThreadIdOf(const MessageIds& ids, std::string_view base);

struct Entry {
  uint32_t uid = 0;
  uint32_t letters = 0;     // keyword letters in the name, bit i = 'a' + i
  uint8_t system = 0;       // SystemFlag bits from the name
  bool in_new = false;      // in new/: \Recent, not yet claimed
  bool alive = true;        // false: a tombstone awaiting compaction
  bool stat_known = false;  // mtime and size are filled in
  int64_t mtime = 0;
  uint64_t size = 0;
  std::string name;  // the current file name in new/ or cur/
  MessageIds ids;

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

 private:
  std::vector<Entry>::iterator LowerBound(uint32_t uid);
  void MaybeCompact();

  std::vector<Entry> entries_;  // sorted by uid; dead ones kept until compaction
  size_t live_ = 0;
  // Hash of the base name -> UID. A collision (two bases, one hash) puts
  // the second into by_base_overflow_.
  std::unordered_map<uint64_t, uint32_t> by_base_;
  std::map<std::string, uint32_t, std::less<>> by_base_overflow_;
};

// Flags of a file name read with a folder's keyword table: letters without
// a keyword are ignored (as Dovecot does) but kept in the name.
FlagSet FlagsOf(const Entry& entry, const KeywordTable& keywords);

}  // namespace mailfs::maildir
