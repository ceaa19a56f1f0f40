"""Huber loss: quadratic near zero, linear beyond ``delta``."""

from __future__ import annotations

from pydantic import Field

from ._jit import Array, batch, prange, scalar
from ._spec import LossParams, LossSpec
from ._stable import row_factor, sign


class HuberParams(LossParams):
    delta: float = Field(1.0, gt=0, description="where the loss turns from quadratic to linear")


@scalar
def huber_point(p: float, t: float, delta: float) -> tuple[float, float, float]:
    r"""$\tfrac12 r^2$ if $|r| \le \delta$ else $\delta(|r| - \tfrac12\delta)$; $l'' = 1[|r| \le \delta]$."""
    r = p - t
    a = abs(r)
    if a <= delta:
        return 0.5 * r * r, r, 1.0
    return delta * (a - 0.5 * delta), delta * sign(r), 0.0


@batch
def huber_batch(
    pred: Array,
    targ: Array,
    w: Array,
    scale: float,
    loss: Array,
    grad: Array,
    hess: Array,
    delta: float,
) -> None:
    r"""$l_i = \mathrm{mean}_j\, \mathrm{huber}_\delta(r_{ij})$; reference ``torch.nn.functional.huber_loss``."""
    n, d = pred.shape
    inv_d = 1.0 / d
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in prange(n):
        f = row_factor(w, i, scale) * inv_d
        acc = 0.0
        for j in range(d):
            v, g, h = huber_point(pred[i, j], targ[i, j], delta)
            acc += v
            if want_g:
                grad[i, j] = g * f
            if want_h:
                hess[i, j] = h * f
        loss[i] = acc * inv_d


SPEC = LossSpec(
    name="huber",
    aliases=("HuberLoss",),
    family="regression",
    summary="Huber loss: squared error for small residuals, absolute error beyond delta.",
    formula=(
        r"l_i = \frac{1}{D}\sum_j \begin{cases} \tfrac12 r_{ij}^2 & |r_{ij}| \le \delta \\"
        r" \delta(|r_{ij}| - \tfrac12\delta) & \text{otherwise} \end{cases}"
    ),
    params=HuberParams,
    driver=huber_batch,
    reference="torch.nn.functional.huber_loss",
    hessian_note="1[|r| <= delta] / D: zero in the linear region",
)
