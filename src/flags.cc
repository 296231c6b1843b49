#include "src/flags.h"

#include <fmt/format.h>
#include <strings.h>

#include <algorithm>
#include <cassert>

namespace mailfs {

std::string_view SystemFlagName(SystemFlag flag) {
  switch (flag) {
    case SystemFlag::kSeen:
      return "\\Seen";
    case SystemFlag::kAnswered:
      return "\\Answered";
    case SystemFlag::kFlagged:
      return "\\Flagged";
    case SystemFlag::kDeleted:
      return "\\Deleted";
    case SystemFlag::kDraft:
      return "\\Draft";
  }
  return "";
}

std::string_view SystemFlagAttributeName(SystemFlag flag) {
  switch (flag) {
    case SystemFlag::kSeen:
      return "seen";
    case SystemFlag::kAnswered:
      return "answered";
    case SystemFlag::kFlagged:
      return "flagged";
    case SystemFlag::kDeleted:
      return "deleted";
    case SystemFlag::kDraft:
      return "draft";
  }
  return "";
}

bool IsValidKeyword(std::string_view keyword) {
  if (keyword.empty() || keyword.front() == '\\') return false;
  for (unsigned char c : keyword) {
    if (c <= 0x20 || c >= 0x7f) return false;
    switch (c) {
      case '(':
      case ')':
      case '{':
      case '%':
      case '*':
      case '"':
      case '\\':
      case ']':
        return false;
      default:
        break;
    }
  }
  return true;
}

bool FlagSet::HasKeyword(std::string_view keyword) const {
  return std::binary_search(keywords_.begin(), keywords_.end(), keyword);
}

void FlagSet::AddKeyword(std::string_view keyword) {
  assert(IsValidKeyword(keyword));
  auto it = std::lower_bound(keywords_.begin(), keywords_.end(), keyword);
  if (it == keywords_.end() || *it != keyword) keywords_.insert(it, std::string(keyword));
}

void FlagSet::RemoveKeyword(std::string_view keyword) {
  auto it = std::lower_bound(keywords_.begin(), keywords_.end(), keyword);
  if (it != keywords_.end() && *it == keyword) keywords_.erase(it);
}

void FlagSet::Apply(FlagOp op, const FlagSet& other) {
  switch (op) {
    case FlagOp::kReplace:
      *this = other;
      break;
    case FlagOp::kAdd:
      system_ |= other.system_;
      for (const auto& k : other.keywords_) AddKeyword(k);
      break;
    case FlagOp::kDelete:
      system_ &= static_cast<uint8_t>(~other.system_);
      for (const auto& k : other.keywords_) RemoveKeyword(k);
      break;
  }
}

Result<FlagSet> FlagSet::Parse(std::string_view text) {
  FlagSet flags;
  size_t pos = 0;
  while (pos < text.size()) {
    if (text[pos] == ' ') {
      ++pos;
      continue;
    }
    size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view token = text.substr(pos, end - pos);
    pos = end;
    if (token.front() == '\\') {
      bool known = false;
      for (SystemFlag f : kAllSystemFlags) {
        std::string_view name = SystemFlagName(f);
        if (token.size() == name.size() &&
            strncasecmp(token.data(), name.data(), name.size()) == 0) {
          flags.Add(f);
          known = true;
        }
      }
      if (!known) {
        return Status::InvalidArgument(fmt::format("not a settable system flag: {}", token));
      }
    } else if (IsValidKeyword(token)) {
      flags.AddKeyword(token);
    } else {
      return Status::InvalidArgument(fmt::format("malformed keyword: {}", token));
    }
  }
  return flags;
}

std::string FlagSet::ToString() const {
  std::string out;
  auto append = [&out](std::string_view s) {
    if (!out.empty()) out += ' ';
    out += s;
  };
  for (SystemFlag f : kAllSystemFlags) {
    if (Has(f)) append(SystemFlagName(f));
  }
  for (const auto& k : keywords_) append(k);
  return out;
}

FlagSet FlagSet::AllSystemFlags() {
  FlagSet flags;
  for (SystemFlag flag : kAllSystemFlags) flags.Add(flag);
  return flags;
}

}  // namespace mailfs
