// The backend contract, after pymap's MailboxDataInterface and
// MailboxSetInterface (pymap.backend.mailbox). A MailboxSet owns the
// mailboxes of one user; a MailboxData owns one mailbox.
//
// Lifecycle: opening a store must not start threads (main may fork to
// daemonize after opening it); start them lazily on first use.
//
// Threading: every method of both classes is safe for concurrent use
// without external synchronization. Methods block on the store; none of
// them calls back into the caller.
//
// Errors: methods return Status/Result and never throw. Codes used here:
// kNotFound, kExists, kExpunged, kInvalidName, kInvalidArgument, kNotEmpty,
// kReadOnly, kNotPermitted, kUnavailable, kIo, kCorrupt, kNotSupported,
// kNoSpace. Any method may also fail with kUnavailable/kIo/kCorrupt/kNoSpace
// when the store does; those are not repeated below.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/changes.h"
#include "src/flags.h"
#include "src/message.h"
#include "src/status.h"

namespace mailfs {

// The state of a mailbox at one moment (pymap's MailboxSnapshot).
struct MailboxSnapshot {
  std::string mailbox_id;
  bool readonly = false;
  uint32_t uid_validity = 0;
  uint32_t next_uid = 1;
  uint32_t exists = 0;        // number of messages
  uint32_t recent = 0;        // messages not yet claimed by any session
  uint32_t unseen = 0;        // messages without \Seen
  uint32_t first_unseen = 0;  // UID of the first message without \Seen, or 0

  friend bool operator==(const MailboxSnapshot&, const MailboxSnapshot&) = default;
};

class MailboxData {
 public:
  virtual ~MailboxData() = default;

  // A stable id for this mailbox (RFC 8474 MAILBOXID). It survives renames
  // and restarts, and a mailbox deleted and created again gets a new one.
  virtual std::string mailbox_id() const = 0;
  // True when the mailbox accepts no change to its messages (Append, Copy
  // or Move into it, Move out of it, Update, Delete): those fail with kReadOnly.
  virtual bool readonly() const = 0;
  // The UID validity; never 0; stable while UIDs keep their meaning.
  virtual uint32_t uid_validity() const = 0;
  // The system flags that Update and Append can store, and whether any
  // keyword can be (IMAP's "\*"). A flag outside these: kInvalidArgument.
  virtual FlagSet permanent_flags() const = 0;
  virtual bool accepts_keywords() const = 0;

  // Stores a new message at the end of the mailbox and returns its UID,
  // greater than every UID the mailbox has assigned before. When it returns
  // ok the message is durably stored; on failure nothing is stored.
  // `recent` marks it \Recent for the next session that claims it.
  virtual Result<uint32_t> Append(const AppendMessage& message, bool recent) = 0;
  // The internal date that Get answers for a message Append stores now
  // with `requested`, when the backend can tell without asking the store
  // (a store may keep another date: Maildir takes 0 as the time of the
  // append, Redis clamps to the years pymap can read); nullopt otherwise.
  // Lets the caller show a message it just appended without a Get.
  virtual std::optional<UnixSeconds> AppendedDate(UnixSeconds requested) const {
    (void)requested;
    return std::nullopt;
  }

  // Copies message `uid` to `destination` (flags, keywords, internal date
  // and email id kept) and returns the UID it has there. kNotFound if there
  // is no such UID. `destination` must come from the same MailboxSet
  // (kNotSupported otherwise).
  virtual Result<uint32_t> Copy(uint32_t uid, MailboxData& destination, bool recent) = 0;
  // Like Copy, then expunges `uid` here. The message is never absent from
  // both mailboxes, and never left in both once this returns ok.
  virtual Result<uint32_t> Move(uint32_t uid, MailboxData& destination, bool recent) = 0;

