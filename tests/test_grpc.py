"""The Open Inference Protocol v2 over gRPC (LOSSD_GRPC_PORT) against a live server: the
unmodified tritonclient.grpc, Triton's own generated messages for what it cannot send (typed
contents, malformed requests), and REST's answers to the same requests as the reference."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from service import errors
from service.api.grpc_server import STATUS, address, status_code
from service.codecs import oip_grpc
from service.losses import REGISTRY
from service.memory import MemoryAccount
from service.protos import lossd_inference_pb2 as pb
from service.settings import Settings
from tests.support.servers import ROOT, Server, free_port, http_client, served, start_server

MAX_BODY_BYTES = 1_000_000  # the module server's LOSSD_MAX_BODY_BYTES: the largest message
MAX_ELEMENTS = 50_000  # and its LOSSD_MAX_ELEMENTS
BODY_TIMEOUT = 2  # and its LOSSD_BODY_TIMEOUT: how long a message may take to arrive


@pytest.fixture(scope="module")
def grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(grpc_port: int) -> Iterator[Server]:
    env = {
        "LOSSD_GRPC_PORT": str(grpc_port),
        "LOSSD_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "LOSSD_MAX_ELEMENTS": str(MAX_ELEMENTS),
        "LOSSD_BODY_TIMEOUT": str(BODY_TIMEOUT),
    }
    with served(env) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with http_client(server) as client:
        yield client


@pytest.fixture(scope="module")
def tc(server: Server, grpc_port: int) -> Iterator[tgrpc.InferenceServerClient]:
    """tritonclient's gRPC client, as a model-serving user would create it."""
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def th(server: Server) -> Iterator[thttp.InferenceServerClient]:
    """tritonclient's HTTP client of the same server: REST's answers to compare with."""
    client = thttp.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def channel(server: Server, grpc_port: int) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> service_pb2_grpc.GRPCInferenceServiceStub:
    """Triton's own stub (tritonclient's generated code): requests tritonclient cannot make."""
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def grpc_input(name: str, array: np.ndarray, datatype: str) -> tgrpc.InferInput:
    tensor = tgrpc.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def refused(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


# --- health, metadata and Triton's extensions --------------------------------------------------


def test_health_and_server_metadata(tc: tgrpc.InferenceServerClient) -> None:
    assert tc.is_server_live() and tc.is_server_ready()
    assert tc.is_model_ready("MSELoss") and tc.is_model_ready("mse", "1")  # an alias, a version
    meta = tc.get_server_metadata(as_json=True)
    assert meta["name"] == "lossd"
    assert {"binary_tensor_data", "model_configuration", "statistics"} <= set(meta["extensions"])


def test_the_grpc_health_service(channel: grpc.Channel) -> None:
    """grpc.health.v1.Health/Check, as Kubernetes' gRPC probes and grpc_health_probe ask."""
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=pb.HealthCheckRequest.SerializeToString,
        response_deserializer=pb.HealthCheckResponse.FromString,
    )
    for service in ("", "inference.GRPCInferenceService"):
        assert (
            check(pb.HealthCheckRequest(service=service)).status == pb.HealthCheckResponse.SERVING
        )
    with pytest.raises(grpc.RpcError) as caught:
        check(pb.HealthCheckRequest(service="no.such.Service"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_model_metadata_is_the_rest_document(
    tc: tgrpc.InferenceServerClient, th: thttp.InferenceServerClient
) -> None:
    """The protocol's fields of GET /v2/models/{name}: name, versions, platform, tensors."""
    meta = tc.get_model_metadata("CrossEntropyLoss", as_json=True)
    rest = th.get_model_metadata("CrossEntropyLoss")
    assert meta["name"] == rest["name"] == "cross_entropy"
    assert meta["versions"] == rest["versions"] == ["1"]
    assert meta["platform"] == rest["platform"]
    for kind in ("inputs", "outputs"):
        assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta[kind]] == [
            (t["name"], t["datatype"], t["shape"]) for t in rest[kind]
        ]


@pytest.mark.parametrize("version", ["", "1"])
def test_model_config_is_the_rest_document(
    tc: tgrpc.InferenceServerClient, th: thttp.InferenceServerClient, version: str
) -> None:
    """get_model_config over gRPC: every input and output with its Triton datatype and dims,
    and every datatype and shape each tensor takes, as over REST. (protobuf's JSON leaves out
    false and zero fields and writes int64 as strings.)"""
    config = tc.get_model_config("cross_entropy", version, as_json=True)["config"]
    rest = th.get_model_config("cross_entropy", version)
    assert config["name"] == "cross_entropy" and config["backend"] == rest["backend"]
    assert config["version_policy"] == {"specific": {"versions": ["1"]}}
    for kind in ("input", "output"):
        got = [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config[kind]]
        assert got == [(t["name"], t["data_type"], t["dims"]) for t in rest[kind]]
    optional = {t["name"]: t.get("optional", False) for t in config["input"]}
    assert optional == {"predictions": False, "targets": False, "sample_weight": True}
    assert config["parameters"] == rest["parameters"]
    assert config["parameters"]["targets_datatypes"] == {
        "string_value": "FP64,FP32,FP16,BF16,INT64,INT32"
    }


def test_repository_index_lists_every_loss_ready(
    tc: tgrpc.InferenceServerClient, stub: service_pb2_grpc.GRPCInferenceServiceStub
) -> None:
    index = tc.get_model_repository_index(as_json=True)["models"]
    assert [m["name"] for m in index] == [spec.name for spec in REGISTRY]
    assert {(m["version"], m["state"]) for m in index} == {("1", "READY")}
    ready = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True))
    assert [m.name for m in ready.models] == [m["name"] for m in index]
    with pytest.raises(grpc.RpcError) as caught:
        stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(repository_name="elsewhere"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_unknown_models_and_versions_are_not_found(
    tc: tgrpc.InferenceServerClient, th: thttp.InferenceServerClient
) -> None:
    """NOT_FOUND with REST's 404 message, for every method that names a model."""
    p = np.zeros(2)
    for call in (
        lambda: tc.get_model_metadata("no_such_loss"),
        lambda: tc.get_model_config("no_such_loss"),
        lambda: tc.get_model_config("mse", "2"),
        lambda: tc.is_model_ready("no_such_loss"),
        lambda: tc.get_inference_statistics("no_such_loss"),
        lambda: tc.infer("no_such_loss", [grpc_input("predictions", p, "FP64")]),
        lambda: tc.infer("mse", [grpc_input("predictions", p, "FP64")], model_version="2"),
    ):
        assert refused(call).status() == "StatusCode.NOT_FOUND"
    message = refused(lambda: tc.get_model_config("no_such_loss")).message()
    assert message == refused(lambda: th.get_model_config("no_such_loss")).message()
    assert "no_such_loss" in message


# --- inference ---------------------------------------------------------------------------------

HALF = {"FP16": np.float16, "BF16": ml_dtypes.bfloat16}
NUMPY = {"FP64": np.float64, "FP32": np.float32, **HALF}
PACKED = {"FP64": "float64", "FP32": "float32", "FP16": "float16", "BF16": "bfloat16"}


def packed(array: np.ndarray, datatype: str) -> dict[str, Any]:
    """A /loss packed array of the tensor's own bytes (so both routes see the same values)."""
    data = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()
    return {"dtype": PACKED[datatype], "shape": list(array.shape), "data": data}


def batch(loss: str, datatype: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Predictions and targets (class indices for cross_entropy) in the datatype, exact in it."""
    rng = np.random.default_rng(11)
    dtype = NUMPY[datatype]
    # multiples of 1/8 in [-2, 2]: exact in every datatype, half precision included
    predictions = (rng.integers(-16, 17, size=(12, 4)) / 8).astype(dtype)
    if loss == "cross_entropy":
        return predictions, rng.integers(0, 4, size=12).astype(np.int64), {"from_logits": True}
    return predictions, (rng.integers(-16, 17, size=(12, 4)) / 8).astype(dtype), {}


@pytest.mark.parametrize("datatype", ["FP64", "FP32", "FP16", "BF16"])
@pytest.mark.parametrize(
    "loss",
    [
        pytest.param("mse", marks=pytest.mark.loss("mse")),
        pytest.param("cross_entropy", marks=pytest.mark.loss("cross_entropy")),
    ],
)
def test_infer_equals_the_loss_route(
    tc: tgrpc.InferenceServerClient, http: httpx.Client, loss: str, datatype: str
) -> None:
    """raw_input_contents in every float datatype (cross_entropy's targets INT64 class indices),
    value, per_sample and gradient out as raw_output_contents: /loss's answer to the same
    arrays, bit for bit, in its dtype (FP32 for FP32, FP16 and BF16 inputs)."""
    predictions, targets, params = batch(loss, datatype)
    target_type = "INT64" if targets.dtype == np.int64 else datatype
    inputs = [
        grpc_input("predictions", predictions, datatype),
        grpc_input("targets", targets, target_type),
    ]
    outputs = [tgrpc.InferRequestedOutput(n) for n in ("value", "per_sample", "gradient")]
    result = tc.infer(
        loss, inputs, outputs=outputs, parameters={**params, "reduction": "sum"}, request_id="r7"
    )
    response = result.get_response(as_json=True)
    assert response["id"] == "r7" and response["model_name"] == loss
    compute = "FP64" if datatype == "FP64" else "FP32"
    assert [o["datatype"] for o in response["outputs"]] == [compute] * 3
    doc = {
        "predictions": packed(predictions, datatype),
        "targets": targets.tolist() if target_type == "INT64" else packed(targets, datatype),
        "params": params,
        "reduction": "sum",
        "gradient": True,
        "dtype": "float64" if compute == "FP64" else "float32",
    }
    expected = http.post(f"/loss/{loss}", json=doc).json()
    dtype = np.float64 if compute == "FP64" else np.float32
    assert result.as_numpy("value").dtype == dtype
    assert result.as_numpy("value").tolist() == [expected["value"]]
    assert np.array_equal(result.as_numpy("per_sample"), np.asarray(expected["per_sample"], dtype))
    assert np.array_equal(result.as_numpy("gradient"), np.asarray(expected["gradient"], dtype))
    parameters = response["parameters"]
    assert parameters["reduction"] == {"string_param": "sum"}
    assert parameters["weight_sum"] == {"double_param": expected["weight_sum"]}
    assert parameters["n"] == {"int64_param": "12"}


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
@pytest.mark.loss("gaussian_nll", "triplet_margin")
def test_extra_inputs_are_input_tensors_of_their_names(
    tc: tgrpc.InferenceServerClient, http: httpx.Client, datatype: str
) -> None:
    """A loss's extra inputs travel as input tensors of their names (``var``; ``positive`` and
    ``negative`` beside anchors and no targets), their gradients come back as outputs named
    ``input_gradients.<name>``: /loss's answer with ``inputs`` and ``input_gradients``, bit for
    bit; a missing input is INVALID_ARGUMENT with /loss's message."""
    rng = np.random.default_rng(12)
    dtype = NUMPY[datatype]
    grid = lambda *shape: (rng.integers(-16, 17, size=shape) / 8).astype(dtype)  # noqa: E731
    cases = {
        "gaussian_nll": ({"predictions": grid(6, 2), "targets": grid(6, 2),
                          "var": (rng.integers(1, 17, size=6) / 8).astype(dtype)}, {"full": True}),
        "triplet_margin": ({"predictions": grid(6, 3), "positive": grid(6, 3),
                            "negative": grid(6, 3)}, {"swap": True}),
    }  # fmt: skip
    for loss, (arrays, params) in cases.items():
        extra = [name for name in arrays if name not in ("predictions", "targets")]
        names = ["value", "per_sample", "gradient", *(f"input_gradients.{n}" for n in extra)]
        result = tc.infer(
            loss,
            [grpc_input(name, array, datatype) for name, array in arrays.items()],
            outputs=[tgrpc.InferRequestedOutput(n) for n in names],
            parameters={**params, "reduction": "sum"},
        )
        doc: dict[str, Any] = {
            name: packed(arrays[name], datatype)
            for name in ("predictions", "targets")
            if name in arrays
        }
        doc |= {"inputs": {n: packed(arrays[n], datatype) for n in extra}, "params": params,
                "reduction": "sum", "gradient": True, "input_gradients": True,
                "dtype": "float64" if datatype == "FP64" else "float32"}  # fmt: skip
        expected = http.post(f"/loss/{loss}", json=doc).json()
        want = np.float64 if datatype == "FP64" else np.float32
        assert result.as_numpy("value").tolist() == [expected["value"]]
        assert np.array_equal(result.as_numpy("gradient"), np.asarray(expected["gradient"], want))
        for name in extra:
            got = result.as_numpy(f"input_gradients.{name}")
            assert got.shape == arrays[name].shape
            assert np.array_equal(got, np.asarray(expected["input_gradients"][name], want))
    error = refused(lambda: tc.infer("gaussian_nll", [grpc_input("predictions", grid(3), datatype),
                                                      grpc_input("targets", grid(3), datatype)]))  # fmt: skip
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "`inputs.var` is required" in error.message()


@pytest.mark.loss("huber")
def test_default_outputs_weights_and_a_float64_dtype(
    tc: tgrpc.InferenceServerClient, th: thttp.InferenceServerClient
) -> None:
    """No `outputs`: value and per_sample, as REST answers; FP16 inputs with dtype float64
    compute in FP64; the REST /v2 route gives the same numbers for the same request."""
    p = np.array([[0.5, 2.0], [1.0, -1.0], [0.25, 0.0]], dtype=np.float16)
    t = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.5]], dtype=np.float16)
    w = np.array([1.0, 2.0, 0.5], dtype=np.float16)
    params = {"delta": 0.5, "dtype": "float64"}
    names = ("predictions", "targets", "sample_weight")
    result = tc.infer(
        "HuberLoss", [grpc_input(n, a, "FP16") for n, a in zip(names, (p, t, w), strict=True)],
        parameters=params,
    )  # fmt: skip
    rest_inputs = []
    for name, array in zip(names, (p, t, w), strict=True):
        tensor = thttp.InferInput(name, list(array.shape), "FP16")
        tensor.set_data_from_numpy(array, binary_data=True)
        rest_inputs.append(tensor)
    rest = th.infer("HuberLoss", rest_inputs, parameters=params)
    outputs = [o["name"] for o in result.get_response(as_json=True)["outputs"]]
    assert outputs == ["value", "per_sample"]
    for name in outputs:
        assert result.as_numpy(name).dtype == np.float64
        assert np.array_equal(result.as_numpy(name), rest.as_numpy(name))


