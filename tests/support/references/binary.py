"""References of the binary losses (``spec.family == "binary"``) and their cases."""

from __future__ import annotations

import numpy as np

from tests.support.references import Array, Case, log_sigmoid, rowmean


def _smooth(t: Array, label_smoothing: float) -> Array:
    return t * (1 - label_smoothing) + label_smoothing / 2


def binary_cross_entropy(
    p: Array,
    t: Array,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    pos_weight: object = None,
    epsilon: float = 1e-7,
) -> Array:
    # torch binary_cross_entropy_with_logits(pos_weight) on y' / keras binary_crossentropy
    y = _smooth(t, label_smoothing)
    weight = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
    if from_logits:
        log_p, log_not_p = log_sigmoid(p), log_sigmoid(-p)
    else:
        c = np.clip(p, epsilon, 1 - epsilon)
        log_p, log_not_p = np.log(c), np.log(1 - c)
    return rowmean(-(weight * y * log_p + (1 - y) * log_not_p))


def binary_focal(
    p: Array,
    t: Array,
    gamma: float = 2.0,
    alpha: float | None = None,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    epsilon: float = 1e-7,
) -> Array:
    # optax.sigmoid_focal_loss (logits) / keras binary_focal_crossentropy (probabilities): the
    # cross-entropy of the smoothed label times the focal factor; keras clips only inside the
    # cross-entropy, the focal factor sees the probability as sent
    y = _smooth(t, label_smoothing)
    if from_logits:
        prob = np.exp(log_sigmoid(p))
        bce = -(y * log_sigmoid(p) + (1 - y) * log_sigmoid(-p))
    else:
        prob = p
        c = np.clip(p, epsilon, 1 - epsilon)
        bce = -(y * np.log(c) + (1 - y) * np.log(1 - c))
    p_t = y * prob + (1 - y) * (1 - prob)
    alpha_t = 1.0 if alpha is None else y * alpha + (1 - y) * (1 - alpha)
    return rowmean(alpha_t * (1 - p_t) ** gamma * bce)


def _hinge_labels(t: Array) -> Array:
    # keras convert_binary_labels_to_hinge: a batch of {0, 1} labels becomes 2y - 1
    return 2 * t - 1 if np.isin(t, (0, 1)).all() else t


def hinge(p: Array, t: Array) -> Array:
    return rowmean(np.maximum(0.0, 1 - _hinge_labels(t) * p))


def squared_hinge(p: Array, t: Array) -> Array:
    return rowmean(np.maximum(0.0, 1 - _hinge_labels(t) * p) ** 2)


def soft_margin(p: Array, t: Array) -> Array:
    # torch.nn.functional.soft_margin_loss: log(1 + e^(−t·ŷ)), {0, 1} labels as 2y − 1
    return rowmean(-log_sigmoid(_hinge_labels(t) * p))


def hinge_embedding(p: Array, t: Array, margin: float = 1.0) -> Array:
    # torch.nn.functional.hinge_embedding_loss(margin): ŷ for t = 1, max(0, m − ŷ) for t = −1
    return rowmean(np.where(_hinge_labels(t) > 0, p, np.maximum(0.0, margin - p)))


def multilabel_soft_margin(p: Array, t: Array, weight: object = None) -> Array:
    # torch.nn.functional.multilabel_soft_margin_loss(weight): class terms weighted, row means
    w = 1.0 if weight is None else np.asarray(weight, dtype=np.float64)
    return rowmean(-w * (t * log_sigmoid(p) + (1 - t) * log_sigmoid(-p)))


def margin_ranking(p: Array, t: Array, input2: Array, margin: float = 0.0) -> Array:
    # torch.nn.functional.margin_ranking_loss(margin): max(0, −y·(x₁ − x₂) + margin)
    return rowmean(np.maximum(0.0, -t * (p - input2) + margin))


def cosine_embedding(
    p: Array, t: Array, input2: Array, margin: float = 0.0, epsilon: float = 9.999999960041972e-13
) -> Array:
    # torch.nn.functional.cosine_embedding_loss(margin): cos with eps added to the squared norms
    # (torch's EPSILON, 1e-12 as a float32)
    cos = np.sum(p * input2, axis=1) / np.sqrt(
        (np.sum(p * p, axis=1) + epsilon) * (np.sum(input2 * input2, axis=1) + epsilon)
    )
    return np.where(t[:, 0] > 0, 1.0 - cos, np.maximum(0.0, cos - margin))


# A pos_weight or weight list has D entries, and the harness runs D = 1 and D = 3: lists are
# tested in tests/test_binary_losses.py, numbers here.
CASES: dict[str, Case] = {
    "binary_cross_entropy": Case(
        binary_cross_entropy,
        pred="unit",
        targ="binary",
        params=(
            {},
            {"label_smoothing": 0.2},
            {"pos_weight": 2.5},
            {"label_smoothing": 0.3, "pos_weight": 0.25, "epsilon": 0.03},
            {"from_logits": True},
            {"from_logits": True, "label_smoothing": 0.1, "pos_weight": 3.0},
            {"from_logits": True, "pos_weight": 0.0},
        ),
    ),
    "binary_focal": Case(
        binary_focal,
        pred="unit",
        targ="binary",
        params=(
            {},
            {"gamma": 0.0},
            {"gamma": 2.5, "alpha": 0.25},
            {"gamma": 0.5, "alpha": 0.75, "label_smoothing": 0.1},
            {"gamma": 1.5, "epsilon": 0.03, "label_smoothing": 0.2},
            {"from_logits": True},
            {"from_logits": True, "gamma": 0.0, "alpha": 0.25},
            {"from_logits": True, "gamma": 2.5, "label_smoothing": 0.2},
            {"from_logits": True, "gamma": 0.5, "alpha": 1.0, "label_smoothing": 0.05},
        ),
    ),
    "hinge": Case(hinge, targ="sign"),
    "squared_hinge": Case(squared_hinge, targ="sign"),
    "soft_margin": Case(soft_margin, targ="sign"),
    "hinge_embedding": Case(
        hinge_embedding, targ="sign", params=({}, {"margin": 0.5}, {"margin": 2.0})
    ),
    "margin_ranking": Case(
        margin_ranking,
        targ="sign",
        inputs={"input2": (-3.0, 3.0)},
        params=({}, {"margin": 0.5}, {"margin": -0.3}),
    ),
    "cosine_embedding": Case(
        cosine_embedding,
        targ="sample-sign",
        inputs={"input2": (-3.0, 3.0)},
        params=({}, {"margin": 0.2}, {"margin": -0.4, "epsilon": 0.5}),
    ),
    "multilabel_soft_margin": Case(
        multilabel_soft_margin,
        targ="binary",
        soft=True,
        params=({}, {"weight": 2.5}, {"weight": 0.0}),
    ),
}
