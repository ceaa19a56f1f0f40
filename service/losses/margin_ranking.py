"""Margin ranking loss of a pair of scores, as torch.nn.MarginRankingLoss.

The predictions are the first scores x₁, ``inputs.input2`` the second x₂ (of the same shape), and
the targets say which should rank higher: 1 for x₁, -1 for x₂ (any other value is a 422; torch
reads it silently). Elementwise like torch: on (N, D) each sample's loss is the mean of its D pairs.

Edges: linear in the scores: ±1e300 are answered exactly where x₁ − x₂ is finite; a difference
past the range is a 422. At the hinge (−y·(x₁ − x₂) + margin = 0 exactly: ties with margin 0) the
gradient is 0, the contract's smallest subgradient; torch's clamp passes the gradient there.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from ..jit import Array, RowArrays, block_range, driver, scalar
from ._binary import plus_minus_labels
from ._spec import ComputeDtype, ExtraInput, Kernel, LossParams, Memo, Prepared
from ._stable import row_factor


class MarginRankingParams(LossParams):
    """Predictions x₁, ``inputs.input2`` x₂, targets ±1 of the same shape."""

    inputs: ClassVar[tuple[ExtraInput, ...]] = (
        ExtraInput("input2", "the second scores x₂, of the predictions' shape"),
    )

    margin: float = Field(0.0, description="m in max(0, −y·(x₁ − x₂) + m)")

    @classmethod
    def warm_up_batch(cls) -> tuple[Array, Array]:
        return np.full((2, 2), 0.5), np.array([[1.0, -1.0], [-1.0, 1.0]])

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        prepared = super().prepare(name, predictions, targets, dtype, memo)
        plus_minus_labels(targets, name)
        return prepared


@scalar
def margin_ranking_rows(
    k: int, rows: int, io: RowArrays, params: tuple[Array, Array, float]
) -> None:
    r"""Block ``k`` of ``margin_ranking_batch``: $l = \max(0, -y(x_1 - x_2) + m)$,
    $\partial l/\partial x_1 = -y$ and $\partial l/\partial x_2 = y$ where the hinge is active
    (0 at it and below), $l'' = 0$. Reference: ``torch.nn.functional.margin_ranking_loss``."""
    pred, targ, w, scale, loss, grad, hess = io
    input2, grad_input2, margin = params
    n, d = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    want_2 = grad_input2.shape[0] > 0
    inv_d = 1.0 / d
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale) * inv_d
        acc = 0.0
        for j in range(d):
            y = targ[i, j]
            z = -y * (pred[i, j] - input2[i, j]) + margin  # torch's order of operations
            active = z > 0.0
            acc += z if active else 0.0
            if want_g:
                grad[i, j] = (-y if active else 0.0) * f
            if want_h:
                hess[i, j] = 0.0
            if want_2:
                grad_input2[i, j] = (y if active else 0.0) * f
        loss[i] = acc * inv_d


margin_ranking_batch = driver(margin_ranking_rows, "input2", "grad_input2", "margin")


KERNEL = Kernel(MarginRankingParams, margin_ranking_batch)
