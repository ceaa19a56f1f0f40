"""Unit and property tests of ``service.codecs.arrays``: decoding request arrays and encoding responses.

No server: ``decode_array`` and ``encode_array`` are called directly. The contract is SPEC
section 2: a decoded array is rank 1 or 2, finite and numeric, and anything else is a
``LossdError`` (422, or 413 past the element limit), never another exception.
"""

from __future__ import annotations

import base64
import binascii
import string
from fractions import Fraction
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.codecs.arrays import decode_array, encode_array
from service.codecs.jsontext import dumps as response_dumps
from service.codecs.numbers import NumberList, read_list
from service.errors import InvalidArray, LossdError, TooManyElements

DTYPES = ("float64", "float32", "int32", "int64")  # the packed dtypes of SPEC section 2
# dtype names a packed array may give (or wrongly give) that decode to none of its own: halves
# (decoded to float32, SPEC section 2's amendment), spellings, a big-endian one
WIRE_ONLY = ("float16", "bfloat16", "<f2", "half", "f8", ">f8")
LIMIT = 1_000_000  # an element limit none of the generated arrays reaches
BOUNDED = settings(max_examples=200, deadline=None)
Array = np.ndarray[Any, np.dtype[Any]]


def pack(array: Array) -> dict[str, Any]:
    """The packed form of ``array``, built independently of ``encode_array``: numpy and base64."""
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return {
        "dtype": array.dtype.name,
        "shape": list(array.shape),
        "data": base64.b64encode(little.tobytes()).decode("ascii"),
    }


def little_bytes(array: Array) -> bytes:
    """The little-endian, C-ordered bytes of ``array``."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def response_bytes(doc: dict[str, Any]) -> bytes:
    """``doc`` written the way the service writes response bodies (``service.codecs.jsontext.dumps``)."""
    out = response_dumps(doc)
    return out if isinstance(out, bytes) else bytes(out.tobytes())


# --- strategies ----------------------------------------------------------------------------------

shapes = st.one_of(
    st.tuples(st.integers(0, 20)),
    st.tuples(st.integers(0, 8), st.integers(1, 5)),
)


@st.composite
def finite_arrays(draw: st.DrawFn) -> Array:
    """A finite float64/float32/int32/int64 array of rank 1 or 2 (rows have at least 1 element)."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if dtype.kind == "f":
        elements = st.floats(allow_nan=False, allow_infinity=False, width=8 * dtype.itemsize)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    array: Array = draw(hnp.arrays(dtype, draw(shapes), elements=elements))
    return array


@st.composite
def strided_arrays(draw: st.DrawFn) -> Array:
    """A finite array that may be non-contiguous (transposed or sliced) or big-endian."""
    array = draw(finite_arrays())
    if array.ndim == 2 and draw(st.booleans()):
        array = array.T if array.shape[0] >= 1 else array
    if draw(st.booleans()):
        array = array[::2]
    if draw(st.booleans()):
        array = array.astype(array.dtype.newbyteorder(">"))
    return array


# Past int64 and past float64. Kept under ~2000 digits so that a shape's element count stays under
# Python's 4300-digit str() limit; test_huge_packed_shape_is_too_many_elements covers that case.
HUGE_INTS = (2**63, 2**64, -(2**63) - 1, 10**30, 10**400, -(10**400))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=False, allow_infinity=False),  # JSON has no NaN or Infinity
    st.text(max_size=5),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=30,
)
numbers = st.one_of(st.integers(-10, 10), st.floats(-1e6, 1e6), st.sampled_from(HUGE_INTS))
# mostly numbers, sometimes anything: lists that get past numpy and need the type scan
almost_numbers = st.one_of(numbers, numbers, numbers, json_scalars)


@st.composite
def nearly_valid_lists(draw: st.DrawFn) -> Any:
    """Rank-1 or rectangular rank-2 lists of mostly numbers, sometimes ragged or with junk."""
    n = draw(st.integers(0, 8))
    if draw(st.booleans()):
        return draw(st.lists(almost_numbers, min_size=n, max_size=n))
    width = draw(st.integers(0, 4))
    row = st.lists(almost_numbers, min_size=width, max_size=width)
    rows = draw(st.lists(st.one_of(row, row, row, json_values), min_size=n, max_size=n))
    return rows


