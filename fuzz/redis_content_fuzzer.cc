// libFuzzer target for what mailfs stores beside a message in pymap's
// content hash (backends/redis/format/content.h). For any bytes:
//   - `header` is the header block (the lines of header-json, breaks
//     included), or the message minus its last byte when there is no header
//     (pymap's [0:-1]);
//   - full-json and header-json are msgpack of the documented shape, and
//     full-json starts with header-json; every [start, end, next] in them
//     has start <= end <= next <= the message size, each list of lines is
//     contiguous, and the top-level header and body lines together cover the
//     message from 0 to its end;
//   - the email id is "M" + 8 lowercase hex digits, the adler32 of the
//     message, or of all but its last byte when the body has no line;
//   - every thread key is "<id>\0<subject>", valid UTF-8, with the same
//     normalised subject (no leading, trailing or doubled blanks).
// Aborts on any mismatch. Run with scripts/fuzz (seeds: the messages of
// tests/data/redis-content/ and of the pymap-redis fixture).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <msgpack.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/redis/format/content.h"

namespace {

using mailfs::redis::ContentFields;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "redis_content_fuzzer: %s\n", what);
  std::abort();
}

struct Line {
  uint64_t start;
  uint64_t end;
  uint64_t next;
};

// The member `key` of a msgpack map whose keys are all str; aborts when
// the object is no such map or lacks the key.
const msgpack::object& Member(const msgpack::object& map, std::string_view key) {
  if (map.type != msgpack::type::MAP) Fail("expected a map");
  for (uint32_t i = 0; i < map.via.map.size; ++i) {
    const msgpack::object_kv& kv = map.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR) Fail("a map key is not a str");
    if (std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == key) return kv.val;
  }
  Fail("a map lacks a member");
}

const msgpack::object& Array(const msgpack::object& object) {
  if (object.type != msgpack::type::ARRAY) Fail("expected an array");
  return object;
}

// A `lines` array: [[start, end, next], ...], contiguous, within the message.
std::vector<Line> CheckLines(const msgpack::object& object, size_t size) {
  std::vector<Line> lines;
  const msgpack::object& array = Array(object);
  for (uint32_t i = 0; i < array.via.array.size; ++i) {
    const msgpack::object& triple = Array(array.via.array.ptr[i]);
    if (triple.via.array.size != 3) Fail("a line is not [start, end, next]");
    uint64_t values[3];
    for (int j = 0; j < 3; ++j) {
      if (triple.via.array.ptr[j].type != msgpack::type::POSITIVE_INTEGER)
        Fail("a line offset is not an unsigned integer");
      values[j] = triple.via.array.ptr[j].via.u64;
    }
    const Line line{values[0], values[1], values[2]};
    if (!(line.start <= line.end && line.end <= line.next && line.next <= size))
      Fail("a line is not start <= end <= next <= size");
    if (!lines.empty() && lines.back().next != line.start) Fail("lines are not contiguous");
    lines.push_back(line);
  }
  return lines;
}

// header-json: {"lines": L, "folded": [[base64 name, L], ...]}, each
// field's lines a run of the header's.
std::vector<Line> CheckHeader(const msgpack::object& header, size_t size) {
  if (header.type != msgpack::type::MAP || header.via.map.size != 2) Fail("header is no 2-map");
  std::vector<Line> lines = CheckLines(Member(header, "lines"), size);
  const msgpack::object& folded = Array(Member(header, "folded"));
  for (uint32_t i = 0; i < folded.via.array.size; ++i) {
    const msgpack::object& field = Array(folded.via.array.ptr[i]);
    if (field.via.array.size != 2 || field.via.array.ptr[0].type != msgpack::type::STR)
      Fail("a folded field is not [name, lines]");
    const std::vector<Line> field_lines = CheckLines(field.via.array.ptr[1], size);
    if (field_lines.empty()) Fail("a folded field has no line");
    if (lines.empty() || field_lines.front().start < lines.front().start ||
        field_lines.back().next > lines.back().next) {
      Fail("a folded field lies outside the header");
    }
  }
  return lines;
}

// full-json: {"header": H, "body": {"lines": L, "content_type": str,
// "nested": [content, ...]}}; returns the header's and the body's lines.
std::pair<std::vector<Line>, std::vector<Line>> CheckContent(const msgpack::object& content,
                                                             size_t size) {
  if (content.type != msgpack::type::MAP || content.via.map.size != 2) Fail("content is no 2-map");
  std::vector<Line> header = CheckHeader(Member(content, "header"), size);
  const msgpack::object& body = Member(content, "body");
  if (body.type != msgpack::type::MAP || body.via.map.size != 3) Fail("body is no 3-map");
  std::vector<Line> body_lines = CheckLines(Member(body, "lines"), size);
  if (Member(body, "content_type").type != msgpack::type::STR) Fail("content_type is no str");
  const msgpack::object& nested = Array(Member(body, "nested"));
  for (uint32_t i = 0; i < nested.via.array.size; ++i) {
    auto [part_header, part_body] = CheckContent(nested.via.array.ptr[i], size);
    // A part is a run of its parent's body lines.
    const std::vector<Line>& first = part_header.empty() ? part_body : part_header;
    const std::vector<Line>& last = part_body.empty() ? part_header : part_body;
    if (first.empty()) continue;  // a part with no lines ("--b" then "--b")
    if (!part_header.empty() && !part_body.empty() &&
        part_header.back().next != part_body.front().start) {
      Fail("a part's header and body lines are not contiguous");
    }
    if (body_lines.empty() || first.front().start < body_lines.front().start ||
        last.back().next > body_lines.back().next) {
      Fail("a nested part lies outside its parent's body");
    }
  }
  return {std::move(header), std::move(body_lines)};
}

