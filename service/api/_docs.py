"""OpenAPI fragments shared by the routes: problem+json responses."""

from __future__ import annotations

from typing import Any

from ..errors import PROBLEM_MEDIA_TYPE

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_WHEN = {
    401: "an API key is configured and the request has none or a wrong one",
    404: "unknown loss",
    413: "body or array larger than the configured limits",
    415: "a content type other than JSON",
    422: "invalid JSON, fields, arrays, shapes, parameters or values out of the loss's domain",
    503: "not ready yet, or the compute queue is full (with Retry-After)",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entries of the given error statuses, all problem+json."""
    return {
        status: {
            "description": _WHEN[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}},
        }
        for status in statuses
    }
