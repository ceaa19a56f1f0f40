"""The reference cases: how every registered loss is checked, in one vocabulary.

Terms, each defined once:

reference
    A slow, obviously right NumPy function of one loss, ``fn(p, t, **inputs, **params) -> l``:
    float64 predictions and targets of shape (N, D) in (targets None for a loss that takes
    none), the loss's extra inputs by name as (N, D') rows, the per-sample losses ``l_i`` (N,)
    out, written out the way LOSSES.md states the loss. It is named after the loss. Gradients
    and Hessians are checked against finite differences of these same functions
    (``tests/support/harness.py``), so a reference only states the loss itself.
extra inputs
    The arrays a loss takes under ``inputs`` (``spec.params.inputs``): a case draws each of the
    kind its ``inputs`` names, of the predictions' shape, and a ``Sample`` carries them beside
    the predictions and targets.
family
    ``spec.family`` in the registry: regression, binary, multiclass, distribution or overlap.
    Each family has one module here, named after it, holding the references of its losses and
    their cases in a ``CASES`` dict; ``CASES`` below is their union, one entry per registered
    loss. Adding a loss touches exactly one of these modules.
kind
    How one input array is drawn: a ``(low, high)`` range, uniform, or one of the named kinds
    ``"simplex"`` (positive rows summing to 1), ``"unit"`` (uniform in [0.02, 0.98]),
    ``"index"`` (class indices), ``"onehot"`` (one-hot rows), ``"soft"`` (random distributions
    as rows), ``"binary"`` ({0, 1}), ``"sign"`` ({-1, 1}), ``"sample-sign"`` ((N,) of {-1, 1}:
    one label per pair of rows) and ``"labels"`` (torch's multilabel
    targets: each row some class indices, repeats allowed, ended by -1 when it lists fewer than
    C, and any of -1 .. C - 1 after that), ``"grades"`` (relevance labels of ranked lists:
    integers 0 .. 3, ties within a list), ``"spread"`` (scores near multiples of 0.3, so that no
    two of a list differ by 1, the pairwise hinge's kink) and ``"groups"`` ((N,) labels of
    embeddings: integers 0 .. 2, each several times in a batch), ``"times"`` (survival times
    in [0.5, 5], negative for a censored sample, about a third of them) and ``"intervals"``
    ((N, 2) rows [lower, upper] of survival times: observed, right-censored with upper −1,
    left-censored with lower 0, and interval-censored, in turn). Uniform draws of predictions
    and targets are kept 0.05 apart, away from the kinks of piecewise losses.
target form
    ``spec.targets`` in the registry: ``"same_shape"`` (targets shaped like the predictions) and,
    for the losses that take them, ``"class_index"`` (an (N,) vector of class indices for (N, C)
    predictions). A case draws class indices exactly when its loss takes them (target kind
    ``"index"``); its reference always sees them as one-hot rows (``one_hot``), with ignored
    samples as all-zero rows.
soft targets
    Target rows that are distributions rather than one class: a case with ``soft=True`` is also
    run with ``"soft"`` targets (``Case.target_kinds``), except with ``ignore_index``.
case
    A ``Case``: one loss's reference, the kinds of its predictions and targets (its domain), the
    range of its logits when ``from_logits`` is on, its parameter sets and whether soft targets
    apply. The rank a loss needs is not part of the case: it is the registry's
    ``spec.params.min_rank``.
κ
    The normaliser of one sample in a mean (SPEC section 4): ``Case.kappa``, a function of the
    batch for the losses whose mean counts something other than samples or class weights
    (pairs, items, events, positive pairs); None: 1 per sample, or the class weights.
variant
    One loss with one of its case's parameter sets, ``(spec, params)``: the unit the
    registry-wide contract tests are parametrized on (``harness.VARIANTS``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.losses import REGISTRY

Array = NDArray[np.float64]
Range = tuple[float, float]
Kind = Range | str
Params = dict[str, object]


# --- building blocks of the references --------------------------------------------------------


def rowmean(values: Array) -> Array:
    """The mean over each row's D elements: elementwise losses become per-sample losses."""
    return np.asarray(values.mean(axis=1))


def log_softmax(z: Array) -> Array:
    top = z.max(axis=1, keepdims=True)
    return np.asarray(z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True)))


def log_sigmoid(z: Array) -> Array:
    """log σ(z) = −log(1 + e^−z); logaddexp never overflows."""
    return np.asarray(-np.logaddexp(0.0, -z))


def class_weights(t: Array, class_weight: object) -> Array:
    """The class weights of LOSSES.md: none (all 1), a list, or "balanced" (n / (C n_c), 0 for an
    absent class)."""
    if class_weight is None:
        return np.ones(t.shape[1])
    if class_weight == "balanced":
        counts = t.sum(axis=0)
        with np.errstate(divide="ignore"):
            return np.where(counts > 0, counts.sum() / (t.shape[1] * counts), 0.0)
    return np.asarray(class_weight, dtype=np.float64)


def one_hot(index: Array, classes: int, ignore_index: object = None) -> Array:
    """(N,) class indices as one-hot rows; ``ignore_index`` rows are all zero."""
    out = np.zeros((len(index), classes))
    for i, k in enumerate(index):
        if k != ignore_index:
            out[i, int(k)] = 1.0
    return out


# --- cases --------------------------------------------------------------------------------------


