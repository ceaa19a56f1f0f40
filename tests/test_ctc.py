"""ctc (issue 15): torch.nn.functional.ctc_loss in float64 at 1e-8 relative, values and
gradients, over every reduction and the edges (blank not 0, repeated labels, empty targets,
the minimal number of steps, impossible alignments with and without zero_infinity); Keras' CTC;
rank-3 predictions on every wire (through the codecs, in process: no server); bad inputs as
422s.

Predictions are batch first (N, T, C); torch takes time first, so its calls transpose.
"""

from __future__ import annotations

import os
import threading
import tracemalloc
from typing import Any

import numpy as np
import orjson
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import core
from service.api._wire import _aligned_empty
from service.codecs import bodies, oip
from service.codecs import loss as codec
from service.core import Batch, Options, catalogue_entry, evaluate, validate_params
from service.errors import LossdError, MemoryBudget
from service.jit import SERIAL_ELEMENTS
from service.losses import REGISTRY, resolve
from service.losses._spec import as_compute
from service.memory import MemoryAccount, RunElsewhere
from tests.support.bodies import multipart_body, npy, packed
from tests.support.references.sequence import batch
from tests.support.references.sequence import ctc as ctc_reference

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras

pytestmark = pytest.mark.loss("ctc")
F = torch.nn.functional
SPEC = resolve("ctc")
RTOL, ATOL = 1e-8, 1e-13  # issue 15: torch at 1e-8 relative in float64
REDUCTIONS = ("sum", "mean", "none")


def with_blank(drawn: dict[str, Any], blank: int) -> dict[str, Any]:
    """The batch with ``blank`` as the blank: labels equal to it become class 0."""
    labels = np.where(drawn["labels"] == blank, 0, drawn["labels"])
    return {**drawn, "labels": labels}


def ours(drawn: dict[str, Any], params: dict[str, Any] | None = None, **options: Any) -> Any:
    inputs = {k: drawn[k] for k in ("input_lengths", "target_lengths")}
    loss_params = validate_params(SPEC, params or {})
    batch_ = Batch(drawn["x"], drawn["labels"], drawn.get("w"), inputs)
    return evaluate(SPEC, loss_params, batch_, Options(**options))


