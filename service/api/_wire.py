"""What every evaluating route does around its codec: the readiness check, the media type and
encoding checks, reading the body within its size and time limits, running the codec inline or on
the compute executor, recording the results' metrics, and sending the answer (streamed when large).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from ..codecs import Reply
from ..errors import (
    NotReady,
    PayloadTooLarge,
    RequestTimeout,
    Unprocessable,
    UnsupportedMediaType,
)
from ..jit import Array
from ..metrics import note, observe
from .state import ServiceState

JSON = "application/json"
BINARY = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"
STREAM_ABOVE = 1 << 20
# Bodies up to this size (a few thousand numbers) are evaluated on the event loop: their kernels
# run serially in tens of microseconds, less than the hop to a compute thread and back costs
# (docs/benchmarks.md, HTTP small requests).
INLINE_BELOW = 1 << 15

# After a refused body the connection is closed: the rest of a 2 GiB upload is not read (and
# thrown away) just to keep the connection open, and a slow client loses its connection.
_CLOSE = {"Connection": "close"}


def check_ready(state: ServiceState) -> None:
    """503 ``not_ready`` (with Retry-After) until the kernels are compiled or loaded."""
    if not state.ready:
        raise NotReady("kernels are still compiling", headers={"Retry-After": "1"})


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


async def read_json_body(request: Request, max_bytes: int, timeout: float) -> bytearray:
    """The raw JSON body; 415 for another media type, else as ``read_body``."""
    media_type(request)
    return await read_body(request, max_bytes, timeout)


async def read_body(request: Request, max_bytes: int, timeout: float) -> bytearray:
    """The raw body: 413 as soon as it passes ``max_bytes`` (a larger Content-Length before any
    byte is read), 408 when it has not all arrived ``timeout`` seconds after reading began."""
    too_large = PayloadTooLarge(
        f"the body is larger than {max_bytes} bytes (LOSSD_MAX_BODY_BYTES); send a smaller batch",
        headers=_CLOSE,
    )
    declared = request.headers.get("content-length", "")
    if _is_count(declared) and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
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
    request: Request, max_bytes: int, timeout: float, aligned_at: int = 0
) -> Array:
    """The raw body as a numpy byte buffer whose byte ``aligned_at`` is 64-byte aligned, so that
    binary data there is viewed as arrays without a copy; limits as ``read_body``.

    With a Content-Length the body streams straight into the buffer; a chunked body is read by
    ``read_body`` and copied once.
    """
    declared = request.headers.get("content-length", "")
    if not _is_count(declared) or int(declared) > max_bytes:
        body = await read_body(request, max_bytes, timeout)
        buffer = _aligned_empty(len(body), aligned_at)
        buffer[:] = np.frombuffer(body, dtype=np.uint8)
        return buffer
    size = int(declared)
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


async def run(state: ServiceState, codec: Callable[..., Reply], body: Any, *args: Any) -> Reply:
    """Run a codec on a body: small bodies here on the event loop (cheaper than a hop to a
    compute thread), larger ones on the compute executor."""
    limits = (state.settings.max_elements, state.settings.max_request_bytes)
    if len(body) < INLINE_BELOW:
        return codec(*args, body, *limits)
    return await state.compute.run(codec, *args, body, *limits)


def send(reply: Reply) -> Response:
    """Record the reply's results in the request's metrics, then answer: JSON, or with the
    binary extension the JSON header and the binary outputs; large bodies a chunk at a time."""
    observe(reply.results)
    if reply.encoding is not None:
        note(encoding=reply.encoding)
    body = reply.body
    media = JSON if reply.json_length is None else BINARY
    headers = {} if reply.json_length is None else {HEADER_LENGTH: str(reply.json_length)}
    if body.size <= STREAM_ABOVE:
        return Response(body.tobytes(), media_type=media, headers=headers)

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in body.chunks():
            yield chunk

    headers["Content-Length"] = str(body.size)
    return StreamingResponse(chunks(), media_type=media, headers=headers)
