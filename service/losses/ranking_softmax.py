"""Ranking softmax loss, as optax's ``ranking_softmax_loss`` (Rax's ``softmax_loss``): the
cross-entropy of the softmax of a list's scores against its relevance labels, unnormalised.

l_i = −Σ_j y_ij log softmax(s_i)_j, with log softmax through the row's log-sum-exp, so any
finite score gives a finite loss (a huge score difference gives a huge, exact loss). The labels
are any real numbers, as optax takes them (graded relevance, 0 for an irrelevant item); with
Y_i = Σ_j y_ij and p = softmax(s_i): ∂l_i/∂s_ij = Y_i p_j − y_ij and ∂²l_i/∂s_ij² =
Y_i p_j (1 − p_j).
"""

from __future__ import annotations

import math

from ..jit import RowArrays, block_range, driver, scalar
from ._ranking import RankingParams
from ._spec import Kernel
from ._stable import log_sum_exp_row, row_factor, row_sum


class RankingSoftmaxParams(RankingParams):
    """`ranking_softmax` takes no parameters: scores and relevance labels, `(N, L)` each."""


@scalar
def ranking_softmax_rows(k: int, rows: int, io: RowArrays, params: tuple[()]) -> None:
    r"""Block ``k`` of ``ranking_softmax_batch``: $l_i = -\sum_j y_{ij} \log p_{ij}$ with
    $p_i = \mathrm{softmax}(s_i)$."""
    pred, targ, w, scale, loss, grad, hess = io
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        top, log_total = log_sum_exp_row(pred, i)
        labels = row_sum(targ, i)
        f = row_factor(w, i, scale)
        acc = 0.0
        for j in range(c):
            log_p = (pred[i, j] - top) - log_total
            acc -= targ[i, j] * log_p
            if want_g or want_h:
                p = math.exp(log_p)
                if want_g:
                    grad[i, j] = (labels * p - targ[i, j]) * f
                if want_h:
                    hess[i, j] = labels * p * (1.0 - p) * f
        loss[i] = acc


ranking_softmax_batch = driver(ranking_softmax_rows)


KERNEL = Kernel(RankingSoftmaxParams, ranking_softmax_batch)
