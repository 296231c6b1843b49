#include "src/message.h"

#include <fmt/format.h>
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace mailfs {

Result<std::string> ReadAll(const ContentReader& reader) {
  std::string bytes(reader.size(), '\0');
  uint64_t done = 0;
  while (done < bytes.size()) {
    auto n = reader.ReadAt(done, std::span<char>(bytes.data() + done, bytes.size() - done));
    if (!n.ok()) return n.status();
    if (*n == 0) return Status::Io("content shorter than its size");
    done += *n;
  }
  return bytes;
}

Result<size_t> StringContent::ReadAt(uint64_t offset, std::span<char> out) const {
  if (offset >= bytes_->size()) return size_t{0};
  size_t n = std::min<uint64_t>(out.size(), bytes_->size() - offset);
  std::memcpy(out.data(), bytes_->data() + offset, n);
  return n;
}

Result<size_t> FdContent::ReadAt(uint64_t offset, std::span<char> out) const {
  size_t done = 0;
  while (done < out.size() && offset + done < size_) {
    // Never past size_: the reader stands for exactly that many bytes.
    size_t want = std::min<uint64_t>(out.size() - done, size_ - offset - done);
    ssize_t n = ::pread(fd_, out.data() + done, want, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Io(fmt::format("read: {}", std::strerror(errno)));
    }
    if (n == 0) break;
    done += n;
  }
  return done;
}

bool LooksLikeMessage(std::string_view head) {
  size_t i = 0;
  while (i < head.size()) {
    unsigned char c = head[i];
    if (c == ':') return i > 0;
    if (c < 33 || c > 126) return false;
    ++i;
  }
  return false;
}

std::string HeaderValue(std::string_view message, std::string_view name) {
  size_t pos = 0;
  while (pos < message.size()) {
    size_t eol = message.find('\n', pos);
    if (eol == std::string_view::npos) eol = message.size();
    std::string_view line = message.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // end of the header section
    if (line.size() > name.size() && line[name.size()] == ':' &&
        strncasecmp(line.data(), name.data(), name.size()) == 0) {
      std::string value(line.substr(name.size() + 1));
      pos = eol + 1;
      // Unfold continuation lines.
      while (pos < message.size() && (message[pos] == ' ' || message[pos] == '\t')) {
        size_t next = message.find('\n', pos);
        if (next == std::string_view::npos) next = message.size();
        std::string_view cont = message.substr(pos, next - pos);
        if (!cont.empty() && cont.back() == '\r') cont.remove_suffix(1);
        value += cont;
        pos = next + 1;
      }
      size_t b = value.find_first_not_of(" \t");
      size_t e = value.find_last_not_of(" \t");
      return b == std::string::npos ? std::string() : value.substr(b, e - b + 1);
    }
    pos = eol + 1;
  }
  return {};
}

// The first "<...>" token of a header value: "<a@x> <b@y>" -> "<a@x>".
static std::string FirstMessageId(std::string_view value) {
  size_t open = value.find('<');
  if (open == std::string_view::npos) return {};
  size_t close = value.find('>', open);
  if (close == std::string_view::npos) return {};
  return std::string(value.substr(open, close - open + 1));
}

// What groups a message into a thread: the root of its References chain,
// else its parent, else itself. A reply and the message it answers thus
// share a key as long as the reply names the root, which every mail client
// does. Empty when the message carries no Message-ID at all.
std::string ThreadKey(std::string_view message) {
  for (std::string_view header : {"References", "In-Reply-To", "Message-ID"}) {
    std::string id = FirstMessageId(HeaderValue(message, header));
    if (!id.empty()) return id;
  }
  return {};
}

}  // namespace mailfs
