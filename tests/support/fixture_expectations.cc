#include "tests/support/fixture_expectations.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

using nlohmann::json;

const std::string kFixturesDir = std::string(MAILFS_SOURCE_DIR) + "/tests/data/fixtures";

std::optional<std::string> ReadLocal(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

std::optional<json> ReadJson(const std::string& path) {
  std::optional<std::string> text = ReadLocal(path);
  if (!text) {
    ADD_FAILURE() << "cannot read " << path;
    return std::nullopt;
  }
  json value = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    ADD_FAILURE() << path << " is not valid JSON";
    return std::nullopt;
  }
  return value;
}

bool Extract(const std::string& tarball, const std::string& dir) {
  CommandResult r = RunShell("tar -xzf " + ShellQuote(tarball), dir);
  if (!r.ok()) {
    ADD_FAILURE() << "tar -xzf " << tarball << " in " << dir << ": " << r.Describe();
    return false;
  }
  return true;
}

std::vector<std::string> FlagList(const json& flags) {
  std::vector<std::string> out;
  for (const json& f : flags) {
    std::string name = f.get<std::string>();
    if (name != "\\Recent") out.push_back(name);
  }
  return out;
}

bool HasSeen(const std::vector<std::string>& flags) {
  return std::find(flags.begin(), flags.end(), "\\Seen") != flags.end();
}

// What the fixture itself must agree with: the file `path` of the
// extracted store has this size, mtime and hash. A failure here is a
// broken fixture (or a MAILDIR.md claim that does not hold), not a mailfs bug.
void CheckStoredFile(const std::string& fixture, const std::string& path, uint64_t size,
                     UnixSeconds mtime, const std::string& sha256) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    ADD_FAILURE() << fixture << ": fixture file " << path << " is missing";
    return;
  }
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), size) << fixture << ": fixture file " << path;
  EXPECT_EQ(static_cast<UnixSeconds>(st.st_mtime), mtime)
      << fixture << ": fixture file " << path << " mtime (the internal date)";
  std::optional<std::string> bytes = ReadLocal(path);
  if (bytes) {
    EXPECT_EQ(Sha256Hex(*bytes), sha256) << fixture << ": fixture file " << path;
  }
}

std::optional<StoreFixture> LoadDovecot(StoreFixture fx, const std::string& dir) {
  const std::string data = kFixturesDir + "/" + fx.name;
  std::optional<json> expected = ReadJson(data + "/expected.json");
  if (!expected) return std::nullopt;
  if (!Extract(data + "/maildir.tar.gz", dir)) return std::nullopt;
  fx.root = dir + "/maildir";

  const std::string layout = expected->value("layout", "");
  if (layout == "fs") {
    fx.layout = maildir::Layout::kFs;
    fx.options["layout"] = "fs";
  } else if (layout != "maildir++") {
    ADD_FAILURE() << fx.name << ": unknown layout '" << layout << "' in expected.json";
    return std::nullopt;
  }
  if (expected->value("separator", "/") != "/") {
    ADD_FAILURE() << fx.name << ": expected.json uses another separator than '/'";
    return std::nullopt;
  }

  for (const auto& [name, box] : expected->at("mailboxes").items()) {
    FixtureMailbox mb;
    mb.name = name;
    mb.selectable = !box.value("noselect", false);
    mb.subscribed = box.at("subscribed").get<bool>();
    mb.uid_validity = box.at("uidvalidity").get<uint32_t>();
    mb.uid_next = box.at("uidnext").get<uint32_t>();
    for (const json& m : box.at("messages")) {
      FixtureMessage msg;
      msg.uid = m.at("uid").get<uint32_t>();
      msg.flags = FlagList(m.at("flags"));
      msg.internal_date = m.at("received").get<UnixSeconds>();
      msg.size = m.at("size").get<uint64_t>();
      msg.sha256 = m.at("sha256").get<std::string>();
      CheckStoredFile(fx.name, fx.root + "/" + m.at("file").get<std::string>(), msg.size,
                      msg.internal_date, msg.sha256);
      if (!HasSeen(msg.flags)) ++mb.unseen;
      mb.messages.push_back(std::move(msg));
    }
    EXPECT_EQ(mb.messages.size(), box.value("messages_count", mb.messages.size()))
        << fx.name << ": " << name << " messages_count";
    fx.mailboxes.push_back(std::move(mb));
  }
  for (const json& s : expected->at("subscriptions")) {
    fx.subscriptions.push_back(s.get<std::string>());
  }
  // expected.json's per-mailbox "subscribed" and its list agree.
  std::set<std::string> listed(fx.subscriptions.begin(), fx.subscriptions.end());
  for (const FixtureMailbox& mb : fx.mailboxes) {
    EXPECT_EQ(mb.subscribed, listed.count(mb.name) == 1)
        << fx.name << ": expected.json disagrees with itself on the subscription of " << mb.name;
  }
  return fx;
}

