// dovecot-uidlist: the file that gives every message of a Maildir folder
// its IMAP UID (shared/MAILDIR.md §2). Pure functions over bytes; reading
// and writing the file, and its dotlock, belong to the caller.
//
// Dovecot owns the format; pymap is a second writer. The two dialects,
// both version 3:
//
//   Dovecot: 3 V1795767730 N15 Gb8508f1db03d096b475e000083ecc375
//            1 :1795767728.M768069P24192.vm,S=329,W=343
//   pymap:   3 V2816037904 N6 G0a2c3a011f330bc75d7361da89e336aa<CR>
//            1 E(Mcc7e...0455) T(Tb0ff...6719) :1795767505.M800351P21092Q29.vm:2,S<CR>
//
// A message is identified by the base name (the line's name up to its first
// ':'); pymap also stores the ":2,<flags>" it had when the line was written.
// Both are kept as written, as are fields this code does not interpret.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "src/status.h"

namespace mailfs::maildir {

// The version Dovecot (since 1.1) and pymap write. Version 1 is still read.
inline constexpr int kUidlistVersion = 3;
// The highest UID a line may carry: Dovecot refuses (uint32_t)-1 ("UID too
// high"), so that the next UID still fits in 32 bits.
inline constexpr uint32_t kMaxUid = 0xfffffffe;

struct UidlistHeader {
  // As read: 1 or 3. Serialize always writes version 3.
  int version = kUidlistVersion;
  uint32_t uid_validity = 0;  // V; never 0
  // N as written. Not reliable: Dovecot appends lines without updating the
  // header, so use Uidlist::NextUid() for the UID to assign next.
  uint32_t next_uid = 1;
  // G: the mailbox GUID as written, 32 hex digits; empty when the file has
  // none (version 1, or a v3 header without G: Dovecot then adds one and
  // rewrites the file).
  std::string guid;
  // Every other header field, as written and in file order, e.g. "P..."
  // (POP3 UIDL format). Dovecot keeps them when it rewrites the file.
  std::vector<std::string> fields;

  friend bool operator==(const UidlistHeader&, const UidlistHeader&) = default;
};

struct UidlistRecord {
  uint32_t uid = 0;
  // The extension fields as written and in order, each "<A-Z><value>":
  // Dovecot's S<size> W<vsize> G<guid> P<uidl> O<order>, pymap's E(M<hex>)
  // (email id) and T(T<hex>) (thread id).
  std::vector<std::string> ext;
  // The file name as written after " :". Dovecot writes only the base name;
  // pymap the whole name with ":2,<flags>" as it was when written.
  std::string name;

  // The message identity: name up to its first ':'.
  std::string_view BaseName() const;

  friend bool operator==(const UidlistRecord&, const UidlistRecord&) = default;
};

// One accepted line of a uidlist as Uidlist::Scan hands it out: views into
// the bytes being parsed, valid only during the call.
struct UidlistLine {
  uint32_t uid = 0;
  std::span<const std::string_view> ext;  // as UidlistRecord::ext
  std::string_view name;                  // as UidlistRecord::name
  std::string_view BaseName() const { return name.substr(0, name.find(':')); }
};

// How many problems Parse lists; beyond that it adds one last entry that
// counts the rest.
inline constexpr size_t kMaxUidlistProblems = 100;

// A line the parser did not trust: skipped (or, for a bad extension field,
// the field dropped). line is 1-based; the header is line 1.
struct UidlistProblem {
  size_t line = 0;
  std::string reason;
};

// What Uidlist::Scan reads besides the lines.
struct UidlistScan {
  UidlistHeader header;
  // As Uidlist::problems (a duplicate base name included).
  std::vector<UidlistProblem> problems;
  uint32_t last_uid = 0;  // of the last accepted line; 0 without one
  size_t records = 0;     // accepted lines less those a later line superseded

  // As Uidlist::NextUid().
  uint32_t NextUid() const;
};

struct Uidlist {
  UidlistHeader header;
  // Strictly increasing UIDs, unique base names, valid names.
  std::vector<UidlistRecord> records;
  // Lines that were skipped or repaired (at most kMaxUidlistProblems + 1).
  // Any problem means the file must be rewritten rather than appended to
  // (UidlistWriteInputs::file_had_problems).
  std::vector<UidlistProblem> problems;

  // Parses a dovecot-uidlist (version 3, or version 1) written by Dovecot,
  // pymap or anyone else. A real line from a Dovecot store:
  //
  //   1 :1795767728.M768069P24192.vm,S=329,W=343
  //
  // and from pymap (CRLF line ends):
  //
  //   5 E(M5e6253279f9a4e0862b6a837c1c8391f) T(Tf98744063eaae787f6f9f00dd22a231a)
  //     :1795767505.M19929P21092Q12.vm:2,Sd        (one line in the file)
  //
  // Only an unusable header fails (kCorrupt): an empty file, an unterminated
  // first line, a version other than 1 or 3, a missing or zero V or N, an
  // unparseable V, N or G. Those files Dovecot deletes and recreates, with a
  // new UIDVALIDITY. Every other defect is reported in `problems` and the
  // line skipped, so that hostile bytes never become a record:
  //  - a UID that is not a number in 1..kMaxUid, or not above the previous
  //    accepted UID ("UIDs not ordered": Dovecot keeps the lines before it);
  //  - no " :" before the name, or a name that is empty, contains '/', NUL or
  //    CR, or whose base name is empty, "." or "..";
  //  - in a version 1 file, a UID not below the header's next UID;
  //  - the unterminated last line of a file (an append in progress or a
  //    crash: Dovecot does not read it either).
  // A later line with an already seen base name wins and the earlier record
  // is dropped, as Dovecot does ("Duplicate file entry"). An extension field
  // not starting with A-Z (or with control characters) is dropped from its
  // line, as Dovecot does ("Invalid extension record, removing").
  // Unlike Dovecot, which stops at the first broken line, later good lines
  // are kept. Lines end with LF or CRLF.
  static Result<Uidlist> Parse(std::string_view bytes);

