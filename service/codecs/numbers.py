"""JSON lists of numbers read into numpy arrays by ``nogil`` kernels, as orjson and numpy would.

orjson builds a Python float or int for every number of a list (and numpy then reads them one by
one), holding the GIL for seconds on a large body: the event loop stalls meanwhile. Here a scan
finds the arrays that are object members (``member_lists``), ``list_shape`` checks that one is a
rank 1 or 2 list of numbers in rows of equal length and counts it, and ``fill_floats`` or
``fill_ints`` writes its numbers into an array, all without the GIL.

The arrays are the ones the orjson + ``np.array`` path gives, bit for bit: a list of integer
tokens (no ``.`` or exponent) is int64, anything else float64, each float token correctly rounded
and each integer token converted as Python's ``float(int)`` does (round half to even). A float
token goes by Clinger's exact fast path when its digits fit in 53 bits and its power of ten in
22, else by the Eisel-Lemire algorithm when its digits fit in 64 bits (a 128-bit product with a
table of powers of five; it refuses the few tokens it cannot round with certainty), else by
glibc ``strtod``, which rounds correctly at any length but costs ten times as much. Most doubles
printed in full (16 or 17 digits, as ``repr`` and orjson print random ones) have digits beyond 53
bits, so without Eisel-Lemire half of a list's numbers went to strtod. What the scan does not
take (other tokens, ragged rows, deeper nesting, empty lists, integers beyond int64, numbers
beyond float64, invalid JSON) is left to orjson, whose errors then stay as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, SupportsIndex, cast, overload

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba.core import cgutils, types
from numba.extending import intrinsic

from ..jit import Array, scalar

# Statuses of ``list_shape`` and the fills: only OK lifts the list out of orjson's way.
OK = 0
OTHER = 1  # not a rectangular rank 1 or 2 list of JSON numbers (orjson and arrays.py say why)
INT_RANGE = 2  # an integer token beyond int64 (numpy reads those as uint64 or float64)
FLOAT_RANGE = 3  # a number beyond float64 (orjson refuses it)

# The containers a scan tracks by position; members nested deeper are not lifted.
MAX_DEPTH = 64

# 10**k, exact in float64 for k <= 22 (Clinger's fast path).
_POWERS = np.array([10.0**k for k in range(23)])
_MANTISSA_MAX = 1 << 53

# The decimal exponents the Eisel-Lemire path takes: beyond them every 64-bit mantissa gives 0 or
# inf (strtod answers those).
_Q_MIN, _Q_MAX = -342, 308


def _powers_of_five() -> tuple[Array, Array, Array]:
    """For each q in [_Q_MIN, _Q_MAX]: 5**q as a 128-bit significand (its high and low 64 bits;
    truncated for q >= 0, and for q < 0 one above the truncated quotient, so that a product
    errs only one way, as fast_float's table), and q + floor(log2(5**q)) + 1086, the biased
    binary exponent of 10**q's significand taken with a 64-bit mantissa's top bit."""
    high = np.empty(_Q_MAX - _Q_MIN + 1, dtype=np.uint64)
    low = np.empty_like(high)
    base = np.empty(high.shape, dtype=np.int64)
    for k, q in enumerate(range(_Q_MIN, _Q_MAX + 1)):
        if q >= 0:
            c = 5**q
            log2 = c.bit_length() - 1
        else:
            divisor = 5**-q
            log2 = -divisor.bit_length()  # 5**-q is no power of two: floor(log2(5**q))
            c = 2 ** (divisor.bit_length() + 127 if q >= -17 else 2 * divisor.bit_length() + 64)
            c = c // divisor + 1
        c = c << max(0, 127 - (c.bit_length() - 1)) >> max(0, c.bit_length() - 128)
        high[k], low[k] = c >> 64, c & ((1 << 64) - 1)
        base[k] = q + log2 + 1086
    return high, low, base


_FIVE_HIGH, _FIVE_LOW, _FIVE_BASE = _powers_of_five()
_ZERO, _ONE = np.uint64(0), np.uint64(1)
_NINE_BITS = np.uint64(0x1FF)


@intrinsic
def _strtod(typingctx: Any, address: Any) -> Any:
    """glibc ``strtod`` of the text at ``address``: the double and the address it stopped at
    (linked by name: a ctypes function pointer would keep the kernel out of numba's cache)."""
    sig = types.Tuple((types.float64, types.uintp))(types.uintp)  # type: ignore[no-untyped-call]

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        char_p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.DoubleType(), [char_p, char_p.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "strtod")  # type: ignore[no-untyped-call]
        stop = cgutils.alloca_once(builder, char_p)  # type: ignore[no-untyped-call]
        value = builder.call(fn, [builder.inttoptr(args[0], char_p), stop])
        end = builder.ptrtoint(builder.load(stop), context.get_value_type(types.uintp))
        return context.make_tuple(builder, signature.return_type, (value, end))

    return sig, codegen


strtod: Callable[[Any], tuple[float, int]] = cast(Any, _strtod)  # numba adds the typing context


@intrinsic
def _full_product(typingctx: Any, a: Any, b: Any) -> Any:
    """The 128-bit product of two uint64: (high, low) 64 bits."""
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)  # type: ignore[no-untyped-call]

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        wide, word = ir.IntType(128), ir.IntType(64)
        product = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        high = builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), word)
        return context.make_tuple(
            builder, signature.return_type, (high, builder.trunc(product, word))
        )

    return sig, codegen


