"""Cosine embedding loss of a pair of rows, as torch.nn.CosineEmbeddingLoss.

The predictions are the first rows x₁ (N, D), ``inputs.input2`` the second x₂ (N, D), and the
targets one label per pair, (N,): 1 when the rows should be alike (l = 1 − cos), -1 when unlike
(l = max(0, cos − margin)); any other value is a 422 (torch gives such a pair a zero loss).
torch's norms: cos = x₁·x₂ / √((‖x₁‖² + ε)(‖x₂‖² + ε)) with its fixed ε (``epsilon``: 1e-12 as a
float32, 9.999999960041972e-13, as torch adds it), so a zero row has cos 0 and a finite gradient.

Edges: a squared norm at or past 1e290 (|x| from about 1e145) would overflow: that row is divided
by its max |x| first, so ‖x‖² + ε becomes m²·(Σ(x/m)² + ε/m²) and rows up to the float range are
answered (torch's product of the two squared norms overflows from |x| ≈ 1e77: cos 0). The
gradient and Hessian divide by m last. At the hinge of a -1 pair (cos = margin exactly) the
gradient is 0, the contract's smallest subgradient.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ..errors import ShapeMismatch
from ..jit import Array, RowArrays, block_range, driver, scalar
from ._binary import plus_minus_labels
from ._spec import ComputeDtype, ExtraInput, Kernel, LossParams, Memo, Prepared, as_compute
from ._stable import row_factor

# A squared norm below this is summed as it is; at or above it the row is scaled by its max
SQUARES_SAFE_BELOW = 1e290
# torch adds its EPSILON, a float32 1e-12, to the squared norms (aten's cosine_embedding_loss):
# in float64 it is this number, and torch's answers are 2e-9 off those of 1e-12 itself on rows
# whose norms it decides (a zero row's gradient)
TORCH_EPSILON = float(np.float32(1e-12))


class CosineEmbeddingParams(LossParams):
    """Predictions x₁ (N, D), ``inputs.input2`` x₂ (N, D), targets (N,) of ±1."""

    min_rank: ClassVar[int] = 2
    inputs: ClassVar[tuple[ExtraInput, ...]] = (
        ExtraInput("input2", "the second rows x₂, (N, D) like the predictions"),
    )

    margin: float = Field(0.0, ge=-1, le=1, description="m in max(0, cos − m) for the -1 pairs")
    epsilon: float = Field(
        TORCH_EPSILON,
        gt=0,
        description="added to each squared norm (torch's fixed EPSILON, 1e-12 as a float32)",
    )

    @classmethod
    def warm_up_batch(cls) -> tuple[Array, Array]:
        return np.full((2, 2), 0.5), np.array([1.0, -1.0])

    @classmethod
    def working_bytes(
        cls, rows: int, columns: int, itemsize: int, *, sent: Any = None, indices: bool = False
    ) -> int:
        """The label check's masks and the (N,) labels in the compute dtype."""
        return (3 + itemsize) * rows

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """The (N,) labels, ±1, as an (N, 1) column."""
        if targets.shape != predictions.shape[:1]:
            raise ShapeMismatch(
                f"{name} takes one target per pair of rows, of shape (N,) = "
                f"{list(predictions.shape[:1])}; got {list(targets.shape)}",
                errors=[(("targets",), "must have shape (N,)")],
            )
        plus_minus_labels(targets, name)
        return Prepared(as_compute(targets, dtype, "targets"), self.kernel_params())


@scalar
def cosine_embedding_rows(
    k: int, rows: int, io: RowArrays, params: tuple[Array, Array, float, float]
) -> None:
    r"""Block ``k`` of ``cosine_embedding_batch``. With $n_k = \sqrt{\|x_k\|^2 + \varepsilon}$,
    $c = x_1\cdot x_2/(n_1 n_2)$, $u = x_1/n_1$, $v = x_2/n_2$: $l = 1 - c$ for $y = 1$ and
    $\max(0, c - m)$ for $y = -1$; $\partial c/\partial x_{1j} = (v_j - c\,u_j)/n_1$,
    $\partial c/\partial x_{2j} = (u_j - c\,v_j)/n_2$,
    $\partial^2 c/\partial x_{1j}^2 = (3c\,u_j^2 - 2u_j v_j - c)/n_1^2$. Reference:
    ``torch.nn.functional.cosine_embedding_loss``."""
    pred, targ, w, scale, loss, grad, hess = io
    input2, grad_input2, margin, epsilon = params
    n, d = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    want_2 = grad_input2.shape[0] > 0
    for i in block_range(k, rows, n):
        s1 = 0.0
        s2 = 0.0
        dot = 0.0
        for j in range(d):
            a = float(pred[i, j])  # float64 products: float32 squares overflow from 1.8e19
            b = float(input2[i, j])
            s1 += a * a
            s2 += b * b
            dot += a * b
        m1 = 1.0  # 1: the row as it is
        m2 = 1.0
        if not (s1 < SQUARES_SAFE_BELOW and s2 < SQUARES_SAFE_BELOW):
            # a squared norm overflowed or nearly: that row divided by its max |x| (in [1, D])
            if not s1 < SQUARES_SAFE_BELOW:
                m1 = 0.0
                for j in range(d):
                    m1 = max(m1, abs(pred[i, j]))
            if not s2 < SQUARES_SAFE_BELOW:
                m2 = 0.0
                for j in range(d):
                    m2 = max(m2, abs(input2[i, j]))
            s1 = 0.0
            s2 = 0.0
            dot = 0.0
            for j in range(d):
                a = pred[i, j] / m1
                b = input2[i, j] / m2
                s1 += a * a
                s2 += b * b
                dot += a * b
        r1 = math.sqrt(s1 + epsilon / (m1 * m1))  # n₁ / m₁
        r2 = math.sqrt(s2 + epsilon / (m2 * m2))
        c = dot / (r1 * r2)
        if targ[i, 0] > 0:
            loss[i] = 1.0 - c
            sign = -1.0
        elif c - margin > 0.0:
            loss[i] = c - margin
            sign = 1.0
        else:
            loss[i] = 0.0
            sign = 0.0
        if not (want_g or want_h or want_2):
            continue
        f = row_factor(w, i, scale) * sign
        for j in range(d):
            if sign == 0.0:  # an inactive hinge: zeros (not −0.0 from a negative term)
                if want_g:
                    grad[i, j] = 0.0
                if want_h:
                    hess[i, j] = 0.0
                if want_2:
                    grad_input2[i, j] = 0.0
                continue
            u = pred[i, j] / m1 / r1
            v = input2[i, j] / m2 / r2
            if want_g:
                grad[i, j] = ((v - c * u) / r1) / m1 * f
            if want_h:
                hess[i, j] = (((3.0 * c * u * u - 2.0 * u * v - c) / (r1 * r1)) / m1) / m1 * f
            if want_2:
                grad_input2[i, j] = ((u - c * v) / r2) / m2 * f


cosine_embedding_batch = driver(cosine_embedding_rows, "input2", "grad_input2", "margin", "epsilon")


KERNEL = Kernel(CosineEmbeddingParams, cosine_embedding_batch)
