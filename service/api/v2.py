"""The Open Inference Protocol v2: health, metadata and inference, every loss a model.

Errors under ``/v2`` are the protocol's ``{"error": "..."}`` (``answer_errors_as_protocol``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from inspect import isawaitable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response
from pydantic import BaseModel, ValidationError

from ..codecs import oip, triton
from ..errors import PROBLEM_MEDIA_TYPE, Unprocessable, from_validation
from ..losses import LossSpec
from ..metrics import Metrics, note
from ..security import is_v2
from ._docs import INFER_BODY, INFER_RESPONSES, protocol_errors
from ._wire import (
    BINARY,
    JSON,
    check_ready,
    evaluate,
    header_length,
    media_type,
    read_body,
    read_body_aligned,
)
from .state import ServiceState, service_state

router = APIRouter(tags=["inference protocol"])
RouteFn = TypeVar("RouteFn", bound=Callable[..., Awaitable[Response]])
State = Annotated[ServiceState, Depends(service_state)]
# Every loss has the one version 1; another version is a 404 (documented, not validated: a 422
# would say the request is malformed where the protocol says the model version does not exist).
Version = Annotated[
    str, Path(description="every loss has the one version 1", json_schema_extra={"enum": ["1"]})
]


INDEX_BODY_BYTES = 1024  # POST /v2/repository/index: at most {"ready": true}


def _json(doc: object) -> Response:
    return Response(orjson.dumps(doc), media_type=JSON)


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
    responses=protocol_errors(503),
)
async def server_ready(state: State) -> Response:
    """Readiness: 200 once every kernel is compiled or loaded from cache, 503 before."""
    check_ready(state)
    return _json({"ready": True})


# Triton's extensions (codecs/triton.py). /v2/models/stats comes before /v2/models/{name}.
@router.get("/v2/models/stats", operation_id="v2_statistics", response_model=triton.Statistics)
def statistics(request: Request) -> Response:
    """Inference statistics of every loss (Triton's statistics extension)."""
    return _statistics(request, None, None)


@router.get(
    "/v2/models/{name}/stats",
    operation_id="v2_model_statistics",
    response_model=triton.Statistics,
    responses=protocol_errors(404, by_path=True),
)
def model_statistics(name: str, request: Request) -> Response:
    """Inference statistics of one loss: requests by outcome and time in its kernels."""
    return _statistics(request, name, None)


@router.get(
    "/v2/models/{name}/versions/{version}/stats",
    operation_id="v2_model_version_statistics",
    response_model=triton.Statistics,
    responses=protocol_errors(404, by_path=True),
)
def model_version_statistics(name: str, version: Version, request: Request) -> Response:
    """Inference statistics of the loss's one version, 1."""
    return _statistics(request, name, version)


def _statistics(request: Request, name: str | None, version: str | None) -> Response:
    specs = () if name is None else (oip.model(name, version),)
    metrics: Metrics = request.app.state.metrics  # read from files with several workers
    return _json(triton.statistics(metrics, *specs))


def _model_document(
    suffix: str,
    operation: str,
    model: type[BaseModel],
    build: Callable[[LossSpec], dict[str, Any]],
    summary: str,
) -> None:
    """GET ``/v2/models/{name}<suffix>`` and ``/v2/models/{name}/versions/{version}<suffix>``:
    the document ``build`` makes of the loss (404 for an unknown model or version)."""
    responses = protocol_errors(404, by_path=True)
    versioned_operation = f"model_version_{operation.removeprefix('model_')}"

    @router.get(
        f"/v2/models/{{name}}{suffix}",
        operation_id=f"v2_{operation}",
        response_model=model,
        responses=responses,
        summary=operation.replace("_", " ").title(),
        description=summary,
    )
    async def latest(name: str) -> Response:
        return _json(build(oip.model(name, None)))

    @router.get(
        f"/v2/models/{{name}}/versions/{{version}}{suffix}",
        operation_id=f"v2_{versioned_operation}",
        response_model=model,
        responses=responses,
        summary=versioned_operation.replace("_", " ").title(),
        description=f"{summary} Every loss has the one version 1.",
    )
    async def versioned(name: str, version: Version) -> Response:
        return _json(build(oip.model(name, version)))


_model_document(
    "/config",
    "model_config",
    triton.ModelConfig,
    triton.model_config,
    "A loss as Triton's model configuration: inputs, outputs, their datatypes and dims.",
)


@router.post(
    "/v2/repository/index",
    operation_id="v2_repository_index",
    response_model=list[triton.RepositoryModel],
    responses=protocol_errors(413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {JSON: {"schema": triton.RepositoryQuery.model_json_schema()}},
        }
    },
)
async def repository_index(request: Request, state: State) -> Response:
    """Every loss with its one version and whether it is ready (an empty body: all of them)."""
    body = await read_body(request, INDEX_BODY_BYTES, state.settings.body_timeout)
    only_ready = False
    if body.strip():
        media_type(request, "")
        try:
            only_ready = triton.RepositoryQuery.model_validate_json(body).ready
        except ValidationError as exc:
            error = from_validation(Unprocessable, "invalid repository index request", exc)
            raise error from None
    return _json(triton.repository_index(state.warm, only_ready))