@st.composite
def packed_like(draw: st.DrawFn) -> dict[str, Any]:
    """Objects shaped like packed arrays, with any of the three keys wrong, missing or extra."""
    doc = {
        "dtype": draw(st.one_of(st.sampled_from((*DTYPES, *WIRE_ONLY)), json_scalars)),
        "shape": draw(
            st.one_of(
                st.lists(st.one_of(st.integers(-2, 6), st.sampled_from(HUGE_INTS)), max_size=3),
                json_values,
            )
        ),
        "data": draw(
            st.one_of(
                st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()), json_values
            )
        ),
    }
    if draw(st.booleans()):
        del doc[draw(st.sampled_from(sorted(doc)))]
    if draw(st.booleans()):
        doc[draw(st.text(max_size=5))] = draw(json_scalars)
    return doc


def assert_decoded_or_rejected(value: object, max_elements: int) -> None:
    """``value`` decodes to a finite numeric rank-1/2 array, or is a LossdError of 413 or 422."""
    try:
        array = decode_array(value, "predictions", max_elements)
    except LossdError as exc:
        assert exc.status in (413, 422), exc
        assert isinstance(exc, InvalidArray | TooManyElements), exc
        assert exc.detail
        return
    assert isinstance(array, np.ndarray)
    assert array.ndim in (1, 2)
    assert array.dtype.name in DTYPES
    assert array.size <= max_elements
    if array.ndim == 2:
        assert array.shape[1] >= 1
    if array.dtype.kind == "f":
        assert np.isfinite(array).all()


# --- properties ----------------------------------------------------------------------------------


@BOUNDED
@given(finite_arrays())
def test_packed_round_trip_is_bit_identical(array: Array) -> None:
    """A finite array packed with numpy and base64 decodes to the same dtype, shape and bytes."""
    decoded = decode_array(pack(array), "predictions", LIMIT)
    assert decoded.dtype == array.dtype
    assert decoded.shape == array.shape
    assert decoded.tobytes() == little_bytes(array)


@BOUNDED
@given(finite_arrays())
def test_json_list_decodes_to_the_same_values_as_packed(array: Array) -> None:
    """An array's JSON list decodes to the same values (and signs of zero) as its packed form."""
    if array.ndim == 2 and array.shape[0] == 0:
        return  # [] is rank 1 as a JSON list: an empty batch has no row width to write down
    listed = orjson.loads(orjson.dumps(array.tolist()))
    from_list = decode_array(listed, "predictions", LIMIT)
    from_packed = decode_array(pack(array), "predictions", LIMIT)
    assert from_list.shape == from_packed.shape
    assert np.array_equal(from_list, from_packed)
    if array.size:
        assert from_list.dtype.kind == from_packed.dtype.kind
    if array.dtype.kind == "f":
        assert np.array_equal(np.signbit(from_list), np.signbit(from_packed))


@BOUNDED
@given(st.one_of(json_values, nearly_valid_lists(), packed_like()), st.integers(1, 64))
@example([[2**63, 1.5]], 64)
@example([2**63, 2], 64)
def test_arbitrary_json_decodes_or_raises_lossd_error(value: object, max_elements: int) -> None:
    """Any JSON-like value decodes to a finite numeric rank-1/2 array or raises a 413/422."""
    assert_decoded_or_rejected(value, max_elements)


@BOUNDED
@given(st.data())
def test_arbitrary_bytes_as_packed_data(data: st.DataObject) -> None:
    """Any bytes as base64 ``data`` decode to exactly those bytes or raise a LossdError."""
    dtype = data.draw(st.sampled_from(DTYPES))
    shape = list(data.draw(shapes))
    needed = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = data.draw(st.one_of(st.binary(min_size=needed, max_size=needed), st.binary(max_size=96)))
    encoded = data.draw(
        st.sampled_from(
            [
                base64.b64encode(raw).decode("ascii"),
                base64.urlsafe_b64encode(raw).decode("ascii"),
                raw.decode("latin-1"),
            ]
        )
    )
    doc = {"dtype": dtype, "shape": shape, "data": encoded}
    try:
        decoded = decode_array(doc, "predictions", LIMIT)
    except LossdError as exc:
        assert exc.status == 422, exc
        return
    assert decoded.shape == tuple(shape)
    assert decoded.tobytes() == base64.b64decode(encoded, validate=True)
    if decoded.dtype.kind == "f":
        assert np.isfinite(decoded).all()


