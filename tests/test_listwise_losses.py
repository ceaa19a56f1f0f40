"""The ranking, survival and embedding losses against the libraries themselves, in float64: optax
and Rax (JAX with x64) for the ranking losses and ntxent, XGBoost's own metrics and its
objectives' loops for cox and aft, Keras for circle (at its float32 precision); and what is
particular to batch-coupled losses (a sample's value depends on the rest of the batch).

The per-sample losses and the ``sum`` and ``mean`` values (and their gradients and Hessian
diagonals, by ``jax.grad`` and ``jax.hessian``) are compared at 1e-9 relative: ``sum`` is the
library's ``reduce_fn=jnp.sum`` over the batch, ``mean`` its default ``reduce_fn=jnp.mean``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import optax  # noqa: E402
import rax  # noqa: E402
import torch  # noqa: E402
import xgboost  # noqa: E402

from service.errors import LossdError  # noqa: E402
from service.losses import LossSpec, resolve  # noqa: E402
from tests.support.harness import evaluate, spec_id  # noqa: E402

RTOL, ATOL = 1e-9, 1e-12
XGBOOST_RTOL = 1e-6  # XGBoost's metrics take float32 predictions
KERAS_RTOL, KERAS_ATOL = 1e-6, 1e-8  # Keras computes in float32 on the torch backend

RANKING: dict[str, Callable[..., Any]] = {
    "ranking_softmax": optax.losses.ranking_softmax_loss,
    "pairwise_logistic": rax.pairwise_logistic_loss,
    "pairwise_hinge": rax.pairwise_hinge_loss,
    "pointwise_sigmoid": rax.pointwise_sigmoid_loss,
}


def _close(got: Any, want: Any, what: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64), np.asarray(want), rtol=rtol, atol=atol, err_msg=what
    )


def _lists(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Five lists of six items: graded labels with ties, one list all tied, scores kept off the
    pairwise hinge's kink (differences near multiples of 0.3)."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(-10, 11, size=(5, 6)) * 0.3 + rng.uniform(-0.02, 0.02, size=(5, 6))
    labels = rng.integers(0, 4, size=(5, 6)).astype(np.float64)
    labels[2] = 1.0
    return scores, labels


@pytest.mark.parametrize("spec", [resolve(n) for n in RANKING], ids=spec_id)
@pytest.mark.parametrize("seed", [1, 2])
def test_ranking_losses_are_optax_and_rax(spec: LossSpec, seed: int) -> None:
    """Per list: the library's loss of that list (``reduce_fn=jnp.sum``); ``sum`` and ``mean``:
    the library's ``jnp.sum`` and default ``jnp.mean`` over the batch, with their gradients
    and Hessian diagonals, at 1e-9."""
    fn = RANKING[spec.name]
    scores, labels = _lists(seed)
    y = jnp.asarray(labels)
    per_list = [float(fn(jnp.asarray(s), jnp.asarray(t), reduce_fn=jnp.sum))
                for s, t in zip(scores, labels, strict=True)]  # fmt: skip
    out = evaluate(spec, scores, labels, None, {}, reduction="none")
    _close(out.per_sample, per_list, f"{spec.name} per list")
    for reduction, reduce_fn in (("sum", jnp.sum), ("mean", jnp.mean)):

        def library(s: Any, reduce_fn: Any = reduce_fn) -> Any:
            return fn(s, y, reduce_fn=reduce_fn)

        got = evaluate(spec, scores, labels, None, {}, reduction=reduction, gradient=True,
                       hessian=True)  # fmt: skip
        x = jnp.asarray(scores)
        _close(got.value, float(library(x)), f"{spec.name} {reduction}")
        _close(got.gradient, jax.grad(library)(x), f"{spec.name} {reduction} gradient")
        hessian = jax.hessian(library)(x).reshape(scores.size, scores.size).diagonal()
        _close(got.hessian, hessian.reshape(scores.shape), f"{spec.name} {reduction} Hessian")


@pytest.mark.parametrize("spec", [resolve(n) for n in RANKING], ids=spec_id)
def test_lists_of_one_item_and_all_tied_lists(spec: LossSpec) -> None:
    """A list of one item has no pairs (pairwise: loss 0, κ 0), and the softmax of one item is
    1; a batch whose lists are all tied has a pairwise mean of 0, as Rax's safe mean."""
    single = np.array([[2.0], [-1.0], [1e300]])
    labels = np.array([[1.0], [0.0], [3.0]])
    out = evaluate(spec, single, labels, None, {}, reduction="mean", gradient=True)
    fn = RANKING[spec.name]
    want = float(fn(jnp.asarray(single[:2]), jnp.asarray(labels[:2])))  # no 1e300 in jax's mean
    if spec.name.startswith("pairwise"):
        assert (out.value, out.weight_sum) == (0.0, 0.0)
        assert not out.gradient.any()
    elif spec.name == "ranking_softmax":
        assert out.value == 0.0 == want
    tied = evaluate(spec, np.array([[0.5, 2.0]]), np.array([[1.0, 1.0]]), None, {})
    if spec.name.startswith("pairwise"):
        assert tied.value == 0.0 == float(fn(jnp.array([[0.5, 2.0]]), jnp.array([[1.0, 1.0]])))


