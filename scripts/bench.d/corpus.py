"""The benchmark's deterministic corpus: message pools and Maildirs built from them.

A *pool* is a directory of message files named by index (`0000123`), each
one a realistic RFC 5322 message whose bytes depend only on (pool kind,
index): its PRNG is seeded from those two, so a pool can be extended
later and every file has the same bytes on every machine and every run.
The file's mtime is the message's internal date.

- pool "mail": sizes 70% 2-20 KiB, 25% 20-200 KiB, 5% 0.2-5 MiB (mean
  ~165 KiB); text, multipart/alternative, multipart/mixed with base64
  attachments. Used by grep -rc and the copy rows.
- pool "text": the 2-20 KiB class only (mean ~11 KiB, what the peers'
  figures in PERF-NOTES.md were measured with). Used by setfattr, mv and
  grep -rl / UID SEARCH BODY.
- pool "small": ~2 KiB plain messages. Used by the listing, RSS and
  cost-per-entry rows: `ls -l` and `stat` never read content, so the
  message sizes do not matter there, only the count.

A *store* is a Maildir (Dovecot's format: `cur/<secs>.M<n>P<pid>.<host>,
S=<size>,W=<vsize>:2,` and a dovecot-uidlist v3 with a GUID and one line
per message, so that no reader has to assign UIDs) whose message files
are hard links into a pool. A store is rebuilt when its manifest differs.

Stores are only read (mailfs's maildir backend writes nothing while it
lists and reads); a workload that changes a store works on a clone
(`clone_maildir`: hard links for the messages, real copies of everything
else, since Dovecot appends to dovecot-uidlist in place).
"""

from __future__ import annotations

import array
import base64
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import time
from dataclasses import dataclass

GENERATOR_VERSION = 1
SEED = 20261127
BASE_TIME = 1_700_000_000  # internal date of message 0 of every pool
KIB = 1024

# (probability, smallest, largest) in bytes, per pool kind.
SIZE_CLASSES = {
    "mail": ((0.70, 2 * KIB, 20 * KIB), (0.25, 20 * KIB, 200 * KIB),
             (0.05, 200 * KIB, 5 * KIB * KIB)),
    "text": ((1.0, 2 * KIB, 20 * KIB),),
    "small": ((1.0, 1536, 2560),),
}
POOL_KIND_NUMBER = {"mail": 1, "text": 2, "small": 3}

# A word that appears in the text part of every BODY_WORD_EVERY-th message
# (index % BODY_WORD_EVERY == BODY_WORD_PHASE) and nowhere else: in no
# header, in no attachment, not in the vocabulary. grep -rl and Dovecot's
# UID SEARCH BODY look for it.
BODY_WORD = "quokkarama"
BODY_WORD_EVERY = 100
BODY_WORD_PHASE = 7
# A common vocabulary word: grep -rc counts its lines in every file.
GREP_WORD = "invoice"

FIRST_NAMES = (
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert "
    "Sybil Trent Victor Walter Yasmin Zoe Amara Bjorn Chen Dmitri Elif Farid Giulia Hana Ines "
    "Jonas Kenji Lena Mateo Noor Oskar Priya Quentin Rosa Santiago Tomasz Ulla Vera Wen").split()
LAST_NAMES = (
    "Smith Jones Garcia Müller Rossi Dubois Nakamura Kowalski Andersen Silva Novak Haddad Kim "
    "Okafor Petrov Larsen Moreau Fischer Costa Jensen Brown Taylor Walker Young King").split()
DOMAINS = ("example.org", "example.com", "mail.example.net", "lists.example.edu",
           "corp.example", "example.co.uk", "post.example.de", "billing.example.io")
VOCABULARY = (
    "the of and to in is for on that with as by this be are from at or it an we will your "
    "can have has not all our more about which their when would there been other what one "
    "meeting project report invoice budget schedule review release deadline quarter update "
    "team customer server database backup network deploy patch ticket contract proposal "
    "draft agenda minutes notes summary question answer please thanks regards hello morning "
    "afternoon tomorrow yesterday week month attached document spreadsheet slides figures "
    "numbers estimate forecast revenue expenses approval signature office travel flight "
    "hotel conference workshop training session feedback comments changes version issue "
    "bug fix test build pipeline monitoring alert incident outage maintenance window "
    "migration storage mailbox folder archive message thread reply forward calendar invite "
    "lunch dinner coffee birthday holiday vacation weekend family kids school garden "
    "recipe book film music concert tickets price order shipping delivery tracking refund "
    "account password security login access permission policy compliance audit legal "
    "marketing campaign launch product feature roadmap design prototype research analysis "
    "data results experiment hypothesis paper submission deadline reviewer editor journal").split()
