"""Binary losses beyond the registry-wide harness: extreme logits, label rules, soft labels,
pos_weight lists, and (when installed) PyTorch and Keras as second opinions."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import orjson
import pytest

from service.codecs.loss import evaluate_one
from service.errors import LossdError
from service.losses import REGISTRY, LossSpec, resolve
from service.losses._binary import SignTargetParams
from tests.support.harness import (
    ATOL,
    RTOL,
    assert_gradient_matches_finite_differences,
    assert_hessian_matches_finite_differences,
    evaluate,
    spec_id,
)
from tests.support.references import binary

BCE = resolve("binary_cross_entropy")
FOCAL = resolve("binary_focal")
MULTILABEL = resolve("multilabel_soft_margin")
BINARY = [spec for spec in REGISTRY if spec.family == "binary"]
# the cross-entropies take probabilities (or logits, from_logits); the losses of labels in
# {−1, 1} (or {0, 1}) take scores, Keras' two hinges among them
CROSS_ENTROPIES = [spec for spec in BINARY if "from_logits" in spec.params.model_fields]
SIGN_LABELS = [spec for spec in BINARY if issubclass(spec.params, SignTargetParams)]
HINGES = [resolve("hinge"), resolve("squared_hinge")]


def _soft_batch(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities in [0.02, 0.98] and soft targets in [0, 1]."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.02, 0.98, size=shape), rng.uniform(0.0, 1.0, size=shape)


def _problem(spec: LossSpec, body: dict[str, Any]) -> LossdError:
    with pytest.raises(LossdError) as info:
        evaluate_one(spec.name, orjson.dumps(body), 1000)
    return info.value


# --- extreme logits -------------------------------------------------------------------------


@pytest.mark.loss(BCE.name)
@pytest.mark.parametrize("pos_weight", [None, 2.0])
def test_bce_logits_1000_are_exact(pos_weight: float | None) -> None:
    """Logits ±1000 give the closed form exactly: softplus(±1000) and σ(z) − y in {−P, 0, 1}."""
    pred = np.array([1000.0, 1000.0, -1000.0, -1000.0])
    targ = np.array([0.0, 1.0, 0.0, 1.0])
    big_p = 1.0 if pos_weight is None else pos_weight
    out = evaluate(BCE, pred, targ, None, {"from_logits": True, "pos_weight": pos_weight},
                   reduction="none", gradient=True, hessian=True)  # fmt: skip
    # l = (1 − y)·softplus(z) + P·y·softplus(−z); softplus(1000) = 1000, softplus(−1000) = e^−1000 = 0
    np.testing.assert_array_equal(out.per_sample, [1000.0, 0.0, 0.0, 1000.0 * big_p])
    np.testing.assert_array_equal(out.gradient, [1.0, 0.0, 0.0, -big_p])
    np.testing.assert_array_equal(out.hessian, [0.0, 0.0, 0.0, 0.0])


@pytest.mark.loss(BCE.name)
@pytest.mark.parametrize("params", [{}, {"label_smoothing": 0.2, "pos_weight": 3.0}])
def test_bce_logits_1e300_are_finite(params: dict[str, Any]) -> None:
    """Logits ±1e300 give a finite loss, gradient and Hessian (log-sigmoid, no overflow)."""
    pred = np.array([[1e300, -1e300], [-1e300, 1e300]])
    targ = np.array([[0.0, 1.0], [0.0, 1.0]])
    out = evaluate(BCE, pred, targ, None, {"from_logits": True, **params}, reduction="sum",
                   gradient=True, hessian=True)  # fmt: skip
    assert np.isfinite(out.value)
    assert np.isfinite(out.gradient).all() and np.isfinite(out.hessian).all()
    if not params:  # row 0 is wrong twice: softplus(1e300) = 1e300 per element, mean over D
        np.testing.assert_array_equal(out.per_sample, [1e300, 0.0])
        np.testing.assert_array_equal(out.gradient, [[0.5, -0.5], [0.0, 0.0]])


@pytest.mark.loss(FOCAL.name)
@pytest.mark.parametrize("logit", [1e300, -1e300, 1000.0, -1000.0, 40.0])
@pytest.mark.parametrize("params", [{}, {"gamma": 0.5, "alpha": 0.25, "label_smoothing": 0.1}])
def test_focal_extreme_logits_are_finite(logit: float, params: dict[str, Any]) -> None:
    """Focal loss, gradient and Hessian stay finite for huge logits of either sign and label."""
    pred = np.array([logit, logit, -logit])
    targ = np.array([0.0, 1.0, 1.0])
    out = evaluate(FOCAL, pred, targ, None, {"from_logits": True, **params}, reduction="none",
                   gradient=True, hessian=True)  # fmt: skip
    for key in ("per_sample", "gradient", "hessian"):
        assert np.isfinite(getattr(out, key)).all()
    expected = binary.binary_focal(pred[:, None], targ[:, None], from_logits=True, **params)
    np.testing.assert_allclose(out.per_sample, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.loss(FOCAL.name)
def test_focal_logit_1000_is_exact() -> None:
    """A hard label wrong by a logit of 1000 costs 1000 with gradient −1 (focal factor 1)."""
    out = evaluate(FOCAL, np.array([-1000.0, 1000.0]), np.array([1.0, 1.0]), None,
                   {"from_logits": True}, reduction="none", gradient=True)  # fmt: skip
    np.testing.assert_array_equal(out.per_sample, [1000.0, 0.0])
    np.testing.assert_array_equal(out.gradient, [-1.0, 0.0])


# --- domains and labels ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", CROSS_ENTROPIES, ids=spec_id)
def test_probabilities_outside_unit_interval_suggest_from_logits(spec: LossSpec) -> None:
    """Logits sent without from_logits are a 422 whose detail suggests from_logits: true."""
    problem = _problem(spec, {"predictions": [0.2, 2.5, -1.0], "targets": [0, 1, 1]})
    assert problem.status == 422 and problem.code == "out_of_domain"
    assert "from_logits: true" in problem.detail


@pytest.mark.parametrize("spec", CROSS_ENTROPIES, ids=spec_id)
def test_targets_outside_unit_interval_are_422(spec: LossSpec) -> None:
    """Targets of the cross-entropies must be in [0, 1]."""
    problem = _problem(spec, {"predictions": [0.2, 0.5], "targets": [1, -1]})
    assert problem.status == 422 and problem.code == "invalid_array"
    assert "[0, 1]" in problem.detail


@pytest.mark.parametrize("spec", SIGN_LABELS, ids=spec_id)
def test_hinge_with_both_0_and_minus_1_is_ambiguous(spec: LossSpec) -> None:
    """A hinge batch with 0 and −1 labels is a 422 saying to use {0, 1} or {−1, 1}."""
    problem = _problem(spec, {"predictions": [0.5, -0.2, 1.5], "targets": [1, 0, -1]})
    assert problem.status == 422 and problem.code == "invalid_array"
    assert "ambiguous" in problem.detail
    assert "{0, 1}" in problem.detail and "{-1, 1}" in problem.detail
    assert problem.errors[0] == (["targets", 1], problem.errors[0][1])


@pytest.mark.parametrize("spec", SIGN_LABELS, ids=spec_id)
@pytest.mark.parametrize("bad", [0.5, 2.0, -3.0])
def test_hinge_rejects_other_labels(spec: LossSpec, bad: float) -> None:
    """Hinge labels other than −1, 0 and 1 are a 422 locating the first one."""
    problem = _problem(spec, {"predictions": [[0.5, 1.0], [0.1, 0.2]],
                              "targets": [[1, -1], [bad, 1]]})  # fmt: skip
    assert problem.status == 422 and problem.code == "invalid_array"
    assert "[1, 0]" in problem.detail


@pytest.mark.parametrize("spec", SIGN_LABELS, ids=spec_id)
@pytest.mark.parametrize("shape", [(8,), (4, 3)])
def test_hinge_zero_one_labels_equal_sign_labels(spec: LossSpec, shape: tuple[int, ...]) -> None:
    """{0, 1} labels give the same response as the {−1, 1} labels they stand for."""
    rng = np.random.default_rng(31)
    pred = rng.uniform(-3, 3, size=shape)
    signs = rng.choice([-1.0, 1.0], size=shape)
    common = {"gradient": True, "hessian": True, "reduction": "sum"}
    zero_one = {"predictions": pred.tolist(), "targets": ((signs + 1) / 2).astype(int).tolist()}
    plus_minus = {"predictions": pred.tolist(), "targets": signs.tolist()}
    one = evaluate_one(spec.name, orjson.dumps({**zero_one, **common}), 1000).body.tobytes()
    two = evaluate_one(spec.name, orjson.dumps({**plus_minus, **common}), 1000).body.tobytes()
    assert one == two
    fn = getattr(binary, spec.name)
    expected = fn(pred.reshape(shape[0], -1), ((signs + 1) / 2).reshape(shape[0], -1))
    assert orjson.loads(one)["per_sample"] == pytest.approx(expected.tolist(), rel=RTOL)


@pytest.mark.parametrize("spec", HINGES, ids=spec_id)
def test_hinge_at_the_margin_takes_gradient_zero(spec: LossSpec) -> None:
    """Exactly at the margin 1 − tŷ = 0 the hinge gradients and Hessians are 0."""
    out = evaluate(spec, np.array([1.0, -1.0]), np.array([1.0, -1.0]), None,
                   reduction="none", gradient=True, hessian=True)  # fmt: skip
    np.testing.assert_array_equal(out.per_sample, [0.0, 0.0])
    np.testing.assert_array_equal(out.gradient, [0.0, 0.0])
    np.testing.assert_array_equal(out.hessian, [0.0, 0.0])


@pytest.mark.parametrize("spec", CROSS_ENTROPIES, ids=spec_id)
@pytest.mark.parametrize("pred", [0.0, 1e-7, 1.0 - 1e-7, 1.0])
def test_clipped_probabilities_have_zero_cross_entropy_gradient(
    spec: LossSpec, pred: float
) -> None:
    """At and beyond the clip points [ε, 1−ε] the cross-entropy's gradient is 0 (gamma 0)."""
    targ = np.array([0.0, 1.0])
    out = evaluate(spec, np.full(2, pred), targ, None,
                   {"gamma": 0.0} if "gamma" in spec.params.model_fields else {},
                   reduction="none", gradient=True, hessian=True)  # fmt: skip
    np.testing.assert_array_equal(out.gradient, [0.0, 0.0])
    np.testing.assert_array_equal(out.hessian, [0.0, 0.0])
    clipped = min(max(pred, 1e-7), 1 - 1e-7)
    expected = [-np.log1p(-clipped), -np.log(clipped)]
    np.testing.assert_allclose(out.per_sample, expected, rtol=RTOL)


