"""Targets of the multiclass losses: (N, C) one-hot or soft rows, or (N,) class indices.

Index targets become one-hot rows before the kernel runs, so one-hot targets and the equivalent
indices give the same response to the last bit. A sample whose index equals ``ignore_index`` has
normaliser κ_i = 0 and is masked explicitly: the losses with label smoothing take the driver
parameter ``ignored`` ((N,), 1 where a sample is ignored, or empty), so an ignored sample has
loss 0 and gradient 0, exactly PyTorch's, while an all-zero soft row that is not ignored is
smoothed like any other (LOSSES.md: ``y' = (1 − s)y + s/C``).

The one-hot rows are made once per request and compute dtype, whatever the ``ignore_index`` of
each loss (issue 12: sixty-four losses differing only in it held sixty-four (N, C) copies): an
index outside [0, C), such as torch's −100, is an all-zero row anyway; an ignored class inside
[0, C) stays in the shared rows and is masked by ``ignored``, κ and the balanced counts leave it
out, and only a driver without the mask gets its own zeroed copy, dropped with its result.

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

from collections.abc import Callable
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
    Sent,
    as_compute,
    kernel_threads,
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


def require_class_indices(targets: Array, classes: int, ignore_index: int | None) -> Array:
    """The mask of ignored samples ((N,) bool) of (N,) class-index targets, after checking that
    every index is an integer in [0, C) or ``ignore_index``."""
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
    return ignored


def one_hot(targets: Array, classes: int, dtype: ComputeDtype) -> Array:
    """(N,) class indices, checked by ``require_class_indices``, as (N, C) one-hot rows; an index
    outside [0, C) (an ``ignore_index`` such as −100) is an all-zero row.

    The rows do not depend on ``ignore_index``: the losses of one request share them, whatever
    their ``ignore_index`` (``MulticlassParams.prepare`` masks an ignored class inside [0, C))."""
    out = np.zeros((len(targets), classes), dtype=dtype)
    rows = np.flatnonzero((targets >= 0) & (targets < classes))
    out[rows, targets[rows].astype(np.int64)] = 1
    return readonly(out)


# elements of (N, C) float32 targets converted to float64 at a time for κ (``_kappa``)
KAPPA_CHUNK_ELEMENTS = 1 << 16
# What ``prepare`` holds per sample with class-index targets, at most: the integer and range
# checks' masks and ``floor`` (``require_class_indices``), and ``one_hot``'s masks, row numbers
# and int64 indices
INDEX_BYTES = 40
# What class weights hold per class beyond their compute copy: the float64 weights and counts,
# the balanced weights' temporaries, the memo key's bytes and the list of floats shown
WEIGHTS_BYTES = 96


def _kappa(rows: Array, weights: Array, ignored: Array | None, dtype: ComputeDtype) -> Array:
    """κ_i = Σ_c cw_c·y_ic, the normaliser of a class-weighted mean: Σ_i w_i·κ_i divides its sum;
    0 for the ``ignored`` samples. float32 rows are widened a chunk at a time, not as a whole
    (N, C) float64 copy."""
    if rows.dtype == np.float64:
        kappa = rows @ weights
    else:
        kappa = np.empty(len(rows))
        step = max(1, KAPPA_CHUNK_ELEMENTS // max(1, rows.shape[1]))
        for start in range(0, len(rows), step):
            kappa[start : start + step] = rows[start : start + step].astype(np.float64) @ weights
    if ignored is not None:
        kappa[ignored] = 0.0
    return readonly(kappa.astype(dtype))


def class_counts(rows: Array, ignored_class: int | None = None, ignored_count: int = 0) -> Array:
    """n_c, the (fractional) count of class c in the batch's target rows, float64; the
    ``ignored_count`` samples of ``ignored_class`` that the rows still hold (a shared one-hot
    row of an ignored index inside [0, C)) are not counted. Counts of one-hot rows are integers,
    exact in float64, so the subtraction gives what the rows without them sum to."""
    counts: Array = rows.sum(axis=0, dtype=np.float64)
    if ignored_class is not None:
        counts[ignored_class] -= ignored_count
    return counts


def balanced_weights(counts: Array) -> Array:
    """cw_c = n / (C·n_c) from the batch's (fractional) class counts; 0 for an absent class."""
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

    # bytes per class of a driver's row scratch, per kernel thread (categorical_hinge's λ and
    # its flags; simloss sets its own)
    row_scratch_bytes: ClassVar[int] = 16

    @classmethod
    def working_bytes(cls, rows: int, columns: int, itemsize: int, *, sent: Sent = None) -> int:
        """The domain checks' masks, and what ``prepare`` and the drivers add: the checks and
        index arrays of class-index targets, the mask of ignored samples, κ (kept in the memo)
        with its float64 sum and float32 chunk, the class weights as arrays, key and shown list,
        a driver's zeroed copy of the rows (``ignore_index`` without the mask), P from
        log-probabilities (``distribution_targets``: kl's ``log_target``) and the drivers' row
        scratch on every kernel thread. The shared one-hot rows are the generic targets copy."""
        total = super().working_bytes(rows, columns, itemsize, sent=sent)
        fields = cls.model_fields
        total += INDEX_BYTES * rows
        if cls.masks_ignored:
            total += itemsize * rows
        if "class_weight" in fields:
            chunk = min(rows * columns, max(columns, KAPPA_CHUNK_ELEMENTS))  # ``_kappa``'s
            total += (8 + itemsize) * rows + 16 * chunk
            total += (WEIGHTS_BYTES + itemsize) * columns
        if "ignore_index" in fields and not cls.masks_ignored:
            total += itemsize * rows * columns
        if cls.distribution_targets:
            total += itemsize * rows * columns
        return total + cls.row_scratch_bytes * columns * kernel_threads()

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
        ignored = None  # (N,) bool: the samples of ignore_index, with index targets
        inside = None  # ignore_index when it is a class in [0, C) that the batch holds
        held = 0  # how many samples the shared one-hot rows hold of that class
        if index:
            ignored = require_class_indices(targets, classes, ignore)
            key: tuple[Any, ...] = ("one_hot", classes, dtype)
            rows = shared = memoized(memo, key, lambda: one_hot(targets, classes, dtype))
            if ignore is not None and 0 <= ignore < classes:
                held = int(np.count_nonzero(ignored))
                inside = ignore if held else None
            if held and not self.masks_ignored:
                # a driver without the mask must see an ignored sample as an all-zero row: a
                # copy of this loss's own, dropped with its result (one shared copy per dtype)
                rows = np.array(shared)
                rows[ignored] = 0
                rows = readonly(rows)
        elif targets.shape == predictions.shape:
            key = ("targets", dtype)
            rows = shared = memoized(memo, key, lambda: as_compute(targets, dtype, "targets"))
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
            if ignore is not None and ignored is not None:
                mask = ignored.astype(dtype)
            kernel["ignored"] = readonly(mask)
        kappa = None
        if "class_weight" in shown:
            value = shown["class_weight"]
            counts = partial(class_counts, shared, inside, held)
            weights = self._class_weights(value, counts, classes)
            if value == "balanced":  # derived from the batch: show what was used
                shown["class_weight"] = weights.tolist()
            # κ of the shared rows, 0 for the samples they hold of an ignored class
            masked = ignored if inside is not None else None
            kappa = memoized(
                memo,
                (*key, "kappa", weights.tobytes(), inside),
                partial(_kappa, shared, weights, masked, dtype),
            )
            kernel["class_weight"] = readonly(weights.astype(dtype))
        return Prepared(rows, kernel, kappa, shown)

    @staticmethod
    def _class_weights(value: ClassWeights, counts: Callable[[], Array], classes: int) -> Array:
        if value is None:
            return np.ones(classes)
        if value == "balanced":
            return balanced_weights(counts())
        if len(value) != classes:
            raise InvalidParams(
                f"class_weight has {len(value)} entries; the predictions have {classes} classes",
                errors=[(("params", "class_weight"), f"needs {classes} entries")],
            )
        return np.asarray(value, dtype=np.float64)
