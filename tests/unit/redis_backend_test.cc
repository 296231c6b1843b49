// The Redis backend alone, on the suite's shared redis-server: what the
// conformance suite cannot see. Bad data (a key of the wrong type, a record
// that does not decode, a namespace of another data version, a missing
// content hash, a broken counter) fails that message or mailbox with
// kCorrupt (EIO on the mount) and leaves the data exactly as it was;
// pymap's content sharing, cleanup queue and broken stream ids; redis://
// URLs. Each test keeps its keys under a prefix of its own.
#include "backends/redis/redis_backend.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "backends/redis/connection.h"
#include "backends/redis/format/content.h"
#include "backends/registry.h"
#include "tests/support/backend_factories.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/redis_server.h"
#include "tests/support/test_util.h"

namespace mailfs::test {
namespace {

using redis::Reply;

class RedisBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    address_ = SharedRedisAddress();
    ASSERT_FALSE(address_.empty()) << "MAILFS_TEST_REDIS is not set (run through scripts/test)";
    prefix_ = fmt::format("/mailfs-test/backend-{}-{}", getpid(), counter++);
    auto parsed = redis::ParseRedisUrl("redis://" + address_);
    MAILFS_ASSERT_OK(parsed);
    address_struct_ = *parsed;
    auto connection = redis::Connection::Open(*parsed, {});
    MAILFS_ASSERT_OK(connection);
    connection_ = std::move(connection).value();
  }

  void TearDown() override {
    set_.reset();
    for (const std::string& key : Keys()) Run({"UNLINK", key});
  }

  Result<std::shared_ptr<MailboxSet>> Open() {
    RedisOptions options;
    options.address = address_struct_;
    options.login = "tester";
    options.prefix = prefix_;
    return OpenRedisMailboxSet(options);
  }

  void OpenStore() {
    auto set = Open();
    MAILFS_ASSERT_OK(set);
    set_ = *set;
    std::string ns = Str({"HGET", prefix_ + "/ns", "tester"});
    ASSERT_TRUE(ns.starts_with("4/")) << ns;
    ns_root_ = prefix_ + "/ns/" + ns.substr(2) + "/";
  }

  Reply Run(const redis::Command& command) {
    auto reply = connection_->Run(command);
    EXPECT_TRUE(reply.ok()) << reply.status().ToString();
    return reply.ok() ? *reply : Reply();
  }
  std::string Str(const redis::Command& command) { return std::string(Run(command).str()); }

