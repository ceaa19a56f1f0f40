"""The Open Inference Protocol v2 against a live server: the unmodified tritonclient, raw HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.app import create_app
from service.losses import REGISTRY
from service.settings import Settings
from tests.support.references import multiclass, one_hot, regression
from tests.support.servers import Server

HEADER = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def tc(server: Server) -> Iterator[triton.InferenceServerClient]:
    """tritonclient's HTTP client, as a model-serving user would create it."""
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


def tensor(name: str, array: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    t = triton.InferInput(name, list(array.shape), datatype)
    t.set_data_from_numpy(array, binary_data=binary)
    return t


def wanted(*names: str, binary: bool) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=binary) for name in names]


def loss_route(client: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    """The answer of POST /loss/{name}, the reference for everything /v2 returns."""
    doc = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in fields.items()}
    response = client.post(f"/loss/{name}", json=doc)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def binary_request(doc: dict[str, Any], *arrays: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """A request in the binary tensor data extension, built by hand (not by tritonclient)."""
    header = orjson.dumps(doc)
    body = header + b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
    return body, {HEADER: str(len(header)), "Content-Type": "application/octet-stream"}


def split_binary(response: httpx.Response) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A binary response's JSON header and its outputs, read as the extension says."""
    size = int(response.headers[HEADER])
    doc = orjson.loads(response.content[:size])
    out, offset = {}, size
    for output in doc["outputs"]:
        if "parameters" not in output:  # a JSON output, in the header
            continue
        length = output["parameters"]["binary_data_size"]
        dtype = {"FP64": "<f8", "FP32": "<f4"}[output["datatype"]]
        raw = response.content[offset : offset + length]
        out[output["name"]] = np.frombuffer(raw, dtype=dtype).reshape(output["shape"])
        offset += length
    assert offset == len(response.content)
    return doc, out


def test_server_health_and_metadata(tc: triton.InferenceServerClient) -> None:
    """tritonclient sees a live, ready server that names the binary tensor data extension."""
    assert tc.is_server_live()
    assert tc.is_server_ready()
    meta = tc.get_server_metadata()
    assert meta["name"] == "lossd"
    assert {"binary_tensor_data", "parameters"} <= set(meta["extensions"])


def test_every_loss_and_alias_is_a_ready_model(tc: triton.InferenceServerClient) -> None:
    """Every loss, by name and by each alias, is a ready model with the metadata of its loss:
    a targets input when it takes targets, its extra inputs after sample_weight, and their
    gradients after the usual outputs."""
    for spec in REGISTRY:
        for name in (spec.name, *spec.aliases):
            assert tc.is_model_ready(name), name
            meta = tc.get_model_metadata(name)
            assert meta["name"] == spec.name
            assert meta["versions"] == ["1"]
            inputs = {t["name"]: t for t in meta["inputs"]}
            extra = [x.name for x in spec.params.inputs]
            batch = ["predictions", "targets", "sample_weight"] if spec.targets else [
                "predictions", "sample_weight"]  # fmt: skip
            assert list(inputs) == [*batch, *extra]
            assert inputs["sample_weight"]["optional"] and inputs["sample_weight"]["shape"] == [-1]
            assert inputs["predictions"]["datatypes"] == ["FP64", "FP32", "FP16", "BF16"]
            assert all(t["datatypes"] == ["FP64", "FP32"] for t in meta["outputs"])
            assert not any(inputs[x]["optional"] for x in extra)
            index = bool({"class_index", "labels", "sequence"} & set(spec.targets))
            if spec.targets:
                assert ("INT64" in inputs["targets"]["datatypes"]) == index
                one_a_sample = spec.targets in (("per_sample",), ("labels",))
                rows = index or spec.params.min_rank == 1 or one_a_sample
                if spec.targets == ("sequence",):  # ctc: (N, S) label rows only
                    rows = False
                assert ([-1] in inputs["targets"]["shapes"]) == rows
            outputs = [t["name"] for t in meta["outputs"]]
            usual = ["value", "per_sample", "gradient", "hessian"][: 3 + spec.hessian]
            differentiable = [x.name for x in spec.params.inputs if x.differentiable]
            assert outputs == [*usual, *(f"input_gradients.{x}" for x in differentiable)]
            assert set(meta["parameters"].get("properties", {})) == set(spec.params.model_fields)


def test_versioned_routes(tc: triton.InferenceServerClient, client: httpx.Client) -> None:
    """Version 1 is every model's one version; another version is a 404 in the protocol's shape."""
    assert tc.get_model_metadata("mse", model_version="1")["name"] == "mse"
    assert tc.is_model_ready("mse", model_version="1")
    p = np.array([1.0, 2.0])
    inputs = [tensor("predictions", p, "FP64", True), tensor("targets", p * 0, "FP64", True)]
    result = tc.infer("mse", inputs, model_version="1")
    assert result.as_numpy("value").tolist() == [2.5]  # (1 + 4) / 2
    for path in ("/v2/models/mse/versions/2", "/v2/models/mse/versions/2/ready"):
        response = client.get(path)
        assert response.status_code == 404
        assert "only one is 1" in response.json()["error"]
    assert not tc.is_model_ready("mse", model_version="2")


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
def test_infer_equals_the_loss_route(
    tc: triton.InferenceServerClient,
    client: httpx.Client,
    datatype: str,
    binary_in: bool,
    binary_out: bool,
) -> None:
    """Huber with delta and reduction sum, weights, gradient and Hessian: /loss's answer exactly."""
    rng = np.random.default_rng(7)
    dtype = np.float64 if datatype == "FP64" else np.float32
    p = rng.normal(size=(6, 3)).astype(dtype)
    t = rng.normal(size=(6, 3)).astype(dtype)
    w = rng.uniform(0.5, 2.0, size=6).astype(dtype)
    inputs = [
        tensor("predictions", p, datatype, binary_in),
        tensor("targets", t, datatype, binary_in),
        tensor("sample_weight", w, datatype, binary_in),
    ]
    outputs = wanted("value", "per_sample", "gradient", "hessian", binary=binary_out)
    result = tc.infer(
        "HuberLoss",
        inputs,
        outputs=outputs,
        parameters={"delta": 0.5, "reduction": "sum"},
        request_id="req-42",
    )
    doc = result.get_response()
    assert doc["id"] == "req-42" and doc["model_name"] == "huber"
    assert [o["datatype"] for o in doc["outputs"]] == [datatype] * 4
    assert all(("parameters" in o) == binary_out for o in doc["outputs"])
    # HuberLoss carries torch's reduction over all elements on both routes
    expected = loss_route(
        client,
        "HuberLoss",
        predictions=p,
        targets=t,
        sample_weight=w,
        params={"delta": 0.5},
        reduction="sum",
        gradient=True,
        hessian=True,
        dtype="float64" if datatype == "FP64" else "float32",
    )
    assert doc["parameters"] == {
        "reduction": "sum",
        "reduce_over": "elements",
        "weight_sum": expected["weight_sum"],
        "n": 6,
    }
    assert result.as_numpy("value").dtype == dtype
    assert result.as_numpy("value")[0] == dtype(expected["value"])
    for name in ("per_sample", "gradient", "hessian"):
        assert np.array_equal(result.as_numpy(name), np.asarray(expected[name], dtype=dtype))
    # and the numbers are right: the reference's per-sample losses, weighted and summed
    per_sample = regression.huber(p.astype(np.float64), t.astype(np.float64), delta=0.5)
    close = {"rtol": 1e-12} if datatype == "FP64" else {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(result.as_numpy("per_sample"), per_sample, **close)
    # over elements, each row's three terms count: three times the sum of the row means
    np.testing.assert_allclose(result.as_numpy("value")[0], 3 * (w @ per_sample), **close)


def test_default_outputs_are_value_and_per_sample(tc: triton.InferenceServerClient) -> None:
    """Without `outputs` the answer is value and per_sample (binary, as tritonclient asks)."""
    p = np.array([[0.5, 2.0], [1.0, -1.0]])
    t = np.array([[0.0, 0.0], [1.0, 1.0]])
    result = tc.infer(
        "mse", [tensor("predictions", p, "FP64", False), tensor("targets", t, "FP64", False)]
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["value", "per_sample"]
    per_sample = regression.mse(p, t)  # [2.125, 2.0]
    np.testing.assert_allclose(result.as_numpy("per_sample"), per_sample, rtol=1e-12)
    np.testing.assert_allclose(result.as_numpy("value"), [per_sample.mean()], rtol=1e-12)
    assert result.as_numpy("gradient") is None


@pytest.mark.parametrize("datatype", ["INT64", "INT32"])
def test_cross_entropy_with_class_index_targets(
    tc: triton.InferenceServerClient, client: httpx.Client, datatype: str
) -> None:
    """Integer class indices (binary INT64, JSON INT32) with logits: PyTorch's cross-entropy."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(8, 4))
    index = rng.integers(0, 4, size=8).astype(np.int64 if datatype == "INT64" else np.int32)
    binary = datatype == "INT64"
    inputs = [
        tensor("predictions", logits, "FP64", binary),
        tensor("targets", index, datatype, binary),
    ]
    result = tc.infer(
        "CrossEntropyLoss",
        inputs,
        outputs=wanted("value", "gradient", binary=binary),
        parameters={"from_logits": True, "label_smoothing": 0.1},
    )
    onehot = one_hot(index.astype(np.float64), 4)
    per_sample = multiclass.cross_entropy(logits, onehot, from_logits=True, label_smoothing=0.1)
    np.testing.assert_allclose(result.as_numpy("value"), [per_sample.mean()], rtol=1e-12)
    expected = loss_route(
        client,
        "cross_entropy",
        predictions=logits,
        targets=index,
        params={"from_logits": True, "label_smoothing": 0.1},
        gradient=True,
    )
    assert result.as_numpy("value").tolist() == [expected["value"]]
    assert np.array_equal(result.as_numpy("gradient"), np.asarray(expected["gradient"]))


def test_list_parameters_as_json_text(tc: triton.InferenceServerClient) -> None:
    """A list parameter (class_weight) may come as JSON text, as scalar-only clients send it."""
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, -1.0, 0.0]])
    index = np.array([0, 2, 1])
    inputs = [tensor("predictions", logits, "FP64", True), tensor("targets", index, "INT64", True)]
    answers = [
        tc.infer(
            "cross_entropy",
            inputs,
            parameters={"from_logits": True, "class_weight": weights, "reduction": "none"},
            outputs=wanted("per_sample", binary=False),
        ).as_numpy("per_sample")
        for weights in ("[1.0, 2.0, 0.5]", [1.0, 2.0, 0.5])
    ]
    expected = multiclass.cross_entropy(
        logits, one_hot(index, 3), from_logits=True, class_weight=[1.0, 2.0, 0.5]
    )
    np.testing.assert_allclose(answers[0], expected, rtol=1e-12)
    assert np.array_equal(answers[0], answers[1])


def test_binary_request_built_by_hand(client: httpx.Client) -> None:
    """The extension both ways without tritonclient: headers, order and sizes as documented."""
    p = np.array([0.5, 2.0, -1.0])
    t = np.array([0.0, 0.0, 1.0])
    w = np.array([1.0, 2.0, 0.0], dtype=np.float32)
    doc = {
        "id": "7",
        "inputs": [
            {"name": "predictions", "shape": [3], "datatype": "FP64", "parameters": {"binary_data_size": 24}},
            {"name": "targets", "shape": [3], "datatype": "FP64", "data": t.tolist()},
            {"name": "sample_weight", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 12}},
        ],
        "outputs": [{"name": "gradient", "parameters": {"binary_data": True}}, {"name": "value"}],
        "parameters": {"reduction": "mean"},
    }  # fmt: skip
    body, headers = binary_request(doc, p, w)
    response = client.post("/v2/models/mae/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    head, arrays = split_binary(response)
    assert head["id"] == "7"
    assert [o["name"] for o in head["outputs"]] == ["gradient", "value"]
    # mae: mean of |r| weighted by w: (0.5·1 + 2·2 + 2·0) / 3 = 1.5; gradient w·sign(r)/Σw
    assert head["outputs"][1]["data"] == [1.5]
    np.testing.assert_allclose(arrays["gradient"], [1 / 3, 2 / 3, 0.0], rtol=1e-15)


def test_json_only_response_has_no_header_length(client: httpx.Client) -> None:
    """Without binary outputs the response is plain JSON, without the extension's header."""
    doc = {
        "inputs": [
            {"name": "predictions", "shape": [2, 1], "datatype": "FP64", "data": [[1.0], [3.0]]},
            {"name": "targets", "shape": [2, 1], "datatype": "FP64", "data": [0.0, 0.0]},
        ]
    }
    response = client.post("/v2/models/mse/infer", json=doc)
    assert response.status_code == 200
    assert HEADER not in response.headers
    assert response.headers["content-type"] == "application/json"
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["value"] == {"name": "value", "datatype": "FP64", "shape": [1], "data": [5.0]}
    assert outputs["per_sample"]["data"] == [1.0, 9.0]


def test_reduction_none_and_empty_batch(tc: triton.InferenceServerClient) -> None:
    """reduction none returns per_sample without value; N = 0 gives value 0 and no rows."""
    p = np.array([1.0, 2.0, 3.0])
    inputs = [tensor("predictions", p, "FP64", True), tensor("targets", p + 1, "FP64", True)]
    result = tc.infer("mae", inputs, parameters={"reduction": "none", "gradient": True})
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["per_sample", "gradient"]
    assert result.as_numpy("gradient").tolist() == [-1.0, -1.0, -1.0]
    empty = np.zeros(0)
    inputs = [tensor("predictions", empty, "FP64", True), tensor("targets", empty, "FP64", True)]
    result = tc.infer("mse", inputs)
    assert result.as_numpy("value").tolist() == [0.0]
    assert result.as_numpy("per_sample").shape == (0,)


def test_large_binary_batch(tc: triton.InferenceServerClient) -> None:
    """300 000 rows in binary both ways (a streamed response): NumPy's mse and gradient."""
    rng = np.random.default_rng(11)
    p, t = rng.normal(size=300_000), rng.normal(size=300_000)
    inputs = [tensor("predictions", p, "FP64", True), tensor("targets", t, "FP64", True)]
    result = tc.infer("mse", inputs, outputs=wanted("value", "gradient", binary=True))
    np.testing.assert_allclose(result.as_numpy("value"), [np.mean((p - t) ** 2)], rtol=1e-12)
    np.testing.assert_allclose(result.as_numpy("gradient"), 2 * (p - t) / p.size, rtol=1e-12)


def test_tritonclient_raises_the_error_message(tc: triton.InferenceServerClient) -> None:
    """A refused request reaches tritonclient's user as an exception with the server's message."""
    p = np.ones((2, 3))
    inputs = [tensor("predictions", p, "FP64", True), tensor("targets", p[:, :2], "FP64", True)]
    with pytest.raises(InferenceServerException) as caught:
        tc.infer("mse", inputs)
    assert caught.value.status() == "422"
    assert "targets have shape [2, 2], predictions [2, 3]" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        tc.get_model_metadata("no_such_loss")
    assert caught.value.status() == "404"


def _json_tensor(name: str, data: list[Any], datatype: str = "FP64") -> dict[str, Any]:
    return {"name": name, "shape": [len(data)], "datatype": datatype, "data": data}


GOOD = [_json_tensor("predictions", [0.5, 1.0]), _json_tensor("targets", [0.0, 1.0])]
BAD_REQUESTS = {
    "unknown input": (
        {"inputs": [*GOOD, _json_tensor("labels", [1.0, 2.0])]},
        "mse takes no input `labels`",
    ),
    "shape and data disagree": (
        {"inputs": [GOOD[0], {**GOOD[1], "shape": [3]}]},
        "data has 2 elements; shape [3] needs 3",
    ),
    "shapes differ": (
        {"inputs": [GOOD[0], _json_tensor("targets", [0.0, 1.0, 2.0])]},
        "targets have shape [3], predictions [2]",
    ),
    "rank 4": (
        {"inputs": [{**GOOD[0], "shape": [1, 1, 1, 2]}, GOOD[1]]},
        "inputs.0.shape",
    ),
    "rank 3 targets": (
        {"inputs": [GOOD[0], {**GOOD[1], "shape": [1, 1, 2]}]},
        "only predictions may have rank 3",
    ),
    "rank 3 but not ctc": (
        {"inputs": [{**GOOD[0], "shape": [1, 1, 2]}, GOOD[1]]},
        "rank 3 is for ctc",
    ),
    "BYTES datatype": (
        {"inputs": [{**GOOD[0], "datatype": "BYTES"}, GOOD[1]]},
        "inputs.0.datatype",
    ),
    "integer targets for a regression loss": (
        {"inputs": [GOOD[0], _json_tensor("targets", [0, 1], "INT64")]},
        "datatype INT64 is not accepted; mse takes FP64, FP32, FP16 or BF16 targets",
    ),
    "floats in an INT64 tensor": (
        {"inputs": [{**GOOD[0], "shape": [2, 2], "data": [0.5] * 4}, _json_tensor("targets", [0.5, 1.0], "INT64")]},
        "INT64 data must be integers",
    ),
    "class index out of range": (
        {"inputs": [{**GOOD[0], "shape": [2, 2], "data": [0.5] * 4}, _json_tensor("targets", [0, 2**40], "INT32")]},
        "INT32 data must be integers in its range",
    ),
    "a string in data": (
        {"inputs": [GOOD[0], _json_tensor("targets", [0.0, "1"])]},
        "must be a number, not a string",
    ),
    "missing targets": ({"inputs": GOOD[:1]}, "`targets` is required"),
    "unknown loss parameter": (
        {"inputs": GOOD, "parameters": {"delta": 2.0}},
        "parameters.delta",
    ),
    "parameter out of range": (
        {"inputs": GOOD, "parameters": {"delta": -1.0}},
        "parameters.delta",
    ),
    "bad reduction": (
        {"inputs": GOOD, "parameters": {"reduction": "max"}},
        "parameters.reduction",
    ),
    "unknown output": ({"inputs": GOOD, "outputs": [{"name": "loss"}]}, "no output loss"),
    "value with reduction none": (
        {"inputs": GOOD, "outputs": [{"name": "value"}], "parameters": {"reduction": "none"}},
        "no `value` with reduction none",
    ),
    "flag against outputs": (
        {"inputs": GOOD, "outputs": [{"name": "value"}], "parameters": {"gradient": True}},
        "parameters.gradient is true",
    ),
    "classification extension": (
        {"inputs": GOOD, "outputs": [{"name": "per_sample", "parameters": {"classification": 2}}]},
        "classification extension is not supported",
    ),
    "unknown field": ({"inputs": GOOD, "model": "mse"}, "model"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_json_requests_are_422(client: httpx.Client, case: str) -> None:
    """Each wrong request is a 422 {"error": ...} that says what is wrong."""
    doc, message = BAD_REQUESTS[case]
    model = {"parameter out of range": "huber"}.get(case, "mse")
    if case in ("floats in an INT64 tensor", "class index out of range"):
        model = "cross_entropy"
    response = client.post(f"/v2/models/{model}/infer", json=doc)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and message in body["error"]


def _binary_doc(size: int) -> dict[str, Any]:
    binary = {"binary_data_size": size}
    return {
        "inputs": [
            {"name": "predictions", "shape": [2], "datatype": "FP64", "parameters": binary},
            {"name": "targets", "shape": [2], "datatype": "FP64", "data": [0.0, 1.0]},
        ]
    }


def test_binary_size_mismatches_are_422(client: httpx.Client) -> None:
    """binary_data_size against the shape, against the bytes sent, and the header length."""
    data = np.array([0.5, 1.0])
    cases = [
        (_binary_doc(12), data, "binary_data_size is 12; shape [2] of FP64 is 16 bytes"),
        (_binary_doc(16), data[:1], "only 8 bytes of binary data are left"),
        (_binary_doc(16), np.r_[data, 0.0], "the inputs' binary_data_size add up to 16"),
        (_binary_doc(16), np.array([0.5, np.nan]), "NaN or Infinity"),
    ]
    for doc, array, message in cases:
        body, headers = binary_request(doc, array)
        response = client.post("/v2/models/mse/infer", content=body, headers=headers)
        assert response.status_code == 422, response.text
        assert message in response.json()["error"]
    body, headers = binary_request(_binary_doc(16), data)
    for length, message in ((len(body) + 1, "the body has only"), ("x", "byte length")):
        response = client.post(
            "/v2/models/mse/infer", content=body, headers={**headers, HEADER: str(length)}
        )
        assert response.status_code == 422
        assert message in response.json()["error"]
    # binary data without the header is not JSON
    response = client.post("/v2/models/mse/infer", content=body)
    assert response.status_code == 422
    assert "Inference-Header-Content-Length" in response.json()["error"]


def test_media_type_size_and_model_errors(client: httpx.Client) -> None:
    """415 for another content type or a compressed body, 413 past the limits, 404."""
    doc = {"inputs": GOOD}
    for headers in ({"Content-Type": "text/plain"}, {"Content-Encoding": "gzip"}):
        response = client.post("/v2/models/mse/infer", content=orjson.dumps(doc), headers=headers)
        assert response.status_code == 415
        assert list(response.json()) == ["error"]
    huge = {"inputs": [{**GOOD[0], "shape": [40_000_000]}, GOOD[1]]}  # > LOSSD_MAX_ELEMENTS
    response = client.post("/v2/models/mse/infer", json=huge)
    assert response.status_code == 413
    assert "LOSSD_MAX_ELEMENTS" in response.json()["error"]
    # shapes whose arrays, compute copies and JSON outputs would pass LOSSD_MAX_REQUEST_BYTES
    tall = [{**t, "shape": [33_000_000], "data": []} for t in GOOD]
    outputs = [{"name": name} for name in ("per_sample", "gradient", "hessian")]
    response = client.post("/v2/models/mse/infer", json={"inputs": tall, "outputs": outputs})
    assert response.status_code == 413
    assert "LOSSD_MAX_REQUEST_BYTES" in response.json()["error"]
    for method, path in (
        ("POST", "/v2/models/no_such_loss/infer"),
        ("GET", "/v2/models/no_such_loss"),
        ("GET", "/v2/models/no_such_loss/ready"),
    ):
        response = client.request(method, path, json=doc)
        assert response.status_code == 404
        assert "unknown loss 'no_such_loss'" in response.json()["error"]


def test_route_errors_under_v2_are_protocol_shaped(client: httpx.Client) -> None:
    """A wrong method or path under /v2 is {"error": ...}; outside /v2 errors stay problem+json."""
    response = client.get("/v2/models/mse/infer")
    assert response.status_code == 405 and list(response.json()) == ["error"]
    response = client.get("/v2/nothing/here")
    assert response.status_code == 404 and list(response.json()) == ["error"]
    response = client.get("/losses/no_such_loss")
    assert response.headers["content-type"] == "application/problem+json"


def test_openapi_documents_the_protocol() -> None:
    """Every /v2 route has a stable operationId; infer's bodies, header and errors are described."""
    spec = create_app(Settings()).openapi()
    operations = {
        op["operationId"]: op
        for path, item in spec["paths"].items()
        if path.startswith("/v2")
        for op in item.values()
    }
    assert set(operations) == {
        "v2_server_metadata",
        "v2_server_live",
        "v2_server_ready",
        "v2_model_metadata",
        "v2_model_version_metadata",
        "v2_model_ready",
        "v2_model_version_ready",
        "v2_infer",
        "v2_model_version_infer",
        "v2_model_config",
        "v2_model_version_config",
        "v2_repository_index",
        "v2_statistics",
        "v2_model_statistics",
        "v2_model_version_statistics",
    }
    infer = operations["v2_infer"]
    body = infer["requestBody"]["content"]
    assert body["application/json"]["schema"]["$ref"].endswith("/InferRequest")
    assert "application/octet-stream" in body
    assert HEADER in infer["responses"]["200"]["headers"]
    assert HEADER in [p["name"] for p in infer["parameters"]]
    for op in operations.values():
        for status, response in op["responses"].items():
            if status in ("404", "413", "415", "422", "503"):
                schema = response["content"]["application/json"]["schema"]
                assert schema["$ref"].endswith("/InferError"), (op["operationId"], status)
    assert {"InferRequest", "InferResponse", "InferError", "ModelMetadata"} <= set(
        spec["components"]["schemas"]
    )
