"""Generalized Kullback-Leibler divergence of unnormalised measures, as optax's
``generalized_kl_divergence`` (``convex_kl_divergence`` before optax renamed it).

The predictions are log Q, used as given (optax's ``log_predictions``); the targets P are
non-negative and need not sum to 1. Per class the term P(log P − x) + e^x − P is the Bregman
divergence of x log x − x, non-negative, so the row sum adds non-negative terms and never cancels.

Edges: e^x overflows past x ≈ 709.78 where the exact loss is past the range too (a 422); x of
−1e300 gives e^x = 0 and P·1e300, finite. A target of 0 contributes e^x alone (0·log 0 = 0).
"""

from __future__ import annotations

import math
from typing import ClassVar

from ..jit import RowArrays, block_range, driver, scalar
from ._multiclass import MulticlassParams
from ._spec import Kernel
from ._stable import row_factor


class GeneralizedKlDivergenceParams(MulticlassParams):
    """`generalized_kl_divergence` takes no parameters: predictions are log Q as given, targets
    non-negative (N, C) P (any row sum)."""

    index_targets: ClassVar[bool] = False  # P is a row: its kernel reads (N, C) targets


@scalar
def generalized_kl_divergence_rows(k: int, rows: int, io: RowArrays, params: tuple[()]) -> None:
    r"""Block ``k`` of ``generalized_kl_divergence_batch``: rows ``k·rows`` to ``(k + 1)·rows``.

    $l_i = \sum_c P_c(\log P_c - x_c) + e^{x_c} - P_c$ (the first term 0 where $P_c = 0$),
    $\partial l_i/\partial x_c = e^{x_c} - P_c$, $\partial^2 l_i/\partial x_c^2 = e^{x_c}$.
    """
    pred, targ, w, scale, loss, grad, hess = io
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale)
        acc = 0.0
        for j in range(c):
            x = pred[i, j]
            big_p = targ[i, j]
            q = math.exp(x)
            term = q - big_p
            if big_p > 0.0:
                term += big_p * (math.log(big_p) - x)
            acc += term
            if want_g:
                grad[i, j] = (q - big_p) * f
            if want_h:
                hess[i, j] = q * f
        loss[i] = acc


generalized_kl_divergence_batch = driver(generalized_kl_divergence_rows)


KERNEL = Kernel(GeneralizedKlDivergenceParams, generalized_kl_divergence_batch)
