#include "backends/redis/connection.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <limits.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <iterator>

namespace mailfs::redis {
namespace {

// Arguments up to this size are copied next to the protocol's framing;
// longer ones (a message's bytes) are written from where they are.
constexpr size_t kCopiedArgument = 4096;

struct timeval ToTimeval(std::chrono::milliseconds ms) {
  struct timeval tv {};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

Status Unavailable(std::string detail) {
  return Status::Error(ErrorCode::kUnavailable, ErrorScope::kStore, std::move(detail));
}

std::string Sha1Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha1(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

// Percent-decoding for the user and password parts of a URL.
Result<std::string> PercentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    unsigned value = 0;
    if (i + 2 >= text.size() ||
        std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16).ptr !=
            text.data() + i + 3) {
      return Status::InvalidArgument("bad %-escape in the redis URL");
    }
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

}  // namespace

std::string Address::ToString() const {
  std::string text = user.empty() ? "" : user + "@";
  return text + fmt::format("{}:{}/{}", host, port, database);
}

Result<Address> ParseRedisUrl(std::string_view url) {
  constexpr std::string_view kScheme = "redis://";
  if (!url.starts_with(kScheme)) {
    return Status::InvalidArgument(fmt::format("not a redis:// URL: {}", url));
  }
  std::string_view rest = url.substr(kScheme.size());
  Address address;
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view credentials = rest.substr(0, at);
    rest = rest.substr(at + 1);
    std::string_view user = credentials;
    if (size_t colon = credentials.find(':'); colon != std::string_view::npos) {
      user = credentials.substr(0, colon);
      auto password = PercentDecode(credentials.substr(colon + 1));
      if (!password.ok()) return password.status();
      address.password = *password;
    }
    auto decoded_user = PercentDecode(user);
    if (!decoded_user.ok()) return decoded_user.status();
    address.user = *decoded_user;
  }
  std::string_view host_port = rest;
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    host_port = rest.substr(0, slash);
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) {
      auto [end, error] = std::from_chars(db.data(), db.data() + db.size(), address.database);
      if (error != std::errc() || end != db.data() + db.size() || address.database < 0) {
        return Status::InvalidArgument(fmt::format("bad database number in the redis URL: {}", db));
      }
    }
  }
  std::string_view host = host_port;
  if (!host_port.empty() && host_port.front() == '[') {  // [::1]:6379
    size_t close = host_port.find(']');
    if (close == std::string_view::npos) {
      return Status::InvalidArgument("unclosed [ in the redis URL");
    }
    host = host_port.substr(1, close - 1);
    host_port = host_port.substr(close + 1);
    if (!host_port.empty() && host_port.front() != ':') {
      return Status::InvalidArgument("bad host in the redis URL");
    }
    if (!host_port.empty())
      host_port = host_port.substr(1);
    else
      host_port = {};
    if (!host_port.empty()) {
      auto [end, error] =
          std::from_chars(host_port.data(), host_port.data() + host_port.size(), address.port);
      if (error != std::errc() || end != host_port.data() + host_port.size() || address.port == 0) {
        return Status::InvalidArgument(fmt::format("bad port in the redis URL: {}", host_port));
      }
    }
  } else if (size_t colon = host_port.rfind(':'); colon != std::string_view::npos) {
    host = host_port.substr(0, colon);
    std::string_view port = host_port.substr(colon + 1);
    auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), address.port);
    if (error != std::errc() || end != port.data() + port.size() || address.port == 0) {
      return Status::InvalidArgument(fmt::format("bad port in the redis URL: {}", port));
    }
  }
  if (!host.empty()) address.host = std::string(host);
  return address;
}

// --- Reply ------------------------------------------------------------------

Reply::Type Reply::type() const {
  if (node_ == nullptr) return Type::kNil;
  switch (node_->type) {
    case REDIS_REPLY_STRING:
      return Type::kString;
    case REDIS_REPLY_ARRAY:
      return Type::kArray;
    case REDIS_REPLY_INTEGER:
      return Type::kInteger;
    case REDIS_REPLY_STATUS:
      return Type::kStatus;
    case REDIS_REPLY_ERROR:
      return Type::kError;
    default:
      return Type::kNil;
  }
}

std::string_view Reply::str() const {
  if (node_ == nullptr || node_->str == nullptr) return {};
  return std::string_view(node_->str, node_->len);
}

long long Reply::integer() const { return node_ == nullptr ? 0 : node_->integer; }

