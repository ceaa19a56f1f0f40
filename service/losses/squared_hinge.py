"""Squared hinge loss for ±1 (or 0/1) labels.

Edges (issue 11 audit): The square overflows past 1e154 only where the exact loss is past the
range: a 422. Measured: float64 0 on answered edges.
"""

from __future__ import annotations

from ..jit import driver, scalar
from ._binary import SignTargetParams
from ._elementwise import elementwise_rows
from ._spec import Kernel


class SquaredHingeParams(SignTargetParams):
    """`squared_hinge` takes no parameters; targets are {-1, 1}, or {0, 1} with 0 meaning -1."""


@scalar
def squared_hinge_point(p: float, t: float, params: tuple[()]) -> tuple[float, float, float]:
    r"""$l = m^2$, $l' = -2tm$, $l'' = 2t^2$ where $m = 1 - t\hat y > 0$; all 0 otherwise."""
    m = 1.0 - t * p
    if m > 0:
        return m * m, -2.0 * t * m, 2.0 * t * t
    return 0.0, 0.0, 0.0


squared_hinge_rows = elementwise_rows(squared_hinge_point)
squared_hinge_batch = driver(squared_hinge_rows)


KERNEL = Kernel(SquaredHingeParams, squared_hinge_batch)
