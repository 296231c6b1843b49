#include "backends/redis/format/record.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <msgpack.hpp>

namespace mailfs::redis {
namespace {

Status Corrupt(std::string detail) {
  return Status::Error(ErrorCode::kCorrupt, ErrorScope::kMessage, std::move(detail));
}

// A str or bin object as bytes (pymap packs str; other writers may use bin).
bool AsBytes(const msgpack::object& object, std::string* out) {
  if (object.type == msgpack::type::STR) {
    out->assign(object.via.str.ptr, object.via.str.size);
    return true;
  }
  if (object.type == msgpack::type::BIN) {
    out->assign(object.via.bin.ptr, object.via.bin.size);
    return true;
  }
  return false;
}

// Reads `width` digits at text[*pos].
bool Digits(std::string_view text, size_t* pos, size_t width, int* out) {
  if (*pos + width > text.size()) return false;
  int value = 0;
  for (size_t i = 0; i < width; ++i) {
    char c = text[*pos + i];
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  *pos += width;
  *out = value;
  return true;
}

bool Expect(std::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || text[*pos] != c) return false;
  ++*pos;
  return true;
}

}  // namespace

Result<MessageRecord> DecodeRecord(std::string_view bytes) {
  MessageRecord record;
  try {
    // Every element takes at least one byte: without these limits a header
    // claiming 4G elements makes msgpack reserve memory for all of them.
    const size_t n = bytes.size();
    msgpack::object_handle handle =
        msgpack::unpack(bytes.data(), n, nullptr, nullptr, msgpack::unpack_limit(n, n, n, n, n, 8));
    const msgpack::object& root = handle.get();
    if (root.type != msgpack::type::MAP) return Corrupt("message record is not a msgpack map");
    bool has_flags = false;
    bool has_date = false;
    for (uint32_t i = 0; i < root.via.map.size; ++i) {
      const msgpack::object_kv& entry = root.via.map.ptr[i];
      std::string key;
      if (!AsBytes(entry.key, &key))
        return Corrupt("message record has a key that is not a string");
      const msgpack::object& value = entry.val;
      if (key == "flags") {
        if (value.type != msgpack::type::ARRAY) return Corrupt("record flags are not an array");
        for (uint32_t f = 0; f < value.via.array.size; ++f) {
          std::string flag;
          if (!AsBytes(value.via.array.ptr[f], &flag))
            return Corrupt("a record flag is not a string");
          record.flags.push_back(std::move(flag));
        }
        has_flags = true;
      } else if (key == "date") {
        if (!AsBytes(value, &record.date)) return Corrupt("record date is not a string");
        has_date = true;
      } else if (key == "email_id" || key == "thread_id") {
        std::string& target = key == "email_id" ? record.email_id : record.thread_id;
        if (value.type != msgpack::type::NIL && !AsBytes(value, &target)) {
          return Corrupt(fmt::format("record {} is not a string", key));
        }
      }
    }
    if (!has_flags || !has_date) return Corrupt("message record lacks flags or date");
  } catch (const std::exception& error) {
    return Corrupt(fmt::format("message record does not decode: {}", error.what()));
  }
  return record;
}

std::string EncodeRecord(const MessageRecord& record) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(4);
  packer.pack(std::string_view("flags"));
  packer.pack_array(static_cast<uint32_t>(record.flags.size()));
  for (const std::string& flag : record.flags) packer.pack(flag);
  packer.pack(std::string_view("date"));
  packer.pack(record.date);
  packer.pack(std::string_view("email_id"));
  packer.pack(record.email_id);
  packer.pack(std::string_view("thread_id"));
  packer.pack(record.thread_id);
  return std::string(buffer.data(), buffer.size());
}

std::string EncodeStrings(std::span<const std::string> strings) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(static_cast<uint32_t>(strings.size()));
  for (const std::string& s : strings) packer.pack(s);
  return std::string(buffer.data(), buffer.size());
}

std::string EncodeUids(std::span<const uint32_t> uids) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(static_cast<uint32_t>(uids.size()));
  for (uint32_t uid : uids) packer.pack(uid);
  return std::string(buffer.data(), buffer.size());
}

