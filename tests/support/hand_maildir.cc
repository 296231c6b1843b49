#include "tests/support/hand_maildir.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <sstream>

#include "backends/maildir/format/uidlist.h"
#include "tests/support/dovecot.h"
#include "tests/support/mount_fixture.h"

namespace mailfs::test {
namespace {

// The sink behind LogCapture: records the formatted message of every log
// call while enabled.
class CaptureSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  void Enable(bool on) {
    std::lock_guard lock(mutex_);
    enabled_ = on;
    lines_.clear();
  }
  void Clear() {
    std::lock_guard lock(mutex_);
    lines_.clear();
  }
  std::vector<std::string> Lines() {
    std::lock_guard lock(mutex_);
    return lines_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (!enabled_ || lines_.size() >= 10000) return;
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}

 private:
  bool enabled_ = false;
  std::vector<std::string> lines_;
};

CaptureSink& Sink() {
  static std::shared_ptr<CaptureSink> sink = [] {
    auto made = std::make_shared<CaptureSink>();
    spdlog::default_logger()->sinks().push_back(made);
    return made;
  }();
  return *sink;
}

}  // namespace

LogCapture::LogCapture() { Sink().Enable(true); }
LogCapture::~LogCapture() { Sink().Enable(false); }
std::vector<std::string> LogCapture::Lines() const { return Sink().Lines(); }
void LogCapture::Clear() { Sink().Clear(); }

bool LogCapture::Has(std::initializer_list<std::string_view> parts) const {
  for (const std::string& line : Lines()) {
    bool all = true;
    for (std::string_view part : parts) all = all && line.find(part) != std::string::npos;
    if (all) return true;
  }
  return false;
}

std::string LogCapture::Dump() const {
  std::string out = "log:\n";
  for (const std::string& line : Lines()) out += "  " + line + "\n";
  return out;
}

std::string HostileTestMessage(std::string_view tag) {
  std::string t(tag);
  return "From: Hostile Data <hostile@example.org>\nSubject: hostile " + t + "\nMessage-ID: <" + t +
         "@mailfs.test>\n\nbody of " + t + "\n";
}

std::string HandUidlistHeader(uint32_t next_uid) {
  return "3 V" + std::to_string(kHandUidValidity) + " N" + std::to_string(next_uid) + " G" +
         std::string(kHandGuid) + "\n";
}

bool MakeMaildirDirs(const std::string& dir) {
  for (const std::string& d : {dir, dir + "/cur", dir + "/new", dir + "/tmp"}) {
    if (::mkdir(d.c_str(), 0755) != 0) {
      ADD_FAILURE() << "mkdir " << d << ": " << std::strerror(errno);
      return false;
    }
  }
  return true;
}

bool WriteBytes(const std::string& path, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    ADD_FAILURE() << "create " << path << ": " << std::strerror(errno);
    return false;
  }
  bool ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  if (!ok) ADD_FAILURE() << "write " << path << ": " << std::strerror(errno);
  ::close(fd);
  return ok;
}

std::optional<std::string> ReadBytes(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (n < 0) return std::nullopt;
  return out;
}

HandMessage WriteHandMessage(const std::string& dir, std::string_view tag, int n, bool in_new,
                             std::string_view info) {
  HandMessage m;
  m.tag = std::string(tag);
  m.bytes = HostileTestMessage(tag);
  m.mtime = 1700000000 + 60 * static_cast<int64_t>(n);
  m.base = std::to_string(m.mtime) + ".M" + std::to_string(n) +
           "P4242.hostile,S=" + std::to_string(m.bytes.size()) +
           ",W=" + std::to_string(maildir::VirtualSize(m.bytes));
  m.path = dir + (in_new ? "/new/" + m.base : "/cur/" + m.base + std::string(info));
  // Through tmp/ as the Maildir protocol asks: the file appears in cur/ or
  // new/ whole (a watcher that reads it at once finds every byte).
  std::string tmp = dir + "/tmp/" + m.base;
  if (!WriteBytes(tmp, m.bytes)) return m;
  struct timespec times[2] = {{m.mtime, 0}, {m.mtime, 0}};
  if (::utimensat(AT_FDCWD, tmp.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    ADD_FAILURE() << "utimensat " << tmp << ": " << std::strerror(errno);
  }
  if (::rename(tmp.c_str(), m.path.c_str()) != 0) {
    ADD_FAILURE() << "rename " << tmp << " " << m.path << ": " << std::strerror(errno);
  }
  return m;
}

std::map<std::string, std::string> MessageFilesByBase(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const char* sub : {"/cur", "/new"}) {
    std::string path = dir + sub;
    DIR* d = ::opendir(path.c_str());
    if (d == nullptr) continue;
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.empty() || name[0] == '.') continue;
      struct stat st;
      std::string file = path + "/" + name;
      if (::lstat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      auto bytes = ReadBytes(file);
      if (!bytes) continue;
      out[name.substr(0, name.find(':'))] = *bytes;
    }
    ::closedir(d);
  }
  return out;
}

