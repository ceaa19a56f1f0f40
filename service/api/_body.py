"""Reading a request body: media type, and the size limit enforced while the body streams in."""

from __future__ import annotations

from fastapi import Request

from ..errors import PayloadTooLarge, UnsupportedMediaType


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_json_body(request: Request, max_bytes: int) -> bytearray:
    """The raw JSON body; 415 for another media type, 413 as soon as it passes ``max_bytes``."""
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType("the body must be JSON: send Content-Type: application/json")
    too_large = PayloadTooLarge(
        f"the body is larger than {max_bytes} bytes (LOSSD_MAX_BODY_BYTES); send a smaller batch"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return body
