#include "backends/maildir/format/uidlist.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <unordered_map>

#include "backends/maildir/format/text.h"

namespace mailfs::maildir {
namespace {

// Dovecot's compress threshold (UIDLIST_COMPRESS_PERCENTAGE).
constexpr uint64_t kCompressPercentage = 75;
// How much of a bad line a problem report quotes.

Status Corrupt(std::string detail) {
  return Status::Error(ErrorCode::kCorrupt, ErrorScope::kMailbox,
                       "dovecot-uidlist: " + std::move(detail));
}

bool IsControl(unsigned char c) { return c < 0x20 || c == 0x7f; }

// Decimal digits only (no sign, no spaces), at most 2^32-1: what Dovecot's
// str_to_uint accepts. Leading zeros are allowed, as there.
std::optional<uint32_t> ParseUint32(std::string_view digits) {
  if (digits.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
    if (value > UINT32_MAX) return std::nullopt;
  }
  return static_cast<uint32_t>(value);
}

// Splits on single spaces, dropping the empty pieces that runs of spaces
// leave, as Dovecot's readers skip them.
std::vector<std::string_view> Words(std::string_view text) {
  std::vector<std::string_view> words;
  size_t pos = 0;
  while (pos < text.size()) {
    if (text[pos] == ' ') {
      ++pos;
      continue;
    }
    size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    words.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return words;
}

// A header field other than V, N and G: kept verbatim, so it must survive
// being split on spaces and written back.
bool IsValidHeaderField(std::string_view field) {
  if (field.empty() || field[0] == 'V' || field[0] == 'N' || field[0] == 'G') return false;
  for (unsigned char c : field) {
    if (c == ' ' || IsControl(c)) return false;
  }
  return true;
}

// One line of the file, without its line end.
struct Line {
  size_t number = 0;  // 1-based
  std::string_view text;
  bool terminated = true;  // ended with LF
};

// Hands out the lines of `bytes` one at a time (a file of a million empty
// lines must not become a million of anything).
class LineReader {
 public:
  explicit LineReader(std::string_view bytes) : rest_(bytes) {}

  bool Next(Line* line) {
    if (rest_.empty()) return false;
    line->number = ++number_;
    size_t end = rest_.find('\n');
    line->terminated = end != std::string_view::npos;
    if (!line->terminated) end = rest_.size();
    line->text = rest_.substr(0, end);
    rest_.remove_prefix(line->terminated ? end + 1 : end);
    // CRLF (pymap); Dovecot's line reader drops the CR too.
    if (!line->text.empty() && line->text.back() == '\r') line->text.remove_suffix(1);
    return true;
  }

 private:
  std::string_view rest_;
  size_t number_ = 0;
};

// Collects problems up to kMaxUidlistProblems, then only counts them, so
// that a file of garbage lines cannot make a report larger than itself.
class ProblemList {
 public:
  explicit ProblemList(std::vector<UidlistProblem>* out) : out_(out) {}
  ProblemList(const ProblemList&) = delete;
  ProblemList& operator=(const ProblemList&) = delete;

  // Adds the count of the problems that were only counted.
  void Finish() {
    if (more_ > 0) {
      out_->push_back({last_line_, fmt::format("... and {} more problems", more_)});
      more_ = 0;
    }
  }

  void Add(size_t line, std::string reason) {
    if (out_->size() < kMaxUidlistProblems) {
      out_->push_back({line, std::move(reason)});
    } else {
      ++more_;
      last_line_ = line;
    }
  }

 private:
  std::vector<UidlistProblem>* out_;
  size_t more_ = 0;
  size_t last_line_ = 0;
};

Status ParseHeader(std::string_view text, UidlistHeader* header, ProblemList* problems) {
  if (text.find('\0') != std::string_view::npos) return Corrupt("NUL byte in the header");
  if (text.size() < 2 || text[1] != ' ' || (text[0] != '1' && text[0] != '3')) {
    return Corrupt(fmt::format("not a version 1 or 3 header: \"{}\"", Excerpt(text)));
  }
  header->version = text[0] - '0';
  std::vector<std::string_view> words = Words(text.substr(2));
  if (header->version == 1) {
    // "1 <uidvalidity> <nextuid>" (also Courier's courierimapuiddb).
    std::optional<uint32_t> validity;
    std::optional<uint32_t> next;
    if (words.size() == 2) {
      validity = ParseUint32(words[0]);
      next = ParseUint32(words[1]);
    }
    if (!validity || !next) {
      return Corrupt(fmt::format("bad version 1 header: \"{}\"", Excerpt(text)));
    }
    header->uid_validity = *validity;
    header->next_uid = *next;
  } else {
    bool seen_v = false;
    bool seen_n = false;
    bool seen_g = false;
    auto repeated = [&](bool* seen, std::string_view word) {
      if (*seen) {
        problems->Add(
            1, fmt::format("header field {} repeated; the last one counts", word.substr(0, 1)));
      }
      *seen = true;
    };
    for (std::string_view word : words) {
      std::string_view value = word.substr(1);
      switch (word[0]) {
        case 'V': {
          std::optional<uint32_t> v = ParseUint32(value);
          if (!v) return Corrupt(fmt::format("bad UIDVALIDITY \"{}\"", Excerpt(word)));
          repeated(&seen_v, word);
          header->uid_validity = *v;
          break;
        }
        case 'N': {
          std::optional<uint32_t> n = ParseUint32(value);
          if (!n) return Corrupt(fmt::format("bad next UID \"{}\"", Excerpt(word)));
          repeated(&seen_n, word);
          header->next_uid = *n;
          break;
        }
        case 'G':
          if (!IsValidUidlistGuid(value)) {
            return Corrupt(fmt::format("bad mailbox GUID \"{}\"", Excerpt(word)));
          }
          repeated(&seen_g, word);
          header->guid = std::string(value);
          break;
        default:
          if (IsValidHeaderField(word)) {
            header->fields.emplace_back(word);
          } else {
            problems->Add(
                1, fmt::format("header field \"{}\" dropped: control character", Excerpt(word)));
          }
          break;
      }
    }
    if (!seen_v || !seen_n) {
      return Corrupt(fmt::format("header without V or N: \"{}\"", Excerpt(text)));
    }
  }
  if (header->uid_validity == 0 || header->next_uid == 0) {
    return Corrupt(fmt::format("UIDVALIDITY or next UID is 0: \"{}\"", Excerpt(text)));
  }
  return Status::Ok();
}

// Why a name cannot be a record's name, or empty.
std::string_view NameDefect(std::string_view name) {
  if (name.empty()) return "empty file name";
  for (char c : name) {
    if (c == '/') return "'/' in the file name";
    if (c == '\0') return "NUL in the file name";
    if (c == '\r' || c == '\n') return "line break in the file name";
  }
  std::string_view base = name.substr(0, name.find(':'));
  if (base.empty()) return "empty base name";
  if (base == "." || base == "..") return "base name \".\" or \"..\"";
  return {};
}

// Parses one record line (without its line end). Returns the reason when
// the line cannot be trusted; bad extension fields are dropped and noted in
// `dropped`, which matters only if the line is kept.
// `base` is set to the base name as a view into the line.
// `ext` is cleared first; its views point into the line.
std::string ParseRecordLine(int version, const Line& line, uint32_t* record_uid,
                            std::vector<std::string_view>* ext, std::string_view* record_name,
                            std::vector<UidlistProblem>* dropped) {
  ext->clear();
  std::string_view text = line.text;
  if (text.find('\0') != std::string_view::npos) return "NUL byte in the line";
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits == text.size() || text[digits] != ' ') {
    return fmt::format("no \"<uid> \" at the start: \"{}\"", Excerpt(text));
  }
  std::optional<uint32_t> uid = ParseUint32(text.substr(0, digits));
  if (!uid || *uid > kMaxUid) {
    return fmt::format("UID too high: {}", Excerpt(text.substr(0, digits)));
  }
  if (*uid == 0) return "UID 0";
  *record_uid = *uid;

  size_t pos = digits;
  while (pos < text.size() && text[pos] == ' ') ++pos;
  std::string_view name;
  if (version == 1) {
    // "<uid> <name>": no extension fields.
    name = text.substr(pos);
  } else {
    // "<uid>[ <ext>...] :<name>": fields end at spaces; the one that starts
    // with ':' is the name, which runs to the end of the line.
    bool found_name = false;
    while (pos < text.size()) {
      if (text[pos] == ':') {
        name = text.substr(pos + 1);
        found_name = true;
        break;
      }
      size_t end = text.find(' ', pos);
      if (end == std::string_view::npos) end = text.size();
      std::string_view field = text.substr(pos, end - pos);
      if (IsValidUidlistExtField(field)) {
        ext->push_back(field);
      } else {
        dropped->push_back(
            {line.number, fmt::format("invalid extension field \"{}\" dropped", Excerpt(field))});
      }
      pos = end;
      while (pos < text.size() && text[pos] == ' ') ++pos;
    }
    if (!found_name) return fmt::format("no \" :<name>\": \"{}\"", Excerpt(text));
  }
  std::string_view defect = NameDefect(name);
  if (!defect.empty()) return fmt::format("{}: \"{}\"", defect, Excerpt(text));
  *record_name = name;
  return {};
}

}  // namespace

std::string_view UidlistRecord::BaseName() const {
  std::string_view view = name;
  return view.substr(0, view.find(':'));
}

bool IsValidUidlistGuid(std::string_view guid) {
  if (guid.size() != 32) return false;
  for (char c : guid) {
    bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
  }
  return true;
}

bool IsValidUidlistExtField(std::string_view field) {
  if (field.empty() || field[0] < 'A' || field[0] > 'Z') return false;
  for (unsigned char c : field) {
    if (c == ' ' || IsControl(c)) return false;
  }
  return true;
}

bool IsValidUidlistName(std::string_view name) { return NameDefect(name).empty(); }

std::string FormatUidlistGuid(const std::array<uint8_t, 16>& bytes) {
  std::string out;
  out.reserve(32);
  for (uint8_t b : bytes) out += fmt::format("{:02x}", b);
  return out;
}

Result<UidlistScan> Uidlist::Scan(std::string_view bytes, LineCallback each) {
  if (bytes.empty()) return Corrupt("empty file");
  LineReader reader(bytes);
  Line line;
  reader.Next(&line);
  // Dovecot reads only whole lines: a header without its LF is no header.
  if (!line.terminated) return Corrupt("the header has no line end");

  UidlistScan scan;
  ProblemList problems(&scan.problems);
  if (Status status = ParseHeader(line.text, &scan.header, &problems); !status.ok()) {
    return status;
  }

  // Reused for every line: a million lines must not cost a million of them.
  std::vector<std::string_view> ext;
  std::vector<UidlistProblem> dropped_fields;
  while (reader.Next(&line)) {
    if (!line.terminated) {
      problems.Add(line.number,
                   fmt::format("last line has no line end (an append in progress?): \"{}\"",
                               Excerpt(line.text)));
      break;
    }
    uint32_t uid = 0;
    std::string_view name;
    dropped_fields.clear();
    std::string reason =
        ParseRecordLine(scan.header.version, line, &uid, &ext, &name, &dropped_fields);
    if (reason.empty() && uid <= scan.last_uid) {
      reason = fmt::format("UIDs not ordered: {} after {}", uid, scan.last_uid);
    }
    if (reason.empty() && scan.header.version == 1 && uid >= scan.header.next_uid) {
      reason = fmt::format("UID {} not below the header's next UID {} (version 1)", uid,
                           scan.header.next_uid);
    }
    if (!reason.empty()) {
      problems.Add(line.number, std::move(reason));
      continue;
    }
    for (UidlistProblem& problem : dropped_fields) {
      problems.Add(problem.line, std::move(problem.reason));
    }
    scan.last_uid = uid;
    UidlistLine accepted{uid, ext, name};
    if (uint32_t earlier = each(accepted); earlier != 0) {
      problems.Add(line.number,
                   fmt::format("base name already at UID {}; the later line wins: \"{}\"", earlier,
                               Excerpt(accepted.BaseName())));
    } else {
      ++scan.records;
    }
  }
  problems.Finish();
  return scan;
}

uint32_t UidlistScan::NextUid() const {
  uint32_t next = header.next_uid;
  if (last_uid != 0 && last_uid + 1 > next) next = last_uid + 1;
  return next;
}

Result<Uidlist> Uidlist::Parse(std::string_view bytes) {
  Uidlist list;
  std::vector<bool> superseded;  // parallel to list.records: a later line took the base name
  // Keys are views into `bytes`, which outlives the map.
  std::unordered_map<std::string_view, size_t> by_base;
  auto scan = Scan(bytes, [&](const UidlistLine& line) -> uint32_t {
    UidlistRecord record;
    record.uid = line.uid;
    record.ext.assign(line.ext.begin(), line.ext.end());
    record.name = std::string(line.name);
    uint32_t earlier = 0;
    auto [it, inserted] = by_base.try_emplace(line.BaseName(), list.records.size());
    if (!inserted) {
      earlier = list.records[it->second].uid;
      superseded[it->second] = true;
      it->second = list.records.size();
    }
    list.records.push_back(std::move(record));
    superseded.push_back(false);
    return earlier;
  });
  if (!scan.ok()) return scan.status();

  if (std::find(superseded.begin(), superseded.end(), true) != superseded.end()) {
    size_t kept = 0;
    for (size_t i = 0; i < list.records.size(); ++i) {
      if (superseded[i]) continue;
      if (kept != i) list.records[kept] = std::move(list.records[i]);
      ++kept;
    }
    list.records.resize(kept);
  }
  list.header = std::move(scan->header);
  list.problems = std::move(scan->problems);
  return list;
}

uint32_t Uidlist::NextUid() const {
  uint32_t next = header.next_uid;
  if (!records.empty() && records.back().uid + 1 > next) next = records.back().uid + 1;
  return next;
}

namespace {

// Checks one record for writing; `min_uid` is the least UID it may have.
Status CheckRecord(const UidlistRecord& record, uint32_t min_uid) {
  if (record.uid == 0 || record.uid > kMaxUid) {
    return Status::InvalidArgument(fmt::format("uidlist: UID {} out of range", record.uid));
  }
  if (record.uid < min_uid) {
    return Status::InvalidArgument(
        fmt::format("uidlist: UID {} is below {}: UIDs must increase", record.uid, min_uid));
  }
  for (const std::string& field : record.ext) {
    if (!IsValidUidlistExtField(field)) {
      return Status::InvalidArgument(
          fmt::format("uidlist: UID {}: invalid field \"{}\"", record.uid, Excerpt(field)));
    }
  }
  if (std::string_view defect = NameDefect(record.name); !defect.empty()) {
    return Status::InvalidArgument(
        fmt::format("uidlist: UID {}: {}: \"{}\"", record.uid, defect, Excerpt(record.name)));
  }
  return Status::Ok();
}

void AppendRecordLine(const UidlistRecord& record, std::string* out) {
  char digits[16];
  std::to_chars_result written = std::to_chars(digits, digits + sizeof(digits), record.uid);
  out->append(digits, written.ptr);
  for (const std::string& field : record.ext) {
    *out += ' ';
    *out += field;
  }
  *out += " :";
  *out += record.name;
  *out += '\n';
}

}  // namespace

Result<std::string> Uidlist::Serialize() const {
  if (header.uid_validity == 0 || header.next_uid == 0) {
    return Status::InvalidArgument("uidlist: UIDVALIDITY and next UID must not be 0");
  }
  if (!IsValidUidlistGuid(header.guid)) {
    return Status::InvalidArgument(
        fmt::format("uidlist: bad or missing mailbox GUID \"{}\"", Excerpt(header.guid)));
  }
  std::string out = fmt::format("{} V{} N{} G{}", kUidlistVersion, header.uid_validity,
                                header.next_uid, header.guid);
  for (const std::string& field : header.fields) {
    if (!IsValidHeaderField(field)) {
      return Status::InvalidArgument(
          fmt::format("uidlist: invalid header field \"{}\"", Excerpt(field)));
    }
    out += ' ';
    out += field;
  }
  out += '\n';

  std::unordered_map<std::string_view, uint32_t> by_base;
  by_base.reserve(records.size());
  uint32_t min_uid = 1;
  for (const UidlistRecord& record : records) {
    if (Status status = CheckRecord(record, min_uid); !status.ok()) return status;
    // A repeated base name would make a reader drop the earlier line.
    if (auto [it, inserted] = by_base.try_emplace(record.BaseName(), record.uid); !inserted) {
      return Status::InvalidArgument(
          fmt::format("uidlist: UIDs {} and {} share a base name", it->second, record.uid));
    }
    AppendRecordLine(record, &out);
    min_uid = record.uid + 1;
  }
  return out;
}

Result<std::string> FormatUidlistAppendLines(std::span<const UidlistRecord> records,
                                             uint32_t next_uid) {
  std::string out;
  uint32_t min_uid = next_uid == 0 ? 1 : next_uid;
  for (const UidlistRecord& record : records) {
    if (Status status = CheckRecord(record, min_uid); !status.ok()) return status;
    AppendRecordLine(record, &out);
    min_uid = record.uid + 1;
  }
  return out;
}

UidlistWriteInputs UidlistWriteInputs::For(const Uidlist& file) {
  UidlistWriteInputs in;
  in.file_version = file.header.version;
  in.file_has_guid = !file.header.guid.empty();
  in.file_had_problems = !file.problems.empty();
  in.records_in_file = file.records.size();
  in.live_records = file.records.size();
  return in;
}

std::optional<std::string_view> UidlistRewriteReason(const UidlistWriteInputs& in) {
  if (!in.file_usable) return "the file is missing, empty or broken";
  if (in.file_version != kUidlistVersion) return "the file is not version 3";
  if (!in.file_has_guid) return "the file has no mailbox GUID";
  if (in.file_had_problems) return "the file has broken, unordered or duplicate lines";
  if (in.uid_validity_changes) return "UIDVALIDITY changes";
  if (in.ext_field_changes) return "a field of an existing line changes";
  if (in.next_uid_goes_down) return "the next UID would go down";
  uint64_t lines = static_cast<uint64_t>(in.records_in_file) + in.new_records;
  if (lines > 0 && lines * kCompressPercentage / 100 >= in.live_records) {
    return "a quarter or more of the lines are for gone messages";
  }
  return std::nullopt;
}

}  // namespace mailfs::maildir
