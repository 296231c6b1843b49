// The subscriptions file in the maildir root (MAILDIR.md section 6), in the
// three forms found in the wild:
//
//   Dovecot, version 2 (levels separated by TAB, each in storage encoding):
//     "V\t2\n\nINBOX\nArchive\t2023\tQ1\nGr&APwA3w-e &- Co\n"
//   Dovecot, version 1 (no header; storage names with the layout's separator,
//   "Archive.2023.Q1" in Maildir++, "Archive/2023/Q1" in fs):
//     "INBOX\nArchive.2023.Q1\n"
//   pymap (no header; UTF-8 names with '/', CRLF line ends):
//     "Sent\r\nArchive\r\nWork/Projects/Alpha\r\n"
//
// Pure functions over bytes; no file I/O. Safe to call from any thread.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backends/maildir/format/layout.h"
#include "src/status.h"

namespace mailfs::maildir {

enum class SubscriptionsVersion {
  kV1,     // Dovecot without header; also an existing empty file
  kV2,     // Dovecot "V\t2\n\n"; what a new file gets
  kPymap,  // no header, CRLF line ends
};

// A line that did not decode to a mailbox name. `raw` is the line without
// its line end, so it can be written back unchanged.
struct SkippedSubscription {
  size_t line = 0;  // 1-based, counting the header lines of version 2
  std::string raw;
  std::string reason;
};

struct Subscriptions {
  SubscriptionsVersion version = SubscriptionsVersion::kV2;
  // Normalized names (UTF-8, '/' between levels), in file order (the order
  // of subscribing), each once.
  std::vector<std::string> names;
  std::vector<SkippedSubscription> skipped;
};

// Reads a subscriptions file:
//   "V\t2\n\nINBOX\nArchive\t2023\tQ1\nGr&APwA3w-e &- Co\n"
//     -> v2, {"INBOX", "Archive/2023/Q1", "Grüße & Co"}
//   "Sent\r\nWork/Projects/Alpha\r\n" -> pymap, {"Sent", "Work/Projects/Alpha"}
// Never fails: a line that does not decode (not UTF-8 nor mUTF-7, a name
// the layout refuses, "inbox" not spelled INBOX) is reported in `skipped`;
// empty lines and repeated names are dropped quietly.
// The version is v2 when the file starts with "V\t2\n\n" exactly (as Dovecot
// checks it), pymap when some line ends with CRLF, else v1. Like Dovecot, CR
// at the end of a line and one separator at the end of a name are ignored.
// Levels of v1 and v2 are read with mutf7::DecodeLevel(); pymap names are
// taken as they are.
Subscriptions ParseSubscriptions(std::string_view content, Layout layout);

// Writes a subscriptions file in `version`: the header for v2, then
// `kept_lines` as they are (the raw lines of Subscriptions::skipped, so a
// rewrite does not lose what we could not read, as Dovecot keeps them), then
// one line per name, levels in `encoding` (v1, v2). kInvalidName when a name
// cannot be stored (see MailboxDirectory); kInvalidArgument when a kept line
// is empty, holds LF or ends with CR.
Result<std::string> SerializeSubscriptions(std::span<const std::string> names,
                                           SubscriptionsVersion version, Layout layout,
                                           NameEncoding encoding,
                                           std::span<const std::string> kept_lines = {});

// Dovecot's escaping of one v2 level (str_append_tabescaped): \001 -> "\0011",
// TAB -> "\001t", CR -> "\001r", LF -> "\001n" (and NUL -> "\0010").
std::string TabEscape(std::string_view level);
// The reverse (str_append_tabunescaped): "\001" + any other byte is that
// byte, a lone "\001" at the end is dropped.
std::string TabUnescape(std::string_view escaped);

}  // namespace mailfs::maildir
