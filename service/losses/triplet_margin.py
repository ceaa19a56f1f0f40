"""Triplet margin loss, as torch.nn.TripletMarginLoss: anchors, positives and negatives, no targets.

The predictions are the anchors a (N, D); ``inputs.positive`` and ``inputs.negative`` (N, D) the
rows the anchor should be near and far from. A request sends no ``targets`` (one that does is a
422). torch's distances: d(x, y) = ‖x − y + ε‖_p (``pairwise_distance``: ε added to every
difference), l = max(0, margin + d(a, p) − d(a, n)); with ``swap`` d(a, n) is replaced by
d(p, n) where that is smaller. Where the two are equal (an anchor equal to its positive) the
gradient is shared half and half between them, as torch's ``minimum`` does: the smallest
subgradient of the three inputs together.

Edges: for p other than 1 (and 2 on ordinary rows) each difference is divided by its row's max
|v| before the powers, so Σ|v|^p neither overflows nor underflows and rows up to the float range
are answered (torch's p = 2 norm overflows from |v| ≈ 1e154). A zero difference row has distance
0 and gradient 0 (torch's). At the hinge (z = 0 exactly) the gradient is 0, the contract's
smallest subgradient.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from pydantic import Field

from ..jit import Array, RowArrays, block_range, driver, inline, scalar
from ._spec import ComputeDtype, ExtraInput, Kernel, LossParams, Memo, Prepared, readonly
from ._stable import row_factor, sign

# p = 2: a sum of squares in this range lost nothing to overflow or underflow; outside it the
# differences are divided by their max first
SQUARES_SAFE_BELOW = 1e-290
SQUARES_SAFE_ABOVE = 1e290


class TripletMarginParams(LossParams):
    """Predictions are the anchors; ``inputs.positive`` and ``inputs.negative``; no targets."""

    min_rank: ClassVar[int] = 2
    inputs: ClassVar[tuple[ExtraInput, ...]] = (
        ExtraInput("positive", "the positive rows, (N, D) like the anchors"),
        ExtraInput("negative", "the negative rows, (N, D) like the anchors"),
    )
    check_bytes: ClassVar[int] = 0  # no domain check

    margin: float = Field(1.0, gt=0, description="m in max(0, m + d(a, p) − d(a, n)); > 0 (torch)")
    p: float = Field(2.0, gt=0, description="the norm degree of the distances")
    eps: float = Field(1e-6, ge=0, description="added to every difference, as torch's distances")
    swap: bool = Field(False, description="use d(p, n) for d(a, n) where it is smaller")

    @classmethod
    def warm_up_batch(cls) -> tuple[Array, Array]:
        return np.full((2, 2), 0.5), np.empty((0, 0))

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """No targets: the kernel's target slot is empty."""
        return Prepared(readonly(np.empty((0, 0), dtype=dtype)), self.kernel_params())


@inline
def distance(x: Array, y: Array, i: int, p: float, eps: float) -> tuple[float, float, float]:
    r"""(r, m, t) of the row difference $v = x_i - y_i + \varepsilon$: $\|v\|_p = m\,r$ with
    $r = t^{1/p}$, $t = \sum_j (|v_j|/m)^p$ and $m$ its max $|v_j|$ (1 where the sum is taken
    as it is: p = 1, and p = 2 on ordinary rows; 1 with $t = 0$ for a zero row)."""
    d = x.shape[1]
    if p == 1.0:
        t = 0.0
        for j in range(d):
            t += abs(x[i, j] - y[i, j] + eps)
        return t, 1.0, t
    if p == 2.0:
        t = 0.0
        for j in range(d):
            v = float(x[i, j] - y[i, j] + eps)
            t += v * v
        if SQUARES_SAFE_BELOW < t < SQUARES_SAFE_ABOVE:
            return math.sqrt(t), 1.0, t
    m = 0.0
    for j in range(d):
        m = max(m, abs(x[i, j] - y[i, j] + eps))
    if m == 0.0:
        return 0.0, 1.0, 0.0
    t = 0.0
    for j in range(d):
        t += (abs(x[i, j] - y[i, j] + eps) / m) ** p
    return (math.sqrt(t) if p == 2.0 else t ** (1.0 / p)), m, t


