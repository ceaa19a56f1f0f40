"""The Open Inference Protocol v2 (KServe, Triton) wire format: documents and tensors.

Every loss is a model. ``infer`` decodes a v2 inference request over REST, JSON tensors or the
binary tensor data extension, into the core's batch and options, and encodes the core's result as
v2 output tensors. Binary inputs are numpy views of the request body (no per-element work, no
copy); binary outputs are the core's own arrays. Like the core, this module knows no HTTP
framework.

What REST and gRPC (``oip_grpc``) share is here: ``evaluate`` takes a request's named tensors and
parameters (an ``InferRequest``, whatever wire it came on) with the source of their elements
(``TensorData``: JSON ``data``, the binary section, gRPC's raw or typed contents) to the core's
batch and options and on to its ``Result``; ``output_tensors`` and
``response_parameters`` turn the result into the output tensors each wire writes its own way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import __version__, core
from ..dtypes import BFLOAT16, FLOAT16, held_itemsize, widen
from ..errors import (
    InvalidArray,
    NotFound,
    ShapeMismatch,
    TooManyElements,
    Unprocessable,
    from_validation,
)
from ..jit import Array
from ..losses import LossParams, LossSpec, resolve
from ..memory import Lease
from ..schemas import EvaluationOptions
from . import Reply, framing
from .arrays import check_finite, decode_array, max_rank
from .jsontext import PARSE_BYTES_PER_BYTE, Encoded, check_lifted, lift
from .loss import options_of

VERSION = "1"
EXTENSIONS = ("binary_tensor_data", "parameters", "model_configuration", "statistics")
# The input datatypes: the dtype a binary tensor's bytes are viewed as (arrays.PACKED_DTYPES's;
# FP16 and BF16 are widened to float32 as they are decoded, dtypes.widen).
DATATYPES: dict[str, np.dtype[Any]] = {
    "FP64": np.dtype("<f8"),
    "FP32": np.dtype("<f4"),
    "FP16": FLOAT16,
    "BF16": BFLOAT16,
    "INT64": np.dtype("<i8"),
    "INT32": np.dtype("<i4"),
}
FLOATS = ("FP64", "FP32", "FP16", "BF16")
SINGLE = ("FP32", "FP16", "BF16")  # inputs that compute in FP32 (when no input is FP64)
OUTPUT_FLOATS = ("FP64", "FP32")  # outputs are never half precision
INDICES = ("INT64", "INT32")
OUTPUTS = ("value", "per_sample", "gradient", "hessian")
# The outputs of the gradients with respect to a loss's extra inputs: ``input_gradients.var``.
INPUT_GRADIENTS = "input_gradients"
# The inputs every loss reads by these names; any other input is one of a loss's extra inputs.
BATCH_INPUTS = ("predictions", "targets", "sample_weight")
# The section-3 fields a request's parameters may carry besides the loss's own parameters.
OPTIONS = (
    "reduction",
    "reduce_over",
    "per_sample",
    "gradient",
    "hessian",
    "dtype",
    INPUT_GRADIENTS,
)
# Request parameters of the protocol and its clients that say nothing about a loss.
IGNORED = frozenset(
    {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "headers"}
    | {"content_type"}  # MLServer's codec hint
)
UNSUPPORTED = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")

Datatype = Literal["FP64", "FP32", "FP16", "BF16", "INT64", "INT32"]
Parameters = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RequestInput(_Strict):
    """One input tensor: ``data`` in row-major order, or ``binary_data_size`` bytes of the body."""

    name: str = Field(
        description=(
            "`predictions`, `targets` (for a loss that takes targets), `sample_weight`, or one "
            "of the loss's extra inputs (GET /v2/models/{name}: `var`, `input2`, `positive`, "
            "`negative`, `input_lengths`, `target_lengths`)"
        ),
        max_length=64,
    )
    shape: Annotated[
        list[Annotated[int, Field(ge=0)]],
        Field(min_length=1, max_length=3, description="rank 3 only for ctc's predictions"),
    ]
    datatype: Datatype = Field(
        description=(
            "FP64, FP32, FP16 or BF16 (FP16 and BF16 compute in FP32 unless `dtype` is "
            "`float64`); the targets of losses that take class indices or group labels also "
            "INT64, INT32"
        )
    )
    parameters: Parameters = Field(
        default_factory=dict,
        description="`binary_data_size`: the tensor's bytes follow the JSON header in the body",
    )
    # Any, checked to be a list: a typed list would have pydantic copy a million numbers.
    data: Any = Field(
        None,
        description="the elements in row-major order, flat (or nested as the shape)",
        json_schema_extra={"anyOf": [{"type": "array", "items": {}}, {"type": "null"}]},
    )

    @field_validator("data")
    @classmethod
    def _a_list(cls, data: Any) -> Any:
        if data is not None and not isinstance(data, list):
            raise ValueError("data must be a list of numbers in row-major order")
        return data


class RequestOutput(_Strict):
    """An output the client wants; ``binary_data: true`` returns it after the JSON header."""

    name: str = Field(
        description=(
            "value, per_sample, gradient, hessian, or input_gradients.<input>: the gradient "
            "with respect to one of the loss's extra inputs"
        ),
        max_length=100,
    )
    parameters: Parameters = Field(default_factory=dict)


class InferRequest(_Strict):
    """A v2 inference request; ``parameters`` holds the loss's parameters and the options."""

    id: str | None = Field(None, description="echoed in the response")
    parameters: Parameters = Field(
        default_factory=dict,
        description=(
            "flat: the loss's own parameters (GET /v2/models/{name}), `reduction`, `per_sample`, "
            "`gradient`, `hessian`, `input_gradients`, `dtype`, and the protocol's "
            "`binary_data_output`"
        ),
    )
    inputs: list[RequestInput] = Field(min_length=1, max_length=8)
    outputs: list[RequestOutput] | None = Field(
        None, description="the outputs to return; default `value` and `per_sample`"
    )


