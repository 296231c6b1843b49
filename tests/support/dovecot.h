// A private Dovecot for tests: doveadm only, no server. The tests use it to
// check that Dovecot reads exactly what a mailfs mount shows, and to write
// into a store behind a mount's back (shared/MAILDIR.md §9).
//
// What it runs:
//
//   cd / && USER=mailfs-test HOME=<dir> doveadm -c <dir>/dovecot.conf ...
//
// with a config of its own (mail_location=maildir:<store>[:LAYOUT=fs]
// [:INDEX=MEMORY], mail_uid/gid 5000, mail_max_lock_timeout=5s, log to
// stderr). No -u: that needs the auth process of a running server; with
// USER and HOME in the environment doveadm does no userdb lookup and uses
// the config's mail_uid and mail_location. The cwd is `/` because doveadm
// drops to uid 5000 and must be able to enter it.
//
// Dovecot refuses mail access as uid 0 ("Mail access not allowed for
// root"), so the store must belong to uid 5000: PrepareStoreForDovecot
// chowns it. mailfs, running as root in the tests, gives files it creates
// the owner of the store's root directory, so a store prepared once stays
// writable for Dovecot.
//
// Hazards this class handles so that tests need not:
// - doveadm exits 0 after logging errors ("Broken file ... UIDs not
//   ordered", "Fixed a duplicate", a message it cannot read): every line
//   doveadm writes to stderr counts as a failure of the command.
// - A mailbox argument of `fetch`, `expunge`, `flags` and `force-resync` is
//   a pattern (`*`, `%`): messages are addressed by `mailbox-guid`, and
//   mailbox status is read for `*` and then picked by exact name.
// - `-f json` is not valid JSON when a message cannot be read and mangles
//   non-UTF-8 bytes; `-f pager` gives raw bytes but separates records with
//   "\f\n", which a message may contain too. Fetch asks for size.physical
//   before the text and cuts the text by that length.
//
// Helpers report failures with ADD_FAILURE (naming the command, its exit
// status and stderr) and return nullopt/false, like those of
// mount_fixture.h. A missing doveadm is a failure, never a skip.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/maildir/format/filename.h"

namespace mailfs::test {

// The uid and gid Dovecot accesses mail as in the tests (no passwd entry
// is needed).
inline constexpr uid_t kDovecotMailUid = 5000;
inline constexpr gid_t kDovecotMailGid = 5000;

// Makes `store` usable by the private Dovecot: chowns the whole tree to
// 5000:5000 (symlinks themselves, never their targets) and gives every
// ancestor directory the search bit for others, which the mode-0700
// directories made by mkdtemp lack. Returns false (after ADD_FAILURE) on
// any error.
bool PrepareStoreForDovecot(const std::string& store);

// Chowns a directory tree without following symlinks.
bool ChownTree(const std::string& path, uid_t uid, gid_t gid);

// Dovecot's size.virtual (IMAP RFC822.SIZE, ",W=") is maildir::VirtualSize.

struct DovecotOptions {
  // The store's root, absolute (INBOX's cur/ new/ tmp/ live in it).
  std::string maildir;
  // mail_location's LAYOUT=fs; else Maildir++.
  bool layout_fs = false;
  // INDEX=MEMORY: Dovecot keeps its index in memory and reads the files
  // every time (it still creates and fixes dovecot-uidlist). Otherwise the
  // index files live in the store, as with a real Dovecot.
  bool index_in_memory = false;
  // The namespace's hierarchy separator (the mount and the fixtures use
  // "/").
  char separator = '/';
};

struct DoveadmResult {
  int exit_code = -1;  // exit status, or 128+signal
  bool timed_out = false;
  std::string out;
  std::string err;
  // Exit 0 and nothing on stderr: doveadm logs errors to stderr and still
  // exits 0, so both are needed.
  bool ok() const { return exit_code == 0 && !timed_out && err.empty(); }
  std::string Describe() const;
};

// One message as `doveadm fetch` reports it.
struct DovecotMessage {
  uint32_t uid = 0;
  // IMAP names, sorted by byte value, \Recent left out (session state).
  std::vector<std::string> flags;
  uint64_t size = 0;       // size.physical: the file's bytes
  uint64_t vsize = 0;      // size.virtual: the size with CRLF line ends (RFC822.SIZE)
  int64_t received = 0;    // date.received.unixtime: the file's mtime
  std::string guid;        // the base file name unless a G ext says otherwise
  std::string storage_id;  // the base file name
  std::string bytes;       // the message (`text`), exactly size bytes
  std::string sha256;      // lowercase hex SHA-256 of bytes (empty without them)
  // flags joined by single spaces, for comparisons and messages.
  std::string FlagString() const;
};

struct DovecotMailboxStatus {
  std::string name;  // UTF-8, levels separated by the namespace separator
  uint32_t messages = 0;
  uint32_t uidnext = 0;
  uint32_t uidvalidity = 0;
  std::string guid;  // 32 lowercase hex digits
};

class Dovecot {
 public:
  // Writes the config into a fresh directory under /tmp/mailfs-test-. Fails
  // (ADD_FAILURE, nullptr) when doveadm is not installed or the store is
  // not absolute. Does not touch the store: call PrepareStoreForDovecot.
  static std::unique_ptr<Dovecot> Create(DovecotOptions options);
  ~Dovecot();
  Dovecot(const Dovecot&) = delete;
  Dovecot& operator=(const Dovecot&) = delete;

