"""Triton's extensions of the Open Inference Protocol (model configuration, repository index,
inference statistics) through the unmodified tritonclient, against a live server of its own
(so that the statistics count only this module's requests)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.losses import REGISTRY
from tests.support.servers import Server, served


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served() as srv:
        yield srv


@pytest.fixture(scope="module")
def tc(server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


def test_server_metadata_names_the_extensions(tc: triton.InferenceServerClient) -> None:
    extensions = tc.get_server_metadata()["extensions"]
    assert {"model_configuration", "statistics", "binary_tensor_data"} <= set(extensions)


@pytest.mark.parametrize("version", ["", "1"])
def test_model_config_describes_inputs_and_outputs(
    tc: triton.InferenceServerClient, version: str
) -> None:
    config = tc.get_model_config("MSELoss", version)  # an alias: the canonical name answers
    assert config["name"] == "mse" and config["max_batch_size"] == 0
    inputs = {t["name"]: t for t in config["input"]}
    assert inputs["predictions"] == {
        "name": "predictions", "data_type": "TYPE_FP64", "dims": [-1], "optional": False,
    }  # fmt: skip
    assert inputs["sample_weight"]["optional"] is True
    outputs = {t["name"] for t in config["output"]}
    assert outputs == {"value", "per_sample", "gradient", "hessian"}
    assert config["parameters"]["predictions_datatypes"] == {"string_value": "FP64,FP32,FP16,BF16"}


def test_model_config_of_a_loss_taking_class_indices(tc: triton.InferenceServerClient) -> None:
    """cross_entropy's targets also take INT64/INT32 class indices of shape (N,)."""
    config = tc.get_model_config("cross_entropy")
    assert config["parameters"]["targets_datatypes"]["string_value"].split(",") == [
        "FP64", "FP32", "FP16", "BF16", "INT64", "INT32",
    ]  # fmt: skip
    assert config["parameters"]["targets_shapes"] == {"string_value": "[[-1,-1],[-1]]"}


def test_unknown_models_and_versions_are_404(tc: triton.InferenceServerClient) -> None:
    for call in (
        lambda: tc.get_model_config("no_such_loss"),
        lambda: tc.get_model_config("mse", "2"),
        lambda: tc.get_inference_statistics("no_such_loss"),
        lambda: tc.get_inference_statistics("mse", "2"),
    ):
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == "404"


def test_repository_index_lists_every_loss_ready(
    tc: triton.InferenceServerClient, server: Server
) -> None:
    index = tc.get_model_repository_index()
    assert [m["name"] for m in index] == [spec.name for spec in REGISTRY]
    assert {(m["version"], m["state"], m["reason"]) for m in index} == {("1", "READY", "")}
    ready = httpx.post(f"{server.url}/v2/repository/index", json={"ready": True})
    assert ready.status_code == 200 and ready.json() == index


@pytest.mark.parametrize(
    ("content", "status"),
    [(b'{"ready": "sometimes"}', 422), (b"[1, 2", 422), (b'{"ready": false}' + b" " * 2000, 413)],
)
def test_a_bad_repository_index_request_is_a_protocol_error(
    server: Server, content: bytes, status: int
) -> None:
    answer = httpx.post(
        f"{server.url}/v2/repository/index",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == status
    assert list(answer.json()) == ["error"]


def test_statistics_count_what_was_evaluated(
    tc: triton.InferenceServerClient, server: Server
) -> None:
    """Three /v2 inferences, one /loss, one POST /loss with mse and mae, one refused request:
    mse counts 5 successes, 1 failure and 5 kernel calls, their times and the last one's
    time; mae one success; a loss nobody asked for zero."""
    started = time.time()
    predictions, targets = np.linspace(0, 1, 64), np.linspace(1, 0, 64)
    for _ in range(3):
        inputs = []
        for name, array in (("predictions", predictions), ("targets", targets)):
            tensor = triton.InferInput(name, [64], "FP64")
            tensor.set_data_from_numpy(array, binary_data=True)
            inputs.append(tensor)
        tc.infer("mse", inputs)
    doc = {"predictions": predictions.tolist(), "targets": targets.tolist()}
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/loss/mse", json=doc).status_code == 200
        many = {**doc, "losses": [{"name": "mse"}, {"name": "mae"}]}
        assert http.post("/loss", json=many).status_code == 200
        assert http.post("/loss/mse", json={**doc, "targets": [1.0]}).status_code == 422

    stats = {m["name"]: m for m in tc.get_inference_statistics()["model_stats"]}
    assert set(stats) == {spec.name for spec in REGISTRY}
    mse = tc.get_inference_statistics("mse", "1")["model_stats"]
    assert mse[0]["inference_count"] == 5 == stats["mse"]["inference_count"]
    mse_stats = mse[0]["inference_stats"]
    assert mse_stats["success"]["count"] == 5 and mse_stats["fail"]["count"] == 1
    assert mse[0]["execution_count"] == 5 == mse_stats["compute_infer"]["count"]
    assert 0 < mse_stats["compute_infer"]["ns"] < mse_stats["success"]["ns"]
    assert started * 1000 - 1 <= mse[0]["last_inference"] <= time.time() * 1000 + 1
    assert stats["mae"]["inference_count"] == 1
    assert stats["huber"]["inference_count"] == 0 and stats["huber"]["last_inference"] == 0
    assert stats["huber"]["inference_stats"]["success"] == {"count": 0, "ns": 0}
