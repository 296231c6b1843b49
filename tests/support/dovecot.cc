#include "tests/support/dovecot.h"

#include <fcntl.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "tests/support/fixture_expectations.h"  // Sha256Hex
#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

using std::chrono::milliseconds;

// The user name doveadm is told in $USER. Only used in log lines and for
// %u expansion, which the config does not use.
constexpr const char* kUser = "mailfs-test";

// The fetch fields, in the order -f pager prints them (the order asked
// for). `text` must come last and after size.physical: Fetch cuts it by
// that size.
constexpr std::array<std::string_view, 7> kMetadataFields = {
    "uid", "flags", "size.physical", "size.virtual", "date.received.unixtime", "guid", "storageid"};

std::vector<std::string> SplitOn(std::string_view text, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    parts.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

template <typename T>
bool ParseNumber(std::string_view text, T* out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && ptr == text.data() + text.size() && !text.empty();
}

std::string Join(const std::vector<std::string>& words, std::string_view sep) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += sep;
    out += w;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Parsing `doveadm -f pager fetch` output.
//
// Each record is the fields in the order asked for, one "key: value\n"
// line each ("key:\n" when the value is empty); `text` is "text:\n"
// followed by the raw message bytes with nothing added. Records are
// separated by "\f\n" (none after the last). For example, for
// 'uid flags size.physical text':
//
//   uid: 1\nflags: \Seen \Recent\nsize.physical: 19\ntext:\nSubject: 1\n\nbody 1\n\f\nuid: 2\n...
//
// A message may itself contain "\f\nuid: ", so the text is cut by its
// size.physical, and the bytes after it must be "\f\n" or the end: anything
// else means the text was not size.physical bytes long (a file whose size
// does not match its ,S= is one way to get there).
class PagerParser {
 public:
  explicit PagerParser(std::string_view out) : out_(out) {}

  // Parses every record; nullopt with error() set when the output does not
  // have the expected shape.
  std::optional<std::vector<DovecotMessage>> Parse(bool with_text) {
    std::vector<DovecotMessage> messages;
    while (pos_ < out_.size()) {
      if (!messages.empty()) {
        if (!Consume("\f\n")) return Fail("no record separator");
      }
      DovecotMessage m;
      for (std::string_view field : kMetadataFields) {
        std::string value;
        if (!Line(field, &value)) return std::nullopt;
        if (!Assign(field, value, &m)) return std::nullopt;
      }
      if (with_text) {
        if (!Consume("text:")) return Fail("expected text:");
        if (!Consume("\n") && !Consume(" ")) return Fail("expected a newline after text:");
        if (out_.size() - pos_ < m.size) {
          return Fail("text of UID " + std::to_string(m.uid) + " shorter than size.physical " +
                      std::to_string(m.size));
        }
        m.bytes = std::string(out_.substr(pos_, m.size));
        pos_ += m.size;
        m.sha256 = Sha256Hex(m.bytes);
        if (pos_ != out_.size() && !out_.substr(pos_).starts_with("\f\nuid: ")) {
          return Fail("text of UID " + std::to_string(m.uid) +
                      " is not size.physical bytes long (" + std::to_string(m.size) + ")");
        }
      }
      messages.push_back(std::move(m));
    }
    return messages;
  }
  const std::string& error() const { return error_; }

 private:
  bool Consume(std::string_view token) {
    if (!out_.substr(pos_).starts_with(token)) return false;
    pos_ += token.size();
    return true;
  }
  std::nullopt_t Fail(std::string what) {
    error_ = what + " at byte " + std::to_string(pos_) + ": \"" +
             std::string(out_.substr(pos_, 60)) + "\"";
    return std::nullopt;
  }
  bool Line(std::string_view key, std::string* value) {
    if (!Consume(key) || !Consume(":")) {
      Fail("expected " + std::string(key) + ":");
      return false;
    }
    Consume(" ");
    size_t end = out_.find('\n', pos_);
    if (end == std::string_view::npos) {
      Fail("unterminated " + std::string(key));
      return false;
    }
    *value = std::string(out_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return true;
  }
  bool Assign(std::string_view field, const std::string& value, DovecotMessage* m) {
    bool ok = true;
    if (field == "uid") {
      ok = ParseNumber(value, &m->uid);
    } else if (field == "flags") {
      for (auto& flag : SplitOn(value, ' ')) {
        if (!flag.empty() && flag != "\\Recent") m->flags.push_back(flag);
      }
      std::sort(m->flags.begin(), m->flags.end());
    } else if (field == "size.physical") {
      ok = ParseNumber(value, &m->size);
    } else if (field == "size.virtual") {
      ok = ParseNumber(value, &m->vsize);
    } else if (field == "date.received.unixtime") {
      ok = ParseNumber(value, &m->received);
    } else if (field == "guid") {
      m->guid = value;
    } else if (field == "storageid") {
      m->storage_id = value;
    }
    if (!ok) Fail("bad " + std::string(field) + " value '" + value + "'");
    return ok;
  }

  std::string_view out_;
  size_t pos_ = 0;
  std::string error_;
};

// Lines of `-f tab` output without the header line, which must be
// `header`. nullopt when it is not.
std::optional<std::vector<std::string>> TabRows(const std::string& out, std::string_view header) {
  auto lines = Lines(out);
  if (lines.empty() || lines.front() != header) return std::nullopt;
  lines.erase(lines.begin());
  return lines;
}

std::string ShellCommandOf(const std::vector<std::string>& argv,
                           const std::vector<std::string>& env) {
  std::string command = "(cd / && exec env";
  for (const auto& e : env) command += " " + ShellQuote(e);
  for (const auto& a : argv) command += " " + ShellQuote(a);
  return command + ")";
}

}  // namespace

// ---------------------------------------------------------------------------

bool ChownTree(const std::string& path, uid_t uid, gid_t gid) {
  // nftw's callback cannot capture: the target ids and the first error go
  // through statics, guarded by this mutex.
  static std::mutex mu;
  static uid_t target_uid;
  static gid_t target_gid;
  static std::string first_error;
  std::lock_guard lock(mu);
  target_uid = uid;
  target_gid = gid;
  first_error.clear();
  int rc = ::nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int type, struct FTW*) {
        if (type == FTW_DNR || type == FTW_NS) {
          if (first_error.empty()) first_error = std::string("cannot read ") + p;
          return 0;
        }
        if (::lchown(p, target_uid, target_gid) != 0 && first_error.empty()) {
          first_error = std::string("lchown ") + p + ": " + std::strerror(errno);
        }
        return 0;
      },
      64, FTW_PHYS);
  if (rc != 0 && first_error.empty()) first_error = "nftw " + path + ": " + std::strerror(errno);
  if (!first_error.empty()) {
    ADD_FAILURE() << "ChownTree(" << path << "): " << first_error;
    return false;
  }
  return true;
}

