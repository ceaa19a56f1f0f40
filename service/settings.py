"""Configuration: environment variables with the prefix ``LOSSD_``; command-line flags win."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# How long SIGTERM lets the requests in flight finish before the process exits (uvicorn's
# graceful shutdown; the gRPC server's grace after it): what a Kubernetes pod's
# terminationGracePeriodSeconds must leave room for after its preStop (deploy/k8s).
DRAIN_SECONDS = 30

# A key is compared with what a header carries, which HTTP strips of surrounding blanks.
APIKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Settings(BaseSettings):
    """Every setting of the service; ``create_app(settings)`` takes one, nothing reads the env."""

    model_config = SettingsConfigDict(env_prefix="LOSSD_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # The gRPC Open Inference Protocol (service/api/grpc_server.py) on this port of ``host``, in
    # every worker's process and event loop; off when unset (or empty)
    grpc_port: int | None = Field(None, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    compute_threads: int = Field(default_factory=available_cpus, ge=1)
    max_body_bytes: int = Field(268_435_456, ge=1)
    max_elements: int = Field(33_554_432, ge=1)
    # what one request may allocate, estimated from its declared shapes (core.check_memory_budget)
    max_request_bytes: int = Field(4 * 2**30, ge=1)
    # what all requests together may make the process hold (service/memory.py); None: a share
    # of the cgroup's memory limit, else of the machine's RAM (memory.default_budget)
    max_process_bytes: int | None = Field(None, ge=1)
    # how long a request waits for memory held by others before 503 overloaded
    memory_wait: float = Field(1.0, ge=0)
    # requests waiting for or in compute: a bound on waiting, no longer on memory (queued bodies
    # are in the memory account); 64, as it was, is filled by 64 clients with nothing to spare
    queue_depth: int = Field(256, ge=1)
    body_timeout: float = Field(60.0, gt=0)
    api_keys: list[APIKey] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["json", "text"] = "json"
    # Connection bounds (service/server.py), per worker process. A request's line and headers
    # must arrive within header_timeout seconds of the connection opening or of their first byte
    # (408 request_timeout, then close): a client on a slow mobile link sends its head in one
    # round trip, a slowloris trickles it for ever.
    header_timeout: float = Field(10.0, gt=0)
    # Idle seconds between requests on a kept-alive connection (uvicorn's timeout_keep_alive).
    # Behind a load balancer, make it longer than the balancer's own idle timeout.
    keep_alive_timeout: int = Field(5, ge=1)
    # The request line and headers, in bytes and in fields (431 headers_too_large, then close):
    # nginx allows 32 KiB of headers by default, Apache 100 fields.
    max_header_bytes: int = Field(32_768, ge=256)
    max_headers: int = Field(100, ge=1)
    # Open connections per worker; one more gets 503 too_many_connections and is closed.
    # Keep it below the process's open-file limit (ulimit -n).
    max_connections: int = Field(1000, ge=1)
    # Requests read ahead of the one being answered on a pipelining connection; beyond them the
    # socket is not read until a response is done.
    max_pipelined: int = Field(4, ge=1)
    # Seconds a response may wait for a client that does not read; then the connection is cut.
    send_timeout: float = Field(30.0, gt=0)
    # The explorer page at /explore (service/explorer): plain files, added after every API route;
    # false leaves it out altogether (404), e.g. where nothing but the API should be reachable.
    explorer: bool = True

    @field_validator("grpc_port", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def process_bytes(self) -> int:
        """The process-wide memory budget in force (``max_process_bytes`` or its default)."""
        if self.max_process_bytes is not None:
            return self.max_process_bytes
        from .memory import default_budget

        return default_budget(self.workers)
