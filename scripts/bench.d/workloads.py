"""The workloads of issue 5's table, each against its reference, in one run.

Each `measure_*` function adds its rows to `bench.rows` and measures them
with measure.alternate (warm-up, then alternating repetitions). The
functions that drive a workload check afterwards that it really did the
work (counts, per-file grep counts, flags on disk, bytes read) and raise
VerificationError when not, which marks the row FAILED.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
import dataclasses
from dataclasses import dataclass

import corpus
from corpus import Mailbox
from measure import Row, Target, alternate, fill_pair, measure_rows
from services import (DOVECOT_UID, Dovecot, MailfsMount, Pymap, RedisServer, VerificationError,
                      allow_traverse, chown_tree, drop_caches, require_success, timed,
                      vm_hwm_bytes)


@dataclass(frozen=True)
class Sizes:
    """How much work each row does (full run and --quick)."""
    reps: int
    listing: int                 # messages in the listed mailbox (ls -l rows, redis ls -l)
    cost_sizes: tuple[int, ...]  # cost-per-entry mailbox sizes
    rss: int                     # messages for the peak-RSS row
    grep_bytes: int              # grep -rc corpus size
    cp: int                      # messages copied by the cp rows (mailfs, writer, plain cp)
    cp_dovecot: int              # messages APPENDed to Dovecot per repetition
    text: int                    # messages for setfattr and grep -rl / UID SEARCH
    mv: int                      # messages moved by the mv row
    redis_cp: int                # messages copied into the redis mount
    pymap_cp: int                # messages APPENDed to pymap per repetition
    redis_fetch: int             # mailbox size for redis ls -l vs pymap UID FETCH


# The full run. The copy rows compare rates (messages per second), so they
# copy fewer than the issue's 10 000 messages of the full size distribution
# (1.65 GB per copy; a durable repetition of all three writers took about
# 90 s per 2 000 messages here). mv moves 2 000: at the 10 ms per move
# mailfs took when this was written, 10 000 would take 100 s per
# repetition, 10 minutes for the row. ISSUE uses the issue's counts.
FULL = Sizes(reps=5, listing=100_000, cost_sizes=(1_000, 10_000, 100_000), rss=1_000_000,
             grep_bytes=1_000_000_000, cp=500, cp_dovecot=250, text=10_000, mv=2_000,
             redis_cp=500, pymap_cp=250, redis_fetch=10_000)
ISSUE = dataclasses.replace(FULL, cp=10_000, cp_dovecot=1_000, mv=10_000, redis_cp=10_000,
                            pymap_cp=1_000)
QUICK = Sizes(reps=3, listing=10_000, cost_sizes=(1_000, 10_000), rss=100_000,
              grep_bytes=50_000_000, cp=60, cp_dovecot=30, text=1_000, mv=200, redis_cp=60,
              pymap_cp=30, redis_fetch=1_000)

MB = 1_000_000


def count_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


class Bench:
    """What every workload needs: sizes, paths, the mailfs binary, the
    corpus, the servers, and the rows measured so far."""

    def __init__(self, sizes: Sizes, work_dir: str, out_dir: str, binary: str,
                 pymap_dir: str | None, log):
        self.sizes, self.binary, self.pymap_dir, self.log = sizes, binary, pymap_dir, log
        self.work_dir = work_dir
        self.corpus_dir = os.path.join(work_dir, "corpus")
        self.run_dir = os.path.join(work_dir, "run")
        self.out_dir = out_dir
        self.logs_dir = os.path.join(out_dir, "logs")
        self.rows: list[Row] = []
        self.redis: RedisServer | None = None
        self.dovecot: Dovecot | None = None
        self.stores: dict[str, str] = {}
        self.mail = self.text = self.small = None  # corpus.Pool
        self.grep_count = 0
        self.redis_load_seconds = 0.0
        self.dovecot_error = "no Dovecot"  # why b.dovecot is None

    # -- corpus ---------------------------------------------------------------

    def prepare_corpus(self) -> None:
        s = self.sizes
        os.makedirs(self.corpus_dir, exist_ok=True)
        self.mail = corpus.Pool(self.corpus_dir, "mail")
        self.text = corpus.Pool(self.corpus_dir, "text")
        self.small = corpus.Pool(self.corpus_dir, "small")
        self.grep_count = corpus.ensure_pool_bytes(self.mail, s.grep_bytes, self.log)
        self.mail.ensure(s.cp, self.log)
        self.text.ensure(max(s.text, s.mv), self.log)
        self.small.ensure(max(s.listing, s.rss), self.log)

        listing = [Mailbox("INBOX", self.small, s.listing)]
        listing += [Mailbox(self.entries_name(k), self.small, k)
                    for k in sorted(set(s.cost_sizes) | {s.redis_fetch}) if k != s.listing]
        self.stores["listing"] = corpus.ensure_store(
            self.corpus_dir, f"listing-{s.listing}", listing, self.log)
        self.stores["rss"] = (self.stores["listing"] if s.rss == s.listing else
                              corpus.ensure_store(self.corpus_dir, f"small-{s.rss}",
                                                  [Mailbox("INBOX", self.small, s.rss)], self.log))
        self.stores["grep"] = corpus.ensure_store(
            self.corpus_dir, f"mail-{self.grep_count}",
            [Mailbox("INBOX", self.mail, self.grep_count)], self.log)
        self.stores["text"] = corpus.ensure_store(
            self.corpus_dir, f"text-{s.text}", [Mailbox("INBOX", self.text, s.text)], self.log)
        self.stores["mv"] = (self.stores["text"] if s.mv == s.text else
                             corpus.ensure_store(self.corpus_dir, f"text-{s.mv}",
                                                 [Mailbox("INBOX", self.text, s.mv)], self.log))

    def entries_name(self, count: int) -> str:
        return "INBOX" if count == self.sizes.listing else f"Entries{count}"

    def listing_dirs(self, count: int, mount: str) -> tuple[str, str]:
        """(directory on the mount, the Maildir's cur/) of the listing
        store's mailbox of `count` messages."""
        name = self.entries_name(count)
        return (os.path.join(mount, name),
                os.path.join(corpus.mailbox_dir(self.stores["listing"], name), "cur"))

    # -- helpers --------------------------------------------------------------

    def path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def mount(self, name: str, source: str, options: tuple[str, ...] = ()) -> MailfsMount:
        mountpoint = self.path("mnt-" + name)
        return MailfsMount(self.binary, source, mountpoint,
                           os.path.join(self.logs_dir, f"mailfs-{name}.log"), options).start()

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def write_list(self, name: str, paths: list[str]) -> str:
        """A NUL-separated list of paths for `xargs -0 -a`."""
        list_path = self.path(name + ".list")
        with open(list_path, "wb") as f:
            f.write(b"".join(p.encode() + b"\0" for p in paths))
        return list_path


# ---------------------------------------------------------------------------
# Small workload drivers (each checks its result)


def ls_l(directory: str, expected: int) -> float:
    """`ls -l DIR`; its output must have one line per message plus `total`."""
    seconds, result = timed(["ls", "-l", directory], stdout=subprocess.PIPE)
    require_success(result, f"ls -l {directory}")
    lines = result.stdout.count(b"\n")
    if lines != expected + 1:
        raise VerificationError(f"ls -l {directory} printed {lines - 1} entries, "
                                f"expected {expected}")
    return seconds


def grep_counts(output: bytes, key) -> dict[str, int]:
    counts = {}
    for line in output.splitlines():
        path, _, count = line.rpartition(b":")
        counts[key(os.path.basename(path.decode()))] = int(count)
    return counts


def cp_files(list_path: str, target: str, parallel: int = 1) -> float:
    """`xargs -0 -a LIST cp -t TARGET` (one cp per few thousand files)."""
    cmd = ["xargs", "-0", "-a", list_path]
    if parallel > 1:
        cmd += ["-P", str(parallel), "-n", "500"]
    seconds, result = timed(cmd + ["cp", "-t", target])
    require_success(result, f"cp into {target}")
    return seconds


def expect_entries(directory: str, expected: int, what: str) -> None:
    found = len(os.listdir(directory))
    if found != expected:
        raise VerificationError(f"{what}: {found} messages in {directory}, expected {expected}")


def fresh_maildir(path: str) -> str:
    shutil.rmtree(path, ignore_errors=True)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub))
    return path


