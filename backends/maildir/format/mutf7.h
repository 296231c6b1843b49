// IMAP modified UTF-7 (RFC 3501 section 5.1.3), the encoding Dovecot uses
// for mailbox names on disk, and the rule mailfs applies to a name level it
// finds on disk, which may have been written by Dovecot (mUTF-7) or by pymap
// (raw UTF-8). See MAILDIR.md, "What mailfs does where the two disagree".
//
//   "Grüße & Co"  <->  "Gr&APwA3w-e &- Co"
//   "amp&sand"    <->  "amp&-sand"
//
// Pure functions over bytes; safe to call from any thread.
#pragma once

#include <string>
#include <string_view>

#include "src/mailbox_name.h"  // IsValidUtf8
#include "src/status.h"

namespace mailfs::maildir {

// `text` for a log line or an error detail: printable ASCII and valid UTF-8
// as they are, '\\' and every other byte as \xHH.
std::string PrintableForLog(std::string_view text);

namespace mutf7 {

// Encodes UTF-8 text as modified UTF-7, exactly as Dovecot's
// imap_utf8_to_utf7() does: printable ASCII (0x20..0x7e) stays as it is,
// '&' becomes "&-", every run of other characters (controls included)
// becomes '&' + base64 of its UTF-16BE with ',' for '/' and no padding + '-'.
// Fails with kInvalidName when the input is not valid UTF-8 or holds NUL.
Result<std::string> Encode(std::string_view utf8);

// Decodes modified UTF-7 to UTF-8. Only the canonical form that Encode()
// produces is accepted, so Encode(*Decode(x)) == x whenever Decode succeeds;
// anything else is kInvalidName, never a crash:
//   - bytes outside 0x20..0x7e ("Gr\xc3\xbc\xc3\x9f" is UTF-8, not mUTF-7);
//   - '&' with no closing '-', a base64 run that is empty or has an odd
//     number of bytes, non-zero pad bits or an unneeded extra character;
//   - a run that encodes printable ASCII or NUL, or an unpaired surrogate
//     (Dovecot refuses the same);
//   - two runs back to back ("&AOQ-&AOQ-"; the encoder would have made one).
Result<std::string> Decode(std::string_view mutf7);

// How a level found on disk was read by DecodeLevel().
enum class LevelEncoding {
  kAscii,    // printable ASCII without '&': the same in every dialect
  kMutf7,    // pure ASCII holding '&' that decoded as modified UTF-7
  kUtf8,     // has bytes >= 0x80 and is valid UTF-8 (pymap, or Dovecot :UTF-8)
  kLiteral,  // pure ASCII that is not valid mUTF-7 ("Tom & Jerry"): taken as is
};

struct DecodedLevel {
  std::string text;  // UTF-8
  LevelEncoding encoding;
};

// The rule from MAILDIR.md for one level of a mailbox name found on disk: a
// level with bytes >= 0x80 is UTF-8; a pure-ASCII level is mUTF-7, and
// literal if it does not decode. A level with bytes >= 0x80 that is not valid
// UTF-8 (".bad\xffname", which Dovecot renames) is kInvalidName.
Result<DecodedLevel> DecodeLevel(std::string_view level);

}  // namespace mutf7
}  // namespace mailfs::maildir
