// The Redis harness of tests/support/redis_server.h: private servers
// start, die, come back with their data, load pymap's fixture dump, and
// the shared server of scripts/test is there. If these pass, a Redis
// backend test that fails after a Kill or Restart found a bug in mailfs,
// not in the harness.
#include "tests/support/redis_server.h"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/mount_fixture.h"  // Eventually, Lines, Sorted

namespace mailfs::test {
namespace {

const std::string kFixture = std::string(MAILFS_SOURCE_DIR) + "/tests/data/fixtures/pymap-redis";

// tests/data/fixtures/pymap-redis/keys.txt: every key of dump.rdb, one a
// line.
std::vector<std::string> FixtureKeys() {
  std::vector<std::string> keys;
  std::ifstream in(kFixture + "/keys.txt");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) keys.push_back(line);
  }
  return keys;
}

// The keys of the dump split by whether pymap gave them a TTL
// (redis-keys.jsonl, ttl_ms -1 for none). The ones with a TTL are garbage
// pymap leaves to expire (the keys of a deleted mailbox, 600 s; content
// nothing refers to any more, 3600 s); their expiry is an absolute time in
// dump.rdb, long past, so a server drops them while it loads the dump.
struct FixtureKeySets {
  std::vector<std::string> persistent;
  std::vector<std::string> expiring;
};
FixtureKeySets FixtureKeysByTtl() {
  FixtureKeySets sets;
  std::ifstream in(kFixture + "/redis-keys.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto entry = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!entry.is_object() || !entry.contains("key_text") || !entry.contains("ttl_ms")) {
      ADD_FAILURE() << "redis-keys.jsonl: unexpected line " << line.substr(0, 200);
      continue;
    }
    auto& set = entry["ttl_ms"].get<int64_t>() < 0 ? sets.persistent : sets.expiring;
    set.push_back(entry["key_text"].get<std::string>());
  }
  return sets;
}

// PTTL of every key, in one call: -1 for no TTL, -2 for no such key.
std::vector<std::string> Pttls(const RedisServer& server, const std::vector<std::string>& keys) {
  std::vector<std::string> args = {
      "EVAL", "local r = {} for i, k in ipairs(KEYS) do r[i] = redis.call('PTTL', k) end return r",
      std::to_string(keys.size())};
  args.insert(args.end(), keys.begin(), keys.end());
  return Lines(server.Cli(args));
}

// Expects every key of `sets.persistent` to exist without a TTL, and each
// of `sets.expiring` to be gone or still have a TTL (it stays only while
// the clock is within an hour of when the dump was written).
void ExpectFixtureKeys(const RedisServer& server, const FixtureKeySets& sets) {
  auto pttls = Pttls(server, sets.persistent);
  ASSERT_EQ(pttls.size(), sets.persistent.size());
  for (size_t i = 0; i < pttls.size(); ++i) {
    EXPECT_EQ(pttls[i], "-1") << sets.persistent[i] << " (-2: missing)";
  }
  pttls = Pttls(server, sets.expiring);
  ASSERT_EQ(pttls.size(), sets.expiring.size());
  for (size_t i = 0; i < pttls.size(); ++i) {
    EXPECT_TRUE(pttls[i] == "-2" || (!pttls[i].empty() && pttls[i][0] != '-'))
        << sets.expiring[i] << ": PTTL " << pttls[i];
  }
}

// What a process has in its environment, NAME=value per entry.
std::vector<std::string> EnvironmentOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  std::vector<std::string> entries;
  std::string entry;
  while (std::getline(in, entry, '\0')) entries.push_back(entry);
  return entries;
}

std::string CommOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

// Alive and not a zombie.
bool ProcessRuns(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

TEST(RedisServerTest, StartsAndAnswersPing) {
  auto server = RedisServer::Start();
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->Ping());
  EXPECT_EQ(server->Cli({"PING"}), "PONG");
  EXPECT_GE(server->port(), 20000);
  EXPECT_LT(server->port(), 30000);
  EXPECT_EQ(server->address(), "127.0.0.1:" + std::to_string(server->port()));
  EXPECT_EQ(server->url(), "redis://127.0.0.1:" + std::to_string(server->port()));
  EXPECT_TRUE(server->dir().starts_with("/tmp/mailfs-test-redis-")) << server->dir();
  EXPECT_EQ(server->Cli({"CONFIG", "GET", "appendonly"}), "appendonly\nyes");
  EXPECT_EQ(server->Cli({"CONFIG", "GET", "appendfsync"}), "appendfsync\nalways");
  EXPECT_EQ(server->Cli({"CONFIG", "GET", "bind"}), "bind\n127.0.0.1");
  EXPECT_EQ(server->Cli({"DBSIZE"}), "0");

  // What scripts/test looks for when it kills servers a crashed test left
  // behind: the name redis-server and the run's mark in the environment.
  ASSERT_GT(server->pid(), 0);
  EXPECT_EQ(CommOf(server->pid()), "redis-server");
  if (const char* run = std::getenv("MAILFS_TEST_RUN")) {
    auto env = EnvironmentOf(server->pid());
    EXPECT_NE(std::find(env.begin(), env.end(), std::string("MAILFS_TEST_RUN=") + run), env.end())
        << "redis-server does not show MAILFS_TEST_RUN in /proc/" << server->pid() << "/environ";
  }
}