SUBJECT_WORDS = (
    "Meeting notes Quarterly report Invoice Budget review Release plan Deadline Project update "
    "Customer feedback Server maintenance Backup failed Contract draft Agenda Travel plans "
    "Conference Training Incident Outage Migration Holiday Lunch Question Proposal Roadmap "
    "Design review Test results Shipping confirmation Password reset Security alert").split()
ATTACHMENTS = (("report.pdf", "application/pdf"), ("photo.jpg", "image/jpeg"),
               ("slides.pptx", "application/vnd.openxmlformats-officedocument."
                "presentationml.presentation"),
               ("data.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
               ("archive.zip", "application/zip"), ("scan.png", "image/png"))

BLOCK = 1000  # messages generated from one PRNG seed, in index order

_text_lines: list[bytes] | None = None
_base64_lines: list[bytes] | None = None
_day_prefixes: dict[int, str] = {}


def _text_pool_lines() -> list[bytes]:
    """~4 MB of wrapped prose lines (LF-terminated), the same in every run."""
    global _text_lines
    if _text_lines is None:
        rng = random.Random(SEED)
        lines: list[bytes] = []
        for _ in range(60_000):
            words, length = [], 0
            target = rng.randint(40, 74)
            while length < target:
                word = rng.choice(VOCABULARY)
                words.append(word)
                length += len(word) + 1
            if rng.random() < 0.15:
                words[0] = words[0].capitalize()
            line = " ".join(words)
            if rng.random() < 0.2:
                line += "."
            lines.append(line.encode() + b"\n")
            if rng.random() < 0.12:
                lines.append(b"\n")
        _text_lines = lines
    return _text_lines


def _attachment_lines() -> list[bytes]:
    """base64 lines (76 characters + LF) of 12 MiB of random bytes, the same
    in every run; attachments are runs of them from a random start."""
    global _base64_lines
    if _base64_lines is None:
        encoded = base64.b64encode(random.Random(SEED + 1).randbytes(12 * KIB * KIB))
        _base64_lines = [encoded[i:i + 76] + b"\n" for i in range(0, len(encoded), 76)]
    return _base64_lines


class _Picker:
    """Cheap choices from one random.Random (choice() is several times slower)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.random = rng.random

    def pick(self, seq):
        return seq[int(self.random() * len(seq))]

    def between(self, low: int, high: int) -> int:
        return low + int(self.random() * (high - low + 1))

    def hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(digits * 4):0{digits}x}"


def _run_of_lines(p: _Picker, lines: list[bytes], size: int) -> bytes:
    """About `size` bytes of consecutive lines of `lines` from a random start."""
    start = int(p.random() * len(lines))
    out, total, i, n = [], 0, start, len(lines)
    while total < size:
        line = lines[i % n]
        out.append(line)
        total += len(line)
        i += 1
    return b"".join(out)


def _person(p: _Picker) -> tuple[str, str]:
    first, last = p.pick(FIRST_NAMES), p.pick(LAST_NAMES)
    local = f"{first}.{last}".lower().replace("ü", "ue")
    return f"{first} {last}", f"{local}@{p.pick(DOMAINS)}"


def _address(name: str, addr: str) -> str:
    if name.isascii():
        return f"{name} <{addr}>"
    encoded = base64.b64encode(name.encode()).decode()
    return f"=?UTF-8?B?{encoded}?= <{addr}>"


def _rfc5322_date(t: int, p: _Picker) -> str:
    offset_minutes = p.pick((0, 60, 120, -300, -240, 330, 540, -480))
    local = t + offset_minutes * 60
    day, seconds = divmod(local, 86400)
    prefix = _day_prefixes.get(day)
    if prefix is None:
        prefix = _day_prefixes[day] = time.strftime("%a, %d %b %Y", time.gmtime(day * 86400))
    hours, minutes = divmod(abs(offset_minutes), 60)
    sign = "+" if offset_minutes >= 0 else "-"
    return (f"{prefix} {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d} "
            f"{sign}{hours:02d}{minutes:02d}")


def _message_id(p: _Picker) -> str:
    return f"<{p.hex(16)}.{p.hex(8)}@{p.pick(DOMAINS)}>"


def internal_date(index: int) -> int:
    """The internal date (file mtime) of message `index` of any pool."""
    return BASE_TIME + index * 37


def _pick_size(kind: str, p: _Picker) -> int:
    roll = p.random()
    for probability, low, high in SIZE_CLASSES[kind]:
        if roll < probability:
            return p.between(low, high)
        roll -= probability
    _, low, high = SIZE_CLASSES[kind][-1]
    return p.between(low, high)


def block_rng(kind: str, block: int) -> random.Random:
    """The PRNG that generates messages block*BLOCK .. block*BLOCK+BLOCK-1."""
    return random.Random(SEED * 1_000_003 + POOL_KIND_NUMBER[kind] * 100_000_007 + block)


def generate_block(kind: str, block: int):
    """Yields (index, bytes) for every message of one block, in order."""
    p = _Picker(block_rng(kind, block))
    for index in range(block * BLOCK, (block + 1) * BLOCK):
        yield index, _make_message(kind, index, p)


def make_message(kind: str, index: int) -> bytes:
    """The bytes of message `index` of pool `kind` (for tests and spot checks;
    pools generate whole blocks)."""
    for i, data in generate_block(kind, index // BLOCK):
        if i == index:
            return data
    raise AssertionError


def _make_message(kind: str, index: int, p: _Picker) -> bytes:
    size = _pick_size(kind, p)
    t = internal_date(index)
    from_name, from_addr = _person(p)
    to_name, to_addr = _person(p)
    from_domain = from_addr.split("@")[1]
    subject = " ".join(p.pick(SUBJECT_WORDS) for _ in range(p.between(1, 3)))
    reply = p.random() < 0.4
    headers = [
        f"Return-Path: <{from_addr}>",
        f"Received: from mail.{from_domain} (mail.{from_domain} "
        f"[198.51.100.{p.between(1, 254)}])\n\tby mx.example.net with ESMTPS id "
        f"{p.hex(10).upper()}\n\tfor <{to_addr}>; {_rfc5322_date(t, p)}",
        f"Message-ID: {_message_id(p)}",
        f"Date: {_rfc5322_date(t, p)}",
        f"From: {_address(from_name, from_addr)}",
        f"To: {_address(to_name, to_addr)}",
    ]
    if p.random() < 0.3:
        cc_name, cc_addr = _person(p)
        headers.append(f"Cc: {_address(cc_name, cc_addr)}")
    headers.append(f"Subject: {'Re: ' if reply else ''}{subject} #{index}")
    if reply:
        parents = [_message_id(p) for _ in range(p.between(1, 4))]
        headers.append(f"In-Reply-To: {parents[-1]}")
        headers.append("References: " + "\n ".join(parents))
    headers.append("MIME-Version: 1.0")

    head_size = sum(len(h) + 1 for h in headers)
    body_budget = max(size - head_size - 200, 200)
    marker = (f"\nHave you seen the {BODY_WORD} figures yet?\n".encode()
              if index % BODY_WORD_EVERY == BODY_WORD_PHASE else b"")
    prose = _text_pool_lines()

    # Multipart with attachments when the message is large; some small ones
    # are multipart/alternative.
    attach = size > 20 * KIB and (size > 200 * KIB or p.random() < 0.8)
    alternative = not attach and kind != "small" and p.random() < 0.15
    if not attach and not alternative:
        headers.append('Content-Type: text/plain; charset="utf-8"')
        headers.append("Content-Transfer-Encoding: 8bit")
        body = _run_of_lines(p, prose, body_budget) + marker
        return ("\n".join(headers) + "\n\n").encode() + body

    boundary = f"=_bench_{p.hex(12)}"
    subtype = "mixed" if attach else "alternative"
    headers.append(f'Content-Type: multipart/{subtype}; boundary="{boundary}"')
    parts = [("\n".join(headers) + "\n\nThis is a multi-part message in MIME format.\n").encode()]
    text_size = min(body_budget, p.between(400, 6000)) if attach else body_budget // 2
    text = _run_of_lines(p, prose, text_size) + marker
    parts.append(f"--{boundary}\nContent-Type: text/plain; charset=\"utf-8\"\n"
                 f"Content-Transfer-Encoding: 8bit\n\n".encode() + text)
    if attach:
        remaining = body_budget - len(text)
        count = 1 if remaining < 500 * KIB else p.between(1, 3)
        for _ in range(count):
            filename, content_type = p.pick(ATTACHMENTS)
            parts.append(
                f"--{boundary}\nContent-Type: {content_type}; name=\"{filename}\"\n"
                f"Content-Disposition: attachment; filename=\"{filename}\"\n"
                f"Content-Transfer-Encoding: base64\n\n".encode()
                + _run_of_lines(p, _attachment_lines(), remaining // count))
    else:
        html = b"<html><body>\n" + text.replace(b"\n\n", b"\n<p>\n") + b"</body></html>\n"
        parts.append(f"--{boundary}\nContent-Type: text/html; charset=\"utf-8\"\n"
                     f"Content-Transfer-Encoding: 8bit\n\n".encode() + html)
    parts.append(f"--{boundary}--\n".encode())
    return b"".join(parts)


def virtual_size(data: bytes) -> int:
    """Dovecot's W= size: the size with CRLF line ends (LF-only input)."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


# ---------------------------------------------------------------------------
# Pools


def _worker_signals() -> None:
    """Generator workers die quietly on SIGTERM (the benchmark's own handler
    turns it into KeyboardInterrupt, which is for the main process)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _write_block(job: tuple[str, str, int]) -> tuple[array.array, array.array]:
    """Writes one block of a pool (in a worker process); its sizes and vsizes."""
    kind, root, block = job
    sizes, vsizes = array.array("I"), array.array("I")
    for index, data in generate_block(kind, block):
        path = os.path.join(root, f"{index:07d}")
        with open(path, "wb") as f:
            f.write(data)
        t = internal_date(index)
        os.utime(path, (t, t))
        sizes.append(len(data))
        vsizes.append(virtual_size(data))
    return sizes, vsizes


class Pool:
    """Message files `<root>/<index:07d>`, generated on demand, with their
    sizes and virtual sizes kept in `sizes.u32` / `vsizes.u32`."""

    def __init__(self, corpus_dir: str, kind: str):
        self.kind = kind
        self.root = os.path.join(corpus_dir, "pool-" + kind)
        self.sizes = array.array("I")
        self.vsizes = array.array("I")
        self._load()

    def _manifest_path(self) -> str:
        return os.path.join(self.root, "manifest.json")

    def _expected_manifest(self, count: int) -> dict:
        return {"version": GENERATOR_VERSION, "seed": SEED, "kind": self.kind, "count": count}

    def _load(self) -> None:
        try:
            with open(self._manifest_path()) as f:
                manifest = json.load(f)
            if manifest != self._expected_manifest(manifest.get("count", -1)):
                raise ValueError("different generator")
            sizes, vsizes = array.array("I"), array.array("I")
            with open(os.path.join(self.root, "sizes.u32"), "rb") as f:
                sizes.frombytes(f.read())
            with open(os.path.join(self.root, "vsizes.u32"), "rb") as f:
                vsizes.frombytes(f.read())
            if len(sizes) != manifest["count"] or len(vsizes) != manifest["count"]:
                raise ValueError("size tables do not match the manifest")
            self.sizes, self.vsizes = sizes, vsizes
        except (OSError, ValueError, KeyError):
            shutil.rmtree(self.root, ignore_errors=True)
            self.sizes, self.vsizes = array.array("I"), array.array("I")

    @property
    def count(self) -> int:
        return len(self.sizes)

    def path(self, index: int) -> str:
        return os.path.join(self.root, f"{index:07d}")

    def ensure(self, count: int, log) -> bool:
        """Generates messages up to `count` (rounded up to whole blocks), on
        every CPU; True if anything was generated."""
        if self.count >= count:
            return False
        os.makedirs(self.root, exist_ok=True)
        first_block = self.count // BLOCK
        last_block = (count + BLOCK - 1) // BLOCK
        blocks = list(range(first_block, last_block))
        log(f"corpus: generating pool '{self.kind}' messages {first_block * BLOCK}.."
            f"{last_block * BLOCK - 1} in {self.root}")
        began = time.monotonic()
        context = multiprocessing.get_context("fork")
        with context.Pool(os.cpu_count() or 1, initializer=_worker_signals) as workers:
            for done, (sizes, vsizes) in enumerate(
                    workers.imap(_write_block, [(self.kind, self.root, b) for b in blocks])):
                self.sizes.extend(sizes)
                self.vsizes.extend(vsizes)
                if done % 50 == 49:
                    log(f"corpus:   {(done + 1) * BLOCK} of {len(blocks) * BLOCK} "
                        f"({time.monotonic() - began:.0f} s)")
            workers.close()
            workers.join()
        with open(os.path.join(self.root, "sizes.u32"), "wb") as f:
            f.write(self.sizes.tobytes())
        with open(os.path.join(self.root, "vsizes.u32"), "wb") as f:
            f.write(self.vsizes.tobytes())
        with open(self._manifest_path(), "w") as f:
            json.dump(self._expected_manifest(self.count), f)
        return True

    def count_for_bytes(self, total: int) -> int:
        """How many messages from index 0 on add up to at least `total` bytes
        (the pool must be large enough)."""
        running = 0
        for i, size in enumerate(self.sizes):
            running += size
            if running >= total:
                return i + 1
        raise ValueError(f"pool '{self.kind}' holds only {running} bytes")

    def bytes_of(self, count: int) -> int:
        return sum(self.sizes[:count])


def ensure_pool_bytes(pool: Pool, total: int, log) -> int:
    """Grows `pool` until its first messages add up to `total` bytes; the count."""
    while True:
        running = sum(pool.sizes)
        if running >= total:
            return pool.count_for_bytes(total)
        # Mean 165 KiB for "mail": ask for a bit more than needed.
        mean = running / pool.count if pool.count else 100 * KIB
        missing = int((total - running) / mean * 1.1) + 16
        pool.ensure(pool.count + missing, log)


# ---------------------------------------------------------------------------
# Maildir stores


@dataclass(frozen=True)
class Mailbox:
    """`count` messages of `pool` (indexes 0..count-1) as mailbox `name`."""
    name: str  # "INBOX" or a top-level Maildir++ folder name (ASCII)
    pool: Pool
    count: int


HOSTNAME = "bench"
PID_FIELD = 4242


def maildir_base_name(pool: Pool, index: int) -> str:
    """Dovecot's file name (without the :2, info) for a pool message."""
    return (f"{internal_date(index)}.M{index}P{PID_FIELD}.{HOSTNAME},"
            f"S={pool.sizes[index]},W={pool.vsizes[index]}")


def mailbox_dir(store: str, name: str) -> str:
    return store if name == "INBOX" else os.path.join(store, "." + name)


def _guid(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _write_mailbox(store: str, box: Mailbox, uidvalidity: int) -> None:
    directory = mailbox_dir(store, box.name)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    if box.name != "INBOX":
        open(os.path.join(directory, "maildirfolder"), "wb").close()
    cur = os.path.join(directory, "cur")
    lines = [f"3 V{uidvalidity} N{box.count + 1} G{_guid(store + box.name)}\n"]
    for index in range(box.count):
        base = maildir_base_name(box.pool, index)
        os.link(box.pool.path(index), os.path.join(cur, base + ":2,"))
        lines.append(f"{index + 1} :{base}\n")
    with open(os.path.join(directory, "dovecot-uidlist"), "w") as f:
        f.writelines(lines)


def store_spec(mailboxes: list[Mailbox]) -> dict:
    return {"version": GENERATOR_VERSION, "seed": SEED,
            "mailboxes": [[b.name, b.pool.kind, b.count] for b in mailboxes]}


def ensure_store(corpus_dir: str, name: str, mailboxes: list[Mailbox], log) -> str:
    """The Maildir `<corpus_dir>/store-<name>` holding `mailboxes`, rebuilt
    unless its manifest matches and its file counts are right."""
    store = os.path.join(corpus_dir, "store-" + name)
    manifest_path = os.path.join(corpus_dir, f"store-{name}.json")
    spec = store_spec(mailboxes)
    try:
        with open(manifest_path) as f:
            if json.load(f) == spec and all(
                    len(os.listdir(os.path.join(mailbox_dir(store, b.name), "cur"))) == b.count
                    for b in mailboxes):
                return store
    except (OSError, ValueError):
        pass
    log(f"corpus: building Maildir {store}")
    if os.path.exists(manifest_path):
        os.unlink(manifest_path)
    shutil.rmtree(store, ignore_errors=True)
    os.makedirs(store)
    for number, box in enumerate(mailboxes):
        _write_mailbox(store, box, uidvalidity=1_700_000_000 + number)
    with open(manifest_path, "w") as f:
        json.dump(spec, f)
    return store


def clone_maildir(source: str, target: str) -> None:
    """Copies a Maildir tree: message files (in cur/ and new/) as hard links,
    everything else as real copies."""
    shutil.rmtree(target, ignore_errors=True)
    for directory, subdirs, files in os.walk(source):
        relative = os.path.relpath(directory, source)
        out = os.path.normpath(os.path.join(target, relative))
        os.makedirs(out, exist_ok=True)
        link = os.path.basename(directory) in ("cur", "new")
        for name in files:
            src, dst = os.path.join(directory, name), os.path.join(out, name)
            if link:
                os.link(src, dst)
            else:
                shutil.copy2(src, dst)


def count_messages(maildir_mailbox: str) -> int:
    """Message files in a mailbox directory's cur/ and new/."""
    return sum(len(os.listdir(os.path.join(maildir_mailbox, sub))) for sub in ("cur", "new"))