size_t Reply::size() const {
  return node_ != nullptr && node_->type == REDIS_REPLY_ARRAY ? node_->elements : 0;
}

Reply Reply::operator[](size_t index) const {
  if (index >= size()) return Reply();
  return Reply(root_, node_->element[index]);
}

bool Reply::ToInteger(long long* out) const {
  if (is_integer()) {
    *out = integer();
    return true;
  }
  if (!is_string()) return false;
  std::string_view text = str();
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return error == std::errc() && end == text.data() + text.size() && !text.empty();
}

std::vector<std::string_view> Views(std::span<const std::string> strings) {
  return std::vector<std::string_view>(strings.begin(), strings.end());
}

Script Script::Make(std::string name, std::string source) {
  std::string sha1 = Sha1Hex(source);
  return Script{std::move(name), std::move(source), std::move(sha1)};
}

// --- Connection -------------------------------------------------------------

Connection::~Connection() {
  if (context_ != nullptr) redisFree(context_);
}

Status Connection::Failure(std::string_view what) {
  broken_ = true;
  std::string cause = context_ != nullptr && context_->err != 0 ? context_->errstr : "no reply";
  if (context_ != nullptr && context_->err == REDIS_ERR_IO && cause.empty()) {
    cause = std::strerror(errno);
  }
  if (cause == "Resource temporarily unavailable") cause = "timed out";
  return Unavailable(fmt::format("redis at {}: {}: {}", where_, what, cause));
}

Result<std::unique_ptr<Connection>> Connection::Open(const Address& address,
                                                     std::span<const Script* const> scripts) {
  redisContext* context = redisConnectWithTimeout(address.host.c_str(), address.port,
                                                  ToTimeval(address.connect_timeout));
  if (context == nullptr) return Unavailable("redis: out of memory");
  std::unique_ptr<Connection> connection(new Connection(context, address.ToString()));
  if (context->err != 0) {
    return Unavailable(
        fmt::format("cannot connect to redis at {}: {}", address.ToString(), context->errstr));
  }
  redisEnableKeepAlive(context);
  connection->SetTimeout(address.command_timeout);

  std::vector<Command> setup;
  if (!address.password.empty()) {
    if (address.user.empty()) {
      setup.push_back({"AUTH", address.password});
    } else {
      setup.push_back({"AUTH", address.user, address.password});
    }
  }
  if (address.database != 0) setup.push_back({"SELECT", std::to_string(address.database)});
  for (const Script* script : scripts) setup.push_back({"SCRIPT", "LOAD", script->source});
  if (setup.empty()) return connection;
  auto replies = connection->Pipeline(setup);
  if (!replies.ok()) return replies.status();
  for (size_t i = 0; i < replies->size(); ++i) {
    const Reply& reply = (*replies)[i];
    if (!reply.is_error()) continue;
    std::string_view what = setup[i][0] == "AUTH"     ? "login"
                            : setup[i][0] == "SELECT" ? "select database"
                                                      : "load script";
    // A refused login or a missing database will not heal by retrying soon,
    // but is still the store being unusable: EIO, with the server's words.
    return Unavailable(
        fmt::format("redis at {}: {} failed: {}", address.ToString(), what, reply.str()));
  }
  return connection;
}

void Connection::SetTimeout(std::chrono::milliseconds timeout) {
  redisSetTimeout(context_, ToTimeval(timeout));
}

bool Connection::HungUp() const {
  struct pollfd entry {};
  entry.fd = context_->fd;
  entry.events = POLLIN | POLLRDHUP;
  return poll(&entry, 1, 0) != 0;
}

int Connection::fd() const { return context_->fd; }

Result<Reply> Connection::Run(const Command& command) {
  auto replies = Pipeline(std::span<const Command>(&command, 1));
  if (!replies.ok()) return replies.status();
  return std::move((*replies)[0]);
}