class ResponseOutput(BaseModel):
    """One output tensor; with ``binary_data_size`` its bytes follow the JSON header."""

    name: str = Field(description="an output the request asked for (RequestOutput.name)")
    datatype: Literal["FP64", "FP32"]
    shape: list[int]
    parameters: dict[str, int] | None = None
    data: list[float] | None = None


class InferResponse(BaseModel):
    """A v2 inference response."""

    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] = Field(
        description="`reduction`, `reduce_over`, `weight_sum` and `n`"
    )
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    """An input or output of a model; ``datatypes``, ``shapes``, ``optional`` are lossd's own."""

    name: str
    datatype: str = Field(description="the usual datatype")
    shape: list[int] = Field(description="the usual shape; -1 is any size")
    datatypes: list[str] = Field(description="every datatype accepted or returned")
    shapes: list[list[int]] = Field(description="every shape accepted or returned")
    optional: bool = False


class ModelMetadata(BaseModel):
    """A loss as a v2 model."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    aliases: list[str]
    parameters: dict[str, Any] = Field(description="JSON schema of the loss's own parameters")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class InferError(BaseModel):
    """The protocol's error object."""

    error: str


def server_metadata() -> dict[str, Any]:
    """``GET /v2``."""
    return {"name": "lossd", "version": __version__, "extensions": list(EXTENSIONS)}


def model(name: str, version: str | None) -> LossSpec:
    """The loss a model name stands for (aliases resolve); every loss has the one version 1."""
    spec = resolve(name)
    if version is not None and version != VERSION:
        raise NotFound(f"model {spec.name!r} has no version {version[:20]!r}; its only one is 1")
    return spec


