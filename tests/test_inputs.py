"""The ``inputs`` request field (issue 15): the extra named arrays of gaussian_nll,
margin_ranking, cosine_embedding and triplet_margin on every wire (JSON lists, packed, the binary
framing, multipart ``.npy`` parts, /v2 JSON and binary tensors), ``input_gradients`` out, the
refusals that name the field, and the memory account (the blockwise execution that cuts them
with the rows: tests/test_memory.py, for every variant).

The numbers themselves are checked elsewhere: against torch in tests/test_differential.py, against
the references and finite differences in tests/test_losses.py, at the edges in tests/test_edges.py.
Here the same request must give the same bytes whatever carries it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from service import core
from service.api._docs import loss_body
from service.app import create_app
from service.codecs.loss import evaluate_one
from service.errors import LossdError
from service.losses import resolve
from service.settings import Settings
from tests.support.bodies import BINARY, HEADER, framed_body, npy, packed, split_framed

rng = np.random.default_rng(15)


@dataclass(frozen=True)
class Request:
    """One evaluation with extra inputs: its loss, arrays and other fields."""

    loss: str
    predictions: np.ndarray
    targets: np.ndarray | None
    inputs: dict[str, np.ndarray]
    fields: dict[str, Any] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """The top-level arrays (predictions, and targets when the loss takes them)."""
        found = {"predictions": self.predictions}
        if self.targets is not None:
            found["targets"] = self.targets
        return found


ASKED = {"gradient": True, "input_gradients": True, "reduction": "sum"}
REQUESTS = {
    "gaussian_nll": Request(
        "gaussian_nll",
        rng.normal(size=(6, 3)),
        rng.normal(size=(6, 3)),
        {"var": rng.uniform(0.1, 2.0, size=(6, 3))},
        {**ASKED, "hessian": True, "params": {"full": True}},
    ),
    "gaussian_nll-var-per-sample": Request(
        "gaussian_nll",
        rng.normal(size=(5, 2)),
        rng.normal(size=(5, 2)),
        {"var": rng.uniform(0.1, 2.0, size=5)},
        {**ASKED, "sample_weight": rng.uniform(0.5, 2, size=5).tolist()},
    ),
    "margin_ranking": Request(
        "margin_ranking",
        rng.normal(size=7),
        rng.choice([-1.0, 1.0], size=7),
        {"input2": rng.normal(size=7)},
        {**ASKED, "params": {"margin": 0.25}},
    ),
    "cosine_embedding": Request(
        "cosine_embedding",
        rng.normal(size=(5, 4)),
        rng.choice([-1.0, 1.0], size=5),
        {"input2": rng.normal(size=(5, 4))},
        {**ASKED, "hessian": True, "reduction": "mean"},
    ),
    "triplet_margin": Request(
        "triplet_margin",
        rng.normal(size=(6, 3)),
        None,
        {"positive": rng.normal(size=(6, 3)), "negative": rng.normal(size=(6, 3))},
        {**ASKED, "params": {"swap": True, "p": 3.0}},
    ),
}
LOSS_MARKS = pytest.mark.loss(
    "gaussian_nll", "margin_ranking", "cosine_embedding", "triplet_margin"
)


def post(client: httpx.Client, request: Request, how: str, **extra: Any) -> httpx.Response:
    """The request to /loss/{name} in one of the four body formats."""
    path, fields = f"/loss/{request.loss}", {**request.fields, **extra}
    arrays = request.arrays()
    if how == "json":
        named = {k: v.tolist() for k, v in request.inputs.items()}
        return client.post(path, json={**{k: v.tolist() for k, v in arrays.items()},
                                       "inputs": named, **fields})  # fmt: skip
    if how == "packed":
        named = {k: packed(v) for k, v in request.inputs.items()}
        return client.post(path, json={**{k: packed(v) for k, v in arrays.items()},
                                       "inputs": named, **fields})  # fmt: skip
    if how == "binary":  # the bytes in the order the header lists the arrays, inputs' last

        def described(a: np.ndarray) -> dict[str, Any]:
            return {"dtype": a.dtype.name, "shape": list(a.shape), "binary_data_size": a.nbytes}

        doc = {**{k: described(v) for k, v in arrays.items()},
               "inputs": {k: described(v) for k, v in request.inputs.items()}, **fields}  # fmt: skip
        header = orjson.dumps(doc)
        every = [*arrays.values(), *request.inputs.values()]
        raw = b"".join(np.ascontiguousarray(a).tobytes() for a in every)
        return client.post(path, content=header + raw,
                           headers={"Content-Type": BINARY, HEADER: str(len(header))})  # fmt: skip
    files = {k: (f"{k}.npy", npy(v), BINARY) for k, v in arrays.items()}
    files |= {f"inputs.{k}": (f"{k}.npy", npy(v), BINARY) for k, v in request.inputs.items()}
    return client.post(path, files=files, data={"options": orjson.dumps(fields).decode()})


def v2(client: httpx.Client, request: Request, binary: bool) -> httpx.Response:
    """The same request to /v2/models/{name}/infer: the extra inputs are input tensors of their
    names; JSON ``data`` or binary tensor data in, every output in binary."""
    fields = dict(request.fields)
    parameters = {k: fields.pop(k) for k in ("reduction", "gradient", "hessian") if k in fields}
    parameters |= fields.pop("params", {})
    weight = fields.pop("sample_weight", None)
    fields.pop("input_gradients")
    arrays = {**request.arrays(), **request.inputs}
    if weight is not None:
        arrays["sample_weight"] = np.asarray(weight)
    names = ["value", "per_sample", "gradient"] + (["hessian"] if "hessian" in parameters else [])
    names += [f"input_gradients.{k}" for k in request.inputs]
    outputs = [{"name": n, "parameters": {"binary_data": True}} for n in names]
    parameters = {k: v for k, v in parameters.items() if k not in ("gradient", "hessian")}
    tensors, raw = [], b""
    for name, array in arrays.items():
        tensor: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": "FP64"}
        if binary:
            tensor["parameters"] = {"binary_data_size": array.nbytes}
            raw += np.ascontiguousarray(array, dtype="<f8").tobytes()
        else:
            tensor["data"] = array.reshape(-1).tolist()
        tensors.append(tensor)
    header = orjson.dumps({"inputs": tensors, "outputs": outputs, "parameters": parameters})
    headers = {"Content-Type": BINARY if binary else "application/json", HEADER: str(len(header))}
    return client.post(f"/v2/models/{request.loss}/infer", content=header + raw, headers=headers)


def v2_arrays(response: httpx.Response) -> dict[str, bytes]:
    """A binary /v2 answer's outputs as their raw bytes, by name."""
    assert response.status_code == 200, response.text
    size = int(response.headers[HEADER])
    doc = orjson.loads(response.content[:size])
    found, offset = {}, size
    for output in doc["outputs"]:
        length = output["parameters"]["binary_data_size"]
        found[output["name"]] = response.content[offset : offset + length]
        offset += length
    return found


