"""The connection bounds of service/server.py against live servers, with limits scaled down so
that each bound shows up in seconds where an unbounded server would take tens of seconds or
hundreds of MiB. Raw sockets: the test controls every byte and its timing."""

from __future__ import annotations

import asyncio
import base64
import re
import select
import socket
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
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import Server, served, start_server

HEADER_TIMEOUT = 1.0  # LOSSD_HEADER_TIMEOUT of the bounded server, seconds
KEEP_ALIVE = 1  # LOSSD_KEEP_ALIVE_TIMEOUT
MAX_HEADER_BYTES = 4096
MAX_HEADERS = 20
MAX_PIPELINED = 2
SEND_TIMEOUT = 2.0
MAX_CONNECTIONS = 8  # LOSSD_MAX_CONNECTIONS of the capped server
# "Cut within seconds": each bound above is at most 2 s; an unbounded server keeps these
# connections for as long as the client likes (the tests give up on them after 15 s).
CUT_WITHIN = 8.0
RSS_GROWTH = 16 << 20  # "not buffered": the server grows by less than this (unbounded: 100s of MiB)


@pytest.fixture(scope="module")
def bounded() -> Iterator[Server]:
    env = {
        "LOSSD_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "LOSSD_KEEP_ALIVE_TIMEOUT": str(KEEP_ALIVE),
        "LOSSD_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "LOSSD_MAX_HEADERS": str(MAX_HEADERS),
        "LOSSD_MAX_PIPELINED": str(MAX_PIPELINED),
        "LOSSD_SEND_TIMEOUT": str(SEND_TIMEOUT),
        "LOSSD_LOG_LEVEL": "info",
    }
    with served(env) as srv:
        yield srv


def address(srv: Server) -> tuple[str, int]:
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def connect(srv: Server) -> socket.socket:
    return socket.create_connection(address(srv), timeout=30)


def rss(srv: Server) -> int:
    """The server process's resident memory in bytes (/proc/<pid>/status VmRSS)."""
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{srv.process.pid}/status").read_text())
    assert match
    return int(match.group(1)) * 1024


def get(path: str = "/healthz", *fields: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *fields, "", ""]).encode()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response with a Content-Length."""
    return read_answers(sock, 1)[0]


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` HTTP responses with a Content-Length, one after the other."""
    answers = []
    with sock.makefile("rb") as stream:
        for _ in range(count):
            status_line = stream.readline()
            assert status_line, "connection closed before an answer"
            headers = {}
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, value = line.decode("latin-1").split(":", 1)
                headers[name.strip().lower()] = value.strip()
            body = stream.read(int(headers["content-length"]))
            answers.append((int(status_line.split()[1]), headers, body))
    return answers


def drain(sock: socket.socket, within: float) -> tuple[bytes, bool]:
    """Everything the server sends until it ends the connection (EOF or reset), and whether it
    did within ``within`` seconds."""
    sock.settimeout(within)
    data = b""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return data, True
            data += chunk
    except TimeoutError:
        return data, False
    except ConnectionResetError:
        return data, True
    return data, False


def assert_problem(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got, headers, body = answer
    assert got == status, answer
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    doc = orjson.loads(body)
    assert (doc["status"], doc["code"]) == (status, code)


def cut_count(srv: Server, reason: str) -> float:
    text = httpx.get(f"{srv.url}/metrics", timeout=30).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "lossd_connections_cut_total" and s.labels == {"reason": reason}
    )


# --- slow and idle clients -----------------------------------------------------------------


