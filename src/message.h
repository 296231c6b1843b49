// What a backend knows about one message, and how its bytes are read.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "src/flags.h"
#include "src/status.h"

namespace mailfs {

// IMAP internal date, in whole seconds since the epoch (IMAP has no finer
// resolution, and Maildir keeps it in the file's mtime).
using UnixSeconds = int64_t;

struct MessageInfo {
  uint32_t uid = 0;
  FlagSet flags;
  UnixSeconds internal_date = 0;
  uint64_t size = 0;      // exact size of the stored bytes
  std::string email_id;   // RFC 8474 EMAILID: the same for copies of one message
  std::string thread_id;  // RFC 8474 THREADID

  friend bool operator==(const MessageInfo&, const MessageInfo&) = default;
};

// What a directory listing shows of a message: 24 bytes, where a
// MessageInfo with its ids takes over a hundred.
struct ListedMessage {
  uint32_t uid = 0;
  UnixSeconds internal_date = 0;
  uint64_t size = 0;

  friend bool operator==(const ListedMessage&, const ListedMessage&) = default;
};

// Random-access reader over a message's bytes. Implementations are safe for
// concurrent ReadAt calls; the bytes never change for the reader's lifetime
// (stored messages are immutable), even if the message is expunged meanwhile.
class ContentReader {
 public:
  virtual ~ContentReader() = default;
  virtual uint64_t size() const = 0;
  // Reads up to out.size() bytes at offset; returns the count read, which is
  // short only at the end of the content.
  virtual Result<size_t> ReadAt(uint64_t offset, std::span<char> out) const = 0;
  // A file descriptor holding exactly these bytes from offset 0, when the
  // content is a file (lets a backend copy with copy_file_range); else -1.
  virtual int fd() const { return -1; }
  // True when fd() is a file without a name that its owner hands over and
  // will never write again: a backend may give the file itself a name in
  // the store (link it) instead of copying its bytes.
  virtual bool adoptable() const { return false; }
};

// Reads the whole content into a string (for backends that keep bytes in memory).
Result<std::string> ReadAll(const ContentReader& reader);

// A reader over bytes held in memory.
class StringContent final : public ContentReader {
 public:
  explicit StringContent(std::shared_ptr<const std::string> bytes) : bytes_(std::move(bytes)) {}
  explicit StringContent(std::string bytes)
      : bytes_(std::make_shared<const std::string>(std::move(bytes))) {}
  uint64_t size() const override { return bytes_->size(); }
  Result<size_t> ReadAt(uint64_t offset, std::span<char> out) const override;
  const std::shared_ptr<const std::string>& bytes() const { return bytes_; }

 private:
  std::shared_ptr<const std::string> bytes_;
};

// A reader over a file descriptor it does not own (the caller keeps it open
// for the reader's lifetime).
class FdContent final : public ContentReader {
 public:
  FdContent(int fd, uint64_t size, bool adoptable = false)
      : fd_(fd), size_(size), adoptable_(adoptable) {}
  uint64_t size() const override { return size_; }
  Result<size_t> ReadAt(uint64_t offset, std::span<char> out) const override;
  int fd() const override { return fd_; }
  bool adoptable() const override { return adoptable_; }

 private:
  int fd_;
  uint64_t size_;
  bool adoptable_;
};

// A new message for MailboxData::Append.
struct AppendMessage {
  std::shared_ptr<const ContentReader> content;
  FlagSet flags;
  UnixSeconds internal_date = 0;
};

// True when the bytes start like an RFC 5322 message: the first line is a
// header field "Name: value" (a name of printable ASCII without ':', then ':').
bool LooksLikeMessage(std::string_view head);

// The unfolded value of the first header field `name` (case-insensitive) in
// the header section of `message`, or empty. Enough for Message-ID and
// References; not a MIME parser.
std::string HeaderValue(std::string_view message, std::string_view name);

// What groups a message into a thread (RFC 8474 THREADID): the first
// Message-ID of its References, else of In-Reply-To, else its own
// Message-ID; empty when it has none. A reply and its root share the key as
// long as the reply names the root, which mail clients do.
std::string ThreadKey(std::string_view message);

}  // namespace mailfs