@pytest.mark.loss(FOCAL.name)
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal_on_a_certain_correct_probability_is_finite(gamma: float) -> None:
    """p exactly equal to a hard label (1 − p_t = 0) gives finite derivatives, also for γ < 1."""
    out = evaluate(FOCAL, np.array([1.0, 0.0]), np.array([1.0, 0.0]), None, {"gamma": gamma},
                   reduction="none", gradient=True, hessian=True)  # fmt: skip
    for key in ("per_sample", "gradient", "hessian"):
        assert np.isfinite(getattr(out, key)).all()
    np.testing.assert_array_equal(out.per_sample, [0.0, 0.0])  # keras: (1 − p_t)^γ = 0


# --- soft labels and pos_weight lists --------------------------------------------------------


SOFT_VARIANTS = [
    (BCE, {}),
    (BCE, {"label_smoothing": 0.2, "pos_weight": 1.5}),
    (BCE, {"from_logits": True, "pos_weight": 0.5}),
    (FOCAL, {}),
    (FOCAL, {"gamma": 0.5, "alpha": 0.3, "label_smoothing": 0.1}),
    (FOCAL, {"from_logits": True, "gamma": 2.5, "alpha": 0.8}),
    (FOCAL, {"from_logits": True, "gamma": 0.7, "label_smoothing": 0.3}),
]


