"""lossd's HTTP/1.1 connections: uvicorn's httptools protocol with bounds a client cannot outlast.

uvicorn bounds none of these, and each one, left open, let a handful of clients starve or bloat a
worker. ``HttpProtocol`` adds them, from ``Settings`` (``LOSSD_*``), per worker process:

- a request's line and headers must arrive within ``header_timeout`` seconds of the connection
  opening, or of their first byte on a kept-alive connection; else 408, and the connection ends;
- they may take ``max_header_bytes`` bytes and ``max_headers`` fields; else 431. The parser is
  never fed more than the cap allows, so a header flood is not buffered;
- a worker holds ``max_connections`` connections; one more is answered 503 and closed while the
  established ones carry on. (uvicorn's ``limit_concurrency`` does not fit: it counts requests as
  well and answers them with a text/plain 503 on established connections too);
- a pipelining client gets ``max_pipelined`` requests parsed ahead of the one being answered;
  the socket is not read again until a response is done;
- an answer that waits ``send_timeout`` seconds for a client that does not read cuts the
  connection: its buffers go, and the application's pending ``send`` returns.

``send`` raises uvicorn's ``ClientDisconnected`` (an ``OSError``, as ASGI 2.4 specifies) when the
client is gone rather than returning as if the answer went out: the request middleware
(``logs.RequestLog``) then logs and counts the request as 499.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from starlette.types import Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.server import ServerState

from .errors import (
    PROBLEM_MEDIA_TYPE,
    HeadersTooLarge,
    LossdError,
    MalformedRequest,
    RequestTimeout,
    TooManyConnections,
)
from .metrics import connection_cut
from .settings import Settings

log = logging.getLogger("lossd.connection")
# How long a connection is still read, its bytes dropped, after its last answer: closing a socket
# with unread bytes makes the kernel reset it, and a reset can destroy the answer before the client
# reads it (nginx's lingering_close, shorter).
LINGER = 2.0
RETRY_AFTER = "1"  # seconds, with a refused connection's 503


@dataclass(frozen=True)
class Bounds:
    """A worker's connection bounds (see the module docstring)."""

    header_timeout: float
    max_header_bytes: int
    max_headers: int
    max_connections: int
    max_pipelined: int
    send_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Bounds:
        return cls(
            header_timeout=settings.header_timeout,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            max_connections=settings.max_connections,
            max_pipelined=settings.max_pipelined,
            send_timeout=settings.send_timeout,
        )


def bounds_of(config: Config) -> Bounds:
    """The bounds of this worker, kept on its uvicorn config: ``Settings`` from the environment,
    read at the first connection (``lossd serve`` passes its flags through the environment so that
    every worker reads the same), unless the caller put ``lossd_bounds`` there."""
    bounds: Bounds | None = getattr(config, "lossd_bounds", None)
    if bounds is None:
        bounds = Bounds.from_settings(Settings())
        config.lossd_bounds = bounds  # type: ignore[attr-defined]
    return bounds


