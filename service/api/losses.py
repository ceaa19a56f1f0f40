"""Evaluating losses and reading the catalogue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache, partial

import orjson
from fastapi import APIRouter, Request, Response

from .. import core
from ..codecs import loss as codec
from ..losses import REGISTRY, resolve
from ..memory import Lease
from ..metrics import note
from ..schemas import Catalogue, LossInfo, LossResult, MultiLossResult
from ._docs import LOSS_NAME, json_body, problems
from ._wire import JSON, check_ready, evaluate, media_type, read_body
from .state import ServiceState

router = APIRouter(tags=["losses"])


# The state comes from the app, not from a FastAPI dependency, and the name from the request:
# solving dependencies and parameters cost about as much as evaluating a small batch
# (docs/benchmarks.md, HTTP small requests).


@router.post(
    "/loss/{name}",
    operation_id="evaluate_loss",
    response_model=LossResult,
    responses=problems(404, 413, 415, 422, 503),
    openapi_extra={**LOSS_NAME, **json_body("LossRequest")},
)
async def evaluate_loss(request: Request) -> Response:
    """Evaluate one loss on one batch: per-sample losses, reduced value, optional derivatives."""
    name: str = request.path_params["name"]
    note(loss=resolve(name).name)  # an unknown loss is a 404 before the body is read
    state, read = _reader(request)
    return await evaluate(request, state, read, codec.evaluate_one, name)


@router.post(
    "/loss",
    operation_id="evaluate_losses",
    response_model=MultiLossResult,
    responses=problems(404, 413, 415, 422, 503),
    openapi_extra=json_body("MultiLossRequest"),
)
async def evaluate_losses(request: Request) -> Response:
    """Evaluate several losses on one batch; the arrays are decoded once, results in order."""
    state, read = _reader(request)
    return await evaluate(request, state, read, codec.evaluate_many)


def _reader(request: Request) -> tuple[ServiceState, Callable[[Lease], Awaitable[bytearray]]]:
    """The service state (503 until ready) and the reader of the request's JSON body."""
    state: ServiceState = request.app.state.lossd
    check_ready(state)
    settings = state.settings
    media_type(request)
    note(encoding="json")  # the codec says "packed" when the body has a packed array
    return state, partial(read_body, request, settings.max_body_bytes, settings.body_timeout)


@router.get("/losses", operation_id="list_losses", response_model=Catalogue)
async def list_losses() -> Response:
    """The catalogue: every loss with aliases, parameters, formula and reference."""
    return Response(_catalogue(), media_type=JSON)


@router.get(
    "/losses/{name}", operation_id="get_loss", response_model=LossInfo, responses=problems(404)
)
async def get_loss(name: str) -> Response:
    """One catalogue entry; aliases resolve."""
    return Response(_entry(resolve(name).name), media_type=JSON)


# The catalogue is fixed for the life of the process, and building it (27 parameter schemas)
# takes tens of milliseconds: it is built once, not on the event loop for every request.
@cache
def _catalogue() -> bytes:
    return orjson.dumps({"losses": core.catalogue()})


@cache
def _entry(name: str) -> bytes:
    return orjson.dumps(core.catalogue_entry(resolve(name)))


def build_catalogue() -> None:
    """Build the catalogue's answers (at start-up, on a compute thread)."""
    _catalogue()
    for spec in REGISTRY:
        _entry(spec.name)