B64_ALPHABET = string.ascii_letters + string.digits + "+/"
NOT_B64 = "= \n\t-_.,*\\\x00é"


@st.composite
def base64_texts(draw: st.DrawFn) -> str:
    """Standard base64 of random bytes, sometimes with characters inserted, replaced or deleted."""
    chars = list(base64.b64encode(draw(st.binary(max_size=40))).decode("ascii"))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(chars)))
        new = draw(st.sampled_from(B64_ALPHABET + NOT_B64))
        how = draw(st.sampled_from(["insert", "replace", "delete"]))
        if how == "insert":
            chars.insert(at, new)
        elif at < len(chars):
            chars[at : at + 1] = [new] if how == "replace" else []
    return "".join(chars)


def rfc4648_decode(text: str) -> bytes | None:
    """Standard base64 with nothing extra: Python's alphabet check, plus no excess padding.

    ``b64decode(validate=True)`` (even ``strict_mode``) accepts "AAAA=" and "AAAA====", which
    RFC 4648 does not: the length must be a multiple of 4 and the padding only what is missing.
    """
    if len(text) % 4:
        return None
    try:
        out = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    padding = len(text) - len(text.rstrip("="))
    return out if len(out) == len(text) // 4 * 3 - padding else None


@BOUNDED
@given(st.one_of(base64_texts(), st.text(max_size=12)), st.sampled_from(["int32", "int64"]))
@example("AAAAAA==", "int32")  # padding where no byte is missing
@example("AAAA====", "int32")  # excess padding
@example("AAAA=", "int32")
@example("AA==AAAA", "int32")
@example("AAA", "int32")
@example("", "int32")
def test_packed_data_is_accepted_exactly_when_it_is_standard_base64(text: str, dtype: str) -> None:
    """``data`` is accepted exactly when it is RFC 4648 base64, and decodes to the same bytes."""
    expected = rfc4648_decode(text)
    itemsize = np.dtype(dtype).itemsize
    length = len(expected) if expected is not None else 0
    doc = {"dtype": dtype, "shape": [length // itemsize], "data": text}
    if expected is None or length % itemsize:
        with pytest.raises(InvalidArray) as caught:
            decode_array(doc, "t", LIMIT)
        assert caught.value.errors[0][0] == ["t", "data"]
        return
    decoded = decode_array(doc, "t", LIMIT)
    assert decoded.tobytes() == expected


@BOUNDED
@given(strided_arrays())
def test_encode_packed_then_decode_gives_the_array_back(array: Array) -> None:
    """``encode_array(a, "packed")``, written as a response and decoded again, is ``a``."""
    encoded = encode_array(array, "packed")
    assert isinstance(encoded, dict)
    assert encoded["dtype"] == array.dtype.name
    assert encoded["shape"] == list(array.shape)
    decoded = decode_array(orjson.loads(response_bytes(encoded)), "per_sample", LIMIT)
    assert decoded.dtype.name == array.dtype.name
    assert decoded.shape == array.shape
    assert decoded.tobytes() == little_bytes(array)
    assert np.array_equal(decoded, array)


# --- examples ------------------------------------------------------------------------------------


def test_encode_list_returns_the_array_itself() -> None:
    """With ``array_format: list`` the array is handed to orjson unchanged."""
    array = np.arange(6.0).reshape(3, 2)
    assert encode_array(array, "list") is array


@pytest.mark.parametrize(
    ("value", "shape", "kind"),
    [
        ([], (0,), "f"),
        ([1, 2, 3], (3,), "i"),
        ([1, 2.5], (2,), "f"),
        ([[1.0, 2.0], [3.0, 4.0]], (2, 2), "f"),
        ([-(2**63), 2**63 - 1], (2,), "i"),  # the int64 extremes are fine
        ({"dtype": "float32", "shape": [0, 3], "data": ""}, (0, 3), "f"),
        (
            {
                "dtype": "int32",
                "shape": [2],
                "data": base64.b64encode(b"\1\0\0\0\2\0\0\0").decode(),
            },
            (2,),
            "i",
        ),
    ],
    ids=["empty", "ints", "mixed", "rank2", "int64_extremes", "packed_empty_rows", "packed_int32"],
)
def test_valid_examples(value: object, shape: tuple[int, ...], kind: str) -> None:
    """Hand-picked valid arrays decode to the expected shape and kind."""
    array = decode_array(value, "predictions", LIMIT)
    assert array.shape == shape
    assert array.dtype.kind == kind


@pytest.mark.parametrize(
    ("value", "error", "loc"),
    [
        (1.5, InvalidArray, ["t"]),
        ([1, True], InvalidArray, ["t", 1]),
        ([None, 1], InvalidArray, ["t", 0]),
        ([1, "2"], InvalidArray, ["t", 1]),
        ([[1, 2], [3]], InvalidArray, ["t", 1]),
        ([[1, 2], [3, False]], InvalidArray, ["t", 1, 1]),
        ([1, [2]], InvalidArray, ["t", 1]),
        ([[[1]]], InvalidArray, ["t", 0, 0]),
        ([[]], InvalidArray, ["t", 0]),
        ([2**64], InvalidArray, ["t", 0]),
        ([0.0] * 11, TooManyElements, ["t"]),
        ([[0.0] * 4] * 3, TooManyElements, ["t"]),
        (
            {"dtype": "float64", "shape": [2**40, 2**40], "data": ""},
            TooManyElements,
            ["t", "shape"],
        ),
        ({"dtype": "float64", "shape": [11], "data": ""}, TooManyElements, ["t", "shape"]),
        ({"dtype": "uint8", "shape": [1], "data": "AQ=="}, InvalidArray, ["t", "dtype"]),
        ({"dtype": "float64", "shape": [-1], "data": ""}, InvalidArray, ["t", "shape"]),
        ({"dtype": "float64", "shape": [True], "data": ""}, InvalidArray, ["t", "shape"]),
        ({"dtype": "float64", "shape": [1, 1, 1], "data": ""}, InvalidArray, ["t", "shape"]),
        ({"dtype": "float64", "shape": [2, 0], "data": ""}, InvalidArray, ["t", "shape"]),
        ({"dtype": "float64", "shape": [1], "data": "***"}, InvalidArray, ["t", "data"]),
        ({"dtype": "float64", "shape": [2], "data": "AAAAAAAAAAA="}, InvalidArray, ["t", "data"]),
        ({"dtype": "float64", "shape": [1]}, InvalidArray, ["t"]),
        ({"dtype": "float64", "shape": [0], "data": "", "order": "C"}, InvalidArray, ["t"]),
        (pack(np.array([[1.0, 2.0], [3.0, np.nan]])), InvalidArray, ["t", 1, 1]),
        (pack(np.array([1.0, -np.inf], dtype=np.float32)), InvalidArray, ["t", 1]),
    ],
    ids=[
        "rank0",
        "bool",
        "null",
        "string",
        "ragged",
        "bool_in_row",
        "number_then_list",
        "rank3",
        "zero_width",
        "int_65_bits",
        "list_over_limit",
        "rank2_over_limit",
        "shape_overflow",
        "packed_over_limit",
        "dtype",
        "negative_shape",
        "bool_shape",
        "rank3_shape",
        "zero_width_shape",
        "bad_base64",
        "short_data",
        "missing_data",
        "extra_key",
        "packed_nan",
        "packed_neg_inf",
    ],
)
def test_rejected_examples(value: object, error: type[LossdError], loc: list[str | int]) -> None:
    """Hand-picked bad arrays raise the right error, located at the field and first bad index."""
    with pytest.raises(error) as caught:
        decode_array(value, "t", 10)
    assert caught.value.errors[0][0] == loc


def test_huge_packed_shape_is_too_many_elements() -> None:
    """A shape whose element count has thousands of digits is 413, not a ValueError from str()."""
    with pytest.raises(TooManyElements):
        decode_array({"dtype": "float64", "shape": [10**2200, 10**2200], "data": ""}, "t", 10)


# --- the nogil number parser (service/codecs/numbers.py) ------------------------------------------

NUMBER_TEXT = st.from_regex(
    r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: orjson.dumps(x).decode()),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.integers(-(2**70), 2**70).map(str),
    NUMBER_TEXT,
    st.sampled_from(
        [
            "-0",
            "-0.0",
            "0e0",
            "-0E-0",
            "4.9e-324",
            "2.4703282292062327e-324",
            "2.2250738585072011e-308",
            "1.7976931348623157e308",
            "1.7976931348623159e308",
            "9007199254740993",
            "9007199254740993.0",
            "1e23",
            "8.98846567431158e307",
        ]
    ),
)
SPACE = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])


