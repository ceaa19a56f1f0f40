"""Triton's extensions of the Open Inference Protocol that its tools call: model configuration,
the repository index and inference statistics (``tritonclient``'s ``get_model_config``,
``get_model_repository_index``, ``get_inference_statistics``; perf_analyzer and dashboards).

Every document is derived from what lossd already has: a model's configuration from its v2
metadata (``oip.model_metadata``), the statistics from the metrics ``/metrics`` exports
(``lossd_inference_seconds`` by loss and outcome, ``lossd_kernel_seconds`` by loss). What lossd
does not measure apart (time queued, decoding inputs, encoding outputs) is reported as zero
counts, never as a guess.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ..losses import REGISTRY, LossSpec
from ..metrics import Metrics
from .oip import VERSION, model_metadata

NS = 1_000_000_000


class ConfigTensor(BaseModel):
    """An input or output in Triton's model configuration."""

    name: str
    data_type: str = Field(description="TYPE_ and the usual v2 datatype: TYPE_FP64, TYPE_FP32, ...")
    dims: list[int] = Field(description="the usual shape; -1 is any size")
    optional: bool = False


class ModelConfig(BaseModel):
    """``GET /v2/models/{name}/config``: Triton's model configuration, as JSON."""

    name: str
    platform: str
    backend: str
    max_batch_size: int = Field(description="0: the batch is the arrays' first axis, any size")
    version_policy: dict[str, Any]
    input: list[ConfigTensor]
    output: list[ConfigTensor]
    parameters: dict[str, dict[str, str]] = Field(
        description="every datatype (comma-separated) and shape (a JSON list) each input and "
        "output takes: `<tensor>_datatypes`, `<tensor>_shapes`"
    )


class RepositoryModel(BaseModel):
    """One model of ``POST /v2/repository/index``."""

    name: str
    version: str
    state: Literal["READY", "LOADING"]
    reason: str


class RepositoryQuery(BaseModel):
    """The optional body of ``POST /v2/repository/index``."""

    model_config = ConfigDict(strict=True)  # `"ready": 0` is not a boolean

    ready: bool = Field(False, description="only the models ready for inference")


class Duration(BaseModel):
    """How many, and their total time in nanoseconds."""

    count: int
    ns: int


class InferenceStats(BaseModel):
    success: Duration
    fail: Duration
    queue: Duration = Field(description="not measured apart by lossd: zero")
    compute_input: Duration = Field(description="not measured apart by lossd: zero")
    compute_infer: Duration = Field(description="time in the loss's kernels")
    compute_output: Duration = Field(description="not measured apart by lossd: zero")
    cache_hit: Duration
    cache_miss: Duration


class ModelStatistics(BaseModel):
    name: str
    version: str
    last_inference: int = Field(description="milliseconds since the epoch; 0: none yet")
    inference_count: int = Field(description="successful requests that evaluated the loss")
    execution_count: int = Field(description="kernel calls")
    inference_stats: InferenceStats
    batch_stats: list[dict[str, Any]]


class Statistics(BaseModel):
    """``GET /v2/models/stats``, ``/v2/models/{name}/stats``."""

    model_stats: list[ModelStatistics]


def model_config(spec: LossSpec) -> dict[str, Any]:
    """A loss's configuration, from its metadata (the usual datatype and shape of each
    tensor; every other one the route takes is under ``parameters``)."""
    meta = model_metadata(spec)
    tensors = {kind: [_config_tensor(t) for t in meta[kind]] for kind in ("inputs", "outputs")}
    takes = {
        f"{t['name']}_{field}": {"string_value": text(t[field])}
        for kind in ("inputs", "outputs")
        for t in meta[kind]
        for field, text in (("datatypes", ",".join), ("shapes", _json_text))
    }
    return {
        "name": spec.name,
        "platform": meta["platform"],
        "backend": meta["platform"],
        "max_batch_size": 0,
        "version_policy": {"specific": {"versions": [int(VERSION)]}},
        "input": tensors["inputs"],
        "output": tensors["outputs"],
        "parameters": takes,
    }


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _config_tensor(tensor: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": tensor["name"],
        "data_type": f"TYPE_{tensor['datatype']}",
        "dims": tensor["shape"],
        "optional": tensor["optional"],
    }


def repository_index(warm: Collection[str], only_ready: bool) -> list[dict[str, Any]]:
    """Every loss, under its canonical name, with its one version: READY once its kernels are
    ``warm``, LOADING before."""
    return [
        {"name": spec.name, "version": VERSION, "state": state, "reason": ""}
        for spec in REGISTRY
        for state in ("READY" if spec.name in warm else "LOADING",)
        if state == "READY" or not only_ready
    ]


def statistics(metrics: Metrics, *specs: LossSpec) -> dict[str, Any]:
    """The inference statistics of ``specs`` (every loss when none is named) since the process
    (or, with several workers, the metrics directory) started."""
    values: dict[tuple[str, ...], float] = defaultdict(float)
    names = (
        "lossd_inference_seconds_count",
        "lossd_inference_seconds_sum",
        "lossd_kernel_seconds_count",
        "lossd_kernel_seconds_sum",
        "lossd_last_inference_timestamp_seconds",
    )
    for sample in metrics.samples(*names):
        key = (sample.name, sample.labels.get("loss", ""), sample.labels.get("outcome", ""))
        if sample.name.startswith("lossd_last_"):
            values[key] = max(values[key], sample.value)
        else:
            values[key] += sample.value
    return {"model_stats": [_model_statistics(spec.name, values) for spec in specs or REGISTRY]}


def _model_statistics(loss: str, values: dict[tuple[str, ...], float]) -> dict[str, Any]:
    def duration(metric: str, outcome: str = "") -> dict[str, int]:
        count = values.get((f"{metric}_count", loss, outcome), 0.0)
        seconds = values.get((f"{metric}_sum", loss, outcome), 0.0)
        return {"count": int(count), "ns": round(seconds * NS)}

    zero = {"count": 0, "ns": 0}
    success = duration("lossd_inference_seconds", "success")
    infer = duration("lossd_kernel_seconds")
    last = values.get(("lossd_last_inference_timestamp_seconds", loss, ""), 0.0)
    return {
        "name": loss,
        "version": VERSION,
        "last_inference": round(last * 1000),
        "inference_count": success["count"],
        "execution_count": infer["count"],
        "inference_stats": {
            "success": success,
            "fail": duration("lossd_inference_seconds", "fail"),
            "queue": zero,
            "compute_input": zero,
            "compute_infer": infer,
            "compute_output": zero,
            "cache_hit": zero,
            "cache_miss": zero,
        },
        "batch_stats": [],
    }
