// Redis for the tests: the suite's shared server, and private servers that
// a test starts, kills and restarts itself (a crash of the store under a
// mount, a fixture dump written by pymap).
//
// The shared server is started by scripts/test for the whole run and
// named in MAILFS_TEST_REDIS ("127.0.0.1:PORT"); tests that use it keep
// their keys apart with prefixes of their own, and never FLUSHALL.
//
// A private server listens on 127.0.0.1 on a port below the ephemeral
// range (20000-29999, tried until one is free), with its data in a fresh
// /tmp/mailfs-test-redis-XXXXXX that the destructor removes. Failures are
// reported with ADD_FAILURE (naming the command, and the end of the
// server's log), never as a skip.
//
// Hazards this file handles so that tests need not:
// - Redis 7 with `appendonly yes` and no AOF yet starts empty: it does not
//   load dump.rdb. A server started from a dump starts without the AOF,
//   then turns it on with CONFIG SET and waits for the AOF rewrite to
//   finish, so that a Kill and Restart keep the dump's data.
// - With the AOF the server fsyncs before it answers (`appendfsync
//   always`): whatever it acknowledged survives a Kill. The default
//   `everysec` may postpone the write behind a slow fsync and answer
//   first.
// - A server must not outlive its test binary. It runs under
//   `setpriv --pdeathsig KILL`, which kills it when the *thread* that
//   started it ends (PR_SET_PDEATHSIG follows the thread, not the
//   process): call Start and Restart from the test's own thread, never from
//   a std::thread that ends first. As a backstop scripts/test kills every
//   redis-server that carries its run's MAILFS_TEST_RUN in the environment;
//   the servers run with `--set-proc-title no`, because redis-server
//   otherwise writes its process title over its environment.
// - A private server allows DEBUG from 127.0.0.1: DEBUG DIGEST gives one
//   hash of the whole data set (compare it before a Kill and after the
//   Restart), DEBUG SLEEP makes the server hang for a while.
// - redis-cli exits 0 after an error reply unless given -e; Cli passes -e
//   and --raw, so that an error reply is a failure and a value comes out
//   as its bytes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mailfs::test {

struct RedisCliResult {
  int exit_code = -1;  // the exit status, or 128+signal when killed
  bool timed_out = false;
  std::string out;  // stdout as redis-cli printed it
  std::string err;
  bool ok() const { return exit_code == 0 && !timed_out; }
  // "exit 1, stderr: ..." for failure messages.
  std::string Describe() const;
};

inline constexpr std::chrono::seconds kRedisCliTimeout{10};

// Runs `redis-cli -h HOST -p PORT -e --raw ARGS...` (argv through
// posix_spawn, no shell) against `address` ("host:port"). Never reports a
// failure itself. In --raw output every element of an array reply is one
// line and nil is an empty line, so a value that holds a newline cannot be
// told from two values: compare such values with a single GET or HGET.
RedisCliResult RunRedisCli(std::string_view address, const std::vector<std::string>& args,
                           std::chrono::milliseconds timeout = kRedisCliTimeout);
// RunRedisCli's stdout without the one newline redis-cli adds at its end;
// "" after ADD_FAILURE when redis-cli fails (no server, an error reply).
// For example RedisCli(address, {"HGET", "/mail/ns", "testuser"}).
std::string RedisCli(std::string_view address, const std::vector<std::string>& args);

// Sends PING on a new connection to `address` ("host:port"): true when the
// answer is +PONG (a server still loading its data answers -LOADING).
// Never reports a failure; gives up after about a second.
bool RedisPing(std::string_view address);

// The suite's shared server from scripts/test: MAILFS_TEST_REDIS
// ("host:port"); empty when unset.
std::string SharedRedisAddress();
// SharedRedisAddress(), after checking that it is set and answers PING;
// "" after ADD_FAILURE otherwise (the message says how to export it when
// the test binary runs by hand).
std::string RequireSharedRedis();

struct RedisServerOptions {
  // A dump.rdb to copy into the data directory and load; empty for an
  // empty server. Keys whose expiry time in the dump has passed are not
  // loaded (Redis drops them, and nothing turns that off): in pymap's
  // dumps those are the keys of deleted mailboxes and unreferenced
  // content, which pymap gave a TTL. (The {} lets `{.appendonly = false}` leave it out
  // without -Wmissing-field-initializers.)
  std::string rdb_file{};
  // Keep an AOF (fsynced before every answer), so that a Kill and Restart
  // lose nothing acknowledged. Without it Restart finds only rdb_file's
  // data: the server never saves a snapshot.
  bool appendonly = true;
};

class RedisServer {
 public:
  using Options = RedisServerOptions;

  // Starts redis-server on 127.0.0.1 on a free port with a fresh data
  // directory and waits until it answers PING (and, with rdb_file and
  // appendonly, until its AOF holds the dump). nullptr after ADD_FAILURE
  // when it does not start within 10 s.
  static std::unique_ptr<RedisServer> Start(Options options = {});
  // Kills the server and removes its data directory.
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const;  // "127.0.0.1:PORT"
  std::string url() const;      // "redis://127.0.0.1:PORT"
  // The data directory (dump.rdb, appendonlydir/, redis.log).
  const std::string& dir() const { return dir_; }
  // The server's process id, -1 after Kill (to stop it with SIGSTOP, say).
  pid_t pid() const { return pid_; }

  // SIGKILL to the server and its children (an AOF rewrite), and reaps it;
  // the data directory stays. Does nothing when it is not running.
  void Kill();
  // Starts the server again on the same port and data directory (killing
  // it first if it runs): it reloads its AOF. Waits until it answers PING,
  // retrying while the port is still held (a killed AOF rewrite child may
  // hold it for a moment); false after ADD_FAILURE when that takes over
  // 10 s.
  bool Restart();

  // RedisCli and RunRedisCli against this server.
  std::string Cli(const std::vector<std::string>& args) const;
  RedisCliResult RunCli(const std::vector<std::string>& args) const;
  // Cli that expects the answer "OK" (SET, CONFIG SET, FLUSHALL); false
  // after ADD_FAILURE otherwise.
  bool CliOk(const std::vector<std::string>& args) const;
  bool Ping() const { return RedisPing(address()); }

 private:
  enum class Launch { kReady, kPortInUse, kFailed };

  RedisServer() = default;
  // Starts redis-server on port_ and waits for PING until `deadline`;
  // on kFailed, *error says why.
  Launch LaunchAndWait(bool appendonly, std::chrono::steady_clock::time_point deadline,
                       std::string* error);
  // Turns the AOF on in a server started from a dump and waits until the
  // rewrite that writes the dump's data into it has finished.
  bool EnableAppendOnly();
  // The last lines of redis.log, for failure messages.
  std::string LogTail() const;

  Options options_;
  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace mailfs::test
