"""Generated clients: the committed spec's shape, a Python and a TypeScript client generated
from it in the test run (never committed), each run against a live server, and the TypeScript
package clients/typescript built, packed and run against one too."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from service.losses import REGISTRY
from tests.support.servers import ROOT, Server

SPEC_PATH = ROOT / "openapi" / "openapi.json"
TS_PROJECT = ROOT / "tests" / "clients" / "ts"
# The TypeScript package: its node_modules (npm ci of its package-lock.json) and its generator
# (scripts/generate.mjs, openapi-typescript) serve the raw client test too.
TS_PACKAGE = ROOT / "clients" / "typescript"
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# /v2 answers errors in the Open Inference Protocol's shape, {"error": ...} (SPEC section 7).
OWN_ERROR_SHAPE = "/v2"
SETUP_HINT = "run the test set-up first: `make test` (npm ci in clients/typescript)"


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    return spec


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _run(args: list[str], cwd: Path, timeout: float, **env: str) -> str:
    """Run a command; on failure the assertion shows its output."""
    done = subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (
        f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


# --- the committed spec -----------------------------------------------------------------------


def test_every_operation_has_a_readable_unique_operation_id() -> None:
    """operationIds are snake_case words (`evaluate_loss`), not FastAPI's `..._loss__name__post`."""
    ids = [op.get("operationId", "") for _, _, op in _operations(_spec())]
    assert len(ids) >= 6
    for op_id in ids:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", op_id), op_id
        assert not re.search(r"_(get|post|put|delete|patch|head|options)$", op_id), op_id
    assert len(set(ids)) == len(ids), sorted(ids)


def test_every_error_response_outside_v2_is_problem_json() -> None:
    """Each 4xx/5xx of each operation is application/problem+json with the Problem schema."""
    spec = _spec()
    checked = 0
    for path, method, op in _operations(spec):
        if path.startswith(OWN_ERROR_SHAPE):
            continue
        for status, response in op["responses"].items():
            if status[0] in "45":
                assert response.get("content") == PROBLEM_CONTENT, (path, method, status)
                assert response.get("description"), (path, method, status)
                checked += 1
    assert checked >= 10
    schemas = spec["components"]["schemas"]
    assert {"Problem", "ProblemError"} <= set(schemas)
    assert {"code", "status", "title", "detail"} <= set(schemas["Problem"]["required"])
    if not any(path.startswith(OWN_ERROR_SHAPE) for path in spec["paths"]):
        assert "HTTPValidationError" not in schemas  # FastAPI's default 422 body is not lossd's


def test_routes_that_read_a_body_document_its_errors() -> None:
    """An operation with a request body documents 413, 415 and 422, which reading it can raise."""
    bodies = [
        (path, op)
        for path, _, op in _operations(_spec())
        if "requestBody" in op and not path.startswith(OWN_ERROR_SHAPE)
    ]
    assert {path for path, _ in bodies} >= {"/loss", "/loss/{name}"}
    for path, op in bodies:
        assert {"413", "415", "422"} <= set(op["responses"]), path


