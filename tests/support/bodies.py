"""Request and answer bodies of ``/loss`` besides JSON lists, built and read by hand: packed
arrays, ``.npy`` files, the binary framing, multipart bodies, and framed answers split back into
their arrays (SPEC amendment: binary bodies)."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import numpy as np
import orjson

HEADER = "Inference-Header-Content-Length"
BINARY = "application/octet-stream"


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def packed(array: np.ndarray) -> dict[str, Any]:
    data = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": data}


def framed_body(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """The binary framing: the arrays as {dtype, shape, binary_data_size}, bytes in that order."""
    header_doc = dict(doc)
    for name, array in arrays.items():
        size = array.nbytes
        header_doc[name] = {
            "dtype": array.dtype.name,
            "shape": list(array.shape),
            "binary_data_size": size,
        }
    header = orjson.dumps(header_doc)
    body = header + b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values())
    return body, {"Content-Type": BINARY, HEADER: str(len(header))}


def multipart_body(
    parts: list[tuple[str, bytes]], boundary: str = "lossd-test-boundary"
) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body built by hand (for the malformed cases too)."""
    chunks = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.npy"'
        f"\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
        for name, content in parts
    ]
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def split_framed(response: httpx.Response) -> tuple[dict[str, Any], list[np.ndarray]]:
    """A framed answer's JSON header and its arrays, read in the order the header lists them."""
    assert response.headers["content-type"] == BINARY
    size = int(response.headers[HEADER])
    doc = orjson.loads(response.content[:size])
    arrays, offset = [], size

    def walk(node: Any) -> None:
        nonlocal offset
        if isinstance(node, dict) and "binary_data_size" in node:
            assert set(node) == {"dtype", "shape", "binary_data_size"}
            raw = response.content[offset : offset + node["binary_data_size"]]
            arrays.append(
                np.frombuffer(raw, dtype=np.dtype(node["dtype"]).newbyteorder("<")).reshape(
                    node["shape"]
                )
            )
            offset += node["binary_data_size"]
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert offset == len(response.content)
    return doc, arrays
