// The backend conformance suite: every MailboxSet and MailboxData operation
// and every error src/mailbox.h documents, run unchanged on every backend
// in AllBackendFactories(). Each test starts from a fresh store holding
// only an empty INBOX.
//
// Tests only use the public interfaces, and expectations are derived from
// what the test itself did (UIDs returned by Append, bytes it wrote), never
// from knowledge of one backend's internals.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "src/mailbox.h"
#include "src/mailbox_name.h"
#include "tests/support/backend_factories.h"
#include "tests/support/test_util.h"

namespace mailfs {
namespace {

using namespace std::chrono_literals;
using test::BackendFactory;
using test::MakeAppendMessage;
using test::SampleMessage;

constexpr uint32_t kMaxUid = std::numeric_limits<uint32_t>::max();

FlagSet Flags(std::string_view text) {
  auto flags = FlagSet::Parse(text);
  EXPECT_TRUE(flags.ok()) << text;
  return flags.ok() ? *flags : FlagSet();
}

std::vector<uint32_t> UidsOf(const std::vector<MessageInfo>& infos) {
  std::vector<uint32_t> uids;
  for (const MessageInfo& info : infos) uids.push_back(info.uid);
  return uids;
}

std::string Describe(const Change& change) {
  std::ostringstream out;
  PrintTo(change, &out);
  return out.str();
}

class ConformanceTest : public ::testing::TestWithParam<BackendFactory> {
 protected:
  void SetUp() override {
    set_ = GetParam().make();
    ASSERT_NE(set_, nullptr) << "cannot make a " << GetParam().name << " store";
  }

  // The mailbox `name`, or nullptr with a test failure.
  std::shared_ptr<MailboxData> Box(std::string_view name) {
    auto box = set_->GetMailbox(name);
    EXPECT_TRUE(test::IsOk(box.status())) << "GetMailbox(" << name << ")";
    return box.ok() ? *box : nullptr;
  }

  // Creates `name` and returns it, or nullptr with a test failure.
  std::shared_ptr<MailboxData> NewBox(std::string_view name) {
    auto id = set_->AddMailbox(name);
    EXPECT_TRUE(test::IsOk(id.status())) << "AddMailbox(" << name << ")";
    return id.ok() ? Box(name) : nullptr;
  }

  // Appends SampleMessage(tag) and returns its UID, or 0 with a failure.
  static uint32_t Append(MailboxData& box, std::string_view tag, FlagSet flags = {},
                         bool recent = false, UnixSeconds date = 1767225600) {
    auto uid = box.Append(MakeAppendMessage(SampleMessage(tag), std::move(flags), date), recent);
    EXPECT_TRUE(test::IsOk(uid.status())) << "Append(" << tag << ")";
    return uid.ok() ? *uid : 0;
  }

  static std::vector<uint32_t> Uids(MailboxData& box) {
    auto found = box.Find(1, kMaxUid);
    EXPECT_TRUE(test::IsOk(found.status()));
    return found.ok() ? UidsOf(*found) : std::vector<uint32_t>{};
  }

  static std::string Content(MailboxData& box, uint32_t uid) {
    auto reader = box.Open(uid);
    EXPECT_TRUE(test::IsOk(reader.status())) << "Open(" << uid << ")";
    if (!reader.ok()) return "<unreadable>";
    auto bytes = ReadAll(**reader);
    EXPECT_TRUE(test::IsOk(bytes.status()));
    return bytes.ok() ? *bytes : "<unreadable>";
  }

  std::vector<std::string> Mailboxes() {
    auto names = set_->ListMailboxes();
    EXPECT_TRUE(test::IsOk(names.status()));
    return names.ok() ? *names : std::vector<std::string>{};
  }

  std::vector<std::string> Subscribed() {
    auto names = set_->ListSubscribed();
    EXPECT_TRUE(test::IsOk(names.status()));
    return names.ok() ? *names : std::vector<std::string>{};
  }

  // Collects changes until one satisfies `match` or `within` passes.
  ::testing::AssertionResult AwaitChange(uint64_t* cursor,
                                         const std::function<bool(const Change&)>& match,
                                         std::chrono::milliseconds within = 5s) {
    std::vector<std::string> seen;
    auto deadline = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      ChangeBatch batch = set_->WaitForChanges(cursor, std::max(left, 1ms));
      for (const Change& change : batch.changes) {
        if (match(change)) return ::testing::AssertionSuccess();
        seen.push_back(Describe(change));
      }
      if (batch.stopped) break;
    }
    auto failure = ::testing::AssertionFailure() << "no matching change; saw:";
    for (const std::string& s : seen) failure << " " << s;
    return failure;
  }

  static std::function<bool(const Change&)> Is(Change::Kind kind, std::string mailbox,
                                               std::vector<uint32_t> uids = {}) {
    return [=](const Change& change) {
      if (change.kind != kind || change.mailbox != mailbox) return false;
      for (uint32_t uid : uids) {
        if (std::find(change.uids.begin(), change.uids.end(), uid) == change.uids.end()) {
          return false;
        }
      }
      return true;
    };
  }

