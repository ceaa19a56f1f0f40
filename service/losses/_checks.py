"""Input checks shared by the classification losses (422s that say what to change)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArray, OutOfDomain
from ..jit import Array


def _first(mask: Array) -> list[int]:
    return [int(k) for k in np.unravel_index(int(np.argmax(mask)), mask.shape)]


def require_probabilities(predictions: Array, name: str) -> None:
    """Predictions in [0, 1], or a 422 that suggests ``from_logits: true``."""
    bad = (predictions < 0) | (predictions > 1)
    if predictions.size and bad.any():
        where = _first(bad)
        raise OutOfDomain(
            f"{name} got predictions outside [0, 1] (first at {where}) but from_logits is "
            "false; send probabilities, or set params.from_logits: true for logits",
            errors=[(("predictions", *where), "must be a probability in [0, 1]")],
        )


def require_positive_row_sums(rows: Array, name: str, field: str = "predictions") -> None:
    """Rows that can be renormalised (sum > 0): probability rows of the predictions (a row of
    zeros is outside the loss's domain), or target rows (not a distribution: an invalid array)."""
    sums = rows.sum(axis=1)
    if sums.size and (sums <= 0).any():
        row = int(np.argmax(sums <= 0))
        error = OutOfDomain if field == "predictions" else InvalidArray
        what = "probability" if field == "predictions" else "target"
        raise error(
            f"{name} renormalises {what} rows, but row {row} sums to 0",
            errors=[((field, row), "row must have a positive sum")],
        )


def require_in_unit_interval(targets: Array, name: str) -> None:
    """Targets in [0, 1] (binary, multilabel, soft masks)."""
    bad = (targets < 0) | (targets > 1)
    if targets.size and bad.any():
        where = _first(bad)
        raise InvalidArray(
            f"{name} needs targets in [0, 1]; the first outside is at {where}",
            errors=[(("targets", *where), "must be in [0, 1]")],
        )


def require_non_negative(targets: Array, name: str) -> None:
    """Soft or one-hot targets are non-negative."""
    bad = targets < 0
    if targets.size and bad.any():
        where = _first(bad)
        raise InvalidArray(
            f"{name} needs non-negative targets (one-hot or soft); the first negative is at "
            f"{where}",
            errors=[(("targets", *where), "must be >= 0")],
        )


def require_one_hot(rows: Array, name: str) -> None:
    """(N, C) targets that are one-hot rows: entries 0 or 1, exactly one 1 a row (the losses
    whose formula needs the one target class: sparsemax, the margin softmaxes)."""
    if not rows.size:
        return
    bad = (rows != 0) & (rows != 1)
    if bad.any():
        where = _first(bad)
        raise InvalidArray(
            f"{name} takes one-hot target rows (or (N,) class indices); targets{where} is "
            "neither 0 nor 1 (soft targets have no single target class here)",
            errors=[(("targets", *where), "must be 0 or 1 in a one-hot row")],
        )
    ones = rows.sum(axis=1)
    off = ones != 1
    if off.any():
        row = int(np.argmax(off))
        raise InvalidArray(
            f"{name} takes one-hot target rows (or (N,) class indices); target row {row} has "
            f"{int(ones[row])} ones, not exactly one",
            errors=[(("targets", row), "must have exactly one 1")],
        )


def require_domain(
    name: str,
    predictions: Array,
    targets: Array,
    from_logits: bool,
    *,
    unit_targets: bool = False,
    renormalised: bool = False,
) -> None:
    """The inputs of a loss on probabilities, or on logits with ``from_logits``: targets in
    [0, 1] where they are labels or masks (``unit_targets``), predictions that are probabilities
    unless they are logits, and probability rows with a positive sum where the loss renormalises
    them."""
    if unit_targets:
        require_in_unit_interval(targets, name)
    if not from_logits:
        require_probabilities(predictions, name)
        if renormalised:
            require_positive_row_sums(predictions, name)


# LOSSES.md: probability rows sum to 1 within 1e-3 (relative)
DISTRIBUTION_RTOL = 1e-3


def require_distributions(
    rows: Array, name: str, field: str = "predictions", *, allow_zero: bool = False
) -> None:
    """Rows that are distributions (sum 1 within ``DISTRIBUTION_RTOL``), or a 422 that names
    ``from_logits: true`` and ``normalize: true``: a silent renormalisation would answer for
    another input than the one sent. ``allow_zero`` accepts all-zero rows (targets: ignored
    samples, or soft rows that label smoothing still gives a loss)."""
    if not rows.size:
        return
    sums = rows.sum(axis=1, dtype=np.float64)
    bad = np.abs(sums - 1.0) > DISTRIBUTION_RTOL
    if allow_zero:
        bad &= ~(rows == 0).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        what = "probability" if field == "predictions" else "target"
        raise OutOfDomain(
            f"{name} reads {field} rows as distributions, but {what} row {row} sums to "
            f"{sums[row]:.17g}, not 1 (within {DISTRIBUTION_RTOL:g}); send distributions, set "
            "params.from_logits: true for logits or log-probabilities, or set "
            "params.normalize: true to have each row divided by its sum (Keras' silent "
            "renormalisation)",
            errors=[((field, row), "row must sum to 1")],
        )
