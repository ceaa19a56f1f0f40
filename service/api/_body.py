"""Reading a request body: media type, and the size and time limits enforced while it streams in."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import Request

from ..errors import PayloadTooLarge, RequestTimeout, Unprocessable, UnsupportedMediaType
from ..losses._jit import Array

# After a refused body the connection is closed: the rest of a 2 GiB upload is not read (and
# thrown away) just to keep the connection open, and a slow client loses its connection.
_CLOSE = {"Connection": "close"}


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_json_body(request: Request, max_bytes: int, timeout: float) -> bytearray:
    """The raw JSON body; 415 for another media type, else as ``read_body``."""
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType("the body must be JSON: send Content-Type: application/json")
    return await read_body(request, max_bytes, timeout)


async def read_body(request: Request, max_bytes: int, timeout: float) -> bytearray:
    """The raw body: 413 as soon as it passes ``max_bytes`` (a larger Content-Length before any
    byte is read), 408 when it has not all arrived ``timeout`` seconds after reading began."""
    too_large = PayloadTooLarge(
        f"the body is larger than {max_bytes} bytes (LOSSD_MAX_BODY_BYTES); send a smaller batch",
        headers=_CLOSE,
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
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
    if not declared.isdigit() or int(declared) > max_bytes:
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
