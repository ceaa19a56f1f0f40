"""Start-up with an empty and with a warm numba cache, and the first request after ready.

.venv/bin/python -m benchmarks.run --only cold_start [--quick]
"""

from __future__ import annotations

import http.client
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

import service
from benchmarks import _server
from benchmarks._common import ROOT, Section, Table, Target
from service.losses import REGISTRY

STEADY = 20
IDLE, PAUSE = 3, 0.25  # requests each sent after a pause, and the pause (s)


def requests() -> dict[str, tuple[str, bytes]]:
    """The two small requests timed after start-up: path and JSON body."""
    rng = np.random.default_rng(0)
    mse = {"predictions": rng.normal(size=64), "targets": rng.normal(size=64)}
    ce = {
        "predictions": rng.normal(size=(64, 10)),
        "targets": rng.integers(0, 10, size=64),
        "params": {"from_logits": True},
    }

    def dump(doc: Mapping[str, object]) -> bytes:
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)

    return {
        "mse, N=64": ("/loss/mse", dump(mse)),
        "cross_entropy, 64 x 10 logits, class indices": ("/loss/cross_entropy", dump(ce)),
    }


@dataclass
class Start:
    """One start: its times, and the latencies of each request, seconds."""

    listening: float
    ready: float
    first: dict[str, float]
    steady: dict[str, float]  # median of STEADY later identical requests, back to back
    idle: dict[str, float]  # median of IDLE later ones, each after PAUSE s without requests


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> float:
    start = time.perf_counter()
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status}")
    return elapsed


# An empty cache compiles every kernel before ready: over 150 of them, which on a shared 2-core
# machine under load has taken 15-20 minutes.
EMPTY_START_TIMEOUT = 1800.0


def start_once(env: dict[str, str]) -> Start:
    """Start a server, time the first request of each kind on a connection opened after ready."""
    reqs = requests()
    with _server.start(env, timeout=EMPTY_START_TIMEOUT) as srv:
        # the client's own first-call costs, on a GET the readiness polls already made
        probe = http.client.HTTPConnection(_server.HOST, srv.port, timeout=60)
        probe.request("GET", "/readyz")
        probe.getresponse().read()
        probe.close()
        conn = http.client.HTTPConnection(_server.HOST, srv.port, timeout=60)
        conn.connect()
        first = {name: _post(conn, path, body) for name, (path, body) in reqs.items()}
        later: dict[str, list[float]] = {name: [] for name in reqs}
        for _ in range(STEADY):
            for name, (path, body) in reqs.items():
                later[name].append(_post(conn, path, body))
        paused: dict[str, list[float]] = {name: [] for name in reqs}
        for _ in range(IDLE):
            for name, (path, body) in reqs.items():
                time.sleep(PAUSE)
                paused[name].append(_post(conn, path, body))
        conn.close()
    steady = {name: statistics.median(times) for name, times in later.items()}
    idle = {name: statistics.median(times) for name, times in paused.items()}
    return Start(srv.listening_s, srv.ready_s, first, steady, idle)