  std::vector<std::string> Keys() {
    std::vector<std::string> keys;
    std::string cursor = "0";
    do {
      Reply reply = Run({"SCAN", cursor, "MATCH", prefix_ + "/*", "COUNT", "1000"});
      if (reply.size() != 2) break;
      cursor = std::string(reply[0].str());
      for (size_t i = 0; i < reply[1].size(); ++i) keys.emplace_back(reply[1][i].str());
    } while (cursor != "0");
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  // Every key under the prefix with its DUMP: equal dumps, equal data.
  std::map<std::string, std::string> Dump() {
    std::map<std::string, std::string> dump;
    for (const std::string& key : Keys()) dump[key] = Str({"DUMP", key});
    return dump;
  }

  std::string MailboxKey(std::string_view mailbox, std::string_view name) {
    std::string id = Str({"HGET", ns_root_ + "mailboxes", std::string(mailbox)});
    return ns_root_ + "mbx/" + id + "/" + std::string(name);
  }

  std::shared_ptr<MailboxData> Box(std::string_view name) {
    auto box = set_->GetMailbox(name);
    EXPECT_TRUE(box.ok()) << box.status().ToString();
    return box.ok() ? *box : nullptr;
  }

  uint32_t Append(std::string_view mailbox, std::string_view tag) {
    auto box = Box(mailbox);
    if (box == nullptr) return 0;
    auto uid = box->Append(MakeAppendMessage(SampleMessage(tag)), false);
    EXPECT_TRUE(uid.ok()) << uid.status().ToString();
    return uid.ok() ? *uid : 0;
  }

  std::vector<uint32_t> Uids(std::string_view mailbox) {
    std::vector<uint32_t> uids;
    auto found = Box(mailbox)->Find(1, UINT32_MAX);
    EXPECT_TRUE(found.ok()) << found.status().ToString();
    if (found.ok()) {
      for (const MessageInfo& info : *found) uids.push_back(info.uid);
    }
    return uids;
  }

  std::string address_;
  redis::Address address_struct_;
  std::string prefix_;
  std::string ns_root_;
  std::unique_ptr<redis::Connection> connection_;
  std::shared_ptr<MailboxSet> set_;
};

TEST_F(RedisBackendTest, ANamespaceOfAnotherDataVersionIsRefusedAndLeftAlone) {
  Run({"HSET", prefix_ + "/ns", "tester", "3/0123456789abcdef0123456789abcdef"});
  auto before = Dump();
  auto set = Open();
  MAILFS_EXPECT_CODE(set, kCorrupt);
  EXPECT_NE(set.status().detail().find("data version"), std::string::npos) << set.status().detail();
  EXPECT_EQ(Dump(), before);
}

TEST_F(RedisBackendTest, AKeyOfTheWrongTypeFailsThatMailboxOnlyAndIsNotWritten) {
  ASSERT_NO_FATAL_FAILURE(OpenStore());
  MAILFS_ASSERT_OK(set_->AddMailbox("Other"));
  Append("INBOX", "a");
  Append("Other", "b");
  std::string uids = MailboxKey("INBOX", "uids");
  Run({"DEL", uids});
  Run({"SET", uids, "not a hash"});
  auto before = Dump();
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  MAILFS_EXPECT_CODE(inbox->Find(1, UINT32_MAX), kCorrupt);
  MAILFS_EXPECT_CODE(inbox->Get(1), kCorrupt);
  MAILFS_EXPECT_CODE(inbox->Append(MakeAppendMessage(SampleMessage("c")), false), kCorrupt);
  MAILFS_EXPECT_CODE(inbox->Update(1, FlagSet(), FlagOp::kReplace), kCorrupt);
  MAILFS_EXPECT_CODE(inbox->Snapshot(), kCorrupt);
  EXPECT_EQ(Dump(), before) << "a failed operation wrote something";
  EXPECT_EQ(Uids("Other"), std::vector<uint32_t>{1});
}

TEST_F(RedisBackendTest, ARecordThatDoesNotDecodeFailsThatMessageOnly) {
  ASSERT_NO_FATAL_FAILURE(OpenStore());
  for (const char* tag : {"one", "two", "three"}) Append("INBOX", tag);
  Run({"HSET", MailboxKey("INBOX", "uids"), "2", std::string("\xc1\x00garbage", 9)});
  auto before = Dump();
  auto inbox = Box("INBOX");
  EXPECT_EQ(Uids("INBOX"), (std::vector<uint32_t>{1, 3}));
  MAILFS_EXPECT_CODE(inbox->Get(2), kCorrupt);
  MAILFS_EXPECT_CODE(inbox->Open(2), kCorrupt);
  MAILFS_EXPECT_CODE(inbox->Update(2, FlagSet(), FlagOp::kReplace), kCorrupt);
  MAILFS_EXPECT_CODE(inbox->Copy(2, *inbox, false), kCorrupt);
  MAILFS_EXPECT_CODE(inbox->Move(2, *inbox, false), kCorrupt);
  EXPECT_EQ(Dump(), before) << "a failed operation wrote something";
  // The others are unharmed.
  MAILFS_EXPECT_OK(inbox->Get(3));
  MAILFS_EXPECT_OK(inbox->Update(3, *FlagSet::Parse("\\Seen"), FlagOp::kAdd));
}

TEST_F(RedisBackendTest, AMissingContentHashFailsThatMessageOnly) {
  ASSERT_NO_FATAL_FAILURE(OpenStore());
  Append("INBOX", "kept");
  Append("INBOX", "lost");
  auto inbox = Box("INBOX");
  auto lost = inbox->Get(2);
  MAILFS_ASSERT_OK(lost);
  Run({"DEL", ns_root_ + "content/" + lost->email_id});
  // A fresh store: nothing cached about the content.
  set_.reset();
  ASSERT_NO_FATAL_FAILURE(OpenStore());
  inbox = Box("INBOX");
  EXPECT_EQ(Uids("INBOX"), std::vector<uint32_t>{1});
  MAILFS_EXPECT_CODE(inbox->Get(2), kCorrupt);
  MAILFS_EXPECT_CODE(inbox->Open(2), kCorrupt);
  auto kept = inbox->Open(1);
  MAILFS_ASSERT_OK(kept);
  EXPECT_EQ(*ReadAll(**kept), SampleMessage("kept"));
}

TEST_F(RedisBackendTest, ACounterThatIsNotANumberRefusesTheChange) {
  ASSERT_NO_FATAL_FAILURE(OpenStore());
  Append("INBOX", "one");
  Run({"SET", ns_root_ + "maxmodseq", "twelve"});
  auto before = Dump();
  auto inbox = Box("INBOX");
  MAILFS_EXPECT_CODE(inbox->Append(MakeAppendMessage(SampleMessage("two")), false), kCorrupt);
  MAILFS_EXPECT_CODE(inbox->Update(1, *FlagSet::Parse("\\Seen"), FlagOp::kAdd), kCorrupt);
  MAILFS_EXPECT_CODE(inbox->Delete(std::vector<uint32_t>{1}), kCorrupt);
  EXPECT_EQ(Dump(), before);
}

TEST_F(RedisBackendTest, AMissingUidValidityFailsThatMailbox) {
  ASSERT_NO_FATAL_FAILURE(OpenStore());
  MAILFS_ASSERT_OK(set_->AddMailbox("Other"));
  Run({"HDEL", ns_root_ + "uidv", "Other"});
  MAILFS_EXPECT_CODE(set_->GetMailbox("Other"), kCorrupt);
  MAILFS_EXPECT_OK(set_->GetMailbox("INBOX"));
}

TEST_F(RedisBackendTest, AStreamEndingInPymapsMoveIdTakesNewChanges) {
  ASSERT_NO_FATAL_FAILURE(OpenStore());
  Append("INBOX", "one");
  std::string changes = MailboxKey("INBOX", "changes");
  // What pymap's UID MOVE leaves: an automatic id far above maxmodseq.
  Run({"XADD", changes, "1795767208420-0", "uid", "1", "type", "expunge"});
  Append("INBOX", "two");
  Reply top = Run({"XREVRANGE", changes, "+", "-", "COUNT", "1"});
  ASSERT_EQ(top.size(), 1u);
  std::string id(top[0][0].str());
  EXPECT_GT(std::stoull(id), 1795767208420ull) << id;
  EXPECT_TRUE(id.ends_with("-1")) << id;
  // pymap's next id, maxmodseq + 1, is above the top again.
  EXPECT_GT(std::stoull(Str({"GET", ns_root_ + "maxmodseq"})) + 1, std::stoull(id));
}

TEST_F(RedisBackendTest, IdenticalBytesShareContentAndExpungeReleasesIt) {
  ASSERT_NO_FATAL_FAILURE(OpenStore());
  auto inbox = Box("INBOX");
  std::string bytes = SampleMessage("shared");
  auto first = inbox->Append(MakeAppendMessage(bytes), false);
  auto second = inbox->Append(MakeAppendMessage(bytes), false);
  MAILFS_ASSERT_OK(first);
  MAILFS_ASSERT_OK(second);
  std::string email_id = redis::EmailIdOf(bytes);
  EXPECT_EQ(inbox->Get(*first)->email_id, email_id);
  EXPECT_EQ(inbox->Get(*second)->email_id, email_id);
  EXPECT_EQ(Str({"HGET", ns_root_ + "contentrefs", email_id}), "2");
  std::string content = ns_root_ + "content/" + email_id;
  EXPECT_EQ(Str({"HGET", content, "full"}), bytes);

  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{*first, *second}));
  EXPECT_EQ(Run({"LLEN", prefix_ + "/cleanup/4/content"}).integer(), 2);
  MAILFS_ASSERT_OK(inbox->Cleanup());
  EXPECT_EQ(Run({"LLEN", prefix_ + "/cleanup/4/content"}).integer(), 0);
  EXPECT_EQ(Str({"HGET", ns_root_ + "contentrefs", email_id}), "0");
  long long ttl = Run({"TTL", content}).integer();
  EXPECT_GT(ttl, 3000) << "content of an expunged message must expire like pymap's (3600 s)";
}

