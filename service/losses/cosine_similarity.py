"""Cosine similarity loss (negative cosine of the angle between rows).

Edges (issue 11 audit): Σ x² overflows from |x| ≈ 1.3e154 (float64; 1.8e19 for float32 products)
and loses its digits below 1e-154: a row whose sum of squares leaves [1e-290, 1e290] is divided by
its max |x| and summed again (sums in [1, D]; ordinary rows keep the one pass); the gradient and
Hessian divide by the max last, so ‖x‖ itself may overflow without harm; the floor ε is compared
with max·√Σ. Before: [[2e154, 1]] vs [[1, 1]] gave −0.0 with gradient 0 (true −0.7071). Measured:
float64 1e-15, float32 4.4e-8.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field

from ..jit import RowArrays, block_range, driver, scalar
from ._spec import Kernel, LossParams
from ._stable import row_factor


class CosineSimilarityParams(LossParams):
    min_rank: ClassVar[int] = 2

    epsilon: float = Field(1e-7, gt=0, description="floor of the row norms")


# Sums of squares in this range lost nothing to overflow or underflow (float64 sums of float64
# products): the row is used as it is; outside it, scaled by its max |x| first
SUMS_SAFE_BELOW = 1e-290
SUMS_SAFE_ABOVE = 1e290


@scalar
def cosine_similarity_rows(k: int, rows: int, io: RowArrays, params: tuple[float]) -> None:
    """Block ``k`` of ``cosine_similarity_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    pred, targ, w, scale, loss, grad, hess = io
    (epsilon,) = params
    n, d = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        sp = 0.0
        st = 0.0
        dot = 0.0
        for j in range(d):
            a = float(pred[i, j])  # float64 products: float32 squares overflow from 1.8e19
            b = float(targ[i, j])
            sp += a * a
            st += b * b
            dot += a * b
        mp = 1.0  # 1: the row as it is
        mt = 1.0
        if not (SUMS_SAFE_BELOW < sp < SUMS_SAFE_ABOVE and SUMS_SAFE_BELOW < st < SUMS_SAFE_ABOVE):
            # a sum of squares overflowed or lost its digits (|x| past 1e145 or below 1e-145):
            # again with each row divided by its max |x|, which puts the sums in [1, D]
            # (an all-zero row is divided by 1)
            mp = 0.0
            mt = 0.0
            for j in range(d):
                mp = max(mp, abs(pred[i, j]))
                mt = max(mt, abs(targ[i, j]))
            mp = mp if mp > 0.0 else 1.0
            mt = mt if mt > 0.0 else 1.0
            sp = 0.0
            st = 0.0
            dot = 0.0
            for j in range(d):
                a = pred[i, j] / mp
                b = targ[i, j] / mt
                sp += a * a
                st += b * b
                dot += a * b
        rp = math.sqrt(sp)  # ‖ŷ‖ / mp
        rt = math.sqrt(st)
        # ‖x‖ = m·r is inf past the float range: above any floor, as it should be
        floored = mp * rp <= epsilon
        # u_j = cu·ŷ_j/mp: ŷ_j/ε below the floor, (ŷ_j/mp)/(‖ŷ‖/mp) above it; v likewise
        cu = mp / epsilon if floored else 1.0 / rp
        cv = mt / epsilon if mt * rt <= epsilon else 1.0 / rt
        s = dot * cu * cv
        loss[i] = -s
        if want_g or want_h:
            f = row_factor(w, i, scale)
            # ordinary rows (mp = mt = 1): products by reciprocals; scaled rows divide, since
            # 1/mp overflows for a subnormal max
            ku = cu / mp if mp == 1.0 else 0.0
            kv = cv / mt if mt == 1.0 else 0.0
            inv = 1.0 / rp if mp == 1.0 else 0.0
            for j in range(d):
                u = pred[i, j] * ku if mp == 1.0 else pred[i, j] / mp * cu
                v = targ[i, j] * kv if mt == 1.0 else targ[i, j] / mt * cv
                if floored:
                    g = -v / epsilon
                    h = 0.0
                elif mp == 1.0:
                    g = -(v - u * s) * inv
                    h = (s - 3.0 * u * u * s + 2.0 * u * v) * (inv * inv)
                else:
                    # −(v − u s)/‖ŷ‖ and (s − 3u²s + 2uv)/‖ŷ‖², dividing by mp last: ‖ŷ‖ itself
                    # may overflow (or ‖ŷ‖² underflow) where the quotients are numbers
                    g = -((v - u * s) / rp) / mp
                    h = (((s - 3.0 * u * u * s + 2.0 * u * v) / (rp * rp)) / mp) / mp
                if want_g:
                    grad[i, j] = g * f
                if want_h:
                    hess[i, j] = h * f


cosine_similarity_batch = driver(cosine_similarity_rows, "epsilon")


KERNEL = Kernel(CosineSimilarityParams, cosine_similarity_batch)