TEST(RedisServerTest, TwoServersGetTwoPortsAndDirectories) {
  auto a = RedisServer::Start();
  auto b = RedisServer::Start();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a->port(), b->port());
  EXPECT_NE(a->dir(), b->dir());
  EXPECT_TRUE(a->CliOk({"SET", "only-in-a", "1"}));
  EXPECT_EQ(b->Cli({"EXISTS", "only-in-a"}), "0");
}

TEST(RedisServerTest, CliValuesAndErrors) {
  auto server = RedisServer::Start();
  ASSERT_NE(server, nullptr);
  // Values come back as their bytes: the CRLF stays, only redis-cli's own
  // newline goes.
  EXPECT_EQ(server->Cli({"HSET", "h", "f", "line 1\r\nline 2\r\n"}), "1");
  EXPECT_EQ(server->Cli({"HGET", "h", "f"}), "line 1\r\nline 2\r\n");
  EXPECT_EQ(server->Cli({"HGET", "h", "missing"}), "");
  EXPECT_EQ(server->Cli({"RPUSH", "l", "a", "b"}), "2");
  EXPECT_EQ(server->Cli({"LRANGE", "l", "0", "-1"}), "a\nb");

  // An error reply is a failed command.
  RedisCliResult r = server->RunCli({"NO-SUCH-COMMAND"});
  EXPECT_FALSE(r.ok()) << r.Describe();
  EXPECT_NE(r.err.find("unknown command"), std::string::npos) << r.Describe();
  r = server->RunCli({"INCR", "h"});
  EXPECT_FALSE(r.ok()) << r.Describe();
  EXPECT_NE(r.err.find("WRONGTYPE"), std::string::npos) << r.Describe();
}

TEST(RedisServerTest, KillMakesPingFail) {
  auto server = RedisServer::Start();
  ASSERT_NE(server, nullptr);
  const pid_t pid = server->pid();
  ASSERT_TRUE(server->Ping());
  server->Kill();
  EXPECT_EQ(server->pid(), -1);
  EXPECT_FALSE(ProcessRuns(pid));
  EXPECT_FALSE(server->Ping());
  RedisCliResult r = server->RunCli({"PING"});
  EXPECT_FALSE(r.ok()) << r.Describe();
  EXPECT_TRUE(std::filesystem::is_directory(server->dir()));
  server->Kill();  // a second Kill does nothing
}

TEST(RedisServerTest, RestartKeepsDataWrittenBeforeKill) {
  auto server = RedisServer::Start();
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->port();
  ASSERT_TRUE(server->CliOk({"SET", "k", "v"}));
  ASSERT_EQ(server->Cli({"HSET", "h", "f1", "one", "f2", "two"}), "2");
  // The last write right before the kill: acknowledged means in the AOF.
  ASSERT_EQ(server->Cli({"INCR", "counter"}), "1");
  server->Kill();

  ASSERT_TRUE(server->Restart());
  EXPECT_EQ(server->port(), port);
  EXPECT_TRUE(server->Ping());
  EXPECT_EQ(server->Cli({"GET", "k"}), "v");
  EXPECT_EQ(server->Cli({"HGET", "h", "f2"}), "two");
  EXPECT_EQ(server->Cli({"GET", "counter"}), "1");
  EXPECT_EQ(server->Cli({"DBSIZE"}), "3");

  // Restart of a running server kills it first; twice in a row works too.
  ASSERT_TRUE(server->Restart());
  ASSERT_TRUE(server->Restart());
  EXPECT_EQ(server->Cli({"GET", "k"}), "v");
}

TEST(RedisServerTest, WithoutAppendOnlyRestartLosesWrites) {
  auto server = RedisServer::Start({.appendonly = false});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->Cli({"CONFIG", "GET", "appendonly"}), "appendonly\nno");
  ASSERT_TRUE(server->CliOk({"SET", "k", "v"}));
  server->Kill();
  ASSERT_TRUE(server->Restart());
  EXPECT_EQ(server->Cli({"DBSIZE"}), "0");
}

