"""Pairwise hinge loss, as Rax's ``pairwise_hinge_loss``: for every pair of items of a list whose
labels order them, y_j > y_k, the hinge max(0, 1 − (s_j − s_k)) of their score difference,
summed over the list's pairs.

Piecewise linear: the Hessian is zero, and at a pair's kink (s_j − s_k = 1) the slope is 0, as
jax's relu takes it. Items with equal labels form no pair; a list whose labels are all equal
has loss 0 and κ 0.
"""

from __future__ import annotations

from typing import ClassVar

from ..jit import Array, driver, scalar
from ._ranking import RankingParams, pairwise_rows
from ._spec import Kernel


class PairwiseHingeParams(RankingParams):
    """`pairwise_hinge` takes no parameters: scores and relevance labels, `(N, L)` each."""

    counts: ClassVar[str] = "pairs"


@scalar
def pairwise_hinge_rows(
    k: int, rows: int,
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    params: tuple[()],
) -> None:  # fmt: skip
    """Block ``k`` of ``pairwise_hinge_batch`` (``_ranking.pairwise_rows``)."""
    pairwise_rows(k, rows, pred, targ, w, scale, loss, grad, hess, True)


pairwise_hinge_batch = driver(pairwise_hinge_rows)


KERNEL = Kernel(PairwiseHingeParams, pairwise_hinge_batch)
