"""Smooth L1 loss (PyTorch's ``SmoothL1Loss``): Huber divided by ``beta``.

Edges (issue 11 audit): ½r²/β only inside |r| < β; linear outside, so no overflow. A residual of
1e-300 is 0 in float32 (the kink, Hessian 1/β by the convention's branch). Measured: float64 0,
float32 3e-8 (nonzero outputs).
"""

from __future__ import annotations

from pydantic import Field

from ..jit import SERIAL_ELEMENTS, Array, batch, block_range, block_rows, prange, scalar
from ._spec import LossParams, LossSpec
from ._stable import row_factor, sign


class SmoothL1Params(LossParams):
    beta: float = Field(1.0, ge=0, description="width of the quadratic region; 0 gives L1")


@scalar
def smooth_l1_point(p: float, t: float, params: tuple[float]) -> tuple[float, float, float]:
    r"""$\tfrac12 r^2/\beta$ if $|r| < \beta$ else $|r| - \tfrac12\beta$ ($|r|$ at $\beta = 0$)."""
    (beta,) = params
    r = p - t
    a = abs(r)
    if a < beta:
        return 0.5 * r * r / beta, r / beta, 1.0 / beta
    return a - 0.5 * beta, sign(r), 0.0


@scalar
def smooth_l1_rows(
    k: int, rows: int,
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    params: tuple[float],
) -> None:  # fmt: skip
    """Block ``k`` of ``smooth_l1_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    n, d = pred.shape
    inv_d = 1.0 / d
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale) * inv_d
        acc = 0.0
        for j in range(d):
            v, g, h = smooth_l1_point(pred[i, j], targ[i, j], params)
            acc += v
            if want_g:
                grad[i, j] = g * f
            if want_h:
                hess[i, j] = h * f
        loss[i] = acc * inv_d


@batch
def smooth_l1_batch(
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    beta: float,
) -> None:  # fmt: skip
    r"""$l_i = \mathrm{mean}_j$ smooth-L1; reference ``torch.nn.functional.smooth_l1_loss``."""
    params = (beta,)
    n, d = pred.shape
    rows = block_rows(n, d)
    if n * d <= SERIAL_ELEMENTS:  # on this thread: a parallel launch costs more than the work
        for k in range(-(-n // rows)):
            smooth_l1_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)
        return
    for k in prange(-(-n // rows)):
        smooth_l1_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)


SPEC = LossSpec(
    name="smooth_l1",
    aliases=("SmoothL1Loss",),
    family="regression",
    summary="Smooth L1 loss: squared error scaled by 1/beta below beta, absolute error above.",
    formula=(
        r"l_i = \frac{1}{D}\sum_j \begin{cases} \tfrac12 r_{ij}^2/\beta & |r_{ij}| < \beta \\"
        r" |r_{ij}| - \tfrac12\beta & \text{otherwise} \end{cases}"
    ),
    params=SmoothL1Params,
    driver=smooth_l1_batch,
    reference="torch.nn.functional.smooth_l1_loss",
    hessian_note="1[|r| < beta] / (beta D): zero in the linear region",
)