def import_time() -> float:
    """Seconds for a fresh interpreter to import the application (no server, no kernels)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import service.app"], cwd=ROOT, check=True)
    return time.perf_counter() - start


def repo_cache() -> dict[str, tuple[int, int]]:
    """The checkout's own numba cache files, with mtime and size: its keyed directory (see
    service/kernel_cache.py) and any left beside the sources from before it."""
    dirs = [ROOT / "service", *([service.KERNEL_CACHE] if service.KERNEL_CACHE else [])]
    return {
        str(p): (p.stat().st_mtime_ns, p.stat().st_size)
        for d in dirs
        for pattern in ("*.nbi", "*.nbc")
        for p in d.rglob(pattern)
    }


def _spread(values: list[float], scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    med, low, high = (f(values) * scale for f in (statistics.median, min, max))
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(low)}..{fmt.format(high)})"


def run(quick: bool = False) -> Section:
    """One start with an empty cache directory, then warm starts reusing it."""
    warm_starts = 2 if quick else 5
    before = repo_cache()
    cache = Path(tempfile.mkdtemp(prefix="lossd-numba-cache-"))
    try:
        env = {"NUMBA_CACHE_DIR": str(cache)}
        empty = start_once(env)
        index_files = len(list(cache.rglob("*.nbi")))
        warm = [start_once(env) for _ in range(warm_starts)]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    untouched = repo_cache() == before

    starts = Table(
        "process launch to listening and to /readyz 200, seconds",
        ["numba cache", "starts", "to listening", "to ready"],
    )
    starts.add("empty (fresh NUMBA_CACHE_DIR)", 1, f"{empty.listening:.2f}", f"{empty.ready:.2f}")
    starts.add(
        "warm (the same directory again)",
        warm_starts,
        _spread([s.listening for s in warm]),
        _spread([s.ready for s in warm]),
    )
    firsts = Table(
        f"first request after ready vs the steady state (median of {STEADY} later ones), ms",
        ["start", "request", "first", "steady", f"after {PAUSE:g} s idle", "first / steady"],
    )
    ratios: dict[str, float] = {}
    for label, group in (("empty cache", [empty]), ("warm cache", warm)):
        for name in requests():
            first = [s.first[name] for s in group]
            steady = [s.steady[name] for s in group]
            idle = [s.idle[name] for s in group]
            ratio = statistics.median(f / s for f, s in zip(first, steady, strict=True))
            if label == "warm cache":
                ratios[name] = ratio
            firsts.add(
                label,
                name,
                _spread(first, 1e3),
                _spread(steady, 1e3),
                _spread(idle, 1e3),
                f"{ratio:.2f}x",
            )

    section = Section(
        "Cold start",
        "Process launch (`python -m service serve`, `Popen`) to the first 200 from /readyz, "
        "polled with a raw socket every 5 ms (backing off to 0.5% of the time elapsed), and to "
        "the port first accepting connections (uvicorn listens after the first kernel is "
        f"loaded). /readyz turns 200 once every loss's kernels, {len(REGISTRY)} losses x 2 "
        "dtypes, are compiled or loaded from numba's on-disk cache (`cache=True`). Empty: the "
        "server runs with `NUMBA_CACHE_DIR` set to a fresh temporary directory, so numba "
        "compiles everything and writes its cache there; warm: the next starts use that same "
        f"directory ({warm_starts} starts, median (min..max)). The checkout's own cache "
        "(`~/.cache/lossd/numba-<key>`) is never read or written by these starts. After each "
        "ready, one keep-alive connection (`http.client`, its client code warmed by a GET "
        "/readyz) sends the first small `mse` request and the first `cross_entropy` request, "
        f"then {STEADY} more of each back to back, alternating (steady: their median), then "
        f"{IDLE} more of each, each after {PAUSE:g} s without requests (their median); first / "
        "steady is the median over starts of the first latency over the steady median.",
        tables=[starts, firsts],
    )
    section.notes.append(
        f"NUMBA_CACHE_DIR is honoured: the empty start wrote {index_files} cache index files "
        "into the temporary directory, and the warm starts loaded them; the checkout's own "
        f"numba cache files were {'unchanged' if untouched else 'CHANGED'} (mtime and size) "
        "over the run" + ("." if untouched else " (by this run, or a concurrent one?)")
    )
    warm_ready = statistics.median(s.ready for s in warm)
    warm_listening = statistics.median(s.listening for s in warm)
    imports = statistics.median(import_time() for _ in range(1 if quick else 3))
    section.notes.append(
        f"`python -c 'import service.app'` alone (numba, FastAPI, pydantic, the registry; no "
        f"kernel loaded) takes {imports:.2f} s, median of {1 if quick else 3}, of the "
        f"{warm_listening:.2f} s a warm start takes to listen."
    )
    section.targets.append(
        Target(
            "warm-cache start to ready <= 2 s",
            f"{warm_ready:.2f} s (empty cache: {empty.ready:.1f} s)",
            warm_ready <= 2.0,
            ""
            if warm_ready <= 2.0
            else (
                f"Listening at {warm_listening:.2f} s ({imports:.2f} s of it importing the "
                f"service), ready {warm_ready - warm_listening:.2f} s later, once every kernel is "
                "loaded from the cache."
            ),
        )
    )
    for name, ratio in ratios.items():
        first_ms = statistics.median(s.first[name] for s in warm) * 1e3
        idle_ms = statistics.median(s.idle[name] for s in warm) * 1e3
        steady_ms = statistics.median(s.steady[name] for s in warm) * 1e3
        if idle_ms >= first_ms:
            why = (
                f"The same request after {PAUSE:g} s without requests takes {idle_ms:.2f} ms: "
                "what the first one pays is waking the server's idle threads (the compute "
                "thread, and numba's OpenMP workers, which every `prange` kernel waits for), "
                "not start-up work; back-to-back requests find them awake."
            )
        else:
            why = (
                f"The same request after {PAUSE:g} s without requests takes {idle_ms:.2f} ms, "
                f"so about {first_ms - max(idle_ms, steady_ms):.2f} ms is first-request work."
            )
        section.targets.append(
            Target(
                f"first request after ready <= 2x steady state ({name.split(',')[0]}, warm)",
                f"{ratio:.2f}x ({first_ms:.2f} vs {steady_ms:.2f} ms)",
                ratio <= 2.0,
                "" if ratio <= 2.0 else why,
            )
        )
    return section
