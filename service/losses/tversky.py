"""Tversky loss: Dice with separate weights on false positives and false negatives.

Edges (issue 11 audit): as dice, an intersection below 1e-250 is recomputed from the rows divided
by their maxima, x = I/R, A/B = (x + s/R)/(x + 1) with R = α·FP + β·FN + s; the loss is (α·FP +
β·FN)/B, no cancellation; B² is never formed. Measured: float64 1.1e-15 relative where the exact
value is above 1e-300, float32 4.8e-8.
"""

from __future__ import annotations

from pydantic import Field

from ..jit import SERIAL_ELEMENTS, Array, batch, block_range, block_rows, prange, scalar
from ._binary import (
    INTERSECTION_UNDERFLOW,
    MaskLogits,
    MaskSmooth,
    mask_link,
    scaled_intersection,
)
from ._checks import require_domain
from ._spec import LossParams, LossSpec
from ._stable import row_factor


class TverskyParams(LossParams):
    """Rank-1 inputs are N one-element rows (each element its own mask), as everywhere in lossd."""

    alpha: float = Field(0.5, ge=0, description="weight of the false positives Σ p(1 − t)")
    beta: float = Field(0.5, ge=0, description="weight of the false negatives Σ (1 − p)t")
    smooth: MaskSmooth = 1.0
    from_logits: MaskLogits = False

    def check_domain(self, predictions: Array, targets: Array) -> None:
        require_domain("tversky", predictions, targets, self.from_logits, unit_targets=True)


@scalar
def tversky_rows(
    k: int, rows: int,
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    params: tuple[float, float, float, bool],
) -> None:  # fmt: skip
    """Block ``k`` of ``tversky_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    alpha, beta, smooth, from_logits = params
    n, d = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        inter = 0.0
        fp = 0.0
        fn = 0.0
        for j in range(d):
            p, not_p, _, _ = mask_link(pred[i, j], from_logits)
            t = targ[i, j]
            inter += p * t
            fp += p * (1.0 - t)
            fn += not_p * t
        a = inter + smooth
        b = inter + alpha * fp + beta * fn + smooth
        r = a / b if b > 0 else 1.0
        rest = alpha * fp + beta * fn + smooth
        if rest > 0 and inter < INTERSECTION_UNDERFLOW:
            # with x = I/rest = Î·m_p·(m_t/rest): A/B = (x + s/rest)/(x + 1), B = rest·(1 + x);
            # products of tiny masks kept
            hat, mp, mt = scaled_intersection(pred, targ, i, from_logits)
            x = hat * mp * (mt / rest)
            r = (x + smooth / rest) / (x + 1.0)
            b = rest * (1.0 + x)
        # 1 − A/B = (α·FP + β·FN)/B: no cancellation where A/B rounds to 1
        loss[i] = (alpha * fp + beta * fn) / b if b > 0 else 0.0
        if want_g or want_h:
            f = row_factor(w, i, scale)
            for j in range(d):
                _, _, d1, d2 = mask_link(pred[i, j], from_logits)
                t = targ[i, j]
                g = 0.0
                h = 0.0
                if b > 0:
                    c = t + alpha * (1.0 - t) - beta * t
                    # (Ac_j − t_jB)/B² as (c_jA/B − t_j)/B: B² underflows for B below 1e-154
                    g = (r * c - t) / b
                    h = -2.0 * c * g / b
                if want_g:
                    grad[i, j] = g * d1 * f
                if want_h:
                    hess[i, j] = (h * d1 * d1 + g * d2) * f


@batch
def tversky_batch(
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    alpha: float, beta: float, smooth: float, from_logits: bool,
) -> None:  # fmt: skip
    r"""$l_i = 1 - A/B$, $A = I + s$, $B = I + \alpha\,FP + \beta\,FN + s$ with $I = \sum_j p_jt_j$,
    $FP = \sum_j p_j(1 - t_j)$, $FN = \sum_j (1 - p_j)t_j$; the formula itself is the
    reference.

    With $c_j = \partial B/\partial p_j = t_j + \alpha(1 - t_j) - \beta t_j$:
    $\partial l/\partial p_j = g_j = (Ac_j - t_jB)/B^2$ and $\partial^2 l/\partial p_j^2 =
    -2c_jg_j/B$. From logits $p = \sigma(z)$ elementwise: $\partial l/\partial z_j = g_j\sigma'_j$
    and $\partial^2 l/\partial z_j^2 = (-2c_jg_j/B)\sigma_j'^2 + g_j\sigma''_j$. Rank-1 inputs
    are (N, 1) rows. A row with $B = 0$ (no overlap, $s = 0$, and every false positive and false
    negative weighted 0 or absent, e.g. two empty masks; from logits a $\sigma(z_j)$ that
    underflows, below $z \approx -745$, counts as 0) is $0/0$: it has loss 0, the limit
    $s \to 0^+$, and gradient and Hessian 0.
    """
    params = (alpha, beta, smooth, from_logits)
    n, d = pred.shape
    rows = block_rows(n, d)
    if n * d <= SERIAL_ELEMENTS:  # on this thread: a parallel launch costs more than the work
        for k in range(-(-n // rows)):
            tversky_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)
        return
    for k in prange(-(-n // rows)):
        tversky_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)


SPEC = LossSpec(
    name="tversky",
    aliases=("tversky_loss",),
    family="overlap",
    summary="Tversky loss: 1 − Tversky index, alpha weighing false positives and beta false negatives.",
    formula=(
        r"l_i = 1 - \frac{I + s}{I + \alpha \sum_j p_{ij}(1 - t_{ij}) + "
        r"\beta \sum_j (1 - p_{ij}) t_{ij} + s},\quad I = \sum_j p_{ij} t_{ij}"
    ),
    params=TverskyParams,
    driver=tversky_batch,
    reference="the formula; a row with denominator 0 has loss 0",
    hessian_note="can be negative (-2 c_j g_j / B in the probabilities; the sigmoid adds g σ'')",
)
