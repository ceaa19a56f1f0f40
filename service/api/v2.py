"""The Open Inference Protocol v2: health, metadata and inference, every loss a model.

Errors under ``/v2`` are the protocol's ``{"error": "..."}`` (``answer_errors_as_protocol``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from inspect import isawaitable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response
from fastapi.responses import StreamingResponse

from .. import oip
from ..body import Encoded
from ..errors import PROBLEM_MEDIA_TYPE, NotReady, Unprocessable, UnsupportedMediaType
from ..metrics import note
from ..security import is_v2
from ._body import read_body_aligned
from .losses import INLINE_BELOW, STREAM_ABOVE
from .state import ServiceState, service_state

router = APIRouter(tags=["inference protocol"])
State = Annotated[ServiceState, Depends(service_state)]
# Every loss has the one version 1; another version is a 404 (documented, not validated: a 422
# would say the request is malformed where the protocol says the model version does not exist).
Version = Annotated[
    str, Path(description="every loss has the one version 1", json_schema_extra={"enum": ["1"]})
]

JSON = "application/json"
BINARY = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"
_WHEN = {
    404: "unknown model (loss) or version",
    413: "body or tensor larger than the configured limits",
    415: "a content type other than JSON or application/octet-stream, or a compressed body",
    422: "invalid JSON, tensors, shapes, datatypes, parameters or values out of the loss's domain",
    503: "not ready yet, or the compute queue is full (with Retry-After)",
}
_HEADER_DOC = {
    "description": "bytes of JSON at the start of the body; the binary tensor data follows",
    "schema": {"type": "integer", "minimum": 0},
}
_BINARY_BODY = {
    "schema": {"type": "string", "format": "binary"},
    "description": "the JSON header (Inference-Header-Content-Length bytes), then tensor bytes",
}
_INFER_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": {"$ref": "#/components/schemas/InferRequest"}},
            BINARY: _BINARY_BODY,
        },
    },
    "parameters": [{"name": HEADER_LENGTH, "in": "header", "required": False, **_HEADER_DOC}],
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": oip.InferError, "description": _WHEN[status]} for status in statuses}


# Routes with path parameters: FastAPI would document its own 422 schema, which /v2 never sends.
_BY_PATH: dict[int | str, dict[str, Any]] = {
    422: {"model": oip.InferError, "description": "invalid path parameters"}
}


_INFER_RESPONSES = {
    200: {
        "description": "the outputs; with binary outputs the body is the JSON header, then bytes",
        "content": {BINARY: _BINARY_BODY},
        "headers": {HEADER_LENGTH: _HEADER_DOC},
    },
    **_errors(404, 413, 415, 422, 503),
}


def _json(doc: object) -> Response:
    return Response(orjson.dumps(doc), media_type=JSON)


def _check_ready(state: ServiceState) -> None:
    if not state.ready:
        raise NotReady("kernels are still compiling", headers={"Retry-After": "1"})


@router.get("/v2", operation_id="v2_server_metadata", response_model=oip.ServerMetadata)
async def server_metadata() -> Response:
    """Server metadata: name, version and the protocol extensions lossd supports."""
    return _json(oip.server_metadata())


@router.get("/v2/health/live", operation_id="v2_server_live", response_model=oip.ServerLive)
async def server_live() -> Response:
    """Liveness: the process answers."""
    return _json({"live": True})


@router.get(
    "/v2/health/ready",
    operation_id="v2_server_ready",
    response_model=oip.ServerReady,
    responses=_errors(503),
)
async def server_ready(state: State) -> Response:
    """Readiness: 200 once every kernel is compiled or loaded from cache, 503 before."""
    _check_ready(state)
    return _json({"ready": True})


@router.get(
    "/v2/models/{name}",
    operation_id="v2_model_metadata",
    response_model=oip.ModelMetadata,
    responses={**_errors(404), **_BY_PATH},
)
async def model_metadata(name: str) -> Response:
    """A loss as a model: its inputs, outputs, datatypes, shapes and parameters."""
    return _json(oip.model_metadata(oip.model(name, None)))


@router.get(
    "/v2/models/{name}/versions/{version}",
    operation_id="v2_model_version_metadata",
    response_model=oip.ModelMetadata,
    responses={**_errors(404), **_BY_PATH},
)
async def model_version_metadata(name: str, version: Version) -> Response:
    """Model metadata of the loss's one version, 1."""
    return _json(oip.model_metadata(oip.model(name, version)))


