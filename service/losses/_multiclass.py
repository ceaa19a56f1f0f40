"""Targets of the multiclass losses: (N, C) one-hot or soft rows, or (N,) class indices.

Index targets become one-hot rows before the kernel runs, so one-hot targets and the equivalent
indices give the same response to the last bit. A sample whose index equals ``ignore_index``
becomes an all-zero row (normaliser κ_i = 0) and is masked explicitly: the losses with label
smoothing take the driver parameter ``ignored`` ((N,), 1 where a sample is ignored, or empty), so
an ignored sample has loss 0 and gradient 0, exactly PyTorch's, while an all-zero soft row that
is not ignored is smoothed like any other (LOSSES.md: ``y' = (1 − s)y + s/C``).

Probability rows (``from_logits: false``) of the losses that read rows as distributions must sum
to 1 within ``DISTRIBUTION_RTOL`` (``require_distributions``), unless the request opts in to
Keras' silent renormalisation with ``normalize: true``. Their targets, decided per LOSSES.md:
- one-hot and soft targets of the cross-entropy family (cross_entropy, focal, poly1,
  generalized_cross_entropy, simloss) are accepted whatever a row sums to, as PyTorch accepts
  them: LOSSES.md smooths every row "whatever its row sums to" and gives an all-zero row that is
  not an ignored index a loss, so such rows are inputs with a defined answer, not errors;
- the targets of kl_divergence and js_divergence are the distribution P itself
  (``distribution_targets``): a row off 1 by more than 1e-3 is a 422 too, except an all-zero
  row (KL 0; js refuses it separately, it cannot be renormalised).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AliasChoices, Field

from ..errors import InvalidArray, InvalidParams, ShapeMismatch
from ..jit import Array
from ._checks import require_distributions, require_non_negative
from ._spec import (
    ComputeDtype,
    LossParams,
    Memo,
    NonNegative,
    Prepared,
    as_compute,
    memoized,
    readonly,
)

# Fields several multiclass losses share
SoftmaxLogits = Annotated[bool, Field(description="predictions are logits (softmax inside)")]
ClassSmoothing = Annotated[float, Field(ge=0, lt=1, description="y' = (1 - s) y + s/C")]
# torch's ``weight`` is accepted as another name (LOSSES.md); the schema and ``params`` say
# ``class_weight``, the first choice
ClassWeights = Annotated[
    list[NonNegative] | Literal["balanced"] | None,
    Field(
        description='C non-negative weights, or "balanced" (n / (C n_c) from the batch); '
        "torch's name `weight` is accepted too",
        validation_alias=AliasChoices("class_weight", "weight"),
    ),
]
Normalize = Annotated[
    bool,
    Field(
        description="accept probability and target rows that do not sum to 1 (Keras' silent "
        "renormalisation); by default they are a 422"
    ),
]
IgnoreIndex = Annotated[int | None, Field(description="class index whose samples are ignored")]


def one_hot(targets: Array, classes: int, ignore_index: int | None, dtype: ComputeDtype) -> Array:
    """(N,) class indices as (N, C) one-hot rows; ``ignore_index`` rows are all zero."""
    if targets.dtype.kind == "f":
        fractional = targets != np.floor(targets)
        if fractional.any():
            i = int(np.argmax(fractional))
            raise InvalidArray(
                f"targets[{i}] is not an integer; class-index targets are integers in "
                f"[0, {classes}) (send one-hot or soft targets as an (N, C) array instead)",
                errors=[(("targets", i), "must be an integer class index")],
            )
    # the range is checked before the cast: 1e300 or 2**63 has no int64 to become
    ignored = targets == ignore_index if ignore_index is not None else np.zeros(len(targets), bool)
    bad = ~ignored & ((targets < 0) | (targets >= classes))
    if bad.any():
        i = int(np.argmax(bad))
        also = f" or ignore_index ({ignore_index})" if ignore_index is not None else ""
        raise InvalidArray(
            f"targets[{i}] is not a class index: indices must be in [0, {classes}){also} for "
            f"predictions with {classes} columns",
            errors=[(("targets", i), f"must be in [0, {classes})")],
        )
    out = np.zeros((len(targets), classes), dtype=dtype)
    rows = np.flatnonzero(~ignored)
    out[rows, targets[rows].astype(np.int64)] = 1
    return readonly(out)


def _kappa(rows: Array, weights: Array, dtype: ComputeDtype) -> Array:
    """κ_i = Σ_c cw_c·y_ic, the normaliser of a class-weighted mean: Σ_i w_i·κ_i divides its sum."""
    return readonly((rows.astype(np.float64) @ weights).astype(dtype))


def balanced_weights(onehot: Array) -> Array:
    """cw_c = n / (C·n_c) from the batch's (fractional) class counts; 0 for an absent class."""
    counts = onehot.sum(axis=0, dtype=np.float64)
    total = counts.sum()
    weights: Array = np.zeros_like(counts)
    present = counts > 0
    weights[present] = total / (len(counts) * counts[present])
    return weights


