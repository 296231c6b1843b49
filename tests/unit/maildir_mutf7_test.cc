// Unit tests for backends/maildir/format/mutf7: IMAP modified UTF-7 and the
// rule for reading a name level from disk (MAILDIR.md section 7 and "What
// mailfs does where the two disagree").
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "backends/maildir/format/mutf7.h"
#include "tests/support/test_util.h"

namespace mailfs::maildir {
namespace {

std::string MustEncode(std::string_view utf8) {
  Result<std::string> out = mutf7::Encode(utf8);
  EXPECT_TRUE(out.ok()) << PrintableForLog(utf8) << ": " << out.status().ToString();
  return out.ok() ? *out : std::string();
}

std::string MustDecode(std::string_view text) {
  Result<std::string> out = mutf7::Decode(text);
  EXPECT_TRUE(out.ok()) << PrintableForLog(text) << ": " << out.status().ToString();
  return out.ok() ? *out : std::string();
}

std::string Utf8(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

struct Example {
  std::string_view utf8;
  std::string_view mutf7;
};

// MAILDIR.md section 7, the fixtures' folder, RFC 3501 and Dovecot's own
// test-imap-utf7.c.
constexpr Example kExamples[] = {
    {"Grüße & Co", "Gr&APwA3w-e &- Co"},  // the fixtures' folder
    {"Tëst", "T&AOs-st"},
    {"Ünïcode", "&ANw-n&AO8-code"},
    {"amp&sand", "amp&-sand"},
    {"with~tilde", "with~tilde"},
    {"My Folder", "My Folder"},
    {"Entwürfe", "Entw&APw-rfe"},
    {"Reçus", "Re&AOc-us"},
    {"Été 2024", "&AMk-t&AOk- 2024"},
    {"日本語", "&ZeVnLIqe-"},
    {"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},  // RFC 3501
    {"&&x&&", "&-&-x&-&-"},
    {"tietä&jä&", "tiet&AOQ-&-j&AOQ-&-"},
    {"", ""},
    {"&", "&-"},
    {"-", "-"},
    {"+", "+"},
    {",", ","},
    {"😀", "&2D3eAA-"},                 // outside the BMP: a surrogate pair
    {"a\tb", "a&AAk-b"},               // control characters are encoded, not kept
    {"\x7f", "&AH8-"},                 // so is DEL
    {"\xc2\x80", "&AIA-"},             // U+0080
    {"\xef\xbf\xbf", "&,,8-"},         // U+FFFF
    {"\xf4\x8f\xbf\xbf", "&2,,f,w-"},  // U+10FFFF
};

TEST(MaildirMutf7Test, Examples) {
  for (const Example& e : kExamples) {
    EXPECT_EQ(MustEncode(e.utf8), e.mutf7) << e.utf8;
    EXPECT_EQ(MustDecode(e.mutf7), e.utf8) << e.mutf7;
  }
}

TEST(MaildirMutf7Test, PrintableAsciiStandsForItself) {
  std::string ascii;
  for (int c = 0x20; c < 0x7f; ++c) {
    if (c != '&') ascii.push_back(static_cast<char>(c));
  }
  EXPECT_EQ(MustEncode(ascii), ascii);
  EXPECT_EQ(MustDecode(ascii), ascii);
}

TEST(MaildirMutf7Test, RoundTripsEveryBmpCharacterAndSomeBeyond) {
  // Each character alone, and mixed with ASCII and '&' as Dovecot's
  // test_imap_utf7_ucs4_cases does.
  for (uint32_t cp = 1; cp < 0x110000; cp += (cp < 0x10100 ? 1 : 997)) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string one = Utf8(cp);
    std::string encoded = MustEncode(one);
    ASSERT_EQ(MustDecode(encoded), one) << cp;
    if (cp % 61 == 0) {
      std::string mixed;
      for (int j = 0; j < 7; ++j) {
        if (j % 3 == 0) mixed += 'x';
        if (j % 5 == 0) mixed += '&';
        mixed += one;
      }
      ASSERT_EQ(MustDecode(MustEncode(mixed)), mixed) << cp;
    }
  }
}

TEST(MaildirMutf7Test, EncodeRefusesWhatIsNotUtf8) {
  for (std::string_view bad :
       {std::string_view("p\xe4\xe4"), std::string_view("\xc3"), std::string_view("\xc0\xaf"),
        std::string_view("\xed\xa0\x80"),      // a surrogate
        std::string_view("\xf4\x90\x80\x80"),  // past U+10FFFF
        std::string_view("\xff"), std::string_view("a\0b", 3), std::string_view("\xe0\x80\x80")}) {
    MAILFS_EXPECT_CODE(mutf7::Encode(bad), kInvalidName) << PrintableForLog(bad);
  }
}

TEST(MaildirMutf7Test, DecodeRefusesNonCanonicalInput) {
  for (std::string_view bad : {
           "&",                   // no '-'
           "&Jjo",                // no '-'
           "&Jjo!",               // '!' is not base64
           "&U,BTFw-&ZeVnLIqe-",  // two runs back to back (Dovecot: unnecessary shift)
           "&AGE-",               // encodes 'a', which must stand for itself
           "&ACY-",               // encodes '&'
           "&AAA-",               // encodes NUL
           "&2D0-",               // high surrogate alone
           "&3gA-",               // low surrogate alone
           "&2D3YPQ-",            // high surrogate + another high one
           "&AOQ",                // no '-'
           "&A-",                 // 6 bits: no byte
           "&AO-",                // 12 bits: one byte, odd
           "&AOQA-",              // 24 bits: three bytes, odd
           "&AOR-",               // non-zero padding bits
           "&AOQ=-",              // '=' padding is not used
           "&AOQ/-",              // '/' is ',' in modified base64
           "Gr\xc3\xbc\xc3\x9f",  // UTF-8 is not mUTF-7
           "a\tb",                // raw control character
           "\x7f",
           "&AOQA5ADkA-",  // one character too many (6 pad bits)
           "&AOQAAA-",     // "ä" + NUL
       }) {
    MAILFS_EXPECT_CODE(mutf7::Decode(bad), kInvalidName) << PrintableForLog(bad);
  }
  MAILFS_EXPECT_CODE(mutf7::Decode(std::string_view("a\0b", 3)), kInvalidName);
  // Every single octet encoded alone is invalid (Dovecot's non-utf16 test),
  // and so is U+00E4 followed by a single octet.
  constexpr std::string_view kB64 =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
  for (int i = 0; i < 256; ++i) {
    std::string one = {'&', kB64[i >> 2], kB64[(i & 3) << 4], '-'};
    MAILFS_EXPECT_CODE(mutf7::Decode(one), kInvalidName) << one;
    std::string two = {
        '&', kB64[0], kB64[(0xe4 >> 4)], kB64[((0xe4 & 0x0f) << 2) | (i >> 6)], kB64[i & 0x3f],
        '-'};
    MAILFS_EXPECT_CODE(mutf7::Decode(two), kInvalidName) << two;
  }
}

TEST(MaildirMutf7Test, RunFollowedByEscapedAmpersandIsFine) {
  // "&-" after a run is not an unnecessary shift (Dovecot agrees).
  EXPECT_EQ(MustDecode("&AOQ-&-"), "ä&");
  EXPECT_EQ(MustDecode("&AOQ-x&AOQ-"), "äxä");
}

TEST(MaildirMutf7Test, DecodeOfEncodeIsIdentityAndEncodeOfDecodeToo) {
  for (const Example& e : kExamples) {
    EXPECT_EQ(MustEncode(MustDecode(e.mutf7)), e.mutf7);
  }
}

// --- DecodeLevel: the rule for names found on disk ------------------------------

TEST(MaildirMutf7Test, DecodeLevelFollowsTheRuleOfMaildirMd) {
  struct Case {
    std::string_view level;
    std::string_view text;
    mutf7::LevelEncoding encoding;
  };
  using enum mutf7::LevelEncoding;
  const Case cases[] = {
      {"Archive", "Archive", kAscii},
      {"My Folder", "My Folder", kAscii},
      {"with~tilde", "with~tilde", kAscii},
      {"Gr&APwA3w-e &- Co", "Grüße & Co", kMutf7},  // Dovecot
      {"amp&-sand", "amp&sand", kMutf7},
      {"T&AOs-st", "Tëst", kMutf7},
      {"Reçus", "Reçus", kUtf8},  // pymap
      {"Été 2024", "Été 2024", kUtf8},
      {"日本語", "日本語", kUtf8},
      // UTF-8 that happens to contain mUTF-7 syntax is still UTF-8.
      {"Grüße &AOQ-", "Grüße &AOQ-", kUtf8},
      // ASCII that is not valid mUTF-7 is literal (pymap writes '&' bare).
      {"Tom & Jerry", "Tom & Jerry", kLiteral},
      {"Q&A", "Q&A", kLiteral},
      {"&AGE-", "&AGE-", kLiteral},
      {"a&", "a&", kLiteral},
      {"", "", kAscii},
  };
  for (const Case& c : cases) {
    Result<mutf7::DecodedLevel> decoded = mutf7::DecodeLevel(c.level);
    MAILFS_ASSERT_OK(decoded);
    EXPECT_EQ(decoded->text, c.text) << c.level;
    EXPECT_EQ(decoded->encoding, c.encoding) << c.level;
  }
}

TEST(MaildirMutf7Test, DecodeLevelRefusesBytesThatAreNotUtf8) {
  // MAILDIR.md: Dovecot renames ".bad\xffname" during LIST; we refuse it.
  for (std::string_view bad : {"bad\xffname", "\xc3",
                               "Gr\xfc\xdf"
                               "e",
                               "\xed\xa0\x80"}) {
    MAILFS_EXPECT_CODE(mutf7::DecodeLevel(bad), kInvalidName) << PrintableForLog(bad);
  }
}

TEST(MaildirMutf7Test, IsValidUtf8) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("Grüße 日本語 😀"));
  EXPECT_TRUE(IsValidUtf8(std::string_view("\0", 1)));
  EXPECT_FALSE(IsValidUtf8("\xc0\x80"));          // overlong NUL
  EXPECT_FALSE(IsValidUtf8("\xed\xbf\xbf"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf8\x88\x80\x80"));  // 5-byte form
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));          // truncated
}

TEST(MaildirMutf7Test, PrintableForLog) {
  EXPECT_EQ(PrintableForLog("Grüße & Co"), "Grüße & Co");
  EXPECT_EQ(PrintableForLog("bad\xffname"), "bad\\xffname");
  EXPECT_EQ(PrintableForLog(std::string_view("a\0\n\\", 4)), "a\\x00\\x0a\\x5c");
}

}  // namespace
}  // namespace mailfs::maildir
