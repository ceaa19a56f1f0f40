"""Replicas behind nginx (``make bench-scale``): what the balancer adds, and what a second
replica gives, on loopback.

.venv/bin/python -m benchmarks.run --only scale [--quick] [--report docs/scaling.md]

Two lossd replicas and two nginx processes run deploy/nginx's template (the configuration
tests/test_nginx.py runs, rendered by deploy/nginx/render.py): one in front of replica A, one in
front of A and B. Three routes are measured with the closed-loop generator of
``benchmarks/_load.py``: straight to A, nginx to A, nginx to A and B; for a small request (mse,
N = 64, JSON) and a large one (mse, N = 1e6 float64 in the binary framing, per-sample losses
back: 16 MB up, 8 MB down), at concurrency 1 and 8. The routes are measured in turn within
each round, the rounds repeated, so that the machine's drift (it is shared) hits every route
alike; each comparison is made within a round, then its median and spread taken over rounds.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lossd_client._wire import Options, binary_body, wire_array

from benchmarks import _server
from benchmarks._common import ROOT, Section, Table, Target
from benchmarks._load import Window, load, request_bytes
from benchmarks.http_small import body as small_body
from benchmarks.http_small import spread

NGINX = Path("/usr/sbin/nginx")
LARGE_N = 1_000_000
CONCURRENCY = (1, 8)
ROUTES = ("direct to A", "nginx to A", "nginx to A, B")
# lossd as deploy/compose.yaml runs it: idle connections outlive nginx's (60 s)
REPLICA_ENV = {"LOSSD_KEEP_ALIVE_TIMEOUT": "75"}


@dataclass(frozen=True)
class Route:
    """Where the generator connects, and the processes whose CPU time counts."""

    name: str
    port: int
    lossd: tuple[int, ...]
    nginx: tuple[int, ...]


def _children(pid: int) -> tuple[int, ...]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return tuple(int(p) for p in text.split())


@contextmanager
def _nginx(replicas: Sequence[int]) -> Iterator[tuple[int, tuple[int, ...]]]:
    """A foreground nginx (deploy/nginx's template as render.py's --standalone wraps it: one
    worker, its access log to a file) in front of the replicas' ports: its port, and its
    master's and worker's pids."""
    if not NGINX.exists():
        raise RuntimeError(f"no {NGINX}: `make bench-scale` installs Debian's nginx (as root)")
    with tempfile.TemporaryDirectory(prefix="lossd-bench-nginx-") as tmp:
        directory = Path(tmp)
        port = _server.free_port()
        upstreams = [f"{_server.HOST}:{p}" for p in replicas]
        conf = directory / "nginx.conf"
        conf.write_bytes(  # render.py's own command line, as an operator runs it
            subprocess.run(
                [
                    *(sys.executable, ROOT / "deploy/nginx/render.py", "--standalone"),
                    *("--prefix", str(directory), "--listen", f"{_server.HOST}:{port}"),
                    *upstreams,
                ],
                check=True,
                capture_output=True,
                timeout=30,
            ).stdout
        )
        with (
            (directory / "access.log").open("wb") as out,  # its access log, as in the tests
            (directory / "error.log").open("wb") as err,
        ):
            process = subprocess.Popen(
                [NGINX, "-p", str(directory), "-c", str(conf)], stdout=out, stderr=err
            )
        try:
            for _ in range(600):
                if process.poll() is not None:
                    raise RuntimeError((directory / "error.log").read_text()[-2000:])
                if _server.status_code(port, "/healthz") == 200 and _children(process.pid):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("nginx did not answer")
            yield port, (process.pid, *_children(process.pid))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def large_request() -> bytes:
    """mse over LARGE_N float64 pairs in the binary framing, per-sample losses asked back."""
    rng = np.random.default_rng(1)
    arrays = {
        "predictions": wire_array(rng.normal(size=LARGE_N), "predictions"),
        "targets": wire_array(rng.normal(size=LARGE_N), "targets"),
    }
    body = binary_body(Options().document(), arrays)
    data = b"".join(bytes(part) for part in body.parts)
    assert len(data) == body.length
    return request_bytes("POST", "/loss/mse", data, body.headers)


def _ms(values: list[float]) -> str:
    return spread([v * 1e3 for v in values], "{:.2f}")


def run(quick: bool = False) -> Section:
    rounds, warmup = (2, 0.3) if quick else (5, 0.5)
    durations = {"small": 1.0 if quick else 2.0, "large": 1.5 if quick else 4.0}
    requests = {
        "small": request_bytes("POST", "/loss/mse", small_body()),
        "large": large_request(),
    }
    # results[size, c, route]: one window per round
    results: dict[tuple[str, int, str], list[Window]] = {}
    load_before = os.getloadavg()[0]
    routes: list[Route] = []
    with ExitStack() as stack:
        a = stack.enter_context(_server.start(REPLICA_ENV))
        b = stack.enter_context(_server.start(REPLICA_ENV))
        one_port, one_pids = stack.enter_context(_nginx([a.port]))
        two_port, two_pids = stack.enter_context(_nginx([a.port, b.port]))
        routes = [
            Route(ROUTES[0], a.port, (a.pid,), ()),
            Route(ROUTES[1], one_port, (a.pid,), one_pids),
            Route(ROUTES[2], two_port, (a.pid, b.pid), two_pids),
        ]
        for _ in range(rounds):
            for size, request in requests.items():
                for c in CONCURRENCY:
                    for route in routes:
                        pids = (*route.lossd, *route.nginx)
                        (window,) = load(route.port, pids, request, c, warmup, durations[size], 1)
                        results.setdefault((size, c, route.name), []).append(window)
    section = _report(results, routes, rounds, warmup, durations)
    section.notes.append(
        f"The machine's load average (1 min) was {load_before:.1f} before the run and "
        f"{os.getloadavg()[0]:.1f} after it, on {len(os.sched_getaffinity(0))} cores: "
        "other processes than these took CPU too, which the CPU busy column (this run's "
        "processes only) shows; the per-core figures do not depend on it."
    )
    return section


def _lossd_cpu(window: Window, route: Route) -> float:
    return sum(window.process_cpu[: len(route.lossd)])


def _nginx_cpu(window: Window, route: Route) -> float:
    return sum(window.process_cpu[len(route.lossd) :])


def _report(
    results: dict[tuple[str, int, str], list[Window]],
    routes: list[Route],
    rounds: int,
    warmup: float,
    durations: dict[str, float],
) -> Section:
    by_name = {r.name: r for r in routes}
    table = Table(
        f"req/s and latency: median (min..max) over {rounds} rounds, one window each",
        [
            "request",
            "c",
            "route",
            "req/s",
            "p50 ms",
            "p99 ms",
            "lossd CPU ms/req",
            "nginx CPU ms/req",
            "CPU busy (of 200%)",
        ],
    )
    for (size, c, name), windows in results.items():
        route = by_name[name]
        busy = [w.client_cpu + w.server_cpu for w in windows]
        table.add(
            "mse N=64, JSON" if size == "small" else "mse N=1e6, binary",
            c,
            name,
            spread([w.rate for w in windows]),
            _ms([w.percentile(50) for w in windows]),
            _ms([w.percentile(99) for w in windows]),
            f"{statistics.median(_lossd_cpu(w, route) / w.rate for w in windows) * 1e3:.3f}",
            "-"
            if not route.nginx
            else f"{statistics.median(_nginx_cpu(w, route) / w.rate for w in windows) * 1e3:.3f}",
            f"{statistics.median(busy):.0%}",
        )

    def paired(size: str, c: int, name: str, measure: str) -> list[float]:
        direct, other = results[size, c, ROUTES[0]], results[size, c, name]
        if measure == "p50":
            return [o.percentile(50) - d.percentile(50) for d, o in zip(direct, other, strict=True)]
        return [o.rate / d.rate for d, o in zip(direct, other, strict=True)]

    overhead = Table(
        "what nginx changes against going straight to A, paired within each round: median "
        "(min..max)",
        ["request", "route", "p50 added at c=1, ms", "req/s at c=8, % of direct"],
    )
    for size in ("small", "large"):
        for name in ROUTES[1:]:
            overhead.add(
                "mse N=64, JSON" if size == "small" else "mse N=1e6, binary",
                name,
                _ms(paired(size, 1, name, "p50")),
                spread([r * 100 for r in paired(size, 8, name, "rate")], "{:.0f}%"),
            )
    per_core = Table(
        "per core: requests per second of CPU, from each process's CPU time per request "
        "(median over rounds; what a replica or nginx gives per core it is given)",
        ["request", "c", "lossd req/s per core", "nginx req/s per core", "nginx CPU / lossd CPU"],
    )
    for size in ("small", "large"):
        for c in CONCURRENCY:
            route = by_name[ROUTES[1]]
            windows = results[size, c, route.name]
            lossd = statistics.median(_lossd_cpu(w, route) / w.rate for w in windows)
            nginx = statistics.median(_nginx_cpu(w, route) / w.rate for w in windows)
            per_core.add(
                "mse N=64, JSON" if size == "small" else "mse N=1e6, binary",
                c,
                f"{1 / lossd:.0f}",
                f"{1 / nginx:.0f}",
                f"{nginx / lossd:.0%}",
            )
    section = Section(
        "Scaling out: replicas behind nginx",
        f"Replicas A and B (`lossd serve`, `LOSSD_KEEP_ALIVE_TIMEOUT=75`) and two nginx "
        "processes with deploy/nginx's template (one worker each, access log to a file), on "
        "127.0.0.1: one in front of A, one in front of A and B. Each round measures every "
        f"route in turn: {warmup:g} s of warm-up, then one window ({durations['small']:g} s "
        f"small, {durations['large']:g} s large); {rounds} rounds. The generator "
        "(`benchmarks/_load.py`), nginx and the replicas share the machine's cores; CPU is "
        "each process's CPU time over the window.",
        tables=[table, overhead, per_core],
    )
    added = paired("small", 1, ROUTES[1], "p50")
    ratio = paired("small", 8, ROUTES[1], "rate")
    section.targets.append(
        Target(
            "nginx adds <= 0.25 ms to the median of mse N=64 at concurrency 1",
            f"{statistics.median(added) * 1e3:.3f} ms ({min(added) * 1e3:.3f}.."
            f"{max(added) * 1e3:.3f})",
            statistics.median(added) <= 0.25e-3,
        )
    )
    windows = results["small", 8, ROUTES[1]]
    busy = statistics.median(w.client_cpu + w.server_cpu for w in windows)
    route = by_name[ROUTES[1]]
    lossd = statistics.median(_lossd_cpu(w, route) / w.rate for w in windows)
    nginx = statistics.median(_nginx_cpu(w, route) / w.rate for w in windows)
    section.targets.append(
        Target(
            "through nginx at concurrency 8 >= 85% of direct req/s (mse N=64)",
            spread([r * 100 for r in ratio], "{:.0f}%"),
            statistics.median(ratio) >= 0.85,
            f"the cores were {busy:.0%} busy of 200%: nginx's CPU per request is "
            f"{nginx / lossd:.0%} of lossd's, taken from the same 2 cores (per core: lossd "
            f"{1 / lossd:.0f} req/s, nginx {1 / nginx:.0f} req/s)",
        )
    )
    big = by_name[ROUTES[1]]
    big_windows = results["large", 1, big.name]
    big_nginx = statistics.median(_nginx_cpu(w, big) / w.rate for w in big_windows)
    section.notes.append(
        f"A large request costs nginx {big_nginx * 1e3:.0f} ms of CPU: it reads the 16 MB body "
        "whole before choosing a replica (so that it can send it again to another), writing "
        "what is over 1 MiB to a temporary file, then copies it to the replica and the 8 MB "
        "answer back. For large arrays, `Client(urls=[...])` spreads the pieces over the "
        "replicas itself, without that copy."
    )
    two = paired("small", 8, ROUTES[2], "rate")
    section.notes.append(
        f"Two replicas on these 2 shared cores give {statistics.median(two):.0%} of one "
        "replica's direct req/s for small requests at c=8: the cores, not the replicas, are "
        "the limit (every process here shares them). On a node, replicas add throughput in "
        "proportion to the cores they are given: the per-core table is the figure that carries."
    )
    return section
