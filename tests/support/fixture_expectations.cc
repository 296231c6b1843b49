#include "tests/support/fixture_expectations.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstring>
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
// SHA-256, FIPS 180-4 section 6.2.

namespace {

constexpr std::array<uint32_t, 64> kK = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void Compress(std::array<uint32_t, 8>& h, const unsigned char* block) {
  uint32_t w[64];
  for (int i = 0; i < 16; ++i) {
    w[i] = (uint32_t{block[4 * i]} << 24) | (uint32_t{block[4 * i + 1]} << 16) |
           (uint32_t{block[4 * i + 2]} << 8) | uint32_t{block[4 * i + 3]};
  }
  for (int i = 16; i < 64; ++i) {
    uint32_t s0 = Rotr(w[i - 15], 7) ^ Rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = Rotr(w[i - 2], 17) ^ Rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (int i = 0; i < 64; ++i) {
    uint32_t t1 =
        k + (Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25)) + ((e & f) ^ (~e & g)) + kK[i] + w[i];
    uint32_t t2 = (Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += k;
}

}  // namespace

std::string Sha256Hex(std::string_view bytes) {
  std::array<uint32_t, 8> h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t full = bytes.size() / 64 * 64;
  for (size_t i = 0; i < full; i += 64) Compress(h, data + i);
  // The tail, 0x80, zeros, and the length in bits (big-endian) fill one or two blocks.
  unsigned char tail[128] = {};
  size_t rest = bytes.size() - full;
  std::memcpy(tail, data + full, rest);
  tail[rest] = 0x80;
  size_t tail_len = rest + 1 + 8 <= 64 ? 64 : 128;
  uint64_t bits = static_cast<uint64_t>(bytes.size()) * 8;
  for (int i = 0; i < 8; ++i) tail[tail_len - 1 - i] = static_cast<unsigned char>(bits >> (8 * i));
  for (size_t i = 0; i < tail_len; i += 64) Compress(h, tail + i);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint32_t word : h) {
    for (int shift = 28; shift >= 0; shift -= 4) out += kHex[(word >> shift) & 0xf];
  }
  return out;
}

}  // namespace mailfs::test
