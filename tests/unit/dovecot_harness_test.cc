// The private Dovecot of tests/support/dovecot.h, checked against what an
// IMAP client saw of the Dovecot fixtures (their expected.json) and against
// its own writes: if these pass, a mismatch in the Dovecot interop mount
// tests is mailfs's, not the harness's.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "tests/support/dovecot.h"
#include "tests/support/fixture_expectations.h"
#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

struct FixtureCase {
  std::string fixture;   // a directory of tests/data/fixtures/
  bool index_in_memory;  // both of Dovecot's index modes get a run
};

void PrintTo(const FixtureCase& c, std::ostream* os) {
  *os << c.fixture << (c.index_in_memory ? " INDEX=MEMORY" : " index in the store");
}

// A fixture extracted into a temporary directory, owned by the mail uid,
// with a Dovecot configured for its layout.
class DovecotHarnessTest : public ::testing::TestWithParam<FixtureCase> {
 protected:
  void SetUp() override {
    auto fx = ExtractStoreFixture(GetParam().fixture, tmp_.path());
    ASSERT_TRUE(fx.has_value());
    fixture_ = std::move(*fx);
    ASSERT_TRUE(PrepareStoreForDovecot(fixture_.root));
    dovecot_ = Dovecot::Create({.maildir = fixture_.root,
                                .layout_fs = fixture_.layout == maildir::Layout::kFs,
                                .index_in_memory = GetParam().index_in_memory});
    ASSERT_NE(dovecot_, nullptr);
  }

  const FixtureMailbox* Expected(std::string_view name) const {
    for (const auto& m : fixture_.mailboxes) {
      if (m.name == name) return &m;
    }
    return nullptr;
  }

  TempDir tmp_;
  StoreFixture fixture_;
  std::unique_ptr<Dovecot> dovecot_;
};

TEST_P(DovecotHarnessTest, MailboxListMatchesExpected) {
  auto names = dovecot_->MailboxList();
  ASSERT_TRUE(names.has_value());
  std::vector<std::string> expected;
  for (const auto& m : fixture_.mailboxes) expected.push_back(m.name);
  EXPECT_EQ(*names, Sorted(expected));

  auto subscriptions = dovecot_->SubscriptionList();
  ASSERT_TRUE(subscriptions.has_value());
  EXPECT_EQ(Sorted(*subscriptions), fixture_.subscriptions);
}

TEST_P(DovecotHarnessTest, MailboxStatusMatchesExpected) {
  auto all = dovecot_->AllMailboxStatus();
  ASSERT_TRUE(all.has_value());
  std::vector<std::string> selectable;
  for (const auto& m : fixture_.mailboxes) {
    if (m.selectable) selectable.push_back(m.name);
  }
  std::vector<std::string> got;
  for (const auto& s : *all) got.push_back(s.name);
  EXPECT_EQ(got, Sorted(selectable));

  for (const auto& s : *all) {
    const FixtureMailbox* want = Expected(s.name);
    ASSERT_NE(want, nullptr) << s.name;
    EXPECT_EQ(s.uidvalidity, want->uid_validity) << s.name;
    EXPECT_EQ(s.uidnext, want->uid_next) << s.name;
    EXPECT_EQ(s.messages, want->messages.size()) << s.name;
    EXPECT_EQ(s.guid.size(), 32u) << s.name;
  }
  // The single-mailbox form picks the exact name, also one with spaces,
  // '&' and non-ASCII letters.
  auto one = dovecot_->MailboxStatus("Grüße & Co");
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->uidvalidity, Expected("Grüße & Co")->uid_validity);
}

// Every message of every mailbox: UID, flags, received date, size and the
// sha256 of the bytes `doveadm fetch text` gives.
TEST_P(DovecotHarnessTest, FetchMatchesExpected) {
  for (const auto& want : fixture_.mailboxes) {
    if (!want.selectable) continue;
    SCOPED_TRACE(want.name);
    auto got = dovecot_->Fetch(want.name);
    ASSERT_TRUE(got.has_value());
    ASSERT_EQ(got->size(), want.messages.size());
    for (size_t i = 0; i < got->size(); ++i) {
      const DovecotMessage& g = (*got)[i];
      const FixtureMessage& w = want.messages[i];
      SCOPED_TRACE("UID " + std::to_string(w.uid));
      EXPECT_EQ(g.uid, w.uid);
      EXPECT_EQ(g.flags, Sorted(w.flags));
      EXPECT_EQ(g.received, w.internal_date);
      EXPECT_EQ(g.size, w.size);
      EXPECT_EQ(g.bytes.size(), w.size);
      EXPECT_EQ(g.sha256, w.sha256);
      EXPECT_EQ(g.vsize, maildir::VirtualSize(g.bytes));
      // guid and storageid are the base file name in these stores.
      EXPECT_EQ(g.storage_id, g.guid);
      EXPECT_NE(g.storage_id.find(",S=" + std::to_string(w.size)), std::string::npos)
          << g.storage_id;
    }
    // The metadata-only fetch agrees.
    auto meta = dovecot_->FetchMetadata(want.name);
    ASSERT_TRUE(meta.has_value());
    ASSERT_EQ(meta->size(), got->size());
    for (size_t i = 0; i < meta->size(); ++i) {
      EXPECT_EQ((*meta)[i].uid, (*got)[i].uid);
      EXPECT_EQ((*meta)[i].flags, (*got)[i].flags);
      EXPECT_TRUE((*meta)[i].bytes.empty());
    }
  }
}

