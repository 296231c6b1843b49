// libFuzzer target for pymap's message record (backends/redis/format/record.h):
// any bytes either fail to decode with kCorrupt or decode to a record that
// encodes and decodes back to the same record, with flags that convert to a
// FlagSet and back without change. The bytes as a whole, and a decoded
// record's date, either fail ParseRecordDate with kCorrupt or parse to a
// time that FormatRecordDate writes and ParseRecordDate reads back. Aborts
// on any mismatch. Run with scripts/fuzz (seeds: the `uids` records of the
// pymap-redis fixture).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "backends/redis/format/record.h"
#include "src/flags.h"

namespace {

using mailfs::redis::MessageRecord;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "redis_record_fuzzer: %s\n", what);
  std::abort();
}

void CheckDate(std::string_view text) {
  mailfs::Result<mailfs::UnixSeconds> parsed = mailfs::redis::ParseRecordDate(text);
  if (!parsed.ok()) {
    if (parsed.status().code() != mailfs::ErrorCode::kCorrupt)
      Fail("ParseRecordDate failed without kCorrupt");
    return;
  }
  const std::string formatted = mailfs::redis::FormatRecordDate(*parsed);
  mailfs::Result<mailfs::UnixSeconds> again = mailfs::redis::ParseRecordDate(formatted);
  if (!again.ok()) Fail("FormatRecordDate wrote a date ParseRecordDate refuses");
  if (*again != *parsed) Fail("date changed in the round trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  CheckDate(bytes);

  mailfs::Result<MessageRecord> decoded = mailfs::redis::DecodeRecord(bytes);
  if (!decoded.ok()) {
    if (decoded.status().code() != mailfs::ErrorCode::kCorrupt)
      Fail("DecodeRecord failed without kCorrupt");
    return 0;
  }
  const MessageRecord& record = *decoded;
  mailfs::Result<MessageRecord> again =
      mailfs::redis::DecodeRecord(mailfs::redis::EncodeRecord(record));
  if (!again.ok()) Fail("an encoded record does not decode");
  if (again->flags != record.flags || again->date != record.date ||
      again->email_id != record.email_id || again->thread_id != record.thread_id) {
    Fail("record changed in the round trip");
  }

  const mailfs::FlagSet flags = mailfs::redis::FlagsFromRecord(record.flags);
  if (mailfs::redis::FlagsFromRecord(mailfs::redis::FlagsToRecord(flags)) != flags)
    Fail("flags changed in the FlagSet round trip");

  CheckDate(record.date);
  return 0;
}
