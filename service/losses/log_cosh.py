"""Log-cosh loss.

Edges (issue 11 audit): cosh r overflows at |r| ≈ 710: log cosh r = |r| + log1p(m/2), m = e^{−2|r|}
− 1; its Taylor series below |r| = 0.1 (the sum cancels there); tanh r = −m/(2 + m); sech² r =
4e^{−2|r|}/(1 + e^{−2|r|})², no 1 − tanh² cancellation (exact to 1e-9 relative for |r| ≤ 700, 0
only where the exact value underflows). Measured: float64 4.6e-16, float32 5.2e-8.
"""

from __future__ import annotations

from ..jit import (
    driver,
    inline,
)
from ._elementwise import elementwise_rows
from ._spec import Kernel, LossParams
from ._stable import log_cosh_terms


class LogCoshParams(LossParams):
    """`log_cosh` takes no parameters."""


@inline
def log_cosh_point(p: float, t: float, params: tuple[()]) -> tuple[float, float, float]:
    r"""$\log\cosh r$, $\tanh r$, $1 - \tanh^2 r$ (``log_cosh_terms``: accurate for any finite $r$)."""
    return log_cosh_terms(p - t)


log_cosh_rows = elementwise_rows(log_cosh_point, "column")
log_cosh_batch = driver(log_cosh_rows)


KERNEL = Kernel(LogCoshParams, log_cosh_batch)
