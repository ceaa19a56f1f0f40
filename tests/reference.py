"""Slow, obviously right NumPy references: one function per loss, ``(pred, targ, **params)``.

Each takes float64 arrays of shape (N, D) and returns the per-sample losses ``l_i`` (N,). Gradients
and Hessians are checked against finite differences of these same functions, so a reference only
has to state the loss itself, written out the way LOSSES.md does.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def _rowmean(values: Array) -> Array:
    return np.asarray(values.mean(axis=1))


def mse(p: Array, t: Array) -> Array:
    return _rowmean((p - t) ** 2)


def mae(p: Array, t: Array) -> Array:
    return _rowmean(np.abs(p - t))


def huber(p: Array, t: Array, delta: float = 1.0) -> Array:
    r = np.abs(p - t)
    return _rowmean(np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta)))


def smooth_l1(p: Array, t: Array, beta: float = 1.0) -> Array:
    r = np.abs(p - t)
    if beta == 0:
        return _rowmean(r)
    return _rowmean(np.where(r < beta, 0.5 * r**2 / beta, r - 0.5 * beta))


def pseudo_huber(p: Array, t: Array, delta: float = 1.0) -> Array:
    r = p - t
    return _rowmean(delta**2 * (np.sqrt(1 + (r / delta) ** 2) - 1))


def log_cosh(p: Array, t: Array) -> Array:
    # keras.losses.log_cosh: x + softplus(-2x) - log 2
    x = p - t
    return _rowmean(x + np.logaddexp(0.0, -2.0 * x) - math.log(2.0))


def mape(p: Array, t: Array, epsilon: float = 1e-7) -> Array:
    return _rowmean(100.0 * np.abs(t - p) / np.maximum(np.abs(t), epsilon))


def msle(p: Array, t: Array, epsilon: float = 1e-7) -> Array:
    first = np.log1p(np.maximum(p, epsilon))
    second = np.log1p(np.maximum(t, epsilon))
    return _rowmean((first - second) ** 2)


def pinball(p: Array, t: Array, quantile: float = 0.5) -> Array:
    return _rowmean(quantile * np.maximum(t - p, 0) + (1 - quantile) * np.maximum(p - t, 0))


def poisson(
    p: Array, t: Array, log_input: bool = False, full: bool = False, epsilon: float = 1e-7
) -> Array:
    loss = np.exp(p) - t * p if log_input else p - t * np.log(p + epsilon)
    if full:
        safe = np.where(t > 1, t, 2.0)
        stirling = safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe)
        loss = loss + np.where(t > 1, stirling, 0.0)
    return _rowmean(loss)


def tweedie(p: Array, t: Array, power: float = 1.5) -> Array:
    # sklearn.metrics._regression._mean_tweedie_deviance, elementwise
    if power == 0:
        dev = (t - p) ** 2
    elif power == 1:
        ylogy = np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0) / p), 0.0)
        dev = 2 * (ylogy - t + p)
    elif power == 2:
        dev = 2 * (np.log(p / t) + t / p - 1)
    else:
        dev = 2 * (
            np.maximum(t, 0) ** (2 - power) / ((1 - power) * (2 - power))
            - t * p ** (1 - power) / (1 - power)
            + p ** (2 - power) / (2 - power)
        )
    return _rowmean(dev)


def cosine_similarity(p: Array, t: Array, epsilon: float = 1e-7) -> Array:
    u = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), epsilon)
    v = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), epsilon)
    return np.asarray(-(u * v).sum(axis=1))


def _class_weights(t: Array, class_weight: object) -> Array:
    if class_weight is None:
        return np.ones(t.shape[1])
    if class_weight == "balanced":  # LOSSES.md: n / (C n_c), 0 for an absent class
        counts = t.sum(axis=0)
        with np.errstate(divide="ignore"):
            return np.where(counts > 0, counts.sum() / (t.shape[1] * counts), 0.0)
    return np.asarray(class_weight, dtype=np.float64)


def _log_softmax(z: Array) -> Array:
    top = z.max(axis=1, keepdims=True)
    return np.asarray(z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True)))


def cross_entropy(
    p: Array,
    t: Array,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    class_weight: object = None,
    ignore_index: object = None,
    epsilon: float = 1e-7,
) -> Array:
    # torch.nn.functional.cross_entropy (logits) / keras categorical_crossentropy (probabilities);
    # ignored samples arrive as all-zero rows, and smoothing scales with the row's target mass
    c = p.shape[1]
    cw = _class_weights(t, class_weight)
    y = (1 - label_smoothing) * t + label_smoothing * t.sum(axis=1, keepdims=True) / c
    if from_logits:
        logp = _log_softmax(p)
    else:
        logp = np.log(np.clip(p / p.sum(axis=1, keepdims=True), epsilon, 1 - epsilon))
    return np.asarray(-(cw * y * logp).sum(axis=1))


# How each reference is exercised: where its inputs live (away from kinks unless a test aims at
# them) and which parameter sets to try. A new loss adds its reference above and one line here.
Range = tuple[float, float]
# Kinds of input besides a uniform range:
#   predictions: "simplex" (positive rows summing to 1), "unit" (uniform in [0.02, 0.98])
#   targets: "index" (class indices, given to the reference as one-hot rows), "onehot", "soft"
#   (random distributions), "binary" ({0, 1}), "sign" ({-1, 1}), "unit"
Kind = Range | str


def one_hot(index: Array, classes: int, ignore_index: object = None) -> Array:
    """(N,) class indices as one-hot rows; ``ignore_index`` rows are all zero."""
    out = np.zeros((len(index), classes))
    for i, k in enumerate(index):
        if k != ignore_index:
            out[i, int(k)] = 1.0
    return out


def _draw(kind: Kind, shape: tuple[int, ...], rng: np.random.Generator) -> Array:
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
    if kind == "unit":
        return rng.uniform(0.02, 0.98, size=shape)
    raise ValueError(kind)


class Case:
    """Input domain and parameter variants of one loss."""

    def __init__(
        self,
        fn: object,
        pred: Kind = (-3.0, 3.0),
        targ: Kind = (-3.0, 3.0),
        params: tuple[dict[str, object], ...] = ({},),
        min_rank: int = 1,
        logits: Range = (-3.0, 3.0),
        soft: bool = False,
    ) -> None:
        self.fn = fn
        self.pred = pred
        self.targ = targ
        self.params = params
        self.min_rank = min_rank
        self.logits = logits
        self.soft = soft  # also exercised with soft (N, C) targets

    def target_kinds(self, params: dict[str, object]) -> list[Kind]:
        """The target forms the value tests run: the case's own, and soft rows where they apply."""
        return [self.targ] + (["soft"] if self.soft and "ignore_index" not in params else [])

    def sample(
        self,
        shape: tuple[int, ...],
        seed: int,
        params: dict[str, object] | None = None,
        targ_kind: Kind | None = None,
    ) -> tuple[Array, Array]:
        """Predictions and targets inside the loss's domain, away from kinks."""
        rng = np.random.default_rng(seed)
        pred_kind = self.logits if (params or {}).get("from_logits") else self.pred
        targ_kind = self.targ if targ_kind is None else targ_kind
        pred = _draw(pred_kind, shape, rng)
        targ = _draw(targ_kind, shape, rng)
        if not isinstance(pred_kind, str) and not isinstance(targ_kind, str):
            # keep residuals away from 0 and from the breakpoints of piecewise losses
            targ = np.where(np.abs(pred - targ) < 0.05, targ + 0.1, targ)
        return pred, targ

    def reference(self, pred: Array, targ: Array, params: dict[str, object]) -> Array:
        """The reference's per-sample losses; index targets are handed over as one-hot rows."""
        p2 = pred.reshape(pred.shape[0], -1)
        if targ.ndim == 1 and pred.ndim == 2:
            t2 = one_hot(targ, pred.shape[1], params.get("ignore_index"))
        else:
            t2 = targ.reshape(targ.shape[0], -1)
        return self.fn(p2, t2, **params)  # type: ignore[operator, no-any-return]


