"""Binary bodies on /loss (SPEC amendment, issue 13): the binary framing and multipart ``.npy``
parts in, ``array_format: binary`` out, their refusals, limits and zero-copy decoding."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api._wire import _aligned_empty
from service.app import create_app
from service.codecs import bodies
from service.codecs import loss as codec
from service.codecs.multipart import parts as multipart_parts
from service.codecs.npy import decoded as decoded_npy
from service.codecs.npy import read_npy
from service.errors import LossdError, MemoryBudget
from service.memory import MemoryAccount
from service.settings import Settings
from tests.support.bodies import framed_body, multipart_body, npy, packed, split_framed
from tests.support.servers import http_client, served

HEADER = "Inference-Header-Content-Length"
BINARY = "application/octet-stream"
ARRAYS = ("predictions", "targets", "sample_weight")
rng = np.random.default_rng(13)


def _logits() -> np.ndarray:
    return rng.normal(size=(5, 4))


# (path, arrays, other fields); every array float64 unless the loss takes class indices
CASES: dict[str, tuple[str, dict[str, np.ndarray], dict[str, Any]]] = {
    "mse": (
        "/loss/mse",
        {"predictions": rng.normal(size=(6, 3)), "targets": rng.normal(size=(6, 3))},
        {"gradient": True, "hessian": True},
    ),
    "cross_entropy": (
        "/loss/cross_entropy",
        {"predictions": _logits(), "targets": np.array([0, 3, 1, 2, 0], dtype=np.int64)},
        {"gradient": True, "params": {"from_logits": True}},
    ),
    "binary_cross_entropy": (
        "/loss/binary_cross_entropy",
        {
            "predictions": rng.uniform(0.05, 0.95, size=8),
            "targets": (rng.uniform(size=8) > 0.5).astype(np.float64),
            "sample_weight": rng.uniform(0.5, 2.0, size=8),
        },
        {"gradient": True, "reduction": "sum"},
    ),
    "two_losses": (
        "/loss",
        {"predictions": rng.normal(size=7), "targets": rng.normal(size=7)},
        {
            "losses": [{"name": "mse"}, {"name": "huber", "params": {"delta": 0.5}}],
            "gradient": True,
        },
    ),
}


def post(
    client: httpx.Client, path: str, arrays: dict[str, np.ndarray], fields: dict[str, Any], how: str
) -> httpx.Response:
    """The request in one of the four body formats."""
    if how == "json":
        return client.post(path, json={**{k: v.tolist() for k, v in arrays.items()}, **fields})
    if how == "packed":
        return client.post(path, json={**{k: packed(v) for k, v in arrays.items()}, **fields})
    if how == "binary":
        body, headers = framed_body(fields, arrays)
        return client.post(path, content=body, headers=headers)
    # multipart as curl -F and httpx send it: file parts and a form field
    files = {k: (f"{k}.npy", npy(v), BINARY) for k, v in arrays.items()}
    return client.post(path, files=files, data={"options": orjson.dumps(fields).decode()})


def json_arrays(doc: Any) -> list[np.ndarray]:
    """The per_sample/gradient/hessian arrays of a JSON answer, in document order."""
    found: list[np.ndarray] = []
    for result in doc.get("results", [doc]):
        found += [
            np.asarray(result[k]) for k in ("per_sample", "gradient", "hessian") if k in result
        ]
    return found


@pytest.mark.loss("mse", "cross_entropy", "binary_cross_entropy", "huber")
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("how", ["packed", "binary", "multipart"])
def test_every_body_format_gives_the_json_answer(client: httpx.Client, case: str, how: str) -> None:
    """Packed, binary-framed and multipart .npy bodies answer byte for byte what JSON lists do."""
    path, arrays, fields = CASES[case]
    reference = post(client, path, arrays, fields, "json")
    assert reference.status_code == 200, reference.text
    response = post(client, path, arrays, fields, how)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content == reference.content


@pytest.mark.loss("mse", "cross_entropy", "binary_cross_entropy", "huber")
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("how", ["json", "packed", "binary", "multipart"])
def test_array_format_binary_round_trips(client: httpx.Client, case: str, how: str) -> None:
    """``array_format: binary`` answers the JSON answer's numbers in the binary framing, whatever
    the request's body format."""
    path, arrays, fields = CASES[case]
    reference = post(client, path, arrays, fields, "json").json()
    response = post(client, path, arrays, {**fields, "array_format": "binary"}, how)
    assert response.status_code == 200, response.text
    doc, got = split_framed(response)
    expected = json_arrays(reference)
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == np.float64
        np.testing.assert_array_equal(a, b)
    for result, ref in zip(
        doc.get("results", [doc]), reference.get("results", [reference]), strict=True
    ):
        assert result["value"] == ref["value"] and result["weight_sum"] == ref["weight_sum"]


