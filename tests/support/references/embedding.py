"""References of the embedding losses (``spec.family == "embedding"``) and their cases: (N, D)
embeddings and (N,) group labels, batch-coupled (each l_i depends on every row)."""

from __future__ import annotations

import numpy as np

from tests.support.references import Array, Case


def _pairs(t: Array) -> tuple[Array, Array]:
    same = t[:, None] == t[None, :]
    return same & ~np.eye(len(t), dtype=bool), ~same


def ntxent(p: Array, t: Array, temperature: float = 0.07) -> Array:
    # optax.ntxent's terms by anchor: Σ_{p∈P(i)} log(e^{s_ip} + Σ_{n∈N(i)} e^{s_in}) − s_ip
    norms = np.sqrt(np.maximum((p * p).sum(axis=1), np.finfo(np.float64).eps))
    unit = p / norms[:, None]
    s = unit @ unit.T / temperature
    pos, neg = _pairs(t)
    out = np.zeros(len(t))
    for i in range(len(t)):
        negatives = s[i][neg[i]]
        for j in np.flatnonzero(pos[i]):
            out[i] += np.logaddexp.reduce(np.append(negatives, s[i, j])) - s[i, j]
    return out


def circle(
    p: Array, t: Array, gamma: float = 80.0, margin: float = 0.4, remove_diagonal: bool = True
) -> Array:
    # keras.losses.circle per sample
    dist = np.maximum(1 - p @ p.T, 0.0)
    pos = t[:, None] == t[None, :]
    neg = ~pos
    if remove_diagonal:
        pos = pos & ~np.eye(len(t), dtype=bool)
    a = -gamma * np.maximum(margin + dist, 0) * (margin - dist)
    b = gamma * np.maximum(1 + margin - dist, 0) * (1 - margin - dist)
    out = np.zeros(len(t))
    for i in range(len(t)):
        if pos[i].any() and neg[i].any():
            z = np.logaddexp.reduce(a[i][pos[i]]) + np.logaddexp.reduce(b[i][neg[i]])
            out[i] = np.logaddexp(0.0, z)
    return out


def positives(p: Array, t: Array, params: dict[str, object]) -> Array:
    """κ of ntxent: the positives of each row."""
    return np.asarray(_pairs(t)[0].sum(axis=1), dtype=np.float64)


def anchored(p: Array, t: Array, params: dict[str, object]) -> Array:
    """κ of circle: 1 for a row with a positive and a negative."""
    pos, neg = _pairs(t)
    if not params.get("remove_diagonal", True):
        pos = pos | np.eye(len(t), dtype=bool)
    return np.asarray(pos.any(axis=1) & neg.any(axis=1), dtype=np.float64)


CASES: dict[str, Case] = {
    "ntxent": Case(
        ntxent, pred=(-1.0, 1.0), targ="groups", params=({}, {"temperature": 0.5}), kappa=positives
    ),
    # embeddings of norm below 1 (Keras takes them unit-normalised; the clamp D = max(1 − s, 0)
    # then never holds between two rows), a scale that keeps the softplus out of its flat tail
    "circle": Case(
        circle,
        pred=(-0.5, 0.5),
        targ="groups",
        params=({}, {"gamma": 4.0}, {"gamma": 2.0, "margin": 0.25, "remove_diagonal": False}),
        kappa=anchored,
    ),
}