class MulticlassParams(LossParams):
    """Base of the losses on (N, C) predictions with one-hot, soft or class-index targets.

    A subclass with a ``class_weight`` field gets κ_i = Σ_c cw_c·y_ic and the driver parameter
    ``class_weight``, the (C,) weights in the compute dtype; ``ignore_index`` is used here only.
    """

    min_rank: ClassVar[int] = 2
    index_targets: ClassVar[bool] = True  # (N,) class indices accepted
    host_fields: ClassVar[frozenset[str]] = frozenset({"ignore_index", "class_weight", "normalize"})
    # the driver takes ``ignored``, the mask of ignored samples (the losses with label smoothing)
    masks_ignored: ClassVar[bool] = False
    # the targets are the distribution P (kl, js), held to the rule of the probability rows
    distribution_targets: ClassVar[bool] = False

    def check_targets(self, rows: Array, name: str) -> None:
        """(N, C) targets as sent: non-negative (one-hot or soft rows)."""
        require_non_negative(rows, name)

    def require_distributions(
        self, name: str, predictions: Array, targets: Array, from_logits: bool
    ) -> None:
        """Unless ``normalize``: probability rows (not ``from_logits``), and non-zero target rows
        where they are P (``distribution_targets``), sum to 1 within ``DISTRIBUTION_RTOL``."""
        if getattr(self, "normalize", False):
            return
        if not from_logits:
            require_distributions(predictions, name, "predictions")
        if self.distribution_targets:
            require_distributions(targets, name, "targets", allow_zero=True)

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        n, classes = predictions.shape
        ignore = getattr(self, "ignore_index", None)
        index = targets.ndim == 1 and self.index_targets and targets.shape[0] == n
        if index:
            key: tuple[Any, ...] = ("one_hot", classes, ignore, dtype)
            rows = memoized(memo, key, lambda: one_hot(targets, classes, ignore, dtype))
        elif targets.shape == predictions.shape:
            key = ("targets", dtype)
            rows = memoized(memo, key, lambda: as_compute(targets, dtype, "targets"))
            self.check_targets(rows, name)
        else:
            forms = f"(N, C) = {list(predictions.shape)}"
            if self.index_targets:
                forms += f" or class indices (N,) = [{n}]"
            raise ShapeMismatch(
                f"{name} takes targets of shape {forms}; got {list(targets.shape)}",
                errors=[(("targets",), "shape does not fit the predictions")],
            )
        shown = self.model_dump()
        kernel = self.kernel_params()
        if self.masks_ignored:
            mask = np.zeros(0, dtype=dtype)
            if ignore is not None and index:
                mask = (targets == ignore).astype(dtype)
            kernel["ignored"] = readonly(mask)
        kappa = None
        if "class_weight" in shown:
            weights = self._class_weights(shown["class_weight"], rows, classes)
            if shown["class_weight"] == "balanced":  # derived from the batch: show what was used
                shown["class_weight"] = weights.tolist()
            kappa = memoized(
                memo, (*key, "kappa", weights.tobytes()), partial(_kappa, rows, weights, dtype)
            )
            kernel["class_weight"] = readonly(weights.astype(dtype))
        return Prepared(rows, kernel, kappa, shown)

    @staticmethod
    def _class_weights(value: ClassWeights, rows: Array, classes: int) -> Array:
        if value is None:
            return np.ones(classes)
        if value == "balanced":
            return balanced_weights(rows)
        if len(value) != classes:
            raise InvalidParams(
                f"class_weight has {len(value)} entries; the predictions have {classes} classes",
                errors=[(("params", "class_weight"), f"needs {classes} entries")],
            )
        return np.asarray(value, dtype=np.float64)
