"""What the listwise, pairwise and pointwise ranking losses share (optax's
``ranking_softmax_loss``; Rax's ``pairwise_logistic_loss``, ``pairwise_hinge_loss`` and
``pointwise_sigmoid_loss``, from which optax took its ranking module).

A sample is one list: a row of L item scores (the predictions, ``(N, L)``) and the items'
relevance labels (the targets, ``(N, L)``). ``per_sample`` is the library's loss of that one
list as its definition states it (a sum over the list's items or pairs), so ``sum`` is the
library's ``reduce_fn=jnp.sum`` over the batch; ``mean`` divides by Σ_i w_i·κ_i with κ_i what
the library's default ``reduce_fn=jnp.mean`` counts in list i: 1 (a list, for the softmax
loss), its L items (the pointwise loss) or its ordered pairs y_j > y_k (the pairwise losses).
Lists are independent: their blocks of rows run in parallel like any other loss's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np

from ..jit import Array, RowArrays, block_range, scalar
from ._binary import sigmoid_pair
from ._spec import ComputeDtype, LossParams, Memo, Prepared, readonly
from ._stable import row_factor


@scalar
def ordered_pairs(targ: Array, out: Array) -> None:
    """``out[i]`` = the number of pairs (j, k) of row i with y_ij > y_ik: (L² − Σ_v c_v²)/2 over
    the counts c_v of the row's distinct labels, from a sorted copy of the row."""
    for i in range(targ.shape[0]):
        row = np.sort(targ[i])
        ties = 0.0
        run = 1.0
        for j in range(1, row.shape[0]):
            if row[j] == row[j - 1]:
                run += 1.0
            else:
                ties += run * run
                run = 1.0
        ties += run * run if row.shape[0] else 0.0
        out[i] = 0.5 * (row.shape[0] * row.shape[0] - ties)


class RankingParams(LossParams):
    """The ranking losses take no parameters; predictions and targets are ``(N, L)``."""

    min_rank: ClassVar[int] = 2
    # what the library's mean counts in one list (module docstring)
    counts: ClassVar[str] = "lists"

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """The targets as rows, and κ_i: None (1) for lists, L for items, the ordered pairs."""
        prepared = super().prepare(name, predictions, targets, dtype, memo)
        rows = prepared.targets
        if self.counts == "items":
            kappa = np.full(rows.shape[0], rows.shape[1], dtype=dtype)
        elif self.counts == "pairs":
            kappa = np.empty(rows.shape[0], dtype=dtype)
            ordered_pairs(rows, kappa)
        else:
            return prepared
        return dataclasses.replace(prepared, kappa=readonly(kappa))

    @classmethod
    def working_bytes(
        cls, rows: int, columns: int, itemsize: int, *, sent: Any = None, indices: bool = False
    ) -> int:
        """κ (N,) and a sorted copy of one list."""
        return (rows + columns) * 8

    @classmethod
    def operations(cls, rows: int, columns: int, *, sent: Any = None, targets: Any = None) -> int:
        """A pairwise loss visits L² pairs a list."""
        return rows * columns * (columns if cls.counts == "pairs" else 1)


@scalar
def pair_terms(d: float, hinge: bool) -> tuple[float, float, float]:
    """(ℓ, ∂ℓ/∂d, ∂²ℓ/∂d²) of one pair whose item j outranks item k (y_j > y_k), d = s_j − s_k:
    Rax's hinge max(0, 1 − d), slope 0 at the kink as jax's relu, or its logistic
    max(−d, 0) + log(1 + e^{−|d|}) = log(1 + e^{−d}), slope −σ(−d), curvature σ(d)σ(−d)."""
    if hinge:
        margin = 1.0 - d
        return (margin, -1.0, 0.0) if margin > 0.0 else (0.0, 0.0, 0.0)
    big, small = sigmoid_pair(d)
    return max(-d, 0.0) + math.log1p(math.exp(-abs(d))), -small, big * small


@scalar
def pairwise_rows(k: int, rows: int, io: RowArrays, hinge: bool) -> None:
    r"""Block ``k`` of a pairwise loss: $l_i = \sum_{j,k:\ y_{ij} > y_{ik}} \ell(s_{ij} - s_{ik})$;
    each pair adds ℓ' to item j's derivative and −ℓ' to item k's, ℓ'' to both curvatures
    (summed in float64 whatever the compute dtype)."""
    pred, targ, w, scale, loss, grad, hess = io
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    g = np.zeros(c)
    h = np.zeros(c)
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale)
        g[:] = 0.0
        h[:] = 0.0
        acc = 0.0
        for a in range(c):
            for b in range(c):
                if targ[i, a] > targ[i, b]:
                    v, slope, curve = pair_terms(float(pred[i, a]) - float(pred[i, b]), hinge)
                    acc += v
                    g[a] += slope
                    g[b] -= slope
                    h[a] += curve
                    h[b] += curve
        loss[i] = acc
        for j in range(c):
            if want_g:
                grad[i, j] = g[j] * f
            if want_h:
                hess[i, j] = h[j] * f
