"""The Open Inference Protocol v2 over gRPC, on ``LOSSD_GRPC_PORT`` beside the HTTP server.

A ``grpc.aio`` server in the same process and event loop as uvicorn, started by the app's
lifespan (``create_app``) once the first loss is served and stopped gracefully at shutdown. It
answers ``inference.GRPCInferenceService`` as ``tritonclient.grpc`` calls it (``ServerLive``,
``ServerReady``, ``ModelReady``, ``ServerMetadata``, ``ModelMetadata``, ``ModelInfer``, and
Triton's ``ModelConfig``, ``RepositoryIndex``, ``ModelStatistics``; the rest are UNIMPLEMENTED)
and the standard ``grpc.health.v1.Health/Check``.

Everything comes from what REST answers: the documents of ``oip`` and ``triton``, ``ModelInfer``
through ``oip_grpc`` (the REST codec's decoding, the same core) with the same memory account,
compute executor, readiness and limits (``LOSSD_MAX_BODY_BYTES`` is the largest message taken,
``LOSSD_MAX_CONNECTIONS`` the calls in flight). lossd's errors keep their detail and map to gRPC
status codes (``STATUS``); a call is logged and counted in the metrics as an HTTP request is,
under its method's path. With ``LOSSD_API_KEYS`` every method but the health ones needs
``authorization: Bearer <key>`` or ``x-api-key: <key>`` metadata.

Several workers (``LOSSD_WORKERS``) each run one, bound to the same port with SO_REUSEPORT: the
kernel spreads connections over them, and a call goes to the worker its connection went to. One
worker binds without it, so that a port another process holds is an error at start, not a
silently shared port.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from typing import Any

import grpc
from google.protobuf import json_format

from ..codecs import oip, oip_grpc, triton
from ..errors import LossdError, NotFound, NotReady, RequestTimeout, Unauthorized, Unprocessable
from ..logs import finish, mark_logged, request_id
from ..memory import Lease
from ..metrics import CURRENT, Metrics, Observation, observe
from ..protos import lossd_inference_pb2 as pb
from ..security import KeyRing
from ..settings import DRAIN_SECONDS
from ._wire import check_ready, run_codec
from .state import ServiceState

log = logging.getLogger("lossd")

SERVICE = "inference.GRPCInferenceService"
HEALTH = "grpc.health.v1.Health"
# lossd's statuses as gRPC codes (every one its errors have, those of HTTP alone included); 503 is
# RESOURCE_EXHAUSTED (overloaded) unless it is not_ready, which is UNAVAILABLE (``status_code``).
# Anything else is a bug: INTERNAL.
STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    431: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
CLIENT_CLOSED_REQUEST = 499
# How long calls in flight may take to finish once the server stops (uvicorn's drain, too).
GRACE_SECONDS = float(DRAIN_SECONDS)


@dataclass(frozen=True)
class Call:
    """A call as its method's behaviour sees it: grpc's context, and the call's lease in the
    memory account (holding its message; closed when the call ends)."""

    context: Any
    lease: Lease


Behavior = Callable[[Any, Call], Awaitable[Any]]


def status_code(error: LossdError) -> grpc.StatusCode:
    """The gRPC status of one of lossd's errors."""
    if isinstance(error, NotReady):
        return grpc.StatusCode.UNAVAILABLE
    return STATUS.get(error.status, grpc.StatusCode.INTERNAL)


