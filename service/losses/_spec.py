"""LossSpec: everything the engine and the catalogue need to know about one loss."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidArray, ShapeMismatch
from ..jit import Array

Family = Literal[
    "regression",
    "binary",
    "multiclass",
    "distribution",
    "overlap",
    "ranking",
    "survival",
    "embedding",
    "sequence",
]
# How a loss takes its targets. same_shape: of the predictions' shape; class_index: (N,) class
# indices of (N, C) predictions; per_sample: (N,) one value a sample (a label of a pair of rows);
# labels: (N,) group labels (any integers) of (N, D) embeddings; interval: (N, 2) [lower, upper]
# bounds of (N,) predictions; sequence: (N, S) padded label sequences of (N, T, C) predictions
# (ctc). A loss that takes none (triplet_margin) lists no form.
TargetForm = Literal["same_shape", "class_index", "per_sample", "labels", "interval", "sequence"]
# The shape of an extra input relative to (N, D) predictions: theirs, (N,), or (N, 1); the last
# two only for predictions of rank 2 or more (for rank-1 ones (N,) is their shape).
InputShape = Literal["same", "rows", "column"]


ComputeDtype = type[np.floating[Any]]
# Field types several losses share
NonNegative = Annotated[float, Field(ge=0)]
ClipEpsilon = Annotated[float, Field(gt=0, lt=0.5, description="probabilities clipped to [ε, 1−ε]")]
# Per-batch conversions of the targets, shared by the losses of one POST /loss request.
Memo = dict[tuple[Any, ...], Any]
# A loss's parameters as a request sent them, before validation (None: not an object).
Sent = Mapping[str, Any] | None
_numba_config: Any = numba.config  # numba's config attributes are created at import, untyped


def kernel_threads() -> int:
    """How many threads one kernel call may run on at most (numba's pool): the bound on the
    row scratch of a driver's blocks alive at once."""
    return max(1, int(_numba_config.NUMBA_NUM_THREADS))


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
    """A read-only, C-contiguous (N, D) array of the compute dtype; ``field`` names it in an
    error (``inputs.var``: the member var of inputs). Rank 1 becomes (N, 1); rank 3 (N, T, C)
    becomes (N, T·C), each row's T time steps one after the other (ctc)."""
    with np.errstate(over="ignore"):  # a value past float32 becomes inf, refused just below
        out = np.ascontiguousarray(array, dtype=dtype)
    if out.ndim != 2:  # (N, prod of the rest): explicit, so that N = 0 has a width too
        out = out.reshape(out.shape[0], int(np.prod(out.shape[1:], dtype=np.int64)))
    if dtype is np.float32 and array.dtype != np.float32 and not np.isfinite(out).all():
        raise InvalidArray(
            f"`{field}` has values outside the float32 range; use dtype float64",
            errors=[(tuple(field.split(".")), "overflows float32")],
        )
    return readonly(out)


@dataclass(frozen=True)
class ExtraInput:
    """An array a loss takes besides its predictions and targets, sent under ``inputs.<name>``
    in the codec's array form (on ``/v2``: an input tensor of that name).

    ``shapes`` are the shapes it may have relative to the predictions (``InputShape``); the
    kernel sees it as an (N, D) or (N, 1) compute array under its name, and, when it is
    ``differentiable``, the gradient with respect to it in an output of the same shape named
    ``gradient_name`` (empty when the request does not ask for ``input_gradients``).
    """

    name: str
    description: str
    shapes: tuple[InputShape, ...] = ("same",)
    differentiable: bool = True

    @property
    def gradient_name(self) -> str:
        """The driver's parameter that receives the gradient with respect to this input."""
        return f"grad_{self.name}"

    def allowed(self, predictions: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The shapes this input may have next to predictions of shape ``predictions``."""
        n = predictions[0]
        shapes = {
            "same": predictions,
            "rows": (n,) if len(predictions) >= 2 else predictions,
            "column": (n, 1) if len(predictions) >= 2 else predictions,
        }
        return list(dict.fromkeys(shapes[form] for form in self.shapes))

    def entry(self) -> dict[str, Any]:
        """The input as ``GET /losses`` describes it."""
        return {
            "name": self.name,
            "shapes": list(self.shapes),
            "differentiable": self.differentiable,
            "description": self.description,
        }


class KernelBindingError(TypeError):
    """A loss's ``kernel_params`` do not match its driver's parameters: a bug in the loss."""


@dataclass(frozen=True)
class Prepared:
    """What a loss's parameters make of a batch's targets before the kernel runs."""

    # read-only, C-contiguous: (N, D) rows of the compute dtype, or (N,) int64 class indices
    targets: Array
    # the driver's parameters by their names in its signature (``LossSpec.kernel_args``)
    kernel_params: Mapping[str, Any]
    # κ_i, the normaliser of a class-weighted mean, (N,) compute dtype, read-only; None: all 1
    kappa: Array | None = None
    shown: dict[str, Any] | None = None  # params in force, when they differ from model_dump()


class LossParams(BaseModel):
    """Base of every loss's parameters: strict, no unknown keys, finite numbers.

    ``kernel_params`` names the driver's parameters; the order of the fields does not matter.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    min_rank: ClassVar[int] = 1
    # the highest rank of predictions the loss takes: 1 for one value a sample (a margin)
    # Rank 3 (N, T, C) is for the losses of sequences (ctc), which take it only.
    max_rank: ClassVar[int] = 2
    # Parameters the start-up warm-up compiles with: the defaults, unless a loss has a
    # parameter without a usable default (simloss needs a similarity).
    warm_up: ClassVar[dict[str, Any]] = {}
    # Fields that do not reach the driver as they are: used on the host only (ignore_index), or
    # handed over in another form by ``prepare`` (class weights as an array) or by an override
    # of ``kernel_params`` (a null as a number).
    host_fields: ClassVar[frozenset[str]] = frozenset()
    # The arrays the loss takes under ``inputs`` besides predictions and targets, each required.
    inputs: ClassVar[tuple[ExtraInput, ...]] = ()

    @classmethod
    def warm_up_batch(cls) -> tuple[Array, Array]:
        """Predictions and targets inside the loss's domain that the start-up warm-up compiles
        with (their dtypes and ranks decide the signatures, not their values): predictions 0.5
        and one-hot targets, which are probability rows and target rows that are distributions,
        counts, hinge labels (0 stands for -1) and masks; a loss whose domain excludes them
        (gamma's positive targets) gives its own."""
        return np.full((2, 2), 0.5), np.eye(2)

    @classmethod
    def warm_up_inputs(cls, predictions: Array) -> dict[str, Array]:
        """The extra inputs the warm-up compiles with, next to ``warm_up_batch``'s predictions:
        ones of their shape (a variance, a second score or row, a positive or negative row)."""
        return {x.name: np.ones_like(predictions) for x in cls.inputs}

    def kernel_params(self) -> dict[str, Any]:
        """The driver's parameters by name: every field but the ``host_fields``, as a plain float
        or bool, so that every call hits the one compiled (and cached) signature per dtype."""
        fields = self.model_dump(exclude=set(self.host_fields))
        for name, value in fields.items():
            if not isinstance(value, bool | int | float):
                raise KernelBindingError(
                    f"{type(self).__name__}.{name} is not a number the driver can take: list it "
                    "in host_fields and hand it over in another form"
                )
        return {name: v if isinstance(v, bool) else float(v) for name, v in fields.items()}

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
        return Prepared(rows, self.kernel_params())

    def prepare_inputs(
        self, predictions: Array, inputs: Mapping[str, Array], dtype: ComputeDtype, memo: Memo
    ) -> dict[str, Array]:
        """The extra inputs (``inputs``, their shapes already checked against ``allowed``) as
        the kernel takes them: read-only (N, D') arrays of the compute dtype under their names,
        each made once per batch and dtype (``memo``: the losses of a request share them)."""
        arrays: dict[str, Array] = {}
        for x in self.inputs:
            make = partial(as_compute, inputs[x.name], dtype, f"inputs.{x.name}")
            arrays[x.name] = memoized(memo, ("inputs", x.name, dtype), make)
        return arrays

    def bind_inputs(
        self, prepared: Prepared, inputs: Mapping[str, Array], gradients: Mapping[str, Array]
    ) -> Prepared:
        """``prepared`` with the extra inputs (``prepare_inputs``' arrays) and the outputs of
        their gradients (by input name: writable arrays of the input's compute shape, or empty
        ones when not asked for) among the kernel parameters, under the driver's names."""
        if not self.inputs:
            return prepared
        outputs = {x.gradient_name: gradients[x.name] for x in self.inputs if x.differentiable}
        return replace(prepared, kernel_params={**prepared.kernel_params, **inputs, **outputs})

    def mean_factor(self, inputs: Mapping[str, Array], dtype: ComputeDtype) -> Array | None:
        """Per sample, the factor its loss enters a ``mean`` with (N,), read-only, of the
        compute dtype; None: 1 (every loss but ctc, whose mean divides each sample's loss by its
        target length, as torch's). ``inputs`` are ``prepare_inputs``' arrays. The normaliser
        stays Σ_i w_i·κ_i."""
        return None

    def check_inputs(self, predictions: Array, inputs: Mapping[str, Array]) -> None:
        """Raise ``OutOfDomain`` for extra inputs the loss is not defined on (default: none);
        ``inputs`` are ``prepare_inputs``' compute arrays."""

    def check_domain(self, predictions: Array, targets: Array) -> None:
        """Raise ``OutOfDomain`` for inputs the loss is not defined on (default: none).

        Both arrays are the compute arrays the kernel will see: (N, D) predictions, and the
        targets ``prepare`` made, (N, D) rows or, for the multiclass losses, (N,) int64 class
        indices (``_multiclass.class_indices``).
        """

    # What a domain check holds beyond the arrays it checks, per element: the boolean masks of
    # ``_checks`` (``(x < 0) | (x > 1)`` holds three (N, D) masks at once).
    check_bytes: ClassVar[int] = 3

    @classmethod
    def working_bytes(
        cls, rows: int, columns: int, itemsize: int, *, sent: Sent = None, indices: bool = False
    ) -> int:
        """Bytes this loss holds beyond the generic arrays (the decoded inputs, the compute
        copies of predictions and targets, weights, per-sample and derivative outputs), at
        most, for predictions of shape (rows, columns) in a compute dtype of ``itemsize`` bytes.
        simloss: its C x C matrix (and anything else it allocates).

        An upper bound from the shape alone: the parameters are not validated yet. ``sent``, the
        loss's parameters as the request sent them (unvalidated, any types), may tighten it
        where they decide what is allocated (simloss's ``ordinal_base`` needs no matrix); a
        bound must hold for every value. ``indices``: the targets are declared as (N,) class
        indices of predictions with C > 1 columns, so no (N, C) target rows exist (the losses
        that take them say what that saves). What a loss memoizes (``Memo``) is counted in full
        by each loss that may make it, so the sum over a request's losses bounds the request
        whatever their parameters. Default: the domain checks' masks.
        """
        return cls.check_bytes * rows * columns

    @classmethod
    def scratch_bytes(cls, predictions: tuple[int, ...], targets: Any) -> int:
        """Bytes the kernel allocates while it runs, at most, from the predictions' declared
        shape (empty: unknown) and the targets as declared (``core.Declared`` or None): ctc's
        forward variables, T × (2S + 1) per thread. Default: none."""
        return 0

    @classmethod
    def operations(cls, rows: int, columns: int, *, sent: Sent = None, targets: Any = None) -> int:
        """About how many elementary steps evaluating this loss takes: rows*columns for most;
        simloss adds its matrix (C^2) and whatever else scales beyond N*C.

        An upper bound from the shape alone, as ``working_bytes``; ``sent`` may tighten it, and
        ``targets`` (``core.Declared`` or None: unknown) gives what the predictions' shape does
        not (ctc's label width S).
        """
        return rows * columns

    @classmethod
    def row_arguments(cls) -> frozenset[str]:
        """The driver's parameters that hold rows of the batch, cut into blocks with the
        predictions: the extra inputs and their gradients."""
        return frozenset(
            name
            for x in cls.inputs
            for name in (x.name, *((x.gradient_name,) if x.differentiable else ()))
        )

    @classmethod
    def outputs(cls) -> frozenset[str]:
        """The driver's parameters it writes: the gradients of the differentiable inputs."""
        return frozenset(x.gradient_name for x in cls.inputs if x.differentiable)


Driver = Callable[..., None]
# The leading arguments of every driver, by name; its parameters follow them.
DRIVER_ARRAYS = ("pred", "targ", "w", "scale", "loss", "grad", "hess")
# What a kernel parameter may be: one compiled signature per dtype takes exactly these.
KERNEL_VALUE_TYPES = (bool, float, np.ndarray)


class Kernel(NamedTuple):
    """What a loss's module gives the registry: its parameters and its driver (the words about
    the loss, its name and aliases, are its entry in ``catalogue.toml``)."""

    params: type[LossParams]
    driver: Driver


class CatalogueEntry(BaseModel):
    """One table of ``catalogue.toml``, checked when the registry is built: a misspelt key or a
    family that does not exist fails the import, not a request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aliases: tuple[str, ...] = ()
    family: Family
    summary: str
    formula: str
    reference: str
    targets: tuple[TargetForm, ...] = ("same_shape",)
    hessian: bool = True
    hessian_note: str | None = None
    batch_coupled: bool = False


@dataclass(frozen=True)
class LossSpec:
    """One registry entry.

    ``driver(predictions, targets, w, scale, loss, grad, hess, *params)`` takes C-contiguous
    (N, D) arrays of the compute dtype (targets: or (N,) int64 class indices), writes ``loss[i] = l_i`` and, when ``grad`` / ``hess``
    are not empty, the derivatives of ``l_i`` times ``row_factor(w, i, scale)``. Its parameters
    are bound by name: ``kernel_args`` orders ``Prepared.kernel_params`` by the driver's own
    parameter names (``kernel_names``), so a field's place in a Params class cannot matter.
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
    # a sample's loss depends on other rows of the batch (a risk set, the other embeddings):
    # the driver runs over the whole batch at once, never over blocks of rows, and a batch is
    # never split across requests (the catalogue says what a sample is)
    batch_coupled: bool = False
    # the driver's parameter names after DRIVER_ARRAYS, as ``jit.driver`` named them
    kernel_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        python = getattr(self.driver, "py_func", self.driver)
        signature = inspect.signature(python).parameters.values()
        arrays = tuple(p.name for p in signature if p.kind is p.POSITIONAL_OR_KEYWORD)
        named = tuple(getattr(python, "kernel_names", ()))
        if arrays[: len(DRIVER_ARRAYS)] != DRIVER_ARRAYS:
            raise KernelBindingError(
                f"{self.name}: the driver's arguments start {arrays[: len(DRIVER_ARRAYS)]}, not "
                f"{DRIVER_ARRAYS}"
            )
        object.__setattr__(self, "kernel_names", arrays[len(DRIVER_ARRAYS) :] + named)

    def kernel_args(self, prepared: Prepared) -> tuple[Any, ...]:
        """The driver's parameters from ``prepared.kernel_params``, in the driver's order."""
        params = prepared.kernel_params
        if params.keys() != set(self.kernel_names):
            missing = [k for k in self.kernel_names if k not in params]
            extra = [k for k in params if k not in self.kernel_names]
            raise KernelBindingError(
                f"{self.name}: the driver takes parameters {list(self.kernel_names)}; "
                f"kernel_params lacks {missing} and has no place for {extra}"
            )
        args = tuple(params[k] for k in self.kernel_names)
        outputs = self.params.outputs()
        for k, value in zip(self.kernel_names, args, strict=True):
            plain = type(value) in KERNEL_VALUE_TYPES
            if k in outputs:
                if not (isinstance(value, np.ndarray) and value.flags.writeable):
                    raise KernelBindingError(
                        f"{self.name}: kernel parameter {k} is an output; it takes a writable array"
                    )
            elif not plain or (isinstance(value, np.ndarray) and value.flags.writeable):
                raise KernelBindingError(
                    f"{self.name}: kernel parameter {k} is a {type(value).__name__}; drivers take "
                    "plain floats, bools and read-only arrays (and the input gradients' outputs)"
                )
        return args

    def run(
        self,
        predictions: Array,
        targets: Array,
        w: Array,
        scale: float,
        loss: Array,
        grad: Array,
        hess: Array,
        prepared: Prepared,
    ) -> None:
        """Call the driver on the compute arrays with the loss's own kernel parameters."""
        self.driver(predictions, targets, w, scale, loss, grad, hess, *self.kernel_args(prepared))

    @property
    def mean_factor(self) -> bool:
        """Whether the loss's ``mean`` weighs each sample by a factor of its own
        (``LossParams.mean_factor``: ctc's 1 / target length), so that a mean is not the sum
        over the weight sum."""
        return self.params.mean_factor is not LossParams.mean_factor

    @classmethod
    def of(cls, name: str, kernel: Kernel, entry: CatalogueEntry) -> LossSpec:
        """The registry entry of loss ``name``: its module's kernel and its catalogue entry."""
        return cls(name=name, params=kernel.params, driver=kernel.driver, **dict(entry))

    def catalogue_entry(self) -> dict[str, Any]:
        """The entry of ``GET /losses``."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "family": self.family,
            "summary": self.summary,
            "formula": self.formula,
            "targets": list(self.targets),
            "inputs": [x.entry() for x in self.params.inputs],
            "params": self.params.model_json_schema(),
            "gradient": True,
            "hessian": self.hessian,
            "hessian_note": self.hessian_note,
            "batch_coupled": self.batch_coupled,
            "mean_factor": self.mean_factor,
            "reference": self.reference,
        }
