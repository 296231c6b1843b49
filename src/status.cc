#include "src/status.h"

#include <fmt/format.h>

#include <cerrno>

namespace mailfs {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return "ok";
    case ErrorCode::kNotFound:
      return "not found";
    case ErrorCode::kExists:
      return "already exists";
    case ErrorCode::kExpunged:
      return "expunged";
    case ErrorCode::kInvalidName:
      return "invalid name";
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kNotEmpty:
      return "not empty";
    case ErrorCode::kReadOnly:
      return "read-only";
    case ErrorCode::kNotPermitted:
      return "not permitted";
    case ErrorCode::kUnavailable:
      return "store unavailable";
    case ErrorCode::kIo:
      return "I/O error";
    case ErrorCode::kCorrupt:
      return "corrupt data";
    case ErrorCode::kNotSupported:
      return "not supported";
    case ErrorCode::kNoSpace:
      return "no space";
  }
  return "unknown error";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string_view scope;
  switch (scope_) {
    case ErrorScope::kNone:
      break;
    case ErrorScope::kMessage:
      scope = " (message)";
      break;
    case ErrorScope::kMailbox:
      scope = " (mailbox)";
      break;
    case ErrorScope::kStore:
      scope = " (store)";
      break;
  }
  return fmt::format("{}{}: {}", ErrorCodeName(code_), scope, detail_);
}

int ToErrno(const Status& status) {
  switch (status.code()) {
    case ErrorCode::kOk:
      return 0;
    case ErrorCode::kNotFound:
      return ENOENT;
    case ErrorCode::kExists:
      return EEXIST;
    case ErrorCode::kExpunged:
      return ENOENT;
    case ErrorCode::kInvalidName:
      return EINVAL;
    case ErrorCode::kInvalidArgument:
      return EINVAL;
    case ErrorCode::kNotEmpty:
      return ENOTEMPTY;
    case ErrorCode::kReadOnly:
      return EROFS;
    case ErrorCode::kNotPermitted:
      return EPERM;
    case ErrorCode::kUnavailable:
      return EIO;
    case ErrorCode::kIo:
      return EIO;
    case ErrorCode::kCorrupt:
      return EIO;
    case ErrorCode::kNotSupported:
      return ENOTSUP;
    case ErrorCode::kNoSpace:
      return ENOSPC;
  }
  return EIO;
}

}  // namespace mailfs
