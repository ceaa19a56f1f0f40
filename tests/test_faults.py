"""Faults: SIGTERM with requests in flight, a worker killed with SIGKILL, clients that hang up.

SPEC section 6: SIGTERM drains in-flight requests, then the process exits 0; with several
workers, a worker that dies is replaced. Each test starts a server of its own (tests/support/servers.py).
"""

from __future__ import annotations

import base64
import os
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.support.servers import Server, served, start_server

JSON = {"content-type": "application/json"}
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST at once


def port_of(srv: Server) -> int:
    return int(srv.url.rsplit(":", 1)[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmRSS")


def packed(array: np.ndarray[Any, Any]) -> dict[str, Any]:
    data = base64.b64encode(np.ascontiguousarray(array, dtype="<f8").tobytes()).decode()
    return {"dtype": "float64", "shape": list(array.shape), "data": data}


def unpack(doc: dict[str, Any]) -> np.ndarray[Any, Any]:
    raw = base64.b64decode(doc["data"], validate=True)
    return np.frombuffer(raw, dtype=np.dtype(doc["dtype"]).newbyteorder("<")).reshape(doc["shape"])


def large_request(n: int, seed: int) -> tuple[bytes, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A raw HTTP request for mse on ``n`` packed values, per-sample losses packed in the answer."""
    rng = np.random.default_rng(seed)
    pred, targ = rng.normal(size=n), rng.normal(size=n)
    body = orjson.dumps(
        {"predictions": packed(pred), "targets": packed(targ), "array_format": "packed"}
    )
    head = (
        f"POST /loss/mse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body, pred, targ


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    sock.settimeout(120)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1 << 16)
        assert chunk, "connection closed before the response head"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(":", 1) for line in lines[1:])
    length = int({k.strip().lower(): v for k, v in fields.items()}["content-length"])
    chunks = [body]
    received = len(body)
    while received < length:
        chunk = sock.recv(min(1 << 20, length - received))
        assert chunk, f"connection closed after {received} of {length} body bytes"
        chunks.append(chunk)
        received += len(chunk)
    return int(lines[0].split()[1]), b"".join(chunks)


def assert_mse(body: bytes, pred: np.ndarray[Any, Any], targ: np.ndarray[Any, Any]) -> None:
    """The answer is mse of ``pred`` and ``targ``: per-sample losses and their mean."""
    doc = orjson.loads(body)
    expected = (pred - targ) ** 2
    np.testing.assert_allclose(unpack(doc["per_sample"]), expected, rtol=1e-15, atol=0)
    assert doc["value"] == pytest.approx(float(np.mean(expected)), rel=1e-9)
    assert doc["n"] == len(pred)


# --- (a) SIGTERM drains ---------------------------------------------------------------------------

IN_FLIGHT = 4  # two are computed at a time (the compute executor), the rest wait in its queue
N_LARGE = 3_000_000


def test_sigterm_drains_in_flight_requests_then_exits_0() -> None:
    """SIGTERM with four large requests in flight: all four answer 200 and right, then exit 0."""
    srv = start_server()
    try:
        socks, inputs = [], []
        for k in range(IN_FLIGHT):
            request, pred, targ = large_request(N_LARGE, seed=k)
            sock = socket.create_connection(("127.0.0.1", port_of(srv)))
            sock.sendall(request)  # the whole body is in the server's hands or its socket buffer
            socks.append(sock)
            inputs.append((pred, targ))
        # at least one answer has not begun: that request is still being computed or queued
        readable, _, _ = select.select(socks, [], [], 0)
        assert len(readable) < IN_FLIGHT, "every answer had begun before SIGTERM"
        srv.process.send_signal(signal.SIGTERM)
        for sock, (pred, targ) in zip(socks, inputs, strict=True):
            status, body = read_response(sock)
            assert status == 200, body[:300]
            assert_mse(body, pred, targ)
            sock.close()
        assert srv.process.wait(timeout=60) == 0
    finally:
        if srv.process.poll() is None:
            srv.process.kill()
            srv.process.wait()
        log = getattr(srv, "log", None)  # the server's stderr, which Server.stop closes
        if log is not None:
            log.close()


# --- (b) a worker killed with SIGKILL is replaced -------------------------------------------------


def worker_pids(supervisor: int) -> set[int]:
    """The uvicorn workers of ``supervisor``: its children started by multiprocessing's spawn."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended while we looked
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == supervisor and b"spawn_main" in cmdline:
            pids.add(int(entry.name))
    return pids


@pytest.fixture
def two_workers() -> Iterator[Server]:
    """A server with LOSSD_WORKERS=2; it must stop with exit 0 on SIGTERM."""
    with served({"LOSSD_WORKERS": "2"}) as srv:
        deadline = time.monotonic() + 60
        while len(worker_pids(srv.process.pid)) < 2:
            assert time.monotonic() < deadline, "two workers did not appear"
            time.sleep(0.1)
        yield srv


class ClientLoop:
    """Threads that post mse requests and check every answer until stopped.

    A request that fails at the connection level (the worker holding it was killed) is retried
    once, on a new connection, and that retry must succeed; each is recorded with its time.
    """

    def __init__(self, url: str, threads: int) -> None:
        self.url = url
        self.stop = threading.Event()
        self.ok = 0
        self.retried: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(k,)) for k in range(threads)]

    def __enter__(self) -> ClientLoop:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def run(self, k: int) -> None:
        # a new connection per request: the kernel hands each to whichever worker accepts it
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=self.url, timeout=60, limits=limits) as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                pred, targ = [float(i), float(k)], [float(k), float(i) + 0.5]
                body = {"predictions": pred, "targets": targ}
                try:
                    response = http.post("/loss/mse", json=body)
                except httpx.TransportError as exc:
                    with self.lock:
                        self.retried.append((time.monotonic(), type(exc).__name__))
                    try:
                        response = http.post("/loss/mse", json=body)
                    except httpx.TransportError as again:
                        with self.lock:
                            self.failures.append(f"retry failed: {again!r}")
                        continue
                expected = ((i - k) ** 2 + (k - i - 0.5) ** 2) / 2
                with self.lock:
                    if response.status_code != 200:
                        self.failures.append(f"{response.status_code}: {response.text[:200]}")
                    elif response.json()["value"] != expected:
                        self.failures.append(f"value {response.json()['value']} != {expected}")
                    else:
                        self.ok += 1


