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


@pytest.mark.loss("gamma")
def test_gamma_is_xgboosts_reg_gamma() -> None:
    """XGBoost itself: its gamma-nloglik metric at the margins (base_margin, no trees) is the mean
    loss, and boosting with lossd's gradient and Hessian as a custom objective grows the trees
    the built-in reg:gamma grows (XGBoost computes in float32: compared at 1e-5)."""
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(25)
    x = rng.normal(size=(400, 3))
    y = rng.gamma(2.0, np.exp(0.5 * x[:, 0]) / 2.0)
    margins = rng.uniform(-2, 2, size=400)
    weights = rng.uniform(0.5, 2.0, size=400)
    spec = resolve("gamma")
    metric = xgb.DMatrix(x, label=y, base_margin=margins)
    untrained = xgb.train({"objective": "reg:gamma", "eval_metric": "gamma-nloglik"}, metric, 0)
    value = float(untrained.eval(metric).split(":")[1])
    assert evaluate(spec, margins, y, None).value == pytest.approx(value, rel=1e-6)

    def objective(predt: np.ndarray, data: Any) -> tuple[np.ndarray, np.ndarray]:
        out = evaluate(spec, predt.astype(np.float64), data.get_label().astype(np.float64),
                       data.get_weight().astype(np.float64), reduction="sum", gradient=True,
                       hessian=True)  # fmt: skip
        return out.gradient, out.hessian

    train = xgb.DMatrix(x, label=y, weight=weights)
    common = {"max_depth": 3, "eta": 0.3, "tree_method": "exact"}
    builtin = xgb.train({**common, "objective": "reg:gamma", "base_score": 1.0}, train, 10)
    custom = xgb.train({**common, "base_score": 0.0}, train, 10, obj=objective)
    np.testing.assert_allclose(custom.predict(train, output_margin=True),
                               builtin.predict(train, output_margin=True), rtol=1e-5, atol=1e-5)  # fmt: skip
