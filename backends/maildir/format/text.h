// Small text helpers shared by the format parsers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mailfs::maildir {

// A bounded, printable quote of hostile bytes for a log line or a problem
// report: at most 60 bytes, anything but printable ASCII (and '\\') as \xNN.
std::string Excerpt(std::string_view text);

// "a\tb" split at '\t' -> {"a", "b"}; an empty text gives {""}.
std::vector<std::string_view> Split(std::string_view text, char separator);

}  // namespace mailfs::maildir