_model_document(
    "",
    "model_metadata",
    oip.ModelMetadata,
    oip.model_metadata,
    "A loss as a model: its inputs, outputs, datatypes, shapes and parameters.",
)


@router.get(
    "/v2/models/{name}/ready",
    operation_id="v2_model_ready",
    response_model=oip.ModelReady,
    responses=protocol_errors(404, 503, by_path=True),
)
async def model_ready(name: str, state: State) -> Response:
    """Whether the loss can be evaluated: 200 once its kernels are ready, 503 before."""
    return _model_ready(name, None, state)


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    operation_id="v2_model_version_ready",
    response_model=oip.ModelReady,
    responses=protocol_errors(404, 503, by_path=True),
)
async def model_version_ready(name: str, version: Version, state: State) -> Response:
    """Readiness of the loss's one version, 1."""
    return _model_ready(name, version, state)


def _model_ready(name: str, version: str | None, state: ServiceState) -> Response:
    spec = oip.model(name, version)  # an unknown model is a 404 even before the server is ready
    check_ready(state, spec)
    return _json({"name": spec.name, "ready": True})


def _infer_route(path: str, operation_id: str) -> Callable[[RouteFn], RouteFn]:
    """The decorator of the two inference routes (with and without a version)."""
    return router.post(
        path,
        operation_id=operation_id,
        response_model=oip.InferResponse,
        responses=INFER_RESPONSES,
        openapi_extra=INFER_BODY,
    )


@_infer_route("/v2/models/{name}/infer", "v2_infer")
async def infer(name: str, request: Request, state: State) -> Response:
    """Evaluate the loss: JSON tensors or the binary tensor data extension, in and out."""
    return await _infer(name, None, request, state)


@_infer_route("/v2/models/{name}/versions/{version}/infer", "v2_model_version_infer")
async def infer_version(name: str, version: Version, request: Request, state: State) -> Response:
    """Inference on the loss's one version, 1."""
    return await _infer(name, version, request, state)


async def _infer(name: str, version: str | None, request: Request, state: State) -> Response:
    spec = oip.model(name, version)  # an unknown model is a 404 before the body is read
    note(loss=spec.name)
    check_ready(state, spec)
    media_type(request, BINARY, "")  # no Content-Type: JSON, as tritonclient sends it
    length = header_length(request)
    note(encoding="v2-json" if length is None else "v2-binary")
    settings = state.settings
    read = partial(
        read_body_aligned,
        request,
        settings.max_body_bytes,
        settings.body_timeout,
        length or 0,
    )
    return await evaluate(request, state, lambda lease: read(lease=lease), oip.infer, name, length)


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