@pytest.mark.loss("ntxent")
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_ntxent_is_optax(temperature: float) -> None:
    """optax.ntxent's value is the mean (Σ_i l_i / Σ_i |P(i)|); its gradient and Hessian
    diagonal by jax at 1e-9, with a zero row, a row without positives and one without
    negatives among the labels."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(9, 4))
    x[4] = 0.0
    labels = np.array([0, 0, 1, 1, 1, 2, 0, 2, 3])
    spec = resolve("ntxent")
    got = evaluate(spec, x, labels, None, {"temperature": temperature}, gradient=True,
                   hessian=True)  # fmt: skip

    def library(e: Any) -> Any:
        return optax.ntxent(e, jnp.asarray(labels), temperature)

    e = jnp.asarray(x)
    _close(got.value, float(library(e)), "ntxent value")
    _close(got.weight_sum, 2 * (3 + 3 + 1), "ntxent counts the positive pairs")
    _close(got.gradient, jax.grad(library)(e), "ntxent gradient")
    hessian = jax.hessian(library)(e).reshape(x.size, x.size).diagonal().reshape(x.shape)
    # jax differentiates the zero row through its clipped norm as 0 / 0: compare the others
    _close(np.delete(got.hessian, 4, 0), np.delete(np.asarray(hessian), 4, 0), "ntxent Hessian")


@pytest.mark.loss("circle")
@pytest.mark.parametrize(
    "params", [{}, {"gamma": 4.0}, {"gamma": 2.0, "margin": 0.25, "remove_diagonal": False}]
)
def test_circle_is_keras(params: dict[str, Any]) -> None:
    """keras.losses.Circle per sample, its default mean (over the rows Keras does not mask)
    and the autograd gradient of the sum, at Keras' float32 precision, on unit rows."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(8, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.array([0, 0, 1, 1, 1, 2, 0, 3])  # rows 5 and 7 have no positive
    kw = {"gamma": 80.0, "margin": 0.4, "remove_diagonal": True, **params}
    y = torch.tensor(labels)
    e = torch.tensor(x, requires_grad=True)
    per_sample = keras.losses.circle(y, e, **kw)
    per_sample.sum().backward()
    spec = resolve("circle")
    none = evaluate(spec, x, labels, None, params, reduction="none")
    total = evaluate(spec, x, labels, None, params, reduction="sum", gradient=True)
    mean = evaluate(spec, x, labels, None, params)
    where = f"circle {params} against keras"
    _close(none.per_sample, per_sample.detach().numpy(), where, KERAS_RTOL, KERAS_ATOL)
    assert e.grad is not None
    # float32 to the gradient's scale: γ = 80 makes terms of hundreds cancel to tens
    scale = float(np.abs(e.grad.numpy()).max())
    _close(
        total.gradient, e.grad.numpy(), f"gradient, {where}", KERAS_RTOL, KERAS_ATOL * scale * 100
    )
    keras_mean = float(keras.losses.Circle(**kw)(y, torch.tensor(x)))
    _close(mean.value, keras_mean, f"mean, {where}", KERAS_RTOL, KERAS_ATOL)


