"""In-process evaluation, the finite-difference harness, tolerances and sampling.

``evaluate`` runs one loss on one batch through the typed core (``service.core``), no JSON and
no HTTP. Every gradient and Hessian in the suite is checked by the one finite-difference
harness here: ``central_differences`` and the two assertions built on it,
``assert_gradient_matches_finite_differences`` (against a reference) and
``assert_hessian_matches_finite_differences`` (against the core's own gradient).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from service.core import Batch, Options, Result, validate_params
from service.core import evaluate as core_evaluate
from service.losses import REGISTRY, LossSpec
from tests.support.references import CASES, Array, Kind, Sample, one_hot

RTOL, ATOL = 1e-9, 1e-12  # SPEC section 4: float64 results against the references
REDUCTIONS = ("mean", "sum", "none")
SHAPES = [(7,), (6, 3)]  # rank 1, and (N, C) with the 3 classes the cases' class weights list

# Central differences: the step is relative, h = STEP·max(1, |x_k|); the Hessian differentiates
# a gradient (itself exact to rounding), so it takes a larger step than the gradient.
GRADIENT_STEP, HESSIAN_STEP = 1e-6, 1e-5
FD_RTOL, FD_ATOL = 1e-5, 1e-7  # a gradient against central differences of its reference
FD_HESSIAN_RTOL, FD_HESSIAN_ATOL = 1e-5, 1e-6  # a Hessian against central differences

Variant = tuple[LossSpec, dict[str, Any]]


def evaluate(
    spec: LossSpec,
    pred: Array,
    targ: Array | None,
    weight: Array | None = None,
    params: dict[str, Any] | None = None,
    inputs: dict[str, Array] | None = None,
    **options: Any,
) -> Result:
    """The core's ``Result`` for one loss on one batch (``inputs``: its extra inputs);
    ``options`` are those of ``Options``."""
    loss_params = validate_params(spec, params or {})
    batch = Batch(pred, targ, weight, inputs or {})
    return core_evaluate(spec, loss_params, batch, Options(**options))


# --- variants and samples ---------------------------------------------------------------------


def variants(*specs: LossSpec) -> list[Variant]:
    """Each loss with each parameter set of its case (all registered losses when none given)."""
    return [(spec, params) for spec in specs or REGISTRY for params in CASES[spec.name].params]


def variant_id(variant: Variant) -> str:
    """``name-{json params}``: the id of a variant's tests."""
    spec, params = variant
    return f"{spec.name}-{orjson.dumps(params).decode()}"


def spec_id(value: object) -> str | None:
    """Parametrize ids: a loss's name for its ``LossSpec``, pytest's own id for anything else."""
    return value.name if isinstance(value, LossSpec) else None


# The losses whose batches the harness draws: all but those of rank-3 predictions (ctc's
# (N, T, C) log-probabilities, (N, S) label rows and length inputs), which tests/test_ctc.py
# draws itself and checks for every property the registry-wide tests check here.
HARNESSED: list[LossSpec] = [spec for spec in REGISTRY if spec.params.min_rank <= 2]
VARIANTS: list[Variant] = variants(*HARNESSED)
VARIANT_IDS = [variant_id(v) for v in VARIANTS]


def shapes_for(spec: LossSpec) -> list[tuple[int, ...]]:
    """The harness's shapes of the ranks the loss takes (``spec.params.min_rank`` to
    ``max_rank``)."""
    return [s for s in SHAPES if spec.params.min_rank <= len(s) <= spec.params.max_rank]


def sample(
    spec: LossSpec,
    shape: tuple[int, ...],
    seed: int,
    params: dict[str, Any] | None = None,
    targ_kind: Kind | None = None,
) -> Sample:
    """Predictions, targets and extra inputs inside the loss's domain
    (``references.Case.sample``); it unpacks to (predictions, targets)."""
    return CASES[spec.name].sample(shape, seed, params, targ_kind)


def rows(drawn: Sample, part: slice | list[int]) -> Sample:
    """Rows ``part`` of a sample (a slice or a list of row numbers): its predictions, targets
    and extra inputs."""
    targ = None if drawn.targ is None else drawn.targ[part]
    return Sample(drawn.pred[part], targ, {k: a[part] for k, a in drawn.inputs.items()})


def arrays_document(drawn: Sample, encode: Callable[[Array], Any]) -> dict[str, Any]:
    """A sample's arrays as the fields of a ``/loss`` document, each array written by
    ``encode`` (``tolist``, a packed object): predictions, targets unless it has none, and
    ``inputs`` when it has extra inputs."""
    doc: dict[str, Any] = {"predictions": encode(drawn.pred)}
    if drawn.targ is not None:
        doc["targets"] = encode(drawn.targ)
    if drawn.inputs:
        doc["inputs"] = {name: encode(a) for name, a in drawn.inputs.items()}
    return doc


