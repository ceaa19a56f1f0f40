"""References of the multiclass losses (``spec.family == "multiclass"``) and their cases."""

from __future__ import annotations

import numpy as np

from tests.support.references import Array, Case, class_weights, log_softmax

W3 = [0.5, 1.0, 2.0]  # class weights for the harness's (6, 3) batches
SIMILARITY = [[1.0, 0.3, 0.1], [0.3, 1.0, 0.6], [0.1, 0.6, 1.0]]
ASYMMETRIC = [[1.0, 0.8, 0.0], [0.2, 1.0, 0.5], [0.0, 0.9, 1.0]]


def cross_entropy(
    p: Array,
    t: Array,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    class_weight: object = None,
    ignore_index: object = None,
    epsilon: float = 1e-7,
    normalize: bool = False,
) -> Array:
    # torch.nn.functional.cross_entropy (logits) / keras categorical_crossentropy (probabilities);
    # y' = (1 − s) y + s/C on every sample but the ignored ones, which are masked
    cw = class_weights(t, class_weight)
    y = _smooth(t, label_smoothing, ignore_index)
    logp = log_softmax(p) if from_logits else np.log(_clipped(p, epsilon))
    return np.asarray(-(cw * y * logp).sum(axis=1))


def _smooth(t: Array, s: float, ignore_index: object = None) -> Array:
    # LOSSES.md: y' = (1 − s) y + s/C whatever the row sums to; an ignored sample is masked (all
    # zero), not smoothed. Ignored samples arrive as all-zero one-hot rows, and only they: soft
    # targets are not run with ignore_index, and a class index is never an all-zero row.
    y = (1 - s) * t + s / t.shape[1]
    if ignore_index is not None:
        y[t.sum(axis=1) == 0] = 0.0
    return np.asarray(y)


def _clipped(p: Array, epsilon: float) -> Array:
    # keras: rows renormalised, then clipped to [ε, 1 − ε]
    return np.asarray(np.clip(p / p.sum(axis=1, keepdims=True), epsilon, 1 - epsilon))


def focal(
    p: Array,
    t: Array,
    gamma: float = 2.0,
    alpha: float | None = None,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    class_weight: object = None,
    ignore_index: object = None,
    epsilon: float = 1e-7,
    normalize: bool = False,
) -> Array:
    # keras.losses.categorical_focal_crossentropy; logits through an unclipped log-softmax
    cw = class_weights(t, class_weight)
    y = _smooth(t, label_smoothing, ignore_index)
    if from_logits:
        logp = log_softmax(p)
        prob = np.exp(logp)
    else:
        prob = _clipped(p, epsilon)
        logp = np.log(prob)
    a = 1.0 if alpha is None else alpha
    return np.asarray(-(a * cw * y * (1 - prob) ** gamma * logp).sum(axis=1))


def generalized_cross_entropy(
    p: Array,
    t: Array,
    q: float = 0.7,
    from_logits: bool = False,
    class_weight: object = None,
    ignore_index: object = None,
    epsilon: float = 1e-7,
    normalize: bool = False,
) -> Array:
    # keras.losses.categorical_generalized_cross_entropy: (1 - p_y^q) / q on the probabilities as
    # given (no renormalisation); lossd floors them at ε, where p^q has an infinite slope
    cw = class_weights(t, class_weight)
    prob = np.exp(log_softmax(p)) if from_logits else np.maximum(p, epsilon)
    return np.asarray((cw * t * (1 - prob**q) / q).sum(axis=1))


def poly1_cross_entropy(
    p: Array,
    t: Array,
    epsilon_poly: float = 2.0,
    from_logits: bool = True,
    label_smoothing: float = 0.0,
    epsilon: float = 1e-7,
    normalize: bool = False,
) -> Array:
    # optax.poly_loss_cross_entropy: CE + ε Σ_c y'_c (1 − p_c), on the smoothed labels
    # y' = (1 − s) y + s/C (no ignore_index)
    y = _smooth(t, label_smoothing)
    if from_logits:
        logp = log_softmax(p)
        prob = np.exp(logp)
    else:
        prob = _clipped(p, epsilon)
        logp = np.log(prob)
    return np.asarray(-(y * logp).sum(axis=1) + epsilon_poly * (y * (1 - prob)).sum(axis=1))