@pytest.mark.loss("cross_entropy")
@pytest.mark.parametrize("how", ["binary", "multipart", "packed"])
def test_float32_predictions_and_int32_targets(client: httpx.Client, how: str) -> None:
    """float32 predictions and int32 class indices give the answer of the same numbers as JSON."""
    arrays = {
        "predictions": rng.normal(size=(6, 3)).astype(np.float32),
        "targets": np.array([0, 2, 1, 1, 0, 2], dtype=np.int32),
    }
    fields = {"gradient": True, "params": {"from_logits": True}}
    reference = post(client, "/loss/cross_entropy", arrays, fields, "json")
    response = post(client, "/loss/cross_entropy", arrays, fields, how)
    assert response.status_code == 200, response.text
    assert response.content == reference.content
    # and a float32 computation answers float32 arrays in the framing
    answer = post(
        client,
        "/loss/cross_entropy",
        arrays,
        {**fields, "dtype": "float32", "array_format": "binary"},
        how,
    )
    doc, got = split_framed(answer)
    assert doc["per_sample"]["dtype"] == "float32" and all(a.dtype == np.float32 for a in got)


@pytest.mark.loss("cross_entropy")
@pytest.mark.parametrize("how", ["binary", "multipart", "packed"])
def test_float16_logits_compute_as_their_float32_values(client: httpx.Client, how: str) -> None:
    """float16 logits (binary framing, a .npy part, packed) answer what float32 logits of the
    same values do: half precision is widened and, with no dtype sent, computed in float32;
    with dtype float64, what float64 logits of those values answer."""
    half = rng.normal(size=(6, 3)).astype(np.float16)
    targets = np.array([0, 2, 1, 1, 0, 2], dtype=np.int64)
    fields = {"gradient": True, "params": {"from_logits": True}}
    for dtype, wide in (({}, np.float32), ({"dtype": "float64"}, np.float64)):
        same = {"predictions": half.astype(wide), "targets": targets}
        computed = {"dtype": np.dtype(wide).name}  # float32 logits alone compute in float64
        reference = post(client, "/loss/cross_entropy", same, {**fields, **computed}, "packed")
        sent = {"predictions": half, "targets": targets}
        response = post(client, "/loss/cross_entropy", sent, {**fields, **dtype}, how)
        assert response.status_code == 200, response.text
        assert response.content == reference.content


@pytest.mark.loss("mse")
@pytest.mark.parametrize("how", ["binary", "packed"])
def test_bfloat16_in_the_binary_framing(client: httpx.Client, how: str) -> None:
    """bfloat16 bytes (the top half of a float32's) in the framing answer what float32 does."""
    wide = np.array([0.5, -1.25, 3.0, 1e-3], dtype=np.float32)
    raw = (wide.view(np.uint32) >> 16).astype(np.uint16)  # truncated: exactly representable
    values = (raw.astype(np.uint32) << 16).view(np.float32)
    targets = np.zeros(4)
    header = {"dtype": "bfloat16", "shape": [4]}
    if how == "binary":
        doc = {"predictions": {**header, "binary_data_size": 8}, "targets": packed(targets)}
        text = orjson.dumps(doc)
        content, headers = text + raw.tobytes(), {"Content-Type": BINARY, HEADER: str(len(text))}
    else:
        data = base64.b64encode(raw.tobytes()).decode()
        content = orjson.dumps(
            {"predictions": {**header, "data": data}, "targets": packed(targets)}
        )
        headers = {"Content-Type": "application/json"}
    response = client.post("/loss/mse", content=content, headers=headers)
    reference = post(
        client,
        "/loss/mse",
        {"predictions": values, "targets": targets},
        {"dtype": "float32"},
        "packed",
    )
    assert response.status_code == 200, response.text
    assert response.content == reference.content