@router.get(
    "/v2/models/{name}/ready",
    operation_id="v2_model_ready",
    response_model=oip.ModelReady,
    responses={**_errors(404, 503), **_BY_PATH},
)
async def model_ready(name: str, state: State) -> Response:
    """Whether the loss can be evaluated: 200 once its kernels are ready, 503 before."""
    return _model_ready(name, None, state)


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    operation_id="v2_model_version_ready",
    response_model=oip.ModelReady,
    responses={**_errors(404, 503), **_BY_PATH},
)
async def model_version_ready(name: str, version: Version, state: State) -> Response:
    """Readiness of the loss's one version, 1."""
    return _model_ready(name, version, state)


def _model_ready(name: str, version: str | None, state: ServiceState) -> Response:
    spec = oip.model(name, version)  # an unknown model is a 404 even before the server is ready
    _check_ready(state)
    return _json({"name": spec.name, "ready": True})


@router.post(
    "/v2/models/{name}/infer",
    operation_id="v2_infer",
    response_model=oip.InferResponse,
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_DOC,
)
async def infer(name: str, request: Request, state: State) -> Response:
    """Evaluate the loss: JSON tensors or the binary tensor data extension, in and out."""
    return await _infer(name, None, request, state)


@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    operation_id="v2_model_version_infer",
    response_model=oip.InferResponse,
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_DOC,
)
async def infer_version(name: str, version: Version, request: Request, state: State) -> Response:
    """Inference on the loss's one version, 1."""
    return await _infer(name, version, request, state)


async def _infer(name: str, version: str | None, request: Request, state: State) -> Response:
    spec = oip.model(name, version)  # an unknown model is a 404 before the body is read
    note(loss=spec.name)
    _check_ready(state)
    header_length = _header_length(request)
    note(encoding="v2-json" if header_length is None else "v2-binary")
    settings = state.settings
    body = await read_body_aligned(
        request, settings.max_body_bytes, settings.body_timeout, header_length or 0
    )
    args = (spec.name, body, header_length, settings.max_elements, settings.max_request_bytes)
    if body.shape[0] < INLINE_BELOW:  # a small batch: cheaper here than a hop to a compute thread
        return _send(*oip.infer(*args))
    return _send(*await state.compute.run(oip.infer, *args))


def _header_length(request: Request) -> int | None:
    """The binary extension's JSON length, after the media type and encoding are checked."""
    headers = request.headers
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in ("", JSON, BINARY) and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"the body must be JSON ({JSON}) or, with the binary tensor data extension, {BINARY}"
        )
    if headers.get("content-encoding", "identity").strip().lower() != "identity":
        raise UnsupportedMediaType("compressed request bodies are not supported")
    raw = headers.get(HEADER_LENGTH)
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise Unprocessable(f"{HEADER_LENGTH} must be the byte length of the JSON header")
    return int(raw)


def _send(body: Encoded, json_size: int | None) -> Response:
    """JSON, or the JSON header and the binary outputs; large bodies a chunk at a time."""
    media = JSON if json_size is None else BINARY
    headers = {} if json_size is None else {HEADER_LENGTH: str(json_size)}
    if body.size <= STREAM_ABOVE:
        return Response(body.tobytes(), media_type=media, headers=headers)

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in body.chunks():
            yield chunk

    headers["Content-Length"] = str(body.size)
    return StreamingResponse(chunks(), media_type=media, headers=headers)


Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def answer_errors_as_protocol(app: FastAPI) -> None:
    """Errors of ``/v2`` routes as ``{"error": detail}``, as the protocol says; other routes
    keep problem+json. Wraps the app's exception handlers, so install them first."""
    for kind, handler in list(app.exception_handlers.items()):
        app.exception_handlers[kind] = _protocol_shaped(handler)


def _protocol_shaped(handler: Handler) -> Handler:
    async def handle(request: Request, exc: Any) -> Response:
        response = handler(request, exc)
        if isawaitable(response):
            response = await response
        content_type = response.headers.get("content-type", "")
        if not is_v2(request.scope["path"]) or not content_type.startswith(PROBLEM_MEDIA_TYPE):
            return response
        detail = orjson.loads(bytes(response.body)).get("detail", "request failed")
        headers = {
            key: value
            for key, value in response.headers.items()
            if key not in ("content-length", "content-type")
        }
        error = orjson.dumps({"error": detail})
        return Response(error, status_code=response.status_code, media_type=JSON, headers=headers)

    return handle
