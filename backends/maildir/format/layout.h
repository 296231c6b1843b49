// Where a mailbox lives in a maildir store, for the two layouts Dovecot and
// pymap write (MAILDIR.md section 7):
//
//   mailbox name       Maildir++ (root entry)     fs (path under the root)
//   INBOX              "" (the root itself)       ""
//   Archive/2024/Q1    .Archive.2024.Q1           Archive/2024/Q1
//   Grüße & Co         .Gr&APwA3w-e &- Co         Gr&APwA3w-e &- Co
//   INBOX/Receipts     .INBOX.Receipts            INBOX/Receipts
//
// Each level is stored in modified UTF-7 (Dovecot's default) or raw UTF-8
// (pymap, Dovecot with :UTF-8). Names found on disk are read with the rule
// of mutf7::DecodeLevel(), whatever the store's dialect, because a store can
// hold folders made by both writers; so a backend that wants an existing
// folder should look it up by its decoded name, and use MailboxDirectory()
// for the directory of a new one.
//
// Pure functions over names; no file I/O. Safe to call from any thread.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "src/status.h"

namespace mailfs::maildir {

enum class Layout {
  kMaildirPlusPlus,  // ".A.B" directories in the root; '.' separates levels
  kFs,               // nested "A/B" directories
};

enum class NameEncoding {
  kMutf7,  // IMAP modified UTF-7 per level (Dovecot's default)
  kUtf8,   // raw UTF-8 (pymap; Dovecot's :UTF-8 option)
};

// The separator between levels in a storage name: '.' (Maildir++) or '/'.
char StorageSeparator(Layout layout);

// Checks a mailbox name (UTF-8, '/' between levels) against the core rules
// (NormalizeMailboxName) and the layout's refusals, which are Dovecot's:
// everywhere no empty, "." or ".." level and no leading '~'; Maildir++ no
// '.' inside a level; fs no level named cur, new or tmp. Returns the
// normalized name, or kInvalidName.
Result<std::string> ValidateMailboxName(std::string_view name, Layout layout);

// One level (of a name ValidateMailboxName() accepted) as it is stored on
// disk. With kUtf8 the level is kept as it is, but a pure-ASCII level that
// would read back as something else ("a&-b" reads as "a&b") is kInvalidName:
// the store could not tell it apart.
Result<std::string> EncodeLevel(std::string_view level, NameEncoding encoding);

// The directory of a mailbox, relative to the store root ("" for INBOX),
// for a name that ValidateMailboxName() accepts; kInvalidName otherwise, or
// when a directory entry would exceed 255 bytes.
Result<std::string> MailboxDirectory(std::string_view name, Layout layout, NameEncoding encoding);

// A mailbox name read from disk, and what its levels say about the store's
// dialect (see DetectNameEncoding).
struct DecodedMailboxName {
  std::string name;      // normalized: UTF-8, '/' between levels
  int mutf7_levels = 0;  // levels that decoded as modified UTF-7 ("Gr&APwA3w-e")
  int utf8_levels = 0;   // levels in raw UTF-8, or ASCII with a bare '&' ("Tom & Jerry")
};

// Decodes storage levels (each with mutf7::DecodeLevel) and joins them with
// '/'. kInvalidName when a level does not decode, is empty, holds '/', or the
// result is not a name ValidateMailboxName() returns unchanged (so a name
// read from disk maps back to the same directory: "inbox/x" is refused).
Result<DecodedMailboxName> DecodeLevels(std::span<const std::string_view> levels, Layout layout);

// True for an entry of the Maildir++ root that is a folder when it is a
// directory: it starts with '.', and is not ".", ".." or Dovecot's
// "..DOVECOT-TRASHED" (a mailbox being deleted). The caller checks that it is
// a directory; a plain file ".X" is no folder.
bool IsMaildirPlusPlusFolderEntry(std::string_view entry);

// True for a directory entry inside an fs-layout mailbox directory that is a
// child mailbox: anything but cur, new, tmp, ".", ".." and Dovecot's
// "..DOVECOT-TrasH". The caller checks that it is a directory (a mailbox
// directory also holds files such as dovecot-uidlist).
bool IsFsChildEntry(std::string_view entry);

// The mailbox of a directory: a Maildir++ root entry (".Archive.2024") or an
// fs path relative to the root ("Archive/2024"); "" is INBOX. kInvalidName
// when it is not a folder of that layout or its name does not decode (see
// DecodeLevels). A Maildir++ ".INBOX" is refused (INBOX is the root); the fs
// directory "INBOX" decodes to "INBOX": it only holds INBOX's children.
Result<DecodedMailboxName> MailboxNameOfDirectory(std::string_view path, Layout layout);

// The dialect of a store from the names found in it: the encoding with more
// levels in its favour; `fallback` (mUTF-7 for a new store, as Dovecot) when
// there is no evidence (only plain ASCII names) or a tie.
NameEncoding DetectNameEncoding(std::span<const DecodedMailboxName> names,
                                NameEncoding fallback = NameEncoding::kMutf7);

}  // namespace mailfs::maildir
