// The Maildir backend: a store Dovecot 2.3 owns and pymap also writes,
// served at the same time as they serve it (shared/MAILDIR.md). Mail stays
// in the files Dovecot reads: messages in cur/ and new/, UIDs in
// dovecot-uidlist under its dotlock, keyword letters in dovecot-keywords,
// subscriptions in the root's subscriptions file.
#pragma once

#include <memory>
#include <string>

#include "backends/maildir/format/layout.h"
#include "src/mailbox.h"

namespace mailfs {

struct MaildirOptions {
  // The store's root: INBOX's cur/ new/ tmp/ live in it. Must be absolute.
  std::string root;
  maildir::Layout layout = maildir::Layout::kMaildirPlusPlus;
  // How new folder names are stored; unset: the dialect the store already
  // uses (mUTF-7 for a store without evidence), as MAILDIR.md asks.
  std::optional<maildir::NameEncoding> encoding;
  // Create the root (and INBOX's cur/ new/ tmp/) if missing.
  bool create = true;
  // fsync message files, the uidlist and directories before an operation
  // reports success (Dovecot's mail_fsync=optimized). Off: like
  // mail_fsync=never, for speed where a crash may lose the last changes.
  bool fsync = true;
  // How long to wait for another process's dovecot-uidlist.lock before an
  // operation fails with kUnavailable (Dovecot waits up to 122 s).
  std::chrono::milliseconds lock_timeout{std::chrono::seconds(30)};
};

// Opens a store. kNotFound if the root is missing and create is false;
// kInvalidArgument for a relative root; kIo when the root cannot be read.
// Starts no thread: the watcher that follows other writers starts on first
// use (see mailbox.h).
Result<std::shared_ptr<MailboxSet>> OpenMaildirMailboxSet(const MaildirOptions& options);

}  // namespace mailfs
