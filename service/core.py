"""The typed evaluation core: a loss, its parameters, a batch and options in; a ``Result`` out.

It knows no JSON, no HTTP and no metrics: the wire codecs (``service/codecs``) decode a request
into a ``Batch`` and ``Options``, call ``evaluate`` once per loss, and encode its ``Result``; the
routes record metrics from the ``Result``. The memory a request needs is reserved here too
(``reserve``), from a typed description of the declared shapes (``Demand``) that each codec fills
in before decoding; and a request whose client has gone stops between blocks of rows (``CANCEL``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import itertools
import threading
from collections.abc import Collection, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from .errors import (
    ClientGone,
    InvalidArray,
    InvalidParams,
    LossdError,
    MemoryBudget,
    OutOfDomain,
    ShapeMismatch,
    Unprocessable,
    from_validation,
    shown,
)
from .jit import Array
from .losses import REGISTRY, LossParams, LossSpec, resolve
from .losses._aliases import alias_conventions
from .losses._spec import Memo, Prepared, as_compute, readonly
from .memory import Lease, RunElsewhere
from .reductions import plan, weighted_sum

Reduction = Literal["mean", "sum", "none"]
ReduceOver = Literal["samples", "elements"]
DtypeName = Literal["float64", "float32"]
DTYPES: dict[str, type[np.floating[Any]]] = {"float64": np.float64, "float32": np.float32}
EMPTY_WEIGHTS = {name: readonly(np.empty(0, dtype=dt)) for name, dt in DTYPES.items()}
# What the kernel of a loss that takes no targets gets in their place.
NO_TARGETS = {name: readonly(np.empty((0, 0), dtype=dt)) for name, dt in DTYPES.items()}
# The kernel runs over blocks of about this many elements, looking between two blocks whether
# the request's client is still there (CANCEL): a few milliseconds of work each.
BLOCK_ELEMENTS = 1 << 20
# Kernel arguments that hold one value per row, cut into blocks with the rows (every other
# array argument, such as class weights or a similarity matrix, is the loss's own).
ROW_ARGS = frozenset({"ignored"})
# Set by the route for the work it hands to a compute thread: once it is set the client has
# gone, and the evaluation stops at the next block (ClientGone, answered 499).
CANCEL: ContextVar[threading.Event | None] = ContextVar("lossd_cancel", default=None)
# A small body is evaluated on the event loop only when its loss takes at most this many
# elementary steps (a few milliseconds); else it goes to a compute thread (RunElsewhere).
INLINE_OPERATIONS = 1 << 16
# A loss's parameters are a handful of fields: past this many keys only the first are read,
# so that a flood of unknown keys costs no more than a few (all of them are refused anyway).
MAX_PARAM_KEYS = 32


@dataclass(frozen=True)
class Batch:
    """The decoded arrays of a request, as sent (any numeric dtype, rank 1 or 2, predictions
    of rank 3 for a loss of sequences): ``targets``
    None when the request sent none (a loss that takes none), ``inputs`` the extra named arrays
    of the losses that take them (``LossParams.inputs``)."""

    predictions: Array
    targets: Array | None
    sample_weight: Array | None = None
    inputs: Mapping[str, Array] = dataclasses.field(default_factory=dict)
    # conversions of the targets made by one loss and reused by the next (POST /loss)
    memo: Memo = dataclasses.field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Options:
    """What to compute: the reduction, which outputs, and the compute dtype."""

    reduction: Reduction = "mean"
    # "elements": an elementwise loss on (N, D) rows sums and averages over all N·D elements,
    # as PyTorch reduces; "samples": over the N per-sample losses (row means), as Keras does
    reduce_over: ReduceOver = "samples"
    per_sample: bool = True
    gradient: bool = False
    hessian: bool = False
    dtype: DtypeName = "float64"
    # the gradients with respect to the loss's differentiable extra inputs, scaled as
    # ``gradient`` is (of the reduced value, or of each l_i for reduction none)
    input_gradients: bool = False


@dataclass(frozen=True)
class Result:
    """One loss on one batch. Arrays are in the compute dtype; ``gradient`` and ``hessian`` have
    the predictions' shape, each of ``input_gradients`` its input's; ``value`` is None for
    reduction ``none``."""

    loss: str
    reduction: Reduction
    reduce_over: ReduceOver
    value: float | None
    weight_sum: float
    n: int
    per_sample: Array | None
    gradient: Array | None
    hessian: Array | None
    params: dict[str, Any]  # the parameters in force, defaults filled in
    kernel_seconds: float
    elements: int  # prediction elements the kernel went over
    # by input name, when asked (empty for a loss without differentiable extra inputs)
    input_gradients: dict[str, Array] | None = None


def select(
    name: str,
    sent: dict[str, Any],
    options: Options,
    explicit: Collection[str],
    rank: int,
    where: str = "params",
) -> tuple[LossSpec, LossParams, Options]:
    """The loss a name stands for, its parameters and the options in force: an alias brings its
    library's defaults, parameter names and reduction (``losses._aliases``) under what the
    request sent (``explicit``: the options it set), and scikit-learn's ``log_loss`` goes to
    the multiclass loss for rank-2 predictions."""
    spec = spec_for(name, rank)
    alias = alias_conventions(name)
    if alias is None:
        return spec, validate_params(spec, sent, where), options
    params = validate_params(spec, alias.params_for(sent, spec.params.model_fields), where)
    if "reduce_over" not in explicit:
        options = dataclasses.replace(options, reduce_over=alias.reduce_over)
    return spec, params, options


def spec_for(name: str, rank: int) -> LossSpec:
    """The loss a name stands for with predictions of ``rank`` (scikit-learn's ``log_loss``
    takes rank-2 predictions to the multiclass loss)."""
    alias = alias_conventions(name)
    if alias is not None and alias.rows_loss is not None and rank == 2:
        return resolve(alias.rows_loss)
    return resolve(name)


def first_keys(mapping: dict[str, Any], limit: int) -> dict[str, Any]:
    """``mapping``, or its first ``limit`` keys when it has more: a model that takes fewer
    fields refuses the rest by their first few names, without reading (and listing) them all."""
    if len(mapping) <= limit:
        return mapping
    return dict(itertools.islice(mapping.items(), limit))


def validate_params(spec: LossSpec, raw: dict[str, Any], where: str = "params") -> LossParams:
    """The loss's own parameters, defaults filled in; 422 ``invalid_params`` otherwise, with the
    closest known name suggested for an unknown one. Past MAX_PARAM_KEYS keys only the first
    are read (a loss takes a handful)."""
    read = first_keys(raw, MAX_PARAM_KEYS)
    try:
        return spec.params.model_validate(read)
    except ValidationError as exc:
        unknown = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden"]
        known = list(spec.params.model_fields)
        close = difflib.get_close_matches(unknown[0][:100], known, n=1) if unknown else []
        hint = ""
        if close:
            hint = f" (did you mean {close[0]!r}?)"
        elif unknown:
            hint = f" (it takes {', '.join(known) or 'no parameters'})"
        if len(read) < len(raw):
            hint += f"; {where} has {len(raw)} keys, of which the first {len(read)} were read"
        headline = f"invalid params for {spec.name}{hint}"
        raise from_validation(InvalidParams, headline, exc, (where,)) from None


def evaluate(spec: LossSpec, params: LossParams, batch: Batch, options: Options) -> Result:
    """Run the loss's driver on the batch and reduce."""
    _check_shapes(spec, params, batch)
    if options.hessian and not spec.hessian:
        raise Unprocessable(
            f"{spec.name} has no Hessian (GET /losses/{spec.name} says which losses have one); "
            "send hessian: false",
            errors=[(("hessian",), "not available for this loss")],
        )
    dtype = DTYPES[options.dtype]
    empty_w = EMPTY_WEIGHTS[options.dtype]
    pred = as_compute(batch.predictions, dtype, "predictions")
    targets = NO_TARGETS[options.dtype] if batch.targets is None else batch.targets
    prepared = params.prepare(spec.name, batch.predictions, targets, dtype, batch.memo)
    extra = params.prepare_inputs(batch.predictions, batch.inputs, dtype, batch.memo)
    weight = None
    if batch.sample_weight is not None:
        weight = as_compute(batch.sample_weight, dtype, "sample_weight").reshape(-1)
    params.check_domain(pred, prepared.targets)
    params.check_inputs(pred, extra)

    n = pred.shape[0]
    reduction = plan(options.reduction, n, weight, prepared.kappa, empty_w)
    # the weights of the sum: w_i, or for a mean of a loss with a mean factor (ctc) w_i·m_i
    summed = weight
    factor = params.mean_factor(extra, dtype) if options.reduction == "mean" else None
    if factor is not None:
        summed = readonly(factor if weight is None else factor * weight)
        reduction = dataclasses.replace(reduction, kernel_weights=summed)
    terms, repeats = (
        _over_elements(spec, pred.shape[1]) if options.reduce_over == "elements" else (1, 1)
    )
    if terms > 1:
        # the normaliser counts every term; the sum (and its gradient) counts each row's value
        # ``repeats`` times, so the kernel's scale for a mean becomes repeats / terms of itself
        scale = reduction.scale * (repeats if options.reduction == "sum" else repeats / terms)
        reduction = dataclasses.replace(
            reduction, weight_sum=reduction.weight_sum * terms, scale=scale
        )
    if not np.isfinite(reduction.weight_sum):
        # weights of 1e308 are finite, their sum is not: a null weight_sum is no answer
        detail, errors = _weight_sum_overflow(options.dtype, weight is not None, prepared.kappa)
        raise OutOfDomain(detail, errors=errors)
    loss = np.empty(n, dtype=dtype)
    nothing = np.empty((0, 0), dtype=dtype)
    grad = np.empty_like(pred) if options.gradient else nothing
    hess = np.empty_like(pred) if options.hessian else nothing
    # each differentiable input's gradient, written by the kernel (an empty array: not asked)
    input_grads = {
        x.name: np.empty_like(extra[x.name]) if options.input_gradients else np.empty((0, 0), dtype)
        for x in params.inputs
        if x.differentiable
    }
    prepared = params.bind_inputs(prepared, extra, input_grads)
    started = perf_counter()
    _run(spec, prepared, pred, reduction.kernel_weights, reduction.scale, loss, grad, hess)
    seconds = perf_counter() - started
    total = weighted_sum(loss, empty_w if summed is None else summed) * repeats
    derivatives = [a for a, asked in ((grad, options.gradient), (hess, options.hessian)) if asked]
    if options.input_gradients:
        derivatives += input_grads.values()
    if not np.isfinite(total) or not all(np.isfinite(a).all() for a in derivatives):
        advice = " or use dtype float64" if options.dtype == "float32" else ""
        raise OutOfDomain(
            f"{spec.name} overflows {options.dtype} on these inputs (a loss or derivative is "
            f"not finite); scale the inputs down{advice}",
            errors=[(("predictions",), "result not finite")],
        )
    value = reduction.value(total)
    if value is not None and dtype is np.float32:
        value = float(np.float32(value))
    shape = batch.predictions.shape
    return Result(
        loss=spec.name,
        reduction=options.reduction,
        reduce_over=options.reduce_over,
        value=value,
        weight_sum=reduction.weight_sum,
        n=n,
        per_sample=loss if options.per_sample else None,
        gradient=grad.reshape(shape) if options.gradient else None,
        hessian=hess.reshape(shape) if options.hessian else None,
        params=params.model_dump() if prepared.shown is None else prepared.shown,
        kernel_seconds=seconds,
        elements=pred.size,
        input_gradients={
            name: a.reshape(batch.inputs[name].shape) for name, a in input_grads.items()
        }
        if options.input_gradients
        else None,
    )