TEST_F(RedisBackendTest, OtherBytesUnderTheSameEmailIdAreNeverMixedUp) {
  ASSERT_NO_FATAL_FAILURE(OpenStore());
  std::string bytes = SampleMessage("mine");
  std::string email_id = redis::EmailIdOf(bytes);
  // Somebody else's message under the adler32 of ours.
  std::string content = ns_root_ + "content/" + email_id;
  Run({"HSET", content, "full", "other bytes", "header", "x"});
  Run({"HSET", ns_root_ + "contentrefs", email_id, "1"});
  auto inbox = Box("INBOX");
  auto uid = inbox->Append(MakeAppendMessage(bytes), false);
  MAILFS_ASSERT_OK(uid);
  auto info = inbox->Get(*uid);
  MAILFS_ASSERT_OK(info);
  EXPECT_NE(info->email_id, email_id);
  EXPECT_EQ(info->size, bytes.size());
  EXPECT_EQ(*ReadAll(**inbox->Open(*uid)), bytes);
  EXPECT_EQ(Str({"HGET", content, "full"}), "other bytes");
}

TEST_F(RedisBackendTest, RecordsAndContentAreStoredAsPymapReadsThem) {
  ASSERT_NO_FATAL_FAILURE(OpenStore());
  auto inbox = Box("INBOX");
  std::string bytes = SampleMessage("layout");
  auto uid = inbox->Append(MakeAppendMessage(bytes, *FlagSet::Parse("\\Seen $Work")), true);
  MAILFS_ASSERT_OK(uid);
  std::string id = std::to_string(*uid);
  EXPECT_EQ(Str({"GET", MailboxKey("INBOX", "max-uid")}), id);
  EXPECT_EQ(Run({"ZSCORE", MailboxKey("INBOX", "seq"), id}).str(), id);
  EXPECT_EQ(Str({"HGET", MailboxKey("INBOX", "content"), id}), redis::EmailIdOf(bytes));
  EXPECT_EQ(Run({"SISMEMBER", MailboxKey("INBOX", "recent"), id}).integer(), 1);
  EXPECT_EQ(Run({"ZSCORE", MailboxKey("INBOX", "unseen"), id}).is_nil(), true);
  redis::ContentFields fields = redis::BuildContentFields(bytes);
  std::string content = ns_root_ + "content/" + redis::EmailIdOf(bytes);
  EXPECT_EQ(Str({"HGET", content, "full"}), bytes);
  EXPECT_EQ(Str({"HGET", content, "header"}), fields.header);
  EXPECT_EQ(Str({"HGET", content, "full-json"}), fields.full_json);
  EXPECT_EQ(Str({"HGET", content, "header-json"}), fields.header_json);
  EXPECT_EQ(Str({"TYPE", MailboxKey("INBOX", "changes")}), "stream");
  // The thread keys pymap would look up.
  for (const std::string& key : redis::ThreadKeysOf(bytes)) {
    EXPECT_EQ(Str({"HGET", ns_root_ + "threadkeys", key}), inbox->Get(*uid)->thread_id);
  }
}