def address(host: str, port: int) -> str:
    """``host:port`` as gRPC binds it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class GrpcServer:
    """The gRPC server of one worker process."""

    def __init__(self, state: ServiceState, metrics: Metrics) -> None:
        self.state = state
        self.metrics = metrics
        settings = state.settings
        self.keys = KeyRing(settings.api_keys) if settings.api_keys else None
        self.server: Any = None
        self.port: int | None = None

    def handlers(self) -> list[Any]:
        unary = self._unary
        inference = {
            "ServerLive": unary(SERVICE, "ServerLive", pb.ServerLiveRequest, self.server_live),
            "ServerReady": unary(SERVICE, "ServerReady", pb.ServerReadyRequest, self.server_ready),
            "ModelReady": unary(SERVICE, "ModelReady", pb.ModelReadyRequest, self.model_ready),
            "ServerMetadata": unary(
                SERVICE, "ServerMetadata", pb.ServerMetadataRequest, self.server_metadata
            ),
            "ModelMetadata": unary(
                SERVICE, "ModelMetadata", pb.ModelMetadataRequest, self.model_metadata
            ),
            "ModelInfer": unary(SERVICE, "ModelInfer", None, self.model_infer),
            "ModelConfig": unary(SERVICE, "ModelConfig", pb.ModelConfigRequest, self.model_config),
            "ModelStatistics": unary(
                SERVICE, "ModelStatistics", pb.ModelStatisticsRequest, self.model_statistics
            ),
            "RepositoryIndex": unary(
                SERVICE, "RepositoryIndex", pb.RepositoryIndexRequest, self.repository_index
            ),
        }
        health = {"Check": unary(HEALTH, "Check", pb.HealthCheckRequest, self.health_check)}
        return [
            grpc.method_handlers_generic_handler(SERVICE, inference),
            grpc.method_handlers_generic_handler(HEALTH, health),
        ]

    async def start(self) -> int:
        """Bind ``LOSSD_HOST:LOSSD_GRPC_PORT`` and serve; the port bound (for port 0). Raises
        when the port cannot be bound: the start-up fails, as it does for the HTTP port."""
        settings = self.state.settings
        assert settings.grpc_port is not None
        largest = min(settings.max_body_bytes, oip_grpc.MAX_MESSAGE_BYTES)
        self.server = grpc.aio.server(
            handlers=self.handlers(),
            options=[
                ("grpc.max_receive_message_length", largest),
                ("grpc.max_send_message_length", oip_grpc.MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
            ],
            maximum_concurrent_rpcs=settings.max_connections,
        )
        where = address(settings.host, settings.grpc_port)
        try:
            self.port = self.server.add_insecure_port(where)
        except RuntimeError as exc:
            raise RuntimeError(
                f"the gRPC server cannot bind {where} (LOSSD_GRPC_PORT): {exc}"
            ) from None
        await self.server.start()
        log.info("gRPC Open Inference Protocol on %s", address(settings.host, self.port))
        return self.port

    async def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Refuse new calls, and give those in flight up to ``grace`` seconds."""
        if self.server is not None:
            await self.server.stop(grace)
            self.server = None

    # Every call: key check, its message read within the memory account, errors as statuses,
    # the log line and the metrics

    def _unary(self, service: str, method: str, kind: Any, behavior: Behavior) -> Any:
        """The handler of one unary method: ``behavior(request, call)`` on the parsed request
        (the raw bytes when ``kind`` is None), its answer serialized (or already bytes).

        Served as a client-streaming method (the same on the wire, one message either way), so
        that lossd reads the message itself: until it has arrived it is held in the memory
        account at the largest size allowed, as an HTTP body's declared length is, and it must
        arrive within LOSSD_BODY_TIMEOUT; then at its own size until the call ends. Probes
        reserve nothing (their messages are empty), so that they answer whatever the load.
        """
        path = f"/{service}/{method}"
        probe = service == HEALTH or method in ("ServerLive", "ServerReady")  # no key, no log
        settings = self.state.settings
        largest = min(settings.max_body_bytes, oip_grpc.MAX_MESSAGE_BYTES)

        async def handle(_: Any, context: Any) -> bytes:
            started = perf_counter()
            metadata = [
                (key.encode("latin-1"), value if isinstance(value, bytes) else value.encode())
                for key, value in context.invocation_metadata() or ()
            ]
            obs = Observation(request_id(metadata), self.metrics)
            echo = (("x-request-id", obs.request_id),)
            status, grpc_status, size_in, size_out = 200, grpc.StatusCode.OK, 0, 0
            lease = self.state.memory.lease()
            context.add_done_callback(lambda _: lease.close())
            token = CURRENT.set(obs)
            try:
                if self.keys is not None and not probe:
                    refusal = self.keys.refusal(metadata)
                    if refusal is not None:
                        raise Unauthorized(refusal)
                if not probe:
                    await lease.hold_async(largest, "its message, until it has arrived")
                data = await _read(context, settings.body_timeout)
                size_in = len(data)
                lease.keep(0 if probe else size_in)
                request = data if kind is None else oip_grpc.parse(kind, data)
                response = await behavior(request, Call(context, lease))
                answer = response if isinstance(response, bytes) else response.SerializeToString()
                size_out = len(answer)
                context.set_trailing_metadata(echo)
                return answer
            except LossdError as error:
                if context.done():  # the call is over (cancelled, past its deadline): no answer
                    status, grpc_status = CLIENT_CLOSED_REQUEST, grpc.StatusCode.CANCELLED
                    return b""
                status, grpc_status = error.status, status_code(error)
                trailing = echo + tuple((k.lower(), v) for k, v in error.headers.items())
                await context.abort(grpc_status, error.detail, trailing)
                raise  # abort raises; this is for the type checker
            except asyncio.CancelledError:
                status, grpc_status = CLIENT_CLOSED_REQUEST, grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                status, grpc_status = 500, grpc.StatusCode.INTERNAL
                fields = {"request_id": obs.request_id, "path": path}
                log.error("unexpected error", exc_info=exc, extra={"fields": fields})
                mark_logged(exc)
                detail = "internal error; this is a bug in lossd"
                await context.abort(grpc_status, detail, echo)
                raise
            finally:
                CURRENT.reset(token)
                seconds = perf_counter() - started
                finish(
                    obs, "gRPC", path, path, status, seconds, size_in, size_out,
                    quiet=probe, grpc_status=grpc_status.name,
                )  # fmt: skip

        return grpc.stream_unary_rpc_method_handler(handle)

    # inference.GRPCInferenceService

    async def server_live(self, _: Any, __: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, _: Any, __: Any) -> Any:
        """Ready once every loss is (as /v2/health/ready); not ready is an answer, not an
        error, as in Triton."""
        return pb.ServerReadyResponse(ready=self.state.ready)

    async def model_ready(self, request: Any, _: Any) -> Any:
        """Whether the loss is served yet; an unknown model or version is NOT_FOUND."""
        spec = oip.model(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=self.state.ready or spec.name in self.state.warm)

    async def server_metadata(self, _: Any, __: Any) -> Any:
        return json_format.ParseDict(oip.server_metadata(), pb.ServerMetadataResponse())

    async def model_metadata(self, request: Any, _: Any) -> Any:
        """GET /v2/models/{name}'s document, in the protocol's fields (lossd's own, such as
        every datatype a tensor takes, are in ``ModelConfig``'s parameters)."""
        spec = oip.model(request.name, request.version or None)
        doc = oip.model_metadata(spec)
        return json_format.ParseDict(doc, pb.ModelMetadataResponse(), ignore_unknown_fields=True)

    async def model_infer(self, data: bytes, call: Call) -> bytes:
        """Evaluate the loss: the message held in the memory account until the answer is sent,
        the codec run as REST runs it (``run_codec``), stopped when the call ends."""
        state, lease = self.state, call.lease
        ready = partial(check_ready, state)
        watch = partial(_until_done, call.context)
        answer, results = await run_codec(state, watch, oip_grpc.infer, data, ready, lease=lease)
        observe(results)
        lease.keep(len(answer))
        return answer

    async def model_config(self, request: Any, _: Any) -> Any:
        spec = oip.model(request.name, request.version or None)
        config = json_format.ParseDict(
            triton.model_config(spec), pb.ModelConfig(), ignore_unknown_fields=True
        )
        return pb.ModelConfigResponse(config=config)

    async def model_statistics(self, request: Any, _: Any) -> Any:
        specs = () if not request.name else (oip.model(request.name, request.version or None),)
        doc = await asyncio.to_thread(triton.statistics, self.metrics, *specs)
        return json_format.ParseDict(doc, pb.ModelStatisticsResponse())

    async def repository_index(self, request: Any, _: Any) -> Any:
        if request.repository_name:
            raise NotFound(
                f"no repository {request.repository_name[:64]!r}: lossd has one, unnamed; "
                "send an empty repository_name"
            )
        models = triton.repository_index(self.state.warm, request.ready)
        return json_format.ParseDict({"models": models}, pb.RepositoryIndexResponse())

    # grpc.health.v1.Health

    async def health_check(self, request: Any, _: Any) -> Any:
        """SERVING once every loss is ready, NOT_SERVING before; for the server ("") and for
        the inference service; any other service is NOT_FOUND, as the health protocol says."""
        if request.service not in ("", SERVICE):
            raise NotFound(f"no service {request.service[:64]!r}: lossd serves {SERVICE}")
        status = (
            pb.HealthCheckResponse.SERVING
            if self.state.ready
            else (pb.HealthCheckResponse.NOT_SERVING)
        )
        return pb.HealthCheckResponse(status=status)


async def _read(context: Any, timeout: float) -> bytes:
    """The call's request message, as bytes: 408 (DEADLINE_EXCEEDED) when it has not arrived
    within ``timeout`` seconds (LOSSD_BODY_TIMEOUT), 422 when the client sent none."""
    try:
        async with asyncio.timeout(timeout):
            data = await context.read()
    except TimeoutError:
        raise RequestTimeout(
            f"the request message did not arrive within {timeout:g} s (LOSSD_BODY_TIMEOUT)"
        ) from None
    if not isinstance(data, bytes):  # grpc.aio.EOF
        raise Unprocessable("the call has no request message")
    return data


async def _until_done(context: Any, cancel: threading.Event) -> None:
    """Set ``cancel`` once the call is over before its answer (the client cancelled, its
    deadline passed, or the server stopped): the evaluation stops at its next block."""
    loop = asyncio.get_running_loop()
    over = loop.create_future()

    def settle() -> None:
        if not over.done():
            over.set_result(None)

    def done(_: Any) -> None:
        cancel.set()
        loop.call_soon_threadsafe(settle)

    context.add_done_callback(done)
    await over
