"""References of the survival losses (``spec.family == "survival"``) and their cases: XGBoost's
``survival:cox`` and ``survival:aft``, one margin a sample."""

from __future__ import annotations

import numpy as np
import scipy.special

from tests.support.references import Array, Case


def cox(p: Array, t: Array) -> Array:
    # XGBoost's cox-nloglik per event: log Σ_{|y_j| ≥ |y_i|} e^{η_j} − η_i (Breslow: a tied
    # time's risk set holds all of its samples); 0 for a censored sample (y ≤ 0)
    eta, y = p[:, 0], t[:, 0]
    at_risk = np.abs(y)[None, :] >= np.abs(y)[:, None]
    log_risk = np.array([np.logaddexp.reduce(eta[row]) for row in at_risk])
    return np.asarray(np.where(y > 0, log_risk - eta, 0.0))


def events(p: Array, t: Array, params: dict[str, object]) -> Array:
    """κ of cox: 1 for an event, 0 for a censored sample."""
    return np.asarray((t[:, 0] > 0).astype(np.float64))


def _pdf_cdf(z: Array, distribution: str) -> tuple[Array, Array]:
    # src/common/probability_distribution.h
    if distribution == "normal":
        return np.exp(-z * z / 2) / np.sqrt(2 * np.pi), 0.5 * (
            1 + scipy.special.erf(z / np.sqrt(2))
        )
    w = np.exp(z)
    if distribution == "logistic":
        return w / (1 + w) ** 2, w / (1 + w)
    return w * np.exp(-w), 1 - np.exp(-w)


def aft(p: Array, t: Array, distribution: str = "normal", sigma: float = 1.0) -> Array:
    # XGBoost's AFTLoss::Loss (src/common/survival_util.h), a negative upper bound for +inf
    pred = p[:, 0]
    lower, upper = t[:, 0], t[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.log(lower) - pred) / sigma
        pdf, cdf_l = _pdf_cdf(z, distribution)
        z_u = (np.log(np.where(upper < 0, 1.0, upper)) - pred) / sigma
        _, cdf_u = _pdf_cdf(z_u, distribution)
        observed = -np.log(np.maximum(pdf / (sigma * lower), 1e-12))
    cdf_u = np.where(upper < 0, 1.0, cdf_u)
    cdf_l = np.where(lower <= 0, 0.0, cdf_l)
    censored = -np.log(np.maximum(cdf_u - cdf_l, 1e-12))
    return np.asarray(np.where(lower == upper, observed, censored))


CASES: dict[str, Case] = {
    "cox": Case(cox, targ="times", kappa=events),
    "aft": Case(
        aft,
        pred=(-1.0, 1.0),
        targ="intervals",
        params=(
            {},
            {"distribution": "logistic", "sigma": 0.7},
            {"distribution": "extreme", "sigma": 1.3},
        ),
    ),
}