def typed_request(datatype: str, **contents: list[Any]) -> service_pb2.ModelInferRequest:
    """An mse request with its elements in the typed contents, as tritonclient cannot send."""
    request = service_pb2.ModelInferRequest(model_name="mse")
    for name, values in contents.items():
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[len(values)])
        field = {"FP64": "fp64_contents", "FP32": "fp32_contents"}[datatype]
        getattr(tensor.contents, field).extend(values)
    return request


@pytest.mark.loss("mse", "cross_entropy")
def test_typed_contents(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, tc: tgrpc.InferenceServerClient
) -> None:
    """fp64_contents, fp32_contents and int64_contents give raw_input_contents' answer."""
    p, t = [0.5, 2.0, -1.0, 0.25], [0.0, 0.0, 1.0, 0.25]
    for datatype, dtype in (("FP64", np.float64), ("FP32", np.float32)):
        response = stub.ModelInfer(typed_request(datatype, predictions=p, targets=t))
        raw = tc.infer(
            "mse",
            [
                grpc_input("predictions", np.array(p, dtype), datatype),
                grpc_input("targets", np.array(t, dtype), datatype),
            ],
        )
        assert response.raw_output_contents == raw.get_response().raw_output_contents
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    request = service_pb2.ModelInferRequest(model_name="cross_entropy")
    request.parameters["from_logits"].bool_param = True
    tensor = request.inputs.add(name="predictions", datatype="FP64", shape=[2, 3])
    tensor.contents.fp64_contents.extend(logits.ravel().tolist())
    request.inputs.add(name="targets", datatype="INT32", shape=[2]).contents.int_contents.extend(
        [0, 2]
    )
    typed = stub.ModelInfer(request)
    raw = tc.infer(
        "cross_entropy",
        [
            grpc_input("predictions", logits, "FP64"),
            grpc_input("targets", np.array([0, 2], dtype=np.int32), "INT32"),
        ],
        parameters={"from_logits": True},
    )
    assert typed.raw_output_contents == raw.get_response().raw_output_contents


