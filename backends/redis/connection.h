// Talking to Redis: one blocking hiredis connection, a pool of them, and
// server-side Lua scripts called by SHA. Every failure to reach the server
// is kUnavailable (EIO on the mount) with the cause in the detail, and
// arrives within the configured timeouts: nothing here waits forever.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/status.h"

struct redisContext;
struct redisReply;

namespace mailfs::redis {

// Where the server is and how to log in: redis://[user[:password]@]host[:port][/db].
struct Address {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  int database = 0;
  std::string user;      // empty: AUTH with the password alone (requirepass)
  std::string password;  // empty: no AUTH
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{5000};

  // "127.0.0.1:6379/0" (never the password), for log lines and errors.
  std::string ToString() const;
};

// Parses a redis:// URL; the password in it may be empty and given later.
Result<Address> ParseRedisUrl(std::string_view url);

// One reply, or a part of one. Shares the underlying hiredis reply tree.
class Reply {
 public:
  enum class Type { kString, kArray, kInteger, kNil, kStatus, kError };

  Reply() = default;
  Type type() const;
  bool is_nil() const { return type() == Type::kNil; }
  bool is_error() const { return type() == Type::kError; }
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_integer() const { return type() == Type::kInteger; }
  // The bytes of a string, status or error reply; empty otherwise.
  std::string_view str() const;
  long long integer() const;
  // Elements of an array reply.
  size_t size() const;
  Reply operator[](size_t index) const;
  // The string as a decimal integer (Redis answers GET/HGET with strings).
  bool ToInteger(long long* out) const;

 private:
  friend class Connection;
  Reply(std::shared_ptr<redisReply> root, const redisReply* node)
      : root_(std::move(root)), node_(node) {}
  std::shared_ptr<redisReply> root_;
  const redisReply* node_ = nullptr;
};

// A command: its arguments, binary-safe.
using Command = std::vector<std::string>;

// Views of `strings`, for the calls that take arguments without copying
// them (a message's bytes go to hiredis's output buffer once).
std::vector<std::string_view> Views(std::span<const std::string> strings);

// A command whose arguments are views, not copies.
using CommandView = std::span<const std::string_view>;

// A Lua script, known to the server by the SHA-1 of its source.
struct Script {
  std::string name;
  std::string source;
  std::string sha1;  // lowercase hex

  static Script Make(std::string name, std::string source);
};

// One blocking connection. Not thread-safe: the pool hands it to one
// caller at a time.
class Connection {
 public:
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects, logs in, selects the database and loads `scripts`.
  static Result<std::unique_ptr<Connection>> Open(const Address& address,
                                                  std::span<const Script* const> scripts);

  // Sends one command and reads its reply. An error reply is a Reply, not a
  // failure; a failure means the connection is broken (see broken()).
  Result<Reply> Run(const Command& command);
  // Sends every command, then reads every reply: one round trip.
  Result<std::vector<Reply>> Pipeline(std::span<const Command> commands);
  // EVALSHA, loading the script again if the server lost it (NOSCRIPT):
  // one round trip, two only after the server forgot the script.
  Result<Reply> Eval(const Script& script, std::span<const std::string_view> keys,
                     std::span<const std::string_view> args);

  // Runs `commands` between MULTI and EXEC: atomically, in one round
  // trip. Returns EXEC's reply (one reply per
  // command), or, when the server refused to queue a command (EXECABORT:
  // out of memory, say), that command's error reply. When an EVALSHA among
  // them finds the server without its script (NOSCRIPT), the script is
  // loaded from `scripts` and the whole transaction run again, once.
  Result<Reply> Transaction(std::span<const CommandView> commands,
                            std::span<const Script* const> scripts);

  // Overrides the command timeout for the next commands (XREAD BLOCK).
  void SetTimeout(std::chrono::milliseconds timeout);
  // True once a command failed to reach the server; the connection is then
  // useless and must be dropped.
  bool broken() const { return broken_; }
  // True if the server closed this idle connection (it restarted, or
  // timed the client out): anything readable on an idle socket means that.
  bool HungUp() const;
  // The socket, to shut it down from another thread (ends a blocked read).
  int fd() const;

 private:
  Connection(redisContext* context, std::string where)
      : context_(context), where_(std::move(where)) {}
  Status Failure(std::string_view what);
  // Writes `commands` to the socket (RESP), the long arguments straight
  // from the caller's memory: a message's bytes are copied by the kernel
  // only, not into hiredis's output buffer first.
  Status Send(std::span<const CommandView> commands);
  // Sends what is queued and reads one reply per queued command (named
  // for the error, should the connection fail).
  Result<std::vector<Reply>> Replies(std::span<const std::string_view> commands);

  redisContext* context_;
  std::string where_;
  bool broken_ = false;
};

// Up to `capacity` connections shared by the FUSE worker threads. A
// connection that failed is dropped; after a failure to connect, new
// connections are not attempted again until a backoff (50 ms doubling to
// 1 s) has passed, and callers fail at once meanwhile, so a server that is
// down costs each operation no more than one connect timeout.
class Pool {
 public:
  Pool(Address address, size_t capacity, std::vector<const Script*> scripts);
  ~Pool();

  class Lease {
   public:
    Lease(Lease&& other) noexcept : pool_(other.pool_), connection_(std::move(other.connection_)) {}
    ~Lease();
    Connection* operator->() { return connection_.get(); }
    Connection& operator*() { return *connection_; }

   private:
    friend class Pool;
    Lease(Pool* pool, std::unique_ptr<Connection> connection)
        : pool_(pool), connection_(std::move(connection)) {}
    Pool* pool_;
    std::unique_ptr<Connection> connection_;
  };

  Result<Lease> Acquire();
  const Address& address() const { return address_; }

 private:
  void Return(std::unique_ptr<Connection> connection);

  const Address address_;
  const size_t capacity_;
  const std::vector<const Script*> scripts_;
  std::mutex mu_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<Connection>> idle_;      // GUARDED_BY(mu_)
  size_t open_ = 0;                                    // GUARDED_BY(mu_): idle and leased
  std::chrono::steady_clock::time_point retry_after_;  // GUARDED_BY(mu_)
  std::chrono::milliseconds backoff_{0};               // GUARDED_BY(mu_)
  std::string last_error_;                             // GUARDED_BY(mu_)
};

}  // namespace mailfs::redis
