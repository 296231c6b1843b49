// Unit tests for backends/redis/format/content: the content hashes and
// thread keys pymap 0.36.7 wrote in the pymap-redis fixture, the cases of
// tests/data/redis-content/ (messages the fixture lacks, with what pymap
// stores for them, written by generate.py there), and hostile input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backends/redis/format/content.h"
#include "tests/support/fixture_expectations.h"
#include "tests/support/test_util.h"

namespace mailfs::redis {
namespace {

namespace fs = std::filesystem;
using namespace std::string_view_literals;

const fs::path kFixtureKeys =
    fs::path(MAILFS_SOURCE_DIR) / "tests/data/fixtures/pymap-redis/redis-keys.jsonl";
const fs::path kCasesDir = fs::path(MAILFS_SOURCE_DIR) / "tests/data/redis-content";

std::string Base64Decode(std::string_view text) {
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else {
      continue;  // '=' padding
    }
    bits = (bits << 6) | static_cast<uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xff);
    }
  }
  return out;
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// ---------------------------------------------------------------------------
// The pymap-redis fixture: redis-keys.jsonl has one key per line; a hash's
// `value` maps base64 field names to base64 field values (the raw bytes
// pymap stored; `decoded` is only a readable copy).

struct StoredContent {
  std::string email_id;  // from the key: .../content/<email id>
  std::map<std::string, std::string> fields;
};

struct Fixture {
  std::vector<StoredContent> contents;
  std::set<std::string> thread_keys;  // fields of the threadkeys hash
};

const Fixture& PymapRedisFixture() {
  static const Fixture fixture = [] {
    Fixture f;
    std::ifstream in(kFixtureKeys);
    std::string line;
    while (std::getline(in, line)) {
      const nlohmann::json key = nlohmann::json::parse(line);
      const std::string name = key.at("key_text");
      const bool is_content =
          name.find("/content/") != std::string::npos && name.find("/mbx/") == std::string::npos;
      const bool is_thread_keys = name.ends_with("/threadkeys");
      if (!is_content && !is_thread_keys) continue;
      EXPECT_EQ(key.at("type"), "hash") << name;
      std::map<std::string, std::string> fields;
      for (const auto& [field, value] : key.at("value").items()) {
        fields[Base64Decode(field)] = Base64Decode(value.get<std::string>());
      }
      if (is_thread_keys) {
        for (const auto& [field, value] : fields) f.thread_keys.insert(field);
      } else {
        f.contents.push_back({name.substr(name.rfind('/') + 1), std::move(fields)});
      }
    }
    return f;
  }();
  return fixture;
}

// Every content hash pymap wrote: mailfs builds the same bytes from `full`.
TEST(RedisContentFixture, EveryContentHashIsByteIdentical) {
  const Fixture& fixture = PymapRedisFixture();
  ASSERT_EQ(fixture.contents.size(), 42u);
  size_t matched = 0;
  for (const StoredContent& content : fixture.contents) {
    SCOPED_TRACE(content.email_id);
    ASSERT_EQ(content.fields.size(), 4u);
    const std::string& full = content.fields.at("full");
    const ContentFields built = BuildContentFields(full);
    EXPECT_EQ(Hex(built.header), Hex(content.fields.at("header")));
    EXPECT_EQ(Hex(built.full_json), Hex(content.fields.at("full-json")));
    EXPECT_EQ(Hex(built.header_json), Hex(content.fields.at("header-json")));
    EXPECT_EQ(EmailIdOf(full), content.email_id);
    matched += built.header == content.fields.at("header") &&
               built.full_json == content.fields.at("full-json") &&
               built.header_json == content.fields.at("header-json") &&
               EmailIdOf(full) == content.email_id;
  }
  EXPECT_EQ(matched, fixture.contents.size());
}

// The threadkeys hash holds exactly the keys of the appended messages.
TEST(RedisContentFixture, ThreadKeysAreTheFixturesThreadKeys) {
  const Fixture& fixture = PymapRedisFixture();
  ASSERT_FALSE(fixture.thread_keys.empty());
  std::set<std::string> built;
  for (const StoredContent& content : fixture.contents) {
    SCOPED_TRACE(content.email_id);
    const std::vector<std::string> keys = ThreadKeysOf(content.fields.at("full"));
    EXPECT_FALSE(keys.empty());
    for (const std::string& key : keys) {
      EXPECT_TRUE(fixture.thread_keys.contains(key)) << key;
      built.insert(key);
    }
  }
  EXPECT_EQ(built, fixture.thread_keys);
}

