// libFuzzer target for backends/maildir/format/subscriptions. The first
// byte picks the layout and the encoding, the rest is the file. Parses it,
// writes it back in the version found (keeping the lines that did not
// decode) and parses that again; aborts unless the second reading equals
// the first: same names in the same order, same skipped lines, same version.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "backends/maildir/format/mutf7.h"
#include "backends/maildir/format/subscriptions.h"

namespace {

using namespace mailfs;
using namespace mailfs::maildir;

[[noreturn]] void Fail(const char* what, std::string_view input) {
  std::fprintf(stderr, "subscriptions_fuzzer: %s: '%s'\n", what, PrintableForLog(input).c_str());
  std::abort();
}

void Check(bool ok, const char* what, std::string_view input) {
  if (!ok) Fail(what, input);
}

std::vector<std::string> Raws(const Subscriptions& subs) {
  std::vector<std::string> raws;
  for (const SkippedSubscription& s : subs.skipped) raws.push_back(s.raw);
  return raws;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Layout layout = (data[0] & 1) != 0 ? Layout::kFs : Layout::kMaildirPlusPlus;
  NameEncoding encoding = (data[0] & 2) != 0 ? NameEncoding::kUtf8 : NameEncoding::kMutf7;
  std::string_view content(reinterpret_cast<const char*>(data) + 1, size - 1);

  Subscriptions first = ParseSubscriptions(content, layout);
  for (const std::string& name : first.names) {
    Result<std::string> valid = ValidateMailboxName(name, layout);
    Check(valid.ok() && *valid == name, "parsed a name the layout refuses", name);
  }
  std::vector<std::string> raws = Raws(first);
  Result<std::string> written =
      SerializeSubscriptions(first.names, first.version, layout, encoding, raws);
  if (!written.ok()) {
    // Only UTF-8 storage may refuse a name (one that reads back as mUTF-7).
    Check(encoding == NameEncoding::kUtf8 && written.status().code() == ErrorCode::kInvalidName,
          "cannot write what was read", content);
    written =
        SerializeSubscriptions(first.names, first.version, layout, NameEncoding::kMutf7, raws);
    Check(written.ok(), "cannot write what was read in mUTF-7", content);
  }
  Subscriptions second = ParseSubscriptions(*written, layout);
  Check(second.names == first.names, "names changed in a round trip", *written);
  Check(Raws(second) == raws, "skipped lines changed in a round trip", *written);
  Check(written->empty() || second.version == first.version, "version changed in a round trip",
        *written);
  return 0;
}
