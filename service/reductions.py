"""none / sum / mean with the normaliser of SPEC section 4, and the factor that scales gradients.

Sums run over fixed blocks of rows, each block summed in a fixed order and the block sums added
exactly (``math.fsum``), so a reduction gives the same bits whatever the number of threads or how
``prange`` split the work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .jit import SERIAL_ELEMENTS, Array, batch, prange, scalar

BLOCK = 4096


@scalar
def tree8(x: Array, i: int) -> float:
    """x_i + … + x_{i+7} as a balanced tree: three dependent additions instead of seven."""
    low = (x[i] + x[i + 1]) + (x[i + 2] + x[i + 3])
    return float(low + ((x[i + 4] + x[i + 5]) + (x[i + 6] + x[i + 7])))


@scalar
def weighted_tree8(x: Array, w: Array, i: int) -> float:
    """w_i·x_i + … + w_{i+7}·x_{i+7} as a balanced tree."""
    low = (w[i] * x[i] + w[i + 1] * x[i + 1]) + (w[i + 2] * x[i + 2] + w[i + 3] * x[i + 3])
    high = (w[i + 4] * x[i + 4] + w[i + 5] * x[i + 5]) + (w[i + 6] * x[i + 6] + w[i + 7] * x[i + 7])
    return float(low + high)


@scalar
def block_sum(values: Array, w: Array, b: int) -> float:
    """``Σ_{i in block b} w_i·values_i`` (``w`` empty: weights 1) in a fixed order: groups of eight
    rows summed as balanced trees, the groups and the last rows added in row order.

    One running sum waits for each addition (about four cycles); the trees let eight values in
    per wait, so the sum keeps up with memory.
    """
    n = values.shape[0]
    i = b * BLOCK
    stop = min(n, i + BLOCK)
    s = 0.0
    if w.shape[0] == 0:  # two loops: no test of the weights per row
        while i + 8 <= stop:
            s += tree8(values, i)
            i += 8
        while i < stop:
            s += values[i]
            i += 1
        return s
    while i + 8 <= stop:
        s += weighted_tree8(values, w, i)
        i += 8
    while i < stop:
        s += w[i] * values[i]
        i += 1
    return s


@batch
def block_sums(values: Array, w: Array, out: Array) -> None:
    """``out[b]`` = the sum of block b; on this thread up to ``SERIAL_ELEMENTS`` (see ``service.jit``)."""
    if values.shape[0] <= SERIAL_ELEMENTS:
        for b in range(out.shape[0]):
            out[b] = block_sum(values, w, b)
        return
    for b in prange(out.shape[0]):
        out[b] = block_sum(values, w, b)


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
