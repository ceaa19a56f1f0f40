"""Standard base64 by parallel ``nogil`` kernels: packed arrays in and out without a Python
string of their text and without holding the GIL (``base64.b64decode`` holds it throughout)."""

from __future__ import annotations

import numpy as np

from ..jit import Array, batch, prange

_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ENCODE = np.frombuffer(_B64, dtype=np.uint8).copy()
_DECODE = np.full(256, 255, dtype=np.uint8)
_DECODE[_ENCODE] = np.arange(64, dtype=np.uint8)
_GROUPS_PER_BLOCK = 1 << 14


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


def _readonly(array: Array) -> Array:
    # One compiled signature per kernel: every byte buffer reaches the kernels read-only.
    array.flags.writeable = False
    return array


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
