#include "src/changes.h"

namespace mailfs {

void ChangeLog::Post(Change change) {
  {
    std::lock_guard lock(mu_);
    log_.push_back(std::move(change));
    if (log_.size() > capacity_) {
      log_.pop_front();
      ++first_seq_;
    }
  }
  cv_.notify_all();
}

uint64_t ChangeLog::Cursor() {
  std::lock_guard lock(mu_);
  return first_seq_ + log_.size();
}

ChangeBatch ChangeLog::WaitSince(uint64_t* cursor, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return stopped_ || first_seq_ + log_.size() > *cursor; });
  ChangeBatch batch;
  batch.stopped = stopped_;
  uint64_t head = first_seq_ + log_.size();
  if (*cursor < first_seq_) {
    batch.overflowed = true;
  } else {
    for (uint64_t seq = *cursor; seq < head; ++seq) batch.changes.push_back(log_[seq - first_seq_]);
  }
  *cursor = head;
  return batch;
}

void ChangeLog::Stop() {
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
}

}  // namespace mailfs
