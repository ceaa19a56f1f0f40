"""Poly-1 cross-entropy (Leng et al. 2022): cross-entropy plus ε·(1 − p_t).

Edges (issue 11 audit): logits as focal (softmax_entry: log p = (z − max) − log1p(rest) and 1 − p
from the other entries, no cancellation); the poly term ε·Σ y'(1 − p) uses that 1 − p. Measured:
float64 2e-16 relative (one Hessian entry whose exact value is 0 is 2e-16 absolute against the
row's 0.25), float32 3.3e-8.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field

from ..jit import Array, RowArrays, block_range, driver, scalar
from ._checks import require_domain
from ._multiclass import ClassSmoothing, MulticlassParams, Normalize, SoftmaxLogits
from ._spec import Kernel
from ._stable import (
    row_factor,
    row_sum,
    smoothed_labels,
    softmax_entry,
    softmax_row,
    target_at,
    through_row_sum,
    through_softmax,
)


class Poly1CrossEntropyParams(MulticlassParams):
    masks_ignored: ClassVar[bool] = True  # no ignore_index: always empty, one driver shape

    epsilon_poly: float = Field(
        2.0, description="coefficient ε of the first polynomial term (1 − p_t); any finite number"
    )
    from_logits: SoftmaxLogits = True
    label_smoothing: ClassSmoothing = 0.0
    epsilon: float = Field(
        1e-7, gt=0, lt=0.5, description="from_logits false: probabilities clipped to [ε, 1−ε]"
    )
    normalize: Normalize = False

    def check_domain(self, predictions: Array, targets: Array) -> None:
        require_domain(
            "poly1_cross_entropy", predictions, targets, self.from_logits, renormalised=True
        )
        self.require_distributions("poly1_cross_entropy", predictions, targets, self.from_logits)


@scalar
def poly1_terms(
    y: float, p: float, logp: float, u: float, epsilon_poly: float
) -> tuple[float, float, float]:
    r"""One class's term $f = -y \log p + \varepsilon\, y (1 - p)$ with $P = p f'(p) =
    -y(1 + \varepsilon p)$ and $Q = p^2 f''(p) = y$."""
    return -y * logp + epsilon_poly * y * u, -y * (1.0 + epsilon_poly * p), y


@scalar
def poly1_cross_entropy_rows(
    k: int, rows: int, io: RowArrays, params: tuple[float, bool, float, float, Array]
) -> None:
    """Block ``k`` of ``poly1_cross_entropy_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    pred, targ, w, scale, loss, grad, hess = io
    epsilon_poly, from_logits, label_smoothing, epsilon, ignored = params
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        keep, spread = smoothed_labels(i, c, label_smoothing, ignored)
        f = row_factor(w, i, scale)
        acc = 0.0
        if from_logits:
            top, arg, rest = softmax_row(pred, i)
            sum_p = 0.0
            sum_q = 0.0
            for j in range(c):
                y = keep * target_at(targ, i, j) + spread
                p, logp, u = softmax_entry(pred[i, j], top, rest, j == arg)
                v, big_p, big_q = poly1_terms(y, p, logp, u, epsilon_poly)
                acc += v
                sum_p += big_p
                sum_q += big_q
            if want_g or want_h:
                for j in range(c):
                    y = keep * target_at(targ, i, j) + spread
                    p, logp, u = softmax_entry(pred[i, j], top, rest, j == arg)
                    _, big_p, big_q = poly1_terms(y, p, logp, u, epsilon_poly)
                    g, h = through_softmax(p, big_p, big_q, sum_p, sum_q)
                    if want_g:
                        grad[i, j] = g * f
                    if want_h:
                        hess[i, j] = h * f
        else:
            s = row_sum(pred, i)
            sum_p = 0.0
            sum_q = 0.0
            for j in range(c):
                y = keep * target_at(targ, i, j) + spread
                q = pred[i, j] / s
                r = min(max(q, epsilon), 1.0 - epsilon)
                v, big_p, big_q = poly1_terms(y, r, math.log(r), 1.0 - r, epsilon_poly)
                acc += v
                if epsilon < q < 1.0 - epsilon:
                    sum_p += big_p
                    sum_q += big_q
            if want_g or want_h:
                for j in range(c):
                    q = pred[i, j] / s
                    d = 0.0
                    e = 0.0
                    if epsilon < q < 1.0 - epsilon:
                        y = keep * target_at(targ, i, j) + spread
                        _, big_p, big_q = poly1_terms(y, q, math.log(q), 1.0 - q, epsilon_poly)
                        d = big_p / q
                        e = big_q / (q * q)
                    g, h = through_row_sum(d, e, q, sum_p, sum_q, s)
                    if want_g:
                        grad[i, j] = g * f
                    if want_h:
                        hess[i, j] = h * f
        loss[i] = acc


poly1_cross_entropy_batch = driver(
    poly1_cross_entropy_rows, "epsilon_poly", "from_logits", "label_smoothing", "epsilon", "ignored"
)


KERNEL = Kernel(Poly1CrossEntropyParams, poly1_cross_entropy_batch)