TEST(RedisUrlTest, ParsesEveryPart) {
  auto full = redis::ParseRedisUrl("redis://me:p%40ss@cache.example:6380/3");
  MAILFS_ASSERT_OK(full);
  EXPECT_EQ(full->user, "me");
  EXPECT_EQ(full->password, "p@ss");
  EXPECT_EQ(full->host, "cache.example");
  EXPECT_EQ(full->port, 6380);
  EXPECT_EQ(full->database, 3);
  EXPECT_EQ(full->ToString(), "me@cache.example:6380/3");
  auto bare = redis::ParseRedisUrl("redis://h");
  MAILFS_ASSERT_OK(bare);
  EXPECT_EQ(bare->port, 6379);
  EXPECT_EQ(bare->database, 0);
  EXPECT_TRUE(bare->password.empty());
  auto password_only = redis::ParseRedisUrl("redis://:secret@[::1]:7000");
  MAILFS_ASSERT_OK(password_only);
  EXPECT_EQ(password_only->host, "::1");
  EXPECT_EQ(password_only->port, 7000);
  EXPECT_EQ(password_only->password, "secret");
  EXPECT_TRUE(password_only->user.empty());
  for (const char* bad : {"http://h", "redis://h:0", "redis://h:x", "redis://h/-1", "redis://h/x",
                          "redis://u:%zz@h", "redis://[::1"}) {
    MAILFS_EXPECT_CODE(redis::ParseRedisUrl(bad), kInvalidArgument) << bad;
  }
}

