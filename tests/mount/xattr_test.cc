// DESIGN.md "Flags and metadata as extended attributes": what getfattr and
// setfattr see and do, compared with the store. Refusals are in
// refusal_test.cc.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

std::string Name(uint32_t uid) { return std::to_string(uid) + ".eml"; }

// Every message and mailbox of `after` equals `before`, except the flags of
// (mailbox, uid) and the mailbox's unseen count.
void ExpectOnlyFlagsOf(const StoreDigest& before, const StoreDigest& after,
                       const std::string& mailbox, uint32_t uid) {
  StoreDigest a = before, b = after;
  for (auto* d : {&a, &b}) {
    for (auto& m : d->mailboxes) {
      if (m.name != mailbox) continue;
      m.unseen = 0;
      for (auto& msg : m.messages) {
        if (msg.uid == uid) msg.flags = "*";
      }
    }
  }
  EXPECT_EQ(ToString(a), ToString(b))
      << "something besides the flags of " << mailbox << "/" << uid << " changed";
}

std::set<std::string> Set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

// getfattr's text encoding: \\ for a backslash, \NNN (octal) for others.
std::string UnescapeGetfattr(const std::string& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size() && v[i + 1] == '\\') {
      out += '\\';
      ++i;
    } else if (v[i] == '\\' && i + 3 < v.size() &&
               std::isdigit(static_cast<unsigned char>(v[i + 1]))) {
      out += static_cast<char>(std::stoi(v.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += v[i];
    }
  }
  return out;
}

// "user.mail.x" lines and "user.mail.x=\"v\"" lines of getfattr -d output.
std::map<std::string, std::string> ParseGetfattrDump(const std::string& out) {
  std::map<std::string, std::string> attrs;
  for (const auto& line : Lines(out)) {
    if (line.empty() || line[0] == '#') continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) {
      attrs[line] = "";
    } else {
      std::string value = line.substr(eq + 1);
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = UnescapeGetfattr(value.substr(1, value.size() - 2));
      }
      attrs[line.substr(0, eq)] = value;
    }
  }
  return attrs;
}

class XattrTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    SeedStandardStore(store());
  }
  // INBOX message by position in UID order.
  uint32_t InboxUid(size_t index) {
    auto uids = StoreUids(store(), "INBOX");
    EXPECT_LT(index, uids.size());
    return index < uids.size() ? uids[index] : 0;
  }
};

TEST_P(XattrTest, FlagsAttributeMatchesTheStore) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  for (std::string mailbox : {"INBOX", "Archive", "Archive/2024"}) {
    for (const auto& info : StoreMessages(store(), mailbox)) {
      std::string path = P(mailbox + "/" + Name(info.uid));
      SCOPED_TRACE(path);
      int err = 0;
      auto value = GetXattr(path, "user.mail.flags", &err);
      if (info.flags.empty() && !value) {
        // An empty set may show as an absent attribute.
        EXPECT_EQ(ErrnoName(err), ErrnoName(ENODATA));
        continue;
      }
      ASSERT_TRUE(value) << ErrnoName(err);
      auto parsed = FlagSet::Parse(*value);
      ASSERT_TRUE(parsed.ok()) << "unparsable user.mail.flags: [" << *value << "]";
      EXPECT_EQ(parsed->ToString(), info.flags.ToString());
      // Space separated, no stray bytes around.
      EXPECT_EQ(value->find('\n'), std::string::npos) << "[" << *value << "]";
      EXPECT_EQ(value->find('\0'), std::string::npos) << "[" << *value << "]";
    }
  }
  // getfattr prints the same.
  uint32_t uid = InboxUid(1);
  auto out = Sh("getfattr --only-values -n user.mail.flags INBOX/" + Name(uid));
  ASSERT_TRUE(out.ok()) << out.Describe();
  auto parsed = FlagSet::Parse(out.out);
  ASSERT_TRUE(parsed.ok()) << out.out;
  EXPECT_EQ(*parsed, StoreInfo(store(), "INBOX", uid)->flags);
}

