// The demo corpus: what `mailfs demo MOUNTPOINT` shows, so that the
// filesystem can be tried without a mail store. Written for this project;
// every address is in a reserved example domain (RFC 2606).
//
// The messages are written below with LF line ends for readability and
// stored with CRLF, as mail travels. Encoded parts are real encodings,
// computed, not typed: the attachment is the base64 of its CRLF text, the
// subject of INBOX/3 is RFC 2047 UTF-8 for "Grüße aus Köln".
//
// Mailboxes, UIDs, flags and internal dates are fixed; mailbox, email and
// thread ids are random like every other id of the dict backend.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "backends/dict/dict_backend.h"

namespace mailfs {
namespace {

struct DemoMessage {
  std::string_view mailbox;
  std::string_view flags;  // as FlagSet::Parse reads them
  UnixSeconds internal_date;
  bool recent;
  std::string_view text;  // LF line ends
};

// Seconds since the epoch of a UTC time. The Date headers below say +0100
// (Central European winter time), one hour ahead of these.
constexpr UnixSeconds Utc(int y, unsigned m, unsigned d, int hh, int mm, int ss) {
  using namespace std::chrono;
  auto day = sys_days{year{y} / month{m} / std::chrono::day{d}};
  return duration_cast<seconds>(day.time_since_epoch() + hours{hh} + minutes{mm} + seconds{ss})
      .count();
}

constexpr std::string_view kWelcome = R"(From: mailfs demo <demo@example.org>
To: Sam Example <sam@example.org>
Subject: Welcome to mailfs
Date: Mon, 02 Mar 2026 09:00:00 +0100
Message-ID: <welcome.20260302@demo.example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 7bit

Hello Sam,

this directory is your INBOX. Every message is a file named after its
IMAP UID, and every mailbox is a directory. Try:

    ls -l INBOX
    cat INBOX/1.eml
    getfattr -d INBOX/2.eml          # flags, dates and ids
    setfattr -n user.mail.seen INBOX/3.eml
    mkdir Archive && mv INBOX/6.eml Archive/

Trash is read-only: nothing in it can be changed or removed.

-- 
mailfs
)";

constexpr std::string_view kMeetingNotes = R"(From: Alice Martin <alice@example.com>
To: Sam Example <sam@example.org>
Subject: Notes for Thursday's meeting
Date: Tue, 03 Mar 2026 14:02:11 +0100
Message-ID: <20260303140211.5521@mail.example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="=_mailfs_demo_7f3a"

This is a multi-part message in MIME format.

--=_mailfs_demo_7f3a
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 7bit

Hi Sam,

the agenda for Thursday is attached. Please add anything I missed.

Alice

--=_mailfs_demo_7f3a
Content-Type: text/plain; charset=UTF-8; name="agenda.txt"
Content-Disposition: attachment; filename="agenda.txt"
Content-Transfer-Encoding: base64

QWdlbmRhIGZvciBUaHVyc2RheQ0KDQoxLiBCdWRnZXQgcmV2aWV3IChBbGljZSkNCjIuIFRpbWVs
aW5lIGZvciB0aGUgYmV0YSAoQm9iKQ0KMy4gQW55dGhpbmcgZWxzZQ0KDQpSb29tIDQuMTIsIDEw
OjAwLTExOjAwLg0K
--=_mailfs_demo_7f3a--
)";

constexpr std::string_view kGreetings =
    R"(From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>
To: Sam Example <sam@example.org>
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=
Date: Wed, 04 Mar 2026 18:30:45 +0100
Message-ID: <c0ffee42.1772645445@example.de>
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: quoted-printable

Hallo!

Viele Gr=C3=BC=C3=9Fe aus K=C3=B6ln =E2=80=93 der Dom steht noch, das K=C3=
=B6lsch ist kalt.
Bis bald,
J=C3=B6rg
)";

constexpr std::string_view kKickoff = R"(From: Bob Chen <bob@example.net>
To: Sam Example <sam@example.org>, Carol Diaz <carol@example.com>
Subject: Project kickoff
Date: Thu, 05 Mar 2026 08:47:03 +0100
Message-ID: <kickoff-4711@example.net>
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 7bit

Hi both,

the beta project starts next week. Could each of you send me a rough
estimate for your part by Friday?

Thanks,
Bob
)";

constexpr std::string_view kKickoffReplyCarol = R"(From: Carol Diaz <carol@example.com>
To: Bob Chen <bob@example.net>
Cc: Sam Example <sam@example.org>
Subject: Re: Project kickoff
Date: Thu, 05 Mar 2026 11:20:37 +0100
Message-ID: <5f1e9a.carol@example.com>
In-Reply-To: <kickoff-4711@example.net>
References: <kickoff-4711@example.net>
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 7bit

Bob,

three weeks for the storage part, if the API stays as it is.
Sam, can we go through the open questions tomorrow?

Carol

> the beta project starts next week. Could each of you send me a rough
> estimate for your part by Friday?
)";