  std::shared_ptr<MailboxSet> set_;
};

// --- MailboxSet: listing and subscriptions --------------------------------

TEST_P(ConformanceTest, FreshStoreHoldsOnlyAnEmptyInbox) {
  EXPECT_EQ(Mailboxes(), std::vector<std::string>{"INBOX"});
  EXPECT_TRUE(Subscribed().empty());
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  EXPECT_TRUE(Uids(*inbox).empty());
}

TEST_P(ConformanceTest, ListMailboxesIsSortedBytewiseAndSkipsNoselectParents) {
  for (std::string_view name : {"b", "a/c", "Zeta", "a-x", "Grüße"}) {
    MAILFS_ASSERT_OK(set_->AddMailbox(name));
  }
  // "a" exists only as the parent of "a/c" (\Noselect): not listed.
  // Bytewise: 'G' < 'I' < 'Z' < 'a'; '-' < '/'.
  std::vector<std::string> expected = {"Grüße", "INBOX", "Zeta", "a-x", "a/c", "b"};
  EXPECT_EQ(Mailboxes(), expected);
}

TEST_P(ConformanceTest, InboxIsSpelledInboxWhateverTheCase) {
  auto upper = Box("INBOX");
  auto lower = Box("inbox");
  ASSERT_NE(upper, nullptr);
  ASSERT_NE(lower, nullptr);
  EXPECT_EQ(lower->mailbox_id(), upper->mailbox_id());
  MAILFS_EXPECT_CODE(set_->AddMailbox("InBoX"), kExists);
  MAILFS_ASSERT_OK(set_->AddMailbox("inbox/sub"));
  EXPECT_EQ(Mailboxes(), (std::vector<std::string>{"INBOX", "INBOX/sub"}));
}

TEST_P(ConformanceTest, SubscriptionsAreSortedNamesThatNeedNotExist) {
  MAILFS_ASSERT_OK(set_->AddMailbox("b"));
  MAILFS_ASSERT_OK(set_->SetSubscribed("b", true));
  MAILFS_ASSERT_OK(set_->SetSubscribed("inbox", true));
  MAILFS_ASSERT_OK(set_->SetSubscribed("Nowhere/else", true));
  MAILFS_ASSERT_OK(set_->SetSubscribed("b", true));  // twice is once
  EXPECT_EQ(Subscribed(), (std::vector<std::string>{"INBOX", "Nowhere/else", "b"}));
  // Subscribing creates nothing.
  EXPECT_EQ(Mailboxes(), (std::vector<std::string>{"INBOX", "b"}));

  MAILFS_ASSERT_OK(set_->SetSubscribed("b", false));
  MAILFS_ASSERT_OK(set_->SetSubscribed("never-subscribed", false));
  EXPECT_EQ(Subscribed(), (std::vector<std::string>{"INBOX", "Nowhere/else"}));
}

TEST_P(ConformanceTest, DeletingAMailboxKeepsItsSubscription) {
  // RFC 3501 6.3.4: the server must not remove a name from the
  // subscriptions because the mailbox went away.
  MAILFS_ASSERT_OK(set_->AddMailbox("Old"));
  MAILFS_ASSERT_OK(set_->SetSubscribed("Old", true));
  MAILFS_ASSERT_OK(set_->DeleteMailbox("Old"));
  EXPECT_EQ(Subscribed(), std::vector<std::string>{"Old"});
}

TEST_P(ConformanceTest, InvalidNamesAreRefusedByEveryMethod) {
  MAILFS_ASSERT_OK(set_->AddMailbox("ok"));
  const std::string bad_names[] = {"",     "/a",   "a/",      "a//b",   ".hidden",
                                   "a/.b", "\xff", "a\xc3(b", "a\x01z", "ok/\x7f"};
  for (const std::string& bad : bad_names) {
    SCOPED_TRACE("name: '" + bad + "'");
    MAILFS_EXPECT_CODE(set_->AddMailbox(bad), kInvalidName);
    MAILFS_EXPECT_CODE(set_->GetMailbox(bad), kInvalidName);
    MAILFS_EXPECT_CODE(set_->DeleteMailbox(bad), kInvalidName);
    MAILFS_EXPECT_CODE(set_->RenameMailbox(bad, "x"), kInvalidName);
    MAILFS_EXPECT_CODE(set_->RenameMailbox("ok", bad), kInvalidName);
    MAILFS_EXPECT_CODE(set_->SetSubscribed(bad, true), kInvalidName);
    MAILFS_EXPECT_CODE(set_->SetSubscribed(bad, false), kInvalidName);
  }
  EXPECT_EQ(Mailboxes(), (std::vector<std::string>{"INBOX", "ok"}));
  EXPECT_TRUE(Subscribed().empty());
}

// --- MailboxSet: get, add, delete -------------------------------------------

TEST_P(ConformanceTest, GetMailboxOfMissingOrNoselectNameIsNotFound) {
  MAILFS_EXPECT_CODE(set_->GetMailbox("Missing"), kNotFound);
  MAILFS_ASSERT_OK(set_->AddMailbox("parent/child"));
  MAILFS_EXPECT_CODE(set_->GetMailbox("parent"), kNotFound);
  EXPECT_NE(Box("parent/child"), nullptr);
}

TEST_P(ConformanceTest, AddMailboxCreatesAnEmptyMailboxWithItsOwnId) {
  auto id = set_->AddMailbox("Archive");
  MAILFS_ASSERT_OK(id);
  EXPECT_FALSE(id->empty());
  auto archive = Box("Archive");
  ASSERT_NE(archive, nullptr);
  EXPECT_EQ(archive->mailbox_id(), *id);
  EXPECT_NE(archive->mailbox_id(), Box("INBOX")->mailbox_id());
  EXPECT_TRUE(Uids(*archive).empty());
  MAILFS_EXPECT_CODE(set_->AddMailbox("Archive"), kExists);
}

TEST_P(ConformanceTest, AddMailboxDoesNotCreateMissingParents) {
  MAILFS_ASSERT_OK(set_->AddMailbox("x/y/z"));
  EXPECT_EQ(Mailboxes(), (std::vector<std::string>{"INBOX", "x/y/z"}));
  // A \Noselect parent can be created later.
  MAILFS_ASSERT_OK(set_->AddMailbox("x"));
  EXPECT_EQ(Mailboxes(), (std::vector<std::string>{"INBOX", "x", "x/y/z"}));
}

TEST_P(ConformanceTest, DeleteMailboxRefusals) {
  MAILFS_EXPECT_CODE(set_->DeleteMailbox("Missing"), kNotFound);
  MAILFS_EXPECT_CODE(set_->DeleteMailbox("INBOX"), kNotPermitted);
  MAILFS_EXPECT_CODE(set_->DeleteMailbox("inbox"), kNotPermitted);

  auto full = NewBox("Full");
  ASSERT_NE(full, nullptr);
  uint32_t uid = Append(*full, "kept");
  MAILFS_EXPECT_CODE(set_->DeleteMailbox("Full"), kNotEmpty);
  EXPECT_EQ(Uids(*full), std::vector<uint32_t>{uid});

  MAILFS_ASSERT_OK(set_->AddMailbox("Parent"));
  MAILFS_ASSERT_OK(set_->AddMailbox("Parent/Child"));
  MAILFS_EXPECT_CODE(set_->DeleteMailbox("Parent"), kNotEmpty);
  // A \Noselect parent has children too: not empty rather than missing.
  MAILFS_ASSERT_OK(set_->AddMailbox("Ghost/Child"));
  MAILFS_EXPECT_CODE(set_->DeleteMailbox("Ghost"), kNotEmpty);

  EXPECT_EQ(Mailboxes(),
            (std::vector<std::string>{"Full", "Ghost/Child", "INBOX", "Parent", "Parent/Child"}));
}

TEST_P(ConformanceTest, DeleteMailboxRemovesAnEmptyMailbox) {
  MAILFS_ASSERT_OK(set_->AddMailbox("Parent"));
  MAILFS_ASSERT_OK(set_->AddMailbox("Parent/Child"));
  auto full = NewBox("Full");
  ASSERT_NE(full, nullptr);
  uint32_t uid = Append(*full, "gone");
  MAILFS_ASSERT_OK(full->Delete(std::vector<uint32_t>{uid}));

  MAILFS_ASSERT_OK(set_->DeleteMailbox("Parent/Child"));
  MAILFS_ASSERT_OK(set_->DeleteMailbox("Parent"));
  MAILFS_ASSERT_OK(set_->DeleteMailbox("Full"));
  EXPECT_EQ(Mailboxes(), std::vector<std::string>{"INBOX"});
  MAILFS_EXPECT_CODE(set_->GetMailbox("Full"), kNotFound);
  MAILFS_EXPECT_CODE(set_->DeleteMailbox("Full"), kNotFound);
}

TEST_P(ConformanceTest, AMailboxCreatedAgainIsANewMailbox) {
  auto first = NewBox("Again");
  ASSERT_NE(first, nullptr);
  std::string old_id = first->mailbox_id();
  uint32_t old_validity = first->uid_validity();
  Append(*first, "first life");
  MAILFS_ASSERT_OK(first->Delete(Uids(*first)));
  MAILFS_ASSERT_OK(set_->DeleteMailbox("Again"));

  auto second = NewBox("Again");
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second->mailbox_id(), old_id);
  // UIDs may start over, so they must not keep their meaning.
  EXPECT_NE(second->uid_validity(), old_validity);
  EXPECT_TRUE(Uids(*second).empty());
}

