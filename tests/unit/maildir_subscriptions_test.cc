// Unit tests for backends/maildir/format/subscriptions (MAILDIR.md section 6
// and pymap's "subscriptions"). The real files are copies of the fixture
// stores' (tests/data/maildir/<fixture>/subscriptions).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "backends/maildir/format/subscriptions.h"
#include "tests/support/test_util.h"

namespace mailfs::maildir {
namespace {

using enum Layout;
using enum NameEncoding;
using enum SubscriptionsVersion;
using Names = std::vector<std::string>;

std::string ReadData(const std::string& fixture, const std::string& file) {
  std::string path = std::string(MAILFS_SOURCE_DIR) + "/tests/data/maildir/" + fixture + "/" + file;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string MustSerialize(const Names& names, SubscriptionsVersion version, Layout layout,
                          NameEncoding encoding, const Names& kept = {}) {
  Result<std::string> out = SerializeSubscriptions(names, version, layout, encoding, kept);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? *out : std::string();
}

Names Raws(const Subscriptions& subs) {
  Names raws;
  for (const SkippedSubscription& s : subs.skipped) raws.push_back(s.raw);
  return raws;
}

// --- the fixtures -------------------------------------------------------------

TEST(MaildirSubscriptionsTest, DovecotFixtureFiles) {
  // Subscription order; expected.json lists the same set. Archive/2023 and
  // Archive/2023/Q1 are stale (renamed away), Ghost/Never Created never
  // existed: Dovecot keeps them.
  const Names expected = {"INBOX",          "Sent",         "Drafts",
                          "Junk",           "Archive/2023", "Archive/2023/Q1",
                          "My Folder",      "Grüße & Co",   "Ghost/Never Created",
                          "Archive/2024/Q1"};
  for (auto [fixture, layout] :
       {std::pair{"dovecot-maildir-pp", kMaildirPlusPlus}, std::pair{"dovecot-maildir-fs", kFs}}) {
    SCOPED_TRACE(fixture);
    std::string file = ReadData(fixture, "subscriptions");
    Subscriptions subs = ParseSubscriptions(file, layout);
    EXPECT_EQ(subs.version, kV2);
    EXPECT_EQ(subs.names, expected);
    EXPECT_TRUE(subs.skipped.empty());
    // Written back byte for byte.
    EXPECT_EQ(MustSerialize(subs.names, kV2, layout, kMutf7), file);
  }
}

TEST(MaildirSubscriptionsTest, PymapFixtureFile) {
  std::string file = ReadData("pymap-maildir", "subscriptions");
  Subscriptions subs = ParseSubscriptions(file, kMaildirPlusPlus);
  EXPECT_EQ(subs.version, kPymap);
  // No INBOX (LSUB adds it), stale names kept (Scratch, Old-Projects).
  EXPECT_EQ(subs.names, (Names{"Sent", "Archive", "Work/Projects/Alpha", "Scratch", "Old-Projects",
                               "Trash", "Temp"}));
  EXPECT_TRUE(subs.skipped.empty());
  EXPECT_EQ(MustSerialize(subs.names, kPymap, kMaildirPlusPlus, kMutf7), file);
  // The same names as Dovecot would write them.
  EXPECT_EQ(MustSerialize(subs.names, kV2, kMaildirPlusPlus, kMutf7),
            "V\t2\n\nSent\nArchive\nWork\tProjects\tAlpha\nScratch\nOld-Projects\nTrash\nTemp\n");
}

// --- version 2 ------------------------------------------------------------------

TEST(MaildirSubscriptionsTest, ExampleOfMaildirMd) {
  const std::string file = "V\t2\n\nINBOX\nArchive\t2023\tQ1\nGr&APwA3w-e &- Co\n";
  for (Layout layout : {kMaildirPlusPlus, kFs}) {
    Subscriptions subs = ParseSubscriptions(file, layout);
    EXPECT_EQ(subs.version, kV2);
    EXPECT_EQ(subs.names, (Names{"INBOX", "Archive/2023/Q1", "Grüße & Co"}));
    EXPECT_EQ(MustSerialize(subs.names, kV2, layout, kMutf7), file);
  }
  // With :UTF-8 the levels are raw.
  EXPECT_EQ(MustSerialize({"Grüße & Co", "Reçus/Été 2024"}, kV2, kMaildirPlusPlus, kUtf8),
            "V\t2\n\nGrüße & Co\nReçus\tÉté 2024\n");
  Subscriptions utf8 = ParseSubscriptions("V\t2\n\nGrüße & Co\nReçus\tÉté 2024\n", kFs);
  EXPECT_EQ(utf8.names, (Names{"Grüße & Co", "Reçus/Été 2024"}));
}

TEST(MaildirSubscriptionsTest, Version2Details) {
  // A '.' inside a v2 level is fine in fs, refused in Maildir++.
  Subscriptions fs = ParseSubscriptions("V\t2\n\na.b\tc\n", kFs);
  EXPECT_EQ(fs.names, Names{"a.b/c"});
  Subscriptions pp = ParseSubscriptions("V\t2\n\na.b\tc\n", kMaildirPlusPlus);
  EXPECT_TRUE(pp.names.empty());
  ASSERT_EQ(pp.skipped.size(), 1u);
  EXPECT_EQ(pp.skipped[0].line, 3u);
  EXPECT_EQ(pp.skipped[0].raw, "a.b\tc");
  // A trailing separator is dropped, as Dovecot does; CR before LF too.
  EXPECT_EQ(ParseSubscriptions("V\t2\n\nArchive\t\nSent\r\n", kFs).names,
            (Names{"Archive", "Sent"}));
  // The last line may lack its LF.
  EXPECT_EQ(ParseSubscriptions("V\t2\n\nA\nB", kFs).names, (Names{"A", "B"}));
  // Escapes: "\001" + a byte is that byte; control characters make names
  // the mount cannot hold, so they are reported.
  Subscriptions esc = ParseSubscriptions("V\t2\n\nF\001oo\nA\001tB\nC\001nD\n", kFs);
  EXPECT_EQ(esc.names, Names{"Foo"});
  EXPECT_EQ(Raws(esc), (Names{"A\001tB", "C\001nD"}));
  // Header only.
  Subscriptions empty = ParseSubscriptions("V\t2\n\n", kFs);
  EXPECT_EQ(empty.version, kV2);
  EXPECT_TRUE(empty.names.empty());
  EXPECT_EQ(MustSerialize({}, kV2, kFs, kMutf7), "V\t2\n\n");
}

TEST(MaildirSubscriptionsTest, TabEscaping) {
  EXPECT_EQ(TabEscape("plain"), "plain");
  EXPECT_EQ(TabEscape("a\001b\tc\rd\ne"), "a\0011b\001tc\001rd\001ne");
  EXPECT_EQ(TabEscape(std::string_view("\0", 1)), "\0010");
  EXPECT_EQ(TabUnescape("a\0011b\001tc\001rd\001ne"), "a\001b\tc\rd\ne");
  EXPECT_EQ(TabUnescape("\0010"), std::string(1, '\0'));
  EXPECT_EQ(TabUnescape("x\001"), "x");  // a lone escape at the end is dropped
  EXPECT_EQ(TabUnescape("\001\001\001"), "\001");
  EXPECT_EQ(TabUnescape("\001q"), "q");
  for (std::string_view s : {"", "\001", "\t\t", "a\r\nb", "\001t"}) {
    EXPECT_EQ(TabUnescape(TabEscape(s)), s);
    EXPECT_EQ(TabEscape(s).find('\t'), std::string::npos);
  }
}

// --- version 1 and pymap --------------------------------------------------------

TEST(MaildirSubscriptionsTest, Version1UsesTheLayoutSeparator) {
  Subscriptions pp =
      ParseSubscriptions("INBOX\nArchive.2023.Q1\nGr&APwA3w-e &- Co\n", kMaildirPlusPlus);
  EXPECT_EQ(pp.version, kV1);
  EXPECT_EQ(pp.names, (Names{"INBOX", "Archive/2023/Q1", "Grüße & Co"}));
  EXPECT_EQ(MustSerialize(pp.names, kV1, kMaildirPlusPlus, kMutf7),
            "INBOX\nArchive.2023.Q1\nGr&APwA3w-e &- Co\n");
  Subscriptions fs = ParseSubscriptions("INBOX\nArchive/2023/Q1\n", kFs);
  EXPECT_EQ(fs.version, kV1);
  EXPECT_EQ(fs.names, (Names{"INBOX", "Archive/2023/Q1"}));
  EXPECT_EQ(MustSerialize(fs.names, kV1, kFs, kMutf7), "INBOX\nArchive/2023/Q1\n");
  // Trailing separators of old writers.
  EXPECT_EQ(ParseSubscriptions("Archive.\n", kMaildirPlusPlus).names, Names{"Archive"});
  EXPECT_EQ(ParseSubscriptions("Archive/\n", kFs).names, Names{"Archive"});
  // A Maildir++ v1 file cannot hold '/' in a level.
  Subscriptions slash = ParseSubscriptions("a/b\n", kMaildirPlusPlus);
  EXPECT_TRUE(slash.names.empty());
  EXPECT_EQ(Raws(slash), Names{"a/b"});
  // An existing empty file is version 1 (Dovecot keeps writing v1 to it).
  EXPECT_EQ(ParseSubscriptions("", kFs).version, kV1);
  EXPECT_EQ(MustSerialize({}, kV1, kFs, kMutf7), "");
  // A v2 header needs its blank line.
  Subscriptions almost = ParseSubscriptions("V\t2\nINBOX\n", kFs);
  EXPECT_EQ(almost.version, kV1);
  EXPECT_EQ(almost.names, Names{"INBOX"});
  EXPECT_EQ(Raws(almost), Names{"V\t2"});
}

TEST(MaildirSubscriptionsTest, PymapNamesAreRawUtf8) {
  Subscriptions subs =
      ParseSubscriptions("Reçus/Été 2024\r\n日本語\r\nGr&APwA3w-e\r\nTom & Jerry\r\n", kFs);
  EXPECT_EQ(subs.version, kPymap);
  // No mUTF-7 decoding: pymap writes names as they are.
  EXPECT_EQ(subs.names, (Names{"Reçus/Été 2024", "日本語", "Gr&APwA3w-e", "Tom & Jerry"}));
  EXPECT_EQ(MustSerialize(subs.names, kPymap, kFs, kMutf7),
            "Reçus/Été 2024\r\n日本語\r\nGr&APwA3w-e\r\nTom & Jerry\r\n");
  // pymap allows '.' in names in Maildir++; this layout cannot.
  Subscriptions dot = ParseSubscriptions("v1.0\r\nSent\r\n", kMaildirPlusPlus);
  EXPECT_EQ(dot.names, Names{"Sent"});
  EXPECT_EQ(Raws(dot), Names{"v1.0"});
  // One CRLF anywhere makes it pymap's.
  EXPECT_EQ(ParseSubscriptions("A\nB\r\n", kFs).version, kPymap);
}

// --- what does not decode -------------------------------------------------------

TEST(MaildirSubscriptionsTest, BadLinesAreReportedAndKept) {
  const std::string file =
      "V\t2\n\nINBOX\nbad\xffname\n\n~home\n..\ninbox\nSent\nSent\nA\t\tB\ncur\tx\n";
  Subscriptions subs = ParseSubscriptions(file, kFs);
  EXPECT_EQ(subs.version, kV2);
  // Empty lines and repeats are dropped quietly.
  EXPECT_EQ(subs.names, (Names{"INBOX", "Sent"}));
  ASSERT_EQ(subs.skipped.size(), 6u);
  EXPECT_EQ(subs.skipped[0].line, 4u);
  EXPECT_EQ(subs.skipped[0].raw, "bad\xffname");
  EXPECT_FALSE(subs.skipped[0].reason.empty());
  EXPECT_EQ(Raws(subs), (Names{"bad\xffname", "~home", "..", "inbox", "A\t\tB", "cur\tx"}));
  // A rewrite can keep them, so nothing is lost.
  std::string again = MustSerialize(subs.names, kV2, kFs, kMutf7, Raws(subs));
  EXPECT_EQ(again, "V\t2\n\nbad\xffname\n~home\n..\ninbox\nA\t\tB\ncur\tx\nINBOX\nSent\n");
  Subscriptions reread = ParseSubscriptions(again, kFs);
  EXPECT_EQ(reread.names, subs.names);
  EXPECT_EQ(Raws(reread), Raws(subs));
}

TEST(MaildirSubscriptionsTest, SerializeRefusesWhatItCannotWrite) {
  MAILFS_EXPECT_CODE(SerializeSubscriptions(Names{"a.b"}, kV2, kMaildirPlusPlus, kMutf7),
                     kInvalidName);
  MAILFS_EXPECT_CODE(SerializeSubscriptions(Names{"a.b"}, kV1, kMaildirPlusPlus, kMutf7),
                     kInvalidName);
  MAILFS_EXPECT_CODE(SerializeSubscriptions(Names{""}, kPymap, kFs, kMutf7), kInvalidName);
  MAILFS_EXPECT_CODE(SerializeSubscriptions(Names{"a&-b"}, kV2, kFs, kUtf8), kInvalidName);
  MAILFS_EXPECT_CODE(SerializeSubscriptions(Names{"x\ny"}, kV2, kFs, kMutf7), kInvalidName);
  for (const char* kept : {"", "a\nb", "a\r"}) {
    MAILFS_EXPECT_CODE(SerializeSubscriptions(Names{}, kV2, kFs, kMutf7, Names{kept}),
                       kInvalidArgument);
  }
  // "inbox" is written as INBOX.
  EXPECT_EQ(MustSerialize({"inbox"}, kV2, kFs, kMutf7), "V\t2\n\nINBOX\n");
}

TEST(MaildirSubscriptionsTest, RoundTripsInEveryVersion) {
  const Names names = {
      "INBOX", "INBOX/Receipts", "Grüße & Co",         "Tëst/Ünïcode", "amp&sand", "with~tilde",
      "😀",     "Tom & Jerry",    "Ghost/Never Created"};
  for (Layout layout : {kMaildirPlusPlus, kFs}) {
    for (SubscriptionsVersion version : {kV1, kV2, kPymap}) {
      for (NameEncoding encoding : {kMutf7, kUtf8}) {
        std::string file = MustSerialize(names, version, layout, encoding);
        Subscriptions subs = ParseSubscriptions(file, layout);
        EXPECT_EQ(subs.version, version);
        EXPECT_EQ(subs.names, names);
        EXPECT_TRUE(subs.skipped.empty());
      }
    }
  }
}

}  // namespace
}  // namespace mailfs::maildir
