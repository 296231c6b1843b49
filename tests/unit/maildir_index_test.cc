// The Maildir index's compact pieces: names held in pool blocks, and the
// index built line by line as a folder's load does.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backends/maildir/index.h"

namespace mailfs::maildir {
namespace {

TEST(MaildirIndexTest, CompactNameKeepsEveryLength) {
  // Around the one-byte length prefix's limit, the pool's largest class,
  // and a hostile uidlist's long name.
  for (size_t length : {0, 1, 7, 8, 47, 254, 255, 256, 262, 263, 264, 300, 70000}) {
    std::string text(length, 'x');
    for (size_t i = 0; i < length; ++i) text[i] = static_cast<char>('a' + i % 26);
    CompactName name(text);
    EXPECT_EQ(name.view(), text) << length;
    CompactName copy = name;
    EXPECT_EQ(copy.view(), text) << length;
    CompactName moved = std::move(copy);
    EXPECT_EQ(moved.view(), text) << length;
    EXPECT_TRUE(copy.view().empty());         // NOLINT: moved-from is empty by contract
    moved = moved.view().substr(length / 2);  // from its own bytes
    EXPECT_EQ(moved.view(), text.substr(length / 2)) << length;
    name = CompactName();
    EXPECT_TRUE(name.view().empty());
  }
}

TEST(MaildirIndexTest, FreedNamesAreReusedWithoutMixingBytes) {
  std::vector<CompactName> names;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 5000; ++i) names.emplace_back("name-" + std::to_string(i * (round + 1)));
    for (int i = 0; i < 5000; ++i) {
      EXPECT_EQ(names[i].view(), "name-" + std::to_string(i * (round + 1)));
    }
    names.clear();
  }
}

Entry EntryFor(uint32_t uid, std::string_view name) {
  Entry entry;
  entry.uid = uid;
  entry.name = name;
  return entry;
}

TEST(MaildirIndexTest, EntryBitFieldsHoldTheirRanges) {
  Entry entry;
  entry.letters = (1u << 26) - 1;
  entry.system = 0xff;
  entry.size = (uint64_t{1} << 56) - 1;
  entry.mtime = -1;
  entry.in_new = true;
  EXPECT_EQ(entry.letters, (1u << 26) - 1);
  EXPECT_EQ(entry.system, 0xffu);
  EXPECT_EQ(entry.size, (uint64_t{1} << 56) - 1);
  EXPECT_EQ(entry.mtime, -1);
  EXPECT_TRUE(entry.in_new);
  EXPECT_TRUE(entry.alive);
  EXPECT_FALSE(entry.stat_known);
}

TEST(MaildirIndexTest, ReservedIndexFindsByBaseAndRemovesUnlisted) {
  MessageIndex index;
  index.Reserve(1000);
  for (uint32_t uid = 1; uid <= 1000; ++uid) {
    index.Add(EntryFor(uid, "1700000000.M" + std::to_string(uid) + "P1.host,S=10"));
  }
  ASSERT_EQ(index.size(), 1000u);
  Entry* found = index.FindBase("1700000000.M77P1.host,S=10");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->uid, 77u);
  found->name = "1700000000.M77P1.host,S=10:2,S";  // the file's name
  found->listed = true;
  EXPECT_EQ(index.FindBase("1700000000.M77P1.host,S=10"), found);
  std::vector<uint32_t> removed;
  index.RemoveIf([&](Entry& e) {
    if (e.listed) return false;
    removed.push_back(e.uid);
    return true;
  });
  EXPECT_EQ(removed.size(), 999u);
  EXPECT_EQ(index.size(), 1u);
  ASSERT_NE(index.FindBase("1700000000.M77P1.host,S=10"), nullptr);
  EXPECT_EQ(index.FindBase("1700000000.M78P1.host,S=10"), nullptr);
  EXPECT_EQ(index.Find(78), nullptr);
}

}  // namespace
}  // namespace mailfs::maildir
