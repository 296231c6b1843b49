// What pymap stores beside a message's bytes in its content hash
// (`content/<email id>`, ../shared/REDIS.md): the header block, the
// `full-json` and `header-json` structures (msgpack), the email id and the
// thread keys, built from the bytes exactly as pymap 0.36.7 builds them
// (pymap/mime/__init__.py, pymap/threads.py), so that pymap can serve what
// mailfs appends. Byte for byte the same for every message the fixture and
// tests/data/redis-content/ hold; header values are read as Python 3.11's
// email package reads them (header_value.h). Where pymap itself fails
// (Python exceptions in its header parser, parts nested deeper than its
// recursion allows) these functions still answer: see header_value.h and
// kMaxNestingDepth in content.cc.
//
// Pure functions over bytes; safe to call from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mailfs::redis {

struct ContentFields {
  // `header`: the header block, its ending blank line included. A message
  // without a header (no blank line) gets itself minus its last byte: pymap
  // slices [0:-1] there.
  std::string header;
  std::string full_json;    // `full-json`: msgpack of {"header": H, "body": B}
  std::string header_json;  // `header-json`: msgpack of H
};

// The fields pymap's MessageContent.parse(message) would store. Parts
// nested more than 100 levels deep are stored as leaves (pymap gives up at
// about 320).
ContentFields BuildContentFields(std::string_view message);

// pymap's email id for these bytes: "M" + the adler32 of the whole message
// as 8 lowercase hex digits. One quirk kept: when the message has no body
// line (the blank line ending the header is the last line, as in
// "Subject: x\r\n" or ""), pymap leaves the last byte out of the sum.
std::string EmailIdOf(std::string_view message);

// pymap's ThreadKey.get_all: one "<msg-id>\0<normalised subject>" per
// message id found in Message-ID, then In-Reply-To, then References, in
// that order (the msg-id with its whitespace removed; the subject decoded
// and with leading Re:/Fwd:/[tag] removed and whitespace squeezed). UTF-8,
// as pymap's Lua script receives them; repeats kept.
std::vector<std::string> ThreadKeysOf(std::string_view message);

}  // namespace mailfs::redis
