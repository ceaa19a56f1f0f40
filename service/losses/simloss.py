"""SimLoss (Kobs et al. 2020): cross-entropy that credits probability on similar classes.

Edges (issue 11 audit): log(Σ S p + ε) with p from the stable softmax_entry; no overflow for any
finite logit. Measured: float64 6.1e-9 (the ε inside the log, 1e-8, against exact at |z| = 1e300),
float32 5.6e-8.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..errors import InvalidParams
from ..jit import SERIAL_ELEMENTS, Array, batch, block_range, block_rows, prange, scalar
from ._checks import require_domain
from ._multiclass import MulticlassParams, Normalize, SoftmaxLogits
from ._spec import ComputeDtype, LossSpec, Memo, Prepared, readonly
from ._stable import row_factor, softmax_entry, softmax_row

Unit = Annotated[float, Field(ge=0, le=1)]


class SimlossParams(MulticlassParams):
    warm_up: ClassVar[dict[str, Any]] = {"ordinal_base": 0.5}
    host_fields: ClassVar[frozenset[str]] = MulticlassParams.host_fields | {
        "similarity",
        "ordinal_base",
    }

    similarity: list[list[Unit]] | None = Field(
        None,
        description="C×C class similarities S (unit diagonal, entries in [0, 1]); "
        "give exactly one of this and ordinal_base",
    )
    ordinal_base: float | None = Field(
        None, ge=0, lt=1, description="r for ordered classes: S_ij = r^|i−j| (0^0 = 1)"
    )
    from_logits: SoftmaxLogits = False
    epsilon: float = Field(1e-8, gt=0, description="added inside the log: −log(Σ_c S_yc p_c + ε)")
    normalize: Normalize = False

    @field_validator("similarity")
    @classmethod
    def _square_with_unit_diagonal(
        cls, value: list[list[float]] | None
    ) -> list[list[float]] | None:
        if value is None:
            return value
        k = len(value)
        if k == 0 or any(len(row) != k for row in value):
            raise ValueError(
                "similarity must be a square C×C matrix (a list of C rows of C numbers)"
            )
        off = [i for i in range(k) if value[i][i] != 1]
        if off:
            i = off[0]
            raise ValueError(
                f"similarity needs a unit diagonal (each class is fully similar to itself); "
                f"entry [{i}][{i}] is {value[i][i]}"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SimlossParams:
        # after the fields, so that neither check depends on the order they are declared in
        if self.similarity is not None and self.ordinal_base is not None:
            raise ValueError(
                "give either similarity (a C×C matrix) or ordinal_base (S_ij = r^|i−j|), not "
                "both: remove one of them"
            )
        if self.similarity is None and self.ordinal_base is None:
            raise ValueError(
                "simloss needs class similarities: give similarity (a C×C matrix with unit "
                "diagonal) or ordinal_base (r in [0, 1): S_ij = r^|i−j|)"
            )
        return self

    def check_domain(self, predictions: Array, targets: Array) -> None:
        require_domain("simloss", predictions, targets, self.from_logits)
        self.require_distributions("simloss", predictions, targets, self.from_logits)

    def matrix(self, classes: int) -> Array:
        """S as a (C, C) float64 array: the given matrix or r^|i−j|."""
        if self.similarity is not None:
            matrix = np.asarray(self.similarity, dtype=np.float64)
            if matrix.shape != (classes, classes):
                k = matrix.shape[0]
                raise InvalidParams(
                    f"similarity is {k}×{k} but the predictions have {classes} classes; send a "
                    f"{classes}×{classes} matrix",
                    errors=[(("params", "similarity"), f"needs {classes}×{classes} entries")],
                )
            return matrix
        assert self.ordinal_base is not None  # _exactly_one: one of the two is given
        steps = np.abs(np.subtract.outer(np.arange(classes), np.arange(classes)))
        return np.asarray(np.power(self.ordinal_base, steps, dtype=np.float64))

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        prepared = super().prepare(name, predictions, targets, dtype, memo)
        matrix = readonly(self.matrix(predictions.shape[1]).astype(dtype))
        return replace(prepared, kernel_params={**prepared.kernel_params, "similarity": matrix})


@scalar
def simloss_rows(
    k: int, rows: int,
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    params: tuple[Array, bool, float],
) -> None:  # fmt: skip
    """Block ``k`` of ``simloss_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    similarity, from_logits, epsilon = params
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    mixed = np.empty(c, dtype=pred.dtype)  # s_t of the row's target classes t (k in the formula)
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale)
        top, arg, rest = softmax_row(pred, i) if from_logits else (0.0, 0, 0.0)
        first = c
        last = -1
        for t in range(c):
            if targ[i, t] != 0.0:
                first = min(first, t)
                last = t
        acc = 0.0
        big_a = 0.0
        for t in range(first, last + 1):
            y = targ[i, t]
            if y == 0.0:
                continue
            s = 0.0
            for j in range(c):
                p = softmax_entry(pred[i, j], top, rest, j == arg)[0] if from_logits else pred[i, j]
                s += similarity[t, j] * p
            mixed[t] = s
            acc -= y * math.log(s + epsilon)
            big_a -= y * s / (s + epsilon)
        loss[i] = acc
        if want_g or want_h:
            for j in range(c):
                p = softmax_entry(pred[i, j], top, rest, j == arg)[0] if from_logits else pred[i, j]
                d = 0.0
                e = 0.0
                for t in range(first, last + 1):
                    y = targ[i, t]
                    if y == 0.0:
                        continue
                    den = mixed[t] + epsilon
                    d -= y * similarity[t, j] / den
                    spread = similarity[t, j] - mixed[t] if from_logits else similarity[t, j]
                    e += y * spread * spread / (den * den)
                if from_logits:
                    g = p * (d - big_a)
                    h = (1.0 - 2.0 * p) * g + p * p * e
                else:
                    g = d
                    h = e
                if want_g:
                    grad[i, j] = g * f
                if want_h:
                    hess[i, j] = h * f