def draw(kind: Kind, shape: tuple[int, ...], rng: np.random.Generator) -> Array:
    """One input array of this kind (see the module docstring)."""
    if not isinstance(kind, str):
        return rng.uniform(*kind, size=shape)
    n, c = shape[0], (shape[1] if len(shape) > 1 else 1)
    if kind == "index":
        return rng.integers(0, c, size=n).astype(np.float64)
    if kind == "onehot":
        return one_hot(rng.integers(0, c, size=n), c).reshape(shape)
    if kind in ("soft", "simplex"):
        raw = rng.uniform(0.1, 1.0, size=(n, c))
        return (raw / raw.sum(axis=1, keepdims=True)).reshape(shape)
    if kind == "binary":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    if kind == "sign":
        return rng.choice([-1.0, 1.0], size=shape)
    if kind == "sample-sign":
        return rng.choice([-1.0, 1.0], size=n)
    if kind == "unit":
        return rng.uniform(0.02, 0.98, size=shape)
    if kind == "grades":
        return rng.integers(0, 4, size=shape).astype(np.float64)
    if kind == "spread":
        return rng.integers(-10, 11, size=shape) * 0.3 + rng.uniform(-0.02, 0.02, size=shape)
    if kind == "times":
        return rng.uniform(0.5, 5.0, size=n) * rng.choice([1.0, 1.0, -1.0], size=n)
    if kind == "intervals":
        low = rng.uniform(0.5, 3.0, size=n)
        high = low * rng.uniform(1.5, 3.0, size=n)
        rows = np.stack([low, high], axis=1)
        rows[0::4, 1] = low[0::4]  # observed
        rows[1::4, 1] = -1.0  # right-censored: upper +inf
        rows[2::4, 0] = 0.0  # left-censored
        return rows
    if kind == "groups":
        return rng.integers(0, 3, size=n).astype(np.float64)
    if kind == "labels":
        out = np.empty((n, c))
        for i in range(n):
            k = int(rng.integers(0, c + 1))
            out[i, :k] = rng.integers(0, c, size=k)
            if k < c:
                out[i, k] = -1
                out[i, k + 1 :] = rng.integers(-1, c, size=c - k - 1)
        return out.reshape(shape)
    raise ValueError(kind)


class Sample:
    """One batch of a case: predictions and targets, which it unpacks to (``pred, targ =``, as
    most tests take a batch), and ``inputs``, the extra inputs of a loss that takes them
    (empty for every other loss)."""

    def __init__(self, pred: Array, targ: Array | None, inputs: dict[str, Array]) -> None:
        self.pred = pred
        self.targ = targ
        self.inputs = inputs

    def __iter__(self) -> Iterator[Any]:
        return iter((self.pred, self.targ))


class Case:
    """How one loss is exercised: its reference, input kinds, parameter sets (see above);
    ``targ`` None for a loss that takes no targets."""

    def __init__(
        self,
        fn: object,
        pred: Kind = (-3.0, 3.0),
        targ: Kind | None = (-3.0, 3.0),
        params: tuple[Params, ...] = ({},),
        logits: Range = (-3.0, 3.0),
        soft: bool = False,
        kappa: object = None,
        inputs: dict[str, Kind] | None = None,
    ) -> None:
        self.fn = fn
        self.kappa = kappa  # κ_i as a function (p, t, params) of the batch; None: see above
        self.pred = pred
        self.targ = targ
        self.params = params
        self.logits = logits
        self.soft = soft  # also exercised with soft (N, C) targets
        self.inputs = inputs or {}  # the extra inputs' kinds, by name

    def target_kinds(self, params: Params) -> list[Kind | None]:
        """The target forms the value tests run: the case's own, and soft rows where they apply."""
        return [self.targ] + (["soft"] if self.soft and "ignore_index" not in params else [])

    def sample(
        self,
        shape: tuple[int, ...],
        seed: int,
        params: Params | None = None,
        targ_kind: Kind | None = None,
    ) -> Sample:
        """Predictions, targets and extra inputs inside the loss's domain, away from kinks (the
        extra inputs are drawn after the predictions and targets, so these are the same as a
        loss without them draws)."""
        rng = np.random.default_rng(seed)
        pred_kind = self.logits if (params or {}).get("from_logits") else self.pred
        targ_kind = self.targ if targ_kind is None else targ_kind
        pred = draw(pred_kind, shape, rng)
        targ = None if targ_kind is None else draw(targ_kind, shape, rng)
        if not isinstance(pred_kind, str) and isinstance(targ_kind, tuple):
            # keep residuals away from 0 and from the breakpoints of piecewise losses
            targ = np.where(np.abs(pred - targ) < 0.05, targ + 0.1, targ)
        inputs = {name: draw(kind, shape, rng) for name, kind in self.inputs.items()}
        return Sample(pred, targ, inputs)

    def reference(
        self,
        pred: Array,
        targ: Array | None,
        params: Params,
        inputs: dict[str, Array] | None = None,
    ) -> Array:
        """The reference's per-sample losses; index targets are handed over as one-hot rows (the
        labels of embeddings as they are), extra inputs as (N, D') rows."""
        n = pred.shape[0]
        p2 = pred.reshape(n, -1)
        if targ is None:
            t2 = None
        elif self.targ == "groups":
            t2 = targ
        elif targ.ndim == 1 and pred.ndim == 2 and self.targ != "sample-sign":
            t2 = one_hot(targ, pred.shape[1], params.get("ignore_index"))
        else:
            t2 = targ.reshape(n, -1)
        rows = {name: a.reshape(n, -1) for name, a in (inputs or {}).items()}
        return self.fn(p2, t2, **rows, **params)  # type: ignore[operator, no-any-return]


# One module per family of the registry, each importing the vocabulary above.
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(spec.family for spec in REGISTRY))
CASES: dict[str, Case] = {
    name: case
    for family in FAMILIES
    for name, case in importlib.import_module(f"{__name__}.{family}").CASES.items()
}
