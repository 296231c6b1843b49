// The in-memory backend (pymap.backend.dict): a real, thread-safe store
// kept in process memory, used for the demo and as the reference backend of
// the conformance suite.
#pragma once

#include <memory>
#include <string_view>

#include "src/mailbox.h"

namespace mailfs {

class DictMailboxSet;

// A store holding only an empty INBOX.
std::shared_ptr<DictMailboxSet> NewDictMailboxSet();
// A store preloaded with the demo corpus (demo_corpus.cc): INBOX, Sent, and
// a read-only Trash.
std::shared_ptr<DictMailboxSet> NewDemoMailboxSet();

// Concrete type exposed for setup code (the demo, tests): everything else
// goes through MailboxSet.
class DictMailboxSet : public MailboxSet {
 public:
  // Marks a mailbox read-only (MailboxData::readonly). kNotFound if absent.
  virtual Status SetReadOnly(std::string_view name, bool readonly) = 0;
};

}  // namespace mailfs
