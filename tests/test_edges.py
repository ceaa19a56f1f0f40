"""The edge suite: every loss at the edges of its inputs, against an exact reference.

Edges, per family: logits of ±1e300 and ±1e15 for every loss that takes logits
(``from_logits: true``); residuals of 1e154 and 1e300 in float64 and 1e19 in float32 for the
regression losses; rows of tiny (1e-300) and huge (1e300) norm for cosine, dice, tversky, KL and
JS; probabilities at exactly 0 and 1; for the losses with extra inputs, zeros, ties, equal
vectors, variances below eps and rows up to the float range. The exact reference is
``tests/support/exact.py``: each loss in mpmath at 400 digits with exact derivatives (in the
predictions and in each extra input), rounded to the compute dtype at the end.

An answer is either finite and right (per-sample losses, the ``sum`` and ``mean`` values, the
gradient and the Hessian diagonal within 1e-9 relative or 1e-12 absolute of the exact result;
float32 within 2e-6 relative), or a 422 whose detail says why. Never a finite wrong value, and
never a finite answer where the exact one is past the dtype's range (or, like JS's slope at a
zero probability, not a number at all). Where the contract promises an answer (any finite logit;
``log_cosh`` for any finite r; cosine of any non-zero rows; probabilities at 0 and 1, which are
in the domain) and the exact one is representable, a 422 fails too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mpmath
import numpy as np
import pytest

from service.errors import Unprocessable
from service.losses import LossSpec, resolve
from tests.support import libraries as lib
from tests.support.exact import DIGITS, Exact, evaluate_exact, rounded
from tests.support.harness import (
    ATOL,
    HARNESSED,
    RTOL,
    VARIANTS,
    evaluate,
    sample,
    shapes_for,
    spec_id,
    variant_id,
)
from tests.support.references import Array

FLOAT32_RTOL = 2e-6
# what a 422's detail must mention for it to say why
REASONS = (
    "overflow",
    "underflow",
    "finite",
    "range",
    "outside",
    "from_logits",
    "domain",
    "must",
    "normali",
    "needs",
    "ambiguous",
    "positive",
    "scale",
)

R = resolve


@dataclass(frozen=True)
class Edge:
    """One loss on one edge batch (module docstring)."""

    spec: LossSpec
    params: dict[str, Any]
    pred: Array
    targ: Array | None
    label: str
    dtype: str = "float64"
    must_answer: bool = False
    inputs: dict[str, Array] = field(default_factory=dict)  # the loss's extra inputs

    @property
    def id(self) -> str:
        params = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.spec.name}-{self.label}-{self.dtype}" + (f"-{params}" if params else "")


def _a(values: Any, dtype: str = "float64") -> Array:
    return np.asarray(values, dtype=np.float32 if dtype == "float32" else np.float64)


REGRESSION = ("mse", "mae", "huber", "smooth_l1", "pseudo_huber", "log_cosh", "pinball")
RESIDUALS: list[tuple[str, list[Any], list[Any], str]] = [
    ("residuals-1e154", [1e154, -7e153, 0.5], [0.0, 0.0, -1.0], "float64"),
    ("residual-1.5e154", [1.5e154, 0.5], [0.0, 0.0], "float64"),
    ("residuals-1e300", [1e300, -1e300, 2.0], [0.0, 0.0, 0.5], "float64"),
    ("residuals-1e-300", [1e-300, -3e-300, 0.0], [0.0, 0.0, 1e-300], "float64"),
    ("rows-1e154", [[1e154, 1e154, 1e154], [0.5, -0.5, 1.0]], [[0.0] * 3, [0.0] * 3], "float64"),
    ("residuals-1e19", [1e19, -1.2e19, 0.5], [0.0, 0.0, 0.0], "float32"),
    ("residual-2e19", [2e19, 0.5], [0.0, 0.0], "float32"),
    ("rows-1e19", [[1e19, 1e19, 1e19], [0.5, -0.5, 1.0]], [[0.0] * 3, [0.0] * 3], "float32"),
]
LOGIT_ROWS = [
    [1e300, 1e300, -1e300],
    [-1e300, 1e300, 0.0],
    [1e15, -1e15, 0.5],
    [1e300, 0.5, -3.0],
    [0.2, -0.1, 0.3],
]
LOGIT_INDEX = [0.0, 0.0, 2.0, 0.0, 1.0]
SOFT_ROWS = [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.1, 0.1, 0.8], [0.25, 0.25, 0.5]]
PROBABILITY_ROWS = [
    [1.0, 0.0, 0.0],
    [0.0, 1.0, 0.0],
    [0.5, 0.5, 0.0],
    [0.25, 0.75, 0.0],
    [1e-300, 1.0, 0.0],
    [0.2, 0.3, 0.5005],
]
PROBABILITY_INDEX = [0.0, 0.0, 2.0, 1.0, 0.0, 2.0]
BINARY_LOGITS = (
    [1e300, -1e300, 1e15, -1e15, 0.3, -1e300, 1e300],
    [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
)
SIGNS = [1.0, 1.0, -1.0, -1.0, 1.0, -1.0, -1.0]  # labels of BINARY_LOGITS' scores as ±1
BINARY_PROBABILITIES = (
    [0.0, 1.0, 1e-300, 1 - 1e-16, 0.5, 1.0, 0.0],
    [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0],
)
SOFTMAX_LOSSES: dict[str, dict[str, Any]] = {
    "cross_entropy": {},
    "focal": {},
    "generalized_cross_entropy": {},
    "poly1_cross_entropy": {},
    "simloss": {"ordinal_base": 0.5},
    "kl_divergence": {},
    "js_divergence": {},
}


def _edges() -> list[Edge]:
    edges: list[Edge] = []
    for name in REGRESSION:
        for label, pred, targ, dtype in RESIDUALS:
            edges.append(
                Edge(
                    R(name),
                    {},
                    _a(pred, dtype),
                    _a(targ, dtype),
                    label,
                    dtype,
                    must_answer=name == "log_cosh",
                )
            )
    edges += [
        Edge(R("mape"), {}, _a([1e154, -1e154, 3.0]), _a([2.0, 1e-300, 0.0]), "residuals-1e154"),
        Edge(R("mape"), {}, _a([1e300, 0.5]), _a([0.0, 1.0]), "residual-1e300-over-epsilon"),
        Edge(
            R("mape"),
            {},
            _a([1e19, 0.5], "float32"),
            _a([1.0, 0.0], "float32"),
            "residual-1e19",
            "float32",
        ),
        Edge(
            R("msle"),
            {},
            _a([1e300, -1e300, 0.0, 1e-300]),
            _a([0.0, 1e300, 1e154, 5.0]),
            "values-1e300",
        ),
        Edge(
            R("msle"),
            {},
            _a([1e38, -1e38], "float32"),
            _a([0.0, 3e38], "float32"),
            "values-1e38",
            "float32",
        ),
        Edge(R("poisson"), {}, _a([0.0, 1e154, 1e-300]), _a([3.0, 0.0, 2.0]), "rates-0-and-1e154"),
        Edge(
            R("poisson"),
            {"log_input": True},
            _a([-1e300, 700.0, 0.5]),
            _a([2.0, 0.0, 1.0]),
            "log-rates-1e300",
        ),
        Edge(
            R("poisson"), {"log_input": True}, _a([710.0, 0.5]), _a([2.0, 1.0]), "log-rate-past-exp"
        ),
        Edge(R("poisson"), {"full": True}, _a([1e154, 2.0]), _a([1e5, 3.0]), "rates-1e154"),
        Edge(R("tweedie"), {}, _a([1e154, 1e-300, 2.0]), _a([1.0, 0.0, 3.0]), "means-1e154"),
        Edge(R("tweedie"), {"power": 0.0}, _a([1e154, -7e153]), _a([0.0, 1.0]), "means-1e154"),
        Edge(R("tweedie"), {"power": 1.0}, _a([1e154, 1e-300]), _a([1.0, 0.0]), "means-1e154"),
        Edge(R("tweedie"), {"power": 2.0}, _a([1e154, 1e-300]), _a([1.0, 2.0]), "means-1e154"),
        Edge(R("tweedie"), {"power": 3.0}, _a([1e-300, 2.0]), _a([1.0, 1.0]), "mean-1e-300"),
        Edge(R("tweedie"), {"power": 2.0}, _a([1.0, 2.0]), _a([0.0, 1.0]), "target-0"),
        Edge(R("tweedie"), {"power": -0.5}, _a([1e154, 1e-300]), _a([-3.0, 2.0]), "means-1e154"),
    ]
    # any finite log-mean has an answer wherever y·e^(−ŷ) is finite
    for label, pred, targ, dtype in (
        ("log-means-1e300", [1e300, 720.0, -705.0, 0.5], [2.0, 1e300, 1e-300, 3.0], "float64"),
        ("log-mean-past-exp", [-1e300, 0.5], [2.0, 1.0], "float64"),
        ("targets-1e-300", [-750.0, 700.5, -1.0], [1e-300, 1e-300, 1e300], "float64"),
        ("log-means-90", [90.0, -80.0, 0.5], [3e38, 1e-30, 2.0], "float32"),
    ):
        edges.append(
            Edge(R("gamma"), {}, _a(pred, dtype), _a(targ, dtype), label, dtype, must_answer=True)
        )
    cosine = [
        ("row-2e154", [[2e154, 1.0]], [[1.0, 1.0]], "float64"),
        (
            "rows-1e300-1e-300",
            [[1e300, -1e300], [1e-300, 2e-300]],
            [[1.0, 2.0], [1.0, 1.0]],
            "float64",
        ),
        ("target-1e-300", [[1.0, 1.0], [3.0, -1.0]], [[1e-300, 0.0], [1e300, 1e300]], "float64"),
        ("row-2e19", [[2e19, 1.0]], [[1.0, 1.0]], "float32"),
        ("rows-1e-30", [[1e-30, 2e-30], [3e38, -3e38]], [[1.0, 1.0], [1.0, 2.0]], "float32"),
    ]
    for label, pred, targ, dtype in cosine:
        for params in ({}, {"epsilon": 1e-3}):
            edges.append(
                Edge(
                    R("cosine_similarity"),
                    params,
                    _a(pred, dtype),
                    _a(targ, dtype),
                    label,
                    dtype,
                    must_answer=True,
                )
            )
    for name in ("hinge", "squared_hinge"):
        edges.append(
            Edge(
                R(name),
                {},
                _a([1e154, -1e154, 0.5, 3.0]),
                _a([1.0, 1.0, -1.0, 1.0]),
                "scores-1e154",
            )
        )
        edges.append(
            Edge(R(name), {}, _a([1e300, -1e300, 0.5]), _a([-1.0, 1.0, -1.0]), "scores-1e300")
        )
    for params in ({}, {"margin": 2.0}):
        hinge_embedding = R("hinge_embedding")
        edges += [
            Edge(hinge_embedding, params, _a([1e300, -1e300, 0.5, 3.0]), _a([1.0, -1.0, -1.0, 1.0]),
                 "distances-1e300"),
            Edge(hinge_embedding, params, _a([[1e154, -1e154, 1.5], [2.0, -2.0, 0.0]]),
                 _a([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), "rows-1e154-zero-one"),
            Edge(hinge_embedding, params, _a([1e19, -1e19, 0.5], "float32"),
                 _a([1.0, -1.0, -1.0], "float32"), "distances-1e19", "float32"),
        ]  # fmt: skip
    # any finite score gives a finite soft-margin loss (−log σ(t·ŷ) = |t·ŷ| at most, about)
    for label, pred, targ in (
        ("scores-1e300", [1e300, -1e300, 1e15, -1e15, 0.3, -1e300, 1e300], SIGNS),
        ("scores-1e300-zero-one", [1e300, -1e300, 40.0, -40.0, 0.3], [1.0, 1.0, 0.0, 0.0, 1.0]),
        (
            "score-rows-1e300",
            [[1e300, -1e300, 1e15], [-750.0, 750.0, 1e-300]],
            [[1.0, 1.0, -1.0]] * 2,
        ),
    ):
        edges.append(Edge(R("soft_margin"), {}, _a(pred), _a(targ), label, must_answer=True))
    edges.append(
        Edge(
            R("soft_margin"),
            {},
            _a([1e19, -1e19, 90.0, -90.0, 0.3], "float32"),
            _a([1.0, 1.0, -1.0, -1.0, 1.0], "float32"),
            "scores-1e19",
            "float32",
            must_answer=True,
        )
    )
    # multilabel_soft_margin takes logits only: any finite one gives a finite answer
    for params in ({}, {"weight": 2.5}, {"weight": [0.5, 0.0, 3.0]}):
        edges.append(
            Edge(
                R("multilabel_soft_margin"),
                params,
                _a([[1e300, -1e300, 1e15], [-1e15, 0.3, -1e300], [40.0, -750.0, 1e300]]),
                _a([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.25, 1.0, 0.5]]),
                "logit-rows-1e300",
                must_answer=True,
            )
        )
    edges.append(
        Edge(
            R("multilabel_soft_margin"),
            {},
            _a(BINARY_LOGITS[0]),
            _a(BINARY_LOGITS[1]),
            "logits-1e300",
            must_answer=True,
        )
    )
    for name, variants in {
        "binary_cross_entropy": ({}, {"label_smoothing": 0.1, "pos_weight": 2.5}),
        "binary_focal": ({}, {"alpha": 0.25, "gamma": 2.5, "label_smoothing": 0.1}),
    }.items():
        for params in variants:
            logits = {"from_logits": True, **params}
            edges.append(
                Edge(
                    R(name),
                    logits,
                    _a(BINARY_LOGITS[0]),
                    _a(BINARY_LOGITS[1]),
                    "logits-1e300",
                    must_answer=True,
                )
            )
            edges.append(
                Edge(
                    R(name),
                    logits,
                    _a([[1e300, -1e300, 1e15]]),
                    _a([[0.0, 1.0, 1.0]]),
                    "logit-rows-1e300",
                    must_answer=True,
                )
            )
            edges.append(
                Edge(
                    R(name),
                    params,
                    _a(BINARY_PROBABILITIES[0]),
                    _a(BINARY_PROBABILITIES[1]),
                    "probabilities-0-and-1",
                    must_answer=True,
                )
            )
    for name, base in SOFTMAX_LOSSES.items():
        logits = {**base, "from_logits": True}
        edges.append(
            Edge(
                R(name),
                logits,
                _a(LOGIT_ROWS),
                _a(LOGIT_INDEX),
                "logits-1e300-index",
                must_answer=True,
            )
        )
        edges.append(
            Edge(
                R(name),
                logits,
                _a(LOGIT_ROWS),
                _a(SOFT_ROWS),
                "logits-1e300-soft",
                must_answer=True,
            )
        )
        probabilities = {**base, "from_logits": False}
        edges.append(
            Edge(
                R(name),
                probabilities,
                _a(PROBABILITY_ROWS),
                _a(PROBABILITY_INDEX),
                "probabilities-0-and-1",
                must_answer=True,
            )
        )
    edges.append(
        Edge(
            R("cross_entropy"),
            {"from_logits": True, "label_smoothing": 0.1},
            _a(LOGIT_ROWS),
            _a(SOFT_ROWS),
            "logits-1e300-soft",
            must_answer=True,
        )
    )
    edges.append(
        Edge(
            R("poly1_cross_entropy"),
            {"label_smoothing": 0.2},
            _a(LOGIT_ROWS),
            _a(LOGIT_INDEX),
            "logits-1e300-index",
            must_answer=True,
        )
    )
    for name, params in (
        ("categorical_hinge", {}),
        ("multi_margin", {}),
        ("multi_margin", {"p": 2}),
    ):
        edges.append(
            Edge(
                R(name),
                params,
                _a([[1e300, -1e300, 0.0], [1e154, -1e154, 0.5]]),
                _a([1.0, 0.0]),
                "scores-1e300",
            )
        )
        edges.append(
            Edge(
                R(name),
                params,
                _a([[1e153, -1e153, 0.0], [0.5, 2.0, -1.0]]),
                _a([1.0, 0.0]),
                "scores-1e153",
            )
        )
    sparsemax = R("sparsemax")
    one_hot_rows = [[1.0 if j == k else 0.0 for j in range(3)] for k in (0, 0, 2, 0, 1)]
    edges += [
        Edge(sparsemax, {}, _a(LOGIT_ROWS), _a(LOGIT_INDEX), "scores-1e300-index",
             must_answer=True),
        Edge(sparsemax, {}, _a(LOGIT_ROWS), _a(one_hot_rows), "scores-1e300-one-hot",
             must_answer=True),
        Edge(sparsemax, {}, _a([[1e-300, 0.0, -1e-300], [0.3, 0.3, 0.3], [1.0, 0.5, 1e16]]),
             _a([1.0, 2.0, 0.0]), "scores-ties-and-1e16", must_answer=True),
        Edge(sparsemax, {}, _a([[1e19, -1e19, 0.5], [0.25, 0.5, -0.125]], "float32"),
             _a([1.0, 0.0], "float32"), "scores-1e19", "float32", must_answer=True),
    ]  # fmt: skip
    # the margin softmaxes: AM-softmax takes any scores (its margin must survive next to 1e300);
    # ArcFace cosines in [−1, 1], at ±1, at its threshold cos(π − m) and just inside 1
    am, arc = R("additive_margin_softmax"), R("additive_angular_margin_softmax")
    for params in ({}, {"scale": 1.0, "margin": 0.0}):
        edges += [
            Edge(am, params, _a(LOGIT_ROWS), _a(LOGIT_INDEX), "scores-1e300-index",
                 must_answer=True),
            Edge(am, params, _a(LOGIT_ROWS), _a(one_hot_rows), "scores-1e300-one-hot",
                 must_answer=True),
        ]  # fmt: skip
    cosines = [[1.0, 0.0, -1.0], [-1.0, 1.0, 0.0], [-0.8775825618903728, 0.2, 0.1],
               [1 - 2**-52, 0.5, -1.0], [0.3, 0.3, 0.3], [-1.0, -1.0, 1.0]]  # fmt: skip
    for params in ({}, {"margin": 1.0, "scale": 30.0}):
        edges += [
            Edge(am, params, _a(cosines), _a([0.0, 1.0, 0.0, 0.0, 2.0, 2.0]), "cosines",
                 must_answer=True),
            Edge(arc, params, _a(cosines), _a([0.0, 1.0, 0.0, 0.0, 2.0, 2.0]), "cosines",
                 must_answer=True),
            Edge(arc, params, _a(cosines), _a([1.0, 0.0, 1.0, 2.0, 0.0, 0.0]), "cosines-off-target",
                 must_answer=True),
            Edge(arc, params, _a(cosines, "float32"), _a([1.0, 0.0, 1.0, 2.0, 0.0, 0.0], "float32"),
                 "cosines", "float32", must_answer=True),
        ]  # fmt: skip
    multilabel_margin = R("multilabel_margin")
    edges += [
        Edge(multilabel_margin, {}, _a([[1e300, -1e300, 0.0], [1e154, -1e154, 0.5]]),
             _a([[1.0, -1.0, 0.0], [0.0, 2.0, -1.0]]), "scores-1e300"),
        Edge(multilabel_margin, {}, _a([[1e153, -1e153, 0.0], [0.5, 2.0, -1.0]]),
             _a([[2.0, 2.0, -1.0], [-1.0, 1.0, 2.0]]), "scores-1e153-repeated"),
        Edge(multilabel_margin, {}, _a([[1e19, -1e19, 0.5], [0.5, 2.0, -1.0]], "float32"),
             _a([[1.0, -1.0, -1.0], [0.0, 1.0, 2.0]], "float32"), "scores-1e19", "float32"),
    ]  # fmt: skip
    for name in ("dice", "tversky"):
        for params in ({}, {"smooth": 0.0}):
            edges.append(
                Edge(
                    R(name),
                    params,
                    _a([1e-300, 1e-300, 0.5]),
                    _a([1e-300, 0.0, 1.0]),
                    "masks-1e-300",
                )
            )
            edges.append(
                Edge(
                    R(name),
                    params,
                    _a([[1e-300, 2e-300, 0.0], [1.0, 1.0, 1e-300]]),
                    _a([[1e-300, 0.0, 1.0], [1.0, 0.0, 1e-300]]),
                    "rows-1e-300",
                )
            )
            edges.append(
                Edge(
                    R(name),
                    {**params, "from_logits": True},
                    _a([[1e300, -1e300, 1e15], [0.5, -1e15, 1e300]]),
                    _a([[1.0, 0.0, 1.0], [0.3, 1.0, 0.0]]),
                    "logits-1e300",
                    must_answer=True,
                )
            )
            edges.append(
                Edge(
                    R(name),
                    params,
                    _a([[1e300, 0.5]]),
                    _a([[1.0, 0.0]]),
                    "row-1e300-as-probabilities",
                )
            )
    generalized_kl = R("generalized_kl_divergence")
    edges += [
        Edge(generalized_kl, {}, _a([[-1e300, 0.5, -750.0], [700.0, -1e15, 0.0]]),
             _a([[1.0, 0.0, 1e-300], [2.0, 1e-300, 0.0]]), "log-q-1e300", must_answer=True),
        Edge(generalized_kl, {}, _a([[710.0, 0.0, 0.0]]), _a([[1.0, 0.0, 0.0]]),
             "log-q-past-exp", must_answer=True),
        Edge(generalized_kl, {}, _a(LOGIT_ROWS), _a(np.eye(3)[np.asarray(LOGIT_INDEX, int)]), "log-q-1e300-one-hot",
             must_answer=True),
        Edge(generalized_kl, {}, _a([[80.0, -1e19, 0.5]], "float32"),
             _a([[1e-30, 3.0, 0.0]], "float32"), "log-q-80", "float32", must_answer=True),
    ]  # fmt: skip
    cauchy_schwarz = R("cauchy_schwarz_divergence")
    edges += [
        Edge(cauchy_schwarz, {}, _a([[1e-300, 2e-300, 0.0], [1.0, 1.0, 1e-300]]),
             _a([[1e-300, 0.0, 1.0], [1e300, 1.0, 1e-300]]), "rows-1e-300", must_answer=True),
        Edge(cauchy_schwarz, {}, _a([[0.5, 0.5, 0.0]]), _a([[0.0, 0.0, 1.0]]), "no-overlap"),
        Edge(cauchy_schwarz, {}, _a(PROBABILITY_ROWS), _a(np.eye(3)[np.asarray(PROBABILITY_INDEX, int)]),
             "probabilities-0-and-1", must_answer=True),
        Edge(cauchy_schwarz, {"from_logits": True}, _a(LOGIT_ROWS), _a(np.eye(3)[np.asarray(LOGIT_INDEX, int)]),
             "logits-1e300-one-hot", must_answer=True),
        Edge(cauchy_schwarz, {"from_logits": True}, _a(LOGIT_ROWS), _a(SOFT_ROWS),
             "logits-1e300-soft", must_answer=True),
        Edge(cauchy_schwarz, {}, _a([[1e-30, 2e-30, 0.5], [0.25, 0.5, 1.0]], "float32"),
             _a([[1e-30, 0.0, 1.0], [3e38, 1.0, 0.0]], "float32"), "rows-1e-30", "float32",
             must_answer=True),
    ]  # fmt: skip
    for name in ("kl_divergence", "js_divergence"):
        edges.append(
            Edge(
                R(name),
                {},
                _a([[1e-300, 1.0, 0.0], [0.5, 0.5, 0.0]]),
                _a([[1.0, 1e-300, 0.0], [1e-300, 0.0, 1.0]]),
                "entries-1e-300",
                must_answer=True,
            )
        )
    return edges + _listwise_edges() + _input_edges()


def _listwise_edges() -> list[Edge]:
    """The ranking, survival and embedding losses: scores and margins of ±1e300, ties (equal
    labels, tied times), lists of one item, all-censored batches, rows of norm 1e±300."""
    edges: list[Edge] = []
    scores = [[1e300, -1e300, 0.5], [1e15, -1e15, 1e300], [0.2, -0.1, 0.3]]
    grades = [[2.0, 0.0, 1.0], [1.0, 1.0, 3.0], [0.0, 0.0, 0.0]]  # ties; one list all tied
    for name in ("ranking_softmax", "pairwise_logistic", "pairwise_hinge", "pointwise_sigmoid"):
        edges += [
            Edge(R(name), {}, _a(scores), _a(grades), "scores-1e300-ties", must_answer=True),
            Edge(R(name), {}, _a([[1e300], [-2.0], [0.5]]), _a([[1.0], [0.0], [3.0]]),
                 "lists-of-one", must_answer=True),
            Edge(R(name), {}, _a([[1e19, -1e19, 0.5]], "float32"), _a([[1.0, 0.0, 2.0]], "float32"),
                 "scores-1e19", "float32", must_answer=True),
        ]  # fmt: skip
    cox = R("cox")
    edges += [
        # tied times: events with events, an event with a censored sample
        Edge(cox, {}, _a([0.5, -1.0, 2.0, 0.3, -0.7]), _a([2.0, 2.0, -2.0, 1.0, 3.0]),
             "tied-times", must_answer=True),
        Edge(cox, {}, _a([0.5, -1.0, 2.0]), _a([-1.0, -2.0, -0.5]), "all-censored",
             must_answer=True),
        Edge(cox, {}, _a([1e300, -1e300, 0.5, 700.0]), _a([1.0, 2.0, 2.0, -3.0]),
             "margins-1e300", must_answer=True),
        Edge(cox, {}, _a([0.7]), _a([4.0]), "one-sample", must_answer=True),
        Edge(cox, {}, _a([80.0, -80.0, 0.5], "float32"), _a([1.0, 2.0, 2.0], "float32"),
             "margins-80", "float32", must_answer=True),
    ]  # fmt: skip
    aft = R("aft")
    for params in ({}, {"distribution": "logistic"}, {"distribution": "extreme", "sigma": 0.5}):
        edges += [
            # observed, right-censored (upper −1: +inf), left-censored, interval
            Edge(aft, params, _a([1e300, -1e300, 0.5, -1e300, 1e300, 0.2]),
                 _a([[2.0, 2.0], [2.0, 2.0], [1.0, -1.0], [1.0, -1.0], [0.0, 3.0], [1.0, 4.0]]),
                 "margins-1e300", must_answer=True),
            Edge(aft, params, _a([0.5, 1.0]), _a([[0.0, -1.0], [3.0, 3.0]]), "no-information",
                 must_answer=True),
        ]  # fmt: skip
    ntxent, circle = R("ntxent"), R("circle")
    rows = [[1e300, -1e300], [1e-300, 2e-300], [0.0, 0.0], [0.6, 0.8], [-0.3, 0.4], [2.0, 1.0]]
    labels = [0.0, 0.0, 1.0, 1.0, 0.0, 2.0]
    edges += [
        Edge(ntxent, {}, _a(rows), _a(labels), "rows-1e300-1e-300-zero", must_answer=True),
        Edge(ntxent, {"temperature": 0.5}, _a([[0.6, 0.8], [0.8, 0.6], [1.0, 0.0]]),
             _a([3.0, 3.0, 3.0]), "no-negatives", must_answer=True),
        Edge(ntxent, {}, _a([[0.6, 0.8], [0.8, 0.6], [1.0, 0.0]]), _a([0.0, 1.0, 2.0]),
             "no-positives", must_answer=True),
        Edge(ntxent, {}, _a([[0.5]]), _a([1.0]), "one-row", must_answer=True),
    ]  # fmt: skip
    unit = [[0.6, 0.8], [0.8, 0.6], [1.0, 0.0], [0.0, -1.0], [-0.6, 0.8]]
    for params in ({}, {"remove_diagonal": False, "gamma": 4.0}):
        edges += [
            # unit rows: x_i·x_i = 1, the clamp of D exactly at its kink on the diagonal
            Edge(circle, params, _a(unit), _a([0.0, 0.0, 1.0, 1.0, 2.0]), "unit-rows",
                 must_answer=True),
            Edge(circle, params, _a([[1e300, 0.0], [1e300, 1.0], [0.5, 0.5]]),
                 _a([0.0, 0.0, 1.0]), "rows-1e300"),
            Edge(circle, params, _a([[0.6, 0.8], [0.8, 0.6]]), _a([0.0, 0.0]), "no-negatives",
                 must_answer=True),
        ]  # fmt: skip
    return edges


def _input_edges() -> list[Edge]:
    """The losses with extra inputs: zeros, ties (a hinge at exactly its margin: gradient 0),
    equal vectors, variances below eps, rows of 1e-300 to 1e300 and past the float range."""
    edges: list[Edge] = []
    gaussian = R("gaussian_nll")
    for params in ({}, {"full": True}):
        edges += [
            Edge(gaussian, params, _a([0.0, 0.0, 0.5]), _a([0.0, 0.0, 0.5]), "zeros-var-below-eps",
                 must_answer=True, inputs={"var": _a([0.0, 1e-8, 1e-300])}),
            Edge(gaussian, params, _a([1e150, -1e150, 0.5]), _a([0.0, 0.0, 0.0]),
                 "residuals-1e150-var-1e300", must_answer=True,
                 inputs={"var": _a([1e300, 1e300, 1.0])}),
            Edge(gaussian, params, _a([1e200, 2.0]), _a([0.0, 1.0]), "residual-1e200-var-1e300",
                 must_answer=True, inputs={"var": _a([1e300, 1e-300])}),
            Edge(gaussian, params, _a([1e300, 0.5]), _a([0.0, 0.0]), "residual-1e300",
                 inputs={"var": _a([1.0, 1.0])}),
            Edge(gaussian, params, _a([[1e154, 2.0], [0.5, -0.5]]), _a([[0.0, 0.0], [0.0, 0.0]]),
                 "rows-1e154-var-per-sample", must_answer=True,
                 inputs={"var": _a([1e300, 0.0])}),
            Edge(gaussian, params, _a([[1e19, 2.0], [0.5, -0.5]], "float32"),
                 _a([[0.0, 0.0], [0.0, 0.5]], "float32"), "rows-1e19-var-column", "float32",
                 must_answer=True, inputs={"var": _a([[1e38], [1e-30]], "float32")}),
        ]  # fmt: skip
    # a variance of 1e-300 (eps below it): the gradient in the mean is 1e300, the one in the
    # variance 1e600, past the range (a 422 only when input_gradients are asked for)
    edges.append(Edge(gaussian, {"eps": 1e-300}, _a([1.0, 0.5]), _a([0.0, 0.5]), "var-1e-300",
                      inputs={"var": _a([1e-300, 1.0])}))  # fmt: skip
    ranking = R("margin_ranking")
    for params in ({}, {"margin": 0.5}):
        edges += [
            Edge(ranking, params, _a([0.5, -2.0, 3.0, 0.0]), _a([1.0, -1.0, 1.0, -1.0]), "ties",
                 must_answer=True, inputs={"input2": _a([0.5, -2.0, 3.0, 0.0])}),
            Edge(ranking, params, _a([1e300, -1e300, 0.5]), _a([-1.0, 1.0, 1.0]),
                 "scores-1e300", must_answer=True, inputs={"input2": _a([0.0, 1e300, -1e300])}),
            Edge(ranking, params, _a([1e308, 0.5]), _a([-1.0, 1.0]), "scores-past-the-range",
                 inputs={"input2": _a([-1e308, 0.0])}),
            Edge(ranking, params, _a([[1e154, 0.0], [0.0, -2.0]]), _a([[1.0, -1.0], [-1.0, 1.0]]),
                 "rows-1e154-zeros", must_answer=True,
                 inputs={"input2": _a([[-1e154, 0.0], [0.0, 3.0]])}),
            Edge(ranking, params, _a([1e38, -2.0, 0.5], "float32"), _a([-1.0, 1.0, 1.0], "float32"),
                 "scores-1e38", "float32", must_answer=True,
                 inputs={"input2": _a([0.0, -2.0, 1e38], "float32")}),
        ]  # fmt: skip
    cosine = R("cosine_embedding")
    for params in ({}, {"margin": 0.3}, {"margin": -0.5}):
        edges += [
            Edge(cosine, params, _a([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]]), _a([1.0, -1.0]),
                 "equal-vectors", must_answer=True,
                 inputs={"input2": _a([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])}),
            Edge(cosine, params, _a([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]),
                 _a([1.0, -1.0, -1.0]), "zeros", must_answer=True,
                 inputs={"input2": _a([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])}),
            Edge(cosine, params, _a([[1e200, 1e200, -1e200], [1e300, -1e300, 1.0]]),
                 _a([1.0, -1.0]), "rows-1e200-1e300", must_answer=True,
                 inputs={"input2": _a([[1.0, 2.0, 3.0], [1e300, 1e300, 1e300]])}),
            Edge(cosine, params, _a([[1e-300, 2e-300, 0.0], [1e-160, -1e-160, 1e-160]]),
                 _a([1.0, -1.0]), "rows-1e-300", must_answer=True,
                 inputs={"input2": _a([[1.0, 1.0, 1.0], [1e-160, 1e-160, 1e-160]])}),
            Edge(cosine, params, _a([[1e30, 1e30, 1.0], [1e-30, 0.0, 2e-30]], "float32"),
                 _a([1.0, -1.0], "float32"), "rows-1e30", "float32", must_answer=True,
                 inputs={"input2": _a([[1.0, 1.0, 1.0], [3e38, 1.0, 3e38]], "float32")}),
        ]  # fmt: skip
    triplet = R("triplet_margin")
    for params in ({}, {"swap": True}, {"p": 1.0}, {"p": 3.0, "swap": True}, {"eps": 0.0}):
        edges += [
            Edge(triplet, params, _a([[1.0, 2.0, 3.0], [0.5, -0.5, 0.0]]), None, "equal-vectors",
                 must_answer=True, inputs={"positive": _a([[1.0, 2.0, 3.0], [0.5, -0.5, 0.0]]),
                                           "negative": _a([[1.0, 2.0, 3.0], [2.0, 1.0, 0.0]])}),
            Edge(triplet, params, _a([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), None, "zeros",
                 must_answer=True, inputs={"positive": _a([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
                                           "negative": _a([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])}),
            Edge(triplet, params, _a([[1e200, -1e200, 3.0]]), None, "row-1e200", must_answer=True,
                 inputs={"positive": _a([[0.0, 0.0, 0.0]]),
                         "negative": _a([[1e200, 1e200, 1e200]])}),
            Edge(triplet, params, _a([[1.5e308, -1.5e308]]), None, "rows-past-the-range",
                 inputs={"positive": _a([[-1.5e308, 0.0]]), "negative": _a([[0.0, 0.0]])}),
            Edge(triplet, params, _a([[1e20, -1e20, 3.0]], "float32"), None, "rows-1e20",
                 "float32", must_answer=True,
                 inputs={"positive": _a([[0.0, 0.0, 0.0]], "float32"),
                         "negative": _a([[-1e20, 1e20, 1e20]], "float32")}),
        ]  # fmt: skip
    # differences of 1e-300 (without eps, which would swamp them): their squares underflow,
    # the distance is taken from the row scaled by its max
    for params in ({"eps": 0.0}, {"eps": 0.0, "p": 3.0}):
        edges.append(
            Edge(triplet, params, _a([[1e-300, 2e-300, 0.0]]), None, "row-1e-300",
                 must_answer=True, inputs={"positive": _a([[0.0, 0.0, 0.0]]),
                                           "negative": _a([[1e-300, 0.0, 0.5]])})
        )  # fmt: skip
    return edges


EDGES = _edges()


def _explains(detail: str) -> bool:
    return any(word in detail for word in REASONS)


def _exact_outputs(edge: Edge, ex: Exact, reduction: str) -> dict[str, Any]:
    """The exact outputs of a request without sample weights: per-sample losses, the value,
    and the derivatives of the value."""
    with mpmath.workdps(DIGITS):
        norm = mpmath.fsum(ex.kappa)
        total = mpmath.fsum(ex.per_sample)
        scale = 1 if reduction == "sum" else (1 / norm if norm else 0)
        return {
            "per_sample": ex.per_sample,
            "value": total * scale,
            "gradient": [[g * scale for g in row] for row in ex.gradient],
            "hessian": [[h * scale for h in row] for row in ex.hessian],
        }


_EXACT: dict[str, Exact] = {}


def _exact(edge: Edge, wrt: str = "predictions") -> Exact:
    """The exact reference of an edge (its derivatives in ``wrt``: the predictions or one of
    the extra inputs), computed once (mpmath at 400 digits is slow)."""
    key = f"{edge.id}:{wrt}"
    if key not in _EXACT:
        _EXACT[key] = evaluate_exact(
            edge.spec.name, edge.pred, edge.targ, edge.params, edge.inputs, wrt
        )
    return _EXACT[key]


def _all_exact(edge: Edge, reduction: str) -> dict[str, Any]:
    """The exact outputs of an edge (``_exact_outputs``), with the gradient in each extra input
    as ``inputs.<name>``."""
    exact = _exact_outputs(edge, _exact(edge), reduction)
    for name in edge.inputs:
        exact[f"inputs.{name}"] = _exact_outputs(edge, _exact(edge, name), reduction)["gradient"]
    return exact


def _check(edge: Edge, reduction: str, derivatives: tuple[str, ...]) -> None:
    asked = {key: key in derivatives for key in ("gradient", "hessian", "input_gradients")}
    dtype = np.float32 if edge.dtype == "float32" else np.float64
    shapes = {"gradient": edge.pred.shape, "hessian": edge.pred.shape}
    shapes |= {f"inputs.{name}": a.shape for name, a in edge.inputs.items()}
    try:
        out = evaluate(
            edge.spec,
            edge.pred,
            edge.targ,
            None,
            edge.params,
            edge.inputs,
            reduction=reduction,
            dtype=edge.dtype,
            **asked,
        )
    except Unprocessable as exc:
        assert exc.status == 422
        assert _explains(exc.detail), f"{edge.id}: a 422 that does not say why: {exc.detail!r}"
        if edge.must_answer:
            exact = _all_exact(edge, reduction)
            keys = ["per_sample", "value", *(k for k in derivatives if k != "input_gradients")]
            keys += [f"inputs.{n}" for n in edge.inputs] if asked["input_gradients"] else []
            finite = all(np.isfinite(rounded(exact[k], dtype)).all() for k in keys)
            assert not finite, f"{edge.id}: the contract promises an answer; got 422 {exc}"
        return
    rtol, atol = (FLOAT32_RTOL, 1e-30) if edge.dtype == "float32" else (RTOL, ATOL)
    exact = _all_exact(edge, reduction)
    got = {
        "per_sample": out.per_sample,
        "value": out.value,
        "gradient": out.gradient,
        "hessian": out.hessian,
    }
    for name, gradient in (out.input_gradients or {}).items():
        got[f"inputs.{name}"] = gradient
    for key, value in got.items():
        if value is None:
            continue
        want = rounded(exact[key], dtype)
        want = want.reshape(shapes[key]) if key in shapes else want
        where = f"{edge.id}: {reduction} {key} (asked for {', '.join(derivatives) or 'values'})"
        assert np.isfinite(want).all(), (
            f"{where}: answered {value} where the exact value is not a finite {edge.dtype} "
            f"({want}): a finite wrong value; it must be a 422"
        )
        np.testing.assert_allclose(
            np.asarray(value, dtype=np.float64),
            want.astype(np.float64),
            rtol=rtol,
            atol=atol,
            err_msg=where,
        )


EDGE_PARAMS = [pytest.param(e.spec, e, id=e.id) for e in EDGES]


@pytest.mark.parametrize(("spec", "edge"), EDGE_PARAMS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_an_edge_is_answered_right_or_refused(spec: LossSpec, edge: Edge, reduction: str) -> None:
    """Three requests, each either answered right (exact reference) or refused with a 422 that
    says why: the values alone, with the gradient, and with the gradient and Hessian."""
    _check(edge, reduction, ())
    _check(edge, reduction, ("gradient",))
    if spec.hessian:
        _check(edge, reduction, ("gradient", "hessian"))
    if edge.inputs:
        _check(edge, reduction, ("gradient", "input_gradients"))


LOG_COSH_RESIDUALS = [
    1e-8,
    -0.5,
    3.0,
    10.0,
    -10.0,
    20.0,
    -25.0,
    50.0,
    100.0,
    -300.0,
    345.0,
    700.0,
    -700.0,
]


@pytest.mark.loss("log_cosh")
def test_log_cosh_hessian_is_exact_to_1e_9_relative_up_to_700() -> None:
    """log_cosh's Hessian sech² r within 1e-9 *relative* of the exact value for |r| ≤ 700 (down to
    1e-300, where float64 keeps full precision): 1 − tanh² r loses it already at |r| = 10
    (3e-8) and is 0 from |r| ≈ 19 on. Values and gradients too."""
    r = _a(LOG_COSH_RESIDUALS)
    out = evaluate(
        R("log_cosh"), r, np.zeros_like(r), None, {}, reduction="sum", gradient=True, hessian=True
    )
    ex = evaluate_exact("log_cosh", r, np.zeros_like(r), {})
    for key, got, want in (
        ("per_sample", out.per_sample, ex.per_sample),
        ("gradient", out.gradient, ex.gradient),
        ("hessian", out.hessian, ex.hessian),
    ):
        want_f = rounded(want, np.float64).reshape(r.shape)
        rel = np.abs(np.asarray(got) - want_f) / np.maximum(np.abs(want_f), 1e-300)
        worst = int(np.argmax(rel))
        assert np.all((rel <= 1e-9) | (np.abs(want_f) < 1e-300)), (
            f"log_cosh {key}: relative error {rel.flat[worst]:.3g} at r = {r.flat[worst]:g} "
            f"(got {np.asarray(got).flat[worst]!r}, exact {want_f.flat[worst]!r})"
        )


NOT_DISTRIBUTIONS = [
    ("sum-0.8", [[0.5, 0.2, 0.1], [0.2, 0.3, 0.5]]),
    ("sum-1.5", [[0.5, 0.5, 0.5], [0.2, 0.3, 0.5]]),
    ("norm-1e-300", [[1e-300, 1e-300, 0.0], [0.2, 0.3, 0.5]]),
    ("sum-1.002", [[0.2, 0.3, 0.502], [0.2, 0.3, 0.5]]),
]
DISTRIBUTION_RULE = [
    pytest.param(R(name), {**base, "from_logits": False}, rows, id=f"{name}-{label}")
    for name, base in SOFTMAX_LOSSES.items()
    for label, rows in NOT_DISTRIBUTIONS
]


@pytest.mark.parametrize(("spec", "params", "rows"), DISTRIBUTION_RULE)
def test_probability_rows_that_are_not_distributions_are_refused(
    spec: LossSpec, params: dict[str, Any], rows: list[list[float]]
) -> None:
    """Probability rows whose sums are off by more than 1e-3 are a 422 that names
    ``from_logits: true`` and ``normalize: true`` (LOSSES.md, target rules)."""
    with pytest.raises(Unprocessable) as caught:
        evaluate(spec, _a(rows), _a([0.0, 2.0]), None, params, reduction="sum")
    detail = caught.value.detail
    assert "from_logits: true" in detail and "normalize: true" in detail, detail


RENORMALISING = ("cross_entropy", "focal")


@pytest.mark.parametrize("spec", [R(n) for n in RENORMALISING], ids=spec_id)
def test_normalize_true_renormalises_as_keras_does(spec: LossSpec) -> None:
    """With ``normalize: true`` rows off by more than 1e-3 are renormalised, as Keras does
    silently: the answer is Keras' formula on the rows as sent (value and gradient)."""
    pred, targ = _a([[0.5, 0.2, 0.1], [0.2, 0.3, 0.9]]), _a([0.0, 2.0])
    out = evaluate(spec, pred, targ, None, {"normalize": True}, reduction="sum", gradient=True)
    ex = evaluate_exact(spec.name, pred, targ, {})
    np.testing.assert_allclose(out.per_sample, rounded(ex.per_sample, np.float64), RTOL, ATOL)
    np.testing.assert_allclose(out.gradient, rounded(ex.gradient, np.float64), RTOL, ATOL)


