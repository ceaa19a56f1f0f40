"""Binary (multilabel) cross-entropy, from logits or from probabilities, with ``pos_weight``.

Edges (issue 11 audit): Logits: log σ(z) = −softplus(−z) stable for any finite z; probabilities
clipped to [ε, 1−ε] (Keras) before logs; y' = y(1 − s) + s/2 (as LOSSES.md). Measured: float64
5.3e-10 (the clip's ε = 1e-7 in float64 rounding of log(1 − ε)), float32 5.6e-8.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from ..errors import InvalidParams
from ..jit import Array, RowArrays, block_range, driver, inline, scalar
from ._binary import BinarySmoothing, SigmoidLogits, sigmoid_logs
from ._checks import require_domain
from ._spec import (
    ClipEpsilon,
    ComputeDtype,
    Kernel,
    LossParams,
    Memo,
    NonNegative,
    Prepared,
    readonly,
)
from ._stable import row_factor


class BinaryCrossEntropyParams(LossParams):
    host_fields: ClassVar[frozenset[str]] = frozenset({"pos_weight"})

    from_logits: SigmoidLogits = False
    label_smoothing: BinarySmoothing = 0.0
    pos_weight: NonNegative | Annotated[list[NonNegative], Field(min_length=1)] | None = Field(
        None,
        description="weight P of the positive term: one number, or one per column (D entries); "
        "null means 1",
    )
    epsilon: ClipEpsilon = 1e-7

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """The driver takes ``pos_weight`` as (D,) weights in the compute dtype."""
        prepared = super().prepare(name, predictions, targets, dtype, memo)
        columns = prepared.targets.shape[1]  # rank-1 inputs are one column
        weights = readonly(self._pos_weights(columns).astype(dtype))
        return replace(prepared, kernel_params={**prepared.kernel_params, "pos_weight": weights})

    def _pos_weights(self, columns: int) -> Array:
        if self.pos_weight is None:
            return np.ones(columns)
        if isinstance(self.pos_weight, list):
            if len(self.pos_weight) != columns:
                raise InvalidParams(
                    f"pos_weight has {len(self.pos_weight)} entries; the predictions have "
                    f"{columns} column{'s' if columns != 1 else ''} (D, the last dimension; 1 "
                    "for rank-1 predictions): send D numbers or a single number",
                    errors=[(("params", "pos_weight"), f"needs {columns} entries")],
                )
            return np.asarray(self.pos_weight, dtype=np.float64)
        return np.full(columns, self.pos_weight)

    def check_domain(self, predictions: Array, targets: Array) -> None:
        require_domain(
            "binary_cross_entropy", predictions, targets, self.from_logits, unit_targets=True
        )


@inline
def bce_logit_point(z: float, y: float, pw: float) -> tuple[float, float, float]:
    r"""$l = -[P y \log\sigma(z) + (1 - y)\log(1 - \sigma(z))]$ from a logit.

    $l' = (1 + (P - 1)y)\sigma(z) - P y = (1 - y)\sigma(z) - P y\,\sigma(-z)$ and
    $l'' = (1 + (P - 1)y)\,\sigma(z)\sigma(-z)$; the right-hand forms have no cancellation, so the
    gradient keeps its relative accuracy where $\sigma(z) \to 1$.
    """
    # log σ(z) and log(1 − σ(z)) = log σ(−z): finite for any finite z (logits ±1e300)
    s, q, log_p, log_q = sigmoid_logs(z)
    loss = -(pw * y * log_p + (1.0 - y) * log_q)
    return loss, (1.0 - y) * s - pw * y * q, ((1.0 - y) + pw * y) * s * q


@scalar
def bce_prob_point(p: float, y: float, pw: float, epsilon: float) -> tuple[float, float, float]:
    r"""$l = -[P y \log c + (1 - y)\log(1 - c)]$, $c = \mathrm{clip}(p, \varepsilon, 1 - \varepsilon)$.

    $l' = -P y/p + (1 - y)/(1 - p)$ and $l'' = P y/p^2 + (1 - y)/(1 - p)^2$ for
    $\varepsilon < p < 1 - \varepsilon$; 0 where clipping is active, and at the clip points
    themselves (the smallest subgradient).
    """
    c = min(max(p, epsilon), 1.0 - epsilon)
    loss = -(pw * y * math.log(c) + (1.0 - y) * math.log1p(-c))
    if epsilon < p < 1.0 - epsilon:
        r = 1.0 - p
        return loss, -pw * y / p + (1.0 - y) / r, pw * y / (p * p) + (1.0 - y) / (r * r)
    return loss, 0.0, 0.0


@scalar
def binary_cross_entropy_rows(
    k: int, rows: int, io: RowArrays, params: tuple[bool, float, Array, float]
) -> None:
    """Block ``k`` of ``binary_cross_entropy_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    pred, targ, w, scale, loss, grad, hess = io
    from_logits, label_smoothing, pos_weight, epsilon = params
    n, d = pred.shape
    block = block_range(k, rows, n)
    inv_d = 1.0 / d
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    keep = 1.0 - label_smoothing
    spread = 0.5 * label_smoothing
    if d == 1 and from_logits:
        # one column: one flat loop over the block, which LLVM vectorises (exp and log1p are
        # _vmath's); the general loop below runs over one element per row
        z, t, pw = pred.reshape(n), targ.reshape(n), pos_weight[0]
        g1, h1 = grad.reshape(grad.shape[0]), hess.reshape(hess.shape[0])
        for i in block:
            v, g, h = bce_logit_point(z[i], keep * t[i] + spread, pw)
            f = row_factor(w, i, scale)
            loss[i] = v
            if want_g:
                g1[i] = g * f
            if want_h:
                h1[i] = h * f
        return
    for i in block:
        f = row_factor(w, i, scale) * inv_d
        acc = 0.0
        for j in range(d):
            y = keep * targ[i, j] + spread
            if from_logits:
                v, g, h = bce_logit_point(pred[i, j], y, pos_weight[j])
            else:
                v, g, h = bce_prob_point(pred[i, j], y, pos_weight[j], epsilon)
            acc += v
            if want_g:
                grad[i, j] = g * f
            if want_h:
                hess[i, j] = h * f
        loss[i] = acc * inv_d


binary_cross_entropy_batch = driver(
    binary_cross_entropy_rows, "from_logits", "label_smoothing", "pos_weight", "epsilon"
)


KERNEL = Kernel(BinaryCrossEntropyParams, binary_cross_entropy_batch)
