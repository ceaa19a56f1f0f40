"""The softmax cross-entropy row shared by the margin softmaxes (additive_margin_softmax,
additive_angular_margin_softmax): class scores d_j (cosines, shifted), the target's replaced by
a margin-transformed d_y, all times the scale s, against one target class y.

With z = s·d: l = −log softmax(z)_y; ∂l/∂d_j = s·p_j off the target and −s(1 − p_y)·φ' on it,
φ' being the slope of d_y in the target's cosine; ∂²l/∂d_j² = s²p_j(1 − p_j) off the target
and s²p_y(1 − p_y)φ'² − s(1 − p_y)φ'' on it. The row's largest score gives 1/(1 + rest) and the
others e/(1 + rest) with rest the sum of the others' exponentials, and 1 − p is formed from
``rest`` (no cancellation where p → 1), as ``_stable.softmax_entry`` does.
"""

from __future__ import annotations

import math

from ..jit import Array, scalar
from ._stable import target_at


@scalar
def margin_softmax_row(
    pred: Array, i: int, y: int, shift: float, target: float, slope: float, curve: float,
    s: float, f: float, loss: Array, grad: Array, hess: Array,
) -> None:  # fmt: skip
    """Row i: d_j = pred[i, j] − ``shift`` for j ≠ y, d_y = ``target`` (already shifted), with
    the target's ``slope`` φ' and ``curve`` φ''; writes l_i and, when asked for (non-empty),
    the derivatives times the row factor ``f``."""
    c = pred.shape[1]
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    top = target
    arg = y
    for j in range(c):
        if j != y and pred[i, j] - shift > top:
            top = pred[i, j] - shift
            arg = j
    rest = 0.0
    for j in range(c):
        if j != arg:
            d = target if j == y else pred[i, j] - shift
            rest += math.exp(s * (d - top))
    total = 1.0 + rest
    log_total = math.log1p(rest)
    for j in range(c):
        d = target if j == y else pred[i, j] - shift
        if j == arg:
            p = 1.0 / total
            log_p = -log_total
            q = rest / total
        else:
            e = math.exp(s * (d - top))
            p = e / total
            log_p = s * (d - top) - log_total
            q = (total - e) / total
        if j == y:
            loss[i] = -log_p
            # q = 0 (one class, or the others' mass underflowing): the loss is flat in d_y
            if want_g:
                grad[i, j] = -s * q * slope * f if q > 0.0 else 0.0
            if want_h:
                hess[i, j] = (s * s * p * q * slope * slope - s * q * curve) * f if q > 0.0 else 0.0
        else:
            if want_g:
                grad[i, j] = s * p * f
            if want_h:
                hess[i, j] = s * s * p * q * f


@scalar
def target_class(targ: Array, i: int, c: int) -> int:
    """The class of sample i of c classes: its one-hot target row (``require_one_hot`` checked
    it) or its class index, read alike through ``target_at``."""
    y = 0
    for j in range(c):
        if target_at(targ, i, j) != 0.0:
            y = j
    return y
