"""Kullback-Leibler divergence KL(P‖Q) of the predicted distribution Q from the target P.

Edges (issue 11 audit): Logits: log q = (z − max) − log Σ e^{z − max}; targets 0 skip their term
(xlogy); log_input uses log P − x in one subtraction, log_target P = e^t. Probabilities:
distributions (normalize), clipped to [ε, 1] (Keras). Measured: float64 2.9e-15, float32 8.6e-8.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from ..errors import InvalidArray
from ..jit import Array, RowArrays, block_range, driver, scalar
from ._checks import require_domain
from ._multiclass import MulticlassParams, Normalize
from ._spec import ComputeDtype, Kernel, Memo, Prepared
from ._stable import log_sum_exp_row, row_factor, target_at


class KlDivergenceParams(MulticlassParams):
    distribution_targets: ClassVar[bool] = True

    from_logits: bool = Field(False, description="predictions are logits (log_softmax inside)")
    log_input: bool = Field(
        False,
        description="predictions are log-probabilities used as given, not renormalised "
        "(torch's KLDivLoss): l = Σ P (log P − x)",
    )
    log_target: bool = Field(
        False, description="targets are log-probabilities (torch's log_target)"
    )
    epsilon: float = Field(
        1e-7, gt=0, lt=1, description="probabilities: P and Q clipped to [ε, 1] (Keras)"
    )
    normalize: Normalize = False

    @model_validator(mode="after")
    def _one_input_form(self) -> KlDivergenceParams:
        if self.log_input and self.from_logits:
            raise ValueError(
                "log_input (log-probabilities used as given) and from_logits (logits through a "
                "log_softmax) are two readings of the predictions: set one of them"
            )
        return self

    def check_targets(self, rows: Array, name: str) -> None:
        """Log-probability targets are any finite numbers; probabilities are non-negative."""
        if not self.log_target:
            super().check_targets(rows, name)

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        if self.log_target and targets.ndim == 1:
            raise InvalidArray(
                "log_target: true takes (N, C) rows of log-probabilities as targets, not class "
                "indices (send log_target: false for indices)",
                errors=[(("targets",), "must be (N, C) log-probabilities")],
            )
        return super().prepare(name, predictions, targets, dtype, memo)

    def check_domain(self, predictions: Array, targets: Array) -> None:
        logits = self.from_logits or self.log_input
        require_domain("kl_divergence", predictions, targets, logits)
        with np.errstate(under="ignore"):
            probabilities = np.exp(targets) if self.log_target else targets
        self.require_distributions("kl_divergence", predictions, probabilities, logits)


@scalar
def kl_target(t: float, log_target: bool) -> tuple[float, float]:
    """(P, log P) of one target entry: given as P, or as log P with ``log_target`` (log 0 as
    −inf; its terms are skipped)."""
    if log_target:
        return math.exp(t), t
    return t, math.log(t) if t > 0 else -math.inf


@scalar
def kl_divergence_rows(
    k: int, rows: int, io: RowArrays, params: tuple[bool, bool, bool, float]
) -> None:
    """Block ``k`` of ``kl_divergence_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    pred, targ, w, scale, loss, grad, hess = io
    from_logits, log_input, log_target, epsilon = params
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale)
        acc = 0.0
        if log_input:
            for j in range(c):
                big_p, log_p = kl_target(target_at(targ, i, j), log_target)
                if big_p > 0:
                    # log P − x in one subtraction: P·(log P − x), torch's kl_div pointwise
                    acc += big_p * (log_p - pred[i, j])
                if want_g:
                    grad[i, j] = -big_p * f
                if want_h:
                    hess[i, j] = 0.0
        elif from_logits:
            top, log_total = log_sum_exp_row(pred, i)
            mass = 0.0
            for j in range(c):
                big_p, _ = kl_target(target_at(targ, i, j), log_target)
                mass += big_p
            for j in range(c):
                big_p, log_p = kl_target(target_at(targ, i, j), log_target)
                # (z - max z) - log Σ e^(z - max z): no overflow and no cancellation at 1e300
                log_q = (pred[i, j] - top) - log_total
                if big_p > 0:
                    acc += big_p * (log_p - log_q)
                if want_g or want_h:
                    q = math.exp(log_q)
                    if want_g:
                        grad[i, j] = (mass * q - big_p) * f
                    if want_h:
                        hess[i, j] = mass * q * (1.0 - q) * f
        else:
            for j in range(c):
                big_p, _ = kl_target(target_at(targ, i, j), log_target)
                y = min(max(big_p, epsilon), 1.0)
                q = pred[i, j]
                acc += y * math.log(y / min(max(q, epsilon), 1.0))
                if want_g or want_h:
                    g = 0.0
                    h = 0.0
                    if epsilon < q < 1.0:
                        g = -y / q
                        h = y / (q * q)
                    if want_g:
                        grad[i, j] = g * f
                    if want_h:
                        hess[i, j] = h * f
        loss[i] = acc


kl_divergence_batch = driver(
    kl_divergence_rows, "from_logits", "log_input", "log_target", "epsilon"
)


KERNEL = Kernel(KlDivergenceParams, kl_divergence_batch)
