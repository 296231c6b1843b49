#include "backends/redis/format/header_value.h"

#include <iconv.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <initializer_list>
#include <unordered_map>
#include <utility>
#include <vector>

#include "src/mailbox_name.h"

// Each Take*/Get* function below is named after the Python function it
// ports (get_fws, get_comment, ...) and follows its order of tests, so the
// two can be read side by side. Python's parser reports "not this
// construct" with HeaderParseError, which its callers catch: here that is a
// false or Parse::kFail return that leaves the input untouched. Errors from
// Python's own bugs on some malformed inputs (IndexError, mostly) escape
// every handler: that is Parse::kCrash, and the header then counts as
// absent, which is what pymap makes of IndexError (ParsedHeaders); the
// rarer others (AttributeError, UnboundLocalError, ValueError) make
// pymap's APPEND fail, so there is nothing to match.

namespace mailfs::redis {
namespace {

enum class Parse { kOk, kFail, kCrash };

constexpr std::string_view kSpecials = "()<>@,:;.\\\"[]";
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool In(std::string_view set, char c) { return set.find(c) != std::string_view::npos; }
bool IsWsp(char c) { return c == ' ' || c == '\t'; }
bool IsCfwsLeader(char c) { return IsWsp(c) || c == '('; }
bool IsSpecial(char c) { return In(kSpecials, c); }
bool IsAtomEnd(char c) { return IsSpecial(c) || IsWsp(c); }
// '.', '"' and '(' do not end a phrase (obs-phrase).
bool IsPhraseEnd(char c) { return IsSpecial(c) && c != '.' && c != '"' && c != '('; }
bool IsTokenEnd(char c) { return (IsSpecial(c) && c != '.') || In("/?=", c) || IsWsp(c); }
bool IsAttributeEnd(char c) { return IsTokenEnd(c) || In("*'%", c); }
bool IsExtendedAttributeEnd(char c) { return IsAttributeEnd(c) && c != '%'; }
bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}
// str.isspace() of one character of a header value. A byte above 0x7f is a
// surrogate escape in Python, never a space.
bool IsPySpace(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == ' ' || (u >= '\t' && u <= '\r') || (u >= 0x1c && u <= 0x1f);
}
char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
std::string AsciiLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = AsciiLower(c);
  return out;
}
std::string_view PyStrip(std::string_view text) {
  while (!text.empty() && IsPySpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsPySpace(text.back())) text.remove_suffix(1);
  return text;
}
bool HasNonAscii(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) { return (c & 0x80) != 0; });
}

// Code point -> UTF-8 (only U+0000..U+00FF are needed: latin-1).
void AppendLatin1(std::string* out, unsigned char byte) {
  if (byte < 0x80) {
    *out += static_cast<char>(byte);
  } else {
    *out += static_cast<char>(0xC0 | (byte >> 6));
    *out += static_cast<char>(0x80 | (byte & 0x3F));
  }
}

// ---------------------------------------------------------------------------
// Charsets: bytes.decode(charset, 'surrogateescape'). Undecodable bytes stay
// raw (SanitizeUtf8 later does what _sanitize does with their escapes).

// encodings.normalize_encoding after codecs' lower-casing: runs of
// characters other than ASCII letters, digits and '.' become one '_'.
std::string NormalizeEncoding(std::string_view name) {
  std::string out;
  bool punct = false;
  for (char c : name) {
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (alnum || c == '.') {
      if (punct && !out.empty()) out += '_';
      out += AsciiLower(c);
      punct = false;
    } else {
      punct = true;
    }
  }
  return out;
}

