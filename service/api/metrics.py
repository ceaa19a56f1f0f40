"""Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from ..metrics import Metrics

router = APIRouter(tags=["observability"])
_TEXT = {
    "description": "Prometheus text format (OpenMetrics when the scraper's Accept asks for it)",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}


@router.get(
    "/metrics", operation_id="metrics", response_class=PlainTextResponse, responses={200: _TEXT}
)
def metrics(request: Request) -> Response:
    """Requests by loss, status and encoding; latency and kernel-time histograms; elements."""
    # A plain function: FastAPI runs it on a thread, so reading the workers' files in
    # multiprocess mode never blocks the event loop.
    registry: Metrics = request.app.state.metrics
    body, content_type = registry.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
