"""Cauchy-Schwarz divergence of the predicted distribution Q from the target distribution P
(Jenssen, Principe, Erdogmus and Eltoft 2006, the discrete form):
D = −log ⟨P, Q⟩ + ½ log ‖P‖² + ½ log ‖Q‖² = −log cos∠(P, Q).

D is unchanged when P or Q is scaled, so rows need not sum to 1, Q = softmax(z) may be taken as
e^{z − max z}, and each row is computed from P/max P and Q/max Q: no square of 1e-300 underflows
and none of 1e300 overflows. D is 0 where Q is proportional to P, and infinite where they do not
overlap (⟨P, Q⟩ = 0: a 422 that says so).

Derivatives in Q_j: g_j = −P_j/⟨P, Q⟩ + Q_j/‖Q‖², h_j = P_j²/⟨P, Q⟩² + 1/‖Q‖² − 2Q_j²/‖Q‖⁴
(can be negative); from logits, Q_j·g_j and Q_j·g_j + Q_j²·h_j, in log space where ⟨P, Q⟩
would underflow (``cauchy_schwarz_divergence_rows``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from ..errors import InvalidArray, OutOfDomain
from ..jit import Array, RowArrays, block_range, driver, scalar
from ._checks import require_domain
from ._multiclass import MulticlassParams, SoftmaxLogits
from ._spec import Kernel
from ._stable import row_factor, row_max


class CauchySchwarzDivergenceParams(MulticlassParams):
    index_targets: ClassVar[bool] = False  # P is a row, scaled by its maximum: (N, C) targets
    from_logits: SoftmaxLogits = False

    def check_domain(self, predictions: Array, targets: Array) -> None:
        """Probabilities in [0, 1] unless logits (any row sum: D is scale-invariant); a target
        row of zeros has no direction, and rows with no overlap an infinite divergence."""
        require_domain("cauchy_schwarz_divergence", predictions, targets, self.from_logits)
        if not targets.size:
            return
        empty = ~(targets > 0).any(axis=1)
        if empty.any():
            row = int(np.argmax(empty))
            raise InvalidArray(
                f"cauchy_schwarz_divergence needs a target row with a positive entry; row {row} "
                "is all zero (its direction, and the divergence, are undefined)",
                errors=[(("targets", row), "row must have a positive entry")],
            )
        if not self.from_logits:
            apart = ~((predictions > 0) & (targets > 0)).any(axis=1)
            if apart.any():
                row = int(np.argmax(apart))
                raise OutOfDomain(
                    f"cauchy_schwarz_divergence of row {row} is infinite: its predictions and "
                    "targets have no positive entry in common (⟨P, Q⟩ = 0)",
                    errors=[(("predictions", row), "must overlap the targets")],
                )


@scalar
def cauchy_schwarz_divergence_rows(k: int, rows: int, io: RowArrays, params: tuple[bool]) -> None:
    """Block ``k`` of ``cauchy_schwarz_divergence_batch``: rows ``k·rows`` to ``(k + 1)·rows``.

    From logits, with a_j = z_j − max z, Q_j = e^{a_j} and b = max{a_j : P_j > 0}: ⟨P, Q⟩ =
    e^b·Σ_j P_j e^{a_j − b}, whose sum is at least the largest P_j at b, so log ⟨P, Q⟩ is finite
    for any finite logits (e^{a_j} alone underflows at a_j < −745). With r_j = P_jQ_j/⟨P, Q⟩
    and s_j = Q_j²/‖Q‖² the logit derivatives are s_j − r_j and r_j² − r_j + 2s_j − 2s_j².
    """
    pred, targ, w, scale, loss, grad, hess = io
    (from_logits,) = params
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        mp = row_max(targ, i)
        top = row_max(pred, i)  # logits: Q = e^(z − top); probabilities: Q / top
        shift = 0.0  # b: ⟨P, Q⟩ = e^b · dot
        if from_logits:
            shift = -math.inf
            for j in range(c):
                if targ[i, j] > 0.0:
                    shift = max(shift, pred[i, j] - top)
        dot = 0.0
        pp = 0.0
        qq = 0.0
        for j in range(c):
            p = targ[i, j] / mp
            if from_logits:
                a = pred[i, j] - top
                q = math.exp(a)
                if p > 0.0:
                    dot += p * math.exp(a - shift)
            else:
                q = pred[i, j] / top
                dot += p * q
            pp += p * p
            qq += q * q
        loss[i] = -(shift + math.log(dot)) + 0.5 * math.log(pp) + 0.5 * math.log(qq)
        if want_g or want_h:
            f = row_factor(w, i, scale)
            for j in range(c):
                p = targ[i, j] / mp
                if from_logits:
                    a = pred[i, j] - top
                    r = p * math.exp(a - shift) / dot if p > 0.0 else 0.0
                    s = math.exp(2.0 * a) / qq
                    g = s - r
                    h = r * r - r + 2.0 * s - 2.0 * s * s
                else:
                    # in the scaled Q = pred / top, then through 1/top (and 1/top²)
                    q = pred[i, j] / top
                    g = (-p / dot + q / qq) / top
                    h = ((p / dot) * (p / dot) + 1.0 / qq - 2.0 * (q / qq) * (q / qq)) / (top * top)
                if want_g:
                    grad[i, j] = g * f
                if want_h:
                    hess[i, j] = h * f


cauchy_schwarz_divergence_batch = driver(cauchy_schwarz_divergence_rows, "from_logits")


KERNEL = Kernel(CauchySchwarzDivergenceParams, cauchy_schwarz_divergence_batch)
