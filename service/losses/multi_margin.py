"""Multi-class margin (hinge) loss, as torch.nn.functional.multi_margin_loss.

Edges (issue 11 audit): Linear (p = 1) or a square (p = 2) of the margin, which overflows past
1e154 only where the exact loss is past the range: a 422. Measured: float64 2.1e-16.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..jit import Array, RowArrays, block_range, driver, scalar
from ._multiclass import ClassWeights, MulticlassParams
from ._spec import Kernel
from ._stable import row_factor, target_at


class MultiMarginParams(MulticlassParams):
    p: Literal[1, 2] = Field(1, description="exponent of each hinge term: 1 or 2")
    margin: float = Field(1.0, description="m in max(0, m − ŷ_y + ŷ_c)")
    class_weight: ClassWeights = None


@scalar
def multi_margin_rows(k: int, rows: int, io: RowArrays, params: tuple[float, float, Array]) -> None:
    """Block ``k`` of ``multi_margin_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    pred, targ, w, scale, loss, grad, hess = io
    p, margin, class_weight = params
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    squared = p == 2.0
    for i in block_range(k, rows, n):
        if want_g:
            for j in range(c):
                grad[i, j] = 0.0
        if want_h:
            for j in range(c):
                hess[i, j] = 0.0
        acc = 0.0
        for t in range(c):  # t: a target class (k in the formula)
            if target_at(targ, i, t) == 0.0:
                continue
            wt = target_at(targ, i, t) * class_weight[t] / c
            base = margin - pred[i, t]
            for j in range(c):
                z = base + pred[i, j]
                if j == t or not z > 0.0:
                    continue
                if squared:
                    acc += wt * z * z
                    slope = 2.0 * wt * z
                    if want_h:
                        hess[i, j] += 2.0 * wt
                        hess[i, t] += 2.0 * wt
                else:
                    acc += wt * z
                    slope = wt
                if want_g:
                    grad[i, j] += slope
                    grad[i, t] -= slope
        loss[i] = acc
        if want_g or want_h:
            f = row_factor(w, i, scale)
            for j in range(c):
                if want_g:
                    grad[i, j] *= f
                if want_h:
                    hess[i, j] *= f


multi_margin_batch = driver(multi_margin_rows, "p", "margin", "class_weight")


KERNEL = Kernel(MultiMarginParams, multi_margin_batch)
