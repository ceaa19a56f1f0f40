"""Cosine similarity loss (negative cosine of the angle between rows)."""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field

from ..jit import SERIAL_ELEMENTS, Array, batch, block_range, block_rows, prange, scalar
from ._spec import LossParams, LossSpec
from ._stable import row_factor


class CosineSimilarityParams(LossParams):
    min_rank: ClassVar[int] = 2

    epsilon: float = Field(1e-7, gt=0, description="floor of the row norms")


@scalar
def cosine_similarity_rows(
    k: int, rows: int,
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    params: tuple[float],
) -> None:  # fmt: skip
    """Block ``k`` of ``cosine_similarity_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    (epsilon,) = params
    n, d = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        sp = 0.0
        st = 0.0
        dot = 0.0
        for j in range(d):
            sp += pred[i, j] * pred[i, j]
            st += targ[i, j] * targ[i, j]
            dot += pred[i, j] * targ[i, j]
        norm_p = math.sqrt(sp)
        dp = max(norm_p, epsilon)
        dt = max(math.sqrt(st), epsilon)
        s = dot / (dp * dt)
        loss[i] = -s
        if want_g or want_h:
            f = row_factor(w, i, scale)
            floored = norm_p <= epsilon
            for j in range(d):
                u = pred[i, j] / dp
                v = targ[i, j] / dt
                if floored:
                    g = -v / dp
                    h = 0.0
                else:
                    g = -(v - u * s) / dp
                    h = (s - 3.0 * u * u * s + 2.0 * u * v) / (dp * dp)
                if want_g:
                    grad[i, j] = g * f
                if want_h:
                    hess[i, j] = h * f


@batch
def cosine_similarity_batch(
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    epsilon: float,
) -> None:  # fmt: skip
    r"""$l_i = -u \cdot v$, $u = \hat y/\max(\|\hat y\|, \varepsilon)$, $v = y/\max(\|y\|, \varepsilon)$.

    With $s = u \cdot v$ and $n = \|\hat y\| > \varepsilon$: $\partial l/\partial \hat y_j =
    -(v_j - u_j s)/n$ and $\partial^2 l/\partial \hat y_j^2 = (s - 3u_j^2 s + 2u_jv_j)/n^2$; below
    the floor the normaliser is constant, so the gradient is $-v_j/\varepsilon$ and the Hessian 0.
    Reference ``keras.losses.cosine_similarity``.
    """
    params = (epsilon,)
    n, d = pred.shape
    rows = block_rows(n, d)
    if n * d <= SERIAL_ELEMENTS:  # on this thread: a parallel launch costs more than the work
        for k in range(-(-n // rows)):
            cosine_similarity_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)
        return
    for k in prange(-(-n // rows)):
        cosine_similarity_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)


SPEC = LossSpec(
    name="cosine_similarity",
    aliases=("cosine_proximity",),
    family="regression",
    summary="Negative cosine similarity between prediction and target rows (rank 2 only).",
    formula=(
        r"l_i = -\sum_j \frac{\hat y_{ij}}{\max(\|\hat y_i\|, \varepsilon)}"
        r"\frac{y_{ij}}{\max(\|y_i\|, \varepsilon)}"
    ),
    params=CosineSimilarityParams,
    driver=cosine_similarity_batch,
    reference="keras.losses.cosine_similarity",
    hessian_note="diagonal of the Hessian; can be negative",
)
