"""API keys, CORS, the spec's security schemes and error bodies that reveal nothing (SPEC 5, 6).

A server with two API keys and one CORS origin is started for this module; the session server
(no keys, no origins) shows the defaults.
"""

from __future__ import annotations

import hmac
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from service import security
from tests.support.problems import BAD_REQUESTS
from tests.support.servers import ROOT, Server, http_client, served

KEYS = ("key-one", "a-second-key-of-another-length")
ORIGIN = "https://app.example"
OTHER_ORIGIN = "https://evil.example"
CHALLENGE = 'Bearer realm="lossd"'
GOOD = {"predictions": [0.5, 2.0], "targets": [0.0, 0.0]}  # mse: (0.25 + 4) / 2 = 2.125
HEALTH = ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready")
# Routes that need a key; every one is answered by lossd (routes of SPEC section 1, a static
# asset of /docs, a path that is no route, and /v2 routes).
SECURED = [
    ("GET", "/losses"),
    ("GET", "/losses/mse"),
    ("POST", "/loss/mse"),
    ("POST", "/loss"),
    ("GET", "/metrics"),
    ("GET", "/docs"),
    ("GET", "/docs/static/swagger-ui.css"),
    ("GET", "/openapi.json"),
    ("GET", "/no/such/route"),
    ("OPTIONS", "/loss/mse"),
    ("GET", "/v2"),
    ("GET", "/v2/models/mse"),
    ("GET", "/v2/models/mse/ready"),
    ("POST", "/v2/models/mse/infer"),
]
# Strings that would show a traceback or where the code lives.
LEAKS = ("Traceback", "/work/", str(ROOT), "site-packages", '.py"', 'File "')


@pytest.fixture(scope="module")
def secured() -> Iterator[Server]:
    """A server with two API keys and one allowed CORS origin."""
    env = {
        "LOSSD_API_KEYS": orjson.dumps(list(KEYS)).decode(),
        "LOSSD_CORS_ORIGINS": orjson.dumps([ORIGIN]).decode(),
    }
    with served(env) as srv:
        yield srv


@pytest.fixture(scope="module")
def guarded(secured: Server) -> Iterator[httpx.Client]:
    """A client of the secured server that sends no key unless a test adds one."""
    with http_client(secured) as http:
        yield http


def assert_unauthorized(response: httpx.Response, path: str) -> None:
    """A 401 with the challenge, in the route family's error shape."""
    assert response.status_code == 401, (path, response.status_code, response.text[:300])
    assert response.headers["www-authenticate"] == CHALLENGE
    if path.startswith("/v2"):
        assert response.headers["content-type"] == "application/json"
        doc = response.json()
        assert set(doc) == {"error"} and "API key" in doc["error"]
    else:
        assert response.headers["content-type"] == "application/problem+json"
        doc = response.json()
        assert (doc["status"], doc["code"], doc["title"]) == (401, "unauthorized", "Unauthorized")


def send(http: httpx.Client, method: str, path: str, **headers: str) -> httpx.Response:
    content = orjson.dumps(GOOD) if method == "POST" else None
    return http.request(
        method, path, content=content, headers={"content-type": "application/json", **headers}
    )


@pytest.mark.parametrize(("method", "path"), SECURED, ids=[f"{m} {p}" for m, p in SECURED])
def test_every_route_but_health_needs_a_key(guarded: httpx.Client, method: str, path: str) -> None:
    """Without a key, or with a wrong one, every route but the health routes is a 401."""
    assert_unauthorized(send(guarded, method, path), path)
    assert_unauthorized(send(guarded, method, path, authorization="Bearer wrong"), path)
    assert_unauthorized(send(guarded, method, path, **{"x-api-key": "wrong"}), path)


@pytest.mark.parametrize(("method", "path"), SECURED, ids=[f"{m} {p}" for m, p in SECURED])
def test_a_key_opens_every_route(
    guarded: httpx.Client, client: httpx.Client, method: str, path: str
) -> None:
    """With a key, a route answers exactly as on a server without keys."""
    keyed = send(guarded, method, path, authorization=f"Bearer {KEYS[0]}")
    open_ = send(client, method, path)
    assert keyed.status_code == open_.status_code != 401, path
    if path.startswith(("/loss", "/v2/models/mse")) and keyed.status_code == 200:
        assert keyed.json() == open_.json()


