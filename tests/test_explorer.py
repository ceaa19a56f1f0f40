"""The explorer page (/explore, issue 17) in Debian's headless Chromium against a live server:
what it plots is what the API answers, what it shows of the user's files is what the Python
client gets, its curl command and Python snippet reproduce its numbers, and it works with API
keys, at 400 px and from the keyboard. Without a browser: its files are the package's, the
vendored uPlot is the locked version's, and the page is out of the spec and of other routes' way.

``LOSSD_EXPLORER_SCREENSHOTS=docs/explorer`` (``make screenshots``) writes each family's curves,
as the tests draw them, to that directory: the README's pictures.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from lossd_client import Client

from service import explorer
from service.app import create_app
from service.settings import Settings
from tests.support.browser import CHROMIUM, SETUP_HINT, Page, browser
from tests.support.servers import ROOT, Server, http_client, served

STATIC = ROOT / "service" / "explorer" / "static"
VENDOR = STATIC / "vendor"
NPM = ROOT / "explorer"
SCREENSHOTS = os.environ.get("LOSSD_EXPLORER_SCREENSHOTS")
SWEEP_FIELDS = ("target", "row", "index", "from", "to", "points")
KEY = "explorer-key"


# --- without a browser -------------------------------------------------------------------------


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href"}.get(tag)
        self.urls += [v for k, v in attrs if k == wanted and v and not v.startswith("data:")]


def test_the_page_and_its_files_are_served_from_the_package(
    client: httpx.Client, server: Server
) -> None:
    """/explore is HTML naming no other host, under a policy that allows none; every file it
    loads (and every module those import) is served from the package, byte for byte."""
    page = client.get("/explore")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "://" not in page.text
    parser = _Assets()
    parser.feed(page.text)
    assert any(u.endswith("uPlot.iife.min.js") for u in parser.urls), parser.urls
    modules = [p for p in STATIC.glob("*.js")]
    names = {*parser.urls, *(f"explore/static/{p.name}" for p in modules)}
    for name in sorted(names):
        answer = client.get(f"/{name}")
        assert answer.status_code == 200, name
        assert answer.content == (STATIC / name.removeprefix("explore/static/")).read_bytes()
    for module in modules:  # plain ES modules importing their siblings: no build step
        for imported in re.findall(r'from "\./([\w.]+)"', module.read_text()):
            assert (STATIC / imported).is_file(), (module.name, imported)
    assert (
        client.get("/explore/static/vendor/uPlot.iife.min.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert client.get("/explore/static/nothing.js").status_code == 404


def test_the_files_are_small_and_shipped_in_the_package() -> None:
    """A few hundred KB in all, the page's own code a small part of it, and every file under
    static/ covered by pyproject.toml's package-data (the Dockerfile installs the package)."""
    files = [p for p in STATIC.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 300_000
    own = [p for p in files if p.suffix in (".js", ".css", ".html") and VENDOR not in p.parents]
    assert sum(p.stat().st_size for p in own) < 80_000
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["service.explorer"]
    for path in files:
        relative = path.relative_to(STATIC.parent).as_posix()
        assert any(fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns)


def test_the_vendored_uplot_is_the_locked_version() -> None:
    """service/explorer/static/vendor holds uPlot's files exactly as the version pinned in
    explorer/package-lock.json ships them (`make vendor` copies them from its `npm ci`)."""
    locked = json.loads((NPM / "package-lock.json").read_text())["packages"]["node_modules/uplot"]
    declared = json.loads((NPM / "package.json").read_text())["dependencies"]["uplot"]
    assert declared == locked["version"], "pin uplot to one exact version"
    installed = NPM / "node_modules" / "uplot"
    assert installed.is_dir(), "run `make test` first: it runs `npm ci` in explorer/"
    assert json.loads((installed / "package.json").read_text())["version"] == locked["version"]
    copies = {
        "uPlot.iife.min.js": "dist/uPlot.iife.min.js",
        "uPlot.min.css": "dist/uPlot.min.css",
        "uPlot.LICENSE": "LICENSE",
    }
    assert {p.name for p in VENDOR.iterdir()} == set(copies)
    for vendored, shipped in copies.items():
        assert (VENDOR / vendored).read_bytes() == (installed / shipped).read_bytes(), vendored
    assert f"(v{locked['version']})" in (VENDOR / "uPlot.iife.min.js").read_text()[:80]


def test_the_page_is_in_no_other_routes_way() -> None:
    """The page is two routes after every API route, adds no middleware, is out of the spec
    (openapi/openapi.json is unchanged), and is absent with LOSSD_EXPLORER=false."""
    on, off = create_app(Settings()), create_app(Settings(explorer=False))
    paths = [getattr(route, "path", "") for route in on.routes]
    assert paths[-2:] == [explorer.PAGE, explorer.FILES]
    assert paths[:-2] == [getattr(route, "path", "") for route in off.routes]
    assert len(on.user_middleware) == len(off.user_middleware)
    assert not [p for p in on.openapi()["paths"] if p.startswith("/explore")]
    assert on.openapi() == off.openapi()
    gone = _get(off, "/explore")
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"
    assert _get(off, "/explore/static/explorer.js").status_code == 404
    assert _get(on, "/explore").status_code == 200


def _get(app: Any, path: str) -> httpx.Response:
    """GET ``path`` from ``app`` in-process, without its lifespan: routing alone."""

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lossd") as http:
            return await http.get(path)

    return asyncio.run(get())


# --- in the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """The page open in headless Chromium, its console watched from the start."""
    assert shutil.which(CHROMIUM), SETUP_HINT
    with browser(tmp_path_factory.mktemp("chromium") / "profile") as opened:
        opened.watch()
        opened.viewport(1000, 1200)
        opened.navigate(f"{server.url}/explore", "window.explorer && window.explorer.ready")
        opened.evaluate("window.explorer.ready.then(() => window.explorer.idle())")
        yield opened
    assert opened.errors == []


# Choose a family, its axis and losses, reset their parameters and type some as a user does;
# then what is plotted.
CHOOSE = r"""
async (family, axis, losses) => {
  const $ = (id) => document.getElementById(id);
  const set = (element, value) => {
    element.value = value;
    element.dispatchEvent(new Event("input", { bubbles: true }));
    element.dispatchEvent(new Event("change", { bubbles: true }));
  };
  if ($("family").value !== family) set($("family"), family);
  if (axis !== null) set($("axis"), axis);
  for (const box of document.querySelectorAll("#losses input")) {
    if (box.checked !== box.value in losses) box.click();
  }
  for (const [name, params] of Object.entries(losses)) {
    const form = [...document.querySelectorAll("#params fieldset")].find(
      (f) => f.querySelector("legend").textContent === `${name} parameters`);
    form.querySelector("button.reset")?.click();
    for (const [param, text] of Object.entries(params)) set(form.querySelector(`[name="${param}"]`), text);
  }
  await window.explorer.idle();
  const form = Object.fromEntries(["target", "row", "index", "from", "to", "points"].map((id) => [id, $(id).value]));
  return JSON.stringify({
    data: window.explorer.lastData,
    plotted: window.explorer.plotted(),
    error: window.explorer.lastError,
    status: $("status").textContent,
    form,
    snippets: window.explorer.snippets,
    legend: [...document.querySelectorAll("#charts figure:first-child .u-legend .u-series")].map((s) => s.querySelector(".u-label").textContent),
  });
}
"""


def choose(
    page: Page, family: str, losses: dict[str, dict[str, str]], axis: str | None = None
) -> dict[str, Any]:
    shown: dict[str, Any] = page.run(CHOOSE, family, axis, losses)
    return shown


def sweep(family: str, form: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, predictions and targets of the sweep the form describes, built here with numpy."""
    row = [float(v) for v in form["row"].split(",")]
    k, n = int(form["index"]), int(form["points"])
    x = np.linspace(float(form["from"]), float(form["to"]), n)
    rank1 = len(row) == 1 and family != "multiclass"
    targets: np.ndarray
    if family == "multiclass":
        targets = np.full(n, int(form["target"]))
    else:
        target = [float(v) for v in form["target"].split(",")]
        targets = np.full(n, target[0]) if rank1 else np.tile(target, (n, 1))
    shift = targets if rank1 else targets[:, k] if family != "multiclass" else 0.0
    swept = shift + x if family == "regression" else x
    if rank1:
        return x, swept, targets
    predictions = np.tile(row, (n, 1))
    predictions[:, k] = swept
    return x, predictions, targets


def column(array: list[Any], k: int, rank1: bool) -> list[Any]:
    return array if rank1 else [row[k] for row in array]


FAMILIES = [
    pytest.param(
        "regression", None, {"mse": {}, "huber": {"delta": "0.5"}, "log_cosh": {}},
        marks=pytest.mark.loss("mse", "huber", "log_cosh"), id="regression",
    ),
    pytest.param(
        "binary", "logit", {"binary_cross_entropy": {}, "binary_focal": {}, "hinge": {}},
        marks=pytest.mark.loss("binary_cross_entropy", "binary_focal", "hinge"), id="binary",
    ),
    pytest.param(
        "multiclass", None,
        {"cross_entropy": {"label_smoothing": "0.1"}, "focal": {}, "multi_margin": {}},
        marks=pytest.mark.loss("cross_entropy", "focal", "multi_margin"), id="multiclass",
    ),
    pytest.param(
        "distribution", None, {"kl_divergence": {}, "js_divergence": {}},
        marks=pytest.mark.loss("kl_divergence", "js_divergence"), id="distribution",
    ),
    pytest.param(
        "overlap", None, {"dice": {"smooth": "0.5"}, "tversky": {"alpha": "0.7", "beta": "0.3"}},
        marks=pytest.mark.loss("dice", "tversky"), id="overlap",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("family", "axis", "losses"), FAMILIES)
def test_curves_plot_what_the_api_answers(
    page: Page,
    client: httpx.Client,
    server: Server,
    family: str,
    axis: str | None,
    losses: dict[str, dict[str, str]],
) -> None:
    """Several losses of one family overlaid: the plotted x is np.linspace of the sweep, and
    each loss's plotted value, gradient and Hessian (of the swept element) are the per-sample
    losses, gradient and Hessian POST /loss/{name} answers for that sweep built here, with the
    parameters typed (and from_logits as the axis says). The legend names every loss."""
    shown = choose(page, family, losses, axis)
    assert shown["error"] is None, shown["error"]
    data, plotted = shown["data"], shown["plotted"]
    x, predictions, targets = sweep(family, shown["form"])
    assert [loss["name"] for loss in data["losses"]] == list(losses)
    labels = []  # each loss's name, with the parameters that are not its defaults
    for loss in data["losses"]:
        named = ", ".join(f"{k}={json.dumps(v)}" for k, v in loss["params"].items())
        labels.append(f"{loss['name']} ({named})" if named else loss["name"])
    assert shown["legend"][1:] == labels
    for chart in plotted:
        assert chart[0] == x.tolist()
    logits = {"logit": True, "probability": False}.get(data["axis"])
    for i, (name, typed) in enumerate(losses.items()):
        params = data["losses"][i]["params"]
        assert {k: params[k] for k in typed} == {k: float(v) for k, v in typed.items()}
        schema = client.get(f"/losses/{name}").json()["params"]["properties"]
        if "from_logits" in schema and logits is not None:
            assert params.get("from_logits", schema["from_logits"]["default"]) is logits
        body = {
            "predictions": predictions.tolist(),
            "targets": targets.tolist(),
            "params": params,
            "reduction": "sum",
            "gradient": True,
            "hessian": True,
        }
        answer = client.post(f"/loss/{name}", json=body)
        assert answer.status_code == 200, answer.text
        expected = answer.json()
        k, rank1 = data["k"], data["rank1"]
        assert plotted[0][i + 1] == expected["per_sample"], name
        assert plotted[1][i + 1] == column(expected["gradient"], k, rank1), name
        assert plotted[2][i + 1] == column(expected["hessian"], k, rank1), name
    assert page.errors == []
    if SCREENSHOTS:  # the legends at 70% of the sweep, as a user's cursor would show them
        page.evaluate("document.querySelector('#charts figure div[tabindex]').focus()")
        for key, code in [("End", 35)] + [("PageDown", 34)] * 6:
            page.press(key, code)
        page.evaluate("document.activeElement.blur()")
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot("#charts", Path(SCREENSHOTS) / f"{family}.png")


@pytest.mark.loss("huber", "tversky")
def test_the_curl_command_and_the_python_call_reproduce_the_plot(
    page: Page, server: Server, tmp_path: Path
) -> None:
    """The curl command the page shows, run as it is, answers the plotted numbers; so does its
    Python snippet, run with the Python client."""
    cases = [("regression", {"huber": {"delta": "0.5"}}), ("overlap", {"tversky": {}})]
    for family, losses in cases:
        shown = choose(page, family, losses)
        data, plotted = shown["data"], shown["plotted"]
        k, rank1 = data["k"], data["rank1"]
        curl = shown["snippets"]["curl"]
        assert curl.startswith(f"curl -s -X POST '{server.url}/loss'")
        ran = subprocess.run(shlex.split(curl), capture_output=True, timeout=60, check=True)
        results = json.loads(ran.stdout)["results"]
        for i, result in enumerate(results):
            assert result["per_sample"] == plotted[0][i + 1]
            assert column(result["gradient"], k, rank1) == plotted[1][i + 1]
            assert column(result["hessian"], k, rank1) == plotted[2][i + 1]
        python = shown["snippets"]["python"]
        assert f'client = Client("{server.url}")' in python
        (name,) = losses
        script = python + (
            f"\nimport json\nprint(json.dumps([{name}.per_sample.tolist(),"
            f" {name}.gradient.tolist(), {name}.hessian.tolist()]))"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
        )
        per_sample, gradient, hessian = json.loads(out.stdout.splitlines()[-1])
        assert per_sample == plotted[0][1]
        assert column(gradient, k, rank1) == plotted[1][1]
        assert column(hessian, k, rank1) == plotted[2][1]


@pytest.mark.loss("huber")
def test_an_invalid_parameter_shows_the_servers_message(page: Page, client: httpx.Client) -> None:
    """A refused value is sent as typed and the server's 422 is shown: its detail in the status
    line, each error's message under its field; nothing is redrawn meanwhile."""
    before = choose(page, "regression", {"huber": {"delta": "1.0"}})["plotted"]
    for typed, sent in (("-1", -1), ("abc", "abc")):
        shown = choose(page, "regression", {"huber": {"delta": typed}})
        refusal = client.post(
            "/loss",
            json={
                "losses": [{"name": "huber", "params": {"delta": sent}}],
                "predictions": [0.0],
                "targets": [0.0],
            },
        ).json()
        assert refusal["code"] == "invalid_params"
        assert shown["error"]["detail"] == refusal["detail"]
        assert shown["status"] == f"422 invalid_params: {refusal['detail']}"
        field = page.evaluate(
            """[...document.querySelectorAll("#params fieldset")]
                 .find((f) => f.querySelector("legend").textContent === "huber parameters")
                 .querySelector('[name="delta"]').parentElement.querySelector(".field-error")
                 .textContent"""
        )
        assert field == refusal["errors"][0]["msg"]
        assert shown["plotted"] == before  # the last good curves stay
    shown = choose(page, "regression", {"huber": {"delta": "1.0"}})
    assert shown["error"] is None and shown["status"].endswith("one POST /loss.")
    # Chromium logs each refused request; nothing else may be in the console
    assert page.errors and all("status of 422" in error for error in page.errors), page.errors
    page.errors.clear()


def _files(tmp_path: Path) -> dict[str, tuple[Path, Path, Any, Any]]:
    rng = np.random.default_rng(17)
    regression = (rng.normal(size=10_000), rng.normal(size=10_000).astype(np.float32))
    logits = rng.normal(size=(6_000, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=6_000)
    np.save(tmp_path / "predictions.npy", regression[0])
    np.save(tmp_path / "targets.npy", regression[1])
    np.save(tmp_path / "logits.npy", logits)
    (tmp_path / "labels.csv").write_text("label\n" + "\n".join(map(str, labels)) + "\n")
    return {
        "regression": (tmp_path / "predictions.npy", tmp_path / "targets.npy", *regression),
        "multiclass": (tmp_path / "logits.npy", tmp_path / "labels.csv", logits, labels),
    }


@pytest.mark.loss("mse", "huber", "cross_entropy", "focal")
def test_uploaded_files_give_the_value_a_client_gets(
    page: Page, server: Server, tmp_path: Path
) -> None:
    """Two .npy files (float64 and float32, 10 000 rows) with a low element limit: sent in two
    pieces of whole 4096-row blocks, as the Python client splits them under that limit; and a
    float32 (N, C) .npy with a .csv of class indices in one request. Each loss's value is
    bit for bit what the Python client gets (within 1e-15 of one request's when split), its
    20 worst rows are the client's per-sample losses' largest, the progress bar ends full, and
    the page's curl command (one request over the .npy files) and Python snippet answer the
    same values."""
    cases = {
        "regression": ({"mse": {}, "huber": {"delta": "0.5"}}, 8192, 2),
        "multiclass": ({"cross_entropy": {}, "focal": {"gamma": "1.5"}}, None, 1),
    }
    for family, (p_path, t_path, p, t) in _files(tmp_path).items():
        losses, max_elements, requests = cases[family]
        choose(page, family, losses)
        limits = {"maxElements": max_elements or 33_554_432, "maxBodyBytes": 268_435_456}
        page.evaluate(f"window.explorer.limits = {json.dumps(limits)}")
        page.set_files("#predictions-file", p_path)
        page.set_files("#targets-file", t_path)
        page.evaluate("window.explorer.idle()")
        shown = page.evaluate(
            """({data: window.explorer.data, error: window.explorer.lastError,
                 snippets: window.explorer.snippets,
                 progress: ["value", "max"].map((k) => document.getElementById("progress")[k])})"""
        )
        assert shown["error"] is None, shown["error"]
        rows = len(p)
        assert shown["progress"] == [rows, rows]
        targets = t.astype(np.float64) if family == "multiclass" else t  # the .csv's float64
        with Client(server.url, max_elements=max_elements) as alike, Client(server.url) as whole:
            for result, (name, typed) in zip(shown["data"], losses.items(), strict=True):
                params: dict[str, Any] = {k: float(v) for k, v in typed.items()}
                if family == "multiclass":
                    params["from_logits"] = True  # the multiclass sweep's logits
                assert result["params"] == params
                expected = alike.evaluate(name, p, targets, params=params)
                assert (result["value"], result["requests"]) == (expected.value, requests), name
                assert expected.requests == requests
                assert (result["n"], result["weight_sum"]) == (rows, expected.weight_sum)
                one = whole.evaluate(name, p, targets, params=params)
                assert result["value"] == pytest.approx(one.value, rel=1e-15, abs=0)
                assert one.requests == 1 and one.per_sample is not None
                worst = np.argsort(-one.per_sample, kind="stable")[:20]
                assert [row for row, _ in result["worst"]] == worst.tolist()
                assert [v for _, v in result["worst"]] == one.per_sample[worst].tolist()
        values = [result["value"] for result in shown["data"]]
        python = subprocess.run(
            [sys.executable, "-c", shown["snippets"]["dataPython"]],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        printed = [float(line.split()[-1]) for line in python.stdout.splitlines()]
        if family == "regression":  # the snippet sends each file in one request
            assert printed == pytest.approx(values, rel=1e-15, abs=0)
            curl = shown["snippets"]["dataCurl"]
            ran = subprocess.run(
                shlex.split(curl), cwd=tmp_path, capture_output=True, timeout=60, check=True
            )
            answered = [r["value"] for r in json.loads(ran.stdout)["results"]]
            assert answered == pytest.approx(values, rel=1e-15, abs=0)
            if SCREENSHOTS:
                page.screenshot("#data", Path(SCREENSHOTS) / "data.png")
        else:
            assert printed == values
            assert shown["snippets"]["dataCurl"] == ""  # curl cannot send a .csv as an array
    page.evaluate("window.explorer.limits = {maxElements: 33554432, maxBodyBytes: 268435456}")
    assert page.errors == []


# Drop files (name, base64 bytes) on the box of the file input ``box``, as a user drags them.
DROP = r"""
async (files, box) => {
  const list = new DataTransfer();
  for (const [name, data] of files) {
    list.items.add(new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], name));
  }
  const zone = document.getElementById(box).closest(".drop");
  zone.dispatchEvent(new DragEvent("drop", { dataTransfer: list, bubbles: true, cancelable: true }));
  await window.explorer.idle();
  return JSON.stringify({
    data: window.explorer.data,
    error: window.explorer.lastError,
    chosen: [...document.querySelectorAll(".drop input")].map((input) => input.files[0]?.name),
  });
}
"""


@pytest.mark.loss("mse", "huber")
def test_two_files_dropped_on_one_box(page: Page, server: Server, tmp_path: Path) -> None:
    """Both files dropped together on the predictions' box: the targets are the one named so,
    whatever the order. A big-endian float64 file and a uint8 one (dtypes lossd does not take
    as they are) are read as float64, and give the Python client's values for those numbers."""
    rng = np.random.default_rng(7)
    predictions = rng.normal(size=5_000).astype(">f8")
    targets = rng.integers(0, 3, size=5_000).astype(np.uint8)
    files = []
    for name, array in (("targets.npy", targets), ("predictions.npy", predictions)):
        np.save(tmp_path / name, array)
        files.append([name, base64.b64encode((tmp_path / name).read_bytes()).decode()])
    losses = {"mse": {}, "huber": {"delta": "2.0"}}
    choose(page, "regression", losses)
    shown = page.run(DROP, files, "predictions-file")
    assert shown["error"] is None, shown["error"]
    assert shown["chosen"] == ["predictions.npy", "targets.npy"]
    with Client(server.url) as lossd:
        for result, (name, typed) in zip(shown["data"], losses.items(), strict=True):
            params = {k: float(v) for k, v in typed.items()}
            expected = lossd.evaluate(
                name, predictions.astype("<f8"), targets.astype(np.float64), params=params
            )
            assert (result["value"], result["n"], result["requests"]) == (expected.value, 5_000, 1)
    assert page.errors == []


# What has the focus: its id, the caption of the chart it is, or its text.
FOCUSED = """(() => {
  const focused = document.activeElement;
  return focused.id || focused.closest("figure")?.querySelector("figcaption")?.textContent
    || focused.textContent;
})()"""


def test_readable_at_400_px_and_usable_from_the_keyboard(page: Page) -> None:
    """At 400 px nothing is wider than the window; every control has a label; Tab reaches the
    controls, the charts and the copy buttons, and a focused chart's arrow keys move its cursor
    and the legend shows the exact numbers there."""
    shown = choose(page, "regression", {"mse": {}, "huber": {"delta": "1.0"}})
    page.viewport(400, 900)
    try:
        page.evaluate("new Promise((done) => setTimeout(done, 300))")  # resize observers
        widths = page.evaluate(
            """({page: document.documentElement.scrollWidth, window: innerWidth,
                 charts: document.querySelectorAll(".uplot").length,
                 widest: Math.max(...[...document.querySelectorAll(".uplot, input, select, pre")]
                   .map((e) => e.getBoundingClientRect().right))})"""
        )
        assert widths["charts"] >= 5  # the curves, and the files' histograms
        # nothing scrolls sideways but the worst samples' tables, within their boxes
        assert widths["page"] <= widths["window"] and widths["widest"] <= widths["window"], widths
    finally:
        page.viewport(1000, 1200)
    unlabelled = page.evaluate(
        """[...document.querySelectorAll("input, select, button")]
             .filter((e) => !e.labels?.length && !e.getAttribute("aria-label") && !e.textContent.trim())
             .map((e) => e.outerHTML)"""
    )
    assert unlabelled == []
    page.evaluate("(document.activeElement.blur(), window.scrollTo(0, 0))")
    reached = []
    for _ in range(60):
        page.press("Tab", 9)
        reached.append(page.evaluate(FOCUSED))
    for wanted in ("key", "family", "target", "from", "points", "loss l", "predictions-file"):
        assert any(str(r).startswith(wanted) for r in reached), (wanted, reached)
    assert any("Copy" in str(r) for r in reached), reached
    page.evaluate("document.querySelector('#charts figure div[tabindex]').focus()")
    x, mse = shown["plotted"][0][0], shown["plotted"][0][1]
    for key, code, at in (("End", 35, len(x) - 1), ("ArrowLeft", 37, len(x) - 2), ("Home", 36, 0)):
        page.press(key, code)
        legend = page.evaluate(
            """[...document.querySelectorAll("#charts figure:first-child .u-legend .u-value")]
                 .map((v) => v.textContent)"""
        )
        assert legend[:2] == [repr_js(x[at]), repr_js(mse[at])], (key, legend)
    assert page.errors == []


def repr_js(value: float) -> str:
    """How JavaScript's String() writes a double that JSON gave Python."""
    text = re.sub(r"e([-+])0*(\d)", r"e\1\2", repr(value))
    return text[:-2] if text.endswith(".0") else text


# --- with API keys -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed() -> Iterator[Server]:
    with served({"LOSSD_API_KEYS": orjson.dumps([KEY]).decode()}) as srv:
        yield srv


@pytest.mark.loss("mse")
def test_with_keys_the_page_opens_and_asks_for_one(keyed: Server, tmp_path: Path) -> None:
    """With LOSSD_API_KEYS, the page and each of its files need no key (a browser must open it
    before a key is pasted), anything else under /explore does; the page says the API wants a
    key, and once one is pasted it plots, sending it as Authorization: Bearer, and its curl
    command reads it from $LOSSD_API_KEY."""
    with http_client(keyed) as http:
        assert http.get("/explore").status_code == 200
        for path in explorer.public_paths():
            assert http.get(path).status_code == 200, path
        assert http.get("/explore/static/nothing.js").status_code == 401
        assert http.get("/explore/").status_code == 401
        assert http.get("/losses").status_code == 401
    with browser(tmp_path / "profile") as opened:
        opened.watch()
        opened.navigate(f"{keyed.url}/explore", "window.explorer && window.explorer.ready")
        opened.evaluate("window.explorer.ready")
        error = opened.evaluate("window.explorer.lastError")
        assert error["status"] == 401
        assert opened.evaluate("document.getElementById('status').textContent").endswith(
            "paste a key above."
        )
        opened.run(
            """async (key) => {
              const input = document.getElementById("key");
              input.value = key;
              input.dispatchEvent(new Event("change", { bubbles: true }));
              await window.explorer.ready;
              await new Promise((done) => setTimeout(done, 50));
              await window.explorer.idle();
              return "null";
            }""",
            KEY,
        )
        shown = opened.evaluate(
            "({data: window.explorer.lastData, snippets: window.explorer.snippets})"
        )
        # the only console errors: the refused GET /losses before the key
        assert all("401" in e for e in opened.errors), opened.errors
    assert shown["data"]["losses"][0]["name"] == "mse"
    curl = shown["snippets"]["curl"]
    assert '-H "Authorization: Bearer $LOSSD_API_KEY"' in curl and KEY not in curl
    assert 'api_key=os.environ["LOSSD_API_KEY"]' in shown["snippets"]["python"]
    ran = subprocess.run(
        ["bash", "-c", curl], env={**os.environ, "LOSSD_API_KEY": KEY},
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(ran.stdout)["results"][0]["per_sample"] == shown["data"]["losses"][0]["value"]
