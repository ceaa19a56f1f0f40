"""The compute executor, the threading-layer check and the kernel warm-up.

Kernels release the GIL and run on a small pool of dedicated threads so the event loop stays free.
Two threads may then be inside parallel kernels at once, which only the ``omp`` and ``tbb``
threading layers allow: numba's ``workqueue`` layer aborts the whole process when that happens,
so the service refuses to start on it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numba

from .errors import ClientGone, Overloaded

log = logging.getLogger("lossd.compute")

SAFE_LAYERS = ("omp", "tbb")
T = TypeVar("T")


_config: Any = numba.config  # numba's config attributes are created at import, untyped


def configure_threading_layer() -> None:
    """Ask numba for a thread-safe layer unless the operator named one (checked after launch)."""
    if _config.THREADING_LAYER == "default":
        _config.THREADING_LAYER = "threadsafe"


def check_threading_layer() -> str:
    """Refuse a threading layer that is not thread-safe (call after a parallel kernel ran)."""
    layer = str(numba.threading_layer())  # type: ignore[attr-defined]
    if layer not in SAFE_LAYERS:
        raise RuntimeError(
            f"numba threading layer {layer!r} is not thread-safe; lossd needs one of "
            f"{SAFE_LAYERS} (install libgomp1 for omp, or the tbb package)"
        )
    return layer


def run_serially_here() -> None:
    """Kernels called on this thread run on it alone (numba's thread count is thread-local).

    For the event loop's thread, which evaluates small bodies itself: a parallel launch wakes
    the worker pool, which costs tens of microseconds after a pause and milliseconds when
    another process holds a core (docs/benchmarks.md), far more than a small batch's work.
    """
    numba.set_num_threads(1)


class ComputeExecutor:
    """A bounded queue in front of a few compute threads, each with its numba thread count."""

    def __init__(self, threads: int, queue_depth: int, workers: int = 2) -> None:
        self.threads = max(1, min(threads, int(_config.NUMBA_NUM_THREADS)))
        self.queue_depth = queue_depth
        self.pending = 0
        self._pool = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="lossd-compute",
            initializer=numba.set_num_threads,  # per thread: numba's count is thread-local
            initargs=(self.threads,),
        )

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        cancel: threading.Event | None = None,
        gone: asyncio.Future[Any] | None = None,
    ) -> T:
        """Run ``fn(*args)`` on a compute thread, or answer 503 when the queue is full.

        Work whose client hangs up while it queues is withdrawn at once when ``gone`` (done when
        the client has hung up) finishes first: its place in the queue goes to the next request,
        not to a thread that would only drop it. Work whose ``cancel`` is set by the time a thread
        is free for it is dropped there. Either way: ``ClientGone``, answered 499.
        """
        if self.pending >= self.queue_depth:
            raise Overloaded(
                f"the compute queue is full ({self.queue_depth} requests); retry shortly",
                headers={"Retry-After": "1"},
            )
        self.pending += 1
        try:
            # In a copy of the caller's context, as asyncio.to_thread does: the engine reports
            # kernel times to the request's observation (metrics.CURRENT) from the thread.
            job = functools.partial(contextvars.copy_context().run, _unless, cancel, fn, *args)
            queued = self._pool.submit(job)
            result = asyncio.wrap_future(queued)
            try:
                if gone is not None:
                    await asyncio.wait((result, gone), return_when=asyncio.FIRST_COMPLETED)
                    if not result.done() and queued.cancel():  # still queued: out of the queue
                        raise ClientGone(
                            "the client closed the connection while its request queued"
                        )
                return await result
            except asyncio.CancelledError:
                # The caller's task was cancelled (a gRPC call that ended): the job, out of the
                # queue if it still can be, ends on its own; its outcome is read, not logged.
                queued.cancel()
                result.add_done_callback(_outcome_read)
                raise
        finally:
            self.pending -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _outcome_read(result: asyncio.Future[Any]) -> None:
    if not result.cancelled():
        result.exception()


def _unless(cancel: threading.Event | None, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, unless ``cancel`` was set while the work queued."""
    if cancel is not None and cancel.is_set():
        raise ClientGone("the client closed the connection while its request queued")
    return fn(*args)
