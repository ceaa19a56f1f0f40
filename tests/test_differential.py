"""Differential tests: every registered loss, every parameter variant, against the library call
LOSSES.md names for it, in float64 at relative 1e-9 / absolute 1e-12 (SPEC section 4).

For each variant (``harness.VARIANTS``), shape and target form, on a few seeds: the per-sample
losses, the reduced value for ``mean`` and ``sum`` (SPEC's reductions of the library's
per-sample losses, with sample weights and κ), its gradient (autograd of that reduced value) and
its Hessian diagonal (double backward). The library references are in
``tests/support/libraries.py``, which says how each library is reached: PyTorch is called; Keras
cannot compute in float64 on the torch backend, so it is called and compared at 1e-6 here, and
its formulas, written out in torch float64, are compared at 1e-9; optax is its source's formulas
in torch float64 (optax, Rax and XGBoost themselves are called by
tests/test_listwise_losses.py); scikit-learn and scipy are called for the values, their
formulas in torch give the gradients; XGBoost is its objectives' gradient and Hessian formulas.

The aliases that carry their library's defaults (LOSSES.md, "Aliases carry their library's
defaults") are evaluated through the ``/loss`` codec (``evaluate_one``), so the alias's defaults
and reduction apply, against the library function called with its default arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import sklearn.metrics
import torch

from service.codecs.loss import evaluate_one
from service.losses import REGISTRY, LossSpec, resolve
from tests.support import libraries as lib
from tests.support.harness import (
    ATOL,
    HARNESSED,
    RTOL,
    VARIANTS,
    evaluate,
    sample,
    shapes_for,
    spec_id,
    variant_id,
)
from tests.support.references import CASES, Array, Kind, Sample, draw

F = torch.nn.functional
SEEDS = (31, 32)
# soft target rows that are not distributions, label smoothing's case (LOSSES.md: y' = (1 − s)y +
# s/C "whatever its row sums to"): ZERO_ROW has one all-zero row among distributions, MASS rows
# summing to 0, 0.5, 2, 1.3 and 0.7
ZERO_ROW, MASS = "zero-row", "mass"
ROW_SUMS = {ZERO_ROW: np.array([1.0, 0.0, 1.0]), MASS: np.array([1.0, 0.0, 0.5, 2.0, 1.3, 0.7])}
# the losses whose soft targets may have any non-negative mass (the cross-entropy family)
MASS_LOSSES = (
    "cross_entropy",
    "focal",
    "generalized_cross_entropy",
    "poly1_cross_entropy",
    "simloss",
    "categorical_hinge",
    "multi_margin",
    "generalized_kl_divergence",  # unnormalised measures, any mass by definition
)


def _target_kinds(spec: LossSpec, params: dict[str, Any]) -> list[Kind | None]:
    kinds = list(CASES[spec.name].target_kinds(params))
    if spec.name in MASS_LOSSES and "ignore_index" not in params:
        kinds += [ZERO_ROW, MASS]
    return kinds


def _kind_id(kind: Kind | None) -> str:
    if kind is None:
        return "no-targets"
    return kind if isinstance(kind, str) else f"{kind[0]:g}..{kind[1]:g}"


def _draw(
    spec: LossSpec, shape: tuple[int, ...], seed: int, params: dict[str, Any], kind: Kind | None
) -> Sample:
    """The harness's sample; for ``ZERO_ROW`` and ``MASS`` targets, soft rows scaled to the
    sums of ``ROW_SUMS``."""
    if kind not in ROW_SUMS:
        return sample(spec, shape, seed, params, kind)
    drawn = sample(spec, shape, seed, params)
    soft = draw("soft", shape, np.random.default_rng(seed + 1000))
    return Sample(drawn.pred, soft * np.resize(ROW_SUMS[str(kind)], shape[0])[:, None], {})


CASES_ALL = [
    pytest.param(
        spec,
        params,
        shape,
        kind,
        id=f"{variant_id((spec, params))}-{'x'.join(map(str, shape))}-{_kind_id(kind)}",
    )
    for spec, params in VARIANTS
    for shape in shapes_for(spec)
    for kind in _target_kinds(spec, params)
]


def _close(got: Any, want: Any, what: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize(("spec", "params", "shape", "kind"), CASES_ALL)
def test_values_reductions_and_derivatives_match_the_library(
    spec: LossSpec, params: dict[str, Any], shape: tuple[int, ...], kind: Kind
) -> None:
    """Per-sample losses, mean and sum with sample weights, their gradients (with respect to
    the predictions and to each extra input) and Hessian diagonals equal the library
    reference's (tests/support/libraries.py) at 1e-9."""
    for seed in SEEDS:
        drawn = _draw(spec, shape, seed, params, kind)
        check_against_library(spec, params, drawn, seed)


