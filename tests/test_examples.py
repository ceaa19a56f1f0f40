"""The committed spec teaches with examples that are true: every operation shows a request and
its answer, every one of them is sent to a live server, and the server gives that answer.

The examples are read from ``openapi/openapi.json``, what Swagger UI and generated clients see
(``service/api/_examples.py`` writes them there).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.losses import REGISTRY, LossSpec, resolve
from tests.support.harness import spec_id
from tests.support.servers import ROOT

SPEC = json.loads((ROOT / "openapi" / "openapi.json").read_text())
METHODS = {"get", "post"}
JSON = "application/json"
# Answers that depend on what the process did before (counters, timings, kernels from the
# cache) or that the example shows only in part: same fields, same words, any numbers.
VARYING = {
    "readyz",
    "metrics",
    "list_losses",
    "v2_statistics",
    "v2_model_statistics",
    "v2_model_version_statistics",
}
REL = 1e-12


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _examples(content: dict[str, Any]) -> dict[str, Any]:
    """A media type's examples by name (value only)."""
    return {name: entry["value"] for name, entry in content.get("examples", {}).items()}


def _answer_examples(operation: dict[str, Any]) -> dict[str, Any]:
    content = operation["responses"]["200"]["content"]
    media = JSON if JSON in content else next(iter(content))
    return _examples(content[media])


def _same(example: Any, live: Any, where: str = "") -> None:
    """``live`` is ``example``: the same structure, numbers within REL."""
    if isinstance(example, dict):
        assert isinstance(live, dict) and set(live) == set(example), (where, example, live)
        for key, value in example.items():
            _same(value, live[key], f"{where}.{key}")
    elif isinstance(example, list):
        assert isinstance(live, list) and len(live) == len(example), (where, example, live)
        for k, (a, b) in enumerate(zip(example, live, strict=True)):
            _same(a, b, f"{where}[{k}]")
    elif isinstance(example, float) and not isinstance(live, bool):
        assert isinstance(live, int | float), (where, example, live)
        assert math.isclose(live, example, rel_tol=REL, abs_tol=REL), (where, example, live)
    else:
        assert live == example and type(live) is type(example), (where, example, live)


def _alike(example: Any, live: Any, where: str = "") -> None:
    """``live`` has ``example``'s shape: the same keys, equal strings and booleans, numbers of
    any value; each element of an example list is like one of the live list's."""
    if isinstance(example, dict):
        assert isinstance(live, dict) and set(live) == set(example), (where, example, live)
        for key, value in example.items():
            _alike(value, live[key], f"{where}.{key}")
    elif isinstance(example, list):
        assert isinstance(live, list), (where, live)
        for k, item in enumerate(example):
            assert any(_is_alike(item, other) for other in live), (f"{where}[{k}]", item, live)
    elif isinstance(example, bool | str):
        assert live == example, (where, example, live)
    else:
        assert isinstance(live, int | float) and not isinstance(live, bool), (where, live)


def _is_alike(example: Any, live: Any) -> bool:
    try:
        _alike(example, live)
    except AssertionError:
        return False
    return True


# --- what the spec shows ----------------------------------------------------------------------


def test_every_operation_shows_an_example_request_and_answer() -> None:
    """Each operation has an example answer to its 200, example path parameters and, when it
    takes a JSON body, an example body."""
    for path, method, operation in _operations():
        where = f"{method.upper()} {path}"
        assert _answer_examples(operation), where
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert "example" in parameter or parameter.get("examples"), (where, parameter)
        body = operation.get("requestBody", {}).get("content", {}).get(JSON)
        if body is not None:
            assert _examples(body), where
    # evaluate_loss: the body's and the answer's examples are named after their losses, and the
    # path shows the first (Swagger UI puts it in the path; its body suits that loss)
    evaluate = SPEC["paths"]["/loss/{name}"]["post"]
    names = list(_examples(evaluate["requestBody"]["content"][JSON]))
    (name_parameter,) = [p for p in evaluate["parameters"] if p["name"] == "name"]
    assert list(_answer_examples(evaluate)) == names
    assert name_parameter["example"] == names[0]


