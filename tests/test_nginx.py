"""deploy/nginx's template (the one deploy/compose.yaml runs) with Debian's nginx in front of lossd
processes on 127.0.0.1: requests spread over every replica, answers byte-identical to a single
server's, the request id passed through, a replica killed under load loses no request, one given
SIGTERM drains and gets no new requests, one still warming its kernels is passed over; the
template's limits are lossd's and compose runs the same template."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from lossd_client._wire import binary_body, json_body

from service.settings import Settings
from tests.support.balancer import balancer, renderer
from tests.support.servers import (
    ROOT,
    Server,
    answered,
    cache_without,
    cold_losses,
    grown,
    start_server,
)

# lossd behind a balancer keeps idle connections longer than the balancer does (60 s)
REPLICA_ENV = {"LOSSD_KEEP_ALIVE_TIMEOUT": "75"}
COMPOSE = ROOT / "deploy" / "compose.yaml"
TEMPLATE = ROOT / "deploy" / "nginx" / "lossd.conf.template"
rng = np.random.default_rng(1616)


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[Server]]:
    """Three lossd replicas that every test may use and none stops."""
    started: list[Server] = []
    try:
        for _ in range(3):
            started.append(start_server(REPLICA_ENV))
        yield started
    finally:
        for srv in started:
            assert srv.stop() == 0


def _body(rows: int, binary: bool = False, **doc: Any) -> tuple[bytes, dict[str, str]]:
    arrays = {"predictions": rng.normal(size=rows), "targets": rng.normal(size=rows)}
    body = (binary_body if binary else json_body)({"gradient": True, **doc}, arrays)
    return b"".join(body.chunks(1 << 20)), body.headers


def _post(url: str, loss: str, body: bytes, headers: dict[str, str], **kw: Any) -> httpx.Response:
    return httpx.post(f"{url}/loss/{loss}", content=body, headers=headers, timeout=60, **kw)


def _kill(srv: Server) -> None:
    srv.process.kill()
    srv.process.wait(timeout=30)
    if srv.log is not None:
        srv.log.close()


# --- the template and compose --------------------------------------------------------------------


def _directive(name: str) -> str:
    found = re.findall(rf"^\s*{name}\s+([^;]+);", TEMPLATE.read_text(), re.M)
    assert len(found) == 1, (name, found)
    return str(found[0])


def _seconds(value: str) -> float:
    assert value.endswith("s"), value
    return float(value[:-1])


def test_the_templates_limits_are_lossds() -> None:
    """Body size, header size and the timeouts nginx applies to clients are lossd's defaults; it
    keeps idle upstream connections shorter than the replicas compose runs keep them."""
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert _directive("client_max_body_size") == f"{defaults['max_body_bytes'] >> 20}m"
    assert _directive("large_client_header_buffers") == f"4 {defaults['max_header_bytes'] >> 10}k"
    assert _seconds(_directive("client_body_timeout")) == defaults["body_timeout"]
    assert _seconds(_directive("send_timeout")) == defaults["send_timeout"]
    assert _seconds(_directive("client_header_timeout")) == defaults["header_timeout"]
    retried = _directive("proxy_next_upstream").split()
    assert retried == ["error", "timeout", "http_502", "http_503", "non_idempotent"]
    assert re.search(r"^\s*least_conn;", TEMPLATE.read_text(), re.M)
    idle = _seconds(_directive("keepalive_timeout"))
    for service in _compose()["services"].values():
        if "LOSSD_KEEP_ALIVE_TIMEOUT" in service.get("environment", {}):
            assert int(service["environment"]["LOSSD_KEEP_ALIVE_TIMEOUT"]) > idle
    assert int(REPLICA_ENV["LOSSD_KEEP_ALIVE_TIMEOUT"]) > idle


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def test_compose_runs_replicas_of_the_image_behind_the_same_template() -> None:
    """deploy/compose.yaml (docker compose or podman compose): lossd replicas built from the
    repository's Dockerfile, and the official nginx image rendering deploy/nginx's template
    with envsubst into what render.py gives the tests for those replicas."""
    services = _compose()["services"]
    lossd = sorted(name for name in services if name.startswith("lossd-"))
    assert len(lossd) >= 2 and set(services) == {*lossd, "nginx"}
    for name in lossd:
        service = services[name]
        assert service["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
        assert "ports" not in service  # reached through nginx only
    nginx = services["nginx"]
    assert nginx["image"].startswith("docker.io/library/nginx:")
    assert (
        "./nginx/lossd.conf.template:/etc/nginx/templates/default.conf.template:ro"
        in (nginx["volumes"])
    )
    assert sorted(nginx["depends_on"]) == lossd
    env = nginx["environment"]
    render = renderer()
    assert env["LOSSD_UPSTREAMS"].rstrip("\n") == render.upstreams([f"{n}:8000" for n in lossd])
    # the image's entrypoint: envsubst with the names of the variables that are set
    names = " ".join(f"${{{name}}}" for name in env)
    rendered = subprocess.run(
        ["envsubst", names],
        input=TEMPLATE.read_text(),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert rendered.replace(env["LOSSD_UPSTREAMS"], env["LOSSD_UPSTREAMS"].rstrip("\n")) == (
        render.render([f"{n}:8000" for n in lossd], env["NGINX_LISTEN"])
    )


# --- nginx in front of lossd ---------------------------------------------------------------------


@pytest.mark.loss("mse")
def test_requests_spread_over_every_replica_and_answers_are_byte_identical(
    replicas: list[Server],
) -> None:
    """30 requests through nginx: each replica answers some, 30 in all (each once); JSON and
    binary answers, a body over nginx's 1 MiB memory buffer included, are the bytes one
    server answers directly."""
    before = [answered(srv, "mse") for srv in replicas]
    body, headers = _body(1000)
    direct = _post(replicas[0].url, "mse", body, headers)
    with balancer([srv.url for srv in replicas]) as lb:
        answers = [_post(lb.url, "mse", body, headers) for _ in range(30)]
        assert {a.status_code for a in answers} == {200}
        assert {a.content for a in answers} == {direct.content}
        more = grown(replicas, "mse", before, 31)
        assert min(more) >= 1 and sum(more) == 31, more  # the direct one too
        for rows, binary in ((300_000, True), (50_000, False)):
            body, headers = _body(rows, binary, per_sample=True)
            direct = _post(replicas[1].url, "mse", body, headers)
            through = _post(lb.url, "mse", body, headers)
            assert (through.status_code, direct.status_code) == (200, 200)
            assert through.headers["content-type"] == direct.headers["content-type"]
            assert through.content == direct.content


@pytest.mark.loss("mse")
def test_the_request_id_is_passed_through(replicas: list[Server]) -> None:
    """The caller's X-Request-ID reaches lossd and comes back; without one, nginx's own id is
    lossd's and the access log's."""
    body, headers = _body(10)
    with balancer([srv.url for srv in replicas]) as lb:
        given = _post(lb.url, "mse", body, {**headers, "X-Request-ID": "trace-16-abc"})
        made = _post(lb.url, "mse", body, headers)
        log = "\n".join(lb.access_log())
    assert given.headers["x-request-id"] == "trace-16-abc"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert "rid=trace-16-abc " in log and f"rid={made.headers['x-request-id']} " in log


@pytest.mark.loss("mse")
def test_a_replica_killed_under_load_loses_no_request(replicas: list[Server]) -> None:
    """Four clients send requests through nginx to two replicas; one is SIGKILLed once it has
    answered some. Every request is answered 200, byte for byte the single server's answer,
    and logged once; those that met the dead replica were retried on the other."""
    steady = replicas[0]
    body, headers = _body(100_000, binary=True)
    expected = _post(steady.url, "mse", body, headers).content
    victim = start_server(REPLICA_ENV)
    killed = threading.Event()
    results: dict[str, tuple[int, bytes]] = {}
    failures: list[BaseException] = []

    def load(worker: int, lb_url: str) -> None:
        after = 0
        try:
            with httpx.Client(base_url=lb_url, timeout=60) as http:
                for i in range(200):
                    rid = f"load-{worker}-{i}"
                    answer = http.post(
                        "/loss/mse", content=body, headers={**headers, "X-Request-ID": rid}
                    )
                    results[rid] = (answer.status_code, answer.content)
                    after += killed.is_set()
                    if after >= 8:
                        break
        except BaseException as error:  # reported below
            failures.append(error)

    try:
        with balancer([victim.url, steady.url]) as lb:
            workers = [threading.Thread(target=load, args=(w, lb.url)) for w in range(4)]
            for worker in workers:
                worker.start()
            deadline = time.monotonic() + 30
            while answered(victim, "mse") < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            _kill(victim)
            killed.set()
            for worker in workers:
                worker.join(timeout=60)
            log = lb.access_log()
    finally:
        if victim.process.poll() is None:
            _kill(victim)
    assert not failures, failures
    assert len(results) >= 32
    assert {status for status, _ in results.values()} == {200}
    assert all(content == expected for _, content in results.values())
    ids = [m[1] for line in log if (m := re.search(r"rid=(load-\S+)", line))]
    assert sorted(ids) == sorted(results)  # each request answered once
    retried = [line for line in log if "rid=load-" in line and ", " in line.split("upstream=")[1]]
    assert retried, "no request met the dead replica"


def _trickle(srv: Server, body: bytes, headers: dict[str, str]) -> socket.socket:
    """A request to ``srv`` whose body has only half arrived: in flight until the rest is sent."""
    host, port = srv.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(
        f"POST /loss/mse HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode()
        + body[: len(body) // 2]
    )
    return sock


def _response(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(1 << 16):
        data += chunk
    return data


@pytest.mark.loss("mse")
def test_a_replica_given_sigterm_drains_and_gets_no_new_requests(replicas: list[Server]) -> None:
    """A replica with a request in flight (its body half sent) gets SIGTERM: it stops listening,
    every request sent through nginx meanwhile is answered by the other, then the one in flight
    is answered in full and the replica exits 0."""
    steady = replicas[1]
    victim = start_server(REPLICA_ENV)
    body, headers = _body(1000)
    try:
        with balancer([victim.url, steady.url]) as lb:
            sock = _trickle(victim, body, headers)
            time.sleep(0.5)  # the head read, the body awaited
            victim.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(
                        ("127.0.0.1", int(victim.url.rsplit(":", 1)[1])), 1
                    ).close()
                    time.sleep(0.05)
                except OSError:
                    break
            else:
                pytest.fail("the replica kept listening after SIGTERM")
            assert victim.process.poll() is None  # still draining
            before = answered(steady, "mse")
            answers = [_post(lb.url, "mse", body, headers) for _ in range(20)]
            assert {a.status_code for a in answers} == {200}
            assert grown([steady], "mse", [before], 20) == [20]
            sock.sendall(body[len(body) // 2 :])
            drained = _response(sock)
            sock.close()
            assert victim.process.wait(timeout=30) == 0
    finally:
        if victim.process.poll() is None:
            _kill(victim)
        elif victim.log is not None:
            victim.log.close()
    assert drained.startswith(b"HTTP/1.1 200 ")
    assert drained.split(b"\r\n\r\n", 1)[1] == answers[0].content


@pytest.mark.loss("tversky")
def test_a_replica_whose_cache_is_cold_is_passed_over_until_ready(replicas: list[Server]) -> None:
    """A replica whose cache lacks most losses' kernels answers 503 not_ready for tversky (warmed
    last) while it compiles them; nginx takes that 503 as a failure and retries on the warm replica, so no
    caller sees it, and the cold one answers none of them."""
    cold_ones = cold_losses()
    assert "tversky" in cold_ones[-2:]  # warmed last but for ctc (rank-3 batches only)
    warm = replicas[2]
    body = json.dumps(
        {
            "predictions": rng.uniform(size=1000).tolist(),
            "targets": rng.integers(0, 2, 1000).tolist(),
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    expected = _post(warm.url, "tversky", body, headers)
    assert expected.status_code == 200
    with tempfile.TemporaryDirectory(prefix="lossd-cold-") as tmp:
        cache = Path(tmp) / "numba"
        cache_without(cold_ones, cache)
        cold = start_server({**REPLICA_ENV, "NUMBA_CACHE_DIR": str(cache)}, wait_for="/healthz")
        try:
            assert _post(cold.url, "tversky", body, headers).status_code == 503
            with balancer([cold.url, warm.url]) as lb:
                answers = [_post(lb.url, "tversky", body, headers) for _ in range(12)]
                log = lb.access_log()
            assert {a.status_code for a in answers} == {200}
            assert {a.content for a in answers} == {expected.content}
            # tried through nginx (besides the direct probe), and passed over
            assert grown([cold], "tversky", [0], 2, status=503)[0] >= 2
            assert answered(cold, "tversky", 200) == 0
            assert any("upstream_status=503, 200" in line for line in log)
            assert httpx.get(f"{cold.url}/readyz", timeout=10).status_code == 503  # still cold
        finally:
            _kill(cold)
