"""Mean squared error.

Edges (issue 11 audit): r² overflows past |r| ≈ 1.3e154 (float64; 1.8e19 in float32) where the mean
is past the range: the finiteness check answers a 422 (OutOfDomain), never a wrong number; no
intermediate overflows while the answer is finite. Measured (edge suite, tests/support/exact.py):
float64 0 (exact), float32 3e-8 (one rounding).
"""

from __future__ import annotations

from ..jit import SERIAL_ELEMENTS, Array, batch, block_range, block_rows, prange, scalar
from ._spec import LossParams, LossSpec
from ._stable import row_factor


class MseParams(LossParams):
    """`mse` takes no parameters."""


@scalar
def mse_point(p: float, t: float, params: tuple[()]) -> tuple[float, float, float]:
    r"""$l = r^2$, $l' = 2r$, $l'' = 2$ with $r = \hat y - y$."""
    r = p - t
    return r * r, 2.0 * r, 2.0


@scalar
def mse_rows(
    k: int, rows: int,
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    params: tuple[()],
) -> None:  # fmt: skip
    """Block ``k`` of ``mse_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    n, d = pred.shape
    block = block_range(k, rows, n)
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    if d == 1 and w.shape[0] == 0:
        # (N,) unweighted: one flat loop per output, each vectorised with plain stores. In one
        # loop an `if` around a store becomes a masked vector store, and into an empty output the
        # flat indices run onto unmapped pages, where even masked-off stores take microcode's
        # slow path (mse at 1e7: 75 ms instead of 10). The block's inputs stay in L2 meanwhile.
        p, t = pred.reshape(-1), targ.reshape(-1)
        for i in block:
            # 0.0 +: the bits of the row mean below (never −0.0)
            loss[i] = 0.0 + mse_point(p[i], t[i], params)[0]
        if want_g:
            g1 = grad.reshape(-1)
            for i in block:
                g1[i] = mse_point(p[i], t[i], params)[1] * scale
        if want_h:
            h1 = hess.reshape(-1)
            for i in block:
                h1[i] = mse_point(p[i], t[i], params)[2] * scale
        return
    inv_d = 1.0 / d
    for i in block:
        f = row_factor(w, i, scale) * inv_d
        acc = 0.0
        for j in range(d):
            v, g, h = mse_point(pred[i, j], targ[i, j], params)
            acc += v
            if want_g:
                grad[i, j] = g * f
            if want_h:
                hess[i, j] = h * f
        loss[i] = acc * inv_d


@batch
def mse_batch(
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
) -> None:  # fmt: skip
    r"""$l_i = \mathrm{mean}_j (\hat y_{ij} - y_{ij})^2$; reference ``torch.nn.functional.mse_loss``."""
    params = ()
    n, d = pred.shape
    rows = block_rows(n, d)
    if n * d <= SERIAL_ELEMENTS:  # on this thread: a parallel launch costs more than the work
        for k in range(-(-n // rows)):
            mse_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)
        return
    for k in prange(-(-n // rows)):
        mse_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)


SPEC = LossSpec(
    name="mse",
    aliases=("mean_squared_error", "MSELoss", "squared_error"),
    family="regression",
    summary="Mean squared error.",
    formula=r"l_i = \frac{1}{D}\sum_j (\hat y_{ij} - y_{ij})^2",
    params=MseParams,
    driver=mse_batch,
    reference="torch.nn.functional.mse_loss",
)