// ---------------------------------------------------------------------------
// tests/data/redis-content/<case>.eml and <case>.expected (see the README
// there): what pymap stores for messages the fixture lacks.

struct Expected {
  std::string email_id;
  std::string header;
  std::string full_json;         // empty when only its digest is kept
  std::string full_json_sha256;  // for large cases
  std::string header_json;
  std::vector<std::string> thread_keys;
};

Expected ReadExpected(const fs::path& path) {
  Expected e;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.find(' ');
    const std::string key = line.substr(0, space);
    const std::string value = space == std::string::npos ? "" : line.substr(space + 1);
    if (key == "email-id") {
      e.email_id = value;
    } else if (key == "header") {
      e.header = Base64Decode(value);
    } else if (key == "full-json") {
      e.full_json = Base64Decode(value);
    } else if (key == "full-json-sha256") {
      e.full_json_sha256 = value;
    } else if (key == "header-json") {
      e.header_json = Base64Decode(value);
    } else if (key == "thread-key") {
      e.thread_keys.push_back(Base64Decode(value));
    } else {
      ADD_FAILURE() << path << ": unknown key " << key;
    }
  }
  return e;
}

std::vector<std::string> CaseNames() {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(kCasesDir)) {
    if (entry.path().extension() == ".eml") names.push_back(entry.path().stem());
  }
  std::sort(names.begin(), names.end());
  return names;
}

class RedisContentCase : public ::testing::TestWithParam<std::string> {};

TEST_P(RedisContentCase, MatchesPymap) {
  const std::string message = test::ReadTestFile(kCasesDir / (GetParam() + ".eml"));
  const fs::path expected_path = kCasesDir / (GetParam() + ".expected");
  ASSERT_TRUE(fs::exists(expected_path)) << expected_path;
  const Expected expected = ReadExpected(expected_path);
  ASSERT_FALSE(expected.email_id.empty());

  const ContentFields built = BuildContentFields(message);
  EXPECT_EQ(EmailIdOf(message), expected.email_id);
  EXPECT_EQ(Hex(built.header), Hex(expected.header));
  if (expected.full_json_sha256.empty()) {
    EXPECT_EQ(Hex(built.full_json), Hex(expected.full_json));
  } else {
    EXPECT_EQ(test::Sha256Hex(built.full_json), expected.full_json_sha256);
  }
  EXPECT_EQ(Hex(built.header_json), Hex(expected.header_json));
  EXPECT_EQ(ThreadKeysOf(message), expected.thread_keys);
}

std::string CaseTestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(RedisContentPymap, RedisContentCase, ::testing::ValuesIn(CaseNames()),
                         CaseTestName);

TEST(RedisContentCases, AllThere) { EXPECT_GE(CaseNames().size(), 20u); }

// ---------------------------------------------------------------------------
// Hostile input: never a crash, always well-formed fields.

const msgpack::object* Member(const msgpack::object& map, std::string_view key) {
  if (map.type != msgpack::type::MAP) return nullptr;
  for (uint32_t i = 0; i < map.via.map.size; ++i) {
    const msgpack::object_kv& kv = map.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR &&
        std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == key) {
      return &kv.val;
    }
  }
  return nullptr;
}

// Checks the shape every result has, and returns how deep parts nest
// along the first part of each level (0: the message has no parts).
size_t CheckWellFormed(std::string_view message) {
  const ContentFields built = BuildContentFields(message);
  const std::string id = EmailIdOf(message);
  EXPECT_EQ(id.size(), 9u);
  EXPECT_EQ(id[0], 'M');
  EXPECT_TRUE(message.starts_with(built.header));
  // {"header": H, ...}: H starts after the map byte and the 7-byte key.
  EXPECT_EQ(std::string_view(built.full_json).substr(8, built.header_json.size()),
            built.header_json);
  msgpack::object_handle handle = msgpack::unpack(built.full_json.data(), built.full_json.size());
  const msgpack::object* content = &handle.get();
  size_t depth = 0;
  while (true) {
    const msgpack::object* body = Member(*content, "body");
    if (body == nullptr) {
      ADD_FAILURE() << "no body at depth " << depth;
      return depth;
    }
    const msgpack::object* nested = Member(*body, "nested");
    if (nested == nullptr || nested->type != msgpack::type::ARRAY) {
      ADD_FAILURE() << "no nested at depth " << depth;
      return depth;
    }
    if (nested->via.array.size == 0) return depth;
    content = &nested->via.array.ptr[0];
    ++depth;
  }
}