SELF_CHECK = [
    pytest.param(
        spec, params, shape, id=f"{variant_id((spec, params))}-{'x'.join(map(str, shape))}"
    )
    for spec, params in VARIANTS
    for shape in shapes_for(spec)
    if "class_weight" not in params  # the exact rows take no class weights (the edges use none)
]


@pytest.mark.parametrize(("spec", "params", "shape"), SELF_CHECK)
def test_the_exact_reference_agrees_with_the_libraries(
    spec: LossSpec, params: dict[str, Any], shape: tuple[int, ...]
) -> None:
    """The suite's own check: on ordinary inputs the exact reference (mpmath) equals the
    library reference (torch float64) in per-sample losses, gradient and Hessian of Σ l_i, and
    in the gradients in the extra inputs."""
    drawn = sample(spec, shape, 11, params)
    pred, targ, inputs = drawn.pred, drawn.targ, drawn.inputs
    ex = evaluate_exact(spec.name, pred, targ, params, inputs)
    ref = lib.reference(spec.name, spec.family, params, pred, targ, inputs)
    p = lib.rows_of(pred)
    grad, hess = lib.gradient_and_hessian(lambda q: ref.per_sample(q).sum(), p, ref.coupled)
    np.testing.assert_allclose(
        rounded(ex.per_sample, np.float64), ref.per_sample(p).detach().numpy(), RTOL, ATOL
    )
    np.testing.assert_allclose(rounded(ex.gradient, np.float64), grad, RTOL, ATOL)
    np.testing.assert_allclose(rounded(ex.hessian, np.float64), hess, RTOL, ATOL)
    scalar = lambda q: ref.per_sample(q).sum()  # noqa: E731
    for name, want in lib.input_gradients(scalar, p, ref.inputs).items():
        exact = evaluate_exact(spec.name, pred, targ, params, inputs, wrt=name)
        got = rounded(exact.gradient, np.float64).reshape(want.shape)
        np.testing.assert_allclose(got, want, RTOL, ATOL, err_msg=f"inputs.{name}")


def test_every_registered_loss_has_edges() -> None:
    """The edge suite covers every loss the harness draws; ctc's edges (blank not 0, repeated
    labels, empty targets, the minimal steps, impossible alignments) are tests/test_ctc.py's
    ``test_edges_match_torch`` and ``test_impossible_alignments``."""
    assert {e.spec.name for e in EDGES} == {spec.name for spec in HARNESSED}
    ctc = (Path(__file__).parent / "test_ctc.py").read_text()
    assert "def test_edges_match_torch" in ctc and "def test_impossible_alignments" in ctc
