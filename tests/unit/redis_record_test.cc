// pymap's message record and its dates (backends/redis/format/record.h):
// every record pymap wrote in the fixture decodes, records round-trip, and
// malformed bytes are kCorrupt without a crash or a huge allocation.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backends/redis/format/record.h"
#include "tests/support/test_util.h"

namespace mailfs::redis {
namespace {

std::string Base64Decode(std::string_view text) {
  static const std::string kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    size_t value = kAlphabet.find(c);
    if (value == std::string::npos) continue;  // '=' and anything else
    buffer = (buffer << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xff);
    }
  }
  return out;
}

TEST(RedisRecordTest, EveryRecordPymapWroteDecodesAndRoundTrips) {
  std::ifstream in(std::string(MAILFS_SOURCE_DIR) +
                   "/tests/data/fixtures/pymap-redis/redis-keys.jsonl");
  ASSERT_TRUE(in) << "redis-keys.jsonl is missing";
  size_t records = 0;
  std::string line;
  while (std::getline(in, line)) {
    auto entry = nlohmann::json::parse(line);
    std::string key = entry["key_text"];
    if (!key.ends_with("/uids")) continue;
    for (const auto& [field, value] : entry["value"].items()) {
      std::string bytes = Base64Decode(value.get<std::string>());
      auto record = DecodeRecord(bytes);
      ASSERT_TRUE(record.ok()) << key << " " << field << ": " << record.status().ToString();
      EXPECT_TRUE(record->email_id.starts_with("M")) << record->email_id;
      EXPECT_TRUE(record->thread_id.starts_with("T")) << record->thread_id;
      auto date = ParseRecordDate(record->date);
      EXPECT_TRUE(date.ok()) << record->date;
      auto again = DecodeRecord(EncodeRecord(*record));
      ASSERT_TRUE(again.ok());
      EXPECT_EQ(again->flags, record->flags);
      EXPECT_EQ(again->date, record->date);
      EXPECT_EQ(again->email_id, record->email_id);
      EXPECT_EQ(again->thread_id, record->thread_id);
      ++records;
    }
  }
  EXPECT_GE(records, 40u);
}

TEST(RedisRecordTest, MalformedBytesAreCorrupt) {
  for (std::string bytes : {std::string(""), std::string("\xc1"), std::string("\x90"),
                            std::string("\x81\xa5"
                                        "flags\x01"),  // flags not an array
                            std::string("\x81\xa4"
                                        "date\xa1x"),  // no flags
                            // Headers that claim 4G elements in a few bytes.
                            std::string("\xdd\xff\xff\xff\xff"),
                            std::string("\x81\xa5"
                                        "flags\xdd\x10\x00\x00\x00",
                                        12)}) {
    MAILFS_EXPECT_CODE(DecodeRecord(bytes), kCorrupt) << testing::PrintToString(bytes);
  }
}

TEST(RedisRecordTest, DatesAsPythonsFromIsoFormatReadsThem) {
  EXPECT_EQ(*ParseRecordDate("2024-03-01T10:15:00+01:00"), 1709284500);
  EXPECT_EQ(*ParseRecordDate("2024-03-01T09:15:00Z"), 1709284500);
  EXPECT_EQ(*ParseRecordDate("2024-03-01T09:15:00.123456+00:00"), 1709284500);
  EXPECT_EQ(*ParseRecordDate("2024-03-01T04:15-0500"), 1709284500);
  EXPECT_EQ(FormatRecordDate(1709284500), "2024-03-01T09:15:00+00:00");
  for (const char* bad : {"", "2024-13-01T00:00:00+00:00", "2024-03-01T25:00:00+00:00",
                          "2024-03-01X10:15:00", "2024-03-01T10:15:00+01", "yesterday",
                          // Outside Python's years 1 to 9999.
                          "9999-12-31T23:00-02:00", "0000-01-01T00:00+01:00"}) {
    MAILFS_EXPECT_CODE(ParseRecordDate(bad), kCorrupt) << bad;
  }
  // A file time pymap could not hold is clamped, and still reads back.
  EXPECT_EQ(FormatRecordDate(INT64_C(400000000000)), "9999-12-31T23:59:59+00:00");
  EXPECT_TRUE(ParseRecordDate(FormatRecordDate(INT64_C(-99999999999))).ok());
}

TEST(RedisRecordTest, FlagsKeepSystemFlagsAndValidKeywords) {
  std::vector<std::string> stored = {"\\Seen",   "\\flagged", "$Work",
                                     "\\Recent", "\\Bogus",   "bad keyword"};
  FlagSet flags = FlagsFromRecord(stored);
  EXPECT_EQ(flags.ToString(), "\\Flagged \\Seen $Work");
  EXPECT_EQ(FlagsToRecord(flags), (std::vector<std::string>{"\\Flagged", "\\Seen", "$Work"}));
}

}  // namespace
}  // namespace mailfs::redis
