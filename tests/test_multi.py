"""POST /loss: several losses on one batch."""

from __future__ import annotations

import base64
import tracemalloc
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from service.codecs.loss import evaluate_many, evaluate_one
from service.errors import LossdError

PRED = [[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]
LOSSES = [
    {"name": "cross_entropy", "params": {"label_smoothing": 0.1}},
    {"name": "CrossEntropyLoss", "params": {"class_weight": "balanced"}},
    {"name": "mse"},
]


def _many(**fields: Any) -> dict[str, Any]:
    doc = {"predictions": PRED, "targets": [[0, 1, 0], [1, 0, 0], [0, 0, 1]], "losses": LOSSES}
    return orjson.loads(evaluate_many(orjson.dumps({**doc, **fields}), 10**6).body.tobytes())


def test_results_equal_single_calls_in_order() -> None:
    """Each result is byte-for-byte the single-loss response, in request order."""
    common = {"gradient": True, "hessian": True, "sample_weight": [1, 2, 0.5], "reduction": "sum"}
    results = _many(**common)["results"]
    assert [r["loss"] for r in results] == ["cross_entropy", "cross_entropy", "mse"]
    for selection, result in zip(LOSSES, results, strict=True):
        single = {"predictions": PRED, "targets": [[0, 1, 0], [1, 0, 0], [0, 0, 1]],
                  "params": selection.get("params", {}), **common}  # fmt: skip
        alone = evaluate_one(str(selection["name"]), orjson.dumps(single), 10**6).body.tobytes()
        assert orjson.loads(alone) == result


@pytest.mark.parametrize(
    ("losses", "status", "loc"),
    [
        ([{"name": "mse"}, {"name": "huber", "params": {"delta": -1}}], 422,
         ["losses", 1, "params", "delta"]),
        ([{"name": "mse"}, {"name": "no_such_loss"}], 404, ["losses", 1, "name"]),
        ([{"name": "mse", "extra": 1}], 422, ["losses", 0, "extra"]),
        ([], 422, ["losses"]),
        ([{"params": {}}], 422, ["losses", 0, "name"]),
    ],
)  # fmt: skip
def test_an_error_names_the_position_of_its_loss(
    losses: list[dict[str, Any]], status: int, loc: list[Any]
) -> None:
    """A bad name or parameter set is reported with the position of its loss."""
    with pytest.raises(LossdError) as info:
        _many(losses=losses, targets=[[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert info.value.status == status
    assert loc in [list(err[0]) for err in info.value.errors]


def test_compute_errors_name_the_loss_too() -> None:
    """A loss that cannot take the batch (index targets for mse) is named by position."""
    with pytest.raises(LossdError) as info:
        _many(targets=[1, 0, 2])
    assert info.value.detail.startswith("losses[2] (mse)")


def test_top_level_params_are_not_a_field_of_post_loss() -> None:
    """POST /loss takes params per loss, not at the top level."""
    with pytest.raises(LossdError) as info:
        _many(params={"label_smoothing": 0.1})
    assert info.value.status == 422 and ["params"] in [list(e[0]) for e in info.value.errors]


def test_post_loss_over_http(client: httpx.Client) -> None:
    """POST /loss answers over HTTP with the results in order, packed arrays included."""
    rng = np.random.default_rng(3)
    pred = rng.uniform(0.05, 1, size=(50, 4))
    pred /= pred.sum(axis=1, keepdims=True)
    body = {"predictions": pred.tolist(), "targets": rng.integers(0, 4, 50).tolist(),
            "losses": [{"name": "cross_entropy"}, {"name": "nll", "params": {"epsilon": 1e-3}}],
            "array_format": "packed", "gradient": True}  # fmt: skip
    response = client.post("/loss", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["params"]["epsilon"] for r in results] == [1e-7, 1e-3]
    assert results[0]["gradient"]["shape"] == [50, 4]


def test_losses_sharing_converted_targets_keep_their_own_rules() -> None:
    """Index targets converted once per (ignore_index, dtype) still give each loss its own result."""
    losses = [
        {"name": "cross_entropy", "params": {"ignore_index": 0}},
        {"name": "cross_entropy"},
        {"name": "focal", "params": {"ignore_index": 0}},
        {"name": "multi_margin", "params": {"class_weight": [1, 2, 3]}},
    ]
    fields = {"targets": [0, 1, 2], "dtype": "float32", "losses": losses, "gradient": True}
    results = _many(**fields)["results"]
    for selection, result in zip(losses, results, strict=True):
        single = {"predictions": PRED, "targets": [0, 1, 2], "dtype": "float32",
                  "gradient": True, "params": selection.get("params", {})}  # fmt: skip
        alone = evaluate_one(str(selection["name"]), orjson.dumps(single), 10**6).body.tobytes()
        assert orjson.loads(alone) == result
    assert results[0]["per_sample"][0] == 0.0 and results[1]["per_sample"][0] > 0


def _packed(array: np.ndarray) -> dict[str, Any]:
    return {"dtype": str(array.dtype), "shape": list(array.shape),
            "data": base64.b64encode(array.tobytes()).decode()}  # fmt: skip


@pytest.mark.loss("cross_entropy", "focal", "generalized_cross_entropy")
def test_losses_differing_in_ignore_index_hold_no_copy_per_loss() -> None:
    """Sixty-four losses differing only in ignore_index (issue 12: one (N, C) one-hot copy each,
    4.3× the memory budget): POST /loss holds one shared (N,) copy of the indices (issue 13: no
    one-hot rows at all), so its peak stays a few times one (N, C) array where sixty-four
    copies were sixty-four times it; and each result is the loss's single call, ignored
    classes inside [0, C) (masked, or −1 in gce's own copy) included."""
    rng = np.random.default_rng(12)
    rows, classes = 1000, 256
    logits = rng.normal(size=(rows, classes))
    index = rng.integers(0, 8, rows).astype(np.int64)  # the first 8 classes: many samples each
    losses = [{"name": "cross_entropy", "params": {"from_logits": True, "ignore_index": k}}
              for k in range(-56, 8)]  # fmt: skip
    body = orjson.dumps({"predictions": _packed(logits), "targets": _packed(index),
                         "losses": losses, "per_sample": False})  # fmt: skip
    tracemalloc.start()
    try:
        evaluate_many(body, 10**7)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_hot = rows * classes * 8
    assert peak < 8 * one_hot  # 64 copies: 64×, on top of the inputs
    chosen = [*losses[-10:], {"name": "focal", "params": {"from_logits": True, "ignore_index": 3}},
              {"name": "gce", "params": {"from_logits": True, "ignore_index": 3,
                                         "class_weight": "balanced"}}]  # fmt: skip
    fields = {"predictions": logits.tolist(), "targets": index.tolist(), "gradient": True}
    results = _many(**fields, losses=chosen)["results"]
    for selection, result in zip(chosen, results, strict=True):
        single = {**fields, "params": selection["params"]}
        alone = evaluate_one(str(selection["name"]), orjson.dumps(single), 10**7).body.tobytes()
        assert orjson.loads(alone) == result
