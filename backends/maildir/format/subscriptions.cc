#include "backends/maildir/format/subscriptions.h"

#include <fmt/format.h>

#include <unordered_set>

#include "backends/maildir/format/mutf7.h"
#include "backends/maildir/format/text.h"
#include "src/mailbox_name.h"

namespace mailfs::maildir {
namespace {

constexpr std::string_view kV2Header = "V\t2\n\n";
constexpr char kEscape = '\001';

// One line of a v1 or v2 file as a mailbox name.
Result<std::string> DecodeDovecotLine(std::string_view line, SubscriptionsVersion version,
                                      Layout layout) {
  char separator = version == SubscriptionsVersion::kV2 ? '\t' : StorageSeparator(layout);
  std::vector<std::string_view> parts = Split(line, separator);
  // "Entry ends with hierarchy separator, remove it": Dovecot's reader does
  // this for old versions and other software that wrote them.
  if (parts.size() > 1 && parts.back().empty()) parts.pop_back();
  std::vector<std::string> unescaped;
  std::vector<std::string_view> levels;
  if (version == SubscriptionsVersion::kV2) {
    unescaped.reserve(parts.size());
    for (std::string_view part : parts) unescaped.push_back(TabUnescape(part));
    levels.assign(unescaped.begin(), unescaped.end());
  } else {
    levels = std::move(parts);
  }
  Result<DecodedMailboxName> decoded = DecodeLevels(levels, layout);
  if (!decoded.ok()) return decoded.status();
  return std::move(decoded->name);
}

Result<std::string> DecodePymapLine(std::string_view line, Layout layout) {
  Result<std::string> valid = ValidateMailboxName(line, layout);
  if (!valid.ok()) return valid.status();
  if (*valid != line) {
    return Status::InvalidName(
        fmt::format("mailbox name is not in normal form: '{}'", PrintableForLog(line)));
  }
  return valid;
}

}  // namespace

std::string TabEscape(std::string_view level) {
  std::string out;
  out.reserve(level.size());
  for (char c : level) {
    switch (c) {
      case '\0':
        out += "\0010";
        break;
      case kEscape:
        out += "\0011";
        break;
      case '\t':
        out += "\001t";
        break;
      case '\r':
        out += "\001r";
        break;
      case '\n':
        out += "\001n";
        break;
      default:
        out.push_back(c);
        break;
    }
  }
  return out;
}

std::string TabUnescape(std::string_view escaped) {
  std::string out;
  out.reserve(escaped.size());
  for (size_t i = 0; i < escaped.size(); ++i) {
    if (escaped[i] != kEscape) {
      out.push_back(escaped[i]);
      continue;
    }
    if (++i == escaped.size()) break;  // a lone escape at the end is dropped
    switch (escaped[i]) {
      case '0':
        out.push_back('\0');
        break;
      case '1':
        out.push_back(kEscape);
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 'n':
        out.push_back('\n');
        break;
      default:
        out.push_back(escaped[i]);
        break;
    }
  }
  return out;
}

Subscriptions ParseSubscriptions(std::string_view content, Layout layout) {
  Subscriptions result;
  size_t line_number = 0;
  if (content.starts_with(kV2Header)) {
    result.version = SubscriptionsVersion::kV2;
    content.remove_prefix(kV2Header.size());
    line_number = 2;
  } else if (content.find("\r\n") != std::string_view::npos) {
    result.version = SubscriptionsVersion::kPymap;
  } else {
    // Dovecot reads a file without the header as version 1, and keeps
    // writing version 1 to it, even when it is empty.
    result.version = SubscriptionsVersion::kV1;
  }

  std::unordered_set<std::string> seen;
  std::vector<std::string_view> lines = Split(content, '\n');
  // Text after the last LF is a line too (Dovecot returns partial lines).
  if (lines.back().empty()) lines.pop_back();
  for (std::string_view line : lines) {
    ++line_number;
    // Dovecot's line reader drops the CR of a CRLF; a name cannot end in
    // CR, so dropping them all loses nothing and keeps `raw` writable.
    while (line.ends_with('\r')) line.remove_suffix(1);
    if (line.empty()) continue;
    Result<std::string> name = result.version == SubscriptionsVersion::kPymap
                                   ? DecodePymapLine(line, layout)
                                   : DecodeDovecotLine(line, result.version, layout);
    if (!name.ok()) {
      result.skipped.push_back({line_number, std::string(line), name.status().detail()});
      continue;
    }
    if (seen.insert(*name).second) result.names.push_back(std::move(name).value());
  }
  return result;
}

Result<std::string> SerializeSubscriptions(std::span<const std::string> names,
                                           SubscriptionsVersion version, Layout layout,
                                           NameEncoding encoding,
                                           std::span<const std::string> kept_lines) {
  std::string_view line_end = version == SubscriptionsVersion::kPymap ? "\r\n" : "\n";
  std::string out;
  if (version == SubscriptionsVersion::kV2) out += kV2Header;
  for (const std::string& kept : kept_lines) {
    if (kept.empty() || kept.find('\n') != std::string::npos || kept.ends_with('\r')) {
      return Status::InvalidArgument(
          fmt::format("cannot keep subscriptions line '{}'", PrintableForLog(kept)));
    }
    out += kept;
    out += line_end;
  }
  for (const std::string& name : names) {
    Result<std::string> valid = ValidateMailboxName(name, layout);
    if (!valid.ok()) return valid.status();
    if (version == SubscriptionsVersion::kPymap) {
      out += *valid;
      out += line_end;
      continue;
    }
    char separator = version == SubscriptionsVersion::kV2 ? '\t' : StorageSeparator(layout);
    bool first = true;
    for (std::string_view level : Split(*valid, kDelimiter)) {
      Result<std::string> stored = EncodeLevel(level, encoding);
      if (!stored.ok()) return stored.status();
      if (!first) out += separator;
      first = false;
      out += version == SubscriptionsVersion::kV2 ? TabEscape(*stored) : *stored;
    }
    out += line_end;
  }
  return out;
}

}  // namespace mailfs::maildir