TEST_P(XattrTest, SettingFlagsReplacesTheSet) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  uint32_t uid = InboxUid(1);  // \Flagged $Junk
  auto before = Digest();
  auto r = Sh("setfattr -n user.mail.flags -v '\\Seen \\Answered $Work' INBOX/" + Name(uid));
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(StoreInfo(store(), "INBOX", uid)->flags, Flags("\\Seen \\Answered $Work"));
  ExpectOnlyFlagsOf(before, Digest(), "INBOX", uid);

  // Through the syscall, and read back through the attribute.
  EXPECT_EQ(SetXattr(P("INBOX/" + Name(uid)), "user.mail.flags", "\\Draft"), 0);
  EXPECT_EQ(StoreInfo(store(), "INBOX", uid)->flags, Flags("\\Draft"));
  auto value = GetXattr(P("INBOX/" + Name(uid)), "user.mail.flags");
  ASSERT_TRUE(value);
  EXPECT_EQ(*value, "\\Draft");

  // An empty value clears every flag.
  EXPECT_EQ(SetXattr(P("INBOX/" + Name(uid)), "user.mail.flags", ""), 0);
  EXPECT_TRUE(StoreInfo(store(), "INBOX", uid)->flags.empty());
  ExpectOnlyFlagsOf(before, Digest(), "INBOX", uid);
}

TEST_P(XattrTest, EachSystemFlagIsAPresenceAttribute) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  uint32_t uid = InboxUid(2);  // no flags
  ASSERT_TRUE(StoreInfo(store(), "INBOX", uid)->flags.empty());
  std::string file = "INBOX/" + Name(uid);
  auto before = Digest();
  for (SystemFlag flag : kAllSystemFlags) {
    std::string attr = "user.mail." + std::string(SystemFlagAttributeName(flag));
    SCOPED_TRACE(attr);
    int err = 0;
    EXPECT_FALSE(GetXattr(P(file), attr, &err));
    EXPECT_EQ(ErrnoName(err), ErrnoName(ENODATA));

    auto set = Sh("setfattr -n " + attr + " " + file);
    ASSERT_TRUE(set.ok()) << set.Describe();
    FlagSet expected;
    expected.Add(flag);
    EXPECT_EQ(StoreInfo(store(), "INBOX", uid)->flags, expected);
    EXPECT_TRUE(GetXattr(P(file), attr));
    auto names = ListXattr(P(file));
    ASSERT_TRUE(names);
    EXPECT_EQ(std::count(names->begin(), names->end(), attr), 1);
    auto flags = GetXattr(P(file), "user.mail.flags");
    ASSERT_TRUE(flags);
    EXPECT_EQ(*flags, std::string(SystemFlagName(flag)));

    // Setting it again changes nothing.
    EXPECT_EQ(SetXattr(P(file), attr, ""), 0);
    EXPECT_EQ(StoreInfo(store(), "INBOX", uid)->flags, expected);

    auto remove = Sh("setfattr -x " + attr + " " + file);
    ASSERT_TRUE(remove.ok()) << remove.Describe();
    EXPECT_TRUE(StoreInfo(store(), "INBOX", uid)->flags.empty());
    EXPECT_FALSE(GetXattr(P(file), attr, &err));
    EXPECT_EQ(ErrnoName(err), ErrnoName(ENODATA));
    names = ListXattr(P(file));
    ASSERT_TRUE(names);
    EXPECT_EQ(std::count(names->begin(), names->end(), attr), 0);
  }
  EXPECT_EQ(ToString(Digest()), ToString(before));
}

TEST_P(XattrTest, SystemFlagsAddToOtherFlags) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  uint32_t uid = InboxUid(1);  // \Flagged $Junk
  std::string file = P("INBOX/" + Name(uid));
  EXPECT_EQ(SetXattr(file, "user.mail.seen", ""), 0);
  EXPECT_EQ(StoreInfo(store(), "INBOX", uid)->flags, Flags("\\Flagged \\Seen $Junk"));
  EXPECT_EQ(RemoveXattr(file, "user.mail.flagged"), 0);
  EXPECT_EQ(StoreInfo(store(), "INBOX", uid)->flags, Flags("\\Seen $Junk"));
}

