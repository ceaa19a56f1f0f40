"""The dtypes arrays travel in (packed and binary arrays, /v2 tensors): every name a request may
give one by, the numpy dtype its bytes are viewed as, and the widening of half precision.

Pure numpy, so that the codecs and the HTTP contract (``schemas``, for the OpenAPI enum) share
one table without importing each other.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .jit import Array

# bfloat16 has no numpy dtype. Its bytes are viewed as two opaque bytes ("V2"), which numpy
# refuses to turn into numbers: code that forgets to ``widen`` them fails loudly instead of
# reading bit patterns as integers. Its bits are the top half of a float32's (see ``widen``).
BFLOAT16 = np.dtype("V2")
FLOAT16 = np.dtype("<f2")
# The packed dtypes by canonical name: the dtype a packed array's bytes are viewed as.
CANONICAL_DTYPES: dict[str, np.dtype[Any]] = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": FLOAT16,
    "bfloat16": BFLOAT16,
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
}
HALF_DTYPES = (FLOAT16, BFLOAT16)  # decoded to float32; computed in float32 unless float64 asked


def _spellings() -> tuple[dict[str, np.dtype[Any]], frozenset[str]]:
    """Every name ``numpy.dtype`` reads as one of the canonical types (its names such as
    ``double``, ``half``, ``int``, its type codes ``d``, ``e``, ``q`` and kind-size codes ``f8``,
    each code with an optional byte-order mark ``<``, ``=`` or ``|``), and apart, the big-endian
    ones (``>f8``), which are refused: packed data is little-endian (native on every machine
    lossd runs on). Asked of numpy once, at import, so a request only looks a name up."""
    codes = [*np.typecodes["All"], *(f"{kind}{size}" for kind in "fi" for size in (2, 4, 8))]
    names = [name for name in np.sctypeDict if isinstance(name, str)]
    candidates = names + [mark + code for code in codes for mark in ("", "<", "=", "|", ">")]
    wanted = {dtype: name for name, dtype in CANONICAL_DTYPES.items() if dtype != BFLOAT16}
    found: dict[str, np.dtype[Any]] = {}
    big_endian = set()
    for candidate in candidates:
        try:
            with warnings.catch_warnings():  # numpy deprecates some codes (``a``): not ours
                warnings.simplefilter("ignore")
                dtype = np.dtype(candidate)
        except (TypeError, ValueError, SyntaxError):
            continue
        little = dtype.newbyteorder("<")
        if little not in wanted:
            continue
        if dtype.str.startswith(">"):
            big_endian.add(candidate)
        else:
            found[candidate] = CANONICAL_DTYPES[wanted[little]]
    return {**CANONICAL_DTYPES, **found}, frozenset(big_endian)


# Every dtype name a packed array may give -> the dtype its bytes are viewed as (a superset of
# CANONICAL_DTYPES: numpy's spellings of the same types). ``wire_dtype`` looks names up here.
PACKED_DTYPES, BIG_ENDIAN_DTYPES = _spellings()
HALF_NAMES = frozenset(name for name, dtype in PACKED_DTYPES.items() if dtype in HALF_DTYPES)


def held_itemsize(dtype: np.dtype[Any]) -> int:
    """Bytes per element that decoding an array of this wire dtype holds at once: its bytes,
    and for half precision also the float32 copy they are widened to (``widen``)."""
    return dtype.itemsize + (4 if dtype in HALF_DTYPES else 0)


def widen(array: Array) -> Array:
    """A float16 or bfloat16 array (``HALF_DTYPES``) as the float32 array of the same values,
    NaN and infinities included; any other array as it is. bfloat16's 16 bits are the top 16
    bits of the float32 of the same value, so the float32's bits are them shifted left 16."""
    if array.dtype == FLOAT16:
        return array.astype(np.float32)
    if array.dtype == BFLOAT16:
        return (array.view("<u2").astype("<u4") << 16).view("<f4")
    return array
