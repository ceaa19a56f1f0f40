"""Observability against live servers: request ids, one log line per request, /metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.server import HttpProtocol
from service.settings import Settings
from tests.support.servers import Server, free_port, start_server

GENERATED_ID = re.compile(r"[0-9a-f]{32}")
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def srv() -> Iterator[Server]:
    """A server logging every request (JSON, the default format)."""
    server = start_server({"LOSSD_LOG_LEVEL": "info"})
    try:
        yield server
    finally:
        assert server.stop() == 0


def _packed(a: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": base64.b64encode(a).decode()}


def _records(srv: Server) -> list[dict[str, Any]]:
    """The complete lines the server logged so far, parsed (each must be a JSON object)."""
    *complete, _partial = srv.output().split("\n")
    return [json.loads(line) for line in complete]


def _request_lines(srv: Server, ids: list[str], timeout: float = 15.0) -> dict[str, list[Any]]:
    """The ``request`` lines of each id, waiting for them: a line is written after the response."""
    deadline = time.monotonic() + timeout
    while True:
        records = _records(srv)
        found = {
            rid: [r for r in records if r.get("msg") == "request" and r.get("request_id") == rid]
            for rid in ids
        }
        if all(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _scrape(url: str, **headers: str) -> Samples:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_request_id_is_echoed_when_given(srv: Server) -> None:
    """A sane X-Request-ID comes back unchanged on successes, problem+json errors and streams."""
    big, zeros = _packed(np.linspace(0.0, 1.0, 200_000)), _packed(np.zeros(200_000))
    cases = {  # id: (method, path, JSON body, expected status)
        "ok-1": ("POST", "/loss/mse", {"predictions": [1.0], "targets": [0.0]}, 200),
        "not-found-2": ("POST", "/loss/nope", {}, 404),
        "bad-3": ("POST", "/loss/mse", {"predictions": [1.0], "targets": [0.0, 1.0]}, 422),
        "health-4": ("GET", "/healthz", None, 200),
        # a response over 1 MiB is streamed (StreamingResponse): the header is still there
        "stream-5": ("POST", "/loss/mse", {"predictions": big, "targets": zeros}, 200),
        "x" * 128: ("GET", "/losses/huber", None, 200),  # the longest id honoured
    }
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        for rid, (method, path, body, status) in cases.items():
            response = http.request(method, path, json=body, headers={"X-Request-ID": rid})
            assert response.status_code == status
            assert response.headers["x-request-id"] == rid
            if status >= 400:
                assert response.headers["content-type"] == "application/problem+json"
            if rid == "stream-5":
                assert int(response.headers["content-length"]) > 1 << 20
        response = http.post("/loss/mse", content=b"x", headers={"X-Request-ID": "415", "content-type": "text/plain"})  # fmt: skip
        assert (response.status_code, response.headers["x-request-id"]) == (415, "415")


def test_request_id_is_generated_when_absent(srv: Server) -> None:
    """Without X-Request-ID every response gets a fresh 32-hex-digit id."""
    ids = [httpx.get(f"{srv.url}/healthz").headers["x-request-id"] for _ in range(5)]
    assert all(GENERATED_ID.fullmatch(rid) for rid in ids), ids
    assert len(set(ids)) == 5


@pytest.mark.parametrize(
    "insane",
    [b"x" * 129, "caf\u00e9".encode("latin-1"), b"tab\there"],
    ids=["129 characters", "not ASCII", "a control character"],
)
def test_insane_request_id_is_replaced(srv: Server, insane: bytes) -> None:
    """An X-Request-ID that is too long or not printable ASCII is replaced by a generated one."""
    response = httpx.get(f"{srv.url}/losses/mse", headers={"X-Request-ID": insane})
    assert response.status_code == 200
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


def test_one_json_line_per_request(srv: Server) -> None:
    """Each request logs exactly one JSON line with its id, method, path, status, loss, sizes."""
    quiet = "probe-0"
    httpx.get(f"{srv.url}/healthz", headers={"X-Request-ID": quiet})  # probes log at debug
    body = json.dumps({"predictions": [[0.5, 2.0], [1.0, -1.0]], "targets": [[0, 0], [1, 1]]})
    sent = {
        "line-1": ("POST", "/loss/Huber", body, 200),
        "line-2": ("POST", "/loss/mse", '{"predictions": [1, 2], "targets": [0]}', 422),
        "line-3": ("POST", "/loss/unknown-loss", body, 404),
        "line-4": ("GET", "/losses", None, 200),
    }
    for rid, (method, path, content, status) in sent.items():
        response = httpx.request(
            method,
            f"{srv.url}{path}",
            content=content,
            headers={"X-Request-ID": rid, "content-type": "application/json"},
        )
        assert response.status_code == status
    found = _request_lines(srv, list(sent))
    for rid, (method, path, content, status) in sent.items():
        assert len(found[rid]) == 1, (rid, found[rid])
        line = found[rid][0]
        assert line["method"] == method and line["path"] == path and line["status"] == status
        assert line["level"] == "info" and TS.fullmatch(line["ts"])
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["bytes_out"] > 0
        # bytes read: an unknown loss is a 404 before the body is read
        assert line.get("bytes_in", 0) == (len(content or "") if status != 404 else 0)
    assert found["line-1"][0]["loss"] == "huber"  # the canonical name, not the one sent
    assert found["line-1"][0]["encoding"] == "json"
    assert found["line-1"][0]["elements"] == 4
    assert found["line-2"][0]["loss"] == "mse" and "elements" not in found["line-2"][0]
    assert "loss" not in found["line-3"][0] and "loss" not in found["line-4"][0]
    assert _request_lines(srv, [quiet], timeout=0)[quiet] == []
    # every line the server wrote, uvicorn's start-up lines included, is one JSON object
    assert all(isinstance(r, dict) and TS.fullmatch(r["ts"]) for r in _records(srv))


def test_metrics_count_requests_elements_and_kernel_time(srv: Server) -> None:
    """The counters move by exactly the requests made (by loss, status, encoding), elements by
    the prediction elements sent, and the histograms count each request and kernel call."""
    before = _scrape(srv.url)
    rows = np.linspace(-1.0, 1.0, 30).reshape(10, 3)
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        for _ in range(3):
            assert http.post(
                "/loss/mse", json={"predictions": [1, 2], "targets": [0, 0]}
            ).is_success
        for _ in range(2):
            packed = {"predictions": _packed(rows), "targets": _packed(rows)}
            assert http.post("/loss/HuberLoss", json=packed).is_success
        assert http.post("/loss/mse", json={"predictions": [1], "targets": []}).status_code == 422
        assert http.post("/loss/no-such-loss", json={}).status_code == 404
        multi = {"losses": [{"name": "mse"}, {"name": "mae"}], "predictions": [[1, 2]], "targets": [[0, 0]]}  # fmt: skip
        assert http.post("/loss", json=multi).is_success
    after = _scrape(srv.url)
    requests = "lossd_requests_total"
    assert _delta(before, after, requests, loss="mse", status="200", encoding="json") == 3
    assert _delta(before, after, requests, loss="huber", status="200", encoding="packed") == 2
    assert _delta(before, after, requests, loss="mse", status="422", encoding="json") == 1
    assert _delta(before, after, requests, loss="-", status="404", encoding="-") == 1
    assert _delta(before, after, requests, loss="-", status="200", encoding="json") == 1
    elements = "lossd_elements_total"
    assert _delta(before, after, elements, loss="mse") == 3 * 2 + 2
    assert _delta(before, after, elements, loss="huber") == 2 * 30
    assert _delta(before, after, elements, loss="mae") == 2
    assert _delta(before, after, "lossd_kernel_seconds_count", loss="mse") == 4
    assert _delta(before, after, "lossd_kernel_seconds_count", loss="huber") == 2
    assert _delta(before, after, "lossd_kernel_seconds_sum", loss="huber") > 0
    buckets = _delta(before, after, "lossd_kernel_seconds_bucket", loss="huber", le="+Inf")
    assert buckets == 2
    duration = "lossd_request_duration_seconds_count"
    assert _delta(before, after, duration, route="/loss/{name}") == 7  # unknown names included
    assert _delta(before, after, duration, route="/loss") == 1
    assert _delta(before, after, duration, route="/metrics") == 1  # the first scrape
    # label values are canonical names or "-": never the raw name a client sent
    assert not any(
        "no-such-loss" in str(labels) or "HuberLoss" in str(labels) for _, labels in after
    )


def test_metrics_speak_openmetrics_when_asked(srv: Server) -> None:
    """A scraper asking for OpenMetrics gets it; the plain text format is the default."""
    accept = "application/openmetrics-text; version=1.0.0"
    response = httpx.get(f"{srv.url}/metrics", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_metrics_route_is_documented_as_text() -> None:
    """OpenAPI lists GET /metrics as operation ``metrics`` answering text/plain."""
    operation = create_app(Settings()).openapi()["paths"]["/metrics"]["get"]
    assert operation["operationId"] == "metrics"
    assert "text/plain" in operation["responses"]["200"]["content"]


def test_a_500_carries_and_logs_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected exception answers problem+json 500 with the request id, and the logged
    traceback carries that id. (In-process: a live server has no route that fails on purpose.)"""
    app = create_app(Settings())

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.get("/boom", headers={"X-Request-ID": "bug-7"})

    response = asyncio.run(call())
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "bug-7"
    assert "Traceback" not in response.text
    [error] = [r for r in caplog.records if r.getMessage() == "unexpected error"]
    assert error.fields == {"request_id": "bug-7"}  # type: ignore[attr-defined]
    assert error.exc_info is not None
    [line] = [r for r in caplog.records if r.getMessage() == "request"]
    assert line.fields["status"] == 500 and line.fields["request_id"] == "bug-7"  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def text_srv() -> Iterator[Server]:
    """A server logging every request as text (LOSSD_LOG_FORMAT=text)."""
    server = start_server({"LOSSD_LOG_LEVEL": "info", "LOSSD_LOG_FORMAT": "text"})
    try:
        yield server
    finally:
        assert server.stop() == 0