def check_against_library(
    spec: LossSpec, params: dict[str, Any], drawn: Sample, seed: int, rtol: float = RTOL
) -> None:
    """One batch against the library: per-sample losses (``reduction: none``), then ``mean``
    and ``sum`` with sample weights: values, weight_sum, the gradient, the gradients with
    respect to the extra inputs and the Hessian diagonal."""
    pred, targ, inputs = drawn.pred, drawn.targ, drawn.inputs
    w = np.random.default_rng(seed).uniform(0.5, 2.0, size=pred.shape[0])
    ref = lib.reference(spec.name, spec.family, params, pred, targ, inputs)
    p = lib.rows_of(pred)
    where = f"{spec.name} {params} seed {seed} vs {ref.label}"

    want = ref.per_sample(p).detach().numpy()
    got = evaluate(spec, pred, targ, None, params, inputs, reduction="none").per_sample
    _close(got, want, f"per-sample losses, {where}", rtol)
    direct = None if targ is None else lib.direct_values(spec.name, params, pred, targ)
    if direct is not None:
        _close(got, direct, f"per-sample losses against the library itself, {where}")

    for reduction in ("mean", "sum"):
        out = evaluate(spec, pred, targ, w, params, inputs, reduction=reduction, gradient=True,
                       hessian=spec.hessian, input_gradients=bool(inputs))  # fmt: skip

        def scalar(q: torch.Tensor, reduction: str = reduction) -> torch.Tensor:
            return lib.reduced(ref.per_sample(q), w, ref.kappa, reduction)

        _close(out.value, scalar(p).item(), f"{reduction} value, {where}", rtol)
        if reduction == "mean":
            _close(out.weight_sum, np.sum(w * ref.kappa), f"weight_sum, {where}")
        grad, hess = lib.gradient_and_hessian(scalar, p, ref.coupled)
        _close(out.gradient, grad.reshape(pred.shape), f"{reduction} gradient, {where}", rtol)
        for name, want_input in lib.input_gradients(scalar, p, ref.inputs).items():
            got_input = out.input_gradients[name]
            _close(got_input, want_input, f"{reduction} gradient of inputs.{name}, {where}", rtol)
        if spec.hessian:
            _close(out.hessian, hess.reshape(pred.shape), f"{reduction} Hessian, {where}", rtol)


ROW_SHAPE = (6, 3)
ELEMENT_CASES = [
    pytest.param(spec, params, id=variant_id((spec, params)))
    for spec, params in VARIANTS
    if spec.family != "distribution"  # KLDivLoss's, torch's, are in the alias tests below
]


@pytest.mark.parametrize(("spec", "params"), ELEMENT_CASES)
def test_reduce_over_elements(spec: LossSpec, params: dict[str, Any]) -> None:
    """``reduce_over: "elements"`` on (N, D): a loss computed elementwise sums all N·D terms and
    its mean divides by Σ w_i·D; a loss of the whole row (softmax, margins, cosine, overlap)
    reduces over samples as before. Values and gradients against the library reference."""
    shape = ROW_SHAPE if spec.params.max_rank == 2 else shapes_for(spec)[-1]
    drawn = sample(spec, shape, SEEDS[0], params)
    pred, targ, inputs = drawn.pred, drawn.targ, drawn.inputs
    w = np.random.default_rng(7).uniform(0.5, 2.0, size=shape[0])
    ref = lib.reference(spec.name, spec.family, params, pred, targ, inputs)
    p = lib.rows_of(pred)
    # elementwise: the regression and binary losses on rank-1 rows (a row's loss is a mean of D)
    elementwise = spec.family in ("regression", "binary") and spec.params.min_rank == 1
    terms = float(shape[1]) if elementwise and len(shape) == 2 else 1.0
    for reduction in ("mean", "sum"):
        out = evaluate(spec, pred, targ, w, params, inputs, reduction=reduction, gradient=True,
                       reduce_over="elements", input_gradients=bool(inputs))  # fmt: skip

        def scalar(q: torch.Tensor, reduction: str = reduction) -> torch.Tensor:
            return lib.reduced(ref.per_sample(q), w, ref.kappa, reduction, terms, terms)

        where = f"{spec.name} {params} {reduction} over elements"
        _close(out.value, scalar(p).item(), where)
        if reduction == "mean":
            _close(out.weight_sum, terms * np.sum(w * ref.kappa), f"weight_sum, {where}")
        grad, _ = lib.gradient_and_hessian(scalar, p)
        _close(out.gradient, grad.reshape(pred.shape), f"gradient, {where}")
        for name, want_input in lib.input_gradients(scalar, p, ref.inputs).items():
            _close(out.input_gradients[name], want_input, f"gradient of inputs.{name}, {where}")


KERAS_CASES = [
    pytest.param(
        spec, params, shape, id=f"{variant_id((spec, params))}-{'x'.join(map(str, shape))}"
    )
    for spec, params in VARIANTS
    for shape in shapes_for(spec)
    if lib.keras_reference(spec.name, params, *sample(spec, shape, 0, params)) is not None
]


@pytest.mark.parametrize(("spec", "params", "shape"), KERAS_CASES)
def test_keras_itself_at_its_float32_precision(
    spec: LossSpec, params: dict[str, Any], shape: tuple[int, ...]
) -> None:
    """Keras 3 on the torch backend, called, agrees at 1e-6 (values and the autograd gradient
    of Σ w_i l_i): Keras computes its means in float32 whatever ``floatx`` says, which
    ``test_keras_cannot_compute_in_float64`` pins; the 1e-9 check is against its formulas in
    torch float64 above."""
    pred, targ = sample(spec, shape, SEEDS[0], params)
    w = np.random.default_rng(3).uniform(0.5, 2.0, size=shape[0])
    fn = lib.keras_reference(spec.name, params, pred, targ)
    assert fn is not None
    p = lib.rows_of(pred)
    per_sample = fn(p)
    (per_sample * torch.tensor(w)).sum().backward()
    out = evaluate(spec, pred, targ, w, params, reduction="sum", gradient=True)
    where = f"{spec.name} {params} against keras.losses"
    _close(out.per_sample, per_sample.detach().numpy(), where, lib.KERAS_RTOL, lib.KERAS_ATOL)
    assert p.grad is not None
    _close(
        out.gradient,
        p.grad.numpy().reshape(pred.shape),
        f"gradient, {where}",
        lib.KERAS_RTOL,
        lib.KERAS_ATOL,
    )


