"""Starts pymap's IMAP server as its `pymap` command does (pymap.main:main),
from sources that may not be installed as a distribution.

pymap finds its backends and services through entry points
(importlib.metadata). A source tree on PYTHONPATH without its .dist-info
has none, so the redis backend and the IMAP service are registered here
by hand when they are missing; every other registered service (the admin
gRPC service, ...) is turned off with --no-service, so that only IMAP
listens. The arguments are pymap's own.
"""

import sys

from pymap.backend import backends
from pymap.service import services

if "redis" not in backends:
    from pymap.backend.redis import RedisBackend
    backends.add("redis", RedisBackend)
if "imap" not in services:
    from pymap.imap import IMAPService
    services.add("imap", IMAPService)

others = [name for name in services if name != "imap"]
sys.argv = [sys.argv[0]] + [arg for name in others for arg in ("--no-service", name)] + sys.argv[1:]

from pymap.main import main  # noqa: E402

main()
