"""Costs proportional to what is sent (issue 12, item 5): every loss's cost hooks
(``LossParams.working_bytes`` and ``operations``) against what ``prepare`` and the domain checks
really allocate, simloss's O(N·C) ordinal rows against its dense-matrix path and an independent
scan, its refusal of a matrix that cannot be allocated, and the class-index targets that losses
differing only in ``ignore_index`` share (never made (N, C) rows)."""

from __future__ import annotations

import tracemalloc
from time import perf_counter
from typing import Any

import numpy as np
import pytest
import scipy.signal

from service import core
from service.core import validate_params
from service.errors import MemoryBudget
from service.losses import REGISTRY, LossSpec, resolve
from service.losses import simloss as simloss_module
from service.losses._spec import as_compute
from tests.support.harness import HARNESSED, VARIANT_IDS, VARIANTS, evaluate, sample, spec_id
from tests.support.references import CASES

SIMLOSS = resolve("simloss")
ITEMSIZES = (8, 4)

# --- the hooks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", HARNESSED, ids=spec_id)
def test_operations_count_n_times_c_and_simloss_its_matrix(spec: LossSpec) -> None:
    """Every loss takes at least N·C steps; the losses of independent rows but simloss,
    multilabel_margin and the pairwise ranking losses exactly N·C (double N or C and the count
    doubles), multilabel_margin and the pairwise ranking losses N·C² (every pair of a row). A
    batch-coupled loss grows linearly in C and at least linearly in N (a sort of the batch, or
    every pair of rows). simloss, its parameters unknown, counts a given matrix's N·C² (double C
    and the count nearly quadruples); with ``ordinal_base`` sent, N·C."""
    ops = spec.params.operations
    for rows, columns in ((1, 3), (100, 10), (1000, 1000)):
        assert ops(rows, columns) >= rows * columns
    pairs = getattr(spec.params, "counts", None) == "pairs"
    if spec.name == "multilabel_margin" or pairs:  # every pair of a row's entries: N·C²
        assert ops(200, 30) == 200 * 30 * 30
        return
    if spec.batch_coupled:
        assert ops(200, 60) == 2 * ops(200, 30)
        assert ops(400, 30) >= 2 * ops(200, 30)
        return
    if spec.name != "simloss":
        assert ops(200, 30) == 200 * 30
        assert ops(400, 30) == ops(200, 60) == 2 * ops(200, 30)
        return
    assert ops(10, 2000) >= 3.9 * ops(10, 1000)
    assert ops(10, 1000) >= 10 * 1000**2
    assert ops(400, 30) >= 1.9 * ops(200, 30)
    ordinal = {"ordinal_base": 0.5}
    assert ops(200, 30, sent=ordinal) == 200 * 30
    assert ops(200, 60, sent=ordinal) == 2 * ops(200, 30, sent=ordinal)
    assert ops(10, 1000, sent={"similarity": [[1.0]]}) == ops(10, 1000)


@pytest.mark.loss("simloss")
@pytest.mark.parametrize("itemsize", ITEMSIZES)
def test_simloss_working_bytes_hold_its_matrix(itemsize: int) -> None:
    """simloss's bound holds its C×C matrix in the compute dtype whatever was sent, unless an
    ``ordinal_base`` without a matrix was sent: then it grows with C, not C² (5,000,000 classes
    need no 2·10^14 bytes)."""
    wb = SIMLOSS.params.working_bytes
    for columns in (3, 1000, 5_000_000):
        assert wb(1, columns, itemsize) >= columns * columns * itemsize
        sent = {"similarity": [[1.0]], "ordinal_base": None}
        assert wb(1, columns, itemsize, sent=sent) >= columns * columns * itemsize
    ordinal = {"ordinal_base": 0.5}
    small = wb(1, 5_000_000, itemsize, sent=ordinal)
    assert small < 5_000_000 * 1000
    assert wb(1, 10_000_000, itemsize, sent=ordinal) <= 2 * small
    # a bool is no number: the parameters could not be valid as an ordinal base
    assert wb(1, 1000, itemsize, sent={"ordinal_base": True}) >= 1000 * 1000 * itemsize


