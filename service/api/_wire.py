"""What every evaluating route does around its codec: the readiness check, the media type and
encoding checks, reading the body within its size and time limits, holding the request's memory in
the process's account from its first byte to its answer's last, running the codec inline or on
the compute executor (dropped or stopped when the client hangs up), recording the results'
metrics, and sending the answer (streamed when large).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sized
from functools import partial
from typing import Any, TypeVar

import numpy as np
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .. import core
from ..codecs import Reply
from ..codecs.framing import HEADER_LENGTH
from ..errors import (
    NotReady,
    PayloadTooLarge,
    RequestTimeout,
    Unprocessable,
    UnsupportedMediaType,
)
from ..jit import Array
from ..losses import REGISTRY, LossSpec
from ..memory import Lease, RunElsewhere
from ..metrics import note, observe
from .state import ServiceState

JSON = "application/json"
BINARY = "application/octet-stream"
MULTIPART = "multipart/form-data"
# Answers above this go out a chunk of this size at a time, each written when the client has
# taken the last (the server's flow control): an answer nobody reads holds at most a chunk and
# the transport's buffer outside the memory account, and its bytes stay in the account until
# the last chunk is out.
STREAM_ABOVE = 1 << 16
# Bodies up to this size (a few thousand numbers) are evaluated on the event loop: their kernels
# run serially in tens of microseconds, less than the hop to a compute thread and back costs
# (docs/benchmarks.md, HTTP small requests).
INLINE_BELOW = 1 << 15

# After a refused body the connection is closed: the rest of a 2 GiB upload is not read (and
# thrown away) just to keep the connection open, and a slow client loses its connection.
_CLOSE = {"Connection": "close"}
T = TypeVar("T")


def check_ready(state: ServiceState, spec: LossSpec | None = None) -> None:
    """503 ``not_ready`` (with Retry-After) until the kernels are compiled or loaded: those of
    ``spec`` when one is named (a cold start serves each loss as soon as its own kernels are
    warm), else every loss's."""
    if state.ready or (spec is not None and spec.name in state.warm):
        return
    what = f"the kernels of {spec.name} are" if spec is not None else "kernels are"
    raise NotReady(
        f"{what} still compiling ({len(state.warm)} of {len(REGISTRY)} losses ready)",
        headers={"Retry-After": "1"},
    )


def media_type(request: Request, *others: str) -> str:
    """The body's media type: JSON (``application/json`` or ``application/*+json``) or one of
    ``others``; 415 for anything else and for a compressed body (lossd reads no
    Content-Encoding but identity)."""
    headers = request.headers
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    is_json = media == JSON or (media.startswith("application/") and media.endswith("+json"))
    if not is_json and media not in others:
        accepted = " or ".join((JSON, *(o for o in others if o)))
        raise UnsupportedMediaType(f"the body must be {accepted}: send it with that Content-Type")
    if headers.get("content-encoding", "identity").strip().lower() != "identity":
        raise UnsupportedMediaType(
            "compressed request bodies are not supported: send the body with no Content-Encoding"
        )
    return JSON if is_json else media