def rest_error(client: httpx.Client, doc: dict[str, Any]) -> str:
    """REST /v2's error message for the same request as JSON tensors."""
    answer = client.post("/v2/models/mse/infer", json=doc)
    assert answer.status_code == 422, answer.text
    message: str = answer.json()["error"]
    return message


@pytest.mark.loss("mse")
def test_bad_inputs_are_invalid_argument_with_the_rest_message(
    tc: tgrpc.InferenceServerClient, http: httpx.Client
) -> None:
    """Shapes that do not fit, a NaN, an unknown parameter, a datatype the loss does not take:
    INVALID_ARGUMENT, with the message REST /v2 answers the same request with."""
    ok, nan = np.array([0.5, 1.0, 2.0]), np.array([0.5, np.nan, 2.0])
    cases = [
        ((ok, "FP64"), (np.zeros(4), "FP64"), {}),
        ((nan, "FP64"), (ok, "FP64"), {}),
        ((ok, "FP64"), (ok, "FP64"), {"delta": 1.0}),
        ((ok, "FP64"), (np.array([1, 0, 1], dtype=np.int64), "INT64"), {}),
        ((ok, "FP64"), (ok, "FP64"), {"reduction": "median"}),
    ]
    for (p, p_type), (t, t_type), params in cases:
        error = refused(
            lambda p=p, t=t, p_type=p_type, t_type=t_type, params=params: tc.infer(
                "mse",
                [grpc_input("predictions", p, p_type), grpc_input("targets", t, t_type)],
                parameters=params,
            )
        )
        assert error.status() == "StatusCode.INVALID_ARGUMENT", error
        doc = {
            "parameters": params,
            "inputs": [
                {"name": name, "shape": list(a.shape), "datatype": d, "data": a.tolist()}
                for name, a, d in (("predictions", p, p_type), ("targets", t, t_type))
            ],
        }
        if not np.isnan(p).any():  # a NaN is not JSON: REST's binary data says the same
            assert error.message() == rest_error(http, doc)
        else:
            assert (
                error.message() == "inputs[0] (predictions) contains NaN or Infinity at index [1]"
            )