@LOSS_MARKS
@pytest.mark.parametrize("case", REQUESTS)
def test_every_wire_gives_the_same_bytes(client: httpx.Client, case: str) -> None:
    """JSON lists, packed arrays, the binary framing and multipart parts named inputs.<name>
    give the JSON answer byte for byte; ``array_format: binary`` answers its numbers' bytes
    whatever carried the request; /v2 with the extra arrays as input tensors of their names
    (JSON data or binary tensor data) answers the same bytes for value, per_sample, the
    derivatives and input_gradients.<name>."""
    request = REQUESTS[case]
    reference = post(client, request, "json")
    assert reference.status_code == 200, reference.text
    doc = reference.json()
    assert set(doc["input_gradients"]) == set(request.inputs)
    for name, array in request.inputs.items():
        assert np.asarray(doc["input_gradients"][name]).shape == array.shape
    for how in ("packed", "binary", "multipart"):
        response = post(client, request, how)
        assert response.status_code == 200, (how, response.text)
        assert response.content == reference.content, how
    answers = []
    for how in ("json", "packed", "binary", "multipart"):
        header, arrays = split_framed(post(client, request, how, array_format="binary"))
        names = [k for k in ("per_sample", "gradient", "hessian") if k in header]
        names += [f"input_gradients.{k}" for k in header["input_gradients"]]
        answers.append(dict(zip(names, (a.tobytes() for a in arrays), strict=True)))
    framed = answers[0]
    assert all(answer == framed for answer in answers)
    want = {k: np.asarray(doc[k], dtype=np.float64).tobytes() for k in framed if k in doc}
    want |= {
        f"input_gradients.{k}": np.asarray(v, dtype=np.float64).tobytes()
        for k, v in doc["input_gradients"].items()
    }
    assert framed == want
    for binary in (False, True):
        outputs = v2_arrays(v2(client, request, binary))
        assert outputs.pop("value") == np.float64(doc["value"]).tobytes()
        assert outputs == framed, binary