def _similarity(c: int, similarity: object, ordinal_base: float | None) -> Array:
    if similarity is not None:
        return np.asarray(similarity, dtype=np.float64)
    if ordinal_base is not None:  # Kobs et al.: w[j, i] = r ** |i - j|
        return np.array([[ordinal_base ** abs(i - j) for j in range(c)] for i in range(c)])
    return np.eye(c)


def simloss(
    p: Array,
    t: Array,
    similarity: object = None,
    ordinal_base: float | None = None,
    from_logits: bool = False,
    epsilon: float = 1e-8,
    normalize: bool = False,
) -> Array:
    # Kobs et al. 2020: -log(Σ_c S[y, c] p_c + ε), probabilities as given; soft rows Σ_k y_k (…)
    s = _similarity(p.shape[1], similarity, ordinal_base)
    prob = np.exp(log_softmax(p)) if from_logits else p
    return np.asarray(-(t * np.log(prob @ s.T + epsilon)).sum(axis=1))


def categorical_hinge(p: Array, t: Array) -> Array:
    # keras.losses.categorical_hinge
    pos = (t * p).sum(axis=1)
    neg = ((1 - t) * p).max(axis=1)
    return np.asarray(np.maximum(neg - pos + 1, 0.0))


def multi_margin(
    pred: Array, targ: Array, p: int = 1, margin: float = 1.0, class_weight: object = None
) -> Array:
    # torch.nn.functional.multi_margin_loss(p, margin, weight), reduction="none"; soft rows are
    # the target-weighted sum over classes k of the loss with y = k
    n, c = pred.shape
    cw = class_weights(targ, class_weight)
    out = np.zeros(n)
    for i in range(n):
        for k in range(c):
            for j in range(c):
                if j != k:
                    z = max(0.0, margin - pred[i, k] + pred[i, j])
                    out[i] += targ[i, k] * cw[k] * z**p / c
    return out


def sparsemax_of(z: Array) -> Array:
    """sparsemax(z) of one row: the Euclidean projection onto the simplex, by sorting."""
    s = np.sort(z)[::-1]
    cumulative = np.cumsum(s)
    k = np.arange(1, len(z) + 1)
    size = int(np.max(k[1 + k * s > cumulative]))
    tau = (cumulative[size - 1] - 1) / size
    return np.asarray(np.maximum(z - tau, 0.0))


def sparsemax(p: Array, t: Array) -> Array:
    # optax.multiclass_sparsemax_loss: Σ_j q_j (z_j − z_y) over the support + (1 − Σ q²)/2
    out = np.zeros(p.shape[0])
    for i in range(p.shape[0]):
        q, y = sparsemax_of(p[i]), int(np.argmax(t[i]))
        out[i] = np.sum(np.where(q > 0, q * (p[i] - p[i, y]), 0.0)) + 0.5 * (1 - np.sum(q * q))
    return out


def additive_margin_softmax(p: Array, t: Array, scale: float = 30.0, margin: float = 0.35) -> Array:
    # torch.nn.functional.cross_entropy(s·(cos − m·onehot(y)), y): CosFace / AM-softmax
    return np.asarray(-(t * log_softmax(scale * (p - margin * t))).sum(axis=1))


def additive_angular_margin_softmax(
    p: Array, t: Array, scale: float = 64.0, margin: float = 0.5
) -> Array:
    # insightface ArcFace (easy_margin false): the target cosine c becomes cos(arccos c + m)
    # where c > cos(π − m), else c − m·sin m; then cross-entropy of s times the cosines
    c = (p * t).sum(axis=1)
    arc = np.cos(np.arccos(c) + margin)
    phi = np.where(c > np.cos(np.pi - margin), arc, c - margin * np.sin(margin))
    logits = scale * (p * (1 - t) + phi[:, None] * t)
    return np.asarray(-(t * log_softmax(logits)).sum(axis=1))


def labels_of(row: Array) -> list[int]:
    """torch's multilabel target row: the class indices before the first −1 (repeats kept)."""
    listed: list[int] = []
    for v in row:
        if v < 0:
            break
        listed.append(int(v))
    return listed


