// The Redis backend through real mounts:
// - pymap's own store (tests/data/fixtures/pymap-redis/dump.rdb, loaded
//   into a private redis-server) against its expected.json: every mailbox,
//   UID, flag, keyword, size, internal date, sha256 and subscription; then
//   append, flag, move and expunge in INBOX and Sent, whose changes streams
//   pymap left ending in ids that it cannot add after (REDIS.md), leaving
//   streams pymap can add to again;
// - two mounts of one namespace on the suite's shared server, 4 writers on
//   each: 2000 messages, unique UIDs, both mounts list all; a flag set on
//   one mount shows on the other within a second.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backends/redis/connection.h"
#include "backends/registry.h"
#include "src/flags.h"
#include "tests/support/fixture_expectations.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/redis_server.h"

namespace mailfs::test {
namespace {

using Json = nlohmann::json;

const std::string kFixtureDir = std::string(MAILFS_SOURCE_DIR) + "/tests/data/fixtures/pymap-redis";

Json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return Json::parse(in, nullptr, /*allow_exceptions=*/false);
}

// The fixture's keys (redis-keys.jsonl): key -> its "decoded" value.
std::map<std::string, Json> FixtureKeys() {
  std::map<std::string, Json> keys;
  std::ifstream in(kFixtureDir + "/redis-keys.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    Json entry = Json::parse(line, nullptr, false);
    if (entry.is_discarded()) continue;
    keys[entry["key_text"].get<std::string>()] = entry.value("decoded", Json());
  }
  return keys;
}

std::string Attr(const std::string& path, const std::string& name) {
  int err = 0;
  std::optional<std::string> value = GetXattr(path, name, &err);
  return value ? *value : "<absent: " + ErrnoName(err) + ">";
}

// "1795767208420-0" -> 1795767208420.
uint64_t StreamIdMs(std::string_view id) {
  return std::stoull(std::string(id.substr(0, id.find('-'))));
}

class RedisFixtureMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetTestTimeout(std::chrono::seconds(180));
    expected_ = ReadJson(kFixtureDir + "/expected.json");
    ASSERT_FALSE(expected_.is_discarded()) << "expected.json does not parse";
    RedisServer::Options options;
    options.rdb_file = kFixtureDir + "/dump.rdb";
    server_ = RedisServer::Start(options);
    ASSERT_NE(server_, nullptr);
    auto store = OpenSource(server_->url(), {{"login", "testuser"}});
    MAILFS_ASSERT_OK(store);
    store_ = *store;
    mount_ = MountedStore::Create(store_);
    ASSERT_NE(mount_, nullptr);
    std::string ns_value = RedisCli(server_->address(), {"HGET", "/mail/ns", "testuser"});
    ASSERT_TRUE(ns_value.starts_with("4/")) << ns_value;
    ns_root_ = "/mail/ns/" + ns_value.substr(2) + "/";
  }

  void TearDown() override {
    if (mount_) mount_->Unmount();
    mount_.reset();
    store_.reset();
  }

  std::string Cli(const std::vector<std::string>& args) {
    return RedisCli(server_->address(), args);
  }

  std::string MailboxId(const std::string& name) {
    return Cli({"HGET", ns_root_ + "mailboxes", name});
  }

  // The changes stream of `mailbox` ends in an id that pymap's next
  // XADD ('<maxmodseq + 1>-1') is above.
  void ExpectStreamPymapCanExtend(const std::string& mailbox) {
    std::string key = ns_root_ + "mbx/" + MailboxId(mailbox) + "/changes";
    std::vector<std::string> top = Lines(Cli({"XREVRANGE", key, "+", "-", "COUNT", "1"}));
    ASSERT_FALSE(top.empty()) << mailbox << ": empty changes stream";
    uint64_t max_modseq = std::stoull(Cli({"GET", ns_root_ + "maxmodseq"}));
    EXPECT_LT(StreamIdMs(top[0]), max_modseq + 1)
        << mailbox << ": top id " << top[0] << " blocks pymap's next id " << max_modseq + 1 << "-1";
  }

  Json expected_;
  std::unique_ptr<RedisServer> server_;
  std::shared_ptr<MailboxSet> store_;
  std::unique_ptr<MountedStore> mount_;
  std::string ns_root_;
};