// pymap's Maildir++ folder of a mailbox: '.' + the UTF-8 name with '/'
// replaced by '.'; INBOX is the root (shared/MAILDIR.md, pymap section).
std::string PymapFolder(const std::string& name) {
  if (name == "INBOX") return "";
  std::string folder = "." + name;
  std::replace(folder.begin(), folder.end(), '/', '.');
  return folder + "/";
}

// UID -> base file name (before the first ':') from a dovecot-uidlist:
// "3 V2816080113 N20 G...\r\n" then "1 E(M...) T(T...) :1795767504.M519962P21092Q1.vm:2,\r\n".
std::map<uint32_t, std::string> UidlistBases(const std::string& bytes) {
  std::map<uint32_t, std::string> out;
  std::istringstream in(bytes);
  std::string line;
  bool header = true;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (header) {
      header = false;
      continue;
    }
    size_t colon = line.find(" :");
    if (colon == std::string::npos) continue;
    uint32_t uid = static_cast<uint32_t>(std::stoul(line.substr(0, line.find(' '))));
    std::string name = line.substr(colon + 2);
    out[uid] = name.substr(0, name.find(':'));
  }
  return out;
}

std::optional<StoreFixture> LoadPymap(StoreFixture fx, const std::string& dir) {
  const std::string data = kFixturesDir + "/" + fx.name;
  std::optional<json> expected = ReadJson(data + "/expected.json");
  std::optional<json> files = ReadJson(data + "/files.json");
  if (!expected || !files) return std::nullopt;
  if (!Extract(data + "/maildir-base.tar.gz", dir)) return std::nullopt;
  const std::string user = expected->at("user").get<std::string>();
  fx.root = dir + "/" + user;
  if (expected->value("delimiter", "/") != "/") {
    ADD_FAILURE() << fx.name << ": expected.json uses another delimiter than '/'";
    return std::nullopt;
  }

  // files.json: "testuser/.Archive/cur/1795767505.M663365P21092Q26.vm:2,FST" -> entry.
  std::map<std::string, const json*> file_by_path;
  for (const json& f : *files) {
    if (f.value("type", "") == "file") file_by_path[f.at("path").get<std::string>()] = &f;
  }

  // The subscription list: SUBSCRIBE/UNSUBSCRIBE replayed in order.
  std::vector<std::string> subscribed;
  for (const json& op : expected->at("ops")) {
    const json& args = op.at("op");
    if (op.value("status", "") != "OK" || !args.is_array() || args.size() != 2) continue;
    const std::string verb = args[0].is_string() ? args[0].get<std::string>() : "";
    if (verb != "subscribe" && verb != "unsubscribe") continue;
    const std::string name = args[1].get<std::string>();
    std::erase(subscribed, name);
    if (verb == "subscribe") subscribed.push_back(name);
  }
  fx.subscriptions = subscribed;
  const std::set<std::string> listed(subscribed.begin(), subscribed.end());

  for (const auto& [name, box] : expected->at("mailboxes").items()) {
    FixtureMailbox mb;
    mb.name = name;
    mb.selectable = box.value("selectable", true);
    mb.subscribed = listed.count(name) == 1;
    // pymap's LSUB always shows INBOX as subscribed; otherwise its answer
    // is the replayed list.
    EXPECT_EQ(box.at("subscribed").get<bool>(), mb.subscribed || name == "INBOX")
        << fx.name << ": expected.json disagrees with its ops on the subscription of " << name;
    mb.uid_validity = box.at("uidvalidity").get<uint32_t>();
    mb.uid_next = box.at("uidnext").get<uint32_t>();
    if (!mb.selectable) {
      fx.mailboxes.push_back(std::move(mb));
      continue;
    }
    const json& status = box.at("status");
    mb.unseen = status.at("UNSEEN").get<uint32_t>();
    EXPECT_EQ(status.at("UIDVALIDITY").get<uint32_t>(), mb.uid_validity) << fx.name << ": " << name;
    EXPECT_EQ(status.at("UIDNEXT").get<uint32_t>(), mb.uid_next) << fx.name << ": " << name;
    EXPECT_EQ(status.at("MESSAGES").get<size_t>(), box.at("messages").size())
        << fx.name << ": " << name;

    const std::string folder = user + "/" + PymapFolder(name);
    std::optional<std::string> uidlist = ReadLocal(dir + "/" + folder + "dovecot-uidlist");
    if (!uidlist) {
      ADD_FAILURE() << fx.name << ": no dovecot-uidlist in " << folder;
      return std::nullopt;
    }
    const std::map<uint32_t, std::string> bases = UidlistBases(*uidlist);
    // The message files of this folder by base name.
    std::map<std::string, const json*> file_by_base;
    for (const auto& [path, entry] : file_by_path) {
      for (const char* sub : {"cur/", "new/"}) {
        const std::string prefix = folder + sub;
        if (path.rfind(prefix, 0) != 0) continue;
        const std::string file = path.substr(prefix.size());
        if (file.find('/') != std::string::npos) continue;
        file_by_base[file.substr(0, file.find(':'))] = entry;
      }
    }

    for (const json& m : box.at("messages")) {
      FixtureMessage msg;
      msg.uid = m.at("uid").get<uint32_t>();
      msg.flags = FlagList(m.at("flags"));
      msg.internal_date = m.at("internaldate_unix").get<UnixSeconds>();
      auto base = bases.find(msg.uid);
      if (base == bases.end() || file_by_base.count(base->second) == 0) {
        ADD_FAILURE() << fx.name << ": " << name << " UID " << msg.uid
                      << " has no file in files.json (through " << folder << "dovecot-uidlist)";
        continue;
      }
      const json& file = *file_by_base.at(base->second);
      msg.size = file.at("size").get<uint64_t>();
      msg.sha256 = file.at("sha256").get<std::string>();
      EXPECT_EQ(file.at("mtime_int").get<UnixSeconds>(), msg.internal_date)
          << fx.name << ": " << file.at("path").get<std::string>()
          << ": files.json's mtime is not expected.json's internal date";
      CheckStoredFile(fx.name, dir + "/" + file.at("path").get<std::string>(), msg.size,
                      msg.internal_date, msg.sha256);
      mb.messages.push_back(std::move(msg));
    }
    fx.mailboxes.push_back(std::move(mb));
  }
  return fx;
}

}  // namespace

