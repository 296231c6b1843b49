// Unit tests for backends/maildir/format/filename: message file names as
// Dovecot and pymap write them. The real names come from the fixture stores
// (tests/data/maildir/<fixture>/messages.tsv and uidlist-names.tsv, made
// from /work/shared/fixtures by listing cur/ and new/ and reading each
// dovecot-uidlist and expected.json).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "backends/maildir/format/filename.h"
#include "backends/maildir/format/mutf7.h"
#include "tests/support/test_util.h"

namespace mailfs::maildir {
namespace {

constexpr const char* kFixtures[] = {"dovecot-maildir-pp", "dovecot-maildir-fs", "pymap-maildir"};

std::vector<std::string> Split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, separator)) parts.push_back(part);
  if (!text.empty() && text.back() == separator) parts.push_back("");
  return parts;
}

// The rows of a tests/data/maildir TSV file, without comment lines.
std::vector<std::vector<std::string>> ReadTsv(const std::string& fixture, const std::string& file) {
  std::string path = std::string(MAILFS_SOURCE_DIR) + "/tests/data/maildir/" + fixture + "/" + file;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    rows.push_back(Split(line, '\t'));
  }
  return rows;
}

std::string LastPathPart(const std::string& path) { return path.substr(path.rfind('/') + 1); }

NameFlags SystemFlagsFromNames(const std::string& names) {
  NameFlags flags;
  for (const std::string& name : Split(names, ' ')) {
    if (name.empty()) continue;
    bool found = false;
    for (SystemFlag flag : kAllSystemFlags) {
      if (SystemFlagName(flag) == name) {
        flags.Add(flag);
        found = true;
      }
    }
    EXPECT_TRUE(found) << name;
  }
  return flags;
}

FileName MustParse(std::string_view name) {
  Result<FileName> parsed = ParseFileName(name);
  EXPECT_TRUE(parsed.ok()) << name << ": " << parsed.status().ToString();
  return parsed.ok() ? *parsed : FileName();
}

int PopCount(uint32_t bits) { return __builtin_popcount(bits); }

// --- the fixtures' own names --------------------------------------------------

TEST(MaildirFilenameTest, EveryFixtureMessageFileParses) {
  int checked = 0;
  for (const char* fixture : kFixtures) {
    bool dovecot = std::string(fixture).starts_with("dovecot");
    for (const auto& row : ReadTsv(fixture, "messages.tsv")) {
      ASSERT_EQ(row.size(), 5u);
      std::string name = LastPathPart(row[0]);
      SCOPED_TRACE(std::string(fixture) + ": " + row[0]);
      FileName parsed = MustParse(name);
      EXPECT_EQ(parsed.base, name.substr(0, name.find(':')));
      EXPECT_EQ(parsed.base, BaseName(name));
      if (dovecot) {
        // Dovecot names carry S= (the file size) and W= (the vsize).
        ASSERT_TRUE(parsed.size.has_value());
        ASSERT_TRUE(parsed.vsize.has_value());
        EXPECT_EQ(std::to_string(*parsed.size), row[1]);
        EXPECT_EQ(std::to_string(*parsed.vsize), row[2]);
      } else {
        // pymap's names (Python mailbox.Maildir) have no sizes.
        EXPECT_FALSE(parsed.size.has_value());
        EXPECT_FALSE(parsed.vsize.has_value());
        EXPECT_NE(name.find('Q'), std::string::npos);
      }
      // Files in cur/ always have an info part; Dovecot's new/ files have
      // one only once flags were set there, pymap's always.
      bool in_cur = row[0].find("cur/") != std::string::npos;
      if (in_cur || !dovecot) {
        EXPECT_TRUE(parsed.has_flags);
      }
      EXPECT_EQ(parsed.has_flags, name.find(":2,") != std::string::npos);
      // System flags are what IMAP reported for the message.
      EXPECT_EQ(parsed.flags.system, SystemFlagsFromNames(row[3]).system);
      if (row[4] != "-") {
        EXPECT_EQ(PopCount(parsed.flags.keywords), std::stoi(row[4]));
      }
      EXPECT_EQ(parsed.unknown_flags, "");
      EXPECT_EQ(parsed.extra, "");
      // Both writers keep letters sorted, so a rewrite with the same flags
      // gives the same name (plus ":2," for a bare new/ name).
      Result<std::string> same = WithFlags(name, parsed.flags);
      MAILFS_ASSERT_OK(same);
      EXPECT_EQ(*same, parsed.has_flags ? name : name + ":2,");
      ++checked;
    }
  }
  EXPECT_EQ(checked, 26 + 26 + 42);
}