TEST_F(RedisFixtureMountTest, EveryMailboxMessageFlagSizeDateAndHash) {
  const Json& mailboxes = expected_["mailboxes"];
  ASSERT_GT(mailboxes.size(), 5u);
  size_t checked = 0;
  for (const auto& [name, box] : mailboxes.items()) {
    SCOPED_TRACE("mailbox " + name);
    const std::string dir = mount_->Path(name);
    std::vector<std::string> want_files;
    for (const Json& m : box["messages"]) want_files.push_back(Name(m["uid"].get<uint32_t>()));
    auto listed = ListDir(dir);
    ASSERT_TRUE(listed.has_value()) << "cannot list " << dir;
    std::vector<std::string> files;
    for (const std::string& entry : *listed) {
      if (entry.ends_with(".eml")) files.push_back(entry);
    }
    EXPECT_EQ(files, want_files);

    EXPECT_EQ(Attr(dir, "user.mail.uidvalidity"), std::to_string(box["uidvalidity"].get<int>()));
    EXPECT_EQ(Attr(dir, "user.mail.uidnext"), std::to_string(box["uidnext"].get<int>()));
    EXPECT_EQ(Attr(dir, "user.mail.messages"), std::to_string(box["messages"].size()));
    EXPECT_EQ(Attr(dir, "user.mail.unseen"), std::to_string(box["status"]["UNSEEN"].get<int>()));

    for (const Json& m : box["messages"]) {
      const uint32_t uid = m["uid"].get<uint32_t>();
      SCOPED_TRACE("uid " + std::to_string(uid));
      const std::string path = dir + "/" + Name(uid);
      struct stat st {};
      ASSERT_EQ(ErrnoName(Stat(path, &st)), ErrnoName(0));
      EXPECT_EQ(static_cast<uint64_t>(st.st_size), m["rfc822_size"].get<uint64_t>());
      EXPECT_EQ(static_cast<int64_t>(st.st_mtime), m["internaldate_unix"].get<int64_t>());
      auto bytes = ReadFile(path);
      ASSERT_TRUE(bytes.has_value());
      EXPECT_EQ(Sha256Hex(*bytes), m["sha256"].get<std::string>());
      std::vector<std::string> want;
      for (const Json& flag : m["flags"]) {
        if (flag.get<std::string>() != "\\Recent") want.push_back(flag.get<std::string>());
      }
      std::sort(want.begin(), want.end());
      std::vector<std::string> got = SplitSpaces(Attr(path, "user.mail.flags"));
      std::sort(got.begin(), got.end());
      EXPECT_EQ(got, want);
      for (const std::string& flag : want) {
        if (!flag.starts_with("\\")) {
          EXPECT_TRUE(GetXattr(path, "user.mail.keyword." + flag).has_value()) << flag;
        }
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 30u);
}

TEST_F(RedisFixtureMountTest, SubscriptionsAreTheStoredSet) {
  // pymap's LSUB adds INBOX and names that no longer exist; the store's
  // set is the truth: a directory carries user.mail.subscribed exactly when
  // its name is in it, and the store lists the stale names too.
  std::map<std::string, Json> keys = FixtureKeys();
  const Json& members = keys[ns_root_ + "subscribed"];
  ASSERT_TRUE(members.is_array()) << "no subscribed set in redis-keys.jsonl";
  std::set<std::string> subscribed;
  for (const Json& member : members) subscribed.insert(member.get<std::string>());
  EXPECT_EQ(StoreSubscribed(*store_),
            std::vector<std::string>(subscribed.begin(), subscribed.end()));
  for (const auto& [name, box] : expected_["mailboxes"].items()) {
    EXPECT_EQ(GetXattr(mount_->Path(name), "user.mail.subscribed").has_value(),
              subscribed.contains(name))
        << name;
  }
}

TEST_F(RedisFixtureMountTest, AppendFlagMoveExpungeWorkWherePymapCannot) {
  // Both streams end above maxmodseq (pymap's MOVE ids): pymap fails
  // every change to these mailboxes. (Any change lifts the counter for the
  // whole namespace, so check both before changing anything.)
  for (const std::string mailbox : {"INBOX", "Sent"}) {
    std::string key = ns_root_ + "mbx/" + MailboxId(mailbox) + "/changes";
    std::vector<std::string> top = Lines(Cli({"XREVRANGE", key, "+", "-", "COUNT", "1"}));
    ASSERT_FALSE(top.empty()) << mailbox;
    ASSERT_GT(StreamIdMs(top[0]), std::stoull(Cli({"GET", ns_root_ + "maxmodseq"})))
        << mailbox << ": the fixture no longer ends in pymap's MOVE id: " << top[0];
  }
  for (const std::string mailbox : {"INBOX", "Sent"}) {
    SCOPED_TRACE(mailbox);
    std::string key = ns_root_ + "mbx/" + MailboxId(mailbox) + "/changes";
    std::vector<uint32_t> before = StoreUids(*store_, mailbox);
    ASSERT_GE(before.size(), 3u);
    // Append.
    std::string bytes = TestMessage("redis-fixture-" + mailbox);
    WriteOutcome wrote = WriteFile(mount_->Path(mailbox + "/new.eml"), bytes);
    ASSERT_TRUE(wrote.ok()) << wrote.Describe();
    std::vector<uint32_t> added = NewUids(before, StoreUids(*store_, mailbox));
    ASSERT_EQ(added.size(), 1u);
    EXPECT_EQ(ReadFile(mount_->Path(mailbox + "/" + Name(added[0]))), bytes);
    // Flag.
    std::string flagged = mount_->Path(mailbox + "/" + Name(before[0]));
    CommandResult set = RunShell("setfattr -n user.mail.flagged " + ShellQuote(flagged), "");
    EXPECT_TRUE(set.ok()) << set.Describe();
    EXPECT_TRUE(StoreInfo(*store_, mailbox, before[0])->flags.Has(SystemFlag::kFlagged));
    // Move out to Archive.
    std::vector<uint32_t> archive_before = StoreUids(*store_, "Archive");
    CommandResult moved =
        RunShell("mv " + ShellQuote(mount_->Path(mailbox + "/" + Name(before[1]))) + " " +
                     ShellQuote(mount_->Path("Archive/")),
                 "");
    EXPECT_TRUE(moved.ok()) << moved.Describe();
    EXPECT_EQ(NewUids(archive_before, StoreUids(*store_, "Archive")).size(), 1u);
    // Expunge.
    CommandResult removed =
        RunShell("rm " + ShellQuote(mount_->Path(mailbox + "/" + Name(before[2]))), "");
    EXPECT_TRUE(removed.ok()) << removed.Describe();
    std::vector<uint32_t> after = StoreUids(*store_, mailbox);
    EXPECT_EQ(std::count(after.begin(), after.end(), before[1]), 0);
    EXPECT_EQ(std::count(after.begin(), after.end(), before[2]), 0);
    EXPECT_EQ(after.size(), before.size() - 1);

    ExpectStreamPymapCanExtend(mailbox);
    ExpectStreamPymapCanExtend("Archive");
    // The stream records each change, the expunges with modseq ids.
    std::string all = Cli({"XRANGE", key, "-", "+"});
    EXPECT_NE(all.find("expunge"), std::string::npos);
  }
}

// --- two mounts on one Redis -------------------------------------------------

std::string WriterMessage(int mount, int writer, int i) {
  std::string tag = fmt::format("m{}-w{}-{}", mount, writer, i);
  return "From: writer@example.org\r\nSubject: two mounts " + tag + "\r\nMessage-ID: <" + tag +
         "@mailfs.test>\r\n\r\nbody " + tag + "\r\n";
}

TEST(RedisTwoMountsTest, EightWritersOnTwoMountsAndAFlagAcross) {
  SetTestTimeout(std::chrono::seconds(300));
  std::string address = SharedRedisAddress();
  ASSERT_FALSE(address.empty()) << "MAILFS_TEST_REDIS is not set (run through scripts/test)";
  SourceOptions options = {{"login", "two-mounts"},
                           {"prefix", fmt::format("/mailfs-test/two-mounts-{}", getpid())}};
  auto store_a = OpenSource("redis://" + address, options);
  auto store_b = OpenSource("redis://" + address, options);
  MAILFS_ASSERT_OK(store_a);
  MAILFS_ASSERT_OK(store_b);
  auto mount_a = MountedStore::Create(*store_a);
  auto mount_b = MountedStore::Create(*store_b);
  ASSERT_NE(mount_a, nullptr);
  ASSERT_NE(mount_b, nullptr);
  // B lists INBOX before the writes, so that its cached listing must be
  // invalidated by the changes A makes.
  ASSERT_TRUE(ListDir(mount_b->Path("INBOX")).has_value());

  constexpr int kWritersPerMount = 4;
  constexpr int kMessagesPerWriter = 250;
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int m = 0; m < 2; ++m) {
    MountedStore* mount = m == 0 ? mount_a.get() : mount_b.get();
    for (int w = 0; w < kWritersPerMount; ++w) {
      writers.emplace_back([&, mount, m, w] {
        for (int i = 0; i < kMessagesPerWriter; ++i) {
          WriteOutcome outcome = WriteFile(
              mount->Path(fmt::format("INBOX/m{}-w{}-{}.eml", m, w, i)), WriterMessage(m, w, i));
          if (!outcome.ok() && failures++ < 5) {
            ADD_FAILURE() << "mount " << m << " writer " << w << " message " << i << ": "
                          << outcome.Describe();
          }
        }
      });
    }
  }
  for (auto& writer : writers) writer.join();
  EXPECT_EQ(failures.load(), 0);

  constexpr size_t kTotal = 2 * kWritersPerMount * kMessagesPerWriter;
  std::vector<MessageInfo> messages = StoreMessages(**store_a, "INBOX");
  ASSERT_EQ(messages.size(), kTotal);
  std::set<uint64_t> contents;
  for (const MessageInfo& info : messages) {
    contents.insert(ContentHash(StoreBytes(**store_a, "INBOX", info.uid)));
  }
  EXPECT_EQ(contents.size(), kTotal) << "some message is stored twice or garbled";
  std::set<uint64_t> written;
  for (int m = 0; m < 2; ++m) {
    for (int w = 0; w < kWritersPerMount; ++w) {
      for (int i = 0; i < kMessagesPerWriter; ++i)
        written.insert(ContentHash(WriterMessage(m, w, i)));
    }
  }
  EXPECT_EQ(contents, written);

  std::vector<std::string> want;
  for (const MessageInfo& info : messages) want.push_back(Name(info.uid));
  // Within a second both mounts list every message.
  for (MountedStore* mount : {mount_a.get(), mount_b.get()}) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    std::optional<std::vector<std::string>> listed;
    do {
      listed = ListDir(mount->Path("INBOX"));
    } while ((!listed || *listed != want) && std::chrono::steady_clock::now() < deadline &&
             (std::this_thread::sleep_for(std::chrono::milliseconds(20)), true));
    ASSERT_TRUE(listed.has_value());
    EXPECT_EQ(listed->size(), want.size()) << mount->root();
    EXPECT_TRUE(*listed == want) << mount->root() << " does not list the 2000 UIDs in order";
  }

  // A flag set on A shows on B within a second: B read the attribute
  // before, so its kernel caches must be invalidated.
  std::string name = "INBOX/" + want[want.size() / 2];
  ASSERT_FALSE(GetXattr(mount_b->Path(name), "user.mail.flagged").has_value());
  CommandResult set =
      RunShell("setfattr -n user.mail.flagged " + ShellQuote(mount_a->Path(name)), "");
  ASSERT_TRUE(set.ok()) << set.Describe();
  auto start = std::chrono::steady_clock::now();
  bool seen = false;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(1)) {
    if (GetXattr(mount_b->Path(name), "user.mail.flagged").has_value()) {
      seen = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(seen) << "the flag set on mount A did not show on mount B within a second";
  // An expunge and a new mailbox on A show on B within a second too.
  CommandResult removed = RunShell("rm " + ShellQuote(mount_a->Path(name)), "");
  ASSERT_TRUE(removed.ok()) << removed.Describe();
  CommandResult made = RunShell("mkdir " + ShellQuote(mount_a->Path("Fresh")), "");
  ASSERT_TRUE(made.ok()) << made.Describe();
  auto shown = std::chrono::steady_clock::now();
  bool expunge_seen = false, mailbox_seen = false;
  while (std::chrono::steady_clock::now() - shown < std::chrono::seconds(1)) {
    struct stat st {};
    expunge_seen = expunge_seen || Stat(mount_b->Path(name), &st) == ENOENT;
    mailbox_seen = mailbox_seen || Stat(mount_b->Path("Fresh"), &st) == 0;
    if (expunge_seen && mailbox_seen) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(expunge_seen) << "the expunge on A did not show on B within a second";
  EXPECT_TRUE(mailbox_seen) << "the mailbox made on A did not show on B within a second";
  RecordProperty("flag_latency_ms",
                 std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now() - start)
                                    .count()));
  mount_a->Unmount();
  mount_b->Unmount();
}

