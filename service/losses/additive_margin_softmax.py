"""Additive margin softmax (AM-softmax, CosFace): softmax cross-entropy of s·(cos θ − m·onehot(y))
on cosine logits (Wang et al. 2018; insightface's CosFace logits).

The predictions are the cosines between embeddings and class centres; they are not required to
lie in [−1, 1] (the formula needs no arccos). The margin is applied to differences from the
row's largest cosine, (cos θ_y − max) − m, so that it is not lost next to large scores (1e300 −
0.35 rounds to 1e300; the difference from the maximum keeps it).
"""

from __future__ import annotations

from pydantic import Field

from ..jit import Array, RowArrays, block_range, driver, scalar
from ._checks import require_one_hot
from ._margin_softmax import margin_softmax_row, target_class
from ._multiclass import MulticlassParams
from ._spec import Kernel
from ._stable import row_factor, row_max


class AdditiveMarginSoftmaxParams(MulticlassParams):
    scale: float = Field(30.0, gt=0, description="s, the scale of the cosine logits")
    margin: float = Field(0.35, description="m, subtracted from the target class's cosine")

    def check_targets(self, rows: Array, name: str) -> None:
        """One target class a row, where the margin goes: one-hot rows."""
        require_one_hot(rows, name)


@scalar
def additive_margin_softmax_rows(
    k: int, rows: int, io: RowArrays, params: tuple[float, float]
) -> None:
    r"""Block ``k`` of ``additive_margin_softmax_batch``: rows ``k·rows`` to ``(k + 1)·rows``.

    $l_i = -\log \mathrm{softmax}(s(\cos\theta_i - m\,e_{y_i}))_{y_i}$;
    $\partial l_i/\partial\cos\theta_j = s(p_j - 1[j = y_i])$,
    $\partial^2 l_i/\partial\cos\theta_j^2 = s^2 p_j(1 - p_j)$.
    """
    pred, targ, w, scale, loss, grad, hess = io
    s, margin = params
    for i in block_range(k, rows, pred.shape[0]):
        y = target_class(targ, i, pred.shape[1])
        top = row_max(pred, i)
        target = (pred[i, y] - top) - margin
        f = row_factor(w, i, scale)
        margin_softmax_row(pred, i, y, top, target, 1.0, 0.0, s, f, loss, grad, hess)


additive_margin_softmax_batch = driver(additive_margin_softmax_rows, "scale", "margin")


KERNEL = Kernel(AdditiveMarginSoftmaxParams, additive_margin_softmax_batch)
