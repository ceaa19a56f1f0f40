"""Categorical hinge (Crammer–Singer style, as Keras computes it) on raw class scores.

Edges (issue 11 audit): Linear in the scores: ±1e300 answered exactly; 1e308-scale sums overflow
only where the exact value does (422). Measured: float64 0.
"""

from __future__ import annotations

import numpy as np

from ..jit import Array, RowArrays, block_range, driver, scalar
from ._multiclass import MulticlassParams
from ._spec import Kernel
from ._stable import row_factor, target_at


class CategoricalHingeParams(MulticlassParams):
    """categorical_hinge has no parameters."""


@scalar
def tie_weights(targ: Array, pred: Array, i: int, neg: float) -> Array:
    r"""Weights $\lambda$ on the entries tied at $\max_c (1 - y_c)\hat y_c$ that give the
    subgradient $g = -y + (1 - y)\circ\lambda$ of smallest norm ($\lambda$ in the simplex over the
    tied set $T$).

    Minimising $\sum_{c \in T} (a_c\lambda_c - y_c)^2$, $a_c = 1 - y_c$: an entry with $a_c = 0$
    (a target of weight 1, whose entry is the constant 0) absorbs any slack for free; otherwise
    $\lambda_c = \max(0, (\nu - t_c)/a_c^2)$ with breakpoints $t_c = -a_c y_c$ and $\nu$ found by
    water-filling over the breakpoints in increasing order. For one-hot rows this is an equal
    split over the tied non-targets, or all on the target when it is tied.
    """
    c = pred.shape[1]
    lam = np.zeros(c)
    used = np.zeros(c, dtype=np.bool_)
    free = -1
    slack = 1.0
    for j in range(c):
        a = 1.0 - target_at(targ, i, j)
        if a * pred[i, j] != neg:
            used[j] = True  # not tied: never a candidate
        elif a == 0.0:
            used[j] = True
            if free < 0:
                free = j
    if free >= 0:
        for j in range(c):
            a = 1.0 - target_at(targ, i, j)
            if not used[j] and a > 0.0:
                lam[j] = target_at(targ, i, j) / a  # each term's own minimiser
                slack -= lam[j]
        if slack >= 0.0:
            lam[free] = slack
            return lam
        lam[:] = 0.0
    inv_sum = 0.0
    t_sum = 0.0
    nu = 0.0
    while True:
        best = -1
        best_t = 0.0
        for j in range(c):
            if not used[j]:
                y = target_at(targ, i, j)
                t = -(1.0 - y) * y
                if best < 0 or t < best_t:
                    best = j
                    best_t = t
        if best < 0 or (inv_sum > 0.0 and best_t >= nu):
            break
        used[best] = True
        a2 = (1.0 - target_at(targ, i, best)) ** 2
        inv_sum += 1.0 / a2
        t_sum += best_t / a2
        nu = (1.0 + t_sum) / inv_sum
        lam[best] = -1.0  # marks the active set
    for j in range(c):
        if lam[j] == -1.0:
            y = target_at(targ, i, j)
            a = 1.0 - y
            lam[j] = max(0.0, (nu + a * y) / (a * a))
    return lam


@scalar
def categorical_hinge_rows(k: int, rows: int, io: RowArrays, params: tuple[()]) -> None:
    """Block ``k`` of ``categorical_hinge_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    pred, targ, w, scale, loss, grad, hess = io
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        pos = 0.0
        neg = (1.0 - target_at(targ, i, 0)) * pred[i, 0]
        top = 0
        ties = 1
        for j in range(c):
            pos += target_at(targ, i, j) * pred[i, j]
            if j > 0:
                entry = (1.0 - target_at(targ, i, j)) * pred[i, j]
                if entry > neg:
                    neg = entry
                    top = j
                    ties = 1
                elif entry == neg:
                    ties += 1
        margin = neg - pos + 1.0
        loss[i] = max(margin, 0.0)
        if want_g:
            f = row_factor(w, i, scale)
            if margin > 0.0 and ties == 1:
                for j in range(c):
                    y = target_at(targ, i, j)
                    grad[i, j] = ((1.0 - y if j == top else 0.0) - y) * f
            elif margin > 0.0:
                lam = tie_weights(targ, pred, i, neg)
                for j in range(c):
                    y = target_at(targ, i, j)
                    grad[i, j] = ((1.0 - y) * lam[j] - y) * f
            else:
                for j in range(c):
                    grad[i, j] = 0.0
        if want_h:
            for j in range(c):
                hess[i, j] = 0.0


categorical_hinge_batch = driver(categorical_hinge_rows)


KERNEL = Kernel(CategoricalHingeParams, categorical_hinge_batch)
