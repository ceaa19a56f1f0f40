"""create_app(settings): routers, error handlers, start-up warm-up."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from . import __version__, explorer, security, supervision
from .api import health, losses, v2
from .api import metrics as metrics_api
from .api._docs import (
    add_decoded_bodies,
    add_examples,
    describe_losses,
    describe_problems,
    operation_id,
)
from .api.state import ServiceState
from .compute import (
    ComputeExecutor,
    check_threading_layer,
    configure_threading_layer,
    run_serially_here,
)
from .errors import PROBLEM_MEDIA_TYPE, LossdError, Unprocessable, from_validation, problem
from .heap import fix_mmap_threshold
from .logs import RequestLog, configure
from .losses import REGISTRY
from .memory import MemoryAccount, default_budget, resident_bytes
from .metrics import Metrics
from .settings import Settings
from .warmup import guard_caches, kernel_counts, warm_up, warm_up_order

if TYPE_CHECKING:
    from .api.grpc_server import GrpcServer

log = logging.getLogger("lossd")
CLIENT_CLOSED_REQUEST = 499

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


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route of this path answers. Starlette's 405 names only the first route
    that matched the path, and GET and HEAD of /healthz are two routes; FastAPI's included
    routers answer `matches` but do not list their routes, so each method is asked in turn."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


def _install_error_handlers(app: FastAPI) -> None:
    from .logs import mark_logged

    async def lossd_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, LossdError)
        return _problem_response(exc.status, exc.code, exc.detail, exc.errors, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return _problem_response(exc.status_code, code, detail, headers=headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        error = from_validation(Unprocessable, "invalid request", exc.errors())
        return await lossd_error(_, error)

    async def client_gone(_: Request, exc: Exception) -> Response:
        # The client hung up before its body arrived: no bug of lossd's, and nobody reads the
        # answer. 499 is nginx's "client closed request", for the logs and the metrics.
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        # This handler runs outside every middleware: the request id comes from request.state.
        request_id = getattr(request.state, "request_id", None)
        fields = {"request_id": request_id} if request_id else {}
        # the traceback goes to the log, never out; once (uvicorn sees the exception again)
        log.error("unexpected error", exc_info=exc, extra={"fields": fields})
        mark_logged(exc)
        return _problem_response(
            500,
            "internal_error",
            "internal error; this is a bug in lossd",
            headers={"X-Request-ID": request_id} if request_id else None,
        )

    app.add_exception_handler(LossdError, lossd_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(Exception, unexpected_error)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated spec plus the schemas of bodies the routes decode themselves, the losses'
    names and parameters, and an example for every operation."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    add_decoded_bodies(schema)
    describe_problems(schema)
    describe_losses(schema)
    add_examples(schema)
    security.document(schema, keys_required=bool(app.state.lossd.settings.api_keys))
    app.openapi_schema = schema
    return schema


def _stop_if_failed(task: asyncio.Task[None]) -> None:
    """A warm-up that raised would leave the process answering 503 not_ready for ever: log why
    and exit, so that a supervisor sees the failure and restarts or reports it."""
    if task.cancelled() or task.exception() is None:
        return
    log.critical("warm-up failed; exiting", exc_info=task.exception())
    logging.shutdown()
    os._exit(3)


async def _warm_up_first(state: ServiceState) -> None:
    """The first loss's kernels (and the codecs'), on a compute thread and on the event loop: a
    thread-unsafe threading layer stops the start-up here, and that loss is served from now."""
    first = warm_up_order()[0]
    await state.compute.run(warm_up, (first,), (0, len(REGISTRY)))
    state.threading_layer = check_threading_layer()
    run_serially_here()  # the small batches evaluated on the event loop
    warm_up((first,))
    state.warm.add(first.name)


async def _finish_warm_up(state: ServiceState, show_budget: Callable[[int], None]) -> None:
    """Every other loss's kernels, one loss at a time, so that requests for the losses already
    warm take the compute threads between them; each is served as soon as its own are."""
    await state.compute.run(losses.build_catalogue)  # GET /losses: built once, not on the loop
    order = warm_up_order()
    for done, spec in enumerate(order[1:], 1):
        await state.compute.run(warm_up, (spec,), (done, len(order)), False)
        # Once more on the event loop, which evaluates small bodies itself: the kernels are
        # loaded by now (milliseconds), and its first small request finds this thread's numba
        # state warm.
        warm_up((spec,), codecs=False)
        state.warm.add(spec.name)
    state.kernels = kernels = kernel_counts()
    _follow_the_process(state, show_budget)
    state.ready = True
    log.info(
        "ready: %d losses, threading layer %s, %d kernels loaded from cache, %d compiled",
        len(REGISTRY),
        state.threading_layer,
        kernels.cached,
        kernels.compiled,
    )


def _follow_the_process(state: ServiceState, show_budget: Callable[[int], None]) -> None:
    """Without LOSSD_MAX_PROCESS_BYTES the budget assumed the process holds BASE_BYTES (its size
    when its kernels load from the cache); one that compiled them holds several times that
    (LLVM keeps what it used: 1.41 GiB measured), so once ready the default budget is made again
    from the process's own resident size and never grows past the first one."""
    settings = state.settings
    if settings.max_process_bytes is not None:
        return
    resident = resident_bytes()
    budget = default_budget(settings.workers, base=resident)
    if budget < state.memory.budget:
        log.info(
            "memory budget lowered from %d to %d bytes: the process holds %d bytes once ready",
            state.memory.budget,
            budget,
            resident,
        )
        state.memory.budget = budget
        show_budget(budget)