def model_metadata(spec: LossSpec) -> dict[str, Any]:
    """``GET /v2/models/{name}``: inputs and outputs with every datatype and shape they take
    (a loss's extra inputs among the inputs, their gradients among the outputs)."""
    ranks = range(spec.params.min_rank, spec.params.max_rank + 1)
    shapes = [[-1] * rank for rank in ranks]
    index = bool({"class_index", "labels"} & set(spec.targets))
    target_shapes = [*shapes, [-1]] if index and [-1] not in shapes else shapes
    if spec.targets in (("labels",), ("per_sample",)):  # (N,) only
        target_shapes = [[-1]]
    if "interval" in spec.targets:  # (N, 2) intervals, or (N,) observed times
        target_shapes = [*target_shapes, [-1, 2]]
    if spec.targets == ("sequence",):
        target_shapes = [[-1, -1]]
        index = True
    forms = {"same": shapes, "rows": [[-1]], "column": [[-1, 1]]}
    extra = {
        x.name: list(map(list, dict.fromkeys(tuple(s) for form in x.shapes for s in forms[form])))
        for x in spec.params.inputs
    }
    outputs = ["value", "per_sample", "gradient"] + (["hessian"] if spec.hessian else [])
    output_shapes = {"value": [[1]], "per_sample": [[-1]], "gradient": shapes, "hessian": shapes}
    for x in spec.params.inputs:
        if x.differentiable:
            outputs.append(f"{INPUT_GRADIENTS}.{x.name}")
            output_shapes[outputs[-1]] = extra[x.name]
    targets = [_tensor("targets", FLOATS + (INDICES if index else ()), target_shapes)]
    return {
        "name": spec.name,
        "versions": [VERSION],
        "platform": "lossd",
        "inputs": [
            _tensor("predictions", FLOATS, shapes),
            *(targets if spec.targets else []),
            _tensor("sample_weight", FLOATS, [[-1]], optional=True),
            *(
                _tensor(x.name, FLOATS if x.differentiable else FLOATS + INDICES, extra[x.name])
                for x in spec.params.inputs
            ),
        ],
        "outputs": [_tensor(name, OUTPUT_FLOATS, output_shapes[name]) for name in outputs],
        "aliases": list(spec.aliases),
        "parameters": spec.params.model_json_schema(),
    }


def _tensor(
    name: str, datatypes: tuple[str, ...], shapes: list[list[int]], optional: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatypes[0],
        "shape": shapes[0],
        "datatypes": list(datatypes),
        "shapes": shapes,
        "optional": optional,
    }


def infer(
    name: str,
    header_length: int | None,
    body: Array,
    max_elements: int,
    max_request_bytes: int | None = None,
    *,
    lease: Lease | None = None,
) -> Reply:
    """``POST /v2/models/{name}/infer``: the body (uint8) in; the response and its JSON length out.

    ``header_length`` is the request's Inference-Header-Content-Length: the JSON ends there and
    the binary tensor data follows. The reply's JSON length is None when every output is JSON.
    With ``max_request_bytes`` the core's memory budget is checked before any tensor is decoded;
    with a ``lease`` the parse and the demand are reserved in the process's memory account.
    """
    header, binary = framing.split(body, header_length)
    request = _parse(header, lease)
    plan, result = evaluate(
        name, request, BinaryData(binary), max_elements, max_request_bytes, lease=lease
    )
    encoded, json_length = _respond(plan, request, result)
    return Reply(encoded, (result,), json_length)


class TensorData(Protocol):
    """Where a request's input elements come from when not from their JSON ``data``: the binary
    tensor data extension's section of the body, or gRPC's raw or typed contents."""

    def take(self, k: int, tensor: RequestInput, where: str) -> Array | None:
        """Input ``k``'s elements (``tensor`` as the request declares it, its count within
        LOSSD_MAX_ELEMENTS) as an array of its datatype's dtype (``DATATYPES``) and its shape;
        None when they are in the tensor's JSON ``data``."""
        ...

    def check_used(self) -> None:
        """422 when the request sent data that no input took."""
        ...


