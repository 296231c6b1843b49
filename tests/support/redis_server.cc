#include "tests/support/redis_server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "tests/support/mount_fixture.h"  // kTempPrefix, ReadFd, SpawnProcess

namespace mailfs::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr seconds kStartTimeout{10};
// Private servers take ports from here: below the ephemeral range (32768
// and up by default), where outgoing connections get their local ports,
// so that a port stays free for a Restart after Kill.
constexpr uint16_t kFirstPort = 20000;
constexpr uint16_t kPortCount = 10000;
constexpr const char* kSetpriv = "/usr/bin/setpriv";

// The environment variable scripts/test sets.
constexpr const char* kSharedRedisVariable = "MAILFS_TEST_REDIS";

// waitpid without blocking: true when `pid` has exited (and is reaped),
// *status set.
bool Reaped(pid_t pid, int* status) {
  while (true) {
    pid_t w = ::waitpid(pid, status, WNOHANG);
    if (w == pid) return true;
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      // ECHILD: gone, its status unknown (somebody else reaped it): not a
      // success.
      *status = W_EXITCODE(255, 0);
      return true;
    }
    return false;
  }
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// "host:port" split at its last colon; false when there is none.
bool SplitAddress(std::string_view address, std::string* host, std::string* port) {
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == address.size()) return false;
  *host = std::string(address.substr(0, colon));
  *port = std::string(address.substr(colon + 1));
  return true;
}

std::string Join(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& a : args) {
    if (!out.empty()) out += ' ';
    out += a.size() > 80 ? a.substr(0, 80) + "..." : a;
  }
  return out;
}

// True when a listening socket could be bound to 127.0.0.1:port now. The
// socket gets SO_REUSEADDR, as redis-server's does, so that a port held
// only by connections in TIME_WAIT counts as free, as it is for Redis.
bool PortIsFree(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return free;
}

// A random port of kFirstPort.. that is free now (somebody may still take
// it before redis-server binds it: LaunchAndWait then says kPortInUse); 0
// when none of a hundred tries was.
uint16_t PickFreePort() {
  thread_local std::mt19937 rng(std::random_device{}());
  for (int i = 0; i < 100; ++i) {
    uint16_t port = static_cast<uint16_t>(kFirstPort + rng() % kPortCount);
    if (PortIsFree(port)) return port;
  }
  return 0;
}

// `INFO persistence` as key -> value ("aof_enabled" -> "1"). The lines end
// in \r\n; section headers start with '#'.
std::map<std::string, std::string> ParseInfo(std::string_view info) {
  std::map<std::string, std::string> fields;
  std::istringstream in{std::string(info)};
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t colon = line.find(':');
    if (line.empty() || line[0] == '#' || colon == std::string::npos) continue;
    fields[line.substr(0, colon)] = line.substr(colon + 1);
  }
  return fields;
}

}  // namespace

// ---------------------------------------------------------------------------
// redis-cli and PING.

std::string RedisCliResult::Describe() const {
  std::ostringstream os;
  if (timed_out) os << "timed out, ";
  os << "exit " << exit_code;
  if (!out.empty()) os << "\n--- stdout ---\n" << out.substr(0, 4000);
  if (!err.empty()) os << "\n--- stderr ---\n" << err.substr(0, 4000);
  return os.str();
}

