#include "backends/registry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "backends/dict/dict_backend.h"

namespace mailfs {
namespace {

// Options every source accepts because the driver, not the backend, uses
// them (spool= is where the mount keeps files being written).
constexpr std::string_view kGenericOptions[] = {"spool"};

bool IsGenericOption(std::string_view name) {
  for (std::string_view generic : kGenericOptions) {
    if (name == generic) return true;
  }
  return false;
}

// The in-memory sources take no option of their own; one they do not know
// is most likely a typo or an option meant for another source, and
// ignoring it would hide that.
Status CheckNoBackendOptions(std::string_view source, const SourceOptions& options) {
  for (const auto& [name, value] : options) {
    if (!IsGenericOption(name)) {
      return Status::InvalidArgument(
          fmt::format("option '{}' is not known to source '{}'", name, source));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::shared_ptr<MailboxSet>> OpenSource(std::string_view source,
                                               const SourceOptions& options) {
  if (source == "demo" || source == "memory") {
    if (Status s = CheckNoBackendOptions(source, options); !s.ok()) return s;
    std::shared_ptr<MailboxSet> set;
    if (source == "demo") {
      set = NewDemoMailboxSet();
    } else {
      set = NewDictMailboxSet();
    }
    return set;
  }
  std::vector<std::string> known;
  for (const SourceHelp& help : DescribeSources()) known.push_back(help.syntax);
  return Status::InvalidArgument(
      fmt::format("unknown source '{}' (known: {})", source, fmt::join(known, ", ")));
}

std::vector<SourceHelp> DescribeSources() {
  return {
      {"demo", "in memory, preloaded with a small demo corpus"},
      {"memory", "in memory, starts with an empty INBOX"},
  };
}

}  // namespace mailfs
