#include "backends/maildir/format/filename.h"

#include <fmt/format.h>

#include <cassert>
#include <cstring>
#include <limits>

#include "backends/maildir/format/mutf7.h"

namespace mailfs::maildir {
namespace {

// NAME_MAX on Linux: longer names cannot be created in cur/ or new/.
constexpr size_t kMaxFileName = 255;
// Keeps a new name well under kMaxFileName with the longest info part.
constexpr size_t kMaxHostname = 100;
constexpr std::string_view kInfoFlags = "2,";

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Appends a decimal digit to *value; false (value unchanged) on overflow.
bool AccumulateDigit(uint64_t* value, char digit) {
  uint64_t d = static_cast<uint64_t>(digit - '0');
  if (*value > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
  *value = *value * 10 + d;
  return true;
}

// ",<type>=<digits>" in the base name, as maildir_filename_get_size() reads
// it: the first ",S=" counts, and its digits must end at ',' or at the end
// of the base name. Unlike Dovecot we want at least one digit and no
// overflow; otherwise the field is absent.
std::optional<uint64_t> SizeField(std::string_view base, char type) {
  const char field[] = {',', type, '='};
  size_t at = base.find(std::string_view(field, 3));
  if (at == std::string_view::npos) return std::nullopt;
  size_t pos = at + 3;
  uint64_t value = 0;
  size_t digits = 0;
  while (pos < base.size() && IsDigit(base[pos])) {
    if (!AccumulateDigit(&value, base[pos])) return std::nullopt;
    ++pos;
    ++digits;
  }
  if (digits == 0 || (pos < base.size() && base[pos] != ',')) return std::nullopt;
  return value;
}

// The system flag a letter stands for, if any.
std::optional<SystemFlag> SystemFlagOfLetter(char c) {
  switch (c) {
    case 'D':
      return SystemFlag::kDraft;
    case 'F':
      return SystemFlag::kFlagged;
    case 'R':
      return SystemFlag::kAnswered;
    case 'S':
      return SystemFlag::kSeen;
    case 'T':
      return SystemFlag::kDeleted;
    default:
      return std::nullopt;
  }
}

bool IsKeywordLetter(char c) { return c >= 'a' && c <= 'z'; }
bool IsKnownFlagLetter(char c) { return SystemFlagOfLetter(c).has_value() || IsKeywordLetter(c); }

// The system flags in the order of their letters.
constexpr std::pair<char, SystemFlag> kSystemLetters[] = {
    {'D', SystemFlag::kDraft}, {'F', SystemFlag::kFlagged}, {'R', SystemFlag::kAnswered},
    {'S', SystemFlag::kSeen},  {'T', SystemFlag::kDeleted},
};

}  // namespace

bool NameFlags::HasLetter(char letter) const {
  if (auto flag = SystemFlagOfLetter(letter)) return Has(*flag);
  if (!IsKeywordLetter(letter)) return false;
  return (keywords & (1u << (letter - 'a'))) != 0;
}

void NameFlags::AddLetter(char letter) {
  assert(IsKeywordLetter(letter));
  keywords |= 1u << (letter - 'a');
}

std::string NameFlags::Letters() const {
  std::string out;
  for (auto [letter, flag] : kSystemLetters) {
    if (Has(flag)) out.push_back(letter);
  }
  for (int i = 0; i < 26; ++i) {
    if ((keywords & (1u << i)) != 0) out.push_back(static_cast<char>('a' + i));
  }
  return out;
}

std::optional<std::string_view> UnsafeFileNameReason(std::string_view name) {
  if (name.empty()) return "empty file name";
  if (name.size() > kMaxFileName) return "file name longer than 255 bytes";
  if (name == "." || name == "..") return "'.' or '..'";
  if (name.front() == '.') return "file name starts with '.'";
  for (char c : name) {
    if (c == '/') return "'/' in file name";
    if (c == '\0') return "NUL in file name";
    if (c == '\n' || c == '\r') return "line break in file name";
  }
  return std::nullopt;
}

std::string_view BaseName(std::string_view name) { return name.substr(0, name.find(':')); }

Result<FileName> ParseFileName(std::string_view name) {
  if (auto reason = UnsafeFileNameReason(name)) {
    return Status::InvalidArgument(
        fmt::format("not a message file name ({}): '{}'", *reason, PrintableForLog(name)));
  }
  FileName parsed;
  std::string_view base = BaseName(name);
  if (base.empty()) {
    return Status::InvalidArgument(
        fmt::format("message file name without a base name: '{}'", PrintableForLog(name)));
  }
  parsed.base = std::string(base);
  parsed.size = SizeField(base, 'S');
  parsed.vsize = SizeField(base, 'W');

  // Flags follow the last ':' (maildir_filename_flags_get uses strrchr).
  size_t colon = name.rfind(':');
  if (colon == std::string_view::npos) return parsed;
  std::string_view info = name.substr(colon + 1);
  if (!info.starts_with(kInfoFlags)) return parsed;
  parsed.has_flags = true;
  std::string_view letters = info.substr(kInfoFlags.size());
  size_t comma = letters.find(',');
  if (comma != std::string_view::npos) {
    parsed.extra = std::string(letters.substr(comma));
    letters = letters.substr(0, comma);
  }
  for (char c : letters) {
    if (auto flag = SystemFlagOfLetter(c)) {
      parsed.flags.Add(*flag);
    } else if (IsKeywordLetter(c)) {
      parsed.flags.AddLetter(c);
    } else {
      parsed.unknown_flags.push_back(c);
    }
  }
  return parsed;
}

Result<std::string> WithFlags(std::string_view name, const NameFlags& flags) {
  if (auto reason = UnsafeFileNameReason(name)) {
    return Status::InvalidArgument(
        fmt::format("not a message file name ({}): '{}'", *reason, PrintableForLog(name)));
  }
  if (BaseName(name).empty()) {
    return Status::InvalidArgument(
        fmt::format("message file name without a base name: '{}'", PrintableForLog(name)));
  }
  // This follows maildir_filename_flags_full_set() step by step so that a
  // name we rename reads the same to Dovecot as one it renamed itself.
  std::string_view prefix = name;
  std::string_view old_flags;
  size_t colon = name.rfind(':');
  if (colon != std::string_view::npos) {
    prefix = name.substr(0, colon);
    std::string_view info = name.substr(colon + 1);
    if (info.starts_with(kInfoFlags)) old_flags = info.substr(kInfoFlags.size());
  }

  std::string out(prefix);
  out += ':';
  out += kInfoFlags;
  uint8_t system_left = flags.system;
  bool keywords_left = true;
  size_t pos = 0;
  while (true) {
    // Known letters of the old set are dropped; unknown ones stay in place
    // and the new letters are inserted where they sort.
    while (pos < old_flags.size() && IsKnownFlagLetter(old_flags[pos])) ++pos;
    bool at_end = pos == old_flags.size() || old_flags[pos] == ',';
    int next = at_end ? 256 : static_cast<unsigned char>(old_flags[pos]);
    for (auto [letter, flag] : kSystemLetters) {
      uint8_t bit = static_cast<uint8_t>(flag);
      if ((system_left & bit) != 0 && next > letter) {
        out.push_back(letter);
        system_left &= static_cast<uint8_t>(~bit);
      }
    }
    if (keywords_left && next > 'a') {
      for (int i = 0; i < 26; ++i) {
        if ((flags.keywords & (1u << i)) != 0) out.push_back(static_cast<char>('a' + i));
      }
      keywords_left = false;
    }
    if (at_end) break;
    out.push_back(old_flags[pos++]);
  }
  // Another flag set we do not know about: kept as it is.
  out.append(old_flags.substr(pos));

  if (out.size() > kMaxFileName) {
    return Status::InvalidArgument(
        fmt::format("file name with new flags is too long: '{}'", PrintableForLog(out)));
  }
  return out;
}

std::string SanitizeHostname(std::string_view hostname) {
  if (hostname.empty()) return "localhost";
  std::string out;
  for (unsigned char c : hostname) {
    std::string piece;
    if (c == '/' || c == ':' || c == ',' || c < 0x20 || c == 0x7f) {
      piece = fmt::format("\\{:03o}", c);
    } else {
      piece.push_back(static_cast<char>(c));
    }
    if (out.size() + piece.size() > kMaxHostname) break;
    out += piece;
  }
  return out;
}

std::string NewFileName(const NewFileNameParts& parts) {
  return fmt::format("{}.M{}P{}.{},S={},W={}", parts.secs, parts.usecs, parts.pid,
                     SanitizeHostname(parts.hostname), parts.size, parts.vsize);
}

FileNameSortKey SortKeyOf(std::string_view name) {
  std::string_view base = BaseName(name);
  FileNameSortKey key;
  size_t pos = 0;
  bool saturated = false;
  for (; pos < base.size() && IsDigit(base[pos]); ++pos) {
    if (!saturated && !AccumulateDigit(&key.secs, base[pos])) {
      key.secs = std::numeric_limits<uint64_t>::max();
      saturated = true;
    }
  }
  std::string_view rest = base.substr(pos);
  // maildir_fname_get_usecs(): ".<uniqueness>.<host>", usecs after the
  // first 'M' of the uniqueness part ("M52051P24247", "M519962P21092Q1").
  if (rest.starts_with('.')) {
    for (size_t i = 1; i < rest.size() && rest[i] != '.'; ++i) {
      if (rest[i] != 'M') continue;
      saturated = false;
      for (size_t k = i + 1; k < rest.size() && IsDigit(rest[k]); ++k) {
        if (!saturated && !AccumulateDigit(&key.usecs, rest[k])) {
          key.usecs = std::numeric_limits<uint64_t>::max();
          saturated = true;
        }
      }
      break;
    }
  }
  key.rest = std::string(rest);
  key.base = std::string(base);
  return key;
}

uint64_t VirtualSize(std::string_view bytes) {
  VirtualSizeCounter counter;
  counter.Add(bytes);
  return counter.vsize();
}

void VirtualSizeCounter::Add(std::string_view chunk) {
  if (chunk.empty()) return;
  // memchr from one LF to the next: a byte loop was the costliest part
  // of writing a message to tmp/.
  const char* begin = chunk.data();
  const char* end = begin + chunk.size();
  for (const char* p = begin;;) {
    const auto* lf = static_cast<const char*>(memchr(p, '\n', static_cast<size_t>(end - p)));
    if (lf == nullptr) break;
    bool after_cr = lf == begin ? last_was_cr_ : lf[-1] == '\r';
    if (!after_cr) ++vsize_;
    p = lf + 1;
  }
  last_was_cr_ = end[-1] == '\r';
  size_ += chunk.size();
  vsize_ += chunk.size();
}

}  // namespace mailfs::maildir
