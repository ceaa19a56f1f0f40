"""Server memory per large request: peak RSS above the idle baseline against the raw payload.

.venv/bin/python -m benchmarks.run --only memory [--quick]
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence

import httpx
import numpy as np

from benchmarks import _server
from benchmarks._common import Section, Table, Target
from benchmarks.http_large import inputs, json_body, packed_body, send

MB = 1e6


class Sampler:
    """VmRSS of a process every ``period`` s from a thread: the sampled peak, as a cross-check."""

    def __init__(self, pid: int, period: float = 0.002) -> None:
        self.pid, self.period, self.peak = pid, period, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _server.memory_kib(self.pid, "VmRSS"))
            time.sleep(self.period)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _idle_rss(pid: int) -> int:
    """VmRSS once it has stopped moving (KiB)."""
    time.sleep(0.3)
    return _server.memory_kib(pid, "VmRSS")


def measure_request(pid: int, post: Callable[[], object]) -> tuple[int, int, int, int]:
    """RSS before, peak (VmHWM, reset first), sampled peak and RSS after one request, in KiB."""
    before = _idle_rss(pid)
    _server.reset_peak(pid)
    with Sampler(pid) as sampler:
        post()
    peak = _server.memory_kib(pid, "VmHWM")
    return before, peak, sampler.peak, _idle_rss(pid)


def run(quick: bool = False) -> Section:
    """Each request a few times against one server; peaks against its idle RSS after warm-up."""
    repeats = 1 if quick else 3
    cases: list[tuple[str, int, Callable[[np.ndarray, np.ndarray], bytes]]] = [
        ("packed", 1_000_000, packed_body),
        ("JSON lists", 1_000_000, json_body),
        ("packed", 10_000_000, packed_body),
    ]
    table = Table(
        "server RSS during POST /loss/mse with gradient, float64, MB",
        [
            "request",
            "raw payload",
            "body",
            "RSS before",
            "peak above idle",
            "peak / payload",
            "sampled peak above idle",
            "RSS after",
        ],
    )
    ratios: dict[tuple[str, int], float] = {}
    buffers = 0.0  # packed 1e7: the request's own large buffers at their largest
    with _server.start() as srv, httpx.Client(base_url=srv.url, timeout=600) as http:
        # every path a large request takes, once, with a small batch
        send(http, packed_body(*inputs(20_000)))
        send(http, json_body(*inputs(20_000)))
        idle = _idle_rss(srv.pid)
        for fmt, n, make in cases:
            body = make(*inputs(n))
            payload = 2 * n * 8

            def post(b: bytes = body) -> None:
                send(http, b)

            runs = [measure_request(srv.pid, post) for _ in range(repeats)]
            peaks = [(peak - idle) * 1024 for _, peak, _, _ in runs]
            sampled = [(s - idle) * 1024 for _, _, s, _ in runs]
            ratio = statistics.median(peaks) / payload
            ratios[fmt, n] = ratio
            if fmt == "packed" and n == 10_000_000:
                # body + decoded inputs, then loss and gradient + their base64 (4/3 of them)
                buffers = max(len(body) + payload, payload + payload * 4 / 3)
            table.add(
                f"{fmt}, N = {n:.0e}",
                f"{payload / MB:.0f}",
                f"{len(body) / MB:.0f}",
                _mb([(before - idle) * 1024 for before, _, _, _ in runs]),
                _mb(peaks),
                f"{ratio:.2f}x",
                _mb(sampled),
                _mb([(after - idle) * 1024 for _, _, _, after in runs]),
            )
            del body
    section = Section(
        "Memory",
        "Resident memory of the server process while it serves one large `POST /loss/mse` "
        "(gradient and the default per-sample losses, float64, the response in the request's "
        "format). The peak is the kernel's own high-water mark: VmHWM of /proc/<pid>/status, "
        "reset to the current RSS just before the request by writing 5 to "
        "/proc/<pid>/clear_refs; a thread sampling VmRSS every 2 ms gives the same peak as a "
        "cross-check. Peaks are above the idle baseline: the server's RSS after start-up and "
        f"one small request of each format ({idle * 1024 / MB:.0f} MB); RSS before and after are "
        "above it too, so memory the allocator keeps between requests shows. The raw payload "
        f"is the float64 predictions plus targets (16 bytes x N). {repeats} requests of each, "
        "one after the other, median (min..max); the client is httpx in another process.",
        tables=[table],
    )
    ratio = ratios["packed", 10_000_000]
    section.notes.append(
        f"Packed N = 1e7: the request's own buffers account for {buffers / MB:.0f} MB of the "
        "peak: the body and the decoded inputs while decoding, then the loss and gradient and "
        "their base64 while encoding. The engine frees the body once the arrays are decoded "
        "and the inputs before the response is encoded, so no stage holds all four."
    )
    section.targets.append(
        Target(
            "peak RSS above baseline, packed N = 1e7: <= 5x the raw payload",
            f"{ratio:.2f}x ({ratio * 160:.0f} MB above baseline for a 160 MB payload)",
            ratio <= 5,
        )
    )
    return section


def _mb(values: Sequence[float]) -> str:
    med, low, high = (f(values) / MB for f in (statistics.median, min, max))
    return f"{med:.0f} ({low:.0f}..{high:.0f})"