@st.composite
def list_texts(draw: st.DrawFn) -> str:
    """A JSON list of number tokens, rank 1 or 2, with random whitespace between tokens."""
    rows = draw(st.integers(1, 6))
    width = draw(st.integers(1, 5))
    rank2 = draw(st.booleans())

    def listed(items: list[str]) -> str:
        parts = [draw(SPACE) + item + draw(SPACE) for item in items]
        return "[" + ",".join(parts) + "]"

    if not rank2:
        return listed([draw(NUMBERS) for _ in range(rows * width)])
    return listed([listed([draw(NUMBERS) for _ in range(width)]) for _ in range(rows)])


def fast_read(text: bytes) -> Array | None:
    buf = np.frombuffer(text, dtype=np.uint8)
    buf.flags.writeable = False
    return read_list(buf, 0, len(text))


@settings(max_examples=1500, deadline=None)
@given(list_texts())
def test_number_parser_matches_orjson_and_numpy_bit_for_bit(text: str) -> None:
    """The nogil parser gives the array orjson + np.array give (dtype, shape, bits), or refuses
    (None) exactly the lists that are not JSON (numbers beyond float64) or that numpy reads
    other than as int64/float64 (integers beyond int64)."""
    body = text.encode()
    fast = fast_read(body)
    try:
        expected = np.array(orjson.loads(body))
    except orjson.JSONDecodeError:
        assert fast is None
        return
    if expected.dtype not in (np.int64, np.float64):
        assert fast is None  # uint64 or object: numpy's own reading (arrays.py) says what it is
        return
    tokens = body.decode().replace("[", " ").replace("]", " ").replace(",", " ").split()
    if any(
        "." not in t and "e" not in t.lower() and not -(2**63) <= int(t) < 2**63 for t in tokens
    ):
        assert fast is None  # numpy reads int64-overflowing integers through uint64 or object
        return
    assert fast is not None
    assert fast.dtype == expected.dtype and fast.shape == expected.shape
    assert fast.tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    "text",
    [
        b"[]",
        b"[[]]",
        b"[[], []]",
        b"[1,]",
        b"[01]",
        b"[1.]",
        b"[.5]",
        b"[+1]",
        b"[-]",
        b"[1e]",
        b"[null]",
        b"[true, 1]",
        b'[1, "2"]',
        b"[1, [2]]",
        b"[[1], 2]",
        b"[[1], [2, 3]]",
        b"[[[1]]]",
        b"[NaN]",
        b"[Infinity]",
        b"[1e400]",
        b"[-1e400]",
        b"[9223372036854775808]",
        b"[-9223372036854775809]",
        b"[18446744073709551616, 1.5]",
        b"[1] x",
        b"[1 2]",
        b"[0x10]",
    ],
)
def test_number_parser_refuses_what_it_does_not_read_as_orjson_would(text: bytes) -> None:
    """Other tokens, empty lists and rows, ragged rows, deeper nesting, bad grammar and numbers
    out of range are left to orjson and ``decode_array`` (their errors stay as they were)."""
    assert fast_read(text) is None


