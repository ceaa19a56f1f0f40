"""Registry-wide contract tests: every registered loss is checked by the same harness.

A new loss is covered by adding its reference (and its ``Case``) to the module of its family in
``tests/support/references``.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import pkgutil
import threading
from decimal import Decimal, localcontext
from typing import Any

import numba
import numpy as np
import orjson
import pydantic
import pytest

import service.losses
from service import core
from service.codecs.loss import evaluate_one
from service.core import validate_params
from service.errors import InvalidParams, LossdError
from service.jit import SERIAL_ELEMENTS
from service.losses import REGISTRY, LossSpec, resolve
from service.losses._spec import CatalogueEntry
from tests.support.harness import (
    ATOL,
    HARNESSED,
    REDUCTIONS,
    RTOL,
    VARIANT_IDS,
    VARIANTS,
    arrays_document,
    assert_gradient_matches_finite_differences,
    assert_hessian_matches_finite_differences,
    evaluate,
    kappa,
    reference,
    rows,
    sample,
    shapes_for,
    spec_id,
    variant_id,
)
from tests.support.references import CASES, one_hot


def test_every_loss_file_is_registered() -> None:
    """A loss module that is not in the registry fails here."""
    modules = {
        m.name for m in pkgutil.iter_modules(service.losses.__path__) if not m.name.startswith("_")
    }
    assert modules == {spec.name for spec in REGISTRY}


def test_a_catalogue_entry_is_checked_when_the_registry_is_built() -> None:
    """``catalogue.toml``'s tables are validated on import: a misspelt key, a family or target
    form that does not exist, or a missing summary fails there, not in a request."""
    entry = {"family": "regression", "summary": "s", "formula": "f", "reference": "r"}
    assert CatalogueEntry.model_validate(entry).targets == ("same_shape",)
    for wrong in (
        {**entry, "alias": ["x"]},
        {**entry, "family": "regresion"},
        {**entry, "targets": ["class_indices"]},
        {k: v for k, v in entry.items() if k != "summary"},
    ):
        with pytest.raises(pydantic.ValidationError):
            CatalogueEntry.model_validate(wrong)


def test_every_loss_has_a_reference() -> None:
    """tests/support/references has a case for each registered loss and for nothing else."""
    assert set(CASES) == {spec.name for spec in REGISTRY}


@pytest.mark.parametrize("spec", REGISTRY, ids=spec_id)
def test_the_reference_is_in_the_module_of_its_family(spec: LossSpec) -> None:
    """A loss's reference function and case live in the reference module named after its family
    (spec.family), and the case draws class indices exactly when the loss takes them."""
    family = importlib.import_module(f"tests.support.references.{spec.family}")
    assert family.CASES[spec.name] is CASES[spec.name]
    assert callable(CASES[spec.name].fn)
    assert CASES[spec.name].fn.__name__ == spec.name  # type: ignore[attr-defined]
    assert (CASES[spec.name].targ == "index") == ("class_index" in spec.targets)


def test_names_and_aliases_resolve_case_insensitively() -> None:
    """Canonical names and aliases resolve with case folded and '-'/'_' interchangeable."""
    for spec in REGISTRY:
        for alias in (spec.name, *spec.aliases):
            assert resolve(alias) is spec
            assert resolve(alias.upper().replace("_", "-")) is spec
    assert resolve("mean-squared-error").name == "mse"


def test_aliases_are_unique() -> None:
    """No alias names two losses."""
    folded = [service.losses.fold(a) for spec in REGISTRY for a in (spec.name, *spec.aliases)]
    assert len(folded) == len(set(folded))


@pytest.mark.parametrize("spec", REGISTRY, ids=spec_id)
def test_catalogue_entry_is_complete(spec: LossSpec) -> None:
    """Each entry carries every field LOSSES.md lists, with parameter defaults."""
    entry = spec.catalogue_entry()
    assert set(entry) >= {
        "name", "aliases", "family", "summary", "formula", "targets", "params",
        "gradient", "hessian", "hessian_note", "reference",
    }  # fmt: skip
    assert entry["formula"] and entry["summary"] and entry["reference"]
    for field in entry["params"].get("properties", {}).values():
        assert "default" in field


@pytest.mark.parametrize(("spec", "params"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_value_matches_reference(
    spec: LossSpec, params: dict[str, Any], weighted: bool, reduction: str
) -> None:
    """Per-sample losses, reduced value and weight_sum agree with the reference in float64."""
    case = CASES[spec.name]
    for shape in shapes_for(spec):
        for kind in case.target_kinds(params):
            drawn = sample(spec, shape, seed=1, params=params, targ_kind=kind)
            pred, targ, inputs = drawn.pred, drawn.targ, drawn.inputs
            weight = np.random.default_rng(2).uniform(0, 2, size=shape[0]) if weighted else None
            out = evaluate(spec, pred, targ, weight, params, inputs, reduction=reduction)
            expected = reference(spec, pred, targ, params, inputs)
            np.testing.assert_allclose(out.per_sample, expected, rtol=RTOL, atol=ATOL)
            w = np.ones(shape[0]) if weight is None else weight
            weight_sum = float(np.sum(w * kappa(spec, pred, targ, out.params)))
            assert out.weight_sum == pytest.approx(weight_sum, rel=RTOL)
            assert out.n == shape[0]
            if reduction == "none":
                assert out.value is None
            else:
                total = float(np.sum(w * expected))
                want = total if reduction == "sum" else total / weight_sum if weight_sum else 0.0
                assert out.value == pytest.approx(want, rel=RTOL, abs=ATOL)


@pytest.mark.parametrize(("spec", "params"), VARIANTS, ids=VARIANT_IDS)
def test_gradient_matches_finite_differences(spec: LossSpec, params: dict[str, Any]) -> None:
    """The gradient of the weighted sum equals central differences of the reference, and so
    do the gradients with respect to the loss's extra inputs."""
    for shape in shapes_for(spec):
        drawn = sample(spec, shape, seed=3, params=params)
        w = np.random.default_rng(4).uniform(0.5, 2, size=shape[0])
        assert_gradient_matches_finite_differences(
            spec, drawn.pred, drawn.targ, w, params, inputs=drawn.inputs
        )


