"""The ``/loss`` document in the two bodies besides JSON, read into the same document the JSON
codec parses, its arrays as views of the body (``RawArray``) rather than lists:

- the binary framing (``Framed``): a JSON header whose array fields are
  ``{"dtype", "shape", "binary_data_size"}`` (the members of ``inputs`` among them), their raw
  little-endian bytes after it in the order the header lists them (``/v2``'s binary tensor
  data, ``framing``);
- ``multipart/form-data`` (``Multipart``): a ``.npy`` part per array field (``inputs.<name>``
  for an extra named array) and an optional ``options`` part holding the rest of the document
  as JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import core
from ..dtypes import HALF_DTYPES, held_itemsize, widen
from ..errors import InvalidArray, Unprocessable, shown
from ..jit import Array
from ..schemas import ARRAY_FIELDS, INPUTS
from . import framing
from .arrays import check_finite, check_shape, located, wire_dtype
from .jsontext import Blob, parse_object
from .multipart import parts
from .npy import decoded, read_npy

_BINARY_KEYS = frozenset({"dtype", "shape", "binary_data_size"})
OPTIONS_PART = "options"


@dataclass(frozen=True)
class Framed:
    """A body in the binary framing, its JSON header ``header_length`` bytes long."""

    header_length: int
    encoding = "binary"


@dataclass(frozen=True)
class Multipart:
    """A ``multipart/form-data`` body with this boundary."""

    boundary: bytes
    encoding = "multipart"


Form = Framed | Multipart
Parsed = tuple[dict[str, Any], dict[str, Blob]]  # a document and its long strings
Parse = Callable[[memoryview], Parsed]


@dataclass(frozen=True)
class RawArray:
    """An array field whose bytes are in the body: as sent (its dtype, byte and memory order),
    a view of the body."""

    field: str
    array: Array

    @property
    def half(self) -> bool:
        """Sent in float16 or bfloat16 (decoded to float32, ``dtypes.widen``)."""
        return self.array.dtype.newbyteorder("<") in HALF_DTYPES

    def declared(self) -> core.Declared:
        shape, itemsize = self.array.shape, held_itemsize(self.array.dtype.newbyteorder("<"))
        return core.Declared(shape[0], self.array.size, itemsize, shape)

    def decode(self) -> Array:
        """The array as the core takes it (little-endian, C order, aligned, finite; half
        precision widened to float32)."""
        array = widen(decoded(self.array))
        if array.dtype.kind == "f":
            with located(self.field):
                check_finite(array, f"`{self.field}`", self.field)
        return array


def read(
    form: Form,
    body: Array,
    fields: tuple[str, ...],
    max_elements: int,
    reserve: Callable[[int], None],
) -> tuple[dict[str, Any], dict[str, Blob]]:
    """The request document of a binary or multipart body (uint8) and the long strings of its
    JSON (``jsontext.parse_object``, which is told what parsing holds through ``reserve``); its
    array fields sent as bytes are ``RawArray``s, checked against their declared size."""

    def parse(text: memoryview) -> Parsed:
        return parse_object(text, fields, reserve=reserve)

    if isinstance(form, Framed):
        return _framed(body, form.header_length, parse, max_elements)
    return _multipart(body, form.boundary, parse, max_elements)


def _framed(body: Array, header_length: int, parse: Parse, max_elements: int) -> Parsed:
    header, binary = framing.split(body, header_length)
    doc, blobs = parse(header.data)
    section = framing.BinarySection(binary)

    def take(members: dict[str, Any], name: str, field: str) -> None:
        value = members[name]
        if isinstance(value, dict) and "binary_data_size" in value:
            with located(field):
                members[name] = RawArray(field, _take(section, field, value, max_elements))

    for field, value in doc.items():
        if field in ARRAY_FIELDS:
            take(doc, field, field)
        elif field == INPUTS and isinstance(value, dict):
            for name in value:
                take(value, name, f"{INPUTS}.{name}")
    section.check_used("the arrays'")
    return doc, blobs


def _take(
    section: framing.BinarySection, field: str, value: dict[str, Any], max_elements: int
) -> Array:
    """A binary array field's bytes; its dtype is a packed array's (``arrays.wire_dtype``)."""
    if set(value) != _BINARY_KEYS:
        named = sorted(shown(key) for key in set(value) ^ _BINARY_KEYS)[:3]
        raise InvalidArray(
            f"binary `{field}` must have exactly dtype, shape and binary_data_size: "
            f"missing or unexpected keys {named}",
            errors=[((field,), "expected {dtype, shape, binary_data_size}")],
        )
    name = value["dtype"]
    dtype = wire_dtype(name, field)
    check_shape(value["shape"], field, max_elements, "binary")
    return section.take(field, dtype, name, value["shape"], value["binary_data_size"])


def _multipart(body: Array, boundary: bytes, parse: Parse, max_elements: int) -> Parsed:
    doc: dict[str, Any] = {}
    named: dict[str, Any] = {}  # the parts inputs.<name>
    options: Parsed = ({}, {})
    seen: set[str] = set()
    prefix = f"{INPUTS}."
    for part in parts(body, boundary):
        if part.name in seen:
            raise _part_problem(part.name, "is sent twice")
        seen.add(part.name)
        if part.name == OPTIONS_PART:
            options = parse(part.content.data)
        elif part.name in ARRAY_FIELDS:
            doc[part.name] = RawArray(part.name, read_npy(part.content, part.name, max_elements))
        elif part.name.startswith(prefix) and len(part.name) > len(prefix):
            with located(part.name):
                array = read_npy(part.content, part.name, max_elements)
            named[part.name.removeprefix(prefix)] = RawArray(part.name, array)
        else:
            expected = ", ".join((*ARRAY_FIELDS, f"{prefix}<name>", OPTIONS_PART))
            raise _part_problem(part.name, f"is not a part this route takes ({expected})")
    for field in options[0]:
        if field in doc:
            raise _part_problem(field, "is sent both as a part and in the options part")
    if named:
        sent = options[0].get(INPUTS)
        if sent is not None and not isinstance(sent, dict):
            raise _part_problem(INPUTS, "must be an object of named arrays in the options part")
        for name in sent or {}:
            if name in named:
                raise _part_problem(
                    f"{prefix}{name}", "is sent both as a part and in the options part"
                )
        doc[INPUTS] = {**(sent or {}), **named}
    return {**options[0], **doc}, options[1]


def _part_problem(name: str, detail: str) -> Unprocessable:
    shown_name = shown(name)
    return Unprocessable(
        f"the multipart part `{shown_name}` {detail}", errors=[((shown_name,), detail)]
    )
