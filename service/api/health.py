"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ..errors import NotReady
from ..schemas import Health
from ._docs import problems
from .state import ServiceState, service_state

router = APIRouter(tags=["health"])


# HEAD answers like GET without the body (load balancers probe with it). The same function,
# out of the spec: a second operation would only repeat the first.


@router.get(
    "/healthz", operation_id="healthz", response_model=Health, response_model_exclude_none=True
)
@router.head("/healthz", include_in_schema=False, response_model_exclude_none=True)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", operation_id="readyz", response_model=Health, responses=problems(503))
@router.head("/readyz", include_in_schema=False)
async def readyz(state: Annotated[ServiceState, Depends(service_state)]) -> Health:
    """Readiness: 200 once every kernel is compiled or loaded from cache (counted), 503 before."""
    if not state.ready:
        raise NotReady("kernels are still compiling", headers={"Retry-After": "1"})
    kernels = state.kernels
    if kernels is None:
        return Health(status="ready")
    return Health(
        status="ready", kernels_from_cache=kernels.cached, kernels_compiled=kernels.compiled
    )