def test_documented_body_errors_are_what_the_server_answers(client: httpx.Client) -> None:
    """A wrong media type and invalid JSON give the documented 415 and 422 problem+json."""
    for path, method, op in _operations(_spec()):
        if "requestBody" not in op or path.startswith(OWN_ERROR_SHAPE):
            continue
        url = path.replace("{name}", "mse")
        cases = [("text/plain", b"[1, 2]", 415), ("application/json", b"{", 422)]
        for media, body, status in cases:
            response = client.request(method, url, content=body, headers={"content-type": media})
            assert response.status_code == status, (path, media, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert str(status) in op["responses"]
            assert response.json()["status"] == status


# --- Python: openapi-python-client ------------------------------------------------------------


@pytest.fixture(scope="module")
def lossd_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The package openapi-python-client generates from the committed spec, imported."""
    out = tmp_path_factory.mktemp("python_client")
    config = out / "config.yaml"
    # no ruff pass over generated code (not needed to run); a package name of its own, since the
    # shipped client (clients/python) is installed as lossd_client
    config.write_text("post_hooks: []\npackage_name_override: lossd_openapi\n")
    _run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(SPEC_PATH),
            "--output-path",
            str(out / "lossd_openapi"),
            "--meta",
            "none",
            "--config",
            str(config),
            "--fail-on-warning",
        ],
        cwd=out,
        timeout=120,
    )
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("lossd_openapi")
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m.split(".")[0] == "lossd_openapi"]:
            del sys.modules[name]


def _api(module: str) -> Any:
    """A module of the generated package (imported after the fixture put it on sys.path)."""
    return importlib.import_module(f"lossd_openapi.{module}")


def test_python_client_evaluates_a_loss(lossd_client: ModuleType, server: Server) -> None:
    """`evaluate_loss.sync_detailed` sends a typed LossRequest and parses a typed LossResult."""
    evaluate_loss = _api("api.losses.evaluate_loss")
    models = _api("models")
    body = models.LossRequest(
        predictions=[0.5, 2.0, -1.0],
        targets=[0.0, 1.0, 1.0],
        sample_weight=[1.0, 1.0, 2.0],
        reduction=models.LossRequestReduction.SUM,
        gradient=True,
    )
    with lossd_client.Client(base_url=server.url, timeout=httpx.Timeout(60)) as api:
        response = evaluate_loss.sync_detailed("MSELoss", client=api, body=body)
    assert response.status_code == 200, response.content
    result = response.parsed
    assert isinstance(result, models.LossResult)
    # squared errors 0.25, 1, 4; sum = 0.25 + 1 + 2·4; gradient w·2(p − y)
    assert result.loss == "mse"
    assert result.reduction == models.LossResultReduction.SUM
    assert result.value == pytest.approx(9.25, rel=1e-12)
    assert (result.n, result.weight_sum) == (3, 4.0)
    assert result.per_sample == pytest.approx([0.25, 1.0, 4.0], rel=1e-12)
    assert result.gradient == pytest.approx([1.0, 2.0, -8.0], rel=1e-12)


def test_python_client_lists_the_catalogue(lossd_client: ModuleType, server: Server) -> None:
    """`list_losses.sync` gives a typed Catalogue of every registered loss; `get_loss` one entry."""
    list_losses = _api("api.losses.list_losses")
    get_loss = _api("api.losses.get_loss")
    models = _api("models")
    with lossd_client.Client(base_url=server.url, timeout=httpx.Timeout(60)) as api:
        catalogue = list_losses.sync(client=api)
        huber = get_loss.sync("Huber", client=api)
    assert isinstance(catalogue, models.Catalogue)
    assert [entry.name for entry in catalogue.losses] == [spec.name for spec in REGISTRY]
    assert isinstance(huber, models.LossInfo)
    assert huber.name == "huber"
    assert huber.family == models.LossInfoFamily.REGRESSION
    assert huber.params.additional_properties["properties"]["delta"]["default"] == 1.0


def test_python_client_reads_problems(lossd_client: ModuleType, server: Server) -> None:
    """A 422 and a 404 parse as the typed Problem model with code, status and errors."""
    evaluate_loss = _api("api.losses.evaluate_loss")
    get_loss = _api("api.losses.get_loss")
    models = _api("models")
    body = models.LossRequest(predictions=[1.0, 2.0], targets=[1.0, 2.0, 3.0])
    with lossd_client.Client(base_url=server.url, timeout=httpx.Timeout(60)) as api:
        mismatch = evaluate_loss.sync_detailed("mse", client=api, body=body)
        unknown = get_loss.sync_detailed("msee", client=api)
    assert mismatch.status_code == 422
    problem = mismatch.parsed
    assert isinstance(problem, models.Problem)
    assert (problem.status, problem.code) == (422, "shape_mismatch")
    assert problem.title == "Unprocessable Entity"
    assert [(e.loc, bool(e.msg)) for e in problem.errors] == [(["targets"], True)]
    assert unknown.status_code == 404
    assert isinstance(unknown.parsed, models.Problem)
    assert unknown.parsed.code == "unknown_loss"
    assert "mse" in unknown.parsed.detail  # the closest names are suggested


# --- TypeScript: openapi-typescript + openapi-fetch, compiled by tsc (strict) -----------------


def _node_modules() -> Path:
    node_modules = TS_PACKAGE / "node_modules"
    assert (node_modules / ".bin" / "tsc").exists(), SETUP_HINT
    return node_modules


def _generate_types(cwd: Path, output: str) -> None:
    """The package's generator, run on the committed spec: TypeScript types in ``cwd/output``."""
    script = TS_PACKAGE / "scripts" / "generate.mjs"
    # node resolves the generator's imports next to the script, in the package's node_modules
    _run(["node", str(script), str(SPEC_PATH), output], cwd=cwd, timeout=120)


def test_typescript_client_runs_against_the_server(server: Server, tmp_path: Path) -> None:
    """The generated types compile with the committed script under strict tsc, and it passes."""
    node_modules = _node_modules()
    # A copy of the project in tmp_path: generated code and build output never land in the tree.
    for name in ("tsconfig.json", "client.test.ts"):
        shutil.copy(TS_PROJECT / name, tmp_path / name)
    (tmp_path / "package.json").write_text('{"type": "module", "private": true}\n')
    (tmp_path / "node_modules").symlink_to(node_modules, target_is_directory=True)
    bin_dir = tmp_path / "node_modules" / ".bin"
    _generate_types(tmp_path, "generated/lossd.ts")
    _run([str(bin_dir / "tsc"), "-p", "tsconfig.json"], cwd=tmp_path, timeout=240)
    out = _run(
        ["node", "build/client.test.js"],
        cwd=tmp_path,
        timeout=120,
        LOSSD_URL=server.url,
        LOSSD_LOSSES=",".join(spec.name for spec in REGISTRY),
    )
    assert "typescript client: 3 checks passed" in out


# --- the TypeScript package, clients/typescript -----------------------------------------------


def _package_copy(tmp_path: Path) -> Path:
    """The package's committed files in tmp_path, its node_modules linked: the build and the
    tarball never land in the tree."""
    copy = tmp_path / "typescript"
    shutil.copytree(
        TS_PACKAGE,
        copy,
        ignore=shutil.ignore_patterns("node_modules", "dist", "build-test", "generated", "*.tgz"),
    )
    (copy / "node_modules").symlink_to(_node_modules(), target_is_directory=True)
    return copy


def test_typescript_package_builds_packs_and_evaluates(server: Server, tmp_path: Path) -> None:
    """clients/typescript: generated from the committed spec, compiled by strict tsc, packed by
    `npm pack` with its compiled code and types only, and its test evaluates losses against a
    live server with every transport."""
    package = _package_copy(tmp_path)
    tsc = str(package / "node_modules" / ".bin" / "tsc")
    _generate_types(package, "src/generated/lossd.ts")
    _run([tsc, "-p", "tsconfig.json"], cwd=package, timeout=240)
    _run([tsc, "-p", "tsconfig.test.json"], cwd=package, timeout=240)
    out = _run(
        ["node", "build-test/test/evaluate.test.js"], cwd=package, timeout=120, LOSSD_URL=server.url
    )
    assert "lossd-client: 8 checks passed" in out
    # built above, from the committed spec: prepack's build would look for the spec beside the
    # repository's copy of the package, which the copy in tmp_path has not got
    packed = json.loads(
        _run(["npm", "pack", "--json", "--ignore-scripts"], cwd=package, timeout=120)
    )
    files = {entry["path"] for entry in packed[0]["files"]}
    assert {"package.json", "README.md", "dist/index.js", "dist/index.d.ts"} <= files
    assert "dist/generated/lossd.d.ts" in files and "dist/generated/version.js" in files
    assert not [f for f in files if f.startswith(("src/", "test/", "node_modules/"))], files
    assert (package / packed[0]["filename"]).stat().st_size > 1000


def test_typescript_package_follows_the_server_version() -> None:
    """The package's version (package.json and its lock) is the server's: pyproject's, the
    service's __version__ and the spec's info.version (what its API_VERSION is generated from)."""
    from service import __version__

    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    manifest = json.loads((TS_PACKAGE / "package.json").read_text())
    lock = json.loads((TS_PACKAGE / "package-lock.json").read_text())
    assert manifest["version"] == server == __version__ == _spec()["info"]["version"]
    assert lock["version"] == lock["packages"][""]["version"] == server
    assert manifest["main"] == "./dist/index.js" and manifest["types"] == "./dist/index.d.ts"
    assert manifest["files"] == ["dist"]
