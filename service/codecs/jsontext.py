"""JSON text in and out, with the long strings (packed arrays' base64) kept out of Python.

A packed array's base64 text is most of a large body. Parsing it with orjson builds a Python string
of it (about 3 ns a byte, holding the GIL). Here a ``nogil`` kernel finds the long string literals
first (``lift``); they are cut out of the body and handed on as raw byte ranges (``Blob``), and
orjson parses the small rest (``parse_object``). On the way out, ``dumps`` splices ``Base64``
buffers into orjson's text without joining them into one copy (``Encoded``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..errors import PayloadTooLarge, Unprocessable
from ..jit import Array, scalar
from ..schemas import ARRAY_FIELDS, INPUTS
from .base64 import Base64
from .numbers import NumberList, member_lists, read_list

# Strings and number lists shorter than this stay in the body orjson parses.
LIFT_MIN = 1 << 16
# What orjson's objects cost per byte of the JSON text it parses, at most: measured with
# tracemalloc at 16-38 for lists of numbers, nested lists, strings, keys and empty containers
# (a float: 24 bytes, its list slot 8, the list's growth), so a skeleton is reserved at 40.
PARSE_BYTES_PER_BYTE = 40
# orjson holds the GIL for the whole parse (event loop included): about 50 ms a MiB of small
# numbers on a loaded machine, and numpy's reading of the lists as long again. A large body's
# own JSON (what is left once long strings and number lists are cut out) is bounded by
# PARSE_MAX, and an array field's list the number parser refused by FALLBACK_MAX.
PARSE_MAX = 4 << 20
FALLBACK_MAX = 1 << 20

_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_QUOTES = np.uint64(0x2222222222222222)  # '"' in every byte
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)  # '\\' in every byte


@scalar
def _has_byte(word: np.uint64, spread: np.uint64) -> bool:
    """Whether one of the 8 bytes of ``word`` is the byte repeated in ``spread`` (the exact
    "has a zero byte" test on ``word ^ spread``)."""
    x = word ^ spread
    return bool(((x - _ONES) & ~x & _HIGHS) != 0)


@scalar
def long_strings(buf: Array, words: Array, min_len: int) -> Array:
    """(start, end, escaped) of the contents of string literals at least ``min_len`` bytes long.

    A serial scan that tracks only whether it is inside a string and skips escaped characters;
    ``escaped`` is 1 when the literal holds a JSON escape. orjson still parses everything else.
    ``words`` is ``buf``'s whole 8-byte words as uint64: from an aligned position, words holding
    no byte that matters there (no quote outside a string; no quote or backslash inside one) are
    skipped eight bytes at a time, so base64 text and lists of numbers pass at memory speed.
    """
    n = buf.shape[0]
    found = []
    i = 0
    start = 0
    escaped = 0
    inside = False
    while i < n:
        if (i & 7) == 0:
            k = i >> 3
            if inside:
                while k < words.shape[0] and not (
                    _has_byte(words[k], _QUOTES) or _has_byte(words[k], _BACKSLASHES)
                ):
                    k += 1
            else:
                while k < words.shape[0] and not _has_byte(words[k], _QUOTES):
                    k += 1
            if k << 3 > i:
                i = k << 3
                continue
        c = buf[i]
        if inside:
            if c == 92:  # backslash: the next byte is escaped
                escaped = 1
                i += 2
                continue
            if c == 34:
                inside = False
                if i - start >= min_len:
                    found.append((start, i, escaped))
        elif c == 34:
            inside = True
            escaped = 0
            start = i + 1
        i += 1
    out = np.empty((len(found), 3), dtype=np.int64)
    for k in range(len(found)):
        out[k, 0] = found[k][0]
        out[k, 1] = found[k][1]
        out[k, 2] = found[k][2]
    return out


class Encoded:
    """A response body as pieces: JSON text and base64 buffers, never joined into one copy.

    A large body is sent a chunk at a time, so the event loop never copies it whole.
    """

    __slots__ = ("pieces", "size")

    def __init__(self, pieces: list[bytes | memoryview]) -> None:
        self.pieces = pieces
        self.size = sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in pieces)

    def tobytes(self) -> bytes:
        return b"".join(self.pieces)

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The body in chunks of at most ``size`` bytes."""
        for piece in self.pieces:
            for offset in range(0, len(piece), size):
                yield bytes(piece[offset : offset + size])