constexpr std::string_view kMaintenance = R"(From: Example Hosting <noreply@hosting.example.net>
To: sam@example.org
Subject: Scheduled maintenance on Saturday
Date: Fri, 06 Mar 2026 16:05:00 +0100
Message-ID: <maint-2026-03-07@hosting.example.net>
MIME-Version: 1.0
Content-Type: text/plain; charset=US-ASCII
Content-Transfer-Encoding: 7bit

Dear customer,

on Saturday, 7 March 2026, between 02:00 and 04:00 CET, your mail
service may be unavailable for a few minutes while we upgrade our
servers. No action is needed on your side.

Example Hosting
)";

constexpr std::string_view kKickoffReplySam = R"(From: Sam Example <sam@example.org>
To: Bob Chen <bob@example.net>
Cc: Carol Diaz <carol@example.com>
Subject: Re: Project kickoff
Date: Thu, 05 Mar 2026 09:12:54 +0100
Message-ID: <a1b2c3.sam@example.org>
In-Reply-To: <kickoff-4711@example.net>
References: <kickoff-4711@example.net>
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 7bit

Hi Bob,

two weeks for the file system side. I'll send details on Monday.

Sam
)";

constexpr std::string_view kLunch = R"(From: Sam Example <sam@example.org>
To: Alice Martin <alice@example.com>
Subject: Lunch on Friday?
Date: Fri, 06 Mar 2026 10:03:19 +0100
Message-ID: <lunch.20260306@example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 7bit

Alice, lunch at noon on Friday? The new place on the corner.

Sam
)";

constexpr std::string_view kPrize = R"(From: Prize Department <winner@lottery.example>
To: sam@example.org
Subject: You have WON!!!
Date: Sun, 01 Mar 2026 03:14:15 +0100
Message-ID: <0000001.prize@lottery.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=US-ASCII
Content-Transfer-Encoding: 7bit

Congratulations! Reply with your bank details to claim your prize.
)";

// In UID order per mailbox.
constexpr DemoMessage kDemoMessages[] = {
    {"INBOX", "\\Seen", Utc(2026, 3, 2, 8, 0, 4), false, kWelcome},
    {"INBOX", "\\Seen \\Flagged", Utc(2026, 3, 3, 13, 2, 14), false, kMeetingNotes},
    {"INBOX", "", Utc(2026, 3, 4, 17, 30, 49), true, kGreetings},
    {"INBOX", "\\Seen \\Answered", Utc(2026, 3, 5, 7, 47, 6), false, kKickoff},
    {"INBOX", "$Important", Utc(2026, 3, 5, 10, 20, 41), true, kKickoffReplyCarol},
    {"INBOX", "\\Seen", Utc(2026, 3, 6, 15, 5, 3), false, kMaintenance},
    {"Sent", "\\Seen", Utc(2026, 3, 5, 8, 12, 54), false, kKickoffReplySam},
    {"Sent", "\\Seen", Utc(2026, 3, 6, 9, 3, 19), false, kLunch},
    {"Trash", "\\Seen", Utc(2026, 3, 1, 2, 14, 18), false, kPrize},
};

constexpr std::string_view kDemoMailboxes[] = {"Sent", "Trash"};
constexpr std::string_view kDemoSubscriptions[] = {"INBOX", "Sent", "Trash"};
constexpr std::string_view kReadOnlyMailbox = "Trash";

std::string ToCrlf(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32);
  for (char c : text) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

// The corpus is part of the program: if it cannot be loaded, the build is
// broken, and there is no caller that could do better than stop.
void MustSucceed(const Status& status) {
  if (status.ok()) return;
  std::fprintf(stderr, "mailfs: cannot load the demo corpus: %s\n", status.ToString().c_str());
  std::abort();
}

void AppendDemoMessage(DictMailboxSet& set, const DemoMessage& demo) {
  auto mailbox = set.GetMailbox(demo.mailbox);
  MustSucceed(mailbox.status());
  auto flags = FlagSet::Parse(demo.flags);
  MustSucceed(flags.status());
  AppendMessage message;
  message.content = std::make_shared<StringContent>(ToCrlf(demo.text));
  message.flags = *flags;
  message.internal_date = demo.internal_date;
  MustSucceed((*mailbox)->Append(message, demo.recent).status());
}

}  // namespace

std::shared_ptr<DictMailboxSet> NewDemoMailboxSet() {
  std::shared_ptr<DictMailboxSet> set = NewDictMailboxSet();
  for (std::string_view name : kDemoMailboxes) MustSucceed(set->AddMailbox(name).status());
  for (const DemoMessage& demo : kDemoMessages) AppendDemoMessage(*set, demo);
  // Last, since a read-only mailbox refuses the appends above.
  MustSucceed(set->SetReadOnly(kReadOnlyMailbox, true));
  for (std::string_view name : kDemoSubscriptions) MustSucceed(set->SetSubscribed(name, true));
  return set;
}

}  // namespace mailfs