def reference(
    spec: LossSpec,
    pred: Array,
    targ: Array | None,
    params: dict[str, Any],
    inputs: dict[str, Array] | None = None,
) -> Array:
    """The reference's per-sample losses (``references.Case.reference``)."""
    return CASES[spec.name].reference(pred, targ, params, inputs)


def kappa(spec: LossSpec, pred: Array, targ: Array, shown: dict[str, Any]) -> Array:
    """κ_i of SPEC section 4: the target's class weight for class-weighted losses, else 1.

    ``shown`` is the ``params`` of the result: "balanced" weights appear there as numbers.
    A loss whose mean counts something else (pairs, items, events) has its case's ``kappa``."""
    case = CASES[spec.name]
    if case.kappa is not None:
        t2 = targ if case.targ == "groups" else targ.reshape(targ.shape[0], -1)
        return np.asarray(case.kappa(pred.reshape(pred.shape[0], -1), t2, shown))
    if "class_weight" not in shown:
        return np.ones(pred.shape[0])
    rows = targ if targ.ndim == 2 else one_hot(targ, pred.shape[1], shown.get("ignore_index"))
    weights = shown["class_weight"]
    return np.asarray(rows @ (np.ones(pred.shape[1]) if weights is None else np.asarray(weights)))


# --- the finite-difference harness --------------------------------------------------------------


def central_differences(fn: Callable[[Array], Any], x: Array, step: float) -> Array:
    """Central differences of ``fn`` at ``x``, one element k at a time, h = step·max(1, |x_k|).

    For a scalar ``fn`` this is its gradient. For an ``fn`` with the shape of ``x`` it is the
    diagonal of its Jacobian (element k of ``fn`` differentiated in ``x_k``): the Hessian diagonal
    when ``fn`` is a gradient.
    """
    out = np.zeros_like(x)
    for k in range(x.size):
        h = step * max(1.0, abs(float(x.flat[k])))
        up, down = x.copy(), x.copy()
        up.flat[k] += h
        down.flat[k] -= h
        f_up, f_down = np.asarray(fn(up)), np.asarray(fn(down))
        if f_up.ndim:
            f_up, f_down = f_up.flat[k], f_down.flat[k]
        out.flat[k] = (f_up - f_down) / (2 * h)
    return out


def assert_gradient_matches_finite_differences(
    spec: LossSpec,
    pred: Array,
    targ: Array | None,
    weight: Array | None,
    params: dict[str, Any],
    loss: Callable[[Array], Array] | None = None,
    reduction: str = "sum",
    rtol: float = FD_RTOL,
    atol: float = FD_ATOL,
    inputs: dict[str, Array] | None = None,
) -> None:
    """The core's gradient equals central differences of Σ w_i l_i(predictions), ``l`` being the
    reference (or ``loss``, per-sample losses as a function of the predictions); and so does
    the gradient with respect to each of the loss's extra ``inputs`` (``input_gradients``),
    as a function of that input.

    With reduction "sum" the weights multiply the losses; with "none" the gradient is that of the
    unweighted per-sample losses, row by row, and ``weight`` must be None."""
    assert reduction == "sum" or weight is None
    inputs = inputs or {}
    per_sample = loss or (lambda p: reference(spec, p, targ, params, inputs))
    w = np.ones(pred.shape[0]) if weight is None else weight
    out = evaluate(spec, pred, targ, weight, params, inputs, reduction=reduction, gradient=True,
                   input_gradients=bool(inputs))  # fmt: skip
    want = central_differences(lambda p: float(np.sum(w * per_sample(p))), pred, GRADIENT_STEP)
    assert out.gradient is not None and out.gradient.shape == pred.shape
    np.testing.assert_allclose(out.gradient, want, rtol=rtol, atol=atol)
    for name, value in inputs.items():

        def of_input(x: Array, name: str = name) -> float:
            moved = {**inputs, name: x}
            return float(np.sum(w * reference(spec, pred, targ, params, moved)))

        assert out.input_gradients is not None
        got = out.input_gradients[name]
        assert got.shape == value.shape, name
        want = central_differences(of_input, value, GRADIENT_STEP)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"inputs.{name}")


def assert_hessian_matches_finite_differences(
    spec: LossSpec,
    pred: Array,
    targ: Array | None,
    weight: Array | None,
    params: dict[str, Any],
    rtol: float = FD_HESSIAN_RTOL,
    atol: float = FD_HESSIAN_ATOL,
    inputs: dict[str, Array] | None = None,
) -> None:
    """The core's Hessian diagonal of Σ w_i l_i equals central differences of its own gradient."""

    def gradient(p: Array) -> Array:
        out = evaluate(spec, p, targ, weight, params, inputs, reduction="sum", gradient=True)
        assert out.gradient is not None
        return out.gradient

    got = evaluate(spec, pred, targ, weight, params, inputs, reduction="sum", gradient=True,
                   hessian=True).hessian  # fmt: skip
    want = central_differences(gradient, pred, HESSIAN_STEP)
    assert got is not None and got.shape == pred.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
