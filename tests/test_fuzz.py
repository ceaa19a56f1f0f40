"""Fuzzing: schemathesis against the committed spec, hypothesis against the request decoder.

A request gets a 200 with a well-formed result or a documented 4xx (SPEC section 5), never a 500,
a traceback or a response the spec does not describe. In-process, ``evaluate_one`` and
``evaluate_many`` take the raw body exactly as the route hands it over, so hundreds of
examples run in seconds; a smaller number goes over HTTP to a live server.
"""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.codecs import Reply
from service.codecs.loss import evaluate_many, evaluate_one
from service.errors import LossdError
from service.losses import REGISTRY, fold
from service.losses._aliases import alias_conventions
from tests.support.harness import HARNESSED
from tests.support.problems import MAX_ERROR_BYTES
from tests.support.references import CASES
from tests.support.references import draw as draw_kind
from tests.support.servers import ROOT, Server

SPEC = ROOT / "openapi" / "openapi.json"
LIMIT = 1 << 20  # LOSSD_MAX_ELEMENTS of the in-process runs (the service's default is larger)
# SPEC section 5: the error statuses and codes the evaluation path may answer with
DOCUMENTED = {
    404: {"unknown_loss"},
    413: {"payload_too_large", "too_many_elements", "memory_budget"},
    415: {"unsupported_media_type"},
    422: {"invalid_request", "invalid_array", "shape_mismatch", "invalid_params", "out_of_domain"},
}
JSON = {"content-type": "application/json"}
IN_PROCESS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OVER_HTTP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = sorted({name for spec in REGISTRY for name in (spec.name, *spec.aliases)})
# the names of the losses whose batches the references draw (all but ctc's rank-3 ones, which
# tests/test_ctc.py fuzzes with batches of its own)
DRAWN_NAMES = sorted({name for spec in HARNESSED for name in (spec.name, *spec.aliases)})
BY_NAME = {name: spec for spec in REGISTRY for name in (spec.name, *spec.aliases)}
ARRAY_KEYS = ("per_sample", "gradient", "hessian")


# --- schemathesis --------------------------------------------------------------------------------

# The fuzzer reaches the engine more often with real loss names than with random strings. The
# spec's loss names are the LossName enum of canonical names; the server takes aliases too
# (tests/test_aliases.py), so an alias is "a value the schema forbids" that the server rightly
# accepts: none is in the dictionary, and the hook below drops any the fuzzer makes up.
SCHEMATHESIS_CONFIG = f"""
[dictionaries.losses]
values = {json.dumps([s.name for s in REGISTRY])}

[parameters]
"path.name" = {{ dictionary = "losses", probability = 0.8 }}
"body.losses[*].name" = {{ dictionary = "losses", probability = 0.8 }}

# positive_data_acceptance: a body the schema allows can still be refused, with the documented
# status, for what JSON Schema cannot say: predictions and targets of different shapes, packed
# data or tensor data whose length does not match its shape, values outside the loss's domain,
# parameters a loss does not take, an unknown loss name, more elements than LOSSD_MAX_ELEMENTS.
# negative_data_rejection: a body that breaks the schema in one place may also declare more
# elements than LOSSD_MAX_ELEMENTS in another; the arrays are checked first, so the rejection
# is that 413, which schemathesis's default list of rejections lacks.
[[operations]]
include-path-regex = "^/loss|/infer$"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", 404, 413, 422]
checks.negative_data_rejection.expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415,
                                                    422, 428, 429, "5xx"]
"""


