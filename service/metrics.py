"""Prometheus metrics, and the observation of one request that routes and the engine fill in.

With one process the metrics live in a registry of the app's own. With several workers
(``lossd serve --workers N``) prometheus-client's multiprocess mode is on: every worker writes
its samples to files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds them up, whichever
worker answers the scrape. This module knows no HTTP framework: the routes report what the core's
results say (kernel times, elements), the request middleware (``logs.py``) reads what was reported.
"""

from __future__ import annotations

import os
import time
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from prometheus_client.samples import Sample

    from .core import Result

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.exposition import choose_encoder

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NONE = "-"  # the label of "no loss" / "no encoding": non-loss routes and unknown names
# A request takes from ~100 µs (health) to tens of seconds (10^8 elements with derivatives).
REQUEST_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
# A kernel call takes from a microsecond (a handful of rows) to seconds (10^8 elements).
KERNEL_BUCKETS = (
    1e-5, 5e-5, 1e-4, 5e-4, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10,
)  # fmt: skip


# Connections a bound of the HTTP server (service/server.py) refused or cut before any request
# reached the app: no request line is logged or counted for them, so they are counted here.
# Module-level because the server has no handle on the app's Metrics; each app's registry adds it.
CONNECTIONS_CUT = Counter(
    "lossd_connections_cut",
    "connections refused or cut by a bound, by reason: too_many_connections, header_timeout, "
    "headers_too_large, send_timeout",
    ("reason",),
    registry=None,
)


def connection_cut(reason: str) -> None:
    """Count one connection refused or cut by the server's bounds (called on the event loop)."""
    CONNECTIONS_CUT.labels(reason).inc()


