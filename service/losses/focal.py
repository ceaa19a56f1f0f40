"""Categorical focal cross-entropy (Lin et al. 2017), from logits or from probabilities.

Edges (issue 11 audit): Logits: softmax_row/softmax_entry give log p = (z − max) − log1p(rest) and
1 − p as a sum of the other entries (no cancellation as p → 1); focal_terms never divides by p or 1
− p. Probabilities: distributions, clipped. Measured: float64 1.6e-9 (probabilities at the clip),
float32 5.2e-8.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import Field

from ..jit import Array, RowArrays, block_range, driver, scalar
from ._checks import require_domain
from ._multiclass import (
    ClassSmoothing,
    ClassWeights,
    IgnoreIndex,
    MulticlassParams,
    Normalize,
    SoftmaxLogits,
)
from ._spec import ClipEpsilon, Kernel
from ._stable import (
    row_factor,
    row_sum,
    smoothed_labels,
    softmax_entry,
    softmax_row,
    target_at,
    through_row_sum,
)


class FocalParams(MulticlassParams):
    host_fields: ClassVar[frozenset[str]] = MulticlassParams.host_fields | {"alpha"}
    masks_ignored: ClassVar[bool] = True

    gamma: float = Field(2.0, ge=0, description="focusing parameter γ: (1 − p)^γ")
    alpha: float | None = Field(
        None, gt=0, description="one balancing factor α for all classes; null means 1"
    )
    from_logits: SoftmaxLogits = False
    label_smoothing: ClassSmoothing = 0.0
    class_weight: ClassWeights = None
    ignore_index: IgnoreIndex = None
    epsilon: ClipEpsilon = 1e-7
    normalize: Normalize = False

    def kernel_params(self) -> dict[str, Any]:
        """alpha null is passed as 1 (no balancing)."""
        return {
            **super().kernel_params(),
            "alpha": 1.0 if self.alpha is None else float(self.alpha),
        }

    def check_domain(self, predictions: Array, targets: Array) -> None:
        require_domain("focal", predictions, targets, self.from_logits, renormalised=True)
        self.require_distributions("focal", predictions, targets, self.from_logits)


@scalar
def focal_terms(
    a: float, p: float, logp: float, u: float, gamma: float
) -> tuple[float, float, float]:
    r"""One class's term $f = -a\,u^\gamma \log p$ ($u = 1 - p$) and its scaled derivatives.

    Returns $(f, P, W)$ with $P = p f'(p) = -a\,u^\gamma(1 - \gamma p r)$ and
    $W = u^2 p^2 f''(p) = a\,u^\gamma\,(u^2 + \gamma p u (2 - (\gamma - 1) p r))$, $r = \log p / u$
    ($\to -1$ as $p \to 1$). In these forms nothing divides by $p$ or $u$, so they stay finite
    for any finite logit even when $\gamma < 1$ (where $f''$ itself diverges at $p = 1$).
    """
    if a == 0.0:
        return 0.0, 0.0, 0.0
    ug = u**gamma
    r = logp / u if u > 0.0 else -1.0
    big_p = -a * ug * (1.0 - gamma * p * r)
    big_w = a * ug * (u * u + gamma * p * u * (2.0 - (gamma - 1.0) * p * r))
    return -a * ug * logp, big_p, big_w


@scalar
def focal_rows(
    k: int, rows: int, io: RowArrays, params: tuple[float, float, bool, float, Array, float, Array]
) -> None:
    """Block ``k`` of ``focal_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    pred, targ, w, scale, loss, grad, hess = io
    gamma, alpha, from_logits, label_smoothing, class_weight, epsilon, ignored = params
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        keep, spread = smoothed_labels(i, c, label_smoothing, ignored)
        f = row_factor(w, i, scale)
        acc = 0.0
        if from_logits:
            top, arg, rest = softmax_row(pred, i)
            u_top = rest / (1.0 + rest)
            sum_p = 0.0
            sum_q = 0.0  # Σ Q_c over the classes other than the top one
            w_top = 0.0
            for j in range(c):
                a = alpha * class_weight[j] * (keep * target_at(targ, i, j) + spread)
                p, logp, u = softmax_entry(pred[i, j], top, rest, j == arg)
                v, big_p, big_w = focal_terms(a, p, logp, u, gamma)
                acc += v
                sum_p += big_p
                if j == arg:
                    w_top = big_w
                else:
                    sum_q += big_w / (u * u)  # u ≥ 1/2 off the top class
            if want_g or want_h:
                for j in range(c):
                    a = alpha * class_weight[j] * (keep * target_at(targ, i, j) + spread)
                    p, logp, u = softmax_entry(pred[i, j], top, rest, j == arg)
                    _, big_p, big_w = focal_terms(a, p, logp, u, gamma)
                    g = big_p - p * sum_p
                    if want_g:
                        grad[i, j] = g * f
                    if want_h:
                        h = (1.0 - 2.0 * p) * g + big_w
                        if j == arg:
                            h += p * p * sum_q
                        else:
                            h += p * p * (sum_q - big_w / (u * u))
                            if u_top > 0.0:  # p_j ≤ 1 − p_top: (p_j/u_top)² ≤ 1
                                h += (p / u_top) * (p / u_top) * w_top
                        hess[i, j] = h * f
        else:
            s = row_sum(pred, i)
            sum_p = 0.0
            sum_q = 0.0
            for j in range(c):
                a = alpha * class_weight[j] * (keep * target_at(targ, i, j) + spread)
                q = pred[i, j] / s
                r = min(max(q, epsilon), 1.0 - epsilon)
                v, big_p, big_w = focal_terms(a, r, math.log(r), 1.0 - r, gamma)
                acc += v
                if epsilon < q < 1.0 - epsilon:
                    sum_p += big_p
                    sum_q += big_w / ((1.0 - q) * (1.0 - q))
            if want_g or want_h:
                for j in range(c):
                    q = pred[i, j] / s
                    d = 0.0
                    e = 0.0
                    if epsilon < q < 1.0 - epsilon:
                        a = alpha * class_weight[j] * (keep * target_at(targ, i, j) + spread)
                        _, big_p, big_w = focal_terms(a, q, math.log(q), 1.0 - q, gamma)
                        d = big_p / q
                        e = big_w / (((1.0 - q) * q) * ((1.0 - q) * q))
                    g, h = through_row_sum(d, e, q, sum_p, sum_q, s)
                    if want_g:
                        grad[i, j] = g * f
                    if want_h:
                        hess[i, j] = h * f
        loss[i] = acc


focal_batch = driver(
    focal_rows,
    "gamma",
    "alpha",
    "from_logits",
    "label_smoothing",
    "class_weight",
    "epsilon",
    "ignored",
)


KERNEL = Kernel(FocalParams, focal_batch)