TEST_P(XattrTest, KeywordsArePresenceAttributes) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  uint32_t uid = InboxUid(1);  // \Flagged $Junk
  std::string file = "INBOX/" + Name(uid);
  EXPECT_TRUE(GetXattr(P(file), "user.mail.keyword.$Junk"));
  int err = 0;
  EXPECT_FALSE(GetXattr(P(file), "user.mail.keyword.$Work", &err));
  EXPECT_EQ(ErrnoName(err), ErrnoName(ENODATA));

  auto before = Digest();
  auto set = Sh("setfattr -n 'user.mail.keyword.$Work' " + file);
  ASSERT_TRUE(set.ok()) << set.Describe();
  EXPECT_EQ(StoreInfo(store(), "INBOX", uid)->flags, Flags("\\Flagged $Junk $Work"));
  EXPECT_TRUE(GetXattr(P(file), "user.mail.keyword.$Work"));

  auto remove = Sh("setfattr -x 'user.mail.keyword.$Junk' " + file);
  ASSERT_TRUE(remove.ok()) << remove.Describe();
  EXPECT_EQ(StoreInfo(store(), "INBOX", uid)->flags, Flags("\\Flagged $Work"));
  EXPECT_FALSE(GetXattr(P(file), "user.mail.keyword.$Junk", &err));
  EXPECT_EQ(ErrnoName(err), ErrnoName(ENODATA));
  auto names = ListXattr(P(file));
  ASSERT_TRUE(names);
  EXPECT_EQ(std::count(names->begin(), names->end(), "user.mail.keyword.$Work"), 1);
  EXPECT_EQ(std::count(names->begin(), names->end(), "user.mail.keyword.$Junk"), 0);
  ExpectOnlyFlagsOf(before, Digest(), "INBOX", uid);

  // A keyword without a dollar sign, spelled as given.
  EXPECT_EQ(SetXattr(P(file), "user.mail.keyword.Important", ""), 0);
  EXPECT_TRUE(StoreInfo(store(), "INBOX", uid)->flags.HasKeyword("Important"));
}

TEST_P(XattrTest, ReadOnlyMessageAttributesMatchTheStore) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  for (std::string mailbox : {"INBOX", "Archive"}) {
    for (const auto& info : StoreMessages(store(), mailbox)) {
      std::string path = P(mailbox + "/" + Name(info.uid));
      SCOPED_TRACE(path);
      auto uid = GetXattr(path, "user.mail.uid");
      ASSERT_TRUE(uid);
      EXPECT_EQ(*uid, std::to_string(info.uid));
      auto date = GetXattr(path, "user.mail.internaldate");
      ASSERT_TRUE(date);
      auto parsed = ParseDateAttribute(*date);
      ASSERT_TRUE(parsed) << "unparsable user.mail.internaldate [" << *date << "]";
      EXPECT_EQ(*parsed, info.internal_date) << *date;
      int err = 0;
      auto email_id = GetXattr(path, "user.mail.emailid", &err);
      if (info.email_id.empty()) {
        EXPECT_TRUE(!email_id || email_id->empty());
      } else {
        ASSERT_TRUE(email_id) << ErrnoName(err);
        EXPECT_EQ(*email_id, info.email_id);
      }
      auto thread_id = GetXattr(path, "user.mail.threadid", &err);
      if (info.thread_id.empty()) {
        EXPECT_TRUE(!thread_id || thread_id->empty());
      } else {
        ASSERT_TRUE(thread_id) << ErrnoName(err);
        EXPECT_EQ(*thread_id, info.thread_id);
      }
    }
  }
}