def _columns(params: dict[str, Any]) -> int:
    """16 classes, or as many as a per-class parameter lists."""
    for key in ("class_weight", "similarity", "pos_weight"):
        if isinstance(params.get(key), list):
            return len(params[key])
    return 16


MEASURED = list(zip(VARIANTS, VARIANT_IDS, strict=True))
# Python objects prepare makes besides arrays (dicts of parameters, the shown params)
OBJECT_SLACK = 16 * 1024


@pytest.mark.parametrize(("spec", "params"), [v for v, _ in MEASURED], ids=[i for _, i in MEASURED])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_prepare_and_checks_stay_within_working_bytes(
    spec: LossSpec, params: dict[str, Any], dtype: Any
) -> None:
    """What ``prepare`` and ``check_domain`` (``prepare_inputs`` and ``check_inputs`` for the
    extra inputs) allocate at their peak (numpy's allocations, traced) is at most the loss's
    ``working_bytes``, given its params as sent or not, plus the generic arrays they make (the
    targets' and the extra inputs' compute copies and κ)."""
    rows, columns = 2000, _columns(params)
    itemsize = np.dtype(dtype).itemsize
    loss_params = validate_params(spec, params)
    generic = (columns * (1 + len(spec.params.inputs)) + 1) * rows * itemsize
    shape = (rows, columns) if spec.params.max_rank == 2 else (rows,)
    for kind in CASES[spec.name].target_kinds(params):
        drawn = sample(spec, shape, 3, params, kind)
        pred = drawn.pred
        targ = np.empty((0, 0), dtype) if drawn.targ is None else drawn.targ
        compute = as_compute(pred, dtype, "predictions")
        # once untraced on two rows: the jitted helpers prepare calls (ranking's pair counts) are
        # loaded from numba's cache on their first call, allocations that are not the batch's
        few = {k: a[:2] for k, a in drawn.inputs.items()}
        loss_params.prepare(spec.name, pred[:2], targ[:2], dtype, {})
        loss_params.prepare_inputs(pred[:2], few, dtype, {})
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            prepared = loss_params.prepare(spec.name, pred, targ, dtype, {})
            extra = loss_params.prepare_inputs(pred, drawn.inputs, dtype, {})
            loss_params.check_domain(compute, prepared.targets)
            loss_params.check_inputs(compute, extra)
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        bound = spec.params.working_bytes(rows, columns, itemsize, sent=params)
        assert bound <= spec.params.working_bytes(rows, columns, itemsize)
        assert peak <= bound + generic + OBJECT_SLACK, kind
        if kind == "index":  # the tighter bound of declared class indices, with their copy
            assert prepared.targets.shape == (rows,) and prepared.targets.dtype == np.int64
            tight = spec.params.working_bytes(rows, columns, itemsize, sent=params, indices=True)
            assert tight <= bound
            assert peak <= tight + (8 + itemsize) * rows + OBJECT_SLACK


# --- simloss: the ordinal scans ----------------------------------------------------------------


def _ordinal_matrix(base: float, columns: int) -> list[list[float]]:
    steps = np.abs(np.subtract.outer(np.arange(columns), np.arange(columns)))
    return np.power(base, steps, dtype=np.float64).tolist()  # type: ignore[no-any-return]


