"""References of the distribution losses (``spec.family == "distribution"``) and their cases."""

from __future__ import annotations

import numpy as np

from tests.support.references import Array, Case, log_softmax


def _xlogy_ratio(x: Array, y: Array) -> Array:
    """x·log(x/y) with 0·log(0/y) = 0 (scipy.special.rel_entr for x, y >= 0 and y > 0 where x > 0)."""
    safe_x = np.where(x > 0, x, 1.0)
    safe_y = np.where(x > 0, y, 1.0)
    return np.asarray(np.where(x > 0, x * np.log(safe_x / safe_y), 0.0))


def kl_divergence(
    p: Array,
    t: Array,
    from_logits: bool = False,
    log_input: bool = False,
    log_target: bool = False,
    epsilon: float = 1e-7,
    normalize: bool = False,
) -> Array:
    if log_target:  # torch's log_target: the targets are log P
        t = np.exp(t)
    if log_input:
        # torch.nn.functional.kl_div(x, P, reduction="sum") per row: x is log Q as given
        return np.asarray((_xlogy_ratio(t, np.ones_like(t)) - t * p).sum(axis=1))
    if from_logits:
        # torch.nn.functional.kl_div(log_softmax(z), t): xlogy(t, t) - t * log_softmax(z)
        log_q = log_softmax(p)
        return np.asarray((_xlogy_ratio(t, np.ones_like(t)) - t * log_q).sum(axis=1))
    # keras.losses.kl_divergence: both clipped to [ε, 1], then Σ y log(y / q)
    y = np.clip(t, epsilon, 1.0)
    q = np.clip(p, epsilon, 1.0)
    return np.asarray((y * np.log(y / q)).sum(axis=1))


def generalized_kl_divergence(p: Array, t: Array) -> Array:
    # optax.generalized_kl_divergence(log_predictions=p, targets=t): KL + Σ (e^p − t), P ≥ 0
    # of any mass, 0·log 0 = 0
    return np.asarray((_xlogy_ratio(t, np.ones_like(t)) - t * p + np.exp(p) - t).sum(axis=1))


def js_divergence(p: Array, t: Array, from_logits: bool = False, normalize: bool = False) -> Array:
    # scipy.spatial.distance.jensenshannon(t, p, axis=1) ** 2: both rows renormalised first
    q = np.exp(log_softmax(p)) if from_logits else p / p.sum(axis=1, keepdims=True)
    pt = t / t.sum(axis=1, keepdims=True)
    m = (pt + q) / 2.0
    return np.asarray(0.5 * (_xlogy_ratio(pt, m).sum(axis=1) + _xlogy_ratio(q, m).sum(axis=1)))


def cauchy_schwarz_divergence(p: Array, t: Array, from_logits: bool = False) -> Array:
    # Jenssen et al. 2006: −log Σ PQ + ½ log Σ P² + ½ log Σ Q², Q = softmax(z) from logits
    q = np.exp(log_softmax(p)) if from_logits else p
    return np.asarray(
        -np.log((t * q).sum(axis=1))
        + 0.5 * np.log((t * t).sum(axis=1))
        + 0.5 * np.log((q * q).sum(axis=1))
    )


CASES: dict[str, Case] = {
    "kl_divergence": Case(
        kl_divergence,
        pred="simplex",
        targ="index",
        soft=True,
        params=(
            {},
            {"epsilon": 0.1},
            {"from_logits": True},
            {"from_logits": True, "epsilon": 0.1},
            {"log_input": True},
        ),
    ),
    # (N, C) rows only: their kernels read P as rows (no class-index targets)
    "generalized_kl_divergence": Case(generalized_kl_divergence, pred=(-3.0, 1.0), targ="soft"),
    "cauchy_schwarz_divergence": Case(
        cauchy_schwarz_divergence,
        pred="simplex",
        targ="soft",
        params=({}, {"from_logits": True}),
    ),
    "js_divergence": Case(
        js_divergence,
        pred="simplex",
        targ="index",
        soft=True,
        params=({}, {"from_logits": True}),
    ),
}
