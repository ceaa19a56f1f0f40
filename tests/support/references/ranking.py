"""References of the ranking losses (``spec.family == "ranking"``) and their cases: one list a
row, per-sample losses the library's loss of that list (a sum over its items or pairs)."""

from __future__ import annotations

import numpy as np

from tests.support.references import Array, Case, log_softmax


def ranking_softmax(p: Array, t: Array) -> Array:
    # optax.losses.ranking_softmax_loss per list: −Σ_j y_j log softmax(s)_j
    return np.asarray(-(t * log_softmax(p)).sum(axis=1))


def _pairs(p: Array, t: Array, pair: object) -> Array:
    # Rax's pairwise_loss: the pair (j, k) counts where y_j > y_k, with d = s_j − s_k
    d = p[:, :, None] - p[:, None, :]
    valid = t[:, :, None] > t[:, None, :]
    return np.asarray(np.where(valid, pair(d), 0.0).sum(axis=(1, 2)))  # type: ignore[operator]


def pairwise_logistic(p: Array, t: Array) -> Array:
    # rax.pairwise_logistic_loss(reduce_fn=jnp.sum) per list: log(1 + e^(−d))
    return _pairs(p, t, lambda d: np.logaddexp(0.0, -d))


def pairwise_hinge(p: Array, t: Array) -> Array:
    # rax.pairwise_hinge_loss(reduce_fn=jnp.sum) per list: max(0, 1 − d)
    return _pairs(p, t, lambda d: np.maximum(1.0 - d, 0.0))


def pointwise_sigmoid(p: Array, t: Array) -> Array:
    # rax.pointwise_sigmoid_loss(reduce_fn=jnp.sum) per list: BCE of logits, labels in [0, 1]
    y = np.clip(t, 0.0, 1.0)
    return np.asarray((np.logaddexp(0.0, p) - p * y).sum(axis=1))


def ordered_pairs(p: Array, t: Array, params: dict[str, object]) -> Array:
    """κ of the pairwise losses: the pairs y_j > y_k of each list."""
    return np.asarray((t[:, :, None] > t[:, None, :]).sum(axis=(1, 2)), dtype=np.float64)


def items(p: Array, t: Array, params: dict[str, object]) -> Array:
    """κ of the pointwise loss: each list's L items."""
    return np.full(p.shape[0], float(p.shape[1]))


CASES: dict[str, Case] = {
    "ranking_softmax": Case(ranking_softmax, targ="grades"),
    "pairwise_logistic": Case(pairwise_logistic, targ="grades", kappa=ordered_pairs),
    # scores 0.1 apart at least: no pair at its kink s_j − s_k = 1
    "pairwise_hinge": Case(pairwise_hinge, pred="spread", targ="grades", kappa=ordered_pairs),
    "pointwise_sigmoid": Case(pointwise_sigmoid, targ=(-0.5, 1.5), kappa=items),
}
