"""OpenAPI fragments shared by the routes: problem+json responses, and the spec's final touches."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from ..errors import PROBLEM_MEDIA_TYPE

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_WHEN = {
    401: "an API key is configured and the request has none or a wrong one",
    404: "unknown loss",
    408: "the body did not arrive in time (LOSSD_BODY_TIMEOUT)",
    413: "body or array larger than the configured limits",
    415: "a content type other than JSON",
    422: "invalid JSON, fields, arrays, shapes, parameters or values out of the loss's domain",
    503: "not ready yet, or the compute queue is full (with Retry-After)",
}
# FastAPI documents a 422 with these schemas on every route that has parameters; lossd's handler
# answers that 422 as problem+json, so the spec says so and the two schemas go.
_FASTAPI_422 = ("HTTPValidationError", "ValidationError")
# The Open Inference Protocol answers errors in its own shape, {"error": ...} (SPEC section 7).
_OWN_ERROR_SHAPE = "/v2"


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entries of the given error statuses, all problem+json."""
    return {status: _problem(_WHEN[status]) for status in statuses}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": dict(_PROBLEM_REF)}},
    }


def operation_id(route: APIRoute) -> str:
    """A route's operationId when it sets none: its function's name (``list_losses``)."""
    return route.name


def describe_problems(spec: dict[str, Any]) -> None:
    """Document FastAPI's automatic 422 as the problem+json lossd really answers with."""
    for path, item in spec.get("paths", {}).items():
        if path.startswith(_OWN_ERROR_SHAPE):
            continue
        for operation in item.values():
            responses = operation.get("responses", {})
            if _is_fastapi_422(responses.get("422")):
                responses["422"] = _problem("invalid path, query or header parameters")
    schemas = spec.get("components", {}).get("schemas", {})
    if "HTTPValidationError" not in _refs(spec.get("paths", {})):
        for name in _FASTAPI_422:
            schemas.pop(name, None)


def _refs(node: object) -> set[str]:
    """The names of the component schemas ``node`` refers to."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        found = {ref.rsplit("/", 1)[-1]} if isinstance(ref, str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def _is_fastapi_422(response: dict[str, Any] | None) -> bool:
    if response is None:
        return False
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))
