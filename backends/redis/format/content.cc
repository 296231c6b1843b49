#include "backends/redis/format/content.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <msgpack.hpp>
#include <span>

#include "backends/redis/format/header_value.h"
#include "src/mailbox_name.h"

// pymap/mime/__init__.py (MessageContent.parse and the .json properties)
// and pymap/threads.py, over the same line offsets. For fixture m001 (CRLF,
// 10 header fields, a text/plain body) pymap stores:
//
//   header-json = {"lines": [[0,32,34], [34,76,78], ..., [341,341,343]],
//                  "folded": [["cmV0dXJuLXBhdGg=", [[0,32,34]]], ...]}
//   full-json   = {"header": <header-json>,
//                  "body": {"lines": [[343,407,409], ..., [766,766,766]],
//                           "content_type": "text/plain; charset=\"us-ascii\"",
//                           "nested": []}}
//
// as msgpack.packb writes them: maps in that key order, tuples as arrays,
// str as UTF-8 str, every integer in its shortest form.

namespace mailfs::redis {
namespace {

// How deep parts are parsed. pymap recurses once per level and gives up
// (RecursionError: no APPEND) at about 320 levels; its reader
// (MessageContent.from_json) and msgpack-python's unpacker (1024 nested
// containers, three per level) recurse over what is stored as well. Below
// this depth mailfs stores what pymap stores; a part this deep is stored
// as a leaf (its body's lines, no nested parts), which pymap can read.
constexpr size_t kMaxNestingDepth = 100;

// [start, end, next]: end excludes the line break ("\r\n" or "\n"), next is
// where the next line starts. The last line always exists and has no break
// (it is empty when the message ends with one).
struct Line {
  size_t start;
  size_t end;
  size_t next;
};
using Lines = std::span<const Line>;

std::vector<Line> FindLines(std::string_view data) {
  std::vector<Line> lines;
  size_t start = 0;
  while (true) {
    const size_t lf = data.find('\n', start);
    if (lf == std::string_view::npos) {
      lines.push_back({start, data.size(), data.size()});
      return lines;
    }
    const size_t end = (lf > start && data[lf - 1] == '\r') ? lf - 1 : lf;
    lines.push_back({start, end, lf + 1});
    start = lf + 1;
  }
}

std::string_view TextOf(std::string_view data, const Line& line) {
  return data.substr(line.start, line.end - line.start);
}

// pymap's `whitespace`: bytes.isspace().
bool IsWhitespace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// The header is every line up to and including the first one that is
// empty or only whitespace; without such a line there is no header and
// every line is body.
size_t HeaderLineCount(std::string_view data, Lines lines) {
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string_view text = TextOf(data, lines[i]);
    if (std::all_of(text.begin(), text.end(), IsWhitespace)) return i + 1;
  }
  return 0;
}

// The header's lines alone (what HeaderLineCount counts over FindLines),
// without splitting the body into lines: for the email id and the thread
// keys, which read nothing else. `*ends_message` says whether the line
// that ends the header is the message's last line (no body line at all).
std::vector<Line> FindHeaderLines(std::string_view data, bool* ends_message) {
  std::vector<Line> lines;
  size_t start = 0;
  while (true) {
    const size_t lf = data.find('\n', start);
    const bool last = lf == std::string_view::npos;
    const size_t end = last ? data.size() : (lf > start && data[lf - 1] == '\r') ? lf - 1 : lf;
    lines.push_back({start, end, last ? data.size() : lf + 1});
    const std::string_view text = TextOf(data, lines.back());
    if (std::all_of(text.begin(), text.end(), IsWhitespace)) {
      *ends_message = last;
      return lines;
    }
    if (last) {  // no line ends the header: there is no header
      *ends_message = false;
      return {};
    }
    start = lf + 1;
  }
}

// One header field: its first line and the continuation lines (those that
// start with whitespace). A line before the first field that starts with
// whitespace, and a field without a colon, are dropped.
struct Field {
  std::string name;  // lower case, whitespace stripped
  size_t colon;      // offset of the first ':' in its first line
  Lines lines;
};

std::vector<Field> FindFields(std::string_view data, Lines header) {
  std::vector<Field> fields;
  if (header.empty()) return fields;
  size_t group_start = 0;
  bool have_group = false;
  auto close_group = [&](size_t group_end) {
    if (!have_group) return;
    const Line& first = header[group_start];
    const size_t colon = data.substr(0, first.end).find(':', first.start);
    if (colon == std::string_view::npos) return;
    std::string_view name = data.substr(first.start, colon - first.start);
    while (!name.empty() && IsWhitespace(name.front())) name.remove_prefix(1);
    while (!name.empty() && IsWhitespace(name.back())) name.remove_suffix(1);
    std::string lower(name);
    for (char& c : lower) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    fields.push_back(
        {std::move(lower), colon, header.subspan(group_start, group_end - group_start)});
  };
  // The last header line is the blank one that ends the header.
  for (size_t i = 0; i + 1 < header.size(); ++i) {
    const Line& line = header[i];
    if (line.end > line.start && IsWhitespace(data[line.start])) continue;  // continuation
    close_group(i);
    group_start = i;
    have_group = true;
  }
  close_group(header.size() - 1);
  return fields;
}

// email.policy.SMTP.header_source_parse over the field's lines (without
// their line breaks): the text after the colon with leading blanks
// dropped, the continuation lines appended as they are, trailing CR/LF
// dropped.
std::string UnfoldedValue(std::string_view data, const Field& field) {
  const Line& first = field.lines[0];
  std::string_view head = data.substr(field.colon + 1, first.end - field.colon - 1);
  while (!head.empty() && (head.front() == ' ' || head.front() == '\t')) head.remove_prefix(1);
  std::string value(head);
  for (const Line& line : field.lines.subspan(1)) value += TextOf(data, line);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
  return value;
}

// The name as written before the colon, lower-cased: what Python's header
// registry picks the header class by.
std::string RegistryName(std::string_view data, const Field& field) {
  std::string name(data.substr(field.lines[0].start, field.colon - field.lines[0].start));
  for (char& c : name) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return name;
}

const ContentTypeValue& DefaultContentType() {
  static const ContentTypeValue kDefault = *ParseContentType("text/plain");
  return kDefault;
}

// ParsedHeaders.content_type: the first Content-Type field, or text/plain
// when there is none or when parsing any of them raises IndexError (pymap
// parses them all). A field written "Content-Type :" makes pymap fail (it
// gets an unstructured header there); here it counts as Content-Type.
ContentTypeValue ContentTypeOf(std::string_view data, const std::vector<Field>& fields) {
  std::optional<ContentTypeValue> first;
  for (const Field& field : fields) {
    if (field.name != "content-type") continue;
    std::optional<ContentTypeValue> ct = ParseContentType(UnfoldedValue(data, field));
    if (!ct) return DefaultContentType();
    if (!first) first = std::move(ct);
  }
  return first ? *first : DefaultContentType();
}

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t n = (static_cast<uint8_t>(bytes[i]) << 16) |
                       (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t n =
        (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

// The lines of each part between "--boundary" lines, up to a
// "--boundary--" line; lines before the first boundary are no part.
std::vector<Lines> FindParts(std::string_view data, Lines body, std::string_view boundary) {
  const std::string part = "--" + std::string(boundary);
  const std::string stop = part + "--";
  std::vector<Lines> parts;
  std::optional<size_t> part_start;
  size_t i = 0;
  for (; i < body.size(); ++i) {
    const std::string_view text = TextOf(data, body[i]);
    if (text == stop) break;
    if (text == part) {
      if (part_start) parts.push_back(body.subspan(*part_start, i - *part_start));
      part_start = i + 1;
    }
  }
  if (part_start) parts.push_back(body.subspan(*part_start, i - *part_start));
  return parts;
}

using Packer = msgpack::packer<msgpack::sbuffer>;

void PackStr(Packer& pk, std::string_view text) {
  pk.pack_str(static_cast<uint32_t>(text.size()));
  pk.pack_str_body(text.data(), static_cast<uint32_t>(text.size()));
}

void PackLines(Packer& pk, Lines lines) {
  pk.pack_array(static_cast<uint32_t>(lines.size()));
  for (const Line& line : lines) {
    pk.pack_array(3);
    pk.pack_uint64(line.start);
    pk.pack_uint64(line.end);
    pk.pack_uint64(line.next);
  }
}

// MessageHeader.json.
void PackHeader(Packer& pk, Lines header, const std::vector<Field>& fields) {
  pk.pack_map(2);
  PackStr(pk, "lines");
  PackLines(pk, header);
  PackStr(pk, "folded");
  pk.pack_array(static_cast<uint32_t>(fields.size()));
  for (const Field& field : fields) {
    pk.pack_array(2);
    PackStr(pk, Base64(field.name));
    PackLines(pk, field.lines);
  }
}

// MessageContent.json of the part made of `lines`. Recursion is bounded
// by kMaxNestingDepth.
void PackContent(Packer& pk, std::string_view data, Lines lines, size_t depth) {
  const size_t header_count = HeaderLineCount(data, lines);
  const Lines header = lines.first(header_count);
  const Lines body = lines.subspan(header_count);
  const std::vector<Field> fields = FindFields(data, header);
  const ContentTypeValue ct = ContentTypeOf(data, fields);
  std::vector<Lines> nested;
  if (depth < kMaxNestingDepth) {
    if (ct.maintype == "multipart") {
      if (!ct.boundary.empty()) nested = FindParts(data, body, ct.boundary);
    } else if (ct.maintype == "message" && ct.subtype == "rfc822") {
      nested.push_back(body);
    }
  }
  pk.pack_map(2);
  PackStr(pk, "header");
  PackHeader(pk, header, fields);
  PackStr(pk, "body");
  pk.pack_map(3);
  PackStr(pk, "lines");
  PackLines(pk, body);
  PackStr(pk, "content_type");
  PackStr(pk, ct.text);
  PackStr(pk, "nested");
  pk.pack_array(static_cast<uint32_t>(nested.size()));
  for (Lines part : nested) PackContent(pk, data, part, depth + 1);
}

// Python's str.isspace() (and re's \s) over code points.
bool IsUnicodeSpace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

void AppendUtf8(std::string* out, uint32_t c) {
  if (c < 0x80) {
    *out += static_cast<char>(c);
  } else if (c < 0x800) {
    *out += static_cast<char>(0xC0 | (c >> 6));
    *out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    *out += static_cast<char>(0xE0 | (c >> 12));
    *out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (c >> 18));
    *out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// Code points of sanitized (valid) UTF-8.
std::vector<uint32_t> CodePoints(std::string_view text) {
  std::vector<uint32_t> out;
  size_t pos = 0;
  while (pos < text.size()) {
    uint32_t c;
    if (!NextUtf8CodePoint(text, &pos, &c)) {
      c = 0xFFFD;
      ++pos;
    }
    out.push_back(c);
  }
  return out;
}

size_t SkipSpaces(const std::vector<uint32_t>& s, size_t i) {
  while (i < s.size() && IsUnicodeSpace(s[i])) ++i;
  return i;
}

// ThreadKey._fwd_pattern / _re_pattern at s[pos]: \s*word\s*:\s* (word in
// any ASCII case). Returns where the match ends, or 0.
size_t MatchReplyPrefix(const std::vector<uint32_t>& s, size_t pos, std::string_view word) {
  size_t i = SkipSpaces(s, pos);
  for (char w : word) {
    if (i >= s.size()) return 0;
    const uint32_t c = (s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i];
    if (c != static_cast<uint32_t>(w)) return 0;
    ++i;
  }
  i = SkipSpaces(s, i);
  if (i >= s.size() || s[i] != ':') return 0;
  return SkipSpaces(s, i + 1);
}

// ThreadKey._listtag_pattern: \s*\[.*?\]\s* ('.' does not match "\n").
size_t MatchListTag(const std::vector<uint32_t>& s, size_t pos) {
  size_t i = SkipSpaces(s, pos);
  if (i >= s.size() || s[i] != '[') return 0;
  for (++i; i < s.size() && s[i] != ']'; ++i) {
    if (s[i] == '\n') return 0;
  }
  if (i >= s.size()) return 0;
  return SkipSpaces(s, i + 1);
}

// ThreadKey._subject: leading "Fwd:", "Re:" and "[tag]" removed, one at a
// time and in that order of preference (a loop where pymap recurses), then
// stripped, whitespace runs squeezed to one space.
std::string NormalizeSubject(std::string_view subject) {
  const std::vector<uint32_t> s = CodePoints(subject);
  size_t pos = 0;
  while (true) {
    size_t next = MatchReplyPrefix(s, pos, "fwd");
    if (next == 0) next = MatchReplyPrefix(s, pos, "re");
    if (next == 0) next = MatchListTag(s, pos);
    if (next == 0) break;
    pos = next;
  }
  size_t end = s.size();
  pos = SkipSpaces(s, pos);
  while (end > pos && IsUnicodeSpace(s[end - 1])) --end;
  std::string out;
  for (size_t i = pos; i < end; ++i) {
    if (IsUnicodeSpace(s[i])) {
      if (!IsUnicodeSpace(s[i - 1])) out += ' ';
    } else {
      AppendUtf8(&out, s[i]);
    }
  }
  return out;
}

// Every match of ThreadKey._pattern (<[^>]*>) in text, whitespace removed
// (ThreadKey._encode); only the first when `all` is false.
std::vector<std::string> MessageIds(std::string_view text, bool all) {
  std::vector<std::string> ids;
  size_t from = 0;
  while (true) {
    const size_t open = text.find('<', from);
    if (open == std::string_view::npos) break;
    const size_t close = text.find('>', open + 1);
    if (close == std::string_view::npos) break;
    std::string id;
    for (uint32_t c : CodePoints(text.substr(open, close + 1 - open))) {
      if (!IsUnicodeSpace(c)) AppendUtf8(&id, c);
    }
    ids.push_back(std::move(id));
    if (!all) break;
    from = close + 1;
  }
  return ids;
}

// adler32 over any length (zlib takes an uInt per call).
uint32_t Adler32(std::string_view bytes) {
  uLong sum = adler32(0L, Z_NULL, 0);
  while (!bytes.empty()) {
    const size_t n = std::min<size_t>(bytes.size(), 1u << 30);
    sum = adler32(sum, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(n));
    bytes.remove_prefix(n);
  }
  return static_cast<uint32_t>(sum);
}

std::string WithoutLastByte(std::string_view bytes) {
  return std::string(bytes.substr(0, bytes.empty() ? 0 : bytes.size() - 1));
}

}  // namespace

ContentFields BuildContentFields(std::string_view message) {
  const std::vector<Line> lines = FindLines(message);
  const size_t header_count = HeaderLineCount(message, lines);
  ContentFields fields;
  // bytes(content.header): the header's lines with their breaks. With no
  // header pymap's get_raw slices [0:-1], which drops the last byte.
  fields.header = header_count > 0 ? std::string(message.substr(0, lines[header_count - 1].next))
                                   : WithoutLastByte(message);
  msgpack::sbuffer full;
  Packer full_packer(&full);
  PackContent(full_packer, message, lines, 0);
  fields.full_json.assign(full.data(), full.size());
  msgpack::sbuffer header;
  Packer header_packer(&header);
  const Lines header_lines = Lines(lines).first(header_count);
  PackHeader(header_packer, header_lines, FindFields(message, header_lines));
  fields.header_json.assign(header.data(), header.size());
  return fields;
}

std::string EmailIdOf(std::string_view message) {
  // pymap hashes bytes(content): from the header's first line to the end
  // of the body's last. When the body has no line (the blank line that
  // ends the header is the last line: "Subject: x\r\n", or "") get_raw
  // slices [0:-1] and the last byte is not hashed.
  bool no_body = false;
  FindHeaderLines(message, &no_body);
  const uint32_t sum = Adler32(no_body ? WithoutLastByte(message) : message);
  char id[10];
  std::snprintf(id, sizeof(id), "M%08x", sum);
  return id;
}

std::vector<std::string> ThreadKeysOf(std::string_view message) {
  bool ends_message = false;
  const std::vector<Line> header = FindHeaderLines(message, &ends_message);
  const std::vector<Field> fields = FindFields(message, header);
  // ParsedHeaders: the first field of a name, but none when parsing any
  // field of that name raises IndexError.
  auto text_of = [&](std::string_view name) -> std::optional<std::string> {
    std::optional<std::string> first;
    for (const Field& field : fields) {
      if (field.name != name) continue;
      const std::string value = UnfoldedValue(message, field);
      std::optional<std::string> text = RegistryName(message, field) == "message-id"
                                            ? MessageIdText(value)
                                            : UnstructuredText(value);
      if (!text) return std::nullopt;
      if (!first) first = std::move(text);
    }
    return first;
  };
  const std::optional<std::string> subject = text_of("subject");
  const std::string subject_key = subject && !subject->empty() ? NormalizeSubject(*subject) : "";
  std::vector<std::string> ids;
  if (auto text = text_of("message-id")) ids = MessageIds(*text, false);
  for (std::string_view name : {"in-reply-to", "references"}) {
    if (auto text = text_of(name)) {
      for (std::string& id : MessageIds(*text, true)) ids.push_back(std::move(id));
    }
  }
  std::vector<std::string> keys;
  for (const std::string& id : ids) {
    std::string key = id;
    key += '\0';
    key += subject_key;
    keys.push_back(std::move(key));
  }
  return keys;
}

}  // namespace mailfs::redis