// An ACL user with a password from a file or the environment, and a
// database other than 0, on a private server.
TEST(RedisLoginTest, AclUserPasswordAndDatabase) {
  auto server = RedisServer::Start();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server->CliOk({"ACL", "SETUSER", "mailer", "on", ">s3cret", "~*", "&*", "+@all"}));
  TempDir dir;
  std::string password_file = dir.Path("password");
  {
    std::ofstream out(password_file);
    out << "s3cret\n";
  }
  std::string url = "redis://mailer@" + server->address() + "/3";
  auto set = OpenSource(url, {{"login", "sam"}, {"password_file", password_file}});
  MAILFS_ASSERT_OK(set);
  MAILFS_ASSERT_OK((*set)->AddMailbox("Work"));
  // Everything went to database 3.
  auto address = redis::ParseRedisUrl("redis://" + server->address());
  MAILFS_ASSERT_OK(address);
  auto db0 = redis::Connection::Open(*address, {});
  MAILFS_ASSERT_OK(db0);
  EXPECT_EQ((*db0)->Run({"DBSIZE"})->integer(), 0);
  EXPECT_GT((*db0)->Run({"SELECT", "3"})->str().size(), 0u);
  EXPECT_EQ((*db0)->Run({"HEXISTS", "/mail/ns", "sam"})->integer(), 1);

  // The environment works too; a wrong password is a clear failure.
  ASSERT_EQ(setenv("MAILFS_REDIS_PASSWORD", "s3cret", 1), 0);
  MAILFS_EXPECT_OK(OpenSource(url, {{"login", "sam"}}));
  ASSERT_EQ(setenv("MAILFS_REDIS_PASSWORD", "wrong", 1), 0);
  auto refused = OpenSource(url, {{"login", "sam"}});
  unsetenv("MAILFS_REDIS_PASSWORD");
  MAILFS_EXPECT_CODE(refused, kUnavailable);
  EXPECT_NE(refused.status().detail().find("login failed"), std::string::npos)
      << refused.status().detail();
  MAILFS_EXPECT_CODE(OpenSource(url, {{"login", "sam"}, {"password_file", dir.Path("none")}}),
                     kInvalidArgument);
}

TEST(RedisUrlTest, AnUnreachableServerIsUnavailableAtOnce) {
  auto start = std::chrono::steady_clock::now();
  auto set = OpenSource("redis://127.0.0.1:1", {{"login", "x"}});
  MAILFS_EXPECT_CODE(set, kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

}  // namespace
}  // namespace mailfs::test