def _answer(error: LossdError, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """``error`` as a complete problem+json response that closes the connection."""
    body = orjson.dumps(error.to_problem())
    headers = [
        *default_headers,
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
    ]
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return STATUS_LINE[error.status] + head + b"\r\n" + body


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"


def _cut(reason: str, error: LossdError | None, client: tuple[str, int] | None) -> None:
    """Log and count a connection a bound refused or cut."""
    connection_cut(reason)
    fields: dict[str, Any] = {"reason": reason, "client": _peer(client)}
    if error is not None:
        fields["status"] = error.status
    log.info("connection cut", extra={"fields": fields})


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The length of a request's body, None when it is chunked (or its length is garbled: the
    parser refuses that)."""
    length = 0
    for name, value in headers:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            if not value.isdigit():
                return None
            length = int(value)
    return length


class _TooManyHeaders(Exception):
    """Raised in a parser callback: the request has more than ``max_headers`` fields."""


class _PipelineFull(Exception):
    """Raised in a parser callback: one read held more requests than may wait."""


class _Flow(FlowControl):
    """uvicorn's flow control, except that reading stays paused while the protocol holds input
    (uvicorn resumes reading whenever a request asks for its body, pipelined requests or not)."""

    held = False

    def resume_reading(self) -> None:
        if not self.held:
            super().resume_reading()


class _Refusal(asyncio.Protocol):
    """A connection over ``max_connections``: a 503, then a short lingering close. No parser and no
    request: refusing must stay cheaper than serving."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.answer)
        if transport.can_write_eof():
            transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(LINGER, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass  # the request nobody will serve

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with lossd's connection bounds (``uvicorn.run(http=...)``)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.bounds = bounds_of(config)
        self.inner_app = self.app
        self.app = self._guarded
        self._flow: _Flow = None  # type: ignore[assignment]
        self._head_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # the next bytes belong to a request line or headers
        self._head_bytes = 0  # of the head being read
        self._fields = 0  # header fields of the head being read
        self._events = 0  # heads and messages parsed: did a feed end one?
        self._body_left: int | None = None  # of the body being read, when its length is known
        self._head_tail = (
            b""  # the last bytes of the head being read: its blank line may span reads
        )
        self._held: bytes | None = None  # input not parsed while the pipeline is full
        self._ignoring = False  # no further request is read on this connection
        self._last_answer: bytes | None = None  # to send once the responses in flight are done
        self._lost = False  # the connection is gone
        self._cut = False  # ... with an answer not delivered

    # The connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.bounds.max_connections:
            error = TooManyConnections(
                "the server holds too many connections; retry shortly",
                headers={"Retry-After": RETRY_AFTER},
            )
            refusal = _Refusal(_answer(error, self.server_state.default_headers))
            transport.set_protocol(refusal)
            refusal.connection_made(transport)
            _cut("too_many_connections", error, None)
            return
        super().connection_made(transport)
        self.flow = self._flow = _Flow(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if exc is not None or self.flow.write_paused:
            self._cut = True
        for timer in (self._head_timer, self._send_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._send_timer = self._linger_timer = None
        self._held = None
        self.pipeline.clear()  # requests that never started: nobody waits for them
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._ignoring:
            return
        if self._held is not None:  # reading is paused while input is held; keep the order
            self._held += data
            return
        self._unset_keepalive_if_required()
        if self._in_head and self._head_timer is None and self._idle():
            self._arm_head_timer()  # the first byte of a request on a kept-alive connection
        self._feed(data)

    def _idle(self) -> bool:
        """No request of this connection is being answered or waiting to be."""
        return self.cycle is None or self.cycle.response_complete

    def _feed(self, data: bytes) -> None:
        """Parse ``data`` one request at a time, holding the rest back while the pipeline is
        full, and feeding the parser no more of a head than ``max_header_bytes`` allows.

        httptools parses whatever it is given, every request in it, and cannot stop part-way:
        so a head is fed up to its blank line and a body up to its Content-Length, and the
        check comes between them. (A chunked body or a head split in its blank line across
        reads is fed whole; should that complete more requests than may wait, the parser
        stops at the first of them: see ``_stop_reading``.)
        """
        view = memoryview(data)
        start, end = 0, len(data)
        while start < end and not self._ignoring:
            if self.pipeline and (
                len(self.pipeline) >= self.bounds.max_pipelined
                or len(self.cycle.body) >= HIGH_WATER_LIMIT
            ):
                self._held = data[start:]
                self._flow.held = True
                self.flow.pause_reading()
                return
            stop, in_head, events = end, self._in_head, self._events
            if in_head:
                stop = min(end, start + self.bounds.max_header_bytes - self._head_bytes)
                blank = (self._head_tail + data[start : start + 3]).find(b"\r\n\r\n")
                if blank >= 0:  # the blank line began in the previous read
                    stop = min(stop, start + blank + 4 - len(self._head_tail))
                else:
                    blank = data.find(b"\r\n\r\n", start, stop)
                    if blank >= 0:
                        stop = blank + 4
            elif self._body_left is not None:
                stop = min(end, start + self._body_left)
            try:
                self.parser.feed_data(view[start:stop])
            except httptools.HttpParserCallbackError as exc:
                if isinstance(exc.__context__, _TooManyHeaders):
                    self._too_large()
                elif isinstance(exc.__context__, _PipelineFull):
                    self._stop_reading()
                else:
                    self._malformed()
                return
            except httptools.HttpParserError:
                self._malformed()
                return
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            fed, start = stop - start, stop
            if not in_head:
                if self._body_left is not None:
                    self._body_left -= fed
            elif self._in_head and self._events == events:  # all of it was head, still open
                self._head_bytes += fed
                tail = data[stop - min(fed, 3) : stop]
                self._head_tail = (self._head_tail + tail)[-3:] if fed < 3 else tail
                if self._head_bytes >= self.bounds.max_header_bytes:
                    self._too_large()
                    return

    # Parser callbacks

    def on_message_begin(self) -> None:
        if len(self.pipeline) >= self.bounds.max_pipelined:
            raise _PipelineFull
        self._fields = 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > self.bounds.max_headers:
            raise _TooManyHeaders
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._events += 1
        self._body_left = _content_length(self.headers)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
        self._head_tail = b""
        self._events += 1

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts the next queued request, or arms keep-alive
        if self.transport.is_closing():
            return
        if self._last_answer is not None:
            if self._idle():
                self._linger(self._last_answer)
            return
        held, self._held = self._held, None
        if held is not None:
            self._flow.held = False
            self._unset_keepalive_if_required()
            self._feed(held)
            if self._held is None and not self._ignoring:
                self.flow.resume_reading()
        if self._in_head and self._head_bytes and self._head_timer is None and self._idle():
            self._unset_keepalive_if_required()  # part of the next head is here already
            self._arm_head_timer()

    # Bounds crossed

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.bounds.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._ignoring:
            return
        if not self._head_bytes:  # not a byte of a request: nobody to answer
            _cut("header_timeout", None, self.client)
            self._ignoring = True
            self.transport.close()
            return
        seconds = self.bounds.header_timeout
        detail = f"the request line and headers did not arrive within {seconds:g} s"
        self._end(RequestTimeout(detail), "header_timeout")

    def _too_large(self) -> None:
        bounds = self.bounds
        detail = (
            f"the request line and headers exceed {bounds.max_header_bytes} bytes "
            f"or {bounds.max_headers} fields"
        )
        self._end(HeadersTooLarge(detail), "headers_too_large")

    def _malformed(self) -> None:
        error = MalformedRequest("the request is not valid HTTP/1.1")
        if self._in_head:
            self._end(error, "malformed_request")
            return
        # In a body: that request can never complete. uvicorn's answer: a 400 unless a response
        # is under way, then close (the application's receive() sees the disconnect).
        _cut("malformed_request", error, self.client)
        self._ignoring = True
        if not self.pipeline and not self.cycle.response_started:
            self.transport.write(_answer(error, self.server_state.default_headers))
        self.transport.close()

    def _end(self, error: LossdError, reason: str) -> None:
        """Answer ``error`` once the responses in flight are done, then close; read no more."""
        _cut(reason, error, self.client)
        self._ignoring = True
        self._held = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        answer = _answer(error, self.server_state.default_headers)
        if self._idle():
            self._linger(answer)
        else:
            self._last_answer = answer
            self._flow.held = True
            self.flow.pause_reading()

    def _linger(self, answer: bytes) -> None:
        """Send the connection's last answer, then drop what the client still sends until it
        closes (``eof_received`` returns None: the transport closes) or ``LINGER`` passes."""
        self._ignoring = True
        self._unset_keepalive_if_required()
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._flow.held = False
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER, self.transport.abort)

    def _stop_reading(self) -> None:
        """One read held more pipelined requests than may wait: the parser stopped at the first
        of them. Answer the requests parsed, then close without reading more; the client retries
        the rest on a new connection (RFC 9112, 9.3.2)."""
        _cut("too_many_pipelined", None, self.client)
        self._ignoring = True
        self._last_answer = b""
        self._flow.held = True
        self.flow.pause_reading()

    # Writing

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.bounds.send_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().resume_writing()

    def _send_timed_out(self) -> None:
        self._send_timer = None
        _cut("send_timeout", None, self.client)
        self._cut = True
        self.transport.abort()  # frees the write buffer; connection_lost wakes the pending send

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The application, with a ``send`` that raises ``ClientDisconnected`` once the client is
        gone, and whose last message returns when the answer left the process (or never will)."""

        async def guarded_send(message: Message) -> None:
            if self._lost:
                raise ClientDisconnected
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                if self.flow.write_paused:
                    await self.flow.drain()
                if self._cut:
                    raise ClientDisconnected
            elif self._lost:
                raise ClientDisconnected

        with suppress(ClientDisconnected):  # nobody reads the answer; RequestLog counted a 499
            await self.inner_app(scope, receive, guarded_send)
