"""Losses against scikit-learn and XGBoost's formulas, in float64 (always run).

PyTorch and Keras are in ``test_reference_torch.py``, which skips when torch is absent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import mean_pinball_loss, mean_tweedie_deviance

from service.losses import LossSpec, resolve
from tests.support.harness import ATOL, RTOL, evaluate, sample, variant_id, variants

SKLEARN = variants(resolve("pinball"), resolve("tweedie"))  # the losses scikit-learn has


@pytest.mark.parametrize(("spec", "params"), SKLEARN, ids=[variant_id(v) for v in SKLEARN])
def test_sklearn_per_sample(spec: LossSpec, params: dict[str, Any]) -> None:
    """pinball and tweedie equal scikit-learn's metric computed on each row alone."""
    pred, targ = sample(spec, (9, 3), seed=21)
    out = evaluate(spec, pred, targ, None, params, reduction="none")
    if spec.name == "pinball":
        q = params.get("quantile", 0.5)
        expected = [mean_pinball_loss(t, p, alpha=q) for p, t in zip(pred, targ, strict=True)]
    else:
        pw = params.get("power", 1.5)
        expected = [mean_tweedie_deviance(t, p, power=pw) for p, t in zip(pred, targ, strict=True)]
    np.testing.assert_allclose(out.per_sample, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.loss("pseudo_huber")
def test_pseudo_huber_matches_xgboost_formulas() -> None:
    """Gradient and Hessian are XGBoost's PseudoHuberError (src/objective/regression_obj.cu)."""
    slope = 0.7
    pred, targ = sample(resolve("pseudo_huber"), (20,), seed=22)
    out = evaluate(resolve("pseudo_huber"), pred, targ, None, {"delta": slope}, reduction="sum",
                   gradient=True, hessian=True)  # fmt: skip
    z = pred - targ
    scale_sqrt = np.sqrt(1 + (z / slope) ** 2)
    np.testing.assert_allclose(out.gradient, z / scale_sqrt, rtol=RTOL, atol=ATOL)
    hess = slope**2 / ((slope**2 + z**2) * scale_sqrt)
    np.testing.assert_allclose(out.hessian, hess, rtol=RTOL, atol=ATOL)