class BinaryData:
    """The binary tensor data extension: inputs with ``parameters.binary_data_size`` are views of
    the bytes after the JSON header, in the order of ``inputs``."""

    def __init__(self, binary: Array) -> None:
        self.section = framing.BinarySection(binary)

    def take(self, k: int, tensor: RequestInput, where: str) -> Array | None:
        size = tensor.parameters.get("binary_data_size")
        if size is None:
            return None
        if tensor.data is not None:
            raise Unprocessable(f"{where} has both `data` and parameters.binary_data_size")
        dtype = DATATYPES[tensor.datatype]
        return self.section.take(where, dtype, tensor.datatype, tensor.shape, size)

    def check_used(self) -> None:
        self.section.check_used("the inputs'")


@dataclass(frozen=True)
class Plan:
    """What a request asks of its loss, decided before any tensor is decoded."""

    spec: LossSpec
    params: LossParams
    options: core.Options
    outputs: dict[str, bool]  # the outputs to return, in order, each with whether it is binary


@dataclass(frozen=True)
class OutputTensor:
    """One output of a response: its name, datatype (FP64 or FP32) and C-contiguous
    little-endian array, and whether the request wants it in binary."""

    name: str
    datatype: str
    array: Array
    binary: bool


def evaluate(
    name: str,
    request: InferRequest,
    data: TensorData,
    max_elements: int,
    max_request_bytes: int | None = None,
    *,
    lease: Lease | None = None,
    binary_outputs: bool = False,
) -> tuple[Plan, core.Result]:
    """A request, on any wire, through the core: its named tensors and parameters decoded as
    the core's loss, parameters, options and batch, then ``core.evaluate`` (the decoded inputs
    are let go when this returns, before the outputs are encoded). The memory its declared
    shapes need is checked against ``max_request_bytes`` and held in ``lease`` before any tensor
    is decoded; ``binary_outputs``: every output goes in binary whatever the request says
    (gRPC, whose outputs are raw contents)."""
    spec, options, params, outputs = _plan(name, request)
    if binary_outputs:
        outputs = dict.fromkeys(outputs, True)
    demand = _demand(request, (spec, params.model_dump()), options, outputs, max_elements)
    if demand is not None:
        core.reserve(demand, max_request_bytes, lease)
    inputs = _decode_inputs(spec, request.inputs, data, max_elements)
    targets, weight = inputs.get("targets"), inputs.get("sample_weight")
    extra = {name: array for name, (array, _) in inputs.items() if name not in BATCH_INPUTS}
    batch = core.Batch(
        inputs["predictions"][0],
        None if targets is None else targets[0],
        None if weight is None else weight[0],
        extra,
    )
    return Plan(spec, params, options, outputs), core.evaluate(spec, params, batch, options)


def output_tensors(plan: Plan, result: core.Result) -> list[OutputTensor]:
    """The result's outputs the request asked for, in its order, in the compute dtype."""
    dtype = np.dtype(plan.options.dtype)
    arrays = {name: getattr(result, name) for name in OUTPUTS}
    if "value" in plan.outputs:
        arrays["value"] = np.array([result.value], dtype=dtype)
    for name, array in (result.input_gradients or {}).items():
        arrays[f"{INPUT_GRADIENTS}.{name}"] = array
    datatype = "FP32" if dtype == np.float32 else "FP64"
    return [
        OutputTensor(
            name,
            datatype,
            np.ascontiguousarray(arrays[name], dtype=dtype.newbyteorder("<")),
            binary,
        )
        for name, binary in plan.outputs.items()
    ]


def response_parameters(plan: Plan, result: core.Result) -> dict[str, Any]:
    """The response's ``parameters``: how the loss was reduced, and over what."""
    return {
        "reduction": plan.options.reduction,
        "reduce_over": plan.options.reduce_over,
        "weight_sum": result.weight_sum,
        "n": result.n,
    }


