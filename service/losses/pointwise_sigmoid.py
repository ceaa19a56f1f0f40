"""Pointwise sigmoid loss, as Rax's ``pointwise_sigmoid_loss``: the binary cross-entropy of
each item's score (a logit) against its relevance label clipped to [0, 1], summed over the list.

ℓ(s, y) = max(s, 0) − s·y + log(1 + e^{−|s|}) with y clipped to [0, 1], Rax's stable form;
∂ℓ/∂s = σ(s) − y and ∂²ℓ/∂s² = σ(s)σ(−s), each σ formed without cancellation.
"""

from __future__ import annotations

import math
from typing import ClassVar

from ..jit import RowArrays, block_range, driver, scalar
from ._binary import sigmoid_pair
from ._ranking import RankingParams
from ._spec import Kernel
from ._stable import row_factor


class PointwiseSigmoidParams(RankingParams):
    """`pointwise_sigmoid` takes no parameters: scores (logits) and labels, `(N, L)` each."""

    counts: ClassVar[str] = "items"


@scalar
def pointwise_sigmoid_rows(k: int, rows: int, io: RowArrays, params: tuple[()]) -> None:
    r"""Block ``k`` of ``pointwise_sigmoid_batch``: $l_i = \sum_j \max(s_{ij}, 0) - s_{ij}
    y_{ij} + \log(1 + e^{-|s_{ij}|})$, $y$ clipped to [0, 1]."""
    pred, targ, w, scale, loss, grad, hess = io
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale)
        acc = 0.0
        for j in range(c):
            s = float(pred[i, j])
            y = min(max(float(targ[i, j]), 0.0), 1.0)
            acc += max(s, 0.0) - s * y + math.log1p(math.exp(-abs(s)))
            if want_g or want_h:
                big, small = sigmoid_pair(s)
                if want_g:
                    grad[i, j] = (big - y) * f
                if want_h:
                    hess[i, j] = big * small * f
        loss[i] = acc


pointwise_sigmoid_batch = driver(pointwise_sigmoid_rows)


KERNEL = Kernel(PointwiseSigmoidParams, pointwise_sigmoid_batch)
