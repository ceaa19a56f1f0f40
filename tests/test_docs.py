"""Offline /docs: Swagger UI's assets are served by lossd itself, and the page renders the spec
in a real browser (Debian's headless Chromium) that can reach nothing but the server."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from tests.support.servers import Server

CHROMIUM = "/usr/bin/chromium"
SETUP_HINT = "run the test set-up first: `make test` installs Debian's chromium"


class _Assets(HTMLParser):
    """The URLs a page loads: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


def _page_requests(net_log: Path, origin: str) -> list[str]:
    """The URLs the page (not Chromium's own background services) asked for, from a net log."""
    text = net_log.read_text()
    try:
        log: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:  # a log cut short at exit lacks its closing brackets
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    site = f"{urlsplit(origin).scheme}://{urlsplit(origin).hostname}"
    return [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start_job
        and "url" in event.get("params", {})
        # the page's requests are keyed by its top-level site, whatever host they go to
        and event["params"].get("network_isolation_key", "").startswith(site)
    ]


def test_docs_load_every_asset_from_the_server(client: httpx.Client, server: Server) -> None:
    """/docs names no absolute URL, and every script, stylesheet and icon it loads is served."""
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "://" not in page  # no CDN, no absolute URL of any host
    parser = _Assets()
    parser.feed(page)
    kinds = {url.rsplit(".", 1)[-1] for url in parser.urls}
    assert {"js", "css"} <= kinds, parser.urls
    for url in parser.urls:
        absolute = urljoin(f"{server.url}/docs", url)
        assert urlsplit(absolute).netloc == urlsplit(server.url).netloc, url
        asset = client.get(absolute)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    assert "'/openapi.json'" in page  # the spec it renders, same origin
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")


def test_docs_render_the_spec_in_a_browser_offline(server: Server, tmp_path: Path) -> None:
    """Headless Chromium, able to resolve no host but 127.0.0.1, renders every path of the 3.1
    spec as a Swagger UI operation, and the page requests nothing from another origin."""
    assert shutil.which(CHROMIUM), SETUP_HINT
    net_log = tmp_path / "net-log.json"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--log-net-log={net_log}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"{server.url}/docs",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    dom = done.stdout
    spec = httpx.get(f"{server.url}/openapi.json", timeout=60).json()
    assert '<pre class="version">OAS 3.1</pre>' in dom, dom[-3000:]
    rendered = {p for p in spec["paths"] if f'class="opblock-summary-path" data-path="{p}"' in dom}
    assert rendered == set(spec["paths"])
    assert "/loss/{name}" in rendered
    assert dom.count('class="opblock ') >= len(spec["paths"])
    assert "Failed to load API definition" not in dom
    requests = _page_requests(net_log, server.url)
    assert f"{server.url}/docs" in requests
    assert f"{server.url}/openapi.json" in requests
    assert any(url.endswith(".js") for url in requests)
    assert [url for url in requests if not url.startswith(f"{server.url}/")] == []
