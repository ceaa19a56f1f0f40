"""Mean squared error.

Edges (issue 11 audit): r² overflows past |r| ≈ 1.3e154 (float64; 1.8e19 in float32) where the mean
is past the range: the finiteness check answers a 422 (OutOfDomain), never a wrong number; no
intermediate overflows while the answer is finite. Measured (edge suite, tests/support/exact.py):
float64 0 (exact), float32 3e-8 (one rounding).
"""

from __future__ import annotations

from ..jit import driver, scalar
from ._elementwise import elementwise_rows
from ._spec import Kernel, LossParams


class MseParams(LossParams):
    """`mse` takes no parameters."""


@scalar
def mse_point(p: float, t: float, params: tuple[()]) -> tuple[float, float, float]:
    r"""$l = r^2$, $l' = 2r$, $l'' = 2$ with $r = \hat y - y$."""
    r = p - t
    return r * r, 2.0 * r, 2.0


mse_rows = elementwise_rows(mse_point, "outputs")
mse_batch = driver(mse_rows)


KERNEL = Kernel(MseParams, mse_batch)
