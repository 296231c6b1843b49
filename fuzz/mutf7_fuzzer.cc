// libFuzzer target for backends/maildir/format/mutf7 and the name mapping
// of backends/maildir/format/layout built on it. Aborts when:
//   - Decode(Encode(x)) != x for valid UTF-8 x without NUL;
//   - Decode accepts something Encode would not write (Encode(Decode(y)) != y);
//   - DecodeLevel's result does not match the level it read;
//   - a mailbox directory does not map back to its name, or a directory
//     read from disk does not map back to itself in the dialect it shows.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "backends/maildir/format/layout.h"
#include "backends/maildir/format/mutf7.h"
#include "src/mailbox_name.h"

namespace {

using namespace mailfs;
using namespace mailfs::maildir;

[[noreturn]] void Fail(const char* what, std::string_view input) {
  std::fprintf(stderr, "mutf7_fuzzer: %s: '%s'\n", what, PrintableForLog(input).c_str());
  std::abort();
}

void Check(bool ok, const char* what, std::string_view input) {
  if (!ok) Fail(what, input);
}

bool IsPrintableAscii(std::string_view text) {
  for (unsigned char c : text) {
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}

void CheckCodec(std::string_view input) {
  bool utf8 = IsValidUtf8(input) && input.find('\0') == std::string_view::npos;
  Result<std::string> encoded = mutf7::Encode(input);
  Check(encoded.ok() == utf8, "Encode accepts exactly UTF-8 without NUL", input);
  if (encoded.ok()) {
    Check(IsPrintableAscii(*encoded), "Encode wrote a byte outside printable ASCII", input);
    Result<std::string> back = mutf7::Decode(*encoded);
    Check(back.ok(), "Decode refused what Encode wrote", *encoded);
    Check(*back == input, "Decode(Encode(x)) != x", input);
  }
  Result<std::string> decoded = mutf7::Decode(input);
  if (decoded.ok()) {
    Check(IsValidUtf8(*decoded), "Decode wrote invalid UTF-8", input);
    Result<std::string> again = mutf7::Encode(*decoded);
    Check(again.ok() && *again == input, "Decode accepted a non-canonical form", input);
  } else {
    Check(decoded.status().code() == ErrorCode::kInvalidName, "Decode error code", input);
  }

  Result<mutf7::DecodedLevel> level = mutf7::DecodeLevel(input);
  if (!level.ok()) {
    Check(!IsValidUtf8(input), "DecodeLevel refused valid UTF-8", input);
    return;
  }
  switch (level->encoding) {
    case mutf7::LevelEncoding::kAscii:
      Check(level->text == input && IsPrintableAscii(input) &&
                input.find('&') == std::string_view::npos,
            "kAscii level", input);
      break;
    case mutf7::LevelEncoding::kMutf7:
      Check(decoded.ok() && level->text == *decoded, "kMutf7 level", input);
      break;
    case mutf7::LevelEncoding::kUtf8:
    case mutf7::LevelEncoding::kLiteral:
      Check(level->text == input && !decoded.ok(), "kUtf8/kLiteral level", input);
      break;
  }
}

void CheckLayout(std::string_view input, Layout layout) {
  // As a mailbox name: its directory maps back to it.
  for (NameEncoding encoding : {NameEncoding::kMutf7, NameEncoding::kUtf8}) {
    Result<std::string> dir = MailboxDirectory(input, layout, encoding);
    if (!dir.ok()) continue;
    Result<std::string> normal = ValidateMailboxName(input, layout);
    Check(normal.ok(), "MailboxDirectory accepted an invalid name", input);
    Result<DecodedMailboxName> back = MailboxNameOfDirectory(*dir, layout);
    Check(back.ok(), "directory of a name does not decode", *dir);
    if (!(layout == Layout::kFs && IsInbox(*normal) && !dir->empty())) {
      Check(back->name == *normal, "directory maps back to another name", *dir);
    }
  }
  // As a directory found on disk: it maps back to itself in the dialect its
  // levels show, when it could exist (entries are at most 255 bytes).
  Result<DecodedMailboxName> found = MailboxNameOfDirectory(input, layout);
  if (!found.ok()) return;
  Check(IsInbox(found->name) == (input.empty() || input == "INBOX"), "INBOX from elsewhere", input);
  if (input.size() > 255 || IsInbox(found->name)) return;
  if (found->utf8_levels == 0) {
    Result<std::string> dir = MailboxDirectory(found->name, layout, NameEncoding::kMutf7);
    Check(dir.ok() && *dir == input, "mUTF-7 directory does not map back", input);
  }
  if (found->mutf7_levels == 0) {
    Result<std::string> dir = MailboxDirectory(found->name, layout, NameEncoding::kUtf8);
    Check(dir.ok() && *dir == input, "UTF-8 directory does not map back", input);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  CheckCodec(input);
  CheckLayout(input, Layout::kMaildirPlusPlus);
  CheckLayout(input, Layout::kFs);
  return 0;
}