@pytest.mark.parametrize("path", HEALTH)
def test_health_routes_need_no_key(guarded: httpx.Client, client: httpx.Client, path: str) -> None:
    """Probes reach the health routes without a key: the answer is the keyless server's."""
    response = guarded.get(path)
    assert response.status_code == client.get(path).status_code
    assert response.status_code != 401 and "www-authenticate" not in response.headers
    if path in ("/healthz", "/readyz"):
        assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": f"Bearer {KEYS[0]}"},
        {"authorization": f"Bearer {KEYS[1]}"},
        {"authorization": f"bearer   {KEYS[1]}"},  # the scheme is case-insensitive (RFC 9110)
        {"x-api-key": KEYS[0]},
        {"x-api-key": KEYS[1]},
        {"authorization": "Bearer wrong", "x-api-key": KEYS[0]},
    ],
    ids=["bearer_first", "bearer_second", "bearer_lowercase", "header_first", "header_second",
         "wrong_bearer_right_header"],
)  # fmt: skip
def test_each_key_in_either_header_is_accepted(
    guarded: httpx.Client, headers: dict[str, str]
) -> None:
    """Either header with any configured key evaluates the loss."""
    response = guarded.post("/loss/mse", json=GOOD, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["value"] == 2.125


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": f"Bearer {KEYS[0][:-1]}"},
        {"authorization": f"Bearer {KEYS[0]}x"},
        {"authorization": f"Bearer {KEYS[0].upper()}"},
        {"authorization": f"Bearer {KEYS[0]}{KEYS[1]}"},
        {"authorization": f"Basic {KEYS[0]}"},
        {"authorization": KEYS[0]},
        {"authorization": "Bearer"},
        {"x-api-key": ""},
        {"x-api-key": f"Bearer {KEYS[0]}"},
        {"x-api-keys": KEYS[0]},
    ],
    ids=["prefix", "suffix", "upper_case", "two_keys_joined", "basic_scheme", "no_scheme",
         "empty_bearer", "empty_header", "scheme_in_header", "misnamed_header"],
)  # fmt: skip
def test_near_misses_are_refused(guarded: httpx.Client, headers: dict[str, str]) -> None:
    """Anything but an exact key in one of the two headers is a 401."""
    assert_unauthorized(guarded.post("/loss/mse", json=GOOD, headers=headers), "/loss/mse")


def test_a_key_in_the_query_string_is_refused(guarded: httpx.Client) -> None:
    """Keys go in headers only: a query parameter (which ends up in logs) does not count."""
    response = guarded.post(f"/loss/mse?api_key={KEYS[0]}&key={KEYS[0]}", json=GOOD)
    assert_unauthorized(response, "/loss/mse")


def test_a_refused_upload_closes_its_connection(secured: Server) -> None:
    """A 401 to a request with a body ends the connection: the body is never read."""
    host, port = secured.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /loss/mse HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        head = sock.recv(65536)
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 401 ")
        assert b"connection: close" in head.lower()
        rest = b""
        sock.settimeout(3.0)  # at once: uvicorn's keep-alive timeout would take 5 s
        while chunk := sock.recv(65536):
            rest += chunk  # the problem document, then the server closes
        assert b'"unauthorized"' in head + rest


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each offered key is compared with every configured key by hmac.compare_digest on
    equal-length digests: no early exit that would tell which key (or how much of it) matched."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", counting)
    keys = ["k1", "a much longer key", "k3"]
    check = security.KeyRing(keys)
    for offered, known in (([b"k1"], True), ([b"k3"], True), ([b"k"], False), ([b""], False)):
        calls.clear()
        assert check._known(offered) is known
        assert len(calls) == len(keys)
        assert len({n for pair in calls for n in pair}) == 1  # one length: the digest's


