"""hypothesis property tests of the SPEC section 4 conventions, for each registered loss."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.compute import ComputeExecutor
from service.errors import Overloaded
from service.losses import REGISTRY, LossSpec
from tests.support.harness import HARNESSED, evaluate, kappa, rows, sample, spec_id
from tests.support.references import CASES, Sample

Drawn = tuple[Sample, np.ndarray, dict[str, Any]]
BOUNDED = settings(max_examples=40, deadline=None)
EACH_LOSS = pytest.mark.parametrize("spec", HARNESSED, ids=spec_id)


@st.composite
def batches(draw: st.DrawFn, spec: LossSpec) -> Drawn:
    """A batch in the loss's domain (with its extra inputs), non-negative weights and one of
    its parameter sets."""
    n = draw(st.integers(1, 12))
    rank = spec.params.min_rank
    # rank-2 cases have 3 columns: their class_weight variants list 3 weights
    d = 3 if rank == 2 else draw(st.integers(1, 3))
    wide = spec.params.max_rank == 2 and draw(st.booleans())
    shape = (n, d) if rank == 2 or wide else (n,)
    seed = draw(st.integers(0, 2**32 - 1))
    params = draw(st.sampled_from(CASES[spec.name].params))
    drawn = sample(spec, shape, seed, params)
    weight = np.random.default_rng(seed).uniform(0, 3, size=n)
    return drawn, weight, params


@EACH_LOSS
@BOUNDED
@given(batch=st.data())
def test_sum_and_mean_are_the_weighted_per_sample_losses(
    spec: LossSpec, batch: st.DataObject
) -> None:
    """sum = Σ w_i l_i, mean = sum / Σ w_i κ_i; per_sample is never multiplied by the weights."""
    drawn, weight, params = batch.draw(batches(spec))
    pred, targ, inputs = drawn.pred, drawn.targ, drawn.inputs
    none = evaluate(spec, pred, targ, weight, params, inputs, reduction="none")
    total = evaluate(spec, pred, targ, weight, params, inputs, reduction="sum")
    mean = evaluate(spec, pred, targ, weight, params, inputs, reduction="mean")
    unweighted = evaluate(spec, pred, targ, None, params, inputs, reduction="none")
    np.testing.assert_array_equal(none.per_sample, unweighted.per_sample)
    assert total.value == pytest.approx(float(np.sum(weight * none.per_sample)), rel=1e-12)
    weight_sum = float(np.sum(weight * kappa(spec, pred, targ, mean.params)))
    assert mean.weight_sum == pytest.approx(weight_sum, rel=1e-12)
    want = total.value / weight_sum if weight_sum else 0.0
    assert mean.value == pytest.approx(want, rel=1e-12, abs=1e-300)


@EACH_LOSS
@BOUNDED
@given(batch=st.data(), rnd=st.randoms(use_true_random=False))
def test_permuting_the_batch_permutes_the_outputs(
    spec: LossSpec, batch: st.DataObject, rnd: Any
) -> None:
    """Reordering rows reorders per-sample losses and gradients (those with respect to the
    extra inputs too) and keeps the value: to the bit for rows that are independent, to
    rounding for a batch-coupled loss (a row's sums over the others run in the batch's order)."""
    drawn, weight, params = batch.draw(batches(spec))
    order = list(range(drawn.pred.shape[0]))
    rnd.shuffle(order)
    moved = rows(drawn, order)
    asked: dict[str, Any] = {"reduction": "sum", "gradient": True, "input_gradients": True}
    a = evaluate(spec, *drawn, weight, params, drawn.inputs, **asked)
    b = evaluate(spec, *moved, weight[order], params, moved.inputs, **asked)
    if spec.batch_coupled:
        np.testing.assert_allclose(b.per_sample, a.per_sample[order], rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(b.gradient, a.gradient[order], rtol=1e-11, atol=1e-13)
    else:
        np.testing.assert_array_equal(b.per_sample, a.per_sample[order])
        np.testing.assert_array_equal(b.gradient, a.gradient[order])
    for name, gradient in a.input_gradients.items():
        np.testing.assert_array_equal(b.input_gradients[name], gradient[order])
    assert b.value == pytest.approx(a.value, rel=1e-12)


@EACH_LOSS
@BOUNDED
@given(batch=st.data())
def test_float32_follows_float64(spec: LossSpec, batch: st.DataObject) -> None:
    """The float32 path agrees with float64 to float32 precision, for values and gradients."""
    drawn, weight, params = batch.draw(batches(spec))
    f64 = evaluate(spec, *drawn, weight, params, drawn.inputs, gradient=True)
    f32 = evaluate(spec, *drawn, weight, params, drawn.inputs, gradient=True, dtype="float32")
    np.testing.assert_allclose(f32.per_sample, f64.per_sample, rtol=1e-4, atol=1e-5)
    # an element that cancels between terms of the gradient's scale is as exact as that scale
    scale = max(1.0, float(np.abs(f64.gradient).max(initial=0.0)))
    np.testing.assert_allclose(f32.gradient, f64.gradient, rtol=1e-4, atol=1e-6 * scale)


@EACH_LOSS
@BOUNDED
@given(batch=st.data(), factor=st.floats(0.1, 10))
def test_scaling_the_weights_keeps_the_mean(
    spec: LossSpec, batch: st.DataObject, factor: float
) -> None:
    """The weighted mean and its gradient do not change when every weight is scaled."""
    drawn, weight, params = batch.draw(batches(spec))
    a = evaluate(spec, *drawn, weight, params, drawn.inputs, gradient=True)
    b = evaluate(spec, *drawn, weight * factor, params, drawn.inputs, gradient=True)
    assert b.value == pytest.approx(a.value, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(b.gradient, a.gradient, rtol=1e-9, atol=1e-15)


@pytest.mark.loss(REGISTRY[0].name)
def test_zero_weights_give_a_zero_mean() -> None:
    """All weights 0: weight_sum 0, mean 0 and a zero gradient (SPEC section 4)."""
    spec = REGISTRY[0]
    out = evaluate(spec, np.ones(3), np.zeros(3), np.zeros(3), gradient=True)
    assert (out.value, out.weight_sum) == (0.0, 0.0)
    np.testing.assert_array_equal(out.gradient, np.zeros(3))


def test_a_full_compute_queue_answers_overloaded() -> None:
    """Beyond LOSSD_QUEUE_DEPTH waiting or running jobs, a request gets 503 with Retry-After."""
    executor = ComputeExecutor(threads=1, queue_depth=1)
    release = threading.Event()

    async def scenario() -> None:
        first = asyncio.ensure_future(executor.run(release.wait, 10))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded) as info:
            await executor.run(lambda: None)
        assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
        release.set()
        assert await first is True
        await executor.run(lambda: None)  # the queue drained: accepted again

    try:
        asyncio.run(scenario())
    finally:
        executor.shutdown()
