// Maildir message file names, as Dovecot and pymap write them
// (MAILDIR.md section 4):
//
//   1795767212.M105402P15256.vm,S=4745,W=4826:2,FS      Dovecot, in cur/
//   1795767212.M105402P15256.vm,S=4745,W=4826           Dovecot, in new/
//   1795767504.M659807P21092Q4.vm:2,FSc                 pymap
//   1795770000.Mext1P999.otherhost                      any other writer
//
// <base>[:<info>]. The base name, everything before the first ':', is the
// message's identity: dovecot-uidlist lines are matched to files by it, and
// it holds the optional ",S=<size>" and ",W=<size with CRLF line ends>"
// fields. The flags are in the info after the *last* ':' when it starts with
// "2,": letters up to the next ',' (D \Draft, F \Flagged, R \Answered,
// S \Seen, T \Deleted, a-z keyword letters from dovecot-keywords); letters
// we do not know and anything from the next ',' on are kept on a rewrite.
//
// Pure functions over names; no file I/O. Safe to call from any thread.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "src/flags.h"
#include "src/status.h"

namespace mailfs::maildir {

// The flags a file name can carry: system flags as SystemFlag bits, and
// keyword letters as bits (bit 0 = 'a' ... bit 25 = 'z'). What a letter
// means is per mailbox, in dovecot-keywords.
struct NameFlags {
  uint8_t system = 0;     // SystemFlag bits
  uint32_t keywords = 0;  // bit i = letter 'a' + i

  bool Has(SystemFlag flag) const { return (system & static_cast<uint8_t>(flag)) != 0; }
  void Add(SystemFlag flag) { system |= static_cast<uint8_t>(flag); }
  bool HasLetter(char letter) const;
  void AddLetter(char letter);  // letter must be 'a'..'z' (asserted)
  // "DFRSTab...": the letters in ASCII order, as in a file name.
  std::string Letters() const;

  friend bool operator==(const NameFlags&, const NameFlags&) = default;
};

// A message file name taken apart.
struct FileName {
  std::string base;               // before the first ':'; never empty
  std::optional<uint64_t> size;   // ",S=<digits>" in the base name
  std::optional<uint64_t> vsize;  // ",W=<digits>" in the base name
  // True when the last ':' is followed by "2,"; otherwise the name has no
  // flags (no ':' at all, or ":1,...", ":foo": MAILDIR.md section 4).
  bool has_flags = false;
  NameFlags flags;
  std::string unknown_flags;  // other characters among the flags, in order ("P")
  std::string extra;          // from the ',' after the flags to the end (",XYZ"), or ""
};

// Why a name cannot be a message file in cur/ or new/, or std::nullopt when
// it can: empty, longer than NAME_MAX (255), "." or "..", starting with '.'
// (Dovecot skips dot files there), holding '/' or NUL, or holding CR or LF
// (a dovecot-uidlist line could not store it).
std::optional<std::string_view> UnsafeFileNameReason(std::string_view name);

// Parses a name found in cur/ or new/, or stored in dovecot-uidlist (where
// Dovecot keeps only the base name and pymap the whole name):
//   "1795767729.M428183P24191.vm,S=324,W=334:2,Fbc"
//     -> base "1795767729.M428183P24191.vm,S=324,W=334", size 324, vsize 334,
//        flags \Flagged + keyword letters b and c
//   "1795767504.M519962P21092Q1.vm:2,S" -> no sizes, \Seen
//   "1795767728.M768069P24192.vm,S=329,W=343" (new/) -> has_flags false
// kInvalidArgument when the name is unsafe (above) or its base name is empty
// (":2,S").
Result<FileName> ParseFileName(std::string_view name);

// The base name: everything before the first ':' ("" if the name starts
// with ':').
std::string_view BaseName(std::string_view name);

// The name with its flags replaced by `flags`, as Dovecot's
// maildir_filename_flags_set() writes it: everything before the last ':' is
// kept, then ":2," and the flag letters in ASCII order, with unknown letters
// kept where they sort and the text after a second ',' kept at the end:
//   ("1.M1P1.h,S=5:2,PS", \Flagged) -> "1.M1P1.h,S=5:2,FP"
//   ("1.M1P1.h",          none)     -> "1.M1P1.h:2,"
//   ("1.M1P1.h:2,S,XY",   \Seen \Answered) -> "1.M1P1.h:2,RS,XY"
// A name whose last ':' is not followed by "2," (":1,abc") loses that part.
// kInvalidArgument if the name is not safe or the result would be too long.
Result<std::string> WithFlags(std::string_view name, const NameFlags& flags);

// What a new Dovecot-style name is made of. secs/usecs: the time of saving;
// Dovecot bumps usecs to keep names unique within a process (the caller's
// job here).
struct NewFileNameParts {
  uint64_t secs = 0;
  uint32_t usecs = 0;
  uint64_t pid = 0;
  std::string_view hostname;
  uint64_t size = 0;   // bytes of the file (S=)
  uint64_t vsize = 0;  // bytes with CRLF line ends (W=); see VirtualSize()
};

// "<secs>.M<usecs>P<pid>.<host>,S=<size>,W=<vsize>", the base name Dovecot
// gives a message it saves (no info part: a new/ file has none). The host
// name is made safe the way Python's mailbox module (pymap) does it, '/' ->
// "\057" and ':' -> "\072", and further ',' -> "\054" (so a host name cannot
// fake a ",S=" field) and control characters -> "\ooo"; an empty host name
// becomes "localhost".
std::string NewFileName(const NewFileNameParts& parts);

// The host name as it appears in NewFileName().
std::string SanitizeHostname(std::string_view hostname);

// The order in which Dovecot hands out UIDs to files not yet in the
// uidlist (maildir_filename_sort_cmp): by the leading decimal seconds, then
// the number after the first 'M' of the part between the first and second
// '.', then by the rest of the base name, byte by byte.
//   1795767729.M52051P24247.vm  <  1795767729.M127003P24262.vm
// (usecs are not zero-padded, so plain string order is wrong). Dovecot
// compares usecs only when both names have them, which is not a total
// order; here a name without usecs counts as usecs 0. Names that Dovecot
// finds equal ("01.x" and "1.x") are ordered by their whole base name, so
// only names with the same base name have equal keys.
struct FileNameSortKey {
  uint64_t secs = 0;   // saturates at UINT64_MAX
  uint64_t usecs = 0;  // saturates at UINT64_MAX
  std::string rest;    // the base name after the leading digits
  std::string base;    // the whole base name, the last tie-breaker

  friend std::strong_ordering operator<=>(const FileNameSortKey&, const FileNameSortKey&) = default;
  friend bool operator==(const FileNameSortKey&, const FileNameSortKey&) = default;
};
FileNameSortKey SortKeyOf(std::string_view name);

// The size of `bytes` with CRLF line ends: every LF not preceded by CR
// counts twice. This is W= and what IMAP reports as RFC822.SIZE.
uint64_t VirtualSize(std::string_view bytes);

// VirtualSize() over data that arrives in pieces (a message being written).
// A value type; not synchronized.
class VirtualSizeCounter {
 public:
  void Add(std::string_view chunk);
  uint64_t size() const { return size_; }
  uint64_t vsize() const { return vsize_; }

 private:
  uint64_t size_ = 0;
  uint64_t vsize_ = 0;
  bool last_was_cr_ = false;  // a CR at the end of the previous chunk
};

}  // namespace mailfs::maildir
