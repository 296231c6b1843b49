// Turns a SOURCE argument ("demo", "memory", later "maildir:PATH",
// "redis://...") into a MailboxSet. The only code besides main that knows
// the concrete backends.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "src/mailbox.h"
#include "src/status.h"

namespace mailfs {

// mailfs options given as -o name=value that a backend may use
// (layout=, names=, login=, prefix=, ...). A backend fails with
// kInvalidArgument for an option it does not know and is given.
using SourceOptions = std::map<std::string, std::string>;

Result<std::shared_ptr<MailboxSet>> OpenSource(std::string_view source,
                                               const SourceOptions& options);

struct SourceHelp {
  std::string syntax;       // "demo"
  std::string description;  // "in memory, preloaded with a small demo corpus"
};
std::vector<SourceHelp> DescribeSources();

}  // namespace mailfs