bool IsOneOf(std::string_view name, std::initializer_list<std::string_view> names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

enum class Charset { kRaw, kLatin1, kOther, kUnknown };

// The three codecs Python resolves without help (encodings/aliases.py) are
// handled here; any other name goes to iconv, whose names mostly agree
// ("//" would be an iconv option: no codec name of Python's has it).
Charset ClassifyCharset(std::string_view name) {
  if (name.find_first_of(std::string_view("\0/", 2)) != std::string_view::npos ||
      HasNonAscii(name)) {
    return Charset::kUnknown;
  }
  const std::string norm = NormalizeEncoding(name);
  if (IsOneOf(
          norm,
          {"utf_8",          "utf8",  "u8",       "utf",    "cp65001",        "utf8_ucs2",
           "utf8_ucs4",      "ascii", "us_ascii", "646",    "ansi_x3.4_1968", "ansi_x3.4_1986",
           "ansi_x3_4_1968", "cp367", "csascii",  "ibm367", "iso646_us",      "iso_646.irv_1991",
           "iso_ir_6",       "us"})) {
    // UTF-8 decoding with escapes gives the bytes back; ASCII escapes
    // every byte above 0x7f: both are the raw bytes in this text model.
    return Charset::kRaw;
  }
  if (IsOneOf(norm, {"latin_1", "latin1", "latin", "l1", "8859", "cp819", "csisolatin1", "ibm819",
                     "iso8859", "iso8859_1", "iso_8859_1", "iso_8859_1_1987", "iso_ir_100"})) {
    return Charset::kLatin1;
  }
  return norm.empty() ? Charset::kUnknown : Charset::kOther;
}

std::optional<std::string> DecodeWithIconv(std::string_view bytes, std::string_view charset) {
  const std::string name(PyStrip(charset));
  iconv_t cd = iconv_open("UTF-8", name.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) return std::nullopt;
  std::string out;
  std::string input(bytes);
  char* in = input.data();
  size_t in_left = input.size();
  char buffer[1024];
  while (in_left > 0) {
    char* o = buffer;
    size_t o_left = sizeof(buffer);
    const size_t r = iconv(cd, &in, &in_left, &o, &o_left);
    const int error = errno;
    out.append(buffer, static_cast<size_t>(o - buffer));
    if (r == static_cast<size_t>(-1) && error != E2BIG && in_left > 0) {
      // EILSEQ, EINVAL: keep the byte, as surrogateescape does, and go on.
      out += *in;
      ++in;
      --in_left;
    }
  }
  char* o = buffer;
  size_t o_left = sizeof(buffer);
  iconv(cd, nullptr, nullptr, &o, &o_left);  // the end of a shift state
  out.append(buffer, static_cast<size_t>(o - buffer));
  iconv_close(cd);
  return out;
}

// nullopt: Python raises LookupError (unknown codec) or UnicodeEncodeError
// (a name with escaped bytes); its callers then decode as ASCII, i.e. keep
// the raw bytes.
std::optional<std::string> DecodeCharset(std::string_view bytes, std::string_view charset) {
  switch (ClassifyCharset(charset)) {
    case Charset::kRaw:
      return std::string(bytes);
    case Charset::kLatin1: {
      std::string out;
      for (char c : bytes) AppendLatin1(&out, static_cast<unsigned char>(c));
      return out;
    }
    case Charset::kOther:
      return DecodeWithIconv(bytes, charset);
    case Charset::kUnknown:
      break;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// RFC 2047 (email/_encoded_words.py).

std::string DecodeQ(std::string_view encoded) {
  std::string out;
  for (size_t i = 0; i < encoded.size(); ++i) {
    const char c = encoded[i];
    if (c == '=' && i + 2 < encoded.size() && IsHex(encoded[i + 1]) && IsHex(encoded[i + 2])) {
      out += static_cast<char>(HexValue(encoded[i + 1]) * 16 + HexValue(encoded[i + 2]));
      i += 2;
    } else {
      out += c == '_' ? ' ' : c;
    }
  }
  return out;
}

// binascii.a2b_base64 without strict mode: characters outside the alphabet
// are skipped, a complete pad ends the data. nullopt where it raises.
std::optional<std::string> A2bBase64(std::string_view in) {
  std::string out;
  int quad_pos = 0;
  int pads = 0;
  unsigned left = 0;
  for (char ch : in) {
    if (ch == '=') {
      if (quad_pos >= 2 && quad_pos + ++pads >= 4) return out;
      continue;
    }
    int v;
    if (ch >= 'A' && ch <= 'Z') {
      v = ch - 'A';
    } else if (ch >= 'a' && ch <= 'z') {
      v = ch - 'a' + 26;
    } else if (ch >= '0' && ch <= '9') {
      v = ch - '0' + 52;
    } else if (ch == '+') {
      v = 62;
    } else if (ch == '/') {
      v = 63;
    } else {
      continue;
    }
    pads = 0;
    switch (quad_pos) {
      case 0:
        quad_pos = 1;
        left = static_cast<unsigned>(v);
        break;
      case 1:
        quad_pos = 2;
        out += static_cast<char>((left << 2) | (static_cast<unsigned>(v) >> 4));
        left = static_cast<unsigned>(v) & 0x0f;
        break;
      case 2:
        quad_pos = 3;
        out += static_cast<char>((left << 4) | (static_cast<unsigned>(v) >> 2));
        left = static_cast<unsigned>(v) & 0x03;
        break;
      default:
        quad_pos = 0;
        out += static_cast<char>((left << 6) | static_cast<unsigned>(v));
        left = 0;
        break;
    }
  }
  if (quad_pos != 0) return std::nullopt;
  return out;
}

// decode_b tries strict decoding, then lenient decoding with and without
// extra padding; all of that comes to this. A length one more than a
// multiple of four cannot be decoded: the text is kept as it is.
std::string DecodeB(std::string_view encoded) {
  std::string padded(encoded);
  padded += "==";
  std::optional<std::string> decoded = A2bBase64(padded);
  return decoded ? *decoded : std::string(encoded);
}

enum class Ew { kOk, kNotEw, kInvalid };  // HeaderParseError / _InvalidEwError

// get_encoded_word: "=?charset?q-or-b?text?=" at the start of v.
Ew TakeEncodedWord(std::string_view& v, std::string* text) {
  if (!v.starts_with("=?")) return Ew::kNotEw;
  std::string_view body = v.substr(2);
  const size_t end = body.find("?=");
  if (end == std::string_view::npos) return Ew::kNotEw;
  std::string tok(body.substr(0, end));
  std::string_view rest = body.substr(end + 2);
  // "=?utf-8?q?=41...": the "?=" found was the start of a "=XX" escape.
  if (rest.size() > 1 && IsHex(rest[0]) && IsHex(rest[1]) &&
      std::count(tok.begin(), tok.end(), '?') < 2) {
    const size_t end2 = rest.find("?=");
    tok += "?=";
    if (end2 == std::string_view::npos) {
      tok += rest;
      rest = {};
    } else {
      tok += rest.substr(0, end2);
      rest = rest.substr(end2 + 2);
    }
  }
  if (std::count(tok.begin(), tok.end(), '?') != 2) return Ew::kInvalid;
  const size_t q1 = tok.find('?');
  const size_t q2 = tok.find('?', q1 + 1);
  std::string_view charset = std::string_view(tok).substr(0, q1);
  charset = charset.substr(0, charset.find('*'));  // RFC 2231 language
  const std::string cte = AsciiLower(std::string_view(tok).substr(q1 + 1, q2 - q1 - 1));
  const std::string_view encoded = std::string_view(tok).substr(q2 + 1);
  std::string bytes;
  if (cte == "q") {
    bytes = DecodeQ(encoded);
  } else if (cte == "b") {
    bytes = DecodeB(encoded);
  } else {
    return Ew::kInvalid;
  }
  // A NUL in the name makes the codec lookup raise ValueError, which
  // get_encoded_word reports as an invalid word.
  if (charset.find('\0') != std::string_view::npos) return Ew::kInvalid;
  std::optional<std::string> decoded = DecodeCharset(bytes, charset);
  *text = decoded ? std::move(*decoded) : std::move(bytes);
  v = rest;
  return Ew::kOk;
}

// rfc2047_matcher.search: "=?" [^?]* "?" [qQbB] "?" .*? "?=" somewhere.
bool HasEncodedWordShape(std::string_view tok) {
  for (size_t i = tok.find("=?"); i != std::string_view::npos; i = tok.find("=?", i + 1)) {
    const size_t q = tok.find('?', i + 2);
    if (q == std::string_view::npos) return false;
    if (q + 2 < tok.size() && In("qQbB", tok[q + 1]) && tok[q + 2] == '?') {
      // A later start could only end at a later "?=".
      return tok.find("?=", q + 3) != std::string_view::npos;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------
// Lexical pieces.

// get_fws: a blank and every str.isspace() character after it.
std::string_view TakeFws(std::string_view& v) {
  size_t n = 0;
  while (n < v.size() && IsPySpace(v[n])) ++n;
  std::string_view ws = v.substr(0, n);
  v.remove_prefix(n);
  return ws;
}

// _get_ptext_to_endchars: up to a blank or an unescaped end char, with
// quoted pairs unescaped. The caller makes sure v does not start with a
// blank (Python fails on that with UnboundLocalError).
std::string TakePtext(std::string_view& v, std::string_view endchars) {
  size_t fragment = 0;
  while (fragment < v.size() && !IsWsp(v[fragment])) ++fragment;
  std::string out;
  bool escape = false;
  size_t pos = 0;
  for (; pos < fragment; ++pos) {
    const char c = v[pos];
    if (c == '\\') {
      if (escape) {
        escape = false;
      } else {
        escape = true;
        continue;
      }
    }
    if (escape) {
      escape = false;
    } else if (In(endchars, c)) {
      break;
    }
    out += c;
  }
  v.remove_prefix(pos);
  return out;
}

// Comment.quote.
std::string QuoteCommentText(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\\' || c == '(' || c == ')') out += '\\';
    out += c;
  }
  return out;
}

// quote_string.
std::string QuoteString(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out + "\"";
}

// get_comment, v[0] == '('. Returns str(comment): an unclosed comment is
// closed. Nesting is counted rather than recursed, so "((((..." cannot
// exhaust the stack (Python's recursion gives up at about 1000).
std::string TakeComment(std::string_view& v) {
  std::string out = "(";
  v.remove_prefix(1);
  size_t depth = 1;
  while (depth > 0) {
    if (v.empty()) {
      out.append(depth, ')');
      break;
    }
    if (v[0] == ')') {
      out += ')';
      v.remove_prefix(1);
      --depth;
    } else if (IsWsp(v[0])) {
      out += TakeFws(v);
    } else if (v[0] == '(') {
      out += '(';
      v.remove_prefix(1);
      ++depth;
    } else {
      out += QuoteCommentText(TakePtext(v, "()"));
    }
  }
  return out;
}

// get_cfws; returns its str().
std::string TakeCfws(std::string_view& v) {
  std::string out;
  while (!v.empty() && IsCfwsLeader(v[0])) {
    if (IsWsp(v[0])) {
      out += TakeFws(v);
    } else {
      out += TakeComment(v);
    }
  }
  return out;
}

// get_bare_quoted_string, v[0] == '"'. Returns the content (its .value):
// quoted pairs unescaped, encoded words decoded and the blanks between two
// of them dropped.
std::string TakeBareQuotedString(std::string_view& v) {
  enum class Kind { kText, kFws, kEw };
  std::vector<std::pair<Kind, std::string>> pieces;
  v.remove_prefix(1);
  if (!v.empty() && v[0] == '"') pieces.emplace_back(Kind::kText, TakePtext(v, "\""));
  while (!v.empty() && v[0] != '"') {
    if (IsWsp(v[0])) {
      pieces.emplace_back(Kind::kFws, std::string(TakeFws(v)));
    } else if (v.starts_with("=?")) {
      std::string text;
      std::string_view w = v;
      const bool valid_ew = TakeEncodedWord(w, &text) == Ew::kOk;
      if (valid_ew) {
        v = w;
        if (pieces.size() > 1 && pieces.back().first == Kind::kFws &&
            pieces[pieces.size() - 2].first == Kind::kEw) {
          pieces.back().second.clear();
        }
        pieces.emplace_back(Kind::kEw, std::move(text));
      } else {
        pieces.emplace_back(Kind::kText, TakePtext(v, "\""));
      }
    } else {
      pieces.emplace_back(Kind::kText, TakePtext(v, "\""));
    }
  }
  if (!v.empty()) v.remove_prefix(1);
  std::string out;
  for (const auto& piece : pieces) out += piece.second;
  return out;
}

struct QuotedString {
  std::string str;      // str(): CFWS kept, the content re-quoted
  std::string content;  // .stripped_value
  std::string value;    // .value: a CFWS counts as one space
};

// get_quoted_string; the caller has checked that a '"' comes first (after
// optional CFWS).
QuotedString TakeQuotedString(std::string_view& v) {
  QuotedString qs;
  if (!v.empty() && IsCfwsLeader(v[0])) {
    qs.str += TakeCfws(v);
    qs.value += ' ';
  }
  qs.content = TakeBareQuotedString(v);
  qs.str += QuoteString(qs.content);
  qs.value += qs.content;
  if (!v.empty() && IsCfwsLeader(v[0])) {
    qs.str += TakeCfws(v);
    qs.value += ' ';
  }
  return qs;
}

// A run of characters that are not `is_end`, at least one.
template <typename IsEnd>
bool TakeRun(std::string_view& v, IsEnd is_end, std::string* out) {
  size_t n = 0;
  while (n < v.size() && !is_end(v[n])) ++n;
  if (n == 0) return false;
  out->assign(v.substr(0, n));
  v.remove_prefix(n);
  return true;
}

// get_atom; out gets its str() (an encoded word decoded).
bool GetAtom(std::string_view& v, std::string* out) {
  std::string_view w = v;
  std::string s;
  if (!w.empty() && IsCfwsLeader(w[0])) s += TakeCfws(w);
  if (!w.empty() && IsAtomEnd(w[0])) return false;
  std::string text;
  std::string_view x = w;
  if (w.starts_with("=?") && TakeEncodedWord(x, &text) == Ew::kOk) {
    w = x;
  } else if (!TakeRun(w, IsAtomEnd, &text)) {
    return false;
  }
  s += text;
  if (!w.empty() && IsCfwsLeader(w[0])) s += TakeCfws(w);
  v = w;
  *out = std::move(s);
  return true;
}

// get_word: atom or quoted-string.
bool GetWord(std::string_view& v, std::string* out) {
  if (v.empty()) return false;
  std::string_view w = v;
  std::string s;
  if (IsCfwsLeader(w[0])) s += TakeCfws(w);
  if (w.empty()) return false;
  if (w[0] == '"') {
    s += TakeQuotedString(w).str;
  } else if (IsSpecial(w[0])) {
    return false;
  } else {
    std::string atom;
    if (!GetAtom(w, &atom)) return false;
    s += atom;
  }
  v = w;
  *out = std::move(s);
  return true;
}

// get_phrase, for a v that starts with neither a phrase end nor ';'.
// Returns its str().
std::string TakePhrase(std::string_view& v) {
  std::string out;
  std::string word;
  if (GetWord(v, &word)) out += word;
  while (!v.empty() && !IsPhraseEnd(v[0])) {
    if (v[0] == '.') {
      out += '.';
      v.remove_prefix(1);
    } else if (GetWord(v, &word)) {
      out += word;
    } else if (IsCfwsLeader(v[0])) {
      out += TakeCfws(v);
    } else {
      // Unreachable: what is left here always starts a word. Python would
      // raise; consuming the character keeps the loop finite.
      out += v[0];
      v.remove_prefix(1);
    }
  }
  return out;
}

// get_invalid_parameter: everything up to the next ';'.
void TakeInvalidParameter(std::string_view& v) {
  while (!v.empty() && v[0] != ';') {
    if (IsPhraseEnd(v[0])) {
      v.remove_prefix(1);
    } else {
      TakePhrase(v);
    }
  }
}

// ---------------------------------------------------------------------------
// Content-Type.

// get_token: [CFWS] ttext [CFWS]. out gets its str(), ttext the text.
bool GetToken(std::string_view& v, std::string* out, std::string* ttext) {
  std::string_view w = v;
  std::string s;
  if (!w.empty() && IsCfwsLeader(w[0])) s += TakeCfws(w);
  if (!TakeRun(w, IsTokenEnd, ttext)) return false;
  s += *ttext;
  if (!w.empty() && IsCfwsLeader(w[0])) s += TakeCfws(w);
  v = w;
  *out = std::move(s);
  return true;
}

// get_attribute: [CFWS] attrtext [CFWS].
bool GetAttribute(std::string_view& v, std::string* attrtext) {
  std::string_view w = v;
  if (!w.empty() && IsCfwsLeader(w[0])) TakeCfws(w);
  if (!TakeRun(w, IsAttributeEnd, attrtext)) return false;
  if (!w.empty() && IsCfwsLeader(w[0])) TakeCfws(w);
  v = w;
  return true;
}

// A parameter value as get_value returns it.
struct ValueToken {
  std::string stripped;  // Value.stripped_value: what the parameter's value is
  std::string value;     // .value of the token inside: the RFC 2231 charset
};

// get_value: [CFWS] (quoted-string / extended attribute).
bool GetValue(std::string_view& v, ValueToken* out) {
  if (v.empty()) return false;
  std::string_view w = v;
  std::string lead;
  if (IsCfwsLeader(w[0])) {
    TakeCfws(w);
    lead = " ";
  }
  if (w.empty()) return false;
  if (w[0] == '"') {
    QuotedString qs = TakeQuotedString(w);
    out->stripped = qs.content;
    out->value = lead + qs.value;
  } else {
    std::string attrtext;
    if (!TakeRun(w, IsExtendedAttributeEnd, &attrtext)) return false;
    std::string trail;
    if (!w.empty() && IsCfwsLeader(w[0])) {
      TakeCfws(w);
      trail = " ";
    }
    out->stripped = attrtext;
    out->value = lead + attrtext + trail;
  }
  v = w;
  return true;
}

// Section numbers as decimal strings without leading zeros, so that any
// length compares right.
std::string SectionNumber(std::string_view digits) {
  while (digits.size() > 1 && digits[0] == '0') digits.remove_prefix(1);
  return std::string(digits);
}
bool SectionLess(const std::string& a, const std::string& b) {
  return a.size() != b.size() ? a.size() < b.size() : a < b;
}

struct Param {
  std::string name;
  std::string section = "0";
  bool extended = false;
  std::string charset = "us-ascii";
  std::string value;           // Parameter.param_value
  bool value_crashes = false;  // reading it raises IndexError (an empty Value)
};

// get_parameter: attribute [section] ["*"] [CFWS] "=" value, with Python's
// recovery for quoted RFC 2231 values.
Parse GetParameter(std::string_view& in, Param* p) {
  std::string_view v = in;
  std::string attrtext;
  if (!GetAttribute(v, &attrtext)) return Parse::kFail;
  p->name = std::string(PyStrip(attrtext));
  if (v.empty() || v[0] == ';') {  // a name without a value
    in = v;
    return Parse::kOk;
  }
  if (v[0] == '*') {
    if (v.size() > 1 && v[1] >= '0' && v[1] <= '9') {  // get_section
      size_t n = 1;
      while (n < v.size() && v[n] >= '0' && v[n] <= '9') ++n;
      p->section = SectionNumber(v.substr(1, n - 1));
      v.remove_prefix(n);
    }
    if (v.empty()) return Parse::kFail;
    if (v[0] == '*') {
      p->extended = true;
      v.remove_prefix(1);
    }
  }
  if (v.empty()) return Parse::kCrash;  // value[0] != '=' on ""
  if (v[0] != '=') return Parse::kFail;
  v.remove_prefix(1);
  if (!v.empty() && IsCfwsLeader(v[0])) TakeCfws(v);
  const bool initial = p->section == "0";

  // name*="utf-8''..." (quotes around an extended value): Python parses
  // the quoted content again as if it were not quoted.
  std::optional<std::string_view> remainder;
  std::string inner;
  if (p->extended && !v.empty() && v[0] == '"') {
    std::string_view after = v;
    inner = TakeQuotedString(after).content;
    bool semi_valid = false;
    std::string_view x = inner;
    std::string text;
    if (initial) {
      if (!inner.empty() && inner[0] == '\'') {
        semi_valid = true;
      } else {
        if (!TakeRun(x, IsAttributeEnd, &text)) return Parse::kFail;
        semi_valid = !x.empty() && x[0] == '\'';
      }
    } else {
      semi_valid = TakeRun(x, IsExtendedAttributeEnd, &text) && x.empty();
    }
    if (semi_valid) {
      remainder = after;
      v = inner;
    }
  }

  std::optional<ValueToken> token;
  if (v.empty() || v[0] != '\'') {
    ValueToken t;
    if (!GetValue(v, &t)) return Parse::kFail;
    token = std::move(t);
  }
  if (!p->extended || !initial) {
    if (v.empty() || v[0] != '\'') {
      p->value = token->stripped;
      in = remainder ? *remainder : v;
      return Parse::kOk;
    }
  }
  if (v.empty()) {  // charset and language missing: the token is the value
    p->value = token->stripped;
    in = remainder ? *remainder : v;
    return Parse::kOk;
  }
  if (token) p->charset = token->value;
  if (v[0] != '\'') return Parse::kFail;
  v.remove_prefix(1);
  if (!v.empty() && v[0] != '\'') {
    std::string lang;
    if (!TakeRun(v, IsAttributeEnd, &lang)) return Parse::kFail;
    if (v.empty() || v[0] != '\'') return Parse::kFail;
  }
  if (!v.empty()) v.remove_prefix(1);
  if (remainder) {
    // The rest of the quoted content, taken as quoted-string text.
    std::string joined;
    bool any = false;
    while (!v.empty()) {
      any = true;
      if (IsWsp(v[0])) {
        TakeFws(v);
        joined += ' ';
      } else if (v[0] == '"') {
        joined += '"';
        v.remove_prefix(1);
      } else {
        joined += TakePtext(v, "\"");
      }
    }
    p->value = std::move(joined);
    p->value_crashes = !any;
    in = *remainder;
    return Parse::kOk;
  }
  ValueToken value;
  if (!GetValue(v, &value)) return Parse::kFail;
  p->value = std::move(value.stripped);
  in = v;
  return Parse::kOk;
}

// parse_mime_parameters: parameter *(";" parameter), skipping what does
// not parse.
Parse ParseMimeParameters(std::string_view v, std::vector<Param>* params) {
  while (!v.empty()) {
    std::string_view w = v;
    Param p;
    const Parse r = GetParameter(w, &p);
    if (r == Parse::kCrash) return r;
    if (r == Parse::kOk) {
      params->push_back(std::move(p));
      v = w;
    } else {
      if (IsCfwsLeader(v[0])) TakeCfws(v);
      if (v.empty()) return Parse::kOk;
      if (v[0] != ';') TakeInvalidParameter(v);
    }
    // Junk after a good parameter is dropped; the parameter stays.
    if (!v.empty() && v[0] != ';') TakeInvalidParameter(v);
    if (!v.empty()) v.remove_prefix(1);
  }
  return Parse::kOk;
}

// urllib.parse.unquote_to_bytes.
std::string PercentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && IsHex(text[i + 1]) && IsHex(text[i + 2])) {
      out += static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// One section of an RFC 2231 value: percent-decoded, then decoded in the
// charset of the first section.
std::optional<std::string> DecodeExtendedValue(std::string_view value, std::string_view charset) {
  if (HasNonAscii(value)) {
    // str.encode('utf-8') fails on the escapes: urllib.parse.unquote with
    // latin-1 decodes the ASCII runs, leaves the rest.
    if (value.find('%') == std::string_view::npos) return std::string(value);
    std::string out;
    size_t i = 0;
    while (i < value.size()) {
      const bool ascii = (value[i] & 0x80) == 0;
      size_t j = i;
      while (j < value.size() && ((value[j] & 0x80) == 0) == ascii) ++j;
      if (ascii) {
        for (char c : PercentDecode(value.substr(i, j - i))) {
          AppendLatin1(&out, static_cast<unsigned char>(c));
        }
      } else {
        out += value.substr(i, j - i);
      }
      i = j;
    }
    return out;
  }
  std::string bytes = PercentDecode(value);
  // A NUL in the charset name raises ValueError, which nothing catches.
  if (charset.find('\0') != std::string_view::npos) return std::nullopt;
  std::optional<std::string> decoded = DecodeCharset(bytes, charset);
  return decoded ? std::move(*decoded) : std::move(bytes);
}

// MimeParameters.params: one (name, value) per distinct name, in order of
// first appearance; RFC 2231 sections sorted and joined, a repeated plain
// parameter ignored.
std::optional<std::vector<std::pair<std::string, std::string>>> CombineParams(
    const std::vector<Param>& params) {
  // The parameters of each name, names in order of first appearance.
  std::vector<std::string> names;
  std::vector<std::vector<const Param*>> groups;
  std::unordered_map<std::string, size_t> group_of;
  for (const Param& p : params) {
    auto [it, added] = group_of.emplace(p.name, names.size());
    if (added) {
      names.push_back(p.name);
      groups.emplace_back();
    }
    groups[it->second].push_back(&p);
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string& name = names[g];
    std::vector<const Param*>& parts = groups[g];
    std::stable_sort(parts.begin(), parts.end(), [](const Param* a, const Param* b) {
      return SectionLess(a->section, b->section);
    });
    const Param& first = *parts[0];
    if (!first.extended && parts.size() > 1 && parts[1]->section == "0") {
      parts.erase(parts.begin() + 1, parts.end());
    }
    std::string value;
    size_t i = 0;
    for (const Param* part : parts) {
      if (part->section != std::to_string(i) && !part->extended) continue;
      ++i;
      if (part->value_crashes) return std::nullopt;
      if (part->extended) {
        std::optional<std::string> decoded = DecodeExtendedValue(part->value, first.charset);
        if (!decoded) return std::nullopt;
        value += *decoded;
      } else {
        value += part->value;
      }
    }
    out.emplace_back(name, std::move(value));
  }
  return out;
}

}  // namespace

std::optional<ContentTypeValue> ParseContentType(std::string_view value) {
  ContentTypeValue ct;
  std::string text;
  std::vector<Param> params;
  bool has_params = false;
  // _find_mime_parameters: what follows an invalid type is kept as
  // phrases, up to the parameters.
  auto find_parameters = [&](std::string_view v) {
    while (!v.empty() && v[0] != ';') {
      if (IsPhraseEnd(v[0])) {
        text += v[0];
        v.remove_prefix(1);
      } else {
        text += TakePhrase(v);
      }
    }
    if (v.empty()) return Parse::kOk;
    text += ';';
    has_params = true;
    return ParseMimeParameters(v.substr(1), &params);
  };

  Parse parsed = Parse::kOk;
  std::string_view v = value;
  std::string token_text;
  std::string ttext;
  if (value.empty()) {
    // ContentType() with a defect: str "" and text/plain.
  } else if (!GetToken(v, &token_text, &ttext)) {
    parsed = find_parameters(value);
  } else {
    text += token_text;
    if (v.empty() || v[0] != '/') {
      if (!v.empty()) parsed = find_parameters(v);
    } else {
      ct.maintype = AsciiLower(PyStrip(ttext));
      text += '/';
      v.remove_prefix(1);
      if (!GetToken(v, &token_text, &ttext)) {
        parsed = find_parameters(v);  // maintype stays, subtype is "plain"
      } else {
        text += token_text;
        ct.subtype = AsciiLower(PyStrip(ttext));
        if (!v.empty() && v[0] != ';') {
          ct.maintype = "text";
          ct.subtype = "plain";
          parsed = find_parameters(v);
        } else if (!v.empty()) {
          text += ';';
          has_params = true;
          parsed = ParseMimeParameters(v.substr(1), &params);
        }
      }
    }
  }
  if (parsed == Parse::kCrash) return std::nullopt;
  if (has_params) {
    auto combined = CombineParams(params);
    if (!combined) return std::nullopt;
    std::string rendered;
    for (const auto& [name, param_value] : *combined) {
      if (&name != &combined->front().first) rendered += "; ";
      rendered += name;
      if (!param_value.empty()) rendered += "=" + QuoteString(param_value);
    }
    if (!rendered.empty()) text += " " + rendered;
    for (const auto& [name, param_value] : *combined) {
      if (AsciiLower(SanitizeUtf8(name)) == "boundary") {
        ct.boundary = SanitizeUtf8(param_value);
      }
    }
    if (HasNonAscii(ct.boundary)) ct.boundary.clear();  // .encode('ascii') fails
  }
  ct.text = SanitizeUtf8(text);
  return ct;
}

std::string UnstructuredText(std::string_view value) {
  // get_unstructured: blanks, encoded words and the words between them.
  enum class Kind { kFws, kText, kEw };
  std::vector<std::pair<Kind, std::string>> tokens;
  std::string_view v = value;
  while (!v.empty()) {
    if (IsWsp(v[0])) {
      tokens.emplace_back(Kind::kFws, std::string(TakeFws(v)));
      continue;
    }
    bool valid_ew = true;
    if (v.starts_with("=?")) {
      std::string text;
      std::string_view w = v;
      const Ew ew = TakeEncodedWord(w, &text);
      if (ew == Ew::kInvalid) {
        valid_ew = false;
      } else if (ew == Ew::kOk) {
        v = w;
        // The blanks between two encoded words are dropped.
        const bool have_ws = tokens.empty() || tokens.back().first == Kind::kFws;
        if (have_ws && tokens.size() > 1 && tokens[tokens.size() - 2].first == Kind::kEw) {
          tokens.back().second.clear();
        }
        tokens.emplace_back(Kind::kEw, std::move(text));
        continue;
      }
    }
    size_t n = 0;
    while (n < v.size() && !IsWsp(v[n])) ++n;
    // An encoded word glued to the text before it is split off.
    if (valid_ew && HasEncodedWordShape(v.substr(0, n))) n = v.find("=?");
    if (n == 0) n = 2;  // unreachable (see get_unstructured); keeps the loop finite
    tokens.emplace_back(Kind::kText, std::string(v.substr(0, n)));
    v.remove_prefix(n);
  }
  std::string out;
  for (const auto& token : tokens) out += token.second;
  return SanitizeUtf8(out);
}

namespace {

// ---------------------------------------------------------------------------
// Message-ID (get_msg_id and the address pieces it uses).

// get_dot_atom_text: atext *("." atext).
bool GetDotAtomText(std::string_view& v, std::string* out) {
  if (v.empty() || IsAtomEnd(v[0])) return false;
  std::string_view w = v;
  std::string s;
  bool last_dot = false;
  while (!w.empty() && !IsAtomEnd(w[0])) {
    std::string atext;
    TakeRun(w, IsAtomEnd, &atext);
    s += atext;
    last_dot = false;
    if (!w.empty() && w[0] == '.') {
      s += '.';
      w.remove_prefix(1);
      last_dot = true;
    }
  }
  if (last_dot) return false;
  v = w;
  *out = std::move(s);
  return true;
}

// get_obs_local_part: words, dots, backslashes and CFWS.
Parse GetObsLocalPart(std::string_view& v, std::string* out) {
  enum class Kind { kDot, kOther, kCfws };
  std::vector<Kind> kinds;
  std::string_view w = v;
  std::string s;
  while (!w.empty() && (w[0] == '\\' || !IsPhraseEnd(w[0]))) {
    if (w[0] == '.' || w[0] == '\\') {
      kinds.push_back(w[0] == '.' ? Kind::kDot : Kind::kOther);
      s += w[0];
      w.remove_prefix(1);
      continue;
    }
    std::string word;
    if (GetWord(w, &word)) {
      kinds.push_back(Kind::kOther);
      s += word;
    } else if (IsCfwsLeader(w[0])) {
      kinds.push_back(Kind::kCfws);
      s += TakeCfws(w);
    } else {
      return Parse::kFail;
    }
  }
  // The leading/trailing dot checks index [0] and [1] (or [-2]).
  if (kinds.empty()) return Parse::kCrash;
  if (kinds[0] == Kind::kCfws && kinds.size() < 2) return Parse::kCrash;
  v = w;
  *out = std::move(s);
  return Parse::kOk;
}

// get_no_fold_literal: "[" dtext "]".
Parse GetNoFoldLiteral(std::string_view& v, std::string* out) {
  if (v.empty() || v[0] != '[') return Parse::kFail;
  std::string_view w = v.substr(1);
  if (w.empty() || IsWsp(w[0])) return Parse::kCrash;  // get_dtext on ""
  std::string dtext = TakePtext(w, "[]");
  if (w.empty() || w[0] != ']') return Parse::kFail;
  v = w.substr(1);
  *out = "[" + dtext + "]";
  return Parse::kOk;
}

// get_domain_literal: [CFWS] "[" [FWS] dtext [FWS] "]" [CFWS]. Where the
// input ends inside the literal, Python puts a defect object among the
// tokens and then fails on it (AttributeError): no msg-id.
Parse GetDomainLiteral(std::string_view& v, std::string* out) {
  std::string_view w = v;
  std::string s;
  if (IsCfwsLeader(w[0])) s += TakeCfws(w);
  if (w.empty() || w[0] != '[') return Parse::kFail;
  w.remove_prefix(1);
  if (w.empty()) return Parse::kCrash;
  s += '[';
  if (IsWsp(w[0])) s += TakeFws(w);
  if (w.empty()) return Parse::kCrash;  // get_dtext on ""
  s += TakePtext(w, "[]");
  if (!w.empty() && IsWsp(w[0])) s += TakeFws(w);
  if (w.empty()) return Parse::kCrash;
  if (w[0] != ']') return Parse::kFail;
  s += ']';
  w.remove_prefix(1);
  if (!w.empty() && IsCfwsLeader(w[0])) s += TakeCfws(w);
  v = w;
  *out = std::move(s);
  return Parse::kOk;
}

// get_dot_atom: [CFWS] (encoded word / dot-atom-text) [CFWS].
bool GetDotAtom(std::string_view& v, std::string* out) {
  std::string_view w = v;
  std::string s;
  if (IsCfwsLeader(w[0])) s += TakeCfws(w);
  std::string text;
  std::string_view x = w;
  if (w.starts_with("=?") && TakeEncodedWord(x, &text) == Ew::kOk) {
    w = x;
  } else if (!GetDotAtomText(w, &text)) {
    return false;
  }
  s += text;
  if (!w.empty() && IsCfwsLeader(w[0])) s += TakeCfws(w);
  v = w;
  *out = std::move(s);
  return true;
}

// get_domain: dot-atom / domain-literal / obs-domain.
Parse GetDomain(std::string_view& v, std::string* out) {
  if (v.empty()) return Parse::kCrash;  // value[0] on ""
  std::string_view w = v;
  std::string s;
  if (IsCfwsLeader(w[0])) s += TakeCfws(w);
  if (w.empty()) return Parse::kFail;
  std::string t;
  if (w[0] == '[') {
    const Parse r = GetDomainLiteral(w, &t);
    if (r != Parse::kOk) return r;
    v = w;
    *out = s + t;
    return Parse::kOk;
  }
  if (!GetDotAtom(w, &t) && !GetAtom(w, &t)) return Parse::kFail;
  if (!w.empty() && w[0] == '@') return Parse::kFail;
  s += t;
  while (!w.empty() && w[0] == '.') {
    s += '.';
    w.remove_prefix(1);
    if (!GetAtom(w, &t)) return Parse::kFail;
    s += t;
  }
  v = w;
  *out = std::move(s);
  return Parse::kOk;
}

// get_msg_id: [CFWS] "<" id-left "@" id-right ">" [CFWS].
Parse GetMsgId(std::string_view& v, std::string* out) {
  std::string_view w = v;
  std::string s;
  if (!w.empty() && IsCfwsLeader(w[0])) s += TakeCfws(w);
  if (w.empty() || w[0] != '<') return Parse::kFail;
  s += '<';
  w.remove_prefix(1);
  std::string t;
  if (!GetDotAtomText(w, &t)) {
    const Parse r = GetObsLocalPart(w, &t);
    if (r != Parse::kOk) return r;
  }
  s += t;
  if (w.empty() || w[0] != '@') {
    if (!w.empty() && w[0] == '>') {
      s += '>';
      w.remove_prefix(1);
    }
    v = w;
    *out = std::move(s);
    return Parse::kOk;
  }
  s += '@';
  w.remove_prefix(1);
  if (!GetDotAtomText(w, &t)) {
    Parse r = GetNoFoldLiteral(w, &t);
    if (r == Parse::kCrash) return r;
    if (r == Parse::kFail) {
      r = GetDomain(w, &t);
      if (r != Parse::kOk) return r;
    }
  }
  s += t;
  if (!w.empty() && w[0] == '>') w.remove_prefix(1);
  s += '>';
  if (!w.empty() && IsCfwsLeader(w[0])) s += TakeCfws(w);
  v = w;
  *out = std::move(s);
  return Parse::kOk;
}

// Python's UTF-8 decoder: how many bytes at text[i] (not valid UTF-8 there)
// one U+FFFD replaces.
size_t InvalidUtf8Length(std::string_view text, size_t i) {
  const auto b = static_cast<unsigned char>(text[i]);
  size_t need;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    return 1;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= text.size()) return text.size() - i;  // a valid start cut short by the end
    const auto c = static_cast<unsigned char>(text[i + k]);
    if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return k;
  }
  return need + 1;
}

}  // namespace

std::optional<std::string> MessageIdText(std::string_view value) {
  std::string_view v = value;
  std::string text;
  switch (GetMsgId(v, &text)) {
    case Parse::kOk:
      return SanitizeUtf8(text);
    case Parse::kFail:
      return UnstructuredText(value);
    case Parse::kCrash:
      break;
  }
  return std::nullopt;
}

std::string SanitizeUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    uint32_t code_point;
    if (NextUtf8CodePoint(text, &pos, &code_point)) {
      out.append(text.substr(start, pos - start));
    } else {
      pos = start + InvalidUtf8Length(text, start);
      out += kReplacement;
    }
  }
  return out;
}

}  // namespace mailfs::redis
