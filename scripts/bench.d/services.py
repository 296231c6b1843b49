"""The processes the benchmark runs: mailfs mounts, a private redis-server,
a private Dovecot (IMAP server and doveadm), and pymap.

Every process started here registers its stop function with `cleanup`,
which `stop_all()` calls in reverse order: the benchmark's `finally`
(and its SIGINT/SIGTERM handler) unmounts everything and stops every
server it started, whatever happened. Processes are started in their own
session, so a Ctrl-C in the terminal reaches only the benchmark, which
then stops them in order (a mailfs mount must be unmounted, not killed).
"""

from __future__ import annotations

import imaplib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from typing import Callable

# ---------------------------------------------------------------------------
# Cleanup registry

_cleanups: list[tuple[str, Callable[[], None]]] = []


def register_cleanup(name: str, stop: Callable[[], None]) -> Callable[[], None]:
    """Registers `stop`; returns a function that runs it now (once) and
    unregisters it."""
    entry = (name, stop)
    _cleanups.append(entry)

    def run_now() -> None:
        if entry in _cleanups:
            stop()  # still registered if interrupted: stop_all tries again
            _cleanups.remove(entry)
    return run_now


def stop_all(log) -> None:
    """Runs every registered stop function, newest first; logs failures."""
    while _cleanups:
        name, stop = _cleanups.pop()
        try:
            stop()
        except BaseException as e:  # noqa: BLE001 - cleanup must go on
            log(f"cleanup: stopping {name} failed: {e}")


class SetupError(Exception):
    """The environment could not be prepared: the run cannot go on."""


class VerificationError(Exception):
    """A workload ran but did not do the work it was asked to (a wrong
    count, a missing flag): its measurements are worthless."""


# ---------------------------------------------------------------------------
# Small process helpers

C_LOCALE = dict(os.environ, LC_ALL="C", LANG="C")


def timed(cmd: list[str] | str, *, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
          cwd: str | None = None, env: dict | None = None,
          timeout: float = 3600) -> tuple[float, subprocess.CompletedProcess]:
    """Runs a command (a string: a bash pipeline, with pipefail) and returns
    (wall seconds, result); stdout as asked, stderr captured."""
    shell = isinstance(cmd, str)
    if shell:
        cmd = "set -o pipefail; " + cmd
    began = time.perf_counter()
    result = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd,
                            env=env or C_LOCALE, shell=shell, timeout=timeout,
                            executable="/bin/bash" if shell else None)
    return time.perf_counter() - began, result