msgpack::object_handle Unpack(const std::string& bytes, const char* what) {
  try {
    std::size_t offset = 0;
    msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size(), offset);
    if (offset != bytes.size()) Fail(what);
    return handle;
  } catch (const std::exception&) {
    Fail(what);
  }
}

// RFC 1950's adler32, written out rather than taken from zlib as content.cc
// does.
uint32_t Adler32(std::string_view bytes) {
  uint32_t a = 1;
  uint32_t b = 0;
  for (char c : bytes) {
    a = (a + static_cast<unsigned char>(c)) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

bool IsBlank(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Strict UTF-8: no overlong forms, surrogates or code points past U+10FFFF.
bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= text.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(text[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view message(reinterpret_cast<const char*>(data), size);
  const ContentFields built = mailfs::redis::BuildContentFields(message);

  // full-json is {"header": H, "body": B}: H starts after the fixmap byte
  // and the 7 bytes of the "header" key, and is header-json.
  if (std::string_view(built.full_json).substr(0, 8) != "\x82\xa6header" ||
      std::string_view(built.full_json).substr(8, built.header_json.size()) != built.header_json) {
    Fail("full-json does not start with header-json");
  }
  const msgpack::object_handle full =
      Unpack(built.full_json, "full-json is not one msgpack object");
  const msgpack::object_handle header =
      Unpack(built.header_json, "header-json is not one msgpack object");
  if (full.get().type != msgpack::type::MAP || header.get().type != msgpack::type::MAP)
    Fail("full-json or header-json is not a map");
  const std::vector<Line> header_lines = CheckHeader(header.get(), size);
  auto [top_header, top_body] = CheckContent(full.get(), size);
  if (top_header.size() != header_lines.size()) Fail("full-json and header-json differ");

  // The message's lines: the header's, then the body's, from 0 to the end.
  std::vector<Line> all = top_header;
  all.insert(all.end(), top_body.begin(), top_body.end());
  if (all.empty() || all.front().start != 0 || all.back().next != size)
    Fail("the lines do not cover the message");
  for (size_t i = 1; i < all.size(); ++i) {
    if (all[i - 1].next != all[i].start) Fail("header and body lines are not contiguous");
  }
  if (all.back().end != all.back().next) Fail("the last line has a line break");

  // `header`: the header block, or all but the last byte without one.
  const std::string_view expected_header = header_lines.empty()
                                               ? message.substr(0, size == 0 ? 0 : size - 1)
                                               : message.substr(0, header_lines.back().next);
  if (built.header != expected_header) Fail("header is not the header block");

  // The email id: adler32 of the message, without its last byte when the
  // body has no line.
  const std::string id = mailfs::redis::EmailIdOf(message);
  if (id.size() != 9 || id[0] != 'M') Fail("email id is not M + 8 hex");
  for (char c : std::string_view(id).substr(1)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      Fail("email id is not M + 8 lowercase hex");
  }
  const std::string_view hashed =
      top_body.empty() ? message.substr(0, size == 0 ? 0 : size - 1) : message;
  char expected_id[10];
  std::snprintf(expected_id, sizeof(expected_id), "M%08x", Adler32(hashed));
  if (id != expected_id) Fail("email id is not the adler32 pymap takes");

  // Thread keys: "<msg-id>\0<subject>", one subject for all.
  const std::vector<std::string> keys = mailfs::redis::ThreadKeysOf(message);
  std::optional<std::string_view> subject;  // into keys
  for (const std::string& key : keys) {
    if (!IsValidUtf8(key)) Fail("a thread key is not valid UTF-8");
    const size_t close = key.find('>');
    if (key.empty() || key[0] != '<' || close == std::string::npos || close + 1 >= key.size() ||
        key[close + 1] != '\0') {
      Fail("a thread key is not <id>\\0subject");
    }
    for (char c : std::string_view(key).substr(0, close)) {
      if (IsBlank(c)) Fail("a thread key's message id holds a blank");
    }
    const std::string_view rest = std::string_view(key).substr(close + 2);
    if (subject && *subject != rest) Fail("thread keys differ in their subject");
    subject = rest;
  }
  if (subject) {
    if (!subject->empty() && (subject->front() == ' ' || subject->back() == ' '))
      Fail("the subject has leading or trailing blanks");
    for (size_t i = 0; i < subject->size(); ++i) {
      const char c = (*subject)[i];
      if (IsBlank(c) && c != ' ') Fail("the subject holds a blank other than a space");
      if (c == ' ' && i > 0 && (*subject)[i - 1] == ' ') Fail("the subject holds doubled blanks");
    }
  }
  return 0;
}
