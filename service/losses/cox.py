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

The exponentials are taken of η − max η and the risk sums added from the last time back, never
subtracted from a total (as XGBoost does), so any finite margins give finite, exact answers.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..jit import Array, driver, scalar
from ._spec import ComputeDtype, Kernel, LossParams, Memo, Prepared, readonly
from ._stable import row_factor


class CoxParams(LossParams):
    """`cox` takes no parameters: margins `(N,)`, times `(N,)` (negative: censored)."""

    max_rank: ClassVar[int] = 1

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
        """κ, the sort order, the shifted exponentials and the risk sums: (N,) each."""
        return 4 * 8 * rows

    @classmethod
    def operations(cls, rows: int, columns: int, *, sent: Any = None) -> int:
        """A sort of the times: about N log N (C times over for C columns, which are refused)."""
        return rows * columns * max(1, int(math.log2(rows + 1))) * 4


@scalar
def cox_rows(
    k: int, rows: int,
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    params: tuple[()],
) -> None:  # fmt: skip
    r"""The whole batch (block 0 of ``cox_batch``, batch-coupled): $l_i = \delta_i(\log
    \sum_{|y_j| \ge |y_i|} e^{\eta_j} - \eta_i)$ and the derivatives of $\sum_i w_i l_i$."""
    n = pred.shape[0]
    if n == 0:
        return
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    times = np.empty(n)
    for i in range(n):
        times[i] = abs(float(targ[i, 0]))
    order = np.argsort(times, kind="mergesort")
    top = float(pred[0, 0])
    for i in range(n):
        top = max(top, float(pred[i, 0]))
    e = np.empty(n)
    for i in range(n):
        e[i] = math.exp(float(pred[i, 0]) - top)
    # the risk sum of each sample's time, from the last time back: a tied group shares one
    risk = np.empty(n)
    total = 0.0
    end = n - 1
    while end >= 0:
        start = end
        while start > 0 and times[order[start - 1]] == times[order[end]]:
            start -= 1
        for q in range(start, end + 1):
            total += e[order[q]]
        for q in range(start, end + 1):
            risk[order[q]] = total
        end = start - 1
    # forward: each group's events join R (and its square sum) before the group is answered
    r1 = 0.0
    r2 = 0.0
    start = 0
    while start < n:
        end = start
        while end + 1 < n and times[order[end + 1]] == times[order[start]]:
            end += 1
        for q in range(start, end + 1):
            i = order[q]
            if targ[i, 0] > 0:
                f = row_factor(w, i, scale)
                r1 += f / risk[i]
                r2 += f / (risk[i] * risk[i])
        for q in range(start, end + 1):
            i = order[q]
            event = targ[i, 0] > 0
            loss[i] = math.log(risk[i]) - (float(pred[i, 0]) - top) if event else 0.0
            if want_g:
                grad[i, 0] = e[i] * r1 - (row_factor(w, i, scale) if event else 0.0)
            if want_h:
                hess[i, 0] = e[i] * r1 - e[i] * e[i] * r2
        start = end + 1


cox_batch = driver(cox_rows, coupled=True)


KERNEL = Kernel(CoxParams, cox_batch)
