"""The limits of SPEC section 6 against live servers: body size while it streams, body-read
time, the memory budget per request and the compute queue.

Uploads and slow clients are raw sockets, so the test controls every byte and its timing.
The per-array element limit and the small-body 413s are in tests/test_bad_inputs.py.
"""

from __future__ import annotations

import base64
import re
import select
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.support.problems import assert_problem
from tests.support.references import multiclass, one_hot, regression
from tests.support.servers import Server, http_client, served

MAX_BODY = 256 * 1024  # LOSSD_MAX_BODY_BYTES of the limits server
BODY_TIMEOUT = 1.0  # LOSSD_BODY_TIMEOUT of the limits server, seconds
BUDGET = 1 << 20  # LOSSD_MAX_REQUEST_BYTES of the limits server
EPSILON = 1 << 20  # what may be in flight beyond the limit when the refusal arrives
RSS_GROWTH = 8 << 20  # "without buffering": the server grows by less than this
TWO_GIB = 2 << 30
CHUNK = 8192
JSON = "application/json"


@pytest.fixture(scope="module")
def limits_server() -> Iterator[Server]:
    """A server with a 256 KiB body limit, a 1 s body timeout and a 1 MiB memory budget."""
    env = {
        "LOSSD_MAX_BODY_BYTES": str(MAX_BODY),
        "LOSSD_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "LOSSD_MAX_REQUEST_BYTES": str(BUDGET),
    }
    with served(env) as srv:
        yield srv


@pytest.fixture(scope="module")
def limited(limits_server: Server) -> Iterator[httpx.Client]:
    with http_client(limits_server) as http:
        yield http


def packed(values: Any, kind: str = "float64") -> dict[str, Any]:
    array = np.ascontiguousarray(values, dtype=np.dtype(kind).newbyteorder("<"))
    data = base64.b64encode(array.tobytes()).decode("ascii")
    return {"dtype": kind, "shape": list(array.shape), "data": data}


def declared(shape: list[int], kind: str = "float64") -> dict[str, Any]:
    """A packed array that declares ``shape`` and holds no data at all."""
    return {"dtype": kind, "shape": shape, "data": ""}


