"""Pairwise logistic loss, as Rax's ``pairwise_logistic_loss`` (RankNet, Burges et al. 2005): for
every pair of items of a list whose labels order them, y_j > y_k, the logistic loss
log(1 + e^{−(s_j − s_k)}) of their score difference, summed over the list's pairs.

Each pair is formed as max(−d, 0) + log1p(e^{−|d|}) (Rax's stable form): any finite score
difference gives a finite, exact loss. Items with equal labels form no pair; a list whose labels
are all equal has loss 0 and κ 0.
"""

from __future__ import annotations

from typing import ClassVar

from ..jit import RowArrays, driver, scalar
from ._ranking import RankingParams, pairwise_rows
from ._spec import Kernel


class PairwiseLogisticParams(RankingParams):
    """`pairwise_logistic` takes no parameters: scores and relevance labels, `(N, L)` each."""

    counts: ClassVar[str] = "pairs"


@scalar
def pairwise_logistic_rows(k: int, rows: int, io: RowArrays, params: tuple[()]) -> None:
    """Block ``k`` of ``pairwise_logistic_batch`` (``_ranking.pairwise_rows``)."""
    pairwise_rows(k, rows, io, False)


pairwise_logistic_batch = driver(pairwise_logistic_rows)


KERNEL = Kernel(PairwiseLogisticParams, pairwise_logistic_batch)
