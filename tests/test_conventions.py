"""hypothesis property tests of the SPEC section 4 conventions, over every registered loss."""

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
from tests.reference import CASES
from tests.test_losses import evaluate, kappa

Drawn = tuple[LossSpec, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]
BOUNDED = settings(max_examples=40, deadline=None)


@st.composite
def batches(draw: st.DrawFn) -> Drawn:
    """A loss with one of its parameter sets, a batch in its domain, non-negative weights."""
    spec = draw(st.sampled_from(REGISTRY))
    case = CASES[spec.name]
    n = draw(st.integers(1, 12))
    # rank-2 cases have 3 columns: their class_weight variants list 3 weights
    d = 3 if case.min_rank == 2 else draw(st.integers(1, 3))
    shape = (n, d) if case.min_rank == 2 or draw(st.booleans()) else (n,)
    seed = draw(st.integers(0, 2**32 - 1))
    params = draw(st.sampled_from(case.params))
    pred, targ = case.sample(shape, seed, params)
    weight = np.random.default_rng(seed).uniform(0, 3, size=n)
    return spec, pred, targ, weight, params


@BOUNDED
@given(batches())
def test_sum_and_mean_are_the_weighted_per_sample_losses(
    batch: Drawn,
) -> None:
    """sum = Σ w_i l_i, mean = sum / Σ w_i κ_i; per_sample is never multiplied by the weights."""
    spec, pred, targ, weight, params = batch
    none = evaluate(spec, pred, targ, weight, params, reduction="none")
    total = evaluate(spec, pred, targ, weight, params, reduction="sum")
    mean = evaluate(spec, pred, targ, weight, params, reduction="mean")
    unweighted = evaluate(spec, pred, targ, None, params, reduction="none")
    np.testing.assert_array_equal(none["per_sample"], unweighted["per_sample"])
    assert total["value"] == pytest.approx(float(np.sum(weight * none["per_sample"])), rel=1e-12)
    weight_sum = float(np.sum(weight * kappa(spec, pred, targ, mean["params"])))
    assert mean["weight_sum"] == pytest.approx(weight_sum, rel=1e-12)
    want = total["value"] / weight_sum if weight_sum else 0.0
    assert mean["value"] == pytest.approx(want, rel=1e-12, abs=1e-300)


@BOUNDED
@given(batches(), st.randoms(use_true_random=False))
def test_permuting_the_batch_permutes_the_outputs(batch: Drawn, rnd: Any) -> None:
    """Reordering rows reorders per-sample losses and gradients and keeps the value."""
    spec, pred, targ, weight, params = batch
    order = list(range(pred.shape[0]))
    rnd.shuffle(order)
    a = evaluate(spec, pred, targ, weight, params, reduction="sum", gradient=True)
    b = evaluate(
        spec, pred[order], targ[order], weight[order], params, reduction="sum", gradient=True
    )
    np.testing.assert_array_equal(b["per_sample"], a["per_sample"][order])
    np.testing.assert_array_equal(b["gradient"], a["gradient"][order])
    assert b["value"] == pytest.approx(a["value"], rel=1e-12)


@BOUNDED
@given(batches())
def test_float32_follows_float64(
    batch: Drawn,
) -> None:
    """The float32 path agrees with float64 to float32 precision, for values and gradients."""
    spec, pred, targ, weight, params = batch
    f64 = evaluate(spec, pred, targ, weight, params, gradient=True)
    f32 = evaluate(spec, pred, targ, weight, params, gradient=True, dtype="float32")
    np.testing.assert_allclose(f32["per_sample"], f64["per_sample"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(f32["gradient"], f64["gradient"], rtol=1e-4, atol=1e-6)


@BOUNDED
@given(batches(), st.floats(0.1, 10))
def test_scaling_the_weights_keeps_the_mean(batch: Drawn, factor: float) -> None:
    """The weighted mean and its gradient do not change when every weight is scaled."""
    spec, pred, targ, weight, params = batch
    a = evaluate(spec, pred, targ, weight, params, gradient=True)
    b = evaluate(spec, pred, targ, weight * factor, params, gradient=True)
    assert b["value"] == pytest.approx(a["value"], rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(b["gradient"], a["gradient"], rtol=1e-9, atol=1e-15)


def test_zero_weights_give_a_zero_mean() -> None:
    """All weights 0: weight_sum 0, mean 0 and a zero gradient (SPEC section 4)."""
    spec = REGISTRY[0]
    out = evaluate(spec, np.ones(3), np.zeros(3), np.zeros(3), gradient=True)
    assert (out["value"], out["weight_sum"]) == (0.0, 0.0)
    np.testing.assert_array_equal(out["gradient"], np.zeros(3))


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