SCHEMATHESIS_HOOKS = f"""
import schemathesis

ALIASES = set({json.dumps(sorted({fold(a) for spec in REGISTRY for a in spec.aliases}))})


@schemathesis.hook
def filter_path_parameters(context, path_parameters):
    name = (path_parameters or {{}}).get("name") if isinstance(path_parameters, dict) else None
    return not (isinstance(name, str) and name.lower().replace("-", "_") in ALIASES)


# Which arrays each loss takes is the loss's (GET /losses/{{name}}), not the schema's: targets for
# all but triplet_margin, an extra input under `inputs` for four of them. A body the schema
# allows (targets optional, `inputs` any names) is refused by most losses unless it sends just
# those, which the fuzzer almost never draws. In the positive phase its bodies for the losses
# it named are given them, still within the schema: the inputs no named loss takes dropped, the
# targets and inputs a named loss takes and the body lacks copied from its predictions.
INPUTS = {json.dumps({spec.name: [x.name for x in spec.params.inputs] for spec in REGISTRY})}
TARGETLESS = set({json.dumps([spec.name for spec in REGISTRY if not spec.targets])})


@schemathesis.hook
def map_case(context, case):
    meta, body = case.meta, case.body
    if meta is None or meta.generation.mode.is_negative or not isinstance(body, dict):
        return case
    if "predictions" not in body:
        return case
    named = [(case.path_parameters or {{}}).get("name")]
    if isinstance(body.get("losses"), list):
        named = [loss.get("name") for loss in body["losses"] if isinstance(loss, dict)]
    names = [n for n in named if isinstance(n, str) and n in INPUTS]
    if not names or len(names) != len(named):
        return case
    taken = {{x for n in names for x in INPUTS[n]}}
    sent = body.get("inputs") if isinstance(body.get("inputs"), dict) else {{}}
    inputs = {{k: v for k, v in sent.items() if k in taken}}
    inputs.update({{k: body["predictions"] for k in taken if k not in inputs}})
    body = {{k: v for k, v in body.items() if k != "inputs"}}
    if inputs:
        body["inputs"] = inputs
    if all(n in TARGETLESS for n in names):
        body.pop("targets", None)
    elif "targets" not in body:
        body["targets"] = body["predictions"]
    case.body = body
    return case
"""


def spec_operations() -> set[str]:
    """``METHOD /path`` of every operation in the committed spec."""
    paths = json.loads(SPEC.read_text())["paths"]
    return {f"{method.upper()} {path}" for path, item in paths.items() for method in item}


