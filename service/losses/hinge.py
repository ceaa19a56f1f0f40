"""Hinge loss for ±1 (or 0/1) labels.

Edges (issue 11 audit): max(0, 1 − t·ŷ) is linear: no overflow (±1e300 answered exactly). Measured:
float64 0.
"""

from __future__ import annotations

from ..jit import SERIAL_ELEMENTS, Array, batch, block_range, block_rows, prange, scalar
from ._binary import SignTargetParams
from ._spec import LossSpec
from ._stable import row_factor


class HingeParams(SignTargetParams):
    """`hinge` takes no parameters; targets are {-1, 1}, or {0, 1} with 0 meaning -1."""


@scalar
def hinge_point(p: float, t: float, params: tuple[()]) -> tuple[float, float, float]:
    r"""$l = \max(0, 1 - t\hat y)$, $l' = -t$ where $1 - t\hat y > 0$ else 0 (0 at the margin), $l'' = 0$."""
    m = 1.0 - t * p
    if m > 0:
        return m, -t, 0.0
    return 0.0, 0.0, 0.0


@scalar
def hinge_rows(
    k: int, rows: int,
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    params: tuple[()],
) -> None:  # fmt: skip
    """Block ``k`` of ``hinge_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    n, d = pred.shape
    inv_d = 1.0 / d
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale) * inv_d
        acc = 0.0
        for j in range(d):
            v, g, h = hinge_point(pred[i, j], targ[i, j], params)
            acc += v
            if want_g:
                grad[i, j] = g * f
            if want_h:
                hess[i, j] = h * f
        loss[i] = acc * inv_d


@batch
def hinge_batch(
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
) -> None:  # fmt: skip
    r"""$l_i = \mathrm{mean}_j \max(0, 1 - t_{ij}\hat y_{ij})$, $t = \pm 1$; reference ``keras.losses.hinge``."""
    params = ()
    n, d = pred.shape
    rows = block_rows(n, d)
    if n * d <= SERIAL_ELEMENTS:  # on this thread: a parallel launch costs more than the work
        for k in range(-(-n // rows)):
            hinge_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)
        return
    for k in prange(-(-n // rows)):
        hinge_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)


SPEC = LossSpec(
    name="hinge",
    aliases=(),
    family="binary",
    summary="Hinge loss for labels in {-1, 1} (or {0, 1}, 0 meaning -1).",
    formula=r"l_i = \frac{1}{D}\sum_j \max(0,\ 1 - t_{ij}\hat y_{ij})",
    params=HingeParams,
    driver=hinge_batch,
    reference="keras.losses.hinge",
    hessian_note="zero everywhere (piecewise linear)",
)