async def _start_grpc(state: ServiceState, metrics: Metrics) -> GrpcServer | None:
    """The gRPC Open Inference Protocol when LOSSD_GRPC_PORT is set (imported only then)."""
    if state.settings.grpc_port is None:
        return None
    from .api.grpc_server import GrpcServer

    server = GrpcServer(state, metrics)
    await server.start()
    return server


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the lossd application from ``settings`` (read from the environment when omitted)."""
    settings = settings if settings is not None else Settings()
    configure(settings.log_level, settings.log_format)
    metrics = Metrics()
    configure_threading_layer()
    fix_mmap_threshold()  # a long run's RSS stays flat (service/heap.py)
    state = ServiceState(
        settings,
        ComputeExecutor(settings.compute_threads, settings.queue_depth),
        MemoryAccount(settings.process_bytes(), settings.memory_wait, metrics.memory_reserved.set),
    )
    metrics.memory_budget.set(state.memory.budget)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # A worker of uvicorn's supervisor goes when the supervisor does, SIGKILL included (the
        # port is free for a restart): at once while it starts, as on SIGTERM once it serves.
        serving = supervision.exit_with_parent() if settings.workers > 1 else None
        guard_caches()  # a failing kernel cache costs compilations, never the start
        log.info(
            "start-up: loading %d losses' kernels from numba's cache, compiling those it lacks "
            "(a cold cache takes minutes; each loss compiled is logged)",
            len(REGISTRY),
        )
        await _warm_up_first(state)
        task = asyncio.create_task(_finish_warm_up(state, metrics.memory_budget.set))
        task.add_done_callback(_stop_if_failed)
        if settings.workers > 1:
            # One of several workers, maybe the replacement of one that died: it takes
            # connections only once it can answer them (uvicorn accepts after the start-up),
            # and its siblings serve meanwhile, where it would answer 503 not_ready.
            await task
        grpc_server = await _start_grpc(state, metrics)
        if serving is not None:
            serving.set()
        yield
        if grpc_server is not None:  # after uvicorn's drain: calls in flight get their grace
            await grpc_server.stop()
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        state.compute.shutdown()
        metrics.close()

    # FastAPIOffline serves Swagger UI's assets from the package (/docs/static), never a CDN.
    app = FastAPIOffline(
        title="lossd",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        static_url="/docs/static",
        generate_unique_id_function=operation_id,
    )
    app.state.lossd = state
    # API keys and CORS; the request id's middleware after. With keys, the explorer's files are
    # public (a browser opens the page before its user pastes a key into it).
    public = explorer.public_paths() if settings.explorer and settings.api_keys else frozenset()
    security.install(app, settings, public)
    app.include_router(losses.router)
    app.include_router(health.router)
    app.include_router(metrics_api.router)
    app.include_router(v2.router)
    if settings.explorer:
        explorer.install(app)  # last: the API's routes are matched before the page's
    _install_error_handlers(app)
    v2.answer_errors_as_protocol(app)  # after the handlers it wraps
    app.state.metrics = metrics
    # Added last, so outermost of the middleware: every response, a 401 or a CORS preflight
    # included, carries the request id and is logged and counted.
    app.add_middleware(RequestLog, metrics=metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn (``--factory``): settings from the environment at call time."""
    return create_app(Settings())
