"""Logging in one place: one line per record on stderr, and the per-request middleware.

``configure`` sends lossd's and uvicorn's records to stderr as JSON objects (or readable text),
one per line. ``RequestLog`` gives every request an id (``X-Request-ID``, honoured when sane,
echoed on every response), writes one ``request`` line when it ends and counts it in the metrics.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from time import perf_counter
from typing import Any, Literal

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import CURRENT, NONE, Metrics, Observation

REQUEST_ID_HEADER = b"x-request-id"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left before its answer
MAX_REQUEST_ID = 128
# Probes and scrapes arrive every few seconds, and /readyz answers 503 all through the warm-up:
# they log at debug (their counts and statuses are in the metrics).
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_ACCESS = logging.getLogger("lossd.request")


_second: tuple[int, str] = (0, "")  # the last second formatted: strftime costs microseconds


def _timestamp(created: float) -> str:
    """RFC 3339 in UTC with milliseconds: ``2025-01-31T12:00:00.123Z``."""
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((created - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: ts, level, msg, logger, pid, the request fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "logger": record.name,
            "pid": record.process,  # which worker, with --workers > 1
        }
        fields = getattr(record, "fields", None)
        if fields:
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """A readable line: ``ts LEVEL [pid] logger: msg key=value ...``, then any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_timestamp(record.created)} {record.levelname:<7} [{record.process}] "
            f"{record.name}: {_escaped(record.getMessage())}"
        )
        fields = getattr(record, "fields", None)
        if fields:
            line += "".join(f" {key}={_text(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text(value: object) -> str:
    text = str(value)
    if text and text.isprintable() and " " not in text and '"' not in text:
        return text
    return _escaped(orjson.dumps(text).decode())  # orjson escapes the C0 controls, not the rest


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\x1b``, ``\\u2028``):
    a line break or terminal control from a client (a ``%0A`` in a path) must not forge a line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _ESCAPES.get(ch) or _code(ord(ch)) for ch in text)


def _code(point: int) -> str:
    if point < 0x100:
        return f"\\x{point:02x}"
    return f"\\u{point:04x}" if point < 0x10000 else f"\\U{point:08x}"


class _Stderr(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced after start-up)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # logging must never take a request down
            self.handleError(record)


_HANDLER = _Stderr()


def configure(level: str, fmt: Literal["json", "text"]) -> None:
    """Send every record to stderr, one line each in ``fmt``, from ``level`` up; idempotent.

    The handler sits on the root logger, so uvicorn's and the libraries' records come out in the
    same format, unless the host program already configured the root logger (a test runner,
    an embedding application): then lossd's records propagate to its handlers instead. uvicorn's
    access log is switched off: ``RequestLog`` writes one richer line per request.
    """
    _HANDLER.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    numeric = logging.getLevelNamesMapping()[level.upper()]
    root = logging.getLogger()
    if _HANDLER in root.handlers or not root.handlers:
        if _HANDLER not in root.handlers:
            root.addHandler(_HANDLER)
            logging.captureWarnings(True)  # a Python warning is a log line too, not free text
            # Fields no line shows, which every record would otherwise look up.
            logging.logThreads = logging.logMultiprocessing = False
        root.setLevel(max(numeric, logging.WARNING))  # other libraries: warnings and up only
    for name in ("lossd", "uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()  # uvicorn's own handlers, when it configured them
        logger.propagate = True
        logger.setLevel(numeric)
    server_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _LoggedOnce) for f in server_errors.filters):
        server_errors.addFilter(_LoggedOnce())
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True


def mark_logged(exc: BaseException) -> None:
    """Note that ``exc`` is logged already, with its traceback and request id: Starlette re-raises
    it after the 500 handler answered, and uvicorn would log it a second time, without the id."""
    exc._lossd_logged = True  # type: ignore[attr-defined]


class _LoggedOnce(logging.Filter):
    """On ``uvicorn.error``: drops the record of an exception ``mark_logged`` marked."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, "_lossd_logged", False)


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-ID when it is printable ASCII of 1 to 128 characters, else a new one.

    A new id is 128 random bits in hex, the shape of ``uuid4().hex`` at a sixth of its cost.
    """
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if 0 < len(value) <= MAX_REQUEST_ID and value.isascii():
                text = value.decode("ascii")
                if text.isprintable():
                    return text
            break
    return os.urandom(16).hex()


