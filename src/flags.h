// IMAP message flags: the five permanent system flags and keywords.
// \Recent is session state, not a stored flag, so it never appears here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "src/status.h"

namespace mailfs {

enum class SystemFlag : uint8_t {
  kSeen = 1 << 0,
  kAnswered = 1 << 1,
  kFlagged = 1 << 2,
  kDeleted = 1 << 3,
  kDraft = 1 << 4,
};

inline constexpr SystemFlag kAllSystemFlags[] = {SystemFlag::kAnswered, SystemFlag::kDeleted,
                                                 SystemFlag::kDraft, SystemFlag::kFlagged,
                                                 SystemFlag::kSeen};

// "\Seen", "\Answered", ...
std::string_view SystemFlagName(SystemFlag flag);
// "seen", "answered", ...: the attribute suffix in user.mail.<name>.
std::string_view SystemFlagAttributeName(SystemFlag flag);

// True for an IMAP flag-keyword: a non-empty atom (no space, control
// characters, ( ) { % * " \ ]) that does not start with a backslash.
bool IsValidKeyword(std::string_view keyword);

enum class FlagOp { kAdd, kDelete, kReplace };

// A set of system flags and keywords. Keywords keep their spelling and are
// compared exactly; they are kept sorted, so equal sets compare equal.
// A value type; not synchronized.
class FlagSet {
 public:
  FlagSet() = default;
  // The five system flags, no keyword: what every backend can store.
  static FlagSet AllSystemFlags();

  // Parses a space-separated list such as "\Seen \Flagged $Junk". System
  // flags are case-insensitive and normalized. \Recent, unknown system flags
  // and malformed keywords are kInvalidArgument.
  static Result<FlagSet> Parse(std::string_view text);

  bool Has(SystemFlag flag) const { return (system_ & static_cast<uint8_t>(flag)) != 0; }
  bool HasKeyword(std::string_view keyword) const;
  void Add(SystemFlag flag) { system_ |= static_cast<uint8_t>(flag); }
  void Remove(SystemFlag flag) { system_ &= static_cast<uint8_t>(~static_cast<uint8_t>(flag)); }
  // The keyword must satisfy IsValidKeyword (asserted).
  void AddKeyword(std::string_view keyword);
  void RemoveKeyword(std::string_view keyword);

  // Applies op with `other` as its argument: add, delete, or replace.
  void Apply(FlagOp op, const FlagSet& other);

  uint8_t system_bits() const { return system_; }
  const std::vector<std::string>& keywords() const { return keywords_; }
  bool empty() const { return system_ == 0 && keywords_.empty(); }

  // System flags in IMAP order (\Answered \Deleted \Draft \Flagged \Seen),
  // then keywords, separated by single spaces. Parse(ToString()) == *this.
  std::string ToString() const;

  friend bool operator==(const FlagSet&, const FlagSet&) = default;

 private:
  uint8_t system_ = 0;
  std::vector<std::string> keywords_;  // sorted, unique
};

}  // namespace mailfs
