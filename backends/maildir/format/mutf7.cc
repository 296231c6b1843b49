#include "backends/maildir/format/mutf7.h"

#include <fmt/format.h>

#include <cstdint>
#include <vector>

namespace mailfs::maildir {
namespace {

constexpr std::string_view kBase64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

bool IsPrintableAscii(unsigned char c) { return c >= 0x20 && c < 0x7f; }

// The value of a modified-base64 character, or -1.
int Base64Value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == ',') return 63;
  return -1;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Appends "&<base64 of the UTF-16BE bytes>-".
void AppendBase64Run(const std::vector<uint8_t>& utf16, std::string* out) {
  out->push_back('&');
  size_t i = 0;
  for (; i + 3 <= utf16.size(); i += 3) {
    uint32_t v = (utf16[i] << 16) | (utf16[i + 1] << 8) | utf16[i + 2];
    out->push_back(kBase64[(v >> 18) & 0x3F]);
    out->push_back(kBase64[(v >> 12) & 0x3F]);
    out->push_back(kBase64[(v >> 6) & 0x3F]);
    out->push_back(kBase64[v & 0x3F]);
  }
  size_t rest = utf16.size() - i;
  if (rest == 1) {
    uint32_t v = utf16[i] << 16;
    out->push_back(kBase64[(v >> 18) & 0x3F]);
    out->push_back(kBase64[(v >> 12) & 0x3F]);
  } else if (rest == 2) {
    uint32_t v = (utf16[i] << 16) | (utf16[i + 1] << 8);
    out->push_back(kBase64[(v >> 18) & 0x3F]);
    out->push_back(kBase64[(v >> 12) & 0x3F]);
    out->push_back(kBase64[(v >> 6) & 0x3F]);
  }
  out->push_back('-');
}

Status Invalid(std::string_view what, std::string_view input) {
  return Status::InvalidName(
      fmt::format("not modified UTF-7 ({}): '{}'", what, PrintableForLog(input)));
}

// Decodes the base64 run in text[begin, end) (between '&' and '-') and
// appends its characters as UTF-8.
Status DecodeBase64Run(std::string_view text, size_t begin, size_t end, std::string* out) {
  std::vector<uint8_t> bytes;
  uint32_t bits = 0;
  int nbits = 0;
  for (size_t i = begin; i < end; ++i) {
    int v = Base64Value(text[i]);
    if (v < 0) return Invalid("bad base64 character", text);
    bits = (bits << 6) | static_cast<uint32_t>(v);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      bytes.push_back(static_cast<uint8_t>(bits >> nbits));
      bits &= (1u << nbits) - 1;
    }
  }
  // Canonical form: fewer than 6 bits left over, and all of them zero.
  if (nbits >= 6 || bits != 0) return Invalid("bad base64 padding", text);
  if (bytes.empty() || bytes.size() % 2 != 0) return Invalid("odd UTF-16 length", text);
  for (size_t i = 0; i < bytes.size(); i += 2) {
    uint32_t unit = (bytes[i] << 8) | bytes[i + 1];
    uint32_t cp = unit;
    if (unit >= 0xD800 && unit <= 0xDBFF) {
      if (i + 2 >= bytes.size()) return Invalid("unpaired surrogate", text);
      uint32_t low = (bytes[i + 2] << 8) | bytes[i + 3];
      if (low < 0xDC00 || low > 0xDFFF) return Invalid("unpaired surrogate", text);
      cp = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
      i += 2;
    } else if (unit >= 0xDC00 && unit <= 0xDFFF) {
      return Invalid("unpaired surrogate", text);
    } else if (unit == 0) {
      // Dovecot refuses it too: a NUL cannot live in a C string name.
      return Invalid("encoded NUL", text);
    } else if (unit >= 0x20 && unit < 0x7f) {
      // Printable ASCII must stand for itself, so the encoding stays unique.
      return Invalid("encoded printable ASCII", text);
    }
    AppendUtf8(cp, out);
  }
  return Status::Ok();
}

}  // namespace

