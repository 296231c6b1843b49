// What only the dict backend promises, beyond the conformance suite: its
// id formats, its exact change feed, its policy choices, the demo corpus
// and the registry entries that make it.
#include "backends/dict/dict_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "backends/registry.h"
#include "src/mailbox_name.h"
#include "tests/support/backend_factories.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/redis_server.h"
#include "tests/support/test_util.h"

namespace mailfs {
namespace {

using namespace std::chrono_literals;
using test::MakeAppendMessage;
using test::SampleMessage;

constexpr uint32_t kMaxUid = std::numeric_limits<uint32_t>::max();

bool IsObjectId(const std::string& id, char kind) {
  if (id.size() != 25 || id[0] != kind) return false;
  return std::all_of(id.begin() + 1, id.end(),
                     [](char c) { return std::isdigit(c) || (c >= 'a' && c <= 'f'); });
}

std::shared_ptr<MailboxData> MustGet(MailboxSet& set, std::string_view name) {
  auto box = set.GetMailbox(name);
  EXPECT_TRUE(test::IsOk(box.status())) << name;
  return box.ok() ? *box : nullptr;
}

// Every change available now (the dict backend posts synchronously).
std::vector<Change> Drain(MailboxSet& set, uint64_t* cursor) {
  return set.WaitForChanges(cursor, 0ms).changes;
}

TEST(DictBackendTest, IdsArePymapStyleObjectIds) {
  auto set = NewDictMailboxSet();
  auto id = set->AddMailbox("Archive");
  MAILFS_ASSERT_OK(id);
  EXPECT_TRUE(IsObjectId(*id, 'F')) << *id;
  auto inbox = MustGet(*set, "INBOX");
  ASSERT_NE(inbox, nullptr);
  EXPECT_TRUE(IsObjectId(inbox->mailbox_id(), 'F')) << inbox->mailbox_id();
  auto uid = inbox->Append(MakeAppendMessage(SampleMessage("ids")), false);
  MAILFS_ASSERT_OK(uid);
  auto info = inbox->Get(*uid);
  MAILFS_ASSERT_OK(info);
  EXPECT_TRUE(IsObjectId(info->email_id, 'M')) << info->email_id;
  EXPECT_TRUE(IsObjectId(info->thread_id, 'T')) << info->thread_id;
}

TEST(DictBackendTest, MessagesWithoutMessageIdGetTheirOwnThreads) {
  auto set = NewDictMailboxSet();
  auto inbox = MustGet(*set, "INBOX");
  ASSERT_NE(inbox, nullptr);
  std::string bare = "From: a@example.org\r\nSubject: no id\r\n\r\nbody\r\n";
  auto first = inbox->Append(MakeAppendMessage(bare), false);
  auto second = inbox->Append(MakeAppendMessage(bare), false);
  MAILFS_ASSERT_OK(first);
  MAILFS_ASSERT_OK(second);
  EXPECT_NE(inbox->Get(*first)->thread_id, inbox->Get(*second)->thread_id);
  EXPECT_NE(inbox->Get(*first)->email_id, inbox->Get(*second)->email_id);
}

TEST(DictBackendTest, EmptyContentIsStoredAtThisLevel) {
  // Refusing empty or non-message content is the driver's job (DESIGN.md
  // "Writing"); the store keeps whatever bytes it is given.
  auto set = NewDictMailboxSet();
  auto inbox = MustGet(*set, "INBOX");
  ASSERT_NE(inbox, nullptr);
  auto uid = inbox->Append(MakeAppendMessage(""), false);
  MAILFS_ASSERT_OK(uid);
  EXPECT_EQ(inbox->Get(*uid)->size, 0u);
  AppendMessage no_content;
  MAILFS_EXPECT_CODE(inbox->Append(no_content, false), kInvalidArgument);
}

TEST(DictBackendTest, AppendReadsContentThatIsNotInMemory) {
  // A reader that is not a StringContent is read through ReadAt.
  class ChunkyReader final : public ContentReader {
   public:
    explicit ChunkyReader(std::string bytes) : bytes_(std::move(bytes)) {}
    uint64_t size() const override { return bytes_.size(); }
    Result<size_t> ReadAt(uint64_t offset, std::span<char> out) const override {
      if (offset >= bytes_.size()) return size_t{0};
      size_t n = std::min<size_t>({out.size(), bytes_.size() - offset, 7});
      std::copy_n(bytes_.data() + offset, n, out.data());
      return n;
    }

   private:
    std::string bytes_;
  };
  auto set = NewDictMailboxSet();
  auto inbox = MustGet(*set, "INBOX");
  ASSERT_NE(inbox, nullptr);
  AppendMessage message;
  message.content = std::make_shared<ChunkyReader>(SampleMessage("chunky"));
  auto uid = inbox->Append(message, false);
  MAILFS_ASSERT_OK(uid);
  auto reader = inbox->Open(*uid);
  MAILFS_ASSERT_OK(reader);
  EXPECT_EQ(*ReadAll(**reader), SampleMessage("chunky"));
}

TEST(DictBackendTest, SetReadOnly) {
  auto set = NewDictMailboxSet();
  MAILFS_EXPECT_CODE(set->SetReadOnly("Missing", true), kNotFound);
  MAILFS_EXPECT_CODE(set->SetReadOnly("/bad", true), kInvalidName);
  MAILFS_ASSERT_OK(set->AddMailbox("Box"));
  auto box = MustGet(*set, "Box");
  ASSERT_NE(box, nullptr);
  MAILFS_ASSERT_OK(set->SetReadOnly("Box", true));
  MAILFS_EXPECT_CODE(box->Append(MakeAppendMessage(SampleMessage("x")), false), kReadOnly);
  MAILFS_ASSERT_OK(set->SetReadOnly("Box", false));
  EXPECT_FALSE(box->readonly());
  MAILFS_EXPECT_OK(box->Append(MakeAppendMessage(SampleMessage("x")), false));
}

TEST(DictBackendTest, RenameLeavesSubscriptionsAlone) {
  auto set = NewDictMailboxSet();
  MAILFS_ASSERT_OK(set->AddMailbox("A"));
  MAILFS_ASSERT_OK(set->AddMailbox("A/B"));
  MAILFS_ASSERT_OK(set->SetSubscribed("A/B", true));
  MAILFS_ASSERT_OK(set->RenameMailbox("A", "C"));
  EXPECT_EQ(*set->ListSubscribed(), std::vector<std::string>{"A/B"});
}

TEST(DictBackendTest, RenamePostsEveryOldAndNewName) {
  auto set = NewDictMailboxSet();
  MAILFS_ASSERT_OK(set->AddMailbox("A"));
  MAILFS_ASSERT_OK(set->AddMailbox("A/B"));
  uint64_t cursor = set->ChangeCursor();
  MAILFS_ASSERT_OK(set->RenameMailbox("A", "C"));
  using K = Change::Kind;
  EXPECT_EQ(Drain(*set, &cursor), (std::vector<Change>{{K::kMailboxRemoved, "A", {}},
                                                       {K::kMailboxRemoved, "A/B", {}},
                                                       {K::kMailboxAdded, "C", {}},
                                                       {K::kMailboxAdded, "C/B", {}}}));
  MAILFS_ASSERT_OK(set->RenameMailbox("INBOX", "Old"));
  EXPECT_EQ(Drain(*set, &cursor), (std::vector<Change>{{K::kMailboxAdded, "Old", {}},
                                                       {K::kMailboxRemoved, "INBOX", {}},
                                                       {K::kMailboxAdded, "INBOX", {}}}));
}

TEST(DictBackendTest, ThePostedChangesMatchTheOperations) {
  auto set = NewDictMailboxSet();
  auto inbox = MustGet(*set, "INBOX");
  ASSERT_NE(inbox, nullptr);
  MAILFS_ASSERT_OK(set->AddMailbox("Dest"));
  auto dest = MustGet(*set, "Dest");
  uint64_t cursor = set->ChangeCursor();

  auto a = inbox->Append(MakeAppendMessage(SampleMessage("a")), false);
  auto b = inbox->Append(MakeAppendMessage(SampleMessage("b")), false);
  MAILFS_ASSERT_OK(a);
  MAILFS_ASSERT_OK(b);
  MAILFS_ASSERT_OK(inbox->Update(*a, *FlagSet::Parse("\\Seen"), FlagOp::kAdd));
  MAILFS_ASSERT_OK(inbox->Update(*a, *FlagSet::Parse("\\Seen"), FlagOp::kAdd));  // no change
  auto moved = inbox->Move(*b, *dest, false);
  MAILFS_ASSERT_OK(moved);
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{*a, 999}));
  MAILFS_ASSERT_OK(inbox->Delete(std::vector<uint32_t>{999}));  // nothing expunged
  MAILFS_ASSERT_OK(set->SetSubscribed("Dest", true));
  MAILFS_ASSERT_OK(set->SetSubscribed("Dest", true));  // no change

