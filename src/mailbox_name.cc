#include "src/mailbox_name.h"

#include <fmt/format.h>
#include <strings.h>

#include <algorithm>

namespace mailfs {

bool NextUtf8CodePoint(std::string_view text, size_t* pos, uint32_t* cp_out) {
  unsigned char c = text[*pos];
  size_t len;
  uint32_t cp;
  if (c < 0x80) {
    *cp_out = c;
    ++*pos;
    return true;
  } else if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return false;
  }
  if (text.size() - *pos < len) return false;
  for (size_t k = 1; k < len; ++k) {
    unsigned char cc = text[*pos + k];
    if ((cc & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (cc & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF.
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
    return false;
  }
  *cp_out = cp;
  *pos += len;
  return true;
}

bool IsValidUtf8(std::string_view s) {
  uint32_t cp = 0;
  for (size_t i = 0; i < s.size();) {
    if (!NextUtf8CodePoint(s, &i, &cp)) return false;
  }
  return true;
}

Result<std::string> NormalizeMailboxName(std::string_view name) {
  if (name.empty()) return Status::InvalidName("empty mailbox name");
  if (!IsValidUtf8(name)) return Status::InvalidName("mailbox name is not UTF-8");
  size_t start = 0;
  while (true) {
    size_t end = name.find(kDelimiter, start);
    std::string_view level =
        name.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (level.empty()) return Status::InvalidName(fmt::format("empty level in '{}'", name));
    if (level.front() == '.') {
      return Status::InvalidName(fmt::format("a level may not start with '.': '{}'", name));
    }
    for (unsigned char c : level) {
      if (c < 0x20 || c == 0x7f) {
        return Status::InvalidName("control character in mailbox name");
      }
    }
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  std::string normalized(name);
  std::string_view first = name.substr(0, name.find(kDelimiter));
  if (first.size() == kInbox.size() && strncasecmp(first.data(), "INBOX", 5) == 0) {
    normalized.replace(0, kInbox.size(), kInbox);
  }
  return normalized;
}

bool IsInbox(std::string_view normalized_name) { return normalized_name == kInbox; }

std::string_view ParentName(std::string_view name) {
  size_t slash = name.rfind(kDelimiter);
  return slash == std::string_view::npos ? std::string_view() : name.substr(0, slash);
}

std::string_view LeafName(std::string_view name) {
  size_t slash = name.rfind(kDelimiter);
  return slash == std::string_view::npos ? name : name.substr(slash + 1);
}

bool IsSameOrBelow(std::string_view name, std::string_view ancestor) {
  if (name.size() < ancestor.size() || name.substr(0, ancestor.size()) != ancestor) return false;
  return name.size() == ancestor.size() || name[ancestor.size()] == kDelimiter;
}

std::string JoinMailboxName(std::string_view parent, std::string_view leaf) {
  if (parent.empty()) return std::string(leaf);
  return fmt::format("{}{}{}", parent, kDelimiter, leaf);
}

Result<std::vector<std::string>> NamesToRename(std::span<const std::string> existing,
                                               std::string_view before, std::string_view after) {
  if (IsSameOrBelow(after, before)) {
    return Status::InvalidName(
        fmt::format("cannot rename {} to itself or below: {}", before, after));
  }
  std::vector<std::string> moving;
  for (const std::string& name : existing) {
    if (IsInbox(before) ? name == before : IsSameOrBelow(name, before)) moving.push_back(name);
  }
  if (moving.empty()) {
    return Status::NotFound(ErrorScope::kMailbox, fmt::format("no mailbox {}", before));
  }
  for (const std::string& name : existing) {
    if (IsSameOrBelow(name, after) && !std::binary_search(moving.begin(), moving.end(), name)) {
      return Status::Exists(fmt::format("rename target is taken: {}", name));
    }
  }
  return moving;
}

}  // namespace mailfs