@inline
def distance_terms(v: float, p: float, r: float, m: float, t: float) -> tuple[float, float]:
    r"""$\partial\|v\|_p/\partial v_j$ and $\partial^2\|v\|_p/\partial v_j^2$ of one difference
    $v_j$ (``distance``'s r, m, t): with $a = |v_j|/m$,
    $\mathrm{sign}(v_j)\,a^{p-1} r/t$ and $(p-1)\,a^{p-2}(r/t)(1 - a^p/t)/m$; 0 and 0 for a zero
    row (torch's gradient there), and 0 for a zero $v_j$ (its Hessian is infinite for p < 2)."""
    if t == 0.0:
        return 0.0, 0.0
    if p == 1.0:
        return sign(v), 0.0
    if p == 2.0:
        u = (v / m) / r
        return u, (1.0 - u * u) / r / m
    a = abs(v) / m
    if a == 0.0:
        return 0.0, (math.inf if p < 2.0 else 0.0)
    g = sign(v) * a ** (p - 1.0) * (r / t)
    return g, (p - 1.0) * a ** (p - 2.0) * (r / t) * (1.0 - a**p / t) / m


@scalar
def triplet_margin_rows(
    k: int,
    rows: int,
    io: RowArrays,
    params: tuple[Array, Array, Array, Array, float, float, float, bool],
) -> None:
    r"""Block ``k`` of ``triplet_margin_batch``: $l = \max(0, m + d(a, p) - d(a, n))$ with
    $d(x, y) = \|x - y + \varepsilon\|_p$ (with ``swap``, $\min(d(a, n), d(p, n))$ for
    $d(a, n)$, its gradient halved between the two at a tie). The anchor's gradient is
    $\nabla d(a, p) - \nabla d(a, n)$ where the hinge is active, its Hessian diagonal likewise;
    the positive's $-\nabla d(a, p)$ (less $\nabla d(p, n)$ when swapped), the negative's
    $\nabla d(a, n)$ (or $\nabla d(p, n)$). Reference: ``torch.nn.functional.triplet_margin_loss``."""
    pred, _, w, scale, loss, grad, hess = io  # no targets
    positive, negative, grad_positive, grad_negative, margin, p, eps, swap = params
    n, d = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    want_p = grad_positive.shape[0] > 0
    want_n = grad_negative.shape[0] > 0
    for i in block_range(k, rows, n):
        rp, mp, tp = distance(pred, positive, i, p, eps)
        rn, mn, tn = distance(pred, negative, i, p, eps)
        far = mn * rn
        # the share of d(a, n) in the distance to the negative; the rest is d(p, n)'s (swap)
        share = 1.0
        rs, ms, ts = 0.0, 1.0, 0.0
        if swap:
            rs, ms, ts = distance(positive, negative, i, p, eps)
            swapped = ms * rs
            if swapped < far:
                share = 0.0
                far = swapped
            elif swapped == far:
                share = 0.5
        z = margin + mp * rp - far
        # NaN (both distances past the range: inf − inf) counts as active, so that it reaches
        # the engine's finiteness check (a 422) instead of passing for a zero loss
        active = not z <= 0.0
        loss[i] = z if active else 0.0
        f = row_factor(w, i, scale)
        for j in range(d):
            ga = 0.0
            ha = 0.0
            gp = 0.0
            gn = 0.0
            if active:
                g1, h1 = distance_terms(pred[i, j] - positive[i, j] + eps, p, rp, mp, tp)
                ga = g1
                ha = h1
                gp = 0.0 - g1  # 0.0, not −0.0, where g1 is 0
                if share > 0.0:
                    g2, h2 = distance_terms(pred[i, j] - negative[i, j] + eps, p, rn, mn, tn)
                    ga -= share * g2
                    ha -= share * h2
                    gn += share * g2
                if share < 1.0:
                    g3, _ = distance_terms(positive[i, j] - negative[i, j] + eps, p, rs, ms, ts)
                    gp -= (1.0 - share) * g3
                    gn += (1.0 - share) * g3
            if want_g:
                grad[i, j] = ga * f
            if want_h:
                hess[i, j] = ha * f
            if want_p:
                grad_positive[i, j] = gp * f
            if want_n:
                grad_negative[i, j] = gn * f


triplet_margin_batch = driver(
    triplet_margin_rows,
    "positive",
    "negative",
    "grad_positive",
    "grad_negative",
    "margin",
    "p",
    "eps",
    "swap",
)


KERNEL = Kernel(TripletMarginParams, triplet_margin_batch)
