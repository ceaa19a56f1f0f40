"""API keys, CORS, and the security schemes of the OpenAPI spec, all as configured.

With ``LOSSD_API_KEYS`` set, every route but the health routes (and the explorer page's own
files, which a browser loads before its user can paste a key) needs ``Authorization: Bearer
<key>`` or ``X-API-Key: <key>``. The check is a pure ASGI middleware, so it covers every route
(including ``/metrics``, ``/docs``, ``/openapi.json`` and ``/v2``) without touching any of them,
and answers before a byte of the body is read. CORS is off unless ``LOSSD_CORS_ORIGINS`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import PROBLEM_MEDIA_TYPE, CorsRejected, LossdError, Unauthorized
from .settings import Settings

# Probes must reach these without a key (SPEC section 6).
EXEMPT = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lossd"'}
# The Open Inference Protocol answers errors as {"error": "..."} (SPEC section 7).
V2 = "/v2"
CORS_HEADERS = (
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "X-Request-ID",
    "Inference-Header-Content-Length",
)
CORS_EXPOSED = ("X-Request-ID", "Retry-After")
SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <key>` with one of LOSSD_API_KEYS",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "`X-API-Key: <key>` with one of LOSSD_API_KEYS",
    },
}


def is_v2(path: str) -> bool:
    """Whether ``path`` is an Open Inference Protocol route."""
    return path == V2 or path.startswith(V2 + "/")


def error_response(path: str, error: LossdError) -> Response:
    """``error`` as the routes answer it: problem+json, or the protocol's shape on ``/v2``."""
    if is_v2(path):
        body, media = orjson.dumps({"error": error.detail}), "application/json"
    else:
        body, media = orjson.dumps(error.to_problem()), PROBLEM_MEDIA_TYPE
    return Response(body, status_code=error.status, media_type=media, headers=error.headers)


def _digest(key: bytes) -> bytes:
    # Digests have one length, so comparing them reveals nothing about a key's length either.
    return hashlib.sha256(key).digest()


class APIKeys:
    """Pure ASGI middleware: 401 unless the request carries one of the keys, or asks for one of
    the ``exempt`` paths (the health routes, and the explorer page's files when it is on)."""

    def __init__(self, app: ASGIApp, keys: Sequence[str], exempt: frozenset[str] = EXEMPT) -> None:
        self.app = app
        self.keys = KeyRing(keys)
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        refusal = self.keys.refusal(scope["headers"])
        if refusal is None:
            await self.app(scope, receive, send)
            return
        headers = dict(CHALLENGE)
        if _has_body(scope["headers"]):
            headers["Connection"] = "close"  # the body is not read; the connection goes
        await error_response(scope["path"], Unauthorized(refusal, headers=headers))(
            scope, receive, send
        )


class KeyRing:
    """The configured API keys, as digests; what HTTP headers and gRPC metadata are checked
    against."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.digests = [_digest(key.encode()) for key in keys]

    def refusal(self, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
        """None when ``headers`` (lower-case names) carry one of the keys, else why not."""
        offered = _offered(headers)
        if offered is not None and self._known(offered):
            return None
        if offered is None:
            return (
                "this route needs an API key: send Authorization: Bearer <key> or X-API-Key: <key>"
            )
        return "the API key is not valid"

    def _known(self, offered: list[bytes]) -> bool:
        """Compare with every key in constant time, without stopping at the first match."""
        found = False
        for digest in map(_digest, offered):
            for known in self.digests:
                found |= hmac.compare_digest(digest, known)
        return found


def _offered(headers: Sequence[tuple[bytes, bytes]]) -> list[bytes] | None:
    """The keys a request offers (the first of each header), or None when it offers none."""
    bearer: bytes | None = None
    api_key: bytes | None = None
    for name, value in headers:
        if name == b"authorization" and bearer is None:
            scheme, _, token = value.strip().partition(b" ")
            bearer = token.strip() if scheme.lower() == b"bearer" else b""
        elif name == b"x-api-key" and api_key is None:
            api_key = value.strip()
    offered = [key for key in (bearer, api_key) if key]
    return offered or (None if bearer is None and api_key is None else [])


def _has_body(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(
        (name == b"content-length" and value.strip() not in (b"", b"0"))
        or name == b"transfer-encoding"
        for name, value in headers
    )


class Cors(CORSMiddleware):
    """Starlette's CORS for the configured origins, with two changes: a refused preflight is an
    error document like every other 4xx, and no Access-Control-* header reaches another origin."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            headers = Headers(scope=scope)
            if "origin" in headers and "access-control-request-method" in headers:
                response = self.preflight_response(request_headers=headers)
                if response.status_code != 200:
                    reason = bytes(response.body).decode()  # "Disallowed CORS origin, headers"
                    vary = {"Vary": response.headers["Vary"]}
                    error = CorsRejected(f"CORS preflight refused: {reason}", headers=vary)
                    response = error_response(scope["path"], error)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def send(self, message: Message, send: Send, request_headers: Headers) -> None:
        origin = request_headers.get("origin")
        if origin is None or self.is_allowed_origin(origin=origin):
            await super().send(message, send, request_headers)
            return
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])
        await send(message)


def install(app: FastAPI, settings: Settings, public: frozenset[str] = frozenset()) -> None:
    """The API-key check inside CORS (a preflight needs no key, a 401 gets CORS headers).
    ``public`` are paths that need no key besides the health routes (the explorer's files: a
    browser opens the page before its user can paste a key into it).

    Middleware added after this call wraps both: the request id's goes there, so that a 401
    carries it too.
    """
    if settings.api_keys:
        app.add_middleware(APIKeys, keys=settings.api_keys, exempt=EXEMPT | public)
    if settings.cors_origins:
        app.add_middleware(
            Cors,
            allow_origins=settings.cors_origins,
            allow_methods=("GET", "POST"),
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSED,
        )


def document(spec: dict[str, Any], keys_required: bool) -> None:
    """Declare the schemes in ``spec`` as the middleware enforces them.

    Health routes need nothing (``security: []``); every other operation takes either scheme,
    or none when no key is configured (the empty requirement ``{}``), and documents its 401.
    """
    spec.setdefault("components", {})["securitySchemes"] = SCHEMES
    either: list[dict[str, list[str]]] = [{name: []} for name in SCHEMES]
    secured = either if keys_required else [*either, {}]
    for path, item in spec.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            if path in EXEMPT:
                operation["security"] = []
                continue
            operation["security"] = secured
            operation.setdefault("responses", {}).setdefault("401", _unauthorized(path))


def _unauthorized(path: str) -> dict[str, Any]:
    when = "an API key is configured and the request has none or a wrong one"
    challenge = {
        "WWW-Authenticate": {
            "description": 'always `Bearer realm="lossd"`',
            "schema": {"type": "string"},
        }
    }
    if is_v2(path):
        error = {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        }
        content = {"application/json": {"schema": error}}
    else:
        content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {"description": when, "headers": challenge, "content": content}
