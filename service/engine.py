"""validate -> compute -> reduce -> encode. The engine knows no HTTP framework.

``evaluate`` takes a loss name and a raw JSON body and returns the response bytes; it runs on the
compute executor, so decoding, the kernel and encoding all stay off the event loop.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from time import perf_counter
from typing import Any, TypeVar

import numpy as np
import orjson
from numba.core.dispatcher import Dispatcher
from pydantic import ValidationError

from .arrays import PACKED_DTYPES, decode_array, encode_array
from .body import LIFT_MIN, Base64, Blob, Encoded, dumps, lift, release, resolve_blob
from .errors import (
    InvalidArray,
    InvalidParams,
    LossdError,
    MemoryBudget,
    OutOfDomain,
    ShapeMismatch,
    Unprocessable,
    shown,
)
from .losses import REGISTRY, LossParams, LossSpec, resolve
from .losses._jit import Array
from .losses._spec import Memo, as_compute, readonly
from .metrics import note, observe_kernel
from .reductions import plan, weighted_sum
from .schemas import ARRAY_FIELDS, EvaluationOptions, LossOptions, MultiLossOptions

Options = TypeVar("Options", bound=EvaluationOptions)
DTYPES: dict[str, type[np.floating[Any]]] = {"float64": np.float64, "float32": np.float32}


EMPTY_WEIGHTS = {name: readonly(np.empty(0, dtype=dt)) for name, dt in DTYPES.items()}


@dataclass(frozen=True)
class Batch:
    """The decoded arrays of a request, as sent."""

    predictions: Array
    targets: Array
    sample_weight: Array | None
    # conversions of the targets made by one loss and reused by the next (POST /loss)
    memo: Memo = dataclasses.field(default_factory=dict, compare=False)


def parse_body(body: bytes | bytearray) -> tuple[dict[str, Any], dict[str, Blob]]:
    """The request body as a JSON object (orjson: strict JSON, no NaN or Infinity tokens).

    Long string literals (packed array data) come back as ``Blob`` markers, see ``body.lift``.
    """
    skeleton, blobs = lift(body)
    try:
        doc = orjson.loads(skeleton)
    except orjson.JSONDecodeError as exc:
        field = _field_at(skeleton, exc.pos)
        where = f" in `{field}`" if field else ""
        raise Unprocessable(
            f"the body is not valid JSON{where} (NaN, Infinity and numbers beyond float64 are "
            f"not JSON): {exc}",
            errors=[((field or "body",), "invalid JSON")],
        ) from None
    if not isinstance(doc, dict):
        raise Unprocessable(
            "the body must be a JSON object", errors=[(("body",), "expected an object")]
        )
    return doc, blobs


def _field_at(body: bytes | bytearray, pos: int) -> str | None:
    """The array field whose value holds byte ``pos`` of a body orjson refused, if any."""
    head = bytes(body[: max(pos, 0)])
    starts = {field: head.rfind(f'"{field}"'.encode()) for field in ARRAY_FIELDS}
    field, at = max(starts.items(), key=lambda item: item[1])
    return field if at >= 0 else None


def _validation_errors(exc: ValidationError, prefix: tuple[str, ...]) -> list[tuple[Any, str]]:
    return [((*prefix, *err["loc"]), err["msg"]) for err in exc.errors(include_input=False)]


def decode_batch(doc: dict[str, Any], blobs: dict[str, Blob], max_elements: int) -> Batch:
    """Take the array fields out of ``doc`` and decode them (only ``sample_weight`` may be null)."""
    for field in ARRAY_FIELDS[:2]:
        if field not in doc:
            raise Unprocessable(f"`{field}` is required", errors=[((field,), "Field required")])

    def take(field: str) -> Array:
        value = doc.pop(field)
        if isinstance(value, dict) and "data" in value:
            value["data"] = resolve_blob(value["data"], blobs)
            note(encoding="packed")
        return decode_array(value, field, max_elements)

    weight = take("sample_weight") if doc.get("sample_weight") is not None else None
    doc.pop("sample_weight", None)
    return Batch(take("predictions"), take("targets"), weight)


# The longest JSON text of one response value: `-2.2250738585072014e-308,` and `-1.1754944e-38,`.
_LIST_TEXT = {8: 25, 4: 16}


def _declared(value: object) -> tuple[int, int, int] | None:
    """(rows, elements, bytes per element) of an array field, read before it is decoded; None
    for a value that is no well-formed array (``decode_array`` then says what is wrong)."""
    if isinstance(value, list):
        width = len(value[0]) if value and isinstance(value[0], list) else 1
        return len(value), len(value) * width, 8  # numpy reads JSON numbers as int64 or float64
    if not isinstance(value, dict):
        return None
    shape, dtype = value.get("shape"), value.get("dtype")
    if (
        not isinstance(shape, list)
        or len(shape) not in (1, 2)
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
        or not isinstance(dtype, str)
        or dtype not in PACKED_DTYPES
    ):
        return None
    return shape[0], math.prod(shape), PACKED_DTYPES[dtype].itemsize  # Python ints: no overflow


def check_memory_budget(doc: dict[str, Any], max_elements: int, max_request_bytes: int) -> None:
    """413 ``memory_budget`` when the request would need more than ``max_request_bytes``.

    Estimated from the declared shapes and the options before any array is allocated (packed
    data is not even base64-decoded), as the sum of what the request may hold at once:
    - the decoded inputs in their own dtypes;
    - the compute arrays: predictions and targets as (N, C) of the compute dtype (class-index
      targets become one-hot (N, C) rows), the weights and κ (N,);
    - per loss, the per-sample losses (N,) and the gradient and Hessian (N, C) when asked for,
      and those of them in the response, as JSON text at its longest or as base64.
    ``POST /loss`` holds every loss's outputs until the response is written, so they add up;
    the conversions of the targets are shared between its losses. An array over
    LOSSD_MAX_ELEMENTS is left to ``decode_array``, which names it (413 too_many_elements).
    """
    shapes = [_declared(doc.get(field)) for field in ARRAY_FIELDS]
    if shapes[0] is None or any(s is not None and s[1] > max_elements for s in shapes):
        return
    rows, values, _ = shapes[0]
    size = 4 if doc.get("dtype") == "float32" else 8
    packed = doc.get("array_format") == "packed"

    def text(count: int) -> int:
        return -(-count * size // 3) * 4 if packed else count * _LIST_TEXT[size]

    derivatives = (doc.get("gradient") is True) + (doc.get("hessian") is True)
    per_sample = doc.get("per_sample", True) is not False
    losses = len(doc["losses"]) if isinstance(doc.get("losses"), list) else 1
    inputs = sum(s[1] * s[2] for s in shapes if s is not None)
    compute = (2 * values + 2 * rows) * size
    outputs = (rows + derivatives * values) * size + per_sample * text(rows)
    outputs += derivatives * text(values)
    needed = inputs + compute + losses * outputs
    if needed > max_request_bytes:
        outputs_of = f"{losses} loss" if losses == 1 else f"{losses} losses"
        raise MemoryBudget(
            f"the request needs about {needed} bytes of memory, more than the "
            f"{max_request_bytes} allowed (LOSSD_MAX_REQUEST_BYTES): its arrays, their compute "
            f"copies and the outputs of {outputs_of}, estimated from the declared shapes; send "
            "a smaller batch, fewer losses or fewer outputs",
            errors=[(("predictions",), "the request needs more memory than allowed")],
        )


def read_batch(
    body: bytes | bytearray, max_elements: int, max_request_bytes: int | None = None
) -> tuple[dict[str, Any], Batch]:
    """The body's other fields and its decoded arrays; a ``bytearray`` body is freed after.

    With ``max_request_bytes`` the memory budget is checked before anything is decoded. The
    decoded arrays own their memory (no view into the body), so once the ``Blob``s are
    dropped nothing reads the body again, and its memory is released before the loss runs.
    """
    doc, blobs = parse_body(body)
    if max_request_bytes is not None:
        check_memory_budget(doc, max_elements, max_request_bytes)
    batch = decode_batch(doc, blobs, max_elements)
    del blobs  # the last views into the body
    release(body)
    return doc, batch


def validate_options(doc: dict[str, Any], model: type[Options]) -> Options:
    """The non-array fields, strictly (unknown fields are an error)."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise _invalid(Unprocessable, "invalid request fields", exc, ()) from None