def test_killed_worker_is_replaced_while_requests_keep_succeeding(two_workers: Server) -> None:
    """SIGKILL one of two workers under load: at most the requests it held fail (each retried
    once, with success), every other answer is 200 and right, and a new worker takes its place
    and serves.
    """
    supervisor = two_workers.process.pid
    before = worker_pids(supervisor)
    victim = min(before)
    threads = 4
    with ClientLoop(two_workers.url, threads) as clients:
        time.sleep(2)
        served_before = clients.ok
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        deadline = killed + 90
        while not (worker_pids(supervisor) - before):
            assert time.monotonic() < deadline, "no new worker replaced the killed one"
            time.sleep(0.1)
        replaced = time.monotonic()
        time.sleep(3)  # and the replacement in service beside the survivor
        served_after = clients.ok
    assert not clients.failures, clients.failures[:5]
    after = worker_pids(supervisor)
    assert victim not in after
    assert len(after) == 2, after
    assert served_before > 0
    assert served_after > served_before + 10  # requests kept succeeding
    # only requests in flight on the killed worker may fail: one per client thread at most,
    # between the kill and the replacement
    assert len(clients.retried) <= threads, clients.retried
    assert all(killed <= at <= replaced + 1 for at, _ in clients.retried), clients.retried
    # the replacement serves: with the surviving worker stopped, it alone accepts connections
    (replacement,) = after - before
    (survivor,) = after - {replacement}
    os.kill(survivor, signal.SIGSTOP)
    try:
        for i in range(10):
            response = httpx.post(
                f"{two_workers.url}/loss/mse", json={"predictions": [i], "targets": [0]}, timeout=90
            )
            assert response.status_code == 200, response.text
            assert response.json()["value"] == i * i
    finally:
        # uvicorn's supervisor kills a worker that misses its 5 s ping (and starts another): a
        # stopped survivor may be gone by now on a loaded machine, which is its job
        with suppress(ProcessLookupError):
            os.kill(survivor, signal.SIGCONT)
    # and both answer afterwards
    for i in range(20):
        response = httpx.post(
            f"{two_workers.url}/loss/mse", json={"predictions": [i], "targets": [1]}, timeout=30
        )
        assert response.status_code == 200, response.text
        assert response.json()["value"] == (i - 1) ** 2


# --- (c) clients that hang up -------------------------------------------------------------------

N_DROPPED = 2_000_000


@pytest.fixture
def small_queue() -> Iterator[Server]:
    """A server whose compute queue holds two requests."""
    with served({"LOSSD_QUEUE_DEPTH": "2"}) as srv:
        yield srv


def hang_up(srv: Server, request: bytes, how: str) -> None:
    """Send ``request`` (all or half of it) and close the connection with a reset."""
    sock = socket.create_connection(("127.0.0.1", port_of(srv)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    if how == "mid-body":
        sock.sendall(request[: len(request) // 2])
    else:
        sock.sendall(request)
    if how == "mid-response":
        sock.settimeout(60)
        assert sock.recv(1 << 16)  # the answer has begun
    elif how == "mid-compute":
        time.sleep(0.05)
    sock.close()


def test_hung_up_clients_neither_leak_nor_wedge_the_queue(small_queue: Server) -> None:
    """Clients that hang up mid-body, mid-compute or mid-response, five rounds of three, with a
    queue of two: a request right after is answered, and the RSS comes back to its baseline."""
    srv = small_queue
    request, pred, targ = large_request(N_DROPPED, seed=1)
    queued, q_pred, q_targ = large_request(100_000, seed=2)  # past the inline limit: queued
    with socket.create_connection(("127.0.0.1", port_of(srv))) as sock:
        sock.sendall(request)  # one whole exchange first: the baseline includes its buffers
        status, body = read_response(sock)
        assert status == 200
        assert_mse(body, pred, targ)
    baseline = rss_mib(srv.process.pid)
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        for _ in range(5):
            for how in ("mid-body", "mid-compute", "mid-response"):
                hang_up(srv, request, how)
            started = time.monotonic()
            response = http.post("/loss/mse", json={"predictions": [3.0], "targets": [1.0]})
            assert response.status_code == 200, response.text
            assert response.json()["value"] == 4.0
            # a queued request: the hung-up requests' work may still hold the two places for a
            # moment (503 overloaded, Retry-After), but never for good
            while True:
                with socket.create_connection(("127.0.0.1", port_of(srv))) as sock:
                    sock.sendall(queued)
                    status, body = read_response(sock)
                if status != 503:
                    break
                assert orjson.loads(body)["code"] == "overloaded"
                assert time.monotonic() - started < 30, "the compute queue stayed full"
                time.sleep(0.2)
            assert status == 200, body[:300]
            assert_mse(body, q_pred, q_targ)
        metrics = http.get("/metrics").text
    # a hang-up is not a server error
    assert 'status="500"' not in metrics
    deadline = time.monotonic() + 30
    while rss_mib(srv.process.pid) > baseline * 1.10 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rss_mib(srv.process.pid) <= baseline * 1.10, (baseline, rss_mib(srv.process.pid))