TEST(RedisContentEdge, TinyInputs) {
  for (std::string_view message :
       {""sv, "\r\n"sv, "\n"sv, "\r"sv, "\n\n"sv, "\r\n\r\n"sv, ":"sv, ": \r\n\r\n"sv, " "sv,
        "\t\r\n"sv, "\0"sv, "--"sv, "a"sv, "=?"sv, "Content-Type:"sv, "Content-Type: \r\n\r\n"sv,
        "Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n"sv,
        "Content-Type: message/rfc822\r\n\r\n"sv, "Content-Type: message/rfc822\r\n"sv}) {
    SCOPED_TRACE(Hex(message));
    CheckWellFormed(message);
    ThreadKeysOf(message);
  }
  EXPECT_EQ(EmailIdOf(""), "M00000001");  // adler32 of nothing
  EXPECT_EQ(BuildContentFields("").header, "");
}

TEST(RedisContentEdge, GarbageBytes) {
  std::mt19937 random(20240427);
  const std::string alphabet(
      "\r\n\r\n:;=\"\\()<>@*'% \t-abBq?/[]\x80\xc3\xa9\xff\x00 multipart/mixed message/rfc822 "
      "Content-Type: boundary=b --b --b-- =?utf-8?q?x?= Subject: Message-ID: References: "sv);
  for (int i = 0; i < 3000; ++i) {
    std::string message;
    const size_t length = random() % 300;
    for (size_t j = 0; j < length; ++j) {
      if (random() % 4 == 0) {
        message += static_cast<char>(random() % 256);
      } else {
        message += alphabet[random() % alphabet.size()];
      }
    }
    SCOPED_TRACE(Hex(message));
    CheckWellFormed(message);
    ThreadKeysOf(message);
  }
}

TEST(RedisContentEdge, BoundaryThatNeverCloses) {
  std::string message = "Content-Type: multipart/mixed; boundary=b\r\n\r\n";
  for (int i = 0; i < 1000; ++i) message += "--b\r\nContent-Type: text/plain\r\n\r\ntext\r\n";
  const ContentFields built = BuildContentFields(message);
  msgpack::object_handle handle = msgpack::unpack(built.full_json.data(), built.full_json.size());
  const msgpack::object* nested = Member(*Member(handle.get(), "body"), "nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(nested->via.array.size, 1000u);
}

// pymap recurses once per level (and fails at about 320); mailfs stops
// parsing at 100 levels and stores the rest as one leaf.
TEST(RedisContentEdge, DeepMessageNesting) {
  std::string message;
  for (int i = 0; i < 10000; ++i) message += "Content-Type: message/rfc822\r\n\r\n";
  message += "Subject: inner\r\n\r\ntext\r\n";
  EXPECT_EQ(CheckWellFormed(message), 100u);
  EXPECT_TRUE(ThreadKeysOf(message).empty());
}

TEST(RedisContentEdge, DeepMultipartNesting) {
  std::string message;
  for (int i = 0; i < 10000; ++i) {
    message += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) + "\n\n--b" +
               std::to_string(i) + "\n";
  }
  message += "\ntext\n";
  EXPECT_EQ(CheckWellFormed(message), 100u);
}

// Header values that would make a recursive parser deep or a naive one
// quadratic.
TEST(RedisContentEdge, HostileHeaderValues) {
  std::string comments = "Content-Type: text/plain " + std::string(200000, '(') + "\r\n\r\n";
  CheckWellFormed(comments);
  std::string params = "Content-Type: multipart/mixed";
  for (int i = 0; i < 50000; ++i) params += "; p" + std::to_string(i) + "*" + "=x";
  params += "\r\n\r\n";
  CheckWellFormed(params);
  std::string subject = "Message-ID: <a@b>\r\nSubject: ";
  for (int i = 0; i < 20000; ++i) subject += "=?utf-8?q?Re:_?=";
  subject += "\r\nReferences: " + std::string(100000, '<') + "\r\n\r\n";
  const std::vector<std::string> keys = ThreadKeysOf(subject);
  ASSERT_FALSE(keys.empty());
  EXPECT_EQ(keys[0], std::string("<a@b>\0", 6));
}

}  // namespace
}  // namespace mailfs::redis
