"""Evaluating losses and reading the catalogue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from .. import engine
from ..body import Encoded
from ..errors import NotReady
from ..losses import resolve
from ..metrics import note
from ..schemas import Catalogue, LossInfo, LossResult, MultiLossResult
from ._body import read_json_body
from ._docs import problems
from .state import ServiceState

router = APIRouter(tags=["losses"])


def _request_body(model: str) -> dict[str, Any]:
    """The documented JSON body of a route that decodes its body itself."""
    schema = {"$ref": f"#/components/schemas/{model}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# The path parameter of /loss/{name}, documented by hand: the route reads it from the request,
# because FastAPI's parameter solving costs a small batch's whole evaluation again.
_NAME = {
    "parameters": [
        {
            "name": "name",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "title": "Name"},
        }
    ]
}

STREAM_ABOVE = 1 << 20
# Bodies up to this size (a few thousand numbers) are evaluated on the event loop: their kernels
# run serially in tens of microseconds, less than the hop to a compute thread and back costs
# (docs/benchmarks.md, HTTP small requests).
INLINE_BELOW = 1 << 15


def _json(content: bytes) -> Response:
    return Response(content, media_type="application/json")


async def _evaluate(
    request: Request, evaluate: Callable[[bytearray, int, int], Encoded]
) -> Response:
    """Read the body, evaluate it on the compute executor, answer with the encoded result.

    The state comes from the app, not from a FastAPI dependency: solving dependencies and
    parameters cost about as much as evaluating a small batch (docs/benchmarks.md, HTTP small
    requests).
    """
    state: ServiceState = request.app.state.lossd
    if not state.ready:
        raise NotReady("kernels are still compiling", headers={"Retry-After": "1"})
    settings = state.settings
    body = await read_json_body(request, settings.max_body_bytes, settings.body_timeout)
    note(encoding="json")  # the engine says "packed" when it meets a packed array
    limits = (settings.max_elements, settings.max_request_bytes)
    if len(body) < INLINE_BELOW:
        return _encoded(evaluate(body, *limits))
    return _encoded(await state.compute.run(evaluate, body, *limits))


def _encoded(body: Encoded) -> Response:
    """Small bodies in one piece; large ones streamed a chunk at a time with their length."""
    if body.size <= STREAM_ABOVE:
        return _json(body.tobytes())

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in body.chunks():
            yield chunk

    return StreamingResponse(
        chunks(), media_type="application/json", headers={"Content-Length": str(body.size)}
    )


@router.post(
    "/loss/{name}",
    operation_id="evaluate_loss",
    response_model=LossResult,
    responses=problems(404, 413, 415, 422, 503),
    openapi_extra={**_request_body("LossRequest"), **_NAME},
)
async def evaluate_loss(request: Request) -> Response:
    """Evaluate one loss on one batch: per-sample losses, reduced value, optional derivatives."""
    name: str = request.path_params["name"]
    note(loss=resolve(name).name)  # an unknown loss is a 404 before the body is read
    return await _evaluate(request, partial(engine.evaluate, name))


@router.post(
    "/loss",
    operation_id="evaluate_losses",
    response_model=MultiLossResult,
    responses=problems(404, 413, 415, 422, 503),
    openapi_extra=_request_body("MultiLossRequest"),
)
async def evaluate_losses(request: Request) -> Response:
    """Evaluate several losses on one batch; the arrays are decoded once, results in order."""
    return await _evaluate(request, engine.evaluate_many)


@router.get("/losses", operation_id="list_losses", response_model=Catalogue)
async def list_losses() -> Response:
    """The catalogue: every loss with aliases, parameters, formula and reference."""
    return _json(orjson.dumps({"losses": engine.catalogue()}))


@router.get(
    "/losses/{name}", operation_id="get_loss", response_model=LossInfo, responses=problems(404)
)
async def get_loss(name: str) -> Response:
    """One catalogue entry; aliases resolve."""
    return _json(orjson.dumps(resolve(name).catalogue_entry()))