def torchs(
    drawn: dict[str, Any], reduction: str, blank: int = 0, zero_infinity: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """torch's value (per-sample for none) and its gradient of the sum of what it returns."""
    x = torch.tensor(drawn["x"]).requires_grad_()
    labels = torch.tensor(np.where(drawn["labels"] < 0, 0, drawn["labels"]))
    out = F.ctc_loss(
        x.transpose(0, 1),
        labels,
        torch.tensor(drawn["input_lengths"]),
        torch.tensor(drawn["target_lengths"]),
        blank=blank,
        reduction=reduction,
        zero_infinity=zero_infinity,
    )
    out.sum().backward()
    assert x.grad is not None
    return out.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("blank", [0, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_torch(reduction: str, blank: int, seed: int) -> None:
    """Values and gradients against torch's ctc_loss, blank 0 and not 0, lengths varied."""
    drawn = with_blank(batch(seed), blank)
    want, grad = torchs(drawn, reduction, blank)
    got = ours(drawn, {"blank": blank}, reduction=reduction, gradient=True)
    value = got.per_sample if reduction == "none" else got.value
    np.testing.assert_allclose(value, want, rtol=RTOL, atol=ATOL)
    assert got.gradient is not None and got.gradient.shape == drawn["x"].shape
    np.testing.assert_allclose(got.gradient, grad, rtol=RTOL, atol=ATOL)


def test_edges_match_torch() -> None:
    """Repeated labels (a repeat needs a blank between), T exactly the minimal L + repeats,
    empty targets with no steps, one class besides the blank, and unnormalised log-probs."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(5, 6, 3))  # free log-probabilities: torch takes them as they are
    labels = np.array([[1, 1, 1], [1, 2, 1], [2, 2, 0], [1, 0, 0], [0, 0, 0]])
    inputs = np.array([5, 3, 3, 1, 0])  # 3 + 2 repeats = 5, 3 + 0, 2 + 1, 1: all minimal
    counts = np.array([3, 3, 2, 1, 0])
    drawn = {"x": x, "labels": labels, "input_lengths": inputs, "target_lengths": counts}
    for reduction in REDUCTIONS:
        want, grad = torchs(drawn, reduction)
        got = ours(drawn, reduction=reduction, gradient=True)
        value = got.per_sample if reduction == "none" else got.value
        np.testing.assert_allclose(value, want, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(got.gradient, grad, rtol=RTOL, atol=ATOL)
    assert ours(drawn, reduction="none").per_sample[4] == 0.0  # no labels, no steps: p = 1
    # the written-out forward recursion (tests/support/references/sequence.py) agrees
    np.testing.assert_allclose(ctc_reference(x, labels, inputs, counts),
                               ours(drawn, reduction="none").per_sample, rtol=1e-12)  # fmt: skip


def test_impossible_alignments() -> None:
    """A sample needing more steps than it has: a 422 naming it, or with zero_infinity loss 0
    and gradient 0 as torch's, the others unchanged."""
    drawn = batch(3)
    drawn["labels"][2] = [1, 1, 2, 2]
    drawn["target_lengths"][2] = 4
    drawn["input_lengths"][2] = 5  # needs 4 + 2 = 6
    with pytest.raises(LossdError) as caught:
        ours(drawn, reduction="sum")
    assert caught.value.status == 422 and caught.value.code == "out_of_domain"
    assert "sample 2" in caught.value.detail
    assert caught.value.errors[0][0] == ["inputs", "input_lengths", 2]
    for reduction in REDUCTIONS:
        want, grad = torchs(drawn, reduction, zero_infinity=True)
        got = ours(drawn, {"zero_infinity": True}, reduction=reduction, gradient=True)
        value = got.per_sample if reduction == "none" else got.value
        np.testing.assert_allclose(value, want, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(got.gradient, grad, rtol=RTOL, atol=ATOL)
        assert not got.gradient[2].any()
    none, _ = torchs(drawn, "none")
    assert np.isinf(none[2])  # torch's own answer without zero_infinity


def test_sample_weight_and_mean() -> None:
    """sum is Σ w_i·l_i; mean is torch's Σ w_i·l_i/max(L_i, 1) / Σ w_i (its unweighted
    mean at w = 1), or the plain mean with mean_by_target_length false; weight_sum Σ w_i."""
    drawn = batch(4)
    per = ours(drawn, reduction="none").per_sample
    w = np.linspace(0.5, 2.0, len(per))
    drawn["w"] = w
    lengths = np.maximum(drawn["target_lengths"], 1)
    got = ours(drawn, reduction="mean", gradient=True)
    np.testing.assert_allclose(got.value, np.sum(w * per / lengths) / w.sum(), rtol=1e-12)
    assert got.weight_sum == pytest.approx(w.sum())
    plain = ours(drawn, {"mean_by_target_length": False}, reduction="mean")
    np.testing.assert_allclose(plain.value, np.sum(w * per) / w.sum(), rtol=1e-12)
    summed = ours(drawn, reduction="sum", gradient=True)
    np.testing.assert_allclose(summed.value, np.sum(w * per), rtol=1e-12)
    # the mean's gradient is the sum's with each row scaled by 1/(L_i·Σw)
    scaled = summed.gradient / (lengths[:, None, None] * w.sum())
    np.testing.assert_allclose(got.gradient, scaled, rtol=1e-12, atol=1e-15)


def central(fn: Any, x: np.ndarray, step: float) -> np.ndarray:
    """Element k of the central differences of ``fn`` (an array of x's shape) along x_k."""
    out = np.zeros_like(x)
    for k in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[k] += step
        down[k] -= step
        out[k] = (fn(up)[k] - fn(down)[k]) / (2 * step)
    return out


@pytest.mark.parametrize("from_logits", [False, True])
def test_hessian_is_the_derivative_of_the_gradient(from_logits: bool) -> None:
    """The Hessian diagonal against central differences of the returned gradient; with
    from_logits the gradient against central differences of the value too (exact in the
    logits), and equal to torch's through log_softmax."""
    drawn = batch(5, n=3, steps=8, classes=4, width=2)
    if from_logits:
        drawn["x"] = np.random.default_rng(5).normal(size=drawn["x"].shape) * 2
    params = {"from_logits": from_logits}

    def gradient(x: np.ndarray) -> np.ndarray:
        out = ours({**drawn, "x": x}, params, reduction="sum", gradient=True).gradient
        assert out is not None
        return out

    got = ours(drawn, params, reduction="sum", gradient=True, hessian=True)
    np.testing.assert_allclose(got.hessian, central(gradient, drawn["x"], 1e-5), atol=1e-7)
    if not from_logits:
        return
    value = np.zeros_like(drawn["x"])
    for k in np.ndindex(*drawn["x"].shape):
        up, down = drawn["x"].copy(), drawn["x"].copy()
        up[k] += 1e-6
        down[k] -= 1e-6
        value[k] = (ours({**drawn, "x": up}, params, reduction="sum").value
                    - ours({**drawn, "x": down}, params, reduction="sum").value) / 2e-6  # fmt: skip
    np.testing.assert_allclose(got.gradient, value, atol=1e-7)
    z = torch.tensor(drawn["x"]).requires_grad_()
    loss = F.ctc_loss(
        z.log_softmax(-1).transpose(0, 1),
        torch.tensor(np.where(drawn["labels"] < 0, 0, drawn["labels"])),
        torch.tensor(drawn["input_lengths"]),
        torch.tensor(drawn["target_lengths"]),
        reduction="sum",
    )
    loss.backward()
    np.testing.assert_allclose(got.value, loss.item(), rtol=RTOL)
    np.testing.assert_allclose(got.gradient, z.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_keras_ctc() -> None:
    """keras.losses.CTC (logits, blank 0, every step, the non-zero labels, the plain mean) is
    ctc with from_logits and mean_by_target_length false; Keras computes in float32 on its
    torch backend, hence 1e-6."""
    drawn = batch(6)
    logits = np.random.default_rng(6).normal(size=drawn["x"].shape)
    labels = np.where(drawn["labels"] < 0, 0, drawn["labels"])  # Keras pads with 0
    n, steps = logits.shape[:2]
    keras_drawn = {
        "x": logits,
        "labels": labels,
        "input_lengths": np.full(n, steps),
        "target_lengths": (labels != 0).sum(axis=1),
    }
    params = {"from_logits": True, "mean_by_target_length": False}
    got = ours(keras_drawn, params, reduction="mean", per_sample=True)
    want = keras.losses.CTC(reduction=None)(labels, logits)
    np.testing.assert_allclose(got.per_sample, want.detach().numpy(), rtol=1e-6)
    mean = keras.losses.CTC()(labels, logits)
    np.testing.assert_allclose(got.value, float(mean), rtol=1e-6)


def test_float32() -> None:
    """dtype float32 answers in float32, close to float64."""
    drawn = batch(8)
    wide = ours(drawn, reduction="none", gradient=True)
    narrow = ours(drawn, reduction="none", gradient=True, dtype="float32")
    assert narrow.per_sample.dtype == np.float32 and narrow.gradient.dtype == np.float32
    np.testing.assert_allclose(narrow.per_sample, wide.per_sample, rtol=1e-5)
    np.testing.assert_allclose(narrow.gradient, wide.gradient, atol=1e-5)


# --- the registry-wide properties (tests/support/harness.py draws no rank-3 batches) -----------


def rows_of(drawn: dict[str, Any], part: slice | list[int] | np.ndarray) -> dict[str, Any]:
    """Rows ``part`` of a batch: its log-probabilities, labels, lengths and weights."""
    return {k: v[part] for k, v in drawn.items()}


@pytest.mark.parametrize("params", [{}, {"blank": 2}, {"from_logits": True}])
def test_rows_are_independent_and_in_any_order(params: dict[str, Any]) -> None:
    """Each sample's loss and gradient are the bits it gives alone, and in any row order, and
    those of a blocked run (a cancel flag: blocks of rows on a compute thread)."""
    drawn = with_blank(batch(11, n=9), params.get("blank", 0))
    drawn["w"] = np.linspace(0.5, 2.0, 9)
    asked: dict[str, Any] = {"reduction": "sum", "gradient": True, "hessian": True}
    whole = ours(drawn, params, **asked)
    for i in range(9):
        one = ours(rows_of(drawn, slice(i, i + 1)), params, **asked)
        assert one.per_sample[0] == whole.per_sample[i]
        np.testing.assert_array_equal(one.gradient[0], whole.gradient[i])
        np.testing.assert_array_equal(one.hessian[0], whole.hessian[i])
    order = np.random.default_rng(3).permutation(9)
    moved = ours(rows_of(drawn, order), params, **asked)
    np.testing.assert_array_equal(moved.per_sample, whole.per_sample[order])
    np.testing.assert_array_equal(moved.gradient, whole.gradient[order])
    token = core.CANCEL.set(threading.Event())
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(core, "BLOCK_ELEMENTS", 2 * drawn["x"][0].size + 1)  # 2 rows a block
            blocked = ours(drawn, params, **asked)
    finally:
        core.CANCEL.reset(token)
    for name in ("per_sample", "gradient", "hessian"):
        assert getattr(blocked, name).tobytes() == getattr(whole, name).tobytes(), name
    assert blocked.value == whole.value


def test_parallel_blocks_equal_small_batches() -> None:
    """A batch past SERIAL_ELEMENTS (parallel blocks) gives the bits of its rows sent in
    batches small enough to run on the calling thread."""
    drawn = batch(12, n=SERIAL_ELEMENTS // 60 + 7)  # T·C = 60 elements a sample
    assert drawn["x"].size > SERIAL_ELEMENTS
    whole = ours(drawn, reduction="none", gradient=True)
    for start in range(0, len(drawn["x"]), 500):
        part = slice(start, start + 500)
        small = ours(rows_of(drawn, part), reduction="none", gradient=True)
        np.testing.assert_array_equal(small.per_sample, whole.per_sample[part])
        np.testing.assert_array_equal(small.gradient, whole.gradient[part])


def test_empty_batch() -> None:
    """N = 0: value 0, weight_sum 0 and empty arrays of the predictions' shape."""
    drawn = rows_of(batch(13), slice(0, 0))
    for reduction in ("mean", "sum"):
        out = ours(drawn, reduction=reduction, gradient=True, hessian=True)
        assert (out.value, out.weight_sum, out.n) == (0.0, 0.0, 0)
        assert out.per_sample.shape == (0,) and out.gradient.shape == (0, 12, 5)


@pytest.mark.parametrize("factor", [1e-3, 7.0])
def test_scaling_the_weights_keeps_the_mean(factor: float) -> None:
    """The weighted mean (torch's, divided by target lengths) and its gradient do not change
    when every weight is scaled; reduction none's rows are the sum's derivatives per row."""
    drawn = batch(14)
    drawn["w"] = np.linspace(0.5, 2.0, len(drawn["x"]))
    a = ours(drawn, reduction="mean", gradient=True)
    b = ours({**drawn, "w": drawn["w"] * factor}, reduction="mean", gradient=True)
    assert b.value == pytest.approx(a.value, rel=1e-12)
    np.testing.assert_allclose(b.gradient, a.gradient, rtol=1e-12, atol=1e-300)
    none = ours({**drawn, "w": None}, reduction="none", gradient=True)
    summed = ours({**drawn, "w": None}, reduction="sum", gradient=True)
    np.testing.assert_array_equal(none.gradient, summed.gradient)


def test_a_long_label_row_is_not_evaluated_on_the_event_loop() -> None:
    """One sample of T = 3000 steps of 2 classes and 1500 labels is a 100 KB body but 9 million
    forward-backward states: its demand counts them (S from the declared targets), so it goes
    to a compute thread (RunElsewhere) instead of holding the event loop."""
    x = np.zeros((1, 3000, 2))
    labels = np.ones((1, 1500), dtype=np.int64)
    doc = {"predictions": packed(x), "targets": packed(labels),
           "inputs": {"input_lengths": [3000], "target_lengths": [1500]}}  # fmt: skip
    lease = MemoryAccount(1 << 30).lease()
    lease.inline = True
    with pytest.raises(RunElsewhere):
        codec.evaluate_one("ctc", orjson.dumps(doc), 10**7, 1 << 30, lease=lease)
    lease.close()


def test_costs() -> None:
    """At least N·(T·C) operations, linear in each; ``prepare`` and the checks allocate within
    ``working_bytes`` plus the targets' and inputs' copies (numpy's allocations, traced)."""
    ops = SPEC.params.operations
    labels = core.Declared(200, 200 * 4, 8)  # S = 4
    assert ops(200, 60, targets=labels) >= 200 * 60
    assert ops(400, 60, targets=core.Declared(400, 1600, 8)) == 2 * ops(200, 60, targets=labels)
    assert ops(200, 120, targets=labels) == 2 * ops(200, 60, targets=labels)
    # T·(2S + 1) states a sample, S the declared label width (unknown: as wide as T·C)
    assert ops(1, 60, targets=core.Declared(1, 30, 8)) >= 30 * (2 * 30 + 1)
    assert ops(1, 60) >= ops(1, 60, targets=core.Declared(1, 30, 8))
    drawn = batch(15, n=2000)
    params = validate_params(SPEC, {})
    inputs = {k: drawn[k] for k in ("input_lengths", "target_lengths")}
    for dtype in (np.float64, np.float32):
        compute = as_compute(drawn["x"], dtype, "predictions")
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            memo: dict[Any, Any] = {}  # the request's memo: prepare's labels for the checks
            prepared = params.prepare("ctc", drawn["x"], drawn["labels"], dtype, memo)
            extra = params.prepare_inputs(drawn["x"], inputs, dtype, memo)
            params.check_domain(compute, prepared.targets)
            params.check_inputs(compute, extra)
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        rows, columns = compute.shape
        itemsize = np.dtype(dtype).itemsize
        copies = (drawn["labels"].size + 2 * rows) * 8 + rows * itemsize
        assert peak <= SPEC.params.working_bytes(rows, columns, itemsize) + copies + 16 * 1024


@st.composite
def _near_valid(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """A ctc request, valid or with one thing wrong (a length past T or S or negative, a label
    outside [0, C) or the blank, a non-integer length, a shape off by one, a huge or non-finite
    value, an unknown input, a missing one), and the fault (None: valid)."""
    # N ≥ 1: an empty JSON list is rank 1 whatever the batch (test_empty_batch sends arrays)
    n, t, c, s = (draw(st.integers(lo, hi)) for lo, hi in ((1, 4), (1, 6), (2, 4), (1, 3)))
    drawn = batch(draw(st.integers(0, 2**16)), n=max(n, 1), steps=t + 2 * s + 1, classes=c,
                  width=s)  # fmt: skip
    drawn = rows_of(drawn, slice(0, n))
    doc: dict[str, Any] = {
        "predictions": drawn["x"].tolist(),
        "targets": drawn["labels"].tolist(),
        "inputs": {k: drawn[k].tolist() for k in ("input_lengths", "target_lengths")},
        "params": draw(st.sampled_from([{}, {"zero_infinity": True}, {"blank": c - 1}])),
        "gradient": draw(st.booleans()),
        "hessian": draw(st.booleans()),
        "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
    }
    if doc["params"].get("blank"):  # labels equal to the blank become class 0
        doc["targets"] = np.where(drawn["labels"] == c - 1, 0, drawn["labels"]).tolist()
    fault = draw(st.sampled_from([None, "length", "label", "fraction", "shape", "value",
                                  "unknown", "missing"]))  # fmt: skip
    if fault is None:
        return doc, None
    lengths = doc["inputs"]
    i = draw(st.integers(0, n - 1))
    if fault == "length":
        key = draw(st.sampled_from(["input_lengths", "target_lengths"]))
        lengths[key][i] = draw(st.sampled_from([-1, 10**6, 2**63 - 1]))
    elif fault == "label":
        doc["targets"][i][0] = draw(st.sampled_from([-5, c, 10**9, doc["params"].get("blank", 0)]))
        lengths["target_lengths"][i] = max(lengths["target_lengths"][i], 1)
    elif fault == "fraction":
        lengths["input_lengths"][i] += 0.5
    elif fault == "shape":
        doc["targets"] = doc["targets"][:-1] if n > 1 else [[1, 1]] * 2
    elif fault == "value":
        doc["predictions"][i][0][0] = draw(st.sampled_from([1e308, -1e308, 1e400, "nan"]))
    elif fault == "unknown":
        doc["inputs"]["lengths"] = [1] * n
    else:
        del doc["inputs"][draw(st.sampled_from(["input_lengths", "target_lengths"]))]
    return doc, fault


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=_near_valid())
def test_near_valid_requests_answer_or_refuse(request: tuple[dict[str, Any], str | None]) -> None:
    """Any ctc request is an answer or a 4xx problem, never another exception: a valid one is
    answered (finite, or its impossible alignments a 422 unless zero_infinity), a faulty one is
    refused with a 4xx (a huge value may still be an answer: the log-probabilities of 1e308 are
    legal numbers)."""
    doc, fault = request
    try:
        reply = codec.evaluate_one("ctc", orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
                                   .replace(b'"nan"', b"NaN"), 10**6)  # fmt: skip
    except LossdError as exc:
        assert 400 <= exc.status < 500, exc.detail
        assert fault is not None or exc.code == "out_of_domain", (exc.code, exc.detail)
        return
    assert fault in (None, "value"), f"{fault}: answered"
    assert reply.results[0].n == len(doc["predictions"])


# --- refused inputs ------------------------------------------------------------------------


def _refused(drawn: dict[str, Any], params: dict[str, Any] | None = None) -> LossdError:
    with pytest.raises(LossdError) as caught:
        ours(drawn, params, reduction="sum")
    assert caught.value.status == 422, caught.value.detail
    return caught.value


@pytest.mark.parametrize(
    ("change", "code", "loc"),
    [
        (lambda d: d["labels"].__setitem__((0, 1), 0), "out_of_domain", ("targets", 0, 1)),
        (lambda d: d["labels"].__setitem__((0, 2), 5), "out_of_domain", ("targets", 0, 2)),
        (lambda d: d["labels"].__setitem__((0, 0), -1), "out_of_domain", ("targets", 0, 0)),
        (lambda d: d.__setitem__("labels", d["labels"] + 0.5), "invalid_array", ("targets", 0, 0)),
        (lambda d: d["input_lengths"].__setitem__(3, 13), "out_of_domain",
         ("inputs", "input_lengths", 3)),
        (lambda d: d["input_lengths"].__setitem__(3, -1), "out_of_domain",
         ("inputs", "input_lengths", 3)),
        (lambda d: d["target_lengths"].__setitem__(2, 5), "out_of_domain",
         ("inputs", "target_lengths", 2)),
        (lambda d: d.__setitem__("input_lengths", d["input_lengths"] + 0.25), "invalid_array",
         ("inputs", "input_lengths", 0)),
        (lambda d: d.__setitem__("labels", d["labels"][:, :, None]), "shape_mismatch",
         ("targets",)),
        (lambda d: d.__setitem__("labels", d["labels"][:3]), "shape_mismatch", ("targets",)),
        (lambda d: d.__setitem__("target_lengths", d["target_lengths"][:, None]),
         "shape_mismatch", ("inputs", "target_lengths")),
        (lambda d: d.__setitem__("x", d["x"][:, 0]), "shape_mismatch", ("predictions",)),
    ],
)  # fmt: skip
def test_bad_inputs(change: Any, code: str, loc: tuple[Any, ...]) -> None:
    """Labels that are the blank or outside [0, C) within a target length, fractional labels
    or lengths, lengths past T or S, and wrong ranks or sizes: a 422 located where it is."""
    drawn = batch(9)
    drawn["target_lengths"][0] = 4
    change(drawn)
    error = _refused(drawn)
    assert error.code == code, error.detail
    assert tuple(error.errors[0][0]) == loc, error.errors


def test_padding_past_the_length_is_ignored() -> None:
    """Labels past a sample's target length may be anything an integer can be (the blank, -1,
    past C) and change nothing."""
    drawn = batch(10)
    before = ours(drawn, reduction="none", gradient=True)
    padded = drawn["labels"].copy()
    padded[np.arange(padded.shape[1])[None, :] >= drawn["target_lengths"][:, None]] = 99
    after = ours({**drawn, "labels": padded}, reduction="none", gradient=True)
    np.testing.assert_array_equal(after.per_sample, before.per_sample)
    np.testing.assert_array_equal(after.gradient, before.gradient)


def test_blank_must_be_a_class() -> None:
    error = _refused(batch(11), {"blank": 5})
    assert error.errors[0][0] == ["params", "blank"]


# --- the wires -----------------------------------------------------------------------------


def _arrays(drawn: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"predictions": drawn["x"], "targets": np.where(drawn["labels"] < 0, 0, drawn["labels"])}


def _inputs(drawn: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(drawn[k], dtype=np.int64) for k in ("input_lengths", "target_lengths")}


def _described(a: np.ndarray) -> dict[str, Any]:
    return {"dtype": a.dtype.name, "shape": list(a.shape), "binary_data_size": a.nbytes}


def _aligned(data: bytes, at: int) -> np.ndarray:
    """The body as the routes hand it to a codec: uint8, the arrays' bytes aligned from ``at``."""
    buffer = _aligned_empty(len(data), at)
    buffer[:] = np.frombuffer(data, dtype=np.uint8)
    return buffer


def _wire_reply(how: str, arrays: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> Any:
    """``POST /loss/ctc`` (or ``/v2/models/ctc/infer``) as the codec answers it, the batch sent
    in the form ``how``, reduction mean with the gradient."""
    fields: dict[str, Any] = {"reduction": "mean", "gradient": True}
    lease = MemoryAccount(1 << 30).lease()
    if how in ("json", "packed"):
        encode = (lambda a: a.tolist()) if how == "json" else packed
        doc = {k: encode(v) for k, v in arrays.items()}
        doc["inputs"] = {k: encode(v) for k, v in inputs.items()}
        return codec.evaluate_one("ctc", orjson.dumps({**doc, **fields}), 10**6, lease=lease)
    if how == "binary":  # the inputs' members under "inputs"; the bytes follow in header order
        header = {**fields, "array_format": "binary"}
        header |= {k: _described(v) for k, v in arrays.items()}
        header["inputs"] = {k: _described(v) for k, v in inputs.items()}
        raw = orjson.dumps(header)
        data = b"".join(a.tobytes() for a in [*arrays.values(), *inputs.values()])
        form: bodies.Form = bodies.Framed(len(raw))
        body = _aligned(raw + data, form.header_length)
        return codec.evaluate_one("ctc", body, 10**6, lease=lease, form=form)
    if how == "multipart":
        parts = [(k, npy(v)) for k, v in arrays.items()]
        parts += [(f"inputs.{k}", npy(v)) for k, v in inputs.items()]
        raw, _ = multipart_body([*parts, ("options", orjson.dumps(fields))])
        form = bodies.Multipart(b"lossd-test-boundary")
        return codec.evaluate_one("ctc", _aligned(raw, 0), 10**6, lease=lease, form=form)
    datatypes = {np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64"}
    tensors, blobs = [], []
    for name, a in {**arrays, **inputs}.items():
        tensor: dict[str, Any] = {"name": name, "shape": list(a.shape)}
        tensor["datatype"] = datatypes[a.dtype]
        if how == "v2-binary":
            tensor["parameters"] = {"binary_data_size": a.nbytes}
            blobs.append(a.tobytes())
        else:
            tensor["data"] = a.reshape(-1).tolist()
        tensors.append(tensor)
    outputs = [{"name": "value"}, {"name": "per_sample"}, {"name": "gradient"}]
    request = {"inputs": tensors, "outputs": outputs, "parameters": {"reduction": "mean"}}
    header = orjson.dumps(request)
    length = len(header) if blobs else None
    return oip.infer("ctc", length, _aligned(header + b"".join(blobs), 0), 10**6, lease=lease)


@pytest.mark.parametrize("how", ["json", "packed", "binary", "multipart", "v2", "v2-binary"])
def test_rank3_on_every_wire(how: str) -> None:
    """The same batch as nested JSON lists, packed arrays, the binary framing, multipart .npy
    parts and /v2 (JSON data and binary tensor data) decodes to the in-process answer, the
    gradient in the predictions' (N, T, C) shape; integer labels and lengths as int64."""
    drawn = batch(12, n=3, steps=5, classes=4, width=2)
    arrays, inputs = _arrays(drawn), _inputs(drawn)
    want = ours(drawn, reduction="mean", gradient=True)
    (got,) = _wire_reply(how, arrays, inputs).results
    assert got.value == want.value
    assert got.gradient is not None and got.gradient.shape == drawn["x"].shape
    np.testing.assert_array_equal(got.gradient, want.gradient)
    np.testing.assert_array_equal(got.per_sample, want.per_sample)


def test_rank3_scratch_is_in_the_memory_demand() -> None:
    """The forward variables (T × (2S + 1) per thread) are counted before anything is decoded:
    a budget the arrays fit but the scratch does not is a 413."""
    x = np.zeros((2, 50, 2))
    labels = np.ones((2, 40), dtype=np.int64)
    doc = {
        "predictions": packed(x),
        "targets": packed(labels),
        "inputs": {"input_lengths": [50, 50], "target_lengths": [1, 1]},
    }
    arrays = x.nbytes * 2 + labels.nbytes * 2  # decoded, compute copies
    with pytest.raises(MemoryBudget):
        codec.evaluate_one("ctc", orjson.dumps(doc), 10**6, 4 * arrays)
    assert codec.evaluate_one("ctc", orjson.dumps(doc), 10**6, 1 << 24).results[0].n == 2


def _posted(name: str, doc: dict[str, Any]) -> LossdError:
    """The problem ``POST /loss/{name}`` answers the JSON document with (a 422)."""
    with pytest.raises(LossdError) as caught:
        codec.evaluate_one(name, orjson.dumps(doc), 10**6)
    assert caught.value.status == 422, caught.value.detail
    return caught.value


@pytest.mark.loss("mse", "ctc")
def test_rank3_is_ctcs_only() -> None:
    """Rank-3 predictions to any other loss, rank-3 targets, rank 2 or 4 predictions to ctc
    and a ragged rank-3 list: a 422 that says which ranks are taken, located."""
    x = np.zeros((2, 3, 2)).tolist()
    error = _posted("mse", {"predictions": x, "targets": [[0.0, 0.0]] * 2})
    assert error.code == "shape_mismatch" and "rank 3 is for ctc" in error.detail
    drawn = batch(13, n=2, steps=6, classes=3, width=2)
    arrays, inputs = _arrays(drawn), _inputs(drawn)
    doc = {
        "predictions": arrays["predictions"].tolist(),
        "targets": arrays["targets"].tolist(),
        "inputs": {k: v.tolist() for k, v in inputs.items()},
    }
    error = _posted("ctc", {**doc, "targets": arrays["targets"][:, :, None].tolist()})
    assert error.code == "invalid_array" and error.errors[0][0][0] == "targets"
    error = _posted("ctc", {**doc, "predictions": arrays["predictions"][:, :, :, None].tolist()})
    assert error.code == "invalid_array" and error.errors[0][0][0] == "predictions"
    error = _posted("ctc", {**doc, "predictions": arrays["predictions"][:, 0].tolist()})
    assert "rank 3 (N, T, C)" in error.detail
    ragged = [row[:-1] if i == 1 else row for i, row in enumerate(doc["predictions"])]
    assert _posted("ctc", {**doc, "predictions": ragged}).errors[0][0] == ["predictions", 1]
    error = _posted("ctc", {**doc, "predictions": packed(np.zeros((1, 1, 1, 1)))})
    assert error.errors[0][0] == ["predictions", "shape"]


def test_catalogue_entry() -> None:
    """GET /losses/CTCLoss: the loss, its inputs (not differentiable) and target form; GET
    /v2/models/ctc: rank-3 predictions, integer labels and lengths."""
    entry = catalogue_entry(resolve("CTCLoss"))
    assert entry["name"] == "ctc" and entry["family"] == "sequence"
    assert entry["targets"] == ["sequence"]
    assert [(x["name"], x["differentiable"]) for x in entry["inputs"]] == [
        ("input_lengths", False),
        ("target_lengths", False),
    ]
    assert entry["alias_conventions"]["CTCLoss"]["reduce_over"] == "samples"
    # its mean divides by target lengths, the only such loss: a client merges a split mean of
    # it from the pieces' means (tests/test_python_client.py)
    assert entry["mean_factor"] is True
    assert [s.name for s in REGISTRY if catalogue_entry(s)["mean_factor"]] == ["ctc"]
    meta = oip.model_metadata(SPEC)
    shapes = {t["name"]: t["shapes"] for t in meta["inputs"]}
    assert shapes["predictions"] == [[-1, -1, -1]] and shapes["targets"] == [[-1, -1]]
    types = {t["name"]: t["datatypes"] for t in meta["inputs"]}
    assert "INT64" in types["targets"] and "INT64" in types["input_lengths"]