def validate_params(spec: LossSpec, params: dict[str, Any]) -> LossParams:
    """The loss's own parameters, defaults filled in."""
    try:
        return spec.params.model_validate(params)
    except ValidationError as exc:
        raise _invalid(InvalidParams, f"invalid params for {spec.name}", exc, ("params",)) from None


_MAX_LISTED = 5


def _invalid(
    kind: type[LossdError], headline: str, exc: ValidationError, prefix: tuple[str, ...]
) -> LossdError:
    """A 422 from pydantic's errors: locations cut short, the input never echoed."""
    found = _validation_errors(exc, prefix)
    # ten thousand unknown keys are ten thousand errors: the answer names the first few
    error = kind("", errors=found[:_MAX_LISTED])
    listed = "; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in error.errors)
    more = f"; and {len(found) - _MAX_LISTED} more" if len(found) > _MAX_LISTED else ""
    error.detail = f"{headline}: {listed}{more}"
    return error


def check_shapes(spec: LossSpec, params: LossParams, batch: Batch) -> None:
    """Rank as the loss needs; weights are (N,) and non-negative (targets: ``params.prepare``)."""
    pred, weight = batch.predictions, batch.sample_weight
    if pred.ndim < params.min_rank:
        raise ShapeMismatch(
            f"{spec.name} needs predictions of rank {params.min_rank} (N, C); got shape "
            f"{list(pred.shape)}",
            errors=[(("predictions",), f"rank must be {params.min_rank}")],
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


def compute(
    spec: LossSpec, params: LossParams, options: EvaluationOptions, batch: Batch
) -> dict[str, Any]:
    """Run the loss's driver and reduce: the response document, arrays still numpy."""
    check_shapes(spec, params, batch)
    if options.hessian and not spec.hessian:
        raise Unprocessable(
            f"{spec.name} has no Hessian (GET /losses/{spec.name} says which losses have one); "
            "send hessian: false",
            errors=[(("hessian",), "not available for this loss")],
        )
    dtype = DTYPES[options.dtype]
    empty_w = EMPTY_WEIGHTS[options.dtype]
    pred = as_compute(batch.predictions, dtype, "predictions")
    prepared = params.prepare(spec.name, batch.predictions, batch.targets, dtype, batch.memo)
    targ = prepared.targets
    weight = None
    if batch.sample_weight is not None:
        weight = as_compute(batch.sample_weight, dtype, "sample_weight").reshape(-1)
    params.check_domain(pred, targ)

    n = pred.shape[0]
    reduction = plan(options.reduction, n, weight, prepared.kappa, empty_w)
    if not np.isfinite(reduction.weight_sum):
        # weights of 1e308 are finite, their sum is not: a null weight_sum is no answer
        raise OutOfDomain(
            f"the weights sum past the {options.dtype} range (weight_sum = Σ w_i·κ_i is not "
            "finite); scale sample_weight or class_weight down",
            errors=[(("sample_weight" if weight is not None else "params",), "sum not finite")],
        )
    loss = np.empty(n, dtype=dtype)
    nothing = np.empty((0, 0), dtype=dtype)
    grad = np.empty_like(pred) if options.gradient else nothing
    hess = np.empty_like(pred) if options.hessian else nothing
    started = perf_counter()
    spec.driver(
        pred, targ, reduction.kernel_weights, reduction.scale, loss, grad, hess,
        *prepared.kernel_args,
    )  # fmt: skip
    observe_kernel(spec.name, perf_counter() - started, pred.size)
    total = weighted_sum(loss, empty_w if weight is None else weight)
    derivatives = [a for a, asked in ((grad, options.gradient), (hess, options.hessian)) if asked]
    if not np.isfinite(total) or not all(np.isfinite(a).all() for a in derivatives):
        raise OutOfDomain(
            f"{spec.name} overflows {options.dtype} on these inputs (a loss or derivative is "
            "not finite); scale the inputs down or use dtype float64",
            errors=[(("predictions",), "result not finite")],
        )
    value = reduction.value(total)
    if value is not None and dtype is np.float32:
        value = float(np.float32(value))
    shape = batch.predictions.shape
    result: dict[str, Any] = {
        "loss": spec.name,
        "reduction": options.reduction,
        "value": value,
        "weight_sum": reduction.weight_sum,
        "n": n,
    }
    if options.per_sample:
        result["per_sample"] = encode_array(loss, options.array_format)
    if options.gradient:
        result["gradient"] = encode_array(grad.reshape(shape), options.array_format)
    if options.hessian:
        result["hessian"] = encode_array(hess.reshape(shape), options.array_format)
    result["params"] = params.model_dump() if prepared.shown is None else prepared.shown
    return result


def evaluate(
    name: str, body: bytes | bytearray, max_elements: int, max_request_bytes: int | None = None
) -> Encoded:
    """``POST /loss/{name}``: the raw body in, the response body out.

    A ``bytearray`` body is emptied once its arrays are decoded (see ``read_batch``).
    """
    spec = resolve(name)
    doc, batch = read_batch(body, max_elements, max_request_bytes)
    options = validate_options(doc, LossOptions)
    params = validate_params(spec, options.params)
    result = compute(spec, params, options, batch)
    del batch  # the inputs are freed before the response is encoded
    return dumps(result)


def evaluate_many(
    body: bytes | bytearray, max_elements: int, max_request_bytes: int | None = None
) -> Encoded:
    """``POST /loss``: several losses on one batch, decoded once; results in request order.

    Every name and parameter set is checked before any loss is computed; an error names the
    position of the loss it belongs to. A ``bytearray`` body is emptied once its arrays are
    decoded (see ``read_batch``).
    """
    doc, batch = read_batch(body, max_elements, max_request_bytes)
    options = validate_options(doc, MultiLossOptions)
    chosen: list[tuple[LossSpec, LossParams]] = []
    for k, selection in enumerate(options.losses):
        with _at_position(k, selection.name):
            spec = resolve(selection.name)
            chosen.append((spec, validate_params(spec, selection.params)))
    results = []
    for k, (spec, params) in enumerate(chosen):
        with _at_position(k, spec.name):
            results.append(compute(spec, params, options, batch))
    del batch  # the inputs are freed before the response is encoded
    return dumps({"results": results})


@contextmanager
def _at_position(k: int, name: str) -> Iterator[None]:
    """Prefix an error with the position of the loss it came from: ``losses[k]``."""
    try:
        yield
    except LossdError as exc:
        exc.detail = f"losses[{k}] ({shown(name)}): {exc.detail}"
        # locations inside the loss's own entry get its position; array fields are shared
        exc.errors = [
            (loc if loc[:1] and loc[0] in ARRAY_FIELDS else ["losses", k, *loc], msg)
            for loc, msg in exc.errors
        ] or [(["losses", k, "name"], "unknown loss")]
        raise


def catalogue() -> list[dict[str, Any]]:
    """Every catalogue entry, in registry order."""
    return [spec.catalogue_entry() for spec in REGISTRY]


def warm_up(specs: tuple[LossSpec, ...] = REGISTRY) -> None:
    """Compile, or load from numba's cache, every signature a request can reach."""
    big = np.zeros(LIFT_MIN // 8 + 1)
    wire = {"dtype": "float64", "shape": [big.size], "data": Base64(big)}
    body = dumps({"predictions": wire, "targets": wire, "array_format": "packed"}).tobytes()
    evaluate(REGISTRY[0].name, body, big.size)
    for spec in specs:
        params = spec.params.model_validate(spec.params.warm_up)
        shape = (2, 2)
        # predictions 0.5 and targets 1 are in every loss's domain (probabilities, counts,
        # hinge labels, distributions, masks)
        batch = Batch(np.full(shape, 0.5), np.full(shape, 1.0), np.ones(2))
        for dtype in DTYPES:
            for weighted in (False, True):
                options = LossOptions(dtype=dtype, gradient=True, hessian=spec.hessian)  # type: ignore[arg-type]
                b = batch if weighted else Batch(batch.predictions, batch.targets, None)
                compute(spec, params, options, b)


@dataclass(frozen=True)
class KernelCounts:
    """Kernel signatures this process loaded from numba's on-disk cache, and those it compiled."""

    cached: int
    compiled: int


def kernel_counts() -> KernelCounts:
    """Cache hits and fresh compilations so far, over every numba dispatcher in lossd's modules.

    A start whose warm-up compiled nothing was served entirely by the cache (the Docker image's
    baked one, say); numba counts both per signature in ``Dispatcher.stats``.
    """
    package = __name__.partition(".")[0]
    dispatchers = {
        id(obj): obj
        for name, module in list(sys.modules.items())
        if name == package or name.startswith(f"{package}.")
        for obj in list(vars(module).values())
        if isinstance(obj, Dispatcher)
    }
    stats = [dispatcher.stats for dispatcher in dispatchers.values()]
    return KernelCounts(
        cached=sum(sum(s.cache_hits.values()) for s in stats),
        compiled=sum(sum(s.cache_misses.values()) for s in stats),
    )
