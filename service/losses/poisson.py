"""Poisson negative log-likelihood (PyTorch's ``PoissonNLLLoss``).

Edges (issue 11 audit): e^ŷ (log_input) overflows past ŷ ≈ 709.78 where the exact loss is past the
range: a 422; y·log(ŷ + ε) and Stirling's term are finite for finite inputs. Measured: float64
4e-16, float32: every float32 edge is past the range (422).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from ..errors import OutOfDomain
from ..jit import Array, driver, scalar
from ._elementwise import elementwise_rows
from ._spec import Kernel, LossParams

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class PoissonParams(LossParams):
    log_input: bool = Field(False, description="predictions are log-rates instead of rates")
    full: bool = Field(False, description="add the Stirling term y log y - y + log(2 pi y)/2")
    epsilon: float = Field(1e-7, ge=0, description="added to the rate inside the log")

    def check_domain(self, predictions: Array, targets: Array) -> None:
        """Targets are counts (>= 0); rates are >= 0 unless they are log-rates."""
        if targets.size and float(np.min(targets)) < 0:
            raise OutOfDomain(
                "poisson targets must be non-negative counts",
                errors=[(("targets",), "must be >= 0")],
            )
        if not self.log_input and predictions.size and float(np.min(predictions)) < 0:
            raise OutOfDomain(
                "poisson predictions are rates and must be non-negative; send log-rates with "
                "params.log_input: true",
                errors=[(("predictions",), "must be >= 0")],
            )


@scalar
def poisson_point(
    p: float, t: float, params: tuple[bool, bool, float]
) -> tuple[float, float, float]:
    r"""$\hat y - y\log(\hat y + \varepsilon)$, or $e^{\hat y} - y\hat y$ with ``log_input``.

    ``full`` adds the Stirling term $y\log y - y + \tfrac12\log(2\pi y)$ where $y > 1$; it does
    not depend on $\hat y$, so the derivatives are unchanged.
    """
    log_input, full, epsilon = params
    if log_input:
        e = math.exp(p)
        v, g, h = e - t * p, e - t, e
    else:
        q = p + epsilon
        v, g, h = p - t * math.log(q), 1.0 - t / q, t / (q * q)
    if full and t > 1.0:
        v += t * math.log(t) - t + 0.5 * math.log(t) + _HALF_LOG_2PI
    return v, g, h


poisson_rows = elementwise_rows(poisson_point)
poisson_batch = driver(poisson_rows, "log_input", "full", "epsilon")


KERNEL = Kernel(PoissonParams, poisson_batch)