def _run(
    spec: LossSpec,
    prepared: Prepared,
    pred: Array,
    w: Array,
    scale: float,
    loss: Array,
    grad: Array,
    hess: Array,
) -> None:
    """The driver over the batch; when the request can be cancelled (``CANCEL``), over blocks
    of rows of about BLOCK_ELEMENTS elements, stopping with ``ClientGone`` once it is. A
    batch-coupled loss (``spec.batch_coupled``) runs over the whole batch in one block: its rows
    cannot be cut apart."""
    n, columns = pred.shape
    step = max(1, BLOCK_ELEMENTS // max(columns, 1))
    cancel = CANCEL.get()
    if cancel is not None and cancel.is_set():
        raise ClientGone("the client closed the connection; the evaluation was stopped")
    if cancel is None or spec.batch_coupled:
        spec.run(pred, prepared.targets, w, scale, loss, grad, hess, prepared)
        return
    row_args = ROW_ARGS | spec.params.row_arguments()
    per_row = {k: v for k, v in prepared.kernel_params.items() if k in row_args and v.shape[0] == n}
    for start in range(0, max(n, 1), step):
        if cancel.is_set():
            raise ClientGone("the client closed the connection; the evaluation was stopped")
        if n <= step:
            spec.run(pred, prepared.targets, w, scale, loss, grad, hess, prepared)
            return
        rows = slice(start, start + step)
        params = {**prepared.kernel_params, **{k: v[rows] for k, v in per_row.items()}}
        block = dataclasses.replace(prepared, targets=prepared.targets[rows], kernel_params=params)
        spec.run(pred[rows], block.targets, w[rows] if w.shape[0] else w, scale, loss[rows],
                 grad[rows] if grad.shape[0] else grad, hess[rows] if hess.shape[0] else hess,
                 block)  # fmt: skip


def _over_elements(spec: LossSpec, columns: int) -> tuple[int, int]:
    """(terms, repeats) of reducing over elements: how many elementwise terms one sample's loss
    stands for, and how many times its value counts in the sum. A regression or binary loss on
    rank-1 predictions is the mean of D terms: (D, D). A distribution loss is their sum, as
    torch's ``kl_div`` is pointwise: (D, 1). A loss of the whole row (softmax, margins, cosine,
    overlap) only reduces over samples: (1, 1)."""
    if spec.family in ("regression", "binary") and spec.params.min_rank == 1:
        return columns, columns
    return (columns, 1) if spec.family == "distribution" else (1, 1)


def _weight_sum_overflow(
    dtype: str, weighted: bool, kappa: Array | None
) -> tuple[str, list[tuple[tuple[str, ...], str]]]:
    """Detail and location of a weight_sum = Σ w_i·κ_i past the dtype's range, naming what was
    sent: the weights, or the targets' class weights or row sums that make κ."""
    if weighted:
        culprit, field = "sample_weight (or class_weight)", "sample_weight"
    elif kappa is not None:
        culprit, field = "the targets' rows or class_weight (κ_i = Σ_c cw_c·y_ic)", "targets"
    else:
        culprit, field = "the batch", "predictions"
    return (
        f"the weights sum past the {dtype} range (weight_sum = Σ w_i·κ_i is not finite); "
        f"scale {culprit} down",
        [((field,), "sum not finite")],
    )


def _check_shapes(spec: LossSpec, params: LossParams, batch: Batch) -> None:
    """Rank as the loss needs; targets sent exactly when the loss takes them (their shape:
    ``params.prepare``); the extra inputs the loss takes, each of a shape it allows; weights
    are (N,) and non-negative."""
    pred, weight = batch.predictions, batch.sample_weight
    low, high = params.min_rank, params.max_rank
    one_column = high == 1 and pred.shape[1:] == (1,)  # (N, 1): one value a sample too
    if not (low <= pred.ndim <= high or one_column):
        ranks = {1: "1 (N,)", 2: "2 (N, C)", 3: "3 (N, T, C)"}
        takes = " or ".join(ranks[r] for r in range(low, high + 1))
        hint = " (rank 3 is for ctc's (N, T, C) log-probabilities)" if pred.ndim == 3 else ""
        allowed = " or ".join(map(str, range(low, high + 1)))
        raise ShapeMismatch(
            f"{spec.name} takes predictions of rank {takes}; got shape {list(pred.shape)}{hint}",
            errors=[(("predictions",), f"rank must be {allowed}")],
        )
    _check_inputs(spec, params, batch)  # first: a misnamed input is the cause of what is missing
    if batch.targets is None and spec.targets:
        raise Unprocessable(
            f"`targets` is required: {spec.name} takes targets",
            errors=[(("targets",), "Field required")],
        )
    if batch.targets is not None and not spec.targets:
        raise Unprocessable(
            f"{spec.name} takes no targets: send predictions and "
            f"{', '.join(f'inputs.{x.name}' for x in params.inputs)} only",
            errors=[(("targets",), "this loss takes no targets")],
        )
    if weight is None:
        return
    if weight.shape != (pred.shape[0],):
        raise ShapeMismatch(
            f"sample_weight has shape {list(weight.shape)}; it must be (N,) = [{pred.shape[0]}]",
            errors=[(("sample_weight",), "must have shape (N,)")],
        )
    if weight.size and float(np.min(weight)) < 0:
        first = int(np.argmax(weight < 0))
        raise InvalidArray(
            f"sample_weight[{first}] is negative; weights must be non-negative",
            errors=[(("sample_weight", first), "must be >= 0")],
        )


def arrays_of(batch: Batch, spec: LossSpec, params: LossParams) -> Batch:
    """The batch as one loss of a request of several sees it (``POST /loss``): the targets when
    it takes targets, and the extra inputs it takes (``check_taken`` refused any other)."""
    names = {x.name for x in params.inputs}
    return dataclasses.replace(
        batch,
        targets=batch.targets if spec.targets else None,
        inputs={name: a for name, a in batch.inputs.items() if name in names},
    )


def check_taken(batch: Batch, losses: Sequence[tuple[LossSpec, LossParams]]) -> None:
    """422 for an array that no loss of a request of several takes: targets when none takes
    targets, an extra input that none takes (what each loss lacks, its own evaluation says)."""
    if batch.targets is not None and not any(spec.targets for spec, _ in losses):
        raise Unprocessable(
            "none of the losses takes targets; send none",
            errors=[(("targets",), "no loss of the request takes targets")],
        )
    taken = {x.name for _, params in losses for x in params.inputs}
    for name in batch.inputs:
        if name not in taken:
            takes = ", ".join(f"inputs.{n}" for n in sorted(taken)) or "no inputs"
            raise Unprocessable(
                f"none of the losses takes an input `{shown(name)}` (they take {takes})",
                errors=[(("inputs", name), "not an input of these losses")],
            )


def _check_inputs(spec: LossSpec, params: LossParams, batch: Batch) -> None:
    """``batch.inputs`` are the extra inputs the loss takes: none missing, none it does not
    take (the closest name suggested), each of a shape it allows next to the predictions."""
    declared = {x.name: x for x in params.inputs}
    takes = ", ".join(f"inputs.{name}" for name in declared) or "no inputs"
    for name in batch.inputs:
        if name not in declared:
            close = difflib.get_close_matches(name[:100], list(declared), n=1)
            hint = f"did you mean inputs.{close[0]}?" if close else f"it takes {takes}"
            raise Unprocessable(
                f"{spec.name} takes no input `{shown(name)}`; {hint}",
                errors=[(("inputs", name), "not an input of this loss")],
            )
    for x in params.inputs:
        array = batch.inputs.get(x.name)
        if array is None:
            raise Unprocessable(
                f"`inputs.{x.name}` is required: {spec.name} takes {takes} ({x.description})",
                errors=[(("inputs", x.name), "Field required")],
            )
        allowed = x.allowed(batch.predictions.shape)
        if array.shape not in allowed:
            shapes = " or ".join(str(list(a)) for a in allowed)
            raise ShapeMismatch(
                f"inputs.{x.name} has shape {list(array.shape)}; next to predictions of shape "
                f"{list(batch.predictions.shape)} {spec.name} takes it of shape {shapes}",
                errors=[(("inputs", x.name), "shape does not fit the predictions")],
            )


@dataclass(frozen=True)
class Declared:
    """An input array as its request declares it, before it is decoded."""

    rows: int
    elements: int
    itemsize: int  # bytes per element once decoded
    shape: tuple[int, ...] = ()  # as declared, where the codec knows it (empty: unknown)


@dataclass(frozen=True)
class Demand:
    """What a request will make the process hold, from its declared shapes and options.

    ``text_bytes`` is what one output element costs in the response as the codec writes it
    (JSON text at its longest, base64, or raw bytes); ``specs`` are the losses whose results
    are held until the response is written (``POST /loss`` holds every loss's outputs), each
    with its own working memory (simloss's C × C matrix); unknown names are left out.
    """

    predictions: Declared
    inputs: Sequence[Declared]  # every declared input, predictions included
    options: Options
    text_bytes: float
    # each loss with its parameters as sent (unvalidated; None when not an object)
    specs: Sequence[tuple[LossSpec, Mapping[str, Any] | None]] = ()
    # the targets as declared (also among ``inputs``); None: unknown, counted as (N, C) rows
    targets: Declared | None = None
    # the extra named inputs as declared (also among ``inputs``): each has a compute copy, and
    # with ``options.input_gradients`` a gradient per loss, in the compute dtype and as text
    extra: Sequence[Declared] = ()

    @property
    def losses(self) -> int:
        return max(len(self.specs), 1)

    def bytes_needed(self) -> int:
        """The sum of what the request may hold at once: the decoded inputs in their own dtypes;
        the compute arrays (the predictions as (N, C) of the compute dtype; the targets as
        ``targets_bytes`` says; the extra inputs; the weights and κ (N,)); per loss, its working
        memory, the per-sample losses and the asked-for derivatives (the extra inputs' gradients
        among them), in the compute dtype and as response text."""
        rows, values = self.predictions.rows, self.predictions.elements
        size = 4 if self.options.dtype == "float32" else 8
        derivatives = self.options.gradient + self.options.hessian
        extra = sum(a.elements for a in self.extra)
        derived = derivatives * values + self.options.input_gradients * extra
        inputs = sum(a.elements * a.itemsize for a in self.inputs)
        compute = (values + extra + 2 * rows) * size + self.targets_bytes()
        outputs = (rows + derived) * size
        outputs += int((self.options.per_sample * rows + derived) * self.text_bytes)
        columns = values // rows if rows else 0
        indices = self.class_indices()
        own = sum(
            spec.params.working_bytes(rows, columns, size, sent=sent, indices=indices)
            + spec.params.scratch_bytes(self.predictions.shape, self.targets)
            for spec, sent in self.specs
        )
        return inputs + compute + self.losses * outputs + own

    def class_indices(self) -> bool:
        """Whether the targets are declared as (N,) class indices of (N, C > 1) predictions:
        one value per sample where the predictions have several (the only other reading, a
        shape mismatch, is refused before anything is made of them)."""
        rows, values, targets = self.predictions.rows, self.predictions.elements, self.targets
        return targets is not None and values > rows == targets.rows == targets.elements

    def targets_bytes(self) -> int:
        """The targets' compute copy, shared by the request's losses: targets declared with one
        value per sample are (N,) int64 class indices, or (N,) targets of rank-1 predictions in
        the compute dtype (8·N bounds both; class indices are never made (N, C) rows); any other
        targets, or unknown ones, are (N, C) rows of the compute dtype."""
        rows, values, targets = self.predictions.rows, self.predictions.elements, self.targets
        size = 4 if self.options.dtype == "float32" else 8
        if targets is not None and rows == targets.rows == targets.elements:
            return 8 * rows
        return values * size

    def operations(self) -> int:
        """About how many elementary steps the losses take on the batch."""
        rows, values = self.predictions.rows, self.predictions.elements
        columns = values // rows if rows else 0
        steps = (
            spec.params.operations(rows, columns, sent=sent, targets=self.targets)
            for spec, sent in self.specs
        )
        return sum(steps) or values


def known_losses(
    named: Sequence[tuple[object, object]], rank: int
) -> tuple[tuple[LossSpec, Mapping[str, Any] | None], ...]:
    """The losses of a request's (name, params as sent) pairs for a ``Demand``; a name that is
    no loss is left out (choosing the losses refuses it later, with its position)."""
    known = []
    for name, sent in named:
        if isinstance(name, str):
            with contextlib.suppress(LossdError):
                known.append((spec_for(name, rank), sent if isinstance(sent, dict) else None))
    return tuple(known)


def reserve(demand: Demand, max_request_bytes: int | None, lease: Lease | None) -> None:
    """Before any array is decoded: 413 when the request needs more than LOSSD_MAX_REQUEST_BYTES
    (``check_memory_budget``), then its memory held in the process-wide account (``lease``).
    On the event loop (``lease.inline``) a loss whose work is not tiny goes to a compute thread
    instead (``RunElsewhere``), as does a request that would have to wait for memory."""
    if max_request_bytes is not None:
        check_memory_budget(demand, max_request_bytes)
    if lease is None:
        return
    if lease.inline and demand.operations() > INLINE_OPERATIONS:
        raise RunElsewhere
    lease.hold(demand.bytes_needed(), "its arrays, their compute copies and the outputs")


def check_memory_budget(demand: Demand, max_request_bytes: int) -> None:
    """413 ``memory_budget`` when the request would need more than ``max_request_bytes``,
    estimated before any array is allocated."""
    needed = demand.bytes_needed()
    if needed <= max_request_bytes:
        return
    outputs_of = f"{demand.losses} loss" if demand.losses == 1 else f"{demand.losses} losses"
    raise MemoryBudget(
        f"the request needs about {needed} bytes of memory, more than the "
        f"{max_request_bytes} allowed (LOSSD_MAX_REQUEST_BYTES): its arrays, their compute "
        f"copies and the outputs of {outputs_of}, estimated from the declared shapes; send "
        "a smaller batch, fewer losses or fewer outputs",
        errors=[(("predictions",), "the request needs more memory than allowed")],
    )


def catalogue() -> list[dict[str, Any]]:
    """Every catalogue entry (``GET /losses``), in registry order."""
    return [catalogue_entry(spec) for spec in REGISTRY]


def catalogue_entry(spec: LossSpec) -> dict[str, Any]:
    """One loss's catalogue entry, with the library conventions its aliases carry."""
    conventions = {
        name: alias.entry(spec.params.model_fields)
        for name in spec.aliases
        if (alias := alias_conventions(name)) is not None
    }
    return {**spec.catalogue_entry(), "alias_conventions": conventions}
