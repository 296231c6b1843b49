// libFuzzer target for backends/maildir/format/filename: parsing message
// file names, rewriting their flags, new names, sort keys and sizes.
// Aborts when a property that the maildir backend relies on breaks:
//   - a parsed name rewritten with its own flags parses to the same fields,
//     and rewriting is idempotent (the base name, the message's identity,
//     never changes);
//   - a rewrite with other flags gives exactly those flags and keeps the
//     letters and text we do not know;
//   - a new name always parses back with its sizes;
//   - VirtualSize() does not depend on how the bytes are split.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "backends/maildir/format/filename.h"
#include "backends/maildir/format/mutf7.h"

namespace {

using namespace mailfs;
using namespace mailfs::maildir;

[[noreturn]] void Fail(const char* what, std::string_view input) {
  std::fprintf(stderr, "filename_fuzzer: %s: '%s'\n", what, PrintableForLog(input).c_str());
  std::abort();
}

void Check(bool ok, const char* what, std::string_view input) {
  if (!ok) Fail(what, input);
}

bool SameFields(const FileName& a, const FileName& b) {
  return a.base == b.base && a.size == b.size && a.vsize == b.vsize && a.flags == b.flags &&
         a.unknown_flags == b.unknown_flags && a.extra == b.extra;
}

void CheckRewrite(std::string_view name, const FileName& parsed, const NameFlags& flags) {
  Result<std::string> rewritten = WithFlags(name, flags);
  if (!rewritten.ok()) {
    // Only a name that grows past 255 bytes may be refused.
    Check(rewritten.status().code() == ErrorCode::kInvalidArgument && name.size() > 200,
          "WithFlags refused a parsable name", name);
    return;
  }
  Result<FileName> again = ParseFileName(*rewritten);
  Check(again.ok(), "rewritten name does not parse", *rewritten);
  Check(again->has_flags, "rewritten name has no flags", *rewritten);
  Check(again->base == parsed.base, "rewrite changed the base name", *rewritten);
  Check(again->size == parsed.size && again->vsize == parsed.vsize, "rewrite changed sizes",
        *rewritten);
  Check(again->flags == flags, "rewrite lost or invented flags", *rewritten);
  if (parsed.has_flags) {
    Check(again->unknown_flags == parsed.unknown_flags, "rewrite lost unknown flags", *rewritten);
    Check(again->extra == parsed.extra, "rewrite lost the extra text", *rewritten);
  }
  Result<std::string> twice = WithFlags(*rewritten, flags);
  Check(twice.ok() && *twice == *rewritten, "rewrite is not idempotent", *rewritten);
  Check(SortKeyOf(*rewritten) == SortKeyOf(name), "rewrite changed the sort key", *rewritten);
  if (flags == parsed.flags && parsed.has_flags) {
    Result<FileName> same = ParseFileName(*rewritten);
    Check(SameFields(*same, parsed), "rewrite with the same flags changed fields", *rewritten);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  Result<FileName> parsed = ParseFileName(input);
  if (parsed.ok()) {
    Check(!parsed->base.empty() && parsed->base == BaseName(input), "bad base name", input);
    Check(!UnsafeFileNameReason(input).has_value(), "parsed an unsafe name", input);
    CheckRewrite(input, *parsed, parsed->flags);
    // Some other flag set, taken from the input.
    NameFlags other;
    uint32_t bits = 0;
    for (size_t i = 0; i < size && i < 4; ++i) bits = (bits << 8) | data[i];
    other.system = static_cast<uint8_t>(bits & 0x1f);
    other.keywords = (bits >> 5) & 0x3ffffff;
    CheckRewrite(input, *parsed, other);
  } else {
    Check(parsed.status().code() == ErrorCode::kInvalidArgument, "unexpected error code", input);
  }
  (void)SortKeyOf(input);

  // New names from the input as a host name.
  NewFileNameParts parts;
  parts.secs = size * 1000003u;
  parts.usecs = static_cast<uint32_t>(size % 1000000);
  parts.pid = size;
  parts.hostname = input;
  parts.size = size;
  parts.vsize = VirtualSize(input);
  std::string name = NewFileName(parts);
  Result<FileName> made = ParseFileName(name);
  Check(made.ok(), "new name does not parse", name);
  Check(made->size == parts.size && made->vsize == parts.vsize, "new name lost its sizes", name);
  Check(!made->has_flags && made->base == name, "new name has an info part", name);
  Check(SortKeyOf(name).secs == parts.secs && SortKeyOf(name).usecs == parts.usecs,
        "new name sorts wrong", name);

  // VirtualSize over any split.
  uint64_t vsize = VirtualSize(input);
  Check(vsize >= size && vsize <= 2 * static_cast<uint64_t>(size), "vsize out of range", input);
  size_t cut = size == 0 ? 0 : data[0] % (size + 1);
  VirtualSizeCounter counter;
  counter.Add(input.substr(0, cut));
  counter.Add(input.substr(cut));
  Check(counter.size() == size && counter.vsize() == vsize, "split vsize differs", input);
  return 0;
}
