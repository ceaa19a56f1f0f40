"""create_app(settings): routers, error handlers, start-up warm-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, engine
from .api import health, losses
from .api.state import ServiceState
from .compute import ComputeExecutor, check_threading_layer, configure_threading_layer
from .errors import PROBLEM_MEDIA_TYPE, LossdError, problem
from .losses import REGISTRY
from .schemas import LossRequest, MultiLossRequest, Problem
from .settings import Settings

log = logging.getLogger("lossd")

DESCRIPTION = (
    "Loss functions as a service: per-sample losses, the reduced loss, gradients and diagonal "
    "Hessians, computed by numba kernels. Errors are application/problem+json (RFC 9457)."
)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def _problem_response(
    status: int,
    code: str,
    detail: str,
    errors: Any = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = orjson.dumps(problem(status, code, detail, errors))
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def lossd_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, LossdError)
        return _problem_response(exc.status, exc.code, exc.detail, exc.errors, exc.headers)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return _problem_response(exc.status_code, code, detail, headers=exc.headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [(err.get("loc", ()), str(err.get("msg", "invalid"))) for err in exc.errors()]
        return _problem_response(422, "invalid_request", "invalid request", errors)

    async def unexpected_error(_: Request, exc: Exception) -> Response:
        log.error("unexpected error", exc_info=exc)  # the traceback goes to the log, never out
        return _problem_response(500, "internal_error", "internal error; this is a bug in lossd")

    app.add_exception_handler(LossdError, lossd_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated spec plus the schemas of bodies the routes decode themselves."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    _, defs = models_json_schema(
        [(LossRequest, "validation"), (MultiLossRequest, "validation"), (Problem, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the lossd application from ``settings`` (read from the environment when omitted)."""
    settings = settings if settings is not None else Settings()
    configure_threading_layer()
    state = ServiceState(settings, ComputeExecutor(settings.compute_threads, settings.queue_depth))

    async def finish_warm_up() -> None:
        await state.compute.run(engine.warm_up, REGISTRY[1:])
        state.ready = True
        log.info("ready: %d losses, threading layer %s", len(REGISTRY), state.threading_layer)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # One kernel first, so that a thread-unsafe threading layer stops the start-up here.
        await state.compute.run(engine.warm_up, REGISTRY[:1])
        state.threading_layer = check_threading_layer()
        task = asyncio.create_task(finish_warm_up())
        yield
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        state.compute.shutdown()

    app = FastAPI(
        title="lossd",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.lossd = state
    app.include_router(losses.router)
    app.include_router(health.router)
    _install_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn (``--factory``): settings from the environment at call time."""
    return create_app(Settings())