def multiprocess_dir() -> str | None:
    """The multiprocess directory in force, if any (prometheus-client reads it at import)."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """lossd's metrics, and the registry ``/metrics`` exposes."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        own = CollectorRegistry(auto_describe=True)
        # Multiprocess mode: the samples go to files, the scrape reads every worker's files; the
        # metrics themselves must then not be registered, or they would be exported twice.
        register = None if self.multiprocess else own
        self.requests = Counter(
            "lossd_requests",
            "HTTP requests by loss (canonical name, - for none), status and request encoding",
            ("loss", "status", "encoding"),
            registry=register,
        )
        self.duration = Histogram(
            "lossd_request_duration_seconds",
            "HTTP request latency, from the first byte in to the last byte out, by route",
            ("route",),
            buckets=REQUEST_BUCKETS,
            registry=register,
        )
        self.kernel = Histogram(
            "lossd_kernel_seconds",
            "time in a loss's numba kernel (one call per loss evaluated)",
            ("loss",),
            buckets=KERNEL_BUCKETS,
            registry=register,
        )
        self.elements = Counter(
            "lossd_elements",
            "prediction elements processed by a loss's kernel",
            ("loss",),
            registry=register,
        )
        # Per loss, for the Open Inference Protocol's statistics extension (codecs/triton.py):
        # requests that evaluated it, by outcome, and when the last one finished.
        self.inferences = Summary(
            "lossd_inference_seconds",
            "requests that evaluated a loss (one per loss of a POST /loss), by outcome "
            "(success: 2xx, fail: an error answer), from the first byte in to the last byte out",
            ("loss", "outcome"),
            registry=register,
        )
        self.last_inference = Gauge(
            "lossd_last_inference_timestamp_seconds",
            "when the last request that evaluated a loss finished (Unix time)",
            ("loss",),
            registry=register,
            multiprocess_mode="max",
        )
        # The process-wide memory account (service/memory.py), summed over live workers.
        self.memory_reserved = Gauge(
            "lossd_memory_reserved_bytes",
            "bytes the requests in flight hold in the memory account",
            registry=register,
            multiprocess_mode="livesum",
        )
        self.memory_budget = Gauge(
            "lossd_memory_budget_bytes",
            "the memory account's budget (LOSSD_MAX_PROCESS_BYTES)",
            registry=register,
            multiprocess_mode="livesum",
        )
        if self.multiprocess:
            _multiprocess.MultiProcessCollector(own)  # type: ignore[no-untyped-call]
        else:
            # Process metrics (CPU, memory, file descriptors, GC) cannot be summed over workers,
            # which is why multiprocess mode has none.
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                own.register(collector)
            own.register(CONNECTIONS_CUT)  # multiprocess mode reads its samples from the files
        self.registry = own
        # labels() validates and locks on every call; the children are cached once made.
        self._requests: dict[tuple[str, int, str], Any] = {}
        self._routes: dict[str, Any] = {}
        self._inferences: dict[tuple[str, str], tuple[Any, Any]] = {}

    def request(self, loss: str, status: int, encoding: str, route: str, seconds: float) -> None:
        """Count one finished request (called on the event loop only)."""
        key = (loss, status, encoding)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.requests.labels(loss, str(status), encoding)
        counter.inc()
        histogram = self._routes.get(route)
        if histogram is None:
            histogram = self._routes[route] = self.duration.labels(route)
        histogram.observe(seconds)

    def inference(self, losses: Iterable[str], status: int, seconds: float) -> None:
        """Count one request that evaluated ``losses`` (called on the event loop only)."""
        outcome = "success" if status < 400 else "fail"
        now = time.time()
        for loss in losses:
            children = self._inferences.get((loss, outcome))
            if children is None:
                children = self._inferences[(loss, outcome)] = (
                    self.inferences.labels(loss, outcome),
                    self.last_inference.labels(loss),
                )
            children[0].observe(seconds)
            children[1].set(now)

    def samples(self, *names: str) -> Iterator[Sample]:
        """The current samples of the named metrics (every worker's in multiprocess mode)."""
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name in names:
                    yield sample

    def kernel_call(self, loss: str, seconds: float, elements: int) -> None:
        """Record one kernel call (called from compute threads; prometheus-client locks)."""
        self.kernel.labels(loss).observe(seconds)
        self.elements.labels(loss).inc(elements)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape body and its content type (OpenMetrics when the scraper asks for it)."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    def close(self) -> None:
        """A worker stops: its live-gauge files go (prometheus-client's ``mark_process_dead``)."""
        directory = multiprocess_dir()
        if directory is not None and Path(directory).is_dir():
            _multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


class Observation:
    """What one request did, filled in as it goes: its id, loss, encoding, elements processed."""

    __slots__ = ("elements", "encoding", "evaluated", "loss", "metrics", "request_id")

    def __init__(self, request_id: str, metrics: Metrics) -> None:
        self.request_id = request_id
        self.metrics = metrics
        self.loss = NONE
        self.encoding = NONE
        self.elements = 0
        self.evaluated: list[str] | None = None


# Set by the request middleware for the request's task; the routes fill it in.
CURRENT: ContextVar[Observation | None] = ContextVar("lossd_observation", default=None)


def note(*, loss: str | None = None, encoding: str | None = None) -> None:
    """Tell the current request's counters and log line its loss (canonical name) or encoding.

    Routes call it: ``loss`` once the name resolved, ``encoding`` once the body is known to be
    ``json`` or ``packed``; the ``/v2`` routes say ``v2-json`` or ``v2-binary``. Outside a
    request (warm-up, benchmarks) it does nothing.
    """
    obs = CURRENT.get()
    if obs is None:
        return
    if loss is not None:
        obs.loss = loss
    if encoding is not None:
        obs.encoding = encoding


def observe(results: Iterable[Result]) -> None:
    """The kernel calls of the current request, from its results (called by the routes)."""
    obs = CURRENT.get()
    if obs is None:
        return
    for result in results:
        obs.metrics.kernel_call(result.loss, result.kernel_seconds, result.elements)
        obs.elements += result.elements
        if obs.evaluated is None:
            obs.evaluated = [result.loss]
        else:
            obs.evaluated.append(result.loss)
