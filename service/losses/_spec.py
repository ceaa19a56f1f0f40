"""LossSpec: everything the engine and the catalogue need to know about one loss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..errors import InvalidArray, ShapeMismatch
from ._jit import Array

Family = Literal["regression", "binary", "multiclass", "distribution", "overlap"]
TargetForm = Literal["same_shape", "class_index"]


ComputeDtype = type[np.floating[Any]]
# Per-batch conversions of the targets, shared by the losses of one POST /loss request.
Memo = dict[tuple[Any, ...], Any]


def memoized(memo: Memo, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    """``memo[key]``, made on first use."""
    if key not in memo:
        memo[key] = make()
    return memo[key]


def readonly(array: Array) -> Array:
    """Mark an input read-only: kernels are compiled for read-only inputs (packed arrays arrive
    read-only), and one flag for every input keeps one compiled signature per dtype."""
    array.flags.writeable = False
    return array


def as_compute(array: Array, dtype: ComputeDtype, field: str) -> Array:
    """A read-only, C-contiguous (N, D) array of the compute dtype."""
    with np.errstate(over="ignore"):  # a value past float32 becomes inf, refused just below
        out = np.ascontiguousarray(array, dtype=dtype)
    if out.ndim == 1:
        out = out.reshape(-1, 1)
    if dtype is np.float32 and array.dtype != np.float32 and not np.isfinite(out).all():
        raise InvalidArray(
            f"`{field}` has values outside the float32 range; use dtype float64",
            errors=[((field,), "overflows float32")],
        )
    return readonly(out)


@dataclass(frozen=True)
class Prepared:
    """What a loss's parameters make of a batch's targets before the kernel runs."""

    targets: Array  # (N, D), compute dtype, read-only, C-contiguous
    kernel_args: tuple[Any, ...]  # the driver's trailing arguments
    kappa: Array | None = None  # κ_i of SPEC section 4, (N,) compute dtype, read-only; None: 1
    shown: dict[str, Any] | None = None  # params in force, when they differ from model_dump()


class LossParams(BaseModel):
    """Base of every loss's parameters: strict, no unknown keys, finite numbers.

    The fields are declared in the order the loss's driver takes them after its arrays;
    ``kernel_args`` hands them over as plain floats and bools so that every call hits the one
    compiled (and cached) signature per dtype.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    min_rank: ClassVar[int] = 1
    # Parameters the start-up warm-up compiles with: the defaults, unless a loss has a
    # parameter without a usable default (simloss needs a similarity).
    warm_up: ClassVar[dict[str, Any]] = {}

    def kernel_args(self) -> tuple[float | bool, ...]:
        """The driver's trailing arguments."""
        return tuple(v if isinstance(v, bool) else float(v) for v in self.model_dump().values())

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """Targets as the kernel takes them; by default of the predictions' shape.

        ``memo`` holds conversions of this batch's targets that other losses can reuse.
        """
        if targets.shape != predictions.shape:
            raise ShapeMismatch(
                f"targets have shape {list(targets.shape)}, predictions "
                f"{list(predictions.shape)}; {name} needs them equal",
                errors=[(("targets",), "shape differs from predictions")],
            )
        rows = memoized(memo, ("targets", dtype), lambda: as_compute(targets, dtype, "targets"))
        return Prepared(rows, self.kernel_args())

    def check_domain(self, predictions: Array, targets: Array) -> None:
        """Raise ``OutOfDomain`` for inputs the loss is not defined on (default: none).

        Both arrays are the (N, D) compute arrays the kernel will see.
        """


Driver = Callable[..., None]


@dataclass(frozen=True)
class LossSpec:
    """One registry entry.

    ``driver(predictions, targets, w, scale, loss, grad, hess, *params.kernel_args())`` takes
    C-contiguous (N, D) arrays of the compute dtype, writes ``loss[i] = l_i`` and, when ``grad`` /
    ``hess`` are not empty, the derivatives of ``l_i`` times ``row_factor(w, i, scale)``.
    """

    name: str
    aliases: tuple[str, ...]
    family: Family
    summary: str
    formula: str
    params: type[LossParams]
    driver: Driver
    reference: str
    targets: tuple[TargetForm, ...] = ("same_shape",)
    hessian: bool = True
    hessian_note: str | None = None

    def catalogue_entry(self) -> dict[str, Any]:
        """The entry of ``GET /losses``."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "family": self.family,
            "summary": self.summary,
            "formula": self.formula,
            "targets": list(self.targets),
            "params": self.params.model_json_schema(),
            "gradient": True,
            "hessian": self.hessian,
            "hessian_note": self.hessian_note,
            "reference": self.reference,
        }