TEST_P(XattrTest, RecentIsThisSessionsRecentFlag) {
  uint32_t recent = StoreAppend(store(), "Work", TestMessage("recent"), "", 1'650'000'000, true);
  uint32_t old = StoreAppend(store(), "Work", TestMessage("not-recent"), "", 1'650'000'001, false);
  ASSERT_NO_FATAL_FAILURE(MountStore());
  int err = 0;
  EXPECT_TRUE(GetXattr(P("Work/" + Name(recent)), "user.mail.recent", &err)) << ErrnoName(err);
  EXPECT_FALSE(GetXattr(P("Work/" + Name(old)), "user.mail.recent", &err));
  EXPECT_EQ(ErrnoName(err), ErrnoName(ENODATA));
  // The mailbox's count agrees with its messages.
  auto count = GetXattr(P("Work"), "user.mail.recent");
  ASSERT_TRUE(count);
  EXPECT_EQ(*count, "1");
  // \Recent is not a flag that user.mail.flags shows.
  auto flags = GetXattr(P("Work/" + Name(recent)), "user.mail.flags", &err);
  if (flags) {
    EXPECT_EQ(flags->find("\\Recent"), std::string::npos) << *flags;
  }
}

TEST_P(XattrTest, MailboxAttributesMatchTheSnapshot) {
  ASSERT_TRUE(store().SetSubscribed("Archive", true).ok());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  for (std::string mailbox : {"INBOX", "Archive", "Archive/2024", "Work"}) {
    SCOPED_TRACE(mailbox);
    auto box = StoreMailbox(store(), mailbox);
    ASSERT_TRUE(box);
    auto snap = StoreSnapshot(store(), mailbox);
    std::string path = P(mailbox);
    auto get = [&](const std::string& name) {
      int err = 0;
      auto v = GetXattr(path, name, &err);
      EXPECT_TRUE(v) << name << ": " << ErrnoName(err);
      return v.value_or("<missing>");
    };
    EXPECT_EQ(get("user.mail.uidvalidity"), std::to_string(snap.uid_validity));
    EXPECT_EQ(get("user.mail.uidnext"), std::to_string(snap.next_uid));
    EXPECT_EQ(get("user.mail.messages"), std::to_string(snap.exists));
    EXPECT_EQ(get("user.mail.unseen"), std::to_string(snap.unseen));
    EXPECT_EQ(get("user.mail.mailboxid"), box->mailbox_id());
    std::string recent = get("user.mail.recent");
    EXPECT_FALSE(recent.empty());
    EXPECT_EQ(recent.find_first_not_of("0123456789"), std::string::npos) << recent;

    // Permanent flags: the system flags the mailbox stores, and \* when it
    // takes keywords.
    std::string permanent = get("user.mail.permanentflags");
    std::set<std::string> tokens;
    for (size_t pos = 0; pos < permanent.size();) {
      size_t end = permanent.find(' ', pos);
      if (end == std::string::npos) end = permanent.size();
      if (end > pos) tokens.insert(permanent.substr(pos, end - pos));
      pos = end + 1;
    }
    std::set<std::string> expected;
    const FlagSet storable = box->permanent_flags();
    for (SystemFlag f : kAllSystemFlags) {
      if (storable.Has(f)) expected.insert(std::string(SystemFlagName(f)));
    }
    for (const auto& k : storable.keywords()) expected.insert(k);
    if (box->accepts_keywords()) expected.insert("\\*");
    EXPECT_EQ(tokens, expected) << "[" << permanent << "]";

    int err = 0;
    bool subscribed = mailbox == "Archive";
    EXPECT_EQ(GetXattr(path, "user.mail.subscribed", &err).has_value(), subscribed);
    if (!subscribed) {
      EXPECT_EQ(ErrnoName(err), ErrnoName(ENODATA));
    }
  }
}

TEST_P(XattrTest, MailboxCountsFollowChangesThroughTheMount) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto w = WriteFile(P("Work/a.eml"), TestMessage("count-a"));
  ASSERT_TRUE(w.ok()) << w.Describe();
  auto snap = StoreSnapshot(store(), "Work");
  EXPECT_EQ(GetXattr(P("Work"), "user.mail.messages").value_or("?"), std::to_string(snap.exists));
  EXPECT_EQ(GetXattr(P("Work"), "user.mail.uidnext").value_or("?"), std::to_string(snap.next_uid));
  EXPECT_EQ(GetXattr(P("Work"), "user.mail.unseen").value_or("?"), std::to_string(snap.unseen));
  auto uids = StoreUids(store(), "Work");
  ASSERT_EQ(uids.size(), 1u);
  EXPECT_EQ(SetXattr(P("Work/" + Name(uids[0])), "user.mail.seen", ""), 0);
  EXPECT_EQ(GetXattr(P("Work"), "user.mail.unseen").value_or("?"),
            std::to_string(StoreSnapshot(store(), "Work").unseen));
}

TEST_P(XattrTest, SubscribedAttributeSubscribesAndUnsubscribes) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto subscribed = [&](const std::string& name) {
    auto list = StoreSubscribed(store());
    return std::count(list.begin(), list.end(), name) == 1;
  };
  ASSERT_FALSE(subscribed("Work"));
  auto before = Digest();

  auto set = Sh("setfattr -n user.mail.subscribed Work");
  ASSERT_TRUE(set.ok()) << set.Describe();
  EXPECT_TRUE(subscribed("Work"));
  EXPECT_TRUE(GetXattr(P("Work"), "user.mail.subscribed"));
  auto names = ListXattr(P("Work"));
  ASSERT_TRUE(names);
  EXPECT_EQ(std::count(names->begin(), names->end(), "user.mail.subscribed"), 1);

  // Nested mailboxes too.
  EXPECT_EQ(SetXattr(P("Archive/2024"), "user.mail.subscribed", ""), 0);
  EXPECT_TRUE(subscribed("Archive/2024"));

  auto remove = Sh("setfattr -x user.mail.subscribed Work");
  ASSERT_TRUE(remove.ok()) << remove.Describe();
  EXPECT_FALSE(subscribed("Work"));
  int err = 0;
  EXPECT_FALSE(GetXattr(P("Work"), "user.mail.subscribed", &err));
  EXPECT_EQ(ErrnoName(err), ErrnoName(ENODATA));
  EXPECT_EQ(RemoveXattr(P("Archive/2024"), "user.mail.subscribed"), 0);
  EXPECT_EQ(ToString(Digest()), ToString(before));
}

