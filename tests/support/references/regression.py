"""References of the regression losses (``spec.family == "regression"``) and their cases."""

from __future__ import annotations

import math

import numpy as np

from tests.support.references import Array, Case, rowmean


def mse(p: Array, t: Array) -> Array:
    return rowmean((p - t) ** 2)


def mae(p: Array, t: Array) -> Array:
    return rowmean(np.abs(p - t))


def huber(p: Array, t: Array, delta: float = 1.0) -> Array:
    r = np.abs(p - t)
    return rowmean(np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta)))


def smooth_l1(p: Array, t: Array, beta: float = 1.0) -> Array:
    r = np.abs(p - t)
    if beta == 0:
        return rowmean(r)
    return rowmean(np.where(r < beta, 0.5 * r**2 / beta, r - 0.5 * beta))


def pseudo_huber(p: Array, t: Array, delta: float = 1.0) -> Array:
    r = p - t
    return rowmean(delta**2 * (np.sqrt(1 + (r / delta) ** 2) - 1))


def log_cosh(p: Array, t: Array) -> Array:
    # keras.losses.log_cosh: x + softplus(-2x) - log 2
    x = p - t
    return rowmean(x + np.logaddexp(0.0, -2.0 * x) - math.log(2.0))


def mape(p: Array, t: Array, epsilon: float = 1e-7) -> Array:
    return rowmean(100.0 * np.abs(t - p) / np.maximum(np.abs(t), epsilon))


def msle(p: Array, t: Array, epsilon: float = 1e-7) -> Array:
    first = np.log1p(np.maximum(p, epsilon))
    second = np.log1p(np.maximum(t, epsilon))
    return rowmean((first - second) ** 2)


def pinball(p: Array, t: Array, quantile: float = 0.5) -> Array:
    return rowmean(quantile * np.maximum(t - p, 0) + (1 - quantile) * np.maximum(p - t, 0))


def poisson(
    p: Array, t: Array, log_input: bool = False, full: bool = False, epsilon: float = 1e-7
) -> Array:
    loss = np.exp(p) - t * p if log_input else p - t * np.log(p + epsilon)
    if full:
        safe = np.where(t > 1, t, 2.0)
        stirling = safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe)
        loss = loss + np.where(t > 1, stirling, 0.0)
    return rowmean(loss)


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
    return rowmean(dev)


def gamma(p: Array, t: Array) -> Array:
    # XGBoost reg:gamma: gamma-nloglik y/μ + log μ at μ = e^ŷ
    return rowmean(t * np.exp(-p) + p)


def cosine_similarity(p: Array, t: Array, epsilon: float = 1e-7) -> Array:
    u = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), epsilon)
    v = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), epsilon)
    return np.asarray(-(u * v).sum(axis=1))


def gaussian_nll(p: Array, t: Array, var: Array, full: bool = False, eps: float = 1e-6) -> Array:
    # torch.nn.functional.gaussian_nll_loss(full, eps): var clamped at eps; (N, 1) var rows
    # are one variance per sample, broadcast over its outputs
    v = np.maximum(var, eps)
    loss = 0.5 * (np.log(v) + (p - t) ** 2 / v)
    return rowmean(loss + (0.5 * math.log(2 * math.pi) if full else 0.0))


def triplet_margin(
    a: Array,
    t: None,
    positive: Array,
    negative: Array,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
) -> Array:
    # torch.nn.functional.triplet_margin_loss: d(x, y) = ‖x − y + eps‖_p (pairwise_distance)
    def distance(x: Array, y: Array) -> Array:
        return np.asarray(np.sum(np.abs(x - y + eps) ** p, axis=1) ** (1 / p))

    far = distance(a, negative)
    if swap:
        far = np.minimum(far, distance(positive, negative))
    return np.maximum(0.0, margin + distance(a, positive) - far)


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
    "gamma": Case(gamma, pred=(-3.0, 3.0), targ=(0.1, 5.0)),
    "cosine_similarity": Case(cosine_similarity, params=({}, {"epsilon": 1e-3})),
    # variances above eps: below it the gradient passes torch's clamp, which finite
    # differences of the clamped formula cannot see (tests/test_differential.py checks it)
    "gaussian_nll": Case(
        gaussian_nll,
        inputs={"var": (0.1, 3.0)},
        params=({}, {"full": True}, {"eps": 0.05}, {"full": True, "eps": 1e-3}),
    ),
    "triplet_margin": Case(
        triplet_margin,
        targ=None,
        inputs={"positive": (-3.0, 3.0), "negative": (-3.0, 3.0)},
        params=(
            {},
            {"margin": 2.5},
            {"swap": True},
            {"p": 1.0},
            {"p": 3.0, "margin": 4.0},
            {"p": 1.5, "eps": 0.0, "swap": True},
        ),
    ),
}
