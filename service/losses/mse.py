"""Mean squared error."""

from __future__ import annotations

from ._jit import Array, batch, prange, scalar
from ._spec import LossParams, LossSpec
from ._stable import row_factor


class MseParams(LossParams):
    """`mse` takes no parameters."""


@scalar
def mse_point(p: float, t: float) -> tuple[float, float, float]:
    r"""$l = r^2$, $l' = 2r$, $l'' = 2$ with $r = \hat y - y$."""
    r = p - t
    return r * r, 2.0 * r, 2.0


@batch
def mse_batch(
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array
) -> None:
    r"""$l_i = \mathrm{mean}_j (\hat y_{ij} - y_{ij})^2$; reference ``torch.nn.functional.mse_loss``."""
    n, d = pred.shape
    inv_d = 1.0 / d
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in prange(n):
        f = row_factor(w, i, scale) * inv_d
        acc = 0.0
        for j in range(d):
            v, g, h = mse_point(pred[i, j], targ[i, j])
            acc += v
            if want_g:
                grad[i, j] = g * f
            if want_h:
                hess[i, j] = h * f
        loss[i] = acc * inv_d


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