TEST(RedisServerTest, FixtureKeyListsAgree) {
  const auto keys = FixtureKeys();
  const auto sets = FixtureKeysByTtl();
  EXPECT_EQ(keys.size(), 123u) << "reading " << kFixture << "/keys.txt";
  std::vector<std::string> all = sets.persistent;
  all.insert(all.end(), sets.expiring.begin(), sets.expiring.end());
  EXPECT_EQ(Sorted(all), Sorted(keys));
  EXPECT_NE(std::find(sets.persistent.begin(), sets.persistent.end(), "/mail/ns"),
            sets.persistent.end());
  EXPECT_FALSE(sets.expiring.empty());
}

TEST(RedisServerTest, FixtureDumpLoadsAndSurvivesKillAndRestart) {
  const auto sets = FixtureKeysByTtl();
  ASSERT_FALSE(sets.persistent.empty());
  auto server = RedisServer::Start({.rdb_file = kFixture + "/dump.rdb"});
  ASSERT_NE(server, nullptr);
  ExpectFixtureKeys(*server, sets);
  // One value, from redis-keys.jsonl.
  EXPECT_EQ(server->Cli({"HGET", "/mail/ns", "testuser"}), "4/44ce6e99c4044afe9bda494eb34a02c6");
  EXPECT_EQ(server->Cli({"CONFIG", "GET", "appendonly"}), "appendonly\nyes");
  ASSERT_TRUE(server->CliOk({"SET", "written-after-load", "x"}));
  const std::string digest = server->Cli({"DEBUG", "DIGEST"});
  const std::string dbsize = server->Cli({"DBSIZE"});
  EXPECT_NE(digest, std::string(40, '0'));

  server->Kill();
  ASSERT_TRUE(server->Restart());
  ExpectFixtureKeys(*server, sets);
  EXPECT_EQ(server->Cli({"HGET", "/mail/ns", "testuser"}), "4/44ce6e99c4044afe9bda494eb34a02c6");
  EXPECT_EQ(server->Cli({"GET", "written-after-load"}), "x");
  EXPECT_EQ(server->Cli({"DBSIZE"}), dbsize);
  EXPECT_EQ(server->Cli({"DEBUG", "DIGEST"}), digest) << "the data changed across Kill+Restart";
}

TEST(RedisServerTest, FixtureDumpWithoutAppendOnlyReloadsTheDump) {
  const auto sets = FixtureKeysByTtl();
  ASSERT_FALSE(sets.persistent.empty());
  auto server = RedisServer::Start({.rdb_file = kFixture + "/dump.rdb", .appendonly = false});
  ASSERT_NE(server, nullptr);
  ExpectFixtureKeys(*server, sets);
  ASSERT_TRUE(server->CliOk({"SET", "written-after-load", "x"}));
  server->Kill();
  ASSERT_TRUE(server->Restart());
  ExpectFixtureKeys(*server, sets);
  EXPECT_EQ(server->Cli({"EXISTS", "written-after-load"}), "0");
}

TEST(RedisServerTest, StartFailsOnAMissingDump) {
  std::unique_ptr<RedisServer> server;
  // The failure is reported, not thrown or skipped.
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    server = RedisServer::Start({.rdb_file = kFixture + "/no-such-dump.rdb"});
  }
  EXPECT_EQ(server, nullptr);
  ASSERT_EQ(failures.size(), 1);
  EXPECT_TRUE(failures.GetTestPartResult(0).nonfatally_failed());
  EXPECT_NE(std::string(failures.GetTestPartResult(0).message()).find("no-such-dump.rdb"),
            std::string::npos)
      << failures.GetTestPartResult(0).message();
}

// The server gets SIGKILL when the thread that started it ends
// (setpriv --pdeathsig), so a test binary that dies takes its servers with
// it.
TEST(RedisServerTest, ServerDiesWithTheThreadThatStartedIt) {
  std::unique_ptr<RedisServer> server;
  std::thread([&server] { server = RedisServer::Start(); }).join();
  ASSERT_NE(server, nullptr);
  const pid_t pid = server->pid();
  EXPECT_TRUE(Eventually([&] { return !ProcessRuns(pid); }))
      << "redis-server (pid " << pid << ") outlived the thread that started it";
  EXPECT_FALSE(server->Ping());
}

TEST(RedisServerTest, SharedServerAnswersPing) {
  const std::string address = RequireSharedRedis();
  ASSERT_FALSE(address.empty());
  EXPECT_EQ(RedisCli(address, {"PING"}), "PONG");
  // Tests share this server: keys of their own only, removed again.
  const std::string key = "mailfs-test:redis-server-test:" + std::to_string(::getpid());
  EXPECT_EQ(RedisCli(address, {"SET", key, "1"}), "OK");
  EXPECT_EQ(RedisCli(address, {"DEL", key}), "1");
}

}  // namespace
}  // namespace mailfs::test
