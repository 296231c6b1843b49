// The Lua scripts that make every multi-key change to pymap's layout
// atomic (../shared/REDIS.md). Each checks the types of the keys it touches
// and everything else that can fail before it writes anything, because a
// script that fails half way keeps its earlier writes.
//
// Errors they return (the first word of the error reply):
//   NOMAILBOX  the mailbox (or the destination) no longer exists
//   NOTFOUND   no message with that UID
//   EXISTS     the mailbox name is taken
//   NOTEMPTY   the mailbox holds messages or has children
//   COLLISION  other bytes are stored under this email id (adler32 clash)
//   CORRUPT    a key has the wrong type or a value does not parse
#pragma once

#include <vector>

#include "backends/redis/connection.h"

namespace mailfs::redis::scripts {

const Script& MessageAdd();
const Script& MessageCopy();
const Script& MessageMove();
const Script& MessageUpdate();
const Script& MessageDelete();
const Script& ClaimRecent();
const Script& Snapshot();
const Script& MailboxAdd();
const Script& MailboxDelete();
const Script& MailboxRename();
const Script& CleanupOne();

// Every script above, for loading at connect.
std::vector<const Script*> All();

}  // namespace mailfs::redis::scripts