def test_trickled_heads_are_cut_and_others_are_served(bounded: Server) -> None:
    """200 connections trickling header lines each get a 408 after the header timeout, while a
    legitimate client keeps getting prompt answers."""
    host, port = address(bounded)

    async def trickle(i: int) -> tuple[float, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(get().removesuffix(b"\r\n"))  # the blank line never comes
        started = time.monotonic()
        try:
            while time.monotonic() - started < 15:
                writer.write(b"X-Trickle-%d: %d\r\n" % (i, time.monotonic_ns()))
                try:
                    answer = await asyncio.wait_for(reader.read(4096), 0.1)
                except TimeoutError:
                    continue
                return time.monotonic() - started, answer
        except ConnectionError:
            return time.monotonic() - started, b""
        finally:
            writer.close()
        return time.monotonic() - started, b"survived"

    async def legitimate() -> list[tuple[float, int]]:
        answers = []
        async with httpx.AsyncClient(base_url=bounded.url, timeout=30) as http:
            await asyncio.sleep(0.5)
            for _ in range(20):
                started = time.monotonic()
                response = await http.get("/healthz")
                answers.append((time.monotonic() - started, response.status_code))
                await asyncio.sleep(0.1)
        return answers

    async def attack() -> tuple[list[tuple[float, bytes]], list[tuple[float, int]]]:
        trickled = asyncio.gather(*(trickle(i) for i in range(200)))
        served = await legitimate()
        return await trickled, served

    trickled, served = asyncio.run(attack())
    assert {status for _, status in served} == {200}
    assert max(seconds for seconds, _ in served) < 5.0, served
    assert max(seconds for seconds, _ in trickled) < CUT_WITHIN
    assert {answer[:12] for _, answer in trickled} == {b"HTTP/1.1 408"}


def test_a_connection_that_sends_nothing_is_closed(bounded: Server) -> None:
    """A connection that never sends a byte is closed, without an answer, after the header
    timeout."""
    with connect(bounded) as sock:
        data, ended = drain(sock, CUT_WITHIN)
    assert (data, ended) == (b"", True)


def test_idle_keep_alive_connection_is_closed(bounded: Server) -> None:
    """A kept-alive connection serves a request sent at once, and is closed after the
    keep-alive timeout once idle."""
    with connect(bounded) as sock:
        sock.sendall(get())
        assert read_answer(sock)[0] == 200
        sock.sendall(get())
        assert read_answer(sock)[0] == 200
        started = time.monotonic()
        data, ended = drain(sock, CUT_WITHIN)
    assert (data, ended) == (b"", True)
    assert time.monotonic() - started >= KEEP_ALIVE * 0.5


# --- header floods ---------------------------------------------------------------------------


def test_header_flood_is_431_and_not_buffered(bounded: Server) -> None:
    """A million header lines get a 431 headers_too_large as soon as the cap is crossed, and the
    server does not grow with them."""
    block = b"X-Flood: y\r\n" * 8192
    before = rss(bounded)
    with connect(bounded) as sock:
        sock.sendall(get().removesuffix(b"\r\n"))
        sent = 0
        while sent < 1_000_000 * 12 and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(block)
            except OSError:  # the server stopped reading: its answer is in our buffer
                break
            sent += len(block)
        answer = read_answer(sock)
        assert drain(sock, CUT_WITHIN)[1]
    assert_problem(answer, 431, "headers_too_large")
    assert rss(bounded) - before < RSS_GROWTH


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (get("/healthz", *(f"X-{i}: v" for i in range(MAX_HEADERS - 1))), 200),
        (get("/healthz", *(f"X-{i}: v" for i in range(MAX_HEADERS + 1))), 431),
        (get("/healthz?q=" + "a" * MAX_HEADER_BYTES), 431),
        (get("/healthz", "X-Big: " + "a" * MAX_HEADER_BYTES), 431),
    ],
    ids=["under-the-caps", "too-many-fields", "long-request-line", "long-field"],
)
def test_header_caps(bounded: Server, request_head: bytes, status: int) -> None:
    """More fields than LOSSD_MAX_HEADERS or more bytes than LOSSD_MAX_HEADER_BYTES get a 431."""
    with connect(bounded) as sock:
        sock.sendall(request_head)
        answer = read_answer(sock)
    if status == 200:
        assert answer[0] == 200
    else:
        assert_problem(answer, 431, "headers_too_large")


def test_a_bound_crossed_is_counted(bounded: Server) -> None:
    """Connections cut by a bound are counted by reason in lossd_connections_cut_total."""
    before = cut_count(bounded, "headers_too_large")
    with connect(bounded) as sock:
        sock.sendall(get("/healthz", "X-Big: " + "a" * MAX_HEADER_BYTES))
        read_answer(sock)
    assert cut_count(bounded, "headers_too_large") == before + 1


# --- the connection cap ----------------------------------------------------------------------


def test_connections_beyond_the_cap_are_refused_while_established_ones_work() -> None:
    """With LOSSD_MAX_CONNECTIONS open, one more gets 503 too_many_connections with Retry-After
    and is closed; the established connections keep being served, and a slot freed is reused."""
    env = {"LOSSD_MAX_CONNECTIONS": str(MAX_CONNECTIONS), "LOSSD_KEEP_ALIVE_TIMEOUT": "60"}
    srv = start_server(env)
    try:
        established = [connect(srv) for _ in range(MAX_CONNECTIONS)]
        try:
            for sock in established:
                sock.sendall(get())
                assert read_answer(sock)[0] == 200
            with connect(srv) as extra:
                extra.sendall(get())
                answer = read_answer(extra)
                assert drain(extra, CUT_WITHIN)[1]
            assert_problem(answer, 503, "too_many_connections")
            assert answer[1]["retry-after"] == "1"
            for sock in established:  # still served, on the same connections
                sock.sendall(get())
                assert read_answer(sock)[0] == 200
            established.pop().close()
            deadline = time.monotonic() + CUT_WITHIN
            while True:  # the server sees the close at once; the slot is free again
                with connect(srv) as sock:
                    sock.sendall(get())
                    if read_answer(sock)[0] == 200:
                        break
                assert time.monotonic() < deadline, "the freed slot was never reused"
                time.sleep(0.1)
        finally:
            for sock in established:
                sock.close()
        assert cut_count(srv, "too_many_connections") >= 1
    finally:
        assert srv.stop() == 0