// --- MailboxSet: rename -----------------------------------------------------

TEST_P(ConformanceTest, RenameTakesChildrenAlong) {
  for (std::string_view name : {"A", "A/B", "A/B/C", "A-sibling", "AB"}) {
    MAILFS_ASSERT_OK(set_->AddMailbox(name));
  }
  auto b = Box("A/B");
  ASSERT_NE(b, nullptr);
  std::string b_id = b->mailbox_id();
  uint32_t b_validity = b->uid_validity();
  uint32_t uid = Append(*b, "travels");

  MAILFS_ASSERT_OK(set_->RenameMailbox("A", "X"));
  EXPECT_EQ(Mailboxes(),
            (std::vector<std::string>{"A-sibling", "AB", "INBOX", "X", "X/B", "X/B/C"}));
  auto moved = Box("X/B");
  ASSERT_NE(moved, nullptr);
  EXPECT_EQ(moved->mailbox_id(), b_id);
  EXPECT_EQ(moved->uid_validity(), b_validity);
  EXPECT_EQ(Uids(*moved), std::vector<uint32_t>{uid});
  EXPECT_EQ(Content(*moved, uid), SampleMessage("travels"));
  MAILFS_EXPECT_CODE(set_->GetMailbox("A/B"), kNotFound);
}

TEST_P(ConformanceTest, RenameANoselectParentMovesItsChildren) {
  MAILFS_ASSERT_OK(set_->AddMailbox("P/Q"));
  std::string id = Box("P/Q")->mailbox_id();
  MAILFS_ASSERT_OK(set_->RenameMailbox("P", "R"));
  EXPECT_EQ(Mailboxes(), (std::vector<std::string>{"INBOX", "R/Q"}));
  EXPECT_EQ(Box("R/Q")->mailbox_id(), id);
}

TEST_P(ConformanceTest, RenameToAnAncestorThatIsOnlyItsParent) {
  // "A" is \Noselect and would be vacant once "A/B" moves up.
  MAILFS_ASSERT_OK(set_->AddMailbox("A/B"));
  MAILFS_ASSERT_OK(set_->AddMailbox("A/B/B"));
  std::string outer = Box("A/B")->mailbox_id();
  std::string inner = Box("A/B/B")->mailbox_id();
  MAILFS_ASSERT_OK(set_->RenameMailbox("A/B", "A"));
  EXPECT_EQ(Mailboxes(), (std::vector<std::string>{"A", "A/B", "INBOX"}));
  EXPECT_EQ(Box("A")->mailbox_id(), outer);
  EXPECT_EQ(Box("A/B")->mailbox_id(), inner);
}

TEST_P(ConformanceTest, RenameRefusals) {
  for (std::string_view name : {"A", "A/C", "B", "D/C", "E/F"}) {
    MAILFS_ASSERT_OK(set_->AddMailbox(name));
  }
  const std::vector<std::string> before = Mailboxes();

  MAILFS_EXPECT_CODE(set_->RenameMailbox("Missing", "Z"), kNotFound);
  MAILFS_EXPECT_CODE(set_->RenameMailbox("A", "B"), kExists);
  // The child A/C would become D/C, which exists.
  MAILFS_EXPECT_CODE(set_->RenameMailbox("A", "D"), kExists);
  // E exists as a directory (the parent of E/F): not a vacant target.
  MAILFS_EXPECT_CODE(set_->RenameMailbox("B", "E"), kExists);
  MAILFS_EXPECT_CODE(set_->RenameMailbox("A", "INBOX"), kExists);
  MAILFS_EXPECT_CODE(set_->RenameMailbox("A", "A"), kInvalidName);
  MAILFS_EXPECT_CODE(set_->RenameMailbox("A", "A/Sub"), kInvalidName);
  MAILFS_EXPECT_CODE(set_->RenameMailbox("INBOX", "inbox"), kInvalidName);

  EXPECT_EQ(Mailboxes(), before);
}

TEST_P(ConformanceTest, RenameInboxMovesItsMessagesAndLeavesANewEmptyInbox) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  const std::string inbox_id = inbox->mailbox_id();
  const uint32_t inbox_validity = inbox->uid_validity();
  uint32_t first = Append(*inbox, "one", Flags("\\Seen"));
  uint32_t second = Append(*inbox, "two");
  MAILFS_ASSERT_OK(set_->AddMailbox("INBOX/Child"));

  MAILFS_ASSERT_OK(set_->RenameMailbox("INBOX", "Old"));

  // INBOX's children stay where they are.
  EXPECT_EQ(Mailboxes(), (std::vector<std::string>{"INBOX", "INBOX/Child", "Old"}));
  auto old = Box("Old");
  ASSERT_NE(old, nullptr);
  EXPECT_EQ(old->mailbox_id(), inbox_id);
  EXPECT_EQ(old->uid_validity(), inbox_validity);
  EXPECT_EQ(Uids(*old), (std::vector<uint32_t>{first, second}));
  EXPECT_EQ(Content(*old, first), SampleMessage("one"));
  auto first_info = old->Get(first);
  MAILFS_ASSERT_OK(first_info);
  EXPECT_EQ(first_info->flags, Flags("\\Seen"));

  auto fresh = Box("INBOX");
  ASSERT_NE(fresh, nullptr);
  EXPECT_NE(fresh->mailbox_id(), inbox_id);
  EXPECT_NE(fresh->uid_validity(), 0u);
  EXPECT_NE(fresh->uid_validity(), inbox_validity);
  EXPECT_TRUE(Uids(*fresh).empty());

  // The handle taken before follows the mailbox id, to "Old".
  EXPECT_EQ(inbox->mailbox_id(), inbox_id);
  EXPECT_EQ(Uids(*inbox), (std::vector<uint32_t>{first, second}));
  uint32_t third = Append(*fresh, "three");
  EXPECT_EQ(Uids(*fresh), std::vector<uint32_t>{third});
  EXPECT_EQ(Uids(*old), (std::vector<uint32_t>{first, second}));
}

TEST_P(ConformanceTest, AHandleFollowsItsMailboxAcrossARename) {
  auto box = NewBox("Before");
  ASSERT_NE(box, nullptr);
  const std::string id = box->mailbox_id();
  const uint32_t validity = box->uid_validity();
  uint32_t first = Append(*box, "before rename");

  MAILFS_ASSERT_OK(set_->RenameMailbox("Before", "After"));
  EXPECT_EQ(box->mailbox_id(), id);
  EXPECT_EQ(box->uid_validity(), validity);
  uint32_t second = Append(*box, "after rename");
  EXPECT_GT(second, first);

  auto after = Box("After");
  ASSERT_NE(after, nullptr);
  EXPECT_EQ(after->mailbox_id(), id);
  EXPECT_EQ(Uids(*after), (std::vector<uint32_t>{first, second}));
  EXPECT_EQ(Content(*after, second), SampleMessage("after rename"));
}