def require_success(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        raise VerificationError(f"{what} exited {result.returncode}: "
                                f"{result.stderr.decode(errors='replace').strip()[-500:]}")


def drop_caches() -> None:
    """sync, then drop the page cache, dentries and inodes (system-wide)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens, below the ephemeral range."""
    for _ in range(100):
        port = random.randint(20000, 29999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SetupError("no free port on 127.0.0.1")


def wait_for_port(port: int, process: subprocess.Popen, what: str, log_path: str,
                  timeout: float = 30) -> None:
    """Waits until `process` listens on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SetupError(f"{what} exited with status {process.returncode} while starting "
                             f"(see {log_path})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SetupError(f"{what} does not listen on 127.0.0.1:{port} after {timeout:.0f} s "
                     f"(see {log_path})")


def stop_process(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; reaps it."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def vm_hwm_bytes(pid: int) -> int:
    """Peak resident set size (VmHWM) of a process."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise VerificationError(f"no VmHWM for pid {pid}")


# ---------------------------------------------------------------------------
# mailfs mounts


def _unescape_mountinfo(field: str) -> str:
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def is_mounted(path: str) -> bool:
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if _unescape_mountinfo(line.split()[4]) == path:
                return True
    return False


class MailfsMount:
    """One `mailfs SOURCE MOUNTPOINT -f [-o OPTIONS]`, run as our child so
    that its pid (for VmHWM) is known; `-f` is the only difference from the
    daemonized default, and it keeps the log in `log_path`."""

    def __init__(self, binary: str, source: str, mountpoint: str, log_path: str,
                 options: tuple[str, ...] = ()):
        self.binary, self.source, self.mountpoint = binary, source, mountpoint
        self.log_path, self.options = log_path, options
        self.process: subprocess.Popen | None = None
        self._stop_now: Callable[[], None] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> "MailfsMount":
        os.makedirs(self.mountpoint, exist_ok=True)
        if is_mounted(self.mountpoint):
            raise SetupError(f"{self.mountpoint} is already a mount point")
        if os.listdir(self.mountpoint):
            raise SetupError(f"{self.mountpoint} is not empty")
        cmd = [self.binary, self.source, self.mountpoint, "-f"]
        if self.options:
            cmd += ["-o", ",".join(self.options)]
        log = open(self.log_path, "ab")
        log.write(f"--- {' '.join(cmd)}\n".encode())
        log.flush()
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=True, env=C_LOCALE)
        log.close()
        self._stop_now = register_cleanup(f"mailfs at {self.mountpoint}", self._stop)
        deadline = time.monotonic() + 60
        while not is_mounted(self.mountpoint):
            if self.process.poll() is not None:
                self._stop_now()
                raise SetupError(f"mailfs {self.source} exited with status "
                                 f"{self.process.returncode} before mounting "
                                 f"(log: {self.log_path})")
            if time.monotonic() > deadline:
                self._stop_now()
                raise SetupError(f"mailfs {self.source} did not mount within 60 s")
            time.sleep(0.01)
        os.stat(self.mountpoint)  # the first request answered: ready
        return self

    def stop(self) -> None:
        if self._stop_now is not None:
            self._stop_now()
            self._stop_now = None

    def _stop(self) -> None:
        """Unmounts (waiting for mailfs to finish: with fsync=no it writes
        everything out at unmount), lazily if busy, and reaps the process."""
        for attempt in range(20):
            if not is_mounted(self.mountpoint):
                break
            r = subprocess.run(["fusermount3", "-u", self.mountpoint], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            if r.returncode == 0:
                break
            time.sleep(0.25)
        else:
            subprocess.run(["fusermount3", "-u", "-z", self.mountpoint], stderr=subprocess.DEVNULL)
        if self.process is not None:
            try:
                self.process.wait(300)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


# ---------------------------------------------------------------------------
# Redis


class RedisClient:
    """A minimal RESP2 client (the benchmark uses the standard library only)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def command(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        return self._reply()

    def _reply(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("redis: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError(f"redis: unexpected reply {line!r}")


class RedisServer:
    """A private redis-server on 127.0.0.1 with its data in `data_dir`.

    No append-only file and no automatic snapshots: durability is not what
    is measured (mailfs and pymap use the same server), and the data set the
    listing rows need is kept between runs by an explicit SAVE into
    `bench.rdb`, which the next start loads."""

    def __init__(self, data_dir: str, log_path: str):
        self.data_dir, self.log_path = data_dir, log_path
        self.port = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        os.makedirs(self.data_dir, exist_ok=True)
        self.port = free_port()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", self.data_dir, "--dbfilename", "bench.rdb", "--appendonly", "no",
             "--save", "", "--daemonize", "no", "--set-proc-title", "no"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        register_cleanup("redis-server", lambda: stop_process(self.process, 30))
        wait_for_port(self.port, self.process, "redis-server", self.log_path)
        deadline = time.monotonic() + 300  # loading a large bench.rdb takes a while
        while True:
            client = RedisClient(self.port)
            try:
                if client.command("PING") == "PONG":
                    return self
            except RuntimeError as e:  # -LOADING
                if time.monotonic() > deadline:
                    raise SetupError(f"redis-server: {e}") from e
                time.sleep(0.2)
            finally:
                client.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> RedisClient:
        return RedisClient(self.port)



# ---------------------------------------------------------------------------
# Dovecot

DOVECOT_UID = 5000  # Dovecot refuses mail access as root; no passwd entry needed
DOVECOT_USER = "bench"
DOVECOT_PASSWORD = "bench-password"


def chown_tree(path: str, uid: int = DOVECOT_UID, gid: int = DOVECOT_UID) -> None:
    for directory, subdirs, files in os.walk(path):
        os.lchown(directory, uid, gid)
        for name in files:
            os.lchown(os.path.join(directory, name), uid, gid)


def allow_traverse(path: str) -> None:
    """Gives every ancestor of `path` the search bit for others, so that
    Dovecot's uid can walk down to it."""
    directory = os.path.dirname(os.path.abspath(path))
    while directory != "/":
        mode = os.stat(directory).st_mode
        if not mode & 0o001:
            os.chmod(directory, (mode & 0o7777) | 0o001)
        directory = os.path.dirname(directory)


class Dovecot:
    """A private Dovecot: an IMAP server on 127.0.0.1 (plain LOGIN of one
    throwaway user, static passdb and userdb, uid 5000, mail_fsync left at
    its default `optimized`) whose mail is `imap_store`, and doveadm with a
    config of its own for stores given with `-o mail_location=` (no server
    needed: USER and HOME in the environment, as tests/support/dovecot.cc
    runs it)."""

    def __init__(self, work_dir: str, imap_store: str, log_path: str):
        self.dir = work_dir
        self.imap_store = imap_store
        self.log_path = log_path
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.server_conf = os.path.join(self.dir, "dovecot.conf")
        self.doveadm_conf = os.path.join(self.dir, "doveadm.conf")
        self.home = os.path.join(self.dir, "home")

    def _common_settings(self, base: str) -> str:
        return (f"base_dir = {base}/run\n"
                f"state_dir = {base}/state\n"
                "ssl = no\n"
                f"first_valid_uid = {DOVECOT_UID}\n"
                f"first_valid_gid = {DOVECOT_UID}\n"
                "mail_max_lock_timeout = 30s\n"
                "namespace inbox {\n  inbox = yes\n  separator = /\n}\n")

    def write_doveadm_config(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o711)
        os.makedirs(self.home, exist_ok=True)
        os.chown(self.home, DOVECOT_UID, DOVECOT_UID)
        allow_traverse(self.home)
        base = os.path.join(self.dir, "doveadm")
        os.makedirs(base, exist_ok=True)
        with open(self.doveadm_conf, "w") as f:
            f.write("# Written by scripts/bench: doveadm only, no server.\n"
                    + self._common_settings(base) +
                    f"mail_uid = {DOVECOT_UID}\nmail_gid = {DOVECOT_UID}\n"
                    "mail_location = maildir:/nonexistent\n"
                    "log_path = /dev/stderr\n")

    def _write_server_config(self) -> None:
        base = os.path.join(self.dir, "server")
        os.makedirs(base, exist_ok=True)
        with open(self.server_conf, "w") as f:
            f.write("# Written by scripts/bench: a private IMAP server, plain LOGIN, no TLS.\n"
                    + self._common_settings(base) +
                    f"instance_name = mailfs-bench-{self.port}\n"
                    "protocols = imap\n"
                    "listen = 127.0.0.1\n"
                    "disable_plaintext_auth = no\n"
                    "auth_mechanisms = plain login\n"
                    f"log_path = {self.log_path}\n"
                    f"mail_location = maildir:{self.imap_store}\n"
                    "passdb {\n  driver = static\n"
                    f"  args = password={DOVECOT_PASSWORD}\n}}\n"
                    "userdb {\n  driver = static\n"
                    f"  args = uid={DOVECOT_UID} gid={DOVECOT_UID} home={self.home}\n}}\n"
                    "service imap-login {\n"
                    "  inet_listener imap {\n    address = 127.0.0.1\n"
                    f"    port = {self.port}\n  }}\n"
                    "  inet_listener imaps {\n    port = 0\n  }\n}\n")

    def start_server(self) -> "Dovecot":
        """Starts the IMAP server (write_doveadm_config must have run: it
        makes the home directory)."""
        self.port = free_port()
        self._write_server_config()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(["dovecot", "-F", "-c", self.server_conf],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=True)
        log.close()
        register_cleanup("dovecot", lambda: stop_process(self.process, 20))
        wait_for_port(self.port, self.process, "dovecot", self.log_path)
        return self

    def imap(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=600)
        conn.login(DOVECOT_USER, DOVECOT_PASSWORD)
        return conn

    def doveadm(self, store: str, *args: str, timeout: float = 600) -> tuple[float, str]:
        """Runs `doveadm -o mail_location=maildir:STORE ARGS` as the tests do;
        returns (seconds, stdout). Anything on stderr is a failure: doveadm
        exits 0 after logging most errors."""
        cmd = ["doveadm", "-c", self.doveadm_conf, "-o", f"mail_location=maildir:{store}",
               *args]
        env = dict(C_LOCALE, USER=DOVECOT_USER, HOME=self.home)
        seconds, result = timed(cmd, stdout=subprocess.PIPE, cwd="/", env=env, timeout=timeout)
        err = result.stderr.decode(errors="replace").strip()
        if result.returncode != 0 or err:
            raise VerificationError(f"doveadm {' '.join(args)}: exit {result.returncode}: "
                                    f"{err[-500:]}")
        return seconds, result.stdout.decode(errors="replace")

    def mailbox_counts(self, store: str, *mailboxes: str) -> dict[str, int]:
        _, out = self.doveadm(store, "-f", "tab", "mailbox", "status", "messages", *mailboxes)
        lines = out.strip().splitlines()
        counts = {}
        for line in lines[1:]:
            name, value = line.rsplit("\t", 1)
            counts[name] = int(value)
        return counts


# ---------------------------------------------------------------------------
# pymap (optional: MAILFS_BENCH_PYMAP=DIR)

PYMAP_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pymap_launch.py")


class Pymap:
    """pymap's IMAP server over the private Redis, started the way its own
    CLI starts (`pymap.main:main`, through pymap_launch.py), from the
    sources in `source_dir` (put on PYTHONPATH)."""

    USER = "bench"
    PASSWORD = "bench-password"

    def __init__(self, source_dir: str, redis: RedisServer, log_path: str):
        self.source_dir, self.redis, self.log_path = source_dir, redis, log_path
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._stop_now: Callable[[], None] | None = None
        self.env = dict(C_LOCALE, PYTHONPATH=source_dir, TZ="UTC", PYTHONDONTWRITEBYTECODE="1")

    def create_user(self) -> None:
        """Stores `/users/bench` = {"password": HASH} as pymap's redis
        backend reads it (Identity.get: a JSON string), the hash made by
        pymap's own hash context (passlib's if installed, else pysasl's)."""
        code = ("import sys\n"
                "from pymap.config import IMAPConfig\n"
                "from pysasl.prep import saslprep\n"
                "print(IMAPConfig._get_hash_context(None).hash(saslprep(sys.argv[1])))\n")
        result = subprocess.run([sys.executable, "-c", code, self.PASSWORD], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        if result.returncode != 0:
            last_line = (result.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
            raise SetupError(f"cannot import pymap from {self.source_dir}: {last_line}")
        password_hash = result.stdout.decode().strip()
        client = self.redis.client()
        try:
            client.command("SET", f"/users/{self.USER}", json.dumps({"password": password_hash}))
        finally:
            client.close()

    def start(self) -> "Pymap":
        self.port = free_port()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, PYMAP_LAUNCHER, "--host", "127.0.0.1", "--port", str(self.port),
             "--no-tls", "redis", "--address", self.redis.url],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env=self.env)
        log.close()
        self._stop_now = register_cleanup("pymap", lambda: stop_process(self.process, 20))
        wait_for_port(self.port, self.process, "pymap", self.log_path, timeout=60)
        return self

    def stop(self) -> None:
        if self._stop_now is not None:
            self._stop_now()
            self._stop_now = None

    def imap(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=600)
        conn.login(self.USER, self.PASSWORD)
        return conn