def _clear_frames(exc: BaseException) -> None:
    """Clear the locals of the finished frames an exception's tracebacks hold.

    Those frames (a streaming response, its body) sit in a reference cycle with the exception,
    which only the cyclic garbage collector frees, whenever it next runs: measured, six cut
    21 MB answers stayed resident until then.
    """
    pending, seen = [exc], set()
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        pending += [e for e in (error.__cause__, error.__context__) if e is not None]
        if isinstance(error, BaseExceptionGroup):
            pending += error.exceptions


class RequestLog:
    """Pure ASGI middleware: the request id, one log line and the request metrics per request.

    It stores the id in ``request.state.request_id`` (the 500 handler, which runs outside every
    middleware, reads it there) and puts an ``Observation`` in ``metrics.CURRENT`` for the routes
    and the engine to fill in. A request whose client left before its answer was out (the
    server's ``send`` raised an ``OSError``, as ASGI 2.4 has it) is logged and counted as 499.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        obs = Observation(request_id(scope["headers"]), self.metrics)
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = obs.request_id
        echo = (REQUEST_ID_HEADER, obs.request_id.encode("ascii"))
        status = 500  # unless a response starts: an exception escaped and the 500 handler answers
        bytes_in = bytes_out = 0
        gone = False  # the client left before its answer was out

        async def counted_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            bytes_in += len(message.get("body", b""))
            return message

        async def tagged_send(message: Message) -> None:
            nonlocal status, bytes_out, gone
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echo]
            try:
                await send(message)
            except OSError:  # ASGI 2.4: the server says the client is gone (server.py does)
                gone = True
                raise
            if message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))

        token = CURRENT.set(obs)
        try:
            await self.app(scope, counted_receive, tagged_send)
        except Exception as exc:
            # Raised on the way out once the client left (the OSError, or what a streaming
            # response made of it): no bug, and nobody to answer.
            if not gone:
                raise
            _clear_frames(exc)
        finally:
            CURRENT.reset(token)
            status = CLIENT_CLOSED_REQUEST if gone else status
            self._finish(scope, obs, status, perf_counter() - started, bytes_in, bytes_out)

    def _finish(
        self,
        scope: Scope,
        obs: Observation,
        status: int,
        seconds: float,
        size_in: int,
        size_out: int,
    ) -> None:
        route = getattr(scope.get("route"), "path", NONE)
        path = scope["path"]
        finish(obs, scope["method"], path, route, status, seconds, size_in, size_out)


def finish(
    obs: Observation,
    method: str,
    path: str,
    route: str,
    status: int,
    seconds: float,
    size_in: int,
    size_out: int,
    *,
    quiet: bool = False,
    **extra: Any,
) -> None:
    """Count a finished request in the metrics and write its ``request`` line (HTTP requests
    through ``RequestLog``; gRPC calls, whose ``status`` is the HTTP status of their outcome and
    whose ``extra`` fields name their gRPC status, from service/api/grpc_server.py). Probes and
    scrapes (``QUIET_PATHS``, or ``quiet``) log at debug."""
    metrics = obs.metrics
    metrics.request(obs.loss, status, obs.encoding, route, seconds)
    evaluated = obs.evaluated or ([obs.loss] if obs.loss != NONE else [])
    metrics.inference(evaluated, status, seconds)
    level = logging.DEBUG if quiet or path in QUIET_PATHS else logging.INFO
    if not _ACCESS.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "request_id": obs.request_id,
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
    }
    loss = obs.loss if obs.loss != NONE else ",".join(obs.evaluated or ())
    if loss:
        fields["loss"] = loss
    if obs.encoding != NONE:
        fields["encoding"] = obs.encoding
    if obs.elements:
        fields["elements"] = obs.elements
    if size_in:
        fields["bytes_in"] = size_in
    if size_out:
        fields["bytes_out"] = size_out
    fields.update(extra)
    # A record made directly: Logger.info would also walk the stack to find its caller.
    record = logging.LogRecord(_ACCESS.name, level, "", 0, "request", None, None)
    record.fields = fields
    _ACCESS.handle(record)