std::vector<std::string> StoreFixtureNames() {
  return {"dovecot-maildir-pp", "dovecot-maildir-fs", "pymap-maildir"};
}

std::optional<StoreFixture> ExtractStoreFixture(std::string_view name, const std::string& dir) {
  StoreFixture fx;
  fx.name = std::string(name);
  std::optional<StoreFixture> out;
  try {
    out =
        name.starts_with("pymap") ? LoadPymap(std::move(fx), dir) : LoadDovecot(std::move(fx), dir);
  } catch (const std::exception& e) {  // a field of the wrong type or missing
    ADD_FAILURE() << name << ": unexpected expected.json: " << e.what();
    return std::nullopt;
  }
  if (!out) return out;
  std::sort(out->mailboxes.begin(), out->mailboxes.end(),
            [](const FixtureMailbox& a, const FixtureMailbox& b) { return a.name < b.name; });
  for (FixtureMailbox& mb : out->mailboxes) {
    std::sort(mb.messages.begin(), mb.messages.end(),
              [](const FixtureMessage& a, const FixtureMessage& b) { return a.uid < b.uid; });
  }
  std::sort(out->subscriptions.begin(), out->subscriptions.end());
  return out;
}

// ---------------------------------------------------------------------------
// SHA-256 through OpenSSL's libcrypto (EVP), not a hand-written digest.

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  // EVP_Digest returns 1 on success; it fails only when libcrypto cannot
  // allocate or fetch the algorithm, so the empty result never matches.
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &digest_len, EVP_sha256(), nullptr) != 1) {
    ADD_FAILURE() << "EVP_Digest(SHA-256) failed";
    return "";
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * digest_len);
  for (unsigned int i = 0; i < digest_len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

}  // namespace mailfs::test