@LOSS_MARKS
def test_several_losses_share_the_inputs_they_take(client: httpx.Client) -> None:
    """POST /loss gives each loss the arrays it takes: mse and gaussian_nll on one batch with
    inputs.var answer as the two single-loss requests do (mse's input_gradients empty, the
    targets and inputs.var decoded once)."""
    request = REQUESTS["gaussian_nll-var-per-sample"]
    body = {**request.fields, "predictions": request.predictions.tolist(),
            "targets": request.targets.tolist(), "inputs": {"var": request.inputs["var"].tolist()},
            "losses": [{"name": "mse"}, {"name": "gaussian_nll", "params": {"full": True}}]}  # fmt: skip
    response = client.post("/loss", json=body)
    assert response.status_code == 200, response.text
    mse, gaussian = response.json()["results"]
    assert mse["input_gradients"] == {}
    alone = {k: v for k, v in body.items() if k not in ("losses", "inputs")}
    assert mse == client.post("/loss/mse", json=alone).json()
    assert gaussian == post(client, request, "json", params={"full": True}).json()


# --- refusals that name the field ---------------------------------------------------------------

P3, T3 = [[0.5, 1.0], [0.0, -1.0], [2.0, 0.5]], [[0.0, 1.0], [1.0, -1.0], [2.0, 0.0]]
REFUSALS: list[tuple[str, str, dict[str, Any], list[Any], str]] = [
    ("missing", "gaussian_nll", {"predictions": P3, "targets": T3}, ["inputs", "var"],
     "`inputs.var` is required"),
    ("unknown-name", "gaussian_nll",
     {"predictions": P3, "targets": T3, "inputs": {"var": [1.0, 1.0, 1.0], "vra": [1.0] * 3}},
     ["inputs", "vra"], "did you mean inputs.var"),
    ("input-of-another-loss", "mse", {"predictions": P3, "targets": T3, "inputs": {"var": [1.0] * 3}},
     ["inputs", "var"], "mse takes no input"),
    ("wrong-shape", "gaussian_nll",
     {"predictions": P3, "targets": T3, "inputs": {"var": [[1.0, 1.0, 1.0]] * 3}},
     ["inputs", "var"], "takes it of shape [3, 2] or [3] or [3, 1]"),
    ("wrong-rows", "margin_ranking",
     {"predictions": [1.0, 2.0], "targets": [1.0, -1.0], "inputs": {"input2": [1.0]}},
     ["inputs", "input2"], "has shape [1]"),
    ("non-finite-packed", "gaussian_nll",
     {"predictions": P3, "targets": T3,
      "inputs": {"var": packed(np.array([1.0, np.inf, 1.0]))}}, ["inputs", "var", 1],
     "NaN or Infinity"),
    ("not-a-number", "gaussian_nll",
     {"predictions": P3, "targets": T3, "inputs": {"var": [1.0, "one", 1.0]}},
     ["inputs", "var", 1], "must be a number"),
    ("negative-variance", "gaussian_nll",
     {"predictions": P3, "targets": T3, "inputs": {"var": [1.0, -0.5, 1.0]}},
     ["inputs", "var", 1], "variances must be >= 0"),
    ("not-an-object", "gaussian_nll", {"predictions": P3, "targets": T3, "inputs": [[1.0] * 3]},
     ["inputs"], "must be an object"),
    ("targets-sent", "triplet_margin",
     {"predictions": P3, "targets": T3, "inputs": {"positive": P3, "negative": T3}},
     ["targets"], "takes no targets"),
    ("no-targets", "cosine_embedding", {"predictions": P3, "inputs": {"input2": T3}},
     ["targets"], "`targets` is required"),
    ("labels-not-plus-minus-one", "cosine_embedding",
     {"predictions": P3, "targets": [1.0, 0.0, -1.0], "inputs": {"input2": T3}},
     ["targets", 1], "needs targets in {-1, 1}"),
    ("labels-per-element", "cosine_embedding",
     {"predictions": P3, "targets": [[1.0, 1.0]] * 3, "inputs": {"input2": T3}},
     ["targets"], "one target per pair of rows, of shape (N,)"),
]  # fmt: skip


