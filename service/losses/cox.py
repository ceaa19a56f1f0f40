"""Cox proportional hazards, as XGBoost's ``survival:cox``: the negative partial log-likelihood
of the whole batch, Breslow's method for tied times.

Predictions are margins η (log hazard ratios), ``(N,)``; targets are times, positive for an
observed event and negative for a right-censored sample (time |y|), as XGBoost takes its labels.
The risk set of time t is every sample of the batch with |y_j| ≥ t, so the loss is
batch-coupled: a sample is one event with its risk set, l_i = log Σ_{|y_j| ≥ |y_i|} e^{η_j} − η_i
for an event and 0 for a censored sample, and the batch runs whole (``jit.driver(coupled)``).
Tied times share one risk set that holds all of them (Breslow, as XGBoost's ``cox-nloglik``).
The mean divides by the events' weights, Σ_i w_i δ_i (κ_i = δ_i): without weights XGBoost's
``cox-nloglik`` metric, which divides by the number of events.

Gradient and Hessian diagonal are those of Σ_i w_i l_i: with S(t) the risk sum and
R_k = Σ_{events i, |y_i| ≤ |y_k|} w_i/S(|y_i|), ∂/∂η_k = e^{η_k} R_k − w_k δ_k and ∂²/∂η_k² =
e^{η_k} R_k − e^{2η_k} Σ_i w_i/S(|y_i|)²: XGBoost's ``CoxRegression::GetGradient`` where no
event ties another sample (its loop adds a tied event's 1/S only to the samples sorted after
it) and the weights are 1 (it multiplies each sample's own pair by its weight).

The risk sums are log-sum-exps added from the last time back, never subtracted from a total (as
XGBoost does), so any finite margins give finite, exact answers.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..jit import Array, RowArrays, driver, scalar
from ._spec import ComputeDtype, Kernel, LossParams, Memo, Prepared, readonly
from ._stable import row_factor


class CoxParams(LossParams):
    """`cox` takes no parameters: margins `(N,)`, times `(N,)` (negative: censored)."""

    max_rank: ClassVar[int] = 1

    @classmethod
    def warm_up_batch(cls) -> tuple[Array, Array]:
        """Two margins, an event and a censored time."""
        return np.full(2, 0.5), np.array([1.0, -2.0])

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """One margin and one time a sample; κ_i = 1 for an event, 0 for a censored sample."""
        prepared = super().prepare(name, predictions, targets, dtype, memo)
        events = (prepared.targets[:, 0] > 0).astype(dtype)
        return Prepared(prepared.targets, prepared.kernel_params, readonly(events))

    @classmethod
    def working_bytes(
        cls, rows: int, columns: int, itemsize: int, *, sent: Any = None, indices: bool = False
    ) -> int:
        """κ, the times, their sort order and the log risk sums: (N,) each."""
        return 4 * 8 * rows

    @classmethod
    def operations(cls, rows: int, columns: int, *, sent: Any = None, targets: Any = None) -> int:
        """A sort of the times: about N log N (C times over for C columns, which are refused)."""
        return rows * columns * max(1, int(math.log2(rows + 1))) * 4


@scalar
def log_add(a: float, b: float) -> float:
    """log(e^a + e^b) for a, b in [−inf, +inf), without overflow."""
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


@scalar
def scaled_add(top: float, mass: float, log_term: float, f: float) -> tuple[float, float]:
    """(top, mass) of a sum held as e^top·mass, after adding f·e^{log_term}: the sum's scale
    kept apart from its mantissa, so that a term's factor f survives log_term = ±1e300."""
    if f <= 0.0:
        return top, mass
    if log_term > top:
        return log_term, mass * math.exp(top - log_term) + f
    return top, mass + f * math.exp(log_term - top)


@scalar
def cox_rows(k: int, rows: int, io: RowArrays, params: tuple[()]) -> None:
    r"""The whole batch (block 0 of ``cox_batch``, batch-coupled): $l_i = \delta_i(\log
    \sum_{|y_j| \ge |y_i|} e^{\eta_j} - \eta_i)$ and the derivatives of $\sum_i w_i l_i$.

    Everything is in logs: L_g, the log risk sum of a time g, runs back from the last time as
    a log-sum-exp, and Σ w_i e^{−L_i} over the earlier events (and Σ w_i e^{−2L_i}) forward,
    held as a scale and a mantissa (``scaled_add``), so that only e^{η_k − L_i} ≤ 1 is ever
    exponentiated. A sample's own time is answered apart: with p = e^{η_k − L_g} and
    1 − p = e^{log S_{−k} − L_g} from the log risk sum without k (no cancellation), its own
    event's term w_k(p − 1) and the group's curvature F_g·p(1 − p), F_g the weights of its
    events."""
    pred, targ, w, scale, loss, grad, hess = io
    n = pred.shape[0]
    if n == 0:
        return
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    times = np.empty(n)
    for i in range(n):
        times[i] = abs(float(targ[i, 0]))
    order = np.argsort(times, kind="mergesort")
    log_risk = np.empty(n)  # L of each sample's time (its tied group included)
    log_after = np.empty(n)  # the log risk sum of the later times alone
    running = -np.inf
    end = n - 1
    while end >= 0:
        start = end
        while start > 0 and times[order[start - 1]] == times[order[end]]:
            start -= 1
        for q in range(start, end + 1):
            log_after[order[q]] = running
        for q in range(start, end + 1):
            running = log_add(running, float(pred[order[q], 0]))
        for q in range(start, end + 1):
            log_risk[order[q]] = running
        end = start - 1
    before = np.empty(n)  # within a group: the log sum of the members before each one
    top1, mass1 = -np.inf, 0.0  # Σ w_i e^{−L_i} over the earlier times' events
    top2, mass2 = -np.inf, 0.0  # Σ w_i e^{−2L_i}
    start = 0
    while start < n:
        end = start
        while end + 1 < n and times[order[end + 1]] == times[order[start]]:
            end += 1
        group = log_risk[order[start]]
        events = 0.0
        prefix = -np.inf
        for q in range(start, end + 1):
            i = order[q]
            before[q] = prefix
            prefix = log_add(prefix, float(pred[i, 0]))
            if targ[i, 0] > 0:
                events += row_factor(w, i, scale)
        suffix = -np.inf
        for q in range(end, start - 1, -1):
            i = order[q]
            eta = float(pred[i, 0])
            event = targ[i, 0] > 0
            f = row_factor(w, i, scale)
            loss[i] = group - eta if event else 0.0
            others = log_add(log_after[i], log_add(before[q], suffix))
            p = math.exp(eta - group)
            rest = math.exp(others - group)  # 1 − p
            earlier = math.exp(eta + top1) * mass1 if mass1 > 0.0 else 0.0
            if want_g:
                mine = (events - f) * p - f * rest if event else events * p
                grad[i, 0] = earlier + mine
            if want_h:
                earlier2 = math.exp(2.0 * eta + top2) * mass2 if mass2 > 0.0 else 0.0
                hess[i, 0] = (earlier - earlier2) + events * p * rest
            suffix = log_add(suffix, eta)
        for q in range(start, end + 1):
            i = order[q]
            if targ[i, 0] > 0:
                f = row_factor(w, i, scale)
                top1, mass1 = scaled_add(top1, mass1, -group, f)
                top2, mass2 = scaled_add(top2, mass2, -2.0 * group, f)
        start = end + 1


cox_batch = driver(cox_rows, coupled=True)


KERNEL = Kernel(CoxParams, cox_batch)
