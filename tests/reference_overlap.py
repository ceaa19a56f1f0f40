"""Slow NumPy references of the overlap losses, and how each is exercised (see tests/reference.py)."""

from __future__ import annotations

import numpy as np

from tests.reference import Array, Case, _log_softmax, one_hot  # noqa: F401


def _xlogy_ratio(x: Array, y: Array) -> Array:
    """x·log(x/y) with 0·log(0/y) = 0 (scipy.special.rel_entr for x, y >= 0 and y > 0 where x > 0)."""
    safe_x = np.where(x > 0, x, 1.0)
    safe_y = np.where(x > 0, y, 1.0)
    return np.asarray(np.where(x > 0, x * np.log(safe_x / safe_y), 0.0))


def kl_divergence(p: Array, t: Array, from_logits: bool = False, epsilon: float = 1e-7) -> Array:
    if from_logits:
        # torch.nn.functional.kl_div(log_softmax(z), t): xlogy(t, t) - t * log_softmax(z)
        log_q = _log_softmax(p)
        return np.asarray((_xlogy_ratio(t, np.ones_like(t)) - t * log_q).sum(axis=1))
    # keras.losses.kl_divergence: both clipped to [ε, 1], then Σ y log(y / q)
    y = np.clip(t, epsilon, 1.0)
    q = np.clip(p, epsilon, 1.0)
    return np.asarray((y * np.log(y / q)).sum(axis=1))


def js_divergence(p: Array, t: Array, from_logits: bool = False) -> Array:
    # scipy.spatial.distance.jensenshannon(t, p, axis=1) ** 2: both rows renormalised first
    q = np.exp(_log_softmax(p)) if from_logits else p / p.sum(axis=1, keepdims=True)
    pt = t / t.sum(axis=1, keepdims=True)
    m = (pt + q) / 2.0
    return np.asarray(0.5 * (_xlogy_ratio(pt, m).sum(axis=1) + _xlogy_ratio(q, m).sum(axis=1)))


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
    "kl_divergence": Case(
        kl_divergence,
        pred="simplex",
        targ="index",
        min_rank=2,
        soft=True,
        params=({}, {"epsilon": 0.1}, {"from_logits": True}, {"from_logits": True, "epsilon": 0.1}),
    ),
    "js_divergence": Case(
        js_divergence,
        pred="simplex",
        targ="index",
        min_rank=2,
        soft=True,
        params=({}, {"from_logits": True}),
    ),
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