bool PrepareStoreForDovecot(const std::string& store) {
  if (store.empty() || store[0] != '/') {
    ADD_FAILURE() << "PrepareStoreForDovecot: not an absolute path: '" << store << "'";
    return false;
  }
  if (!ChownTree(store, kDovecotMailUid, kDovecotMailGid)) return false;
  // Dovecot, as uid 5000, must be able to walk down to the store.
  for (auto dir = std::filesystem::path(store).parent_path(); dir != dir.root_path();
       dir = dir.parent_path()) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) {
      ADD_FAILURE() << "stat " << dir << ": " << std::strerror(errno);
      return false;
    }
    if ((st.st_mode & S_IXOTH) != 0) continue;
    if (::chmod(dir.c_str(), (st.st_mode & 07777) | S_IXOTH) != 0) {
      ADD_FAILURE() << "chmod o+x " << dir << ": " << std::strerror(errno);
      return false;
    }
  }
  return true;
}

std::string DoveadmResult::Describe() const {
  std::ostringstream os;
  if (timed_out) os << "timed out, ";
  os << "exit " << exit_code;
  if (!err.empty()) os << "\n--- stderr ---\n" << err.substr(0, 4000);
  if (!out.empty()) os << "\n--- stdout ---\n" << out.substr(0, 2000);
  return os.str();
}

std::string DovecotMessage::FlagString() const { return Join(flags, " "); }

// ---------------------------------------------------------------------------

