"""Aliases carry their library's defaults, and any request can reduce over elements.

The values here are checked against the formulas the libraries document (written out with NumPy
below); ``tests/test_differential.py`` compares against the libraries themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from service import core
from service.codecs.loss import evaluate_many, evaluate_one
from service.losses import REGISTRY, fold, resolve
from service.losses._aliases import CONVENTIONS
from tests.support.harness import RTOL, evaluate

RNG = np.random.default_rng(7)
PRED = RNG.normal(size=(4, 3))
TARG = RNG.normal(size=(4, 3))


def ask(name: str, **doc: Any) -> dict[str, Any]:
    """The /loss/{name} response document for ``doc``, in-process."""
    body = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    answer: dict[str, Any] = orjson.loads(evaluate_one(name, body, 10**6).body.tobytes())
    return answer


def test_every_alias_with_conventions_is_an_alias_of_a_registered_loss() -> None:
    """The conventions table names only aliases the registry lists."""
    listed = {fold(alias) for spec in REGISTRY for alias in spec.aliases}
    assert {fold(name) for name in CONVENTIONS} <= listed


def test_the_catalogue_lists_each_alias_with_its_defaults() -> None:
    """GET /losses shows, per loss, what each of its aliases brings from its library."""
    entries = {entry["name"]: entry for entry in core.catalogue()}
    for name, alias in CONVENTIONS.items():
        entry = entries[resolve(name).name]
        assert entry["alias_conventions"][name] == alias.entry(resolve(name).params.model_fields)
    assert entries["mse"]["alias_conventions"]["MSELoss"]["reduce_over"] == "elements"
    assert entries["cross_entropy"]["alias_conventions"]["CrossEntropyLoss"]["params"] == {
        "from_logits": True
    }


@pytest.mark.loss("mse")
def test_torch_aliases_sum_over_every_element() -> None:
    """MSELoss with sum on a (4, 3) batch is the sum of twelve squares; mse sums row means."""
    squares = (PRED - TARG) ** 2
    torch_like = ask("MSELoss", predictions=PRED, targets=TARG, reduction="sum", gradient=True)
    assert torch_like["value"] == pytest.approx(squares.sum(), rel=RTOL)
    assert torch_like["reduce_over"] == "elements"
    assert torch_like["weight_sum"] == 12.0
    np.testing.assert_allclose(torch_like["gradient"], 2 * (PRED - TARG), rtol=RTOL)
    np.testing.assert_allclose(torch_like["per_sample"], squares.mean(axis=1), rtol=RTOL)
    keras_like = ask("mse", predictions=PRED, targets=TARG, reduction="sum")
    assert keras_like["value"] == pytest.approx(squares.mean(axis=1).sum(), rel=RTOL)
    # the mean is the same either way
    mean = ask("MSELoss", predictions=PRED, targets=TARG)["value"]
    assert mean == pytest.approx(squares.mean(), rel=RTOL)


@pytest.mark.loss("mse")
def test_an_explicit_reduce_over_wins_over_the_alias() -> None:
    """A request's own reduce_over (and params) beat the alias's."""
    answer = ask("MSELoss", predictions=PRED, targets=TARG, reduction="sum", reduce_over="samples")
    assert answer["value"] == pytest.approx(((PRED - TARG) ** 2).mean(axis=1).sum(), rel=RTOL)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.loss("mse", "huber", "binary_cross_entropy")
def test_reduce_over_elements_with_weights(reduction: str) -> None:
    """Over elements each row's terms count with the row's weight; the mean is the weighted
    mean of all N·D terms and its gradient the derivative of exactly that."""
    weight = RNG.uniform(0.5, 2.0, size=4)
    for name, pred, targ in (
        ("mse", PRED, TARG),
        ("huber", PRED, TARG),
        ("binary_cross_entropy", RNG.uniform(0.1, 0.9, (4, 3)), RNG.uniform(0, 1, (4, 3))),
    ):
        spec = resolve(name)
        rows = evaluate(spec, pred, targ, weight, reduction="none", gradient=True)
        over = evaluate(spec, pred, targ, weight, reduction=reduction, reduce_over="elements",
                        gradient=True)  # fmt: skip
        assert rows.per_sample is not None and rows.gradient is not None
        terms = rows.per_sample * 3  # the row's three terms add up to D times its mean
        total = float(weight @ terms)
        expected = total if reduction == "sum" else total / (3 * weight.sum())
        assert over.value == pytest.approx(expected, rel=RTOL)
        assert over.weight_sum == pytest.approx(3 * weight.sum(), rel=RTOL)
        # the gradient of l_i = mean of terms, with weights w_i folded in, is per term 1/D of it
        per_term = rows.gradient * 3 * weight[:, None]
        factor = 1.0 if reduction == "sum" else 1.0 / (3 * weight.sum())
        np.testing.assert_allclose(over.gradient, per_term * factor, rtol=1e-12, atol=1e-15)


@pytest.mark.loss("cross_entropy")
def test_cross_entropy_loss_takes_logits_and_torch_names() -> None:
    """CrossEntropyLoss reads logits (torch's default) and torch's `weight` is class_weight."""
    z = RNG.normal(size=(5, 3))
    y = np.array([0, 2, 1, 1, 0])
    weight = [0.5, 1.0, 2.0]
    answer = ask("CrossEntropyLoss", predictions=z, targets=y, params={"weight": weight})
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    cw = np.asarray(weight)[y]
    expected = -(cw * log_p[np.arange(5), y]).sum() / cw.sum()  # torch's weighted mean
    assert answer["value"] == pytest.approx(expected, rel=RTOL)
    assert answer["params"]["from_logits"] is True
    assert answer["params"]["class_weight"] == weight
    # the canonical name keeps Keras' default: probabilities
    assert ask("cross_entropy", predictions=np.full((1, 2), 0.5), targets=[0])["params"][
        "from_logits"
    ] is False


@pytest.mark.loss("poisson")
def test_poisson_nll_loss_takes_log_rates() -> None:
    """PoissonNLLLoss defaults to log_input: true, as torch does; explicit params still win."""
    x = RNG.normal(size=6)
    y = RNG.poisson(2.0, size=6).astype(float)
    answer = ask("PoissonNLLLoss", predictions=x, targets=y)
    assert answer["value"] == pytest.approx(float(np.mean(np.exp(x) - y * x)), rel=RTOL)
    rates = ask("PoissonNLLLoss", predictions=np.exp(x), targets=y, params={"log_input": False})
    assert rates["params"]["log_input"] is False


@pytest.mark.loss("binary_cross_entropy", "cross_entropy")
def test_log_loss_is_binary_on_vectors_and_multiclass_on_rows() -> None:
    """scikit-learn's log_loss: (N,) positive-class probabilities, or (N, C) rows and labels."""
    p = np.array([0.9, 0.2, 0.6])
    y = np.array([1.0, 0.0, 0.0])
    binary = ask("log_loss", predictions=p, targets=y)
    assert binary["loss"] == "binary_cross_entropy"
    assert binary["value"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    rows = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 2])
    multi = ask("log_loss", predictions=rows, targets=labels)
    assert multi["loss"] == "cross_entropy"
    assert multi["value"] == pytest.approx(-np.mean(np.log([0.7, 0.8])), rel=RTOL)


@pytest.mark.loss("mse", "cross_entropy")
def test_post_loss_applies_each_alias_on_its_own() -> None:
    """In POST /loss each loss's alias brings its own conventions."""
    body = orjson.dumps(
        {
            "predictions": PRED,
            "targets": TARG,
            "reduction": "sum",
            "losses": [{"name": "MSELoss"}, {"name": "mse"}],
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    torch_like, keras_like = orjson.loads(evaluate_many(body, 10**6).body.tobytes())["results"]
    assert torch_like["reduce_over"] == "elements"
    assert keras_like["reduce_over"] == "samples"
    assert torch_like["value"] == pytest.approx(3 * keras_like["value"], rel=RTOL)