def _targets(kind: str, rows: int, columns: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "index":
        return rng.integers(0, columns, rows).astype(float)
    soft = rng.dirichlet(np.full(columns, 0.3), rows)
    # "mass": soft rows summing to 0 … 2, an all-zero row among them (the cross-entropy family)
    return soft if kind == "soft" else soft * np.linspace(0.0, 2.0, rows)[:, None]


@pytest.mark.loss("simloss")
@pytest.mark.parametrize("base", [0.0, 0.3, 0.9, 0.999])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("kind", ["index", "soft", "mass"])
def test_ordinal_scans_equal_the_matrix_path(base: float, from_logits: bool, kind: str) -> None:
    """``ordinal_base`` r (scans, O(C) a row) and the same S = r^|i−j| sent as ``similarity``
    (the dense path, O(C²) a soft row) give the same losses, gradients and Hessian diagonals,
    weighted, to float64 rounding (the gradient from logits cancels p·(D − A): a few ulps of D)."""
    rng = np.random.default_rng(int(base * 1000) + 7 * from_logits)
    rows, columns = 40, 23
    logits = rng.normal(scale=3.0, size=(rows, columns))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    pred = logits if from_logits else probs
    targ = _targets(kind, rows, columns, rng)
    weights = rng.uniform(0.5, 2.0, rows)
    common = {"from_logits": from_logits}
    options = {"reduction": "sum", "gradient": True, "hessian": True}
    scanned = evaluate(SIMLOSS, pred, targ, weights, {**common, "ordinal_base": base}, **options)
    dense = evaluate(SIMLOSS, pred, targ, weights,
                     {**common, "similarity": _ordinal_matrix(base, columns)}, **options)  # fmt: skip
    for mine, theirs in ((scanned.per_sample, dense.per_sample),
                         (scanned.gradient, dense.gradient), (scanned.hessian, dense.hessian)):  # fmt: skip
        assert mine is not None and theirs is not None
        scale = float(np.abs(theirs).max())
        np.testing.assert_allclose(mine, theirs, rtol=1e-11, atol=1e-11 * scale)
    assert scanned.value == pytest.approx(dense.value, rel=1e-12)


def _scan_reference(probs: np.ndarray, targ: np.ndarray, base: float, epsilon: float) -> np.ndarray:
    """−Σ_k y_k log(s_k + ε), s = S p with S = r^|i−j|, by scipy's IIR filter (the recursion
    F_k = p_k + r F_{k−1}) in both directions: no C×C matrix."""
    forward = scipy.signal.lfilter([1.0], [1.0, -base], probs, axis=1)
    backward = scipy.signal.lfilter([1.0], [1.0, -base], probs[:, ::-1], axis=1)[:, ::-1]
    s = forward + base * np.pad(backward[:, 1:], ((0, 0), (0, 1)))
    return np.asarray(-(targ * np.log(s + epsilon)).sum(axis=1))


@pytest.mark.loss("simloss")
def test_ordinal_simloss_with_a_million_soft_classes_is_linear() -> None:
    """Soft targets over C = 1,000,000 classes from logits, gradient and Hessian asked for: at
    N·C² that is 4·10^12 steps (hours); the scans take N·C, well within 60 s, and the losses are
    the IIR-filter reference's."""
    rng = np.random.default_rng(12)
    rows, columns, base = 4, 1_000_000, 0.999
    logits = rng.normal(size=(rows, columns))
    targ = rng.dirichlet(np.ones(columns), rows)
    started = perf_counter()
    out = evaluate(SIMLOSS, logits, targ, None, {"ordinal_base": base, "from_logits": True},
                   reduction="none", gradient=True, hessian=True)  # fmt: skip
    seconds = perf_counter() - started
    assert seconds < 60
    assert out.per_sample is not None and out.gradient is not None and out.hessian is not None
    assert np.isfinite(out.gradient).all() and np.isfinite(out.hessian).all()
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out.per_sample, _scan_reference(probs, targ, base, 1e-8), rtol=1e-9)


# --- simloss: a matrix that cannot be allocated is a 413 -----------------------------------------


@pytest.mark.loss("simloss")
def test_a_matrix_beyond_memory_is_a_413_not_a_memory_error() -> None:
    """S for 5,000,000 classes (2·10^14 bytes) is refused by ``matrix`` with 413 memory_budget
    naming the classes, before numpy tries (it raised MemoryError, a 500)."""
    params = SIMLOSS.params.model_validate({"ordinal_base": 0.5})
    with pytest.raises(MemoryBudget) as info:
        params.matrix(5_000_000)  # type: ignore[attr-defined]
    assert info.value.status == 413 and info.value.code == "memory_budget"
    assert "5000000 classes" in info.value.detail