Status Connection::Send(std::span<const CommandView> commands) {
  // hiredis's output buffer is only used by commands queued through it,
  // and nothing here does: it is empty, so what is written here goes out
  // in order and redisGetReply has nothing of its own to send first.
  if (sdslen(context_->obuf) != 0) {
    broken_ = true;
    return Unavailable(fmt::format("redis at {}: unsent output left over", where_));
  }
  // The framing and the short arguments are copied into `framing`; a long
  // argument (a message's bytes) is written from where it is. A piece is
  // a range of `framing` (data == nullptr) or a long argument.
  struct Piece {
    const char* data;
    size_t offset_or_size;
    size_t size;
  };
  std::string framing;
  std::vector<Piece> pieces;
  size_t framed = 0;  // start of the part of `framing` not yet in a piece
  for (CommandView command : commands) {
    fmt::format_to(std::back_inserter(framing), "*{}\r\n", command.size());
    for (std::string_view arg : command) {
      fmt::format_to(std::back_inserter(framing), "${}\r\n", arg.size());
      if (arg.size() <= kCopiedArgument) {
        framing += arg;
      } else {
        pieces.push_back({nullptr, framed, framing.size() - framed});
        pieces.push_back({arg.data(), 0, arg.size()});
        framed = framing.size();
      }
      framing += "\r\n";
    }
  }
  pieces.push_back({nullptr, framed, framing.size() - framed});
  std::vector<struct iovec> iov;
  iov.reserve(pieces.size());
  for (const Piece& piece : pieces) {
    if (piece.size == 0) continue;
    const char* data = piece.data != nullptr ? piece.data : framing.data() + piece.offset_or_size;
    iov.push_back({const_cast<char*>(data), piece.size});
  }
  // sendmsg until all is written: it may write less (a full socket buffer),
  // and takes at most IOV_MAX pieces at a time.
  size_t first = 0;
  while (first < iov.size()) {
    struct msghdr message {};
    message.msg_iov = iov.data() + first;
    message.msg_iovlen = std::min<size_t>(iov.size() - first, IOV_MAX);
    ssize_t sent = ::sendmsg(context_->fd, &message, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      broken_ = true;
      // SO_SNDTIMEO (the command timeout) ran out: EAGAIN.
      std::string cause =
          errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : std::strerror(errno);
      return Unavailable(fmt::format("redis at {}: sending a command: {}", where_, cause));
    }
    auto left = static_cast<size_t>(sent);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left > 0) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return Status::Ok();
}

Result<std::vector<Reply>> Connection::Replies(std::span<const std::string_view> commands) {
  std::vector<Reply> replies;
  replies.reserve(commands.size());
  for (std::string_view command : commands) {
    void* raw = nullptr;
    if (redisGetReply(context_, &raw) != REDIS_OK || raw == nullptr) {
      return Failure(fmt::format("waiting for the reply to {}", command));
    }
    std::shared_ptr<redisReply> root(static_cast<redisReply*>(raw),
                                     [](redisReply* reply) { freeReplyObject(reply); });
    const redisReply* node = root.get();
    replies.push_back(Reply(std::move(root), node));
  }
  return replies;
}

Result<std::vector<Reply>> Connection::Pipeline(std::span<const Command> commands) {
  if (broken_) return Unavailable(fmt::format("redis at {}: connection lost", where_));
  if (commands.empty()) return std::vector<Reply>();
  std::vector<std::vector<std::string_view>> args;
  std::vector<CommandView> views;
  std::vector<std::string_view> names;
  args.reserve(commands.size());
  for (const Command& command : commands) {
    args.push_back(Views(command));
    views.push_back(args.back());
    names.push_back(command.empty() ? std::string_view() : std::string_view(command[0]));
  }
  if (Status sent = Send(views); !sent.ok()) return sent;
  return Replies(names);
}

Result<Reply> Connection::Eval(const Script& script, std::span<const std::string_view> keys,
                               std::span<const std::string_view> args) {
  if (broken_) return Unavailable(fmt::format("redis at {}: connection lost", where_));
  const std::string key_count = std::to_string(keys.size());
  std::vector<std::string_view> command = {"EVALSHA", script.sha1, key_count};
  command.reserve(3 + keys.size() + args.size());
  command.insert(command.end(), keys.begin(), keys.end());
  command.insert(command.end(), args.begin(), args.end());
  const CommandView commands[] = {command};
  if (Status sent = Send(commands); !sent.ok()) return sent;
  constexpr std::string_view kEvalSha[] = {"EVALSHA"};
  auto reply = Replies(kEvalSha);
  if (!reply.ok()) return reply.status();
  if (!(*reply)[0].is_error() || !(*reply)[0].str().starts_with("NOSCRIPT")) {
    return std::move((*reply)[0]);
  }
  // The server restarted or ran SCRIPT FLUSH: EVAL loads it again. Only
  // then are the arguments sent a second time.
  command[0] = "EVAL";
  command[1] = script.source;
  if (Status sent = Send(commands); !sent.ok()) return sent;
  constexpr std::string_view kEval[] = {"EVAL"};
  reply = Replies(kEval);
  if (!reply.ok()) return reply.status();
  return std::move((*reply)[0]);
}