  // The metadata of one message. kNotFound if there is no such UID.
  virtual Result<MessageInfo> Get(uint32_t uid) = 0;
  // A reader over the message's bytes, valid after the message is expunged.
  virtual Result<std::shared_ptr<const ContentReader>> Open(uint32_t uid) = 0;
  // Changes the flags of `uid` by `op` and returns the flags it now has.
  // kNotFound if there is no such UID.
  virtual Result<FlagSet> Update(uint32_t uid, const FlagSet& flags, FlagOp op) = 0;
  // Expunges exactly these UIDs (pymap's delete; IMAP UID EXPUNGE). UIDs
  // not present are ignored. \Deleted on other messages does not matter.
  virtual Status Delete(std::span<const uint32_t> uids) = 0;
  // Takes the \Recent flag for the calling session: returns the UIDs that
  // were recent and clears it in the store, so no other session sees them
  // as recent.
  virtual Result<std::vector<uint32_t>> ClaimRecent() = 0;
  // Housekeeping that may be slow; never changes what the mailbox shows.
  virtual Status Cleanup() = 0;
  virtual Result<MailboxSnapshot> Snapshot() = 0;
  // The messages with first_uid <= uid <= last_uid, in ascending UID order.
  virtual Result<std::vector<MessageInfo>> Find(uint32_t first_uid, uint32_t last_uid) = 0;
  // Every message's UID, size and internal date, in ascending UID order:
  // what a directory listing needs. This default goes through Find; a
  // backend with an index overrides it to list a big mailbox without
  // building a MessageInfo for each message.
  virtual Result<std::vector<ListedMessage>> List() {
    auto found = Find(1, UINT32_MAX);
    if (!found.ok()) return found.status();
    std::vector<ListedMessage> listed;
    listed.reserve(found->size());
    for (const MessageInfo& info : *found)
      listed.push_back({info.uid, info.internal_date, info.size});
    return listed;
  }
};

class MailboxSet {
 public:
  virtual ~MailboxSet() = default;

  // Mailbox names are UTF-8 with '/' between levels; INBOX is spelled
  // "INBOX" (see mailbox_name.h). Every method taking a name answers
  // kInvalidName for a name NormalizeMailboxName rejects or this store
  // cannot hold.

  // Every existing mailbox, sorted bytewise; INBOX is always among them.
  // A parent that exists only because a child does (\Noselect) is not listed.
  virtual Result<std::vector<std::string>> ListMailboxes() = 0;
  // The subscribed names, sorted; they need not exist.
  virtual Result<std::vector<std::string>> ListSubscribed() = 0;
  virtual Status SetSubscribed(std::string_view name, bool subscribed) = 0;

  // kNotFound if no mailbox has this name. The object stays usable after a
  // rename of the mailbox (it follows the mailbox id); after a delete its
  // operations fail with kNotFound.
  virtual Result<std::shared_ptr<MailboxData>> GetMailbox(std::string_view name) = 0;
  // Creates an empty mailbox and returns its mailbox id. kExists if taken.
  // Missing parents are not created (they show as \Noselect).
  virtual Result<std::string> AddMailbox(std::string_view name) = 0;
  // Deletes an empty mailbox. kNotFound; kNotPermitted for INBOX;
  // kNotEmpty while it holds messages or has child mailboxes (a safer rule
  // than IMAP's, so that nothing delivered meanwhile is lost).
  virtual Status DeleteMailbox(std::string_view name) = 0;
  // Renames `before` and every mailbox below it. `before` must exist or
  // have children (a \Noselect parent). kNotFound; kExists if `after` or a
  // name the children would take exists; kInvalidName if `after` is
  // `before` or below it. Renaming INBOX moves its messages to a new
  // mailbox `after` (keeping UIDs, UID validity and mailbox id) and leaves
  // a new, empty INBOX; INBOX's children stay where they are.
  virtual Status RenameMailbox(std::string_view before, std::string_view after) = 0;

  // Makes durable every change reported successful so far. A store that
  // stores durably before answering (the default) has nothing to do; one
  // opened with relaxed durability does it here, on fsync() and at unmount.
  virtual Status Sync() { return Status::Ok(); }

  // A directory on the store's own filesystem where the mount may keep the
  // files being written, so that a finished one can become the stored
  // message itself instead of being copied (ContentReader::adoptable).
  // Empty when the store has none: it copies the bytes anyway.
  virtual std::string SpoolDirectory() const { return {}; }

  // The change feed (what pymap's update_selected waits on). A cursor
  // starts at ChangeCursor(); WaitForChanges blocks until something
  // changed after *cursor, or the timeout, or StopWaiting, and advances
  // *cursor. It reports every change, whoever made it.
  virtual uint64_t ChangeCursor() = 0;
  virtual ChangeBatch WaitForChanges(uint64_t* cursor, std::chrono::milliseconds timeout) = 0;
  // Wakes every waiter; later waits return at once. For shutdown.
  virtual void StopWaiting() = 0;
};

}  // namespace mailfs
