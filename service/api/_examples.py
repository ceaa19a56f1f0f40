"""The examples the OpenAPI document shows: for every operation, the request a reader can send
as it is (Swagger UI's "Try it out") and the answer it gets.

An example that teaches must be true. The answers of the evaluation examples are what lossd
answers to their requests, and ``tests/test_examples.py`` sends every request below to a live
server and compares: exactly (numbers to 1e-12) where the answer is fixed, by its fields where
it depends on the process (counters, timings). The catalogue, metadata and configuration
examples are built from the registry itself, so they cannot drift from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import core
from ..codecs import oip, triton
from ..losses import REGISTRY, resolve


@dataclass(frozen=True)
class Example:
    """One request and its answer. ``exact``: the answer is fixed (the same from any lossd of
    this version, whatever it did before); otherwise it shows the shape and typical values."""

    summary: str
    response: Any
    request: dict[str, Any] | None = None
    path: dict[str, str] = field(default_factory=dict)
    exact: bool = True


# --- POST /loss/{name}: one loss of each family -------------------------------------------------

# Keyed by the loss each example is for: the `name` to put in the path.
EVALUATE_LOSS: dict[str, Example] = {
    "huber": Example(
        "regression: huber on (N, D) = (2, 2), with the gradient",
        request={
            "predictions": [[0.5, 2.0], [1.0, -1.0]],
            "targets": [[0.0, 0.0], [1.0, 1.0]],
            "params": {"delta": 1.0},
            "gradient": True,
        },
        response={
            "loss": "huber",
            "reduction": "mean",
            "reduce_over": "samples",
            "value": 0.78125,
            "weight_sum": 2.0,
            "n": 2,
            "per_sample": [0.8125, 0.75],
            "gradient": [[0.125, 0.25], [0.0, -0.25]],
            "params": {"delta": 1.0},
        },
    ),
    "binary_cross_entropy": Example(
        "binary: binary_cross_entropy on logits, with the gradient",
        request={
            "predictions": [2.0, -1.0, 0.5],
            "targets": [1.0, 0.0, 1.0],
            "params": {"from_logits": True},
            "gradient": True,
        },
        response={
            "loss": "binary_cross_entropy",
            "reduction": "mean",
            "reduce_over": "samples",
            "value": 0.3047555609137674,
            "weight_sum": 3.0,
            "n": 3,
            "per_sample": [0.1269280110429725, 0.31326168751822286, 0.4740769841801067],
            "gradient": [-0.03973430734070585, 0.08964714045666505, -0.1258468895993818],
            "params": {
                "from_logits": True,
                "label_smoothing": 0.0,
                "pos_weight": None,
                "epsilon": 1e-07,
            },
        },
    ),
    "cross_entropy": Example(
        "multiclass: cross_entropy on logits with class-index targets and label smoothing",
        request={
            "predictions": [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]],
            "targets": [0, 2],
            "params": {"from_logits": True, "label_smoothing": 0.1},
            "gradient": True,
        },
        response={
            "loss": "cross_entropy",
            "reduction": "mean",
            "reduce_over": "samples",
            "value": 0.3454563805893112,
            "weight_sum": 2.0,
            "n": 2,
            "per_sample": [0.391311296657157, 0.2996014645214654],
            "gradient": [
                [-0.07386814937202874, 0.07097852940335168, 0.0028896199686770617],
                [0.007988996912471576, 0.010582055686853855, -0.018571052599325455],
            ],
            "params": {
                "from_logits": True,
                "label_smoothing": 0.1,
                "class_weight": None,
                "ignore_index": None,
                "epsilon": 1e-07,
                "normalize": False,
            },
        },
    ),
    "kl_divergence": Example(
        "distribution: kl_divergence between target and predicted probability rows",
        request={
            "predictions": [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]],
            "targets": [[0.8, 0.1, 0.1], [0.0, 0.5, 0.5]],
        },
        response={
            "loss": "kl_divergence",
            "reduction": "mean",
            "reduce_over": "samples",
            "value": 0.10088052398929298,
            "weight_sum": 2.0,
            "n": 2,
            "per_sample": [0.03751039604362369, 0.16425065193496227],
            "params": {
                "from_logits": False,
                "log_input": False,
                "log_target": False,
                "epsilon": 1e-07,
                "normalize": False,
            },
        },
    ),
    "gaussian_nll": Example(
        "extra inputs: gaussian_nll with one variance per sample under inputs.var, with the "
        "gradients with respect to the means and to the variances",
        request={
            "predictions": [[0.5, 2.0], [1.0, -1.0]],
            "targets": [[0.0, 1.0], [1.0, 0.0]],
            "inputs": {"var": [0.25, 4.0]},
            "gradient": True,
            "input_gradients": True,
        },
        response={
            "loss": "gaussian_nll",
            "reduction": "mean",
            "reduce_over": "samples",
            "value": 0.65625,
            "weight_sum": 2.0,
            "n": 2,
            "per_sample": [0.5568528194400546, 0.7556471805599453],
            "gradient": [[0.5, 1.0], [0.0, -0.0625]],
            "input_gradients": {"var": [-1.5, 0.0546875]},
            "params": {"full": False, "eps": 1e-06},
        },
    ),
    "dice": Example(
        "overlap: dice on one soft mask of four elements",
        request={
            "predictions": [[0.9, 0.2, 0.8, 0.1]],
            "targets": [[1.0, 0.0, 1.0, 0.0]],
            "params": {"smooth": 1.0},
        },
        response={
            "loss": "dice",
            "reduction": "mean",
            "reduce_over": "samples",
            "value": 0.12,
            "weight_sum": 1.0,
            "n": 1,
            "per_sample": [0.12],
            "params": {"smooth": 1.0, "from_logits": False},
        },
    ),
    "pairwise_logistic": Example(
        "ranking: pairwise_logistic on two lists of three items; the mean is over the 5 pairs",
        request={
            "predictions": [[2.0, 0.5, -1.0], [0.3, 1.2, 0.0]],
            "targets": [[2, 0, 1], [1, 1, 0]],
            "gradient": True,
        },
        response={
            "loss": "pairwise_logistic",
            "reduction": "mean",
            "reduce_over": "samples",
            "value": 0.553810323869161,
            "weight_sum": 5.0,
            "n": 2,
            "per_sample": [1.951413907539247, 0.8176377118065583],
            "gradient": [
                [-0.04597027939678462, 0.2, -0.1540297206032154],
                [-0.08511149663766822, -0.046295043300196466, 0.1314065399378647],
            ],
            "params": {},
        },
    ),
    "cox": Example(
        "survival: cox (batch-coupled) on four margins, a negative time censored; the mean is "
        "over the 3 events",
        request={
            "predictions": [0.5, -0.2, 1.0, 0.1],
            "targets": [3.0, -1.5, 1.0, 2.0],
            "gradient": True,
            "hessian": True,
        },
        response={
            "loss": "cox",
            "reduction": "mean",
            "reduce_over": "samples",
            "value": 0.5840400518083274,
            "weight_sum": 3.0,
            "n": 4,
            "per_sample": [0.0, 0.0, 0.8391049030250297, 0.9130152523999527],
            "gradient": [
                0.286922603628376,
                0.04338171709638261,
                -0.18930096026426393,
                -0.14100336046049475,
            ],
            "hessian": [
                0.1445516303617255,
                0.03773579696169088,
                0.0817963995933466,
                0.12835857093457378,
            ],
            "params": {},
        },
    ),
    "ntxent": Example(
        "embedding: ntxent (batch-coupled) on four 2-d embeddings in two groups",
        request={
            "predictions": [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]],
            "targets": [0, 0, 1, 1],
            "params": {"temperature": 0.5},
        },
        response={
            "loss": "ntxent",
            "reduction": "mean",
            "reduce_over": "samples",
            "value": 0.43019027713671143,
            "weight_sum": 4.0,
            "n": 4,
            "per_sample": [
                0.23325749699550294,
                0.6271230572779198,
                0.6271230572779198,
                0.23325749699550294,
            ],
            "params": {"temperature": 0.5},
        },
    ),
    "ctc": Example(
        "sequence: ctc on one sample of T = 2 steps of log(0.6, 0.4) and log(0.3, 0.7), label [1]",
        request={
            "predictions": [
                [
                    [-0.5108256237659907, -0.916290731874155],
                    [-1.2039728043259361, -0.35667494393873245],
                ]
            ],
            "targets": [[1]],
            "inputs": {"input_lengths": [2], "target_lengths": [1]},
            "gradient": True,
        },
        response={
            "loss": "ctc",
            "reduction": "mean",
            "reduce_over": "samples",
            "value": 0.1984509387238383,
            "weight_sum": 1.0,
            "n": 1,
            "per_sample": [0.1984509387238383],
            "gradient": [
                [
                    [0.08780487804878057, -0.0878048780487804],
                    [0.15365853658536577, -0.15365853658536577],
                ]
            ],
            "params": {
                "blank": 0,
                "zero_infinity": False,
                "from_logits": False,
                "mean_by_target_length": True,
            },
        },
    ),
}

EVALUATE_LOSSES = Example(
    "three regression losses on one batch, decoded once",
    request={
        "predictions": [0.5, 2.0, 1.0, -1.0],
        "targets": [0.0, 0.0, 1.0, 1.0],
        "losses": [
            {"name": "mse"},
            {"name": "huber", "params": {"delta": 0.5}},
            {"name": "logcosh"},
        ],
    },
    response={
        "results": [
            {
                "loss": "mse",
                "reduction": "mean",
                "reduce_over": "samples",
                "value": 2.0625,
                "weight_sum": 4.0,
                "n": 4,
                "per_sample": [0.25, 4.0, 0.0, 4.0],
                "params": {},
            },
            {
                "loss": "huber",
                "reduction": "mean",
                "reduce_over": "samples",
                "value": 0.46875,
                "weight_sum": 4.0,
                "n": 4,
                "per_sample": [0.125, 0.875, 0.0, 0.875],
                "params": {"delta": 0.5},
            },
            {
                "loss": "log_cosh",
                "reduction": "mean",
                "reduce_over": "samples",
                "value": 0.6925300004185017,
                "weight_sum": 4.0,
                "n": 4,
                "per_sample": [0.12011450695827758, 1.3250027473578645, 0.0, 1.3250027473578645],
                "params": {},
            },
        ]
    },
)

# The loss the examples of every other route with a loss (or model) name in its path name.
EXAMPLE_LOSS = "huber"

V2_INFER = Example(
    "huber over four FP64 values, reduction sum (parameters are flat, as the protocol's)",
    path={"name": EXAMPLE_LOSS},
    request={
        "inputs": [
            {
                "name": "predictions",
                "shape": [4],
                "datatype": "FP64",
                "data": [0.5, 2.0, 1.0, -1.0],
            },
            {"name": "targets", "shape": [4], "datatype": "FP64", "data": [0.0, 0.0, 1.0, 1.0]},
        ],
        "parameters": {"delta": 1.0, "reduction": "sum"},
    },
    response={
        "model_name": "huber",
        "model_version": "1",
        "parameters": {"reduction": "sum", "reduce_over": "samples", "weight_sum": 4.0, "n": 4},
        "outputs": [
            {"name": "value", "datatype": "FP64", "shape": [1], "data": [3.125]},
            {
                "name": "per_sample",
                "datatype": "FP64",
                "shape": [4],
                "data": [0.125, 1.5, 0.0, 1.5],
            },
        ],
    },
)

# What a server that has answered three huber requests reports; counts and times vary.
_STATISTICS = {
    "name": "huber",
    "version": "1",
    "last_inference": 1796657189517,
    "inference_count": 3,
    "execution_count": 3,
    "inference_stats": {
        "success": {"count": 3, "ns": 24652790},
        "fail": {"count": 0, "ns": 0},
        "queue": {"count": 0, "ns": 0},
        "compute_input": {"count": 0, "ns": 0},
        "compute_infer": {"count": 3, "ns": 512855},
        "compute_output": {"count": 0, "ns": 0},
        "cache_hit": {"count": 0, "ns": 0},
        "cache_miss": {"count": 0, "ns": 0},
    },
    "batch_stats": [],
}

_METRICS = """\
# HELP lossd_requests_total HTTP requests by loss (canonical name, - for none), status and request encoding
# TYPE lossd_requests_total counter
lossd_requests_total{encoding="json",loss="huber",status="200"} 3.0
lossd_requests_total{encoding="packed",loss="cross_entropy",status="422"} 1.0
# HELP lossd_elements_total prediction elements processed by a loss's kernel
# TYPE lossd_elements_total counter
lossd_elements_total{loss="huber"} 12.0
"""


def _versioned(example: Example) -> Example:
    return Example(
        example.summary,
        example.response,
        example.request,
        {**example.path, "version": "1"},
        example.exact,
    )


def operations() -> dict[str, Example]:
    """Every operation's example but ``evaluate_loss``'s (named, by family), by operationId."""
    huber = resolve(EXAMPLE_LOSS)
    at = {"name": EXAMPLE_LOSS}
    metadata = Example("huber as a model", oip.model_metadata(huber), path=at)
    config = Example("huber as Triton's model configuration", triton.model_config(huber), path=at)
    statistics = Example(
        "after three huber requests", {"model_stats": [_STATISTICS]}, path=at, exact=False
    )
    ready = Example("huber's kernels are loaded", {"name": "huber", "ready": True}, path=at)
    shown = [core.catalogue_entry(spec) for spec in REGISTRY[:3]]
    return {
        "evaluate_losses": EVALUATE_LOSSES,
        "list_losses": Example(
            f"the first {len(shown)} of the {len(REGISTRY)} entries", {"losses": shown}, exact=False
        ),
        "get_loss": Example("huber's entry", core.catalogue_entry(huber), path=at),
        "healthz": Example("the process answers", {"status": "ok"}),
        "readyz": Example(
            "a warm start: every kernel signature loaded from the cache",
            {"status": "ready", "kernels_from_cache": 65, "kernels_compiled": 0},
            exact=False,
        ),
        "metrics": Example("a few of the series", _METRICS, exact=False),
        "v2_server_metadata": Example("lossd and its extensions", oip.server_metadata()),
        "v2_server_live": Example("the process answers", {"live": True}),
        "v2_server_ready": Example("every kernel is ready", {"ready": True}),
        "v2_statistics": Example(
            "every loss's statistics (one shown)", {"model_stats": [_STATISTICS]}, exact=False
        ),
        "v2_model_statistics": statistics,
        "v2_model_version_statistics": _versioned(statistics),
        "v2_model_config": config,
        "v2_model_version_config": _versioned(config),
        "v2_repository_index": Example(
            "every loss, ready",
            triton.repository_index(warm=[spec.name for spec in REGISTRY], only_ready=True),
            request={"ready": True},
        ),
        "v2_model_metadata": metadata,
        "v2_model_version_metadata": _versioned(metadata),
        "v2_model_ready": ready,
        "v2_model_version_ready": _versioned(ready),
        "v2_infer": V2_INFER,
        "v2_model_version_infer": _versioned(V2_INFER),
    }