def _float_tokens(rng: np.random.Generator) -> list[str]:
    """Float tokens the Eisel-Lemire path reads (digits beyond 53 bits, within 64), and the
    cases at its edges: random doubles printed shortest and with 17 and 19 digits, random
    mantissas of 16 to 20 digits at every power of ten it takes and past it, values exactly
    halfway between two doubles written in at most 19 digits, subnormals and the largest."""
    doubles = (rng.standard_normal(4000) * 10.0 ** rng.integers(-300, 300, 4000)).tolist()
    tokens = [repr(x) for x in doubles]
    tokens += [f"{x:.16e}" for x in doubles[:1000]] + [f"{x:.18e}" for x in doubles[1000:2000]]
    for count in rng.integers(16, 21, 6000):  # up to 1e-350 (0) and just below inf
        q = int(rng.integers(-350, 309 - count))
        mantissa = int(rng.integers(10 ** (count - 16), 10 ** (count - 15))) * 10**15
        mantissa += int(rng.integers(0, 10**15))
        tokens.append(f"{'-' if q % 2 else ''}{mantissa}e{q}")
    for shift in range(-4, 12):  # (2**53 + odd) * 2**shift: halfway between two doubles
        for odd in rng.integers(0, 2**51, 40):
            value = Fraction(2**53 + 2 * int(odd) + 1) * Fraction(2) ** shift
            text = f"{value.numerator * 10**4 // value.denominator}e-4"
            if len(text) <= 23:
                tokens += [text, text.replace("e-4", "0e-5")]
    tokens += [
        "9007199254740993.0",
        "9007199254740995e0",
        "18014398509481985.0",
        "7.2057594037927933e16",
        "7.3177701707893310e15",
        "1e23",
        "2.2250738585072014e-308",
        "2.225073858507201e-308",
        "4.9406564584124654e-324",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "18446744073709551615e-10",
        "9999999999999999999e288",
        "1000000000000000000e-360",
    ]
    return tokens


