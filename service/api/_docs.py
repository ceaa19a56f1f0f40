"""The OpenAPI document's hand-written parts, all in one place: bodies and path parameters the
routes read themselves, problem+json and protocol error responses, and the spec's final touches.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from ..codecs.framing import HEADER_LENGTH
from ..codecs.oip import InferError, InferRequest
from ..errors import PROBLEM_MEDIA_TYPE
from ..losses import REGISTRY
from ..schemas import LossRequest, MultiLossRequest, Problem
from ._examples import EVALUATE_LOSS, Example, operations
from ._wire import BINARY, JSON, MULTIPART

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_WHEN = {
    401: "an API key is configured and the request has none or a wrong one",
    404: "unknown loss",
    408: "the body did not arrive in time (LOSSD_BODY_TIMEOUT)",
    413: "body or array larger than the configured limits",
    415: "a content type other than JSON, application/octet-stream or multipart/form-data",
    422: "invalid JSON, fields, arrays, shapes, parameters or values out of the loss's domain",
    503: "not ready yet, or the compute queue is full (with Retry-After)",
}
# FastAPI documents a 422 with these schemas on every route that has parameters; lossd's handler
# answers that 422 as problem+json, so the spec says so and the two schemas go.
_FASTAPI_422 = ("HTTPValidationError", "ValidationError")
# The Open Inference Protocol answers errors in its own shape, {"error": ...} (SPEC section 7).
_OWN_ERROR_SHAPE = "/v2"


# The path parameter of /loss/{name}, documented by hand: the route reads it from the request,
# because FastAPI's parameter solving costs a small batch's whole evaluation again.
LOSS_NAME: dict[str, Any] = {
    "parameters": [
        {
            "name": "name",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "title": "Name"},
        }
    ]
}

_PROTOCOL_WHEN = {
    404: "unknown model (loss) or version",
    413: "body or tensor larger than the configured limits",
    415: "a content type other than JSON or application/octet-stream, or a compressed body",
    422: "invalid JSON, tensors, shapes, datatypes, parameters or values out of the loss's domain",
    503: "not ready yet, or the compute queue is full (with Retry-After)",
}
_HEADER_LENGTH_DOC = {
    "description": "bytes of JSON at the start of the body; the binary tensor data follows",
    "schema": {"type": "integer", "minimum": 0},
}
_BINARY_BODY = {
    "schema": {"type": "string", "format": "binary"},
    "description": "the JSON header (Inference-Header-Content-Length bytes), then tensor bytes",
}
# POST /v2/models/{name}/infer: a JSON request, or the JSON header and then tensor bytes.
INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": {"$ref": "#/components/schemas/InferRequest"}},
            BINARY: _BINARY_BODY,
        },
    },
    "parameters": [
        {"name": HEADER_LENGTH, "in": "header", "required": False, **_HEADER_LENGTH_DOC}
    ],
}


_LOSS_BINARY_BODY = {
    "schema": {"type": "string", "format": "binary"},
    "description": (
        "the binary framing: the request document as a JSON header (Inference-Header-Content-"
        "Length bytes) whose array fields are {dtype, shape, binary_data_size}, then their raw "
        "little-endian C-ordered bytes in the order the header lists them"
    ),
}
_NPY_PART = {"type": "string", "format": "binary", "description": "a .npy file (np.save)"}
_LOSS_MULTIPART_BODY = {
    "schema": {
        "type": "object",
        "properties": {
            "predictions": _NPY_PART,
            "targets": _NPY_PART,
            "sample_weight": _NPY_PART,
            "options": {
                "type": "object",
                "description": "the rest of the request document (params, reduction, ...)",
            },
        },
        "additionalProperties": {
            **_NPY_PART,
            "description": (
                "a part named `inputs.<name>`: the extra named array `<name>` of a loss that "
                "takes one (inputs.var, inputs.input2, inputs.positive, inputs.negative)"
            ),
        },
        "required": ["predictions"],
    },
    "encoding": {"options": {"contentType": JSON}},
}


def loss_body(model: str, *parameters: dict[str, Any]) -> dict[str, Any]:
    """The documented body of a ``/loss`` route, which decodes it itself: the JSON document,
    the same in the binary framing, or multipart ``.npy`` parts and an ``options`` part."""
    schema = {"$ref": f"#/components/schemas/{model}"}
    content = {JSON: {"schema": schema}, BINARY: _LOSS_BINARY_BODY, MULTIPART: _LOSS_MULTIPART_BODY}
    header = {"name": HEADER_LENGTH, "in": "header", "required": False, **_HEADER_LENGTH_DOC}
    body = {"required": True, "content": content}
    return {"requestBody": body, "parameters": [*parameters, header]}


# A /loss answer with `array_format: binary`: the answer document as the JSON header, then bytes.
LOSS_RESPONSE_BINARY: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the result; with `array_format: binary` in the binary framing",
        "content": {BINARY: _LOSS_BINARY_BODY},
        "headers": {HEADER_LENGTH: _HEADER_LENGTH_DOC},
    }
}


def protocol_errors(*statuses: int, by_path: bool = False) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entries of ``/v2`` errors, in the protocol's ``{"error"}`` shape. With
    ``by_path``, the 422 of invalid path parameters too (FastAPI would document its own schema,
    which /v2 never sends)."""
    found: dict[int | str, dict[str, Any]] = {
        status: {"model": InferError, "description": _PROTOCOL_WHEN[status]} for status in statuses
    }
    if by_path:
        found[422] = {"model": InferError, "description": "invalid path parameters"}
    return found


INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the outputs; with binary outputs the body is the JSON header, then bytes",
        "content": {BINARY: _BINARY_BODY},
        "headers": {HEADER_LENGTH: _HEADER_LENGTH_DOC},
    },
    **protocol_errors(404, 413, 415, 422, 503),
}


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


def add_decoded_bodies(spec: dict[str, Any]) -> None:
    """Add the schemas of the bodies the routes decode themselves (``loss_body``, ``INFER_BODY``)
    and of problem+json."""
    _, defs = models_json_schema(
        [
            (LossRequest, "validation"),
            (MultiLossRequest, "validation"),
            (Problem, "validation"),
            (InferRequest, "validation"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    spec.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])


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


# --- loss names and parameters ------------------------------------------------------------------

_SCHEMAS = "#/components/schemas/"
LOSS_NAME_SCHEMA = "LossName"
PARAMS_BY_NAME_SCHEMA = "LossParamsByName"
# The operations whose `name` path parameter is a loss (the /v2 routes call it a model and keep
# a plain string: the protocol's clients send model names as they are).
_LOSS_NAME_PATHS = ("/loss/{name}", "/losses/{name}")
_NAME_DOC = (
    "a loss's canonical name; its aliases are accepted too (`MSELoss`, `mean-squared-error`: "
    "GET /losses lists them), in any case and with `-` for `_`, and answered under the "
    "canonical name"
)
# Where a request carries a loss's parameters: the schema, then the property.
_PARAMS_FIELDS = (("LossRequest", "the loss in the path"), ("LossSelection", "this loss"))


def describe_losses(spec: dict[str, Any]) -> None:
    """Make the spec say which losses there are and what each takes, so that Swagger UI offers
    the names in a list and a generated client can type them: a ``LossName`` enum of the
    canonical names for the loss name path parameters (in the spec only: the routes resolve
    aliases themselves), every loss's parameter schema as a component, ``LossParamsByName``
    mapping each name to its schema, and the ``params`` of a request as any one of them
    (instead of an object of any keys, which Swagger filled with ``additionalProp1``)."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    _, defs = models_json_schema(
        [(loss.params, "validation") for loss in REGISTRY],
        ref_template=_SCHEMAS + "{model}",
    )
    params = defs["$defs"]
    clash = set(params) & set(schemas)
    if clash:  # a loss's Params class named like a schema of the API: rename the class
        raise RuntimeError(f"parameter schemas named like other schemas: {sorted(clash)}")
    schemas.update(params)
    names = [loss.name for loss in REGISTRY]
    refs = {loss.name: {"$ref": _SCHEMAS + loss.params.__name__} for loss in REGISTRY}
    schemas[LOSS_NAME_SCHEMA] = {
        "title": LOSS_NAME_SCHEMA,
        "type": "string",
        "enum": names,
        "description": "the canonical loss names; the server also accepts every alias",
    }
    schemas[PARAMS_BY_NAME_SCHEMA] = {
        "title": PARAMS_BY_NAME_SCHEMA,
        "type": "object",
        "description": (
            "each loss's parameters under its canonical name: the `params` a request for that "
            "loss takes (also in GET /losses/{name}); for clients that type them by loss"
        ),
        "properties": refs,
        "required": names,
        "additionalProperties": False,
    }
    any_of_them = list({ref["$ref"]: ref for ref in refs.values()}.values())
    for model, which in _PARAMS_FIELDS:
        schemas[model]["properties"]["params"] = {
            "title": "Params",
            "description": (
                f"the parameters of {which}: its schema in {PARAMS_BY_NAME_SCHEMA} (unknown "
                "keys are a 422); defaults fill in what is not sent"
            ),
            "anyOf": any_of_them,
            # no `default: {}`: openapi-python-client refuses a default on a union of models,
            # and leaving `params` out means the same as sending {}
        }
    for path in _LOSS_NAME_PATHS:
        for operation in spec["paths"][path].values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "name":
                    parameter["schema"] = {"$ref": _SCHEMAS + LOSS_NAME_SCHEMA}
                    parameter["description"] = _NAME_DOC


# --- examples -------------------------------------------------------------------------------------


def add_examples(spec: dict[str, Any]) -> None:
    """Give every operation its example request (path parameters, JSON body) and answer
    (``_examples.py``), and ``evaluate_loss`` one named example per loss family, so that
    Swagger UI shows requests the server accepts and what they return."""
    found = operations()
    for path, item in spec["paths"].items():
        for operation in item.values():
            op_id = operation["operationId"]
            if op_id == "evaluate_loss":
                _named_examples(operation, EVALUATE_LOSS)
                continue
            if op_id not in found:  # a new route without its example: add one to _examples.py
                raise RuntimeError(f"{path}: operation {op_id} has no example")
            _one_example(operation, found[op_id])


def _named_examples(operation: dict[str, Any], examples: dict[str, Example]) -> None:
    """One example body and answer per loss, named after the loss, and the first loss as the
    path parameter's example. Swagger UI cannot tie a body example to a path value: it fills the
    path with the parameter's ``example`` (without one, the enum's first name, which the first
    body would not suit), and each example's description says which name it needs."""
    first = next(iter(examples))
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path" and parameter["name"] == "name":
            parameter["example"] = first
    body = operation["requestBody"]["content"][JSON]
    body["examples"] = {
        name: {
            "summary": example.summary,
            "description": f"Send it to `/loss/{name}`: choose `{name}` as the name above.",
            "value": example.request,
        }
        for name, example in examples.items()
    }
    answer = operation["responses"]["200"]["content"][JSON]
    answer["examples"] = {
        name: {"summary": example.summary, "value": example.response}
        for name, example in examples.items()
    }


def _one_example(operation: dict[str, Any], example: Example) -> None:
    """An operation's example: its path parameters' values, its JSON body, its 200 answer (in
    JSON, or the one media type it has: /metrics' text)."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            parameter["example"] = example.path[parameter["name"]]
    if example.request is not None:
        body = operation["requestBody"]["content"][JSON]
        body["examples"] = {"example": {"summary": example.summary, "value": example.request}}
    content = operation["responses"]["200"]["content"]
    media = JSON if JSON in content else next(iter(content))
    content[media]["examples"] = {
        "example": {"summary": example.summary, "value": example.response}
    }