  using K = Change::Kind;
  EXPECT_EQ(Drain(*set, &cursor), (std::vector<Change>{
                                      {K::kMessagesAdded, "INBOX", {*a}},
                                      {K::kMessagesAdded, "INBOX", {*b}},
                                      {K::kFlagsChanged, "INBOX", {*a}},
                                      {K::kMessagesAdded, "Dest", {*moved}},
                                      {K::kMessagesExpunged, "INBOX", {*b}},
                                      {K::kMessagesExpunged, "INBOX", {*a}},
                                      {K::kSubscriptions, "Dest", {}},
                                  }));
}

TEST(DictBackendTest, RefusedOperationsPostNothing) {
  auto set = NewDictMailboxSet();
  MAILFS_ASSERT_OK(set->AddMailbox("A"));
  MAILFS_ASSERT_OK(set->AddMailbox("B"));
  uint64_t cursor = set->ChangeCursor();
  MAILFS_EXPECT_CODE(set->AddMailbox("A"), kExists);
  MAILFS_EXPECT_CODE(set->RenameMailbox("A", "B"), kExists);
  MAILFS_EXPECT_CODE(set->DeleteMailbox("INBOX"), kNotPermitted);
  MAILFS_ASSERT_OK(set->SetReadOnly("A", true));
  auto a = MustGet(*set, "A");
  MAILFS_EXPECT_CODE(a->Append(MakeAppendMessage(SampleMessage("x")), false), kReadOnly);
  EXPECT_TRUE(Drain(*set, &cursor).empty());
}

