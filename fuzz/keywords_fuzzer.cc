// libFuzzer target for dovecot-keywords (backends/maildir/format/keywords.h):
// any bytes parse to a table that serializes, parses back to the same table
// with no problems, and serializes to the same bytes again; letters and
// keywords map both ways. Aborts on any mismatch. Run with scripts/fuzz.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "backends/maildir/format/keywords.h"
#include "src/flags.h"

namespace {

using mailfs::maildir::KeywordTable;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "keywords_fuzzer: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  mailfs::Result<KeywordTable> parsed = KeywordTable::Parse(bytes);
  if (!parsed.ok()) Fail("Parse failed");
  const KeywordTable& table = *parsed;

  size_t count = 0;
  for (char letter = 'a'; letter <= 'z'; ++letter) {
    std::optional<std::string_view> keyword = table.KeywordFor(letter);
    if (!keyword) continue;
    ++count;
    if (!mailfs::IsValidKeyword(*keyword)) Fail("table holds an invalid keyword");
    if (table.LetterFor(*keyword) != letter) Fail("LetterFor(KeywordFor(x)) != x");
  }
  if (count != table.size()) Fail("size() disagrees with the letters");

  std::string first = table.Serialize();
  mailfs::Result<KeywordTable> again = KeywordTable::Parse(first);
  if (!again.ok()) Fail("serialized bytes do not parse");
  if (!again->problems().empty()) Fail("serialized bytes have problems");
  if (!(*again == table)) Fail("table changed in the round trip");
  if (again->Serialize() != first) Fail("serialization is not stable");

  // Assigning a keyword already present changes nothing; a new one takes
  // the lowest free letter or is refused only when all 26 are taken.
  KeywordTable grown = table;
  mailfs::Result<char> letter = grown.Assign("mailfs-fuzz-new");
  if (table.LetterFor("mailfs-fuzz-new")) {
    if (!letter.ok() || !(grown == table)) Fail("Assign of a known keyword changed the table");
  } else if (table.size() == mailfs::maildir::kMaxMaildirKeywords) {
    if (letter.ok() || letter.status().code() != mailfs::ErrorCode::kNoSpace) {
      Fail("Assign into a full table did not fail with kNoSpace");
    }
  } else {
    if (!letter.ok()) Fail("Assign failed with free letters");
    for (char c = 'a'; c < *letter; ++c) {
      if (!table.KeywordFor(c)) Fail("Assign skipped a free letter");
    }
    if (table.KeywordFor(*letter)) Fail("Assign reused a taken letter");
  }
  return 0;
}