  const DovecotOptions& options() const { return options_; }
  // The directory holding the config (removed on destruction).
  const std::string& dir() const { return dir_; }

  // Runs doveadm with these arguments (after `-c config`), `stdin_bytes` on
  // its standard input. Never reports a failure itself.
  DoveadmResult Run(const std::vector<std::string>& args, std::string_view stdin_bytes = {},
                    std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;
  // The same as a /bin/sh command line (cwd and environment included), for
  // shell loops run by ShellProcess, one subshell that can take a pipe:
  // "(cd / && exec env USER=... HOME=... /usr/bin/doveadm -c ... ARGS)".
  std::string ShellCommand(const std::vector<std::string>& args) const;

  // doveadm save -m MAILBOX (an exact name): appends a message with no
  // flags; Dovecot puts it in new/ and assigns the UID itself (doveadm
  // prints nothing, not even the UID: find it with Fetch).
  bool Save(std::string_view mailbox, std::string_view bytes) const;

  // Every message of the mailbox with the exact `mailbox` name, by UID.
  std::optional<std::vector<DovecotMessage>> Fetch(std::string_view mailbox) const;
  // Only the metadata (no `text`): cheaper for large mailboxes.
  std::optional<std::vector<DovecotMessage>> FetchMetadata(std::string_view mailbox) const;

  // doveadm mailbox list: every mailbox name, \Noselect parents included,
  // sorted.
  std::optional<std::vector<std::string>> MailboxList() const;
  // doveadm mailbox list -s: the subscriptions, in file order.
  std::optional<std::vector<std::string>> SubscriptionList() const;
  // Status of every selectable mailbox, sorted by name.
  std::optional<std::vector<DovecotMailboxStatus>> AllMailboxStatus() const;
  // Status of the mailbox with exactly this name.
  std::optional<DovecotMailboxStatus> MailboxStatus(std::string_view mailbox) const;

  bool MailboxCreate(std::string_view mailbox) const;
  // `flags` is a space-separated list ("\Seen $Todo").
  bool FlagsAdd(std::string_view mailbox, uint32_t uid, std::string_view flags) const;
  bool FlagsRemove(std::string_view mailbox, uint32_t uid, std::string_view flags) const;
  bool FlagsReplace(std::string_view mailbox, uint32_t uid, std::string_view flags) const;
  bool Expunge(std::string_view mailbox, uint32_t uid) const;
  // doveadm move DEST: the message gets DEST's next UID.
  bool Move(std::string_view from, uint32_t uid, std::string_view to) const;
  // doveadm force-resync -f: rebuilds the index from the files. `mailbox`
  // is a pattern here ("*" for all); names in tests contain no wildcards.
  bool ForceResync(std::string_view mailbox) const;

 private:
  Dovecot() = default;
  // Run + a failure report unless ok().
  std::optional<DoveadmResult> RunOrFail(const std::vector<std::string>& args,
                                         std::string_view stdin_bytes = {}) const;
  std::optional<std::vector<DovecotMessage>> FetchFields(std::string_view mailbox,
                                                         bool with_text) const;
  bool Flags(std::string_view verb, std::string_view mailbox, uint32_t uid,
             std::string_view flags) const;

  DovecotOptions options_;
  std::string dir_;
  std::string config_;
  std::string home_;
};

}  // namespace mailfs::test