@pytest.mark.parametrize(("spec", "params"), SOFT_VARIANTS, ids=spec_id)
def test_soft_labels_match_the_reference(spec: LossSpec, params: dict[str, Any]) -> None:
    """Soft targets in [0, 1]: values equal the reference, derivatives its finite differences."""
    pred, targ = _soft_batch((5, 3), seed=32)
    if params.get("from_logits"):
        pred = np.random.default_rng(33).uniform(-3, 3, size=pred.shape)
    fn = getattr(binary, spec.name)
    out = evaluate(spec, pred, targ, None, params, reduction="sum")
    np.testing.assert_allclose(out.per_sample, fn(pred, targ, **params), rtol=RTOL, atol=ATOL)
    assert_gradient_matches_finite_differences(spec, pred, targ, None, params, rtol=1e-6,
                                               atol=1e-8)  # fmt: skip
    assert_hessian_matches_finite_differences(spec, pred, targ, None, params)


@pytest.mark.loss(FOCAL.name)
def test_focal_hard_labels_equal_the_catalogue_formula() -> None:
    """With hard labels the focal loss is −α_t (1 − p_t)^γ log p_t (LOSSES.md)."""
    rng = np.random.default_rng(34)
    pred, targ = rng.uniform(0.02, 0.98, size=(6, 3)), rng.integers(0, 2, size=(6, 3)) * 1.0
    out = evaluate(FOCAL, pred, targ, None, {"gamma": 2.5, "alpha": 0.3}, reduction="none")
    p_t = targ * pred + (1 - targ) * (1 - pred)
    alpha_t = targ * 0.3 + (1 - targ) * 0.7
    expected = (-alpha_t * (1 - p_t) ** 2.5 * np.log(p_t)).mean(axis=1)
    np.testing.assert_allclose(out.per_sample, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.loss(FOCAL.name)
def test_focal_hessian_is_negative_on_badly_misclassified_points() -> None:
    """The focal Hessian goes negative for a confident wrong logit (the catalogue says so)."""
    out = evaluate(FOCAL, np.array([-4.0]), np.array([1.0]), None, {"from_logits": True},
                   reduction="none", gradient=True, hessian=True)  # fmt: skip
    assert out.hessian[0] < 0
    assert "negative" in (FOCAL.hessian_note or "")


@pytest.mark.loss(BCE.name)
@pytest.mark.parametrize("from_logits", [False, True])
def test_pos_weight_list_matches_the_reference(from_logits: bool) -> None:
    """A pos_weight list weighs each column's positive term; rank 1 takes a list of one."""
    pred, targ = _soft_batch((5, 3), seed=35)
    if from_logits:
        pred = np.random.default_rng(36).uniform(-3, 3, size=pred.shape)
    params = {"from_logits": from_logits, "pos_weight": [0.5, 1.0, 4.0], "label_smoothing": 0.1}
    out = evaluate(BCE, pred, targ, None, params, reduction="none")
    expected = binary.binary_cross_entropy(pred, targ, **params)
    np.testing.assert_allclose(out.per_sample, expected, rtol=RTOL, atol=ATOL)
    assert out.params["pos_weight"] == [0.5, 1.0, 4.0]
    assert_gradient_matches_finite_differences(BCE, pred, targ, None, params, reduction="none",
                                               rtol=1e-6, atol=1e-8)  # fmt: skip
    single = {**params, "pos_weight": [4.0]}
    one = evaluate(BCE, pred[:, 2], targ[:, 2], None, single, reduction="none")
    expected = binary.binary_cross_entropy(pred[:, 2:], targ[:, 2:], **single)
    np.testing.assert_allclose(one.per_sample, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.loss(BCE.name)
@pytest.mark.parametrize(("shape", "weights"), [((4, 3), [1.0, 2.0]), ((4,), [1.0, 2.0, 3.0])])
def test_pos_weight_list_of_the_wrong_length_is_422(
    shape: tuple[int, ...], weights: list[float]
) -> None:
    """A pos_weight list whose length is not D is an invalid_params 422 naming the field."""
    body = {"predictions": np.full(shape, 0.5).tolist(), "targets": np.ones(shape).tolist(),
            "params": {"pos_weight": weights}}  # fmt: skip
    problem = _problem(BCE, body)
    assert problem.status == 422 and problem.code == "invalid_params"
    assert problem.errors[0][0] == ["params", "pos_weight"]
    assert "pos_weight" in problem.detail


@pytest.mark.loss(BCE.name)
def test_negative_pos_weight_is_rejected() -> None:
    """pos_weight values must be non-negative, as a number and in a list."""
    for value in (-1.0, [1.0, -0.5, 2.0]):
        body = {"predictions": [[0.5, 0.5, 0.5]], "targets": [[1, 0, 1]],
                "params": {"pos_weight": value}}  # fmt: skip
        assert _problem(BCE, body).code == "invalid_params"


@pytest.mark.loss(FOCAL.name)
@pytest.mark.parametrize("alpha", [-0.1, 1.5, "0.5"])
def test_focal_alpha_outside_unit_interval_is_rejected(alpha: object) -> None:
    """alpha is null or a number in [0, 1] (its bounds sit inside the schema's anyOf)."""
    body = {"predictions": [0.5], "targets": [1], "params": {"alpha": alpha}}
    assert _problem(FOCAL, body).code == "invalid_params"


# --- PyTorch and Keras, when installed -------------------------------------------------------


def _torch() -> Any:
    return pytest.importorskip("torch", reason="PyTorch is the optional second opinion")


def _diag_hessian(torch: Any, loss_fn: Any, x: Any) -> tuple[Any, Any, Any]:
    """Value, gradient and Hessian diagonal of an elementwise loss (cross terms vanish)."""
    x = x.clone().requires_grad_(True)
    value = loss_fn(x)
    (grad,) = torch.autograd.grad(value, x, create_graph=True)
    (hess,) = torch.autograd.grad(grad.sum(), x)
    return value.detach(), grad.detach(), hess


@pytest.mark.loss(BCE.name)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_bce_with_logits_matches_torch(label_smoothing: float) -> None:
    """binary_cross_entropy_with_logits(pos_weight) on y': values, autograd gradient, Hessian."""
    torch = _torch()
    rng = np.random.default_rng(41)
    z, targ = rng.uniform(-4, 4, size=(6, 3)), rng.uniform(0, 1, size=(6, 3))
    pos_weight = [0.5, 1.0, 3.0]
    params = {"from_logits": True, "pos_weight": pos_weight, "label_smoothing": label_smoothing}
    out = evaluate(BCE, z, targ, None, params, reduction="sum", gradient=True, hessian=True)
    y = torch.tensor(targ * (1 - label_smoothing) + label_smoothing / 2)
    per_row = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(z), y, pos_weight=torch.tensor(pos_weight), reduction="none"
    ).mean(-1)
    value, grad, hess = _diag_hessian(
        torch,
        lambda x: (
            torch.nn.functional.binary_cross_entropy_with_logits(
                x, y, pos_weight=torch.tensor(pos_weight), reduction="none"
            )
            .mean(-1)
            .sum()
        ),
        torch.tensor(z),
    )
    np.testing.assert_allclose(out.per_sample, per_row.numpy(), rtol=RTOL, atol=ATOL)
    assert out.value == pytest.approx(float(value), rel=RTOL)
    np.testing.assert_allclose(out.gradient, grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.hessian, hess.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.loss(MULTILABEL.name)
@pytest.mark.parametrize("weight", [None, 0.5, [0.5, 0.0, 3.0]])
def test_multilabel_soft_margin_matches_torch(weight: float | list[float] | None) -> None:
    """multilabel_soft_margin_loss(weight) with a per-class list, a number or none, on soft
    labels: per-sample losses, the autograd gradient and the Hessian diagonal of the sum."""
    torch = _torch()
    rng = np.random.default_rng(45)
    z, targ = rng.uniform(-4, 4, size=(6, 3)), rng.uniform(0, 1, size=(6, 3))
    out = evaluate(MULTILABEL, z, targ, None, {"weight": weight}, reduction="sum", gradient=True,
                   hessian=True)  # fmt: skip
    w = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    y = torch.tensor(targ)

    def per_row(x: Any) -> Any:
        return torch.nn.functional.multilabel_soft_margin_loss(x, y, weight=w, reduction="none")

    value, grad, hess = _diag_hessian(torch, lambda x: per_row(x).sum(), torch.tensor(z))
    np.testing.assert_allclose(out.per_sample, per_row(torch.tensor(z)).numpy(), rtol=RTOL,
                               atol=ATOL)  # fmt: skip
    assert out.value == pytest.approx(float(value), rel=RTOL)
    np.testing.assert_allclose(out.gradient, grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.hessian, hess.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.loss(MULTILABEL.name)
def test_multilabel_soft_margin_checks_its_weights_and_labels() -> None:
    """A weight list of the wrong length and targets outside [0, 1] are 422s naming them."""
    problem = _problem(MULTILABEL, {"predictions": [[0.5, -1.0]], "targets": [[1, 0]],
                                    "params": {"weight": [1.0, 2.0, 3.0]}})  # fmt: skip
    assert problem.code == "invalid_params" and problem.errors[0][0] == ["params", "weight"]
    problem = _problem(MULTILABEL, {"predictions": [[0.5, -1.0]], "targets": [[1, -1]]})
    assert problem.code == "invalid_array" and "[0, 1]" in problem.detail


def _optax_focal(torch: Any, z: Any, y: Any, alpha: float | None, gamma: float) -> Any:
    """optax.sigmoid_focal_loss written with torch ops (log-space focal weight)."""
    log_p = torch.nn.functional.logsigmoid(z)
    log_q = torch.nn.functional.logsigmoid(-z)
    ce = -y * log_p - (1 - y) * log_q
    log_one_minus_p_t = torch.logsumexp(torch.stack([log_p + torch.log(1 - y),
                                                     log_q + torch.log(y)]), dim=0)  # fmt: skip
    loss = ce * torch.exp(gamma * log_one_minus_p_t)
    if alpha is None:
        return loss
    return (alpha * y + (1 - alpha) * (1 - y)) * loss


@pytest.mark.loss(FOCAL.name)
@pytest.mark.parametrize(
    "params",
    [{}, {"alpha": 0.25, "gamma": 0.5, "label_smoothing": 0.1}, {"gamma": 3.0, "alpha": 0.9}],
)
def test_sigmoid_focal_matches_optax_formula_in_torch(params: dict[str, Any]) -> None:
    """Focal from logits: values, autograd gradient and Hessian of optax's formula in torch."""
    torch = _torch()
    rng = np.random.default_rng(42)
    z = rng.uniform(-4, 4, size=(6, 3))
    targ = rng.uniform(0.05, 0.95, size=(6, 3))  # soft labels keep log(y), log(1 − y) finite
    s = params.get("label_smoothing", 0.0)
    y = torch.tensor(targ * (1 - s) + s / 2)
    alpha, gamma = params.get("alpha"), params.get("gamma", 2.0)
    out = evaluate(FOCAL, z, targ, None, {"from_logits": True, **params}, reduction="sum",
                   gradient=True, hessian=True)  # fmt: skip
    value, grad, hess = _diag_hessian(
        torch, lambda x: _optax_focal(torch, x, y, alpha, gamma).mean(-1).sum(), torch.tensor(z)
    )
    per_row = _optax_focal(torch, torch.tensor(z), y, alpha, gamma).mean(-1)
    np.testing.assert_allclose(out.per_sample, per_row.numpy(), rtol=RTOL, atol=ATOL)
    assert out.value == pytest.approx(float(value), rel=RTOL)
    np.testing.assert_allclose(out.gradient, grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.hessian, hess.numpy(), rtol=1e-8, atol=ATOL)


def _keras() -> Any:
    _torch()
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    keras.config.set_floatx("float64")
    return keras


# Keras on the torch backend rounds its inputs to float32 inside these losses (see
# test_reference_torch.py), so it confirms the conventions (smoothing before p_t, class
# balancing, {0, 1} hinge labels) to float32 precision; float64 agreement is with the references.
KERAS_TOL = {"rtol": 1e-5, "atol": 1e-6}


@pytest.mark.loss(BCE.name, FOCAL.name)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_probabilities_match_keras(label_smoothing: float) -> None:
    """BCE and focal on probabilities (soft labels, smoothing, class balancing) follow Keras."""
    keras = _keras()
    pred, targ = _soft_batch((6, 3), seed=43)
    pred[0, 0], pred[1, 1] = 1e-9, 1.0  # inside the clip regions
    bce = evaluate(BCE, pred, targ, None, {"label_smoothing": label_smoothing}, reduction="none")
    expected = keras.losses.binary_crossentropy(targ, pred, label_smoothing=label_smoothing)
    np.testing.assert_allclose(bce.per_sample, np.asarray(expected), **KERAS_TOL)
    for alpha in (None, 0.3):
        params = {"gamma": 1.5, "alpha": alpha, "label_smoothing": label_smoothing}
        focal = evaluate(FOCAL, pred, targ, None, params, reduction="none")
        expected = keras.losses.binary_focal_crossentropy(
            targ, pred, apply_class_balancing=alpha is not None, alpha=alpha or 0.25,
            gamma=1.5, label_smoothing=label_smoothing,
        )  # fmt: skip
        np.testing.assert_allclose(focal.per_sample, np.asarray(expected), **KERAS_TOL)


@pytest.mark.parametrize("spec", HINGES, ids=spec_id)
def test_hinges_match_keras(spec: LossSpec) -> None:
    """hinge and squared_hinge equal Keras, which also converts a {0, 1} batch to ±1."""
    keras = _keras()
    rng = np.random.default_rng(44)
    pred = rng.uniform(-3, 3, size=(6, 3))
    for targ in (rng.choice([-1.0, 1.0], size=(6, 3)), rng.integers(0, 2, size=(6, 3)) * 1.0):
        out = evaluate(spec, pred, targ, None, reduction="none")
        expected = getattr(keras.losses, spec.name)(targ, pred)
        np.testing.assert_allclose(out.per_sample, np.asarray(expected), **KERAS_TOL)