def _parse(header: Array, lease: Lease | None = None) -> InferRequest:
    """The JSON header as a request. Long ``inputs[k].data`` lists of numbers are parsed
    without the GIL (``jsontext.lift``), orjson gets the rest (at most ``PARSE_MAX`` bytes),
    and both are held in ``lease`` before they are allocated."""

    def reserve(size: int) -> None:
        if lease is not None:
            lease.hold(size, "parsing the JSON header")

    lifted = lift(header.data, ("data",), depth=3, reserve=reserve, strings=False)
    check_lifted(lifted)
    reserve(len(lifted.skeleton) * PARSE_BYTES_PER_BYTE)
    try:
        doc = orjson.loads(lifted.skeleton)
    except orjson.JSONDecodeError as exc:
        raise Unprocessable(
            f"the inference request is not valid JSON ({exc}); binary tensor data needs the "
            "Inference-Header-Content-Length header",
            errors=[(("body",), "invalid JSON")],
        ) from None
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    for tensor in inputs if lifted.lists and isinstance(inputs, list) else ():
        data = tensor.get("data") if isinstance(tensor, dict) else None
        if isinstance(data, str) and data in lifted.lists:
            tensor["data"] = lifted.lists[data]
    try:
        return InferRequest.model_validate(doc)
    except ValidationError as exc:
        raise from_validation(Unprocessable, "invalid inference request", exc) from None


def _plan(
    name: str, request: InferRequest
) -> tuple[LossSpec, core.Options, LossParams, dict[str, bool]]:
    """The loss (an alias brings its library's defaults), the options, its parameters and the
    outputs (name -> binary), before any tensor is decoded."""
    flags: Parameters = {}
    loss: Parameters = {}
    binary = request.parameters.get("binary_data_output", False)
    if not isinstance(binary, bool):
        raise Unprocessable("parameters.binary_data_output must be true or false")
    for key, value in request.parameters.items():
        if key in OPTIONS:
            flags[key] = value
        elif key not in IGNORED and key != "binary_data_output":
            loss[key] = _json_text(value)
    try:
        options = EvaluationOptions.model_validate(flags)
    except ValidationError as exc:
        raise from_validation(Unprocessable, "invalid parameters", exc, ("parameters",)) from None
    rank = next((len(t.shape) for t in request.inputs if t.name == "predictions"), 1)
    differentiable = [
        f"{INPUT_GRADIENTS}.{x.name}"
        for x in core.spec_for(name, rank).params.inputs
        if x.differentiable
    ]
    outputs = _outputs(request, options, flags, binary, differentiable)
    chosen: Parameters = {flag: flag in outputs for flag in ("per_sample", "gradient", "hessian")}
    chosen[INPUT_GRADIENTS] = any(output in differentiable for output in outputs)
    if "dtype" not in flags:  # FP32 when every floating-point input is FP32 (or FP16, BF16)
        floats = [t.datatype for t in request.inputs if t.datatype in FLOATS]
        chosen["dtype"] = "float32" if all(d in SINGLE for d in floats) else "float64"
    wanted = options_of(options.model_copy(update=chosen))
    spec, params, wanted = core.select(name, loss, wanted, set(flags), rank, "parameters")
    return spec, wanted, params, outputs


def _demand(
    request: InferRequest,
    loss: tuple[LossSpec, dict[str, Any]],
    options: core.Options,
    outputs: dict[str, bool],
    max_elements: int,
) -> core.Demand | None:
    """The request's memory demand from its declared tensors (binary outputs cost their bytes,
    JSON ones their longest text); None when a tensor is over LOSSD_MAX_ELEMENTS or predictions
    are missing (decoding names those)."""
    declared = {
        t.name: core.Declared(
            t.shape[0], math.prod(t.shape), held_itemsize(DATATYPES[t.datatype]), tuple(t.shape)
        )
        for t in request.inputs
    }
    predictions = declared.get("predictions")
    if predictions is None or any(d.elements > max_elements for d in declared.values()):
        return None
    size = 4 if options.dtype == "float32" else 8
    text = size if all(outputs.values()) else (16 if size == 4 else 25)
    targets = declared.get("targets")
    extra = [d for name, d in declared.items() if name not in BATCH_INPUTS]
    return core.Demand(predictions, list(declared.values()), options, text, (loss,), targets, extra)


