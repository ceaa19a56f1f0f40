"""none / sum / mean with the normaliser of SPEC section 4, and the factor that scales gradients.

Sums run over fixed blocks of rows, each block summed in order and the block sums added in order,
so a reduction gives the same bits whatever the number of threads or how ``prange`` split the work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .losses._jit import Array, batch, prange

BLOCK = 4096


@batch
def block_sums(values: Array, w: Array, out: Array) -> None:
    """``out[b] = Σ_{i in block b} w_i·values_i`` (``w`` empty: weights 1), in row order."""
    n = values.shape[0]
    weighted = w.shape[0] > 0
    for b in prange(out.shape[0]):
        s = 0.0
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            if weighted:
                s += w[i] * values[i]
            else:
                s += values[i]
        out[b] = s


def weighted_sum(values: Array, w: Array) -> float:
    """Σ w_i·values_i in float64, deterministic (see the module docstring)."""
    out = np.empty(-(-values.shape[0] // BLOCK), dtype=np.float64)
    block_sums(values, w, out)
    return math.fsum(out)


@dataclass(frozen=True)
class Plan:
    """How one request reduces: the normaliser, and what the driver scales derivatives by."""

    reduction: str
    weight_sum: float
    kernel_weights: Array  # empty: no per-row weight in the derivatives
    scale: float

    def value(self, total: float) -> float | None:
        """The reduced value from ``total = Σ w_i l_i``."""
        if self.reduction == "none":
            return None
        if self.reduction == "sum":
            return total
        return total / self.weight_sum if self.weight_sum > 0 else 0.0


def plan(reduction: str, n: int, weights: Array | None, kappa: Array | None, empty: Array) -> Plan:
    """Plan a reduction of ``n`` rows: weight_sum = Σ w_i·κ_i (w, κ default to 1)."""
    if kappa is None:
        weight_sum = float(n) if weights is None else weighted_sum(weights, empty)
    else:
        weight_sum = weighted_sum(kappa, empty if weights is None else weights)
    if reduction == "none":
        return Plan(reduction, weight_sum, empty, 1.0)
    kernel_weights = empty if weights is None else weights
    if reduction == "sum":
        return Plan(reduction, weight_sum, kernel_weights, 1.0)
    scale = 1.0 / weight_sum if weight_sum > 0 else 0.0
    return Plan(reduction, weight_sum, kernel_weights, scale)