TEST_P(XattrTest, GetfattrDumpShowsEveryMessageAttribute) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  uint32_t uid = InboxUid(1);  // \Flagged $Junk
  auto info = *StoreInfo(store(), "INBOX", uid);
  std::string file = "INBOX/" + Name(uid);

  std::set<std::string> expected = {"user.mail.flags", "user.mail.flagged",
                                    "user.mail.keyword.$Junk", "user.mail.uid",
                                    "user.mail.internaldate"};
  if (!info.email_id.empty()) expected.insert("user.mail.emailid");
  if (!info.thread_id.empty()) expected.insert("user.mail.threadid");
  if (GetXattr(P(file), "user.mail.recent")) expected.insert("user.mail.recent");

  auto names = ListXattr(P(file));
  ASSERT_TRUE(names);
  EXPECT_EQ(Set(*names), expected);

  auto dump = Sh("getfattr -d -m - " + file);
  ASSERT_TRUE(dump.ok()) << dump.Describe();
  EXPECT_EQ(dump.err, "");
  auto attrs = ParseGetfattrDump(dump.out);
  std::set<std::string> dumped;
  for (const auto& [name, value] : attrs) dumped.insert(name);
  EXPECT_EQ(dumped, expected) << dump.out;
  EXPECT_EQ(attrs["user.mail.uid"], std::to_string(uid));
  EXPECT_EQ(attrs["user.mail.emailid"], info.email_id);
  auto flags = FlagSet::Parse(attrs["user.mail.flags"]);
  ASSERT_TRUE(flags.ok()) << attrs["user.mail.flags"];
  EXPECT_EQ(*flags, info.flags);
}

TEST_P(XattrTest, GetfattrDumpShowsEveryMailboxAttribute) {
  ASSERT_TRUE(store().SetSubscribed("INBOX", true).ok());
  ASSERT_NO_FATAL_FAILURE(MountStore());
  std::set<std::string> expected = {"user.mail.uidvalidity",    "user.mail.uidnext",
                                    "user.mail.messages",       "user.mail.unseen",
                                    "user.mail.recent",         "user.mail.mailboxid",
                                    "user.mail.permanentflags", "user.mail.subscribed"};
  auto names = ListXattr(P("INBOX"));
  ASSERT_TRUE(names);
  EXPECT_EQ(Set(*names), expected);
  auto dump = Sh("getfattr -d -m - INBOX");
  ASSERT_TRUE(dump.ok()) << dump.Describe();
  EXPECT_EQ(dump.err, "");
  auto attrs = ParseGetfattrDump(dump.out);
  std::set<std::string> dumped;
  for (const auto& [name, value] : attrs) dumped.insert(name);
  EXPECT_EQ(dumped, expected) << dump.out;
  auto snap = StoreSnapshot(store(), "INBOX");
  EXPECT_EQ(attrs["user.mail.uidvalidity"], std::to_string(snap.uid_validity));
  EXPECT_EQ(attrs["user.mail.messages"], std::to_string(snap.exists));

  // Unsubscribed: the attribute is absent, everything else stays.
  ASSERT_EQ(RemoveXattr(P("INBOX"), "user.mail.subscribed"), 0);
  expected.erase("user.mail.subscribed");
  names = ListXattr(P("INBOX"));
  ASSERT_TRUE(names);
  EXPECT_EQ(Set(*names), expected);
}

TEST_P(XattrTest, GetfattrOfTheWholeTreeWorks) {
  ASSERT_NO_FATAL_FAILURE(MountStore());
  auto dump = Sh("getfattr -R -d -m - . >/dev/null");
  EXPECT_TRUE(dump.ok()) << dump.Describe();
  dump = Sh("getfattr -d -m - .");
  EXPECT_TRUE(dump.ok()) << dump.Describe();
}

INSTANTIATE_TEST_SUITE_P(Backends, XattrTest, ::testing::ValuesIn(MountBackends()),
                         MountBackendName);

}  // namespace
}  // namespace mailfs::test
