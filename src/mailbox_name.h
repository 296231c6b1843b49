// Mailbox names as the mount and the backends see them: UTF-8, '/' between
// levels, "INBOX" for the inbox whatever its spelling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/status.h"

namespace mailfs {

inline constexpr char kDelimiter = '/';
inline constexpr std::string_view kInbox = "INBOX";

// True for well-formed UTF-8: no overlong forms, surrogates, or values past
// U+10FFFF.
bool IsValidUtf8(std::string_view text);
// Reads the code point of valid UTF-8 at text[*pos] and advances *pos past
// it; false (nothing changed) if the bytes there are malformed, overlong,
// a surrogate or past U+10FFFF. *pos must be below text.size().
bool NextUtf8CodePoint(std::string_view text, size_t* pos, uint32_t* code_point);

// Checks and normalizes a name: valid UTF-8; no empty level, no leading or
// trailing '/'; no level that starts with '.' (reserved on the mount); no
// control characters; a first level spelled inbox in any case becomes
// "INBOX". Fails with kInvalidName.
Result<std::string> NormalizeMailboxName(std::string_view name);

bool IsInbox(std::string_view normalized_name);
// "A/B/C" -> "A/B"; "A" -> "".
std::string_view ParentName(std::string_view name);
// "A/B/C" -> "C".
std::string_view LeafName(std::string_view name);
// True if `name` is `ancestor` or below it.
bool IsSameOrBelow(std::string_view name, std::string_view ancestor);
// What a rename of `before` to `after` moves, out of `existing` (every
// mailbox, normalized and sorted): INBOX alone for INBOX (its children stay
// where they are), else `before` and every mailbox below it, sorted. Both
// names are normalized. kInvalidName if `after` is `before` or below it;
// kNotFound if nothing would move; kExists if a mailbox at or below `after`
// exists and does not move. The same rules for every backend.
Result<std::vector<std::string>> NamesToRename(std::span<const std::string> existing,
                                               std::string_view before, std::string_view after);

// Joins a parent ("" for the top) and a leaf.
std::string JoinMailboxName(std::string_view parent, std::string_view leaf);

}  // namespace mailfs
