"""Jensen-Shannon divergence of the predicted distribution from the target distribution."""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from ..errors import InvalidArray
from ._checks import require_positive_row_sums, require_probabilities
from ._jit import Array, batch, prange
from ._multiclass import MulticlassParams
from ._spec import LossSpec
from ._stable import LOG2, row_factor


class JsDivergenceParams(MulticlassParams):
    from_logits: bool = Field(False, description="predictions are logits (softmax inside)")

    def check_domain(self, predictions: Array, targets: Array) -> None:
        if not self.from_logits:
            require_probabilities(predictions, "js_divergence")
            require_positive_row_sums(predictions, "js_divergence")
        sums = targets.sum(axis=1)
        if sums.size and (sums <= 0).any():
            row = int(np.argmax(sums <= 0))
            raise InvalidArray(
                f"js_divergence renormalises target rows (as scipy does), but row {row} sums to 0",
                errors=[(("targets", row), "row must have a positive sum")],
            )


@batch
def js_divergence_batch(
    pred: Array,
    targ: Array,
    w: Array,
    scale: float,
    loss: Array,
    grad: Array,
    hess: Array,
    from_logits: bool,
) -> None:
    r"""$l_i = \tfrac12 \sum_c \left[p_c \log\frac{p_c}{m_c} + q_c \log\frac{q_c}{m_c}\right]$,
    $m = (p + q)/2$, natural log, $0 \log 0 = 0$.

    As ``scipy.spatial.distance.jensenshannon(P, Q) ** 2`` (the reference) both rows are
    renormalised first: $p = P/\sum P$ and $q = Q/S$, $S = \sum Q$; from logits
    $q = \mathrm{softmax}(z)$ with $\log q = z - \mathrm{lse}(z)$. In q the divergence is
    separable, with $g_c = \partial l/\partial q_c = \tfrac12\log(2q_c/(p_c + q_c))$ ($\tfrac12
    \log 2$ where $p_c = 0$) and $h_c = \partial^2 l/\partial q_c^2 = \tfrac12\,p_c/(q_c(p_c +
    q_c))$. With $\bar G = \sum_c g_c q_c$ and $H_2 = \sum_c h_c q_c^2$ (both finite, $q\log q \to
    0$), through the renormalisation $\partial l/\partial Q_j = (g_j - \bar G)/S$ and
    $\partial^2 l/\partial Q_j^2 = (h_j(1 - 2q_j) - 2(g_j - \bar G) + H_2)/S^2$; through the
    softmax $\partial l/\partial z_j = q_j(g_j - \bar G)$ and
    $\partial^2 l/\partial z_j^2 = q_j(1 - 2q_j)(g_j - \bar G) + (1 - 2q_j)h_jq_j^2 + q_j^2 H_2$.
    A probability $Q_j = 0$ where $p_j > 0$ has slope $-\infty$: its gradient is not finite.
    """
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in prange(n):
        mass = 0.0
        for j in range(c):
            mass += targ[i, j]
        top = 0.0
        log_total = 0.0
        s = 0.0
        if from_logits:
            top = pred[i, 0]
            for j in range(1, c):
                top = max(top, pred[i, j])
            total = 0.0
            for j in range(c):
                total += math.exp(pred[i, j] - top)
            log_total = math.log(total)
        else:
            for j in range(c):
                s += pred[i, j]
        acc = 0.0
        g_bar = 0.0
        h_2 = 0.0
        for j in range(c):
            p = targ[i, j] / mass
            if from_logits:
                log_q = (pred[i, j] - top) - log_total
                q = math.exp(log_q)
            else:
                q = pred[i, j] / s
                log_q = math.log(q) if q > 0 else -math.inf
            m = (p + q) / 2.0
            if p > 0:
                acc += p * math.log(p / m)
            if q > 0:
                acc += q * math.log(q / m)
            if (want_g or want_h) and q > 0:
                g = 0.5 * (LOG2 + log_q - math.log(p + q)) if p > 0 else 0.5 * LOG2
                g_bar += g * q
                h_2 += 0.5 * p * q / (p + q)
        loss[i] = 0.5 * acc
        if want_g or want_h:
            f = row_factor(w, i, scale)
            for j in range(c):
                p = targ[i, j] / mass
                if from_logits:
                    log_q = (pred[i, j] - top) - log_total
                    q = math.exp(log_q)
                else:
                    q = pred[i, j] / s
                    log_q = math.log(q) if q > 0 else -math.inf
                g = 0.5 * LOG2
                hq2 = 0.0  # h_j q_j², finite where q_j = 0
                if p > 0:
                    g = 0.5 * (LOG2 + log_q - math.log(p + q))
                    hq2 = 0.5 * p * q / (p + q)
                if from_logits:
                    # q_j = 0 (underflow) has a finite g_j here (log q_j = z_j - lse), so 0·g_j = 0
                    if want_g:
                        grad[i, j] = q * (g - g_bar) * f
                    if want_h:
                        k = 1.0 - 2.0 * q
                        hess[i, j] = (q * k * (g - g_bar) + k * hq2 + q * q * h_2) * f
                else:
                    if want_g:
                        grad[i, j] = (g - g_bar) / s * f
                    if want_h:
                        h = 0.0
                        if p > 0:
                            h = 0.5 * p / (q * (p + q))
                        k = h * (1.0 - 2.0 * q) - 2.0 * (g - g_bar) + h_2
                        hess[i, j] = k / (s * s) * f


SPEC = LossSpec(
    name="js_divergence",
    aliases=("jensen_shannon", "jsd"),
    family="distribution",
    summary="Jensen-Shannon divergence (natural log) of the renormalised predictions and targets.",
    formula=(
        r"l_i = \tfrac12 \mathrm{KL}(p_i \| m_i) + \tfrac12 \mathrm{KL}(q_i \| m_i),\quad "
        r"m_i = \tfrac12 (p_i + q_i),\quad p_i = P_i / \textstyle\sum_c P_{ic},\ "
        r"q_i = Q_i / \textstyle\sum_c Q_{ic}"
    ),
    params=JsDivergenceParams,
    driver=js_divergence_batch,
    reference="scipy.spatial.distance.jensenshannon(P, Q, axis=1) ** 2 (rows renormalised)",
    targets=("same_shape", "class_index"),
    hessian_note="can be negative (the divergence is not convex in logits or unnormalised Q)",
)
