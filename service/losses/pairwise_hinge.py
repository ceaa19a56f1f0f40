"""Pairwise hinge loss, as Rax's ``pairwise_hinge_loss``: for every pair of items of a list whose
labels order them, y_j > y_k, the hinge max(0, 1 − (s_j − s_k)) of their score difference,
summed over the list's pairs.

Piecewise linear: the Hessian is zero, and at a pair's kink (s_j − s_k = 1) the slope is 0, as
jax's relu takes it. Items with equal labels form no pair; a list whose labels are all equal
has loss 0 and κ 0.
"""

from __future__ import annotations

from typing import ClassVar

from ..jit import RowArrays, driver, scalar
from ._ranking import RankingParams, pairwise_rows
from ._spec import Kernel


class PairwiseHingeParams(RankingParams):
    """`pairwise_hinge` takes no parameters: scores and relevance labels, `(N, L)` each."""

    counts: ClassVar[str] = "pairs"


@scalar
def pairwise_hinge_rows(k: int, rows: int, io: RowArrays, params: tuple[()]) -> None:
    """Block ``k`` of ``pairwise_hinge_batch`` (``_ranking.pairwise_rows``)."""
    pairwise_rows(k, rows, io, True)


pairwise_hinge_batch = driver(pairwise_hinge_rows)


KERNEL = Kernel(PairwiseHingeParams, pairwise_hinge_batch)