TEST_P(ConformanceTest, AHandleAfterItsMailboxWasDeletedFindsNothing) {
  auto gone = NewBox("Gone");
  auto other = NewBox("Other");
  ASSERT_NE(gone, nullptr);
  ASSERT_NE(other, nullptr);
  uint32_t kept = Append(*other, "kept");
  MAILFS_ASSERT_OK(set_->DeleteMailbox("Gone"));
  auto other_before = other->Snapshot();
  MAILFS_ASSERT_OK(other_before);

  MAILFS_EXPECT_CODE(gone->Append(MakeAppendMessage(SampleMessage("late")), false), kNotFound);
  MAILFS_EXPECT_CODE(gone->Get(1), kNotFound);
  MAILFS_EXPECT_CODE(gone->Open(1), kNotFound);
  MAILFS_EXPECT_CODE(gone->Update(1, Flags("\\Seen"), FlagOp::kAdd), kNotFound);
  MAILFS_EXPECT_CODE(gone->Delete(std::vector<uint32_t>{1}), kNotFound);
  MAILFS_EXPECT_CODE(gone->ClaimRecent(), kNotFound);
  MAILFS_EXPECT_CODE(gone->Cleanup(), kNotFound);
  MAILFS_EXPECT_CODE(gone->Snapshot(), kNotFound);
  MAILFS_EXPECT_CODE(gone->Find(1, kMaxUid), kNotFound);
  MAILFS_EXPECT_CODE(gone->Copy(1, *other, false), kNotFound);
  MAILFS_EXPECT_CODE(other->Copy(kept, *gone, false), kNotFound);
  MAILFS_EXPECT_CODE(other->Move(kept, *gone, false), kNotFound);

  // A mailbox of the same name made later is not the deleted one.
  MAILFS_ASSERT_OK(set_->AddMailbox("Gone"));
  MAILFS_EXPECT_CODE(gone->Snapshot(), kNotFound);
  auto other_after = other->Snapshot();
  MAILFS_ASSERT_OK(other_after);
  EXPECT_EQ(*other_after, *other_before);
  EXPECT_EQ(Uids(*other), std::vector<uint32_t>{kept});
}

// --- MailboxData: properties ----------------------------------------------

TEST_P(ConformanceTest, UidValidityIsNonzeroAndStable) {
  auto inbox = Box("INBOX");
  auto archive = NewBox("Archive");
  ASSERT_NE(inbox, nullptr);
  ASSERT_NE(archive, nullptr);
  const uint32_t validity = inbox->uid_validity();
  EXPECT_NE(validity, 0u);
  EXPECT_NE(archive->uid_validity(), 0u);
  uint32_t uid = Append(*inbox, "x");
  MAILFS_ASSERT_OK(inbox->Update(uid, Flags("\\Seen"), FlagOp::kAdd));
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{uid}));
  EXPECT_EQ(inbox->uid_validity(), validity);
  EXPECT_EQ(Box("INBOX")->uid_validity(), validity);
  auto snapshot = inbox->Snapshot();
  MAILFS_ASSERT_OK(snapshot);
  EXPECT_EQ(snapshot->uid_validity, validity);
}

TEST_P(ConformanceTest, PermanentFlagsCoverEverySystemFlagAndKeywords) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  FlagSet permanent = inbox->permanent_flags();
  for (SystemFlag flag : kAllSystemFlags) EXPECT_TRUE(permanent.Has(flag)) << SystemFlagName(flag);
  EXPECT_TRUE(inbox->accepts_keywords());
  EXPECT_FALSE(inbox->readonly());
  EXPECT_FALSE(inbox->mailbox_id().empty());
}

// --- MailboxData: append and read -------------------------------------------

TEST_P(ConformanceTest, AppendAssignsIncreasingUidsThatAreNeverReused) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  uint32_t a = Append(*inbox, "a");
  uint32_t b = Append(*inbox, "b");
  uint32_t c = Append(*inbox, "c");
  EXPECT_GT(a, 0u);
  EXPECT_GT(b, a);
  EXPECT_GT(c, b);
  auto snapshot = inbox->Snapshot();
  MAILFS_ASSERT_OK(snapshot);
  EXPECT_GT(snapshot->next_uid, c);

  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{c}));
  uint32_t d = Append(*inbox, "d");
  EXPECT_GT(d, c);
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{a, b, d}));
  uint32_t e = Append(*inbox, "e");
  EXPECT_GT(e, d);
  EXPECT_EQ(Uids(*inbox), std::vector<uint32_t>{e});
}

TEST_P(ConformanceTest, AppendStoresFlagsDateAndSize) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  const std::string bytes = SampleMessage("stored");
  const FlagSet flags = Flags("\\Seen \\Draft \\Answered $Label1 custom");
  const UnixSeconds date = 1772000000;
  auto uid = inbox->Append(MakeAppendMessage(bytes, flags, date), false);
  MAILFS_ASSERT_OK(uid);
  auto other = inbox->Append(MakeAppendMessage(SampleMessage("other")), false);
  MAILFS_ASSERT_OK(other);

  auto info = inbox->Get(*uid);
  MAILFS_ASSERT_OK(info);
  EXPECT_EQ(info->uid, *uid);
  EXPECT_EQ(info->flags, flags);
  EXPECT_EQ(info->internal_date, date);
  EXPECT_EQ(info->size, bytes.size());
  EXPECT_FALSE(info->email_id.empty());
  EXPECT_FALSE(info->thread_id.empty());
  auto other_info = inbox->Get(*other);
  MAILFS_ASSERT_OK(other_info);
  EXPECT_TRUE(other_info->flags.empty());
  EXPECT_NE(other_info->email_id, info->email_id);

  auto found = inbox->Find(*uid, *uid);
  MAILFS_ASSERT_OK(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ(found->front(), *info);
}

TEST_P(ConformanceTest, OpenReadsTheStoredBytesExactly) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  // Large enough to span several read chunks, with 8-bit and NUL bytes.
  std::string bytes = SampleMessage("big");
  for (int i = 0; bytes.size() < 200000; ++i) {
    bytes += "line " + std::to_string(i) + " \xc3\xa4\xc3\xb6\xc3\xbc";
    bytes += '\0';
    bytes += "\r\n";
  }
  auto uid = inbox->Append(MakeAppendMessage(bytes), false);
  MAILFS_ASSERT_OK(uid);
  auto reader = inbox->Open(*uid);
  MAILFS_ASSERT_OK(reader);
  const ContentReader& content = **reader;
  ASSERT_EQ(content.size(), bytes.size());
  auto all = ReadAll(content);
  MAILFS_ASSERT_OK(all);
  EXPECT_TRUE(*all == bytes);

  std::string buffer(1000, '#');
  auto n = content.ReadAt(12345, buffer);
  MAILFS_ASSERT_OK(n);
  ASSERT_EQ(*n, buffer.size());
  EXPECT_EQ(buffer, bytes.substr(12345, buffer.size()));

  // A read across the end is short; reads at or past the end return 0.
  n = content.ReadAt(bytes.size() - 10, buffer);
  MAILFS_ASSERT_OK(n);
  ASSERT_EQ(*n, 10u);
  EXPECT_EQ(buffer.substr(0, 10), bytes.substr(bytes.size() - 10));
  n = content.ReadAt(bytes.size(), buffer);
  MAILFS_ASSERT_OK(n);
  EXPECT_EQ(*n, 0u);
  n = content.ReadAt(bytes.size() + 4096, buffer);
  MAILFS_ASSERT_OK(n);
  EXPECT_EQ(*n, 0u);
}

