"""References of the overlap losses (``spec.family == "overlap"``) and their cases."""

from __future__ import annotations

import numpy as np

from tests.support.references import Array, Case


def _sigmoid(z: Array) -> Array:
    return np.asarray(np.exp(-np.logaddexp(0.0, -z)))


def _one_minus(ratio_num: Array, ratio_den: Array) -> Array:
    """1 − num/den per row, and 0 for a row whose denominator is 0 (lossd's empty-mask rule)."""
    safe = np.where(ratio_den > 0, ratio_den, 1.0)
    return np.asarray(np.where(ratio_den > 0, 1.0 - ratio_num / safe, 0.0))


def dice(p: Array, t: Array, smooth: float = 1.0, from_logits: bool = False) -> Array:
    if from_logits:
        p = _sigmoid(p)
    inter = (p * t).sum(axis=1)
    return _one_minus(2.0 * inter + smooth, p.sum(axis=1) + t.sum(axis=1) + smooth)


def tversky(
    p: Array,
    t: Array,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth: float = 1.0,
    from_logits: bool = False,
) -> Array:
    if from_logits:
        p = _sigmoid(p)
    inter = (p * t).sum(axis=1)
    fp = (p * (1 - t)).sum(axis=1)
    fn = ((1 - p) * t).sum(axis=1)
    return _one_minus(inter + smooth, inter + alpha * fp + beta * fn + smooth)


CASES: dict[str, Case] = {
    "dice": Case(
        dice,
        pred="unit",
        targ="binary",
        soft=True,
        params=(
            {},
            {"smooth": 0.0},
            {"from_logits": True},
            {"from_logits": True, "smooth": 0.0},
        ),
    ),
    "tversky": Case(
        tversky,
        pred="unit",
        targ="unit",
        soft=True,
        params=(
            {},
            {"alpha": 0.7, "beta": 0.3},
            {"alpha": 0.0, "beta": 2.0, "smooth": 0.0},
            {"from_logits": True},
            {"from_logits": True, "alpha": 0.3, "beta": 0.7, "smooth": 0.0},
        ),
    ),
}