RedisCliResult RunRedisCli(std::string_view address, const std::vector<std::string>& args,
                           milliseconds timeout) {
  RedisCliResult r;
  std::string host, port;
  if (!SplitAddress(address, &host, &port)) {
    r.err = "not a host:port address: '" + std::string(address) + "'";
    return r;
  }
  int out_fd = ::memfd_create("redis-cli-stdout", MFD_CLOEXEC);
  int err_fd = ::memfd_create("redis-cli-stderr", MFD_CLOEXEC);
  if (out_fd < 0 || err_fd < 0) {
    r.err = std::string("memfd_create: ") + std::strerror(errno);
    if (out_fd >= 0) ::close(out_fd);
    if (err_fd >= 0) ::close(err_fd);
    return r;
  }
  // -e: an error reply is exit status 1 (its text on stderr); --raw: values
  // as their bytes, not quoted.
  std::vector<std::string> argv = {"redis-cli", "-h", host, "-p", port, "-e", "--raw"};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_t pid =
      SpawnProcess(argv, {.stdout_fd = out_fd, .stderr_fd = err_fd, .search_path = true}, &r.err);
  if (pid < 0) {
    r.err += " (scripts/install-deps installs redis-tools)";
  } else {
    auto deadline = steady_clock::now() + timeout;
    int status = 0;
    auto pause = milliseconds(1);
    while (!Reaped(pid, &status)) {
      if (steady_clock::now() >= deadline) {
        r.timed_out = true;
        ::kill(-pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, milliseconds(20));
    }
    r.exit_code = ExitCodeOf(status);
    r.out = ReadFd(out_fd);
    r.err = ReadFd(err_fd);
  }
  ::close(out_fd);
  ::close(err_fd);
  return r;
}

std::string RedisCli(std::string_view address, const std::vector<std::string>& args) {
  RedisCliResult r = RunRedisCli(address, args);
  if (!r.ok()) {
    ADD_FAILURE() << "redis-cli " << Join(args) << " (server " << address << "): " << r.Describe();
    return "";
  }
  if (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
  return r.out;
}

bool RedisPing(std::string_view address) {
  std::string host, port;
  if (!SplitAddress(address, &host, &port)) return false;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return false;
  bool pong = false;
  for (addrinfo* ai = found; ai != nullptr && !pong; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    // SO_SNDTIMEO bounds connect() too.
    timeval limit{.tv_sec = 1, .tv_usec = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    constexpr std::string_view kPing = "*1\r\n$4\r\nPING\r\n";
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        ::send(fd, kPing.data(), kPing.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(kPing.size())) {
      std::string reply;
      char buf[256];
      while (reply.find("\r\n") == std::string::npos && reply.size() < 1024) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        reply.append(buf, n);
      }
      pong = reply.starts_with("+PONG\r\n");
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return pong;
}

std::string SharedRedisAddress() {
  const char* value = std::getenv(kSharedRedisVariable);
  return value != nullptr ? value : "";
}

std::string RequireSharedRedis() {
  std::string address = SharedRedisAddress();
  if (address.empty()) {
    ADD_FAILURE() << kSharedRedisVariable
                  << " is not set. scripts/test starts a redis-server for the tests and sets it; "
                     "to run a test binary by hand, start one and export its address, e.g. "
                     "`redis-server --port 6390 --save '' &` and "
                     "`export MAILFS_TEST_REDIS=127.0.0.1:6390`";
    return "";
  }
  if (!RedisPing(address)) {
    ADD_FAILURE() << kSharedRedisVariable << "=" << address
                  << " does not answer PING: is the redis-server it names running?";
    return "";
  }
  return address;
}

// ---------------------------------------------------------------------------
// Private servers.

std::unique_ptr<RedisServer> RedisServer::Start(Options options) {
  std::unique_ptr<RedisServer> server(new RedisServer());
  server->options_ = std::move(options);
  const Options& opts = server->options_;
  std::string templ = std::string(kTempPrefix) + "redis-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << templ << ": " << std::strerror(errno);
    return nullptr;
  }
  server->dir_ = templ;
  if (!opts.rdb_file.empty()) {
    std::error_code ec;
    std::filesystem::copy_file(opts.rdb_file, server->dir_ + "/dump.rdb", ec);
    if (ec) {
      ADD_FAILURE() << "copying " << opts.rdb_file << " into " << server->dir_ << ": "
                    << ec.message();
      return nullptr;
    }
  }

  // With a dump the server starts without the AOF: Redis 7 would start
  // empty from a new AOF rather than load dump.rdb.
  const bool appendonly_now = opts.appendonly && opts.rdb_file.empty();
  const auto deadline = steady_clock::now() + kStartTimeout;
  std::string error;
  while (true) {
    server->port_ = PickFreePort();
    if (server->port_ == 0) {
      ADD_FAILURE() << "redis-server: found no free port in " << kFirstPort << "-"
                    << kFirstPort + kPortCount - 1 << " on 127.0.0.1";
      return nullptr;
    }
    Launch launch = server->LaunchAndWait(appendonly_now, deadline, &error);
    if (launch == Launch::kReady) break;
    if (launch == Launch::kFailed || steady_clock::now() >= deadline) {
      ADD_FAILURE() << "redis-server did not start: "
                    << (launch == Launch::kFailed ? error : "every port tried was taken") << "\n"
                    << server->LogTail();
      return nullptr;
    }
    // Somebody took the port between PickFreePort and the bind: another.
  }
  if (!opts.rdb_file.empty() && opts.appendonly && !server->EnableAppendOnly()) return nullptr;
  return server;
}

RedisServer::~RedisServer() {
  Kill();
  if (dir_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  if (ec) ADD_FAILURE() << "removing " << dir_ << ": " << ec.message();
}

std::string RedisServer::address() const { return "127.0.0.1:" + std::to_string(port_); }

std::string RedisServer::url() const { return "redis://" + address(); }

RedisServer::Launch RedisServer::LaunchAndWait(bool appendonly, steady_clock::time_point deadline,
                                               std::string* error) {
  const std::string log_path = dir_ + "/redis.log";
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    *error = "opening " + log_path + ": " + std::strerror(errno);
    return Launch::kFailed;
  }
  // What this start logs, for telling a taken port from other failures.
  const off_t log_start = ::lseek(log_fd, 0, SEEK_END);

  std::vector<std::string> argv;
  if (::access(kSetpriv, X_OK) == 0) argv = {kSetpriv, "--pdeathsig", "KILL", "--"};
  // Its configuration, as --name value pairs. It logs to its stdout,
  // redis.log.
  const std::pair<const char*, std::string> config[] = {
      {"bind", "127.0.0.1"},
      {"port", std::to_string(port_)},
      {"dir", dir_},
      // No snapshots: only the AOF, when on, keeps what was written since
      // the start.
      {"save", ""},
      {"appendonly", appendonly ? "yes" : "no"},
      {"appendfsync", "always"},
      {"daemonize", "no"},
      {"set-proc-title", "no"},
      // DEBUG DIGEST, DEBUG SLEEP, from 127.0.0.1 only.
      {"enable-debug-command", "local"},
  };
  argv.push_back("redis-server");
  for (const auto& [name, value] : config) {
    argv.push_back(std::string("--") + name);
    argv.push_back(value);
  }
  // The test's environment (MAILFS_TEST_RUN included); the process group
  // of its own lets Kill reach the children redis-server forks.
  pid_ = SpawnProcess(argv, {.stdout_fd = log_fd, .stderr_fd = log_fd, .search_path = true}, error);
  ::close(log_fd);
  if (pid_ < 0) {
    *error += " (scripts/install-deps installs redis-server)";
    return Launch::kFailed;
  }

  while (true) {
    int status = 0;
    if (Reaped(pid_, &status)) {
      pid_ = -1;
      int fd = ::open(log_path.c_str(), O_RDONLY | O_CLOEXEC);
      std::string log = fd >= 0 ? ReadFd(fd, log_start) : "";
      if (fd >= 0) ::close(fd);
      if (log.find("Address already in use") != std::string::npos) return Launch::kPortInUse;
      *error = "redis-server on port " + std::to_string(port_) + " exited (status " +
               std::to_string(ExitCodeOf(status)) + ") before it answered PING";
      return Launch::kFailed;
    }
    if (RedisPing(address())) return Launch::kReady;
    if (steady_clock::now() >= deadline) {
      Kill();
      *error = "redis-server on port " + std::to_string(port_) + " did not answer PING within " +
               std::to_string(kStartTimeout.count()) + " s";
      return Launch::kFailed;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

bool RedisServer::EnableAppendOnly() {
  // CONFIG SET starts the rewrite that writes the data into the AOF (or
  // schedules it behind another child) before it answers. Until the rewrite
  // is done the server is in AOF_WAIT_REWRITE and has no usable AOF: a
  // Restart then would find none and start empty.
  if (!CliOk({"CONFIG", "SET", "appendonly", "yes"})) return false;
  const auto deadline = steady_clock::now() + kStartTimeout;
  std::map<std::string, std::string> info;
  while (steady_clock::now() < deadline) {
    RedisCliResult r = RunCli({"INFO", "persistence"});
    if (!r.ok()) {
      ADD_FAILURE() << "redis-cli INFO persistence: " << r.Describe();
      return false;
    }
    info = ParseInfo(r.out);
    if (info["aof_enabled"] == "1" && info["aof_rewrite_in_progress"] == "0" &&
        info["aof_rewrite_scheduled"] == "0") {
      if (info["aof_last_bgrewrite_status"] == "ok") return true;
      ADD_FAILURE() << "redis-server: the AOF rewrite after CONFIG SET appendonly yes failed\n"
                    << r.out << LogTail();
      return false;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  ADD_FAILURE() << "redis-server: the AOF rewrite after CONFIG SET appendonly yes did not finish "
                   "within "
                << kStartTimeout.count() << " s; INFO: aof_enabled " << info["aof_enabled"]
                << ", aof_rewrite_in_progress " << info["aof_rewrite_in_progress"]
                << ", aof_rewrite_scheduled " << info["aof_rewrite_scheduled"] << "\n"
                << LogTail();
  return false;
}

void RedisServer::Kill() {
  if (pid_ <= 0) return;
  // The group holds the server and any child it forked (an AOF rewrite).
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  int status;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

bool RedisServer::Restart() {
  Kill();
  const auto deadline = steady_clock::now() + kStartTimeout;
  std::string error;
  while (true) {
    Launch launch = LaunchAndWait(options_.appendonly, deadline, &error);
    if (launch == Launch::kReady) return true;
    if (launch == Launch::kFailed) {
      ADD_FAILURE() << "redis-server did not restart: " << error << "\n" << LogTail();
      return false;
    }
    if (steady_clock::now() >= deadline) {
      ADD_FAILURE() << "redis-server did not restart: port " << port_ << " still in use after "
                    << kStartTimeout.count() << " s\n"
                    << LogTail();
      return false;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
}

RedisCliResult RedisServer::RunCli(const std::vector<std::string>& args) const {
  return RunRedisCli(address(), args);
}

std::string RedisServer::Cli(const std::vector<std::string>& args) const {
  return RedisCli(address(), args);
}

bool RedisServer::CliOk(const std::vector<std::string>& args) const {
  RedisCliResult r = RunCli(args);
  if (!r.ok() || r.out != "OK\n") {
    ADD_FAILURE() << "redis-cli " << Join(args) << " (server " << address()
                  << "): expected OK, got " << r.Describe();
    return false;
  }
  return true;
}

std::string RedisServer::LogTail() const {
  int fd = ::open((dir_ + "/redis.log").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "(no redis.log)";
  std::string log = ReadFd(fd);
  ::close(fd);
  // The last 20 lines: from just after the 21st newline from the end.
  size_t start = log.size();
  int newlines = 0;
  while (start > 0) {
    if (log[start - 1] == '\n' && ++newlines == 21) break;
    --start;
  }
  return "--- the end of " + dir_ + "/redis.log ---\n" + log.substr(start);
}

}  // namespace mailfs::test