def rss(srv: Server) -> int:
    """The server process's resident memory in bytes (/proc/<pid>/status VmRSS)."""
    status = Path(f"/proc/{srv.process.pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match
    return int(match.group(1)) * 1024


# --- raw HTTP --------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes sent before the answer arrived
    seconds: float  # from the end of the request head to the answer
    closed: bool  # the server closed the connection after the answer


def connect(srv: Server) -> socket.socket:
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def head(path: str, *fields: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {JSON}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def stream_until_answered(
    srv: Server, request_head: bytes, piece: bytes, pause: float, give_up: int
) -> Answer:
    """Send the head, then ``piece`` again and again (``pause`` s apart) until the server
    answers; read the answer and whether the connection then closes."""
    with connect(srv) as sock:
        sock.sendall(request_head)
        start = time.monotonic()
        sent = 0
        while not select.select([sock], [], [], pause)[0]:
            assert sent < give_up, f"no answer after {sent} body bytes"
            try:
                sock.sendall(piece)
            except OSError:  # the server closed while we wrote: its answer is in the buffer
                break
            sent += len(piece)
        seconds = time.monotonic() - start
        status, headers, body = read_answer(sock)
        return Answer(status, headers, body, sent, seconds, closed(sock))


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    raw_head, body = data.split(b"\r\n\r\n", 1)
    lines = raw_head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the answer"
        body += chunk
    return status, headers, body


def closed(sock: socket.socket, within: float = 3.0) -> bool:
    """Whether the server ends the connection (EOF or reset) within ``within`` seconds: at once,
    well before uvicorn's 5 s keep-alive timeout would."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def assert_problem_bytes(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = orjson.loads(answer.body)
    assert (doc["status"], doc["code"]) == (status, code)
    return doc


def still_serves(http: httpx.Client) -> None:
    """The server is healthy and computes right after the abuse."""
    assert http.get("/healthz").status_code == 200
    response = http.post("/loss/mse", json={"predictions": [1.0, 3.0], "targets": [1.0, 1.0]})
    assert response.status_code == 200, response.text
    assert response.json()["value"] == 2.0  # (0 + 4) / 2


# --- the body limit while the body streams ---------------------------------------------------


@pytest.mark.parametrize("which", ["limits_server", "server"])
def test_a_declared_2gib_upload_is_refused_before_its_body(
    which: str, request: pytest.FixtureRequest
) -> None:
    """Content-Length 2 GiB, then zeros: 413 at once (on the default 256 MiB server too), the
    connection is closed, and the server did not grow."""
    srv: Server = request.getfixturevalue(which)
    before = rss(srv)
    answer = stream_until_answered(
        srv, head("/loss/mse", f"Content-Length: {TWO_GIB}"), b"0" * CHUNK, 0.02, EPSILON
    )
    assert_problem_bytes(answer, 413, "payload_too_large")
    assert answer.sent <= EPSILON
    assert answer.closed
    assert answer.headers["connection"] == "close"
    assert rss(srv) - before < RSS_GROWTH
    with http_client(srv) as http:
        still_serves(http)


def test_a_chunked_upload_is_refused_once_past_the_limit(limits_server: Server) -> None:
    """A chunked body without Content-Length is read up to the limit only: the 413 arrives
    after at most the limit plus what is in flight, the connection is closed and the server
    did not buffer the stream."""
    before = rss(limits_server)
    piece = b"%x\r\n%s\r\n" % (CHUNK, b"0" * CHUNK)
    answer = stream_until_answered(
        limits_server,
        head("/loss/mse", "Transfer-Encoding: chunked"),
        piece,
        0.02,
        MAX_BODY + EPSILON,
    )
    assert_problem_bytes(answer, 413, "payload_too_large")
    assert MAX_BODY < answer.sent <= MAX_BODY + EPSILON
    assert answer.closed
    assert answer.headers["connection"] == "close"
    assert rss(limits_server) - before < RSS_GROWTH


# --- the body-read timeout -------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content_length", "chunked"])
def test_a_trickling_client_is_cut_off(
    limits_server: Server, limited: httpx.Client, framing: str
) -> None:
    """A body that comes a byte every 0.2 s is cut off after LOSSD_BODY_TIMEOUT with a 408
    problem and a closed connection; the server keeps serving."""
    if framing == "content_length":
        request_head, piece = head("/loss/mse", "Content-Length: 1000"), b" "
    else:
        request_head, piece = head("/loss/mse", "Transfer-Encoding: chunked"), b"1\r\n \r\n"
    answer = stream_until_answered(limits_server, request_head, piece, 0.2, 100 * len(piece))
    doc = assert_problem_bytes(answer, 408, "request_timeout")
    assert "LOSSD_BODY_TIMEOUT" in doc["detail"]
    assert BODY_TIMEOUT * 0.9 <= answer.seconds < BODY_TIMEOUT + 5.0
    assert 2 <= answer.sent < 1000  # bytes kept coming, but too slowly
    assert answer.closed
    assert answer.headers["connection"] == "close"
    still_serves(limited)


def test_a_silent_client_is_cut_off(limits_server: Server, limited: httpx.Client) -> None:
    """A client that sends the head and then nothing gets the 408 too."""
    with connect(limits_server) as sock:
        sock.sendall(head("/loss/mse", "Content-Length: 50"))
        start = time.monotonic()
        status, headers, body = read_answer(sock)
        seconds = time.monotonic() - start
        assert status == 408 and orjson.loads(body)["code"] == "request_timeout"
        assert headers["content-type"] == "application/problem+json"
        assert BODY_TIMEOUT * 0.9 <= seconds < BODY_TIMEOUT + 5.0
        assert headers["connection"] == "close"
        assert closed(sock)
    still_serves(limited)


# --- the memory budget -------------------------------------------------------------------------


def needed_bytes(detail: str) -> int:
    match = re.search(r"needs about (\d+) bytes", detail)
    assert match, detail
    return int(match.group(1))


def assert_over_budget(response: httpx.Response) -> int:
    """A 413 memory_budget whose detail states the bytes needed and those allowed."""
    doc = assert_problem(response, 413, "memory_budget")
    needed = needed_bytes(doc["detail"])
    assert needed > BUDGET
    assert str(BUDGET) in doc["detail"] and "LOSSD_MAX_REQUEST_BYTES" in doc["detail"]
    return needed


def test_the_budget_is_checked_on_declared_shapes_before_decoding(limited: httpx.Client) -> None:
    """Packed arrays that declare 100 000 elements and hold no data are refused for memory
    (413 memory_budget), not for their missing data: nothing was decoded or allocated."""
    body = {"predictions": declared([100_000]), "targets": declared([100_000])}
    needed = assert_over_budget(limited.post("/loss/mse", json=body))
    # at least the two float64 inputs and their per-sample losses
    assert needed >= 3 * 100_000 * 8


def test_a_request_within_the_budget_is_served(limited: httpx.Client) -> None:
    """The same server computes a request that fits: 2000 samples with a gradient."""
    pred = np.linspace(-1.0, 1.0, 2000)
    body = {"predictions": packed(pred), "targets": packed(np.zeros(2000)), "gradient": True}
    response = limited.post("/loss/mse", json=body)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["value"] == pytest.approx(np.mean(pred**2), rel=1e-12)
    np.testing.assert_allclose(doc["gradient"], 2 * pred / pred.size, rtol=1e-12)


def test_the_outputs_asked_for_count(limited: httpx.Client) -> None:
    """10 000 samples fit with per-sample losses only; with gradient and Hessian as JSON lists
    as well they do not."""
    data = {"predictions": packed(np.full(10_000, 0.5)), "targets": packed(np.zeros(10_000))}
    small = limited.post("/loss/mse", json=data)
    assert small.status_code == 200, small.text
    assert small.json()["value"] == 0.25
    assert_over_budget(limited.post("/loss/mse", json={**data, "gradient": True, "hessian": True}))


def test_the_losses_of_one_request_add_up(limited: httpx.Client) -> None:
    """POST /loss sums the outputs of its losses: one loss on 4000 samples fits, twelve do
    not, and the estimate grows with their number."""
    data = {"predictions": packed(np.full(4000, 0.5)), "targets": packed(np.zeros(4000))}
    one = limited.post("/loss", json={**data, "losses": [{"name": "mse"}]})
    assert one.status_code == 200, one.text
    assert one.json()["results"][0]["value"] == 0.25
    needed = [
        assert_over_budget(limited.post("/loss", json={**data, "losses": [{"name": "mse"}] * k}))
        for k in (12, 24)
    ]
    assert needed[1] > needed[0]
    # each loss has at least its per-sample losses: 4000 float64 values and their JSON text
    assert needed[1] - needed[0] >= 12 * 4000 * (8 + 1)


def test_class_index_targets_count_as_indices_not_rows(limited: httpx.Client) -> None:
    """Class-index targets (N,) reach the kernels as (N,) int64 indices, never as one-hot (N, C)
    rows, and the budget counts them so (with the loss's own masks and scratch,
    ``working_bytes``): 1000 x 40 float32 logits with indices fit, where their one-hot rows did
    not; and the same predictions declared with (N, C) rows need at least those rows twice
    (sent and their compute copy) more than with indices."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1000, 40)).astype(np.float32)
    classes = rng.integers(0, 40, size=1000)
    body = {
        "predictions": packed(logits, "float32"),
        "targets": packed(classes, "int64"),
        "params": {"from_logits": True},
    }
    response = limited.post("/loss/cross_entropy", json=body)
    assert response.status_code == 200, response.text
    rows = one_hot(classes, 40)
    expected = multiclass.cross_entropy(logits.astype(np.float64), rows, from_logits=True).mean()
    assert response.json()["value"] == pytest.approx(expected, rel=1e-12)
    wide = {"predictions": declared([1000, 200], "float32"), "params": {"from_logits": True}}
    as_index = {**wide, "targets": declared([1000], "int64")}
    as_rows = {**wide, "targets": declared([1000, 200], "float32")}
    index_needs = assert_over_budget(limited.post("/loss/cross_entropy", json=as_index))
    rows_need = assert_over_budget(limited.post("/loss/cross_entropy", json=as_rows))
    assert index_needs >= 1000 * 200 * 4  # the float32 predictions alone
    assert rows_need - index_needs >= 2 * 1000 * 200 * 4 - 2 * 1000 * 8


@pytest.mark.parametrize(
    ("shape", "status", "code"),
    [
        ([2**62, 2**62], 413, "too_many_elements"),
        ([2**63 - 1], 413, "too_many_elements"),
        ([2**62, 1], 413, "too_many_elements"),
        ([2**62, 0], 413, "memory_budget"),
        ([2**64, 2], 422, "invalid_array"),
        ([1, -(2**62)], 422, "invalid_array"),
    ],
    ids=["2**62_x_2**62", "2**63-1", "2**62_x_1", "2**62_empty_rows", "2**64", "negative"],
)
def test_shapes_past_int64_are_refused_cleanly(
    limited: httpx.Client, shape: list[int], status: int, code: str
) -> None:
    """A declared shape whose size overflows int64 (or is no int64 at all) is a clean 413 or
    422 problem, never an exception."""
    body = {"predictions": declared(shape), "targets": declared(shape)}
    assert_problem(limited.post("/loss/mse", json=body), status, code)
    still_serves(limited)


# --- the compute queue -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def queue_server() -> Iterator[Server]:
    """A server with one compute slot: LOSSD_QUEUE_DEPTH=1, LOSSD_COMPUTE_THREADS=1."""
    with served({"LOSSD_QUEUE_DEPTH": "1", "LOSSD_COMPUTE_THREADS": "1"}) as srv:
        yield srv


def test_a_full_queue_answers_503_and_the_rest_are_right(queue_server: Server) -> None:
    """Twelve concurrent heavy requests (64 losses each) on a one-slot queue: the others get
    503 overloaded with Retry-After at once, every admitted one the right answer, nothing else;
    the server is healthy after and serves the next request right."""
    rng = np.random.default_rng(1)
    pred, targ = rng.normal(size=(50_000, 4)), rng.normal(size=(50_000, 4))
    losses = [{"name": "log_cosh"}, {"name": "huber"}] * 32  # the most POST /loss takes
    doc = {"predictions": packed(pred), "targets": packed(targ), "losses": losses}
    body = orjson.dumps({**doc, "per_sample": False})
    expected = {
        "log_cosh": regression.log_cosh(pred, targ).mean(),
        "huber": regression.huber(pred, targ).mean(),
    }

    def assert_right(response: httpx.Response) -> None:
        assert response.status_code == 200, response.text[:300]
        results = response.json()["results"]
        assert [r["loss"] for r in results] == [entry["name"] for entry in losses]
        for result in results:
            assert result["value"] == pytest.approx(expected[result["loss"]], rel=1e-9)

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=queue_server.url, timeout=120) as http:
            return http.post("/loss", content=body, headers={"content-type": JSON})

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(post, range(12)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert_problem(response, 503, "overloaded")
            assert response.headers["retry-after"] == "1"
        else:
            assert_right(response)
    with http_client(queue_server) as http:
        still_serves(http)
        assert_right(http.post("/loss", content=body, headers={"content-type": JSON}))
