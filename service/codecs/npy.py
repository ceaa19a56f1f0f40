"""``.npy`` files (numpy's ``np.save`` format) -> arrays that are views of their bytes.

The header is read by ``numpy.lib.format``; the data is not copied. Only the packed arrays'
dtypes are taken (``arrays.PACKED_DTYPES``, in either byte order); object and structured arrays
never are (reading them would unpickle the client's bytes).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from numpy.lib import format as npformat

from ..dtypes import CANONICAL_DTYPES, PACKED_DTYPES
from ..errors import InvalidArray
from ..jit import Array
from .arrays import check_shape
from .framing import aligned

# numpy's own bound on the header it reads (``max_header_size``): a real one is 118 bytes.
MAX_HEADER = 10000
_READERS = {
    (1, 0): (2, npformat.read_array_header_1_0),
    (2, 0): (4, npformat.read_array_header_2_0),
    # 3.0 differs from 2.0 only in allowing UTF-8 field names, which no accepted dtype has
    (3, 0): (4, npformat.read_array_header_2_0),
}


def _problem(field: str, detail: str) -> InvalidArray:
    return InvalidArray(f"the .npy part `{field}` {detail}", errors=[((field,), detail)])


def read_npy(data: Array, field: str, max_elements: int) -> Array:
    """The array of a ``.npy`` file's bytes (uint8), a view of them with the file's dtype, byte
    order and memory order (``decoded`` makes it what the core takes). 422 for a file that is no
    ``.npy``, is cut short or has bytes left over, or holds an unaccepted dtype; 413 past
    ``max_elements``."""
    head = bytes(data[:12])
    try:
        version = npformat.read_magic(io.BytesIO(head))
    except ValueError:
        raise _problem(field, "is not a .npy file (np.save writes one)") from None
    if version not in _READERS:
        raise _problem(field, f"has .npy format version {version}, not 1.0, 2.0 or 3.0")
    width, read_header = _READERS[version]
    preamble = npformat.MAGIC_LEN + width
    length = int.from_bytes(head[npformat.MAGIC_LEN : preamble], "little")
    if len(head) < preamble or length > MAX_HEADER or preamble + length > data.shape[0]:
        raise _problem(field, "has a .npy header that is cut short or too long")
    stream = io.BytesIO(bytes(data[npformat.MAGIC_LEN : preamble + length]))
    try:
        shape, fortran, dtype = read_header(stream, max_header_size=MAX_HEADER)
    except (ValueError, TypeError, SyntaxError):
        raise _problem(field, "has a .npy header numpy cannot read") from None
    name = _accepted(dtype)
    if name is None:
        accepted = ", ".join(CANONICAL_DTYPES)
        raise _problem(field, f"has dtype {dtype.str!r}; .npy arrays must be one of {accepted}")
    count = check_shape(list(shape), field, max_elements, "npy")
    body = data[preamble + length :]
    if body.shape[0] != count * dtype.itemsize:
        raise _problem(
            field,
            f"holds {body.shape[0]} bytes of data; shape {list(shape)} of {name} needs "
            f"{count * dtype.itemsize}",
        )
    array = body.view(dtype)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _accepted(dtype: np.dtype[Any]) -> str | None:
    """The packed dtype name of a .npy dtype in either byte order; None for any other."""
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        return None
    if dtype.kind == "V":  # raw bytes; bfloat16 is only ever named, in packed or binary arrays
        return None
    little = dtype.newbyteorder("<")
    return next((name for name, known in PACKED_DTYPES.items() if known == little), None)


def decoded(array: Array) -> Array:
    """An array read from a body as the core takes it: little-endian, C-ordered, aligned. A view
    stays a view where it already is one; a conversion is a copy within the request's reserved
    demand (its inputs in their own dtype, ``core.Demand``)."""
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return aligned(np.ascontiguousarray(array))