TEST_P(ConformanceTest, AnOpenReaderOutlivesTheExpunge) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  uint32_t uid = Append(*inbox, "fleeting");
  auto reader = inbox->Open(uid);
  MAILFS_ASSERT_OK(reader);
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{uid}));
  MAILFS_EXPECT_CODE(inbox->Open(uid), kNotFound);
  auto bytes = ReadAll(**reader);
  MAILFS_ASSERT_OK(bytes);
  EXPECT_EQ(*bytes, SampleMessage("fleeting"));
}

TEST_P(ConformanceTest, MissingUidsAreNotFound) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  uint32_t uid = Append(*inbox, "only");
  MAILFS_EXPECT_CODE(inbox->Get(uid + 1), kNotFound);
  MAILFS_EXPECT_CODE(inbox->Open(uid + 1), kNotFound);
  MAILFS_EXPECT_CODE(inbox->Update(uid + 1, Flags("\\Seen"), FlagOp::kAdd), kNotFound);
  MAILFS_EXPECT_CODE(inbox->Get(0), kNotFound);
  auto info = inbox->Get(uid);
  MAILFS_ASSERT_OK(info);
  EXPECT_TRUE(info->flags.empty());
}

TEST_P(ConformanceTest, RepliesShareTheirThreadId) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  auto append = [&](std::string bytes) {
    auto uid = inbox->Append(MakeAppendMessage(std::move(bytes)), false);
    EXPECT_TRUE(test::IsOk(uid.status()));
    auto info = uid.ok() ? inbox->Get(*uid) : Result<MessageInfo>(uid.status());
    return info.ok() ? info->thread_id : std::string("<missing>");
  };
  std::string root = append(SampleMessage("root"));
  std::string reply = append(SampleMessage(
      "reply", "In-Reply-To: <root@test.example.org>\r\nReferences: <root@test.example.org>\r\n"));
  std::string reply_to_reply =
      append(SampleMessage("reply2",
                           "In-Reply-To: <reply@test.example.org>\r\n"
                           "References: <root@test.example.org>\r\n <reply@test.example.org>\r\n"));
  std::string unrelated = append(SampleMessage("unrelated"));
  EXPECT_EQ(reply, root);
  EXPECT_EQ(reply_to_reply, root);
  EXPECT_NE(unrelated, root);
}

// --- MailboxData: copy and move ---------------------------------------------

TEST_P(ConformanceTest, CopyKeepsTheMessageAndItsMetadata) {
  auto inbox = Box("INBOX");
  auto dest = NewBox("Dest");
  ASSERT_NE(inbox, nullptr);
  ASSERT_NE(dest, nullptr);
  uint32_t existing = Append(*dest, "already there");
  uint32_t uid = Append(*inbox, "copied", Flags("\\Flagged $Work"), false, 1771111111);
  auto original = inbox->Get(uid);
  MAILFS_ASSERT_OK(original);

  auto copy_uid = inbox->Copy(uid, *dest, false);
  MAILFS_ASSERT_OK(copy_uid);
  EXPECT_GT(*copy_uid, existing);
  auto copy = dest->Get(*copy_uid);
  MAILFS_ASSERT_OK(copy);
  EXPECT_EQ(copy->uid, *copy_uid);
  EXPECT_EQ(copy->flags, original->flags);
  EXPECT_EQ(copy->internal_date, original->internal_date);
  EXPECT_EQ(copy->size, original->size);
  EXPECT_EQ(copy->email_id, original->email_id);
  EXPECT_EQ(copy->thread_id, original->thread_id);
  EXPECT_EQ(Content(*dest, *copy_uid), SampleMessage("copied"));

  // The source keeps its message, and the copy is independent of it.
  EXPECT_EQ(Uids(*inbox), std::vector<uint32_t>{uid});
  MAILFS_ASSERT_OK(dest->Update(*copy_uid, Flags("\\Seen"), FlagOp::kAdd));
  auto after = inbox->Get(uid);
  MAILFS_ASSERT_OK(after);
  EXPECT_EQ(after->flags, original->flags);
}

TEST_P(ConformanceTest, CopyIntoTheSameMailboxAddsANewUid) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  uint32_t uid = Append(*inbox, "twin");
  auto twin = inbox->Copy(uid, *inbox, false);
  MAILFS_ASSERT_OK(twin);
  EXPECT_GT(*twin, uid);
  EXPECT_EQ(Uids(*inbox), (std::vector<uint32_t>{uid, *twin}));
  EXPECT_EQ(Content(*inbox, *twin), SampleMessage("twin"));
}

TEST_P(ConformanceTest, MoveTransfersTheMessage) {
  auto inbox = Box("INBOX");
  auto dest = NewBox("Dest");
  ASSERT_NE(inbox, nullptr);
  ASSERT_NE(dest, nullptr);
  uint32_t existing = Append(*dest, "already there");
  uint32_t stays = Append(*inbox, "stays");
  uint32_t uid = Append(*inbox, "moved", Flags("\\Seen $Moved"), false, 1770000000);
  auto original = inbox->Get(uid);
  MAILFS_ASSERT_OK(original);

  auto moved_uid = inbox->Move(uid, *dest, false);
  MAILFS_ASSERT_OK(moved_uid);
  EXPECT_GT(*moved_uid, existing);
  EXPECT_EQ(Uids(*inbox), std::vector<uint32_t>{stays});
  MAILFS_EXPECT_CODE(inbox->Get(uid), kNotFound);
  EXPECT_EQ(Uids(*dest), (std::vector<uint32_t>{existing, *moved_uid}));
  auto moved = dest->Get(*moved_uid);
  MAILFS_ASSERT_OK(moved);
  EXPECT_EQ(moved->flags, original->flags);
  EXPECT_EQ(moved->internal_date, original->internal_date);
  EXPECT_EQ(moved->size, original->size);
  EXPECT_EQ(moved->email_id, original->email_id);
  EXPECT_EQ(Content(*dest, *moved_uid), SampleMessage("moved"));
}

TEST_P(ConformanceTest, CopyOrMoveOfAMissingUidIsNotFoundAndChangesNothing) {
  auto inbox = Box("INBOX");
  auto dest = NewBox("Dest");
  ASSERT_NE(inbox, nullptr);
  ASSERT_NE(dest, nullptr);
  uint32_t uid = Append(*inbox, "present");
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{uid}));
  uint32_t present = Append(*inbox, "present too");
  auto dest_before = dest->Snapshot();
  MAILFS_ASSERT_OK(dest_before);

  MAILFS_EXPECT_CODE(inbox->Copy(uid, *dest, false), kNotFound);
  MAILFS_EXPECT_CODE(inbox->Move(uid, *dest, false), kNotFound);
  MAILFS_EXPECT_CODE(inbox->Copy(present + 100, *dest, false), kNotFound);
  auto dest_after = dest->Snapshot();
  MAILFS_ASSERT_OK(dest_after);
  EXPECT_EQ(*dest_after, *dest_before);
  EXPECT_TRUE(Uids(*dest).empty());
  EXPECT_EQ(Uids(*inbox), std::vector<uint32_t>{present});
}

