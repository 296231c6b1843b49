// Unit tests for backends/maildir/format/layout: mailbox names <-> folder
// directories in the Maildir++ and fs layouts (MAILDIR.md section 7). The
// real folders come from the fixture stores (tests/data/maildir/<fixture>/
// folders.tsv and root-entries.tsv).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "backends/maildir/format/layout.h"
#include "backends/maildir/format/mutf7.h"
#include "tests/support/test_util.h"

namespace mailfs::maildir {
namespace {

using enum Layout;
using enum NameEncoding;

struct Fixture {
  const char* name;
  Layout layout;
};
constexpr Fixture kFixtures[] = {{"dovecot-maildir-pp", kMaildirPlusPlus},
                                 {"dovecot-maildir-fs", kFs},
                                 {"pymap-maildir", kMaildirPlusPlus}};

std::vector<std::vector<std::string>> ReadTsv(const std::string& fixture, const std::string& file) {
  std::string path = std::string(MAILFS_SOURCE_DIR) + "/tests/data/maildir/" + fixture + "/" + file;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> row;
    std::string cell;
    std::istringstream cells(line);
    while (std::getline(cells, cell, '\t')) row.push_back(cell);
    rows.push_back(row);
  }
  return rows;
}

std::string MustDirectory(std::string_view name, Layout layout, NameEncoding encoding) {
  Result<std::string> dir = MailboxDirectory(name, layout, encoding);
  EXPECT_TRUE(dir.ok()) << name << ": " << dir.status().ToString();
  return dir.ok() ? *dir : std::string("<error>");
}

std::string MustName(std::string_view dir, Layout layout) {
  Result<DecodedMailboxName> name = MailboxNameOfDirectory(dir, layout);
  EXPECT_TRUE(name.ok()) << PrintableForLog(dir) << ": " << name.status().ToString();
  return name.ok() ? name->name : std::string("<error>");
}

// --- the fixtures -------------------------------------------------------------

TEST(MaildirLayoutTest, FixtureFoldersMapBothWays) {
  int checked = 0;
  for (const Fixture& f : kFixtures) {
    std::vector<DecodedMailboxName> found;
    for (const auto& row : ReadTsv(f.name, "folders.tsv")) {
      ASSERT_EQ(row.size(), 2u);
      const std::string& dir = row[0];
      const std::string& name = row[1];
      SCOPED_TRACE(std::string(f.name) + ": " + dir);
      Result<DecodedMailboxName> decoded = MailboxNameOfDirectory(dir, f.layout);
      MAILFS_ASSERT_OK(decoded);
      EXPECT_EQ(decoded->name, name);
      found.push_back(*decoded);
      // The fs directory "INBOX" only holds INBOX's children.
      if (f.layout == kFs && dir == "INBOX") continue;
      EXPECT_EQ(MustDirectory(name, f.layout, kMutf7), dir);
      ++checked;
    }
    // Dovecot's stores hold "Gr&APwA3w-e &- Co"; pymap's are plain ASCII,
    // so they say nothing and the fallback decides.
    bool dovecot = std::string(f.name).starts_with("dovecot");
    EXPECT_EQ(DetectNameEncoding(found, kUtf8), dovecot ? kMutf7 : kUtf8) << f.name;
    EXPECT_EQ(DetectNameEncoding(found), kMutf7) << f.name;
  }
  EXPECT_EQ(checked, 10 + 10 + 10);
}

TEST(MaildirLayoutTest, FixtureRootEntries) {
  for (const Fixture& f : kFixtures) {
    int folders = 0;
    for (const auto& row : ReadTsv(f.name, "root-entries.tsv")) {
      ASSERT_EQ(row.size(), 2u);
      const std::string& entry = row[0];
      bool is_dir = row[1] == "d";
      SCOPED_TRACE(std::string(f.name) + ": " + entry);
      if (f.layout == kMaildirPlusPlus) {
        // Only directories starting with '.' are folders; the rest (cur,
        // dovecot-uidlist, subscriptions, ...) is the INBOX or metadata.
        bool folder = is_dir && IsMaildirPlusPlusFolderEntry(entry);
        EXPECT_EQ(folder, entry[0] == '.');
        if (folder) {
          MAILFS_EXPECT_OK(MailboxNameOfDirectory(entry, f.layout));
          ++folders;
        }
      } else {
        bool child = is_dir && IsFsChildEntry(entry);
        EXPECT_EQ(child, is_dir && entry != "cur" && entry != "new" && entry != "tmp");
        if (child) {
          MAILFS_EXPECT_OK(MailboxNameOfDirectory(entry, f.layout));
          ++folders;
        }
      }
    }
    EXPECT_EQ(folders, 10 - (f.layout == kFs ? 2 : 0)) << f.name;
  }
}

// --- MAILDIR.md section 7 -----------------------------------------------------

TEST(MaildirLayoutTest, TableOfMaildirMd) {
  struct Row {
    std::string_view name;
    std::string_view maildirpp;
    std::string_view fs;
  };
  const Row rows[] = {
      {"INBOX", "", ""},
      {"Archive/2024/Q1", ".Archive.2024.Q1", "Archive/2024/Q1"},
      {"My Folder", ".My Folder", "My Folder"},
      {"Grüße & Co", ".Gr&APwA3w-e &- Co", "Gr&APwA3w-e &- Co"},
      {"Tëst/Ünïcode", ".T&AOs-st.&ANw-n&AO8-code", "T&AOs-st/&ANw-n&AO8-code"},
      {"INBOX/Receipts", ".INBOX.Receipts", "INBOX/Receipts"},
      {"with~tilde", ".with~tilde", "with~tilde"},
      {"amp&sand", ".amp&-sand", "amp&-sand"},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(MustDirectory(row.name, kMaildirPlusPlus, kMutf7), row.maildirpp);
    EXPECT_EQ(MustDirectory(row.name, kFs, kMutf7), row.fs);
    EXPECT_EQ(MustName(row.maildirpp, kMaildirPlusPlus), row.name);
    if (row.name != "INBOX") {
      EXPECT_EQ(MustName(row.fs, kFs), row.name);
    }
  }
  // Any spelling of INBOX is the root.
  EXPECT_EQ(MustDirectory("inbox", kMaildirPlusPlus, kMutf7), "");
  EXPECT_EQ(MustDirectory("Inbox/Receipts", kFs, kMutf7), "INBOX/Receipts");
}

TEST(MaildirLayoutTest, Utf8Dialect) {
  // pymap and Dovecot's :UTF-8 keep the levels as they are.
  EXPECT_EQ(MustDirectory("Entwürfe", kMaildirPlusPlus, kUtf8), ".Entwürfe");
  EXPECT_EQ(MustDirectory("Reçus/Été 2024", kMaildirPlusPlus, kUtf8), ".Reçus.Été 2024");
  EXPECT_EQ(MustDirectory("Reçus/Été 2024", kFs, kUtf8), "Reçus/Été 2024");
  EXPECT_EQ(MustDirectory("日本語", kMaildirPlusPlus, kUtf8), ".日本語");
  EXPECT_EQ(MustDirectory("Tom & Jerry", kMaildirPlusPlus, kUtf8), ".Tom & Jerry");
  EXPECT_EQ(MustName(".Reçus.Été 2024", kMaildirPlusPlus), "Reçus/Été 2024");
  EXPECT_EQ(MustName(".Tom & Jerry", kMaildirPlusPlus), "Tom & Jerry");
  EXPECT_EQ(MustName("Reçus/Été 2024", kFs), "Reçus/Été 2024");
  // Raw ASCII that reads back as mUTF-7 cannot be stored as UTF-8.
  MAILFS_EXPECT_CODE(MailboxDirectory("a&-b", kMaildirPlusPlus, kUtf8), kInvalidName);
  MAILFS_EXPECT_CODE(MailboxDirectory("x&AOQ-", kFs, kUtf8), kInvalidName);
  MAILFS_EXPECT_CODE(EncodeLevel("a&-b", kUtf8), kInvalidName);
  EXPECT_EQ(MustDirectory("a&-b", kMaildirPlusPlus, kMutf7), ".a&--b");
}

TEST(MaildirLayoutTest, Refusals) {
  // Everywhere (Dovecot's mailbox_list_is_valid_fs_name and the core rules).
  for (Layout layout : {kMaildirPlusPlus, kFs}) {
    for (std::string_view bad :
         {"", "/", "a//b", "/a", "a/", ".", "..", "a/../b", "a/./b", "~", "~x", "~x/y", ".hidden",
          "a/.b", "a\tb", "a\nb", "bad\xffname", "x/\x7f"}) {
      MAILFS_EXPECT_CODE(MailboxDirectory(bad, layout, kMutf7), kInvalidName)
          << PrintableForLog(bad);
      MAILFS_EXPECT_CODE(ValidateMailboxName(bad, layout), kInvalidName) << PrintableForLog(bad);
    }
    // A '~' that does not start the name is fine.
    MAILFS_EXPECT_OK(MailboxDirectory("x/~y", layout, kMutf7));
    MAILFS_EXPECT_OK(MailboxDirectory("with~tilde", layout, kMutf7));
  }
  // Maildir++: '.' separates levels.
  for (std::string_view bad : {"a.b", "v1.0/notes", "x/y.", "x/y.z"}) {
    MAILFS_EXPECT_CODE(MailboxDirectory(bad, kMaildirPlusPlus, kMutf7), kInvalidName) << bad;
    MAILFS_EXPECT_OK(MailboxDirectory(bad, kFs, kMutf7)) << bad;
  }
  EXPECT_EQ(MustDirectory("a.b/c", kFs, kMutf7), "a.b/c");
  // fs: cur, new and tmp are a mailbox's own directories.
  for (std::string_view bad : {"cur", "new", "tmp", "a/cur", "tmp/x", "a/new/b"}) {
    MAILFS_EXPECT_CODE(MailboxDirectory(bad, kFs, kMutf7), kInvalidName) << bad;
    MAILFS_EXPECT_OK(MailboxDirectory(bad, kMaildirPlusPlus, kMutf7)) << bad;
  }
  EXPECT_EQ(MustDirectory("cur", kMaildirPlusPlus, kMutf7), ".cur");
  EXPECT_EQ(MustDirectory("Cur", kFs, kMutf7), "Cur");
}

TEST(MaildirLayoutTest, LengthLimits) {
  // A Maildir++ folder is one directory entry: at most 255 bytes with the dot.
  std::string level(254, 'x');
  EXPECT_EQ(MustDirectory(level, kMaildirPlusPlus, kMutf7), "." + level);
  MAILFS_EXPECT_CODE(MailboxDirectory(level + "x", kMaildirPlusPlus, kMutf7), kInvalidName);
  MAILFS_EXPECT_CODE(MailboxDirectory("a/" + level, kMaildirPlusPlus, kMutf7), kInvalidName);
  // fs: each level is one entry.
  std::string fs_level(255, 'x');
  EXPECT_EQ(MustDirectory(fs_level + "/" + fs_level, kFs, kMutf7), fs_level + "/" + fs_level);
  MAILFS_EXPECT_CODE(MailboxDirectory(fs_level + "x", kFs, kMutf7), kInvalidName);
  // The limit is on the encoded bytes: 100 x "ä" is 200 bytes of UTF-8 but
  // "&" + 267 base64 characters + "-" in mUTF-7.
  std::string umlauts;
  for (int i = 0; i < 100; ++i) umlauts += "ä";
  MAILFS_EXPECT_OK(MailboxDirectory(umlauts, kFs, kUtf8));
  MAILFS_EXPECT_CODE(MailboxDirectory(umlauts, kFs, kMutf7), kInvalidName);
}

// --- reading directories ------------------------------------------------------

TEST(MaildirLayoutTest, MaildirPlusPlusFolderEntries) {
  for (std::string_view entry : {".Archive", ".a", ".Gr&APwA3w-e &- Co", "..x", ".a..b"}) {
    EXPECT_TRUE(IsMaildirPlusPlusFolderEntry(entry)) << entry;
  }
  for (std::string_view entry : {"", ".", "..", "..DOVECOT-TRASHED", "cur", "new", "tmp",
                                 "dovecot-uidlist", "subscriptions", "maildirfolder", "Archive"}) {
    EXPECT_FALSE(IsMaildirPlusPlusFolderEntry(entry)) << entry;
  }
}

TEST(MaildirLayoutTest, FsChildEntries) {
  for (std::string_view entry : {"Archive", "INBOX", "a.b", "Gr&APwA3w-e &- Co", "Cur"}) {
    EXPECT_TRUE(IsFsChildEntry(entry)) << entry;
  }
  for (std::string_view entry : {"", ".", "..", "cur", "new", "tmp", "..DOVECOT-TrasH"}) {
    EXPECT_FALSE(IsFsChildEntry(entry)) << entry;
  }
}

TEST(MaildirLayoutTest, HostileDirectories) {
  for (std::string_view dir : {"Archive",  // no leading dot
                               ".", "..", "..DOVECOT-TRASHED",
                               "..hidden",  // empty first level
                               ".a..b", ".a.", ".a/b", ".INBOX", ".inbox", ".Inbox.Sub", ".~x",
                               ".bad\xffname", ".a\tb", ".T&AOs-st.", ".x.cur.y/../z"}) {
    MAILFS_EXPECT_CODE(MailboxNameOfDirectory(dir, kMaildirPlusPlus), kInvalidName)
        << PrintableForLog(dir);
  }
  for (std::string_view dir :
       {"/a", "a/", "a//b", "..", ".", "a/cur", "cur", "new/x", "../x", "a/..DOVECOT-TrasH",
        "..DOVECOT-TrasH", ".hidden", "a/.b", "inbox/x", "~x", "bad\xffname"}) {
    MAILFS_EXPECT_CODE(MailboxNameOfDirectory(dir, kFs), kInvalidName) << PrintableForLog(dir);
  }
  // A '.' inside a level is fine in fs.
  EXPECT_EQ(MustName("a.b/c", kFs), "a.b/c");
}

TEST(MaildirLayoutTest, MixedStoreDecodesEveryLevelByItself) {
  // A store Dovecot and pymap both wrote.
  Result<DecodedMailboxName> name =
      MailboxNameOfDirectory(".Gr&APwA3w-e &- Co.Reçus.Plain.Tom & Jerry", kMaildirPlusPlus);
  MAILFS_ASSERT_OK(name);
  EXPECT_EQ(name->name, "Grüße & Co/Reçus/Plain/Tom & Jerry");
  EXPECT_EQ(name->mutf7_levels, 1);
  EXPECT_EQ(name->utf8_levels, 2);
}

TEST(MaildirLayoutTest, DetectNameEncoding) {
  auto decode = [](std::vector<std::string_view> dirs) {
    std::vector<DecodedMailboxName> out;
    for (std::string_view dir : dirs) {
      Result<DecodedMailboxName> name = MailboxNameOfDirectory(dir, kMaildirPlusPlus);
      EXPECT_TRUE(name.ok()) << dir;
      if (name.ok()) out.push_back(*name);
    }
    return out;
  };
  // An empty store gets mUTF-7 (or what the option says).
  EXPECT_EQ(DetectNameEncoding({}), kMutf7);
  EXPECT_EQ(DetectNameEncoding({}, kUtf8), kUtf8);
  // pymap's corpus in MAILDIR.md.
  EXPECT_EQ(DetectNameEncoding(decode({".Reçus", ".Reçus.Été 2024", ".日本語", ".Sent"})), kUtf8);
  EXPECT_EQ(DetectNameEncoding(decode({".Q&A", ".Sent"})), kUtf8);
  EXPECT_EQ(DetectNameEncoding(decode({".Gr&APwA3w-e &- Co", ".amp&-sand"}), kUtf8), kMutf7);
  // Majority of levels; a tie is the fallback.
  EXPECT_EQ(DetectNameEncoding(decode({".Gr&APwA3w-e", ".Reçus", ".Été"})), kUtf8);
  EXPECT_EQ(DetectNameEncoding(decode({".Gr&APwA3w-e", ".Reçus"}), kUtf8), kUtf8);
  EXPECT_EQ(DetectNameEncoding(decode({".Gr&APwA3w-e", ".Reçus"}), kMutf7), kMutf7);
}

TEST(MaildirLayoutTest, RoundTrips) {
  const std::string_view names[] = {"INBOX/Receipts",
                                    "Archive/2024/Q1",
                                    "Grüße & Co",
                                    "Tëst/Ünïcode",
                                    "amp&sand",
                                    "a&b/c&-d",
                                    "😀/日本語",
                                    "x/~y",
                                    "Tom & Jerry",
                                    "sp ace/ x ",
                                    "&",
                                    "&-",
                                    "-&",
                                    "Q&A",
                                    "$Junk,+,"};
  for (std::string_view name : names) {
    for (Layout layout : {kMaildirPlusPlus, kFs}) {
      for (NameEncoding encoding : {kMutf7, kUtf8}) {
        Result<std::string> dir = MailboxDirectory(name, layout, encoding);
        if (!dir.ok()) {
          // Only ambiguous raw ASCII may be refused, and only as UTF-8.
          EXPECT_EQ(encoding, kUtf8) << name;
          continue;
        }
        EXPECT_EQ(MustName(*dir, layout), name) << *dir;
      }
    }
  }
}

}  // namespace
}  // namespace mailfs::maildir
