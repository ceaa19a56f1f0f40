"""lossd's problem+json answers as exceptions, one class per kind of failure a caller handles
differently:

    LossdError                  any error answer: status, code, detail, errors
    ├── RequestError            4xx: the request is wrong, sending it again will not help
    │   ├── Unauthorized        401  no API key, or a wrong one
    │   ├── NotFound            404  (UnknownLoss: code unknown_loss)
    │   ├── TooLarge            413  payload_too_large, too_many_elements, memory_budget
    │   └── ValidationError     422  invalid_request, invalid_array, shape_mismatch,
    │                                 invalid_params, out_of_domain
    ├── ServerError             5xx
    │   └── Overloaded          503  overloaded, not_ready, too_many_connections (Retry-After)
    └── AnswerError             a 200 answer the client could not read (not lossd's framing)

The client retries ``Overloaded`` and splits batches on ``TooLarge`` itself; what reaches the
caller is what it could not resolve. Transport failures (no connection, a timeout) are httpx's
own exceptions (``httpx.TransportError``), not these.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class ProblemEntry:
    """One entry of a problem's ``errors``: where in the request, and what is wrong there."""

    loc: tuple[str | int, ...]
    msg: str


class LossdError(Exception):
    """An error answer from lossd (problem+json), or an answer the client could not read."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: tuple[ProblemEntry, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled with its fields (an Exception pickles its message only): an error raised
        # where a dask worker evaluated a partition reaches the caller as the same exception
        return (type(self), (self.status, self.code, self.detail, self.errors, self.retry_after))


class RequestError(LossdError):
    """4xx: the server refused the request as it is."""


class Unauthorized(RequestError):
    """401: the server wants an API key (``Client(api_key=...)``) or refused the one sent."""


class NotFound(RequestError):
    """404: no such route."""


class UnknownLoss(NotFound):
    """404 ``unknown_loss``: the name is no loss or alias (``client.losses()`` lists them)."""


class TooLarge(RequestError):
    """413: a batch the server will not take even after the client split it as far as it could
    (a single row over the limits, or a limit the client cannot split around)."""


class ValidationError(RequestError):
    """422: a malformed request, a shape mismatch, bad parameters, values outside the loss's
    domain; ``errors`` says where."""


class ServerError(LossdError):
    """5xx: the server failed or could not answer now."""


class Overloaded(ServerError):
    """503: the server is busy or still compiling its kernels; ``retry_after`` seconds is when
    it suggested trying again (the client already retried as often as it was allowed)."""


class AnswerError(LossdError):
    """A 200 answer that is not what lossd sends (a proxy in the way, a truncated body)."""

    def __init__(self, detail: str) -> None:
        super().__init__(200, "unreadable_answer", detail)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.detail,))


_BY_STATUS: dict[int, type[LossdError]] = {
    401: Unauthorized,
    404: NotFound,
    413: TooLarge,
    422: ValidationError,
    503: Overloaded,
}


def error_from_answer(status: int, headers: Mapping[str, str], body: bytes) -> LossdError:
    """The exception for an error answer: its problem+json fields when it has them, otherwise
    (a proxy's HTML page, say) the status with the start of the body as the detail."""
    retry_after = parse_retry_after(headers.get("retry-after"))
    code, detail = f"http_{status}", body[:500].decode(errors="replace")
    errors: tuple[ProblemEntry, ...] = ()
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("code"), str):
        code = doc["code"]
        detail = str(doc.get("detail", ""))
        errors = tuple(_entries(doc.get("errors")))
    kind = _BY_STATUS.get(status)
    if kind is None:
        kind = RequestError if 400 <= status < 500 else ServerError if status >= 500 else LossdError
    if kind is NotFound and code == "unknown_loss":
        kind = UnknownLoss
    return kind(status, code, detail, errors, retry_after)


def _entries(raw: Any) -> list[ProblemEntry]:
    if not isinstance(raw, list):
        return []
    return [
        ProblemEntry(tuple(e.get("loc", ())), str(e.get("msg", "")))
        for e in raw
        if isinstance(e, dict)
    ]


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number of seconds or an HTTP date (RFC 9110); None if absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