def dumps(doc: Any) -> Encoded:
    """orjson.dumps with ``Base64`` values spliced in as raw bytes (no str, no extra copy)."""
    nonce = secrets.token_hex(8)
    encoded: list[tuple[bytes, Array]] = []

    def default(value: object) -> str:
        if not isinstance(value, Base64):
            raise TypeError
        marker = f"lossd:{nonce}:{len(encoded)}"
        encoded.append((marker.encode(), value.encode()))
        return marker

    out = orjson.dumps(doc, default=default, option=orjson.OPT_SERIALIZE_NUMPY)
    if not encoded:
        return Encoded([out])
    pieces: list[bytes | memoryview] = []
    last = 0
    for marker, data in encoded:
        at = out.index(marker, last)
        pieces += [out[last:at], memoryview(data.data)]
        last = at + len(marker)
    pieces.append(out[last:])
    return Encoded(pieces)


@dataclass(frozen=True)
class Blob:
    """A long string literal of the body, kept as its raw bytes (still JSON-escaped)."""

    raw: memoryview
    escaped: bool

    def content(self) -> str | memoryview:
        """The raw bytes, or the string's value when JSON escapes must be resolved (slow path)."""
        if self.escaped:
            try:
                return str(orjson.loads(b'"' + bytes(self.raw) + b'"'))
            except orjson.JSONDecodeError:
                raise Unprocessable(
                    "the body is not valid JSON: a bad escape in a long string",
                    errors=[(("body",), "invalid JSON")],
                ) from None
        return self.raw


@dataclass(frozen=True)
class Lifted:
    """A body with its long string literals and number lists cut out (see ``lift``)."""

    skeleton: (
        bytes | bytearray | memoryview
    )  # the rest, for orjson: each cut-out value is a marker string
    blobs: dict[str, Blob]  # the long strings by marker
    lists: dict[str, NumberList]  # the parsed number lists by marker
    refused: dict[str, tuple[int, int]]  # wanted lists the fast parser refused: key -> range


