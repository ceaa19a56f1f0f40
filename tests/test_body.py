"""The long-string scan that cuts packed data out of a body (service/codecs/jsontext.py) against a plain
reading of JSON string literals, on bodies built to put quotes and escapes at every offset of
the 8-byte words the scan skips through; the number lists cut out and parsed without the GIL, and
the bounds on what orjson is handed."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.codecs.arrays import decode_array
from service.codecs.jsontext import (
    FALLBACK_MAX,
    PARSE_MAX,
    lift,
    long_strings,
    parse_object,
)
from service.codecs.numbers import NumberList
from service.errors import InvalidArray, PayloadTooLarge


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


def test_parse_object_lifts_long_number_lists_as_parsed_arrays() -> None:
    """Long top-level number lists of the array fields come parsed, bit for bit as orjson and
    numpy read them; other fields, short lists and nested members stay as orjson gives them."""
    rng = np.random.default_rng(0)
    doc = {
        "predictions": rng.standard_normal((5000, 3)).tolist(),
        "targets": rng.integers(-(2**62), 2**62, 20_000).tolist(),
        "sample_weight": [0.5, 1],
        "params": {"predictions": list(range(20_000))},
        "reduction": "mean",
    }
    parsed, _ = parse_object(orjson.dumps(doc))
    assert isinstance(parsed["predictions"], NumberList)
    assert isinstance(parsed["targets"], NumberList)
    for field in ("predictions", "targets"):
        expected = np.array(doc[field])
        array = parsed[field].array
        assert array.dtype == expected.dtype and array.tobytes() == expected.tobytes()
    assert type(parsed["sample_weight"]) is list
    assert type(parsed["params"]["predictions"]) is list
    assert parsed["reduction"] == "mean"


def test_numbers_printed_in_full_answer_as_their_packed_arrays() -> None:
    """Lists of doubles printed in full (16 and 17 digits, most of them beyond Clinger's 53 bits:
    the number parser's Eisel-Lemire path) get the answer of the same float64 arrays sent
    packed, byte for byte, on /loss and on /v2."""
    from service.codecs import oip
    from service.codecs.loss import evaluate_one

    rng = np.random.default_rng(7)
    logits, labels = rng.standard_normal((4000, 5)) * 30, rng.integers(0, 5, 4000)
    outputs = [{"name": "value"}, {"name": "gradient"}]
    options = {"gradient": True, "array_format": "packed", "params": {"from_logits": True}}

    def packed(array: np.ndarray) -> dict[str, object]:
        data = base64.b64encode(array.tobytes()).decode()
        return {"dtype": array.dtype.name, "shape": list(array.shape), "data": data}

    lists = {"predictions": logits, "targets": labels, **options}
    body = orjson.dumps(lists, option=orjson.OPT_SERIALIZE_NUMPY)
    assert parse_object(body)[0]["predictions"].array.tobytes() == logits.tobytes()
    sent = {"predictions": packed(logits), "targets": packed(labels), **options}
    answers = [
        evaluate_one("cross_entropy", b, 1 << 20).body.tobytes() for b in (body, orjson.dumps(sent))
    ]
    assert answers[0] == answers[1]

    def v2(predictions: dict[str, object], targets: dict[str, object], raw: bytes = b"") -> bytes:
        tensors = [
            {"name": "predictions", "shape": [4000, 5], "datatype": "FP64", **predictions},
            {"name": "targets", "shape": [4000], "datatype": "INT64", **targets},
        ]
        doc = {"inputs": tensors, "outputs": outputs, "parameters": {"from_logits": True}}
        header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
        body = np.frombuffer(header + raw, np.uint8)
        return oip.infer(
            "cross_entropy", len(header) if raw else None, body, 1 << 20
        ).body.tobytes()

    flat = v2({"data": logits.reshape(-1)}, {"data": labels})
    sizes = [{"parameters": {"binary_data_size": a.nbytes}} for a in (logits, labels)]
    assert flat == v2(*sizes, logits.tobytes() + labels.tobytes())


def test_a_list_the_parser_refuses_is_left_to_orjson_and_decode_array() -> None:
    """A long list with a null is parsed by orjson, so ``decode_array`` names the bad element
    as before; the last of duplicated keys still wins."""
    values: list[float | None] = [0.5] * 50_000
    values[-1] = None
    body = orjson.dumps({"predictions": values}).replace(b"{", b'{"targets": [1,2],', 1)
    parsed, _ = parse_object(body)
    assert parsed["predictions"] == values
    with pytest.raises(InvalidArray) as caught:
        decode_array(parsed["predictions"], "predictions", 1 << 20)
    assert list(caught.value.errors[0][0]) == ["predictions", 49_999]
    twice = b'{"predictions": ' + orjson.dumps([0.5] * 50_000) + b', "predictions": [1]}'
    assert parse_object(twice)[0]["predictions"] == [1]


def test_orjson_is_never_handed_megabytes() -> None:
    """A refused array list over FALLBACK_MAX and other JSON over PARSE_MAX are 413s."""
    values: list[float | bool] = [0.5] * (FALLBACK_MAX // 4 + 1)
    values[0] = True
    with pytest.raises(PayloadTooLarge) as caught:
        parse_object(orjson.dumps({"predictions": [1.0], "targets": values}))
    assert "`targets`" in caught.value.detail and "packed" in caught.value.detail
    with pytest.raises(PayloadTooLarge):
        parse_object(orjson.dumps({"predictions": [1.0], "other": [0] * (PARSE_MAX // 2 + 1)}))
    parsed, _ = parse_object(orjson.dumps({"predictions": [0] * (PARSE_MAX // 2 + 1)}))
    assert parsed["predictions"].array.shape == (PARSE_MAX // 2 + 1,)


def test_v2_json_tensors_are_lifted_and_reserved() -> None:
    """/v2 JSON: long ``inputs[k].data`` lists (flat or nested) are parsed without orjson, a long
    ``id`` string stays a string, the answer is the one of numpy, and what the parse and the
    arrays hold is reserved in the lease before it is allocated."""
    from service.codecs import oip
    from service.memory import MemoryAccount

    rng = np.random.default_rng(0)
    pred, targ = rng.normal(size=(20_000, 3)), rng.normal(size=(20_000, 3))
    doc = {
        "id": "x" * 70_000,
        "inputs": [
            {"name": "predictions", "shape": [20_000, 3], "datatype": "FP64",
             "data": pred.ravel().tolist()},
            {"name": "targets", "shape": [20_000, 3], "datatype": "FP64", "data": targ.tolist()},
        ],
        "outputs": [{"name": "value"}, {"name": "gradient"}],
    }  # fmt: skip
    account = MemoryAccount(1 << 30)
    lease = account.lease()
    reply = oip.infer("mse", None, np.frombuffer(orjson.dumps(doc), dtype=np.uint8), 10**7,
                      lease=lease)  # fmt: skip
    out = orjson.loads(reply.body.tobytes())
    assert out["id"] == doc["id"]
    assert out["outputs"][0]["data"][0] == pytest.approx(((pred - targ) ** 2).mean(), rel=1e-12)
    gradient = np.array(out["outputs"][1]["data"]).reshape(pred.shape)
    np.testing.assert_allclose(gradient, 2 * (pred - targ) / pred.size, rtol=1e-12)
    assert lease.held >= 2 * pred.size * 8  # both arrays, reserved before they were parsed