TEST(DictBackendTest, AHandleOutlivesItsSet) {
  std::shared_ptr<MailboxData> inbox;
  {
    auto set = NewDictMailboxSet();
    inbox = MustGet(*set, "INBOX");
  }
  ASSERT_NE(inbox, nullptr);
  MAILFS_EXPECT_OK(inbox->Append(MakeAppendMessage(SampleMessage("orphan")), false));
}

// --- the demo corpus -----------------------------------------------------------

// Decodes standard base64, skipping line breaks; nullopt on anything else.
std::optional<std::string> DecodeBase64(std::string_view text) {
  static const std::string kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  size_t padding = 0;
  for (char c : text) {
    if (c == '\r' || c == '\n') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    size_t value = kAlphabet.find(c);
    if (value == std::string::npos || padding > 0) return std::nullopt;
    bits = (bits << 6) | static_cast<uint32_t>(value);
    if (++count == 4) {
      out += static_cast<char>(bits >> 16);
      out += static_cast<char>(bits >> 8);
      out += static_cast<char>(bits);
      bits = 0;
      count = 0;
    }
  }
  if (count == 1 || (count + padding) % 4 != 0) return std::nullopt;
  if (count == 2) out += static_cast<char>(bits >> 4);
  if (count == 3) {
    out += static_cast<char>(bits >> 10);
    out += static_cast<char>(bits >> 2);
  }
  return out;
}

struct DemoMessage {
  MessageInfo info;
  std::string bytes;
};