HESSIAN_VARIANTS = [(s, p) for s, p in VARIANTS if s.hessian]


@pytest.mark.parametrize(
    ("spec", "params"), HESSIAN_VARIANTS, ids=[variant_id(v) for v in HESSIAN_VARIANTS]
)
def test_hessian_matches_finite_differences(spec: LossSpec, params: dict[str, Any]) -> None:
    """The Hessian diagonal equals central differences of the gradient, element by element."""
    for shape in shapes_for(spec):
        drawn = sample(spec, shape, seed=5, params=params)
        w = np.random.default_rng(6).uniform(0.5, 2, size=shape[0])
        assert_hessian_matches_finite_differences(
            spec, drawn.pred, drawn.targ, w, params, inputs=drawn.inputs
        )


@pytest.mark.parametrize(("spec", "params"), VARIANTS, ids=VARIANT_IDS)
def test_reductions_scale_the_derivatives(spec: LossSpec, params: dict[str, Any]) -> None:
    """mean = sum / weight_sum for values and derivatives (the extra inputs' gradients
    among them); none gives d l_i / d row i, and for a batch-coupled loss the derivatives of
    Σ_i l_i (sum with unit weights)."""
    shape = shapes_for(spec)[-1]
    drawn = sample(spec, shape, seed=7, params=params)
    pred, targ, inputs = drawn.pred, drawn.targ, drawn.inputs
    w = np.random.default_rng(8).uniform(0, 2, size=shape[0])
    asked = {"gradient": True, "hessian": spec.hessian, "input_gradients": True}
    out = {
        r: evaluate(spec, pred, targ, w, params, inputs, reduction=r, **asked) for r in REDUCTIONS
    }
    ws = out["sum"].weight_sum
    assert out["mean"].value == pytest.approx(out["sum"].value / ws, rel=RTOL)
    unit = evaluate(spec, pred, targ, None, params, inputs, reduction="sum", **asked)
    derivatives = {
        key: {r: getattr(out[r], key) for r in REDUCTIONS}
        for key in (("gradient", "hessian") if spec.hessian else ("gradient",))
    }
    for name in inputs:
        derivatives[f"inputs.{name}"] = {r: out[r].input_gradients[name] for r in REDUCTIONS}
    for key, by_reduction in derivatives.items():
        mean, total, none = (by_reduction[r] for r in ("mean", "sum", "none"))
        np.testing.assert_allclose(mean, total / ws, rtol=RTOL, atol=ATOL)
        if spec.batch_coupled:  # (no batch-coupled loss takes extra inputs)
            np.testing.assert_array_equal(none, getattr(unit, key))
        else:
            column = w.reshape(-1, *([1] * (total.ndim - 1)))
            np.testing.assert_allclose(none * column, total, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(out["none"].per_sample, out["sum"].per_sample)


@pytest.mark.parametrize(("spec", "params"), VARIANTS, ids=VARIANT_IDS)
def test_float32_is_close_to_float64(spec: LossSpec, params: dict[str, Any]) -> None:
    """The float32 path gives float32 arrays within float32 precision of the float64 ones."""
    drawn = sample(spec, shapes_for(spec)[-1], seed=9, params=params)
    pred, targ, inputs = drawn.pred, drawn.targ, drawn.inputs
    asked = {"gradient": True, "hessian": spec.hessian, "input_gradients": True}
    f64 = evaluate(spec, pred, targ, None, params, inputs, **asked)
    f32 = evaluate(spec, pred, targ, None, params, inputs, dtype="float32", **asked)
    for key in (
        ("per_sample", "gradient", "hessian") if spec.hessian else ("per_sample", "gradient")
    ):
        assert getattr(f32, key).dtype == np.float32
        np.testing.assert_allclose(getattr(f32, key), getattr(f64, key), rtol=2e-4, atol=2e-5)
    for name in inputs:
        got, want = f32.input_gradients[name], f64.input_gradients[name]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    assert f32.value == pytest.approx(f64.value, rel=2e-4, abs=2e-5)


INDEPENDENT = [(s, p) for s, p in VARIANTS if not s.batch_coupled]
INDEPENDENT_IDS = [variant_id(v) for v in INDEPENDENT]
COUPLED = [(s, p) for s, p in VARIANTS if s.batch_coupled]
COUPLED_IDS = [variant_id(v) for v in COUPLED]


@pytest.mark.parametrize(("spec", "params"), INDEPENDENT, ids=INDEPENDENT_IDS)
def test_batch_equals_row_by_row(spec: LossSpec, params: dict[str, Any]) -> None:
    """A batch gives, row for row, the bits that each row gives alone."""
    drawn = sample(spec, shapes_for(spec)[-1], seed=10, params=params)
    asked = {"reduction": "none", "gradient": True, "input_gradients": True}
    whole = evaluate(spec, *drawn, None, params, drawn.inputs, **asked)
    if params.get("class_weight") == "balanced":  # derived from the batch: reuse the batch's
        params = {**params, "class_weight": whole.params["class_weight"]}
    for i in range(drawn.pred.shape[0]):
        one = rows(drawn, slice(i, i + 1))
        row = evaluate(spec, *one, None, params, one.inputs, **asked)
        assert row.per_sample[0] == whole.per_sample[i]
        np.testing.assert_array_equal(row.gradient[0], whole.gradient[i])
        for name, gradient in row.input_gradients.items():
            np.testing.assert_array_equal(gradient[0], whole.input_gradients[name][i])


@pytest.mark.parametrize("spec", HARNESSED, ids=spec_id)
def test_empty_batch(spec: LossSpec) -> None:
    """N = 0 gives value 0, weight_sum 0 and empty arrays."""
    shape = (0, 3) if spec.params.min_rank == 2 else (0,)
    case = CASES[spec.name]
    empty = rows(case.sample(shape[:1] + (3,) * (len(shape) - 1), 0), slice(0, 0))
    params = case.params[0]
    for reduction in ("mean", "sum"):
        out = evaluate(spec, *empty, None, params, empty.inputs, reduction=reduction,
                       gradient=True, hessian=spec.hessian, input_gradients=True)  # fmt: skip
        assert (out.value, out.weight_sum, out.n) == (0.0, 0.0, 0)
        assert out.per_sample.shape == (0,)
        assert out.gradient.shape == shape
        assert all(a.shape[0] == 0 for a in out.input_gradients.values())


@pytest.mark.parametrize("spec", REGISTRY, ids=spec_id)
def test_unknown_and_out_of_range_params_are_rejected(spec: LossSpec) -> None:
    """An unknown key, a wrong type and every bound of the parameter schema give InvalidParams."""
    with pytest.raises(InvalidParams):
        validate_params(spec, {"no_such_param": 1})
    schema = spec.params.model_json_schema()
    for name, field in schema.get("properties", {}).items():
        with pytest.raises(InvalidParams):
            validate_params(spec, {name: "1"})
        for key, below in (("minimum", -1e-9), ("exclusiveMinimum", 0.0)):
            if key in field:
                with pytest.raises(InvalidParams):
                    validate_params(spec, {name: field[key] + below})
        for key, above in (("maximum", 1e-9), ("exclusiveMaximum", 0.0)):
            if key in field:
                with pytest.raises(InvalidParams):
                    validate_params(spec, {name: field[key] + above})


@pytest.mark.parametrize(("spec", "params"), VARIANTS, ids=VARIANT_IDS)
def test_packed_and_list_inputs_agree(spec: LossSpec, params: dict[str, Any]) -> None:
    """The same batch sent as JSON lists and as packed arrays gives identical response bytes."""
    drawn = sample(spec, shapes_for(spec)[-1], seed=11, params=params)

    def packed(a: np.ndarray) -> dict[str, Any]:
        data = base64.b64encode(a.astype("<f8").tobytes()).decode()
        return {"dtype": "float64", "shape": list(a.shape), "data": data}

    common = {"params": params, "gradient": True, "hessian": spec.hessian, "input_gradients": True}
    as_list = {**arrays_document(drawn, lambda a: a.tolist()), **common}
    as_packed = {**arrays_document(drawn, packed), **common}
    one = evaluate_one(spec.name, orjson.dumps(as_list), 10**6).body.tobytes()
    two = evaluate_one(spec.name, orjson.dumps(as_packed), 10**6).body.tobytes()
    assert one == two


@pytest.mark.parametrize(("spec", "params"), INDEPENDENT, ids=INDEPENDENT_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_parallel_blocks_equal_small_batches(
    spec: LossSpec, params: dict[str, Any], weighted: bool
) -> None:
    """A batch past SERIAL_ELEMENTS (parallel blocks) gives the bits of the same rows sent in
    batches small enough to run on the calling thread."""
    count = 3 * SERIAL_ELEMENTS // 2 + 5
    shape = (count,) if spec.params.min_rank == 1 else (count // 3, 3)
    drawn = sample(spec, shape, seed=14, params=params)
    w = np.random.default_rng(15).uniform(0, 2, size=shape[0]) if weighted else None
    # reduction sum: the kernel's row factor is w_i itself, the same in every batch
    asked = {"reduction": "sum" if weighted else "none", "gradient": True,
             "hessian": spec.hessian, "input_gradients": True}  # fmt: skip
    whole = evaluate(spec, *drawn, w, params, drawn.inputs, **asked)
    if params.get("class_weight") == "balanced":  # derived from the batch: reuse the batch's
        params = {**params, "class_weight": whole.params["class_weight"]}
    step = 1000
    for start in range(0, shape[0], step):
        part = slice(start, start + step)
        some = rows(drawn, part)
        small = evaluate(spec, *some, None if w is None else w[part], params, some.inputs,
                         **asked)  # fmt: skip
        np.testing.assert_array_equal(small.per_sample, whole.per_sample[part])
        np.testing.assert_array_equal(small.gradient, whole.gradient[part])
        if spec.hessian:
            np.testing.assert_array_equal(small.hessian, whole.hessian[part])
        for name, gradient in small.input_gradients.items():
            np.testing.assert_array_equal(gradient, whole.input_gradients[name][part])


@pytest.mark.parametrize(("spec", "params"), COUPLED, ids=COUPLED_IDS)
def test_a_batch_coupled_loss_runs_whole(
    spec: LossSpec, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch-coupled loss is never cut into blocks of rows: with the core's cancellable path
    cutting every other loss into blocks of a few elements, and with one numba thread or all,
    it gives the bits of the whole batch at once, and the reference's values; its rows are its
    own, not a batch of one each."""
    shape = shapes_for(spec)[-1]
    pred, targ = sample(spec, shape, seed=16, params=params)
    w = np.random.default_rng(17).uniform(0.5, 2, size=shape[0])
    asked = {"reduction": "sum", "gradient": True, "hessian": spec.hessian}
    whole = evaluate(spec, pred, targ, w, params, **asked)
    np.testing.assert_allclose(
        whole.per_sample, reference(spec, pred, targ, params), rtol=RTOL, atol=ATOL
    )
    monkeypatch.setattr(core, "BLOCK_ELEMENTS", 2)
    token = core.CANCEL.set(threading.Event())
    before = numba.get_num_threads()
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            blocked = evaluate(spec, pred, targ, w, params, **asked)
            for key in (
                ("per_sample", "gradient", "hessian")
                if spec.hessian
                else ("per_sample", "gradient")
            ):
                np.testing.assert_array_equal(getattr(blocked, key), getattr(whole, key))
    finally:
        numba.set_num_threads(before)
        core.CANCEL.reset(token)
    alone = [evaluate(spec, pred[i : i + 1], targ[i : i + 1], None, params).per_sample[0]
             for i in range(shape[0])]  # fmt: skip
    assert not np.allclose(alone, whole.per_sample)


@pytest.mark.loss("huber")
def test_results_do_not_depend_on_the_thread_count() -> None:
    """The same request gives bit-identical output with 1 and with all numba threads."""
    spec = resolve("huber")
    pred, targ = sample(spec, (50_000, 3), seed=12)
    w = np.random.default_rng(13).uniform(0, 2, size=50_000)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = evaluate(spec, pred, targ, w, gradient=True)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = evaluate(spec, pred, targ, w, gradient=True)
    finally:
        numba.set_num_threads(before)
    assert one.value == many.value
    np.testing.assert_array_equal(one.gradient, many.gradient)


@pytest.mark.parametrize(
    ("spec", "params", "pred", "targ", "grad"),
    [
        (resolve("mae"), {}, 1.0, 1.0, 0.0),
        (resolve("pinball"), {"quantile": 0.3}, 2.0, 2.0, 0.0),
        (resolve("smooth_l1"), {"beta": 0.0}, 1.5, 1.5, 0.0),
        (resolve("huber"), {"delta": 1.0}, 3.0, 3.0, 0.0),
        (resolve("mape"), {}, 2.0, 2.0, 0.0),
        # clipped to epsilon: the derivative of the clipped form is 0
        (resolve("msle"), {}, -1.0, 0.5, 0.0),
        (resolve("msle"), {}, 1e-7, 0.5, 0.0),  # at the clip point: smallest subgradient
    ],
    ids=spec_id,
)
def test_kinks_take_the_smallest_subgradient(
    spec: LossSpec, params: dict[str, Any], pred: float, targ: float, grad: float
) -> None:
    """At a kink the gradient is the subgradient of smallest magnitude (SPEC section 4)."""
    out = evaluate(spec, np.array([pred]), np.array([targ]), None, params, gradient=True)
    assert out.gradient[0] == grad


@pytest.mark.loss("huber")
def test_huber_at_delta_is_continuous() -> None:
    """At |r| = delta Huber's two branches meet: value δ²/2 and gradient ±δ."""
    out = evaluate(resolve("huber"), np.array([2.0, -2.0]), np.zeros(2), None, {"delta": 2.0},
                   reduction="none", gradient=True)  # fmt: skip
    np.testing.assert_array_equal(out.per_sample, [2.0, 2.0])
    np.testing.assert_array_equal(out.gradient, [2.0, -2.0])


@pytest.mark.loss("log_cosh", "pseudo_huber")
@pytest.mark.parametrize("r", [1e300, -1e300, 800.0, 1e-300])
def test_log_cosh_and_pseudo_huber_are_stable(r: float) -> None:
    """log cosh and pseudo-Huber stay finite and exact for huge and tiny residuals."""
    lc = evaluate(resolve("log_cosh"), np.array([r]), np.zeros(1), gradient=True, hessian=True)
    small = r * r / 2  # log cosh r = r²/2 + O(r⁴)
    assert lc.value == pytest.approx(abs(r) - np.log(2) if abs(r) > 1 else small, rel=1e-12)
    assert lc.gradient[0] == pytest.approx(np.tanh(r))
    ph = evaluate(resolve("pseudo_huber"), np.array([r]), np.zeros(1), gradient=True)
    with localcontext() as ctx:  # δ = 1: √(1 + r²) − 1 in 60-digit decimal arithmetic
        ctx.prec = 60
        expected = float((1 + Decimal(r) ** 2).sqrt() - 1)
    assert ph.value == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(ph.gradient[0])


@pytest.mark.loss("mse")
def test_overflow_is_a_422_not_a_non_finite_answer() -> None:
    """A loss that overflows float64 is reported as out of domain."""
    with pytest.raises(LossdError) as info:
        evaluate(resolve("mse"), np.array([1e200]), np.array([-1e200]))
    assert info.value.status == 422 and info.value.code == "out_of_domain"


@pytest.mark.parametrize(
    ("spec", "params", "pred", "targ"),
    [
        (resolve("tweedie"), {"power": 1.5}, 0.0, 1.0),
        (resolve("tweedie"), {"power": 1.5}, 1.0, -1.0),
        (resolve("tweedie"), {"power": 2.0}, 1.0, 0.0),
        (resolve("tweedie"), {"power": -1.0}, -1.0, 1.0),
        (resolve("poisson"), {}, -0.5, 1.0),
        (resolve("poisson"), {}, 0.5, -1.0),
    ],
    ids=spec_id,
)
def test_domain_violations_are_422(
    spec: LossSpec, params: dict[str, Any], pred: float, targ: float
) -> None:
    """Inputs outside the loss's domain (scikit-learn's checks for Tweedie) are out_of_domain."""
    with pytest.raises(LossdError) as info:
        evaluate(spec, np.array([pred]), np.array([targ]), None, params)
    assert info.value.code == "out_of_domain"


@pytest.mark.loss("tweedie")
def test_tweedie_power_zero_accepts_any_sign() -> None:
    """Tweedie with power 0 is squared error: no domain restriction."""
    out = evaluate(resolve("tweedie"), np.array([-1.0]), np.array([2.0]), None, {"power": 0.0})
    assert out.value == 9.0


INDEX_VARIANTS = [(s, p) for s, p in VARIANTS if "class_index" in s.targets]


def _ignoring_variants() -> list[tuple[LossSpec, dict[str, Any]]]:
    """Each loss with ``ignore_index``, ignoring a class inside [0, C) (1) and an index outside
    it (−100, and C = 3), without and with class weights (a list, "balanced") and label
    smoothing, from logits and from probabilities."""
    found = []
    for spec in REGISTRY:
        fields = spec.params.model_fields
        if "class_index" not in spec.targets or "ignore_index" not in fields:
            continue
        for ignore in (1, -100, 3):
            for weights in (None, [0.5, 1.0, 2.0], "balanced"):
                for smoothing in (0.0, 0.2) if "label_smoothing" in fields else (0.0,):
                    params: dict[str, Any] = {"ignore_index": ignore, "class_weight": weights,
                                              "from_logits": weights != [0.5, 1.0, 2.0]}  # fmt: skip
                    if smoothing:
                        params["label_smoothing"] = smoothing
                    found.append((spec, params))
    return found


EQUIVALENCE_VARIANTS = INDEX_VARIANTS + _ignoring_variants()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    ("spec", "params"), EQUIVALENCE_VARIANTS, ids=[variant_id(v) for v in EQUIVALENCE_VARIANTS]
)
def test_one_hot_targets_equal_index_targets_to_the_last_bit(
    spec: LossSpec, params: dict[str, Any], dtype: str
) -> None:
    """One-hot rows and the equivalent class indices give byte-identical responses, in every
    reduction, with the gradient and the Hessian, in float64 and float32; and indices sent as
    int64, as integral floats or packed int32 are one request. With ``ignore_index`` an ignored
    sample has no one-hot row, so: the ignored index inside [0, C) answers as the same samples
    under an index outside it (−100 or C: the kernels read it as an all-zero row), and, where
    label smoothing does not tell an ignored sample from one with an all-zero row, as one-hot
    rows with those rows all zero."""
    pred, _ = sample(spec, (9, 3), seed=14, params=params)
    index = np.array([0, 1, 2, 2, 1, 0, 0, 1, 2])
    rows = one_hot(index, 3)
    ignore = params.get("ignore_index")
    ignored = index == 1
    sent = index if ignore is None else np.where(ignored, ignore, index)
    weight = [0.5, 1, 2, 1, 1, 3, 0, 1, 1]

    def answer(targets: Any, reduction: str, **change: Any) -> bytes:
        doc = {"predictions": pred.tolist(), "targets": targets, "params": {**params, **change},
               "gradient": True, "hessian": spec.hessian, "reduction": reduction,
               "sample_weight": weight, "dtype": dtype}  # fmt: skip
        return evaluate_one(spec.name, orjson.dumps(doc), 10**6).body.tobytes()

    packed = {"dtype": "int32", "shape": [9], "data": base64.b64encode(sent.astype("<i4")).decode()}
    for reduction in REDUCTIONS:
        got = answer(sent.tolist(), reduction)
        assert got == answer(sent.astype(float).tolist(), reduction)
        assert got == answer(packed, reduction)
        if ignore is None:
            assert got == answer(rows.tolist(), reduction)
            continue
        out = orjson.loads(got)
        assert all(out["per_sample"][i] == 0.0 for i in np.flatnonzero(ignored))
        assert all(not any(out["gradient"][i]) for i in np.flatnonzero(ignored))
        other = -100 if ignore != -100 else 3
        moved = answer(np.where(ignored, other, index).tolist(), reduction, ignore_index=other)
        shown = (f'"ignore_index":{other}'.encode(), f'"ignore_index":{ignore}'.encode())
        assert got == moved.replace(*shown)
        if not params.get("label_smoothing"):
            zero = rows.copy()
            zero[ignored] = 0.0
            assert got == answer(zero.tolist(), reduction)


@pytest.mark.parametrize(
    ("targets", "fragment"),
    [
        ([0, 3], "not a class index"),
        ([0, -1], "not a class index"),
        ([0, 1.5], "not an integer"),
        ([[0, 1, 0], [-0.1, 0.5, 0.6]], "non-negative"),
    ],
)
@pytest.mark.loss("cross_entropy")
def test_bad_class_targets_say_what_to_change(targets: list[Any], fragment: str) -> None:
    """Out-of-range, non-integral and negative targets are 422s that say what is expected."""
    body = {"predictions": [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], "targets": targets}
    with pytest.raises(LossdError) as info:
        evaluate_one("cross_entropy", orjson.dumps(body), 100)
    assert info.value.status == 422 and fragment in info.value.detail


@pytest.mark.loss("cross_entropy")
def test_probabilities_outside_unit_interval_suggest_from_logits() -> None:
    """Logits sent without from_logits get a 422 whose detail suggests from_logits: true."""
    body = {"predictions": [[2.0, -1.0, 0.5]], "targets": [0]}
    with pytest.raises(LossdError) as info:
        evaluate_one("cross_entropy", orjson.dumps(body), 100)
    assert info.value.code == "out_of_domain" and "from_logits: true" in info.value.detail


@pytest.mark.loss("cross_entropy")
@pytest.mark.parametrize("logit", [1e300, -1e300, 1000.0, -1000.0])
def test_cross_entropy_is_finite_for_extreme_logits(logit: float) -> None:
    """Any finite logit gives a finite loss and gradient (log-sum-exp)."""
    pred = np.array([[logit, 0.0, -logit], [0.0, logit, 1.0]])
    out = evaluate(resolve("cross_entropy"), pred, np.array([2, 0]), None, {"from_logits": True},
                   gradient=True, hessian=True)  # fmt: skip
    assert np.isfinite(out.value) and np.isfinite(out.gradient).all()
    assert out.per_sample[0] == pytest.approx(2 * abs(logit) if logit > 0 else 0.0, rel=1e-12)


@pytest.mark.loss("mae")
def test_asking_a_hessian_the_loss_lacks_is_a_422() -> None:
    """A loss without a Hessian answers hessian: true with a 422 naming the catalogue."""
    # every registered loss has one today; a spec that says otherwise stands in for a new one
    spec = dataclasses.replace(resolve("mae"), hessian=False)
    pred, targ = sample(spec, (4,), seed=15)
    with pytest.raises(LossdError) as info:
        evaluate(spec, pred, targ, hessian=True)
    assert info.value.status == 422 and "no Hessian" in info.value.detail
