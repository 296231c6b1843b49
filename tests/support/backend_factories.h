// The backends the conformance suite runs on, and small helpers for tests
// that drive a MailboxSet directly.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "src/mailbox.h"
#include "src/message.h"
#include "src/status.h"

namespace mailfs::test {

// How to make a fresh, empty store (only INBOX, no subscriptions) of one
// backend. Each call to `make` returns an independent store; whatever it
// needs (a temporary directory, a Redis database) lives as long as the
// returned pointer, e.g. through shared_ptr's aliasing constructor, and is
// cleaned up when it goes. `make` returns nullptr when it cannot set the
// store up, which fails the test: no backend is skipped.
struct BackendFactory {
  std::string name;  // a valid test name: letters, digits, '_'
  std::function<std::shared_ptr<MailboxSet>()> make;
  // Marks an existing mailbox of a store made by `make` read-only, by
  // whatever means the backend has (the dict backend's SetReadOnly, file
  // permissions, ...). Empty when the backend has none: the read-only
  // tests then report a skip naming the backend.
  std::function<Status(MailboxSet&, std::string_view)> make_readonly;
};

// Shows the backend's name in test output instead of the struct's bytes.
inline void PrintTo(const BackendFactory& factory, std::ostream* out) { *out << factory.name; }

// Every backend the suite covers, in a fixed order.
const std::vector<BackendFactory>& AllBackendFactories();

// An AppendMessage over these bytes.
AppendMessage MakeAppendMessage(std::string content, FlagSet flags = {},
                                UnixSeconds internal_date = 1767225600 /* 2026-01-01 */);

// A small well-formed message; `tag` makes the bytes (and the subject)
// unique so that tests can tell messages apart by content.
std::string SampleMessage(std::string_view tag, std::string_view extra_headers = "");

}  // namespace mailfs::test
