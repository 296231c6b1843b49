#include "backends/registry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "backends/dict/dict_backend.h"
#include "backends/maildir/maildir_backend.h"
#include "backends/redis/redis_backend.h"

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

// "maildir:PATH" or a plain absolute PATH, with layout= (maildir++ or fs),
// names= (mutf7 or utf8), fsync= (yes or no), lock_timeout= (seconds).
Result<std::shared_ptr<MailboxSet>> OpenMaildirSource(std::string_view path,
                                                      const SourceOptions& options) {
  MaildirOptions maildir;
  maildir.root = std::string(path);
  for (const auto& [name, value] : options) {
    if (IsGenericOption(name)) continue;
    if (name == "layout") {
      if (value == "maildir++" || value == "++") {
        maildir.layout = maildir::Layout::kMaildirPlusPlus;
      } else if (value == "fs") {
        maildir.layout = maildir::Layout::kFs;
      } else {
        return Status::InvalidArgument(
            fmt::format("layout must be maildir++ or fs, not '{}'", value));
      }
    } else if (name == "names") {
      if (value == "mutf7") {
        maildir.encoding = maildir::NameEncoding::kMutf7;
      } else if (value == "utf8") {
        maildir.encoding = maildir::NameEncoding::kUtf8;
      } else {
        return Status::InvalidArgument(fmt::format("names must be mutf7 or utf8, not '{}'", value));
      }
    } else if (name == "fsync") {
      if (value == "yes" || value == "1" || value == "true") {
        maildir.fsync = true;
      } else if (value == "no" || value == "0" || value == "false") {
        maildir.fsync = false;
      } else {
        return Status::InvalidArgument(fmt::format("fsync must be yes or no, not '{}'", value));
      }
    } else if (name == "lock_timeout") {
      char* end = nullptr;
      double seconds = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0' || seconds < 0 || seconds > 3600) {
        return Status::InvalidArgument(
            fmt::format("lock_timeout must be seconds (0..3600), not '{}'", value));
      }
      maildir.lock_timeout = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    } else {
      return Status::InvalidArgument(fmt::format("option '{}' is not known to maildir", name));
    }
  }
  return OpenMaildirMailboxSet(maildir);
}

// Seconds in (0, 3600], as given to timeout= and connect_timeout=.
Result<std::chrono::milliseconds> ParseSeconds(std::string_view option, const std::string& value) {
  char* end = nullptr;
  double seconds = std::strtod(value.c_str(), &end);
  if (end == value.c_str() || *end != '\0' || !(seconds > 0) || seconds > 3600) {
    return Status::InvalidArgument(
        fmt::format("{} must be seconds (more than 0, at most 3600), not '{}'", option, value));
  }
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// The password: from password_file=, else MAILFS_REDIS_PASSWORD, else the
// URL. A file holds it on its first line.
Result<std::string> ReadPasswordFile(const std::string& path) {
  std::ifstream file(path);
  if (!file) return Status::InvalidArgument(fmt::format("cannot read password_file {}", path));
  std::string password;
  std::getline(file, password);
  if (!password.empty() && password.back() == '\r') password.pop_back();
  return password;
}

// "redis://[user[:password]@]host[:port][/db]" with login=, prefix=,
// users_prefix=, separator=, password_file=, timeout=, connect_timeout=.
Result<std::shared_ptr<MailboxSet>> OpenRedisSource(std::string_view url,
                                                    const SourceOptions& options) {
  auto address = redis::ParseRedisUrl(url);
  if (!address.ok()) return address.status();
  RedisOptions redis_options;
  redis_options.address = *address;
  if (const char* password = std::getenv("MAILFS_REDIS_PASSWORD");
      password != nullptr && *password) {
    redis_options.address.password = password;
  }
  for (const auto& [name, value] : options) {
    if (IsGenericOption(name)) continue;
    if (name == "login") {
      redis_options.login = value;
    } else if (name == "prefix") {
      redis_options.prefix = value;
    } else if (name == "users_prefix") {
      redis_options.users_prefix = value;
    } else if (name == "separator") {
      if (value.empty()) return Status::InvalidArgument("separator must not be empty");
      redis_options.separator = value;
    } else if (name == "password_file") {
      auto password = ReadPasswordFile(value);
      if (!password.ok()) return password.status();
      redis_options.address.password = *password;
    } else if (name == "timeout" || name == "connect_timeout") {
      auto duration = ParseSeconds(name, value);
      if (!duration.ok()) return duration.status();
      (name == "timeout" ? redis_options.address.command_timeout
                         : redis_options.address.connect_timeout) = *duration;
    } else {
      return Status::InvalidArgument(fmt::format("option '{}' is not known to redis", name));
    }
  }
  if (redis_options.login.empty()) {
    // pymap's login name; by default the caller's user name.
    if (const passwd* user = getpwuid(getuid()); user != nullptr)
      redis_options.login = user->pw_name;
  }
  return OpenRedisMailboxSet(redis_options);
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
  if (source.starts_with("redis://")) return OpenRedisSource(source, options);
  if (source.starts_with("maildir:")) return OpenMaildirSource(source.substr(8), options);
  if (source.starts_with("/")) return OpenMaildirSource(source, options);
  std::vector<std::string> known;
  for (const SourceHelp& help : DescribeSources()) known.push_back(help.syntax);
  return Status::InvalidArgument(
      fmt::format("unknown source '{}' (known: {})", source, fmt::join(known, ", ")));
}

std::vector<SourceHelp> DescribeSources() {
  return {
      {"demo", "in memory, preloaded with a small demo corpus"},
      {"memory", "in memory, starts with an empty INBOX"},
      {"maildir:PATH", "a Maildir shared with Dovecot (-o layout=fs, names=utf8, fsync=no)"},
      {"PATH", "the same: a path starting with / or ."},
      {"redis://[user[:password]@]host[:port][/db]",
       "a Redis server in pymap's layout (-o login=, password_file=)"},
  };
}

}  // namespace mailfs