@intrinsic
def _leading_zeros(typingctx: Any, a: Any) -> Any:
    """The leading zero bits of a nonzero uint64."""
    sig = types.uint64(types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@intrinsic
def _bits_to_float(typingctx: Any, bits: Any) -> Any:
    """The float64 whose IEEE 754 bits are the uint64 ``bits``."""
    sig = types.float64(types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


full_product: Callable[[Any, Any], tuple[Any, Any]] = cast(Any, _full_product)
leading_zeros: Callable[[Any], Any] = cast(Any, _leading_zeros)
bits_to_float: Callable[[Any], float] = cast(Any, _bits_to_float)


@scalar
def _is_space(c: int) -> bool:
    return c == 32 or c == 10 or c == 13 or c == 9


@scalar
def _skip_space(buf: Array, i: int, end: int) -> int:
    while i < end and _is_space(buf[i]):
        i += 1
    return i


@scalar
def member_lists(buf: Array, min_len: int) -> Array:
    """(depth, key start, key end, parent start, parent end, start, end) of every array at least
    ``min_len`` bytes long that is the value of an object member; ``depth`` counts the
    containers around it (1 for a member of the top-level object), the key is its raw bytes
    between the quotes, and the parent is the key of the object holding it (that of a member of
    the top-level object, for an array at depth 2; -1 at depth 1).

    One pass that skips strings (and their escapes) and tracks nesting; it assumes nothing of
    the text's validity, which ``list_shape`` and orjson check.
    """
    n = buf.shape[0]
    starts = np.full(MAX_DEPTH, -1, dtype=np.int64)
    keys = np.zeros((MAX_DEPTH, 2), dtype=np.int64)
    found = []
    depth = 0
    key_start = key_end = -1
    after_string = False  # the last token was a string: a ':' makes it a key
    after_key = False  # a ':' came: the next token is a member's value
    i = 0
    while i < n:
        c = buf[i]
        if c == 34:  # '"'
            j = i + 1
            while j < n and buf[j] != 34:
                j += 2 if buf[j] == 92 else 1
            key_start, key_end = i + 1, j
            after_string, after_key = True, False
            i = j + 1
            continue
        if _is_space(c):
            i += 1
            continue
        if c == 58:  # ':'
            after_key = after_string
        elif c == 91 or c == 123:  # '[' '{'
            if depth < MAX_DEPTH:
                starts[depth] = i if (c == 91 and after_key) else -1
                keys[depth, 0] = key_start
                keys[depth, 1] = key_end
            depth += 1
            after_key = False
        elif c == 93 or c == 125:  # ']' '}'
            depth -= 1
            if 0 <= depth < MAX_DEPTH and starts[depth] >= 0:
                if c == 93 and i + 1 - starts[depth] >= min_len:
                    parent_start = keys[depth - 1, 0] if depth > 1 else -1
                    parent_end = keys[depth - 1, 1] if depth > 1 else -1
                    found.append(
                        (
                            depth,
                            keys[depth, 0],
                            keys[depth, 1],
                            parent_start,
                            parent_end,
                            starts[depth],
                            i + 1,
                        )
                    )
                starts[depth] = -1
        else:
            after_key = False
        after_string = False
        i += 1
    out = np.empty((len(found), 7), dtype=np.int64)
    for k in range(len(found)):
        for m in range(7):
            out[k, m] = found[k][m]
    return out


@scalar
def _digits_end(buf: Array, j: int, end: int) -> int:
    """The end of the run of ASCII digits at ``j``; -1 when none is there."""
    if j >= end or not 48 <= buf[j] <= 57:
        return -1
    while j < end and 48 <= buf[j] <= 57:
        j += 1
    return j


@scalar
def _number_end(buf: Array, i: int, end: int) -> tuple[int, int]:
    """(end of the JSON number token at ``i`` or -1 if none is there, kind): kind 0 an integer
    token within int64, 1 a float token, 2 an integer token beyond int64."""
    j = i
    negative = j < end and buf[j] == 45  # '-'
    if negative:
        j += 1
    if j >= end or not 48 <= buf[j] <= 57:
        return -1, 0
    digits_start = j
    j = j + 1 if buf[j] == 48 else _digits_end(buf, j, end)  # a leading zero stands alone
    digits = j - digits_start
    kind = 0
    if j < end and buf[j] == 46:  # '.'
        j = _digits_end(buf, j + 1, end)
        if j < 0:
            return -1, 0
        kind = 1
    if j < end and (buf[j] == 101 or buf[j] == 69):  # 'e' 'E'
        j += 1
        if j < end and (buf[j] == 43 or buf[j] == 45):
            j += 1
        j = _digits_end(buf, j, end)
        if j < 0:
            return -1, 0
        kind = 1
    if kind == 0 and digits >= 19:
        # beyond 18 digits, compare with the int64 bounds (the magnitude fits in uint64 up to 19)
        if digits > 19:
            return j, 2
        magnitude = np.uint64(0)
        for k in range(digits_start, j):
            magnitude = magnitude * np.uint64(10) + np.uint64(buf[k] - 48)
        limit = np.uint64(9223372036854775808) if negative else np.uint64(9223372036854775807)
        if magnitude > limit:
            return j, 2
    return j, kind


@scalar
def list_shape(buf: Array, start: int, end: int) -> tuple[int, int, int, int, bool]:
    """(status, rank, rows, width, floats) of the JSON list ``buf[start:end]``: OK for a
    non-empty rank 1 list of numbers or a rank 2 list of equally long non-empty rows of numbers;
    ``floats`` when a token has a fraction or an exponent (the array is then float64)."""
    floats = False
    i = _skip_space(buf, start + 1, end)
    rank = 2 if i < end and buf[i] == 91 else 1
    rows = 0
    width = 0
    while True:
        count = 0
        if rank == 2:
            if i >= end or buf[i] != 91:
                return OTHER, rank, rows, width, floats
            i = _skip_space(buf, i + 1, end)
        while True:
            j, kind = _number_end(buf, i, end)
            if j < 0:
                return OTHER, rank, rows, width, floats
            if kind == 2:
                return INT_RANGE, rank, rows, width, floats
            floats = floats or kind == 1
            count += 1
            i = _skip_space(buf, j, end)
            if i < end and buf[i] == 44:  # ','
                i = _skip_space(buf, i + 1, end)
                continue
            if i < end and buf[i] == 93:  # ']'
                i += 1
                break
            return OTHER, rank, rows, width, floats
        if rank == 1:
            rows = count
            break
        if rows == 0:
            width = count
        elif count != width:
            return OTHER, rank, rows, width, floats
        rows += 1
        i = _skip_space(buf, i, end)
        if i < end and buf[i] == 44:
            i = _skip_space(buf, i + 1, end)
            continue
        if i < end and buf[i] == 93:
            i += 1
            break
        return OTHER, rank, rows, width, floats
    if i != end:
        return OTHER, rank, rows, width, floats
    return OK, rank, rows, width if rank == 2 else 1, floats


@scalar
def _parse_int(buf: Array, i: int, j: int) -> np.int64:
    """The integer token ``buf[i:j]`` (within int64: ``_number_end`` checked)."""
    negative = buf[i] == 45
    if negative:
        i += 1
    value = np.uint64(0)
    for k in range(i, j):
        value = value * np.uint64(10) + np.uint64(buf[k] - 48)
    if negative:
        return -np.int64(value - np.uint64(1)) - 1  # -2**63 included
    return np.int64(value)


@scalar
def _eisel_lemire(w: np.uint64, q: int, negative: bool) -> tuple[bool, float]:
    """(True, w * 10**q correctly rounded) for a nonzero ``w`` and q in [_Q_MIN, _Q_MAX], or
    (False, 0) when the product with the 128-bit power of five cannot decide the rounding, the
    result is subnormal or it overflows (Lemire, "Number Parsing at a Gigabyte per Second",
    2021: the 64-bit product first, the next 64 bits only when its low bits are all ones)."""
    k = q - _Q_MIN
    shift = leading_zeros(w)
    w = w << shift
    upper, lower = full_product(w, _FIVE_HIGH[k])
    if (upper & _NINE_BITS) == _NINE_BITS and lower + w < lower:
        middle, low = full_product(w, _FIVE_LOW[k])
        middle += lower
        if middle < lower:
            upper += _ONE
        if middle + _ONE == _ZERO and (upper & _NINE_BITS) == _NINE_BITS and low + w < low:
            return False, 0.0
        lower = middle
    top = upper >> np.uint64(63)
    mantissa = upper >> (top + np.uint64(9))
    if lower == _ZERO and (upper & _NINE_BITS) == _ZERO and (mantissa & np.uint64(3)) == _ONE:
        return False, 0.0  # maybe halfway between two doubles: round to even needs more
    mantissa = (mantissa + (mantissa & _ONE)) >> _ONE
    exponent = _FIVE_BASE[k] + np.int64(top) - np.int64(shift)
    if mantissa >= _ONE << np.uint64(53):  # rounding carried into a new bit
        mantissa = _ONE << np.uint64(52)
        exponent += 1
    if exponent < 1 or exponent > 2046:
        return False, 0.0  # subnormal or beyond float64
    bits = (mantissa & ~(_ONE << np.uint64(52))) | (np.uint64(exponent) << np.uint64(52))
    if negative:
        bits |= _ONE << np.uint64(63)
    return True, bits_to_float(bits)


@scalar
def _parse_float(buf: Array, i: int, j: int) -> float:
    """The float token ``buf[i:j]``, correctly rounded: exactly ``m * 10**e`` or ``m / 10**-e``
    when the digits ``m`` fit in 53 bits and ``|e| <= 22`` (one rounding of exact operands, as
    Clinger showed), else by Eisel-Lemire when they fit in 64 bits, else ``strtod``; NaN when
    strtod does not read exactly the token."""
    k = i
    negative = buf[k] == 45
    if negative:
        k += 1
    mantissa = np.uint64(0)
    significant = 0
    exponent = 0
    fraction = False
    while k < j and buf[k] != 101 and buf[k] != 69:
        c = buf[k]
        if c == 46:
            fraction = True
        else:
            if significant < 19:
                mantissa = mantissa * np.uint64(10) + np.uint64(c - 48)
                if mantissa != 0:
                    significant += 1
            else:
                significant = 99  # too many digits for the fast path
            if fraction:
                exponent -= 1
        k += 1
    if k < j:
        k += 1
        sign = 1
        if buf[k] == 43 or buf[k] == 45:
            sign = -1 if buf[k] == 45 else 1
            k += 1
        e = 0
        while k < j and e < 100_000:
            e = e * 10 + (buf[k] - 48)
            k += 1
        if k < j:
            significant = 99  # an exponent of many digits: strtod
        exponent += sign * e
    if significant <= 19 and mantissa <= _MANTISSA_MAX and -22 <= exponent <= 22:
        value = float(mantissa)
        power = float(_POWERS[abs(exponent)])
        value = value * power if exponent >= 0 else value / power
        return -value if negative else value
    if significant <= 19 and mantissa != _ZERO and _Q_MIN <= exponent <= _Q_MAX:
        found, value = _eisel_lemire(mantissa, exponent, negative)
        if found:
            return value
    start = buf.ctypes.data + np.uintp(i)
    value, stop = strtod(start)
    if stop != start + np.uintp(j - i):
        return np.nan  # strtod read another token (a locale with another decimal point): refused
    return value


@scalar
def _next_number(buf: Array, i: int, end: int) -> int:
    """The start of the next number token at or after ``i`` (past brackets, commas, spaces)."""
    while i < end:
        c = buf[i]
        if c == 45 or 48 <= c <= 57:
            return i
        i += 1
    return end


@scalar
def fill_floats(buf: Array, start: int, end: int, out: Array) -> int:
    """Write the numbers of the list ``buf[start:end]`` (checked by ``list_shape``) into
    ``out`` as float64; FLOAT_RANGE when one is beyond float64 (or strtod misread it)."""
    i = start
    for k in range(out.shape[0]):
        i = _next_number(buf, i, end)
        j, kind = _number_end(buf, i, end)
        if kind == 0:
            out[k] = float(_parse_int(buf, i, j))
        else:
            value = _parse_float(buf, i, j)
            if not np.isfinite(value):
                return FLOAT_RANGE
            out[k] = value
        i = j
    return OK


@scalar
def fill_ints(buf: Array, start: int, end: int, out: Array) -> int:
    """Write the integer tokens of the list ``buf[start:end]`` (checked by ``list_shape``) into
    ``out`` as int64."""
    i = start
    for k in range(out.shape[0]):
        i = _next_number(buf, i, end)
        j, _ = _number_end(buf, i, end)
        out[k] = _parse_int(buf, i, j)
        i = j
    return OK


def read_list(
    buf: Array, start: int, end: int, reserve: Callable[[int], None] | None = None
) -> Array | None:
    """The JSON list ``buf[start:end]`` as the array orjson + ``np.array`` would make of it, or
    None when it is anything but a rank 1 or 2 list of numbers this parser takes. ``reserve``
    is told the array's bytes before it is allocated."""
    status, rank, rows, width, floats = list_shape(buf, start, end)
    if status != OK:
        return None
    if reserve is not None:
        reserve(rows * width * 8)
    out = np.empty(rows * width, dtype=np.float64 if floats else np.int64)
    filled = fill_floats(buf, start, end, out) if floats else fill_ints(buf, start, end, out)
    if filled != OK:
        return None
    return out.reshape((rows, width) if rank == 2 else (rows,))


class NumberList(list[Any]):
    """A JSON list of numbers already parsed: a read-only list view of the array it became.

    It stands in the parsed document where orjson would have put a list of Python numbers, so
    code that reads a list's length and first row still works, without the numbers ever being
    Python objects. ``arrays.decode_array`` takes ``array`` itself; the list's own storage is
    empty, so C code that reads lists directly (``np.array``, orjson) must not be handed one.
    """

    __slots__ = ("array",)

    def __init__(self, array: Array) -> None:
        super().__init__()
        self.array = array

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @overload
    def __getitem__(self, index: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> NumberList: ...
    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        item = self.array[index]
        if isinstance(index, slice) or item.ndim:
            return NumberList(item)
        return item.item()

    def __iter__(self) -> Iterator[Any]:
        return (self[k] for k in range(len(self)))

    def __bool__(self) -> bool:
        return len(self) > 0

    def __eq__(self, other: object) -> bool:
        return list(self) == other

    def __repr__(self) -> str:
        return f"NumberList({self.array.dtype.name}, shape={self.array.shape})"