std::map<std::string, std::vector<DemoMessage>> LoadDemo(MailboxSet& set) {
  std::map<std::string, std::vector<DemoMessage>> demo;
  auto names = set.ListMailboxes();
  EXPECT_TRUE(test::IsOk(names.status()));
  if (!names.ok()) return demo;
  for (const std::string& name : *names) {
    auto box = MustGet(set, name);
    auto found = box->Find(1, kMaxUid);
    EXPECT_TRUE(test::IsOk(found.status()));
    if (!found.ok()) continue;
    for (const MessageInfo& info : *found) {
      demo[name].push_back({info, *ReadAll(**box->Open(info.uid))});
    }
  }
  return demo;
}

const DemoMessage* FindBySubject(const std::vector<DemoMessage>& messages,
                                 std::string_view subject) {
  for (const DemoMessage& m : messages) {
    if (HeaderValue(m.bytes, "Subject") == subject) return &m;
  }
  return nullptr;
}

TEST(DemoCorpusTest, HasTheDocumentedMailboxes) {
  auto set = NewDemoMailboxSet();
  EXPECT_EQ(*set->ListMailboxes(), (std::vector<std::string>{"INBOX", "Sent", "Trash"}));
  EXPECT_EQ(*set->ListSubscribed(), (std::vector<std::string>{"INBOX", "Sent", "Trash"}));
  auto demo = LoadDemo(*set);
  EXPECT_EQ(demo["INBOX"].size(), 6u);
  EXPECT_EQ(demo["Sent"].size(), 2u);
  EXPECT_EQ(demo["Trash"].size(), 1u);
  EXPECT_FALSE(MustGet(*set, "INBOX")->readonly());
  EXPECT_FALSE(MustGet(*set, "Sent")->readonly());
  EXPECT_TRUE(MustGet(*set, "Trash")->readonly());
}

TEST(DemoCorpusTest, MessagesAreWellFormedCrlfMail) {
  auto set = NewDemoMailboxSet();
  for (const auto& [mailbox, messages] : LoadDemo(*set)) {
    for (const DemoMessage& m : messages) {
      SCOPED_TRACE(mailbox + "/" + std::to_string(m.info.uid));
      EXPECT_TRUE(LooksLikeMessage(m.bytes));
      EXPECT_EQ(m.info.size, m.bytes.size());
      for (size_t i = 0; i < m.bytes.size(); ++i) {
        if (m.bytes[i] == '\n') {
          ASSERT_TRUE(i > 0 && m.bytes[i - 1] == '\r') << "bare LF at " << i;
        }
      }
      EXPECT_NE(m.bytes.find("\r\n\r\n"), std::string::npos) << "no body";
      for (std::string_view header :
           {"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}) {
        EXPECT_FALSE(HeaderValue(m.bytes, header).empty()) << header;
      }
      // Deterministic internal dates in 2026 (2026-01-01 .. 2027-01-01 UTC).
      EXPECT_GE(m.info.internal_date, 1767225600);
      EXPECT_LT(m.info.internal_date, 1798761600);
    }
  }
}

TEST(DemoCorpusTest, InboxShowsTheFeaturesOfTheMount) {
  auto set = NewDemoMailboxSet();
  auto demo = LoadDemo(*set);
  const auto& inbox = demo["INBOX"];
  int seen = 0;
  int unseen = 0;
  int flagged = 0;
  int important = 0;
  for (const DemoMessage& m : inbox) {
    (m.info.flags.Has(SystemFlag::kSeen) ? seen : unseen)++;
    if (m.info.flags.Has(SystemFlag::kFlagged)) ++flagged;
    if (m.info.flags.HasKeyword("$Important")) ++important;
  }
  EXPECT_GE(seen, 2);
  EXPECT_GE(unseen, 1);
  EXPECT_GE(flagged, 1);
  EXPECT_GE(important, 1);
  auto snapshot = MustGet(*set, "INBOX")->Snapshot();
  MAILFS_ASSERT_OK(snapshot);
  EXPECT_EQ(snapshot->unseen, static_cast<uint32_t>(unseen));
}

TEST(DemoCorpusTest, TheAttachmentIsRealBase64) {
  auto set = NewDemoMailboxSet();
  auto demo = LoadDemo(*set);
  const DemoMessage* notes = nullptr;
  for (const DemoMessage& m : demo["INBOX"]) {
    if (HeaderValue(m.bytes, "Content-Type").starts_with("multipart/mixed")) notes = &m;
  }
  ASSERT_NE(notes, nullptr);
  std::string type = HeaderValue(notes->bytes, "Content-Type");
  size_t b = type.find("boundary=\"");
  ASSERT_NE(b, std::string::npos);
  std::string boundary = "--" + type.substr(b + 10, type.find('"', b + 10) - b - 10);
  // The attachment part: after its Content-Transfer-Encoding: base64 header.
  size_t part = notes->bytes.find("Content-Disposition: attachment");
  ASSERT_NE(part, std::string::npos);
  size_t body = notes->bytes.find("\r\n\r\n", part);
  ASSERT_NE(body, std::string::npos);
  size_t end = notes->bytes.find(boundary, body);
  ASSERT_NE(end, std::string::npos);
  auto decoded = DecodeBase64(notes->bytes.substr(body + 4, end - body - 4));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_TRUE(decoded->starts_with("Agenda for Thursday\r\n")) << *decoded;
  EXPECT_NE(notes->bytes.find(boundary + "--\r\n"), std::string::npos) << "no closing boundary";
}

TEST(DemoCorpusTest, TheEncodedSubjectIsGrusseAusKoeln) {
  auto set = NewDemoMailboxSet();
  auto demo = LoadDemo(*set);
  const std::string kPrefix = "=?UTF-8?B?";
  const DemoMessage* found = nullptr;
  for (const DemoMessage& m : demo["INBOX"]) {
    if (HeaderValue(m.bytes, "Subject").starts_with(kPrefix)) found = &m;
  }
  ASSERT_NE(found, nullptr);
  std::string subject = HeaderValue(found->bytes, "Subject");
  ASSERT_TRUE(subject.ends_with("?="));
  auto decoded = DecodeBase64(subject.substr(kPrefix.size(), subject.size() - kPrefix.size() - 2));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded,
            "Gr\xc3\xbc\xc3\x9f"
            "e aus K\xc3\xb6ln");
}

