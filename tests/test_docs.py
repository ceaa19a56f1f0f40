"""Offline /docs: Swagger UI's assets are served by lossd itself, the page renders the spec in a
real browser (Debian's headless Chromium) that can reach nothing but the server, and its "Try it
out" sends example requests the server accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS, SETUP_HINT, browser
from tests.support.servers import ROOT, Server


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
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
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


# --- "Try it out" -------------------------------------------------------------------------------

# Run in the page: open an operation, press "Try it out", and for each (name, example) choose
# that loss in the path parameter's list and that example in the body's, press "Execute", and
# read what Swagger UI shows: the status, the URL, the body it sent, the answer. A null keeps
# what Swagger UI chose itself. The selects are React's: a value is set as a user's change is.
TRY_IT_OUT = r"""
async (operation, choices) => {
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const wait = async (find, what) => {
    for (let k = 0; k < 300; k++) {
      const found = find();
      if (found) return found;
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  const choose = (select, value) => {
    if (![...select.options].some((option) => option.value === value)) {
      throw new Error(`no option ${value}`);
    }
    Object.getOwnPropertyDescriptor(HTMLSelectElement.prototype, "value").set.call(select, value);
    select.dispatchEvent(new Event("change", { bubbles: true }));
  };
  const op = await wait(() => document.getElementById(operation), operation);
  if (!op.classList.contains("is-open")) op.querySelector(".opblock-summary-control").click();
  await wait(() => op.classList.contains("is-open"), "the operation to open");
  (await wait(() => op.querySelector("button.try-out__btn"), "Try it out")).click();
  const shown = [];
  for (const [name, example] of choices) {
    if (name !== null) {
      const param = 'tr[data-param-name="name"] select:not(.examples-select-element)';
      choose(await wait(() => op.querySelector(param), "the name's list"), name);
    }
    if (example !== null) {
      const examples = ".opblock-section-request-body .examples-select-element";
      choose(await wait(() => op.querySelector(examples), "the examples' list"), example);
    }
    await sleep(200);
    const clear = op.querySelector("button.btn-clear");
    if (clear) {
      clear.click();
      await wait(() => !op.querySelector(".live-responses-table"), "the last answer to go");
    }
    (await wait(() => op.querySelector("button.execute"), "Execute")).click();
    const answered = ".live-responses-table .response .response-col_status";
    const status = await wait(() => op.querySelector(answered), "the answer");
    shown.push({
      status: Number(status.textContent.trim()),
      url: op.querySelector(".request-url pre")?.textContent ?? "",
      sent: op.querySelector("textarea.body-param__text")?.value ?? "",
      answer: op.querySelector(".live-responses-table .response-col_description pre")?.textContent ?? "",
    });
  }
  return JSON.stringify(shown);
}
"""


def _json_examples(path: str) -> dict[str, Any]:
    """The named JSON body examples of POST ``path`` in the committed spec."""
    spec = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    content = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return {name: example["value"] for name, example in content["examples"].items()}


def test_try_it_out_sends_examples_the_server_accepts(server: Server, tmp_path: Path) -> None:
    """In Swagger UI, "Try it out" then "Execute" on POST /loss/{name} sends the first example
    to the loss the path parameter shows, and the server answers 200; so does each named
    example with its loss chosen in the list, and POST /loss's example. What the browser sent
    is the example (no `additionalProp1` placeholder)."""
    assert shutil.which(CHROMIUM), SETUP_HINT
    named = _json_examples("/loss/{name}")
    with browser(tmp_path / "profile") as page:
        page.call("Page.navigate", url=f"{server.url}/docs#/losses/evaluate_loss")
        choices = [[None, None], *[[name, name] for name in reversed(named)]]
        shown = page.run(TRY_IT_OUT, "operations-losses-evaluate_loss", choices)
        several = page.run(TRY_IT_OUT, "operations-losses-evaluate_losses", [[None, None]])
    first = next(iter(named))
    expected = [first, *reversed(named)]
    assert len(shown) == len(expected)
    for name, answer in zip(expected, shown, strict=True):
        assert answer["status"] == 200, (name, answer)
        assert answer["url"] == f"{server.url}/loss/{name}", answer
        assert json.loads(answer["sent"]) == named[name]
        assert json.loads(answer["answer"])["loss"] == name
    (multi,) = several
    assert multi["status"] == 200 and multi["url"] == f"{server.url}/loss", multi
    assert json.loads(multi["sent"]) == next(iter(_json_examples("/loss").values()))
    assert "additionalProp" not in json.dumps([*shown, multi])