def _text_lines(server: Server, rid: str) -> list[str]:
    """The text lines that mention the request id, waiting for the first."""
    deadline = time.monotonic() + 15
    while f"request_id={rid}" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    return [line for line in server.output().splitlines() if f"request_id={rid}" in line]


def test_text_log_format(text_srv: Server) -> None:
    """LOSSD_LOG_FORMAT=text writes readable, non-JSON lines carrying the same fields."""
    httpx.get(f"{text_srv.url}/losses/mse", headers={"X-Request-ID": "text-1"})
    lines = _text_lines(text_srv, "text-1")
    assert len(lines) == 1, lines
    assert re.match(r"\S+Z INFO +\[\d+\] lossd.request: request request_id=text-1 ", lines[0])
    assert "method=GET path=/losses/mse status=200" in lines[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])


def test_two_workers_aggregate_their_metrics() -> None:
    """With two workers /metrics sums both: whichever worker answers the scrape, the counters
    equal the requests sent; the multiprocess directory exists while serving and goes after."""
    server = start_server({"LOSSD_LOG_LEVEL": "debug", "LOSSD_WORKERS": "2"})
    try:
        sent, serving = 0, set()
        deadline = time.monotonic() + 60
        while (len(serving) < 2 or sent < 20) and time.monotonic() < deadline:
            for _ in range(10):  # each on a new connection, which either worker may accept
                response = httpx.post(
                    f"{server.url}/loss/mse",
                    json={"predictions": [1.0, 2.0], "targets": [0.0, 0.0]},
                    headers={"X-Request-ID": f"w-{sent}-{time.monotonic()}"},
                )
                # the second worker may still be warming up: a 503 is not counted as 200
                assert response.status_code in (200, 503)
                sent += response.status_code == 200
            _request_lines(server, [response.headers["x-request-id"]])  # the last line is out
            serving = {r["pid"] for r in _records(server) if r.get("path") == "/loss/mse"}
        assert len(serving) == 2, f"one worker served all {sent} requests"

        scraped_by, totals = set(), set()
        deadline = time.monotonic() + 60
        while len(scraped_by) < 2 and time.monotonic() < deadline:
            rid = f"scrape-{len(totals)}-{time.monotonic()}"
            samples = _scrape(server.url, **{"X-Request-ID": rid})
            key = ("lossd_requests_total", (("encoding", "json"), ("loss", "mse"), ("status", "200")))  # fmt: skip
            totals.add((samples[key], samples[("lossd_elements_total", (("loss", "mse"),))]))
            scraped_by |= {r["pid"] for r in _request_lines(server, [rid])[rid]}
        assert scraped_by == serving  # both workers answered a scrape ...
        assert totals == {(sent, 2 * sent)}  # ... and every scrape gave the sum over both

        environ = Path(f"/proc/{min(serving)}/environ").read_bytes().split(b"\0")
        [directory] = [v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]  # fmt: skip
        assert any(name.endswith(".db") for name in os.listdir(directory))
    finally:
        assert server.stop() == 0
    assert not os.path.exists(directory)