@pytest.mark.timeout(960)  # the subprocess guard below, and the report
def test_schemathesis_finds_nothing(server: Server, tmp_path: Path) -> None:
    """Schemathesis with every check, on every operation of the committed spec: no failure."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    hooks = tmp_path / "lossd_hooks.py"
    hooks.write_text(SCHEMATHESIS_HOOKS)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file", str(config), "--no-color",
        "run", str(SPEC), "--url", server.url,
        "--checks", "all",
        "--max-examples", "100",
        "--workers", "2",
        "--request-timeout", "30",
        "--generation-database", "none",
        "--report", "json", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        # a guard against a hang, not a performance bound: 100 examples of every operation take
        # 90 s alone and past 300 s on the suite's loaded 2 cores since the spec grew by the
        # inputs field and five losses
        timeout=900,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(hooks)},
    )
    output = run.stdout[-20_000:] + run.stderr[-5_000:]
    assert run.returncode == 0, output
    report = json.loads(next(tmp_path.glob("json-*.json")).read_text())
    assert report["complete"], output
    assert not report["failures"] and not report["errors"], output
    # every operation of the spec was selected and tested, /v2 and /metrics included when present
    operations = spec_operations()
    assert report["operations"]["total"] == len(operations)
    assert report["operations"]["tested"] == len(operations), output
    assert set(report["valid_rates"]) == operations
    # the fuzzer got past validation into the kernels on both evaluation routes
    for operation in ("POST /loss/{name}", "POST /loss"):
        assert report["valid_rates"][operation]["fuzzing"]["accepted"] > 0, report["valid_rates"]


# --- strategies ----------------------------------------------------------------------------------

HUGE = (2**63, 2**64, -(2**63) - 1, 10**30, 10**400, 1e308, -1e308, 5e-324, -0.0)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE),
    st.floats(),  # NaN and Infinity too: json.dumps writes them as the non-JSON tokens
    st.text(max_size=8),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=4),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=25,
)
TOP_KEYS = (
    "predictions", "targets", "sample_weight", "reduction", "params", "per_sample", "gradient",
    "hessian", "dtype", "array_format", "losses",
)  # fmt: skip
json_objects = st.dictionaries(st.one_of(st.sampled_from(TOP_KEYS), st.text(max_size=6)),
                               json_values, max_size=8)  # fmt: skip


def dumps(doc: object) -> bytes:
    """JSON text of ``doc`` (Python's json: integers of any size, NaN and Infinity as tokens)."""
    return json.dumps(doc).encode()


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """A body with one array field nested far deeper than any rank the service accepts."""
    depth = draw(st.integers(3, 2000))
    field = draw(st.sampled_from(["predictions", "targets", "params", "sample_weight"]))
    inner = b"[" * depth + b"1" + b"]" * depth
    if field == "params":
        inner = b'{"a":' * depth + b"1" + b"}" * depth
    return b'{"predictions": [1], "targets": [1], "%s": %s}' % (field.encode(), inner)


# A value that may replace one element of a valid array.
hostile_elements = st.one_of(
    st.sampled_from(HUGE),
    st.sampled_from([True, None, "1", [], [1.0], {"v": 1}]),
    st.floats(),
)
# What a near-valid request gets wrong: nothing in half of them, else one thing.
FAULTS = ("element", "packed", "shape", "weights", "option", "param", "extra_key", "drop_key")
PACKED_FAULTS = ("truncate", "pad", "junk", "shape", "dtype", "keys")


def _packed(array: np.ndarray[Any, Any], dtype: str, fault: str | None, draw: st.DrawFn) -> Any:
    """The packed form of ``array`` in ``dtype``, broken as ``fault`` says."""
    with np.errstate(all="ignore"):
        raw = np.ascontiguousarray(array.astype(dtype)).tobytes()
    data = base64.b64encode(raw).decode("ascii")
    doc: dict[str, Any] = {"dtype": dtype, "shape": list(array.shape), "data": data}
    if fault == "truncate" and data:
        doc["data"] = data[: draw(st.integers(0, len(data) - 1))]
    elif fault == "pad":
        doc["data"] = data + draw(st.sampled_from(["=", "A", "AAAA", "====", "\n"]))
    elif fault == "junk" and data:
        at = draw(st.integers(0, len(data) - 1))
        doc["data"] = data[:at] + draw(st.sampled_from("!-_ .é\x00\\")) + data[at + 1 :]
    elif fault == "shape":
        doc["shape"] = draw(
            st.one_of(
                st.lists(st.one_of(st.integers(-3, 8), st.sampled_from(HUGE)), max_size=3),
                json_scalars,
            )
        )
    elif fault == "dtype":
        doc["dtype"] = draw(
            st.one_of(st.sampled_from(["uint8", ">f8", "float128", "bfloat8", ""]), json_scalars)
        )
    elif fault == "keys":
        doc.pop(draw(st.sampled_from(sorted(doc))))
        doc[draw(st.text(max_size=4))] = draw(json_scalars)
    return doc


def _encode(array: np.ndarray[Any, Any], fault: str | None, draw: st.DrawFn) -> Any:
    """A request array as a JSON list or a packed object, broken as ``fault`` says."""
    if fault in PACKED_FAULTS or draw(st.booleans()):
        integral = bool(np.all(array == np.round(array)))  # the integer dtypes keep the values
        dtype = draw(
            st.sampled_from(["float64", "float32", "int32", "int64"][: 4 if integral else 2])
        )
        return _packed(array, dtype, fault, draw)
    listed: Any = array.tolist()
    if fault == "element" and array.size:
        flat = listed if array.ndim == 1 else listed[draw(st.integers(0, len(listed) - 1))]
        flat[draw(st.integers(0, len(flat) - 1))] = draw(hostile_elements)
    return listed


# Losses that take the same batches: the same input domains (extra inputs included) and a rank
# they accept.
COMPATIBLE = {
    (spec.name, rank): [
        other.name
        for other in REGISTRY
        if (CASES[other.name].pred, CASES[other.name].targ, CASES[other.name].inputs)
        == (CASES[spec.name].pred, CASES[spec.name].targ, CASES[spec.name].inputs)
        and other.params.min_rank <= rank <= other.params.max_rank
    ]
    for spec in REGISTRY
    for rank in (1, 2)
}
OPTIONS = {
    "reduction": st.sampled_from(["mean", "sum", "none"]),
    "per_sample": st.booleans(),
    "gradient": st.booleans(),
    "hessian": st.booleans(),
    "dtype": st.sampled_from(["float64", "float32"]),
    "array_format": st.sampled_from(["list", "packed"]),
}


@st.composite
def near_valid(draw: st.DrawFn, many: bool = False) -> tuple[str, dict[str, Any], str | None]:
    """A loss name (any alias), a request for it that is valid or has one thing wrong, the fault.

    The arrays come from the reference's own sampler (tests/support/references), so a request
    without a fault is inside the loss's domain and must succeed unless the options ask for what
    the loss has not (a Hessian) or the values overflow.
    """
    name = draw(st.sampled_from(DRAWN_NAMES))
    spec = BY_NAME[name]
    case = CASES[spec.name]
    fault = draw(st.one_of(st.just(None), st.sampled_from(FAULTS)))
    ranks = range(spec.params.min_rank, spec.params.max_rank + 1)
    rank = draw(st.sampled_from(list(ranks)))
    params = dict(draw(st.sampled_from(case.params)))
    # class weights and similarity matrices fix the number of classes
    sized = [len(v) for v in params.values() if isinstance(v, list)]
    n, c = draw(st.integers(0, 6)), sized[0] if sized else draw(st.integers(1, 4))
    shape = (n, c) if rank == 2 else (n,)
    seed = draw(st.integers(0, 2**16))
    drawn = case.sample(shape, seed, params)
    pred, targ = drawn.pred, drawn.targ
    log_targets = _reads_log_targets(name, params)
    if log_targets:  # the alias reads the targets as log-probabilities: send some
        targ = np.log(draw_kind("soft", shape, np.random.default_rng(seed)))
    elif (
        "class_index" in spec.targets
        and targ is not None
        and targ.ndim == 2
        and draw(st.booleans())
    ):
        targ = np.argmax(targ, axis=1).astype(np.float64)  # one-hot rows as class indices
    # the arrays the loss takes: targets unless it takes none, its extra inputs by name
    arrays = {"predictions": pred, **({} if targ is None else {"targets": targ})}
    arrays |= {f"inputs.{k}": a for k, a in drawn.inputs.items()}
    which = draw(st.sampled_from(sorted(arrays)))
    array_fault = draw(st.sampled_from(PACKED_FAULTS)) if fault == "packed" else fault
    encoded = {k: _encode(a, array_fault if which == k else None, draw) for k, a in arrays.items()}
    if fault == "shape":  # the last array other than the predictions one row short or long
        key, a = [*arrays.items()][-1]
        encoded[key] = _encode(draw(st.sampled_from([a[:-1], np.r_[a.ravel(), 1.0]])), None, draw)
    doc: dict[str, Any] = {k: v for k, v in encoded.items() if not k.startswith("inputs.")}
    if drawn.inputs:
        doc["inputs"] = {
            k.removeprefix("inputs."): v
            for k, v in encoded.items()
            if k != k.removeprefix("inputs.")
        }
    if fault == "weights" or draw(st.booleans()):
        weights = np.random.default_rng(n).uniform(0.0, 2.0, size=n)
        if fault == "weights":
            weights = draw(st.sampled_from([-weights - 1, weights[:-1], weights + 1e308]))
        doc["sample_weight"] = _encode(weights, "element" if fault == "weights" else None, draw)
    for key, values in OPTIONS.items():
        if draw(st.booleans()):
            doc[key] = draw(values)
    if fault == "option":
        doc[draw(st.sampled_from(sorted(OPTIONS)))] = draw(json_scalars)
    if fault == "param":
        fields = list(spec.params.model_fields) or ["x"]
        key = draw(st.one_of(st.sampled_from(fields), st.text(max_size=5)))
        params[key] = draw(st.one_of(json_scalars, st.lists(st.floats(-2, 2), max_size=4)))
    if many:
        logits = params.get("from_logits", False)
        others = [
            {"name": other, "params": CASES[other].params[0]}
            for other in COMPATIBLE[spec.name, rank]
            if CASES[other].params[0].get("from_logits", False) == logits
        ]
        # log-probability targets are no other loss's targets
        chosen = (
            draw(st.lists(st.sampled_from(others), max_size=2))
            if others and not log_targets
            else []
        )
        doc["losses"] = [*chosen, {"name": name, "params": params}]
    else:
        doc["params"] = params
    if fault == "extra_key":
        doc[draw(st.text(max_size=6))] = draw(json_scalars)
    if fault == "drop_key":
        doc.pop(draw(st.sampled_from(sorted(doc))))
    return name, doc, fault


def _reads_log_targets(name: str, params: dict[str, Any]) -> bool:
    """Whether the name's alias reads the targets as log-probabilities (optax's
    kl_divergence_with_log_targets), unless the request's params say otherwise."""
    alias = alias_conventions(name)
    default = bool(alias is not None and alias.params.get("log_target"))
    return bool(params.get("log_target", default))


def request_body(request: tuple[str, dict[str, Any], str | None]) -> bytes:
    """The JSON text of a ``near_valid`` request."""
    return dumps(request[1])


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(dumps),
    json_objects.map(dumps),
    nested(),
    near_valid().map(request_body),
)