TEST_P(ConformanceTest, CopyToAnotherStoreIsNotSupported) {
  auto other_set = GetParam().make();
  ASSERT_NE(other_set, nullptr);
  auto elsewhere = other_set->GetMailbox("INBOX");
  MAILFS_ASSERT_OK(elsewhere);
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  uint32_t uid = Append(*inbox, "local");
  MAILFS_EXPECT_CODE(inbox->Copy(uid, **elsewhere, false), kNotSupported);
  MAILFS_EXPECT_CODE(inbox->Move(uid, **elsewhere, false), kNotSupported);
  EXPECT_EQ(Uids(*inbox), std::vector<uint32_t>{uid});
  EXPECT_TRUE(Uids(**elsewhere).empty());
}

// --- MailboxData: flags, expunge, recent ------------------------------------

TEST_P(ConformanceTest, UpdateAddsDeletesAndReplacesFlags) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  uint32_t uid = Append(*inbox, "flagged", Flags("\\Draft"));
  uint32_t bystander = Append(*inbox, "bystander", Flags("\\Answered"));

  auto flags = inbox->Update(uid, Flags("\\Seen $Todo"), FlagOp::kAdd);
  MAILFS_ASSERT_OK(flags);
  EXPECT_EQ(*flags, Flags("\\Draft \\Seen $Todo"));
  flags = inbox->Update(uid, Flags("\\Draft $Todo $NotThere"), FlagOp::kDelete);
  MAILFS_ASSERT_OK(flags);
  EXPECT_EQ(*flags, Flags("\\Seen"));
  flags = inbox->Update(uid, Flags("\\Flagged \\Deleted $Junk"), FlagOp::kReplace);
  MAILFS_ASSERT_OK(flags);
  EXPECT_EQ(*flags, Flags("\\Flagged \\Deleted $Junk"));

  auto info = inbox->Get(uid);
  MAILFS_ASSERT_OK(info);
  EXPECT_EQ(info->flags, Flags("\\Deleted \\Flagged $Junk"));
  flags = inbox->Update(uid, FlagSet(), FlagOp::kReplace);
  MAILFS_ASSERT_OK(flags);
  EXPECT_TRUE(flags->empty());
  info = inbox->Get(uid);
  MAILFS_ASSERT_OK(info);
  EXPECT_TRUE(info->flags.empty());

  auto other = inbox->Get(bystander);
  MAILFS_ASSERT_OK(other);
  EXPECT_EQ(other->flags, Flags("\\Answered"));
}

TEST_P(ConformanceTest, DeleteExpungesExactlyTheListedUids) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  uint32_t a = Append(*inbox, "a");
  uint32_t b = Append(*inbox, "b", Flags("\\Deleted"));
  uint32_t c = Append(*inbox, "c");
  uint32_t d = Append(*inbox, "d", Flags("\\Deleted"));
  // Absent UIDs are ignored; \Deleted on unlisted messages does not matter.
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{c, a, d + 1000}));
  EXPECT_EQ(Uids(*inbox), (std::vector<uint32_t>{b, d}));
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{}));
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{a}));
  EXPECT_EQ(Uids(*inbox), (std::vector<uint32_t>{b, d}));
}

TEST_P(ConformanceTest, RecentIsClaimedOnce) {
  auto inbox = Box("INBOX");
  auto dest = NewBox("Dest");
  ASSERT_NE(inbox, nullptr);
  ASSERT_NE(dest, nullptr);
  uint32_t a = Append(*inbox, "a", {}, /*recent=*/true);
  Append(*inbox, "b", {}, /*recent=*/false);
  uint32_t c = Append(*inbox, "c", {}, /*recent=*/true);

  auto claimed = inbox->ClaimRecent();
  MAILFS_ASSERT_OK(claimed);
  EXPECT_EQ(*claimed, (std::vector<uint32_t>{a, c}));
  claimed = inbox->ClaimRecent();
  MAILFS_ASSERT_OK(claimed);
  EXPECT_TRUE(claimed->empty());
  auto snapshot = inbox->Snapshot();
  MAILFS_ASSERT_OK(snapshot);
  EXPECT_EQ(snapshot->recent, 0u);

  // Copy and Move can mark the new message recent in the destination.
  auto copied = inbox->Copy(a, *dest, /*recent=*/true);
  MAILFS_ASSERT_OK(copied);
  auto unmarked = inbox->Copy(a, *dest, /*recent=*/false);
  MAILFS_ASSERT_OK(unmarked);
  auto moved = inbox->Move(c, *dest, /*recent=*/true);
  MAILFS_ASSERT_OK(moved);
  claimed = dest->ClaimRecent();
  MAILFS_ASSERT_OK(claimed);
  EXPECT_EQ(*claimed, (std::vector<uint32_t>{*copied, *moved}));
}

TEST_P(ConformanceTest, CleanupChangesNothingVisible) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  Append(*inbox, "a", Flags("\\Seen"), true);
  uint32_t b = Append(*inbox, "b", Flags("\\Deleted"));
  auto before = inbox->Snapshot();
  MAILFS_ASSERT_OK(before);
  auto found_before = inbox->Find(1, kMaxUid);
  MAILFS_ASSERT_OK(found_before);
  MAILFS_ASSERT_OK(inbox->Cleanup());
  auto after = inbox->Snapshot();
  MAILFS_ASSERT_OK(after);
  EXPECT_EQ(*after, *before);
  auto found_after = inbox->Find(1, kMaxUid);
  MAILFS_ASSERT_OK(found_after);
  EXPECT_EQ(*found_after, *found_before);
  EXPECT_EQ(Content(*inbox, b), SampleMessage("b"));
}

// --- MailboxData: snapshot and find -----------------------------------------

