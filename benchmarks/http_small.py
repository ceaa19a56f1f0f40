"""Small requests over HTTP: POST /loss/mse with N = 64 against GET /healthz on the same server.

.venv/bin/python -m benchmarks.run --only http_small [--quick]
"""

from __future__ import annotations

import statistics

import numpy as np
import orjson

from benchmarks import _server
from benchmarks._common import Section, Table, Target, Timing, measure
from benchmarks._load import Window, load, request_bytes
from service.codecs.loss import evaluate_one

N = 64
CONCURRENCY = (1, 8, 32)


def body(n: int = N) -> bytes:
    """An mse request of ``n`` float64 values as JSON lists (the defaults: per-sample, mean)."""
    rng = np.random.default_rng(0)
    doc = {"predictions": rng.normal(size=n), "targets": rng.normal(size=n)}
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    med, low, high = (fmt.format(f(values)) for f in (statistics.median, min, max))
    return f"{med} ({low}..{high})"


def _cpu_per_request(windows: list[Window]) -> float:
    """Server CPU seconds per request (all its threads), median over the windows."""
    return statistics.median(w.server_cpu / w.rate for w in windows)


def _in_process(payload: bytes, runs: int) -> Timing:
    """evaluate_one on the same body in this process: the work without HTTP or the executor."""
    batch = 200
    t = measure(lambda: [evaluate_one("mse", payload, 1 << 25) for _ in range(batch)], runs)
    return Timing(t.median / batch, t.low / batch, t.high / batch)


def run(quick: bool = False) -> Section:
    """req/s and p50/p99 of both endpoints at each concurrency, against one server."""
    warmup, duration, repeats = (0.5, 1.0, 2) if quick else (1.0, 5.0, 3)
    payload = body()
    requests = {
        "GET /healthz": request_bytes("GET", "/healthz"),
        f"POST /loss/mse N={N}": request_bytes("POST", "/loss/mse", payload),
    }
    results: dict[tuple[str, int], list[Window]] = {}
    with _server.start() as srv:
        for c in CONCURRENCY:
            for name, request in requests.items():
                results[name, c] = load(srv.port, srv.pid, request, c, warmup, duration, repeats)
    table = Table(
        f"req/s and latency, closed loop, {repeats} windows of {duration:g} s after "
        f"{warmup:g} s of warm-up",
        [
            "endpoint",
            "concurrency",
            "req/s",
            "p50 ms",
            "p99 ms",
            "client CPU",
            "server CPU",
            "server CPU ms/req",
        ],
    )
    for (name, c), windows in results.items():
        table.add(
            name,
            c,
            spread([w.rate for w in windows]),
            spread([w.percentile(50) * 1e3 for w in windows], "{:.2f}"),
            spread([w.percentile(99) * 1e3 for w in windows], "{:.2f}"),
            f"{statistics.median(w.client_cpu for w in windows):.0%}",
            f"{statistics.median(w.server_cpu for w in windows):.0%}",
            f"{_cpu_per_request(windows) * 1e3:.2f}",
        )
    engine_time = _in_process(payload, 3 if quick else 5)
    section = Section(
        "HTTP, small requests",
        f"`POST /loss/mse` with N = {N} float64 values as JSON lists (per-sample losses and the "
        "mean, the defaults) against `GET /healthz` on the same server, measured the same way: "
        f"a closed loop of 1, 8 and 32 keep-alive connections, {warmup:g} s of warm-up, then "
        f"{repeats} back-to-back windows of {duration:g} s; req/s and the p50/p99 latency are "
        "the median over the windows (min..max). The load generator is `benchmarks/_load.py`: "
        "raw asyncio streams on uvloop, HTTP/1.1 keep-alive, request bytes encoded once, one "
        "Python process on the same 2 cores as the server; client CPU is its own CPU time over "
        "the window (100% = one core), server CPU the server process's, all threads.",
        tables=[table],
    )
    health_name, mse_name = list(requests)
    client_max = max(w.client_cpu for windows in results.values() for w in windows)
    faster = all(
        statistics.median(w.rate for w in results[health_name, c])
        > statistics.median(w.rate for w in results[mse_name, c])
        for c in CONCURRENCY
    )
    verdict = "is not" if faster and client_max < 0.9 else "may be"
    section.notes.append(
        f"The generator {verdict} the bottleneck: its CPU time was at most {client_max:.0%} of "
        "one core in any window, and it drove /healthz "
        + ("faster than /loss/mse at every concurrency." if faster else "NOT always faster.")
    )
    profile = (
        "A cProfile of the app called in-process (ASGI, no sockets; taken once, not part of this "
        "run) splits an mse request into FastAPI's routing and request handling (about a third), "
        "reading the body, the engine (parse, validate, decode, kernel, reduce, encode: about a "
        "third), and the request's log line and metrics; /healthz has no body, no engine work "
        "and logs at debug. Done already: the body is evaluated on the event loop on one numba "
        "thread (no hop to a compute thread, no OpenMP team to wake), the routes read the state "
        "and the loss name from the request instead of through FastAPI's dependency and "
        "parameter solving (250 -> about 200 µs in-process), and the log and metrics "
        "middleware is pure ASGI with cached metric children. At concurrency 1 the server "
        f"uses {statistics.median(w.server_cpu for w in results[mse_name, 1]):.0%} CPU for one "
        "request at a time."
    )

    def limit(c: int) -> str:
        return (
            f"Limited by the server's work per request: an mse request costs "
            f"{_cpu_per_request(results[mse_name, c]) * 1e3:.2f} ms of server CPU, /healthz "
            f"{_cpu_per_request(results[health_name, c]) * 1e3:.2f} ms, `evaluate_one` "
            f"{engine_time.median * 1e6:.0f} µs in-process." + (f" {profile}" if c == 8 else "")
        )

    section.notes.append(
        f"In-process `evaluate_one('mse', body)` on the same body takes "
        f"{engine_time.median * 1e6:.0f} µs ({engine_time.low * 1e6:.0f}.."
        f"{engine_time.high * 1e6:.0f}); the rest of a request is HTTP, the route and the hops "
        "to other threads."
    )
    for c in CONCURRENCY:
        health = statistics.median(w.rate for w in results[health_name, c])
        mse = statistics.median(w.rate for w in results[mse_name, c])
        ratio = mse / health
        section.targets.append(
            Target(
                f"mse N={N} req/s >= 50% of /healthz at concurrency {c}",
                f"{ratio:.0%} ({mse:.0f} vs {health:.0f} req/s)",
                ratio >= 0.5,
                "" if ratio >= 0.5 else limit(c),
            )
        )
    p99 = statistics.median(w.percentile(99) for w in results[mse_name, 8]) * 1e3
    section.targets.append(
        Target(f"mse N={N} p99 <= 10 ms at concurrency 8", f"{p99:.2f} ms", p99 <= 10)
    )
    return section
