"""The ``/loss`` wire format: a JSON document with list or packed arrays, in and out; or the
same document in the binary framing or as multipart ``.npy`` parts (``bodies``), and out with
``array_format: binary`` in the binary framing.

``evaluate_one`` (``POST /loss/{name}``) and ``evaluate_many`` (``POST /loss``) each read the
body, check the memory budget from the declared shapes, decode the arrays, run the core once per
loss and encode the results. They run on the compute executor (or, for small bodies, on the event
loop), so parsing, the kernels and encoding stay off the loop for large requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from pydantic import ValidationError

from .. import core
from ..dtypes import HALF_NAMES, PACKED_DTYPES, held_itemsize
from ..errors import LossdError, Unprocessable, from_validation, shown
from ..jit import Array
from ..losses import LossParams, LossSpec
from ..memory import Lease
from ..schemas import ARRAY_FIELDS, INPUTS, EvaluationOptions, LossOptions, MultiLossOptions
from . import Reply, framing
from .arrays import decode_array, encode_array, located
from .bodies import Form, RawArray
from .bodies import read as read_form
from .jsontext import Blob, dumps, parse_object, release, resolve_blob

Fields = TypeVar("Fields", bound=EvaluationOptions)

# The top-level fields a JSON syntax error can be blamed on.
_FIELDS = (*ARRAY_FIELDS, INPUTS, *MultiLossOptions.model_fields, *LossOptions.model_fields)

# The longest JSON text of one response value: `-2.2250738585072014e-308,` and `-1.1754944e-38,`.
_LIST_TEXT = {"float64": 25, "float32": 16}

Body = bytes | bytearray | Array  # Array: a binary or multipart body (uint8), with a Form


def evaluate_one(
    name: str,
    body: Body,
    max_elements: int,
    max_request_bytes: int | None = None,
    *,
    lease: Lease | None = None,
    form: Form | None = None,
) -> Reply:
    """``POST /loss/{name}``: one loss on one batch. A ``bytearray`` body is emptied once its
    arrays are decoded. With a ``lease``, what the request holds is reserved in the process's
    memory account as it goes (``service.memory``). With a ``form`` the body is a binary or
    multipart one (``bodies``)."""
    limits = _Limits(max_elements, max_request_bytes, lease, name)
    fields, batch, encoding, half = _read(body, LossOptions, limits, form)
    explicit, rank = fields.model_fields_set, batch.predictions.ndim
    options = options_of(fields, half)
    spec, params, options = core.select(name, fields.params, options, explicit, rank)
    result = core.evaluate(spec, params, batch, options)
    del batch  # the inputs are freed before the response is encoded
    buffers: list[memoryview] = []
    doc = _document(result, fields.array_format, buffers)
    return _reply(doc, fields.array_format, buffers, (result,), encoding)


def evaluate_many(
    body: Body,
    max_elements: int,
    max_request_bytes: int | None = None,
    *,
    lease: Lease | None = None,
    form: Form | None = None,
) -> Reply:
    """``POST /loss``: several losses on one batch, decoded once; results in request order.

    Every name and parameter set is checked before any loss is computed; an error names the
    position of the loss it belongs to.
    """
    limits = _Limits(max_elements, max_request_bytes, lease)
    fields, batch, encoding, half = _read(body, MultiLossOptions, limits, form)
    chosen: list[tuple[LossSpec, LossParams, core.Options]] = []
    explicit, rank = fields.model_fields_set, batch.predictions.ndim
    for k, selection in enumerate(fields.losses):
        with _at_position(k, selection.name):
            options = options_of(fields, half)
            chosen.append(core.select(selection.name, selection.params, options, explicit, rank))
    core.check_taken(batch, [(spec, params) for spec, params, _ in chosen])
    results = []
    for k, (spec, params, options) in enumerate(chosen):
        with _at_position(k, spec.name):
            own = core.arrays_of(batch, spec, params)
            results.append(core.evaluate(spec, params, own, options))
    del batch
    buffers: list[memoryview] = []
    documents = [_document(result, fields.array_format, buffers) for result in results]
    return _reply({"results": documents}, fields.array_format, buffers, tuple(results), encoding)


def _reply(
    doc: dict[str, Any],
    array_format: str,
    buffers: list[memoryview],
    results: tuple[core.Result, ...],
    encoding: str,
) -> Reply:
    """The answer: the JSON document, or with ``array_format: binary`` the document as the
    binary framing's JSON header and the arrays' bytes after it in the order it lists them."""
    if array_format != "binary":
        return Reply(dumps(doc), results, encoding=encoding)
    header = dumps(doc).tobytes()
    return Reply(framing.framed(header, buffers), results, len(header), encoding)


def options_of(fields: EvaluationOptions, half: bool = False) -> core.Options:
    """The core's options from a request's validated fields; a request with a ``half``
    (float16 or bfloat16) array computes in float32 unless it sends a ``dtype``."""
    dtype = fields.dtype
    if half and "dtype" not in fields.model_fields_set:
        dtype = "float32"
    return core.Options(
        reduction=fields.reduction,
        reduce_over=fields.reduce_over,
        per_sample=fields.per_sample,
        gradient=fields.gradient,
        hessian=fields.hessian,
        dtype=dtype,
        input_gradients=fields.input_gradients,
    )


@dataclass(frozen=True)
class _Limits:
    """What bounds one request: its elements and memory, and the loss named by the route."""

    max_elements: int
    max_request_bytes: int | None
    lease: Lease | None
    name: str | None = None  # POST /loss/{name}; POST /loss names its losses in the body


def _read(
    body: Body, model: type[Fields], limits: _Limits, form: Form | None = None
) -> tuple[Fields, core.Batch, str, bool]:
    """The request's other fields, its decoded arrays, its encoding (``json``, ``packed``, or
    the ``form``'s) and whether an array was sent in half precision (``_half``); the memory is
    reserved before anything is parsed or decoded, and a ``bytearray`` body is freed (and given
    back) once the arrays own their memory (the arrays of a binary or multipart body are views
    of it: it stays)."""
    lease, parsing = limits.lease, 0

    def reserve(size: int) -> None:
        nonlocal parsing
        if lease is not None:
            lease.hold(size, "parsing the JSON body")
            parsing += size

    if form is None:
        assert not isinstance(body, np.ndarray)
        doc, blobs = parse_object(body, _FIELDS, reserve=reserve)
        packed = any(isinstance(value, dict) for _, value in _arrays(doc))
        encoding = "packed" if packed else "json"
    else:
        assert isinstance(body, np.ndarray)
        doc, blobs = read_form(form, body, _FIELDS, limits.max_elements, reserve)
        encoding = form.encoding
    half = _half(doc)
    demand = _demand(doc, limits, half)
    if demand is not None:  # a binary body's views cost nothing; their conversions are in it
        core.reserve(demand, limits.max_request_bytes, lease)
    batch = _decode_batch(doc, blobs, limits.max_elements)
    del blobs  # the last views into the body
    size = len(body)
    if not isinstance(body, np.ndarray):
        release(body)
    if lease is not None:  # the parse's objects are gone with the arrays decoded
        lease.drop(parsing + (size - len(body)))
    doc = core.first_keys(doc, len(model.model_fields) + 5)
    try:
        fields = model.model_validate(doc)
    except ValidationError as exc:
        raise from_validation(Unprocessable, "invalid request fields", exc) from None
    return fields, batch, encoding, half


def _arrays(doc: dict[str, Any]) -> list[tuple[str, object]]:
    """The request's array fields as sent, before they are decoded: the top-level ones it has,
    then the extra named arrays of ``inputs`` as ``inputs.<name>`` (none when ``inputs`` is
    not an object: decoding says so)."""
    arrays = [(field, doc[field]) for field in ARRAY_FIELDS if field in doc]
    named = doc.get(INPUTS)
    if isinstance(named, dict):
        arrays += [(f"{INPUTS}.{name}", value) for name, value in named.items()]
    return arrays


def _half(doc: dict[str, Any]) -> bool:
    """Whether an array of the request was sent in float16 or bfloat16 (before it is decoded:
    decoding widens it to float32): a packed one, or one in a binary or multipart body."""
    values = [value for _, value in _arrays(doc)]
    if any(isinstance(value, RawArray) and value.half for value in values):
        return True
    dtypes = (value.get("dtype") for value in values if isinstance(value, dict))
    return any(d in HALF_NAMES for d in dtypes if isinstance(d, str))


def _decode_batch(doc: dict[str, Any], blobs: dict[str, Blob], max_elements: int) -> core.Batch:
    """Take the array fields out of ``doc`` and decode them: ``predictions`` is required;
    ``targets`` may be missing (whether the losses take them is the core's to say), not null;
    ``sample_weight`` and ``inputs``, an object of named arrays, may be missing or null."""
    if "predictions" not in doc:
        raise Unprocessable(
            "`predictions` is required", errors=[(("predictions",), "Field required")]
        )

    def decode(value: Any, field: str) -> Array:
        if isinstance(value, RawArray):
            return value.decode()
        if isinstance(value, dict) and "data" in value:
            value["data"] = resolve_blob(value["data"], blobs)
        with located(field):
            return decode_array(value, field, max_elements)

    def take(field: str) -> Array | None:
        if field not in doc or (field == "sample_weight" and doc[field] is None):
            doc.pop(field, None)
            return None
        return decode(doc.pop(field), field)

    named = doc.pop(INPUTS, None)
    if named is not None and not isinstance(named, dict):
        raise Unprocessable(
            f'`{INPUTS}` must be an object of named arrays, such as {{"var": [...]}}',
            errors=[((INPUTS,), "expected an object")],
        )
    predictions = take("predictions")
    assert predictions is not None
    targets, weight = take("targets"), take("sample_weight")
    inputs = {name: decode(value, f"{INPUTS}.{name}") for name, value in (named or {}).items()}
    return core.Batch(predictions, targets, weight, inputs)


def _declared(value: object) -> core.Declared | None:
    """An array field as declared, before it is decoded; None for a value that is no
    well-formed array (``decode_array`` then says what is wrong)."""
    if isinstance(value, RawArray):
        return value.declared()
    if isinstance(value, list):
        # the shape along the first element of each level: (N,), (N, C) or (N, T, C)
        along, level = [len(value)], value
        while len(along) < 3 and level and isinstance(level[0], list):
            level = level[0]
            along.append(len(level))
        # JSON numbers: int64 or float64
        return core.Declared(len(value), math.prod(along), 8, tuple(along))
    if not isinstance(value, dict):
        return None
    shape, dtype = value.get("shape"), value.get("dtype")
    if (
        not isinstance(shape, list)
        or len(shape) not in (1, 2, 3)
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
        or not isinstance(dtype, str)
        or dtype not in PACKED_DTYPES
    ):
        return None
    itemsize = held_itemsize(PACKED_DTYPES[dtype])
    return core.Declared(shape[0], math.prod(shape), itemsize, tuple(shape))


def _demand(doc: dict[str, Any], limits: _Limits, half: bool) -> core.Demand | None:
    """The request's memory demand from its declared shapes and raw options (``half``: an
    array was sent in half precision, ``_half``); None when the arrays are malformed or over
    LOSSD_MAX_ELEMENTS (``decode_array`` names those)."""
    declared = [_declared(doc.get(field)) for field in ARRAY_FIELDS]
    extra = [_declared(value) for field, value in _arrays(doc) if field.startswith(f"{INPUTS}.")]
    predictions = declared[0]
    if predictions is None or any(
        d is not None and d.elements > limits.max_elements for d in (*declared, *extra)
    ):
        return None
    sent = doc.get("dtype", "float32" if half else "float64")
    dtype: core.DtypeName = "float32" if sent == "float32" else "float64"
    options = core.Options(
        per_sample=doc.get("per_sample", True) is not False,
        gradient=doc.get("gradient") is True,
        hessian=doc.get("hessian") is True,
        dtype=dtype,
        input_gradients=doc.get("input_gradients") is True,
    )
    array_format = doc.get("array_format")
    size = 4 if dtype == "float32" else 8
    text = {"packed": size * 4 / 3, "binary": size}.get(str(array_format), _LIST_TEXT[dtype])
    rank = 2 if predictions.elements != predictions.rows else 1
    named: list[tuple[object, object]] = []
    if limits.name is not None:
        named = [(limits.name, doc.get("params"))]
    elif isinstance(doc.get("losses"), list):
        named = [(s.get("name"), s.get("params")) for s in doc["losses"] if isinstance(s, dict)]
    specs = core.known_losses(named, rank)
    known = [d for d in extra if d is not None]
    inputs = [d for d in declared if d is not None] + known
    return core.Demand(predictions, inputs, options, text, specs, declared[1], known)


def _document(result: core.Result, array_format: str, buffers: list[memoryview]) -> dict[str, Any]:
    """A result as the response document of the contract (LossResult); with ``array_format:
    binary`` its arrays' bytes go to ``buffers``, in the order the document lists them."""
    doc: dict[str, Any] = {
        "loss": result.loss,
        "reduction": result.reduction,
        "reduce_over": result.reduce_over,
        "value": result.value,
        "weight_sum": result.weight_sum,
        "n": result.n,
    }
    for name in ("per_sample", "gradient", "hessian"):
        array = getattr(result, name)
        if array is not None:
            doc[name] = _encode(array, array_format, buffers)
    if result.input_gradients is not None:
        doc["input_gradients"] = {
            name: _encode(array, array_format, buffers)
            for name, array in result.input_gradients.items()
        }
    doc["params"] = result.params
    return doc


def _encode(array: Array, array_format: str, buffers: list[memoryview]) -> object:
    """A response array: as ``encode_array`` writes it, or in the binary framing its
    ``{dtype, shape, binary_data_size}`` with its bytes put in ``buffers``."""
    if array_format != "binary":
        return encode_array(array, array_format)
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    buffers.append(framing.raw_bytes(data))
    return {"dtype": data.dtype.name, "shape": list(data.shape), "binary_data_size": data.nbytes}


@contextmanager
def _at_position(k: int, name: str) -> Iterator[None]:
    """Prefix an error with the position of the loss it came from: ``losses[k]``."""
    try:
        yield
    except LossdError as exc:
        exc.detail = f"losses[{k}] ({shown(name)}): {exc.detail}"
        # locations inside the loss's own entry get its position; array fields are shared
        exc.errors = [
            (loc if loc[:1] and loc[0] in (*ARRAY_FIELDS, INPUTS) else ["losses", k, *loc], msg)
            for loc, msg in exc.errors
        ] or [(["losses", k, "name"], "unknown loss")]
        raise
