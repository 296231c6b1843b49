#include "backends/maildir/format/text.h"

#include <fmt/format.h>

namespace mailfs::maildir {

constexpr size_t kExcerptLength = 60;

std::string Excerpt(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size() && i < kExcerptLength; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c >= 0x7f || c == '\\') {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kExcerptLength) out += "...";
  return out;
}

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t end = text.find(separator, start);
    if (end == std::string_view::npos) {
      parts.push_back(text.substr(start));
      return parts;
    }
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

}  // namespace mailfs::maildir
