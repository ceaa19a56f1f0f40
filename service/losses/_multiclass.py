"""Targets of the multiclass losses: (N, C) one-hot or soft rows, or (N,) class indices.

Class indices stay indices (issue 13): they reach the kernels as one read-only (N,) int64 array
(``class_indices``), never as one-hot (N, C) rows, which for a language model's 2048 tokens x
32,000 classes were 524 MB of float64 made and read for 2048 ones. Every multiclass kernel reads
its targets through ``_stable.target_at``: ``targ[i, j]`` of (N, C) rows, 1.0 where the index of
sample i is j and 0.0 elsewhere of (N,) indices, so one written kernel serves both forms with
the same arithmetic, and one-hot targets and the equivalent indices give the same response to
the last bit (tests/test_losses.py holds every multiclass loss to it). An index outside [0, C)
is −1 in that array: an all-zero row to the kernels. κ and the "balanced" class counts come
from the indices directly (``_index_kappa``, ``index_counts``: a one-hot row times the weights
is exactly the one weight, and counts are integers), and ``core.Demand`` counts the indices as
8 bytes a sample, not as rows (``MulticlassParams.working_bytes`` with ``indices``).

A sample whose index equals ``ignore_index`` has normaliser κ_i = 0 and is masked explicitly:
the losses with label smoothing take the driver parameter ``ignored`` ((N,), 1 where a sample is
ignored, or empty), so an ignored sample has loss 0 and gradient 0, exactly PyTorch's, while an
all-zero soft row that is not ignored is smoothed like any other (LOSSES.md:
``y' = (1 − s)y + s/C``).

The indices are made once per request, whatever the ``ignore_index`` of each loss (issue 12:
sixty-four losses differing only in it held sixty-four copies of the targets): an index outside
[0, C), such as torch's −100, is −1 for every loss anyway; an ignored class inside [0, C) stays
in the shared indices and is masked by ``ignored``, κ and the balanced counts leave it out, and
only a driver without the mask gets its own (N,) copy with −1 there, dropped with its result.

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


def class_indices(targets: Array, classes: int) -> Array:
    """(N,) class indices, checked by ``require_class_indices``, as the read-only int64 array the
    kernels read (``_stable.target_at``); an index outside [0, C) (an ``ignore_index`` such as
    −100) becomes −1, an all-zero row to the kernels (whatever its value: 1e300 or 2**63 has no
    int64 to become).

    The indices do not depend on ``ignore_index``: the losses of one request share them,
    whatever their ``ignore_index`` (``MulticlassParams.prepare`` masks an ignored class inside
    [0, C))."""
    out = np.full(len(targets), -1, dtype=np.int64)
    inside = (targets >= 0) & (targets < classes)
    out[inside] = targets[inside]
    return readonly(out)


# elements of (N, C) float32 targets converted to float64 at a time for κ (``_kappa``)
KAPPA_CHUNK_ELEMENTS = 1 << 16
# What ``prepare`` holds per sample with class-index targets beyond the int64 indices themselves
# (the generic targets copy, ``core.Demand``), at most: the integer and range checks' masks and
# ``floor`` (``require_class_indices``: 16), ``class_indices``' mask and gathered values (11),
# and κ's or the balanced counts' mask, gathered indices and gathered weights (17)
INDEX_BYTES = 48
# What class weights hold per class beyond their compute copy: the float64 weights and counts,
# the balanced weights' temporaries, the memo key's bytes and the list of floats shown
WEIGHTS_BYTES = 96


def _kappa(rows: Array, weights: Array, dtype: ComputeDtype) -> Array:
    """κ_i = Σ_c cw_c·y_ic of (N, C) target rows, the normaliser of a class-weighted mean:
    Σ_i w_i·κ_i divides its sum. float32 rows are widened a chunk at a time, not as a whole
    (N, C) float64 copy."""
    if rows.dtype == np.float64:
        kappa = rows @ weights
    else:
        kappa = np.empty(len(rows))
        step = max(1, KAPPA_CHUNK_ELEMENTS // max(1, rows.shape[1]))
        for start in range(0, len(rows), step):
            kappa[start : start + step] = rows[start : start + step].astype(np.float64) @ weights
    return readonly(kappa.astype(dtype))


def _index_kappa(
    indices: Array, weights: Array, ignored: Array | None, dtype: ComputeDtype
) -> Array:
    """κ_i = cw_{y_i} of class-index targets (``class_indices``): what ``_kappa`` gives their
    one-hot rows, to the bit (a one-hot row times the weights is exactly the one weight), 0 for
    an index outside [0, C) and for the ``ignored`` samples."""
    kappa = np.zeros(len(indices))
    inside = indices >= 0
    kappa[inside] = weights[indices[inside]]
    if ignored is not None:
        kappa[ignored] = 0.0
    return readonly(kappa.astype(dtype))


def index_counts(indices: Array, classes: int, ignored: Array | None) -> Array:
    """n_c, the count of class c in the batch's class-index targets (``class_indices``), float64,
    leaving out the indices outside [0, C) and the ``ignored`` samples: what ``class_counts``
    gives their one-hot rows."""
    kept = indices >= 0
    if ignored is not None:
        kept &= ~ignored
    return np.bincount(indices[kept], minlength=classes).astype(np.float64)


def class_counts(rows: Array) -> Array:
    """n_c, the (fractional) count of class c in the batch's (N, C) target rows, float64."""
    counts: Array = rows.sum(axis=0, dtype=np.float64)
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
    def working_bytes(
        cls, rows: int, columns: int, itemsize: int, *, sent: Sent = None, indices: bool = False
    ) -> int:
        """The domain checks' masks, and what ``prepare`` and the drivers add: the checks of
        class-index targets and their temporaries, the mask of ignored samples, κ (kept in the
        memo) with its float64 sum, the class weights as arrays, key and shown list, a driver's
        own copy of the (N,) indices (``ignore_index`` without the mask) and the drivers' row
        scratch on every kernel thread; with (N, C) target rows (not ``indices``), also κ's
        float32 chunk and P from log-probabilities (``distribution_targets``: kl's
        ``log_target``). The targets themselves, (N, C) rows or the shared (N,) int64 indices,
        are the generic targets copy (``core.Demand``): class indices are never made rows."""
        total = super().working_bytes(rows, columns, itemsize, sent=sent, indices=indices)
        fields = cls.model_fields
        total += INDEX_BYTES * rows
        if cls.masks_ignored:
            total += itemsize * rows
        if "class_weight" in fields:
            total += (8 + itemsize) * rows + (WEIGHTS_BYTES + itemsize) * columns
            if not indices:
                chunk = min(rows * columns, max(columns, KAPPA_CHUNK_ELEMENTS))  # ``_kappa``'s
                total += 16 * chunk
        if "ignore_index" in fields and not cls.masks_ignored:
            total += 8 * rows
        if cls.distribution_targets and not indices:
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
        if self.distribution_targets and targets.ndim == 2:  # indices: one-hot or zero rows
            require_distributions(targets, name, "targets", allow_zero=True)

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        n, classes = predictions.shape
        ignore = getattr(self, "ignore_index", None)
        index = targets.ndim == 1 and self.index_targets and targets.shape[0] == n
        ignored = None  # (N,) bool: the samples of ignore_index, with index targets
        inside = None  # ignore_index when it is a class in [0, C) that the batch holds
        if index:
            ignored = require_class_indices(targets, classes, ignore)
            key: tuple[Any, ...] = ("indices", classes)
            rows = shared = memoized(memo, key, lambda: class_indices(targets, classes))
            if ignore is not None and 0 <= ignore < classes and ignored.any():
                inside = ignore
            if inside is not None and not self.masks_ignored:
                # a driver without the mask must see an ignored sample as an all-zero row: a
                # copy of this loss's own (N,) indices with −1 there, dropped with its result
                rows = np.array(shared)
                rows[ignored] = -1
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
            # the samples of an ignored class the shared indices still hold: left out of the
            # counts and given κ 0 (an index outside [0, C) is left out by its value)
            masked = ignored if inside is not None else None
            counts: Callable[[], Array]
            if index:
                counts = partial(index_counts, shared, classes, masked)
            else:
                counts = partial(class_counts, shared)
            weights = self._class_weights(value, counts, classes)
            if value == "balanced":  # derived from the batch: show what was used
                shown["class_weight"] = weights.tolist()
            make: Callable[[], Array]
            if index:
                make = partial(_index_kappa, shared, weights, masked, dtype)
            else:
                make = partial(_kappa, shared, weights, dtype)
            kappa_key = (*key, "kappa", dtype, weights.tobytes(), inside)
            kappa = memoized(memo, kappa_key, make)
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