@batch
def simloss_batch(
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    similarity: Array, from_logits: bool, epsilon: float,
) -> None:  # fmt: skip
    r"""$l_i = -\sum_k y_k \log(s_k + \varepsilon)$, $s_k = \sum_c S_{kc} p_c$ (index targets:
    $-\log(\sum_c S_{yc} p_c + \varepsilon)$), probabilities as given (Kobs et al. neither
    renormalise nor clip).

    Probabilities: $D_j = \partial l/\partial p_j = -\sum_k y_k S_{kj}/(s_k + \varepsilon)$,
    $\partial^2 l/\partial p_j^2 = \sum_k y_k S_{kj}^2/(s_k + \varepsilon)^2$. Logits (softmax by
    log-sum-exp): $\partial l/\partial z_j = p_j(D_j - A)$, $A = \sum_c D_c p_c =
    -\sum_k y_k s_k/(s_k + \varepsilon)$, and $\partial^2 l/\partial z_j^2 = (1 - 2p_j)\,p_j(D_j - A)
    + p_j^2 \sum_k y_k (S_{kj} - s_k)^2/(s_k + \varepsilon)^2$. Only the target classes $k$
    (the span of the row's non-zero targets) are visited, so index targets cost O(C) per row.
    Reference: SimLoss by Kobs et al. 2020 (their ``SimLoss.forward``).
    """
    params = (similarity, from_logits, epsilon)
    n, d = pred.shape
    rows = block_rows(n, d)
    if n * d <= SERIAL_ELEMENTS:  # on this thread: a parallel launch costs more than the work
        for k in range(-(-n // rows)):
            simloss_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)
        return
    for k in prange(-(-n // rows)):
        simloss_rows(k, rows, pred, targ, w, scale, loss, grad, hess, params)


SPEC = LossSpec(
    name="simloss",
    aliases=("sim_loss", "class_similarity_cross_entropy"),
    family="multiclass",
    summary="SimLoss: −log of the probability mass on classes similar to the target (S matrix or r^|i−j|).",
    formula=r"l_i = -\sum_k y_{ik} \log\Big(\sum_c S_{kc}\, p_{ic} + \varepsilon\Big)",
    params=SimlossParams,
    driver=simloss_batch,
    reference=(
        "Kobs et al. 2020, SimLoss (github.com/konstantinkobs/SimLoss, SimLoss.forward): "
        "-log(sum(w[y] * p) + epsilon) on probabilities as given, w[j, i] = r ** |i - j|"
    ),
    targets=("same_shape", "class_index"),
    hessian_note="from probabilities >= 0; from logits it can be negative",
)
