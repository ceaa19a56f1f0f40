"""``multipart/form-data`` (RFC 7578) over a body already read: each part's name and its content
as a view of the body, no copy.

A small parser of its own rather than python-multipart: that one streams parts into new buffers
(a copy of every array), while here the body is already in memory, reserved and aligned, and
a part's content is needed only as a range of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import Unprocessable
from ..jit import Array

# More parts than any request has fields is a client error, refused before any part is read.
MAX_PARTS = 16
# A part's headers (Content-Disposition, Content-Type) fit in this many bytes.
MAX_PART_HEAD = 8192
_CRLF = b"\r\n"
_NAME = re.compile(r'(?:^|;)\s*name\s*=\s*(?:"([^"]*)"|([^;\s"]+))', re.IGNORECASE)


@dataclass(frozen=True)
class Part:
    """One part: its form field name and its content (a uint8 view of the body)."""

    name: str
    content: Array


def _problem(detail: str) -> Unprocessable:
    return Unprocessable(
        f"the multipart/form-data body is malformed: {detail}",
        errors=[(("body",), "malformed multipart/form-data")],
    )


def parts(body: Array, boundary: bytes) -> list[Part]:
    """The parts of a ``multipart/form-data`` body (uint8), in order; 422 when it is malformed:
    no opening or closing delimiter, a part without a ``Content-Disposition: form-data`` name,
    or too many parts."""
    view = body.data
    delimiter = b"--" + boundary
    if bytes(view[: len(delimiter)]) == delimiter:
        starts = [0]
    else:  # a preamble before the first delimiter is allowed, and ignored
        first = re.search(re.escape(_CRLF + delimiter), view)
        if first is None:
            raise _problem(
                f"it has no delimiter --{boundary.decode()} (the Content-Type's boundary)"
            )
        starts = [first.start() + 2]
    found = re.compile(re.escape(_CRLF + delimiter)).finditer(view, starts[0] + len(delimiter))
    for match in found:
        starts.append(match.start())
        if len(starts) > MAX_PARTS + 1:
            raise _problem(f"it has more than {MAX_PARTS} parts")
    result: list[Part] = []
    for k, start in enumerate(starts):
        after = start + (0 if k == 0 else 2) + len(delimiter)
        if bytes(view[after : after + 2]) == b"--":  # the closing delimiter
            return result
        if k + 1 == len(starts):
            break
        result.append(_part(body, view, after, starts[k + 1], k))
    raise _problem("it has no closing delimiter (--boundary--); it may be cut short")


def _part(body: Array, view: memoryview, start: int, end: int, k: int) -> Part:
    """Part ``k``: the delimiter line's end is at ``start``, the next delimiter at ``end``."""
    line_end = bytes(view[start : min(start + 256, end)]).find(_CRLF)
    if line_end < 0 or bytes(view[start : start + line_end]).strip(b" \t"):
        raise _problem(f"part {k}: the delimiter line does not end with CRLF")
    head_start = start + line_end + 2
    head = bytes(view[head_start : min(head_start + MAX_PART_HEAD, end)])
    head_end = head.find(_CRLF + _CRLF) if not head.startswith(_CRLF) else -2
    if head_end == -1:
        raise _problem(f"part {k}: its headers do not end with an empty line within 8 KiB")
    name = _name(head[: max(head_end, 0)], k)
    return Part(name, body[head_start + head_end + 4 : end])


def _name(head: bytes, k: int) -> str:
    """The form field name from a part's headers (``Content-Disposition: form-data; name=``)."""
    try:
        lines = head.decode("utf-8").split("\r\n")
    except UnicodeDecodeError:
        raise _problem(f"part {k}: its headers are not UTF-8") from None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip().lower() != "content-disposition":
            continue
        kind, _, params = value.strip().partition(";")
        match = _NAME.search(";" + params)
        if kind.strip().lower() == "form-data" and match is not None:
            return match.group(1) if match.group(1) is not None else match.group(2)
    raise _problem(f'part {k} has no Content-Disposition: form-data; name="..." header')
