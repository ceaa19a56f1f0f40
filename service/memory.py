"""The process-wide memory account: every byte a request can make the process hold is reserved
before it is allocated, against one budget for the whole process.

A request holds a ``Lease``. Its body is reserved as it is read (the whole declared length up
front when there is a Content-Length); the codec then reserves what parsing will cost and, from
the declared shapes, the decoded arrays, their compute copies, each loss's own working memory and
the outputs with their response text (``core.Demand``), and gives back what it no longer holds
(the body once decoded, the parse's objects once the arrays own their data). The response keeps
its lease until its last byte is handed to the server, so answers nobody reads stay counted.

A reservation that does not fit now waits up to ``LOSSD_MEMORY_WAIT`` seconds for others to give
memory back, then gets 503 ``overloaded`` with Retry-After; one larger than the whole budget can
never fit and gets 413 ``memory_budget`` at once. The default budget is a share of the memory the
process may use: the cgroup limit of its container when there is one, else the machine's RAM.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import ClientGone, MemoryBudget, Overloaded

# What the process itself holds before any request (the interpreter, numpy, numba, LLVM and
# the compiled kernels: about 250 MiB measured at ready) and what the budget leaves for the
# allocator's slack and for buffers outside the account (the server's per-connection buffers,
# bounded by the connection limits): the default budget is SHARE of the memory left after BASE.
BASE_BYTES = 384 * 2**20
SHARE = 0.6
_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)
_POLL = 0.01  # how often a waiting reservation on the event loop looks again, seconds


# What a connection can make the server hold outside the account, besides its request heads
# (LOSSD_MAX_HEADER_BYTES, and as many per request read ahead, LOSSD_MAX_PIPELINED): one read
# from the socket kept back, and the transport's write buffer with one chunk of an answer.
CONNECTION_READ_BYTES = 256 * 1024
CONNECTION_WRITE_BYTES = 128 * 1024


def connection_bytes(max_header_bytes: int, max_pipelined: int) -> int:
    """The most one connection holds outside the memory account."""
    heads = max_header_bytes * (1 + max_pipelined)
    return heads + CONNECTION_READ_BYTES + CONNECTION_WRITE_BYTES


def memory_limit() -> int:
    """The memory this process may use: its cgroup's limit when one is set, else physical RAM."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < physical:  # "max" or a v1 "no limit" of 2^63
            return int(text)
    return physical


def resident_bytes() -> int:
    """This process's resident set size now (Linux ``/proc/self/statm``; 0 where unreadable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def default_budget(workers: int = 1, limit: int | None = None, base: int = BASE_BYTES) -> int:
    """The process-wide budget when LOSSD_MAX_PROCESS_BYTES is not set: SHARE of what the
    memory limit leaves after each worker's ``base`` (BASE_BYTES, or at least what the process
    was measured to hold once its kernels were ready), split between the workers."""
    limit = memory_limit() if limit is None else limit
    spare = max(limit - workers * max(base, BASE_BYTES), 0)
    return max(int(SHARE * spare / workers), 64 * 2**20)


class RunElsewhere(Exception):
    """Raised by a codec run on the event loop (``Lease.inline``) whose work turns out not to be
    tiny, or whose memory is not free at once: the route runs it again on a compute thread.
    Raised before the body is touched."""


class MemoryAccount:
    """Bytes reserved by the requests in flight, against ``budget``; thread-safe (codecs
    reserve on compute threads, bodies are reserved on the event loop)."""

    def __init__(
        self, budget: int, wait: float = 1.0, observe: Callable[[int], None] | None = None
    ) -> None:
        self.budget = budget
        self.wait = wait
        self.reserved = 0
        self.peak = 0
        self._room = threading.Condition()
        # told the bytes reserved after every change (the metrics' gauge)
        self._observe = observe or (lambda _: None)

    def lease(self) -> Lease:
        """A new request's lease, holding nothing yet."""
        return Lease(self)

    def _take(self, size: int) -> bool:
        """Reserve ``size`` bytes if they fit now (call with the condition held)."""
        if self.reserved + size > self.budget:
            return False
        self.reserved += size
        self.peak = max(self.peak, self.reserved)
        self._observe(self.reserved)
        return True

    def take(self, size: int, wait: float) -> bool:
        """Reserve ``size`` bytes, waiting up to ``wait`` seconds for room (blocking)."""
        with self._room:
            return self._room.wait_for(lambda: self._take(size), timeout=wait)

    async def take_async(self, size: int, wait: float) -> bool:
        """Reserve ``size`` bytes, waiting up to ``wait`` seconds for room, on the event loop."""
        deadline = time.monotonic() + wait
        while True:
            with self._room:
                if self._take(size):
                    return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL)

    def give_back(self, size: int) -> None:
        with self._room:
            self.reserved -= size
            self._observe(self.reserved)
            self._room.notify_all()