def fsync_writer(sources: list[str], maildir: str) -> float:
    """The reference durable writer: each message read, written to tmp/,
    fsynced, renamed into new/ (the Maildir protocol)."""
    tmp, new = os.path.join(maildir, "tmp"), os.path.join(maildir, "new")
    began = time.perf_counter()
    for number, source in enumerate(sources):
        with open(source, "rb") as f:
            data = f.read()
        name = f"{int(time.time())}.M{number}P{os.getpid()}.bench"
        fd = os.open(os.path.join(tmp, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(os.path.join(tmp, name), os.path.join(new, name))
    return time.perf_counter() - began


def imap_ok(response, what: str):
    status, data = response
    if status != "OK":
        raise VerificationError(f"IMAP {what}: {status} {data!r}")
    return data


def imap_append_all(conn, mailbox: str, sources: list[str]) -> float:
    """APPENDs each message, one command at a time, as a client does."""
    messages = []
    for source in sources:
        with open(source, "rb") as f:
            messages.append(f.read())
    began = time.perf_counter()
    for data in messages:
        imap_ok(conn.append(mailbox, None, None, data), "APPEND")
    return time.perf_counter() - began


def imap_message_count(conn, mailbox: str) -> int:
    data = imap_ok(conn.status(mailbox, "(MESSAGES)"), "STATUS")
    text = data[0].decode()
    return int(text.rsplit("MESSAGES", 1)[1].strip(" )"))


# ---------------------------------------------------------------------------
# ls -l of the listing mailbox (maildir warm, cold) and cost per entry



def measure_on_mount(rows: list[Row], log, body, state: dict, store: str | None = None) -> None:
    """measure_rows, and then, whatever happened, stops the mount `body`
    left in state["mount"] and removes the scratch copy `store`."""
    try:
        measure_rows(rows, log, body)
    finally:
        if "mount" in state:
            state["mount"].stop()
        if store is not None:
            shutil.rmtree(store, ignore_errors=True)

def measure_listing(b: Bench) -> None:
    s = b.sizes
    n = s.listing
    label = count_label(n)
    warm = b.add(Row(f"ls -l of {label} msgs (maildir, warm; ~2 KB msgs)",
                     "ls -l of the Maildir's cur/", Target("<=", 1.0, "time")))
    cold = b.add(Row(f"ls -l of {label} msgs (maildir, cold)",
                     "ls -l of cur/, cold", Target("<=", 1.5, "time")))
    b.log(f"ls -l of {n} messages, maildir mount")
    source = "maildir:" + b.stores["listing"]
    state = {}

    def body():
        mount = state["mount"] = b.mount("listing", source)
        mailfs_dir, native_dir = b.listing_dirs(n, mount.mountpoint)
        times, warmups = alternate(s.reps, {"mailfs": lambda: ls_l(mailfs_dir, n),
                                            "reference": lambda: ls_l(native_dir, n)},
                                   b.log, "warm")
        fill_pair(warm, times, warmups)

        def mailfs_cold() -> float:
            state["mount"].stop()
            state["mount"] = b.mount("listing", source)
            drop_caches()
            return ls_l(mailfs_dir, n)

        def native_cold() -> float:
            drop_caches()
            return ls_l(native_dir, n)

        times, warmups = alternate(s.reps, {"mailfs": mailfs_cold, "reference": native_cold},
                                   b.log, "cold")
        fill_pair(cold, times, warmups)

    measure_on_mount([warm, cold], b.log, body, state)


def measure_cost_per_entry(b: Bench) -> None:
    """µs per entry of ls -l, stat and cat at every cost size, on a warm
    mount of the listing store (and natively, for comparison); flat = the
    largest size costs about what the smallest does per entry."""
    s = b.sizes
    state = {}
    sizes = s.cost_sizes
    first, last = count_label(sizes[0]), count_label(sizes[-1])
    rows = {op: b.add(Row(f"{op} cost per entry, {' / '.join(count_label(k) for k in sizes)}",
                          "native, same sizes",
                          Target("<=", 2.0, "value", f"flat: {last}/{first} ≤ 2×"),
                          unit="µs/entry"))
            for op in ("ls -l", "stat", "cat")}
    b.log("cost per entry of ls -l, stat, cat")

    def stat_all(paths: list[str]) -> float:
        began = time.perf_counter()
        for p in paths:
            os.stat(p)
        return time.perf_counter() - began

    def cat_all(list_path: str, expected_bytes: int, verify: bool) -> float:
        """`xargs -0 -a LIST cat`; with `verify` (the warm-up) through `wc -c`,
        whose count must be every byte of every message."""
        if not verify:
            seconds, result = timed(["xargs", "-0", "-a", list_path, "cat"])
            require_success(result, "cat")
            return seconds
        seconds, result = timed(f"xargs -0 -a '{list_path}' cat | wc -c", stdout=subprocess.PIPE)
        require_success(result, "cat")
        if int(result.stdout) != expected_bytes:
            raise VerificationError(f"cat read {int(result.stdout)} bytes, "
                                    f"expected {expected_bytes}")
        return seconds

    def body():
        state["mount"] = b.mount("listing", "maildir:" + b.stores["listing"])
        mountpoint = state["mount"].mountpoint
        per_entry: dict[str, dict[str, list[float]]] = {
            op: {"mailfs": [], "native": []} for op in rows}
        raw_reps: dict[str, dict[str, list[float]]] = {op: {} for op in rows}
        for k in sizes:
            mailfs_dir, native_dir = b.listing_dirs(k, mountpoint)
            expected_bytes = b.small.bytes_of(k)
            sides = {"mailfs": mailfs_dir, "native": native_dir}
            paths = {side: sorted(os.path.join(d, e) for e in os.listdir(d))
                     for side, d in sides.items()}
            for side in sides:
                if len(paths[side]) != k:
                    raise VerificationError(f"{sides[side]} holds {len(paths[side])} entries, "
                                            f"expected {k}")
            lists = {side: b.write_list(f"cost-{side}-{k}", paths[side]) for side in sides}
            cat_verified: set[str] = set()

            def cat(side: str) -> float:
                verify = side not in cat_verified  # the warm-up checks the bytes
                cat_verified.add(side)
                return cat_all(lists[side], expected_bytes, verify)

            for op, run in (("ls -l", lambda side: ls_l(sides[side], k)),
                            ("stat", lambda side: stat_all(paths[side])),
                            ("cat", cat)):
                raw_times = raw_reps[op]
                times, _ = alternate(s.reps, {side: (lambda side=side: run(side))
                                              for side in sides}, b.log, f"{op} {count_label(k)}")
                for side in sides:
                    per_entry[op][side].append(statistics.median(times[side]) / k * 1e6)
                    raw_times[f"{side}_{count_label(k)}_s"] = times[side]
        for op, row in rows.items():
            m, r = per_entry[op]["mailfs"], per_entry[op]["native"]
            row.mailfs_text = " / ".join(f"{v:.1f}" for v in m) + " µs"
            row.ref_text = " / ".join(f"{v:.1f}" for v in r) + " µs"
            row.value = m[-1] / m[0]
            row.note = f"native {last}/{first} = {r[-1] / r[0]:.2f}×"
            row.raw = {"mailfs_us_per_entry": m, "native_us_per_entry": r, **raw_reps[op]}
            row.done = True

    measure_on_mount(list(rows.values()), b.log, body, state)


# ---------------------------------------------------------------------------
# Peak RSS


def measure_rss(b: Bench) -> None:
    n = b.sizes.rss
    row = b.add(Row(f"peak RSS serving {count_label(n)} msgs after ls -l (~2 KB msgs)", "—",
                    Target("<=", 200, "value", "≤ 200 B/msg"), unit="B/msg"))
    b.log(f"peak RSS of mailfs serving {n} messages")
    state = {}

    def body():
        mount = state["mount"] = b.mount("rss", "maildir:" + b.stores["rss"])
        at_mount = vm_hwm_bytes(mount.pid)
        seconds = ls_l(os.path.join(mount.mountpoint, "INBOX"), n)
        peak = vm_hwm_bytes(mount.pid)
        row.value = peak / n
        row.mailfs_text = f"{peak / n:.0f} B/msg"
        row.ref_text = "—"
        row.note = (f"VmHWM {peak / 2**20:.1f} MiB after ls -l ({seconds:.1f} s), "
                    f"{at_mount / 2**20:.1f} MiB after mounting")
        row.mailfs_times = [seconds]
        row.raw = {"vmhwm_bytes": [peak], "vmhwm_at_mount_bytes": [at_mount]}
        row.done = True
        b.log(f"  {row.note}")

    measure_on_mount([row], b.log, body, state)


# ---------------------------------------------------------------------------
# grep -rc over ~1 GB, warm and cold


def measure_grep(b: Bench) -> None:
    s = b.sizes
    n = b.grep_count
    total = b.mail.bytes_of(n)
    size_label = f"{total / 1e9:.2f} GB" if total >= 1e9 * 0.5 else f"{total / 1e6:.0f} MB"
    warm = b.add(Row(f"grep -rc over {size_label} ({n} msgs), warm", "grep -rc on the Maildir",
                     Target(">=", 0.9, "rate"), unit="MB/s", mailfs_work=total / MB,
                     ref_work=total / MB))
    cold = b.add(Row(f"grep -rc over {size_label}, cold", "grep -rc on the Maildir, cold",
                     Target(">=", 0.5, "rate"), unit="MB/s", mailfs_work=total / MB,
                     ref_work=total / MB))
    b.log(f"grep -rc {corpus.GREP_WORD} over {n} messages ({total} bytes)")
    store = b.stores["grep"]
    native_dir = os.path.join(store, "cur")
    uid_of_name = {corpus.maildir_base_name(b.mail, i) + ":2,": str(i + 1) for i in range(n)}
    expected: dict[str, int] = {}
    state = {}

    def run_grep(directory: str, key) -> float:
        seconds, result = timed(["grep", "-rc", corpus.GREP_WORD, directory],
                                stdout=subprocess.PIPE)
        require_success(result, "grep -rc")
        counts = grep_counts(result.stdout, key)
        if not expected:
            expected.update(counts)
        if counts != expected or len(counts) != n:
            raise VerificationError(f"grep -rc in {directory}: {len(counts)} files, counts "
                                    f"{'equal' if counts == expected else 'differ'} "
                                    f"(expected {n} files, native counts)")
        return seconds

    def native(cold_cache: bool = False) -> float:
        if cold_cache:
            drop_caches()
        return run_grep(native_dir, lambda name: uid_of_name[name])

    def body():
        native()  # the native counts every mailfs run must match
        mount = state["mount"] = b.mount("grep", "maildir:" + store)
        inbox = os.path.join(mount.mountpoint, "INBOX")
        mailfs = lambda: run_grep(inbox, lambda name: name.removesuffix(".eml"))  # noqa: E731
        times, warmups = alternate(s.reps, {"mailfs": mailfs, "reference": native}, b.log, "warm")
        fill_pair(warm, times, warmups)

        def mailfs_cold() -> float:
            state["mount"].stop()
            state["mount"] = b.mount("grep", "maildir:" + store)
            drop_caches()
            return mailfs()

        times, warmups = alternate(s.reps, {"mailfs": mailfs_cold,
                                            "reference": lambda: native(True)}, b.log, "cold")
        fill_pair(cold, times, warmups)

    measure_on_mount([warm, cold], b.log, body, state)


# ---------------------------------------------------------------------------
# cp into a mailbox: durable (vs fsync writer, Dovecot APPEND) and relaxed


def measure_copy(b: Bench) -> None:
    s = b.sizes
    n, nd = s.cp, s.cp_dovecot
    sources = [b.mail.path(i) for i in range(n)]
    total = b.mail.bytes_of(n)
    list_path = b.write_list("copy", sources)
    desc = f"{n} msgs, {total / 1e6:.0f} MB"
    durable_writer = b.add(Row(f"cp {desc} into a mailbox, durable",
                               "tmp/+fsync+rename writer", Target(">=", 0.8, "rate"),
                               unit="msg/s", mailfs_work=n, ref_work=n))
    durable_dovecot = b.add(Row("the same cp, durable", f"Dovecot IMAP APPEND ({nd} msgs)",
                                Target(">=", 5.0, "rate"), unit="msg/s", mailfs_work=n,
                                ref_work=nd))
    relaxed = b.add(Row(f"cp {desc}, -o fsync=no", "plain cp into a directory",
                        Target(">=", 0.5, "rate"), unit="msg/s", mailfs_work=n, ref_work=n))
    b.log(f"cp of {n} messages ({total} bytes)")
    store = b.path("cp-store")
    native_target = b.path("cp-native")

    def mailfs_cp(options: tuple[str, ...]) -> float:
        fresh_maildir(store)
        mount = b.mount("cp", "maildir:" + store, options)
        try:
            inbox = os.path.join(mount.mountpoint, "INBOX")
            seconds = cp_files(list_path, inbox)
            expect_entries(inbox, n, "cp into the mount")
        finally:
            mount.stop()
        found = corpus.count_messages(store)
        if found != n:
            raise VerificationError(f"cp into the mount: {found} files in the Maildir, "
                                    f"expected {n}")
        shutil.rmtree(store)
        return seconds

    def writer() -> float:
        fresh_maildir(native_target)
        seconds = fsync_writer(sources, native_target)
        expect_entries(os.path.join(native_target, "new"), n, "fsync writer")
        shutil.rmtree(native_target)
        return seconds

    def plain_cp() -> float:
        shutil.rmtree(native_target, ignore_errors=True)
        os.makedirs(native_target)
        seconds = cp_files(list_path, native_target)
        expect_entries(native_target, n, "plain cp")
        shutil.rmtree(native_target)
        return seconds

    def dovecot_append() -> float:
        conn = b.dovecot.imap()
        try:
            imap_ok(conn.create("Append"), "CREATE")
            seconds = imap_append_all(conn, "Append", sources[:nd])
            found = imap_message_count(conn, "Append")
            if found != nd:
                raise VerificationError(f"Dovecot APPEND: {found} messages, expected {nd}")
            imap_ok(conn.delete("Append"), "DELETE")
        finally:
            conn.logout()
        return seconds

    def durable_body():
        sides = {"mailfs": lambda: mailfs_cp(()), "writer": writer}
        if b.dovecot is not None:
            sides["dovecot"] = dovecot_append
        else:
            durable_dovecot.fail(b.dovecot_error)
        times, warmups = alternate(s.reps, sides, b.log, "durable")
        fill_pair(durable_writer, times, warmups, reference="writer")
        if b.dovecot is not None:
            fill_pair(durable_dovecot, times, warmups, reference="dovecot")

    def relaxed_body():
        times, warmups = alternate(s.reps, {"mailfs": lambda: mailfs_cp(("fsync=no",)),
                                            "reference": plain_cp}, b.log, "relaxed")
        fill_pair(relaxed, times, warmups)

    measure_rows([durable_writer, durable_dovecot], b.log, durable_body)
    measure_rows([relaxed], b.log, relaxed_body)
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(native_target, ignore_errors=True)


# ---------------------------------------------------------------------------
# Dovecot stores for setfattr, mv and UID SEARCH; the IMAP server


def prepare_dovecot(b: Bench) -> None:
    """Clones the text store (for setfattr and UID SEARCH, also the IMAP
    server's mail) and the mv store for Dovecot (owned by its uid), writes
    its configs, lets it index both (not in a measurement) and starts its
    IMAP server."""
    stores = {"dovecot-store": b.stores["text"], "dovecot-mv-store": b.stores["mv"]}
    try:
        dovecot = Dovecot(b.path("dovecot"), b.path("dovecot-store"),
                          os.path.join(b.logs_dir, "dovecot.log"))
        dovecot.write_doveadm_config()
        for clone, source in stores.items():
            store = b.path(clone)
            corpus.clone_maildir(source, store)
            chown_tree(store, DOVECOT_UID, DOVECOT_UID)
            allow_traverse(store)
            dovecot.doveadm(store, "mailbox", "create", "Archive")
            counts = dovecot.mailbox_counts(store, "INBOX", "Archive")
            expected = corpus.count_messages(source)
            if counts != {"INBOX": expected, "Archive": 0}:
                raise VerificationError(f"Dovecot sees {counts} in {store}, "
                                        f"expected INBOX {expected}")
        dovecot.start_server()
    except Exception as e:  # noqa: BLE001 - the rows that need Dovecot report it
        b.dovecot_error = f"no Dovecot: {e}"
        b.log(b.dovecot_error)
        return
    b.dovecot = dovecot


def seen_on_disk(maildir_mailbox: str) -> int:
    """Message files of a Maildir mailbox whose name carries \\Seen (S)."""
    names = os.listdir(os.path.join(maildir_mailbox, "cur"))
    return sum(1 for name in names if "S" in name.rpartition(":2,")[2])


def xargs_over_mailbox(directory: str, command: str) -> float:
    """`find DIR -name '*.eml' -print0 | xargs -0 COMMAND`: one process per
    few thousand messages."""
    seconds, result = timed(f"find '{directory}' -name '*.eml' -print0 | xargs -0 {command}")
    require_success(result, command)
    return seconds


def measure_flags(b: Bench) -> None:
    s = b.sizes
    n = s.text
    row = b.add(Row(f"setfattr user.mail.seen on {count_label(n)} msgs (find | xargs)",
                    "doveadm flags add '\\Seen'", Target("<=", 1.0, "time")))
    b.log(f"setfattr -n user.mail.seen over {n} messages")
    store = b.path("flags-store")
    state = {}

    def mailfs_setfattr() -> float:
        inbox = os.path.join(state["mount"].mountpoint, "INBOX")
        seconds = xargs_over_mailbox(inbox, "setfattr -n user.mail.seen -v 1")
        marked = seen_on_disk(store)
        for name in sorted(os.listdir(inbox))[::max(1, n // 10)]:
            r = subprocess.run(["getfattr", "-n", "user.mail.seen", os.path.join(inbox, name)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if r.returncode != 0:
                raise VerificationError(f"getfattr user.mail.seen on {name}: "
                                        f"{r.stderr.decode().strip()}")
        if marked != n:
            raise VerificationError(f"setfattr: {marked} of {n} files have S in the Maildir")
        xargs_over_mailbox(inbox, "setfattr -x user.mail.seen")  # back to unseen, untimed
        if seen_on_disk(store) != 0:
            raise VerificationError("setfattr -x left \\Seen files in the Maildir")
        return seconds

    def doveadm_flags() -> float:
        dovecot_store = b.dovecot.imap_store
        seconds, _ = b.dovecot.doveadm(dovecot_store, "flags", "add", "\\Seen", "mailbox",
                                       "INBOX", "ALL")
        _, out = b.dovecot.doveadm(dovecot_store, "search", "mailbox", "INBOX", "SEEN")
        if len(out.splitlines()) != n:
            raise VerificationError(f"doveadm flags add: {len(out.splitlines())} of {n} seen")
        b.dovecot.doveadm(dovecot_store, "flags", "remove", "\\Seen", "mailbox", "INBOX", "ALL")
        return seconds

    def body():
        if b.dovecot is None:
            raise VerificationError(b.dovecot_error)
        corpus.clone_maildir(b.stores["text"], store)
        mount = state["mount"] = b.mount("flags", "maildir:" + store)
        ls_l(os.path.join(mount.mountpoint, "INBOX"), n)
        times, warmups = alternate(s.reps, {"mailfs": mailfs_setfattr,
                                            "reference": doveadm_flags}, b.log, "setfattr")
        fill_pair(row, times, warmups)

    measure_on_mount([row], b.log, body, state, store)


def measure_move(b: Bench) -> None:
    """mv of every message of one mailbox to another. Each repetition moves
    them all the other way (INBOX -> Archive, then Archive -> INBOX, ...),
    on both sides, so no untimed move back is needed."""
    s = b.sizes
    n = s.mv
    row = b.add(Row(f"mv of {count_label(n)} msgs to another mailbox (find -exec mv -t)",
                    "doveadm move", Target("<=", 1.0, "time")))
    b.log(f"mv of {n} messages between two mailboxes")
    store = b.path("mv-store")
    state = {"mailfs_in": "INBOX", "dovecot_in": "INBOX"}
    other = {"INBOX": "Archive", "Archive": "INBOX"}

    def mailfs_move() -> float:
        source = state["mailfs_in"]
        target = other[source]
        source_dir = os.path.join(state["mount"].mountpoint, source)
        target_dir = os.path.join(state["mount"].mountpoint, target)
        seconds, result = timed(["find", source_dir, "-name", "*.eml", "-exec", "mv", "-t",
                                 target_dir, "{}", "+"])
        require_success(result, "find -exec mv")
        expect_entries(source_dir, 0, "mv (source)")
        expect_entries(target_dir, n, "mv (target)")
        on_disk = corpus.count_messages(corpus.mailbox_dir(store, target))
        if on_disk != n:
            raise VerificationError(f"mv: {on_disk} files in the Maildir's {target}, expected {n}")
        state["mailfs_in"] = target
        return seconds

    def doveadm_move() -> float:
        dovecot_store = b.path("dovecot-mv-store")
        source = state["dovecot_in"]
        target = other[source]
        seconds, _ = b.dovecot.doveadm(dovecot_store, "move", target, "mailbox", source, "ALL")
        counts = b.dovecot.mailbox_counts(dovecot_store, "INBOX", "Archive")
        if counts != {source: 0, target: n}:
            raise VerificationError(f"doveadm move: {counts}, expected {target} {n}")
        state["dovecot_in"] = target
        return seconds

    def body():
        if b.dovecot is None:
            raise VerificationError(b.dovecot_error)
        corpus.clone_maildir(b.stores["mv"], store)
        mount = state["mount"] = b.mount("mv", "maildir:" + store)
        os.mkdir(os.path.join(mount.mountpoint, "Archive"))
        ls_l(os.path.join(mount.mountpoint, "INBOX"), n)
        times, warmups = alternate(s.reps, {"mailfs": mailfs_move, "reference": doveadm_move},
                                   b.log, "mv")
        fill_pair(row, times, warmups)

    measure_on_mount([row], b.log, body, state, store)


def measure_body_search(b: Bench) -> None:
    s = b.sizes
    n = s.text
    expected = sum(1 for i in range(n)
                   if i % corpus.BODY_WORD_EVERY == corpus.BODY_WORD_PHASE)
    row = b.add(Row(f"grep -rl for a body word, {count_label(n)} msgs (~11 KB)",
                    "Dovecot UID SEARCH BODY (no FTS)", Target(">=", 5.0, "speedup")))
    b.log(f"grep -rl {corpus.BODY_WORD} vs UID SEARCH BODY over {n} messages "
          f"({expected} match)")
    state = {}

    def mailfs_grep() -> float:
        inbox = os.path.join(state["mount"].mountpoint, "INBOX")
        seconds, result = timed(["grep", "-rl", corpus.BODY_WORD, inbox], stdout=subprocess.PIPE)
        require_success(result, "grep -rl")
        found = len(result.stdout.splitlines())
        if found != expected:
            raise VerificationError(f"grep -rl found {found} messages, expected {expected}")
        return seconds

    def dovecot_search() -> float:
        conn = state["imap"]
        began = time.perf_counter()
        data = imap_ok(conn.uid("SEARCH", "BODY", corpus.BODY_WORD), "UID SEARCH")
        seconds = time.perf_counter() - began
        found = len(data[0].split())
        if found != expected:
            raise VerificationError(f"UID SEARCH BODY found {found} messages, expected {expected}")
        return seconds

    def body():
        if b.dovecot is None:
            raise VerificationError(b.dovecot_error)
        state["mount"] = b.mount("search", "maildir:" + b.stores["text"])
        conn = state["imap"] = b.dovecot.imap()
        imap_ok(conn.select("INBOX", readonly=True), "EXAMINE")
        times, warmups = alternate(s.reps, {"mailfs": mailfs_grep, "reference": dovecot_search},
                                   b.log, "search")
        fill_pair(row, times, warmups)

    try:
        measure_rows([row], b.log, body)
    finally:
        if "imap" in state:
            state["imap"].logout()
        if "mount" in state:
            state["mount"].stop()


# ---------------------------------------------------------------------------
# Redis: the listing mailboxes (loaded once, kept in bench.rdb), ls -l,
# cp, and pymap


REDIS_LOGIN = "bench"  # the same login for mailfs and pymap: pymap sees what mailfs stored


def redis_box(count: int) -> str:
    return f"L{count}"


def load_redis(b: Bench, mountpoint: str) -> None:
    """Makes sure mailboxes L<listing> and L<redis_fetch> hold the listing
    store's first messages; loads what is missing through the mount (cp,
    two at a time) and SAVEs the data set, so that later runs start with
    it. Loading is not measured."""
    s = b.sizes
    inbox_cur = os.path.join(b.stores["listing"], "cur")
    names = sorted(os.listdir(inbox_cur))  # Dovecot names sort by index (time, then M<n>)
    changed = False
    for count in sorted({s.listing, s.redis_fetch}):
        directory = os.path.join(mountpoint, redis_box(count))
        if os.path.isdir(directory) and len(os.listdir(directory)) == count:
            continue
        if os.path.isdir(directory):
            shutil.rmtree(directory)
        b.log(f"redis: loading {count} messages into {redis_box(count)} through the mount")
        os.mkdir(directory)
        list_path = b.write_list(f"redis-load-{count}",
                                 [os.path.join(inbox_cur, name) for name in names[:count]])
        began = time.monotonic()
        cp_files(list_path, directory, parallel=2)
        expect_entries(directory, count, "loading redis")
        b.redis_load_seconds += time.monotonic() - began
        b.log(f"redis: loaded in {time.monotonic() - began:.0f} s")
        changed = True
    if changed:
        client = b.redis.client()
        try:
            client.command("SAVE")
        finally:
            client.close()


def measure_redis(b: Bench) -> None:
    s = b.sizes
    n = s.listing
    pymap_wanted = b.pymap_dir is not None
    not_set = "not measured (set MAILFS_BENCH_PYMAP)"
    ls_row = b.add(Row(f"ls -l of {count_label(n)} msgs (redis, warm; ~2 KB msgs)",
                       "ls -l of the Maildir's cur/", Target("<=", 1.5, "time")))
    total = b.mail.bytes_of(s.redis_cp)
    cp_row = b.add(Row(f"redis: cp {s.redis_cp} msgs ({total / 1e6:.0f} MB)",
                       f"pymap over Redis: APPEND ({s.pymap_cp} msgs)", Target(">=", 5.0, "rate"),
                       unit="msg/s", mailfs_work=s.redis_cp, ref_work=s.pymap_cp))
    fetch_row = b.add(Row(f"redis: ls -l of {count_label(s.redis_fetch)} msgs",
                          "pymap: UID FETCH 1:* (FLAGS RFC822.SIZE INTERNALDATE)",
                          Target(">=", 5.0, "speedup")))
    b.log("redis rows")
    state = {}
    sources = [b.mail.path(i) for i in range(s.redis_cp)]
    cp_list = b.write_list("redis-cp", sources)

    def mailfs_cp() -> float:
        target = os.path.join(state["mount"].mountpoint, "Copy")
        if os.path.exists(target):
            shutil.rmtree(target)
        os.mkdir(target)
        seconds = cp_files(cp_list, target)
        expect_entries(target, s.redis_cp, "cp into the redis mount")
        shutil.rmtree(target)  # expunges them all, untimed
        return seconds

    def pymap_append() -> float:
        conn = state["pymap"].imap()
        try:
            status, _ = conn.delete("PymapCopy")  # a leftover of an interrupted run
            imap_ok(conn.create("PymapCopy"), "CREATE")
            seconds = imap_append_all(conn, "PymapCopy", sources[:s.pymap_cp])
            found = imap_message_count(conn, "PymapCopy")
            if found != s.pymap_cp:
                raise VerificationError(f"pymap APPEND: {found} messages, expected {s.pymap_cp}")
            imap_ok(conn.delete("PymapCopy"), "DELETE")
        finally:
            conn.logout()
        return seconds

    def pymap_fetch() -> float:
        conn = state["pymap_conn"]
        began = time.perf_counter()
        data = imap_ok(conn.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE INTERNALDATE)"), "UID FETCH")
        seconds = time.perf_counter() - began
        found = sum(1 for item in data if item and b"RFC822.SIZE" in
                    (item[0] if isinstance(item, tuple) else item))
        if found != s.redis_fetch:
            raise VerificationError(f"pymap UID FETCH returned {found} messages, "
                                    f"expected {s.redis_fetch}")
        return seconds

    def body():
        mount = state["mount"] = b.mount("redis", b.redis.url, (f"login={REDIS_LOGIN}",))
        load_redis(b, mount.mountpoint)
        native_dir = os.path.join(b.stores["listing"], "cur")
        listing_dir = os.path.join(mount.mountpoint, redis_box(n))
        times, warmups = alternate(s.reps, {"mailfs": lambda: ls_l(listing_dir, n),
                                            "reference": lambda: ls_l(native_dir, n)},
                                   b.log, "redis ls -l")
        fill_pair(ls_row, times, warmups)

        fetch_dir = os.path.join(mount.mountpoint, redis_box(s.redis_fetch))
        mailfs_fetch = lambda: ls_l(fetch_dir, s.redis_fetch)  # noqa: E731
        if not pymap_wanted:
            for row, side in ((fetch_row, mailfs_fetch), (cp_row, mailfs_cp)):
                times, warmups = alternate(s.reps, {"mailfs": side}, b.log, row.workload)
                row.mailfs_times, row.mailfs_warmup = times["mailfs"], warmups["mailfs"]
                row.skip(not_set)
            return
        pymap = state["pymap"] = Pymap(b.pymap_dir, b.redis,
                                       os.path.join(b.logs_dir, "pymap.log"))
        pymap.create_user()
        pymap.start()
        conn = state["pymap_conn"] = pymap.imap()
        imap_ok(conn.select(redis_box(s.redis_fetch), readonly=True), "EXAMINE")
        times, warmups = alternate(s.reps, {"mailfs": mailfs_fetch, "reference": pymap_fetch},
                                   b.log, "redis fetch")
        fill_pair(fetch_row, times, warmups)
        times, warmups = alternate(s.reps, {"mailfs": mailfs_cp, "reference": pymap_append},
                                   b.log, "redis cp")
        fill_pair(cp_row, times, warmups)

    try:
        measure_rows([ls_row, cp_row, fetch_row], b.log, body)
    finally:
        if "pymap_conn" in state:
            try:
                state["pymap_conn"].logout()
            except Exception:  # noqa: BLE001
                pass
        if "pymap" in state:
            state["pymap"].stop()
        if "mount" in state:
            state["mount"].stop()
