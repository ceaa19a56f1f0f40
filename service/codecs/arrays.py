"""JSON lists and packed base64 arrays <-> numpy, with the checks the contract sets on arrays.

A decoded array is rank 1 or 2 (``predictions`` also rank 3, (N, T, C) for ctc), finite, and numeric (float32, float64, int32 or int64; a float16
or bfloat16 packed array is widened to float32 as it is decoded). A long list of numbers arrives
already parsed (``numbers.NumberList``, read without the GIL); other list input is turned into an
array by numpy in C, the only extra pass a type scan that catches booleans, which numpy would
silently read as 0 and 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from typing import Any

import numpy as np

from ..dtypes import BIG_ENDIAN_DTYPES, CANONICAL_DTYPES, widen
from ..dtypes import PACKED_DTYPES as PACKED_DTYPES  # where the codecs have looked names up
from ..errors import InvalidArray, LossdError, TooManyElements, shown
from ..jit import Array
from .base64 import Base64, b64decode
from .jsontext import Blob
from .numbers import NumberList

_PACKED_KEYS = frozenset({"dtype", "shape", "data"})
_NUMBER_TYPES = frozenset({int, float})
_SHOWN_KEYS = 3  # unexpected keys named in an error
# The field that may also be rank 3, (N, T, C) (ctc; the core refuses it for every other loss).
RANK3_FIELD = "predictions"


def max_rank(field: str) -> int:
    """The highest rank the array ``field`` may have: 3 for predictions, else 2."""
    return 3 if field == RANK3_FIELD else 2


def decode_array(value: object, field: str, max_elements: int) -> Array:
    """Decode one request array (JSON list or packed object) into a numpy array of rank 1 or 2
    (or 3: ``max_rank``)."""
    if isinstance(value, NumberList):
        return _decode_parsed(value, field, max_elements)
    if isinstance(value, list):
        return _decode_list(value, field, max_elements)
    if isinstance(value, dict):
        return _decode_packed(value, field, max_elements)
    raise InvalidArray(
        f"`{field}` must be a JSON list or a packed array object",
        errors=[((field,), "expected a list or {dtype, shape, data}")],
    )


def _decode_list(value: list[Any], field: str, max_elements: int) -> Array:
    rank2 = bool(value) and isinstance(value[0], list)
    rank3 = rank2 and bool(value[0]) and isinstance(value[0][0], list)
    count = len(value) * (len(value[0]) if rank2 else 1) * (len(value[0][0]) if rank3 else 1)
    if count > max_elements:
        raise TooManyElements(
            f"`{field}` has more than {max_elements} elements (LOSSD_MAX_ELEMENTS)",
            errors=[((field,), "too many elements")],
        )
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError):
        array = np.empty(0, dtype=object)
    ranks = range(1, max_rank(field) + 1)
    if array.dtype.kind not in "fiu" or array.ndim not in ranks or array.size > max_elements:
        raise _list_problem(value, field, max_elements)
    items = chain.from_iterable(value) if rank2 else value
    if rank3:
        items = chain.from_iterable(items)
    if not _NUMBER_TYPES.issuperset(map(type, items)):
        raise _list_problem(value, field, max_elements)
    if array.ndim >= 2 and 0 in array.shape[1:]:
        raise InvalidArray(
            f"`{field}` has rows with no elements",
            errors=[((field, 0), "a row needs at least one element")],
        )
    if array.dtype.kind == "u":
        # Integers past int64 are read as float64, as orjson already reads those past uint64.
        array = array.astype(np.float64)
    return array


def _decode_parsed(value: NumberList, field: str, max_elements: int) -> Array:
    """A list the number parser read (jsontext.lift): the array ``_decode_list`` would give."""
    array = value.array
    if array.size > max_elements:
        raise TooManyElements(
            f"`{field}` has more than {max_elements} elements (LOSSD_MAX_ELEMENTS)",
            errors=[((field,), "too many elements")],
        )
    return array


def _list_problem(value: list[Any], field: str, max_elements: int) -> InvalidArray:
    """Find the first bad element of a list that numpy refused, to say where it is."""
    if not value:
        return InvalidArray(f"`{field}` is not a numeric array", errors=[((field,), "invalid")])
    nested = isinstance(value[0], list) and bool(value[0]) and isinstance(value[0][0], list)
    if max_rank(field) == 3 and nested:
        return _rank3_problem(value, field)
    rank2 = isinstance(value[0], list)
    width = len(value[0]) if rank2 else 0
    for i, row in enumerate(value):
        if rank2:
            if not isinstance(row, list) or len(row) != width:
                return InvalidArray(
                    f"`{field}` is ragged: row {i} is not a list of {width} numbers",
                    errors=[((field, i), f"expected a list of {width} numbers")],
                )
            for j, item in enumerate(row):
                bad = _bad_number(item)
                if bad:
                    return InvalidArray(f"`{field}[{i}][{j}]` {bad}", errors=[((field, i, j), bad)])
        else:
            if isinstance(row, list):
                if i == 0:
                    break
                return InvalidArray(
                    f"`{field}` mixes numbers and lists at index {i}",
                    errors=[((field, i), "expected a number")],
                )
            bad = _bad_number(row)
            if bad:
                return InvalidArray(f"`{field}[{i}]` {bad}", errors=[((field, i), bad)])
    return _rank_problem(field)


def _rank_problem(field: str) -> InvalidArray:
    if max_rank(field) == 3:
        return InvalidArray(
            f"`{field}` must have rank 1 (N,), rank 2 (N, C) or, for ctc, rank 3 (N, T, C) with "
            "numeric elements",
            errors=[((field,), "rank must be 1, 2 or 3")],
        )
    return InvalidArray(
        f"`{field}` must have rank 1 (N,) or rank 2 (N, C) with numeric elements",
        errors=[((field,), "rank must be 1 or 2")],
    )


def _rank3_problem(value: list[Any], field: str) -> InvalidArray:
    """The first bad place of a nested (N, T, C) list numpy refused: a ragged or mixed level,
    or an element that is no number."""
    steps, width = len(value[0]), len(value[0][0])
    for i, block in enumerate(value):
        if not isinstance(block, list) or len(block) != steps:
            return InvalidArray(
                f"`{field}` is ragged: block {i} is not a list of {steps} rows",
                errors=[((field, i), f"expected a list of {steps} rows of {width} numbers")],
            )
        for t, row in enumerate(block):
            if not isinstance(row, list) or len(row) != width:
                return InvalidArray(
                    f"`{field}` is ragged: row [{i}][{t}] is not a list of {width} numbers",
                    errors=[((field, i, t), f"expected a list of {width} numbers")],
                )
            for j, item in enumerate(row):
                bad = _bad_number(item)
                if bad:
                    where = (field, i, t, j)
                    return InvalidArray(f"`{field}[{i}][{t}][{j}]` {bad}", errors=[(where, bad)])
    return _rank_problem(field)


def _bad_number(item: object) -> str:
    if isinstance(item, bool) or not isinstance(item, int | float):
        kind = "a list" if isinstance(item, list) else type(item).__name__
        kind = {"NoneType": "null", "str": "a string", "bool": "a boolean"}.get(kind, kind)
        return f"must be a number, not {kind}"
    if isinstance(item, int) and not -(2**63) <= item < 2**64:
        return "is an integer outside the 64-bit range"
    return ""


def _decode_packed(value: dict[str, Any], field: str, max_elements: int) -> Array:
    keys = set(value)
    if keys != _PACKED_KEYS:
        missing = sorted(_PACKED_KEYS - keys)
        extra = sorted(keys - _PACKED_KEYS)
        if missing:
            what, named = "missing keys", missing
        else:
            # keys come from the client: a few of them, cut short, and only in the detail
            what = "unexpected keys"
            named = [shown(key) for key in extra[:_SHOWN_KEYS]]
            named += [f"and {len(extra) - _SHOWN_KEYS} more"] if len(extra) > _SHOWN_KEYS else []
        raise InvalidArray(
            f"packed `{field}` must have exactly dtype, shape and data: {what} {named}",
            errors=[((field,), what)],
        )
    dtype_name, shape, data = value["dtype"], value["shape"], value["data"]
    dtype = wire_dtype(dtype_name, field)
    count = check_shape(shape, field, max_elements)
    if isinstance(data, Blob):
        data = data.content()
    if not isinstance(data, str | memoryview):
        raise InvalidArray(
            f"packed `{field}.data` must be a base64 string",
            errors=[((field, "data"), "expected a string")],
        )
    raw = b64decode(data)
    if raw is None:
        raise InvalidArray(
            f"packed `{field}.data` is not valid standard base64",
            errors=[((field, "data"), "invalid base64")],
        )
    if len(raw) != count * dtype.itemsize:
        raise InvalidArray(
            f"packed `{field}.data` holds {len(raw)} bytes; shape {shape} of {dtype_name} "
            f"needs {count * dtype.itemsize}",
            errors=[((field, "data"), "byte length does not match shape and dtype")],
        )
    return from_bytes(raw, dtype, shape, f"packed `{field}`", field)


def wire_dtype(name: object, field: str) -> np.dtype[Any]:
    """The dtype to view the bytes of an array of dtype ``name`` as (``PACKED_DTYPES``): a
    canonical name or a numpy spelling of one; 422 ``invalid_array`` at ``field.dtype`` for a
    big-endian spelling or any other name."""
    dtype = PACKED_DTYPES.get(name) if isinstance(name, str) else None
    if dtype is not None:
        return dtype
    if isinstance(name, str) and name in BIG_ENDIAN_DTYPES:
        raise InvalidArray(
            f"packed `{field}.dtype` {name!r} is big-endian; packed data is little-endian: "
            f"send the bytes little-endian as {'<' + name[1:]!r}",
            errors=[((field, "dtype"), "big-endian dtypes are not accepted")],
        )
    raise InvalidArray(
        f"packed `{field}.dtype` must be one of {list(CANONICAL_DTYPES)} or a numpy spelling "
        "of one (such as <f8, f4, f2, half, i8; little-endian or native)",
        errors=[((field, "dtype"), "unsupported dtype")],
    )


def from_bytes(raw: Array, dtype: np.dtype[Any], shape: list[int], what: str, field: str) -> Array:
    """The array of ``shape`` whose little-endian bytes are ``raw`` (uint8, of the right
    length), viewed as ``dtype`` (``wire_dtype``): half precision widened to float32 (``widen``);
    a floating-point array refused with 422 when it holds NaN or infinity (``check_finite``)."""
    array = widen(raw.view(dtype).reshape(shape))
    if array.dtype.kind == "f":
        check_finite(array, what, field)
    return array


def check_shape(shape: object, field: str, max_elements: int, kind: str = "packed") -> int:
    """The element count of a declared shape (a packed or binary array's): 422 unless it is
    ``[N]`` or ``[N, C]`` (predictions: or ``[N, T, C]``) of non-negative integers with C > 0,
    413 past ``max_elements``."""
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= max_rank(field)
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        if max_rank(field) == 3:
            raise InvalidArray(
                f"{kind} `{field}.shape` must be a list of 1, 2 or (for ctc) 3 non-negative "
                "integers",
                errors=[((field, "shape"), "expected [N], [N, C] or [N, T, C]")],
            )
        raise InvalidArray(
            f"{kind} `{field}.shape` must be a list of 1 or 2 non-negative integers",
            errors=[((field, "shape"), "expected [N] or [N, C]")],
        )
    count = 1
    for s in shape:
        count *= s  # Python integers: a product of huge dimensions cannot overflow
    if count > max_elements:
        raise TooManyElements(
            f"`{field}` has more than {max_elements} elements (LOSSD_MAX_ELEMENTS)",
            errors=[((field, "shape"), "too many elements")],
        )
    if max(shape) > max_elements:
        # [0, 2**62] holds no element, but numpy cannot even describe an empty array that wide
        raise TooManyElements(
            f"`{field}` has rows of more than {max_elements} elements (LOSSD_MAX_ELEMENTS)",
            errors=[((field, "shape"), "too many elements in a row")],
        )
    if len(shape) >= 2 and 0 in shape[1:]:
        raise InvalidArray(
            f"{kind} `{field}` has rows with no elements",
            errors=[((field, "shape"), "C must be at least 1")],
        )
    return count


@contextmanager
def located(field: str) -> Iterator[None]:
    """Errors about the array ``field`` located in the request document: an extra named array,
    ``inputs.var``, at ``["inputs", "var", ...]`` rather than at its dotted name."""
    try:
        yield
    except LossdError as exc:
        dotted, parts = shown(field), field.split(".", 1)
        exc.errors = [
            ([*parts, *loc[1:]] if loc[:1] == [dotted] else loc, msg) for loc, msg in exc.errors
        ]
        raise


def check_finite(array: Array, what: str, field: str) -> None:
    """422 ``invalid_array`` naming the first NaN or infinity of ``array`` (or, in float32, a
    number beyond its range) with its index."""
    finite = np.isfinite(array)
    if not finite.all():
        where = [int(k) for k in np.unravel_index(int(np.argmin(finite)), array.shape)]
        raise InvalidArray(
            f"{what} contains NaN or Infinity at index {where}",
            errors=[((field, *where), "must be finite")],
        )


def encode_array(array: Array, array_format: str) -> object:
    """A response array: the numpy array itself (orjson writes it as a list) or a packed object."""
    if array_format == "packed":
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        return {"dtype": array.dtype.name, "shape": list(array.shape), "data": Base64(data)}
    return array
