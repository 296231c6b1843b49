#include "backends/maildir/format/keywords.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_set>

#include "backends/maildir/format/text.h"
#include "src/flags.h"

namespace mailfs::maildir {
namespace {

// How much of a bad line a problem report quotes.

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// strcasecmp() equality, which is how Dovecot compares keyword names.
bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  }
  return true;
}

// "<index>" as Dovecot's str_to_uint reads it: digits only, leading zeros
// allowed. Large values stop growing at kTooLarge (above any letter).
std::optional<size_t> ParseIndex(std::string_view digits) {
  constexpr size_t kTooLarge = 1000000;
  if (digits.empty()) return std::nullopt;
  size_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = std::min(kTooLarge, value * 10 + static_cast<size_t>(c - '0'));
  }
  return value;
}

}  // namespace

Result<KeywordTable> KeywordTable::Parse(std::string_view bytes) {
  KeywordTable table;
  // Names of every line used so far, even one whose index a later line
  // took: Dovecot's name hash keeps them, and skips their repeats.
  std::unordered_set<std::string> seen;               // lowercased
  std::array<size_t, kMaxMaildirKeywords> line_of{};  // which line set each index
  // Problems beyond kMaxKeywordsProblems are only counted, so that a file
  // of garbage lines cannot make a report larger than itself.
  size_t more = 0;
  size_t last_more = 0;
  auto add_problem = [&](size_t line, std::string reason) {
    if (table.problems_.size() < kMaxKeywordsProblems) {
      table.problems_.push_back({line, std::move(reason)});
    } else {
      ++more;
      last_more = line;
    }
  };
  size_t pos = 0;
  size_t number = 0;
  while (pos < bytes.size()) {
    ++number;
    size_t end = bytes.find('\n', pos);
    if (end == std::string_view::npos) {
      add_problem(number,
                  fmt::format("last line has no line end: \"{}\"", Excerpt(bytes.substr(pos))));
      break;
    }
    std::string_view line = bytes.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    size_t space = line.find(' ');
    if (space == std::string_view::npos) {
      add_problem(number, fmt::format("not \"<index> <keyword>\": \"{}\"", Excerpt(line)));
      continue;
    }
    std::optional<size_t> index = ParseIndex(line.substr(0, space));
    std::string_view name = line.substr(space + 1);
    if (!index) {
      add_problem(number, fmt::format("bad index: \"{}\"", Excerpt(line.substr(0, space))));
      continue;
    }
    if (*index >= kMaxMaildirKeywords) {
      add_problem(number, fmt::format("index \"{}\" is above 25 (letters a-z only)",
                                      Excerpt(line.substr(0, space))));
      continue;
    }
    if (!IsValidKeyword(name)) {
      add_problem(number, fmt::format("not an IMAP keyword: \"{}\"", Excerpt(name)));
      continue;
    }
    std::string lower(name);
    for (char& c : lower) c = AsciiLower(c);
    if (seen.contains(lower)) {
      add_problem(number,
                  fmt::format("keyword \"{}\" already has a letter; line ignored", Excerpt(name)));
      continue;
    }
    std::string& slot = table.names_[*index];
    if (!slot.empty()) {
      add_problem(number, fmt::format("index {} was \"{}\" on line {}; the later line wins", *index,
                                      Excerpt(slot), line_of[*index]));
    }
    slot = std::string(name);
    line_of[*index] = number;
    seen.insert(std::move(lower));
  }
  if (more > 0) {
    table.problems_.push_back({last_more, fmt::format("... and {} more problems", more)});
  }
  return table;
}

std::string KeywordTable::Serialize() const {
  std::string out;
  for (size_t i = 0; i < names_.size(); ++i) {
    if (!names_[i].empty()) out += fmt::format("{} {}\n", i, names_[i]);
  }
  return out;
}

std::optional<size_t> KeywordTable::IndexOf(std::string_view keyword) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (!names_[i].empty() && EqualsIgnoringCase(names_[i], keyword)) return i;
  }
  return std::nullopt;
}

std::optional<char> KeywordTable::LetterFor(std::string_view keyword) const {
  std::optional<size_t> index = IndexOf(keyword);
  if (!index) return std::nullopt;
  return static_cast<char>('a' + *index);
}

std::optional<std::string_view> KeywordTable::KeywordFor(char letter) const {
  if (letter < 'a' || letter > 'z') return std::nullopt;
  const std::string& name = names_[static_cast<size_t>(letter - 'a')];
  if (name.empty()) return std::nullopt;
  return name;
}

Result<char> KeywordTable::Assign(std::string_view keyword) {
  if (!IsValidKeyword(keyword)) {
    return Status::InvalidArgument(fmt::format("not an IMAP keyword: \"{}\"", Excerpt(keyword)));
  }
  if (std::optional<char> letter = LetterFor(keyword)) return *letter;
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i].empty()) {
      names_[i] = std::string(keyword);
      return static_cast<char>('a' + i);
    }
  }
  return Status::Error(ErrorCode::kNoSpace, ErrorScope::kMailbox,
                       fmt::format("keyword \"{}\": the mailbox already uses all 26 keyword "
                                   "letters a-z that Maildir file names can carry",
                                   Excerpt(keyword)));
}

size_t KeywordTable::size() const {
  size_t count = 0;
  for (const std::string& name : names_) count += name.empty() ? 0 : 1;
  return count;
}

}  // namespace mailfs::maildir
