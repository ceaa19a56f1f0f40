"""lossd losses in XGBoost, LightGBM and scikit-learn: custom objectives and a scorer.

None of these libraries is imported here until it is needed (they are the package's extras):
the objectives only call methods of the training set they are handed.

Gradient boosting takes the gradient and the Hessian diagonal of the loss at the current raw
scores (margins) with respect to those scores, for the *summed* loss: the objectives ask lossd
for reduction ``sum``. With ``mean`` every value would be divided by N, the Hessian sums in a
leaf would fall below ``min_child_weight`` and no tree would grow.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ._client import Client

Array = npt.NDArray[Any]
Objective = Callable[..., tuple[Array, Array]]


class _TrainingSet(Protocol):
    """What the objectives use of an ``xgboost.DMatrix`` or a ``lightgbm.Dataset``."""

    def get_label(self) -> Any: ...

    def get_weight(self) -> Any: ...


def _derivatives(
    client: Client,
    name: str,
    params: Mapping[str, Any] | None,
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    weight: npt.ArrayLike | None,
) -> tuple[Array, Array]:
    """Gradient and Hessian of the summed loss at ``scores``, in the scores' shape (float64)."""
    if weight is not None and np.asarray(weight).size == 0:
        weight = None  # XGBoost's "no weights"
    result = client.evaluate(
        name,
        scores,
        labels,
        sample_weight=weight,
        reduction="sum",
        params=params,
        per_sample=False,
        gradient=True,
        hessian=True,
        dtype="float64",
    )
    assert result.gradient is not None and result.hessian is not None
    return result.gradient, result.hessian


def _objective(client: Client, name: str, params: Mapping[str, Any] | None) -> Objective:
    def objective(
        first: Any, second: Any, sample_weight: npt.ArrayLike | None = None
    ) -> tuple[Array, Array]:
        # the training APIs call obj(scores, training_set); the scikit-learn wrappers call
        # obj(y_true, y_pred[, sample_weight]) (XGBoost by that keyword, LightGBM by position)
        if hasattr(second, "get_label"):
            training: _TrainingSet = second
            return _derivatives(
                client, name, params, first, training.get_label(), training.get_weight()
            )
        return _derivatives(client, name, params, second, first, sample_weight)

    objective.__name__ = f"lossd_{name}"
    return objective


def xgboost_objective(
    client: Client, name: str, params: Mapping[str, Any] | None = None
) -> Objective:
    """An XGBoost custom objective (``xgb.train(..., obj=...)``, or ``objective=`` of the
    scikit-learn wrappers): lossd's gradient and Hessian of the summed loss at the margins, the
    training set's weights applied.

    For ``binary_cross_entropy`` and ``cross_entropy`` pass ``params={"from_logits": True}``:
    XGBoost hands a custom objective raw margins, not probabilities. A custom objective's
    ``base_score`` is a margin (``0.0`` matches ``binary:logistic``'s default 0.5), and its
    predictions are margins too (``predict(..., output_margin=True)`` on both to compare).
    """
    return _objective(client, name, params)


def lightgbm_objective(
    client: Client, name: str, params: Mapping[str, Any] | None = None
) -> Objective:
    """A LightGBM custom objective (``params={"objective": ...}`` of ``lgb.train``, or
    ``objective=`` of the scikit-learn wrappers), as ``xgboost_objective``: raw scores in, the
    gradient and Hessian of the summed loss out. LightGBM starts a custom objective from raw
    score 0 (no ``boost_from_average``)."""
    return _objective(client, name, params)


def sklearn_scorer(
    client: Client,
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    response_method: str = "predict",
) -> Any:
    """A scikit-learn scorer (``cross_val_score(..., scoring=...)``, ``GridSearchCV``): the
    loss's mean over the scored set, lossd's value, negated (``greater_is_better=False``).

    ``response_method="predict_proba"`` scores probabilities (binary: the positive class's
    column; multiclass: (N, C) rows against class indices 0..C-1).
    """
    metrics = importlib.import_module("sklearn.metrics")

    def score(
        y_true: npt.ArrayLike, y_pred: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None
    ) -> float:
        result = client.evaluate(
            name, y_pred, y_true, sample_weight=sample_weight, params=params, per_sample=False
        )
        assert result.value is not None
        return result.value

    score.__name__ = f"lossd_{name}"
    return metrics.make_scorer(score, greater_is_better=False, response_method=response_method)
