"""What the batch-coupled embedding losses share (optax's ``ntxent``, Keras' ``Circle``).

Predictions are ``(N, D)`` embeddings, one a row; targets are ``(N,)`` group labels, integers
(integral floats accepted): two rows of one label are a positive pair, of two labels a negative
pair, and a row never pairs with itself. A sample is one row as the anchor of its pairs: l_i
depends on every row of the batch, so the loss is batch-coupled (its driver runs the whole
batch at once, ``jit.driver(coupled)``), and the gradient and Hessian diagonal returned are
those of Σ_i w_i l_i in every row's embedding (of Σ_i l_i with reduction ``none``). The work is
N² pairs of D-vectors, on one thread; nothing N × N is held.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidArray, ShapeMismatch
from ..jit import Array
from ._spec import ComputeDtype, LossParams, Memo, Prepared, memoized, readonly


def group_labels(targets: Array, n: int, name: str) -> Array:
    """(N,) integer labels as a read-only int64 vector; 422 for another shape or a fraction."""
    if targets.shape not in ((n,), (n, 1)):
        raise ShapeMismatch(
            f"targets have shape {list(targets.shape)}; {name} takes (N,) group labels of the "
            f"(N, D) embeddings, N = {n}",
            errors=[(("targets",), "expected (N,) labels")],
        )
    flat = targets.reshape(n)
    if flat.dtype.kind == "f":
        whole = flat == np.round(flat)
        if not whole.all():
            i = int(np.argmin(whole))
            raise InvalidArray(
                f"targets[{i}] = {flat[i]} is not an integer; {name}'s targets are group labels",
                errors=[(("targets", i), "not an integer")],
            )
    return readonly(flat.astype(np.int64))


class EmbeddingParams(LossParams):
    """Embeddings `(N, D)` and `(N,)` group labels (module docstring)."""

    min_rank: ClassVar[int] = 2

    @classmethod
    def warm_up_batch(cls) -> tuple[Array, Array]:
        """Two embeddings of one group (the warm-up's weights are two)."""
        return np.array([[0.6, 0.8], [0.8, 0.6]]), np.array([0, 0])

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """The labels as int64 and κ_i (``kappa``)."""
        labels = memoized(
            memo, ("labels",), lambda: group_labels(targets, predictions.shape[0], name)
        )
        prepared = Prepared(labels, self.kernel_params())
        return dataclasses.replace(prepared, kappa=readonly(self.kappa(labels).astype(dtype)))

    def kappa(self, labels: Array) -> Array:
        """κ_i: the positive pairs of row i (the pairs optax's ntxent averages over)."""
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        return np.asarray(counts[inverse] - 1, dtype=np.float64)

    @classmethod
    def working_bytes(
        cls, rows: int, columns: int, itemsize: int, *, sent: Any = None, indices: bool = False
    ) -> int:
        """The labels, κ, the unit rows and a few (N,) and (D,) vectors of float64."""
        return 8 * (rows * columns + 8 * rows + 4 * columns)

    @classmethod
    def operations(cls, rows: int, columns: int, *, sent: Any = None, targets: Any = None) -> int:
        """N² pairs of D-vectors, a few passes over them."""
        return 4 * rows * rows * columns