@pytest.mark.loss("simloss")
@pytest.mark.parametrize("base", [0.0, 0.5, 0.999])
def test_the_ordinal_matrix_is_r_to_the_distance(base: float) -> None:
    """``matrix`` builds r^|i−j| (0^0 = 1) from one row of powers, entry for entry np.power's
    over the C×C distances, in either compute dtype."""
    params = SIMLOSS.params.model_validate({"ordinal_base": base})
    for columns in (1, 2, 7):
        expected = np.array(_ordinal_matrix(base, columns))
        np.testing.assert_array_equal(params.matrix(columns), expected)  # type: ignore[attr-defined]
        single = params.matrix(columns, np.float32)  # type: ignore[attr-defined]
        assert single.dtype == np.float32
        np.testing.assert_array_equal(single, expected.astype(np.float32))


@pytest.mark.loss("simloss")
def test_a_given_matrix_is_checked_before_it_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check guards the path ``prepare`` takes: a 3×3 ``similarity`` in a process with 64
    bytes to spare is a 413, and ``ordinal_base``, which builds no matrix, is still answered."""
    monkeypatch.setattr(simloss_module, "_memory_limit", lambda: 64)
    pred, targ = np.full((2, 3), 1 / 3), np.array([0.0, 2.0])
    with pytest.raises(MemoryBudget):
        evaluate(SIMLOSS, pred, targ, None, {"similarity": np.eye(3).tolist()})
    out = evaluate(SIMLOSS, pred, targ, None, {"ordinal_base": 0.5})
    assert out.value is not None and np.isfinite(out.value)


# --- one shared one-hot copy per dtype ---------------------------------------------------------

IGNORING: list[tuple[LossSpec, dict[str, Any]]] = [
    (resolve("cross_entropy"), {"from_logits": True}),
    (resolve("cross_entropy"), {"from_logits": True, "class_weight": "balanced"}),
    (resolve("focal"), {"from_logits": True, "label_smoothing": 0.1}),
    (resolve("generalized_cross_entropy"), {"from_logits": True, "class_weight": [1, 2, 3, 4]}),
]


def _results(batch: core.Batch, dtype: str) -> list[core.Result]:
    """Each IGNORING loss with ignore_index −100, −1 and each class 0 … 3, on ``batch``."""
    options = core.Options(reduction="mean", gradient=True, dtype=dtype)  # type: ignore[arg-type]
    chosen = [
        (spec, validate_params(spec, {**params, "ignore_index": ignore}))
        for spec, params in IGNORING
        for ignore in (-100, -1, 0, 1, 2, 3)
    ]
    return [core.evaluate(spec, params, batch, options) for spec, params in chosen]


@pytest.mark.loss("cross_entropy", "focal", "generalized_cross_entropy")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_losses_differing_in_ignore_index_share_one_index_array(dtype: str) -> None:
    """Twenty-four losses differing in ignore_index (−100, −1 and each class) on one batch: its
    memo holds one (N,) int64 array of the indices and no (N, C) array at all, and every result
    is bit for bit that loss alone on a fresh batch."""
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(30, 4))
    index = rng.integers(0, 4, 30).astype(float)
    shared = core.Batch(logits, index)
    results = _results(shared, dtype)
    arrays = [v for v in shared.memo.values() if isinstance(v, np.ndarray)]
    assert not [a for a in arrays if a.ndim == 2]
    indices = [a for a in arrays if a.dtype == np.int64]
    assert len(indices) == 1 and indices[0].shape == (30,)
    for k, result in enumerate(results):
        alone = _results(core.Batch(logits, index), dtype)[k]
        assert result.value == alone.value and result.weight_sum == alone.weight_sum
        assert result.params == alone.params
        assert result.per_sample is not None and alone.per_sample is not None
        assert result.gradient is not None and alone.gradient is not None
        np.testing.assert_array_equal(result.per_sample, alone.per_sample)
        np.testing.assert_array_equal(result.gradient, alone.gradient)


INDEX_LOSSES = [spec for spec in REGISTRY if "class_index" in spec.targets]


@pytest.mark.parametrize("spec", INDEX_LOSSES, ids=spec_id)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_class_indices_reach_the_kernel_as_indices(spec: LossSpec, dtype: Any) -> None:
    """(N,) class indices, sent as integers or integral floats, reach the driver as one
    read-only (N,) int64 array, an index outside [0, C) as −1; no (N, C) array is made of them,
    in the prepared targets or in the memo (a loss with ``ignore_index`` inside [0, C) and no
    mask gets its own (N,) copy with −1 for the ignored samples)."""
    index = np.array([2, 0, 1, -100, 2, 1])
    fields = spec.params.model_fields
    for sent in (index, index.astype(np.float32)):
        for ignore in (None, -100, 1) if "ignore_index" in fields else (None,):
            targets = np.abs(sent) % 3 if ignore is None else np.where(sent < 0, ignore, sent)
            params = dict(spec.params.warm_up)
            if ignore is not None:
                params["ignore_index"] = ignore
            loss_params = validate_params(spec, params)
            memo: dict[tuple[Any, ...], Any] = {}
            prepared = loss_params.prepare(spec.name, np.full((6, 3), 1 / 3), targets, dtype, memo)
            got = prepared.targets
            assert got.shape == (6,) and got.dtype == np.int64 and not got.flags.writeable
            expected = np.where((targets >= 0) & (targets < 3), targets, -1)
            if ignore == 1 and "ignored" not in prepared.kernel_params:
                expected = np.where(targets == 1, -1, expected)  # the driver's own copy
            np.testing.assert_array_equal(got, expected)
            arrays = [v for v in memo.values() if isinstance(v, np.ndarray)]
            assert all(a.ndim == 1 for a in arrays), spec.name


@pytest.mark.loss("cross_entropy")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_class_indices_allocate_no_rows(dtype: str) -> None:
    """A language-model-shaped request in miniature (400 samples x 4000 classes, logits, index
    targets, the loss and its mean only): what the evaluation allocates at its peak is a
    fraction of one (N, C) array of the compute dtype; a one-hot copy of the targets was that
    array whole."""
    rng = np.random.default_rng(13)
    rows, classes = 400, 4000
    logits = rng.normal(size=(rows, classes)).astype(dtype)
    index = rng.integers(0, classes, rows)
    spec = resolve("cross_entropy")
    params = validate_params(spec, {"from_logits": True, "class_weight": "balanced"})
    options = core.Options(dtype=dtype, per_sample=False)  # type: ignore[arg-type]
    core.evaluate(spec, params, core.Batch(logits, index), options)  # compiled before tracing
    tracemalloc.start()
    try:
        core.evaluate(spec, params, core.Batch(logits, index), options)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < rows * classes * np.dtype(dtype).itemsize / 4


@pytest.mark.loss("cross_entropy", "focal", "generalized_cross_entropy")
@pytest.mark.parametrize(("spec", "params"), IGNORING, ids=spec_id)
def test_an_ignored_class_is_an_all_zero_row(spec: LossSpec, params: dict[str, Any]) -> None:
    """An ignore_index inside [0, C) answers as the one-hot rows with the ignored samples'
    rows all zero did (each loss's own copy, before the rows were shared): loss 0, gradient 0,
    κ 0, balanced weights counted without them; the other samples exactly as without
    ignore_index."""
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(40, 4))
    index = rng.integers(0, 4, 40).astype(float)
    ignored = index == 2
    out = evaluate(spec, logits, index, None, {**params, "ignore_index": 2}, reduction="sum",
                   gradient=True)  # fmt: skip
    assert out.per_sample is not None and out.gradient is not None
    np.testing.assert_array_equal(out.per_sample[ignored], 0.0)
    np.testing.assert_array_equal(out.gradient[ignored], 0.0)
    shown = out.params["class_weight"]
    weights = np.ones(4) if shown is None else np.asarray(shown)
    kept = index[~ignored].astype(int)
    assert out.weight_sum == pytest.approx(float(weights[kept].sum()), rel=1e-15)
    if params.get("class_weight") == "balanced":
        counts = np.bincount(kept, minlength=4).astype(float)
        present = counts > 0
        expected = np.zeros(4)
        expected[present] = counts.sum() / (4 * counts[present])
        np.testing.assert_array_equal(weights, expected)
    fixed = {**params, "class_weight": shown}
    rest = evaluate(spec, logits[~ignored], index[~ignored], None, fixed, reduction="none")
    assert rest.per_sample is not None
    np.testing.assert_array_equal(out.per_sample[~ignored], rest.per_sample)
