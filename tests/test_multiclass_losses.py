"""Focused tests of the multiclass losses beyond the registry-wide harness: parameter errors,
extreme logits, subgradients at kinks and ties, and PyTorch / Keras as second opinions."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from service.errors import InvalidParams, LossdError
from service.losses import REGISTRY, LossSpec, resolve
from tests.support.exact import evaluate_exact, rounded
from tests.support.harness import ATOL, RTOL, evaluate, spec_id

LOGITS = np.array([[2.0, -1.0, 0.5], [0.1, 0.3, -2.5], [-1.5, 1.5, 0.0], [3.0, 2.5, -3.0]])
INDEX = np.array([0, 2, 1, 1])
SIMILARITY = [[1.0, 0.3, 0.1], [0.3, 1.0, 0.6], [0.1, 0.6, 1.0]]


def _invalid(name: str, params: dict[str, Any], pred: np.ndarray = LOGITS) -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        evaluate(resolve(name), pred, INDEX.astype(float), None, params)
    assert info.value.status == 422 and info.value.code == "invalid_params"
    return info.value


@pytest.mark.loss("simloss")
def test_simloss_with_both_similarity_and_ordinal_base_is_a_422() -> None:
    """Giving both a similarity matrix and ordinal_base is a 422 that says to remove one."""
    error = _invalid("simloss", {"similarity": SIMILARITY, "ordinal_base": 0.5})
    assert "not both" in error.detail and "remove one" in error.detail


@pytest.mark.loss("simloss")
def test_simloss_with_neither_is_a_422() -> None:
    """simloss without similarity or ordinal_base is a 422 that says which to give."""
    error = _invalid("simloss", {})
    assert "similarity" in error.detail and "ordinal_base" in error.detail


@pytest.mark.loss("simloss")
@pytest.mark.parametrize(
    ("similarity", "fragment"),
    [
        ([[1.0, 0.5], [0.5, 1.0]], "3 classes"),
        ([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0]], "square"),
        ([[1.0, 0.5, 0.0], [0.5, 0.9, 0.0], [0.0, 0.0, 1.0]], "unit diagonal"),
        ([[1.0, 1.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]], "less than or equal to 1"),
    ],
)
def test_simloss_rejects_a_matrix_that_does_not_fit(
    similarity: list[list[float]], fragment: str
) -> None:
    """A similarity matrix of the wrong size, not square, without unit diagonal or with entries
    outside [0, 1] is a 422 that says what is wrong."""
    error = _invalid("simloss", {"similarity": similarity, "from_logits": True})
    assert fragment in error.detail


@pytest.mark.loss("multi_margin")
@pytest.mark.parametrize("p", [3, 0, 1.5, "2"])
def test_multi_margin_accepts_only_p_1_or_2(p: object) -> None:
    """multi_margin's exponent p is the integer 1 or 2; anything else is a 422."""
    error = _invalid("multi_margin", {"p": p})
    assert "p:" in error.detail


FROM_LOGITS = [
    (resolve("focal"), {"from_logits": True}),
    (resolve("focal"), {"from_logits": True, "gamma": 0.5, "label_smoothing": 0.1}),
    (resolve("focal"), {"from_logits": True, "gamma": 0.0, "class_weight": [0.5, 1.0, 2.0]}),
    (resolve("generalized_cross_entropy"), {"from_logits": True}),
    (resolve("generalized_cross_entropy"), {"from_logits": True, "q": 0.2}),
    (resolve("poly1_cross_entropy"), {}),
    (resolve("poly1_cross_entropy"), {"epsilon_poly": -1.0, "label_smoothing": 0.2}),
    (resolve("simloss"), {"from_logits": True, "ordinal_base": 0.5}),
]


