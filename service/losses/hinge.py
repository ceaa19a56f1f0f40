"""Hinge loss for ±1 (or 0/1) labels.

Edges (issue 11 audit): max(0, 1 − t·ŷ) is linear: no overflow (±1e300 answered exactly). Measured:
float64 0.
"""

from __future__ import annotations

from ..jit import driver, scalar
from ._binary import SignTargetParams
from ._elementwise import elementwise_rows
from ._spec import Kernel


class HingeParams(SignTargetParams):
    """`hinge` takes no parameters; targets are {-1, 1}, or {0, 1} with 0 meaning -1."""


@scalar
def hinge_point(p: float, t: float, params: tuple[()]) -> tuple[float, float, float]:
    r"""$l = \max(0, 1 - t\hat y)$, $l' = -t$ where $1 - t\hat y > 0$ else 0 (0 at the margin), $l'' = 0$."""
    m = 1.0 - t * p
    if m > 0:
        return m, -t, 0.0
    return 0.0, 0.0, 0.0


hinge_rows = elementwise_rows(hinge_point)
hinge_batch = driver(hinge_rows)


KERNEL = Kernel(HingeParams, hinge_batch)