std::unique_ptr<Dovecot> Dovecot::Create(DovecotOptions options) {
  if (options.maildir.empty() || options.maildir[0] != '/') {
    ADD_FAILURE() << "Dovecot: the maildir must be an absolute path: '" << options.maildir << "'";
    return nullptr;
  }
  // The tests need doveadm; without it they fail (scripts/install-deps
  // installs dovecot-core).
  if (::access("/usr/bin/doveadm", X_OK) != 0) {
    ADD_FAILURE() << "doveadm is not installed (/usr/bin/doveadm: " << std::strerror(errno)
                  << "): the Dovecot interop tests need the dovecot-core package "
                     "(scripts/install-deps installs it)";
    return nullptr;
  }
  std::unique_ptr<Dovecot> d(new Dovecot());
  d->options_ = std::move(options);
  std::string templ = std::string(kTempPrefix) + "dovecot-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << templ << ": " << std::strerror(errno);
    return nullptr;
  }
  d->dir_ = templ;
  d->config_ = d->dir_ + "/dovecot.conf";
  d->home_ = d->dir_ + "/home";
  // uid 5000 must reach its home; the config stays readable by root only
  // (doveadm reads it before dropping privileges).
  if (::chmod(d->dir_.c_str(), 0711) != 0 || ::mkdir(d->home_.c_str(), 0700) != 0 ||
      ::chown(d->home_.c_str(), kDovecotMailUid, kDovecotMailGid) != 0) {
    ADD_FAILURE() << "setting up " << d->dir_ << ": " << std::strerror(errno);
    return nullptr;
  }

  std::string location = "maildir:" + d->options_.maildir;
  if (d->options_.layout_fs) location += ":LAYOUT=fs";
  if (d->options_.index_in_memory) location += ":INDEX=MEMORY";
  std::ostringstream conf;
  conf << "# Written by tests/support/dovecot.cc: doveadm only, no server.\n"
       << "mail_location = " << location << "\n"
       << "mail_uid = " << kDovecotMailUid << "\n"
       << "mail_gid = " << kDovecotMailGid << "\n"
       << "first_valid_uid = " << kDovecotMailUid << "\n"
       << "first_valid_gid = " << kDovecotMailGid
       << "\n"
       // The default wait for another writer's dotlock is 122 s.
       << "mail_max_lock_timeout = 5s\n"
       << "base_dir = " << d->dir_ << "/run\n"
       << "state_dir = " << d->dir_ << "/state\n"
       << "ssl = no\n"
       // doveadm's errors and warnings on its stderr, where Run finds them
       // (doveadm exits 0 after most of them).
       << "log_path = /dev/stderr\n"
       << "namespace inbox {\n"
       << "  inbox = yes\n"
       << "  separator = " << d->options_.separator << "\n"
       << "}\n";
  std::ofstream out(d->config_);
  out << conf.str();
  out.close();
  if (!out) {
    ADD_FAILURE() << "writing " << d->config_;
    return nullptr;
  }
  return d;
}