# --- the properties ------------------------------------------------------------------------------


def assert_documented_error(exc: LossdError) -> None:
    """A LossdError with a documented status and code, a short detail and no input echoed."""
    assert exc.code in DOCUMENTED.get(exc.status, set()), (exc.status, exc.code, exc.detail)
    assert exc.detail
    document = orjson.dumps(exc.to_problem())
    assert len(document) < MAX_ERROR_BYTES, document[:500]


def _length(value: Any) -> int:
    """The length of axis 0 of a response array (a list or a packed object)."""
    return int(value["shape"][0]) if isinstance(value, dict) else len(value)


def assert_result(result: dict[str, Any], doc: dict[str, Any] | None) -> None:
    """A response document of one loss: finite numbers, arrays of the batch's length."""
    assert result["loss"] in BY_NAME
    assert result["reduction"] in ("mean", "sum", "none")
    n = result["n"]
    assert isinstance(n, int) and n >= 0
    assert math.isfinite(result["weight_sum"]) and result["weight_sum"] >= 0
    if result["reduction"] == "none":
        assert result["value"] is None
    else:
        assert isinstance(result["value"], float) and math.isfinite(result["value"])
    for key in ARRAY_KEYS:
        if key not in result:
            continue
        value = result[key]
        assert _length(value) == n
        if isinstance(value, list):
            assert all(math.isfinite(x) for x in np.ravel(np.asarray(value, dtype=float)))
    if doc is not None:
        assert (doc.get("reduction", "mean")) == result["reduction"]
        assert ("per_sample" in result) == doc.get("per_sample", True)
        assert ("gradient" in result) == doc.get("gradient", False)


