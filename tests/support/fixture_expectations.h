// The real stores of tests/data/fixtures/ (copied unchanged from
// shared/fixtures/, see its README.md) and what an IMAP client saw of them,
// read from their expected.json into plain structs, so that the unit test
// (the backend alone) and the mount test (backend and driver) check the
// same facts.
//
// Dovecot fixtures: everything comes from expected.json. pymap fixture:
// pymap's FETCH re-serialises the file (a header line longer than 78
// characters is re-wrapped), so expected.json's sizes and hashes are not
// the file's; the mount shows the file, so size and sha256 come from
// files.json, matched to UIDs through the store's own dovecot-uidlist.
// pymap's LSUB always adds INBOX, so its "subscribed" fields say INBOX is
// subscribed although the subscriptions file does not list it; the
// subscription list is the replay of the SUBSCRIBE/UNSUBSCRIBE commands
// recorded in expected.json's "ops", which is what the file holds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/maildir/format/layout.h"
#include "backends/registry.h"
#include "src/message.h"

namespace mailfs::test {

struct FixtureMessage {
  uint32_t uid = 0;
  std::vector<std::string> flags;  // IMAP names as in expected.json, without \Recent
  UnixSeconds internal_date = 0;
  uint64_t size = 0;   // bytes of the stored file
  std::string sha256;  // lowercase hex, of the stored file's bytes
};

struct FixtureMailbox {
  std::string name;        // UTF-8, '/' between levels
  bool selectable = true;  // false: \Noselect, a directory without messages
  bool subscribed = false;
  uint32_t uid_validity = 0;
  uint32_t uid_next = 0;
  std::vector<FixtureMessage> messages;  // ascending UID
  // The unseen count IMAP reported (STATUS), or computed from the flags.
  uint32_t unseen = 0;
};

// One fixture, extracted into a directory.
struct StoreFixture {
  std::string name;  // "dovecot-maildir-pp"
  std::string root;  // absolute path of the extracted store (INBOX's cur/ is in it)
  maildir::Layout layout = maildir::Layout::kMaildirPlusPlus;
  SourceOptions options;                   // for OpenSource("maildir:" + root, options)
  std::vector<FixtureMailbox> mailboxes;   // sorted by name (bytewise)
  std::vector<std::string> subscriptions;  // sorted; need not exist
};

// "dovecot-maildir-pp", "dovecot-maildir-fs", "pymap-maildir".
std::vector<std::string> StoreFixtureNames();

// Extracts fixture `name` into `dir` (an empty directory) with tar -xzf,
// which keeps the mtimes (internal dates), hard links and empty
// directories, and reads its expectations. Reports problems with
// ADD_FAILURE (also a fixture that disagrees with itself, e.g. a file whose
// hash is not the one expected.json gives) and returns nullopt when the
// fixture cannot be used at all.
std::optional<StoreFixture> ExtractStoreFixture(std::string_view name, const std::string& dir);

// Lowercase hex SHA-256 of `bytes` (FIPS 180-4), computed by OpenSSL's
// libcrypto.
std::string Sha256Hex(std::string_view bytes);

}  // namespace mailfs::test