TEST_P(ConformanceTest, SnapshotCountsMessages) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  auto empty = inbox->Snapshot();
  MAILFS_ASSERT_OK(empty);
  EXPECT_EQ(empty->exists, 0u);
  EXPECT_EQ(empty->recent, 0u);
  EXPECT_EQ(empty->unseen, 0u);
  EXPECT_EQ(empty->first_unseen, 0u);
  EXPECT_GE(empty->next_uid, 1u);

  uint32_t a = Append(*inbox, "a", Flags("\\Seen"), true);
  uint32_t b = Append(*inbox, "b", Flags("\\Flagged"), false);
  uint32_t c = Append(*inbox, "c", {}, true);
  Append(*inbox, "d", Flags("\\Seen \\Answered"), false);
  auto snapshot = inbox->Snapshot();
  MAILFS_ASSERT_OK(snapshot);
  EXPECT_EQ(snapshot->mailbox_id, inbox->mailbox_id());
  EXPECT_EQ(snapshot->uid_validity, inbox->uid_validity());
  EXPECT_FALSE(snapshot->readonly);
  EXPECT_EQ(snapshot->exists, 4u);
  EXPECT_EQ(snapshot->recent, 2u);
  EXPECT_EQ(snapshot->unseen, 2u);
  EXPECT_EQ(snapshot->first_unseen, b);

  MAILFS_ASSERT_OK(inbox->Update(b, Flags("\\Seen"), FlagOp::kAdd));
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{a}));
  snapshot = inbox->Snapshot();
  MAILFS_ASSERT_OK(snapshot);
  EXPECT_EQ(snapshot->exists, 3u);
  EXPECT_EQ(snapshot->recent, 1u);
  EXPECT_EQ(snapshot->unseen, 1u);
  EXPECT_EQ(snapshot->first_unseen, c);
}

TEST_P(ConformanceTest, FindReturnsTheUidRangeInAscendingOrder) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  std::vector<uint32_t> uids;
  for (int i = 0; i < 6; ++i) uids.push_back(Append(*inbox, "m" + std::to_string(i)));
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{uids[2]}));
  auto range = [&](uint32_t first, uint32_t last) {
    auto found = inbox->Find(first, last);
    EXPECT_TRUE(test::IsOk(found.status()));
    return found.ok() ? UidsOf(*found) : std::vector<uint32_t>{};
  };
  EXPECT_EQ(range(1, kMaxUid),
            (std::vector<uint32_t>{uids[0], uids[1], uids[3], uids[4], uids[5]}));
  EXPECT_EQ(range(uids[1], uids[4]), (std::vector<uint32_t>{uids[1], uids[3], uids[4]}));
  EXPECT_EQ(range(uids[2], uids[2]), std::vector<uint32_t>{});
  EXPECT_EQ(range(uids[3], uids[3]), std::vector<uint32_t>{uids[3]});
  EXPECT_EQ(range(uids[5] + 1, kMaxUid), std::vector<uint32_t>{});
  EXPECT_EQ(range(uids[4], uids[1]), std::vector<uint32_t>{});  // first > last

  auto found = inbox->Find(uids[4], uids[4]);
  MAILFS_ASSERT_OK(found);
  ASSERT_EQ(found->size(), 1u);
  auto info = inbox->Get(uids[4]);
  MAILFS_ASSERT_OK(info);
  EXPECT_EQ(found->front(), *info);
}

// A date AppendedDate vouches for is what Get answers after Append (the
// driver shows a file it just appended from it, without a Get).
TEST_P(ConformanceTest, AppendedDateIsWhatGetAnswers) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  const UnixSeconds dates[] = {1'600'000'000, 1, 0, -1'000'000, 4'102'444'800, -70'000'000'000};
  for (UnixSeconds requested : dates) {
    SCOPED_TRACE(requested);
    std::optional<UnixSeconds> vouched = inbox->AppendedDate(requested);
    auto uid = inbox->Append(MakeAppendMessage(SampleMessage("dated"), {}, requested), false);
    MAILFS_ASSERT_OK(uid);
    if (!vouched) continue;
    auto info = inbox->Get(*uid);
    MAILFS_ASSERT_OK(info);
    EXPECT_EQ(info->internal_date, *vouched);
  }
}

// --- read-only mailboxes ------------------------------------------------------

TEST_P(ConformanceTest, AReadOnlyMailboxRefusesEveryChange) {
  if (!GetParam().make_readonly) {
    GTEST_SKIP() << GetParam().name << " offers no way to make a mailbox read-only";
  }
  auto inbox = Box("INBOX");
  auto ro = NewBox("Ro");
  ASSERT_NE(inbox, nullptr);
  ASSERT_NE(ro, nullptr);
  uint32_t outside = Append(*inbox, "outside");
  uint32_t inside = Append(*ro, "inside", Flags("\\Seen"), true);
  Append(*ro, "inside too");
  MAILFS_ASSERT_OK(GetParam().make_readonly(*set_, "Ro"));

  EXPECT_TRUE(ro->readonly());
  EXPECT_TRUE(Box("Ro")->readonly());
  EXPECT_FALSE(inbox->readonly());
  auto ro_before = ro->Snapshot();
  auto ro_found_before = ro->Find(1, kMaxUid);
  auto inbox_before = inbox->Snapshot();
  auto inbox_found_before = inbox->Find(1, kMaxUid);
  MAILFS_ASSERT_OK(ro_before);
  MAILFS_ASSERT_OK(ro_found_before);
  MAILFS_ASSERT_OK(inbox_before);
  MAILFS_ASSERT_OK(inbox_found_before);
  EXPECT_TRUE(ro_before->readonly);

  MAILFS_EXPECT_CODE(ro->Append(MakeAppendMessage(SampleMessage("refused")), false), kReadOnly);
  MAILFS_EXPECT_CODE(inbox->Copy(outside, *ro, false), kReadOnly);
  MAILFS_EXPECT_CODE(inbox->Move(outside, *ro, false), kReadOnly);
  MAILFS_EXPECT_CODE(ro->Move(inside, *inbox, false), kReadOnly);
  MAILFS_EXPECT_CODE(ro->Update(inside, Flags("\\Flagged"), FlagOp::kAdd), kReadOnly);
  MAILFS_EXPECT_CODE(ro->Update(inside, FlagSet(), FlagOp::kReplace), kReadOnly);
  MAILFS_EXPECT_CODE(ro->Delete(std::vector<uint32_t>{inside}), kReadOnly);

  auto ro_after = ro->Snapshot();
  auto ro_found_after = ro->Find(1, kMaxUid);
  auto inbox_after = inbox->Snapshot();
  auto inbox_found_after = inbox->Find(1, kMaxUid);
  MAILFS_ASSERT_OK(ro_after);
  MAILFS_ASSERT_OK(ro_found_after);
  MAILFS_ASSERT_OK(inbox_after);
  MAILFS_ASSERT_OK(inbox_found_after);
  EXPECT_EQ(*ro_after, *ro_before);
  EXPECT_EQ(*ro_found_after, *ro_found_before);
  EXPECT_EQ(*inbox_after, *inbox_before);
  EXPECT_EQ(*inbox_found_after, *inbox_found_before);

  // Reading and copying out are still allowed.
  EXPECT_EQ(Content(*ro, inside), SampleMessage("inside"));
  auto copied = ro->Copy(inside, *inbox, false);
  MAILFS_ASSERT_OK(copied);
  EXPECT_EQ(Content(*inbox, *copied), SampleMessage("inside"));
  auto ro_final = ro->Find(1, kMaxUid);
  MAILFS_ASSERT_OK(ro_final);
  EXPECT_EQ(*ro_final, *ro_found_before);
}

// --- the change feed ------------------------------------------------------------