@pytest.mark.loss("log_cosh")
def test_keras_cannot_compute_in_float64() -> None:
    """Keras 3's type promotion maps float64 to float32 on every backend but TensorFlow, so its
    losses are compared at 1e-6 (if this fails, Keras now computes in float64: compare it at
    1e-9 instead of its formulas in torch)."""
    assert lib.keras_result_dtype() == "float32"
    r = torch.tensor([[0.3, 1.7, -2.2]], dtype=torch.float64)
    keras_value = float(lib.keras.losses.log_cosh(torch.zeros_like(r), r)[0])
    exact = float((r + F.softplus(-2 * r) - np.log(2.0)).mean())
    assert abs(keras_value - exact) / exact > 1e-9


XGBOOST_CASES = [
    pytest.param(
        spec, params, shape, id=f"{variant_id((spec, params))}-{'x'.join(map(str, shape))}"
    )
    for spec, params in VARIANTS
    for shape in shapes_for(spec)
    if lib.xgboost_derivatives(spec.name, params, *sample(spec, shape, 0, params)) is not None
]


@pytest.mark.parametrize(("spec", "params", "shape"), XGBOOST_CASES)
def test_xgboost_objective_gradient_and_hessian(
    spec: LossSpec, params: dict[str, Any], shape: tuple[int, ...]
) -> None:
    """With ``sum`` and sample weights the gradient and Hessian are XGBoost's objective's,
    w_i·g/D and w_i·h/D (``reg:pseudohubererror``, ``binary:logistic``; ``multi:softprob``'s
    gradient p − y)."""
    pred, targ = sample(spec, shape, SEEDS[1], params)
    w = np.random.default_rng(5).uniform(0.5, 2.0, size=shape[0])
    formulas = lib.xgboost_derivatives(spec.name, params, pred, targ)
    assert formulas is not None
    g, h = formulas
    d = pred.shape[1] if pred.ndim == 2 and spec.family != "multiclass" else 1
    scale = (w / d).reshape(-1, *([1] * (pred.ndim - 1)))
    out = evaluate(spec, pred, targ, w, params, reduction="sum", gradient=True, hessian=True)
    _close(out.gradient, scale * g, f"{spec.name} gradient against XGBoost")
    if h is not None:
        _close(out.hessian, scale * h, f"{spec.name} Hessian against XGBoost")


# --- aliases with their library's defaults -------------------------------------------------------

Reduced = Callable[..., torch.Tensor]  # (predictions, targets, reduction=...) -> the value


@dataclass(frozen=True)
class AliasCase:
    """One alias on one kind of batch: the library's reduced value as a function of the
    predictions (``value``), and the function whose autograd the contract's gradient is
    (``derivative``; ``value`` itself unless the contract says otherwise)."""

    alias: str
    canonical: str  # the loss it resolves to, for ``--loss`` (a name may not be registered yet)
    shape: tuple[int, ...]
    inputs: Callable[[np.random.Generator, tuple[int, ...]], tuple[Array, Array]]
    value: Reduced
    derivative: Reduced | None = None
    params: dict[str, Any] | None = None
    shows: dict[str, Any] = field(default_factory=dict)  # params the response must show
    note: str = ""
    # what the mean divides by, as ``weight_sum`` says: all N·D elements (torch) or N samples
    divides_by: str | None = "samples"
    # the extra inputs, drawn after the batch: passed to ``value`` by name, their gradients
    # compared with ``input_gradients``
    extra: Callable[[np.random.Generator, tuple[int, ...]], dict[str, Array]] | None = None

    @property
    def id(self) -> str:
        extra = f"-{orjson.dumps(self.params).decode()}" if self.params else ""
        return f"{self.alias}-{'x'.join(map(str, self.shape))}{self.note}{extra}"


