"""Accelerated failure time, as XGBoost's ``survival:aft``: the negative log-likelihood of an
interval-censored survival time under log T = ŷ + σZ, Z normal, logistic or extreme-value
(XGBoost's ``aft_loss_distribution`` and ``aft_loss_distribution_scale``).

Predictions are margins ŷ (the predicted log time), ``(N,)``. Targets are ``(N, 2)`` rows
[lower, upper] of the time's interval, as XGBoost's ``label_lower_bound`` and
``label_upper_bound``: lower = upper for an observed time, lower 0 for a left-censored one, and
for a right-censored time, whose upper bound is +∞, a **negative upper bound** (−1): JSON has
no infinity, and every wire format refuses non-finite numbers before the loss is known, so the
one finite number no time can be stands for it. ``(N,)`` targets are observed times.

Value, gradient and Hessian follow ``src/common/survival_util.h`` (``AFTLoss``) line by line,
in float64: the value −log max(pdf(z)/(σy), 1e-12) for an observed time and
−log max(CDF(z_u) − CDF(z_l), 1e-12) for an interval, z = (log y − ŷ)/σ; the gradient and
Hessian are the exact derivatives of the unfloored expression, replaced by XGBoost's limits
where the denominator underflows, and **clipped** as XGBoost clips them, to [−15, 15] and
[1e-16, 15]. Where the floor or a clip is active they are XGBoost's, not the derivatives of the
value (the catalogue's ``hessian_note`` says so).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ..errors import OutOfDomain, ShapeMismatch
from ..jit import Array, RowArrays, block_range, driver, scalar
from ._spec import ComputeDtype, Kernel, LossParams, Memo, Prepared, as_compute, memoized
from ._stable import row_factor

DISTRIBUTIONS = {"normal": 0.0, "logistic": 1.0, "extreme": 2.0}
MIN_GRADIENT, MAX_GRADIENT = -15.0, 15.0
MIN_HESSIAN, MAX_HESSIAN = 1e-16, 15.0
EPS = 1e-12
SQRT_2PI = math.sqrt(2.0 * math.pi)


class AftParams(LossParams):
    """`aft`: the noise distribution and its scale σ, XGBoost's defaults."""

    distribution: Literal["normal", "logistic", "extreme"] = Field(
        "normal", description="the distribution of Z in log T = ŷ + σZ (aft_loss_distribution)"
    )
    sigma: float = Field(
        1.0, gt=0, description="the scale σ of the distribution (aft_loss_distribution_scale)"
    )
    host_fields: ClassVar[frozenset[str]] = frozenset({"distribution"})
    max_rank: ClassVar[int] = 1

    @classmethod
    def warm_up_batch(cls) -> tuple[Array, Array]:
        """Margins and observed, censored and interval rows."""
        return np.full(2, 0.5), np.array([[1.0, 1.0], [0.5, 2.0]])

    def kernel_params(self) -> dict[str, Any]:
        """σ, and the distribution as its code (0 normal, 1 logistic, 2 extreme)."""
        return {"sigma": float(self.sigma), "distribution": DISTRIBUTIONS[self.distribution]}

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """One margin a sample; targets (N, 2) intervals or (N,) observed times."""
        n = predictions.shape[0]
        if targets.shape not in ((n,), (n, 1), (n, 2)):
            raise ShapeMismatch(
                f"targets have shape {list(targets.shape)}; {name} takes (N, 2) rows [lower, "
                f"upper] (a negative upper bound: right-censored) or (N,) observed times, "
                f"N = {n}",
                errors=[(("targets",), "expected (N, 2) or (N,)")],
            )
        rows = memoized(memo, ("targets", dtype), lambda: as_compute(targets, dtype, "targets"))
        return Prepared(rows, self.kernel_params())

    def check_domain(self, predictions: Array, targets: Array) -> None:
        """lower ≥ 0 and upper ≥ lower (or negative: +∞); an observed time is positive."""
        lower = targets[:, 0]
        upper = targets[:, -1]
        bad = (lower < 0) | ((upper < lower) & (upper >= 0)) | ((lower == 0) & (upper == 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise OutOfDomain(
                f"aft targets[{i}] = {targets[i].tolist()} is no interval: rows are [lower, "
                "upper] with 0 <= lower <= upper (lower 0: left-censored; a negative upper "
                "bound: right-censored, upper = +inf), and an observed time (lower = upper) "
                "must be positive",
                errors=[(("targets", i), "must be an interval of times")],
            )


@scalar
def pdf_terms(z: float, kind: float) -> tuple[float, float, float]:
    """(PDF(z), PDF'(z), PDF''(z)) of XGBoost's ``probability_distribution.h``."""
    if kind == 0.0:
        p = math.exp(-z * z / 2.0) / SQRT_2PI
        return p, -z * p, (z * z - 1.0) * p
    w = math.exp(z)
    if kind == 1.0:
        if math.isinf(w) or math.isinf(w * w):
            return 0.0, 0.0, 0.0
        p = w / ((1.0 + w) * (1.0 + w))
        return p, p * (1.0 - w) / (1.0 + w), p * (w * w - 4.0 * w + 1.0) / ((1.0 + w) * (1.0 + w))
    if math.isinf(w):
        return 0.0, 0.0, 0.0
    p = w * math.exp(-w)
    hess = 0.0 if math.isinf(w * w) else (w * w - 3.0 * w + 1.0) * p
    return p, (1.0 - w) * p, hess


@scalar
def cdf(z: float, kind: float) -> float:
    """CDF(z) of XGBoost's ``probability_distribution.h``."""
    if kind == 0.0:
        return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    w = math.exp(z)
    if kind == 1.0:
        return 1.0 if math.isinf(w) else w / (1.0 + w)
    return 1.0 - math.exp(-w)


@scalar
def limits(censoring: int, sign: bool, sigma: float, kind: float) -> tuple[float, float]:
    """XGBoost's ``GetLimitGradAtInfPred`` and ``GetLimitHessAtInfPred``: censoring 0
    uncensored, 1 right-, 2 left-, 3 interval-censored."""
    if kind == 0.0:
        g = (
            (MIN_GRADIENT if sign else MAX_GRADIENT)
            if censoring in (0, 3)
            else (MIN_GRADIENT if sign else 0.0)
            if censoring == 1
            else (0.0 if sign else MAX_GRADIENT)
        )
        full = 1.0 / (sigma * sigma)
        h = (
            full
            if censoring in (0, 3)
            else (full if sign else MIN_HESSIAN)
            if censoring == 1
            else (MIN_HESSIAN if sign else full)
        )
        return g, h
    if kind == 1.0:
        g = (
            (-1.0 / sigma if sign else 1.0 / sigma)
            if censoring in (0, 3)
            else (-1.0 / sigma if sign else 0.0)
            if censoring == 1
            else (0.0 if sign else 1.0 / sigma)
        )
        return g, MIN_HESSIAN
    g = (
        (MIN_GRADIENT if sign else 1.0 / sigma)
        if censoring in (0, 3)
        else (MIN_GRADIENT if sign else 0.0)
        if censoring == 1
        else (0.0 if sign else 1.0 / sigma)
    )
    h = MIN_HESSIAN if censoring == 2 else (MAX_HESSIAN if sign else MIN_HESSIAN)
    return g, h


@scalar
def aft_terms(
    lower: float, upper: float, pred: float, sigma: float, kind: float
) -> tuple[float, float, float]:
    """(loss, gradient, Hessian) of one sample: XGBoost's ``AFTLoss`` Loss, Gradient and Hessian
    (module docstring), an upper bound below 0 standing for +∞."""
    if lower == upper:
        z = (math.log(lower) - pred) / sigma
        p, dp, ddp = pdf_terms(z, kind)
        value = -math.log(max(p / (sigma * lower), EPS))
        censoring = 0
        g_num, g_den = dp, sigma * p
        h_num, h_den = -(p * ddp - dp * dp), sigma * sigma * p * p
        sign = z > 0
    else:
        z_u = 0.0
        z_l = 0.0
        censoring = 3
        if upper < 0.0:
            p_u, dp_u, c_u = 0.0, 0.0, 1.0
            censoring = 1
        else:
            z_u = (math.log(upper) - pred) / sigma
            p_u, dp_u, _ = pdf_terms(z_u, kind)
            c_u = cdf(z_u, kind)
        if lower <= 0.0:
            p_l, dp_l, c_l = 0.0, 0.0, 0.0
            censoring = 2
        else:
            z_l = (math.log(lower) - pred) / sigma
            p_l, dp_l, _ = pdf_terms(z_l, kind)
            c_l = cdf(z_l, kind)
        value = -math.log(max(c_u - c_l, EPS))
        sign = z_u > 0 or z_l > 0
        c_diff = c_u - c_l
        p_diff = p_u - p_l
        g_num, g_den = p_diff, sigma * c_diff
        h_num, h_den = -(c_diff * (dp_u - dp_l) - p_diff * p_diff), (sigma * c_diff) ** 2
    g = g_num / g_den
    h = h_num / h_den
    limit_g, limit_h = limits(censoring, sign, sigma, kind)
    if g_den < EPS and (math.isnan(g) or math.isinf(g)):
        g = limit_g
    if h_den < EPS and (math.isnan(h) or math.isinf(h)):
        h = limit_h
    return (
        value,
        min(max(g, MIN_GRADIENT), MAX_GRADIENT),
        min(max(h, MIN_HESSIAN), MAX_HESSIAN),
    )


@scalar
def aft_rows(k: int, rows: int, io: RowArrays, params: tuple[float, float]) -> None:
    r"""Block ``k`` of ``aft_batch``: XGBoost's AFT loss, gradient and Hessian of each row."""
    pred, targ, w, scale, loss, grad, hess = io
    n = pred.shape[0]
    sigma, kind = params
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    last = targ.shape[1] - 1
    for i in block_range(k, rows, n):
        v, g, h = aft_terms(float(targ[i, 0]), float(targ[i, last]), float(pred[i, 0]), sigma, kind)
        f = row_factor(w, i, scale)
        loss[i] = v
        if want_g:
            grad[i, 0] = g * f
        if want_h:
            hess[i, 0] = h * f


aft_batch = driver(aft_rows, "sigma", "distribution")


KERNEL = Kernel(AftParams, aft_batch)
