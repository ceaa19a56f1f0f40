"""Wire codecs around the typed core: each decodes a request into a ``core.Batch`` and
``core.Options``, calls ``core.evaluate`` and encodes the ``Result``s.

- ``loss``: the ``/loss`` JSON document, with list or packed arrays (``arrays``), or the same
  document in the binary framing or as multipart ``.npy`` parts (``bodies``: ``multipart``,
  ``npy``);
- ``oip``: the Open Inference Protocol v2, JSON tensors or the binary tensor data extension;
- ``framing``: the binary framing (a JSON header, then raw arrays) ``loss`` and ``oip`` share;
- ``jsontext``: JSON text in and out with long strings kept out of Python; ``base64``: its kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import Result
from .jsontext import Encoded


@dataclass(frozen=True)
class Reply:
    """What a codec answers: the response body, the results it encodes (for the routes'
    metrics), the binary extension's JSON length, and the request's encoding when the codec
    learned it from the body (a packed array)."""

    body: Encoded
    results: tuple[Result, ...]
    json_length: int | None = None
    encoding: str | None = None