def check_in_process(body: bytes) -> None:
    """Both evaluation entry points answer ``body`` with a result or a documented LossdError."""
    routes = {
        "one": lambda b: evaluate_one("mse", b, LIMIT),
        "many": lambda b: evaluate_many(b, LIMIT),
    }
    for route, evaluate in routes.items():
        try:
            out = evaluate(bytearray(body))  # a bytearray, as the route passes it
        except LossdError as exc:
            assert_documented_error(exc)
            continue
        assert isinstance(out, Reply)
        response = orjson.loads(out.body.tobytes())
        results = response["results"] if route == "many" else [response]
        assert results
        for result in results:
            assert_result(result, None)


@IN_PROCESS
@given(st.binary(max_size=400))
@example(b"\xff\xfe{")
@example(b'{"predictions": [1], "targets": [1]}')
@example(b'{"predictions": {"dtype": "float64", "shape": [0, 9223372036854775807], "data": ""}, '
         b'"targets": {"dtype": "float64", "shape": [0, 9223372036854775807], "data": ""}}')  # fmt: skip
def test_arbitrary_bytes_in_process(body: bytes) -> None:
    """Arbitrary bytes as a body: a result or a documented 4xx, on both evaluation routes."""
    check_in_process(body)


@IN_PROCESS
@given(st.one_of(json_values, json_objects, near_valid().map(request_body)))
@example(b'{"predictions": [1e400], "targets": [1]}')
@example(b'{"predictions": [1], "targets": [1], "params": {"delta": 100000000000000000000000}}')
@example(b'{"predictions": [[1]], "targets": [1], "sample_weight": [1e308], "reduction": "sum"}')
def test_arbitrary_json_in_process(body: object) -> None:
    """Arbitrary JSON (nested, huge numbers, big integers, unicode): a result or a documented 4xx."""
    check_in_process(body if isinstance(body, bytes) else dumps(body))


def must_succeed(names: list[str], doc: dict[str, Any], fault: str | None) -> bool:
    """A request without a fault succeeds, unless it asks a loss without one for its Hessian or
    sends an empty batch as the JSON list ``[]``, which is rank 1 whatever the other array's rank."""
    specs = [BY_NAME[name] for name in names]
    no_hessian = doc.get("hessian") is True and not all(spec.hessian for spec in specs)
    empty_list = [] in (doc.get("predictions"), doc.get("targets"))
    # scikit-learn's log_loss is multiclass on rank-2 predictions: another loss than generated for
    other_loss = any(_loss_for(name, doc) != BY_NAME[name].name for name in names)
    return fault is None and not no_hessian and not empty_list and not other_loss