def _uniform(lo: float, hi: float, targ: Kind) -> Callable[..., tuple[Array, Array]]:
    def make(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[Array, Array]:
        pred = rng.uniform(lo, hi, size=shape)
        return pred, draw(targ, shape, rng)

    return make


def _log_softmax(z: Array) -> Array:
    logp = z - z.max(axis=1, keepdims=True)
    return np.asarray(logp - np.log(np.exp(logp).sum(axis=1, keepdims=True)))


def _log_probabilities(targ: Kind) -> Callable[..., tuple[Array, Array]]:
    """Log-probability predictions, and targets of kind ``targ`` or, for ``"log-soft"``,
    log-probabilities too."""

    def make(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[Array, Array]:
        logp = _log_softmax(rng.normal(scale=2.0, size=shape))
        if targ == "log-soft":
            return logp, _log_softmax(rng.normal(scale=2.0, size=shape))
        return logp, draw(targ, shape, rng)

    return make


def _t(targ: Array, index: bool) -> torch.Tensor:
    return torch.tensor(targ, dtype=torch.long if index else torch.float64)


def _alias_cases() -> list[AliasCase]:
    cases: list[AliasCase] = []
    regression = {
        "MSELoss": ("mse", F.mse_loss),
        "L1Loss": ("mae", F.l1_loss),
        "HuberLoss": ("huber", F.huber_loss),
        "SmoothL1Loss": ("smooth_l1", F.smooth_l1_loss),
    }
    for shape in [(7,), (6, 3)]:
        for alias, (canonical, fn) in regression.items():
            cases.append(
                AliasCase(
                    alias, canonical, shape, _uniform(-3, 3, (-3.0, 3.0)), fn, divides_by="elements"
                )
            )
        cases.append(
            AliasCase(
                "PoissonNLLLoss",
                "poisson",
                shape,
                _uniform(-2, 2, (0.0, 5.0)),
                F.poisson_nll_loss,
                shows={"log_input": True},
                divides_by="elements",
            )
        )
        cases.append(
            AliasCase(
                "HingeEmbeddingLoss",
                "hinge_embedding",
                shape,
                _uniform(-3, 3, "sign"),
                F.hinge_embedding_loss,
                divides_by="elements",
            )
        )
        cases.append(
            AliasCase(
                "SoftMarginLoss",
                "soft_margin",
                shape,
                _uniform(-4, 4, "sign"),
                F.soft_margin_loss,
                divides_by="elements",
            )
        )
        cases.append(
            AliasCase(
                "BCELoss",
                "binary_cross_entropy",
                shape,
                _uniform(0.02, 0.98, "binary"),
                F.binary_cross_entropy,
                divides_by="elements",
            )
        )
        cases.append(
            AliasCase(
                "BCEWithLogitsLoss",
                "binary_cross_entropy",
                shape,
                _uniform(-4, 4, "binary"),
                F.binary_cross_entropy_with_logits,
                shows={"from_logits": True},
                divides_by="elements",
            )
        )
        cases.append(
            AliasCase(
                "sigmoid_binary_cross_entropy",
                "binary_cross_entropy",
                shape,
                _uniform(-4, 4, "binary"),
                lambda z, y, reduction: _samples(
                    -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)), reduction
                ),
                shows={"from_logits": True},
            )
        )
        cases.append(
            AliasCase(
                "sigmoid_focal",
                "binary_focal",
                shape,
                _uniform(-4, 4, "binary"),
                lambda z, y, reduction: _samples(
                    lib.optax_sigmoid_focal(z, y, None, 2.0), reduction
                ),
                shows={"from_logits": True},
            )
        )
    cases.append(
        AliasCase(
            "log_loss",
            "binary_cross_entropy",
            (9,),
            _uniform(0.02, 0.98, "binary"),
            _sklearn_binary_formula,
            note="-binary",
        )
    )
    rows = (6, 3)
    for targ in ("index", "soft"):
        cases.append(
            AliasCase(
                "CrossEntropyLoss",
                "cross_entropy",
                rows,
                _uniform(-4, 4, targ),
                F.cross_entropy,
                note=f"-{targ}",
                shows={"from_logits": True},
            )
        )
        cases.append(
            AliasCase(
                "softmax_cross_entropy",
                "cross_entropy",
                rows,
                _uniform(-4, 4, "onehot" if targ == "index" else targ),
                lambda z, y, reduction: _samples(-(y * F.log_softmax(z, -1)).sum(-1), reduction),
                note=f"-{targ}",
                shows={"from_logits": True},
            )
        )
    cases.append(
        AliasCase(
            "CrossEntropyLoss",
            "cross_entropy",
            rows,
            _uniform(-4, 4, "index"),
            lambda z, y, reduction: F.cross_entropy(
                z, y, weight=torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64), reduction=reduction
            ),
            params={"weight": [0.5, 1.0, 2.0]},
            divides_by=None,
        )
    )
    for alias in ("NLLLoss", "nll"):
        cases.append(
            AliasCase(
                alias,
                "cross_entropy",
                rows,
                _log_probabilities("index"),
                F.nll_loss,
                derivative=F.cross_entropy,
                shows={"from_logits": True},
            )
        )
    for params in (None, {"weight": [0.5, 1.0, 2.0]}):
        weight = None if params is None else torch.tensor(params["weight"], dtype=torch.float64)
        cases.append(
            AliasCase(
                "MultiLabelSoftMarginLoss",
                "multilabel_soft_margin",
                rows,
                _uniform(-4, 4, "binary"),
                lambda z, y, reduction, weight=weight: F.multilabel_soft_margin_loss(
                    z, y, weight=weight, reduction=reduction
                ),
                params=params,
            )
        )
    cases.append(
        AliasCase(
            "MultiMarginLoss",
            "multi_margin",
            rows,
            _uniform(-3, 3, "index"),
            F.multi_margin_loss,
            derivative=_multi_margin_formula,
        )
    )
    cases.append(
        AliasCase(
            "MultiLabelMarginLoss",
            "multilabel_margin",
            rows,
            _uniform(-3, 3, "labels"),
            lambda x, y, reduction: F.multilabel_margin_loss(x, y.long(), reduction=reduction),
            derivative=_multilabel_margin_formula,
        )
    )
    cases.append(
        AliasCase(
            "KLDivLoss",
            "kl_divergence",
            rows,
            _log_probabilities("soft"),
            lambda x, y, reduction: lib.quiet_torch_mean(
                lambda: F.kl_div(x, y, reduction=reduction)
            ),
            shows={"log_input": True},
            divides_by="elements",
        )
    )
    cases.append(
        AliasCase(
            "kl_divergence_with_log_targets",
            "kl_divergence",
            rows,
            _log_probabilities("log-soft"),
            lambda x, y, reduction: _samples((torch.exp(y) * (y - x)).sum(-1), reduction),
            shows={"log_input": True, "log_target": True},
        )
    )
    for shape in [(7,), (6, 3)]:
        for var_shape in ("same", "rows"):
            cases.append(
                AliasCase(
                    "GaussianNLLLoss",
                    "gaussian_nll",
                    shape,
                    _uniform(-3, 3, (-3.0, 3.0)),
                    lambda x, y, reduction, var: F.gaussian_nll_loss(
                        x, y, var, reduction=reduction
                    ),
                    divides_by="elements",
                    note=f"-var-{var_shape}",
                    extra=_variances(var_shape),
                )
            )
        cases.append(
            AliasCase(
                "MarginRankingLoss",
                "margin_ranking",
                shape,
                _uniform(-3, 3, "sign"),
                lambda x, y, reduction, input2: F.margin_ranking_loss(
                    x, input2, y, reduction=reduction
                ),
                divides_by="elements",
                extra=_uniform_inputs("input2"),
            )
        )
    cases.append(
        AliasCase(
            "CosineEmbeddingLoss",
            "cosine_embedding",
            rows,
            _uniform(-3, 3, "sample-sign"),
            lambda x, y, reduction, input2: F.cosine_embedding_loss(
                x, input2, y, reduction=reduction
            ),
            extra=_uniform_inputs("input2"),
        )
    )
    cases.append(
        AliasCase(
            "TripletMarginLoss",
            "triplet_margin",
            rows,
            _uniform(-3, 3, (-3.0, 3.0)),
            lambda a, _, reduction, positive, negative: F.triplet_margin_loss(
                a, positive, negative, reduction=reduction
            ),
            extra=_uniform_inputs("positive", "negative"),
        )
    )
    cases.append(
        AliasCase(
            "log_loss",
            "cross_entropy",
            rows,
            _simplex_and_index,
            _sklearn_multiclass_formula,
            derivative=_renormalised_multiclass_formula,
            note="-multiclass",
        )
    )
    return cases


