"""LossSpec: everything the engine and the catalogue need to know about one loss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from ._jit import Array

Family = Literal["regression", "binary", "multiclass", "distribution", "overlap"]
TargetForm = Literal["same_shape", "class_index"]


class LossParams(BaseModel):
    """Base of every loss's parameters: strict, no unknown keys, finite numbers.

    The fields are declared in the order the loss's driver takes them after its arrays;
    ``kernel_args`` hands them over as plain floats and bools so that every call hits the one
    compiled (and cached) signature per dtype.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    min_rank: ClassVar[int] = 1

    def kernel_args(self) -> tuple[float | bool, ...]:
        """The driver's trailing arguments."""
        return tuple(v if isinstance(v, bool) else float(v) for v in self.model_dump().values())

    def check_domain(self, predictions: Array, targets: Array) -> None:
        """Raise ``OutOfDomain`` for inputs the loss is not defined on (default: none)."""


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
