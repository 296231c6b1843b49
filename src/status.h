// Errors as values. Every failure a backend or the driver can report is one
// of a small closed set of codes, with a scope and a detail string for the
// log. They become an errno in exactly one place: ToErrno().
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace mailfs {

enum class ErrorCode {
  kOk = 0,
  kNotFound,         // no such mailbox or message
  kExists,           // the name or mailbox is already taken
  kExpunged,         // the message was there and has been removed since
  kInvalidName,      // a mailbox name the store cannot hold, or a reserved one
  kInvalidArgument,  // a malformed flag, a content that is not a message, ...
  kNotEmpty,         // the mailbox holds messages or child mailboxes
  kReadOnly,         // the mailbox does not accept changes
  kNotPermitted,     // never allowed here (deleting INBOX, writing a read-only attribute)
  kUnavailable,      // the store cannot be reached now; may succeed later
  kIo,               // an I/O error on the store
  kCorrupt,          // the store holds data that does not parse
  kNotSupported,     // this backend or operation does not offer it
  kNoSpace,          // disk or quota full
};

// What the error is about; used for log lines and for tests, never for errno.
enum class ErrorScope { kNone, kMessage, kMailbox, kStore };

class Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(ErrorCode code, ErrorScope scope, std::string detail) {
    return Status(code, scope, std::move(detail));
  }
  static Status NotFound(ErrorScope scope, std::string detail) {
    return Error(ErrorCode::kNotFound, scope, std::move(detail));
  }
  static Status Exists(std::string detail) {
    return Error(ErrorCode::kExists, ErrorScope::kMailbox, std::move(detail));
  }
  static Status InvalidName(std::string detail) {
    return Error(ErrorCode::kInvalidName, ErrorScope::kMailbox, std::move(detail));
  }
  static Status InvalidArgument(std::string detail) {
    return Error(ErrorCode::kInvalidArgument, ErrorScope::kNone, std::move(detail));
  }
  static Status ReadOnly(std::string detail) {
    return Error(ErrorCode::kReadOnly, ErrorScope::kMailbox, std::move(detail));
  }
  static Status Io(std::string detail) {
    return Error(ErrorCode::kIo, ErrorScope::kStore, std::move(detail));
  }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  ErrorScope scope() const { return scope_; }
  const std::string& detail() const { return detail_; }
  // "not found (mailbox): Archive/2024" — for log lines.
  std::string ToString() const;

 private:
  Status(ErrorCode code, ErrorScope scope, std::string detail)
      : code_(code), scope_(scope), detail_(std::move(detail)) {}

  ErrorCode code_ = ErrorCode::kOk;
  ErrorScope scope_ = ErrorScope::kNone;
  std::string detail_;
};

// The single mapping from an error to the errno the filesystem answers.
int ToErrno(const Status& status);
std::string_view ErrorCodeName(ErrorCode code);

// A value or the Status that explains its absence.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    assert(!status_.ok() && "a Result built from a Status must carry an error");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace mailfs
