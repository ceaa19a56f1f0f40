"""What the routes share: settings, the compute executor, the memory account and the readiness
flag."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from ..compute import ComputeExecutor
from ..memory import MemoryAccount
from ..settings import Settings
from ..warmup import KernelCounts


@dataclass
class ServiceState:
    settings: Settings
    compute: ComputeExecutor
    memory: MemoryAccount
    ready: bool = False  # every loss's kernels are warm
    warm: set[str] = field(default_factory=set)  # the losses whose kernels are warm so far
    threading_layer: str = field(default="")
    kernels: KernelCounts | None = None  # how the warm-up got the kernels, once ready


async def service_state(request: Request) -> ServiceState:
    """The state ``create_app`` attached to the app (async: no thread-pool hop per request)."""
    state: ServiceState = request.app.state.lossd
    return state