@pytest.mark.loss("mse")
def test_malformed_requests_are_invalid_argument(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, channel: grpc.Channel
) -> None:
    """Raw bytes of the wrong size, raw and typed contents mixed, FP16 in typed contents, a raw
    entry too many, a wrong name: INVALID_ARGUMENT naming the problem; bytes that are no
    protobuf message at all too, never INTERNAL."""

    def refusal(request: service_pb2.ModelInferRequest) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request)
        return caught.value.code(), caught.value.details()

    def raw_request(*raw: bytes, datatype: str = "FP64") -> service_pb2.ModelInferRequest:
        request = service_pb2.ModelInferRequest(model_name="mse")
        request.inputs.add(name="predictions", datatype=datatype, shape=[2])
        request.inputs.add(name="targets", datatype=datatype, shape=[2])
        request.raw_input_contents.extend(raw)
        return request

    two = np.array([1.0, 2.0]).tobytes()
    code, detail = refusal(raw_request(two, two[:12]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        detail
        == "inputs[1] (targets): raw_input_contents[1] has 12 bytes; shape [2] of FP64 is 16 bytes"
    )
    code, detail = refusal(raw_request(two, two, two))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "3 entries for 2 inputs" in detail
    mixed = raw_request(two, two)
    mixed.inputs[0].contents.fp64_contents.extend([1.0, 2.0])
    assert refusal(mixed)[0] == grpc.StatusCode.INVALID_ARGUMENT
    half = typed_request("FP64", predictions=[1.0, 2.0], targets=[1.0, 2.0])
    half.inputs[0].datatype = "FP16"
    code, detail = refusal(half)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "raw_input_contents" in detail
    named = raw_request(two, two)
    named.inputs[1].name = "labels"  # any name may be an extra input: mse takes none
    code, detail = refusal(named)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "mse takes no input `labels`" in detail
    garbage = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(grpc.RpcError) as caught:
        garbage(b"\xff\xff\xff")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "the request is not a valid ModelInferRequest protobuf message"


@pytest.mark.loss("mse")
def test_limits(tc: tgrpc.InferenceServerClient, th: thttp.InferenceServerClient) -> None:
    """A message over LOSSD_MAX_BODY_BYTES is refused by gRPC before lossd reads it, a tensor
    over LOSSD_MAX_ELEMENTS by lossd with REST's message: RESOURCE_EXHAUSTED both, and the
    server answers the next call."""
    big = np.zeros(MAX_BODY_BYTES // 8 + 1)
    error = refused(
        lambda: tc.infer("mse", [grpc_input("predictions", big, "FP64"),
                                 grpc_input("targets", big, "FP64")])
    )  # fmt: skip
    assert error.status() == "StatusCode.RESOURCE_EXHAUSTED", error
    many = np.zeros(MAX_ELEMENTS + 1, dtype=np.float16)
    error = refused(
        lambda: tc.infer("mse", [grpc_input("predictions", many, "FP16"),
                                 grpc_input("targets", many, "FP16")])
    )  # fmt: skip
    assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert error.message() == (
        f"inputs[0] (predictions) has more than {MAX_ELEMENTS} elements (LOSSD_MAX_ELEMENTS)"
    )
    ok = np.array([1.0, 2.0])
    inputs = [grpc_input("predictions", ok, "FP64"), grpc_input("targets", ok, "FP64")]
    assert tc.infer("mse", inputs).as_numpy("value").tolist() == [0.0]


@pytest.mark.loss("mse")
def test_a_message_that_does_not_arrive_in_time(
    channel: grpc.Channel, server: Server, tc: tgrpc.InferenceServerClient
) -> None:
    """A call whose message takes longer than LOSSD_BODY_TIMEOUT to come (its reservation, at
    LOSSD_MAX_BODY_BYTES, held meanwhile) ends DEADLINE_EXCEEDED; the memory is given back."""
    request = service_pb2.ModelInferRequest(model_name="mse")

    def late() -> Iterator[bytes]:
        time.sleep(BODY_TIMEOUT + 1)
        yield request.SerializeToString()

    slow = channel.stream_unary("/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(grpc.RpcError) as caught:
        slow(late())
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.details() == (
        f"the request message did not arrive within {BODY_TIMEOUT} s (LOSSD_BODY_TIMEOUT)"
    )
    assert memory_reserved(server) == 0
    assert '"level":"error"' not in server.output()


@pytest.mark.loss("log_cosh")
def test_statistics_count_grpc_and_rest_inferences(
    tc: tgrpc.InferenceServerClient, th: thttp.InferenceServerClient
) -> None:
    """Three gRPC inferences, one REST, one refused gRPC one: log_cosh's statistics (over gRPC
    and REST alike) count 4 successes, 1 failure and 4 kernel calls."""
    p, t = np.linspace(0, 1, 16), np.linspace(1, 0, 16)
    inputs = [grpc_input("predictions", p, "FP64"), grpc_input("targets", t, "FP64")]
    for _ in range(3):
        tc.infer("log_cosh", inputs)
    rest_inputs = []
    for name, array in (("predictions", p), ("targets", t)):
        tensor = thttp.InferInput(name, [16], "FP64")
        tensor.set_data_from_numpy(array, binary_data=True)
        rest_inputs.append(tensor)
    th.infer("log_cosh", rest_inputs)
    refused(lambda: tc.infer("log_cosh", inputs, parameters={"no_such": 1}))
    stats = tc.get_inference_statistics("log_cosh", as_json=True)["model_stats"]
    assert [s["name"] for s in stats] == ["log_cosh"]
    inference = stats[0]["inference_stats"]
    assert (stats[0]["inference_count"], stats[0]["execution_count"]) == ("4", "4")
    assert (inference["success"]["count"], inference["fail"]["count"]) == ("4", "1")
    assert inference["compute_infer"]["count"] == "4"
    rest = th.get_inference_statistics("log_cosh")["model_stats"][0]
    assert rest["inference_count"] == 4 and rest["inference_stats"]["fail"]["count"] == 1
    every = tc.get_inference_statistics(as_json=True)["model_stats"]
    assert [s["name"] for s in every] == [spec.name for spec in REGISTRY]


# --- servers of their own: calls cut short, API keys and two workers, a port taken -----------


@pytest.mark.loss("log_cosh")
def test_calls_cut_short_give_their_memory_back() -> None:
    """Calls whose deadline passes while their message arrives, queues or is evaluated end
    DEADLINE_EXCEEDED; their work stops, the memory account is back to zero and nothing is
    logged as an error (the work's outcome is read even when nobody waits for it)."""
    port = free_port()
    with served({"LOSSD_GRPC_PORT": str(port)}) as srv:
        p = np.random.default_rng(0).random((500_000, 8)).astype(np.float32)
        inputs = [grpc_input("predictions", p, "FP32"), grpc_input("targets", p, "FP32")]
        outputs = [tgrpc.InferRequestedOutput(n) for n in ("gradient", "hessian")]
        with tgrpc.InferenceServerClient(f"127.0.0.1:{port}") as tc:
            for timeout in (0.02, 0.1, 0.2, 0.3, 0.5, 0.8):
                try:
                    tc.infer("log_cosh", inputs, outputs=outputs, client_timeout=timeout)
                except InferenceServerException as error:
                    assert error.status() == "StatusCode.DEADLINE_EXCEEDED", (error, timeout)
            assert tc.infer("log_cosh", inputs, outputs=outputs).as_numpy("hessian").shape == (
                500_000, 8,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while (reserved := memory_reserved(srv)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reserved == 0, srv.output()[-3000:]
        assert '"level":"error"' not in srv.output(), srv.output()[-3000:]


def memory_reserved(srv: Server) -> float:
    for line in httpx.get(f"{srv.url}/metrics").text.splitlines():
        if line.startswith("lossd_memory_reserved_bytes "):
            return float(line.split()[1])
    raise AssertionError("no lossd_memory_reserved_bytes")


def test_a_closed_lease_takes_no_more_memory() -> None:
    """What stops the work of a call that ended: its lease, closed, refuses to hold more."""
    account = MemoryAccount(1000, wait=0)
    lease = account.lease()
    lease.hold(100, "a body")
    lease.close()
    with pytest.raises(errors.ClientGone):
        lease.hold(10, "the arrays")
    assert account.reserved == 0 and lease.held == 0


@pytest.mark.loss("mse")
def test_api_keys_and_two_workers_sharing_the_port() -> None:
    """With LOSSD_API_KEYS, every method but the probes needs the key in the metadata
    (UNAUTHENTICATED without it, with REST's message); with two workers both serve the port."""
    port = free_port()
    env = {
        "LOSSD_GRPC_PORT": str(port),
        "LOSSD_API_KEYS": '["k1"]',
        "LOSSD_WORKERS": "2",
        "LOSSD_LOG_LEVEL": "info",
    }
    with served(env) as srv:
        tc = tgrpc.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            assert tc.is_server_live() and tc.is_server_ready()
            error = refused(lambda: tc.get_model_metadata("mse"))
            assert error.status() == "StatusCode.UNAUTHENTICATED"
            assert error.message() == (
                "this route needs an API key: send Authorization: Bearer <key> or X-API-Key: <key>"
            )
            wrong = refused(lambda: tc.get_model_metadata("mse", headers={"x-api-key": "k2"}))
            assert wrong.message() == "the API key is not valid"
            assert tc.get_model_metadata("mse", headers={"authorization": "Bearer k1"})
            ok = np.array([1.0, 3.0])
            inputs = [grpc_input("predictions", ok, "FP64"), grpc_input("targets", ok, "FP64")]
            assert tc.infer("mse", inputs, headers={"x-api-key": "k1"}).as_numpy("value") == [0]
        finally:
            tc.close()
        deadline = time.monotonic() + 300  # the second worker may still be warming up
        while srv.output().count("gRPC Open Inference Protocol on 127.0.0.1:") < 2:
            assert time.monotonic() < deadline, srv.output()[-2000:]
            time.sleep(0.2)
        for _ in range(16):  # new connections, spread over the workers by the kernel
            with tgrpc.InferenceServerClient(f"127.0.0.1:{port}") as each:
                each.get_server_metadata(headers={"x-api-key": "k1"})
        lines = [json.loads(line) for line in srv.output().splitlines() if line.startswith("{")]
        pids = {line["pid"] for line in lines if line.get("path", "").endswith("/ServerMetadata")}
        assert len(pids) == 2


def test_a_grpc_port_in_use_fails_the_start(server: Server, grpc_port: int) -> None:
    """A port another process holds fails the start, a plain socket's or another lossd's: one
    worker binds without SO_REUSEPORT (gRPC's default would share the port silently)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        for port in (taken.getsockname()[1], grpc_port):
            with pytest.raises(RuntimeError, match=r"cannot bind 127\.0\.0\.1:"):
                start_server({"LOSSD_GRPC_PORT": str(port)}, timeout=300).stop()  # not started


def test_grpc_is_off_unless_its_port_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOSSD_GRPC_PORT", raising=False)
    assert Settings().grpc_port is None
    monkeypatch.setenv("LOSSD_GRPC_PORT", "")
    assert Settings().grpc_port is None
    monkeypatch.setenv("LOSSD_GRPC_PORT", "8001")
    assert Settings().grpc_port == 8001
    assert address("::", 8001) == "[::]:8001" and address("0.0.0.0", 1) == "0.0.0.0:1"


@pytest.mark.loss("mse")
def test_raw_contents_are_read_in_place_and_bad_bytes_are_refused() -> None:
    """split_raw keeps the raw contents as views of the message and hands protobuf the rest:
    the same message as protobuf's own parse. Truncated or random bytes are lossd's 422 (never
    another exception, so never INTERNAL)."""
    request = pb.ModelInferRequest(model_name="mse", model_version="1", id="x")
    request.parameters["reduction"].string_param = "sum"
    request.parameters["delta"].double_param = 0.5
    for name in ("predictions", "targets"):
        request.inputs.add(name=name, datatype="FP64", shape=[3])
    request.outputs.add(name="value")
    raw = [np.arange(3.0).tobytes(), np.ones(3).tobytes()]
    request.raw_input_contents.extend(raw)
    data = request.SerializeToString()
    header, views = oip_grpc.split_raw(data)
    assert [bytes(v) for v in views] == raw
    assert all(v.obj is data for v in views)
    del request.raw_input_contents[:]
    assert pb.ModelInferRequest.FromString(header) == request
    rng = np.random.default_rng(5)
    cases = [data[:cut] for cut in range(1, len(data))]
    cases += [rng.bytes(int(rng.integers(1, 64))) for _ in range(2000)]
    for case in cases:
        with contextlib.suppress(errors.LossdError):
            oip_grpc.infer(lambda _: None, case, 1000)


def test_no_error_of_lossd_is_internal() -> None:
    """Every error lossd raises has a status code of its own; only a bug is INTERNAL."""
    kinds: list[type[errors.LossdError]] = []
    pending = [errors.LossdError]
    while pending:
        kind = pending.pop()
        kinds += kind.__subclasses__()
        pending += kind.__subclasses__()
    assert set(STATUS) >= {kind.status for kind in kinds}
    assert status_code(errors.NotReady("x")) == grpc.StatusCode.UNAVAILABLE
    assert status_code(errors.Overloaded("x")) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_code(errors.LossdError("x")) == grpc.StatusCode.INTERNAL


def test_the_generated_messages_are_current() -> None:
    """service/protos/lossd_inference_pb2.py is what protoc makes of the .proto (make proto)."""
    protos = ROOT / "service" / "protos"
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{protos}", f"--python_out={out}",
             str(protos / "lossd_inference.proto")],
            check=True,
        )  # fmt: skip
        generated = (Path(out) / "lossd_inference_pb2.py").read_text()
    assert generated == (protos / "lossd_inference_pb2.py").read_text()