// --- the server goes away and comes back ------------------------------------

TEST(RedisOutageTest, EioWhileDownAppendsAgainAfterAndNothingAcknowledgedIsLost) {
  SetTestTimeout(std::chrono::seconds(180));
  auto server = RedisServer::Start();
  ASSERT_NE(server, nullptr);
  // timeout=2: an operation must fail within about that when the server
  // does not answer.
  auto store = OpenSource(server->url(), {{"login", "outage"}, {"timeout", "2"}});
  MAILFS_ASSERT_OK(store);
  auto mount = MountedStore::Create(*store);
  ASSERT_NE(mount, nullptr);

  std::vector<std::string> acknowledged;
  int next = 0;
  auto append = [&](int* err) {
    std::string bytes = TestMessage("outage-" + std::to_string(next));
    WriteOutcome outcome = WriteFile(mount->Path(fmt::format("INBOX/o{}.eml", next++)), bytes);
    *err = outcome.open_errno    ? outcome.open_errno
           : outcome.write_errno ? outcome.write_errno
                                 : outcome.close_errno;
    if (outcome.ok()) acknowledged.push_back(bytes);
    return outcome.ok();
  };
  int err = 0;
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(append(&err)) << ErrnoName(err);

  server->Kill();
  for (int i = 0; i < 10; ++i) {
    auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(append(&err)) << "an append succeeded with the server down";
    EXPECT_EQ(ErrnoName(err), ErrnoName(EIO));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5))
        << "an append waited too long for a dead server";
  }
  // Listing fails too, with EIO, rather than hang or show an empty mailbox.
  int list_err = 0;
  EXPECT_FALSE(ListDir(mount->Path("INBOX"), &list_err).has_value());
  EXPECT_EQ(ErrnoName(list_err), ErrnoName(EIO));

  ASSERT_TRUE(server->Restart());
  // The mount serves again without a remount, after at most its backoff.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  bool back = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (append(&err)) {
      back = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(back) << "appends still fail 5 s after the server came back: " << ErrnoName(err);
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(append(&err)) << ErrnoName(err);

  // Every acknowledged append is there once; nothing else is.
  std::multiset<uint64_t> want;
  for (const std::string& bytes : acknowledged) want.insert(ContentHash(bytes));
  std::multiset<uint64_t> got;
  for (const MessageInfo& info : StoreMessages(**store, "INBOX")) {
    got.insert(ContentHash(StoreBytes(**store, "INBOX", info.uid)));
  }
  EXPECT_EQ(got, want);
  auto listed = ListDir(mount->Path("INBOX"));
  ASSERT_TRUE(listed.has_value());
  EXPECT_EQ(listed->size(), acknowledged.size());
  mount->Unmount();
}

