"""What goes over the wire, without any I/O: request bodies (the binary framing, or JSON with
packed base64 arrays) and the readers of answers, which write the answer's arrays straight into
arrays the caller provides (so a batch split into pieces is assembled with no copy beyond the
one out of the socket).

The binary framing is lossd's (and the Open Inference Protocol's binary tensor data): a JSON
header ``Inference-Header-Content-Length`` bytes long whose array fields are
``{"dtype", "shape", "binary_data_size"}``, then the arrays' raw little-endian bytes in the
order the header lists them. Answers come back the same way when the request says
``array_format: "binary"``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ._errors import AnswerError

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY = "application/octet-stream"
JSON = "application/json"
ARRAY_FIELDS = ("predictions", "targets", "sample_weight")
ANSWER_ARRAYS = ("per_sample", "gradient", "hessian")
# The request's extra named arrays go under this member, the answer's gradients with respect to
# them under INPUT_GRADIENTS; the client keys both flat, as ``inputs.var`` and
# ``input_gradients.var`` (``nested``).
INPUTS = "inputs"
INPUT_GRADIENTS = "input_gradients"
# Sent as they are; every other dtype is converted (see ``wire_array``).
_SENT_AS_IS = frozenset({"float64", "float32", "float16", "int64", "int32"})

Transport = Literal["binary", "json"]
Reduction = Literal["mean", "sum", "none"]
Array = npt.NDArray[Any]
# Where an answer's array goes: (field, dtype, shape) -> a writable C-contiguous array of
# exactly that dtype and shape.
Sink = Callable[[str, np.dtype[Any], tuple[int, ...]], Array]


@dataclass(frozen=True)
class Options:
    """The non-array fields of one evaluation, as ``POST /loss/{name}`` takes them."""

    reduction: Reduction = "mean"
    params: Mapping[str, Any] = field(default_factory=dict)
    per_sample: bool = True
    gradient: bool = False
    hessian: bool = False
    dtype: Literal["float64", "float32"] | None = None
    reduce_over: Literal["samples", "elements"] | None = None
    input_gradients: bool = False

    def document(self, reduction: Reduction | None = None) -> dict[str, Any]:
        """The request document's options (``reduction`` overrides this evaluation's: a piece
        of a split mean is asked for its sum)."""
        doc: dict[str, Any] = {
            "reduction": reduction or self.reduction,
            "params": dict(self.params),
            "per_sample": self.per_sample,
            "gradient": self.gradient,
            "hessian": self.hessian,
        }
        if self.dtype is not None:
            doc["dtype"] = self.dtype
        if self.reduce_over is not None:
            doc["reduce_over"] = self.reduce_over
        if self.input_gradients:
            doc[INPUT_GRADIENTS] = True
        return doc


def wire_array(value: npt.ArrayLike, name: str) -> Array:
    """An array as it is sent: rank 1 to 3 (rank 3: ctc's (N, T, C)), C-contiguous, little-endian, in a dtype lossd reads.

    float64, float32, float16, int64 and int32 go as they are (a view when the array already is
    contiguous and little-endian: nothing is copied); other integers and booleans become int64
    when they fit, float64 otherwise; anything else becomes float64.
    """
    array = np.asarray(value)
    if array.ndim not in (1, 2, 3):
        raise ValueError(f"{name} must have 1, 2 or 3 dimensions, not {array.ndim}")
    kind, size = array.dtype.kind, array.dtype.itemsize
    if array.dtype.newbyteorder("=").name in _SENT_AS_IS:
        dtype = array.dtype.newbyteorder("<")
    elif kind in "bi" or (kind == "u" and size < 8):
        dtype = np.dtype("<i8")
    else:
        dtype = np.dtype("<f8")
    return np.ascontiguousarray(array, dtype=dtype)


def _byte_view(array: Array) -> memoryview:
    """The bytes of a C-contiguous array, without a copy."""
    return array.reshape(-1).view(np.uint8).data


@dataclass(frozen=True)
class Body:
    """A request body: its headers, its length and its parts (bytes, or arrays sent raw)."""

    headers: dict[str, str]
    parts: tuple[bytes | Array, ...]

    @property
    def length(self) -> int:
        return sum(len(p) if isinstance(p, bytes) else p.nbytes for p in self.parts)

    def chunks(self, size: int) -> Iterator[memoryview]:
        """The body in slices of at most ``size`` bytes, views of the parts.

        httpcore copies the unsent rest of a buffer after every partial socket send, which is
        quadratic in the buffer's size (seconds for 250 MB); slices of a few MiB keep that copy
        small, and the arrays are never joined into one body.
        """
        for part in self.parts:
            view = memoryview(part) if isinstance(part, bytes) else _byte_view(part)
            for start in range(0, len(view), size):
                yield view[start : start + size]


def _json(doc: dict[str, Any]) -> bytes:
    """Compact JSON; numpy values in ``params`` (a class_weight array, a numpy float) as the
    lists and numbers they hold; NaN and infinity refused here rather than by the server."""

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray | np.generic):
            return value.tolist()
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    return json.dumps(doc, separators=(",", ":"), allow_nan=False, default=plain).encode()


def nested(flat: Mapping[str, Any], outer: str) -> dict[str, Any]:
    """Flat keys ``outer.name`` as the member ``outer`` holding ``name``, after the other keys
    (the order the binary framing lists arrays in)."""
    prefix = f"{outer}."
    out = {key: value for key, value in flat.items() if not key.startswith(prefix)}
    inner = {key[len(prefix) :]: value for key, value in flat.items() if key.startswith(prefix)}
    if inner:
        out[outer] = inner
    return out


def _ordered(arrays: Mapping[str, Array]) -> list[Array]:
    """The arrays in the order ``nested`` lists them: top-level fields, then ``inputs``."""
    prefix = f"{INPUTS}."
    return [a for k, a in arrays.items() if not k.startswith(prefix)] + [
        a for k, a in arrays.items() if k.startswith(prefix)
    ]


def binary_body(doc: dict[str, Any], arrays: Mapping[str, Array]) -> Body:
    """The request in the binary framing, its answer asked in the binary framing too."""
    fields = {
        name: {"dtype": a.dtype.name, "shape": list(a.shape), "binary_data_size": a.nbytes}
        for name, a in arrays.items()
    }
    header_doc = nested(fields, INPUTS)
    header_doc.update(doc, array_format="binary")
    header = _json(header_doc)
    headers = {"Content-Type": BINARY, HEADER_LENGTH: str(len(header))}
    return Body(headers, (header, *_ordered(arrays)))


def json_body(doc: dict[str, Any], arrays: Mapping[str, Array]) -> Body:
    """The request as JSON, its arrays packed (base64 of their bytes), the answer's too."""
    packed = {
        name: {
            "dtype": a.dtype.name,
            "shape": list(a.shape),
            "data": base64.b64encode(_byte_view(a)).decode(),
        }
        for name, a in arrays.items()
    }
    text = _json({**nested(packed, INPUTS), **doc, "array_format": "packed"})
    return Body({"Content-Type": JSON}, (text,))


def encode(transport: Transport, doc: dict[str, Any], arrays: Mapping[str, Array]) -> Body:
    return binary_body(doc, arrays) if transport == "binary" else json_body(doc, arrays)


def header_bytes(doc: dict[str, Any], arrays: Mapping[str, Array]) -> int:
    """An upper bound of the JSON header's length for these arrays at any row count (the shapes'
    digits are counted at their widest)."""
    widest = {
        name: {"dtype": a.dtype.name, "shape": [2**63] * a.ndim, "binary_data_size": 2**63}
        for name, a in arrays.items()
    }
    return len(_json({**nested(widest, INPUTS), **doc, "array_format": "binary"}))


class FramedAnswer:
    """Reads an answer in the binary framing as it arrives (``feed``), writing each array's
    bytes straight into the array ``sink`` gives for it."""

    def __init__(self, header_length: int, sink: Sink) -> None:
        self._header_length = header_length
        self._header = bytearray()
        self._sink = sink
        self.doc: dict[str, Any] | None = None
        self._pending: list[memoryview] = []  # the byte views still (partly) to fill
        self._filled = 0  # bytes written into _pending[0]

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        if self.doc is None:
            wanted = self._header_length - len(self._header)
            self._header += view[:wanted]
            view = view[wanted:]
            if len(self._header) < self._header_length:
                return
            self._start()
        while len(view):
            if not self._pending:
                raise AnswerError("the answer has more bytes than its header's arrays")
            target = self._pending[0]
            count = min(len(view), len(target) - self._filled)
            target[self._filled : self._filled + count] = view[:count]
            self._filled += count
            view = view[count:]
            if self._filled == len(target):
                self._pending.pop(0)
                self._filled = 0

    def _start(self) -> None:
        try:
            doc = json.loads(self._header)
        except ValueError as exc:
            raise AnswerError(f"the answer's JSON header does not parse: {exc}") from None
        if not isinstance(doc, dict):
            raise AnswerError("the answer's JSON header is not an object")
        for name, spec in list(doc.items()):
            if isinstance(spec, dict) and "binary_data_size" in spec:
                doc[name] = self._array(name, spec)
            elif name == INPUT_GRADIENTS and isinstance(spec, dict):
                doc[name] = {
                    key: self._array(f"{name}.{key}", value) for key, value in spec.items()
                }
        self.doc = doc

    def _array(self, name: str, spec: Any) -> Array:
        """The sink's array for a binary array field, queued to receive its bytes."""
        if not isinstance(spec, dict):
            raise AnswerError(f"the answer's {name} is not a binary array field")
        dtype, shape = _declared(name, spec)
        array = self._sink(name, dtype, shape)
        if array.nbytes:
            self._pending.append(_byte_view(array))
        return array

    def finish(self) -> dict[str, Any]:
        """The answer's document, its arrays the sink's (filled)."""
        if self.doc is None or self._pending:
            raise AnswerError("the answer ended before all its arrays arrived")
        return self.doc


def _declared(name: str, spec: dict[str, Any]) -> tuple[np.dtype[Any], tuple[int, ...]]:
    """The dtype and shape of a binary array field, checked against its byte size."""
    try:
        dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        shape = tuple(int(s) for s in spec["shape"])
        size = int(spec["binary_data_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AnswerError(f"the answer's {name} is not a binary array field: {exc}") from None
    if size != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise AnswerError(f"the answer's {name} has {size} bytes for shape {list(shape)}")
    return dtype, shape


def json_answer(body: bytes, sink: Sink) -> dict[str, Any]:
    """A JSON answer's document, its arrays (lists or packed) copied into the sink's."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise AnswerError(f"the answer is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AnswerError("the answer is not a JSON object")
    for name in ANSWER_ARRAYS:
        value = doc.get(name)
        if value is None:
            continue
        doc[name] = _into(sink, name, value)
    gradients = doc.get(INPUT_GRADIENTS)
    if isinstance(gradients, dict):
        doc[INPUT_GRADIENTS] = {
            key: _into(sink, f"{INPUT_GRADIENTS}.{key}", value) for key, value in gradients.items()
        }
    return doc


def _into(sink: Sink, name: str, value: Any) -> Array:
    """An answer array (a list or packed) copied into the sink's array for it."""
    array = _unpacked(name, value)
    target = sink(name, array.dtype, array.shape)
    target[...] = array
    return target


def _unpacked(name: str, value: Any) -> Array:
    if isinstance(value, list):
        return np.asarray(value, dtype=np.float64)
    try:
        dtype = np.dtype(value["dtype"]).newbyteorder("<")
        shape = tuple(int(s) for s in value["shape"])
        return np.frombuffer(base64.b64decode(value["data"]), dtype=dtype).reshape(shape)
    except (KeyError, TypeError, ValueError) as exc:
        raise AnswerError(f"the answer's {name} is not a packed array: {exc}") from None