  // Parse without collecting records, for a folder of a million messages
  // whose index is built as the file is read: `each` gets every accepted
  // line in file order. For a base name an earlier accepted line already
  // had, `each` returns that line's UID (the caller drops the earlier
  // record, as Parse does, and the problem is reported); else 0. The same
  // lines are accepted and the same problems reported as by Parse.
  // `each` is called as uint32_t(const UidlistLine&); a function_ref
  // rather than a std::function: no allocation, one indirect call a line.
  class LineCallback {
   public:
    template <typename F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, LineCallback>)
        LineCallback(F&& f)  // NOLINT: implicit, as a function_ref
        : object_(const_cast<void*>(static_cast<const void*>(&f))),
          call_([](void* object, const UidlistLine& line) -> uint32_t {
            return (*static_cast<std::remove_reference_t<F>*>(object))(line);
          }) {}
    uint32_t operator()(const UidlistLine& line) const { return call_(object_, line); }

   private:
    void* object_;
    uint32_t (*call_)(void*, const UidlistLine&);
  };
  static Result<UidlistScan> Scan(std::string_view bytes, LineCallback each);

  // The whole file as Dovecot writes it: "3 V<v> N<n> G<guid>" plus the
  // other header fields, then "<uid>[ <ext>...] :<name>" lines, LF line ends.
  // Parsing a file Dovecot wrote and serializing it gives back its bytes.
  // Writes header.next_uid as it is: to rewrite as Dovecot does, set it to
  // NextUid() first. kInvalidArgument if the result would not parse back to
  // the same records (a zero V or N, UIDs out of order or out of range, an
  // invalid name or field), so that nothing is ever written that a reader
  // would refuse; also without a valid guid: Dovecot would add one, but
  // pymap refuses a header without G. Give a file read without one (version
  // 1, or a v3 header without G) a new GUID, e.g. FormatUidlistGuid() of 16
  // random bytes.
  Result<std::string> Serialize() const;

  // The UID the next new message gets: max(N, last UID + 1), which is what
  // Dovecot reports as UIDNEXT. Only accepted lines count, so a hostile line
  // cannot use up the UID space.
  uint32_t NextUid() const;
};

// The lines to append at the end of an existing file for new messages (the
// append path of §2), LF line ends. Every UID must be at least `next_uid`
// (the file's NextUid(): UIDs are never reused) and increasing; names and
// fields must be valid. kInvalidArgument otherwise, with nothing formatted.
Result<std::string> FormatUidlistAppendLines(std::span<const UidlistRecord> records,
                                             uint32_t next_uid);

// What decides between appending new lines and rewriting the whole file
// (dovecot-uidlist.tmp + rename). The defaults describe a healthy file and
// a write that only adds lines.
struct UidlistWriteInputs {
  bool file_usable = true;  // false: missing, empty, or Parse failed
  int file_version = kUidlistVersion;
  bool file_has_guid = true;
  bool file_had_problems = false;  // Parse reported problems
  bool uid_validity_changes = false;
  bool ext_field_changes = false;   // a field of a line already in the file changes
  bool next_uid_goes_down = false;  // the N to write is below the file's N
  // For Dovecot's "compress" rule: lines in the file, lines being added,
  // and records the file holds after the write (new ones included).
  size_t records_in_file = 0;
  size_t new_records = 0;
  size_t live_records = 0;

  // file_* and records_in_file taken from a parsed file; live_records as
  // if every record stays and nothing is added: adjust both for the write.
  static UidlistWriteInputs For(const Uidlist& file);
};

// Why the whole file must be rewritten, or nullopt when appending the new
// lines is enough. Follows Dovecot (maildir_uidlist_want_recreate and
// _want_compress): rewrite when the file is unusable, not version 3, has no
// mailbox GUID, had broken, unordered or duplicate lines, when UIDVALIDITY
// or a field of an existing line changes, when N would go down, or when
// about a quarter of the lines are for messages that are gone:
// (records_in_file + new_records) * 75 / 100 >= live_records, in integers.
// (Observed: expunging 2 of 7 rewrote the file, 1 more of 5 did not.)
std::optional<std::string_view> UidlistRewriteReason(const UidlistWriteInputs& in);
inline bool UidlistNeedsRewrite(const UidlistWriteInputs& in) {
  return UidlistRewriteReason(in).has_value();
}

// Validity rules shared by the parser and the writers, so that whatever
// Parse accepts can be written back and whatever is written parses.
// 32 hex digits (either case, as Dovecot's guid_128_from_string accepts).
bool IsValidUidlistGuid(std::string_view guid);
// "<A-Z><value>" with no space or control character.
bool IsValidUidlistExtField(std::string_view field);
// A name that can be a Maildir file name and cannot leave its directory.
bool IsValidUidlistName(std::string_view name);

// A mailbox GUID in the form Dovecot writes it: 32 lowercase hex digits.
std::string FormatUidlistGuid(const std::array<uint8_t, 16>& bytes);

}  // namespace mailfs::maildir