def _variances(form: str) -> Callable[..., dict[str, Array]]:
    """Variances of the predictions' shape, or one per sample (``rows``: (N,))."""

    def make(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Array]:
        return {"var": rng.uniform(0.1, 3.0, size=shape if form == "same" else shape[:1])}

    return make


def _uniform_inputs(*names: str) -> Callable[..., dict[str, Array]]:
    """Extra inputs of the predictions' shape, uniform in [-3, 3]."""

    def make(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Array]:
        return {name: rng.uniform(-3, 3, size=shape) for name in names}

    return make


def _samples(elementwise: torch.Tensor, reduction: str) -> torch.Tensor:
    """An elementwise library loss reduced over samples (row means first, SPEC section 4)."""
    per_sample = elementwise.mean(-1) if elementwise.ndim == 2 else elementwise
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def _multi_margin_formula(x: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    """torch's ``multi_margin_loss`` with its defaults written out: torch has no double backward
    for it, so its Hessian is taken of the same formula."""
    rows = F.one_hot(y, x.shape[1]).to(torch.float64)
    ones = torch.ones(x.shape[1], dtype=torch.float64)
    return _samples(lib.multi_margin_formula(x, rows, ones, 1, 1.0), reduction)


def _multilabel_margin_formula(x: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    """torch's ``multilabel_margin_loss`` written out, for its Hessian (no double backward)."""
    counts = lib.label_counts(y.numpy())
    return _samples(lib.multilabel_margin_formula(x, counts), reduction)


def _simplex_and_index(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[Array, Array]:
    return draw("simplex", shape, rng), draw("index", shape, rng)


SKLEARN_EPS = float(np.finfo(np.float64).eps)


def _sklearn_binary_formula(p: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    """sklearn.metrics.log_loss on (N,) probabilities of class 1, its formula in torch."""
    c = torch.clamp(p, SKLEARN_EPS, 1 - SKLEARN_EPS)
    return _samples(-(y * torch.log(c) + (1 - y) * torch.log(1 - c)), reduction)


def _sklearn_multiclass_formula(p: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    """sklearn.metrics.log_loss on (N, C) probabilities and class indices, its formula in torch
    (clipped to [eps, 1 − eps], not renormalised)."""
    c = torch.clamp(p, SKLEARN_EPS, 1 - SKLEARN_EPS)
    return _samples(-torch.log(c.gather(1, y[:, None].long()))[:, 0], reduction)


def _renormalised_multiclass_formula(
    p: torch.Tensor, y: torch.Tensor, reduction: str
) -> torch.Tensor:
    """The same value read as lossd's cross_entropy reads probability rows (Keras: renormalised,
    then clipped): equal to scikit-learn's on rows that sum to 1, and the function lossd's
    gradient is the derivative of (scikit-learn defines no gradient). It differs from the
    unrenormalised formula's gradient by Σ_c y_c per element, a direction off the simplex."""
    q = p / p.sum(dim=1, keepdim=True)
    return _sklearn_multiclass_formula(q, y, reduction)


def _sklearn_value(case: AliasCase, pred: Array, targ: Array, reduction: str) -> float | None:
    if case.alias != "log_loss":
        return None
    labels = list(range(pred.shape[1])) if pred.ndim == 2 else [0, 1]
    return float(
        sklearn.metrics.log_loss(targ, y_proba=pred, labels=labels, normalize=reduction == "mean")
    )


ALIAS_CASES = _alias_cases()


def _lossd_alias(
    case: AliasCase,
    pred: Array,
    targ: Array | None,
    reduction: str,
    extra: dict[str, Array] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "predictions": pred.tolist(),
        "reduction": reduction,
        "gradient": True,
        "hessian": True,
    }
    if targ is not None:
        body["targets"] = targ.tolist()
    if extra:
        body["inputs"] = {name: a.tolist() for name, a in extra.items()}
        body["input_gradients"] = True
    if case.params is not None:
        body["params"] = case.params
    reply = evaluate_one(case.alias, orjson.dumps(body), 10**7)
    document: dict[str, Any] = orjson.loads(reply.body.tobytes())
    return document


def _alias_inputs(case: AliasCase) -> tuple[Array, Array, torch.Tensor, torch.Tensor]:
    pred, targ = case.inputs(np.random.default_rng(41), case.shape)
    index = targ.ndim == 1 and pred.ndim == 2 and case.extra is None
    p = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    return pred, targ, p, _t(targ, index)


def _alias_extra(case: AliasCase) -> dict[str, Array]:
    """The case's extra inputs, drawn after its batch."""
    if case.extra is None:
        return {}
    rng = np.random.default_rng(41)
    case.inputs(rng, case.shape)
    return case.extra(rng, case.shape)


ALIAS_PARAMS = [
    pytest.param(resolve(case.canonical), case, reduction, id=f"{case.id}-{reduction}")
    for case in ALIAS_CASES
    for reduction in ("mean", "sum")
]


@pytest.mark.parametrize(("spec", "case", "reduction"), ALIAS_PARAMS)
def test_alias_gives_its_library_value_with_default_arguments(
    spec: LossSpec, case: AliasCase, reduction: str
) -> None:
    """``POST /loss/{alias}`` with no params (or the library's own parameter names) answers
    the library function's value with its default arguments: torch.nn.functional's
    (over all N·D elements, as torch reduces), optax's, scikit-learn's ``log_loss`` (binary on
    (N,), multiclass on (N, C)); the response shows the defaults it used, and ``weight_sum``
    what its mean divided by."""
    pred, targ, p, t = _alias_inputs(case)
    extra = _alias_extra(case)
    sent = None if case.canonical == "triplet_margin" else targ
    got = _lossd_alias(case, pred, sent, reduction, extra)
    named = {name: torch.tensor(a) for name, a in extra.items()}
    want = case.value(p, t, reduction=reduction, **named).item()
    _close(got["value"], want, f"{case.alias} {reduction} against its library")
    direct = _sklearn_value(case, pred, targ, reduction)
    if direct is not None:
        _close(got["value"], direct, f"{case.alias} {reduction} against scikit-learn itself")
    for key, value in case.shows.items():
        assert got["params"].get(key) == value, (key, got["params"])
    if reduction == "mean" and case.divides_by is not None:
        count = pred.size if case.divides_by == "elements" else pred.shape[0]
        assert got["weight_sum"] == count, (case.divides_by, got["weight_sum"])


@pytest.mark.parametrize(("spec", "case", "reduction"), ALIAS_PARAMS)
def test_alias_gradient_and_hessian_are_its_library_autograd(
    spec: LossSpec, case: AliasCase, reduction: str
) -> None:
    """The gradient and Hessian diagonal of an alias's reduced value are the autograd of its
    library's reduced value. Where LOSSES.md says how the alias reads its inputs the derivative
    is of that reading: NLLLoss's log-probabilities are logits to a softmax, so its gradient is
    ``cross_entropy``'s (torch's own ``nll_loss`` gradient, −1/N at the target, differs by
    p/N, which back-propagation through log_softmax removes). KLDivLoss is differentiated as torch computes it (``kl_div``
    pointwise in the log-probabilities); multiclass ``log_loss``, which scikit-learn defines no
    gradient for, as lossd's cross_entropy reads probability rows (renormalised, then clipped)."""
    pred, targ, p, t = _alias_inputs(case)
    extra = _alias_extra(case)
    sent = None if case.canonical == "triplet_margin" else targ
    got = _lossd_alias(case, pred, sent, reduction, extra)
    fn = case.derivative or case.value
    named = {
        name: torch.tensor(a, dtype=torch.float64, requires_grad=True) for name, a in extra.items()
    }

    def scalar(q: torch.Tensor) -> torch.Tensor:
        return fn(q.reshape(pred.shape), t, reduction=reduction, **named)

    grad, hess = lib.gradient_and_hessian(scalar, p.reshape(pred.shape[0], -1))
    where = f"{case.alias} {reduction}"
    _close(got["gradient"], grad.reshape(pred.shape), f"gradient, {where}")
    _close(got["hessian"], hess.reshape(pred.shape), f"Hessian, {where}")
    for name, want in lib.input_gradients(scalar, p.reshape(pred.shape[0], -1), named).items():
        _close(got["input_gradients"][name], want, f"gradient of inputs.{name}, {where}")


@pytest.mark.loss("binary_cross_entropy")
def test_bceloss_at_probabilities_zero_and_one_clips_at_epsilon() -> None:
    """BCELoss at p ∈ {0, 1} clips p to [ε, 1 − ε] as every probability-input loss does (the
    README's decisions): finite, with gradient 0 where clipping is active. torch instead caps each
    log at −100 (a wrong label costs 100, the exact loss is infinite); neither is the exact loss
    there, and lossd keeps one rule for every loss rather than torch's cap for one alias."""
    case = AliasCase(
        "BCELoss", "binary_cross_entropy", (4,), _uniform(0, 1, "binary"), F.binary_cross_entropy
    )
    pred, targ = np.array([0.0, 1.0, 1.0, 0.0]), np.array([1.0, 0.0, 1.0, 0.0])
    got = _lossd_alias(case, pred, targ, "sum")
    eps = 1e-7
    clipped = np.clip(pred, eps, 1 - eps)
    want = -np.sum(targ * np.log(clipped) + (1 - targ) * np.log(1 - clipped))
    _close(got["value"], want, "BCELoss value at p in {0, 1}")
    _close(got["gradient"], np.zeros(4), "BCELoss gradient at p in {0, 1}")


def test_every_registered_loss_is_covered() -> None:
    """Every loss of the registry has a library reference and at least one differential case
    here, or (a loss the harness draws no batches for: ctc) a test module of its own that
    compares it with its library (tests/test_ctc.py: torch's ctc_loss)."""
    covered = {spec.name for spec, *_ in (c.values for c in CASES_ALL)}
    assert covered == {spec.name for spec in HARNESSED}
    for spec in REGISTRY:
        if spec not in HARNESSED:
            assert "F.ctc_loss" in (Path(__file__).parent / f"test_{spec.name}.py").read_text()


@pytest.mark.parametrize("spec", HARNESSED, ids=spec_id)
def test_every_parameter_has_a_library_reading(spec: LossSpec) -> None:
    """Each parameter a loss takes is read by its library reference (a new one fails here until
    tests/support/libraries.py reads it, rather than being ignored there)."""
    assert set(spec.params.model_fields) <= lib.HANDLED[spec.name]


# --- the losses with extra inputs, at their edges, against torch --------------------------------


def _pairs(*rows: tuple[float, ...]) -> Array:
    return np.array(rows, dtype=np.float64)


# Zeros, ties, equal vectors and huge values where torch float64 is itself exact (past them the
# edge suite, tests/test_edges.py, checks against mpmath), each through ``check_against_library``:
# values, mean and sum, the gradients in the predictions and in every extra input, the Hessian.
# No hinge sits at exactly its margin here: there torch's clamp passes the gradient and the
# contract's is 0 (``test_hinges_at_their_margin_take_the_smallest_subgradient``).
INPUT_EDGES: list[tuple[str, dict[str, Any], Sample, str]] = [
    ("gaussian_nll", {}, Sample(_pairs((0.0, 0.0), (0.5, -0.5)), _pairs((0.0, 0.0), (0.5, 0.5)),
                                {"var": _pairs((0.0, 1e-8), (2.0, 0.5))}), "zeros-var-below-eps"),
    ("gaussian_nll", {"full": True, "eps": 0.25},
     Sample(_pairs((1.0, 2.0), (3.0, -1.0)), _pairs((0.0, 2.0), (1.0, 1.0)),
            {"var": np.array([0.1, 4.0])}), "var-per-sample-below-eps"),
    ("gaussian_nll", {}, Sample(_pairs((1e150, -2.0), (0.5, 1e100)), np.zeros((2, 2)),
                                {"var": np.array([[1e300], [1e200]])}), "residuals-1e150-column"),
    ("gaussian_nll", {}, Sample(np.array([1e150, -1e150, 3.0]), np.zeros(3),
                                {"var": np.array([1e300, 1e300, 1e-300])}), "rank-1-huge-and-tiny"),
    ("margin_ranking", {"margin": 0.5},
     Sample(np.array([0.5, -2.0, 0.0, 3.0]), np.array([1.0, -1.0, 1.0, -1.0]),
            {"input2": np.array([0.5, -2.0, 0.0, 3.0])}), "ties"),
    ("margin_ranking", {}, Sample(_pairs((1e300, 0.0), (-1e300, 2.0)), _pairs((-1.0, 1.0), (1.0, -1.0)),
                                  {"input2": _pairs((-1e300, 1.0), (0.0, 1.0))}), "scores-1e300"),
    ("cosine_embedding", {"margin": 0.2},
     Sample(_pairs((1.0, 2.0, 3.0), (0.5, 0.5, 0.5), (1.0, -1.0, 2.0)), np.array([1.0, -1.0, -1.0]),
            {"input2": _pairs((1.0, 2.0, 3.0), (0.5, 0.5, 0.5), (2.0, -2.0, 4.0))}),
     "equal-and-parallel-vectors"),
    ("cosine_embedding", {"margin": -0.5},
     Sample(_pairs((0.0, 0.0, 0.0), (1.0, 2.0, 3.0), (0.0, 0.0, 0.0)), np.array([1.0, -1.0, -1.0]),
            {"input2": _pairs((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))}), "zeros"),
    ("cosine_embedding", {}, Sample(_pairs((1e70, -1e70, 1.0), (1e-70, 2e-70, 0.0)),
                                    np.array([-1.0, 1.0]),
                                    {"input2": _pairs((1e70, 1e70, 3e70), (1.0, 1.0, 1.0))}),
     "rows-1e70-and-1e-70"),
    ("triplet_margin", {}, Sample(_pairs((1.0, 2.0, 3.0), (0.5, -0.5, 0.0)), None,
                                  {"positive": _pairs((1.0, 2.0, 3.0), (0.5, -0.5, 0.0)),
                                   "negative": _pairs((1.0, 2.0, 3.0), (2.0, 1.0, 0.0))}),
     "equal-vectors"),
    ("triplet_margin", {"swap": True}, Sample(_pairs((1.0, 2.0, 3.0), (0.5, -0.5, 0.0)), None,
                                              {"positive": _pairs((1.0, 2.0, 3.0), (0.0, 0.0, 0.0)),
                                               "negative": _pairs((3.0, 1.0, 0.0), (0.5, 0.5, 1.0))}),
     "swap-tie-anchor-equals-positive"),
    ("triplet_margin", {"p": 1.0}, Sample(np.zeros((2, 3)), None,
                                          {"positive": _pairs((0.0, 0.0, 0.0), (1.0, 0.0, 0.0)),
                                           "negative": np.zeros((2, 3))}), "zeros"),
    ("triplet_margin", {"p": 3.0, "margin": 2.0},
     Sample(_pairs((1e100, -1e100, 3.0)), None,
            {"positive": _pairs((2e100, 0.0, 0.0)), "negative": _pairs((1e100, 1e100, 1e100))}),
     "rows-1e100"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "params", "drawn"),
    [pytest.param(resolve(n), p, s, id=f"{n}-{label}") for n, p, s, label in INPUT_EDGES],
)
def test_extra_input_edges_match_torch(
    spec: LossSpec, params: dict[str, Any], drawn: Sample
) -> None:
    """Zeros, ties, equal vectors, variances at and below eps (torch's clamp, its gradient
    passing it) and huge values: values, mean and sum, the gradients in the predictions and
    in every extra input and the Hessian diagonal are torch's at 1e-9."""
    check_against_library(spec, params, drawn, seed=51)


@pytest.mark.loss("margin_ranking", "cosine_embedding", "triplet_margin")
def test_hinges_at_their_margin_take_the_smallest_subgradient() -> None:
    """A hinge at exactly its margin (ties with margin 0; a -1 pair's cosine equal to the
    margin; a triplet with d(a, n) − d(a, p) equal to it) has loss 0 and gradient 0 in the
    predictions and every extra input (SPEC section 4), where torch's clamp_min passes the
    active branch's gradient."""
    ranking = evaluate(resolve("margin_ranking"), np.array([0.5, -2.0]), np.array([1.0, -1.0]),
                       None, {}, {"input2": np.array([0.5, -2.0])}, reduction="sum",
                       gradient=True, input_gradients=True)  # fmt: skip
    x1 = torch.tensor([0.5, -2.0], dtype=torch.float64, requires_grad=True)
    F.margin_ranking_loss(x1, torch.tensor([0.5, -2.0]), torch.tensor([1.0, -1.0]),
                          reduction="sum").backward()  # fmt: skip
    assert x1.grad is not None and x1.grad.tolist() == [-1.0, 1.0]  # torch: the active branch
    assert ranking.value == 0.0 and not ranking.gradient.any()
    assert not ranking.input_gradients["input2"].any()
    cosine = evaluate(resolve("cosine_embedding"), np.array([[0.0, 0.0], [1.0, 0.0]]),
                      np.array([-1.0, -1.0]), None, {"margin": 0.0},
                      {"input2": np.array([[1.0, 2.0], [0.0, 1.0]])}, reduction="sum",
                      gradient=True, hessian=True, input_gradients=True)  # fmt: skip
    assert cosine.value == 0.0 and not cosine.gradient.any() and not cosine.hessian.any()
    assert not cosine.input_gradients["input2"].any()
    # d(a, p) = 1, d(a, n) = 2 (eps 0): margin + d(a, p) − d(a, n) = 0
    triplet = evaluate(resolve("triplet_margin"), np.array([[0.0, 0.0]]), None, None,
                       {"margin": 1.0, "eps": 0.0},
                       {"positive": np.array([[1.0, 0.0]]), "negative": np.array([[0.0, 2.0]])},
                       reduction="sum", gradient=True, input_gradients=True)  # fmt: skip
    assert triplet.value == 0.0 and not triplet.gradient.any()
    assert not any(g.any() for g in triplet.input_gradients.values())