def xgboost_cox_gradient(preds: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XGBoost's ``CoxRegression::GetGradient`` loop (src/objective/regression_obj.cu), line by
    line, unweighted: samples sorted by |y| (stably), the risk sum kept by subtracting."""
    order = sorted(range(len(preds)), key=lambda i: abs(labels[i]))
    exp_p_sum = sum(np.exp(preds[i]) for i in order)
    r_k = s_k = last_exp_p = last_abs_y = accumulated = 0.0
    grad, hess = np.zeros(len(preds)), np.zeros(len(preds))
    for ind in order:
        exp_p, y = np.exp(preds[ind]), labels[ind]
        accumulated += last_exp_p
        if last_abs_y < abs(y):
            exp_p_sum -= accumulated
            accumulated = 0.0
        if y > 0:
            r_k += 1.0 / exp_p_sum
            s_k += 1.0 / (exp_p_sum * exp_p_sum)
        grad[ind] = exp_p * r_k - (y > 0)
        hess[ind] = exp_p * r_k - exp_p * exp_p * s_k
        last_abs_y, last_exp_p = abs(y), exp_p
    return grad, hess


def _xgboost_metric(
    metric: str, margins: np.ndarray, distribution: str = "normal", **info: Any
) -> float:
    """An XGBoost metric of the margins as they are (no tree: 0 rounds, base_score 0)."""
    label = info.pop("label", None)
    data = xgboost.DMatrix(np.zeros((len(margins), 1)), label=label, base_margin=margins)
    for key, value in info.items():
        data.set_float_info(key, value)
    params: dict[str, Any] = {"eval_metric": metric, "base_score": 0.0}
    objective = "survival:cox" if metric == "cox-nloglik" else "survival:aft"
    if objective == "survival:aft":
        params["aft_loss_distribution"] = distribution
    booster = xgboost.train({**params, "objective": objective}, data, 0)
    return float(booster.eval(data).split(":")[1])


@pytest.mark.loss("cox")
def test_cox_is_xgboost_without_ties_and_weights() -> None:
    """The mean is XGBoost's own cox-nloglik (at its float32 precision); the gradient and
    Hessian of the sum are XGBoost's GetGradient loop's at 1e-9 when no time is tied."""
    rng = np.random.default_rng(7)
    margins = rng.normal(size=40)
    times = rng.uniform(0.5, 5.0, size=40) * rng.choice([1.0, 1.0, -1.0], size=40)
    spec = resolve("cox")
    mean = evaluate(spec, margins, times, None, {})
    _close(mean.value, _xgboost_metric("cox-nloglik", margins, label=times),
           "cox mean against XGBoost's cox-nloglik", XGBOOST_RTOL)  # fmt: skip
    assert mean.weight_sum == np.sum(times > 0)
    total = evaluate(spec, margins, times, None, {}, reduction="sum", gradient=True, hessian=True)
    grad, hess = xgboost_cox_gradient(margins, times)
    _close(total.gradient, grad, "cox gradient against XGBoost's loop")
    _close(total.hessian, hess, "cox Hessian against XGBoost's loop")


@pytest.mark.loss("cox")
def test_cox_ties_are_breslow_and_exact_where_xgboost_depends_on_order() -> None:
    """Tied times share one risk set (Breslow), as XGBoost's cox-nloglik counts them; the
    gradient is that value's exact derivative, which XGBoost's loop gives only to the tied event
    sorted last (it adds a tied event's 1/S to the samples after it): the two differ exactly
    there, and agree once the ties are broken."""
    margins = np.array([0.5, -1.0, 2.0, 0.3, -0.7])
    times = np.array([2.0, 2.0, -2.0, 1.0, 3.0])
    spec = resolve("cox")
    mean = evaluate(spec, margins, times, None, {})
    _close(mean.value, _xgboost_metric("cox-nloglik", margins, label=times),
           "cox mean with ties against XGBoost's cox-nloglik", XGBOOST_RTOL)  # fmt: skip
    total = evaluate(spec, margins, times, None, {}, reduction="sum", gradient=True)
    grad, _ = xgboost_cox_gradient(margins, times)
    differs = ~np.isclose(total.gradient, grad, rtol=RTOL, atol=ATOL)
    assert differs[0] and not differs[3:].any()  # the first tied event misses its partner's 1/S
    e = np.exp(margins)
    _close(total.gradient[0], e[0] * (1 / e.sum() + 2 / e[[0, 1, 2, 4]].sum()) - 1,
           "the tied event's exact Breslow derivative")  # fmt: skip


@pytest.mark.loss("cox")
def test_cox_all_censored_and_weights() -> None:
    """No event: loss, mean, gradient 0 (κ = 0). Sample weights weight the events' terms, and
    the gradient is of the weighted sum (XGBoost scales each sample's own pair instead)."""
    spec = resolve("cox")
    out = evaluate(spec, np.array([0.5, 1.0]), np.array([-1.0, -2.0]), None, {}, gradient=True)
    assert (out.value, out.weight_sum) == (0.0, 0.0) and not out.gradient.any()
    margins, times, w = (
        np.array([0.2, -0.4, 1.1]),
        np.array([1.0, 2.0, 3.0]),
        np.array([2.0, 0.5, 1.0]),
    )
    total = evaluate(spec, margins, times, w, {}, reduction="sum", gradient=True)
    e = np.exp(margins)
    s = [e.sum(), e[1:].sum(), e[2:].sum()]
    want = [e[0] * w[0] / s[0] - w[0],
            e[1] * (w[0] / s[0] + w[1] / s[1]) - w[1],
            e[2] * (w[0] / s[0] + w[1] / s[1] + w[2] / s[2]) - w[2]]  # fmt: skip
    _close(total.gradient, want, "weighted cox gradient")


# XGBoost's GetLimitGradAtInfPred and GetLimitHessAtInfPred (src/common/survival_util.h):
# (distribution, censoring) -> ((gradient, Hessian) for a positive z, for a negative one), the
# Hessian's 1/σ² written as None
LIMITS: dict[tuple[str, str], tuple[tuple[float, float | None], tuple[float, float | None]]] = {
    ("normal", "uncensored"): ((-15.0, None), (15.0, None)),
    ("normal", "right"): ((-15.0, None), (0.0, 1e-16)),
    ("normal", "left"): ((0.0, 1e-16), (15.0, None)),
    ("normal", "interval"): ((-15.0, None), (15.0, None)),
    ("logistic", "uncensored"): ((-1.0, 1e-16), (1.0, 1e-16)),
    ("logistic", "right"): ((-1.0, 1e-16), (0.0, 1e-16)),
    ("logistic", "left"): ((0.0, 1e-16), (1.0, 1e-16)),
    ("logistic", "interval"): ((-1.0, 1e-16), (1.0, 1e-16)),
    ("extreme", "uncensored"): ((-15.0, 15.0), (1.0, 1e-16)),
    ("extreme", "right"): ((-15.0, 15.0), (0.0, 1e-16)),
    ("extreme", "left"): ((0.0, 1e-16), (1.0, 1e-16)),
    ("extreme", "interval"): ((-15.0, 15.0), (1.0, 1e-16)),
}


def xgboost_aft(
    lower: float, upper: float, pred: float, sigma: float, dist: str
) -> tuple[float, float, float]:
    """XGBoost's AFTLoss Loss, Gradient and Hessian (src/common/survival_util.h) with upper = +inf
    for right-censoring, line by line, through the PDF and CDF of
    src/common/probability_distribution.h; its limits where the denominator underflows."""

    def terms(z: float) -> tuple[float, float, float, float]:
        if dist == "normal":
            p = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
            return p, -z * p, (z * z - 1) * p, 0.5 * (1 + math.erf(z / math.sqrt(2)))
        w = math.exp(z) if z < 709 else math.inf
        if dist == "logistic":
            if math.isinf(w) or math.isinf(w * w):
                return 0.0, 0.0, 0.0, 1.0
            p = w / (1 + w) ** 2
            return p, p * (1 - w) / (1 + w), p * (w * w - 4 * w + 1) / (1 + w) ** 2, w / (1 + w)
        if math.isinf(w):
            return 0.0, 0.0, 0.0, 1.0
        p = w * math.exp(-w)
        hess = 0.0 if math.isinf(w * w) else (w * w - 3 * w + 1) * p
        return p, (1 - w) * p, hess, 1 - math.exp(-w)

    def ratio(num: float, den: float) -> float:
        return (
            num / den if den != 0.0 else (math.nan if num == 0.0 else math.copysign(math.inf, num))
        )

    if lower == upper:
        z = (math.log(lower) - pred) / sigma
        p, dp, ddp, _ = terms(z)
        censoring, positive = "uncensored", z > 0
        value = -math.log(max(p / (sigma * lower), 1e-12))
        g_den, h_den = sigma * p, sigma * sigma * p * p
        g, h = ratio(dp, g_den), ratio(-(p * ddp - dp * dp), h_den)
    else:
        z_u = z_l = 0.0
        p_u, dp_u, c_u = 0.0, 0.0, 1.0
        censoring = "right" if math.isinf(upper) else "interval"
        if not math.isinf(upper):
            z_u = (math.log(upper) - pred) / sigma
            p_u, dp_u, _, c_u = terms(z_u)
        p_l, dp_l, c_l = 0.0, 0.0, 0.0
        if lower > 0:
            z_l = (math.log(lower) - pred) / sigma
            p_l, dp_l, _, c_l = terms(z_l)
        else:
            censoring = "left"
        positive = z_u > 0 or z_l > 0
        value = -math.log(max(c_u - c_l, 1e-12))
        g_den = sigma * (c_u - c_l)
        h_den = g_den * g_den
        g = ratio(p_u - p_l, g_den)
        h = ratio(-((c_u - c_l) * (dp_u - dp_l) - (p_u - p_l) ** 2), h_den)
    limit_g, limit_h = LIMITS[dist, censoring][0 if positive else 1]
    if g_den < 1e-12 and not math.isfinite(g):
        g = limit_g / (sigma if dist != "normal" and abs(limit_g) == 1.0 else 1.0)
    if h_den < 1e-12 and not math.isfinite(h):
        h = 1 / sigma**2 if limit_h is None else limit_h
    return value, min(max(g, -15.0), 15.0), min(max(h, 1e-16), 15.0)


@pytest.mark.loss("aft")
@pytest.mark.parametrize("distribution", ["normal", "logistic", "extreme"])
def test_aft_is_xgboost(distribution: str) -> None:
    """The mean is XGBoost's own aft-nloglik (σ 1, at its float32 precision); per sample, the
    gradient and Hessian are its AFTLoss's, clipped as it clips them, at 1e-9, for every kind of
    censoring, σ 0.7 too; right-censoring is sent as a negative upper bound."""
    rng = np.random.default_rng(8)
    margins = rng.uniform(-1.0, 1.5, size=12)
    lower = rng.uniform(0.5, 3.0, size=12)
    upper = lower * rng.uniform(1.5, 3.0, size=12)
    upper[0::4] = lower[0::4]
    upper[1::4] = np.inf
    lower[2::4] = 0.0
    margins[3] = 40.0  # far in a tail: a clipped gradient
    sent = np.stack([lower, np.where(np.isinf(upper), -1.0, upper)], axis=1)
    spec = resolve("aft")
    params = {"distribution": distribution}
    mean = evaluate(spec, margins, sent, None, params)
    xgb = _xgboost_metric("aft-nloglik", margins, distribution, label_lower_bound=lower,
                          label_upper_bound=upper)  # fmt: skip
    _close(mean.value, xgb, f"aft {distribution} mean against aft-nloglik", XGBOOST_RTOL)
    for sigma in (1.0, 0.7):
        out = evaluate(spec, margins, sent, None, {**params, "sigma": sigma}, reduction="none",
                       gradient=True, hessian=True)  # fmt: skip
        want = np.array([xgboost_aft(lo, up, m, sigma, distribution)
                         for lo, up, m in zip(lower, upper, margins, strict=True)])  # fmt: skip
        _close(out.per_sample, want[:, 0], f"aft {distribution} σ {sigma} values")
        _close(out.gradient, want[:, 1], f"aft {distribution} σ {sigma} gradient")
        _close(out.hessian, want[:, 2], f"aft {distribution} σ {sigma} Hessian")


@pytest.mark.loss("aft")
def test_aft_takes_xgboost_names_and_refuses_what_is_no_interval() -> None:
    """``survival:aft`` takes XGBoost's parameter names; a lower bound above the upper one, a
    negative lower bound or an observed time 0 is a 422 that says how intervals are sent."""
    import orjson

    from service.codecs.loss import evaluate_one

    body = {"predictions": [0.5, 1.0], "targets": [[1.0, 2.0], [2.0, -1.0]],
            "params": {"aft_loss_distribution": "logistic", "aft_loss_distribution_scale": 0.5}}  # fmt: skip
    reply = orjson.loads(evaluate_one("survival:aft", orjson.dumps(body), 100).body.tobytes())
    assert reply["params"] == {"distribution": "logistic", "sigma": 0.5}
    spec = resolve("aft")
    for rows in ([[2.0, 1.0]], [[-1.0, 2.0]], [[0.0, 0.0]]):
        with pytest.raises(LossdError) as info:
            evaluate(spec, np.array([0.5]), np.array(rows), None, {})
        assert info.value.status == 422 and "negative upper" in info.value.detail
