"""Multiclass sparsemax loss, as optax's ``multiclass_sparsemax_loss`` (Martins and Astudillo,
2016): the Fenchel-Young loss of sparsemax, on raw scores and one target class a row.

sparsemax(z) = max(z − τ, 0) with τ such that it sums to 1; l = Σ_{j∈S} p_j (z_j − z_y) +
½(1 − Σ_j p_j²), which is −z_y + ½Σ_{j∈S}(z_j² − τ²) + ½ written without squares of the
scores (no overflow, no cancellation between them). τ is found by Michelot's iteration, Newton's
method on Σ_j max(z_j − τ, 0) − 1 from τ = max z − 1 (a lower bound): the support shrinks at
each step until it stops changing, O(C) a step; in the scores less the row's maximum the
support's entries lie in (−1, 0], so τ is a well-conditioned mean.

Edges: the scores enter through differences only: ±1e300 rows are answered exactly (the loss
is then a difference of scores times a probability); a loss past the range is a 422.
"""

from __future__ import annotations

from ..jit import Array, RowArrays, block_range, driver, scalar
from ._checks import require_one_hot
from ._multiclass import MulticlassParams
from ._spec import Kernel
from ._stable import row_factor, row_max, target_at


class SparsemaxParams(MulticlassParams):
    """`sparsemax` takes no parameters; targets are class indices or one-hot rows."""

    def check_targets(self, rows: Array, name: str) -> None:
        """One target class a row: one-hot rows (optax takes integer labels)."""
        require_one_hot(rows, name)


@scalar
def sparsemax_threshold(pred: Array, i: int, top: float) -> tuple[float, int]:
    """(τ − top, |S|) of row i: sparsemax's threshold in the scores less the row's maximum
    ``top``, by Michelot's iteration from −1, and the size of its support {z_j > τ}."""
    tau = -1.0
    size = -1
    while True:
        total = 0.0
        count = 0
        for j in range(pred.shape[1]):
            u = pred[i, j] - top
            if u > tau:
                total += u
                count += 1
        if count == size:  # the support stopped shrinking: tau is exact for it
            return tau, size
        size = count
        tau = max(tau, (total - 1.0) / count)


@scalar
def sparsemax_rows(k: int, rows: int, io: RowArrays, params: tuple[()]) -> None:
    r"""Block ``k`` of ``sparsemax_batch``: rows ``k·rows`` to ``(k + 1)·rows``.

    $l_i = \sum_{j \in S} p_j (z_j - z_y) + \tfrac12(1 - \sum_j p_j^2)$ with $p$ = sparsemax(z),
    $S$ its support and $y$ the target class; $\partial l_i/\partial z_j = p_j - 1[j = y]$ and
    $\partial^2 l_i/\partial z_j^2 = 1 - 1/|S|$ on the support, 0 off it.
    """
    pred, targ, w, scale, loss, grad, hess = io
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        y = 0
        for j in range(c):
            if target_at(targ, i, j) != 0.0:
                y = j
        top = row_max(pred, i)
        tau, size = sparsemax_threshold(pred, i, top)
        curvature = 1.0 - 1.0 / size
        cross = 0.0
        squares = 0.0
        f = row_factor(w, i, scale)
        for j in range(c):
            p = max((pred[i, j] - top) - tau, 0.0)
            if p > 0.0:
                cross += p * (pred[i, j] - pred[i, y])
                squares += p * p
            if want_g:
                grad[i, j] = (p - (1.0 if j == y else 0.0)) * f
            if want_h:
                hess[i, j] = (curvature if p > 0.0 else 0.0) * f
        loss[i] = cross + 0.5 * (1.0 - squares)


sparsemax_batch = driver(sparsemax_rows)


KERNEL = Kernel(SparsemaxParams, sparsemax_batch)