// A server that stops answering (DEBUG SLEEP) costs an operation no more
// than the timeout, and the mount serves again once it answers.
TEST(RedisOutageTest, AHungServerFailsAnAppendWithinTheTimeout) {
  SetTestTimeout(std::chrono::seconds(120));
  auto server = RedisServer::Start();
  ASSERT_NE(server, nullptr);
  auto store = OpenSource(server->url(), {{"login", "hung"}, {"timeout", "1"}});
  MAILFS_ASSERT_OK(store);
  auto mount = MountedStore::Create(*store);
  ASSERT_NE(mount, nullptr);
  ASSERT_TRUE(WriteFile(mount->Path("INBOX/before.eml"), TestMessage("before")).ok());
  std::thread sleeper([&] { server->RunCli({"DEBUG", "SLEEP", "4"}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto start = std::chrono::steady_clock::now();
  WriteOutcome hung = WriteFile(mount->Path("INBOX/during.eml"), TestMessage("during"));
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(hung.ok());
  EXPECT_EQ(ErrnoName(hung.close_errno), ErrnoName(EIO)) << hung.Describe();
  EXPECT_LT(took, std::chrono::milliseconds(2500)) << "the append waited past its 1 s timeout";
  sleeper.join();
  WriteOutcome after = WriteFile(mount->Path("INBOX/after.eml"), TestMessage("after"));
  EXPECT_TRUE(after.ok()) << after.Describe();
  mount->Unmount();
}

// --- bad data through the mount ------------------------------------------------

TEST(RedisBadDataMountTest, EioForTheBrokenMessageAndMailboxOnly) {
  SetTestTimeout(std::chrono::seconds(120));
  auto server = RedisServer::Start();
  ASSERT_NE(server, nullptr);
  auto store = OpenSource(server->url(), {{"login", "bad"}});
  MAILFS_ASSERT_OK(store);
  MAILFS_ASSERT_OK((*store)->AddMailbox("Broken"));
  for (int i = 0; i < 3; ++i) {
    StoreAppend(**store, "INBOX", TestMessage("good-" + std::to_string(i)));
    StoreAppend(**store, "Broken", TestMessage("broken-" + std::to_string(i)));
  }
  std::string ns = RedisCli(server->address(), {"HGET", "/mail/ns", "bad"}).substr(2);
  auto key = [&](std::string_view mailbox, std::string_view name) {
    std::string id = RedisCli(server->address(),
                              {"HGET", "/mail/ns/" + ns + "/mailboxes", std::string(mailbox)});
    return "/mail/ns/" + ns + "/mbx/" + id + "/" + std::string(name);
  };
  // INBOX: message 2's record does not decode. Broken: its uids hash is a string.
  RedisCli(server->address(), {"HSET", key("INBOX", "uids"), "2", "not msgpack"});
  std::string broken_uids = key("Broken", "uids");
  RedisCli(server->address(), {"DEL", broken_uids});
  RedisCli(server->address(), {"SET", broken_uids, "not a hash"});

  auto mount = MountedStore::Create(*store);
  ASSERT_NE(mount, nullptr);
  EXPECT_EQ(ListDir(mount->Path("INBOX")), (std::vector<std::string>{"1.eml", "3.eml"}));
  std::string digest = RedisCli(server->address(), {"DEBUG", "DIGEST"});
  struct stat st {};
  EXPECT_EQ(ErrnoName(Stat(mount->Path("INBOX/2.eml"), &st)), ErrnoName(EIO));
  EXPECT_TRUE(ReadFile(mount->Path("INBOX/3.eml")).has_value());
  int err = 0;
  EXPECT_FALSE(ListDir(mount->Path("Broken"), &err).has_value());
  EXPECT_EQ(ErrnoName(err), ErrnoName(EIO));
  WriteOutcome outcome = WriteFile(mount->Path("Broken/new.eml"), TestMessage("refused"));
  EXPECT_FALSE(outcome.ok());
  // The mount read and refused; it wrote nothing.
  EXPECT_EQ(RedisCli(server->address(), {"DEBUG", "DIGEST"}), digest);
  mount->Unmount();
}

}  // namespace
}  // namespace mailfs::test
