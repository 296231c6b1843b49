#include "tests/support/backend_factories.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

#include "backends/dict/dict_backend.h"
#include "backends/maildir/maildir_backend.h"
#include "backends/redis/redis_backend.h"
#include "src/mailbox_name.h"
#include "tests/support/redis_server.h"

namespace mailfs::test {
namespace {

BackendFactory DictFactory() {
  BackendFactory factory;
  factory.name = "dict";
  factory.make = [] { return std::shared_ptr<MailboxSet>(NewDictMailboxSet()); };
  factory.make_readonly = [](MailboxSet& set, std::string_view name) {
    auto* dict = dynamic_cast<DictMailboxSet*>(&set);
    if (dict == nullptr) return Status::InvalidArgument("not a dict store");
    return dict->SetReadOnly(name, true);
  };
  return factory;
}

// Sets or clears the immutable attribute (chattr +i) of one directory.
// The tests run as root, for whom permissions do not stop a write; an
// immutable directory does (rename, link and unlink in it fail with EPERM).
bool SetImmutable(const std::string& path, bool immutable) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  int flags = 0;
  bool ok = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  if (ok) {
    flags = immutable ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    ok = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  }
  close(fd);
  return ok;
}

// Removes a test store, first clearing the immutable attribute that
// make_readonly may have set anywhere in it.
void RemoveStoreDirectory(const std::string& root) {
  nftw(
      root.c_str(),
      [](const char* path, const struct stat*, int type, struct FTW*) {
        if (type == FTW_D || type == FTW_DP) SetImmutable(path, false);
        return 0;
      },
      16, FTW_PHYS);
  std::error_code ignored;
  std::filesystem::remove_all(root, ignored);
}

// The root directory of each live Maildir test store, so make_readonly can
// find a mailbox's directory from the MailboxSet it is given.
std::mutex roots_mu;
std::map<const MailboxSet*, std::string>& Roots() {
  static std::map<const MailboxSet*, std::string> roots;
  return roots;
}

BackendFactory MaildirFactory(std::string name, maildir::Layout layout) {
  BackendFactory factory;
  factory.name = std::move(name);
  factory.make = [layout]() -> std::shared_ptr<MailboxSet> {
    char pattern[] = "/tmp/mailfs-test-maildir-XXXXXX";
    if (mkdtemp(pattern) == nullptr) return nullptr;
    std::string root = pattern;
    MaildirOptions options;
    options.root = root;
    options.layout = layout;
    // The suite checks behaviour, not durability; fsync only slows it.
    options.fsync = false;
    options.lock_timeout = std::chrono::seconds(10);
    auto set = OpenMaildirMailboxSet(options);
    if (!set.ok()) {
      RemoveStoreDirectory(root);
      return nullptr;
    }
    // The directory goes when the last user of the store does.
    struct Holder {
      std::string root;
      std::shared_ptr<MailboxSet> set;
      ~Holder() {
        {
          std::lock_guard lock(roots_mu);
          Roots().erase(set.get());
        }
        set.reset();
        RemoveStoreDirectory(root);
      }
    };
    auto holder = std::make_shared<Holder>();
    holder->root = root;
    holder->set = *set;
    {
      std::lock_guard lock(roots_mu);
      Roots()[holder->set.get()] = root;
    }
    return std::shared_ptr<MailboxSet>(holder, holder->set.get());
  };
  factory.make_readonly = [layout](MailboxSet& set, std::string_view name) -> Status {
    std::string root;
    {
      std::lock_guard lock(roots_mu);
      auto it = Roots().find(&set);
      if (it == Roots().end()) return Status::InvalidArgument("not a maildir test store");
      root = it->second;
    }
    if (auto box = set.GetMailbox(name); !box.ok()) return box.status();
    auto rel = maildir::MailboxDirectory(name, layout, maildir::NameEncoding::kMutf7);
    if (!rel.ok()) return rel.status();
    std::string dir = rel->empty() ? root : root + "/" + *rel;
    for (const char* sub : {"/cur", "/new", "/tmp", ""}) {
      if (!SetImmutable(dir + sub, true)) {
        return Status::Io(fmt::format("chattr +i {}{}: {}", dir, sub, strerror(errno)));
      }
    }
    return Status::Ok();
  };
  return factory;
}

// Removes every key under `prefix` from the server at `address`.
void DeleteRedisKeys(const std::string& address, const std::string& prefix) {
  auto parsed = redis::ParseRedisUrl("redis://" + address);
  if (!parsed.ok()) return;
  auto connection = redis::Connection::Open(*parsed, {});
  if (!connection.ok()) return;
  std::string cursor = "0";
  do {
    auto reply = (*connection)->Run({"SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000"});
    if (!reply.ok() || !reply->is_array() || reply->size() != 2) return;
    cursor = std::string((*reply)[0].str());
    redis::Command unlink = {"UNLINK"};
    for (size_t i = 0; i < (*reply)[1].size(); ++i) unlink.emplace_back((*reply)[1][i].str());
    if (unlink.size() > 1) (void)(*connection)->Run(unlink);
  } while (cursor != "0");
}

// A store on the suite's shared Redis (scripts/test starts it), kept apart
// from every other test's by a key prefix of its own; its keys are deleted
// when the store goes. pymap has no read-only mailboxes, so neither does
// this backend.
BackendFactory RedisFactory() {
  BackendFactory factory;
  factory.name = "redis";
  factory.make = []() -> std::shared_ptr<MailboxSet> {
    static std::atomic<int> counter{0};
    std::string address = SharedRedisAddress();
    if (address.empty()) {
      ADD_FAILURE() << "MAILFS_TEST_REDIS is not set: run the tests through scripts/test, or "
                       "start redis-server and export MAILFS_TEST_REDIS=127.0.0.1:PORT";
      return nullptr;
    }
    auto parsed = redis::ParseRedisUrl("redis://" + address);
    if (!parsed.ok()) return nullptr;
    RedisOptions options;
    options.address = *parsed;
    options.login = "tester";
    options.prefix = fmt::format("/mailfs-test/{}-{}", getpid(), counter++);
    auto set = OpenRedisMailboxSet(options);
    if (!set.ok()) {
      ADD_FAILURE() << "cannot open a redis store: " << set.status().ToString();
      return nullptr;
    }
    struct Holder {
      std::string address;
      std::string prefix;
      std::shared_ptr<MailboxSet> set;
      ~Holder() {
        set.reset();
        DeleteRedisKeys(address, prefix + "/");
      }
    };
    auto holder = std::make_shared<Holder>();
    holder->address = address;
    holder->prefix = options.prefix;
    holder->set = *set;
    return std::shared_ptr<MailboxSet>(holder, holder->set.get());
  };
  return factory;
}

}  // namespace

const std::vector<BackendFactory>& AllBackendFactories() {
  static const std::vector<BackendFactory> factories = {
      DictFactory(), MaildirFactory("maildir", maildir::Layout::kMaildirPlusPlus),
      MaildirFactory("maildir_fs", maildir::Layout::kFs), RedisFactory()};
  return factories;
}

AppendMessage MakeAppendMessage(std::string content, FlagSet flags, UnixSeconds internal_date) {
  AppendMessage message;
  message.content = std::make_shared<StringContent>(std::move(content));
  message.flags = std::move(flags);
  message.internal_date = internal_date;
  return message;
}

std::string SampleMessage(std::string_view tag, std::string_view extra_headers) {
  return fmt::format(
      "From: Tester <tester@example.org>\r\n"
      "To: Sam <sam@example.org>\r\n"
      "Subject: sample {0}\r\n"
      "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
      "Message-ID: <{0}@test.example.org>\r\n"
      "{1}"
      "MIME-Version: 1.0\r\n"
      "Content-Type: text/plain; charset=UTF-8\r\n"
      "\r\n"
      "Body of sample {0}.\r\n",
      tag, extra_headers);
}

}  // namespace mailfs::test
