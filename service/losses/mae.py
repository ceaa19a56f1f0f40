"""Mean absolute error.

Edges (issue 11 audit): No intermediate can overflow or underflow (|r|, sign r). Measured: float64
0, float32 3e-8.
"""

from __future__ import annotations

from ..jit import SERIAL_ELEMENTS, Array, batch, block_range, block_rows, prange, scalar
from ._spec import LossParams, LossSpec
from ._stable import row_factor, sign


class MaeParams(LossParams):
    """`mae` takes no parameters."""


@scalar
def mae_point(p: float, t: float, params: tuple[()]) -> tuple[float, float, float]:
    r"""$l = |r|$, $l' = \mathrm{sign}(r)$ (0 at the kink), $l'' = 0$."""
    r = p - t
    return abs(r), sign(r), 0.0


@scalar
def mae_rows(
    k: int, rows: int,
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    params: tuple[()],
) -> None:  # fmt: skip
    """Block ``k`` of ``mae_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    n, d = pred.shape
    inv_d = 1.0 / d
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale) * inv_d
        acc = 0.0
        for j in range(d):
            v, g, h = mae_point(pred[i, j], targ[i, j], params)
            acc += v
            if want_g:
                grad[i, j] = g * f
            if want_h:
                hess[i, j] = h * f
        loss[i] = acc * inv_d


@batch
def mae_batch(
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
) -> None:  # fmt: skip
    r"""$l_i = \mathrm{mean}_j |\hat y_{ij} - y_{ij}|$; reference ``torch.nn.functional.l1_loss``."""
    params = ()
    n, d = pred.shape
    rows = block_rows(n, d)
    if n * d <= SERIAL_ELEMENTS:  # on this thread: a parallel launch costs more than the work
        for k in range(-(-n // rows)):
            mae_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)
        return
    for k in prange(-(-n // rows)):
        mae_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)


SPEC = LossSpec(
    name="mae",
    aliases=("mean_absolute_error", "L1Loss", "l1", "absolute_error"),
    family="regression",
    summary="Mean absolute error.",
    formula=r"l_i = \frac{1}{D}\sum_j |\hat y_{ij} - y_{ij}|",
    params=MaeParams,
    driver=mae_batch,
    reference="torch.nn.functional.l1_loss",
    hessian_note="zero everywhere (undefined at r = 0, returned as 0)",
)