def _loss_for(name: str, doc: dict[str, Any]) -> str:
    """The loss a name evaluates on this batch (an alias may send rank-2 predictions elsewhere)."""
    alias = alias_conventions(name)
    pred = doc.get("predictions")
    shape = pred.get("shape") if isinstance(pred, dict) else None
    nested = isinstance(pred, list) and bool(pred) and isinstance(pred[0], list)
    rank = len(shape) if isinstance(shape, list) else 2 if nested else 1
    if alias is not None and alias.rows_loss is not None and rank == 2:
        return alias.rows_loss
    return BY_NAME[name].name


def check_near_valid(results: list[dict[str, Any]], names: list[str], doc: dict[str, Any]) -> None:
    """One well-formed result per loss, in order, for the batch that was sent."""
    assert [r["loss"] for r in results] == [_loss_for(name, doc) for name in names]
    pred = doc["predictions"]
    n = len(pred) if isinstance(pred, list) else pred["shape"][0]
    for result in results:
        assert result["n"] == n
        assert_result(result, doc)


@IN_PROCESS
@given(near_valid(), near_valid(many=True))
def test_near_valid_requests_in_process(
    one: tuple[str, dict[str, Any], str | None], many: tuple[str, dict[str, Any], str | None]
) -> None:
    """Real losses, aliases and shapes, one thing maybe wrong: the right result or a documented 4xx.

    A request with nothing wrong must succeed, on both routes.
    """
    name, doc, fault = one
    try:
        result = orjson.loads(evaluate_one(name, bytearray(dumps(doc)), LIMIT).body.tobytes())
    except LossdError as exc:
        assert not must_succeed([name], doc, fault), (exc.code, exc.detail)
        assert_documented_error(exc)
    else:
        check_near_valid([result], [name], doc)
    _, doc, fault = many
    names = [entry["name"] for entry in doc.get("losses", [])]
    try:
        response = orjson.loads(evaluate_many(bytearray(dumps(doc)), LIMIT).body.tobytes())
    except LossdError as exc:
        assert not must_succeed(names, doc, fault), (exc.code, exc.detail)
        assert_documented_error(exc)
    else:
        check_near_valid(response["results"], names, doc)


@IN_PROCESS
@given(nested())
def test_deep_nesting_in_process(body: bytes) -> None:
    """Arrays and objects nested up to 2000 deep: a 422, never a recursion error."""
    with pytest.raises(LossdError) as caught:
        evaluate_one("mse", bytearray(body), LIMIT)
    assert caught.value.status == 422
    assert_documented_error(caught.value)


# --- over HTTP -----------------------------------------------------------------------------------

CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/problem+json",
        "text/plain",
        "application/octet-stream",
        "multipart/form-data; boundary=x",
        "",
    ]
)


def assert_http_answer(response: httpx.Response, media: str) -> None:
    """A 200 JSON result or a documented problem+json error."""
    status = response.status_code
    if status == 200:
        assert response.headers["content-type"] == "application/json"
        doc = response.json()
        for result in doc.get("results", [doc]):
            assert_result(result, None)
        return
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] in DOCUMENTED.get(status, set()), (status, problem)
    assert len(response.content) < MAX_ERROR_BYTES
    assert "Traceback" not in response.text
    # besides JSON, /loss takes the binary framing and multipart .npy parts (issue 13)
    binary = media.startswith(("application/octet-stream", "multipart/form-data"))
    if not binary and (not media.startswith("application/") or "json" not in media):
        assert status == 415


@OVER_HTTP
@given(bodies, CONTENT_TYPES, st.sampled_from(["/loss/mse", "/loss/cross_entropy", "/loss"]))
def test_arbitrary_bodies_over_http(
    client: httpx.Client, body: bytes, media: str, path: str
) -> None:
    """Arbitrary bodies and content types over HTTP: 200 or documented problem+json, never 5xx."""
    headers = {"content-type": media} if media else {}
    response = client.post(path, content=body, headers=headers)
    assert_http_answer(response, media or "none")


@OVER_HTTP
@given(near_valid())
def test_near_valid_requests_over_http(
    client: httpx.Client, request: tuple[str, dict[str, Any], str | None]
) -> None:
    """Near-valid requests to every loss's route, aliases included: 200 or a documented 4xx."""
    name, doc, fault = request
    response = client.post(f"/loss/{name}", content=dumps(doc), headers=JSON)
    assert_http_answer(response, "application/json")
    if must_succeed([name], doc, fault):
        assert response.status_code == 200, response.text
        check_near_valid([response.json()], [name], doc)
