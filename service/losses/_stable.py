"""Numerically stable scalar helpers shared by the kernels."""

from __future__ import annotations

import math

from ._jit import Array, scalar

LOG2 = math.log(2.0)


@scalar
def sign(x: float) -> float:
    """sign(x) with sign(0) = 0: the smallest-magnitude subgradient of |x| at its kink."""
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    return 0.0


@scalar
def log1p_exp(x: float) -> float:
    """log(1 + e^x) (softplus), stable for any finite x: x + log1p(e^-x) for large x."""
    if x > 0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@scalar
def log_sigmoid(x: float) -> float:
    """log σ(x) = −softplus(−x); log(1 − σ(x)) = log_sigmoid(−x), stable for large |x|."""
    return -log1p_exp(-x)


@scalar
def log_cosh(x: float) -> float:
    """log cosh x = |x| + log1p(e^{−2|x|}) − log 2, finite for any finite x (cosh overflows)."""
    a = abs(x)
    return a + math.log1p(math.exp(-2.0 * a)) - LOG2


@scalar
def row_factor(w: Array, i: int, scale: float) -> float:
    """The factor that turns d l_i / d ŷ into the derivative of the reduced value.

    ``w`` is the sample-weight vector, or an empty array when the derivative is of ``l_i`` alone
    (reduction ``none``) or no weights were sent; ``scale`` is 1 for ``sum`` and ``none`` and
    1/weight_sum for ``mean``.
    """
    if w.shape[0] == 0:
        return scale
    return float(w[i] * scale)
