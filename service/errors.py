"""The error tree and its problem+json form (RFC 9457).

    LossdError                       status  code
    ├── CorsRejected                 400     cors_rejected    (a refused CORS preflight)
    ├── Unauthorized                 401     unauthorized     (with WWW-Authenticate)
    ├── NotFound                     404     not_found
    │   └── UnknownLoss              404     unknown_loss
    ├── MethodNotAllowed             405     method_not_allowed
    ├── RequestTimeout               408     request_timeout  (the body arrived too slowly)
    ├── PayloadTooLarge              413     payload_too_large
    ├── TooManyElements              413     too_many_elements
    ├── MemoryBudget                 413     memory_budget    (LOSSD_MAX_REQUEST_BYTES)
    ├── UnsupportedMediaType         415     unsupported_media_type
    ├── Unprocessable                422     invalid_request  (JSON syntax, field types)
    │   ├── InvalidArray             422     invalid_array
    │   ├── ShapeMismatch            422     shape_mismatch
    │   ├── InvalidParams            422     invalid_params
    │   └── OutOfDomain              422     out_of_domain
    ├── NotReady                     503     not_ready        (with Retry-After)
    └── Overloaded                   503     overloaded       (with Retry-After)

Details and ``errors[].msg`` describe what is wrong and never echo the offending input back: a
NaN or a million-element list echoed into a 422 is how a 422 becomes a 500.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

from pydantic import ValidationError

PROBLEM_MEDIA_TYPE = "application/problem+json"
_MAX_LOC_PART = 64


def shown(text: str, limit: int = _MAX_LOC_PART) -> str:
    """A client's string as an error may show it: cut to ``limit`` characters, and a string of
    64 KiB or more (lifted out of the body by ``body.lift``, a marker here) named as such."""
    if text.startswith("\x00lossd:"):
        return "<a very long string>"
    return text if len(text) <= limit else text[:limit] + "…"


def _loc_part(part: object) -> str | int:
    """A location step, cut short: keys come from the client and may be arbitrarily long."""
    if isinstance(part, int) and not isinstance(part, bool):
        return part
    return shown(str(part))


class LossdError(Exception):
    """Base of every error lossd answers with; ``status`` and ``code`` are fixed per class."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None) -> None:
        """``class NotFound(LossdError, status=404, code="not_found")``: one line per error."""
        super().__init_subclass__()
        if status is not None:
            cls.status = status
        if code is not None:
            cls.code = code

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[tuple[Sequence[object], str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = [([_loc_part(p) for p in loc], msg) for loc, msg in errors]
        self.headers = headers or {}

    def to_problem(self) -> dict[str, Any]:
        """The problem+json body of this error."""
        return problem(self.status, self.code, self.detail, self.errors)


MAX_LISTED = 5


def from_validation(
    kind: type[LossdError],
    headline: str,
    exc: ValidationError | Sequence[Mapping[str, Any]],
    prefix: Sequence[str] = (),
) -> LossdError:
    """The 422 of every route for a pydantic ``ValidationError`` (or FastAPI's list of errors of
    the same shape): at most ``MAX_LISTED`` problems listed (ten thousand unknown keys are ten
    thousand errors), locations cut short under ``prefix``, the input never echoed."""
    listed_errors = exc.errors(include_input=False) if isinstance(exc, ValidationError) else exc
    found = [
        ((*prefix, *e.get("loc", ())) or ("body",), str(e.get("msg", "invalid")))
        for e in listed_errors
    ]
    error = kind("", errors=found[:MAX_LISTED])
    listed = "; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in error.errors)
    more = f"; and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
    error.detail = f"{headline}: {listed}{more}"
    return error


# Statuses outside the IANA registry that lossd answers with (nginx's).
_TITLES = {499: "Client Closed Request"}


def problem(
    status: int,
    code: str,
    detail: str,
    errors: Sequence[tuple[Sequence[str | int], str]] = (),
) -> dict[str, Any]:
    """A problem+json document with lossd's ``code`` and ``errors`` extension members."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = [{"loc": list(loc), "msg": msg} for loc, msg in errors]
    return body


class CorsRejected(LossdError, status=400, code="cors_rejected"):
    """A CORS preflight from an origin that is not configured."""


class Unauthorized(LossdError, status=401, code="unauthorized"):
    """An API key is configured and the request has none or a wrong one."""


class NotFound(LossdError, status=404, code="not_found"):
    """No such route, model or model version."""


class UnknownLoss(NotFound, code="unknown_loss"):
    """The name is no loss or alias in the registry."""


class MethodNotAllowed(LossdError, status=405, code="method_not_allowed"):
    """The route exists, the method does not."""


class RequestTimeout(LossdError, status=408, code="request_timeout"):
    """The body did not arrive within LOSSD_BODY_TIMEOUT."""


class PayloadTooLarge(LossdError, status=413, code="payload_too_large"):
    """The body is larger than LOSSD_MAX_BODY_BYTES."""


class TooManyElements(LossdError, status=413, code="too_many_elements"):
    """An array has more than LOSSD_MAX_ELEMENTS elements."""


class MemoryBudget(LossdError, status=413, code="memory_budget"):
    """The request would need more than LOSSD_MAX_REQUEST_BYTES of memory."""


class UnsupportedMediaType(LossdError, status=415, code="unsupported_media_type"):
    """A content type or content encoding lossd does not read."""


class Unprocessable(LossdError, status=422, code="invalid_request"):
    """JSON syntax, unknown or mistyped fields."""


class InvalidArray(Unprocessable, code="invalid_array"):
    """An array that is not a finite numeric array of rank 1 or 2."""


class ShapeMismatch(Unprocessable, code="shape_mismatch"):
    """Arrays whose shapes do not fit each other or the loss."""


class InvalidParams(Unprocessable, code="invalid_params"):
    """The loss's own parameters are refused."""


class OutOfDomain(Unprocessable, code="out_of_domain"):
    """Values outside the loss's domain, or results that overflow."""


class NotReady(LossdError, status=503, code="not_ready"):
    """The kernels are still compiling (with Retry-After)."""


class Overloaded(LossdError, status=503, code="overloaded"):
    """The compute queue is full (with Retry-After)."""


class ClientGone(LossdError, status=499, code="client_closed_request"):
    """The client closed the connection before its answer: the work for it was dropped.
    Nobody reads the answer; 499 (nginx's "client closed request") is for logs and metrics."""


# Answered by the HTTP server itself (service/server.py), before any request reaches the app.


class HeadersTooLarge(LossdError, status=431, code="headers_too_large"):
    """The request line and headers exceed LOSSD_MAX_HEADER_BYTES or LOSSD_MAX_HEADERS."""


class TooManyConnections(Overloaded, code="too_many_connections"):
    """The worker holds LOSSD_MAX_CONNECTIONS connections already (with Retry-After)."""


class MalformedRequest(LossdError, status=400, code="malformed_request"):
    """Bytes that are not an HTTP/1.1 request (the parser's refusal, in problem+json)."""