CASES: dict[str, Case] = {
    "mse": Case(mse),
    "mae": Case(mae),
    "huber": Case(huber, params=({}, {"delta": 0.5}, {"delta": 2.5})),
    "smooth_l1": Case(smooth_l1, params=({}, {"beta": 0.5}, {"beta": 0.0})),
    "pseudo_huber": Case(pseudo_huber, params=({}, {"delta": 0.3})),
    "log_cosh": Case(log_cosh),
    "mape": Case(mape, targ=(0.5, 3.0), params=({}, {"epsilon": 1.0})),
    "msle": Case(msle, pred=(0.01, 5.0), targ=(0.0, 5.0)),
    "pinball": Case(pinball, params=({}, {"quantile": 0.1}, {"quantile": 0.9})),
    "poisson": Case(
        poisson,
        pred=(0.1, 4.0),
        targ=(0.0, 5.0),
        params=({}, {"full": True}, {"log_input": True}, {"log_input": True, "full": True}),
    ),
    "tweedie": Case(
        tweedie,
        pred=(0.2, 4.0),
        targ=(0.1, 4.0),
        params=(
            {},
            {"power": 0.0},
            {"power": 1.0},
            {"power": 2.0},
            {"power": 3.0},
            {"power": -0.5},
        ),
    ),
    "cosine_similarity": Case(cosine_similarity, params=({}, {"epsilon": 1e-3}), min_rank=2),
    "cross_entropy": Case(
        cross_entropy,
        pred="simplex",
        targ="index",
        min_rank=2,
        soft=True,
        params=(
            {},
            {"label_smoothing": 0.2, "class_weight": [0.5, 1.0, 2.0]},
            {"from_logits": True},
            {"from_logits": True, "label_smoothing": 0.1, "class_weight": [0.5, 1.0, 2.0]},
            {"from_logits": True, "ignore_index": 1, "class_weight": "balanced"},
            {"from_logits": True, "class_weight": "balanced", "label_smoothing": 0.3},
        ),
    ),
}

# The classification families keep their references beside this file; CASES covers them all.
from tests import reference_binary, reference_multiclass, reference_overlap  # noqa: E402

for _family in (reference_binary, reference_multiclass, reference_overlap):
    CASES.update(_family.CASES)
