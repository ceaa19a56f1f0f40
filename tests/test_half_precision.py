"""Half precision and numpy's dtype names (SPEC section 2, amendment "dtypes"): float16 and
bfloat16 packed arrays and /v2 FP16/BF16 tensors compute in float32 unless float64 is asked.

Every expected answer comes from the same request sent in float32 (or float64): the values used
are exactly representable in both half formats, so a half request must give those answers bit
for bit. bfloat16 bytes are built here independently of the service: the top 16 bits of each
float32. Value comparisons run in-process through the codecs; problem+json answers and /v2 go
through the live server.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import torch

from service.codecs import oip
from service.codecs.loss import _demand, _half, _Limits, evaluate_many, evaluate_one
from service.dtypes import PACKED_DTYPES
from service.losses import LossSpec, resolve
from tests.support.harness import spec_id
from tests.support.problems import assert_problem

Array = np.ndarray[Any, np.dtype[Any]]
HALVES = ("float16", "bfloat16")
HEADER = "Inference-Header-Content-Length"
MSE, HUBER = resolve("mse"), resolve("huber")
BCE, CE = resolve("binary_cross_entropy"), resolve("cross_entropy")

# Values with at most 8 significant bits and small exponents: exact in float16 and bfloat16.
X = np.array([0.5, -1.25, 3.0, 2.0, 0.375, -0.75], dtype=np.float32)
Y = np.array([0.25, 1.0, -2.0, 2.5, 0.375, 1.5], dtype=np.float32)
LABELS = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0], dtype=np.float32)
WEIGHTS = np.array([1.0, 0.5, 2.0, 1.5, 1.0, 0.25], dtype=np.float32)
LOGITS = np.array(
    [[0.5, -1.25, 3.0], [2.0, 0.375, -0.75], [1.5, 1.5, -3.5],
     [0.0, 6.0, -0.125], [-2.0, 0.25, 1.75], [4.0, -4.0, 0.5]], dtype=np.float32,
)  # fmt: skip
CLASSES = np.array([0, 2, 1, 1, 0, 2], dtype=np.int64)

# loss -> (predictions, targets, params): targets of the predictions' dtype unless integer
CASES: dict[str, tuple[Array, Array, dict[str, Any]]] = {
    "mse": (X, Y, {}),
    "huber": (X, Y, {"delta": 1.5}),
    "binary_cross_entropy": (X, LABELS, {"from_logits": True}),
    "cross_entropy": (LOGITS, CLASSES, {"from_logits": True}),
}
SPECS = [MSE, HUBER, BCE, CE]

# numpy's spellings (as numpy.dtype reads them) and the canonical name they stand for; the
# platform-dependent ones (`long`, `l`, `int`, `p`: int32 on Windows) are left out on purpose
SPELLINGS = [
    ("<f8", "float64"), ("f8", "float64"), ("=f8", "float64"), ("|f8", "float64"),
    ("d", "float64"), ("double", "float64"), ("float", "float64"),
    ("<f4", "float32"), ("f4", "float32"), ("=f4", "float32"), ("f", "float32"),
    ("single", "float32"),
    ("<f2", "float16"), ("f2", "float16"), ("=f2", "float16"), ("e", "float16"),
    ("half", "float16"),
    ("<i8", "int64"), ("i8", "int64"), ("=i8", "int64"), ("q", "int64"), ("longlong", "int64"),
    ("<i4", "int32"), ("i4", "int32"), ("=i4", "int32"), ("i", "int32"), ("intc", "int32"),
]  # fmt: skip


def bfloat16_bits(values: Array) -> Array:
    """The bfloat16 bit patterns of ``values`` (which must be exact in bfloat16): the top 16
    bits of their float32 patterns."""
    bits = np.ascontiguousarray(values, dtype="<f4").view("<u4")
    assert not (bits & 0xFFFF).any(), "not exactly representable in bfloat16"
    return (bits >> 16).astype("<u2")


def raw_bytes(values: Array, dtype: str) -> bytes:
    """The little-endian bytes of ``values`` in ``dtype`` (a canonical name or a numpy spelling)."""
    if dtype == "bfloat16":
        return bfloat16_bits(values).tobytes()
    little = np.dtype(dtype).newbyteorder("<")
    converted = np.ascontiguousarray(values, dtype=little)
    assert np.array_equal(converted.astype(np.float64), values), f"not exact in {dtype}"
    return converted.tobytes()


def packed(values: Array, dtype: str) -> dict[str, Any]:
    return {
        "dtype": dtype,
        "shape": list(values.shape),
        "data": base64.b64encode(raw_bytes(values, dtype)).decode("ascii"),
    }


def loss_request(spec: LossSpec, floats: str, **options: Any) -> dict[str, Any]:
    """The spec's case with its floating-point arrays (weights too) packed as ``floats``."""
    pred, targ, params = CASES[spec.name]
    targets = packed(targ, "int64" if targ.dtype.kind == "i" else floats)
    return {
        "predictions": packed(pred, floats),
        "targets": targets,
        "sample_weight": packed(WEIGHTS, floats),
        "params": params,
        "gradient": True,
        "array_format": "packed",
        **options,
    }