def _json_text(value: Any) -> Any:
    """A list or matrix parameter sent as a JSON string (protocol parameters are scalars)."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _outputs(
    request: InferRequest,
    options: EvaluationOptions,
    flags: Parameters,
    binary: bool,
    differentiable: list[str],
) -> dict[str, bool]:
    """The outputs to return, in order, each with whether it goes in binary; ``differentiable``
    names the outputs of the gradients with respect to the loss's extra inputs."""
    reduced = options.reduction != "none"
    if request.outputs is None:
        wanted = ["value"] if reduced else []
        wanted += [f for f in ("per_sample", "gradient", "hessian") if getattr(options, f)]
        wanted += differentiable if options.input_gradients else []
        if not wanted:
            raise Unprocessable("nothing to return: reduction none and per_sample false")
        return dict.fromkeys(wanted, binary)
    chosen: dict[str, bool] = {}
    for k, output in enumerate(request.outputs):
        if output.name in chosen:
            raise Unprocessable(f"outputs[{k}]: {output.name} is asked for twice")
        if output.name not in OUTPUTS and output.name not in differentiable:
            known = ", ".join((*OUTPUTS, *differentiable))
            raise Unprocessable(f"outputs[{k}]: the model has no output {output.name} ({known})")
        chosen[output.name] = _binary(output, k, binary)
    named = {flag: flag in chosen for flag in ("per_sample", "gradient", "hessian")}
    named[INPUT_GRADIENTS] = any(name in differentiable for name in chosen)
    for flag, asked in named.items():
        if flag in flags and flags[flag] != asked:
            what = f"{flag}.<input>" if flag == INPUT_GRADIENTS else flag
            raise Unprocessable(
                f"parameters.{flag} is {str(flags[flag]).lower()} but `outputs` "
                f"{'does not name' if flags[flag] else 'names'} {what}; `outputs` alone is enough"
            )
    if "value" in chosen and not reduced:
        raise Unprocessable(
            "there is no `value` with reduction none: ask for per_sample, or reduce with mean "
            "or sum"
        )
    if not chosen:
        raise Unprocessable("`outputs` is empty: name at least one of " + ", ".join(OUTPUTS))
    return chosen


def _binary(output: RequestOutput, k: int, default: bool) -> bool:
    """Whether an output goes in binary; the extensions lossd lacks are refused."""
    params = output.parameters
    if "classification" in params:
        raise Unprocessable(f"outputs[{k}]: the classification extension is not supported")
    _refuse_shared_memory(params, f"outputs[{k}]")
    binary = params.get("binary_data", default)
    if not isinstance(binary, bool):
        raise Unprocessable(f"outputs[{k}].parameters.binary_data must be true or false")
    return binary


def _refuse_shared_memory(params: Parameters, where: str) -> None:
    if any(key in params for key in UNSUPPORTED):
        raise Unprocessable(f"{where}: shared memory is not supported; send the data in the body")


def _decode_inputs(
    spec: LossSpec, inputs: list[RequestInput], data: TensorData, max_elements: int
) -> dict[str, tuple[Array, str]]:
    """Each input's array and datatype, from its JSON ``data`` or from ``data`` (binary ones are
    views of the request's bytes; FP16 and BF16 are widened to float32)."""
    found: dict[str, tuple[Array, str]] = {}
    for k, tensor in enumerate(inputs):
        where = f"inputs[{k}] ({tensor.name})"
        if tensor.name in found:
            raise Unprocessable(f"{where}: the input {tensor.name} is given twice")
        _check_datatype(spec, tensor, where)
        count = _count(tensor, where, max_elements)
        _refuse_shared_memory(tensor.parameters, where)
        taken = data.take(k, tensor, where)
        array = _from_json(tensor, where, count, max_elements) if taken is None else widen(taken)
        if tensor.datatype in FLOATS:
            check_finite(array, where, where)
        found[tensor.name] = (array, tensor.datatype)
    data.check_used()
    if "predictions" not in found:  # targets and the extra inputs: the loss's to require
        raise Unprocessable("the input predictions is required (inputs names none)")
    return found