def multilabel_margin(p: Array, t: Array) -> Array:
    # torch.nn.functional.multilabel_margin_loss, reduction="none": each listed class j (twice
    # if listed twice) against every class k that is not listed, hinge with margin 1, over C
    n, c = p.shape
    out = np.zeros(n)
    for i in range(n):
        listed = labels_of(t[i])
        for j in listed:
            for k in range(c):
                if k not in listed:
                    out[i] += max(0.0, 1.0 - p[i, j] + p[i, k]) / c
    return out


CASES: dict[str, Case] = {
    "cross_entropy": Case(
        cross_entropy,
        pred="simplex",
        targ="index",
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
    "focal": Case(
        focal,
        pred="simplex",
        targ="index",
        soft=True,
        params=(
            {},
            {"gamma": 0.0},
            {"gamma": 0.5, "alpha": 0.25, "label_smoothing": 0.2, "class_weight": W3},
            {"epsilon": 0.1, "gamma": 3.0},
            {"from_logits": True},
            {"from_logits": True, "gamma": 0.5, "alpha": 2.0},
            {"from_logits": True, "label_smoothing": 0.1, "class_weight": "balanced"},
            {"from_logits": True, "ignore_index": 1, "class_weight": W3, "gamma": 1.0},
        ),
    ),
    "generalized_cross_entropy": Case(
        generalized_cross_entropy,
        pred="simplex",
        targ="index",
        soft=True,
        params=(
            {},
            {"q": 1.0},
            {"q": 0.3, "class_weight": W3},
            {"epsilon": 0.1},
            {"from_logits": True},
            {"from_logits": True, "q": 0.5, "class_weight": "balanced"},
            {"from_logits": True, "ignore_index": 1},
        ),
    ),
    "poly1_cross_entropy": Case(
        poly1_cross_entropy,
        pred="simplex",
        targ="index",
        soft=True,
        params=(
            {},
            {"from_logits": True},
            {"from_logits": True, "epsilon_poly": -1.0, "label_smoothing": 0.2},
            {"from_logits": False},
            {"from_logits": False, "epsilon_poly": 1.0, "label_smoothing": 0.1},
            {"from_logits": False, "epsilon": 0.1},
        ),
    ),
    "simloss": Case(
        simloss,
        pred="simplex",
        targ="index",
        soft=True,
        params=(
            {"ordinal_base": 0.5},
            {"ordinal_base": 0.0},
            {"similarity": SIMILARITY},
            {"from_logits": True, "ordinal_base": 0.7},
            {"from_logits": True, "similarity": ASYMMETRIC, "epsilon": 1e-3},
        ),
    ),
    "categorical_hinge": Case(categorical_hinge, pred=(-3.0, 3.0), targ="index", soft=True),
    "sparsemax": Case(sparsemax, pred=(-1.0, 1.0), targ="index"),
    "additive_margin_softmax": Case(
        additive_margin_softmax,
        pred=(-1.0, 1.0),
        targ="index",
        params=({}, {"scale": 10.0, "margin": 0.2}, {"scale": 1.0, "margin": 0.0}),
    ),
    # cosines near 0, as a high-dimensional embedding has them with most class centres: at
    # s = 64 a class whose softmax nears 1 leaves torch's double backward (the library
    # reference) s²·ε off in its Hessian, 2e-12; tests/test_multiclass_losses.py checks such
    # rows against mpmath. m = 1.6 puts cos(π − m) = 0.03 inside: both branches are drawn.
    "additive_angular_margin_softmax": Case(
        additive_angular_margin_softmax,
        pred=(-0.1, 0.1),
        targ="index",
        params=({}, {"scale": 16.0, "margin": 0.2}, {"scale": 8.0, "margin": 1.6}),
    ),
    "multilabel_margin": Case(multilabel_margin, pred=(-3.0, 3.0), targ="labels"),
    "multi_margin": Case(
        multi_margin,
        pred=(-3.0, 3.0),
        targ="index",
        soft=True,
        params=(
            {},
            {"p": 2},
            {"margin": 0.5, "class_weight": W3},
            {"p": 2, "margin": 2.0, "class_weight": "balanced"},
        ),
    ),
}