TEST(DemoCorpusTest, TheKickoffThreadSpansInboxAndSent) {
  auto set = NewDemoMailboxSet();
  auto demo = LoadDemo(*set);
  const DemoMessage* kickoff = FindBySubject(demo["INBOX"], "Project kickoff");
  const DemoMessage* reply = FindBySubject(demo["INBOX"], "Re: Project kickoff");
  const DemoMessage* sent_reply = FindBySubject(demo["Sent"], "Re: Project kickoff");
  ASSERT_NE(kickoff, nullptr);
  ASSERT_NE(reply, nullptr);
  ASSERT_NE(sent_reply, nullptr);
  EXPECT_EQ(HeaderValue(reply->bytes, "References"), HeaderValue(kickoff->bytes, "Message-ID"));
  EXPECT_EQ(reply->info.thread_id, kickoff->info.thread_id);
  EXPECT_EQ(sent_reply->info.thread_id, kickoff->info.thread_id);
  EXPECT_TRUE(kickoff->info.flags.Has(SystemFlag::kAnswered));
  for (const DemoMessage& other : demo["INBOX"]) {
    if (&other == kickoff || &other == reply) continue;
    EXPECT_NE(other.info.thread_id, kickoff->info.thread_id);
  }
}

TEST(DemoCorpusTest, IsTheSameEveryTimeExceptForIds) {
  auto first = LoadDemo(*NewDemoMailboxSet());
  auto second = LoadDemo(*NewDemoMailboxSet());
  ASSERT_EQ(first.size(), second.size());
  for (const auto& [mailbox, messages] : first) {
    ASSERT_EQ(messages.size(), second[mailbox].size()) << mailbox;
    for (size_t i = 0; i < messages.size(); ++i) {
      const DemoMessage& a = messages[i];
      const DemoMessage& b = second[mailbox][i];
      EXPECT_EQ(a.bytes, b.bytes);
      EXPECT_EQ(a.info.uid, b.info.uid);
      EXPECT_EQ(a.info.flags, b.info.flags);
      EXPECT_EQ(a.info.internal_date, b.info.internal_date);
    }
  }
}

// --- the registry ----------------------------------------------------------------

