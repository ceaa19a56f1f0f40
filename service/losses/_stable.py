"""Numerically stable scalar helpers shared by the kernels, and how they read targets."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba.extending import overload

from ..jit import Array, inline, scalar
from ._vmath import exp, expm1_small, log1p_near

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


# Below this |x|, e^{−2|x|} − 1 needs expm1; above it, e^{−2|x|} ≤ 0.497 and e − 1 is exact to
# an ulp of the result, so the exp that sech² needs anyway gives it
EXPM1_BELOW = 0.35
# Below this |x|, log cosh x is its Taylor series to x^10 (relative error below 2e-13: the next
# term is 691x^12/935550); |x| + log1p(m/2) cancels to a relative error of about 4e-16/|x| there
# (2e-8 at |x| = 1e-8)
SERIES_BELOW = 0.1


@inline
def log_cosh_terms(x: float) -> tuple[float, float, float]:
    """(log cosh x, tanh x, sech² x = 1 − tanh² x) for any finite x, from one exp and one
    log1p (and one expm1 for |x| < ``EXPM1_BELOW``), where libm's tanh would be a third call.

    With e = e^{−2|x|} and m = e − 1 in (−1, 0]: cosh x = e^{|x|}(1 + m/2), so
    log cosh x = |x| + log1p(m/2) (cosh itself overflows), tanh |x| = −m/(2 + m) and
    sech² x = 4e/(1 + e)². For small |x| the sum cancels in ulps of |x|, where
    |x| + log1p(e) − log 2 cancels in ulps of log 2 (relative error 1e−10 at worst instead of
    4e−5), and 4e/(1 + e)² keeps its relative accuracy where 1 − tanh² x cancels to nothing
    (|x| > 19 gives 0 instead of 4e^{−2|x|}). Below ``SERIES_BELOW`` the value is its Taylor
    series, where the sum above cancels. ``_vmath``'s functions and selects, so that a loop over
    it vectorises.
    """
    a = abs(x)
    e = exp(-2.0 * a)
    m = expm1_small(-2.0 * min(a, EXPM1_BELOW)) if a < EXPM1_BELOW else e - 1.0
    t = abs(m) / (2.0 + m)  # −m ≥ 0, and +0 at x = 0
    z = x * x
    series = z * (
        0.5 + z * (-1.0 / 12.0 + z * (1.0 / 45.0 + z * (-17.0 / 2520.0 + z * (31.0 / 14175.0))))
    )
    return (
        series if a < SERIES_BELOW else a + log1p_near(0.5 * m),
        t if x >= 0 else -t,
        4.0 * e / ((1.0 + e) * (1.0 + e)),
    )


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


@scalar
def through_row_sum(
    d: float, e: float, q: float, sum_d: float, sum_e: float, s: float
) -> tuple[float, float]:
    """d/dp_j and d²/dp_j² of Σ_k φ_k(q_k) for a row renormalised as q = p/s, s = Σ_k p_k.

    With d = φ'_j(q_j), e = φ''_j(q_j), sum_d = Σ_k q_k φ'_k(q_k) and sum_e = Σ_k q_k² φ''_k(q_k)
    (0 for the entries whose clipping is active): (d − sum_d)/s and
    (e(1 − 2q_j) − 2(d − sum_d) + sum_e)/s². The probability-input branches of cross_entropy,
    focal and poly1_cross_entropy share it.
    """
    g = d - sum_d
    return g / s, (e * (1.0 - 2.0 * q) - 2.0 * g + sum_e) / (s * s)


@scalar
def through_softmax(
    p: float, big_p: float, big_q: float, sum_p: float, sum_q: float
) -> tuple[float, float]:
    """d/dz_j and d²/dz_j² of Σ_c f_c(p_c) for p = softmax(z).

    With P_c = p_c f'_c(p_c), Q_c = p_c² f''_c(p_c) and their row sums: P_j − p_j ΣP and
    (1 − 2p_j)(P_j − p_j ΣP + Q_j) + p_j² ΣQ. The logit branches of generalized_cross_entropy and
    poly1_cross_entropy share it (focal's top class needs its own Hessian).
    """
    g = big_p - p * sum_p
    return g, (1.0 - 2.0 * p) * (g + big_q) + p * p * sum_q


@scalar
def row_sum(x: Array, i: int) -> float:
    """Σ_j x_ij of row i."""
    total = 0.0
    for j in range(x.shape[1]):
        total += x[i, j]
    return total


@scalar
def row_max(x: Array, i: int) -> float:
    """max_j x_ij of row i, in the array's dtype."""
    top: float = x[i, 0]
    for j in range(1, x.shape[1]):
        top = max(top, x[i, j])
    return top


@scalar
def log_sum_exp_row(z: Array, i: int) -> tuple[float, float]:
    """(top, log Σ_j e^{z_ij − top}) of logit row i, top = max_j z_ij: their sum is the row's
    log-sum-exp, and log softmax_ij = (z_ij − top) − the second, which neither overflows nor
    cancels for any finite logit."""
    top = row_max(z, i)
    total = 0.0
    for j in range(z.shape[1]):
        total += math.exp(z[i, j] - top)
    return top, math.log(total)


@scalar
def smoothed_labels(
    i: int, classes: int, label_smoothing: float, ignored: Array
) -> tuple[float, float]:
    """(keep, spread) with y'_ij = keep·y_ij + spread: y' = (1 − s)y + s/C for every sample,
    whatever its row sums to (PyTorch, Keras and optax agree), and (0, 0) for a sample that
    ``ignored`` masks (``ignore_index``: loss 0, gradient 0), which is masked, not smoothed.
    ``ignored`` is (N,) with 1 where a sample is ignored, or empty when none is."""
    if ignored.shape[0] > 0 and ignored[i] != 0:
        return 0.0, 0.0
    return 1.0 - label_smoothing, label_smoothing / classes


@scalar
def softmax_row(z: Array, i: int) -> tuple[float, int, float]:
    """(top, arg, rest) of logit row i: its maximum, the maximum's first index and
    rest = Σ_{j≠arg} e^{z_ij − top}, so that Σ_j e^{z_ij − top} = 1 + rest (nothing overflows)."""
    top = z[i, 0]
    arg = 0
    for j in range(1, z.shape[1]):
        if z[i, j] > top:
            top = z[i, j]
            arg = j
    rest = 0.0
    for j in range(z.shape[1]):
        if j != arg:
            rest += math.exp(z[i, j] - top)
    return top, arg, rest


@scalar
def softmax_entry(x: float, top: float, rest: float, is_top: bool) -> tuple[float, float, float]:
    """(p, log p, 1 − p) of one softmax entry from its row's ``softmax_row``, finite for any
    finite logits: log p = (x − top) − log1p(rest), and 1 − p is a sum of the other entries
    (no cancellation when p is close to 1)."""
    total = 1.0 + rest
    if is_top:
        return 1.0 / total, -math.log1p(rest), rest / total
    e = math.exp(x - top)
    return e / total, (x - top) - math.log1p(rest), (total - e) / total


# --- targets: (N, C) rows or (N,) class indices -------------------------------------------------


def target_at(targ: Array, i: int, j: int) -> float:
    """y_ij, the target of sample i for class j, whichever form the targets have: (N, C) rows
    (one-hot or soft) give ``targ[i, j]``; (N,) int64 class indices give 1 where ``targ[i]`` is
    j and 0 elsewhere, so an index outside [0, C) (an ignored sample) is an all-zero row and no
    one-hot (N, C) matrix is ever made. Every multiclass kernel reads its targets through it, so
    one written kernel serves both forms with the same arithmetic: 1.0 and 0.0 are exactly the
    values a one-hot row holds, hence the same bits out.

    In numba code this is an overload inlined into the caller's IR (``_target_at``), the branch
    chosen once per compiled signature from the array's rank; this Python body is its meaning
    (and what the interpreter runs)."""
    if targ.ndim == 1:
        return 1.0 if targ[i] == j else 0.0
    return float(targ[i, j])


def _index_target(targ: Any, i: Any, j: Any) -> float:
    return np.float64(targ[i] == j)  # no branch: IR inlining warns about a ternary's phi


def _row_target(targ: Any, i: Any, j: Any) -> Any:
    return targ[i, j]  # in the rows' own dtype, as the kernels always read it


def _target_at(targ: Any, i: Any, j: Any) -> Callable[[Any, Any, Any], Any]:
    """numba's implementation of ``target_at`` for the numba types of its arguments (numba
    wants the implementations' parameters, annotations included, to be the typing function's)."""
    return _index_target if targ.ndim == 1 else _row_target


overload(target_at, inline="always")(_target_at)


@scalar
def target_sum(targ: Array, i: int, classes: int) -> float:
    """Σ_j y_ij of row i's targets (``target_at``), accumulated in float64."""
    total = 0.0
    for j in range(classes):
        total += target_at(targ, i, j)
    return total