@pytest.mark.parametrize(("spec", "params"), FROM_LOGITS, ids=spec_id)
@pytest.mark.parametrize("logit", [1e300, -1e300, 1000.0])
def test_extreme_logits_give_finite_results(
    spec: LossSpec, params: dict[str, Any], logit: float
) -> None:
    """Any finite logits, up to ±1e300, give a finite loss, gradient and Hessian."""
    pred = np.array([[logit, 0.0, -logit], [0.0, logit, 1.0], [logit, logit, 0.0]])
    for index in ([2, 0, 1], [0, 1, 2]):
        out = evaluate(spec, pred, np.array(index, dtype=float), None, params,
                       gradient=True, hessian=True)  # fmt: skip
        assert np.isfinite(out.value) and np.isfinite(out.per_sample).all()
        assert np.isfinite(out.gradient).all() and np.isfinite(out.hessian).all()


@pytest.mark.loss("focal")
def test_focal_confidently_wrong_logits_lose_twice_the_logit() -> None:
    """Far wrong, (1 - p)^γ → 1 and log p = -2·1e300: the loss is 2e300, not clipped."""
    pred = np.array([[1e300, 0.0, -1e300]])
    out = evaluate(resolve("focal"), pred, np.array([2.0]), None, {"from_logits": True})
    assert out.value == pytest.approx(2e300, rel=1e-12)


@pytest.mark.loss("focal")
def test_focal_alpha_null_is_one_and_shown_as_null() -> None:
    """alpha: null weighs every class by 1 and the response shows it as sent."""
    spec = resolve("focal")
    probs = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    none = evaluate(spec, probs, INDEX.astype(float), None, {}, gradient=True)
    one = evaluate(spec, probs, INDEX.astype(float), None, {"alpha": 1.0}, gradient=True)
    assert none.params["alpha"] is None
    np.testing.assert_array_equal(none.per_sample, one.per_sample)
    np.testing.assert_array_equal(none.gradient, one.gradient)


@pytest.mark.loss("generalized_cross_entropy")
def test_generalized_cross_entropy_floors_zero_probabilities() -> None:
    """A zero probability is floored at ε: finite loss, and zero gradient where the floor acts."""
    pred = np.array([[0.0, 0.3, 0.7], [0.5, 0.5, 0.0]])
    out = evaluate(resolve("gce"), pred, np.array([0.0, 2.0]), None, {}, reduction="none",
                   gradient=True, hessian=True)  # fmt: skip
    q = 0.7
    np.testing.assert_allclose(out.per_sample, [(1 - 1e-7**q) / q] * 2, rtol=RTOL)
    np.testing.assert_array_equal(out.gradient, np.zeros((2, 3)))
    np.testing.assert_array_equal(out.hessian, np.zeros((2, 3)))


