"""Multi-class margin (hinge) loss, as torch.nn.functional.multi_margin_loss.

Edges (issue 11 audit): Linear (p = 1) or a square (p = 2) of the margin, which overflows past
1e154 only where the exact loss is past the range: a 422. Measured: float64 2.1e-16.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..jit import SERIAL_ELEMENTS, Array, batch, block_range, block_rows, prange, scalar
from ._multiclass import ClassWeights, MulticlassParams
from ._spec import LossSpec
from ._stable import row_factor


class MultiMarginParams(MulticlassParams):
    p: Literal[1, 2] = Field(1, description="exponent of each hinge term: 1 or 2")
    margin: float = Field(1.0, description="m in max(0, m − ŷ_y + ŷ_c)")
    class_weight: ClassWeights = None


@scalar
def multi_margin_rows(
    k: int, rows: int,
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    params: tuple[float, float, Array],
) -> None:  # fmt: skip
    """Block ``k`` of ``multi_margin_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
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
            if targ[i, t] == 0.0:
                continue
            wt = targ[i, t] * class_weight[t] / c
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


@batch
def multi_margin_batch(
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    p: float, margin: float, class_weight: Array,
) -> None:  # fmt: skip
    r"""$l_i = \sum_k y_k \sum_{c \ne k} cw_k \max(0, m - \hat y_k + \hat y_c)^p / C$ (index
    targets: the inner sum with $k = y$).

    Each active term $z = m - \hat y_k + \hat y_c > 0$ adds $cw_k y_k\,p z^{p-1}/C$ to
    $\partial l/\partial \hat y_c$ and subtracts it from $\partial l/\partial \hat y_k$; a term at
    its kink ($z = 0$) adds 0. Hessian: 0 for $p = 1$; for $p = 2$ each active term adds
    $2 cw_k y_k/C$ to both diagonal entries. Reference:
    ``torch.nn.functional.multi_margin_loss(p, margin, weight)``.
    """
    params = (p, margin, class_weight)
    n, d = pred.shape
    rows = block_rows(n, d)
    if n * d <= SERIAL_ELEMENTS:  # on this thread: a parallel launch costs more than the work
        for k in range(-(-n // rows)):
            multi_margin_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)
        return
    for k in prange(-(-n // rows)):
        multi_margin_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)


SPEC = LossSpec(
    name="multi_margin",
    aliases=("MultiMarginLoss", "multiclass_hinge"),
    family="multiclass",
    summary="Multi-class margin loss: mean over classes of max(0, margin − ŷ_y + ŷ_c)^p.",
    formula=r"l_i = \frac{1}{C} \sum_{c \ne y_i} cw_{y_i} \max(0,\ m - \hat y_{i y_i} + \hat y_{ic})^p",
    params=MultiMarginParams,
    driver=multi_margin_batch,
    reference=(
        "torch.nn.functional.multi_margin_loss(p, margin, weight) per sample; the mean divides "
        "by the sum of the targets' class weights, as for every class-weighted loss"
    ),
    targets=("same_shape", "class_index"),
    hessian_note="p = 1: zero almost everywhere; p = 2: the exact diagonal, >= 0",
)
