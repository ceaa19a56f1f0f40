"""Kullback-Leibler divergence KL(P‖Q) of the predicted distribution Q from the target P."""

from __future__ import annotations

import math

from pydantic import Field

from ._checks import require_probabilities
from ._jit import Array, batch, prange
from ._multiclass import MulticlassParams
from ._spec import LossSpec
from ._stable import row_factor


class KlDivergenceParams(MulticlassParams):
    from_logits: bool = Field(False, description="predictions are logits (log_softmax inside)")
    epsilon: float = Field(
        1e-7, gt=0, lt=1, description="probabilities: P and Q clipped to [ε, 1] (Keras)"
    )

    def check_domain(self, predictions: Array, targets: Array) -> None:
        if not self.from_logits:
            require_probabilities(predictions, "kl_divergence")


@batch
def kl_divergence_batch(
    pred: Array,
    targ: Array,
    w: Array,
    scale: float,
    loss: Array,
    grad: Array,
    hess: Array,
    from_logits: bool,
    epsilon: float,
) -> None:
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
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in prange(n):
        f = row_factor(w, i, scale)
        acc = 0.0
        if from_logits:
            top = pred[i, 0]
            for j in range(1, c):
                top = max(top, pred[i, j])
            total = 0.0
            mass = 0.0
            for j in range(c):
                total += math.exp(pred[i, j] - top)
                mass += targ[i, j]
            log_total = math.log(total)
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
