// Unit tests for backends/maildir/format/keywords: the real dovecot-keywords
// files of the fixture stores (copied to tests/data/maildir/<fixture>/
// <mailbox>/), Dovecot's rules from shared/MAILDIR.md §5, and hostile input.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "backends/maildir/format/keywords.h"
#include "tests/support/test_util.h"

namespace mailfs::maildir {
namespace {

namespace fs = std::filesystem;

const fs::path kDataDir = fs::path(MAILFS_SOURCE_DIR) / "tests/data/maildir";

KeywordTable MustParse(std::string_view bytes) {
  Result<KeywordTable> table = KeywordTable::Parse(bytes);
  EXPECT_TRUE(table.ok()) << table.status().ToString();
  return table.ok() ? *table : KeywordTable();
}

std::string Problems(const KeywordTable& table) {
  std::string out;
  for (const KeywordsProblem& p : table.problems()) {
    out += std::to_string(p.line) + ": " + p.reason + "\n";
  }
  return out;
}

std::vector<size_t> ProblemLines(const KeywordTable& table) {
  std::vector<size_t> lines;
  for (const KeywordsProblem& p : table.problems()) lines.push_back(p.line);
  return lines;
}

// --- the real files --------------------------------------------------------

TEST(MaildirKeywordsTest, EveryFixtureFileRoundTripsByteExactly) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(kDataDir)) {
    if (entry.is_regular_file() && entry.path().filename() == "dovecot-keywords") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  // Dovecot pp and fs: INBOX, Junk, My Folder; pymap: INBOX (seeded, as
  // pymap never writes the file).
  EXPECT_EQ(files.size(), 7u);
  for (const fs::path& path : files) {
    SCOPED_TRACE(path.string());
    std::string bytes = test::ReadTestFile(path);
    KeywordTable table = MustParse(bytes);
    EXPECT_TRUE(table.problems().empty()) << Problems(table);
    EXPECT_FALSE(table.empty());
    EXPECT_EQ(table.Serialize(), bytes);
  }
}

TEST(MaildirKeywordsTest, LettersOfTheDovecotInbox) {
  KeywordTable table =
      MustParse(test::ReadTestFile(kDataDir / "dovecot-maildir-pp/INBOX/dovecot-keywords"));
  EXPECT_EQ(table.size(), 3u);
  EXPECT_EQ(table.LetterFor("$Forwarded"), 'a');
  EXPECT_EQ(table.LetterFor("$label1"), 'b');
  EXPECT_EQ(table.LetterFor("$Junk"), 'c');
  EXPECT_EQ(table.LetterFor("$NotJunk"), std::nullopt);
  EXPECT_EQ(table.KeywordFor('c'), "$Junk");
  EXPECT_EQ(table.KeywordFor('d'), std::nullopt) << "a letter without a line is ignored";
  EXPECT_EQ(table.KeywordFor('C'), std::nullopt);
  EXPECT_EQ(table.KeywordFor('\0'), std::nullopt);
  EXPECT_EQ(table.KeywordFor('{'), std::nullopt);
}

// Letters differ between mailboxes: $Junk is c in INBOX, a in Junk.
TEST(MaildirKeywordsTest, LettersArePerMailbox) {
  KeywordTable junk =
      MustParse(test::ReadTestFile(kDataDir / "dovecot-maildir-pp/Junk/dovecot-keywords"));
  EXPECT_EQ(junk.LetterFor("$Junk"), 'a');
  KeywordTable pymap =
      MustParse(test::ReadTestFile(kDataDir / "pymap-maildir/INBOX/dovecot-keywords"));
  EXPECT_EQ(pymap.LetterFor("$Junk"), 'a');
  EXPECT_EQ(pymap.LetterFor("$Forwarded"), 'd');
}

// Dovecot compares keyword names with strcasecmp.
TEST(MaildirKeywordsTest, LookupIgnoresAsciiCase) {
  KeywordTable table = MustParse("0 $Junk\n");
  EXPECT_EQ(table.LetterFor("$junk"), 'a');
  EXPECT_EQ(table.LetterFor("$JUNK"), 'a');
  Result<char> letter = table.Assign("$jUnK");
  MAILFS_ASSERT_OK(letter);
  EXPECT_EQ(*letter, 'a');
  EXPECT_EQ(table.KeywordFor('a'), "$Junk") << "the spelling in the file stays";
  EXPECT_EQ(table.size(), 1u);
}

// --- assigning -----------------------------------------------------------------

TEST(MaildirKeywordsTest, AssignTakesTheLowestFreeIndex) {
  KeywordTable table = MustParse("0 $Forwarded\n2 $Junk\n");
  Result<char> letter = table.Assign("Work");
  MAILFS_ASSERT_OK(letter);
  EXPECT_EQ(*letter, 'b');
  letter = table.Assign("Home");
  MAILFS_ASSERT_OK(letter);
  EXPECT_EQ(*letter, 'd');
  letter = table.Assign("$Junk");
  MAILFS_ASSERT_OK(letter);
  EXPECT_EQ(*letter, 'c') << "a known keyword keeps its letter";
  EXPECT_EQ(table.Serialize(), "0 $Forwarded\n1 Work\n2 $Junk\n3 Home\n");
}

TEST(MaildirKeywordsTest, AssignStartsAnEmptyTableAtA) {
  KeywordTable table;
  Result<char> letter = table.Assign("$label1");
  MAILFS_ASSERT_OK(letter);
  EXPECT_EQ(*letter, 'a');
  EXPECT_EQ(table.Serialize(), "0 $label1\n");
}

TEST(MaildirKeywordsTest, TheTwentySeventhKeywordIsRefused) {
  KeywordTable table;
  for (int i = 0; i < 26; ++i) {
    Result<char> letter = table.Assign("kw" + std::to_string(i));
    MAILFS_ASSERT_OK(letter);
    EXPECT_EQ(*letter, static_cast<char>('a' + i));
  }
  std::string before = table.Serialize();
  Result<char> letter = table.Assign("kw26");
  MAILFS_EXPECT_CODE(letter, kNoSpace);
  EXPECT_NE(letter.status().detail().find("26"), std::string::npos) << letter.status().ToString();
  EXPECT_EQ(table.Serialize(), before);
  EXPECT_EQ(table.size(), 26u);
  // Known keywords still resolve.
  letter = table.Assign("KW25");
  MAILFS_ASSERT_OK(letter);
  EXPECT_EQ(*letter, 'z');
}

TEST(MaildirKeywordsTest, AssignRefusesWhatIsNotAKeyword) {
  KeywordTable table;
  for (std::string_view bad : {"", "\\Seen", "two words", "a(b", "caf\xc3\xa9", "x\ny"}) {
    MAILFS_EXPECT_CODE(table.Assign(bad), kInvalidArgument);
  }
  EXPECT_TRUE(table.empty());
}

// --- hostile input ---------------------------------------------------------

TEST(MaildirKeywordsTest, EmptyFileIsAnEmptyTable) {
  KeywordTable table = MustParse("");
  EXPECT_TRUE(table.empty());
  EXPECT_TRUE(table.problems().empty());
  EXPECT_EQ(table.Serialize(), "");
}

TEST(MaildirKeywordsTest, BadLinesAreReportedAndSkipped) {
  KeywordTable table = MustParse(
      "0 $Junk\n"             // 1
      "26 TooFar\n"           // 2 index above 25
      "4294967296 Huge\n"     // 3
      "99999999999999 X\n"    // 4
      "-1 Neg\n"              // 5
      "x Letter\n"            // 6
      "nospace\n"             // 7
      "\n"                    // 8
      "3 \n"                  // 9 empty name
      "4 two words\n"         // 10 not an atom
      "5 \\Seen\n"            // 11 system flag
      "6 caf\xc3\xa9\n"       // 12 8-bit
      "7 $JUNK\n"             // 13 repeat, other case
      " 8 Lead\n"             // 14 leading space
      "0000000000008 Zero\n"  // 15 leading zeros are fine
      "9 Good\n"              // 16
      "1 $NonJunk\r\n"        // 17 CRLF is fine
      "2 Partial");           // 18 no line end
  EXPECT_EQ(ProblemLines(table),
            (std::vector<size_t>{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 18}))
      << Problems(table);
  EXPECT_EQ(table.Serialize(), "0 $Junk\n1 $NonJunk\n8 Zero\n9 Good\n");
}

// Dovecot reads lines in order into an array: a repeated index takes the
// later name. A name seen before stays skipped even after its index was
// taken, as Dovecot's name hash still holds it.
TEST(MaildirKeywordsTest, RepeatedIndexTakesTheLaterLine) {
  KeywordTable table = MustParse("0 A\n0 B\n1 A\n");
  EXPECT_EQ(table.KeywordFor('a'), "B");
  EXPECT_EQ(table.KeywordFor('b'), std::nullopt);
  EXPECT_EQ(ProblemLines(table), (std::vector<size_t>{2, 3}));
}

TEST(MaildirKeywordsTest, TwentySevenLinesKeepTwentySix) {
  std::string bytes;
  for (int i = 0; i < 27; ++i) bytes += std::to_string(i) + " kw" + std::to_string(i) + "\n";
  KeywordTable table = MustParse(bytes);
  EXPECT_EQ(table.size(), 26u);
  EXPECT_EQ(ProblemLines(table), (std::vector<size_t>{27}));
  EXPECT_EQ(table.KeywordFor('z'), "kw25");
}

TEST(MaildirKeywordsTest, BinaryGarbageIsAnEmptyTableWithProblems) {
  std::string bytes;
  uint32_t state = 777;
  for (int i = 0; i < 20000; ++i) {
    state = state * 1103515245 + 12345;
    bytes += static_cast<char>(state >> 24);
  }
  Result<KeywordTable> table = KeywordTable::Parse(bytes);
  MAILFS_ASSERT_OK(table);
  EXPECT_FALSE(table->problems().empty());
  for (char letter = 'a'; letter <= 'z'; ++letter) {
    std::optional<std::string_view> name = table->KeywordFor(letter);
    if (name) {
      EXPECT_EQ(table->LetterFor(*name), letter);
    }
  }
  for (const KeywordsProblem& p : table->problems()) {
    for (char c : p.reason) EXPECT_GE(static_cast<unsigned char>(c), 0x20);
  }
}

TEST(MaildirKeywordsTest, ProblemListIsBounded) {
  KeywordTable table = MustParse(std::string(5000, '\n') + "0 ok\n");
  EXPECT_EQ(table.KeywordFor('a'), "ok");
  ASSERT_EQ(table.problems().size(), kMaxKeywordsProblems + 1);
  EXPECT_EQ(table.problems().back().reason, "... and 4900 more problems");
}

TEST(MaildirKeywordsTest, NulBytesAreNotKeywords) {
  KeywordTable table = MustParse(std::string("0 a\0b\n1 ok\n", 11));
  EXPECT_EQ(table.KeywordFor('a'), std::nullopt);
  EXPECT_EQ(table.KeywordFor('b'), "ok");
  EXPECT_EQ(table.problems().size(), 1u);
}

}  // namespace
}  // namespace mailfs::maildir