class Lease:
    """What one request holds in the account; ``close`` gives everything back (idempotent)."""

    def __init__(self, account: MemoryAccount) -> None:
        self.account = account
        self.held = 0
        # set while a codec runs on the event loop, which must not wait: see RunElsewhere
        self.inline = False
        # set by ``close``: the request is over, and its work may not take more memory (a gRPC
        # call cancelled while its work runs on a compute thread, which then stops)
        self.closed = False
        self._lock = threading.Lock()

    def __del__(self) -> None:
        # a safety net: a lease dropped without ``close`` (a response never sent) gives back
        self.close()

    def _check(self, size: int, what: str) -> None:
        budget = self.account.budget
        if self.held + size > budget:
            raise MemoryBudget(
                f"the request needs about {self.held + size} bytes of memory ({what}), more "
                f"than the whole process may hold ({budget} bytes, LOSSD_MAX_PROCESS_BYTES); "
                "send a smaller batch, fewer losses or fewer outputs, or packed or binary arrays",
                errors=[(("predictions",), "the request needs more memory than the process has")],
            )

    def _busy(self, size: int, what: str) -> Overloaded:
        return Overloaded(
            f"the server is holding its memory budget for other requests ({what} needs {size} "
            f"more bytes, {self.account.budget - self.account.reserved} are free); retry shortly",
            headers={"Retry-After": "1"},
        )

    def hold(self, size: int, what: str) -> None:
        """Reserve ``size`` more bytes for ``what``, waiting briefly for room (blocking: for
        compute threads); 413 when the request could never fit, 503 when the wait runs out."""
        if size <= 0:
            return
        self._check(size, what)
        if not self.account.take(size, 0.0 if self.inline else self.account.wait):
            if self.inline:
                raise RunElsewhere
            raise self._busy(size, what)
        self._add(size)

    async def hold_async(self, size: int, what: str) -> None:
        """``hold`` on the event loop: the wait yields to other tasks."""
        if size <= 0:
            return
        self._check(size, what)
        if not await self.account.take_async(size, self.account.wait):
            raise self._busy(size, what)
        self._add(size)

    def _add(self, size: int) -> None:
        """Count ``size`` reserved bytes as held, unless the lease was closed meanwhile: then
        they go back, and the request's work stops (``ClientGone``)."""
        with self._lock:
            if not self.closed:
                self.held += size
                return
        self.account.give_back(size)
        raise ClientGone("the request is over; its work was stopped")

    def drop(self, size: int) -> None:
        """Give back ``size`` bytes (at most what is held)."""
        with self._lock:
            size = min(max(size, 0), self.held)
            self.held -= size
        if size:
            self.account.give_back(size)

    def keep(self, size: int) -> None:
        """Give back everything above ``size`` bytes (a response keeps its own size)."""
        self.drop(self.held - size)

    def close(self) -> None:
        """Give everything back; from now on ``hold`` raises ``ClientGone``."""
        with self._lock:
            self.closed = True
        self.drop(self.held)