def test_evaluate_loss_shows_one_loss_of_each_family() -> None:
    """POST /loss/{name} has a named example of one loss of every family the registry has."""
    evaluate = SPEC["paths"]["/loss/{name}"]["post"]
    names = _examples(evaluate["requestBody"]["content"][JSON])
    assert {resolve(name).family for name in names} == {spec.family for spec in REGISTRY}
    assert all(resolve(name).name == name for name in names)  # canonical names


def test_loss_names_are_an_enum_and_params_are_typed_per_loss() -> None:
    """The loss name path parameters list the canonical names; each loss's parameter schema is
    a component, LossParamsByName maps names to them, and a request's params is one of them,
    never an object of any keys (which Swagger UI fills with `additionalProp1`)."""
    schemas = SPEC["components"]["schemas"]
    names = [spec.name for spec in REGISTRY]
    assert schemas["LossName"]["enum"] == names
    for path in ("/loss/{name}", "/losses/{name}"):
        for operation in SPEC["paths"][path].values():
            (parameter,) = [p for p in operation["parameters"] if p["name"] == "name"]
            assert parameter["schema"] == {"$ref": "#/components/schemas/LossName"}, path
    by_name = schemas["LossParamsByName"]
    assert list(by_name["properties"]) == names and by_name["required"] == names
    for spec in REGISTRY:
        ref = by_name["properties"][spec.name]["$ref"].rsplit("/", 1)[-1]
        assert schemas[ref] == spec.params.model_json_schema(), spec.name
    refs = [{"$ref": by_name["properties"][name]["$ref"]} for name in names]
    for model in ("LossRequest", "LossSelection"):
        params = schemas[model]["properties"]["params"]
        assert params["anyOf"] == refs, model
        assert "additionalProperties" not in params
    assert "additionalProp1" not in json.dumps(SPEC)


# --- what the server answers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [resolve(name) for name in _examples(SPEC["paths"]["/loss/{name}"]["post"]["requestBody"]["content"][JSON])],
    ids=spec_id,
)  # fmt: skip
def test_each_named_example_gets_its_answer(spec: LossSpec, client: httpx.Client) -> None:
    """POST /loss/{name} with a named example's body answers exactly the example's answer."""
    evaluate = SPEC["paths"]["/loss/{name}"]["post"]
    body = _examples(evaluate["requestBody"]["content"][JSON])[spec.name]
    response = client.post(f"/loss/{spec.name}", json=body)
    assert response.status_code == 200, response.text
    _same(_answer_examples(evaluate)[spec.name], response.json())


def test_every_other_example_gets_its_answer(client: httpx.Client) -> None:
    """Every other operation, sent its example path parameters and body, answers 200 with the
    example's answer: exactly, or in shape where the answer depends on the process."""
    checked = 0
    for path, method, operation in _operations():
        if operation["operationId"] == "evaluate_loss":
            continue
        url = path
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                url = url.replace(f"{{{parameter['name']}}}", parameter["example"])
        assert "{" not in url, url
        body = operation.get("requestBody", {}).get("content", {}).get(JSON)
        sent = next(iter(_examples(body).values())) if body else None
        response = client.request(method, url, json=sent)
        assert response.status_code == 200, (method, url, response.text)
        (example,) = _answer_examples(operation).values()
        if operation["operationId"] == "metrics":
            helps = [line for line in example.splitlines() if line.startswith("# HELP")]
            assert helps and all(line in response.text for line in helps)
        elif operation["operationId"] == "list_losses":
            live = response.json()["losses"]
            assert example["losses"] and all(entry in live for entry in example["losses"])
        elif operation["operationId"] in VARYING:
            _alike(example, response.json(), url)
        else:
            _same(example, response.json(), url)
        checked += 1
    assert checked == sum(1 for _ in _operations()) - 1