TEST(MaildirFilenameTest, EveryFixtureUidlistNameParses) {
  int checked = 0;
  for (const char* fixture : kFixtures) {
    bool dovecot = std::string(fixture).starts_with("dovecot");
    for (const auto& row : ReadTsv(fixture, "uidlist-names.tsv")) {
      ASSERT_EQ(row.size(), 3u);
      SCOPED_TRACE(std::string(fixture) + ": " + row[2]);
      FileName parsed = MustParse(row[2]);
      // Dovecot stores only the base name; pymap the whole name.
      EXPECT_EQ(row[2].find(':') == std::string::npos, dovecot);
      EXPECT_EQ(parsed.has_flags, !dovecot);
      EXPECT_EQ(parsed.size.has_value(), dovecot);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 29 + 29 + 47);
}

// Dovecot's INBOX got its UIDs one message at a time, so UID order is the
// order Dovecot sorts new files in. The usecs are not zero-padded: plain
// string order would put M127003 (uid 6) before M52051 (uid 5).
TEST(MaildirFilenameTest, SortKeyOrdersFixtureInboxLikeDovecotsUids) {
  for (const char* fixture : {"dovecot-maildir-pp", "dovecot-maildir-fs"}) {
    std::vector<std::string> by_uid;
    for (const auto& row : ReadTsv(fixture, "uidlist-names.tsv")) {
      if (row[0] == ".") by_uid.push_back(row[2]);
    }
    ASSERT_EQ(by_uid.size(), 14u) << fixture;
    std::vector<std::string> sorted = by_uid;
    std::sort(sorted.begin(), sorted.end(), [](const std::string& a, const std::string& b) {
      return SortKeyOf(a) < SortKeyOf(b);
    });
    EXPECT_EQ(sorted, by_uid) << fixture;
    std::vector<std::string> by_string = by_uid;
    std::sort(by_string.begin(), by_string.end());
    EXPECT_NE(by_string, by_uid) << fixture;
  }
}

// --- parsing ------------------------------------------------------------------

TEST(MaildirFilenameTest, ParsesDovecotName) {
  FileName parsed = MustParse("1795767212.M105402P15256.vm,S=4745,W=4826:2,FS");
  EXPECT_EQ(parsed.base, "1795767212.M105402P15256.vm,S=4745,W=4826");
  EXPECT_EQ(parsed.size, 4745u);
  EXPECT_EQ(parsed.vsize, 4826u);
  EXPECT_TRUE(parsed.has_flags);
  EXPECT_TRUE(parsed.flags.Has(SystemFlag::kFlagged));
  EXPECT_TRUE(parsed.flags.Has(SystemFlag::kSeen));
  EXPECT_EQ(parsed.flags.Letters(), "FS");
}

TEST(MaildirFilenameTest, ParsesEveryFlagLetter) {
  FileName parsed = MustParse("1.M1P1.h:2,DFRSTabcxyz");
  for (SystemFlag flag : kAllSystemFlags) EXPECT_TRUE(parsed.flags.Has(flag));
  EXPECT_EQ(parsed.flags.keywords, 0b11100000000000000000000111u);
  EXPECT_TRUE(parsed.flags.HasLetter('a'));
  EXPECT_TRUE(parsed.flags.HasLetter('z'));
  EXPECT_FALSE(parsed.flags.HasLetter('d'));
  EXPECT_TRUE(parsed.flags.HasLetter('D'));
  EXPECT_FALSE(parsed.flags.HasLetter('P'));
  EXPECT_EQ(parsed.flags.Letters(), "DFRSTabcxyz");
}

TEST(MaildirFilenameTest, NamesWithoutSizesOrInfo) {
  // MAILDIR.md: Dovecot accepts names that do not follow its pattern.
  for (std::string_view name : {"1795770000.Mext1P999.otherhost", "1700000001.M1P1.h",
                                "1795771111.Mext2P998.otherhost", "plain", "1.2.3"}) {
    FileName parsed = MustParse(name);
    EXPECT_EQ(parsed.base, name);
    EXPECT_FALSE(parsed.size.has_value()) << name;
    EXPECT_FALSE(parsed.vsize.has_value()) << name;
    EXPECT_FALSE(parsed.has_flags) << name;
  }
}

TEST(MaildirFilenameTest, PymapName) {
  FileName parsed = MustParse("1795767504.M659807P21092Q4.vm:2,FSc");
  EXPECT_EQ(parsed.base, "1795767504.M659807P21092Q4.vm");
  EXPECT_FALSE(parsed.size.has_value());
  EXPECT_EQ(parsed.flags.Letters(), "FSc");
  // An empty flag set still has the info part.
  FileName none = MustParse("1795767504.M567608P21092Q2.vm:2,");
  EXPECT_TRUE(none.has_flags);
  EXPECT_EQ(none.flags, NameFlags());
}

TEST(MaildirFilenameTest, InfoOtherThanTwoCommaMeansNoFlags) {
  for (std::string_view name :
       {"1.M1P1.h:1,S", "1.M1P1.h:foo", "1.M1P1.h:", "1.M1P1.h:2", "1.M1P1.h:2;S",
        // The flags follow the *last* ':' (strrchr).
        "1.M1P1.h:2,S:bar"}) {
    FileName parsed = MustParse(name);
    EXPECT_FALSE(parsed.has_flags) << name;
    EXPECT_EQ(parsed.flags, NameFlags()) << name;
    EXPECT_EQ(parsed.base, "1.M1P1.h") << name;
  }
  FileName parsed = MustParse("1.M1P1.h:bar:2,RS");
  EXPECT_EQ(parsed.base, "1.M1P1.h");
  EXPECT_EQ(parsed.flags.Letters(), "RS");
}

TEST(MaildirFilenameTest, KeepsUnknownLettersAndExtraText) {
  FileName parsed = MustParse("1.M1P1.h,S=5:2,PS3,XYZ,q");
  EXPECT_EQ(parsed.flags.Letters(), "S");
  EXPECT_EQ(parsed.unknown_flags, "P3");
  EXPECT_EQ(parsed.extra, ",XYZ,q");
  EXPECT_EQ(parsed.size, 5u);
}

TEST(MaildirFilenameTest, SizeFieldsLikeDovecot) {
  // Only the base name counts; W before S is fine.
  EXPECT_EQ(MustParse("1.M1P1.h,W=20,S=19:2,S").size, 19u);
  EXPECT_EQ(MustParse("1.M1P1.h,W=20,S=19:2,S").vsize, 20u);
  EXPECT_EQ(MustParse("1.M1P1.h,S=19,X=1").size, 19u);
  // Digits must end at ',' or at the end of the base name; the first ",S="
  // decides (Dovecot does not look further).
  EXPECT_FALSE(MustParse("1.M1P1.h,S=19x").size.has_value());
  EXPECT_FALSE(MustParse("1.M1P1.h,S=x,S=5").size.has_value());
  EXPECT_FALSE(MustParse("1.M1P1.h,S=").size.has_value());
  EXPECT_FALSE(MustParse("1.M1P1.h:2,S,S=5").size.has_value());
  EXPECT_FALSE(MustParse("1.M1P1.h,s=5").size.has_value());
  EXPECT_EQ(MustParse("1.M1P1.h,S=18446744073709551615").size, 18446744073709551615u);
  EXPECT_FALSE(MustParse("1.M1P1.h,S=18446744073709551616").size.has_value());
  EXPECT_FALSE(MustParse("1.M1P1.h,S=99999999999999999999999").size.has_value());
  EXPECT_EQ(MustParse("1.M1P1.h,S=0,W=0").size, 0u);
}

TEST(MaildirFilenameTest, RejectsUnsafeNames) {
  std::string too_long(256, 'x');
  for (std::string_view name :
       {std::string_view(""), std::string_view("."), std::string_view(".."),
        std::string_view(".hidden:2,S"), std::string_view("a/b"), std::string_view("../x"),
        std::string_view("a\0b", 3), std::string_view("a\nb"), std::string_view("a\rb"),
        std::string_view(too_long), std::string_view(":2,S"), std::string_view(":")}) {
    MAILFS_EXPECT_CODE(ParseFileName(name), kInvalidArgument) << PrintableForLog(name);
    MAILFS_EXPECT_CODE(WithFlags(name, NameFlags()), kInvalidArgument);
  }
  EXPECT_TRUE(UnsafeFileNameReason(std::string(255, 'x')) == std::nullopt);
  EXPECT_FALSE(UnsafeFileNameReason(too_long) == std::nullopt);
  // Spaces, tabs, UTF-8, backslashes are all fine in a file name.
  MAILFS_EXPECT_OK(ParseFileName("1.M1P1.my host\t\xc3\xa9\\057:2,S"));
}

// --- rewriting flags ---------------------------------------------------------

NameFlags Flags(std::string_view letters) {
  NameFlags flags;
  for (char c : letters) {
    switch (c) {
      case 'D':
        flags.Add(SystemFlag::kDraft);
        break;
      case 'F':
        flags.Add(SystemFlag::kFlagged);
        break;
      case 'R':
        flags.Add(SystemFlag::kAnswered);
        break;
      case 'S':
        flags.Add(SystemFlag::kSeen);
        break;
      case 'T':
        flags.Add(SystemFlag::kDeleted);
        break;
      default:
        flags.AddLetter(c);
        break;
    }
  }
  return flags;
}

std::string Rewrite(std::string_view name, std::string_view letters) {
  Result<std::string> out = WithFlags(name, Flags(letters));
  EXPECT_TRUE(out.ok()) << name << ": " << out.status().ToString();
  return out.ok() ? *out : std::string();
}

TEST(MaildirFilenameTest, WithFlagsWritesSortedLetters) {
  const std::string base = "1795767212.M105402P15256.vm,S=4745,W=4826";
  EXPECT_EQ(Rewrite(base, ""), base + ":2,");
  EXPECT_EQ(Rewrite(base, "S"), base + ":2,S");
  EXPECT_EQ(Rewrite(base + ":2,", "cbSFa"), base + ":2,FSabc");
  EXPECT_EQ(Rewrite(base + ":2,S", ""), base + ":2,");
  EXPECT_EQ(Rewrite(base + ":2,DFRST", "TRD"), base + ":2,DRT");
  // MAILDIR.md: "always sorted by ASCII (:2,DFRTbc)".
  EXPECT_EQ(Rewrite(base + ":2,Fbc", "cbTRFD"), base + ":2,DFRTbc");
  // The pymap fixture's "Sd": \Seen and keyword d.
  EXPECT_EQ(Rewrite("1795767505.M19929P21092Q12.vm:2,Sd", "dRS"),
            "1795767505.M19929P21092Q12.vm:2,RSd");
}

TEST(MaildirFilenameTest, WithFlagsKeepsUnknownLettersWhereTheySort) {
  // 'P' (passed) is not ours: it stays, and our letters go around it.
  EXPECT_EQ(Rewrite("1.M1P1.h,S=5:2,PS", "F"), "1.M1P1.h,S=5:2,FP");
  EXPECT_EQ(Rewrite("1.M1P1.h:2,P", "DFRSTa"), "1.M1P1.h:2,DFPRSTa");
  EXPECT_EQ(Rewrite("1.M1P1.h:2,P", ""), "1.M1P1.h:2,P");
  // Unknown characters above 'a' come after the keywords, below before.
  EXPECT_EQ(Rewrite("1.M1P1.h:2,{", "ab"), "1.M1P1.h:2,ab{");
  EXPECT_EQ(Rewrite("1.M1P1.h:2,_", "aS"), "1.M1P1.h:2,S_a");
  // Text after a second ',' is another flag set: kept at the end.
  EXPECT_EQ(Rewrite("1.M1P1.h:2,S,XY", "RS"), "1.M1P1.h:2,RS,XY");
  EXPECT_EQ(Rewrite("1.M1P1.h:2,,", "S"), "1.M1P1.h:2,S,");
}

TEST(MaildirFilenameTest, WithFlagsReplacesOtherInfo) {
  // Everything before the last ':' stays, the rest is replaced.
  EXPECT_EQ(Rewrite("1.M1P1.h:1,abc", "S"), "1.M1P1.h:2,S");
  EXPECT_EQ(Rewrite("1.M1P1.h:", "S"), "1.M1P1.h:2,S");
  EXPECT_EQ(Rewrite("1.M1P1.h:bar:2,RS", "F"), "1.M1P1.h:bar:2,F");
  EXPECT_EQ(Rewrite("1.M1P1.h:2,S:bar", "F"), "1.M1P1.h:2,S:2,F");
}

TEST(MaildirFilenameTest, WithFlagsIsIdempotentAndKeepsTheBaseName) {
  for (std::string_view name : {"1.M1P1.h", "1.M1P1.h:2,PS,X", "1.M1P1.h:1,", "x:y:2,ab",
                                "1795767504.M519962P21092Q1.vm:2,S"}) {
    for (std::string_view letters : {"", "S", "DFRSTabcdefghijklmnopqrstuvwxyz", "ab"}) {
      std::string once = Rewrite(name, letters);
      EXPECT_EQ(Rewrite(once, letters), once);
      FileName parsed = MustParse(once);
      EXPECT_EQ(parsed.base, BaseName(name));
      EXPECT_EQ(parsed.flags, Flags(letters));
      EXPECT_TRUE(parsed.has_flags);
    }
  }
}

TEST(MaildirFilenameTest, WithFlagsRefusesNamesThatGrowTooLong) {
  std::string name(250, 'x');
  MAILFS_EXPECT_OK(WithFlags(name, Flags("")));
  MAILFS_EXPECT_CODE(WithFlags(name, Flags("DFRST")), kInvalidArgument);
}

// --- new names ----------------------------------------------------------------

TEST(MaildirFilenameTest, NewFileNameLooksLikeDovecots) {
  NewFileNameParts parts;
  parts.secs = 1795767212;
  parts.usecs = 105402;
  parts.pid = 15256;
  parts.hostname = "vm";
  parts.size = 4745;
  parts.vsize = 4826;
  std::string name = NewFileName(parts);
  EXPECT_EQ(name, "1795767212.M105402P15256.vm,S=4745,W=4826");
  FileName parsed = MustParse(name);
  EXPECT_EQ(parsed.size, 4745u);
  EXPECT_EQ(parsed.vsize, 4826u);
  EXPECT_FALSE(parsed.has_flags);
  EXPECT_EQ(SortKeyOf(name).secs, 1795767212u);
  EXPECT_EQ(SortKeyOf(name).usecs, 105402u);
}

TEST(MaildirFilenameTest, HostnameIsSanitized) {
  EXPECT_EQ(SanitizeHostname("vm"), "vm");
  EXPECT_EQ(SanitizeHostname("a/b:c"), "a\\057b\\072c");
  EXPECT_EQ(SanitizeHostname("x,S=1"), "x\\054S=1");
  EXPECT_EQ(SanitizeHostname(std::string_view("t\tn\n\0z\x7f", 7)), "t\\011n\\012\\000z\\177");
  EXPECT_EQ(SanitizeHostname(""), "localhost");
  EXPECT_EQ(SanitizeHostname("h\xc3\xa9"), "h\xc3\xa9");
  // Long host names are cut so the file name stays under 255 bytes.
  EXPECT_LE(SanitizeHostname(std::string(1000, '/')).size(), 100u);

  NewFileNameParts parts;
  parts.secs = UINT64_MAX;
  parts.usecs = 999999;
  parts.pid = UINT64_MAX;
  std::string host(300, ':');
  parts.hostname = host;
  parts.size = UINT64_MAX;
  parts.vsize = UINT64_MAX;
  std::string name = NewFileName(parts);
  FileName parsed = MustParse(name);
  EXPECT_EQ(parsed.size, UINT64_MAX);
  EXPECT_EQ(parsed.vsize, UINT64_MAX);
  MAILFS_EXPECT_OK(WithFlags(name, Flags("DFRSTabcdefghijklmnopqrstuvwxyz")));
  // A host name cannot fake the size fields.
  parts.hostname = "evil,S=1,W=1";
  parts.size = 7;
  parts.vsize = 8;
  parsed = MustParse(NewFileName(parts));
  EXPECT_EQ(parsed.size, 7u);
  EXPECT_EQ(parsed.vsize, 8u);
  parts.hostname = "a/b";
  EXPECT_EQ(NewFileName(parts).find('/'), std::string::npos);
}

// --- sort order ---------------------------------------------------------------

TEST(MaildirFilenameTest, SortKeyFollowsDovecot) {
  auto before = [](std::string_view a, std::string_view b) { return SortKeyOf(a) < SortKeyOf(b); };
  // Seconds first, numerically.
  EXPECT_TRUE(before("999.M999999P1.h", "1000.M0P1.h"));
  // Then usecs, numerically.
  EXPECT_TRUE(
      before("1795767729.M52051P24247.vm,S=448,W=462", "1795767729.M127003P24262.vm,S=279,W=289"));
  // pymap's names too.
  EXPECT_TRUE(before("1795767505.M19929P21092Q12.vm:2,Sd", "1795767505.M67956P21092Q13.vm:2,"));
  // Then the rest of the base name; the info part does not count.
  EXPECT_TRUE(before("1.M5P1.a:2,S", "1.M5P1.b"));
  EXPECT_EQ(SortKeyOf("1.M5P1.a:2,S"), SortKeyOf("1.M5P1.a:2,RS"));
  // MAILDIR.md's foreign names: 'M' with no digits is usecs 0.
  EXPECT_EQ(SortKeyOf("1795770000.Mext1P999.otherhost").usecs, 0u);
  EXPECT_TRUE(before("1795770000.Mext1P999.otherhost", "1795770000.M1P1.h"));
  EXPECT_EQ(SortKeyOf("1700000001.M1P1.h").usecs, 1u);
  // usecs come from the first 'M' of the part between the first two dots.
  EXPECT_EQ(SortKeyOf("5.P7M42Q1.h").usecs, 42u);
  EXPECT_EQ(SortKeyOf("5.P7.M42").usecs, 0u);
  EXPECT_EQ(SortKeyOf("5M42").usecs, 0u);
  // No leading digits: secs 0, sorted before any timestamp.
  EXPECT_EQ(SortKeyOf("abc").secs, 0u);
  EXPECT_TRUE(before("abc", "1.M0P0.h"));
  // Huge numbers saturate instead of wrapping.
  EXPECT_EQ(SortKeyOf("99999999999999999999999.M99999999999999999999999P1.h").secs, UINT64_MAX);
  EXPECT_EQ(SortKeyOf("99999999999999999999999.M99999999999999999999999P1.h").usecs, UINT64_MAX);
  // Same time, different spelling: still a total order.
  EXPECT_NE(SortKeyOf("01.M1P1.h"), SortKeyOf("1.M1P1.h"));
}

// --- sizes --------------------------------------------------------------------

TEST(MaildirFilenameTest, VirtualSizeCountsBareLineFeeds) {
  EXPECT_EQ(VirtualSize(""), 0u);
  EXPECT_EQ(VirtualSize("a"), 1u);
  EXPECT_EQ(VirtualSize("a\n"), 3u);
  EXPECT_EQ(VirtualSize("a\r\n"), 3u);
  EXPECT_EQ(VirtualSize("\n\n"), 4u);
  EXPECT_EQ(VirtualSize("\r\r\n\n"), 5u);
  EXPECT_EQ(VirtualSize("\r"), 1u);
  // The fixture's 20-byte message: S=20, W=23 (three lines).
  EXPECT_EQ(VirtualSize("Subject: t\n\nhello\n"), 18u + 3u);
  // MAILDIR.md: a 74-byte CRLF message is stored as 69 bytes with S=69,W=74.
  std::string crlf = "From: a@b\r\nTo: c@d\r\nSubject: x\r\n\r\nbody line one\r\nline two\r\n";
  std::string lf = crlf;
  lf.erase(std::remove(lf.begin(), lf.end(), '\r'), lf.end());
  EXPECT_EQ(VirtualSize(lf), crlf.size());
  EXPECT_EQ(VirtualSize(crlf), crlf.size());
}

TEST(MaildirFilenameTest, VirtualSizeCounterAcrossChunks) {
  std::string text = "a\r\nb\nc\r\r\n\n\rx\n";
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    VirtualSizeCounter counter;
    counter.Add(std::string_view(text).substr(0, cut));
    counter.Add(std::string_view(text).substr(cut));
    EXPECT_EQ(counter.size(), text.size());
    EXPECT_EQ(counter.vsize(), VirtualSize(text)) << cut;
  }
  // A CR at the end of one chunk pairs with the LF starting the next.
  VirtualSizeCounter counter;
  counter.Add("a\r");
  counter.Add("\nb\n");
  EXPECT_EQ(counter.vsize(), 6u);
}

}  // namespace
}  // namespace mailfs::maildir
