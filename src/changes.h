// The change feed: what a backend reports so that the driver can invalidate
// the kernel's caches, and a ready-made thread-safe log to keep it in.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace mailfs {

struct Change {
  enum class Kind {
    kMailboxAdded,      // `mailbox` was created (or appeared by rename)
    kMailboxRemoved,    // `mailbox` was deleted (or disappeared by rename)
    kMessagesAdded,     // `uids` appeared in `mailbox`
    kMessagesExpunged,  // `uids` left `mailbox`
    kFlagsChanged,      // flags of `uids` in `mailbox` changed
    kSubscriptions,     // the subscription of `mailbox` changed
  };
  Kind kind;
  std::string mailbox;
  std::vector<uint32_t> uids;

  friend bool operator==(const Change&, const Change&) = default;
};

struct ChangeBatch {
  std::vector<Change> changes;
  // The cursor fell behind what the feed keeps: assume anything changed.
  bool overflowed = false;
  // StopWaiting was called.
  bool stopped = false;
};

// A bounded, thread-safe log of changes with monotonic sequence numbers.
class ChangeLog {
 public:
  explicit ChangeLog(size_t capacity = 1 << 16) : capacity_(capacity) {}
  ChangeLog(const ChangeLog&) = delete;
  ChangeLog& operator=(const ChangeLog&) = delete;

  void Post(Change change);
  uint64_t Cursor();
  ChangeBatch WaitSince(uint64_t* cursor, std::chrono::milliseconds timeout);
  void Stop();

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Change> log_;  // GUARDED_BY(mu_); log_[i] has sequence first_seq_ + i
  uint64_t first_seq_ = 0;  // GUARDED_BY(mu_)
  bool stopped_ = false;    // GUARDED_BY(mu_)
};

}  // namespace mailfs