@pytest.mark.loss("categorical_hinge")
@pytest.mark.parametrize(
    ("pred", "targ", "grad"),
    [
        ([0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]),  # target tied at 0: all weight there
        ([0.0, 2.0, 2.0], [1.0, 0.0, 0.0], [-1.0, 0.5, 0.5]),  # two wrong classes tied
        ([1.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.5, 0.5, -1.0]),
        ([2.0, 2.0, 2.0], [0.5, 0.25, 0.25], [-0.5, 0.125, 0.125]),  # soft: minimal norm
        ([1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]),  # l = 0 exactly: the kink gives 0
        ([3.0, 0.0, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]),  # l = 0 beyond the margin
    ],
)
def test_categorical_hinge_takes_the_smallest_subgradient(
    pred: list[float], targ: list[float], grad: list[float]
) -> None:
    """At a tied maximum or at the kink the gradient is the subgradient of smallest norm."""
    out = evaluate(resolve("categorical_hinge"), np.array([pred]), np.array([targ]), None, {},
                   reduction="sum", gradient=True, hessian=True)  # fmt: skip
    np.testing.assert_allclose(out.gradient[0], grad, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(out.hessian, np.zeros((1, len(pred))))


@pytest.mark.loss("categorical_hinge")
def test_categorical_hinge_soft_tie_is_the_minimum_norm_point() -> None:
    """A three-way soft tie: no point of the subdifferential has a smaller norm."""
    targ = np.array([0.2, 0.1, 0.3, 0.4])
    pred = 1.0 / (1.0 - targ)  # every (1 - y_c) ŷ_c is 1: all four tie
    out = evaluate(resolve("categorical_hinge"), pred[None], targ[None], None, {},
                   reduction="sum", gradient=True)  # fmt: skip
    best = np.linalg.norm(out.gradient[0])
    rng = np.random.default_rng(0)
    lam = rng.dirichlet(np.ones(4), size=20_000)
    norms = np.linalg.norm(-targ + (1 - targ) * lam, axis=1)
    assert best <= norms.min() + 1e-12


@pytest.mark.loss("multi_margin")
@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_terms_at_the_margin_contribute_nothing(p: int) -> None:
    """A term exactly at its margin (m − ŷ_y + ŷ_c = 0) adds 0 to loss, gradient and Hessian."""
    pred = np.array([[2.0, 1.0, -5.0]])  # class 1 sits exactly at margin 1 below class 0
    out = evaluate(resolve("multi_margin"), pred, np.array([0.0]), None, {"p": p},
                   reduction="sum", gradient=True, hessian=True)  # fmt: skip
    assert out.value == 0.0
    np.testing.assert_array_equal(out.gradient, np.zeros((1, 3)))
    np.testing.assert_array_equal(out.hessian, np.zeros((1, 3)))


@pytest.mark.loss("multi_margin")
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"p": 2},
        {"margin": 0.5, "class_weight": [0.3, 1.0, 2.0, 0.7]},
        {"p": 2, "margin": 2.0, "class_weight": [0.3, 1.0, 2.0, 0.7]},
    ],
)
def test_multi_margin_matches_torch(params: dict[str, Any]) -> None:
    """Per-sample losses and the weighted-sum gradient are torch's multi_margin_loss and its
    autograd; the mean divides by Σ w_i cw_{y_i} (SPEC section 4), not torch's N."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(31)
    scores = rng.normal(scale=2, size=(30, 4))
    index = rng.integers(0, 4, size=30)
    w = rng.uniform(0.5, 2, size=30)
    weight = params.get("class_weight")
    z = torch.tensor(scores, requires_grad=True)
    per_sample = torch.nn.functional.multi_margin_loss(
        z,
        torch.tensor(index),
        p=params.get("p", 1),
        margin=params.get("margin", 1.0),
        weight=None if weight is None else torch.tensor(weight, dtype=torch.float64),
        reduction="none",
    )
    (per_sample * torch.tensor(w)).sum().backward()
    spec = resolve("multi_margin")
    out = evaluate(spec, scores, index.astype(float), w, params, reduction="sum", gradient=True)
    np.testing.assert_allclose(out.per_sample, per_sample.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert z.grad is not None
    np.testing.assert_allclose(out.gradient, z.grad.numpy(), rtol=RTOL, atol=ATOL)
    mean = evaluate(spec, scores, index.astype(float), w, params)
    kappa = np.ones(4)[index] if weight is None else np.asarray(weight)[index]
    assert mean.weight_sum == pytest.approx(float(np.sum(w * kappa)), rel=RTOL)


@pytest.mark.loss("sparsemax")
def test_sparsemax_is_the_closed_form_and_zero_on_a_confident_target() -> None:
    """The loss is −z_y + ½Σ_{j∈S}(z_j² − τ²) + ½ (Martins and Astudillo), its gradient
    sparsemax(z) − onehot(y), 0 once sparsemax puts all its mass on the target; its Hessian
    diagonal is 1 − 1/|S| on the support."""
    z = np.array([[0.9, 0.4, -0.3, 0.6], [3.0, 0.5, 1.0, -2.0], [0.1, 0.2, 0.3, 0.4]])
    y = np.array([1, 0, 3])
    out = evaluate(resolve("sparsemax"), z, y.astype(float), None, reduction="none",
                   gradient=True, hessian=True)  # fmt: skip
    for i in range(3):
        s = np.sort(z[i])[::-1]
        k = np.arange(1, 5)
        size = int(np.max(k[1 + k * s > np.cumsum(s)]))
        tau = (np.sum(s[:size]) - 1) / size
        p = np.maximum(z[i] - tau, 0.0)
        closed = -z[i, y[i]] + 0.5 * np.sum(np.where(p > 0, z[i] ** 2 - tau**2, 0.0)) + 0.5
        assert out.per_sample[i] == pytest.approx(closed, rel=1e-12, abs=1e-15)
        np.testing.assert_allclose(out.gradient[i], p - np.eye(4)[y[i]], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(out.hessian[i], np.where(p > 0, 1 - 1 / size, 0.0), rtol=RTOL)
    assert out.per_sample[1] == 0.0 and np.all(out.gradient[1] == 0.0)


@pytest.mark.loss("sparsemax")
@pytest.mark.parametrize(
    ("targets", "fragment"),
    [([[0.5, 0.5, 0.0]], "neither 0 nor 1"), ([[1.0, 1.0, 0.0]], "2 ones"),
     ([[0.0, 0.0, 0.0]], "0 ones")],
)  # fmt: skip
def test_sparsemax_takes_one_target_class_a_row(targets: list[list[float]], fragment: str) -> None:
    """Soft rows, rows of two classes or none are 422s: the loss needs one target class."""
    with pytest.raises(LossdError) as info:
        evaluate(resolve("sparsemax"), np.zeros((1, 3)), np.array(targets))
    assert info.value.code == "invalid_array" and fragment in info.value.detail


@pytest.mark.loss("additive_margin_softmax", "additive_angular_margin_softmax")
@pytest.mark.parametrize("name", ["additive_margin_softmax", "additive_angular_margin_softmax"])
def test_margin_softmaxes_match_torch_with_sum(name: str) -> None:
    """Issue 15's acceptance: with reduction sum and the defaults (AM-softmax s = 30, m = 0.35;
    ArcFace s = 64, m = 0.5) the value and the gradient are torch's autograd of
    cross_entropy on the margin logits (ArcFace's as insightface forms them) within 1e-8."""
    torch = pytest.importorskip("torch")
    from tests.support.libraries import insightface_arcface_logits

    rng = np.random.default_rng(46)
    cosines = rng.uniform(-1, 1, size=(64, 10))
    index = rng.integers(0, 10, size=64)
    x = torch.tensor(cosines, requires_grad=True)
    y = torch.nn.functional.one_hot(torch.tensor(index), 10).to(torch.float64)
    if name == "additive_margin_softmax":
        logits = 30.0 * (x - 0.35 * y)
    else:
        logits = insightface_arcface_logits(x, y, 64.0, 0.5)
    value = torch.nn.functional.cross_entropy(logits, torch.tensor(index), reduction="sum")
    value.backward()
    out = evaluate(resolve(name), cosines, index.astype(float), None, reduction="sum",
                   gradient=True)  # fmt: skip
    assert out.value == pytest.approx(value.item(), rel=1e-8)
    assert x.grad is not None
    np.testing.assert_allclose(out.gradient, x.grad.numpy(), rtol=1e-8, atol=1e-12)


@pytest.mark.loss("additive_margin_softmax", "additive_angular_margin_softmax")
@pytest.mark.parametrize("name", ["additive_margin_softmax", "additive_angular_margin_softmax"])
def test_margin_softmaxes_are_exact_on_any_cosines(name: str) -> None:
    """On cosines anywhere in (−1, 1), where at the default scales one class's softmax often
    nears 1 (torch's double backward forms 1 − p by cancellation there), the per-sample
    losses, gradient and Hessian diagonal equal the mpmath reference at 1e-9 / 1e-12."""
    rng = np.random.default_rng(47)
    cosines = rng.uniform(-1, 1, size=(8, 4))
    index = rng.integers(0, 4, size=8).astype(float)
    out = evaluate(resolve(name), cosines, index, None, reduction="sum", gradient=True,
                   hessian=True)  # fmt: skip
    exact = evaluate_exact(name, cosines, index, {})
    for got, want in ((out.per_sample, exact.per_sample), (out.gradient, exact.gradient),
                      (out.hessian, exact.hessian)):  # fmt: skip
        np.testing.assert_allclose(got, rounded(want, np.float64).reshape(np.shape(got)),
                                   rtol=RTOL, atol=ATOL)  # fmt: skip


@pytest.mark.loss("additive_angular_margin_softmax")
def test_arcface_takes_cosines_and_has_no_slope_at_one() -> None:
    """Cosines outside [−1, 1] are a 422; a target cosine of exactly 1 has a value, and a
    gradient asked for there (cos(arccos c + m) has an infinite slope at c = 1) is a 422."""
    spec = resolve("additive_angular_margin_softmax")
    with pytest.raises(LossdError) as info:
        evaluate(spec, np.array([[1.5, 0.0]]), np.array([0.0]))
    assert info.value.code == "out_of_domain" and "[-1, 1]" in info.value.detail
    at_one = np.array([[1.0, 0.0, -0.5]])
    out = evaluate(spec, at_one, np.array([0.0]), reduction="sum")
    expected = -np.log(1 / (1 + np.exp(64 * (0 - np.cos(0.5))) + np.exp(64 * (-0.5 - np.cos(0.5)))))
    assert out.value == pytest.approx(expected, rel=1e-12)
    with pytest.raises(LossdError) as info:
        evaluate(spec, at_one, np.array([0.0]), gradient=True)
    assert info.value.code == "out_of_domain" and "finite" in info.value.detail


@pytest.mark.loss("multilabel_margin")
def test_multilabel_margin_reads_target_lists_as_torch_does() -> None:
    """The list ends at the first −1 (entries after it are ignored), a class listed twice
    counts twice, a row listing every class or none has loss 0; integer and float targets
    agree; per-sample losses and the weighted-sum gradient are torch's, at a margin 0."""
    torch = pytest.importorskip("torch")
    scores = np.array([[0.1, 0.2, 0.4, 0.8], [0.1, 0.2, 0.4, 0.8], [2.0, 1.0, 0.0, 3.0],
                       [0.5, -0.5, 1.5, 0.0], [1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.5, 0.0]])
    targets = np.array([[3, 0, -1, 1], [3, 3, -1, 2], [0, 1, 2, 3], [-1, 0, 1, 2], [3, -1, 0, 0],
                        [1, -1, -1, -1]])  # fmt: skip
    w = np.array([0.5, 1.0, 2.0, 1.0, 1.5, 3.0])
    z = torch.tensor(scores, requires_grad=True)
    per_sample = torch.nn.functional.multilabel_margin_loss(z, torch.tensor(targets),
                                                            reduction="none")  # fmt: skip
    (per_sample * torch.tensor(w)).sum().backward()
    spec = resolve("multilabel_margin")
    for sent in (targets, targets.astype(float)):
        out = evaluate(spec, scores, sent, w, reduction="sum", gradient=True, hessian=True)
        np.testing.assert_allclose(out.per_sample, per_sample.detach().numpy(), rtol=RTOL,
                                   atol=ATOL)  # fmt: skip
        assert z.grad is not None
        np.testing.assert_allclose(out.gradient, z.grad.numpy(), rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(out.hessian, np.zeros_like(scores))
    assert out.per_sample[2] == out.per_sample[3] == 0.0
    # row 5: class 1 (listed) against classes 0 and 3 sits exactly at the margin: no term
    assert out.gradient[5, 0] == out.gradient[5, 3] == 0.0
    assert out.gradient[5, 1] == -out.gradient[5, 2] == pytest.approx(-3.0 / 4, rel=RTOL)


@pytest.mark.loss("multilabel_margin")
@pytest.mark.parametrize(
    ("targets", "code", "fragment"),
    [
        ([[0, 3, -1], [1, -1, 0]], "invalid_array", "not a class index"),
        ([[0, -1, 5], [1, -1, 0]], "invalid_array", "not a class index"),
        ([[0, -2, 1], [1, -1, 0]], "invalid_array", "not a class index"),
        ([[0, 1.5, -1], [1, -1, 0]], "invalid_array", "not an integer"),
        ([0, 1], "shape_mismatch", "ended by -1"),
    ],
)
def test_multilabel_margin_targets_say_what_to_change(
    targets: list[Any], code: str, fragment: str
) -> None:
    """Entries outside [−1, C) (after the −1 too, as torch checks), fractions and (N,) targets
    are 422s that say what multilabel_margin takes."""
    with pytest.raises(LossdError) as info:
        evaluate(resolve("multilabel_margin"), np.zeros((2, 3)), np.array(targets))
    assert info.value.code == code and fragment in info.value.detail


def _torch_focal(z: Any, y: Any, gamma: float, alpha: float, from_logits: bool, eps: float) -> Any:
    torch = pytest.importorskip("torch")
    if from_logits:
        logp = torch.log_softmax(z, dim=1)
        p = logp.exp()
    else:
        p = torch.clamp(z / z.sum(dim=1, keepdim=True), eps, 1 - eps)
        logp = p.log()
    return -(alpha * y * (1 - p) ** gamma * logp).sum(dim=1)


def _torch_poly1(z: Any, y: Any, epsilon_poly: float, from_logits: bool, eps: float) -> Any:
    torch = pytest.importorskip("torch")
    if from_logits:
        logp = torch.log_softmax(z, dim=1)
        p = logp.exp()
    else:
        p = torch.clamp(z / z.sum(dim=1, keepdim=True), eps, 1 - eps)
        logp = p.log()
    return -(y * logp).sum(dim=1) + epsilon_poly * (y * (1 - p)).sum(dim=1)


TORCH_FORMULAS = [
    (resolve("focal"), {"from_logits": True}),
    (resolve("focal"), {"from_logits": True, "gamma": 0.5, "alpha": 0.25}),
    (resolve("focal"), {"gamma": 3.0}),
    (resolve("focal"), {"gamma": 1.0, "alpha": 2.0}),
    (resolve("poly1_cross_entropy"), {}),
    (resolve("poly1_cross_entropy"), {"epsilon_poly": -1.0}),
    (resolve("poly1_cross_entropy"), {"from_logits": False, "epsilon_poly": 1.0}),
]


@pytest.mark.parametrize(("spec", "params"), TORCH_FORMULAS, ids=spec_id)
def test_focal_and_poly1_match_torch_autograd(spec: LossSpec, params: dict[str, Any]) -> None:
    """Values, gradients and Hessian diagonals agree with the formulas written in torch and
    differentiated by its autograd (one-hot targets)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(32)
    logits = rng.normal(scale=2, size=(12, 4))
    from_logits = params.get("from_logits", spec.params.model_fields["from_logits"].default)
    pred = logits if from_logits else np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    index = rng.integers(0, 4, size=12)
    w = rng.uniform(0.5, 2, size=12)
    y = torch.tensor(np.eye(4)[index])

    def total(z: Any) -> Any:
        if spec.name == "focal":
            per = _torch_focal(z, y, params.get("gamma", 2.0), params.get("alpha", 1.0),
                               from_logits, 1e-7)  # fmt: skip
        else:
            per = _torch_poly1(z, y, params.get("epsilon_poly", 2.0), from_logits, 1e-7)
        return (per * torch.tensor(w)).sum()

    z = torch.tensor(pred, requires_grad=True)
    (grad,) = torch.autograd.grad(total(z), z, create_graph=True)
    diag = np.zeros_like(pred)
    for k in range(pred.shape[1]):  # the diagonal of each row's Hessian, one class at a time
        (second,) = torch.autograd.grad(grad[:, k].sum(), z, retain_graph=True)
        diag[:, k] = second[:, k].numpy()
    out = evaluate(spec, pred, index.astype(float), w, params, reduction="sum", gradient=True,
                   hessian=True)  # fmt: skip
    assert out.value == pytest.approx(total(z).item(), rel=RTOL)
    np.testing.assert_allclose(out.gradient, grad.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.hessian, diag, rtol=1e-8, atol=1e-10)


@pytest.mark.loss("focal")
@pytest.mark.parametrize(
    "params",
    [{}, {"gamma": 0.5, "alpha": 0.25, "label_smoothing": 0.2}, {"from_logits": True}],
)
def test_focal_matches_keras(params: dict[str, Any]) -> None:
    """Per-sample values are keras.losses.CategoricalFocalCrossentropy's (alpha = alpha or 1)."""
    pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    keras.config.set_floatx("float64")
    rng = np.random.default_rng(33)
    logits = rng.normal(scale=2, size=(10, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = logits if params.get("from_logits") else probs
    index = rng.integers(0, 4, size=10)
    loss = keras.losses.CategoricalFocalCrossentropy(
        alpha=params.get("alpha") or 1.0,
        gamma=params.get("gamma", 2.0),
        from_logits=params.get("from_logits", False),
        label_smoothing=params.get("label_smoothing", 0.0),
        reduction=None,
    )
    expected = np.asarray(loss(np.eye(4)[index], pred))
    out = evaluate(resolve("focal"), pred, index.astype(float), None, params, reduction="none")
    np.testing.assert_allclose(out.per_sample, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.loss("generalized_cross_entropy")
@pytest.mark.parametrize("q", [0.7, 0.3, 1.0])
def test_generalized_cross_entropy_matches_keras(q: float) -> None:
    """Index targets and probabilities: keras.losses.categorical_generalized_cross_entropy(q)."""
    torch = pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    keras.config.set_floatx("float64")
    rng = np.random.default_rng(34)
    probs = rng.dirichlet(np.ones(4), size=10)
    index = rng.integers(0, 4, size=10)
    gce = keras.losses.categorical_generalized_cross_entropy
    expected = gce(torch.tensor(index), torch.tensor(probs), q=q).detach().numpy()
    out = evaluate(resolve("gce"), probs, index.astype(float), None, {"q": q}, reduction="none")
    np.testing.assert_allclose(out.per_sample, expected, rtol=RTOL, atol=ATOL)


# the multiclass losses that take probabilities, or logits with from_logits
PROBABILITIES = [
    spec
    for spec in REGISTRY
    if spec.family == "multiclass" and "from_logits" in spec.params.model_fields
]


@pytest.mark.parametrize("spec", PROBABILITIES, ids=spec_id)
def test_probabilities_outside_the_unit_interval_suggest_from_logits(spec: LossSpec) -> None:
    """Each multiclass loss that takes probabilities answers logits with a 422 naming from_logits
    (with its usable default parameters, ``warm_up``, and from_logits false)."""
    params = {**spec.params.warm_up, "from_logits": False}
    with pytest.raises(LossdError) as info:
        evaluate(spec, LOGITS, INDEX.astype(float), None, params)
    assert info.value.code == "out_of_domain" and "from_logits: true" in info.value.detail


# --- issue 11: label smoothing s/C, ignored samples masked, torch's names ---------------------


@pytest.mark.loss("cross_entropy", "focal", "poly1_cross_entropy")
@pytest.mark.parametrize("name", ["cross_entropy", "focal", "poly1_cross_entropy"])
def test_an_all_zero_soft_row_is_smoothed_like_any_other(name: str) -> None:
    """y' = (1 − s)y + s/C whatever the row sums to: an all-zero soft row that is not an ignored
    index has the smoothing's loss (LOSSES.md, target rules)."""
    z = np.array([[0.3, -1.0, 2.0]])
    out = evaluate(resolve(name), z, np.zeros((1, 3)), None,
                   {"from_logits": True, "label_smoothing": 0.3}, reduction="sum")  # fmt: skip
    uniform = evaluate(resolve(name), z, np.full((1, 3), 1 / 3), None,
                       {"from_logits": True, "label_smoothing": 0.3}, reduction="sum")  # fmt: skip
    assert out.value > 0
    # y' of the zero row is s/C = 0.1 everywhere; of the uniform row 0.7/3 + 0.1: a factor 10/3
    np.testing.assert_allclose(out.value * (0.7 / 3 + 0.1) / 0.1, uniform.value, rtol=RTOL)


@pytest.mark.loss("cross_entropy", "focal")
@pytest.mark.parametrize("name", ["cross_entropy", "focal"])
def test_ignored_samples_are_masked_not_smoothed(name: str) -> None:
    """An ignored index has loss 0, gradient 0 and no weight in the mean, with label smoothing
    as without (torch's ignore_index)."""
    z = np.array([[0.3, -1.0, 2.0], [1.0, 0.5, -0.5]])
    params = {"from_logits": True, "label_smoothing": 0.2, "ignore_index": -100}
    out = evaluate(resolve(name), z, np.array([-100.0, 1.0]), None, params, reduction="mean",
                   gradient=True)  # fmt: skip
    alone = evaluate(resolve(name), z[1:], np.array([1.0]), None, params, reduction="mean",
                     gradient=True)  # fmt: skip
    assert out.per_sample is None or out.per_sample[0] == 0.0
    np.testing.assert_array_equal(out.gradient[0], 0.0)
    assert out.value == pytest.approx(alone.value, rel=RTOL)
    np.testing.assert_allclose(out.gradient[1], alone.gradient[0], rtol=RTOL, atol=ATOL)


def test_cross_entropy_from_logits_keeps_the_log_term_at_1e300() -> None:
    """log p = (z − max) − log Σ e^(z − max): [[1e300, 1e300, −1e300]], class 0 is log 2
    (max + log Σ, then z − that, gave 0)."""
    out = evaluate(resolve("cross_entropy"), np.array([[1e300, 1e300, -1e300]]), np.array([0.0]),
                   None, {"from_logits": True}, reduction="sum")  # fmt: skip
    assert out.value == pytest.approx(np.log(2.0), rel=1e-15)


@pytest.mark.loss("cross_entropy", "focal", "generalized_cross_entropy")
@pytest.mark.parametrize("name", ["cross_entropy", "focal", "generalized_cross_entropy"])
def test_torch_weight_is_another_name_for_class_weight(name: str) -> None:
    """``weight`` (torch's name) is accepted for ``class_weight``; the schema and the params in
    force say ``class_weight``; sending both is a 422."""
    spec = resolve(name)
    z, t = np.array([[0.3, -1.0, 2.0], [1.0, 0.5, -0.5]]), np.array([2.0, 0.0])
    base = {"from_logits": True}
    by_torch = evaluate(spec, z, t, None, {**base, "weight": [0.5, 1.0, 2.0]})
    by_lossd = evaluate(spec, z, t, None, {**base, "class_weight": [0.5, 1.0, 2.0]})
    assert by_torch.value == by_lossd.value
    assert "class_weight" in spec.params.model_json_schema()["properties"]
    with pytest.raises(InvalidParams):
        evaluate(spec, z, t, None, {**base, "weight": [1.0] * 3, "class_weight": [1.0] * 3})


def test_library_names_resolve() -> None:
    """NLLLoss and softmax_cross_entropy name cross_entropy; sigmoid_binary_cross_entropy names
    binary_cross_entropy."""
    assert resolve("NLLLoss").name == resolve("softmax_cross_entropy").name == "cross_entropy"
    assert resolve("sigmoid_binary_cross_entropy").name == "binary_cross_entropy"
