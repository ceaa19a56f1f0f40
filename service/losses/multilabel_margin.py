"""Multilabel margin loss, as torch.nn.MultiLabelMarginLoss, on raw class scores.

Targets are torch's form: an (N, C) array whose row i lists sample i's classes as integers in
[0, C), ended by the first −1; the entries after it are ignored, but like torch every entry must
be an integer in [−1, C). ``prepare`` turns each row into counts (how many times each class is
listed before the first −1), so that the kernel reads a target class as a count > 0 and a class
listed twice counts twice, as torch's loop over the list does.

Edges: linear in the scores: ±1e300 answered exactly where the sum of the hinges is finite; a
sum past the range is a 422 (the exact loss is past it too). Each row costs O(|targets|·C) steps,
O(C²) at most (``operations``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidArray, ShapeMismatch
from ..jit import Array, RowArrays, block_range, driver, scalar
from ._spec import ComputeDtype, Kernel, LossParams, Memo, Prepared, Sent, readonly
from ._stable import row_factor

# What ``label_counts`` holds per target element at its peak: the integer check's float64 floor
# and mask, the range and end masks, the listed mask, the flat indices of the listed entries
# (int64, with their row and column numbers from ``nonzero``) and ``bincount``'s int64 counts
LABEL_BYTES = 8 + 1 + 3 + 2 + 1 + 3 * 8 + 8


def _first(mask: Array) -> list[int]:
    return [int(k) for k in np.unravel_index(int(np.argmax(mask)), mask.shape)]


def label_counts(targets: Array, dtype: ComputeDtype) -> Array:
    """(N, C) target lists as (N, C) counts of each class before the row's first −1, after
    checking that every entry is an integer in [−1, C), as torch does (a 422 naming the first
    that is not)."""
    n, classes = targets.shape
    if targets.dtype.kind == "f":
        fractional = targets != np.floor(targets)
        if fractional.any():
            where = _first(fractional)
            raise InvalidArray(
                f"targets{where} is not an integer; multilabel_margin takes rows of class "
                f"indices in [0, {classes}), each list ended by -1",
                errors=[(("targets", *where), "must be an integer class index or -1")],
            )
    bad = (targets < -1) | (targets >= classes)
    if bad.any():
        where = _first(bad)
        raise InvalidArray(
            f"targets{where} is not a class index: multilabel_margin targets are class indices "
            f"in [0, {classes}) for predictions with {classes} columns, each list ended by -1 "
            "(every entry, the ones after the -1 too, must be in [-1, C), as in torch)",
            errors=[(("targets", *where), f"must be in [-1, {classes})")],
        )
    listed = ~np.logical_or.accumulate(targets == -1, axis=1)
    rows, columns = np.nonzero(listed)
    flat = rows * classes + targets[rows, columns].astype(np.int64)
    counts = np.bincount(flat, minlength=n * classes).reshape(n, classes)
    return readonly(counts.astype(dtype))


class MultilabelMarginParams(LossParams):
    """`multilabel_margin` takes no parameters; targets are (N, C) rows of class indices, each
    list ended by -1 (torch's form)."""

    min_rank: ClassVar[int] = 2

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """The targets as counts of each class in its row's list (``label_counts``)."""
        if targets.shape != predictions.shape:
            raise ShapeMismatch(
                f"{name} takes targets of shape (N, C) = {list(predictions.shape)}: rows of "
                f"class indices, each list ended by -1; got {list(targets.shape)}",
                errors=[(("targets",), "shape differs from predictions")],
            )
        return Prepared(label_counts(targets, dtype), self.kernel_params())

    @classmethod
    def working_bytes(
        cls, rows: int, columns: int, itemsize: int, *, sent: Sent = None, indices: bool = False
    ) -> int:
        """``label_counts``' checks, indices and counts (the counts' compute copy is the generic
        targets copy)."""
        return LABEL_BYTES * rows * columns

    @classmethod
    def operations(cls, rows: int, columns: int, *, sent: Sent = None, targets: Any = None) -> int:
        """Every target class against every other class: N·C² at most."""
        return rows * columns * columns


@scalar
def multilabel_margin_rows(k: int, rows: int, io: RowArrays, params: tuple[()]) -> None:
    r"""Block ``k`` of ``multilabel_margin_batch``: rows ``k·rows`` to ``(k + 1)·rows``.

    $l_i = \frac1C\sum_{j} n_j \sum_{c:\,n_c = 0} \max(0, 1 - \hat y_j + \hat y_c)$ with $n_j$ the
    count of class $j$ in the row's list (``targ``); each active term adds $n_j/C$ to the
    gradient of $\hat y_c$ and takes it from $\hat y_j$'s (0 at the margin); the Hessian is 0.
    """
    pred, targ, w, scale, loss, grad, hess = io
    n, c = pred.shape
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    inv_c = 1.0 / c
    for i in block_range(k, rows, n):
        if want_g:
            for j in range(c):
                grad[i, j] = 0.0
        if want_h:
            for j in range(c):
                hess[i, j] = 0.0
        acc = 0.0
        for j in range(c):
            listed = targ[i, j]
            if listed == 0.0:
                continue
            base = 1.0 - pred[i, j]
            for other in range(c):
                if targ[i, other] != 0.0:
                    continue
                z = base + pred[i, other]
                if z > 0.0:
                    acc += listed * z
                    if want_g:
                        grad[i, other] += listed
                        grad[i, j] -= listed
        loss[i] = acc * inv_c
        if want_g:
            f = row_factor(w, i, scale) * inv_c
            for j in range(c):
                grad[i, j] *= f


multilabel_margin_batch = driver(multilabel_margin_rows)


KERNEL = Kernel(MultilabelMarginParams, multilabel_margin_batch)
