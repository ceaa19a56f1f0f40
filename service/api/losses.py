"""Evaluating losses and reading the catalogue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache, partial
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from .. import core
from ..codecs import loss as codec
from ..codecs.bodies import Form, Framed, Multipart
from ..codecs.framing import HEADER_LENGTH
from ..errors import Unprocessable
from ..losses import REGISTRY, LossSpec, resolve
from ..memory import Lease
from ..metrics import note
from ..schemas import Catalogue, LossInfo, LossResult, MultiLossResult
from ._docs import LOSS_NAME, LOSS_RESPONSE_BINARY, loss_body, problems
from ._wire import (
    BINARY,
    JSON,
    MULTIPART,
    check_ready,
    evaluate,
    header_length,
    media_type,
    multipart_boundary,
    read_body,
    read_body_aligned,
)
from .state import ServiceState

router = APIRouter(tags=["losses"])


# The state comes from the app, not from a FastAPI dependency, and the name from the request:
# solving dependencies and parameters cost about as much as evaluating a small batch
# (docs/benchmarks.md, HTTP small requests).


@router.post(
    "/loss/{name}",
    operation_id="evaluate_loss",
    response_model=LossResult,
    responses={**LOSS_RESPONSE_BINARY, **problems(404, 413, 415, 422, 503)},
    openapi_extra=loss_body("LossRequest", *LOSS_NAME["parameters"]),
)
async def evaluate_loss(request: Request) -> Response:
    """Evaluate one loss on one batch: per-sample losses, reduced value, optional derivatives."""
    name: str = request.path_params["name"]
    spec = resolve(name)  # an unknown loss is a 404 before the body is read
    note(loss=spec.name)
    state, read, form = _reader(request, spec)
    return await evaluate(request, state, read, partial(codec.evaluate_one, form=form), name)


@router.post(
    "/loss",
    operation_id="evaluate_losses",
    response_model=MultiLossResult,
    responses={**LOSS_RESPONSE_BINARY, **problems(404, 413, 415, 422, 503)},
    openapi_extra=loss_body("MultiLossRequest"),
)
async def evaluate_losses(request: Request) -> Response:
    """Evaluate several losses on one batch; the arrays are decoded once, results in order."""
    state, read, form = _reader(request)
    return await evaluate(request, state, read, partial(codec.evaluate_many, form=form))


Reader = Callable[[Lease], Awaitable[Any]]


def _reader(
    request: Request, spec: LossSpec | None = None
) -> tuple[ServiceState, Reader, Form | None]:
    """The service state (503 until ``spec``'s kernels, or every loss's, are ready), the reader
    of the request's body and its form: a JSON body as bytes, a binary or multipart one into an
    aligned buffer its arrays view."""
    state: ServiceState = request.app.state.lossd
    check_ready(state, spec)
    limits = (state.settings.max_body_bytes, state.settings.body_timeout)
    media = media_type(request, BINARY, MULTIPART)
    length = header_length(request)  # a malformed one is refused whatever the body
    note(encoding="json")  # the codec says "packed" when the body has a packed array
    if media == JSON:
        return state, partial(read_body, request, *limits), None
    form = _form(request, media, length)
    note(encoding=form.encoding)
    aligned_at = form.header_length if isinstance(form, Framed) else 0
    return state, partial(read_body_aligned, request, *limits, aligned_at), form


def _form(request: Request, media: str, length: int | None) -> Form:
    """A binary body's header length (required) or a multipart body's boundary; 422 without."""
    if media == MULTIPART:
        return Multipart(multipart_boundary(request))
    if length is None:
        raise Unprocessable(
            f"an {BINARY} body needs the {HEADER_LENGTH} header: the byte length of the JSON "
            "header at its start",
            errors=[((HEADER_LENGTH,), "missing")],
        )
    return Framed(length)


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


# The catalogue is fixed for the life of the process, and building it (a parameter schema per
# loss) takes tens of milliseconds: it is built once, not on the event loop for every request.
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
