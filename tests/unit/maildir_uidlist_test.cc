// Unit tests for backends/maildir/format/uidlist: the real dovecot-uidlist
// files of the fixture stores (copied to tests/data/maildir/<fixture>/
// <mailbox>/), Dovecot's rules from shared/MAILDIR.md §2, and hostile input.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "backends/maildir/format/uidlist.h"
#include "tests/support/test_util.h"

namespace mailfs::maildir {
namespace {

namespace fs = std::filesystem;

const fs::path kDataDir = fs::path(MAILFS_SOURCE_DIR) / "tests/data/maildir";

// Every file called `name` under tests/data/maildir/<fixture>/, sorted.
std::vector<fs::path> FixtureFiles(std::string_view fixture, std::string_view name) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(kDataDir / fixture)) {
    if (entry.is_regular_file() && entry.path().filename() == name) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string WithoutCr(std::string_view bytes) {
  std::string out;
  for (char c : bytes) {
    if (c != '\r') out += c;
  }
  return out;
}

Uidlist MustParse(std::string_view bytes) {
  Result<Uidlist> list = Uidlist::Parse(bytes);
  EXPECT_TRUE(list.ok()) << list.status().ToString();
  return list.ok() ? *list : Uidlist();
}

std::string MustSerialize(const Uidlist& list) {
  Result<std::string> bytes = list.Serialize();
  EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
  return bytes.ok() ? *bytes : std::string();
}

std::string Problems(const Uidlist& list) {
  std::string out;
  for (const UidlistProblem& p : list.problems) {
    out += std::to_string(p.line) + ": " + p.reason + "\n";
  }
  return out;
}

std::vector<uint32_t> Uids(const Uidlist& list) {
  std::vector<uint32_t> uids;
  for (const UidlistRecord& r : list.records) uids.push_back(r.uid);
  return uids;
}

std::vector<size_t> ProblemLines(const Uidlist& list) {
  std::vector<size_t> lines;
  for (const UidlistProblem& p : list.problems) lines.push_back(p.line);
  return lines;
}

constexpr std::string_view kHeader = "3 V1795767730 N15 Gb8508f1db03d096b475e000083ecc375\n";

// --- the real files --------------------------------------------------------

TEST(MaildirUidlistTest, EveryDovecotFileRoundTripsByteExactly) {
  size_t count = 0;
  for (std::string_view fixture : {"dovecot-maildir-pp", "dovecot-maildir-fs"}) {
    for (const fs::path& path : FixtureFiles(fixture, "dovecot-uidlist")) {
      SCOPED_TRACE(path.string());
      std::string bytes = test::ReadTestFile(path);
      Uidlist list = MustParse(bytes);
      EXPECT_TRUE(list.problems.empty()) << Problems(list);
      EXPECT_EQ(list.header.version, 3);
      EXPECT_EQ(list.header.guid.size(), 32u);
      EXPECT_TRUE(list.header.fields.empty());
      EXPECT_FALSE(list.records.empty());
      for (const UidlistRecord& r : list.records) {
        EXPECT_TRUE(r.ext.empty());
        EXPECT_EQ(r.BaseName(), r.name) << "Dovecot stores base names only";
      }
      EXPECT_EQ(MustSerialize(list), bytes);
      EXPECT_FALSE(UidlistNeedsRewrite(UidlistWriteInputs::For(list)));
      ++count;
    }
  }
  EXPECT_EQ(count, 22u) << "11 mailboxes with a uidlist in each Dovecot fixture";
}

// pymap writes CRLF and the same field order Dovecot would, so its files
// come back as the same bytes with LF line ends.
TEST(MaildirUidlistTest, EveryPymapFileParsesAndSerializesWithLf) {
  size_t count = 0;
  for (const fs::path& path : FixtureFiles("pymap-maildir", "dovecot-uidlist")) {
    SCOPED_TRACE(path.string());
    std::string bytes = test::ReadTestFile(path);
    ASSERT_NE(bytes.find("\r\n"), std::string::npos);
    Uidlist list = MustParse(bytes);
    EXPECT_TRUE(list.problems.empty()) << Problems(list);
    EXPECT_EQ(list.header.guid.size(), 32u);
    for (const UidlistRecord& r : list.records) {
      ASSERT_EQ(r.ext.size(), 2u);
      EXPECT_EQ(r.ext[0].substr(0, 3), "E(M");
      EXPECT_EQ(r.ext[1].substr(0, 3), "T(T");
      EXPECT_NE(r.name.find(":2,"), std::string::npos) << r.name;
      EXPECT_EQ(r.BaseName(), r.name.substr(0, r.name.find(':')));
    }
    EXPECT_EQ(MustSerialize(list), WithoutCr(bytes));
    ++count;
  }
  EXPECT_EQ(count, 11u);
}

TEST(MaildirUidlistTest, DovecotInbox) {
  Uidlist list =
      MustParse(test::ReadTestFile(kDataDir / "dovecot-maildir-pp/INBOX/dovecot-uidlist"));
  EXPECT_EQ(list.header.uid_validity, 1795767730u);
  EXPECT_EQ(list.header.next_uid, 15u);
  EXPECT_EQ(list.header.guid, "b8508f1db03d096b475e000083ecc375");
  EXPECT_EQ(list.NextUid(), 15u);
  ASSERT_EQ(list.records.size(), 14u);
  EXPECT_EQ(list.records[0].uid, 1u);
  EXPECT_EQ(list.records[0].name, "1795767728.M768069P24192.vm,S=329,W=343");
  EXPECT_EQ(list.records[13].uid, 14u);
  EXPECT_EQ(list.records[13].name, "1795767730.M173488P24477.vm,S=20,W=23");
}

// The header is written when the file is created and not touched by later
// appends: "N1" above line 1.
TEST(MaildirUidlistTest, NextUidIsTheLargerOfHeaderAndLastLine) {
  Uidlist list =
      MustParse(test::ReadTestFile(kDataDir / "dovecot-maildir-pp/Archive/dovecot-uidlist"));
  EXPECT_EQ(list.header.next_uid, 1u);
  EXPECT_EQ(Uids(list), (std::vector<uint32_t>{1}));
  EXPECT_EQ(list.NextUid(), 2u);

  EXPECT_EQ(MustParse("3 V1 N9 G" + std::string(32, 'a') + "\n1 :a\n").NextUid(), 9u);
  EXPECT_EQ(MustParse("3 V1 N1\n").NextUid(), 1u);
  EXPECT_EQ(MustParse("3 V1 N1\n4294967294 :a\n").NextUid(), 4294967295u);
}

TEST(MaildirUidlistTest, PymapRecordsKeepFieldsAndFullName) {
  Uidlist list = MustParse(test::ReadTestFile(kDataDir / "pymap-maildir/Archive/dovecot-uidlist"));
  EXPECT_EQ(list.header.uid_validity, 2816033358u);
  EXPECT_EQ(list.NextUid(), 8u);
  // uid 1 was dropped by pymap's CHECK; the file starts at 2.
  EXPECT_EQ(Uids(list), (std::vector<uint32_t>{2, 3, 4, 5, 6, 7}));
  const UidlistRecord& r = list.records[0];
  EXPECT_EQ(r.ext, (std::vector<std::string>{"E(M97f1f8830f537a6acfa44355ffa91ea6)",
                                             "T(Tbcf421ff4a61fdebd0d03a918890673c)"}));
  EXPECT_EQ(r.name, "1795767505.M663365P21092Q26.vm:2,FST");
  EXPECT_EQ(r.BaseName(), "1795767505.M663365P21092Q26.vm");

  Uidlist empty = MustParse(test::ReadTestFile(kDataDir / "pymap-maildir/Work/dovecot-uidlist"));
  EXPECT_TRUE(empty.records.empty());
  EXPECT_EQ(empty.NextUid(), 1u);
}

// --- the format ------------------------------------------------------------

// MAILDIR.md: written by Dovecot for a file without ",S=" in its name.
TEST(MaildirUidlistTest, ExtensionFieldsAreKeptInOrder) {
  std::string bytes = std::string(kHeader) +
                      "5 S54 :1795771111.Mext2P998.otherhost\n"
                      "6 W20 G0123abc S18 Xfuture :1795771112.M1P1.h\n";
  Uidlist list = MustParse(bytes);
  EXPECT_TRUE(list.problems.empty()) << Problems(list);
  ASSERT_EQ(list.records.size(), 2u);
  EXPECT_EQ(list.records[0].ext, (std::vector<std::string>{"S54"}));
  EXPECT_EQ(list.records[1].ext, (std::vector<std::string>{"W20", "G0123abc", "S18", "Xfuture"}));
  EXPECT_EQ(MustSerialize(list), bytes);
}

TEST(MaildirUidlistTest, UnknownHeaderFieldsAreKeptInOrder) {
  std::string bytes = "3 V7 N3 G0123456789abcdef0123456789ABCDEF P%u Zsomething\n1 :a\n";
  Uidlist list = MustParse(bytes);
  EXPECT_TRUE(list.problems.empty()) << Problems(list);
  EXPECT_EQ(list.header.fields, (std::vector<std::string>{"P%u", "Zsomething"}));
  EXPECT_EQ(list.header.guid, "0123456789abcdef0123456789ABCDEF");
  EXPECT_EQ(MustSerialize(list), bytes);
}

// Dovecot writes V, N, G first and single spaces; other spellings parse to
// the same list.
TEST(MaildirUidlistTest, ExtraSpacesAndFieldOrderAreTolerated) {
  Uidlist list =
      MustParse("3  P1 N4  V9  G0123456789abcdef0123456789abcdef\n1   S5   :a b  \n2 :c\n");
  EXPECT_TRUE(list.problems.empty()) << Problems(list);
  EXPECT_EQ(list.header.uid_validity, 9u);
  EXPECT_EQ(list.header.next_uid, 4u);
  EXPECT_EQ(list.header.fields, (std::vector<std::string>{"P1"}));
  ASSERT_EQ(list.records.size(), 2u);
  EXPECT_EQ(list.records[0].ext, (std::vector<std::string>{"S5"}));
  EXPECT_EQ(list.records[0].name, "a b  ") << "the name runs to the end of the line";
  EXPECT_EQ(MustSerialize(list),
            "3 V9 N4 G0123456789abcdef0123456789abcdef P1\n1 S5 :a b  \n2 :c\n");
}

TEST(MaildirUidlistTest, CrlfAndLfParseAlike) {
  std::string lf = std::string(kHeader) + "1 :a\n2 E(Mx) :b:2,S\n";
  std::string crlf =
      "3 V1795767730 N15 Gb8508f1db03d096b475e000083ecc375\r\n1 :a\r\n2 E(Mx) :b:2,S\r\n";
  Uidlist a = MustParse(lf);
  Uidlist b = MustParse(crlf);
  EXPECT_EQ(a.header, b.header);
  EXPECT_EQ(a.records, b.records);
  EXPECT_TRUE(b.problems.empty()) << Problems(b);
}

TEST(MaildirUidlistTest, Version1IsReadAndWrittenAsVersion3) {
  Uidlist list = MustParse("1 1234 6\n1 1700000000.M1P1.h\n3 1700000001.M2P1.h:2,S\n");
  EXPECT_TRUE(list.problems.empty()) << Problems(list);
  EXPECT_EQ(list.header.version, 1);
  EXPECT_EQ(list.header.uid_validity, 1234u);
  EXPECT_EQ(list.header.next_uid, 6u);
  EXPECT_TRUE(list.header.guid.empty());
  ASSERT_EQ(list.records.size(), 2u);
  EXPECT_EQ(list.records[1].name, "1700000001.M2P1.h:2,S");
  UidlistWriteInputs in = UidlistWriteInputs::For(list);
  EXPECT_EQ(UidlistRewriteReason(in), "the file is not version 3");
  list.header.guid = "0123456789abcdef0123456789abcdef";
  EXPECT_EQ(MustSerialize(list),
            "3 V1234 N6 G0123456789abcdef0123456789abcdef\n"
            "1 :1700000000.M1P1.h\n3 :1700000001.M2P1.h:2,S\n");
}

// Dovecot refuses a version 1 line at or above the header's next UID.
TEST(MaildirUidlistTest, Version1LinesMustBeBelowNextUid) {
  Uidlist list = MustParse("1 1234 3\n1 a\n3 b\n");
  EXPECT_EQ(Uids(list), (std::vector<uint32_t>{1}));
  EXPECT_EQ(ProblemLines(list), (std::vector<size_t>{3}));
}

// Dovecot accepts a header without G and adds one; pymap refuses it, so
// mailfs never writes one.
TEST(MaildirUidlistTest, HeaderWithoutGuidParsesAndNeedsRewrite) {
  Uidlist list = MustParse("3 V5 N2\n1 :a\n");
  EXPECT_TRUE(list.problems.empty());
  EXPECT_TRUE(list.header.guid.empty());
  EXPECT_EQ(UidlistRewriteReason(UidlistWriteInputs::For(list)), "the file has no mailbox GUID");
  MAILFS_EXPECT_CODE(list.Serialize(), kInvalidArgument);
  list.header.guid = FormatUidlistGuid({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16});
  EXPECT_EQ(MustSerialize(list), "3 V5 N2 G0102030405060708090a0b0c0d0e0f10\n1 :a\n");
}

// --- hostile input ---------------------------------------------------------

TEST(MaildirUidlistTest, UnusableHeadersAreCorrupt) {
  for (std::string_view bad : std::initializer_list<std::string_view>{
           "",
           "\n",
           "3 V1 N1",  // no line end: Dovecot does not read it either
           "garbage\n",
           "3\n",
           "3V1 N1\n",
           "2 V1 N1\n",
           "4 V1 N1\n",
           "3 V0 N1\n",
           "3 V1 N0\n",
           "3 N1\n",
           "3 V1\n",
           "3 Vx N1\n",
           "3 V N1\n",
           "3 V-1 N1\n",
           "3 V4294967296 N1\n",
           "3 V99999999999999999999999 N1\n",
           "3 V1 N1 Gshort\n",
           "3 V1 N1 G0123456789abcdef0123456789abcdeg\n",
           "3 V1 N1 G\n",
           "1 1\n",
           "1 1 2 3\n",
           "1 x 2\n",
           "1 0 2\n",
           std::string_view("3 V1\0 N1\n", 9),
           std::string_view("\xff\xfe\x00\x01\n", 5),
       }) {
    SCOPED_TRACE(::testing::PrintToString(std::string(bad)));
    MAILFS_EXPECT_CODE(Uidlist::Parse(bad), kCorrupt);
  }
}

TEST(MaildirUidlistTest, BrokenLinesAreReportedAndSkipped) {
  std::string bytes = std::string(kHeader) +
                      "1 :good1\n"                            // 2
                      "abc :x\n"                              // 3 not a number
                      "0 :x\n"                                // 4 UID 0
                      "4294967295 :x\n"                       // 5 too high
                      "99999999999999999999999999999 :x\n"    // 6 overflow
                      "7 x\n"                                 // 7 no " :"
                      "8 S1:x\n"                              // 8 no " :"
                      "9 :\n"                                 // 9 empty name
                      "10 :../../etc/passwd\n"                // 10 '/'
                      "11 :a/b\n"                             // 11 '/'
                      "12 :..\n"                              // 12
                      "13 :.\n"                               // 13
                      "14 :..:2,S\n"                          // 14 base ".."
                      "15 ::2,S\n"                            // 15 empty base
                      "16\n"                                  // 16
                      "\n"                                    // 17
                      "17 :a\rb\n"                            // 18 CR in name
                      "-5 :x\n"                               // 19
                      "+5 :x\n"                               // 20
                      "5:x\n"                                 // 21
                      "20 :good20\n"                          // 22
                      "19 :late\n"                            // 23 not ordered
                      "20 :again\n";                          // 24 not ordered
  std::string with_nul = std::string("21 :nul\0name\n", 13);  // 25
  bytes += with_nul + "22 :good22\n";                         // 26
  Uidlist list = MustParse(bytes);
  EXPECT_EQ(Uids(list), (std::vector<uint32_t>{1, 20, 22}));
  EXPECT_EQ(ProblemLines(list), (std::vector<size_t>{3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13,
                                                     14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25}))
      << Problems(list);
  EXPECT_EQ(list.NextUid(), 23u);
  EXPECT_EQ(UidlistRewriteReason(UidlistWriteInputs::For(list)),
            "the file has broken, unordered or duplicate lines");
  // What is left is a clean file.
  Uidlist again = MustParse(MustSerialize(list));
  EXPECT_TRUE(again.problems.empty());
  EXPECT_EQ(again.records, list.records);
}

TEST(MaildirUidlistTest, ProblemsQuoteBoundedPrintableExcerpts) {
  std::string bytes = std::string(kHeader) + std::string(1000, '\x01') + "\n";
  Uidlist list = MustParse(bytes);
  ASSERT_EQ(list.problems.size(), 1u);
  EXPECT_LT(list.problems[0].reason.size(), 400u);
  for (char c : list.problems[0].reason) EXPECT_GE(static_cast<unsigned char>(c), 0x20);
}

TEST(MaildirUidlistTest, ProblemListIsBounded) {
  std::string bytes(kHeader);
  bytes += std::string(100000, '\n');
  bytes += "1 :a\n";
  Uidlist list = MustParse(bytes);
  EXPECT_EQ(Uids(list), (std::vector<uint32_t>{1}));
  ASSERT_EQ(list.problems.size(), kMaxUidlistProblems + 1);
  EXPECT_EQ(list.problems.back().reason, "... and 99900 more problems");
  EXPECT_EQ(list.problems.back().line, 100001u);
}

// "Duplicate file entry": Dovecot drops the old UID and keeps the new one.
TEST(MaildirUidlistTest, RepeatedBaseNameKeepsTheLaterLine) {
  Uidlist list = MustParse(std::string(kHeader) + "1 :a\n2 :b:2,S\n3 :c\n4 :b:2,RS\n");
  EXPECT_EQ(Uids(list), (std::vector<uint32_t>{1, 3, 4}));
  EXPECT_EQ(list.records[2].name, "b:2,RS");
  EXPECT_EQ(ProblemLines(list), (std::vector<size_t>{5}));
  EXPECT_EQ(list.NextUid(), 15u);
}

// --- Scan: what a folder's load uses instead of Parse ------------------------

// Scan hands out exactly the lines Parse keeps (with no repeated base
// names), with the same problems and the same next UID.
TEST(MaildirUidlistTest, ScanSeesTheLinesParseKeeps) {
  std::vector<std::string> inputs;
  for (std::string_view fixture : {"dovecot-maildir-pp", "dovecot-maildir-fs", "pymap-maildir"}) {
    for (const fs::path& path : FixtureFiles(fixture, "dovecot-uidlist")) {
      inputs.push_back(test::ReadTestFile(path));
    }
  }
  ASSERT_GT(inputs.size(), 3u);
  inputs.push_back(std::string(kHeader) + "1 S5 s6 :a\nx :b\n3 G0 :c\n2 :d\n4 :half");
  for (const std::string& bytes : inputs) {
    Result<Uidlist> parsed = Uidlist::Parse(bytes);
    std::vector<UidlistRecord> seen;
    auto scan = Uidlist::Scan(bytes, [&](const UidlistLine& line) -> uint32_t {
      UidlistRecord record;
      record.uid = line.uid;
      record.ext.assign(line.ext.begin(), line.ext.end());
      record.name = std::string(line.name);
      EXPECT_EQ(line.BaseName(), record.BaseName());
      seen.push_back(std::move(record));
      return 0;
    });
    ASSERT_EQ(parsed.ok(), scan.ok());
    if (!parsed.ok()) continue;
    EXPECT_EQ(seen, parsed->records);
    EXPECT_EQ(scan->header, parsed->header);
    EXPECT_EQ(scan->records, parsed->records.size());
    EXPECT_EQ(scan->NextUid(), parsed->NextUid());
    ASSERT_EQ(scan->problems.size(), parsed->problems.size());
    for (size_t i = 0; i < scan->problems.size(); ++i) {
      EXPECT_EQ(scan->problems[i].line, parsed->problems[i].line);
      EXPECT_EQ(scan->problems[i].reason, parsed->problems[i].reason);
    }
  }
}

// A repeated base name: the caller says which earlier line it dropped, and
// Scan reports it as Parse does.
TEST(MaildirUidlistTest, ScanReportsTheRepeatedBaseNameTheCallerDropped) {
  std::string bytes = std::string(kHeader) + "1 :a\n2 :b:2,S\n3 :c\n4 :b:2,RS\n";
  std::map<std::string, uint32_t, std::less<>> by_base;
  auto scan = Uidlist::Scan(bytes, [&](const UidlistLine& line) -> uint32_t {
    uint32_t earlier = 0;
    if (auto it = by_base.find(line.BaseName()); it != by_base.end()) earlier = it->second;
    by_base[std::string(line.BaseName())] = line.uid;
    return earlier;
  });
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(scan->records, 3u);
  ASSERT_EQ(scan->problems.size(), 1u);
  EXPECT_EQ(scan->problems[0].line, 5u);
  EXPECT_NE(scan->problems[0].reason.find("already at UID 2"), std::string::npos)
      << scan->problems[0].reason;
  EXPECT_EQ(scan->problems[0].reason, MustParse(bytes).problems[0].reason);
}

// "Invalid extension record, removing": the line stays, the field goes.
TEST(MaildirUidlistTest, InvalidExtensionFieldIsDroppedLineKept) {
  Uidlist list = MustParse(std::string(kHeader) + "1 S5 s6 (x) W7 :a\n");
  ASSERT_EQ(list.records.size(), 1u);
  EXPECT_EQ(list.records[0].ext, (std::vector<std::string>{"S5", "W7"}));
  EXPECT_EQ(list.problems.size(), 2u) << Problems(list);
}

TEST(MaildirUidlistTest, UnterminatedLastLineIsSkipped) {
  Uidlist list = MustParse(std::string(kHeader) + "1 :a\n2 :half-writ");
  EXPECT_EQ(Uids(list), (std::vector<uint32_t>{1}));
  EXPECT_EQ(ProblemLines(list), (std::vector<size_t>{3}));
}

TEST(MaildirUidlistTest, RepeatedHeaderFieldLastOneCounts) {
  Uidlist list = MustParse("3 V1 N2 V3\n");
  EXPECT_EQ(list.header.uid_validity, 3u);
  EXPECT_EQ(list.problems.size(), 1u);
}

TEST(MaildirUidlistTest, BinaryGarbageAfterAHeaderYieldsNoRecords) {
  std::string bytes(kHeader);
  uint32_t state = 12345;
  for (int i = 0; i < 20000; ++i) {
    state = state * 1103515245 + 12345;
    bytes += static_cast<char>(state >> 24);
  }
  bytes += '\n';
  Result<Uidlist> list = Uidlist::Parse(bytes);
  ASSERT_TRUE(list.ok());
  for (const UidlistRecord& r : list->records) EXPECT_TRUE(IsValidUidlistName(r.name));
  EXPECT_FALSE(list->problems.empty());
}

TEST(MaildirUidlistTest, LargeFileParsesQuickly) {
  std::string bytes(kHeader);
  for (uint32_t uid = 1; uid <= 50000; ++uid) {
    bytes += std::to_string(uid) + " :1795767728.M" + std::to_string(uid) + "P1.vm,S=1,W=1\n";
  }
  Uidlist list = MustParse(bytes);
  EXPECT_EQ(list.records.size(), 50000u);
  EXPECT_EQ(MustSerialize(list), bytes);
}

// --- writing -----------------------------------------------------------------

TEST(MaildirUidlistTest, SerializeRefusesWhatWouldNotReadBack) {
  Uidlist good = MustParse(std::string(kHeader) + "1 :a\n2 :b\n");
  auto expect_refused = [](const Uidlist& list) {
    MAILFS_EXPECT_CODE(list.Serialize(), kInvalidArgument);
  };
  Uidlist list = good;
  list.records[1].uid = 1;
  expect_refused(list);
  list = good;
  list.records[0].uid = 0;
  expect_refused(list);
  list = good;
  list.records[1].uid = 0xffffffff;
  expect_refused(list);
  list = good;
  list.records[1].name = "x/y";
  expect_refused(list);
  list = good;
  list.records[1].name = "a:2,S";  // same base name as uid 1
  expect_refused(list);
  list = good;
  list.records[1].ext = {"lower"};
  expect_refused(list);
  list = good;
  list.records[1].ext = {"S1 :evil"};
  expect_refused(list);
  list = good;
  list.records[1].name = "a\nb";
  expect_refused(list);
  list = good;
  list.header.guid = "xyz";
  expect_refused(list);
  list = good;
  list.header.guid = "";
  expect_refused(list);
  list = good;
  list.header.uid_validity = 0;
  expect_refused(list);
  list = good;
  list.header.fields = {"Vsneaky"};
  expect_refused(list);
  list = good;
  list.header.fields = {"A B"};
  expect_refused(list);
}

// The append path: lines added at the end read back as the old records plus
// the new ones, and the stale N stays as Dovecot leaves it.
TEST(MaildirUidlistTest, AppendLinesExtendARealFile) {
  std::string bytes = test::ReadTestFile(kDataDir / "dovecot-maildir-pp/INBOX/dovecot-uidlist");
  Uidlist list = MustParse(bytes);
  std::vector<UidlistRecord> added = {
      {15, {}, "1795770000.M1P1.vm,S=10,W=11"},
      {17, {"S54"}, "1795770001.Mext2P998.otherhost"},
  };
  Result<std::string> lines = FormatUidlistAppendLines(added, list.NextUid());
  MAILFS_ASSERT_OK(lines);
  EXPECT_EQ(*lines, "15 :1795770000.M1P1.vm,S=10,W=11\n17 S54 :1795770001.Mext2P998.otherhost\n");
  Uidlist grown = MustParse(bytes + *lines);
  EXPECT_TRUE(grown.problems.empty());
  EXPECT_EQ(grown.header.next_uid, 15u);
  EXPECT_EQ(grown.NextUid(), 18u);
  ASSERT_EQ(grown.records.size(), 16u);
  EXPECT_EQ(grown.records[15], added[1]);

  MAILFS_EXPECT_CODE(FormatUidlistAppendLines(added, 16), kInvalidArgument);  // reuses 15
  std::vector<UidlistRecord> unordered = {{20, {}, "a"}, {19, {}, "b"}};
  MAILFS_EXPECT_CODE(FormatUidlistAppendLines(unordered, 15), kInvalidArgument);
  std::vector<UidlistRecord> bad_name = {{20, {}, ".."}};
  MAILFS_EXPECT_CODE(FormatUidlistAppendLines(bad_name, 15), kInvalidArgument);
  Result<std::string> none = FormatUidlistAppendLines({}, 15);
  MAILFS_ASSERT_OK(none);
  EXPECT_EQ(*none, "");
}

TEST(MaildirUidlistTest, RewriteAsDovecotDoesWithTheEffectiveNextUid) {
  Uidlist list =
      MustParse(test::ReadTestFile(kDataDir / "dovecot-maildir-pp/Archive/dovecot-uidlist"));
  list.header.next_uid = list.NextUid();
  EXPECT_EQ(MustSerialize(list),
            "3 V1795767733 N2 G9ad04621b03d096b565e000083ecc375\n"
            "1 :1795767729.M761329P24191.vm,S=283,W=293\n");
}

TEST(MaildirUidlistTest, FormatGuidIsLowercaseHex) {
  std::array<uint8_t, 16> bytes{};
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(0xa0 + i);
  std::string guid = FormatUidlistGuid(bytes);
  EXPECT_EQ(guid, "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
  EXPECT_TRUE(IsValidUidlistGuid(guid));
}

// --- append or rewrite ---------------------------------------------------------

TEST(MaildirUidlistTest, AppendWhenNothingForcesARewrite) {
  UidlistWriteInputs in;
  in.records_in_file = 14;
  in.new_records = 1;
  in.live_records = 15;
  EXPECT_EQ(UidlistRewriteReason(in), std::nullopt);
  in = {};
  in.new_records = 1;
  in.live_records = 1;
  EXPECT_FALSE(UidlistNeedsRewrite(in)) << "first line into a header-only file";
  EXPECT_FALSE(UidlistNeedsRewrite(UidlistWriteInputs{})) << "nothing at all to write";
}

TEST(MaildirUidlistTest, EachReasonForcesARewrite) {
  auto healthy = [] {
    UidlistWriteInputs in;
    in.records_in_file = 10;
    in.new_records = 1;
    in.live_records = 11;
    return in;
  };
  UidlistWriteInputs in = healthy();
  in.file_usable = false;
  EXPECT_TRUE(UidlistNeedsRewrite(in));
  in = healthy();
  in.file_version = 1;
  EXPECT_TRUE(UidlistNeedsRewrite(in));
  in = healthy();
  in.file_has_guid = false;
  EXPECT_TRUE(UidlistNeedsRewrite(in));
  in = healthy();
  in.file_had_problems = true;
  EXPECT_TRUE(UidlistNeedsRewrite(in));
  in = healthy();
  in.uid_validity_changes = true;
  EXPECT_TRUE(UidlistNeedsRewrite(in));
  in = healthy();
  in.ext_field_changes = true;
  EXPECT_TRUE(UidlistNeedsRewrite(in));
  in = healthy();
  in.next_uid_goes_down = true;
  EXPECT_TRUE(UidlistNeedsRewrite(in));
}

// MAILDIR.md: expunging 2 of 7 rewrote the file; 1 more of the remaining 5
// did not.
TEST(MaildirUidlistTest, CompressRuleMatchesWhatDovecotDid) {
  UidlistWriteInputs in;
  in.records_in_file = 7;
  in.live_records = 5;
  EXPECT_EQ(UidlistRewriteReason(in), "a quarter or more of the lines are for gone messages");
  in.records_in_file = 5;
  in.live_records = 4;
  EXPECT_FALSE(UidlistNeedsRewrite(in));
  in.records_in_file = 3;
  in.live_records = 0;
  EXPECT_TRUE(UidlistNeedsRewrite(in)) << "every message gone";
}

}  // namespace
}  // namespace mailfs::maildir