TEST_P(ConformanceTest, TheChangeFeedReportsMessageChanges) {
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  uint64_t cursor = set_->ChangeCursor();

  uint32_t uid = Append(*inbox, "watched");
  EXPECT_TRUE(AwaitChange(&cursor, Is(Change::Kind::kMessagesAdded, "INBOX", {uid})));
  MAILFS_ASSERT_OK(inbox->Update(uid, Flags("\\Seen"), FlagOp::kAdd));
  EXPECT_TRUE(AwaitChange(&cursor, Is(Change::Kind::kFlagsChanged, "INBOX", {uid})));
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{uid}));
  EXPECT_TRUE(AwaitChange(&cursor, Is(Change::Kind::kMessagesExpunged, "INBOX", {uid})));
}

TEST_P(ConformanceTest, TheChangeFeedReportsCopyAndMove) {
  auto inbox = Box("INBOX");
  auto dest = NewBox("Dest");
  ASSERT_NE(inbox, nullptr);
  ASSERT_NE(dest, nullptr);
  uint32_t uid = Append(*inbox, "travelling");
  uint64_t cursor = set_->ChangeCursor();

  auto copied = inbox->Copy(uid, *dest, false);
  MAILFS_ASSERT_OK(copied);
  EXPECT_TRUE(AwaitChange(&cursor, Is(Change::Kind::kMessagesAdded, "Dest", {*copied})));
  auto moved = inbox->Move(uid, *dest, false);
  MAILFS_ASSERT_OK(moved);
  uint64_t second_cursor = cursor;
  EXPECT_TRUE(AwaitChange(&cursor, Is(Change::Kind::kMessagesAdded, "Dest", {*moved})));
  EXPECT_TRUE(AwaitChange(&second_cursor, Is(Change::Kind::kMessagesExpunged, "INBOX", {uid})));
}

TEST_P(ConformanceTest, TheChangeFeedReportsMailboxesAndSubscriptions) {
  uint64_t cursor = set_->ChangeCursor();
  MAILFS_ASSERT_OK(set_->AddMailbox("Fresh"));
  EXPECT_TRUE(AwaitChange(&cursor, Is(Change::Kind::kMailboxAdded, "Fresh")));
  MAILFS_ASSERT_OK(set_->SetSubscribed("Fresh", true));
  EXPECT_TRUE(AwaitChange(&cursor, Is(Change::Kind::kSubscriptions, "Fresh")));

  uint64_t rename_cursor = cursor;
  MAILFS_ASSERT_OK(set_->RenameMailbox("Fresh", "Renamed"));
  EXPECT_TRUE(AwaitChange(&cursor, Is(Change::Kind::kMailboxRemoved, "Fresh")));
  EXPECT_TRUE(AwaitChange(&rename_cursor, Is(Change::Kind::kMailboxAdded, "Renamed")));

  MAILFS_ASSERT_OK(set_->DeleteMailbox("Renamed"));
  EXPECT_TRUE(AwaitChange(&cursor, Is(Change::Kind::kMailboxRemoved, "Renamed")));
}

TEST_P(ConformanceTest, WaitingWithoutChangesTimesOut) {
  uint64_t cursor = set_->ChangeCursor();
  auto start = std::chrono::steady_clock::now();
  ChangeBatch batch = set_->WaitForChanges(&cursor, 100ms);
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(batch.changes.empty());
  EXPECT_FALSE(batch.stopped);
  EXPECT_FALSE(batch.overflowed);
  EXPECT_GE(waited, 90ms);

  // A change made before the wait is returned at once.
  MAILFS_ASSERT_OK(set_->AddMailbox("Now"));
  start = std::chrono::steady_clock::now();
  batch = set_->WaitForChanges(&cursor, 10s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_FALSE(batch.changes.empty());
}

TEST_P(ConformanceTest, StopWaitingWakesEveryWaiter) {
  std::atomic<int> stopped{0};
  std::vector<std::thread> waiters;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    waiters.emplace_back([&] {
      uint64_t cursor = set_->ChangeCursor();
      ChangeBatch batch = set_->WaitForChanges(&cursor, 30s);
      if (batch.stopped) ++stopped;
    });
  }
  std::this_thread::sleep_for(100ms);
  set_->StopWaiting();
  for (std::thread& waiter : waiters) waiter.join();
  EXPECT_EQ(stopped.load(), 3);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);

  // Later waits return at once, and the store still works.
  uint64_t cursor = set_->ChangeCursor();
  start = std::chrono::steady_clock::now();
  EXPECT_TRUE(set_->WaitForChanges(&cursor, 30s).stopped);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  MAILFS_EXPECT_OK(set_->AddMailbox("StillWorks"));
}

// --- concurrency ------------------------------------------------------------------

TEST_P(ConformanceTest, ConcurrentAppendsGetUniqueIncreasingUids) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  std::vector<std::vector<uint32_t>> got(kThreads);
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto box = set_->GetMailbox("INBOX");
      // Start together, so that the appends really overlap.
      ++ready;
      while (ready.load() < kThreads) std::this_thread::yield();
      if (!box.ok()) return;
      for (int i = 0; i < kPerThread; ++i) {
        auto message = MakeAppendMessage(SampleMessage(fmt::format("t{}-{}", t, i)));
        auto uid = (*box)->Append(message, false);
        if (uid.ok()) got[t].push_back(*uid);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  std::set<uint32_t> all;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(got[t].size(), static_cast<size_t>(kPerThread)) << "thread " << t;
    EXPECT_TRUE(std::is_sorted(got[t].begin(), got[t].end())) << "thread " << t;
    all.insert(got[t].begin(), got[t].end());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  auto inbox = Box("INBOX");
  ASSERT_NE(inbox, nullptr);
  EXPECT_EQ(Uids(*inbox), std::vector<uint32_t>(all.begin(), all.end()));
  // Every UID holds the message its thread appended.
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread && i < static_cast<int>(got[t].size()); i += 13) {
      EXPECT_EQ(Content(*inbox, got[t][i]), SampleMessage(fmt::format("t{}-{}", t, i)));
    }
  }
}

TEST_P(ConformanceTest, ConcurrentMovesOfOneMessageSucceedOnce) {
  auto inbox = Box("INBOX");
  auto dest = NewBox("Dest");
  ASSERT_NE(inbox, nullptr);
  ASSERT_NE(dest, nullptr);
  constexpr int kMessages = 30;
  std::vector<uint32_t> uids;
  for (int i = 0; i < kMessages; ++i) uids.push_back(Append(*inbox, "m" + std::to_string(i)));

  std::atomic<int> moved{0};
  std::atomic<int> unexpected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      auto source = set_->GetMailbox("INBOX");
      auto target = set_->GetMailbox("Dest");
      if (!source.ok() || !target.ok()) return;
      for (uint32_t uid : uids) {
        auto result = (*source)->Move(uid, **target, false);
        if (result.ok()) {
          ++moved;
        } else if (result.status().code() != ErrorCode::kNotFound) {
          ++unexpected;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(moved.load(), kMessages);
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_TRUE(Uids(*inbox).empty());
  EXPECT_EQ(Uids(*dest).size(), static_cast<size_t>(kMessages));
}

INSTANTIATE_TEST_SUITE_P(Backends, ConformanceTest,
                         ::testing::ValuesIn(test::AllBackendFactories()),
                         [](const ::testing::TestParamInfo<BackendFactory>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace mailfs