std::map<uint32_t, std::string> BackendContents(MailboxData& mailbox) {
  std::map<uint32_t, std::string> out;
  auto infos = mailbox.Find(1, std::numeric_limits<uint32_t>::max());
  if (!infos.ok()) {
    ADD_FAILURE() << "Find: " << infos.status().ToString();
    return out;
  }
  for (const MessageInfo& info : *infos) {
    auto reader = mailbox.Open(info.uid);
    if (!reader.ok()) {
      ADD_FAILURE() << "Open(" << info.uid << "): " << reader.status().ToString();
      continue;
    }
    auto bytes = ReadAll(**reader);
    if (!bytes.ok()) {
      ADD_FAILURE() << "read UID " << info.uid << ": " << bytes.status().ToString();
      continue;
    }
    if (info.size != bytes->size()) {
      ADD_FAILURE() << "UID " << info.uid << ": size " << info.size << " but " << bytes->size()
                    << " bytes";
    }
    out[info.uid] = std::move(bytes).value();
  }
  return out;
}

std::string UidlistMismatch(const std::string& dir, uint32_t uid_validity,
                            const std::map<uint32_t, std::string>& contents) {
  std::ostringstream diff;
  auto bytes = ReadBytes(dir + "/dovecot-uidlist");
  if (!bytes) return "cannot read " + dir + "/dovecot-uidlist";
  auto parsed = maildir::Uidlist::Parse(*bytes);
  if (!parsed.ok()) return "uidlist does not parse: " + parsed.status().ToString() + "\n" + *bytes;
  for (const auto& problem : parsed->problems) {
    diff << "uidlist line " << problem.line << ": " << problem.reason << "\n";
  }
  if (parsed->header.uid_validity != uid_validity) {
    diff << "UIDVALIDITY " << parsed->header.uid_validity << ", expected " << uid_validity << "\n";
  }
  std::map<std::string, std::string> base_of_bytes;
  for (const auto& [base, file_bytes] : MessageFilesByBase(dir)) base_of_bytes[file_bytes] = base;
  std::map<uint32_t, std::string> expected;  // UID -> base name
  for (const auto& [uid, message] : contents) {
    auto it = base_of_bytes.find(message);
    if (it == base_of_bytes.end()) {
      diff << "UID " << uid << ": no file on disk holds its bytes\n";
      continue;
    }
    expected[uid] = it->second;
  }
  // Every message has its line; any other line (kept for a file that is
  // gone, as Dovecot keeps them until a rewrite) names no message file.
  std::map<uint32_t, std::string> lines;
  for (const auto& record : parsed->records) {
    std::string base(record.BaseName());
    auto wanted = expected.find(record.uid);
    if (wanted != expected.end()) {
      lines[record.uid] = base;
      continue;
    }
    for (const auto& [file_bytes, file_base] : base_of_bytes) {
      if (file_base == base) {
        diff << "line " << record.uid << " :" << base << " names a file the backend does not "
             << "show under that UID\n";
      }
    }
  }
  if (lines != expected) {
    diff << "uidlist lines " << ::testing::PrintToString(lines) << "\nexpected "
         << ::testing::PrintToString(expected) << "\n";
  }
  if (!contents.empty() && parsed->NextUid() <= contents.rbegin()->first) {
    diff << "next UID " << parsed->NextUid() << " not above UID " << contents.rbegin()->first
         << "\n";
  }
  std::string out = diff.str();
  if (!out.empty()) out += "--- dovecot-uidlist ---\n" + *bytes;
  return out;
}

std::string DovecotMismatch(const std::string& maildir, const std::string& copy,
                            uint32_t uid_validity,
                            const std::map<uint32_t, std::string>& contents) {
  auto cp = RunShell("cp -a " + ShellQuote(maildir) + " " + ShellQuote(copy), "");
  if (!cp.ok()) return "cp -a: " + cp.Describe();
  if (!PrepareStoreForDovecot(copy)) return "cannot prepare the copy for Dovecot";
  auto dovecot = Dovecot::Create({.maildir = copy, .index_in_memory = true});
  if (dovecot == nullptr) return "no Dovecot";
  std::ostringstream diff;
  auto status = dovecot->MailboxStatus("INBOX");
  if (!status) return "doveadm mailbox status failed";
  if (status->uidvalidity != uid_validity) {
    diff << "Dovecot's UIDVALIDITY " << status->uidvalidity << ", expected " << uid_validity
         << "\n";
  }
  auto messages = dovecot->Fetch("INBOX");
  if (!messages) return diff.str() + "doveadm fetch failed";
  std::map<uint32_t, std::string> seen;
  for (const auto& m : *messages) seen[m.uid] = m.bytes;
  if (seen != contents) {
    diff << "Dovecot reads UIDs";
    for (const auto& [uid, bytes] : seen) diff << " " << uid << "(" << bytes.size() << " bytes)";
    diff << "; expected";
    for (const auto& [uid, bytes] : contents)
      diff << " " << uid << "(" << bytes.size() << " bytes)";
    diff << "\n";
    for (const auto& [uid, bytes] : seen) {
      auto it = contents.find(uid);
      if (it != contents.end() && it->second != bytes) diff << "UID " << uid << ": bytes differ\n";
    }
  }
  return diff.str();
}

bool BackdateAtime(const std::string& path) {
  struct timespec times[2] = {{1000000000, 0}, {1100000000, 0}};
  if (::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    ADD_FAILURE() << "utimensat " << path << ": " << std::strerror(errno);
    return false;
  }
  return true;
}

std::optional<struct timespec> AtimeOf(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  return st.st_atim;
}

}  // namespace mailfs::test
