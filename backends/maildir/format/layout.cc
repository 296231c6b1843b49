#include "backends/maildir/format/layout.h"

#include <fmt/format.h>

#include <vector>

#include "backends/maildir/format/mutf7.h"
#include "backends/maildir/format/text.h"
#include "src/mailbox_name.h"

namespace mailfs::maildir {
namespace {

// NAME_MAX on Linux.
constexpr size_t kMaxEntry = 255;
constexpr std::string_view kMaildirTrash = "..DOVECOT-TRASHED";
constexpr std::string_view kFsTrash = "..DOVECOT-TrasH";

bool IsMaildirSubdir(std::string_view level) {
  return level == "cur" || level == "new" || level == "tmp";
}

Status Refuse(std::string_view why, std::string_view name) {
  return Status::InvalidName(fmt::format("{}: '{}'", why, PrintableForLog(name)));
}

}  // namespace

char StorageSeparator(Layout layout) { return layout == Layout::kMaildirPlusPlus ? '.' : '/'; }

Result<std::string> ValidateMailboxName(std::string_view name, Layout layout) {
  Result<std::string> normalized = NormalizeMailboxName(name);
  if (!normalized.ok()) return normalized.status();
  const std::string& n = *normalized;
  // Dovecot refuses names starting with '~' (home directory expansion).
  if (n.front() == '~') return Refuse("mailbox name starts with '~'", n);
  for (std::string_view level : Split(n, kDelimiter)) {
    // NormalizeMailboxName() already refuses these; kept so that this
    // function alone states the layout's rules.
    if (level.empty() || level == "." || level == "..") {
      return Refuse("empty, '.' or '..' level", n);
    }
    if (layout == Layout::kMaildirPlusPlus && level.find('.') != std::string_view::npos) {
      // '.' separates levels on disk.
      return Refuse("'.' is not allowed in a Maildir++ mailbox name", n);
    }
    if (layout == Layout::kFs && IsMaildirSubdir(level)) {
      return Refuse("cur, new and tmp are reserved names in the fs layout", n);
    }
  }
  return normalized;
}

Result<std::string> EncodeLevel(std::string_view level, NameEncoding encoding) {
  if (encoding == NameEncoding::kMutf7) return mutf7::Encode(level);
  if (!IsValidUtf8(level)) return Refuse("mailbox name is not UTF-8", level);
  Result<mutf7::DecodedLevel> back = mutf7::DecodeLevel(level);
  if (!back.ok() || back->text != level) {
    return Refuse("this UTF-8 store would read the name back as modified UTF-7", level);
  }
  return std::string(level);
}

Result<std::string> MailboxDirectory(std::string_view name, Layout layout, NameEncoding encoding) {
  Result<std::string> valid = ValidateMailboxName(name, layout);
  if (!valid.ok()) return valid.status();
  if (IsInbox(*valid)) return std::string();
  std::string path;
  for (std::string_view level : Split(*valid, kDelimiter)) {
    Result<std::string> stored = EncodeLevel(level, encoding);
    if (!stored.ok()) return stored.status();
    if (layout == Layout::kMaildirPlusPlus) {
      path += '.';
      path += *stored;
    } else {
      if (stored->size() > kMaxEntry) return Refuse("mailbox name level too long", *valid);
      if (!path.empty()) path += '/';
      path += *stored;
    }
  }
  if (layout == Layout::kMaildirPlusPlus && path.size() > kMaxEntry) {
    return Refuse("mailbox name too long for a Maildir++ folder", *valid);
  }
  return path;
}

Result<DecodedMailboxName> DecodeLevels(std::span<const std::string_view> levels, Layout layout) {
  if (levels.empty()) return Status::InvalidName("mailbox name on disk without a level");
  DecodedMailboxName decoded;
  std::string joined;
  for (size_t i = 0; i < levels.size(); ++i) {
    std::string_view level = levels[i];
    if (level.empty()) return Status::InvalidName("empty level in a mailbox name on disk");
    Result<mutf7::DecodedLevel> one = mutf7::DecodeLevel(level);
    if (!one.ok()) return one.status();
    if (one->text.find(kDelimiter) != std::string::npos) {
      return Refuse("'/' inside a level of a mailbox name on disk", level);
    }
    switch (one->encoding) {
      case mutf7::LevelEncoding::kMutf7:
        ++decoded.mutf7_levels;
        break;
      case mutf7::LevelEncoding::kUtf8:
      case mutf7::LevelEncoding::kLiteral:
        ++decoded.utf8_levels;
        break;
      case mutf7::LevelEncoding::kAscii:
        break;
    }
    if (i > 0) joined += kDelimiter;
    joined += one->text;
  }
  Result<std::string> valid = ValidateMailboxName(joined, layout);
  if (!valid.ok()) return valid.status();
  if (*valid != joined) return Refuse("mailbox name on disk is not in normal form", joined);
  decoded.name = std::move(joined);
  return decoded;
}

bool IsMaildirPlusPlusFolderEntry(std::string_view entry) {
  return entry.size() > 1 && entry.front() == '.' && entry != ".." && entry != kMaildirTrash;
}

bool IsFsChildEntry(std::string_view entry) {
  return !entry.empty() && entry != "." && entry != ".." && !IsMaildirSubdir(entry) &&
         entry != kFsTrash;
}

Result<DecodedMailboxName> MailboxNameOfDirectory(std::string_view path, Layout layout) {
  if (path.empty()) return DecodedMailboxName{std::string(kInbox)};
  std::vector<std::string_view> levels;
  if (layout == Layout::kMaildirPlusPlus) {
    if (!IsMaildirPlusPlusFolderEntry(path) || path.find('/') != std::string_view::npos) {
      return Refuse("not a Maildir++ folder", path);
    }
    levels = Split(path.substr(1), '.');
  } else {
    levels = Split(path, '/');
    for (std::string_view level : levels) {
      if (!IsFsChildEntry(level)) return Refuse("not an fs-layout mailbox directory", path);
    }
  }
  Result<DecodedMailboxName> decoded = DecodeLevels(levels, layout);
  if (!decoded.ok()) return decoded.status();
  if (layout == Layout::kMaildirPlusPlus && IsInbox(decoded->name)) {
    return Refuse("a Maildir++ folder cannot be INBOX (the root is)", path);
  }
  return decoded;
}

NameEncoding DetectNameEncoding(std::span<const DecodedMailboxName> names, NameEncoding fallback) {
  long mutf7_levels = 0;
  long utf8_levels = 0;
  for (const DecodedMailboxName& name : names) {
    mutf7_levels += name.mutf7_levels;
    utf8_levels += name.utf8_levels;
  }
  if (mutf7_levels > utf8_levels) return NameEncoding::kMutf7;
  if (utf8_levels > mutf7_levels) return NameEncoding::kUtf8;
  return fallback;
}

}  // namespace mailfs::maildir
