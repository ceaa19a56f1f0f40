"""The explorer page (``/explore``): plain files served from this package, computed in the
browser by lossd's public API (``GET /losses``, ``POST /loss``).

Nothing here runs at start-up beyond adding two routes, and nothing sits in the path of another
route: the page is one route and its files one ``StaticFiles`` mount, both after every API
route and out of the OpenAPI spec, and both absent when ``LOSSD_EXPLORER=false``. With API keys
on, the page and its files (and only they, listed one by one) are public, so that a browser can
open the page and paste a key; every request the page makes to the API carries that key.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PAGE = "/explore"
FILES = f"{PAGE}/static"
# The page talks to this server only, loads nothing from elsewhere, and is framed by nobody.
POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


async def _page(_: Request) -> Response:
    return FileResponse(
        STATIC / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-cache"},
    )


def install(app: FastAPI) -> None:
    """Add the page and its files to ``app`` (call after the API's routes)."""
    app.add_route(PAGE, _page, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(FILES, StaticFiles(directory=STATIC), name="explorer")


def public_paths() -> frozenset[str]:
    """The request paths of the page and of each of its files: what needs no API key."""
    files = (path for path in STATIC.rglob("*") if path.is_file())
    return frozenset({PAGE, *(f"{FILES}/{path.relative_to(STATIC).as_posix()}" for path in files)})