def _check_datatype(spec: LossSpec, tensor: RequestInput, where: str) -> None:
    """Floats; integers too for class-index, label or sequence targets and for the extra
    inputs that are not differentiable (ctc's lengths)."""
    counts = {x.name for x in spec.params.inputs if not x.differentiable}
    labels = {"class_index", "labels", "sequence"}.intersection(spec.targets)
    index = (tensor.name == "targets" and bool(labels)) or tensor.name in counts
    accepted = FLOATS + INDICES if index else FLOATS
    if tensor.datatype not in accepted:
        raise InvalidArray(
            f"{where}: datatype {tensor.datatype} is not accepted; {spec.name} takes "
            f"{', '.join(accepted[:-1])} or {accepted[-1]} {tensor.name}",
            errors=[((where, "datatype"), "unsupported datatype")],
        )


def _count(tensor: RequestInput, where: str, max_elements: int) -> int:
    count = math.prod(tensor.shape)
    if count > max_elements:
        raise TooManyElements(
            f"{where} has more than {max_elements} elements (LOSSD_MAX_ELEMENTS)",
            errors=[((where, "shape"), "too many elements")],
        )
    if len(tensor.shape) > max_rank(tensor.name):
        raise InvalidArray(
            f"{where}: shape {tensor.shape} has rank {len(tensor.shape)}; only predictions "
            "may have rank 3 (ctc's (N, T, C))",
            errors=[((where, "shape"), "rank must be 1 or 2")],
        )
    if len(tensor.shape) >= 2 and 0 in tensor.shape[1:]:
        raise ShapeMismatch(f"{where}: shape {tensor.shape} has rows with no elements")
    return count


def _from_json(tensor: RequestInput, where: str, count: int, max_elements: int) -> Array:
    if not isinstance(tensor.data, list):
        raise InvalidArray(
            f"{where} needs `data` (a list in row-major order) or parameters.binary_data_size"
        )
    dtype = DATATYPES[tensor.datatype]
    array = decode_array(tensor.data, tensor.name, max_elements)
    if array.size != count:
        raise ShapeMismatch(
            f"{where}: data has {array.size} elements; shape {tensor.shape} needs {count}"
        )
    if dtype.kind == "i" and array.size:
        info = np.iinfo(dtype)
        if array.dtype.kind != "i" or array.min() < info.min or array.max() > info.max:
            raise InvalidArray(f"{where}: {tensor.datatype} data must be integers in its range")
    with np.errstate(over="ignore"):  # FP32 overflow becomes inf, refused by check_finite
        if dtype == BFLOAT16:
            return _round_bfloat16(array).reshape(tensor.shape)
        return widen(array.astype(dtype)).reshape(tensor.shape)


def _round_bfloat16(array: Array) -> Array:
    """JSON numbers sent as BF16, rounded to bfloat16 (through float32, to nearest, ties to
    even) and returned as the float32 array of those values, as binary BF16 data decodes."""
    bits: Array = array.astype("<f4").view("<u4")
    bits = (bits + (0x7FFF + ((bits >> 16) & 1))) & 0xFFFF0000
    rounded: Array = bits.view("<f4")
    return rounded


def _respond(plan: Plan, request: InferRequest, result: core.Result) -> tuple[Encoded, int | None]:
    """The response: a JSON header, then the binary outputs' bytes in the order it lists them."""
    tensors: list[dict[str, Any]] = []
    buffers: list[memoryview] = []
    for output in output_tensors(plan, result):
        array = output.array
        tensor: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(array.shape),
        }
        if output.binary:
            tensor["parameters"] = {"binary_data_size": array.nbytes}
            buffers.append(framing.raw_bytes(array))
        else:
            tensor["data"] = array.reshape(-1)
        tensors.append(tensor)
    doc: dict[str, Any] = {"model_name": plan.spec.name, "model_version": VERSION}
    if request.id is not None:
        doc["id"] = request.id
    doc["parameters"] = response_parameters(plan, result)
    doc["outputs"] = tensors
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return framing.framed(header, buffers), len(header) if buffers else None