TEST(RegistryTest, OpensTheInMemorySources) {
  auto memory = OpenSource("memory", {});
  MAILFS_ASSERT_OK(memory);
  EXPECT_EQ(*(*memory)->ListMailboxes(), std::vector<std::string>{"INBOX"});
  EXPECT_TRUE((*(*memory)->GetMailbox("INBOX"))->Find(1, kMaxUid)->empty());

  auto demo = OpenSource("demo", {{"spool", "/var/tmp/x"}});
  MAILFS_ASSERT_OK(demo);
  EXPECT_EQ(*(*demo)->ListMailboxes(), (std::vector<std::string>{"INBOX", "Sent", "Trash"}));
}

TEST(RegistryTest, RefusesUnknownSourcesAndOptions) {
  auto unknown = OpenSource("nosuch", {});
  MAILFS_ASSERT_CODE(unknown, kInvalidArgument);
  EXPECT_EQ(unknown.status().detail(),
            "unknown source 'nosuch' (known: demo, memory, maildir:PATH, PATH, "
            "redis://[user[:password]@]host[:port][/db])");

  auto bad_option = OpenSource("memory", {{"layout", "fs"}});
  MAILFS_ASSERT_CODE(bad_option, kInvalidArgument);
  EXPECT_NE(bad_option.status().detail().find("layout"), std::string::npos);
  MAILFS_EXPECT_CODE(OpenSource("demo", {{"spool", "/tmp"}, {"login", "sam"}}), kInvalidArgument);
}

TEST(RegistryTest, DescribesEverySourceItCanOpen) {
  std::vector<SourceHelp> sources = DescribeSources();
  ASSERT_EQ(sources.size(), 5u);
  test::TempDir dir;
  for (const SourceHelp& help : sources) {
    EXPECT_FALSE(help.description.empty());
    // PATH in a syntax stands for a directory, a redis:// URL for the
    // suite's shared server (with a key prefix of this test's own).
    std::string source = help.syntax;
    SourceOptions options;
    if (size_t path = source.find("PATH"); path != std::string::npos) {
      source.replace(path, 4, dir.path());
    }
    if (source.starts_with("redis://")) {
      source = "redis://" + test::SharedRedisAddress();
      options = {{"prefix", "/mailfs-test/registry-" + std::to_string(getpid())},
                 {"login", "registry"}};
    }
    MAILFS_EXPECT_OK(OpenSource(source, options)) << help.syntax;
  }
}

TEST(RegistryTest, OpensAMaildirWithItsOptions) {
  test::TempDir dir;
  auto plain = OpenSource(dir.path(), {});
  MAILFS_ASSERT_OK(plain);
  EXPECT_EQ(*(*plain)->ListMailboxes(), std::vector<std::string>{"INBOX"});
  MAILFS_ASSERT_OK(OpenSource("maildir:" + dir.path(), {{"layout", "fs"},
                                                        {"names", "utf8"},
                                                        {"fsync", "no"},
                                                        {"lock_timeout", "2.5"},
                                                        {"spool", "/var/tmp/x"}}));
  for (const auto& [name, value] :
       std::vector<std::pair<std::string, std::string>>{{"layout", "flat"},
                                                        {"names", "latin1"},
                                                        {"fsync", "maybe"},
                                                        {"lock_timeout", "soon"},
                                                        {"lock_timeout", "-1"},
                                                        {"login", "sam"}}) {
    auto refused = OpenSource("maildir:" + dir.path(), {{name, value}});
    MAILFS_EXPECT_CODE(refused, kInvalidArgument);
    EXPECT_NE(refused.status().detail().find(name), std::string::npos) << refused.status().detail();
  }
  MAILFS_EXPECT_CODE(OpenSource("maildir:relative/path", {}), kInvalidArgument);
  MAILFS_EXPECT_OK(OpenSource("maildir:" + dir.Path("new-store"), {}));  // created
  std::ofstream(dir.Path("plain-file")) << "not a directory";
  MAILFS_EXPECT_CODE(OpenSource("maildir:" + dir.Path("plain-file"), {}), kInvalidArgument);
}

}  // namespace
}  // namespace mailfs