def lift(
    body: bytes | bytearray | memoryview,
    lists: Collection[str] = (),
    depth: int = 1,
    reserve: Callable[[int], None] | None = None,
    strings: bool = True,
    within: str | None = None,
) -> Lifted:
    """Cut long string literals, and the number lists of the members named in ``lists`` at
    ``depth`` (1: members of the top-level object) and of every member of the top-level member
    ``within`` (an object of named arrays, ``inputs``; listed as ``within.name``), out of
    ``body``; each becomes a marker string in the rest, which orjson parses. Lists are cut
    only when at least ``LIFT_MIN`` bytes long, strings likewise (unless ``strings`` is false).
    ``reserve`` is told each list's array size before it is allocated."""
    if len(body) < LIFT_MIN:
        return Lifted(body, {}, {}, {})
    buf = np.frombuffer(body, dtype=np.uint8)
    buf.flags.writeable = False  # one compiled signature: every byte buffer is read-only
    cuts: list[tuple[int, int, Blob | NumberList]] = []
    refused: dict[str, tuple[int, int]] = {}
    if lists or within:
        names = {name.encode() for name in lists}
        outer = within.encode() if within else None
        for level, key_start, key_end, parent_start, parent_end, start, end in member_lists(
            buf, LIFT_MIN
        ).tolist():
            key = bytes(buf[key_start:key_end])
            if level == depth and key in names:
                name = key.decode(errors="replace")
            elif level == 2 and outer is not None and bytes(buf[parent_start:parent_end]) == outer:
                name = f"{within}.{key.decode(errors='replace')}"
            else:
                continue
            array = read_list(buf, start, end, reserve)
            if array is None:
                refused[name] = (start, end)
            else:
                cuts.append((start, end, NumberList(array)))
    ranges = long_strings(buf, buf[: len(buf) // 8 * 8].view(np.uint64), LIFT_MIN)
    if not strings:
        ranges = ranges[:0]
    view = memoryview(body)
    # the contents of a string, without its quotes (the marker takes their place inside them)
    cuts += [
        (start, end, Blob(view[start:end], bool(escaped)))
        for start, end, escaped in ranges.tolist()
    ]
    if not cuts:
        return Lifted(body, {}, {}, refused)
    cuts.sort(key=lambda cut: cut[0])
    nonce = secrets.token_hex(8)
    pieces: list[bytes | memoryview] = []
    blobs: dict[str, Blob] = {}
    parsed: dict[str, NumberList] = {}
    last = 0
    for k, (start, end, value) in enumerate(cuts):
        marker = f"\x00lossd:{nonce}:{k}"
        text = orjson.dumps(marker)
        if isinstance(value, Blob):
            blobs[marker] = value
            text = text[1:-1]
        else:
            parsed[marker] = value
        pieces += [view[last:start], text]
        last = end
    pieces.append(view[last:])
    return Lifted(b"".join(pieces), blobs, parsed, refused)


def release(body: bytes | bytearray) -> None:
    """Free a request body whose arrays are decoded: a ``bytearray`` is emptied, ``bytes`` kept.

    The route's buffer is as large as the request; freeing it before the loss runs and the
    response is encoded takes it off the request's peak memory. A view still open into it
    (none is, once the ``Blob``s are gone) leaves it as it is.
    """
    if isinstance(body, bytearray):
        with suppress(BufferError):
            body.clear()


def resolve_blob(value: Any, blobs: dict[str, Blob]) -> Any:
    """The Blob a marker stands for, or the value itself."""
    if blobs and isinstance(value, str):
        return blobs.get(value, value)
    return value


def parse_object(
    body: bytes | bytearray | memoryview,
    fields: tuple[str, ...] = (),
    lists: Collection[str] = ARRAY_FIELDS,
    reserve: Callable[[int], None] | None = None,
    within: str | None = INPUTS,
) -> tuple[dict[str, Any], dict[str, Blob]]:
    """The body as a JSON object (orjson: strict JSON, no NaN or Infinity tokens), and its long
    string literals as ``Blob``s by marker (see ``lift``). A syntax error inside one of
    ``fields`` names that field.

    The top-level members named in ``lists``, and the members of the object ``within`` (the
    extra named arrays), that are long lists of numbers come parsed, as ``NumberList``s.
    orjson holds the GIL, so it is given at most ``PARSE_MAX`` bytes, and a
    long list of those members the number parser refused (nulls, ragged rows, ...) at most
    ``FALLBACK_MAX`` bytes: beyond, 413. ``reserve`` is told what each parsed list and the
    orjson parse will hold, in bytes, before they are allocated (the memory account).
    """
    lifted = lift(body, lists, reserve=reserve, within=within)
    check_lifted(lifted)
    skeleton = lifted.skeleton
    if reserve is not None:
        reserve(len(skeleton) * PARSE_BYTES_PER_BYTE)
    try:
        doc = orjson.loads(skeleton)
    except orjson.JSONDecodeError as exc:
        field = _field_at(skeleton, exc.pos, fields)
        where = f" in `{field}`" if field else ""
        raise Unprocessable(
            f"the body is not valid JSON{where} (NaN, Infinity and numbers beyond float64 are "
            f"not JSON): {exc}",
            errors=[((field or "body",), "invalid JSON")],
        ) from None
    if not isinstance(doc, dict):
        raise Unprocessable(
            "the body must be a JSON object", errors=[(("body",), "expected an object")]
        )
    if lifted.lists:
        for name in lists:
            value = doc.get(name)
            if isinstance(value, str) and value in lifted.lists:
                doc[name] = lifted.lists[value]
        named = doc.get(within) if within else None
        if isinstance(named, dict):
            for name, value in named.items():
                if isinstance(value, str) and value in lifted.lists:
                    named[name] = lifted.lists[value]
    return doc, lifted.blobs


def check_lifted(lifted: Lifted) -> None:
    """413 for a long wanted list the number parser refused (over FALLBACK_MAX) or more than
    PARSE_MAX bytes of JSON left for orjson, which holds the GIL while it parses."""
    for name, (start, end) in lifted.refused.items():
        if end - start > FALLBACK_MAX:
            raise PayloadTooLarge(
                f"`{name}` is a JSON list of {end - start} bytes but not a plain list of numbers "
                "(rank 1 or 2, rows of equal length, integers within int64, numbers within "
                f"float64); a JSON list over {FALLBACK_MAX} bytes must be one. Send such data as "
                "a packed array {dtype, shape, data} (or to /v2 with binary tensor data)",
                errors=[(tuple(name.split(".", 1)), "a long JSON list must hold only numbers")],
            )
    skeleton = lifted.skeleton
    if len(skeleton) > PARSE_MAX:
        raise PayloadTooLarge(
            f"the body holds {len(skeleton)} bytes of JSON besides its long strings and number "
            f"lists (at most {PARSE_MAX}); send large arrays as packed arrays "
            "{dtype, shape, data} or JSON lists of numbers",
        )


def _field_at(
    body: bytes | bytearray | memoryview, pos: int, fields: tuple[str, ...]
) -> str | None:
    """The field whose value holds byte ``pos`` of a body orjson refused, if any."""
    head = bytes(body[: max(pos, 0)])
    starts = {field: head.rfind(f'"{field}"'.encode()) for field in fields}
    if not starts:
        return None
    field, at = max(starts.items(), key=lambda item: item[1])
    return field if at >= 0 else None