std::string PrintableForLog(std::string_view text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    unsigned char c = text[pos];
    size_t start = pos;
    uint32_t cp;
    if (c != '\\' && (IsPrintableAscii(c) || (c >= 0x80 && NextUtf8CodePoint(text, &pos, &cp)))) {
      if (pos == start) ++pos;
      out.append(text.substr(start, pos - start));
      continue;
    }
    out += fmt::format("\\x{:02x}", c);
    pos = start + 1;
  }
  return out;
}

namespace mutf7 {

Result<std::string> Encode(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size());
  std::vector<uint8_t> utf16;
  size_t pos = 0;
  while (pos < utf8.size()) {
    unsigned char c = utf8[pos];
    if (IsPrintableAscii(c)) {
      if (c == '&') {
        out += "&-";
      } else {
        out.push_back(static_cast<char>(c));
      }
      ++pos;
      continue;
    }
    // One run for all consecutive characters outside printable ASCII: the
    // decoder refuses two runs back to back.
    utf16.clear();
    while (pos < utf8.size() && !IsPrintableAscii(static_cast<unsigned char>(utf8[pos]))) {
      uint32_t cp;
      if (!NextUtf8CodePoint(utf8, &pos, &cp)) {
        return Status::InvalidName(
            fmt::format("mailbox name is not UTF-8: '{}'", PrintableForLog(utf8)));
      }
      if (cp == 0) return Status::InvalidName("NUL in mailbox name");
      if (cp >= 0x10000) {
        uint32_t v = cp - 0x10000;
        uint32_t high = 0xD800 + (v >> 10);
        uint32_t low = 0xDC00 + (v & 0x3FF);
        utf16.push_back(static_cast<uint8_t>(high >> 8));
        utf16.push_back(static_cast<uint8_t>(high & 0xFF));
        utf16.push_back(static_cast<uint8_t>(low >> 8));
        utf16.push_back(static_cast<uint8_t>(low & 0xFF));
      } else {
        utf16.push_back(static_cast<uint8_t>(cp >> 8));
        utf16.push_back(static_cast<uint8_t>(cp & 0xFF));
      }
    }
    AppendBase64Run(utf16, &out);
  }
  return out;
}

Result<std::string> Decode(std::string_view mutf7) {
  std::string out;
  out.reserve(mutf7.size());
  size_t pos = 0;
  bool after_run = false;  // the previous token was a base64 run
  while (pos < mutf7.size()) {
    unsigned char c = mutf7[pos];
    if (!IsPrintableAscii(c)) return Invalid("byte outside printable ASCII", mutf7);
    if (c != '&') {
      out.push_back(static_cast<char>(c));
      ++pos;
      after_run = false;
      continue;
    }
    size_t end = mutf7.find('-', pos + 1);
    if (end == std::string_view::npos) return Invalid("'&' without '-'", mutf7);
    if (end == pos + 1) {
      out.push_back('&');
      after_run = false;
    } else {
      if (after_run) return Invalid("two base64 runs back to back", mutf7);
      Status status = DecodeBase64Run(mutf7, pos + 1, end, &out);
      if (!status.ok()) return status;
      after_run = true;
    }
    pos = end + 1;
  }
  return out;
}

Result<DecodedLevel> DecodeLevel(std::string_view level) {
  bool ascii = true;
  for (unsigned char c : level) {
    if (c >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (!ascii) {
    if (!IsValidUtf8(level)) {
      return Status::InvalidName(
          fmt::format("name on disk is neither mUTF-7 nor UTF-8: '{}'", PrintableForLog(level)));
    }
    return DecodedLevel{std::string(level), LevelEncoding::kUtf8};
  }
  Result<std::string> decoded = Decode(level);
  if (!decoded.ok()) return DecodedLevel{std::string(level), LevelEncoding::kLiteral};
  bool has_amp = level.find('&') != std::string_view::npos;
  return DecodedLevel{std::move(decoded).value(),
                      has_amp ? LevelEncoding::kMutf7 : LevelEncoding::kAscii};
}

}  // namespace mutf7
}  // namespace mailfs::maildir
