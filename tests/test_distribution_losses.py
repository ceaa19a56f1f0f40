"""KL and Jensen-Shannon divergences and the Dice and Tversky losses against their libraries and
at their edges (extreme logits, clipping, empty masks)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from service.errors import LossdError
from service.losses import REGISTRY, LossSpec, resolve
from tests.support.harness import (
    ATOL,
    RTOL,
    assert_gradient_matches_finite_differences,
    evaluate,
    spec_id,
)

OVERLAP_LOSSES = [spec for spec in REGISTRY if spec.family == "overlap"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


# --- js_divergence ---------------------------------------------------------------------------


@pytest.mark.loss("js_divergence")
def test_js_divergence_is_scipy_jensenshannon_squared() -> None:
    """Per-sample JS equals scipy's jensenshannon(P, Q)**2, rows of either unnormalised when
    ``normalize: true`` asks for scipy's renormalisation."""
    rng = np.random.default_rng(31)
    q = rng.uniform(0.05, 0.6, size=(8, 4))  # rows do not sum to 1: scipy renormalises them
    p = rng.uniform(0.0, 2.0, size=(8, 4))
    p[0, 2] = 0.0  # 0·log 0 = 0
    q[1, 3] = 0.0
    out = evaluate(resolve("js_divergence"), q, p, None, {"normalize": True}, reduction="none")
    expected = jensenshannon(p, q, axis=1) ** 2
    np.testing.assert_allclose(out.per_sample, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.loss("js_divergence")
def test_js_divergence_gradient_follows_scipy_through_the_renormalisation() -> None:
    """The gradient w.r.t. unnormalised probabilities is that of scipy's renormalising formula."""
    rng = np.random.default_rng(32)
    q = rng.uniform(0.05, 0.6, size=(5, 3))
    p = rng.uniform(0.1, 2.0, size=(5, 3))
    assert_gradient_matches_finite_differences(
        resolve("js_divergence"), q, p, None, {"normalize": True},
        loss=lambda x: jensenshannon(p, x, axis=1) ** 2,
        rtol=1e-6, atol=1e-8,
    )  # fmt: skip


@pytest.mark.loss("js_divergence")
def test_js_divergence_from_logits_is_scipy_of_the_softmax() -> None:
    """From logits, JS is scipy's jensenshannon(P, softmax(z))**2, with index targets one-hot."""
    rng = np.random.default_rng(33)
    z = rng.uniform(-5, 5, size=(6, 3))
    index = np.array([0, 1, 2, 2, 1, 0])
    out = evaluate(resolve("jsd"), z, index, None, {"from_logits": True}, reduction="none")
    expected = jensenshannon(np.eye(3)[index], _softmax(z), axis=1) ** 2
    np.testing.assert_allclose(out.per_sample, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.loss("js_divergence")
@pytest.mark.parametrize("logit", [1e300, -1e300, 1000.0])
def test_js_divergence_is_finite_for_extreme_logits(logit: float) -> None:
    """Any finite logit gives a finite JS, gradient and Hessian; a certain miss costs log 2."""
    pred = np.array([[logit, 0.0, -logit], [0.0, logit, 1.0]])
    out = evaluate(resolve("js_divergence"), pred, np.array([2, 0]), None,
                   {"from_logits": True}, gradient=True, hessian=True)  # fmt: skip
    assert np.isfinite(out.gradient).all() and np.isfinite(out.hessian).all()
    if logit > 0:  # softmax puts all mass on class 0, the target is class 2: disjoint, JS = log 2
        assert out.per_sample[0] == pytest.approx(np.log(2.0), rel=1e-12)


@pytest.mark.loss("js_divergence")
@pytest.mark.parametrize(
    ("pred", "targ", "code", "fragment"),
    [
        ([[0.5, 1.5, 0.0]], [0], "out_of_domain", "from_logits: true"),
        ([[0.0, 0.0, 0.0]], [0], "out_of_domain", "sums to 0"),
        ([[0.2, 0.3, 0.5]], [[0.0, 0.0, 0.0]], "invalid_array", "sums to 0"),
    ],
)
def test_js_divergence_rejects_rows_it_cannot_renormalise(
    pred: list[Any], targ: list[Any], code: str, fragment: str
) -> None:
    """Non-probabilities suggest from_logits; rows summing to 0 cannot be renormalised (422)."""
    with pytest.raises(LossdError) as info:
        evaluate(resolve("js_divergence"), np.array(pred), np.array(targ))
    assert info.value.status == 422 and info.value.code == code
    assert fragment in info.value.detail


# --- kl_divergence ---------------------------------------------------------------------------


@pytest.mark.loss("kl_divergence")
@pytest.mark.parametrize("logit", [1e300, -1e300, 1000.0, -1000.0])
def test_kl_divergence_is_finite_for_extreme_logits(logit: float) -> None:
    """Any finite logit gives a finite loss, gradient and Hessian (log-sum-exp)."""
    pred = np.array([[logit, 0.0, -logit], [0.0, logit, 1.0]])
    out = evaluate(resolve("kl_divergence"), pred, np.array([2, 0]), None,
                   {"from_logits": True}, gradient=True, hessian=True)  # fmt: skip
    assert np.isfinite(out.value) and np.isfinite(out.gradient).all()
    assert np.isfinite(out.hessian).all()
    # one-hot P: KL = -log_softmax(z)_2 = 2·logit when logit > 0, ≈ 0 otherwise
    assert out.per_sample[0] == pytest.approx(2 * logit if logit > 0 else 0.0, rel=1e-12)


@pytest.mark.loss("kl_divergence")
def test_kl_divergence_clips_both_distributions_like_keras() -> None:
    """Probabilities: P and Q clipped to [ε, 1] (keras.losses.kl_divergence), zero derivative where clipped."""
    eps = 0.05
    pred = np.array([[0.0, 0.3, 1.0], [0.02, 0.5, 0.48]])
    targ = np.array([[0.0, 0.4, 0.6], [0.5, 0.5, 0.0]])
    # rows that are not distributions (0.3 + 1.0): normalize: true takes them as Keras does
    out = evaluate(resolve("kld"), pred, targ, None, {"epsilon": eps, "normalize": True}, reduction="none",
                   gradient=True, hessian=True)  # fmt: skip
    y, q = np.clip(targ, eps, 1), np.clip(pred, eps, 1)
    np.testing.assert_allclose(out.per_sample, (y * np.log(y / q)).sum(axis=1), rtol=RTOL)
    active = (pred > eps) & (pred < 1)
    want_g = np.where(active, -y / np.where(active, pred, 1.0), 0.0)
    want_h = np.where(active, y / np.where(active, pred, 1.0) ** 2, 0.0)
    np.testing.assert_allclose(out.gradient, want_g, rtol=RTOL)
    np.testing.assert_allclose(out.hessian, want_h, rtol=RTOL)
    assert out.gradient[0, 0] == 0.0 and out.gradient[0, 2] == 0.0


@pytest.mark.loss("kl_divergence")
def test_kl_divergence_matches_keras() -> None:
    """keras.losses.kl_divergence (torch backend, float64 tensors) and its autograd gradient."""
    torch = pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(34)
    pred = rng.dirichlet(np.ones(4), size=6)
    targ = rng.dirichlet(np.ones(4), size=6)
    targ[0] = [0.0, 1.0, 0.0, 0.0]  # Keras clips y_true too: zeros count as ε
    pred[1] = [0.0, 0.5, 0.3, 0.2]  # a clipped prediction: derivative 0
    q = torch.tensor(pred, requires_grad=True)
    per_row = keras.losses.kl_divergence(torch.tensor(targ), q)
    per_row.sum().backward()
    assert q.grad is not None
    out = evaluate(resolve("kl_divergence"), pred, targ, reduction="sum", gradient=True)
    np.testing.assert_allclose(out.per_sample, per_row.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.gradient, q.grad.numpy(), rtol=RTOL, atol=ATOL)
    assert out.gradient[1, 0] == 0.0


@pytest.mark.loss("kl_divergence")
def test_kl_divergence_probabilities_outside_unit_interval_suggest_from_logits() -> None:
    """Logits sent without from_logits get a 422 that suggests from_logits: true."""
    with pytest.raises(LossdError) as info:
        evaluate(resolve("kl_divergence"), np.array([[2.0, -1.0, 0.5]]), np.array([0]))
    assert info.value.code == "out_of_domain" and "from_logits: true" in info.value.detail


@pytest.mark.loss("kl_divergence")
def test_kl_divergence_from_logits_matches_torch_kl_div() -> None:
    """Per-row torch kl_div(log_softmax(z), P), its batchmean, autograd gradient and Hessian."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(35)
    z = rng.uniform(-4, 4, size=(5, 4))
    p = rng.dirichlet(np.ones(4), size=5)
    p[0] = [0.0, 0.7, 0.3, 0.0]  # xlogy(0, 0) = 0
    p[1] *= 0.6  # a row of mass 0.6 (normalize: true): the gradient is (ΣP) q − P

    def rows(x: Any) -> Any:
        log_q = functional.log_softmax(x, dim=-1)
        return functional.kl_div(log_q, torch.tensor(p), reduction="none").sum(-1)

    zt = torch.tensor(z, requires_grad=True)
    per_row = rows(zt)
    per_row.sum().backward()
    assert zt.grad is not None
    hessian = torch.autograd.functional.hessian(lambda x: rows(x).sum(), torch.tensor(z))
    diagonal = hessian.reshape(z.size, z.size).diagonal().reshape(z.shape).numpy()
    batchmean = functional.kl_div(
        functional.log_softmax(torch.tensor(z), -1), torch.tensor(p), reduction="batchmean"
    )
    spec = resolve("KLDivLoss")
    params = {"from_logits": True, "normalize": True}
    out = evaluate(spec, z, p, None, params, reduction="sum", gradient=True,
                   hessian=True)  # fmt: skip
    mean = evaluate(spec, z, p, None, params)
    np.testing.assert_allclose(out.per_sample, per_row.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.gradient, zt.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.hessian, diagonal, rtol=RTOL, atol=ATOL)
    assert mean.value == pytest.approx(float(batchmean), rel=RTOL)


# --- dice and tversky ------------------------------------------------------------------------

EMPTY_MASKS = [
    (resolve("dice"), {"smooth": 0.0}),
    (resolve("tversky"), {"smooth": 0.0}),
    (resolve("tversky"), {"smooth": 0.0, "alpha": 0.3, "beta": 0.9}),
]


@pytest.mark.parametrize(("spec", "params"), EMPTY_MASKS, ids=spec_id)
def test_two_empty_masks_overlap_perfectly(spec: LossSpec, params: dict[str, Any]) -> None:
    """A row with both masks empty and smooth 0 (0/0) has loss 0, gradient 0 and Hessian 0."""
    pred = np.array([[0.0, 0.0, 0.0], [0.2, 0.9, 0.0]])
    targ = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    out = evaluate(spec, pred, targ, None, params, reduction="none", gradient=True,
                   hessian=True)  # fmt: skip
    assert out.per_sample[0] == 0.0
    assert (out.gradient[0] == 0.0).all() and (out.hessian[0] == 0.0).all()
    assert 0.0 < out.per_sample[1] < 1.0  # the other row is unaffected


@pytest.mark.loss("tversky")
def test_tversky_without_false_positive_weight_forgives_an_empty_target() -> None:
    """alpha 0, smooth 0, empty target: the denominator is 0 for any prediction, so the loss is 0."""
    out = evaluate(resolve("tversky"), np.array([[0.3, 0.8]]), np.zeros((1, 2)), None,
                   {"alpha": 0.0, "smooth": 0.0}, gradient=True)  # fmt: skip
    assert out.per_sample[0] == 0.0 and (out.gradient == 0.0).all()


@pytest.mark.loss("dice")
def test_empty_target_with_smooth_is_the_limit_of_the_formula() -> None:
    """With smooth > 0 two empty masks give (0 + s)/(0 + s) = 1, loss 0, without a special case."""
    out = evaluate(resolve("dice"), np.zeros((1, 3)), np.zeros((1, 3)), gradient=True)
    assert out.per_sample[0] == 0.0
    np.testing.assert_array_equal(out.gradient, np.ones((1, 3)))  # (A − 2tB)/B² = 1/s


@pytest.mark.loss("dice")
def test_dice_rank_one_is_one_element_rows() -> None:
    """Rank-1 inputs are N one-element masks: l_i = 1 − (2pt + s)/(p + t + s)."""
    p = np.array([0.2, 0.7, 0.0])
    t = np.array([1.0, 0.0, 0.0])
    out = evaluate(resolve("dice_loss"), p, t, None, {"smooth": 0.5}, reduction="none")
    np.testing.assert_allclose(out.per_sample, 1 - (2 * p * t + 0.5) / (p + t + 0.5))


@pytest.mark.parametrize("spec", OVERLAP_LOSSES, ids=spec_id)
@pytest.mark.parametrize("logit", [1e300, -1e300, 800.0, -800.0])
def test_overlap_losses_are_finite_for_extreme_logits(spec: LossSpec, logit: float) -> None:
    """From logits the sigmoid is taken as exp(log σ): any finite logit stays finite."""
    pred = np.array([[logit, -logit, 0.0], [logit, logit, logit]])
    targ = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    out = evaluate(spec, pred, targ, None, {"from_logits": True}, gradient=True,
                   hessian=True)  # fmt: skip
    assert np.isfinite(out.per_sample).all() and np.isfinite(out.gradient).all()
    assert np.isfinite(out.hessian).all()


@pytest.mark.parametrize("spec", OVERLAP_LOSSES, ids=spec_id)
def test_tiny_sigmoids_against_an_empty_target(spec: LossSpec) -> None:
    """σ(−700) ≈ 1e-304 is a non-empty mask (loss 1, no B² underflow); σ(−800) = 0 is empty."""
    params = {"from_logits": True, "smooth": 0.0}
    tiny = evaluate(spec, np.full((1, 2), -700.0), np.zeros((1, 2)), None, params,
                    gradient=True, hessian=True)  # fmt: skip
    assert tiny.per_sample[0] == 1.0
    assert (tiny.gradient == 0.0).all() and (tiny.hessian == 0.0).all()
    empty = evaluate(spec, np.full((1, 2), -800.0), np.zeros((1, 2)), None, params)
    assert empty.per_sample[0] == 0.0


@pytest.mark.parametrize("spec", OVERLAP_LOSSES, ids=spec_id)
def test_overlap_losses_check_their_inputs(spec: LossSpec) -> None:
    """Targets outside [0, 1] are invalid; probabilities outside [0, 1] suggest from_logits."""
    with pytest.raises(LossdError) as info:
        evaluate(spec, np.array([[0.5, 0.5]]), np.array([[0.5, 1.5]]))
    assert info.value.code == "invalid_array"
    with pytest.raises(LossdError) as info:
        evaluate(spec, np.array([[0.5, 2.0]]), np.array([[0.5, 1.0]]))
    assert info.value.code == "out_of_domain" and "from_logits: true" in info.value.detail


@pytest.mark.loss("kl_divergence")
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_divergence_log_input_is_torch_kl_div_as_given(log_target: bool) -> None:
    """``log_input``: predictions are log-probabilities used as given (torch's KLDivLoss), per
    row torch ``kl_div(x, P, reduction="sum", log_target)``, gradient −P, Hessian 0."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(36)
    x = np.log(rng.dirichlet(np.ones(4), size=5)) + rng.normal(
        0, 0.3, size=(5, 4)
    )  # not renormalised
    p = rng.dirichlet(np.ones(4), size=5)
    p[0] = [0.0, 0.7, 0.3, 0.0]  # xlogy(0, 0) = 0
    t = np.log(np.where(p > 0, p, 1e-300)) if log_target else p
    xt = torch.tensor(x, requires_grad=True)
    per_row = torch.nn.functional.kl_div(
        xt, torch.tensor(t), reduction="none", log_target=log_target
    ).sum(-1)
    per_row.sum().backward()
    assert xt.grad is not None
    params = {"log_input": True, "log_target": log_target}
    out = evaluate(resolve("KLDivLoss"), x, t, None, params, reduction="sum", gradient=True,
                   hessian=True)  # fmt: skip
    np.testing.assert_allclose(out.per_sample, per_row.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.gradient, xt.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(out.hessian, np.zeros_like(x))


@pytest.mark.loss("kl_divergence")
def test_kl_divergence_log_input_and_from_logits_are_exclusive() -> None:
    """Two readings of the predictions at once are a 422 (invalid params)."""
    with pytest.raises(LossdError) as info:
        evaluate(resolve("kl_divergence"), np.zeros((1, 2)), np.array([[0.5, 0.5]]), None,
                 {"log_input": True, "from_logits": True})  # fmt: skip
    assert info.value.status == 422 and "log_input" in info.value.detail


@pytest.mark.loss("kl_divergence", "js_divergence")
@pytest.mark.parametrize("name", ["kl_divergence", "js_divergence"])
@pytest.mark.parametrize("field", ["predictions", "targets"])
def test_rows_that_are_not_distributions_are_refused_unless_normalize(
    name: str, field: str
) -> None:
    """Probability and target rows off 1 by more than 1e-3 are a 422 naming the field at fault,
    ``from_logits: true`` and ``normalize: true``; ``normalize: true`` answers."""
    good = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    bad = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.3]])
    pred, targ = (bad, good) if field == "predictions" else (good, bad)
    with pytest.raises(LossdError) as info:
        evaluate(resolve(name), pred, targ)
    assert info.value.status == 422 and info.value.code == "out_of_domain"
    detail = info.value.detail
    assert field in detail and "from_logits: true" in detail and "normalize: true" in detail
    assert np.isfinite(evaluate(resolve(name), pred, targ, None, {"normalize": True}).value)