def test_v2_inference_is_counted_with_its_encoding(srv: Server) -> None:
    """An Open Inference Protocol request counts under its loss with encoding ``v2-json``."""
    tensors = [
        {"name": name, "shape": [2], "datatype": "FP64", "data": data}
        for name, data in (("predictions", [1.0, 2.0]), ("targets", [0.0, 0.0]))
    ]
    before = _scrape(srv.url)
    response = httpx.post(f"{srv.url}/v2/models/mse/infer", json={"inputs": tensors})
    after = _scrape(srv.url)
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]
    labels = {"loss": "mse", "status": "200", "encoding": "v2-json"}
    assert _delta(before, after, "lossd_requests_total", **labels) == 1
    assert _delta(before, after, "lossd_elements_total", loss="mse") == 2
    duration = "lossd_request_duration_seconds_count"
    assert _delta(before, after, duration, route="/v2/models/{name}/infer") == 1


def test_text_log_escapes_control_characters(text_srv: Server) -> None:
    """A %0A or an escape sequence in the path cannot forge a text log line: control characters
    are escaped and the request stays on one line."""
    path = "/x%0A2099-01-01T00:00:00.000Z%20INFO%20forged%1B[31m%E2%80%A8"
    httpx.get(f"{text_srv.url}{path}", headers={"X-Request-ID": "text-2"})
    [line] = _text_lines(text_srv, "text-2")
    assert r'path="/x\n2099-01-01T00:00:00.000Z INFO forged\u001b[31m\u2028"' in line
    assert not any(line.startswith("2099") for line in text_srv.output().splitlines())


