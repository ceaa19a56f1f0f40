"""Fast paths for large JSON bodies, off the GIL.

A packed array's base64 text is most of a large body. Parsing it with orjson builds a Python string
of it (about 3 ns a byte, holding the GIL), and ``base64.b64decode`` holds the GIL again. Here a
``nogil`` kernel finds the long string literals first; they are cut out of the body and parsed
only as raw byte ranges, and base64 is decoded and encoded by parallel ``nogil`` kernels. The
event loop keeps the GIL for health checks and small requests while a large batch is decoded.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .errors import Unprocessable
from .losses._jit import Array, batch, prange, scalar

# Strings shorter than this stay in the body orjson parses.
LIFT_MIN = 1 << 16
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ENCODE = np.frombuffer(_B64, dtype=np.uint8).copy()
_DECODE = np.full(256, 255, dtype=np.uint8)
_DECODE[_ENCODE] = np.arange(64, dtype=np.uint8)
_GROUPS_PER_BLOCK = 1 << 14


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


@batch
def b64decode_into(src: Array, out: Array, table: Array, bad: Array) -> None:
    """Standard base64 of ``src`` (length a multiple of 4) into ``out``; ``bad[b]`` flags a block.

    Full groups are decoded branch-free in parallel blocks; the last group, which may end in
    '=' padding (the caller sized ``out`` for it), is decoded alone. Every byte but that padding
    must be in the alphabet: an invalid byte maps above 63 and sets its block's flag.
    """
    groups = src.shape[0] // 4
    full = groups - 1 if groups > 0 else 0
    for b in prange(bad.shape[0]):
        seen = np.uint32(0)
        for g in range(b * _GROUPS_PER_BLOCK, min(full, (b + 1) * _GROUPS_PER_BLOCK)):
            s = 4 * g
            a0 = np.uint32(table[src[s]])
            a1 = np.uint32(table[src[s + 1]])
            a2 = np.uint32(table[src[s + 2]])
            a3 = np.uint32(table[src[s + 3]])
            seen |= a0 | a1 | a2 | a3
            v = (a0 << 18) | (a1 << 12) | (a2 << 6) | a3
            o = 3 * g
            out[o] = (v >> 16) & 255
            out[o + 1] = (v >> 8) & 255
            out[o + 2] = v & 255
        bad[b] = 1 if seen > 63 else 0
    if groups > 0:
        s = 4 * full
        o = 3 * full
        tail = out.shape[0] - o  # 1 to 3 bytes, fewer when the group is padded
        a0 = np.uint32(table[src[s]])
        a1 = np.uint32(table[src[s + 1]])
        a2 = np.uint32(table[src[s + 2]]) if tail > 1 else np.uint32(0)
        a3 = np.uint32(table[src[s + 3]]) if tail > 2 else np.uint32(0)
        if (a0 | a1 | a2 | a3) > 63:
            bad[0] = 1
        v = (a0 << 18) | (a1 << 12) | (a2 << 6) | a3
        out[o] = (v >> 16) & 255
        if tail > 1:
            out[o + 1] = (v >> 8) & 255
        if tail > 2:
            out[o + 2] = v & 255


@batch
def b64encode_into(src: Array, out: Array, alphabet: Array) -> None:
    """Standard base64 of ``src`` into ``out`` (length 4·ceil(n/3)), with '=' padding.

    Full 3-byte groups are encoded branch-free in parallel blocks; a 1- or 2-byte tail after.
    """
    n = src.shape[0]
    full = n // 3
    blocks = -(-full // _GROUPS_PER_BLOCK)
    for b in prange(blocks):
        for g in range(b * _GROUPS_PER_BLOCK, min(full, (b + 1) * _GROUPS_PER_BLOCK)):
            i = 3 * g
            v = (np.uint32(src[i]) << 16) | (np.uint32(src[i + 1]) << 8) | np.uint32(src[i + 2])
            o = 4 * g
            out[o] = alphabet[(v >> 18) & 63]
            out[o + 1] = alphabet[(v >> 12) & 63]
            out[o + 2] = alphabet[(v >> 6) & 63]
            out[o + 3] = alphabet[v & 63]
    rest = n - 3 * full
    if rest > 0:
        i = 3 * full
        b1 = np.uint32(src[i + 1]) if rest > 1 else np.uint32(0)
        v = (np.uint32(src[i]) << 16) | (b1 << 8)
        o = 4 * full
        out[o] = alphabet[(v >> 18) & 63]
        out[o + 1] = alphabet[(v >> 12) & 63]
        out[o + 2] = alphabet[(v >> 6) & 63] if rest > 1 else 61
        out[o + 3] = 61


def b64decode(text: memoryview | bytes | str) -> Array | None:
    """Decode standard base64 strictly (as ``b64decode(validate=True)``); None when invalid."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    src = _readonly(np.frombuffer(raw, dtype=np.uint8))
    n = src.shape[0]
    if n % 4:
        return None
    pad = 0
    if n and src[n - 1] == 61:
        pad = 2 if src[n - 2] == 61 else 1
    out = np.empty(n // 4 * 3 - pad, dtype=np.uint8)
    bad = np.zeros(max(1, -(-(n // 4) // _GROUPS_PER_BLOCK)), dtype=np.uint8)
    b64decode_into(src, out, _DECODE, bad)
    return None if bad.any() else out


class Base64:
    """An array to be written into a response as base64, without a Python string of it.

    Deliberately not a dataclass: orjson would serialise a dataclass itself.
    """

    __slots__ = ("array",)

    def __init__(self, array: Array) -> None:
        self.array = array

    def encode(self) -> Array:
        src = _readonly(np.ascontiguousarray(self.array).reshape(-1).view(np.uint8))
        out = np.empty(-(-src.shape[0] // 3) * 4, dtype=np.uint8)
        b64encode_into(src, out, _ENCODE)
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


def _readonly(array: Array) -> Array:
    # One compiled signature per kernel: every byte buffer reaches the kernels read-only.
    array.flags.writeable = False
    return array


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


def lift(body: bytes | bytearray) -> tuple[bytes | bytearray, dict[str, Blob]]:
    """Cut long string literals out of ``body``: the rest to parse, and the strings by marker."""
    if len(body) < LIFT_MIN:
        return body, {}
    buf = _readonly(np.frombuffer(body, dtype=np.uint8))
    ranges = long_strings(buf, buf[: len(buf) // 8 * 8].view(np.uint64), LIFT_MIN)
    if not len(ranges):
        return body, {}
    view = memoryview(body)
    nonce = secrets.token_hex(8)
    pieces: list[bytes | memoryview] = []
    blobs: dict[str, Blob] = {}
    last = 0
    for k, (start, end, escaped) in enumerate(ranges.tolist()):
        marker = f"\x00lossd:{nonce}:{k}"
        blobs[marker] = Blob(view[start:end], bool(escaped))
        pieces += [view[last:start], orjson.dumps(marker)[1:-1]]
        last = end
    pieces.append(view[last:])
    return b"".join(pieces), blobs


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