# --- pipelining ------------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(bounded: Server) -> None:
    """Fifty requests pipelined in one write are all answered, in order, on the connection."""
    with connect(bounded) as sock:
        sock.sendall(b"".join(get("/healthz", f"X-Request-ID: p-{i}") for i in range(50)))
        ids = [headers["x-request-id"] for _, headers, _ in read_answers(sock, 50)]
        sock.sendall(get())
        assert read_answer(sock)[0] == 200  # the connection is still in use
    assert ids == [f"p-{i}" for i in range(50)]


def test_pipelined_flood_is_bounded(bounded: Server) -> None:
    """100 000 pipelined requests from a client that does not read do not grow the server: it
    reads no further than a few requests ahead, and cuts the connection after the send
    timeout."""
    flood = get("/losses") * 100_000  # the catalogue: answers that fill the buffers quickly
    cuts = cut_count(bounded, "send_timeout")
    before = rss(bounded)
    with connect(bounded) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

        def send() -> None:
            with suppress(OSError):  # cut by the server, as expected
                sock.sendall(flood)

        sender = threading.Thread(target=send)
        sender.start()
        peak = before
        deadline = time.monotonic() + 30  # the answers fill the socket buffers, then 2 s pass
        while cut_count(bounded, "send_timeout") == cuts:
            assert time.monotonic() < deadline, "the connection was never cut"
            peak = max(peak, rss(bounded))
            time.sleep(0.2)
        data, ended = drain(sock, CUT_WITHIN)
        sender.join()
    assert peak - before < RSS_GROWTH
    assert ended
    assert 0 < data.count(b"HTTP/1.1 200") < 100_000


# --- slow readers ----------------------------------------------------------------------------


def big_answer_request(request_id: str) -> bytes:
    """A 10 MiB request whose answer is about 21 MB of JSON lists."""
    n = 500_000
    packed = {
        name: {"dtype": "float64", "shape": [n], "data": base64.b64encode(array.tobytes()).decode()}
        for name, array in (("predictions", np.linspace(0.1, 1.0, n)), ("targets", np.zeros(n)))
    }
    options: dict[str, Any] = {"reduction": "none", "per_sample": True, "gradient": True}
    body = orjson.dumps({**packed, **options, "hessian": True})
    head = [
        "POST /loss/mse HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"X-Request-ID: {request_id}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_slow_reader_is_cut_after_the_send_timeout(bounded: Server) -> None:
    """Answers nobody reads are dropped after the send timeout: the connections are cut, the
    server's memory comes back, and the requests are logged as 499."""
    ids = [f"slow-{i}-{time.monotonic_ns()}" for i in range(6)]
    requests = [big_answer_request(rid) for rid in ids]
    with connect(bounded) as sock:  # the baseline: after one such answer, read
        sock.sendall(big_answer_request("warm"))
        assert read_answer(sock)[0] == 200
    before = rss(bounded)
    socks = []
    for request in requests:
        sock = connect(bounded)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request)
        socks.append(sock)
    try:
        deadline = time.monotonic() + 60
        peak = before
        lines: list[dict[str, Any]] = []
        while len(lines) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.2)
            peak = max(peak, rss(bounded))
            records = [orjson.loads(line) for line in bounded.output().splitlines()]
            lines = [r for r in records if r.get("msg") == "request" and r["request_id"] in ids]
        assert {line["status"] for line in lines} == {499}, lines
        assert len(lines) == len(ids)
        for sock in socks:  # cut: what the kernel still held arrives, then the end
            data, ended = drain(sock, CUT_WITHIN)
            assert ended and len(data) < 21_000_000
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 10
    while rss(bounded) - before > 4 * RSS_GROWTH and time.monotonic() < deadline:
        time.sleep(0.2)
    assert peak - before > 60 << 20  # the answers were held: the test measured something
    assert rss(bounded) - before < 4 * RSS_GROWTH