def test_a_client_that_hangs_up_is_logged_and_counted_as_499(srv: Server) -> None:
    """A client that leaves before its answer is out is logged and counted as 499."""
    n = 1_000_000
    arrays = {
        name: {"dtype": "float64", "shape": [n], "data": base64.b64encode(a.tobytes()).decode()}
        for name, a in (("predictions", np.linspace(0.1, 1.0, n)), ("targets", np.zeros(n)))
    }
    body = orjson.dumps({**arrays, "reduction": "none", "gradient": True, "hessian": True})
    head = (
        "POST /loss/mse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-ID: gone-1\r\n\r\n"
    )
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    before = _scrape(srv.url)
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + body)
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")  # the first of some 40 MB; gone
    [line] = _request_lines(srv, ["gone-1"])["gone-1"]
    assert line["status"] == 499
    after = _scrape(srv.url)
    labels = {"loss": "mse", "status": "499", "encoding": "packed"}
    assert _delta(before, after, "lossd_requests_total", **labels) == 1


def test_a_500_is_logged_once_with_its_request_id(caplog: pytest.LogCaptureFixture) -> None:
    """Served by uvicorn with lossd's protocol, an unexpected exception makes exactly one log
    record with a traceback: lossd's, with the request id (uvicorn's own is dropped)."""
    app = create_app(Settings())

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=HttpProtocol, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        response = httpx.get(f"http://127.0.0.1:{port}/boom", headers={"X-Request-ID": "bug-8"})
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "bug-8"
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.getMessage() == "unexpected error"
    assert record.fields == {"request_id": "bug-8"}  # type: ignore[attr-defined]
