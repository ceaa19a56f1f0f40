"""The binary-data framing shared by ``/v2`` (the protocol's binary tensor data extension) and
``/loss`` (its binary bodies): a JSON header of a declared length, then the arrays' raw
little-endian bytes in the order the header lists them.

Arrays read from a body are numpy views of it (no per-element work, no copy, unless a view would
be misaligned); arrays written are the results' own buffers, never joined into one copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ..errors import InvalidArray, Unprocessable
from ..jit import Array
from .jsontext import Encoded

HEADER_LENGTH = "Inference-Header-Content-Length"


def split(body: Array, header_length: int | None) -> tuple[Array, Array]:
    """The body (uint8) as its JSON header and the binary data after it; without a header
    length the whole body is JSON."""
    size = body.shape[0]
    end = size if header_length is None else header_length
    if end > size:
        raise Unprocessable(
            f"{HEADER_LENGTH} is {end} but the body has only {size} bytes",
            errors=[((HEADER_LENGTH,), "longer than the body")],
        )
    return body[:end], body[end:]


class BinarySection:
    """The binary data after a JSON header, handed out array by array in the header's order."""

    def __init__(self, data: Array) -> None:
        self.data = data
        self.offset = 0

    def take(
        self, where: str, dtype: np.dtype[Any], named: str, shape: list[int], size: object
    ) -> Array:
        """The next ``size`` bytes as an array of ``dtype`` (``named`` so in errors) and
        ``shape``: 422 when ``size`` is not the shape's byte length or more than is left."""
        count = 1
        for s in shape:
            count *= s
        if not isinstance(size, int) or isinstance(size, bool) or size != count * dtype.itemsize:
            raise InvalidArray(
                f"{where}: binary_data_size is {orjson.dumps(size)[:32].decode()}; shape "
                f"{shape} of {named} is {count * dtype.itemsize} bytes",
                errors=[((where, "binary_data_size"), "does not match shape and dtype")],
            )
        left = self.data.shape[0] - self.offset
        if size > left:
            raise InvalidArray(
                f"{where}: binary_data_size is {size} but only {left} bytes of binary data "
                "are left in the body",
                errors=[((where, "binary_data_size"), "more than the body holds")],
            )
        raw = self.data[self.offset : self.offset + size]
        self.offset += size
        return aligned(raw.view(dtype).reshape(shape))

    def check_used(self, what: str) -> None:
        """422 unless every byte after the header belongs to an array."""
        if self.offset != self.data.shape[0]:
            raise Unprocessable(
                f"the body has {self.data.shape[0]} bytes after the JSON header but {what} "
                f"binary_data_size add up to {self.offset}",
                errors=[((HEADER_LENGTH,), "the binary data sizes do not add up to the body")],
            )


def aligned(array: Array) -> Array:
    """The array, or a copy where it sits at an odd offset: the kernels are compiled for aligned
    arrays (the copy is within the request's reserved demand: its inputs in their own dtype)."""
    return array if array.flags.aligned else array.copy()


def raw_bytes(array: Array) -> memoryview:
    """The bytes of a C-contiguous array, to be sent after the JSON header."""
    return array.reshape(-1).data.cast("B")


def framed(header: bytes, buffers: list[memoryview]) -> Encoded:
    """A framed answer: its JSON header, then the arrays' bytes."""
    return Encoded([header, *buffers])
