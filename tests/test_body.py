"""The long-string scan that cuts packed data out of a body (service/codecs/jsontext.py) against a plain
reading of JSON string literals, on bodies built to put quotes and escapes at every offset of
the 8-byte words the scan skips through."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from service.codecs.jsontext import lift, long_strings


def _reference(body: bytes, min_len: int) -> list[tuple[int, int, int]]:
    found, i, inside, start, escaped = [], 0, False, 0, 0
    while i < len(body):
        c = body[i]
        if inside and c == 0x5C:
            escaped, i = 1, i + 2
            continue
        if inside and c == 0x22:
            inside = False
            if i - start >= min_len:
                found.append((start, i, escaped))
        elif not inside and c == 0x22:
            inside, escaped, start = True, 0, i + 1
        i += 1
    return found


def _scan(body: bytes, min_len: int) -> list[tuple[int, int, int]]:
    buf = np.frombuffer(body, dtype=np.uint8)
    words = buf[: len(buf) // 8 * 8].view(np.uint64)
    return [tuple(row) for row in long_strings(buf, words, min_len).tolist()]


PIECES = st.sampled_from([b'"', b"\\", b'\\"', b"\\\\", b"a", b"12345678", b",", b"[", b"AAAA" * 5])


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=80), st.integers(0, 7), st.integers(1, 12))
def test_scan_matches_a_plain_reading(pieces: list[bytes], shift: int, min_len: int) -> None:
    body = b" " * shift + b"".join(pieces)
    assert _scan(body, min_len) == _reference(body, min_len)


def test_lift_cuts_out_long_strings_and_keeps_the_rest() -> None:
    data = "QUJD" * 40_000  # 160 000 bytes of base64
    escaped = 'x\\"y' * 20_000
    for pad in range(9):
        doc = {"a": " " * pad, "data": data, "other": [1.5, 2], "s": escaped, "t": "short"}
        body = orjson.dumps(doc)
        lifted = lift(body)
        rest, blobs = lifted.skeleton, lifted.blobs
        assert len(blobs) == 2
        parsed = orjson.loads(rest)
        assert parsed["other"] == [1.5, 2] and parsed["t"] == "short"
        by_raw = {bytes(b.raw): b.escaped for b in blobs.values()}
        assert by_raw == {data.encode(): False, orjson.dumps(escaped)[1:-1]: True}
