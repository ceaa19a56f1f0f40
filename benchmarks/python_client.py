"""The Python client (clients/python) end to end, against a bare echo of the same bytes.

``Client.evaluate("mse", p, t, gradient=True)`` sends N predictions and N targets (16N bytes
in lossd's binary framing) and reads back N per-sample losses and N gradient values (16N
bytes). The same client against ``benchmarks/_echo.py``, which answers the request's own
arrays in lossd's answer framing with nothing computed, moves the same bytes the same way (the
same pieces, the same concurrency): the ratio is what lossd costs on top of moving the data.
At N = 1e8 the batch (1.6 GB) is over LOSSD_MAX_BODY_BYTES, so the client splits it into
pieces of 16M rows, four in flight, for both.

The first table is why the client uploads in slices: httpcore copies the unsent rest of a
buffer after every partial socket send, which is quadratic in the buffer's size.

    .venv/bin/python -m benchmarks.run --only python_client [--quick]
"""

from __future__ import annotations

import http.client
import math
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import httpx
import numpy as np
from lossd_client import Client, Result

from benchmarks import _server
from benchmarks._common import ROOT, Section, Table, Timing, measure

SIZES = (1_000_000, 100_000_000)
QUICK_SIZES = (1_000_000, 10_000_000)
UPLOAD_BYTES = 250_000_000
SLICES_MIB = (1, 4, 16)


@contextmanager
def echo_server() -> Iterator[str]:
    """``python -m benchmarks._echo`` on a free port, for the block; its URL."""
    port = _server.free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._echo", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection((_server.HOST, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://{_server.HOST}:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _slices(body: bytes, size: int) -> Iterator[memoryview]:
    view = memoryview(body)
    for start in range(0, len(body), size):
        yield view[start : start + size]


def uploads(url: str, quick: bool) -> Table:
    """250 MB POSTed to the echo (read and dropped): httpx handed one ``bytes``, httpx handed
    slices of it, and the standard library's http.client."""
    size = UPLOAD_BYTES // 10 if quick else UPLOAD_BYTES
    body = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    table = Table(f"Uploading {size / 1e6:.0f} MB to a bare echo", ["client", "time", "MB/s"])
    length = {"Content-Length": str(size)}
    rows: list[tuple[str, Callable[[], object], int]] = []
    with httpx.Client(base_url=url, timeout=600) as session:
        rows.append(("httpx, one bytes body", lambda: session.post("/discard", content=body), 1))
        for mib in SLICES_MIB:

            def sliced(m: int = mib) -> object:
                slices = cast(Iterator[bytes], _slices(body, m << 20))  # httpx sends any buffer
                return session.post("/discard", content=slices, headers=length)

            rows.append((f"httpx, {mib} MiB slices", sliced, 3))
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=600)

        def stdlib() -> object:
            conn.request("POST", "/discard", body=body, headers=length)
            return conn.getresponse().read()

        rows.append(("http.client", stdlib, 3))
        for label, fn, runs in rows:
            timing = measure(fn, runs, warmup=0 if runs == 1 else 1)
            table.add(label, _seconds(timing), f"{size / 1e6 / timing.median:,.0f}")
        conn.close()
    return table


def _check(result: Result, p: np.ndarray, t: np.ndarray) -> None:
    expected = float(np.mean((p - t) ** 2))
    if result.value is None or not math.isclose(result.value, expected, rel_tol=1e-9):
        raise AssertionError(f"mse {result.value}, NumPy's {expected}")


def end_to_end(lossd: str, echo: str, sizes: tuple[int, ...]) -> tuple[Table, dict[int, float]]:
    """``evaluate("mse", p, t, gradient=True)`` against lossd and against the echo."""
    table = Table(
        "Client.evaluate('mse', p, t, gradient=True), float64, binary transport",
        ["N", "MB each way", "requests", "lossd", "bare echo", "lossd / echo"],
    )
    ratios = {}
    with Client(lossd, timeout=600) as server, Client(echo, timeout=600) as bare:
        for n in sizes:
            rng = np.random.default_rng(n)
            p, t = rng.normal(size=n), rng.normal(size=n)
            runs = 3 if n >= 10_000_000 else 7
            answers: list[Result] = []

            def through(
                client: Client, keep: list[Result] = answers, p: np.ndarray = p, t: np.ndarray = t
            ) -> None:
                keep[:] = [client.evaluate("mse", p, t, gradient=True)]

            real = measure(lambda: through(server), runs)
            _check(answers[0], p, t)
            requests = answers[0].requests
            answers.clear()
            floor = measure(lambda: through(bare), runs)
            answers.clear()
            ratios[n] = real.median / floor.median
            table.add(
                f"{n:.0e}",
                f"{16 * n / 1e6:,.0f}",
                requests,
                _seconds(real),
                _seconds(floor),
                f"{ratios[n]:.2f}x",
            )
    return table, ratios


def json_transport(lossd: str, n: int = 1_000_000) -> tuple[Timing, Timing]:
    """The same evaluation with transport="json" (base64-packed arrays) and binary."""
    rng = np.random.default_rng(n)
    p, t = rng.normal(size=n), rng.normal(size=n)
    with Client(lossd, transport="json") as text, Client(lossd) as binary:
        return (
            measure(lambda: text.evaluate("mse", p, t, gradient=True), 5),
            measure(lambda: binary.evaluate("mse", p, t, gradient=True), 5),
        )


def run(quick: bool = False) -> Section:
    sizes = QUICK_SIZES if quick else SIZES
    with echo_server() as echo, _server.start() as srv:
        upload = uploads(echo, quick)
        table, ratios = end_to_end(srv.url, echo, sizes)
        text, binary = json_transport(srv.url)
    section = Section(
        "Python client",
        "`lossd_client.Client` end to end on 127.0.0.1 against a bare echo of the same bytes "
        "(`benchmarks/_echo.py`: raw sockets, the request's arrays answered in lossd's framing, "
        "nothing computed), through the same client: the ratio is lossd's cost on top of moving "
        "the data. Median (min..max) of 3-7 runs after a warm-up.",
        tables=[upload, table],
    )
    largest = sizes[-1]
    section.notes += [
        f"At N = {largest:.0e} the batch is over LOSSD_MAX_BODY_BYTES: the client splits it "
        "into row pieces sent four at a time, to lossd and to the echo alike; lossd/echo is "
        f"{ratios[largest]:.2f}x there and {ratios[sizes[0]]:.2f}x at N = {sizes[0]:.0e}.",
        f"transport='json' (base64-packed arrays both ways) at N = 1e6: {_seconds(text)}, "
        f"{text.median / binary.median:.1f}x the binary transport's {_seconds(binary)}.",
        "Uploads go in 4 MiB slices: httpx handed one `bytes` body re-copies its unsent rest "
        "after every partial socket send (the first table's first row).",
    ]
    return section


def _seconds(t: Timing) -> str:
    def s(x: float) -> str:
        return f"{x * 1e3:.0f} ms" if x < 10 else f"{x:.1f} s"

    return f"{s(t.median)} ({s(t.low)}..{s(t.high)})"


def main() -> int:
    section = run("--quick" in sys.argv)
    for table in section.tables:
        print(table.text(), end="\n\n")
    print("\n".join(section.notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
