#include "tests/support/backend_factories.h"

#include <fmt/format.h>

#include "backends/dict/dict_backend.h"

namespace mailfs::test {
namespace {

BackendFactory DictFactory() {
  BackendFactory factory;
  factory.name = "dict";
  factory.make = [] { return std::shared_ptr<MailboxSet>(NewDictMailboxSet()); };
  factory.make_readonly = [](MailboxSet& set, std::string_view name) {
    auto* dict = dynamic_cast<DictMailboxSet*>(&set);
    if (dict == nullptr) return Status::InvalidArgument("not a dict store");
    return dict->SetReadOnly(name, true);
  };
  return factory;
}

}  // namespace

const std::vector<BackendFactory>& AllBackendFactories() {
  static const std::vector<BackendFactory> factories = {DictFactory()};
  return factories;
}

AppendMessage MakeAppendMessage(std::string content, FlagSet flags, UnixSeconds internal_date) {
  AppendMessage message;
  message.content = std::make_shared<StringContent>(std::move(content));
  message.flags = std::move(flags);
  message.internal_date = internal_date;
  return message;
}

std::string SampleMessage(std::string_view tag, std::string_view extra_headers) {
  return fmt::format(
      "From: Tester <tester@example.org>\r\n"
      "To: Sam <sam@example.org>\r\n"
      "Subject: sample {0}\r\n"
      "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
      "Message-ID: <{0}@test.example.org>\r\n"
      "{1}"
      "MIME-Version: 1.0\r\n"
      "Content-Type: text/plain; charset=UTF-8\r\n"
      "\r\n"
      "Body of sample {0}.\r\n",
      tag, extra_headers);
}

}  // namespace mailfs::test
