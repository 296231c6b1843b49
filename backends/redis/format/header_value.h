// Header values as pymap 0.36.7 reads them: through Python 3.11's
// email.headerregistry (email/_header_value_parser.py), whose str() of a
// parsed header is what pymap stores (`content_type` in `full-json`) and
// what it cuts thread keys from. This is a port of the parts of that parser
// those values depend on, rule for rule, including its recovery from
// malformed input; content.cc uses it.
//
// Text model: Python decodes a header line as ASCII with surrogate escapes,
// so every byte is one character. Here every function takes and keeps raw
// bytes; text decoded from an encoded word or an RFC 2231 value is UTF-8
// among them. Python's final step (email.utils._sanitize: re-encode the
// escapes and decode as UTF-8 with U+FFFD for what is invalid) is
// SanitizeUtf8, applied to every result below.
//
// Pure functions; safe to call from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mailfs::redis {

// A Content-Type header as ContentTypeHeader holds it.
struct ContentTypeValue {
  // str(header), e.g. `text/plain; charset="us-ascii"` for
  // `text/plain; charset=us-ascii`: type and subtype as written (case,
  // comments and spaces kept), then every parameter re-written as
  // `; name="value"` (quoted, RFC 2231 sections joined and decoded, RFC 2047
  // words inside quotes decoded, duplicates dropped).
  std::string text;
  std::string maintype = "text";  // lower case; text/plain when unreadable
  std::string subtype = "plain";
  std::string boundary;  // params["boundary"] if it is ASCII, else empty
};

// Parses the unfolded value of a Content-Type field (what
// email.policy.SMTP.header_source_parse gives: the text after the colon,
// leading blanks dropped, continuation lines appended without their line
// breaks). nullopt where Python's parser raises (IndexError, e.g. for
// "text/plain; name*"), which pymap takes as "no Content-Type"
// (ParsedHeaders.content_type).
std::optional<ContentTypeValue> ParseContentType(std::string_view value);

// str() of an unstructured header (Subject, In-Reply-To, References):
// RFC 2047 encoded words decoded, the blanks between two of them dropped.
std::string UnstructuredText(std::string_view value);

// str() of a Message-ID header (MessageIDHeader): the first msg-id as
// Python's grammar reads it (a missing '>' added, text after it dropped), or
// UnstructuredText(value) when it is not one; nullopt where Python raises
// (IndexError for "<>" or "<a@", which pymap takes as "no Message-ID").
std::optional<std::string> MessageIdText(std::string_view value);

// email.utils._sanitize over this text model: valid UTF-8 is kept, every
// invalid sequence becomes U+FFFD exactly where Python's UTF-8 decoder puts
// one (the maximal invalid subpart).
std::string SanitizeUtf8(std::string_view text);

}  // namespace mailfs::redis
