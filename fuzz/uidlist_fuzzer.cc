// libFuzzer target for dovecot-uidlist (backends/maildir/format/uidlist.h):
// any bytes either fail with kCorrupt or parse to records that serialize
// (once the list has a GUID), parse back to the same list with no problems,
// and serialize to the same bytes again. Aborts on any mismatch. Run with
// scripts/fuzz.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "backends/maildir/format/uidlist.h"

namespace {

using mailfs::maildir::FormatUidlistAppendLines;
using mailfs::maildir::IsValidUidlistName;
using mailfs::maildir::Uidlist;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "uidlist_fuzzer: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  mailfs::Result<Uidlist> parsed = Uidlist::Parse(bytes);
  if (!parsed.ok()) {
    if (parsed.status().code() != mailfs::ErrorCode::kCorrupt)
      Fail("Parse failed without kCorrupt");
    return 0;
  }
  Uidlist& list = *parsed;
  uint32_t previous = 0;
  for (const auto& record : list.records) {
    if (record.uid <= previous) Fail("records not strictly increasing");
    if (!IsValidUidlistName(record.name)) Fail("record with an invalid name");
    previous = record.uid;
  }
  if (list.NextUid() < list.header.next_uid) Fail("NextUid below N");
  if (!list.records.empty() && list.NextUid() <= list.records.back().uid) {
    Fail("NextUid not above the last UID");
  }

  // Serialize needs a GUID; a file read without one gets one, as the
  // backend gives it.
  if (list.header.guid.empty()) {
    if (list.Serialize().ok()) Fail("serialized without a GUID");
    list.header.guid = mailfs::maildir::FormatUidlistGuid({});
  }
  mailfs::Result<std::string> first = list.Serialize();
  if (!first.ok()) Fail("a parsed list does not serialize");
  mailfs::Result<Uidlist> again = Uidlist::Parse(*first);
  if (!again.ok()) Fail("serialized bytes do not parse");
  if (!again->problems.empty()) Fail("serialized bytes have problems");
  if (again->header.version != 3) Fail("serialized version is not 3");
  if (again->header.uid_validity != list.header.uid_validity ||
      again->header.next_uid != list.header.next_uid || again->header.guid != list.header.guid ||
      again->header.fields != list.header.fields) {
    Fail("header changed in the round trip");
  }
  if (again->records != list.records) Fail("records changed in the round trip");
  mailfs::Result<std::string> second = again->Serialize();
  if (!second.ok() || *second != *first) Fail("serialization is not stable");

  // The append path writes the same lines as a rewrite.
  mailfs::Result<std::string> lines = FormatUidlistAppendLines(list.records, 1);
  if (!lines.ok()) Fail("records do not format as append lines");
  std::string_view body(*first);
  body.remove_prefix(body.find('\n') + 1);
  if (body != *lines) Fail("append lines differ from the rewritten body");
  return 0;
}
