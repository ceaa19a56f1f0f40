"""Kullback-Leibler divergence KL(P‖Q) of the predicted distribution Q from the target P."""

from __future__ import annotations

import math

from pydantic import Field

from ..jit import SERIAL_ELEMENTS, Array, batch, block_range, block_rows, prange, scalar
from ._checks import require_domain
from ._multiclass import MulticlassParams
from ._spec import LossSpec
from ._stable import log_sum_exp_row, row_factor, row_sum


class KlDivergenceParams(MulticlassParams):
    from_logits: bool = Field(False, description="predictions are logits (log_softmax inside)")
    epsilon: float = Field(
        1e-7, gt=0, lt=1, description="probabilities: P and Q clipped to [ε, 1] (Keras)"
    )

    def check_domain(self, predictions: Array, targets: Array) -> None:
        require_domain("kl_divergence", predictions, targets, self.from_logits)


@scalar
def kl_divergence_rows(
    k: int, rows: int,
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    params: tuple[bool, float],
) -> None:  # fmt: skip
    """Block ``k`` of ``kl_divergence_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    from_logits, epsilon = params
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale)
        acc = 0.0
        if from_logits:
            top, log_total = log_sum_exp_row(pred, i)
            mass = row_sum(targ, i)
            for j in range(c):
                t = targ[i, j]
                # (z - max z) - log Σ e^(z - max z): no overflow and no cancellation at 1e300
                log_q = (pred[i, j] - top) - log_total
                if t > 0:
                    acc += t * math.log(t) - t * log_q
                if want_g or want_h:
                    q = math.exp(log_q)
                    if want_g:
                        grad[i, j] = (mass * q - t) * f
                    if want_h:
                        hess[i, j] = mass * q * (1.0 - q) * f
        else:
            for j in range(c):
                y = min(max(targ[i, j], epsilon), 1.0)
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


@batch
def kl_divergence_batch(
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    from_logits: bool, epsilon: float,
) -> None:  # fmt: skip
    r"""$l_i = \sum_c P_c (\log P_c - \log Q_c)$ with P the targets and Q the predictions.

    Logits (``torch.nn.functional.kl_div(log_softmax(z), P)`` summed over the row): $\log Q =
    z - \mathrm{lse}(z)$ with $\mathrm{lse}$ computed around $\max z$, so any finite logit gives a
    finite loss; the target term is $\mathrm{xlogy}(P_c, P_c)$ ($0 \log 0 = 0$), P is not clipped.
    $\partial l/\partial z_j = (\sum_c P_c)\,q_j - P_j$ and
    $\partial^2 l/\partial z_j^2 = (\sum_c P_c)\,q_j(1 - q_j)$ with $q = \mathrm{softmax}(z)$.

    Probabilities (``keras.losses.kl_divergence``): $P' = \mathrm{clip}(P, \varepsilon, 1)$,
    $Q' = \mathrm{clip}(Q, \varepsilon, 1)$, $l = \sum_c P'_c \log(P'_c / Q'_c)$;
    $\partial l/\partial Q_j = -P'_j/Q_j$ and $\partial^2 l/\partial Q_j^2 = P'_j/Q_j^2$ where
    $\varepsilon < Q_j < 1$, and 0 where clipping is active (the derivative of the clipped
    expression; at $Q_j = \varepsilon$ or $1$ the subgradient of smallest magnitude).
    """
    params = (from_logits, epsilon)
    n, d = pred.shape
    rows = block_rows(n, d)
    if n * d <= SERIAL_ELEMENTS:  # on this thread: a parallel launch costs more than the work
        for k in range(-(-n // rows)):
            kl_divergence_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)
        return
    for k in prange(-(-n // rows)):
        kl_divergence_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)


SPEC = LossSpec(
    name="kl_divergence",
    aliases=("kld", "kullback_leibler_divergence", "KLDivLoss"),
    family="distribution",
    summary="Kullback-Leibler divergence KL(P‖Q) of the predictions Q from the target distribution P.",
    formula=r"l_i = \sum_c P_{ic} \left(\log P_{ic} - \log Q_{ic}\right)",
    params=KlDivergenceParams,
    driver=kl_divergence_batch,
    reference=(
        'torch.nn.functional.kl_div(log_softmax(z), P, reduction="batchmean") per row for '
        "logits; keras.losses.kl_divergence (P and Q clipped to [ε, 1]) for probabilities"
    ),
    targets=("same_shape", "class_index"),
    hessian_note=(
        "non-negative: (Σ_c P_c) q_j (1 - q_j) from logits; P'_j / Q_j² from probabilities, "
        "0 where clipping is active"
    ),
)
