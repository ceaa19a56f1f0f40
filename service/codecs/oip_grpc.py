"""The Open Inference Protocol v2 over gRPC: ``ModelInferRequest`` in, ``ModelInferResponse`` out
(the messages of service/protos/lossd_inference.proto), through the codec REST uses.

A request's named tensors and parameters become the ``oip.InferRequest`` a REST request becomes,
validated by the same model, and go through ``oip.evaluate``: the same loss resolution, options,
memory demand, checks and error messages. Only where the elements come from differs
(``GrpcData``): ``raw_input_contents`` (numpy views of the message's bytes, FP16 and BF16
included) or the typed ``contents`` (``fp64_contents``, ``fp32_contents``, ``int64_contents``,
``int_contents``). Outputs always go as ``raw_output_contents``, as Triton sends them and
tritonclient reads them, written after the serialized header without another copy of the arrays.
Like the REST codec, this module knows no server: service/api/grpc_server.py serves it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from pydantic import ValidationError

from ..core import Result
from ..errors import InvalidArray, PayloadTooLarge, ShapeMismatch, Unprocessable, from_validation
from ..jit import Array
from ..losses import LossSpec
from ..memory import Lease
from ..metrics import note
from ..protos import lossd_inference_pb2 as pb
from . import framing, oip

# The typed contents field of each datatype that has one (FP16 and BF16 travel raw).
CONTENTS = {
    "FP64": "fp64_contents",
    "FP32": "fp32_contents",
    "INT64": "int64_contents",
    "INT32": "int_contents",
}
TYPED = (
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
    "bytes_contents",
)
# The most a protobuf message may hold (protobuf's own limit, and tritonclient's).
MAX_MESSAGE_BYTES = 2**31 - 1
# ModelInferRequest.raw_input_contents is field 7; ModelInferResponse.raw_output_contents is
# field 6, length-delimited (wire type 2).
_RAW_INPUT_FIELD = 7
_RAW_OUTPUT_TAG = bytes([6 << 3 | 2])


def infer(
    ready: Callable[[LossSpec], None],
    data: bytes,
    max_elements: int,
    max_request_bytes: int | None = None,
    *,
    lease: Lease | None = None,
) -> tuple[bytes, tuple[Result, ...]]:
    """``ModelInfer``: the serialized request in, the serialized response and its result out.

    ``ready`` raises ``NotReady`` while the loss's kernels compile (after the model name is known
    to be a loss: an unknown one is ``NotFound`` first). The raw contents stay in ``data`` (views,
    ``split_raw``); the rest of the message is parsed, held in ``lease`` before it is; the rest
    as on REST (``oip.evaluate``).
    """
    header, raw = split_raw(data)
    if lease is not None:
        lease.hold(len(header), "parsing the message")
    message = parse(pb.ModelInferRequest, header)
    spec = oip.model(message.model_name, message.model_version or None)
    note(loss=spec.name)
    ready(spec)
    tensors = GrpcData(message, raw)
    note(encoding="grpc-raw" if tensors.raw else "grpc-contents")
    request = infer_request(message)
    plan, result = oip.evaluate(
        message.model_name,
        request,
        tensors,
        max_elements,
        max_request_bytes,
        lease=lease,
        binary_outputs=True,
    )
    return respond(plan, request, result), (result,)


def parse(kind: Any, data: bytes) -> Any:
    """``data`` as a message of ``kind``; 422 (INVALID_ARGUMENT) when it is not one."""
    try:
        return kind.FromString(data)
    except DecodeError:
        raise Unprocessable(
            f"the request is not a valid {kind.DESCRIPTOR.name} protobuf message"
        ) from None


def parameter_value(parameter: Any) -> Any:
    """An ``InferParameter`` as the scalar it holds (None when it holds none)."""
    which = parameter.WhichOneof("parameter_choice")
    return None if which is None else getattr(parameter, which)


def set_parameter(parameter: Any, value: object) -> None:
    """Put a scalar in an ``InferParameter``."""
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = value
    elif isinstance(value, float):
        parameter.double_param = value
    else:
        parameter.string_param = str(value)


def _parameters(parameters: Any) -> dict[str, Any]:
    return {key: parameter_value(value) for key, value in parameters.items()}


def infer_request(message: Any) -> oip.InferRequest:
    """The request's tensors (without their elements) and parameters as the ``InferRequest``
    the REST codec validates, with its error messages; no ``outputs``: the default ones."""
    doc = {
        "id": message.id or None,
        "parameters": _parameters(message.parameters),
        "inputs": [
            {
                "name": tensor.name,
                "shape": list(tensor.shape),
                "datatype": tensor.datatype,
                "parameters": _parameters(tensor.parameters),
            }
            for tensor in message.inputs
        ],
        "outputs": [
            {"name": output.name, "parameters": _parameters(output.parameters)}
            for output in message.outputs
        ]
        or None,
    }
    try:
        return oip.InferRequest.model_validate(doc)
    except ValidationError as exc:
        raise from_validation(Unprocessable, "invalid inference request", exc) from None


def split_raw(data: bytes) -> tuple[bytes, list[memoryview]]:
    """A serialized ``ModelInferRequest`` as the message without its ``raw_input_contents``
    (what protobuf parses: names, shapes, parameters) and those contents as views of ``data``:
    protobuf would copy each twice (parsing, then handing one out). Only the top level of the
    message is read here, a handful of fields; 422 when it is not protobuf's wire format."""
    view = memoryview(data)
    header = bytearray()
    raw: list[memoryview] = []
    position, end = 0, len(data)
    while position < end:
        start = position
        key, position = _read_varint(data, position)
        field, wire = key >> 3, key & 7
        content = position
        if wire == 0:
            _, position = _read_varint(data, position)
        elif wire == 1:
            position += 8
        elif wire == 2:
            length, content = _read_varint(data, position)
            position = content + length
        elif wire == 5:
            position += 4
        else:
            position = end + 1  # groups (3, 4) are not proto3; 6 and 7 are no wire type
        if position > end:
            raise Unprocessable("the request is not a valid ModelInferRequest protobuf message")
        if field == _RAW_INPUT_FIELD and wire == 2:
            raw.append(view[content:position])
        else:
            header += view[start:position]
    return bytes(header), raw


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    """The base-128 varint at ``position``, and the position after it."""
    value = shift = 0
    for index in range(position, min(position + 10, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index + 1
        shift += 7
    raise Unprocessable("the request is not a valid ModelInferRequest protobuf message")


class GrpcData:
    """The inputs' elements of a ``ModelInferRequest``: every input's little-endian bytes in
    ``raw_input_contents`` (``raw``, in the order of ``inputs``), or each one's typed
    ``contents``."""

    def __init__(self, message: Any, raw: list[memoryview]) -> None:
        self.tensors = message.inputs
        self.raw = raw
        if self.raw and len(self.raw) != len(self.tensors):
            raise Unprocessable(
                f"raw_input_contents has {len(self.raw)} entries for {len(self.tensors)} inputs: "
                "send every input's bytes there, in the order of inputs, or none",
                errors=[(("raw_input_contents",), "one entry per input")],
            )

    def take(self, k: int, tensor: oip.RequestInput, where: str) -> Array:
        contents = self.tensors[k].contents
        sent = [field for field in TYPED if len(getattr(contents, field))]
        if self.raw:
            if sent:
                raise Unprocessable(
                    f"{where} has both contents.{sent[0]} and raw_input_contents[{k}]"
                )
            return _raw(self.raw[k], k, tensor, where)
        field = CONTENTS.get(tensor.datatype)
        if field is None:
            raise InvalidArray(
                f"{where}: {tensor.datatype} elements travel in raw_input_contents "
                "(contents has no field for them)",
                errors=[((where, "contents"), "send raw_input_contents")],
            )
        wrong = [name for name in sent if name != field]
        if wrong:
            raise InvalidArray(
                f"{where}: the elements of a {tensor.datatype} tensor go in contents.{field}, "
                f"not contents.{wrong[0]}",
                errors=[((where, "contents"), "wrong contents field for the datatype")],
            )
        values = getattr(contents, field)
        count = math.prod(tensor.shape)
        if not values and count:
            raise InvalidArray(
                f"{where} has no elements: send them in raw_input_contents (every input's, in "
                f"order) or in contents.{field}",
                errors=[((where, "contents"), "no elements")],
            )
        if len(values) != count:
            raise ShapeMismatch(
                f"{where}: contents.{field} has {len(values)} elements; shape {tensor.shape} "
                f"needs {count}",
                errors=[((where, "contents"), "does not match shape")],
            )
        dtype = oip.DATATYPES[tensor.datatype]
        return np.fromiter(values, dtype=dtype, count=count).reshape(tensor.shape)

    def check_used(self) -> None:
        """Every raw entry belongs to an input (checked when the message is read)."""


def _raw(raw: memoryview, k: int, tensor: oip.RequestInput, where: str) -> Array:
    """An input's raw bytes viewed as its datatype and shape (no copy unless misaligned)."""
    dtype = oip.DATATYPES[tensor.datatype]
    size = math.prod(tensor.shape) * dtype.itemsize
    if len(raw) != size:
        raise InvalidArray(
            f"{where}: raw_input_contents[{k}] has {len(raw)} bytes; shape {tensor.shape} of "
            f"{tensor.datatype} is {size} bytes",
            errors=[((where, "raw_input_contents"), "does not match shape and datatype")],
        )
    return framing.aligned(np.frombuffer(raw, dtype=dtype).reshape(tensor.shape))


def respond(plan: oip.Plan, request: oip.InferRequest, result: Result) -> bytes:
    """The serialized ``ModelInferResponse``: its header (names, datatypes, shapes, parameters)
    serialized by protobuf, then each output's bytes as a ``raw_output_contents`` entry, joined
    into the message in one copy (protobuf's wire format appends repeated fields)."""
    tensors = oip.output_tensors(plan, result)
    response = pb.ModelInferResponse(
        model_name=plan.spec.name, model_version=oip.VERSION, id=request.id or ""
    )
    for key, value in oip.response_parameters(plan, result).items():
        set_parameter(response.parameters[key], value)
    for tensor in tensors:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.array.shape)
    parts: list[bytes | memoryview] = [response.SerializeToString()]
    for tensor in tensors:
        parts += [_RAW_OUTPUT_TAG + _varint(tensor.array.nbytes), framing.raw_bytes(tensor.array)]
    size = sum(len(part) for part in parts)
    if size > MAX_MESSAGE_BYTES:
        raise PayloadTooLarge(
            f"the response would be {size} bytes, more than a protobuf message holds "
            f"({MAX_MESSAGE_BYTES}); ask for fewer outputs or send a smaller batch"
        )
    return b"".join(parts)


def _varint(value: int) -> bytes:
    """``value`` as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