# --- CORS ----------------------------------------------------------------------------------


def test_preflight_from_an_allowed_origin_needs_no_key(guarded: httpx.Client) -> None:
    """A preflight from a configured origin is answered 200 without a key, allowing the key
    headers, POST and the binary-extension header."""
    response = guarded.options(
        "/loss/mse",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-api-key, "
            "x-request-id, inference-header-content-length",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "x-api-key", "content-type", "x-request-id",
            "inference-header-content-length"} <= allowed  # fmt: skip
    assert "POST" in response.headers["access-control-allow-methods"]


def test_an_allowed_origin_gets_cors_headers(guarded: httpx.Client) -> None:
    """A request from a configured origin gets its origin back and the exposed headers, on a
    success and on a 401 alike (so the page can read either)."""
    ok = guarded.post("/loss/mse", json=GOOD, headers={"origin": ORIGIN, "x-api-key": KEYS[0]})
    refused = guarded.post("/loss/mse", json=GOOD, headers={"origin": ORIGIN})
    assert (ok.status_code, refused.status_code) == (200, 401)
    for response in (ok, refused):
        assert response.headers["access-control-allow-origin"] == ORIGIN
        exposed = {
            h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
        }
        assert {"x-request-id", "retry-after"} <= exposed
        assert "origin" in response.headers["vary"].lower()


def test_other_origins_get_no_cors_headers(guarded: httpx.Client, client: httpx.Client) -> None:
    """Another origin (or any origin, with no origins configured) gets no Access-Control-*
    header; its preflight is a 400 problem+json."""
    preflight = {"origin": OTHER_ORIGIN, "access-control-request-method": "POST"}
    responses = {
        "preflight": guarded.options("/loss/mse", headers=preflight),
        "request": guarded.post(
            "/loss/mse", json=GOOD, headers={"origin": OTHER_ORIGIN, "x-api-key": KEYS[0]}
        ),
        "request_without_key": guarded.post(
            "/loss/mse", json=GOOD, headers={"origin": OTHER_ORIGIN}
        ),
        "open_server_request": client.post("/loss/mse", json=GOOD, headers={"origin": ORIGIN}),
        "open_server_preflight": client.options(
            "/loss/mse", headers={**preflight, "origin": ORIGIN}
        ),
    }
    for name, response in responses.items():
        cors = [h for h in response.headers if h.lower().startswith("access-control-")]
        assert cors == [], (name, cors)
    assert responses["request"].status_code == 200
    assert responses["open_server_request"].status_code == 200
    refused = responses["preflight"]
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "cors_rejected"
    assert "origin" in refused.json()["detail"]


# --- the spec ------------------------------------------------------------------------------