Result<Reply> Connection::Transaction(std::span<const CommandView> commands,
                                      std::span<const Script* const> scripts) {
  static constexpr std::string_view kMulti[] = {"MULTI"};
  static constexpr std::string_view kExec[] = {"EXEC"};
  for (int attempt = 0;; ++attempt) {
    if (broken_) return Unavailable(fmt::format("redis at {}: connection lost", where_));
    std::vector<CommandView> all = {CommandView(kMulti)};
    all.insert(all.end(), commands.begin(), commands.end());
    all.push_back(CommandView(kExec));
    std::vector<std::string_view> names;
    for (CommandView command : all) names.push_back(command.empty() ? "" : command[0]);
    if (Status sent = Send(all); !sent.ok()) return sent;
    auto replies = Replies(names);
    if (!replies.ok()) return replies.status();
    const Reply exec = replies->back();
    if (exec.is_error()) {
      // EXECABORT: the reason is the reply to the command refused.
      for (size_t i = 1; i + 1 < replies->size(); ++i) {
        if ((*replies)[i].is_error()) return (*replies)[i];
      }
      return exec;
    }
    std::vector<Command> loads;
    for (size_t i = 0; attempt == 0 && i < commands.size() && i < exec.size(); ++i) {
      if (!exec[i].is_error() || !exec[i].str().starts_with("NOSCRIPT") || commands[i].size() < 2 ||
          commands[i][0] != "EVALSHA") {
        continue;
      }
      for (const Script* script : scripts) {
        if (script->sha1 == commands[i][1]) loads.push_back({"SCRIPT", "LOAD", script->source});
      }
    }
    if (loads.empty()) return exec;
    // The server restarted or ran SCRIPT FLUSH.
    auto loaded = Pipeline(loads);
    if (!loaded.ok()) return loaded.status();
    for (const Reply& reply : *loaded) {
      if (reply.is_error()) return reply;
    }
  }
}

// --- Pool -------------------------------------------------------------------

Pool::Pool(Address address, size_t capacity, std::vector<const Script*> scripts)
    : address_(std::move(address)),
      capacity_(std::max<size_t>(capacity, 1)),
      scripts_(std::move(scripts)) {}

Pool::~Pool() = default;

Pool::Lease::~Lease() {
  if (pool_ != nullptr && connection_ != nullptr) pool_->Return(std::move(connection_));
}

void Pool::Return(std::unique_ptr<Connection> connection) {
  std::lock_guard lock(mu_);
  if (connection->broken()) {
    --open_;
  } else {
    idle_.push_back(std::move(connection));
  }
  available_.notify_one();
}

Result<Pool::Lease> Pool::Acquire() {
  std::unique_lock lock(mu_);
  for (;;) {
    while (!idle_.empty()) {
      std::unique_ptr<Connection> connection = std::move(idle_.back());
      idle_.pop_back();
      if (!connection->HungUp()) return Lease(this, std::move(connection));
      --open_;  // the server went away since; try the next, or a new one
    }
    if (open_ < capacity_) break;
    if (available_.wait_for(lock, address_.command_timeout + address_.connect_timeout) ==
            std::cv_status::timeout &&
        idle_.empty() && open_ >= capacity_) {
      return Unavailable(fmt::format("redis at {}: every connection is busy", address_.ToString()));
    }
  }
  auto now = std::chrono::steady_clock::now();
  if (now < retry_after_) {
    return Unavailable(
        fmt::format("redis at {} is unreachable: {}", address_.ToString(), last_error_));
  }
  ++open_;
  lock.unlock();
  auto connection = Connection::Open(address_, scripts_);
  lock.lock();
  if (!connection.ok()) {
    --open_;
    backoff_ = std::min<std::chrono::milliseconds>(
        std::max<std::chrono::milliseconds>(backoff_ * 2, std::chrono::milliseconds(50)),
        std::chrono::milliseconds(1000));
    retry_after_ = std::chrono::steady_clock::now() + backoff_;
    last_error_ = connection.status().detail();
    available_.notify_one();
    return connection.status();
  }
  backoff_ = std::chrono::milliseconds(0);
  return Lease(this, std::move(connection).value());
}

}  // namespace mailfs::redis
