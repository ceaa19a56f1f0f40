"""Log-cosh loss."""

from __future__ import annotations

import math

from ._jit import Array, batch, prange, scalar
from ._spec import LossParams, LossSpec
from ._stable import log_cosh, row_factor


class LogCoshParams(LossParams):
    """`log_cosh` takes no parameters."""


@scalar
def log_cosh_point(p: float, t: float) -> tuple[float, float, float]:
    r"""$\log\cosh r$ (stable for any finite $r$), $\tanh r$, $1 - \tanh^2 r$."""
    r = p - t
    th = math.tanh(r)
    return log_cosh(r), th, 1.0 - th * th


@batch
def log_cosh_batch(
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array
) -> None:
    r"""$l_i = \mathrm{mean}_j \log\cosh(\hat y_{ij} - y_{ij})$; reference ``keras.losses.log_cosh``."""
    n, d = pred.shape
    inv_d = 1.0 / d
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in prange(n):
        f = row_factor(w, i, scale) * inv_d
        acc = 0.0
        for j in range(d):
            v, g, h = log_cosh_point(pred[i, j], targ[i, j])
            acc += v
            if want_g:
                grad[i, j] = g * f
            if want_h:
                hess[i, j] = h * f
        loss[i] = acc * inv_d


SPEC = LossSpec(
    name="log_cosh",
    aliases=("logcosh",),
    family="regression",
    summary="Log-cosh loss: about r^2/2 for small residuals and |r| - log 2 for large ones.",
    formula=r"l_i = \frac{1}{D}\sum_j \log\cosh(\hat y_{ij} - y_{ij})",
    params=LogCoshParams,
    driver=log_cosh_batch,
    reference="keras.losses.log_cosh",
)