def _requirements(spec: dict[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    return {
        (method.upper(), path): op["security"]
        for path, item in spec["paths"].items()
        for method, op in item.items()
    }


def test_spec_declares_both_schemes(client: httpx.Client, guarded: httpx.Client) -> None:
    """Both specs declare HTTP bearer and the X-API-Key header as security schemes."""
    for spec in (client.get("/openapi.json").json(),
                 guarded.get("/openapi.json", headers={"x-api-key": KEYS[0]}).json()):  # fmt: skip
        schemes = spec["components"]["securitySchemes"]
        assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
        assert schemes["apiKey"] == {
            **schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"
        }  # fmt: skip


def test_spec_without_keys_makes_the_key_optional(client: httpx.Client) -> None:
    """With no key configured every operation lists both schemes and the empty requirement;
    the health routes list none. The committed spec is this one."""
    spec = client.get("/openapi.json").json()
    for (method, path), requirement in _requirements(spec).items():
        if path in HEALTH:
            assert requirement == [], path
        else:
            assert requirement == [{"bearer": []}, {"apiKey": []}, {}], (method, path)
    committed = orjson.loads((ROOT / "openapi" / "openapi.json").read_bytes())
    assert _requirements(committed) == _requirements(spec)
    assert committed["components"]["securitySchemes"] == spec["components"]["securitySchemes"]


def test_spec_with_keys_is_what_the_server_enforces(guarded: httpx.Client) -> None:
    """With keys configured the served spec requires one on every operation but the health
    routes, documents each 401 in its route's error shape, and the server answers each
    operation without a key exactly so: 401 where the spec requires a key, never elsewhere."""
    spec = guarded.get("/openapi.json", headers={"x-api-key": KEYS[0]}).json()
    operations = _requirements(spec)
    assert len(operations) >= 8
    for (method, path), requirement in operations.items():
        concrete = re.sub(r"\{[^}]+\}", "mse", path)
        response = send(guarded, method, concrete)
        if path in HEALTH:
            assert requirement == [], path
            assert response.status_code != 401, path
            continue
        assert requirement == [{"bearer": []}, {"apiKey": []}], (method, path)
        assert_unauthorized(response, concrete)
        documented = spec["paths"][path][method.lower()]["responses"]["401"]["content"]
        media = "application/json" if path.startswith("/v2") else "application/problem+json"
        assert list(documented) == [media], (method, path)


# --- nothing internal leaks -----------------------------------------------------------------


def _raw(srv: Server, request: bytes) -> bytes:
    """The bytes a server answers to a raw request (which may be no valid HTTP at all); the
    well-formed ones ask for the connection to be closed after the answer."""
    host, port = srv.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


CLOSE = b"Connection: close\r\n"
RAW_REQUESTS = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"POST /loss/mse HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    b"POST /loss/mse HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
    b"POST /loss/mse HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /losses HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
    b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: t\r\n" + CLOSE + b"\r\n",
    b"GET /losses HTTP/1.1\r\nHost: t\r\nX: " + b"b" * 100_000 + b"\r\n" + CLOSE + b"\r\n",
    b"GET /loss%00/../../etc/passwd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /losses/%ff%fe%00 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"POST /loss/mse HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b'Content-Length: 10\r\nConnection: close\r\n\r\n{"predicti',
]


def test_no_response_reveals_a_traceback_or_a_path(
    client: httpx.Client, guarded: httpx.Client, secured: Server, server: Server
) -> None:
    """The bad-input catalogue (with and without a key), odd methods and paths, CORS refusals
    and malformed HTTP: no answer contains a traceback, a source path or a file name."""
    answers: list[tuple[str, bytes]] = []
    key = {"x-api-key": KEYS[0]}
    for case_id, method, path, headers, content, _, _ in BAD_REQUESTS:
        for http, extra in ((client, {}), (guarded, key), (guarded, {})):
            response = http.request(method, path, headers={**headers, **extra}, content=content)
            answers.append((case_id, response.content + str(response.headers).encode()))
    odd = [
        ("PUT", "/loss/mse"), ("DELETE", "/loss/mse"), ("PATCH", "/losses"), ("HEAD", "/losses"),
        ("TRACE", "/losses"), ("GET", "/loss/mse/../../etc/passwd"), ("GET", "/openapi.json/x"),
        ("GET", "/docs/static/../../app.py"), ("GET", "/docs/static/no-such-file.js"),
        ("POST", "/v2/models/mse/infer"), ("POST", "/v2/models/no_such/infer"),
        ("GET", "/v2/models/mse/versions/x"), ("OPTIONS", "/loss/mse"),
    ]  # fmt: skip
    for method, path in odd:
        for http, extra in ((client, {}), (guarded, key)):
            response = http.request(method, path, headers=extra, content=b"{]")
            answers.append((f"{method} {path}", response.content + str(response.headers).encode()))
    preflight = {"origin": OTHER_ORIGIN, "access-control-request-method": "PUT"}
    answers.append(("cors", guarded.options("/loss/mse", headers=preflight).content))
    for srv in (server, secured):
        for raw in RAW_REQUESTS:
            answers.append((raw[:40].decode(errors="replace"), _raw(srv, raw)))
    assert len(answers) > 3 * len(BAD_REQUESTS)
    for where, text in answers:
        for leak in LEAKS:
            assert leak.encode() not in text, (where, leak, text[:500])
    assert client.get("/healthz").status_code == guarded.get("/healthz").status_code == 200