FlagSet FlagsFromRecord(std::span<const std::string> flags) {
  FlagSet set;
  for (const std::string& flag : flags) {
    if (flag.starts_with('\\')) {
      for (SystemFlag system : kAllSystemFlags) {
        std::string_view name = SystemFlagName(system);
        if (flag.size() == name.size() &&
            std::equal(flag.begin(), flag.end(), name.begin(), [](char a, char b) {
              return std::tolower(static_cast<unsigned char>(a)) ==
                     std::tolower(static_cast<unsigned char>(b));
            })) {
          set.Add(system);
        }
      }
    } else if (IsValidKeyword(flag)) {
      set.AddKeyword(flag);
    }
  }
  return set;
}

std::vector<std::string> FlagsToRecord(const FlagSet& flags) {
  std::vector<std::string> out;
  for (SystemFlag flag : kAllSystemFlags) {
    if (flags.Has(flag)) out.emplace_back(SystemFlagName(flag));
  }
  for (const std::string& keyword : flags.keywords()) out.push_back(keyword);
  return out;
}

// Python's datetime holds years 1 to 9999 only.
constexpr UnixSeconds kFirstDate = -62135596800;  // 0001-01-01T00:00:00Z
constexpr UnixSeconds kLastDate = 253402300799;   // 9999-12-31T23:59:59Z

std::string FormatRecordDate(UnixSeconds seconds) {
  // A date pymap could not read would make the whole mailbox unreadable to
  // it; a file time outside Python's range is clamped instead.
  time_t t = static_cast<time_t>(std::clamp(seconds, kFirstDate, kLastDate));
  struct tm utc {};
  gmtime_r(&t, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
}

Result<UnixSeconds> ParseRecordDate(std::string_view text) {
  auto bad = [&] { return Corrupt(fmt::format("record date is not ISO 8601: {}", text)); };
  size_t pos = 0;
  struct tm parts {};
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!Digits(text, &pos, 4, &year) || !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &month) ||
      !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &day)) {
    return bad();
  }
  if (pos < text.size()) {
    if (text[pos] != 'T' && text[pos] != ' ') return bad();
    ++pos;
    if (!Digits(text, &pos, 2, &hour) || !Expect(text, &pos, ':') ||
        !Digits(text, &pos, 2, &minute)) {
      return bad();
    }
    if (pos < text.size() && text[pos] == ':') {
      ++pos;
      if (!Digits(text, &pos, 2, &second)) return bad();
      if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
        ++pos;
        size_t start = pos;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
        if (pos == start) return bad();
      }
    }
  }
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 ||
      second > 60) {
    return bad();
  }
  parts.tm_year = year - 1900;
  parts.tm_mon = month - 1;
  parts.tm_mday = day;
  parts.tm_hour = hour;
  parts.tm_min = minute;
  parts.tm_sec = second;
  if (pos == text.size()) {
    parts.tm_isdst = -1;
    UnixSeconds local = static_cast<UnixSeconds>(mktime(&parts));  // naive: local, as Python
    if (local < kFirstDate || local > kLastDate) return bad();
    return local;
  }
  int offset = 0;
  if (text[pos] == 'Z') {
    ++pos;
  } else if (text[pos] == '+' || text[pos] == '-') {
    int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int offset_hours = 0, offset_minutes = 0, offset_seconds = 0;
    if (!Digits(text, &pos, 2, &offset_hours)) return bad();
    bool colon = Expect(text, &pos, ':');
    if (!Digits(text, &pos, 2, &offset_minutes)) return bad();
    if (colon && pos < text.size() && text[pos] == ':') {
      ++pos;
      if (!Digits(text, &pos, 2, &offset_seconds)) return bad();
      if (pos < text.size() && text[pos] == '.') {
        ++pos;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
      }
    }
    if (offset_hours > 23 || offset_minutes > 59 || offset_seconds > 59) return bad();
    offset = sign * (offset_hours * 3600 + offset_minutes * 60 + offset_seconds);
  } else {
    return bad();
  }
  if (pos != text.size()) return bad();
  UnixSeconds result = static_cast<UnixSeconds>(timegm(&parts)) - offset;
  if (result < kFirstDate || result > kLastDate) return bad();
  return result;
}

}  // namespace mailfs::redis
