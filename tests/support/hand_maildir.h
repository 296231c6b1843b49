// Helpers for tests that feed the Maildir backend broken or hostile data
// (issue 3, point 6): a Maildir written file by file, as another program
// (or an attacker with write access to the store) might leave it, and a
// capture of the log, so that a test can check that what was skipped was
// reported with its path.
//
// The tests derive every expectation from what they wrote here: the bytes
// of each message, the base name of its file, the UID its uidlist line gave
// it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/mailbox.h"

namespace mailfs::test {

// ---------------------------------------------------------------------------
// The log.

// Collects what spdlog logs, process-wide, while it lives (one at a time).
// The capturing sink is added to the default logger once, on first use,
// and then stays: adding or removing a sink while a backend thread logs
// would race, so construct the first LogCapture before any store is opened.
// Messages only (no time or level prefix); at most 10000 lines are kept.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<std::string> Lines() const;
  // True when one line contains every one of `parts`.
  bool Has(std::initializer_list<std::string_view> parts) const;
  // Every line, for a failure message.
  std::string Dump() const;
  void Clear();
};

// ---------------------------------------------------------------------------
// A Maildir by hand.

// A message-like text (a header field first, LF line ends) whose subject,
// Message-ID and body carry `tag`, so that tests tell messages apart by
// their bytes.
std::string HostileTestMessage(std::string_view tag);

// A message file written by HandMaildir.
struct HandMessage {
  std::string tag;
  std::string bytes;
  std::string base;  // the base name: the identity a uidlist line names
  std::string path;  // absolute path of the file
  int64_t mtime = 0;
};

// The uidlist header these tests use: what Dovecot writes for a mailbox
// created at 1700000000 whose next UID is `next_uid`.
inline constexpr uint32_t kHandUidValidity = 1700000000;
inline constexpr std::string_view kHandGuid = "8717ff24ab3b096b373b000083ecc375";
std::string HandUidlistHeader(uint32_t next_uid);

// Creates `root` (which must not exist) with cur/ new/ tmp/.
bool MakeMaildirDirs(const std::string& dir);

// Writes a message file into `dir`'s tmp/ and renames it into cur/ (with
// `info`, e.g. ":2,S") or new/ (no info), named as Dovecot names files:
// "<secs>.M<n>P4242.hostile,S=<size>,W=<vsize>". `n` makes the name and
// the mtime (the internal date, 1700000000 + 60 n) unique.
HandMessage WriteHandMessage(const std::string& dir, std::string_view tag, int n,
                             bool in_new = false, std::string_view info = ":2,S");

// Writes `bytes` to `path` (creating or replacing it); ADD_FAILURE on error.
bool WriteBytes(const std::string& path, std::string_view bytes);
// The whole file, or nullopt.
std::optional<std::string> ReadBytes(const std::string& path);

// The regular files of `dir`'s cur/ and new/, base name -> bytes (for
// finding which file holds a message the backend reported).
std::map<std::string, std::string> MessageFilesByBase(const std::string& dir);

// Every message of a mailbox as the backend reports it: UID -> bytes.
// ADD_FAILURE (and an empty map) when a step fails.
std::map<uint32_t, std::string> BackendContents(MailboxData& mailbox);

// Checks `dir`/dovecot-uidlist after mailfs wrote it: it parses with no
// problem, keeps UIDVALIDITY `uid_validity`, has a line for every message
// of `contents` (UID -> bytes) naming the file on disk that holds those
// bytes, no other line naming a message file (lines of files that are gone
// may stay, as Dovecot keeps them until a rewrite), and a next UID above
// them all. Returns every difference, "" when there is none.
std::string UidlistMismatch(const std::string& dir, uint32_t uid_validity,
                            const std::map<uint32_t, std::string>& contents);

// Copies a Maildir (cp -a) to `copy` and has a private Dovecot (INDEX=MEMORY,
// on the copy, so that Dovecot's repairs cannot change the original) fetch
// INBOX. Returns "" when Dovecot reads exactly `contents` (UID -> bytes) with
// UIDVALIDITY `uid_validity` and logs nothing, else what differs.
std::string DovecotMismatch(const std::string& maildir, const std::string& copy,
                            uint32_t uid_validity, const std::map<uint32_t, std::string>& contents);

// st_atim of `path` set to 1000000000 and st_mtim to 1100000000: under
// relatime (and strictatime) any later read moves the atime, so a test can
// tell whether a file was read.
bool BackdateAtime(const std::string& path);
std::optional<struct timespec> AtimeOf(const std::string& path);

}  // namespace mailfs::test
