// The Redis backend: mailboxes in a Redis server in the layout pymap's
// redis backend uses (data version 4, ../shared/REDIS.md), so that pymap
// and any number of mounts on any number of machines share one store.
#pragma once

#include <memory>
#include <string>

#include "backends/redis/connection.h"
#include "src/mailbox.h"

namespace mailfs {

struct RedisOptions {
  redis::Address address;
  std::string login;  // pymap's login name: whose namespace to mount
  std::string prefix = "/mail";
  std::string users_prefix = "/users";  // pymap's user records (not read by the mount)
  std::string separator = "/";
  size_t pool_size = 10;  // libfuse's default number of worker threads
};

// Connects, finds (or creates, as pymap does at the first login) the
// login's namespace and makes sure it has an INBOX. Fails with
// kUnavailable when the server cannot be reached or refuses the login, and
// with kCorrupt for a namespace of another data version. Starts no thread:
// the change watcher starts on first use.
Result<std::shared_ptr<MailboxSet>> OpenRedisMailboxSet(const RedisOptions& options);

}  // namespace mailfs