@LOSS_MARKS
@pytest.mark.parametrize(
    ("loss", "body", "loc", "fragment"),
    [pytest.param(loss, body, loc, frag, id=label) for label, loss, body, loc, frag in REFUSALS],
)
def test_bad_inputs_are_422_problems_naming_the_field(
    client: httpx.Client, loss: str, body: dict[str, Any], loc: list[Any], fragment: str
) -> None:
    """A missing input, an unknown name (the closest suggested), a shape that does not fit the
    predictions, a non-finite or non-numeric element, a value outside the domain, targets
    sent to a loss that takes none (or none to one that takes them) are problem+json 422s
    whose errors[0].loc names the field."""
    response = client.post(f"/loss/{loss}", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["loc"] == loc, problem
    assert fragment in problem["detail"], problem["detail"]


@LOSS_MARKS
def test_bad_inputs_on_the_other_wires(client: httpx.Client) -> None:
    """The same refusals from multipart parts, the binary framing, POST /loss and /v2: a part
    inputs. without a name, a binary member without its size, an input no loss of a request
    takes, a missing or unknown input tensor and an output of an input the loss lacks."""
    p = np.array([[0.5, 1.0], [0.0, -1.0]])
    files = {"predictions": ("p.npy", npy(p), BINARY), "targets": ("t.npy", npy(p), BINARY),
             "inputs.": ("v.npy", npy(np.ones(2)), BINARY)}  # fmt: skip
    response = client.post("/loss/gaussian_nll", files=files)
    assert response.status_code == 422 and "inputs.<name>" in response.json()["detail"]
    body, headers = framed_body({"inputs": {"var": {"dtype": "float64", "shape": [2]}}},
                                {"predictions": p, "targets": p})  # fmt: skip
    response = client.post("/loss/gaussian_nll", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"][:2] == ["inputs", "var"]
    response = client.post("/loss", json={"predictions": p.tolist(), "targets": p.tolist(),
                                          "inputs": {"input2": p.tolist()},
                                          "losses": [{"name": "mse"}, {"name": "huber"}]})  # fmt: skip
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["inputs", "input2"]
    response = client.post("/loss", json={"predictions": p.tolist(), "targets": p.tolist(),
                                          "losses": [{"name": "mse"}, {"name": "gaussian_nll"}]})  # fmt: skip
    assert response.status_code == 422
    assert response.json()["detail"].startswith("losses[1] (gaussian_nll): `inputs.var`")

    def tensor(name: str, array: np.ndarray) -> dict[str, Any]:
        return {"name": name, "shape": list(array.shape), "datatype": "FP64",
                "data": array.reshape(-1).tolist()}  # fmt: skip

    for inputs, outputs, fragment in (
        ([tensor("predictions", p), tensor("targets", p)], None, "`inputs.var` is required"),
        ([tensor("predictions", p), tensor("targets", p), tensor("var", p), tensor("vr", p)],
         None, "takes no input `vr`"),
        ([tensor("predictions", p), tensor("targets", p), tensor("var", p[:1])], None,
         "has shape [1, 2]"),
        ([tensor("predictions", p), tensor("targets", p), tensor("var", p)],
         [{"name": "input_gradients.input2"}], "no output input_gradients.input2"),
    ):  # fmt: skip
        doc: dict[str, Any] = {"inputs": inputs}
        if outputs is not None:
            doc["outputs"] = outputs
        response = client.post("/v2/models/gaussian_nll/infer", json=doc)
        assert response.status_code == 422, response.text
        assert fragment in response.json()["error"], response.json()


# --- the catalogue, the model metadata, the OpenAPI document --------------------------------------


@LOSS_MARKS
def test_the_catalogue_and_the_model_metadata_list_the_inputs(client: httpx.Client) -> None:
    """GET /losses/{name} lists each extra input (name, shapes, differentiable) and a loss that
    takes no targets lists no target form; /v2/models/{name} lists them as input tensors and
    their gradients as outputs, and no targets tensor for triplet_margin."""
    entry = client.get("/losses/GaussianNLLLoss").json()
    assert [x["name"] for x in entry["inputs"]] == ["var"]
    assert entry["inputs"][0]["shapes"] == ["same", "rows", "column"]
    assert entry["alias_conventions"]["GaussianNLLLoss"]["reduce_over"] == "elements"
    triplet = client.get("/losses/triplet_margin").json()
    assert triplet["targets"] == [] and [x["name"] for x in triplet["inputs"]] == [
        "positive",
        "negative",
    ]
    assert client.get("/losses/cosine_embedding").json()["targets"] == ["per_sample"]
    assert client.get("/losses/mse").json()["inputs"] == []
    meta = client.get("/v2/models/triplet_margin").json()
    assert [t["name"] for t in meta["inputs"]] == [
        "predictions",
        "sample_weight",
        "positive",
        "negative",
    ]
    assert [t["name"] for t in meta["outputs"]][-2:] == [
        "input_gradients.positive",
        "input_gradients.negative",
    ]
    var = next(
        t for t in client.get("/v2/models/gaussian_nll").json()["inputs"] if t["name"] == "var"
    )
    assert var["shapes"] == [[-1], [-1, -1], [-1, 1]] and not var["optional"]


def test_the_openapi_document_shows_inputs_with_an_example() -> None:
    """The request schemas have ``inputs`` (named arrays, with an example) and
    ``input_gradients``; the result schema has ``input_gradients``; the gaussian_nll example
    sends inputs.var; the multipart body takes inputs.<name> parts."""
    spec = create_app(Settings()).openapi()
    schemas = spec["components"]["schemas"]
    for model in ("LossRequest", "MultiLossRequest"):
        inputs = schemas[model]["properties"]["inputs"]
        assert inputs["examples"] == [{"var": [0.5, 1.0, 2.0]}]
        assert "input_gradients" in schemas[model]["properties"]
        assert "targets" not in schemas[model].get("required", [])
    assert "input_gradients" in schemas["LossResult"]["properties"]
    items = schemas["LossInfo"]["properties"]["inputs"]["items"]
    assert items == {"$ref": "#/components/schemas/ExtraInputInfo"}
    body = spec["paths"]["/loss/{name}"]["post"]["requestBody"]["content"]
    examples = body["application/json"]["examples"]
    assert any("inputs" in example["value"] for example in examples.values())
    multipart = loss_body("LossRequest")["requestBody"]["content"]["multipart/form-data"]
    assert "inputs.<name>" in multipart["schema"]["additionalProperties"]["description"]


# --- the core: the memory account and long lists ----------------------------------------------------


@LOSS_MARKS
def test_the_memory_demand_counts_the_inputs_and_their_gradients() -> None:
    """``Demand.bytes_needed`` grows by each extra input's decoded bytes and compute copy, and
    with input_gradients by its gradient in the compute dtype and as response text."""
    rows, columns = 1000, 4
    predictions = core.Declared(rows, rows * columns, 8)
    var = core.Declared(rows, rows, 8)
    spec = resolve("gaussian_nll")
    base = core.Demand(predictions, [predictions, predictions], core.Options(), 25.0, ((spec, {}),))
    with_var = core.Demand(predictions, [predictions, predictions, var], core.Options(), 25.0,
                           ((spec, {}),), extra=[var])  # fmt: skip
    asked = core.Demand(predictions, [predictions, predictions, var],
                        core.Options(input_gradients=True), 25.0, ((spec, {}),), extra=[var])  # fmt: skip
    assert with_var.bytes_needed() - base.bytes_needed() == rows * (8 + 8)
    assert asked.bytes_needed() - with_var.bytes_needed() == rows * (8 + 25)


@LOSS_MARKS
def test_long_json_lists_under_inputs_are_parsed_like_predictions() -> None:
    """A JSON list under inputs long enough to be cut out of the body (64 KiB) is read by the
    number parser, as predictions are: the answer equals the packed request's."""
    n = 20_000
    pred, var = rng.normal(size=n), rng.uniform(0.5, 2.0, size=n)
    lists = {"predictions": pred.tolist(), "targets": pred[::-1].tolist(),
             "inputs": {"var": var.tolist()}}  # fmt: skip
    as_packed = {"predictions": packed(pred), "targets": packed(pred[::-1].copy()),
                 "inputs": {"var": packed(var)}}  # fmt: skip
    one = evaluate_one("gaussian_nll", orjson.dumps(lists), 10**6).body.tobytes()
    two = evaluate_one("gaussian_nll", orjson.dumps(as_packed), 10**6).body.tobytes()
    assert one == two
    with pytest.raises(LossdError) as caught:
        bad = {**lists, "inputs": {"var": [*var.tolist()[:-1], None]}}
        evaluate_one("gaussian_nll", orjson.dumps(bad), 10**6)
    assert caught.value.errors[0][0][:2] == ["inputs", "var"]
