"""Smooth L1 loss (PyTorch's ``SmoothL1Loss``): Huber divided by ``beta``.

Edges (issue 11 audit): ½r²/β only inside |r| < β; linear outside, so no overflow. A residual of
1e-300 is 0 in float32 (the kink, Hessian 1/β by the convention's branch). Measured: float64 0,
float32 3e-8 (nonzero outputs).
"""

from __future__ import annotations

from pydantic import Field

from ..jit import driver, scalar
from ._elementwise import elementwise_rows
from ._spec import Kernel, LossParams
from ._stable import sign


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


smooth_l1_rows = elementwise_rows(smooth_l1_point)
smooth_l1_batch = driver(smooth_l1_rows, "beta")


KERNEL = Kernel(SmoothL1Params, smooth_l1_batch)
