"""Categorical cross-entropy, from logits or from probabilities."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from ._checks import require_positive_row_sums, require_probabilities
from ._jit import SERIAL_ELEMENTS, Array, batch, block_rows, prange, scalar
from ._multiclass import MulticlassParams
from ._spec import LossSpec
from ._stable import row_factor, through_row_sum
from ._vmath import exp

NonNegative = Annotated[float, Field(ge=0)]


class CrossEntropyParams(MulticlassParams):
    from_logits: bool = Field(False, description="predictions are logits (softmax inside)")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="y' = (1 - s) y + s/C")
    class_weight: list[NonNegative] | Literal["balanced"] | None = Field(
        None, description='C non-negative weights, or "balanced" (n / (C n_c) from the batch)'
    )
    ignore_index: int | None = Field(None, description="class index whose samples are ignored")
    epsilon: float = Field(1e-7, gt=0, lt=0.5, description="probabilities clipped to [ε, 1−ε]")

    def check_domain(self, predictions: Array, targets: Array) -> None:
        if not self.from_logits:
            require_probabilities(predictions, "cross_entropy")
            require_positive_row_sums(predictions, "cross_entropy")


@scalar
def cross_entropy_rows(
    k: int,
    rows: int,
    pred: Array,
    targ: Array,
    w: Array,
    scale: float,
    loss: Array,
    grad: Array,
    hess: Array,
    from_logits: bool,
    label_smoothing: float,
    class_weight: Array,
    epsilon: float,
) -> None:
    """Block ``k`` of ``cross_entropy_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    n, c = pred.shape
    # unsigned row indices (see _jit)
    block = range(np.uint64(k * rows), np.uint64(min(n, (k + 1) * rows)))
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    # e^(z_j − max z) is kept in the first asked-for output row until p_j = e/Σe replaces it
    kept = grad if want_g else hess
    keep = 1.0 - label_smoothing
    for i in block:
        mass = 0.0
        for j in range(c):
            mass += targ[i, j]
        spread = label_smoothing * mass / c
        f = row_factor(w, i, scale)
        acc = 0.0
        if from_logits:
            top = pred[i, 0]
            for j in range(1, c):
                top = max(top, pred[i, j])
            total = 0.0
            if want_g or want_h:
                for j in range(c):  # vectorises: _vmath's exp, no sum in this loop
                    kept[i, j] = exp(pred[i, j] - top)
                for j in range(c):
                    total += kept[i, j]
            else:
                for j in range(c):
                    total += exp(pred[i, j] - top)
            lse = top + math.log(total)
            big_w = 0.0
            for j in range(c):
                yw = class_weight[j] * (keep * targ[i, j] + spread)
                acc -= yw * (pred[i, j] - lse)
                big_w += yw
            if want_g or want_h:
                for j in range(c):
                    p = kept[i, j] / total
                    yw = class_weight[j] * (keep * targ[i, j] + spread)
                    if want_g:
                        grad[i, j] = (big_w * p - yw) * f
                    if want_h:
                        hess[i, j] = big_w * p * (1.0 - p) * f
        else:
            s = 0.0
            for j in range(c):
                s += pred[i, j]
            big_a = 0.0
            big_b = 0.0
            for j in range(c):
                q = pred[i, j] / s
                r = min(max(q, epsilon), 1.0 - epsilon)
                yw = class_weight[j] * (keep * targ[i, j] + spread)
                acc -= yw * math.log(r)
                if epsilon < q < 1.0 - epsilon:
                    big_a -= yw / r * q
                    big_b += yw / (r * r) * q * q
            if want_g or want_h:
                for j in range(c):
                    q = pred[i, j] / s
                    a = 0.0
                    b = 0.0
                    if epsilon < q < 1.0 - epsilon:
                        yw = class_weight[j] * (keep * targ[i, j] + spread)
                        a = -yw / q
                        b = yw / (q * q)
                    g, h = through_row_sum(a, b, q, big_a, big_b, s)
                    if want_g:
                        grad[i, j] = g * f
                    if want_h:
                        hess[i, j] = h * f
        loss[i] = acc


@batch
def cross_entropy_batch(
    pred: Array,
    targ: Array,
    w: Array,
    scale: float,
    loss: Array,
    grad: Array,
    hess: Array,
    from_logits: bool,
    label_smoothing: float,
    class_weight: Array,
    epsilon: float,
) -> None:
    r"""$l_i = -\sum_c cw_c\, y'_c \log p_c$, $y' = (1 - s)y + s\,(\sum_k y_k)/C$.

    Logits: $p = \mathrm{softmax}(z)$ by log-sum-exp, $\partial l/\partial z_j = W p_j - cw_j y'_j$,
    $\partial^2 l/\partial z_j^2 = W p_j(1 - p_j)$ with $W = \sum_c cw_c y'_c$ (finite for any
    finite logit: $z - \max z$ never overflows). Probabilities (Keras): $q = p/\sum p$, clipped
    to $[\varepsilon, 1 - \varepsilon]$; with $a_c = -cw_c y'_c/q_c$ and $b_c = cw_c y'_c/q_c^2$ on
    unclipped classes (0 where clipping is active), $\partial l/\partial p_j = (a_j - A)/S$ and
    $\partial^2 l/\partial p_j^2 = (b_j(1 - 2q_j) - 2(a_j - A) + \sum_c b_c q_c^2)/S^2$,
    $A = \sum_c a_c q_c$, $S = \sum_c p_c$. Reference: ``torch.nn.functional.cross_entropy``
    (logits), ``keras.losses.categorical_crossentropy`` (probabilities).
    """
    n, c = pred.shape
    rows = block_rows(n, c)
    if n * c <= SERIAL_ELEMENTS:  # on this thread: a parallel launch costs more than the work
        for k in range(-(-n // rows)):
            cross_entropy_rows(
                k, rows, pred, targ, w, scale, loss, grad, hess,
                from_logits, label_smoothing, class_weight, epsilon,
            )  # fmt: skip
        return
    for k in prange(-(-n // rows)):
        cross_entropy_rows(
            k, rows, pred, targ, w, scale, loss, grad, hess,
            from_logits, label_smoothing, class_weight, epsilon,
        )  # fmt: skip


SPEC = LossSpec(
    name="cross_entropy",
    aliases=(
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "CrossEntropyLoss",
        "softmax_cross_entropy",
        "nll",
    ),
    family="multiclass",
    summary="Categorical cross-entropy with class weights, label smoothing and ignore_index.",
    formula=r"l_i = -\sum_c cw_c\, y'_{ic} \log p_{ic},\quad y' = (1 - s)\,y + s/C",
    params=CrossEntropyParams,
    driver=cross_entropy_batch,
    reference=(
        "torch.nn.functional.cross_entropy(weight, ignore_index, label_smoothing) for logits; "
        "keras.losses.categorical_crossentropy(label_smoothing) for probabilities"
    ),
    targets=("same_shape", "class_index"),
    hessian_note="from logits: W p_j (1 - p_j) >= 0; from probabilities it can be negative",
)
