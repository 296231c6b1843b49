// pymap's message record (the values of `mbx/<F>/uids` and the `message`
// field of the changes stream, ../shared/REDIS.md): a msgpack map of
// `flags`, `date`, `email_id` and `thread_id`, and the msgpack arrays the
// Lua scripts take as arguments.
//
// Pure functions over bytes; safe to call from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/flags.h"
#include "src/message.h"
#include "src/status.h"

namespace mailfs::redis {

struct MessageRecord {
  std::vector<std::string> flags;  // IMAP spelling: "\\Seen", "$Junk", in no fixed order
  std::string date;                // ISO 8601 with offset, as pymap's datetime.isoformat()
  std::string email_id;            // "M" + 8 hex
  std::string thread_id;           // "T" + 32 hex
};

// kCorrupt (with what is wrong in the detail) for anything but a map
// holding `flags` (an array of strings) and `date`; `email_id` and
// `thread_id` may be absent or nil, as pymap's ObjectId.maybe allows.
Result<MessageRecord> DecodeRecord(std::string_view bytes);
std::string EncodeRecord(const MessageRecord& record);

// msgpack array of strings / of unsigned integers (script arguments).
std::string EncodeStrings(std::span<const std::string> strings);
std::string EncodeUids(std::span<const uint32_t> uids);

// The record's flags as a FlagSet: system flags by IMAP name, anything else
// that is a valid keyword as a keyword. \Recent and unknown system flags
// are dropped (pymap never stores them; nothing to show if it did).
FlagSet FlagsFromRecord(std::span<const std::string> flags);
std::vector<std::string> FlagsToRecord(const FlagSet& flags);

// "2026-01-01T00:00:00+00:00": pymap's isoformat() of an aware datetime in UTC.
std::string FormatRecordDate(UnixSeconds seconds);
// Python's datetime.fromisoformat for what pymap writes: a date, 'T' or ' ',
// HH:MM[:SS[.fraction]], then Z, +HH:MM[:SS] or +HHMM, or nothing (local
// time, as Python takes a naive datetime). kCorrupt otherwise.
Result<UnixSeconds> ParseRecordDate(std::string_view text);

}  // namespace mailfs::redis