Dovecot::~Dovecot() {
  if (dir_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

DoveadmResult Dovecot::Run(const std::vector<std::string>& args, std::string_view stdin_bytes,
                           milliseconds timeout) const {
  DoveadmResult r;
  // The bytes go through a file rather than a pipe, so that a message of
  // any size reaches doveadm exactly and nothing can block on a full pipe.
  static std::atomic<uint64_t> next_input{0};
  const std::string input = dir_ + "/stdin-" + std::to_string(++next_input);
  {
    std::ofstream file(input, std::ios::binary);
    file.write(stdin_bytes.data(), static_cast<std::streamsize>(stdin_bytes.size()));
    if (!file) {
      r.err = "writing doveadm's stdin to " + input;
      return r;
    }
  }
  CommandResult run = RunShell(ShellCommand(args) + " < " + ShellQuote(input), "/", timeout);
  std::error_code ignored;
  std::filesystem::remove(input, ignored);
  r.exit_code = run.exit_code;
  r.timed_out = run.timed_out;
  r.out = std::move(run.out);
  r.err = std::move(run.err);
  return r;
}

std::string Dovecot::ShellCommand(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"/usr/bin/doveadm", "-c", config_};
  argv.insert(argv.end(), args.begin(), args.end());
  return ShellCommandOf(argv, {std::string("USER=") + kUser, "HOME=" + home_});
}

std::optional<DoveadmResult> Dovecot::RunOrFail(const std::vector<std::string>& args,
                                                std::string_view stdin_bytes) const {
  DoveadmResult r = Run(args, stdin_bytes);
  if (!r.ok()) {
    ADD_FAILURE() << "doveadm " << Join(args, " ") << ": " << r.Describe();
    return std::nullopt;
  }
  return r;
}

bool Dovecot::Save(std::string_view mailbox, std::string_view bytes) const {
  return RunOrFail({"save", "-m", std::string(mailbox)}, bytes).has_value();
}

std::optional<std::vector<DovecotMessage>> Dovecot::FetchFields(std::string_view mailbox,
                                                                bool with_text) const {
  auto status = MailboxStatus(mailbox);
  if (!status) return std::nullopt;
  std::string fields;
  for (auto f : kMetadataFields) fields += std::string(fields.empty() ? "" : " ") + std::string(f);
  if (with_text) fields += " text";
  std::vector<std::string> args = {"-f", "pager", "fetch", fields, "mailbox-guid", status->guid};
  auto r = RunOrFail(args);
  if (!r) return std::nullopt;
  PagerParser parser(r->out);
  auto messages = parser.Parse(with_text);
  if (!messages) {
    ADD_FAILURE() << "doveadm " << Join(args, " ")
                  << ": cannot parse the output: " << parser.error();
    return std::nullopt;
  }
  std::sort(messages->begin(), messages->end(),
            [](const DovecotMessage& a, const DovecotMessage& b) { return a.uid < b.uid; });
  return messages;
}

std::optional<std::vector<DovecotMessage>> Dovecot::Fetch(std::string_view mailbox) const {
  return FetchFields(mailbox, /*with_text=*/true);
}

std::optional<std::vector<DovecotMessage>> Dovecot::FetchMetadata(std::string_view mailbox) const {
  return FetchFields(mailbox, /*with_text=*/false);
}

std::optional<std::vector<std::string>> Dovecot::MailboxList() const {
  auto r = RunOrFail({"-f", "tab", "mailbox", "list"});
  if (!r) return std::nullopt;
  auto rows = TabRows(r->out, "mailbox");
  if (!rows) {
    ADD_FAILURE() << "doveadm mailbox list: unexpected output:\n" << r->out;
    return std::nullopt;
  }
  std::sort(rows->begin(), rows->end());
  return rows;
}

std::optional<std::vector<std::string>> Dovecot::SubscriptionList() const {
  auto r = RunOrFail({"-f", "tab", "mailbox", "list", "-s"});
  if (!r) return std::nullopt;
  auto rows = TabRows(r->out, "mailbox");
  if (!rows) {
    ADD_FAILURE() << "doveadm mailbox list -s: unexpected output:\n" << r->out;
    return std::nullopt;
  }
  return rows;
}

std::optional<std::vector<DovecotMailboxStatus>> Dovecot::AllMailboxStatus() const {
  // `*` matches every level; \Noselect names are left out silently.
  auto r = RunOrFail({"-f", "tab", "mailbox", "status", "messages uidnext uidvalidity guid", "*"});
  if (!r) return std::nullopt;
  auto rows = TabRows(r->out, "mailbox\tmessages\tuidnext\tuidvalidity\tguid");
  if (!rows) {
    ADD_FAILURE() << "doveadm mailbox status: unexpected output:\n" << r->out;
    return std::nullopt;
  }
  std::vector<DovecotMailboxStatus> all;
  for (const auto& row : *rows) {
    auto cols = SplitOn(row, '\t');
    DovecotMailboxStatus s;
    if (cols.size() != 5 || !ParseNumber(cols[1], &s.messages) ||
        !ParseNumber(cols[2], &s.uidnext) || !ParseNumber(cols[3], &s.uidvalidity)) {
      ADD_FAILURE() << "doveadm mailbox status: bad line '" << row << "'";
      return std::nullopt;
    }
    s.name = cols[0];
    s.guid = cols[4];
    all.push_back(std::move(s));
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return all;
}

std::optional<DovecotMailboxStatus> Dovecot::MailboxStatus(std::string_view mailbox) const {
  auto all = AllMailboxStatus();
  if (!all) return std::nullopt;
  for (auto& s : *all) {
    if (s.name == mailbox) return s;
  }
  std::string names;
  for (const auto& s : *all) names += " '" + s.name + "'";
  ADD_FAILURE() << "Dovecot has no selectable mailbox '" << mailbox << "'; it has:" << names;
  return std::nullopt;
}

bool Dovecot::MailboxCreate(std::string_view mailbox) const {
  return RunOrFail({"mailbox", "create", std::string(mailbox)}).has_value();
}

bool Dovecot::Flags(std::string_view verb, std::string_view mailbox, uint32_t uid,
                    std::string_view flags) const {
  auto status = MailboxStatus(mailbox);
  if (!status) return false;
  return RunOrFail({"flags", std::string(verb), std::string(flags), "mailbox-guid", status->guid,
                    "uid", std::to_string(uid)})
      .has_value();
}

bool Dovecot::FlagsAdd(std::string_view mailbox, uint32_t uid, std::string_view flags) const {
  return Flags("add", mailbox, uid, flags);
}

bool Dovecot::FlagsRemove(std::string_view mailbox, uint32_t uid, std::string_view flags) const {
  return Flags("remove", mailbox, uid, flags);
}

bool Dovecot::FlagsReplace(std::string_view mailbox, uint32_t uid, std::string_view flags) const {
  return Flags("replace", mailbox, uid, flags);
}

bool Dovecot::Expunge(std::string_view mailbox, uint32_t uid) const {
  auto status = MailboxStatus(mailbox);
  if (!status) return false;
  return RunOrFail({"expunge", "mailbox-guid", status->guid, "uid", std::to_string(uid)})
      .has_value();
}

bool Dovecot::Move(std::string_view from, uint32_t uid, std::string_view to) const {
  auto status = MailboxStatus(from);
  if (!status) return false;
  return RunOrFail(
             {"move", std::string(to), "mailbox-guid", status->guid, "uid", std::to_string(uid)})
      .has_value();
}

bool Dovecot::ForceResync(std::string_view mailbox) const {
  return RunOrFail({"force-resync", std::string(mailbox)}).has_value();
}

}  // namespace mailfs::test