def _is_count(text: str) -> bool:
    """An ASCII decimal byte count (``str.isdigit`` also takes other scripts' digits, and
    ``int`` refuses 4,300 of them)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def header_length(request: Request) -> int | None:
    """The binary framing's JSON length (Inference-Header-Content-Length), if the request has
    one; 422 for anything but an ASCII decimal byte count."""
    raw = request.headers.get(HEADER_LENGTH)
    if raw is None:
        return None
    if not _is_count(raw.strip()):
        raise Unprocessable(
            f"{HEADER_LENGTH} must be the byte length of the JSON header (ASCII digits)",
            errors=[((HEADER_LENGTH,), "expected a byte count")],
        )
    return int(raw.strip())


def multipart_boundary(request: Request) -> bytes:
    """The boundary of a ``multipart/form-data`` body (RFC 2046: 1 to 70 ASCII characters,
    optionally quoted); 422 when the Content-Type has none."""
    params = request.headers.get("content-type", "").split(";")[1:]
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if 0 < len(value) <= 70 and value.isascii() and value.isprintable():
                return value.encode()
    raise Unprocessable(
        "a multipart/form-data body needs a boundary parameter in its Content-Type "
        "(1 to 70 ASCII characters)",
        errors=[(("Content-Type",), "missing or invalid boundary")],
    )


async def read_json_body(
    request: Request, max_bytes: int, timeout: float, lease: Lease | None = None
) -> bytearray:
    """The raw JSON body; 415 for another media type, else as ``read_body``."""
    media_type(request)
    return await read_body(request, max_bytes, timeout, lease)


async def read_body(
    request: Request, max_bytes: int, timeout: float, lease: Lease | None = None
) -> bytearray:
    """The raw body: 413 as soon as it passes ``max_bytes`` (a larger Content-Length before any
    byte is read), 408 when it has not all arrived ``timeout`` seconds after reading began.
    Its bytes are held in ``lease`` before they are read: a declared length at once, a chunked
    body a chunk at a time (503 overloaded when the process's memory stays taken)."""
    too_large = PayloadTooLarge(
        f"the body is larger than {max_bytes} bytes (LOSSD_MAX_BODY_BYTES); send a smaller batch",
        headers=_CLOSE,
    )
    declared = request.headers.get("content-length", "")
    if _is_count(declared) and int(declared) > max_bytes:
        raise too_large
    held = int(declared) if _is_count(declared) else 0
    if lease is not None:
        await lease.hold_async(held, "its body")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                if lease is not None and len(body) + len(chunk) > held:
                    more = len(body) + len(chunk) - held
                    await lease.hold_async(more, "its body")
                    held += more
                body += chunk
                if len(body) > max_bytes:
                    raise too_large
    except TimeoutError:
        raise RequestTimeout(
            f"the body did not arrive within {timeout:g} s (LOSSD_BODY_TIMEOUT); "
            f"{len(body)} bytes came in that time",
            headers=_CLOSE,
        ) from None
    return body


async def read_body_aligned(
    request: Request,
    max_bytes: int,
    timeout: float,
    aligned_at: int = 0,
    lease: Lease | None = None,
) -> Array:
    """The raw body as a numpy byte buffer whose byte ``aligned_at`` is 64-byte aligned, so that
    binary data there is viewed as arrays without a copy; limits as ``read_body``.

    With a Content-Length the body streams straight into the buffer; a chunked body is read by
    ``read_body`` and copied once.
    """
    declared = request.headers.get("content-length", "")
    if not _is_count(declared) or int(declared) > max_bytes:
        body = await read_body(request, max_bytes, timeout, lease)
        if lease is not None:
            await lease.hold_async(len(body), "its body's aligned copy")
        buffer = _aligned_empty(len(body), aligned_at)
        buffer[:] = np.frombuffer(body, dtype=np.uint8)
        if lease is not None:
            lease.drop(len(body))
        return buffer
    size = int(declared)
    if lease is not None:
        await lease.hold_async(size, "its body")
    buffer = _aligned_empty(size, aligned_at)
    filled = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                end = filled + len(chunk)
                if end > size:
                    break
                buffer[filled:end] = np.frombuffer(chunk, dtype=np.uint8)
                filled = end
    except TimeoutError:
        raise RequestTimeout(
            f"{filled} of {size} bytes arrived in {timeout:g} s (LOSSD_BODY_TIMEOUT)",
            headers=_CLOSE,
        ) from None
    if filled != size:
        raise Unprocessable(f"the body does not have its Content-Length of {size} bytes")
    return buffer


def _aligned_empty(size: int, aligned_at: int, alignment: int = 64) -> Array:
    raw = np.empty(size + alignment, dtype=np.uint8)
    shift = -(raw.ctypes.data + aligned_at) % alignment
    return raw[shift : shift + size]


async def evaluate(
    request: Request,
    state: ServiceState,
    read: Callable[[Lease], Awaitable[Any]],
    codec: Callable[..., Reply],
    *args: Any,
) -> Response:
    """Read the body (``read``), run the codec on it and answer, the request's memory held in
    the process's account from the body's first byte to the answer's last."""
    lease = state.memory.lease()
    try:
        body = await read(lease)
        return send(await run(request, state, codec, body, *args, lease=lease), lease)
    except BaseException:
        lease.close()
        raise


async def run(
    request: Request,
    state: ServiceState,
    codec: Callable[..., Reply],
    body: Any,
    *args: Any,
    lease: Lease | None = None,
) -> Reply:
    """Run a codec on an HTTP request's body (``run_codec``), stopped once the client hangs up."""
    watch = partial(_until_disconnected, request)
    return await run_codec(state, watch, codec, body, *args, lease=lease)


async def run_codec(
    state: ServiceState,
    watch: Callable[[threading.Event], Coroutine[Any, Any, None]],
    codec: Callable[..., T],
    body: Sized,
    *args: Any,
    lease: Lease | None = None,
) -> T:
    """Run a codec on a body, on any transport: small bodies here on the event loop (cheaper
    than a hop to a compute thread) unless their work is not tiny or their memory not free at
    once (``RunElsewhere``), others on the compute executor, dropped or stopped between blocks of
    rows once ``watch(cancel)`` returns (it sets ``cancel`` when the client is gone)."""
    limits = (state.settings.max_elements, state.settings.max_request_bytes)
    if len(body) < INLINE_BELOW and lease is not None:
        lease.inline = True
        try:
            return codec(*args, body, *limits, lease=lease)
        except RunElsewhere:
            pass
        finally:
            lease.inline = False
    cancel = threading.Event()
    core.CANCEL.set(cancel)  # this request's task context, copied to the compute thread
    gone = asyncio.create_task(watch(cancel))
    try:
        job = partial(codec, *args, body, *limits, lease=lease)
        return await state.compute.run(job, cancel=cancel, gone=gone)
    finally:
        gone.cancel()


async def _until_disconnected(request: Request, cancel: threading.Event) -> None:
    """Set ``cancel`` when the client hangs up (the body is read: the server's next message
    for this request is its disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    cancel.set()


def send(reply: Reply, lease: Lease | None = None) -> Response:
    """Record the reply's results in the request's metrics, then answer: JSON, or with the
    binary extension the JSON header and the binary outputs; large bodies a chunk at a time.
    The ``lease`` keeps the answer's bytes until its last one is handed to the server."""
    observe(reply.results)
    if reply.encoding is not None:
        note(encoding=reply.encoding)
    body = reply.body
    media = JSON if reply.json_length is None else BINARY
    headers = {} if reply.json_length is None else {HEADER_LENGTH: str(reply.json_length)}
    if lease is not None:
        lease.keep(body.size)
    if body.size <= STREAM_ABOVE:
        return _Answer(body.tobytes(), media_type=media, headers=headers, lease=lease)

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in body.chunks(STREAM_ABOVE):
            yield chunk

    headers["Content-Length"] = str(body.size)
    return _StreamedAnswer(chunks(), media_type=media, headers=headers, lease=lease)


class _Leased:
    """A response that gives its request's memory back once it is over, sent or cut short (the
    server's ``send`` raises when the client is gone or does not read), and lets go of the
    answer's bytes at once rather than when the garbage collector finds them."""

    lease: Lease | None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            aclose = getattr(getattr(self, "body_iterator", None), "aclose", None)
            if aclose is not None:  # a stream cut short: its generator lets go of the answer
                await aclose()
            if self.lease is not None:
                self.lease.close()


class _Answer(_Leased, Response):
    def __init__(self, content: bytes, *, lease: Lease | None, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.lease = lease


class _StreamedAnswer(_Leased, StreamingResponse):
    def __init__(
        self, content: AsyncIterator[bytes], *, lease: Lease | None, **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self.lease = lease
