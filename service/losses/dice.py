"""Dice loss (1 − soft Dice coefficient) of soft or binary masks, one mask per row."""

from __future__ import annotations

import math

from pydantic import Field

from ._checks import require_in_unit_interval, require_probabilities
from ._jit import Array, batch, prange, scalar
from ._spec import LossParams, LossSpec
from ._stable import log_sigmoid, row_factor


class DiceParams(LossParams):
    """Rank-1 inputs are N one-element rows (each element its own mask), as everywhere in lossd."""

    smooth: float = Field(1.0, ge=0, description="added to numerator and denominator")
    from_logits: bool = Field(False, description="predictions are logits (sigmoid elementwise)")

    def check_domain(self, predictions: Array, targets: Array) -> None:
        require_in_unit_interval(targets, "dice")
        if not self.from_logits:
            require_probabilities(predictions, "dice")


@scalar
def dice_link(x: float, from_logits: bool) -> tuple[float, float, float]:
    r"""The mask value $p$ with $dp/dx$ and $d^2p/dx^2$: $x$ itself, or $\sigma(x)$ with
    $\sigma' = \sigma(x)\sigma(-x)$ and $\sigma'' = \sigma'(\sigma(-x) - \sigma(x))$, both sigmoids
    as $e^{\log\sigma}$ so that any finite logit stays finite."""
    if not from_logits:
        return x, 1.0, 0.0
    p = math.exp(log_sigmoid(x))
    q = math.exp(log_sigmoid(-x))  # 1 − σ(x) without cancellation
    d1 = p * q
    return p, d1, d1 * (q - p)


@batch
def dice_batch(
    pred: Array,
    targ: Array,
    w: Array,
    scale: float,
    loss: Array,
    grad: Array,
    hess: Array,
    smooth: float,
    from_logits: bool,
) -> None:
    r"""$l_i = 1 - A/B$, $A = 2\sum_j p_j t_j + s$, $B = \sum_j p_j + \sum_j t_j + s$ (the formula
    of LOSSES.md is the reference).

    $\partial l/\partial p_j = g_j = (A - 2t_jB)/B^2$ and $\partial^2 l/\partial p_j^2 =
    -2g_j/B$ (the numerator's derivative $2t_j - 2t_j$ vanishes). From logits $p = \sigma(z)$
    elementwise: $\partial l/\partial z_j = g_j\sigma'_j$ and $\partial^2 l/\partial z_j^2 =
    (-2g_j/B)\sigma_j'^2 + g_j\sigma''_j$. Rank-1 inputs are (N, 1) rows: each element is
    its own one-element mask. A row with $B = 0$ (both masks empty and $s = 0$; from
    logits only when every $\sigma(z_j)$ underflows) is $0/0$: it has loss 0, the perfect overlap
    of two empty masks and the limit $s \to 0^+$, and gradient and Hessian 0.
    """
    n, d = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in prange(n):
        inter = 0.0
        total = 0.0
        for j in range(d):
            p, _, _ = dice_link(pred[i, j], from_logits)
            inter += p * targ[i, j]
            total += p + targ[i, j]
        a = 2.0 * inter + smooth
        b = total + smooth
        r = a / b if b > 0 else 1.0
        loss[i] = 1.0 - r
        if want_g or want_h:
            f = row_factor(w, i, scale)
            for j in range(d):
                _, d1, d2 = dice_link(pred[i, j], from_logits)
                g = 0.0
                h = 0.0
                if b > 0:
                    # (A − 2t_jB)/B² as (A/B − 2t_j)/B: B² underflows for B below 1e-154
                    g = (r - 2.0 * targ[i, j]) / b
                    h = -2.0 * g / b
                if want_g:
                    grad[i, j] = g * d1 * f
                if want_h:
                    hess[i, j] = (h * d1 * d1 + g * d2) * f


SPEC = LossSpec(
    name="dice",
    aliases=("dice_loss",),
    family="overlap",
    summary="Dice loss 1 − (2|P∩T| + s)/(|P| + |T| + s) over the last axis (soft masks).",
    formula=(
        r"l_i = 1 - \frac{2\sum_j p_{ij} t_{ij} + s}{\sum_j p_{ij} + \sum_j t_{ij} + s},"
        r"\quad p = \sigma(z) \text{ with from\_logits}"
    ),
    params=DiceParams,
    driver=dice_batch,
    reference="the formula (LOSSES.md); a row with denominator 0 has loss 0",
    hessian_note="can be negative (-2 g_j / B in the probabilities; the sigmoid adds g σ'')",
)