def test_number_parser_rounds_long_digits_as_python() -> None:
    """Float tokens whose digits pass 53 bits (Eisel-Lemire's, and strtod's beyond 64 bits or
    at the edges) read as Python's correctly rounded ``float`` of the token, bit for bit."""
    tokens = _float_tokens(np.random.default_rng(13))
    fast = fast_read(("[" + ",".join(tokens) + "]").encode())
    assert fast is not None and fast.dtype == np.float64
    expected = np.array([float(t) for t in tokens])
    wrong = [
        t for t, a, b in zip(tokens, fast, expected, strict=True) if a.tobytes() != b.tobytes()
    ]
    assert not wrong, wrong[:10]


def test_parsed_list_reads_like_the_list_it_stands_for() -> None:
    """A ``NumberList`` has the length, rows and items of the JSON list it was parsed from."""
    parsed = NumberList(np.array([[1.5, 2.0], [3.0, -0.0]]))
    assert len(parsed) == 2 and bool(parsed) and isinstance(parsed, list)
    assert isinstance(parsed[0], list) and len(parsed[0]) == 2
    assert parsed == [[1.5, 2.0], [3.0, -0.0]] and parsed[1][0] == 3.0
    ints = NumberList(np.array([7, 8]))
    assert ints[1] == 8 and type(ints[1]) is int and list(ints) == [7, 8]


@pytest.mark.parametrize("listed", [[1.5, 2.5, 3.5], [[1, 2], [3, 4]], [1, 2, 3]])
def test_parsed_list_decodes_as_the_list(listed: list[Any]) -> None:
    """``decode_array`` gives a parsed list's array, and the same 413 past the element limit."""
    parsed = NumberList(np.array(listed))
    expected = decode_array(listed, "targets", LIMIT)
    decoded = decode_array(parsed, "targets", LIMIT)
    assert decoded.dtype == expected.dtype and np.array_equal(decoded, expected)
    with pytest.raises(TooManyElements) as caught:
        decode_array(listed, "targets", 2)
    with pytest.raises(TooManyElements) as parsed_caught:
        decode_array(parsed, "targets", 2)
    assert parsed_caught.value.detail == caught.value.detail


def test_packed_unknown_keys_are_named_once_and_cut_short() -> None:
    """A packed array's unexpected keys are named in the detail only, a few of them, cut short."""
    value = {"dtype": "float64", "shape": [1], "data": "AAAAAAAA8D8="}
    value |= {f"k{i}" + "x" * 100_000: 1 for i in range(20)}
    with pytest.raises(InvalidArray) as caught:
        decode_array(value, "predictions", LIMIT)
    text = orjson.dumps({"detail": caught.value.detail, "errors": caught.value.errors})
    assert len(text) < 1000
    assert "17 more" in caught.value.detail