def answer(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``POST /loss/{name}`` in-process (the /loss codec, as the route calls it)."""
    reply = evaluate_one(name, orjson.dumps(doc), 10**6)
    result: dict[str, Any] = orjson.loads(reply.body.tobytes())
    return result


# --- /loss: packed half arrays -----------------------------------------------------------------


@pytest.mark.parametrize("half", HALVES)
@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_half_request_equals_the_float32_request(spec: LossSpec, half: str) -> None:
    """Half arrays compute in float32 by default: the answer is the float32 request's, bit for
    bit (packed answers compared as bytes), and it comes back in float32."""
    got = answer(spec.name, loss_request(spec, half))
    expected = answer(spec.name, loss_request(spec, "float32", dtype="float32"))
    assert got == expected
    assert got["per_sample"]["dtype"] == got["gradient"]["dtype"] == "float32"
    assert got["value"] > 0


@pytest.mark.parametrize("half", HALVES)
@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_half_request_with_float64_equals_the_float64_request(spec: LossSpec, half: str) -> None:
    """With ``dtype: float64`` a half request computes in float64: the float64 request's answer."""
    got = answer(spec.name, loss_request(spec, half, dtype="float64"))
    expected = answer(spec.name, loss_request(spec, "float64"))
    assert got == expected
    assert got["per_sample"]["dtype"] == got["gradient"]["dtype"] == "float64"


@pytest.mark.loss(MSE.name, HUBER.name)
@pytest.mark.parametrize("half", HALVES)
def test_several_losses_on_half_arrays_compute_in_float32(half: str) -> None:
    """``POST /loss`` follows the same rule: half arrays, no dtype, the float32 answers."""

    def results(floats: str, **options: Any) -> Any:
        doc = {**loss_request(MSE, floats, **options), "losses": [{"name": "mse"},
               {"name": "huber", "params": {"delta": 1.5}}]}  # fmt: skip
        del doc["params"]
        return orjson.loads(evaluate_many(orjson.dumps(doc), 10**6).body.tobytes())["results"]

    got, expected = results(half), results("float32", dtype="float32")
    assert got == expected
    assert [r["per_sample"]["dtype"] for r in got] == ["float32", "float32"]


@pytest.mark.loss(MSE.name)
@pytest.mark.parametrize(("spelling", "canonical"), SPELLINGS)
def test_every_numpy_spelling_decodes_as_its_canonical_name(spelling: str, canonical: str) -> None:
    """A numpy spelling of a dtype gives the same answer as its canonical name (and numpy reads
    it as that type: the documented rule)."""
    assert np.dtype(spelling).newbyteorder("<") == np.dtype(PACKED_DTYPES[canonical])
    values = np.array([1.0, -2.0, 3.0, 0.0]) if canonical.startswith("int") else X
    targets = packed(Y[: values.size], "float32")

    def doc(dtype: str) -> dict[str, Any]:
        return {"predictions": packed(values, dtype), "targets": targets, "gradient": True,
                "array_format": "packed"}  # fmt: skip

    got, expected = answer(MSE.name, doc(spelling)), answer(MSE.name, doc(canonical))
    assert got == expected
    assert got["value"] > 0


def test_every_accepted_name_is_a_numpy_name_of_its_type() -> None:
    """The table of accepted names holds exactly numpy's little-endian or native names of the
    six types (``bfloat16`` aside, which numpy has none of), and none is big-endian."""
    canonical = {"float64", "float32", "float16", "int64", "int32"}
    for name, dtype in PACKED_DTYPES.items():
        if name == "bfloat16":
            continue
        read = np.dtype(name)
        assert read.str[0] != ">", name
        assert read.newbyteorder("<") == dtype and dtype.name in canonical, name
    assert {"<f8", "f8", "=f8", "f4", "<f4", "f2", "<f2", "half", "double", "single"} <= set(
        PACKED_DTYPES
    )


@pytest.mark.loss(CE.name)
def test_bfloat16_cross_entropy_agrees_with_torch_in_float32() -> None:
    """bfloat16 logits: torch's cross_entropy computing in float32 from the same bfloat16 values
    gives the same per-sample losses and mean (float32 rounding apart)."""
    logits = torch.tensor(LOGITS, dtype=torch.bfloat16)
    assert torch.equal(logits.float(), torch.from_numpy(LOGITS))  # the values are exact
    expected = torch.nn.functional.cross_entropy(
        logits.float(), torch.from_numpy(CLASSES), reduction="none"
    ).numpy()
    doc = {"predictions": packed(LOGITS, "bfloat16"), "targets": CLASSES.tolist(),
           "params": {"from_logits": True}}  # fmt: skip
    got = answer(CE.name, doc)
    # both round every step to float32 (epsilon 1.2e-7) in their own order: a loss near 0 is a
    # difference of terms of size ~6 (log-sum-exp minus the target's logit), so the tolerance
    # is a few epsilons of 6, absolute, besides a few relative
    np.testing.assert_allclose(got["per_sample"], expected, rtol=1e-6, atol=4 * 6 * 1.2e-7)
    assert got["value"] == pytest.approx(float(expected.mean()), rel=1e-6)


@pytest.mark.loss(CE.name)
def test_the_memory_demand_counts_the_float32_copy_of_a_half_array() -> None:
    """A half array is reserved at its 2 bytes an element plus the 4 of its float32 copy, and
    with no ``dtype`` sent the compute copies are reserved in float32."""
    doc = {"predictions": packed(LOGITS, "float16"), "targets": packed(CLASSES, "int64")}
    assert _half(doc)
    demand = _demand(doc, _Limits(10**6, None, None, CE.name), _half(doc))
    assert demand is not None
    assert [(d.elements, d.itemsize) for d in demand.inputs] == [(18, 2 + 4), (6, 8)]
    assert demand.options.dtype == "float32"
    explicit = _demand({**doc, "dtype": "float64"}, _Limits(10**6, None, None, CE.name), True)
    assert explicit is not None and explicit.options.dtype == "float64"
    assert explicit.bytes_needed() > demand.bytes_needed()


# --- /loss: what is refused (live server: problem+json) -----------------------------------------


@pytest.mark.loss(MSE.name)
@pytest.mark.parametrize(
    ("dtype", "said"),
    [(">f8", "big-endian"), (">f2", "big-endian"), (">i4", "big-endian"),
     ("uint8", "float16"), ("float128", "bfloat16"), ("bf16", "float16"), ("F8", "bfloat16")],
)  # fmt: skip
def test_big_endian_and_unknown_names_are_422(client: httpx.Client, dtype: str, said: str) -> None:
    """A big-endian or unknown dtype name is a 422 naming the field's dtype; a big-endian one
    says so, an unknown one lists the accepted names."""
    targets = {"dtype": "float64", "shape": [2], "data": packed(Y[:2], "float64")["data"]}
    body = {"predictions": {**targets, "dtype": dtype}, "targets": targets}
    doc = assert_problem(client.post("/loss/mse", json=body), 422, "invalid_array")
    assert doc["errors"][0]["loc"] == ["predictions", "dtype"]
    assert "`predictions.dtype`" in doc["detail"] and said in doc["detail"]


# float16 and bfloat16 bit patterns of +inf, -inf and a quiet NaN
NON_FINITE = [("float16", bits) for bits in (0x7C00, 0xFC00, 0x7E00)] + [
    ("bfloat16", bits) for bits in (0x7F80, 0xFF80, 0x7FC0)
]


@pytest.mark.loss(MSE.name)
@pytest.mark.parametrize(("half", "bits"), NON_FINITE, ids=str)
def test_non_finite_half_values_are_422(client: httpx.Client, half: str, bits: int) -> None:
    """Infinity and NaN in half data are refused like float32's, at their index."""
    raw = np.array([0x3C00 if half == "float16" else 0x3F80] * 3, dtype="<u2")  # 1.0
    raw[1] = bits
    data = base64.b64encode(raw.tobytes()).decode("ascii")
    body = {"predictions": [1.0, 1.0, 1.0],
            "targets": {"dtype": half, "shape": [3], "data": data}}  # fmt: skip
    doc = assert_problem(client.post("/loss/mse", json=body), 422, "invalid_array")
    assert doc["errors"][0]["loc"] == ["targets", 1]
    assert "NaN or Infinity" in doc["detail"]


# --- /v2: FP16 and BF16 -----------------------------------------------------------------------

DATATYPES = {"FP16": "float16", "BF16": "bfloat16", "FP32": "float32", "FP64": "float64"}


def v2_request(
    spec: LossSpec, datatype: str, binary: bool, **parameters: Any
) -> tuple[bytes, dict[str, str]]:
    """An inference request for the spec's case with floating-point inputs in ``datatype``, as
    JSON data lists or in the binary tensor data extension (built by hand)."""
    pred, targ, params = CASES[spec.name]
    inputs = [("predictions", pred, datatype), ("sample_weight", WEIGHTS, datatype),
              ("targets", targ, "INT64" if targ.dtype.kind == "i" else datatype)]  # fmt: skip
    tensors, chunks = [], []
    for name, values, kind in inputs:
        tensor: dict[str, Any] = {"name": name, "shape": list(values.shape), "datatype": kind}
        if binary:
            chunk = raw_bytes(values, DATATYPES.get(kind, "int64"))
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            tensor["data"] = values.reshape(-1).tolist()
        tensors.append(tensor)
    doc = {"inputs": tensors, "parameters": {**params, "gradient": True, **parameters}}
    header = orjson.dumps(doc)
    headers = {"Content-Type": "application/json"}
    if binary:
        headers = {HEADER: str(len(header)), "Content-Type": "application/octet-stream"}
    return header + b"".join(chunks), headers


def infer(client: httpx.Client, spec: LossSpec, body: bytes, headers: dict[str, str]) -> Any:
    response = client.post(f"/v2/models/{spec.name}/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_v2_half_inputs_equal_fp32(
    client: httpx.Client, spec: LossSpec, datatype: str, binary: bool
) -> None:
    """FP16 and BF16 inputs, as JSON data or binary, give the FP32 request's outputs, in FP32."""
    got = infer(client, spec, *v2_request(spec, datatype, binary))
    expected = infer(client, spec, *v2_request(spec, "FP32", binary=False))
    assert got == expected
    assert {t["datatype"] for t in got["outputs"]} == {"FP32"}
    assert {t["name"] for t in got["outputs"]} == {"value", "per_sample", "gradient"}


@pytest.mark.loss(MSE.name)
@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_v2_half_inputs_with_float64_equal_fp64(client: httpx.Client, datatype: str) -> None:
    """With parameters.dtype float64, half inputs give the FP64 request's outputs, in FP64."""
    got = infer(client, MSE, *v2_request(MSE, datatype, True, dtype="float64"))
    expected = infer(client, MSE, *v2_request(MSE, "FP64", binary=True))
    assert got == expected
    assert {t["datatype"] for t in got["outputs"]} == {"FP64"}


@pytest.mark.loss(MSE.name)
def test_v2_bf16_json_numbers_round_to_nearest_even() -> None:
    """BF16 JSON data are rounded to bfloat16 as binary BF16 data would hold them: ties to even,
    past the largest bfloat16 to infinity (then refused)."""
    step = 2.0**-7  # bfloat16's spacing in [1, 2)
    values = np.array([1 + step / 2, 1 + 3 * step / 2, 1 + 0.51 * step, -1 - 0.49 * step])
    expected = np.array([1.0, 1 + 2 * step, 1 + step, -1.0], dtype=np.float32)
    np.testing.assert_array_equal(oip._round_bfloat16(values), expected)
    assert np.isinf(oip._round_bfloat16(np.array([3.4e38]))).all()


@pytest.mark.loss(CE.name)
def test_v2_metadata_lists_half_inputs_and_single_or_double_outputs(client: httpx.Client) -> None:
    """Model metadata: every floating-point input takes FP16 and BF16; outputs are FP64 or FP32."""
    meta = client.get(f"/v2/models/{CE.name}").json()
    inputs = {t["name"]: t["datatypes"] for t in meta["inputs"]}
    assert inputs["predictions"] == inputs["sample_weight"] == ["FP64", "FP32", "FP16", "BF16"]
    assert inputs["targets"] == ["FP64", "FP32", "FP16", "BF16", "INT64", "INT32"]
    assert all(t["datatypes"] == ["FP64", "FP32"] for t in meta["outputs"])