// Save, then fetch: bytes that would break a separator-based parser come
// back exactly, with the UID Dovecot reported as UIDNEXT before.
TEST_P(DovecotHarnessTest, SaveThenFetchIsExact) {
  const std::vector<std::string> bodies = {
      "Subject: no final newline\n\nlast line",
      "Subject: looks like a record\n\nx\n\f\nuid: 99\nflags: \\Seen\ntext:\n",
      std::string("Subject: binary\n\n\xff\xfe\x01 bytes\n"),
  };
  for (const auto& body : bodies) {
    auto before = dovecot_->MailboxStatus("Junk");
    ASSERT_TRUE(before.has_value());
    ASSERT_TRUE(dovecot_->Save("Junk", body));
    auto messages = dovecot_->Fetch("Junk");
    ASSERT_TRUE(messages.has_value());
    ASSERT_FALSE(messages->empty());
    EXPECT_EQ(messages->back().uid, before->uidnext);
    EXPECT_EQ(messages->back().bytes, body);
    EXPECT_EQ(messages->back().size, body.size());
    EXPECT_TRUE(messages->back().flags.empty()) << messages->back().FlagString();
  }
}

TEST_P(DovecotHarnessTest, FlagsMoveExpungeCreate) {
  const uint32_t uid = Expected("Junk")->messages.front().uid;
  ASSERT_TRUE(dovecot_->FlagsAdd("Junk", uid, "\\Flagged $Todo"));
  ASSERT_TRUE(dovecot_->FlagsRemove("Junk", uid, "$Junk"));
  auto junk = dovecot_->Fetch("Junk");
  ASSERT_TRUE(junk.has_value());
  ASSERT_EQ(junk->size(), 1u);
  EXPECT_EQ(junk->front().FlagString(), "$Todo \\Flagged");
  ASSERT_TRUE(dovecot_->FlagsReplace("Junk", uid, "\\Seen"));
  junk = dovecot_->Fetch("Junk");
  ASSERT_TRUE(junk.has_value());
  EXPECT_EQ(junk->front().FlagString(), "\\Seen");
  const std::string bytes = junk->front().bytes;

  ASSERT_TRUE(dovecot_->MailboxCreate("New/Child"));
  auto names = dovecot_->MailboxList();
  ASSERT_TRUE(names.has_value());
  EXPECT_TRUE(std::count(names->begin(), names->end(), "New/Child"));
  auto child = dovecot_->MailboxStatus("New/Child");
  ASSERT_TRUE(child.has_value());
  EXPECT_EQ(child->messages, 0u);
  EXPECT_EQ(child->uidnext, 1u);

  ASSERT_TRUE(dovecot_->Move("Junk", uid, "New/Child"));
  auto moved = dovecot_->Fetch("New/Child");
  ASSERT_TRUE(moved.has_value());
  ASSERT_EQ(moved->size(), 1u);
  EXPECT_EQ(moved->front().uid, 1u);
  EXPECT_EQ(moved->front().bytes, bytes);
  EXPECT_EQ(moved->front().FlagString(), "\\Seen");
  junk = dovecot_->Fetch("Junk");
  ASSERT_TRUE(junk.has_value());
  EXPECT_TRUE(junk->empty());

  ASSERT_TRUE(dovecot_->Expunge("New/Child", 1));
  moved = dovecot_->Fetch("New/Child");
  ASSERT_TRUE(moved.has_value());
  EXPECT_TRUE(moved->empty());
  EXPECT_TRUE(dovecot_->ForceResync("*"));
}

// doveadm exits 0 after logging an error; the harness still calls it a
// failure.
TEST_P(DovecotHarnessTest, ErrorsOnStderrAreFailures) {
  auto junk = dovecot_->MailboxStatus("Junk");
  ASSERT_TRUE(junk.has_value());
  const std::string uidlist = fixture_.root +
                              (fixture_.layout == maildir::Layout::kFs ? "/Junk" : "/.Junk") +
                              "/dovecot-uidlist";
  {
    std::ofstream out(uidlist, std::ios::app);
    out << "0 :not-ordered\n";
  }
  DoveadmResult r = dovecot_->Run({"-f", "tab", "fetch", "uid", "mailbox-guid", junk->guid});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("Error:"), std::string::npos) << r.Describe();
  EXPECT_FALSE(r.ok());

  EXPECT_NONFATAL_FAILURE(dovecot_->MailboxStatus("No Such Mailbox"), "no selectable mailbox");
}

TEST(DovecotHarness, ShellCommandRunsDoveadm) {
  TempDir tmp;
  const std::string store = tmp.Path("store");
  ASSERT_EQ(::mkdir(store.c_str(), 0755), 0);
  ASSERT_TRUE(PrepareStoreForDovecot(store));
  auto dovecot = Dovecot::Create({.maildir = store});
  ASSERT_NE(dovecot, nullptr);
  CommandResult r = RunShell(
      "printf 'Subject: piped\\n\\nhello\\n' | " + dovecot->ShellCommand({"save", "-m", "INBOX"}),
      tmp.path());
  ASSERT_TRUE(r.ok()) << r.Describe();
  auto inbox = dovecot->Fetch("INBOX");
  ASSERT_TRUE(inbox.has_value());
  ASSERT_EQ(inbox->size(), 1u);
  EXPECT_EQ(inbox->front().bytes, "Subject: piped\n\nhello\n");
  // Dovecot made its files as the mail uid.
  struct stat st;
  ASSERT_EQ(::stat((store + "/dovecot-uidlist").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kDovecotMailUid);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DovecotHarnessTest,
                         ::testing::Values(FixtureCase{"dovecot-maildir-pp", true},
                                           FixtureCase{"dovecot-maildir-fs", false}),
                         [](const ::testing::TestParamInfo<FixtureCase>& info) {
                           std::string name = info.param.fixture.substr(16);  // "pp", "fs"
                           return name + (info.param.index_in_memory ? "_memory_index" : "_index");
                         });

}  // namespace
}  // namespace mailfs::test