@pytest.mark.loss("mse")
def test_big_endian_and_fortran_order_npy_parts(client: httpx.Client) -> None:
    """A big-endian or Fortran-ordered .npy part is read as the same numbers."""
    p, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    reference = post(
        client, "/loss/mse", {"predictions": p, "targets": t}, {"gradient": True}, "json"
    )
    body, headers = multipart_body(
        [
            ("predictions", npy(p.astype(">f8"))),
            ("targets", npy(np.asfortranarray(t))),
            ("options", b'{"gradient": true}'),
        ]
    )
    response = client.post("/loss/mse", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.content == reference.content


P2 = np.array([0.5, 1.0])
GOOD_HEADER = {
    "predictions": {"dtype": "float64", "shape": [2], "binary_data_size": 16},
    "targets": {"dtype": "float64", "shape": [2], "binary_data_size": 16},
}


def _framed(
    header: dict[str, Any], data: bytes, length: int | str | bytes | None = None
) -> tuple[bytes, dict[str, Any]]:
    text = orjson.dumps(header)
    headers: dict[str, Any] = {"Content-Type": BINARY}
    if length != "omit":
        headers[HEADER] = str(len(text)) if length is None else length
    return text + data, headers


def _with(field: str, **changes: Any) -> dict[str, Any]:
    return {**GOOD_HEADER, field: {**GOOD_HEADER[field], **changes}}


DATA = P2.tobytes() * 2
FRAMED_ERRORS = {
    "missing header length": (_framed(GOOD_HEADER, DATA, "omit"), 422, HEADER),
    "header length not digits": (_framed(GOOD_HEADER, DATA, "12a"), 422, "ASCII digits"),
    "header length non-ascii digits": (
        _framed(GOOD_HEADER, DATA, "١٢".encode()),
        422,
        "ASCII digits",
    ),
    "header length past body": (_framed(GOOD_HEADER, DATA, "100000"), 422, "the body has only"),
    "header not JSON": (
        (b"{not json" + DATA, {"Content-Type": BINARY, HEADER: "9"}),
        422,
        "not valid JSON",
    ),
    "sizes short of body": (_framed(GOOD_HEADER, DATA + b"\0" * 8), 422, "add up to 32"),
    "size beyond body": (_framed(GOOD_HEADER, DATA[:24]), 422, "bytes of binary data are left"),
    "size against shape": (
        _framed(_with("targets", binary_data_size=12), DATA[:28]),
        422,
        "shape [2] of float64 is 16 bytes",
    ),
    "size not an integer": (
        _framed(_with("targets", binary_data_size="16"), DATA),
        422,
        "binary_data_size",
    ),
    "unknown dtype": (_framed(_with("targets", dtype="float128"), DATA), 422, "dtype"),
    "dtype not a string": (_framed(_with("targets", dtype=8), DATA), 422, "dtype"),
    "negative shape": (_framed(_with("targets", shape=[-2]), DATA), 422, "shape"),
    "rank 3": (_framed(_with("targets", shape=[1, 1, 2]), DATA), 422, "shape"),
    "extra key": (
        _framed(_with("targets", data="AAAA"), DATA),
        422,
        "exactly dtype, shape and binary_data_size",
    ),
    "NaN in the data": (
        _framed(GOOD_HEADER, P2.tobytes() + np.array([np.nan, 1.0]).tobytes()),
        422,
        "NaN or Infinity",
    ),
    "shape mismatch": (
        _framed(_with("targets", shape=[1], binary_data_size=8), DATA[:24]),
        422,
        "shape",
    ),
    "text/plain": (
        (orjson.dumps({"predictions": [1.0], "targets": [1.0]}), {"Content-Type": "text/plain"}),
        415,
        "application/octet-stream",
    ),
}


@pytest.mark.loss("mse")
@pytest.mark.parametrize("case", FRAMED_ERRORS)
def test_malformed_binary_bodies_are_problems(client: httpx.Client, case: str) -> None:
    """Every malformed binary-framed body is a 4xx problem+json that says what is wrong."""
    (body, headers), status, message = FRAMED_ERRORS[case]
    response = client.post("/loss/mse", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert message in response.json()["detail"]


GOOD_NPY = npy(P2)
MULTIPART_ERRORS: dict[str, tuple[tuple[bytes, dict[str, str]], str]] = {
    "no boundary": (
        (multipart_body([("predictions", GOOD_NPY)])[0], {"Content-Type": "multipart/form-data"}),
        "boundary",
    ),
    "another boundary": (
        (
            multipart_body([("predictions", GOOD_NPY)])[0],
            {"Content-Type": "multipart/form-data; boundary=other"},
        ),
        "no delimiter",
    ),
    "cut short": (
        (
            multipart_body([("predictions", GOOD_NPY), ("targets", GOOD_NPY)])[0][:-30],
            multipart_body([])[1],
        ),
        "closing delimiter",
    ),
    "part without a name": (
        (
            b"--b\r\nContent-Type: application/octet-stream\r\n\r\n" + GOOD_NPY + b"\r\n--b--\r\n",
            {"Content-Type": "multipart/form-data; boundary=b"},
        ),
        "Content-Disposition",
    ),
    "unknown part": (
        multipart_body([("predictions", GOOD_NPY), ("targets", GOOD_NPY), ("weights", GOOD_NPY)]),
        "weights",
    ),
    "a part twice": (
        multipart_body([("predictions", GOOD_NPY), ("predictions", GOOD_NPY)]),
        "twice",
    ),
    "not npy": (
        multipart_body([("predictions", b"0.5,1.0"), ("targets", GOOD_NPY)]),
        "not a .npy file",
    ),
    "object dtype": (
        multipart_body(
            [
                ("predictions", npy(P2)[:8] + npy(P2)[8:].replace(b"'<f8'", b"'|O' ")),
                ("targets", GOOD_NPY),
            ]
        ),
        "dtype",
    ),
    "structured dtype": (
        multipart_body(
            [("predictions", npy(np.zeros(2, dtype=[("a", "<f8")]))), ("targets", GOOD_NPY)]
        ),
        "dtype",
    ),
    "complex dtype": (
        multipart_body([("predictions", npy(P2.astype(np.complex128))), ("targets", GOOD_NPY)]),
        "dtype",
    ),
    "truncated data": (
        multipart_body([("predictions", GOOD_NPY[:-4]), ("targets", GOOD_NPY)]),
        "bytes of data",
    ),
    "rank 3": (
        multipart_body([("predictions", npy(np.zeros((1, 1, 2)))), ("targets", GOOD_NPY)]),
        "shape",
    ),
    "NaN": (
        multipart_body([("predictions", npy(np.array([np.nan, 1.0]))), ("targets", GOOD_NPY)]),
        "NaN or Infinity",
    ),
    "options not JSON": (
        multipart_body(
            [("predictions", GOOD_NPY), ("targets", GOOD_NPY), ("options", b"{gradient")]
        ),
        "not valid JSON",
    ),
    "options not an object": (
        multipart_body([("predictions", GOOD_NPY), ("targets", GOOD_NPY), ("options", b"[1]")]),
        "JSON object",
    ),
    "options with a part's field": (
        multipart_body(
            [("predictions", GOOD_NPY), ("targets", GOOD_NPY), ("options", b'{"targets": [1, 2]}')]
        ),
        "both as a part and in the options",
    ),
    "unknown option": (
        multipart_body(
            [("predictions", GOOD_NPY), ("targets", GOOD_NPY), ("options", b'{"gradiant": true}')]
        ),
        "invalid request fields",
    ),
    "missing targets": (multipart_body([("predictions", GOOD_NPY)]), "`targets` is required"),
    "shapes differ": (
        multipart_body([("predictions", GOOD_NPY), ("targets", npy(np.zeros(3)))]),
        "shape",
    ),
}


@pytest.mark.loss("mse")
@pytest.mark.parametrize("case", MULTIPART_ERRORS)
def test_malformed_multipart_bodies_are_problems(client: httpx.Client, case: str) -> None:
    """Every malformed multipart body or bad .npy part is a 422 problem+json saying what."""
    (body, headers), message = MULTIPART_ERRORS[case]
    response = client.post("/loss/mse", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert message in response.json()["detail"]


@pytest.mark.loss("mse")
def test_declared_shapes_past_max_elements_are_413(client: httpx.Client) -> None:
    """A binary array or .npy part declaring more than LOSSD_MAX_ELEMENTS is 413 before its
    data is looked at."""
    huge = 1 << 26
    header = _with("predictions", shape=[huge], binary_data_size=huge * 8)
    body, headers = _framed(header, DATA)
    response = client.post("/loss/mse", content=body, headers=headers)
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "too_many_elements"
    # a .npy header written by hand: np.save cannot be asked for 2**26 elements cheaply
    text = f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({huge},), }}".encode()
    text = text.ljust(118) + b"\n"
    fat = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text
    body, headers = multipart_body([("predictions", fat), ("targets", GOOD_NPY)])
    response = client.post("/loss/mse", content=body, headers=headers)
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "too_many_elements"


@pytest.mark.loss("mse")
def test_bodies_over_max_body_bytes_are_413() -> None:
    """A binary or multipart body over LOSSD_MAX_BODY_BYTES is 413 payload_too_large."""
    arrays = {"predictions": np.zeros(1000), "targets": np.zeros(1000)}
    with served({"LOSSD_MAX_BODY_BYTES": "4096"}) as srv, http_client(srv) as http:
        for how in ("binary", "multipart"):
            response = post(http, "/loss/mse", arrays, {}, how)
            assert response.status_code == 413, response.text
            assert response.json()["code"] == "payload_too_large"
        small = {"predictions": np.zeros(10), "targets": np.ones(10)}
        assert post(http, "/loss/mse", small, {}, "binary").json()["value"] == 1.0


def _aligned(data: bytes, at: int) -> np.ndarray:
    buffer = _aligned_empty(len(data), at)
    buffer[:] = np.frombuffer(data, dtype=np.uint8)
    return buffer


def _no_reserve(size: int) -> None:
    assert size >= 0


def test_binary_arrays_are_views_of_the_body() -> None:
    """Decoded float64 arrays of a binary-framed body share memory with the body buffer; one at
    an odd offset is copied (the kernels take aligned arrays) but equal."""
    p, t = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    body, headers = framed_body({}, {"predictions": p, "targets": t})
    length = int(headers[HEADER])
    buffer = _aligned(body, length)
    doc, _ = bodies.read(bodies.Framed(length), buffer, (), 100, _no_reserve)
    for field, expected in (("predictions", p), ("targets", t)):
        array = doc[field].decode()
        assert np.shares_memory(array, buffer)
        np.testing.assert_array_equal(array, expected)
    odd = _aligned(body, length + 1)  # the binary section one byte past a boundary
    doc, _ = bodies.read(bodies.Framed(length), odd, (), 100, _no_reserve)
    array = doc["predictions"].decode()
    assert not np.shares_memory(array, odd)
    np.testing.assert_array_equal(array, p)


def test_npy_arrays_are_views_and_conversions_copies() -> None:
    """A little-endian C-ordered .npy part decodes as a view of the body; big-endian and
    Fortran-ordered ones are converted (copies) to the same numbers."""
    p = rng.normal(size=(3, 2))
    buffer = _aligned(npy(p), 0)  # np.save pads the header so the data starts 64-aligned
    array = decoded_npy(read_npy(buffer, "predictions", 100))
    assert np.shares_memory(array, buffer)
    np.testing.assert_array_equal(array, p)
    for variant in (p.astype(">f8"), np.asfortranarray(p)):
        buffer = _aligned(npy(variant), 0)
        array = decoded_npy(read_npy(buffer, "predictions", 100))
        assert array.dtype == np.dtype("<f8") and array.flags.c_contiguous
        assert not np.shares_memory(array, buffer)
        np.testing.assert_array_equal(array, p)


def test_openapi_documents_binary_and_multipart_bodies() -> None:
    """Both /loss routes document the JSON, binary-framed and multipart bodies and the binary
    answer with its header."""
    spec = create_app(Settings()).openapi()
    for path in ("/loss/{name}", "/loss"):
        op = spec["paths"][path]["post"]
        content = op["requestBody"]["content"]
        assert {"application/json", BINARY, "multipart/form-data"} <= set(content)
        assert set(content["multipart/form-data"]["schema"]["properties"]) == {*ARRAYS, "options"}
        assert HEADER in [p["name"] for p in op["parameters"]]
        ok = op["responses"]["200"]
        assert {"application/json", BINARY} <= set(ok["content"]) and HEADER in ok["headers"]


@pytest.mark.loss("mse")
@pytest.mark.parametrize("how", ["binary", "multipart"])
def test_binary_bodies_reserve_their_demand(how: str) -> None:
    """The arrays of a binary or multipart body, their conversions and compute copies are held
    in the memory account before they are made: 413 memory_budget when they can never fit."""
    p = rng.normal(size=(2000, 4)).astype(">f8")  # big-endian: a .npy part is converted (copied)
    arrays = {"predictions": p, "targets": np.zeros((2000, 4))}
    if how == "binary":
        arrays["predictions"] = p.astype("<f8")
        raw, headers = framed_body({"gradient": True}, arrays)
        form: bodies.Form = bodies.Framed(int(headers[HEADER]))
        at = form.header_length
    else:
        parts = [(k, npy(v)) for k, v in arrays.items()] + [("options", b'{"gradient": true}')]
        raw, headers = multipart_body(parts)
        form, at = bodies.Multipart(b"lossd-test-boundary"), 0
    demand = 3 * p.nbytes  # at least: the inputs (2), the gradient (1)
    account = MemoryAccount(10 * 2**20)
    reply = codec.evaluate_one("mse", _aligned(raw, at), 10**6, lease=account.lease(), form=form)
    assert reply.results[0].n == 2000
    assert account.peak >= demand
    small = MemoryAccount(demand)
    with pytest.raises(MemoryBudget):
        codec.evaluate_one("mse", _aligned(raw, at), 10**6, lease=small.lease(), form=form)


@pytest.mark.loss("mse")
def test_framed_header_may_keep_json_and_packed_arrays(client: httpx.Client) -> None:
    """In the binary framing an array field may stay a JSON list or packed array in the header."""
    p, t, w = rng.normal(size=5), rng.normal(size=5), rng.uniform(size=5)
    fields = {"targets": t.tolist(), "sample_weight": packed(w), "gradient": True}
    body, headers = framed_body(fields, {"predictions": p})
    response = client.post("/loss/mse", content=body, headers=headers)
    assert response.status_code == 200, response.text
    arrays = {"predictions": p, "targets": t, "sample_weight": w}
    assert response.content == post(client, "/loss/mse", arrays, {"gradient": True}, "json").content


def _count(client: httpx.Client, encoding: str, status: int) -> float:
    """lossd_requests_total of mse requests with this encoding and status."""
    labels = f'encoding="{encoding}",loss="mse",status="{status}"'
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("lossd_requests_total{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.loss("mse")
@pytest.mark.parametrize("how", ["binary", "multipart"])
def test_metrics_count_binary_bodies_by_encoding(client: httpx.Client, how: str) -> None:
    """Requests are counted under encoding ``binary`` or ``multipart``, refused ones too."""
    arrays = {"predictions": np.zeros(3), "targets": np.ones(3)}
    before = _count(client, how, 200), _count(client, how, 422)
    assert post(client, "/loss/mse", arrays, {}, how).status_code == 200
    bad = {"predictions": np.zeros(3), "targets": np.ones(2)}
    assert post(client, "/loss/mse", bad, {}, how).status_code == 422
    after = _count(client, how, 200), _count(client, how, 422)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([b"b", b"lossd-test-boundary"]))
def test_arbitrary_bytes_as_multipart_or_npy_are_problems(raw: bytes, boundary: bytes) -> None:
    """Any bytes, as a multipart body or as a .npy part (also behind a real .npy preamble), are
    read or refused as a lossd problem, never another exception."""
    for data in (raw, GOOD_NPY[:10] + raw, b"--" + boundary + b"\r\n" + raw):
        for read in (
            lambda d: multipart_parts(_aligned(d, 0), boundary),
            lambda d: read_npy(_aligned(d, 0), "predictions", 1000),
        ):
            try:
                read(data)
            except LossdError as exc:
                assert 400 <= exc.status < 500
