"""Exact references for the edge suite (``tests/test_edges.py``): every loss in mpmath at 400
significant digits, with exact first and second derivatives.

Terms, each defined once:

jet
    ``Jet(v, d, h)``: a number with its first and second derivative in one seeded input.
    Arithmetic and the elementary functions below carry them along exactly (a truncated Taylor
    series), so a loss written once over jets gives l_i, ∂l_i/∂x_j and ∂²l_i/∂x_j² with no
    finite differences. 400 digits hold 1e300 + log 2 exactly enough, and mpmath's exponent is
    unbounded, so exp(−2e300) and (1e300)² are numbers, not 0 and inf: the float64 rounding of
    an exact result says whether the true answer is representable at all.
kink
    Where a loss is not differentiable (a clip boundary, max at a tie, |x| at 0), the jet takes
    the branch of smallest-magnitude slope, as SPEC section 4 asks: a clipped or constant branch
    at a tie, slope 0 for |x| and max(0, x) at 0.
exact row function
    ``ROWS[name](xs, t, params) -> Jet``: the per-sample loss of LOSSES.md of one row, ``xs`` the
    predictions as jets, ``t`` the targets as exact numbers (one-hot rows for class indices,
    hinge labels already in {−1, 1}; empty for a loss that takes none). A loss's extra inputs
    are jets too, the row's in ``params["_inputs"]`` by name: the jets of one array at a time
    are seeded (``evaluate_exact``'s ``wrt``), so the same row function gives the derivatives in
    the predictions or in an extra input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import mpmath
import numpy as np
from mpmath import mp, mpf

from tests.support.references import CASES, Array, one_hot

DIGITS = 400
CLASS_WEIGHTED = ("cross_entropy", "focal", "generalized_cross_entropy", "multi_margin")
# the losses of labels in {−1, 1}, where a batch of {0, 1} labels means 2y − 1
SIGN_LABELS = ("hinge", "squared_hinge", "soft_margin", "hinge_embedding")
# the losses of one label per sample: (N,) targets next to (N, D) predictions are no indices
PER_SAMPLE_LABELS = ("cosine_embedding",)
Num = Any  # an mpf


class Jet:
    """A value with its first and second derivative in one seeded input (module docstring)."""

    __slots__ = ("d", "h", "v")

    def __init__(self, v: Any, d: Any = 0, h: Any = 0) -> None:
        self.v, self.d, self.h = mpf(v), mpf(d), mpf(h)

    @property
    def constant(self) -> bool:
        return not self.d and not self.h

    def __add__(self, o: Any) -> Jet:
        o = lift(o)
        return Jet(self.v + o.v, self.d + o.d, self.h + o.h)

    __radd__ = __add__

    def __neg__(self) -> Jet:
        return Jet(-self.v, -self.d, -self.h)

    def __sub__(self, o: Any) -> Jet:
        return self + (-lift(o))

    def __rsub__(self, o: Any) -> Jet:
        return lift(o) + (-self)

    def __mul__(self, o: Any) -> Jet:
        o = lift(o)
        return Jet(
            self.v * o.v,
            self.v * o.d + self.d * o.v,
            self.v * o.h + 2 * self.d * o.d + self.h * o.v,
        )

    __rmul__ = __mul__

    def __truediv__(self, o: Any) -> Jet:
        o = lift(o)
        return self * chain(o, lambda v: 1 / v, lambda v: -1 / v**2, lambda v: 2 / v**3)

    def __rtruediv__(self, o: Any) -> Jet:
        return lift(o) / self

    def __pow__(self, q: Any) -> Jet:
        """x**q for a constant exponent q (x > 0, or x = 0 with q ≥ 2, or q a small integer)."""
        q = mpf(q)
        if q == 0:
            return Jet(1)
        return chain(
            self,
            lambda v: mpmath.power(v, q),
            lambda v: q * mpmath.power(v, q - 1),
            lambda v: q * (q - 1) * mpmath.power(v, q - 2) if q != 1 else mpf(0),
        )


def lift(x: Any) -> Jet:
    return x if isinstance(x, Jet) else Jet(x)


def chain(
    a: Jet, f0: Callable[[Num], Num], f1: Callable[[Num], Num], f2: Callable[[Num], Num]
) -> Jet:
    """g(a) for g with value f0, slope f1 and curvature f2 at a.v."""
    if a.constant:
        return Jet(f0(a.v))
    s = f1(a.v)
    return Jet(f0(a.v), s * a.d, s * a.h + (f2(a.v) * a.d**2 if a.d else 0))


@lru_cache(maxsize=4096)
def _exp(v: Num) -> Num:
    """mpmath's exp, remembered: exp(±1e300) costs milliseconds at this precision, and the
    jets of one row ask for the same few values many times."""
    return mpmath.exp(v)


def exp(a: Jet) -> Jet:
    return chain(a, _exp, _exp, _exp)


def log(a: Jet) -> Jet:
    return chain(a, mpmath.log, lambda v: 1 / v, lambda v: -1 / v**2)


def sqrt(a: Jet) -> Jet:
    return chain(a, mpmath.sqrt, lambda v: 1 / (2 * mpmath.sqrt(v)), lambda v: -1 / (4 * v**1.5))


@lru_cache(maxsize=4096)
def sigmoid_pair(v: Num) -> tuple[Num, Num]:
    """σ(v) and σ(−v) = 1 − σ(v), each computed directly (no cancellation)."""
    return 1 / (1 + _exp(-v)), 1 / (1 + _exp(v))


def sigmoid(a: Jet) -> Jet:
    def f1(v: Num) -> Num:
        s, c = sigmoid_pair(v)
        return s * c

    def f2(v: Num) -> Num:
        s, c = sigmoid_pair(v)
        return s * c * (c - s)

    return chain(a, lambda v: sigmoid_pair(v)[0], f1, f2)


def log_sigmoid(a: Jet) -> Jet:
    """log σ(a) = −log(1 + e^−a)."""

    def f2(v: Num) -> Num:
        s, c = sigmoid_pair(v)
        return -s * c

    return chain(a, lambda v: -mpmath.log1p(_exp(-v)), lambda v: sigmoid_pair(v)[1], f2)


def log_cosh(a: Jet) -> Jet:
    return chain(
        a, lambda v: mpmath.log(mpmath.cosh(v)), mpmath.tanh, lambda v: mpmath.sech(v) ** 2
    )


def absolute(a: Jet) -> Jet:
    if a.v > 0:
        return a
    return -a if a.v < 0 else Jet(0)


def relu(a: Jet) -> Jet:
    return a if a.v > 0 else Jet(0)


def maximum(a: Jet, c: Any) -> Jet:
    """max(a, c) for a constant c: the constant at a tie."""
    return a if a.v > c else Jet(c)


def minimum(a: Jet, c: Any) -> Jet:
    return a if a.v < c else Jet(c)


def clip(a: Jet, lo: Any, hi: Any) -> Jet:
    return maximum(minimum(a, hi), lo)


def total(xs: Sequence[Jet]) -> Jet:
    out = Jet(0)
    for x in xs:
        out = out + x
    return out


def mean(xs: Sequence[Jet]) -> Jet:
    return total(xs) / len(xs)


def log_softmax(xs: Sequence[Jet]) -> list[Jet]:
    top = max(x.v for x in xs)
    lse = log(total([exp(x - top) for x in xs])) + top
    return [x - lse for x in xs]


def straight_through_floor(a: Jet, floor: Num) -> Jet:
    """max(a, floor) whose derivatives are a's even below the floor: torch's clamp of a copy
    under ``no_grad`` (``gaussian_nll_loss``'s variances)."""
    return a if a.v >= floor else Jet(floor, a.d, a.h)


def _power_of_absolute(v: Jet, p: Num) -> Jet:
    """|v|^p with its derivatives where v = 0 too: v² for p = 2 (smooth: curvature 2); for
    p > 2 slope and curvature 0; for 1 < p < 2 slope 0 and an infinite curvature (a Hessian
    past any range); for p ≤ 1 the kink's slope 0 (torch's gradient)."""
    if p == 2:
        return v * v
    if v.v == 0 and 1 < p < 2 and not v.constant:
        return Jet(0, 0, mpmath.inf)
    return absolute(v) ** p


def pnorm(vs: Sequence[Jet], p: Num) -> Jet:
    """‖v‖_p = (Σ|v_j|^p)^{1/p}; 0 with slope 0 at v = 0 (torch's gradient there)."""
    s = total([_power_of_absolute(v, mpf(p)) for v in vs])
    if s.v == 0:
        return Jet(0)
    return s ** (1 / mpf(p))


def even_minimum(a: Jet, b: Jet) -> Jet:
    """min(a, b) of two jets; at a tie the mean of their derivatives, as torch's ``minimum``
    shares the gradient half and half."""
    if a.v == b.v:
        return (a + b) * mpf(0.5)
    return a if a.v < b.v else b


# --- the losses, one exact row function each ----------------------------------------------------

Row = Callable[[list[Jet], list[Num], dict[str, Any]], Jet]


def _elementwise(term: Callable[[Jet, Num, dict[str, Any]], Jet]) -> Row:
    return lambda xs, t, prm: mean([term(x, y, prm) for x, y in zip(xs, t, strict=True)])


def _huber(x: Jet, y: Num, prm: dict[str, Any]) -> Jet:
    d = mpf(prm.get("delta", 1.0))
    r = x - y
    a = absolute(r)
    return r * r * 0.5 if a.v <= d else d * (a - d / 2)


def _smooth_l1(x: Jet, y: Num, prm: dict[str, Any]) -> Jet:
    b = mpf(prm.get("beta", 1.0))
    a = absolute(x - y)
    if b == 0:
        return a
    return a * a * 0.5 / b if a.v < b else a - b / 2


def _pseudo_huber(x: Jet, y: Num, prm: dict[str, Any]) -> Jet:
    d = mpf(prm.get("delta", 1.0))
    r = (x - y) / d
    return d**2 * (sqrt(1 + r * r) - 1)


def _msle(x: Jet, y: Num, prm: dict[str, Any]) -> Jet:
    e = mpf(prm.get("epsilon", 1e-7))
    diff = log(maximum(x, e) + 1) - mpmath.log(max(y, e) + 1)
    return diff * diff


def _poisson(x: Jet, y: Num, prm: dict[str, Any]) -> Jet:
    if prm.get("log_input", False):
        out = exp(x) - y * x
    else:
        out = x - y * log(x + mpf(prm.get("epsilon", 1e-7)))
    if prm.get("full", False) and y > 1:
        out = out + (y * mpmath.log(y) - y + mpmath.log(2 * mpmath.pi * y) / 2)
    return out


def _tweedie(x: Jet, y: Num, prm: dict[str, Any]) -> Jet:
    pw = mpf(prm.get("power", 1.5))
    if pw == 0:
        return (x - y) ** 2
    if pw == 1:
        return 2 * ((y * (mpmath.log(y) - log(x)) if y > 0 else Jet(0)) - y + x)
    if pw == 2:
        return 2 * (log(x) - mpmath.log(y) + y / x - 1)
    first = mpmath.power(max(y, 0), 2 - pw) / ((1 - pw) * (2 - pw))
    return 2 * (first - y * x ** (1 - pw) / (1 - pw) + x ** (2 - pw) / (2 - pw))


def _cosine(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    e = mpf(prm.get("epsilon", 1e-7))
    nx = maximum(sqrt(total([x * x for x in xs])), e)
    nt = max(mpmath.sqrt(mpmath.fsum(y * y for y in t)), e)
    return -total([x * y for x, y in zip(xs, t, strict=True)]) / (nx * nt)


def _gaussian_nll(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    var = prm["_inputs"]["var"]
    eps = mpf(prm.get("eps", 1e-6))
    constant = mpmath.log(2 * mpmath.pi) / 2 if prm.get("full", False) else 0
    terms = []
    for j, (x, y) in enumerate(zip(xs, t, strict=True)):
        v = straight_through_floor(var[j if len(var) > 1 else 0], eps)
        r = x - y
        terms.append((log(v) + r * r / v) * mpf(0.5) + constant)
    return mean(terms)


def _triplet_margin(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    positive, negative = prm["_inputs"]["positive"], prm["_inputs"]["negative"]
    p, eps = mpf(prm.get("p", 2.0)), mpf(prm.get("eps", 1e-6))

    def distance(a: list[Jet], b: list[Jet]) -> Jet:
        return pnorm([u - v + eps for u, v in zip(a, b, strict=True)], p)

    far = distance(xs, negative)
    if prm.get("swap", False):
        far = even_minimum(far, distance(positive, negative))
    return relu(mpf(prm.get("margin", 1.0)) + distance(xs, positive) - far)


def _cosine_embedding(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    second = prm["_inputs"]["input2"]
    e = mpf(prm.get("epsilon", 9.999999960041972e-13))  # torch's EPSILON, a float32 1e-12
    dot = total([a * b for a, b in zip(xs, second, strict=True)])
    n1 = sqrt(total([a * a for a in xs]) + e)
    n2 = sqrt(total([b * b for b in second]) + e)
    cos = dot / (n1 * n2)
    return 1 - cos if t[0] > 0 else relu(cos - mpf(prm.get("margin", 0.0)))


def _margin_ranking(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    second, m = prm["_inputs"]["input2"], mpf(prm.get("margin", 0.0))
    return mean([relu(-y * (a - b) + m) for a, b, y in zip(xs, second, t, strict=True)])


def _smoothed_binary(y: Num, prm: dict[str, Any]) -> Num:
    s = mpf(prm.get("label_smoothing", 0.0))
    return y * (1 - s) + s / 2


def _bce(x: Jet, y: Num, prm: dict[str, Any]) -> Jet:
    y = _smoothed_binary(y, prm)
    pw = prm.get("pos_weight")
    weight = mpf(1) if pw is None else mpf(pw)
    if prm.get("from_logits", False):
        return -(weight * y * log_sigmoid(x) + (1 - y) * log_sigmoid(-x))
    e = mpf(prm.get("epsilon", 1e-7))
    c = clip(x, e, 1 - e)
    return -(weight * y * log(c) + (1 - y) * log(1 - c))


def _binary_focal(x: Jet, y: Num, prm: dict[str, Any]) -> Jet:
    y = _smoothed_binary(y, prm)
    gamma, alpha = mpf(prm.get("gamma", 2.0)), prm.get("alpha")
    if prm.get("from_logits", False):
        ce = -(y * log_sigmoid(x) + (1 - y) * log_sigmoid(-x))
        one_minus_p_t = y * sigmoid(-x) + (1 - y) * sigmoid(x)  # optax, exactly
    else:
        e = mpf(prm.get("epsilon", 1e-7))
        c = clip(x, e, 1 - e)
        ce = -(y * log(c) + (1 - y) * log(1 - c))
        one_minus_p_t = 1 - (y * x + (1 - y) * (1 - x))  # keras: the probability as sent
    out = ce * one_minus_p_t**gamma
    if alpha is not None:
        out = (y * alpha + (1 - y) * (1 - mpf(alpha))) * out
    return out


def _multilabel_soft_margin(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    w = prm.get("weight")
    ws = w if isinstance(w, list) else [1.0 if w is None else w] * len(xs)
    terms = [
        -mpf(c) * (y * log_sigmoid(x) + (1 - y) * log_sigmoid(-x))
        for c, x, y in zip(ws, xs, t, strict=True)
    ]
    return mean(terms)


def _smoothed_rows(t: list[Num], prm: dict[str, Any], ignored: bool) -> list[Num]:
    if ignored:
        return [mpf(0)] * len(t)
    s = mpf(prm.get("label_smoothing", 0.0))
    return [(1 - s) * y + s / len(t) for y in t]


def _probabilities(xs: list[Jet], prm: dict[str, Any]) -> tuple[list[Jet], list[Jet]]:
    """(p, log p) of a row: from logits by log-softmax; from probabilities renormalised and
    clipped to [ε, 1 − ε] as Keras does."""
    if prm.get("from_logits", False):
        logp = log_softmax(xs)
        return [exp(v) for v in logp], logp
    e = mpf(prm.get("epsilon", 1e-7))
    s = total(xs)
    p = [clip(x / s, e, 1 - e) for x in xs]
    return p, [log(v) for v in p]


def _cross_entropy(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    y = _smoothed_rows(t, prm, prm.get("_ignored", False))
    _, logp = _probabilities(xs, prm)
    return -total([c * v for c, v in zip(y, logp, strict=True) if c])


def _focal(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    y = _smoothed_rows(t, prm, prm.get("_ignored", False))
    gamma = mpf(prm.get("gamma", 2.0))
    a = mpf(1.0 if prm.get("alpha") is None else prm["alpha"])
    p, logp = _probabilities(xs, prm)
    terms = [c * (1 - q) ** gamma * lq for c, q, lq in zip(y, p, logp, strict=True) if c]
    return -a * total(terms)


def _gce(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    q = mpf(prm.get("q", 0.7))
    if prm.get("from_logits", False):
        p = [exp(v) for v in log_softmax(xs)]
    else:
        p = [maximum(x, mpf(prm.get("epsilon", 1e-7))) for x in xs]
    return total([y * (1 - v**q) / q for y, v in zip(t, p, strict=True) if y])


def _poly1(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    prm = {"from_logits": True, **prm}
    y = _smoothed_rows(t, prm, False)
    p, logp = _probabilities(xs, prm)
    ep = mpf(prm.get("epsilon_poly", 2.0))
    ce = -total([c * v for c, v in zip(y, logp, strict=True) if c])
    return ce + ep * total([c * (1 - v) for c, v in zip(y, p, strict=True) if c])


def _simloss(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    c = len(xs)
    if prm.get("similarity") is not None:
        sim = [[mpf(v) for v in row] for row in prm["similarity"]]
    else:
        r = mpf(prm["ordinal_base"])
        sim = [[r ** abs(i - j) for j in range(c)] for i in range(c)]
    p = [exp(v) for v in log_softmax(xs)] if prm.get("from_logits", False) else xs
    e = mpf(prm.get("epsilon", 1e-8))
    return total(
        [-y * log(total([sim[k][j] * p[j] for j in range(c)]) + e) for k, y in enumerate(t) if y]
    )


def _categorical_hinge(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    negatives = [(1 - y) * x for x, y in zip(xs, t, strict=True)]
    neg = max(negatives, key=lambda j: j.v)
    return relu(neg - total([y * x for x, y in zip(xs, t, strict=True)]) + 1)


def _multi_margin(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    p, m, c = prm.get("p", 1), mpf(prm.get("margin", 1.0)), len(xs)
    out = Jet(0)
    for k, y in enumerate(t):
        if y:
            for j in range(c):
                if j != k:
                    out = out + y * relu(m - xs[k] + xs[j]) ** p / c
    return out


def _sparsemax(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    y = max(range(len(t)), key=lambda j: t[j])
    order = sorted(range(len(xs)), key=lambda j: -xs[j].v)
    support: list[int] = []
    running = mpf(0)
    for k, j in enumerate(order, start=1):
        running += xs[j].v
        if 1 + k * xs[j].v > running:
            support.append(j)
    tau = (total([xs[j] for j in support]) - 1) / len(support)
    p = {j: xs[j] - tau for j in support}
    cross = total([p[j] * (xs[j] - xs[y]) for j in support])
    return cross + (1 - total([p[j] * p[j] for j in support])) / 2


def _margin_softmax(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    y = max(range(len(t)), key=lambda j: t[j])
    if prm["_angular"]:
        s, m = mpf(prm.get("scale", 64.0)), mpf(prm.get("margin", 0.5))
        c = xs[y]
        if c.v <= mpmath.cos(mpmath.pi - m):
            target = c - m * mpmath.sin(m)
        elif c.v == 1:
            # the slope of cos(arccos c + m) is infinite at c = 1: so are the loss's first and
            # second derivative in c (−s(1 − p_y)φ', and φ'' outgrows φ'²), the value is finite
            if not c.constant:
                held = _margin_softmax([*xs[:y], Jet(1), *xs[y + 1 :]], t, prm)
                return Jet(held.v, -mpmath.inf, -mpmath.inf)
            target = Jet(mpmath.cos(m))
        else:
            target = c * mpmath.cos(m) - sqrt((1 - c) * (1 + c)) * mpmath.sin(m)
    else:
        s, m = mpf(prm.get("scale", 30.0)), mpf(prm.get("margin", 0.35))
        target = xs[y] - m
    logits = [s * (target if j == y else x) for j, x in enumerate(xs)]
    return -log_softmax(logits)[y]


def _multilabel_margin(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    listed: list[int] = []
    for y in t:
        if y < 0:
            break
        listed.append(int(y))
    out = Jet(0)
    for j in listed:
        for c in range(len(xs)):
            if c not in listed:
                out = out + relu(1 - xs[j] + xs[c]) / len(xs)
    return out


def _kl(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    if prm.get("log_target", False):
        t = [mpmath.exp(y) for y in t]
    if prm.get("from_logits", False) or prm.get("log_input", False):
        logq = log_softmax(xs) if prm.get("from_logits", False) else xs
        return total([y * (mpmath.log(y) - lq) for y, lq in zip(t, logq, strict=True) if y > 0])
    e = mpf(prm.get("epsilon", 1e-7))
    yc = [min(max(y, e), 1) for y in t]
    return total([y * (mpmath.log(y) - log(clip(x, e, 1))) for y, x in zip(yc, xs, strict=True)])


def _generalized_kl(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    terms = [
        exp(x) - y + (y * (mpmath.log(y) - x) if y > 0 else 0) for x, y in zip(xs, t, strict=True)
    ]
    return total(terms)


def _js(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    mass = mpmath.fsum(t)
    pt = [y / mass for y in t]
    if prm.get("from_logits", False):
        q = [exp(v) for v in log_softmax(xs)]
    else:
        s = total(xs)
        q = [x / s for x in xs]
    m = [(a + b) / 2 for a, b in zip(pt, q, strict=True)]
    first = total([a * (mpmath.log(a) - log(c)) for a, c in zip(pt, m, strict=True) if a > 0])
    second = total([_q_log_q_over_m(b, c, a) for a, b, c in zip(pt, q, m, strict=True)])
    return (first + second) / 2


def _q_log_q_over_m(q: Jet, m: Jet, p: Num) -> Jet:
    """q·log(q/m) with m = (p + q)/2: 0 at q = 0, where its slope is −∞ if p > 0 (the exact
    derivative is not a number: only a 422 can answer it) and log 2 if p = 0 (q·log 2)."""
    if q.v > 0:
        return q * (log(q) - log(m))
    if p == 0:
        return q * mpmath.log(2)
    return Jet(0, -mpmath.inf * mpmath.sign(q.d) if q.d else 0, mpmath.nan if q.d else 0)


def _cauchy_schwarz(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    q = [exp(v) for v in log_softmax(xs)] if prm.get("from_logits", False) else xs
    dot = total([y * v for y, v in zip(t, q, strict=True)])
    if dot.v == 0:  # no overlap: an infinite divergence
        return Jet(mpmath.inf)
    return (
        -log(dot)
        + mpmath.log(mpmath.fsum(y * y for y in t)) / 2
        + log(total([v * v for v in q])) / 2
    )


def _masks(xs: list[Jet], prm: dict[str, Any]) -> list[Jet]:
    return [sigmoid(x) for x in xs] if prm.get("from_logits", False) else xs


def _dice(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    s = mpf(prm.get("smooth", 1.0))
    p = _masks(xs, prm)
    inter = total([a * b for a, b in zip(p, t, strict=True)])
    den = total(p) + mpmath.fsum(t) + s
    return Jet(0) if den.v == 0 else 1 - (2 * inter + s) / den


def _tversky(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    s, a, b = (mpf(prm.get(k, v)) for k, v in (("smooth", 1.0), ("alpha", 0.5), ("beta", 0.5)))
    p = _masks(xs, prm)
    inter = total([u * y for u, y in zip(p, t, strict=True)])
    fp = total([u * (1 - y) for u, y in zip(p, t, strict=True)])
    fn = total([(1 - u) * y for u, y in zip(p, t, strict=True)])
    den = inter + a * fp + b * fn + s
    return Jet(0) if den.v == 0 else 1 - (inter + s) / den


def _ranking_softmax(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    return -total([y * ls for y, ls in zip(t, log_softmax(xs), strict=True)])


def _pairwise(pair: Callable[[Jet], Jet]) -> Row:
    """A Rax pairwise loss of one list: Σ pair(x_a − x_b) over the pairs with y_a > y_b."""

    def row(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
        return total(
            [pair(xs[a] - xs[b]) for a in range(len(xs)) for b in range(len(xs)) if t[a] > t[b]]
        )

    return row


def _pointwise_sigmoid(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    clipped = [min(max(y, mpf(0)), mpf(1)) for y in t]
    return total(
        [
            -(y * log_sigmoid(x) + (1 - y) * log_sigmoid(-x))
            for x, y in zip(xs, clipped, strict=True)
        ]
    )


# Below this, Φ(v) is its asymptotic series φ(v)/|v|·Σ_n (−1)^n (2n − 1)!!/v^{2n} (mpmath's erfc
# overflows for |v| near 1e300); its smallest term, about e^{−v²/2}, is below 1e-340 there
ASYMPTOTIC_BELOW = -40


def _normal_tail_series(v: Num) -> Num:
    """v²·Σ_{n≥1} (−1)^n (2n − 1)!!/v^{2n} = −1 + 3/v² − 15/v⁴ + …, to its smallest term: the
    series of Φ(v)·|v|/φ(v) is 1 + this/v², kept apart from its 1 so that nothing cancels."""
    total, term, n = mpf(-1), mpf(-1), 1
    while True:
        nxt = -term * (2 * n + 1) / (v * v)
        if abs(nxt) >= abs(term) or abs(nxt) < mpf(10) ** (-DIGITS):
            return total
        total, term, n = total + nxt, nxt, n + 1


def _log_ncdf(a: Jet) -> Jet:
    """log Φ(a) for the standard normal: slope λ = φ/Φ, curvature −λ(a + λ); below
    ``ASYMPTOTIC_BELOW`` from the asymptotic series, λ = −a/S and −λ(a + λ) = a²(S − 1)/S² with
    S = 1 + T/a², T = ``_normal_tail_series``."""

    def log_phi(v: Num) -> Num:
        if v < ASYMPTOTIC_BELOW:
            log_pdf = -v * v / 2 - mpmath.log(mpmath.sqrt(2 * mpmath.pi))
            return log_pdf - mpmath.log(-v) + mpmath.log1p(_normal_tail_series(v) / (v * v))
        return mpmath.log(mpmath.erfc(-v / mpmath.sqrt(2)) / 2)

    def ratio(v: Num) -> Num:
        if v < ASYMPTOTIC_BELOW:
            return -v / (1 + _normal_tail_series(v) / (v * v))
        return mpmath.exp(-v * v / 2 - log_phi(v)) / mpmath.sqrt(2 * mpmath.pi)

    def curvature(v: Num) -> Num:
        if v < ASYMPTOTIC_BELOW:
            t = _normal_tail_series(v)
            return t / (1 + t / (v * v)) ** 2
        return -ratio(v) * (v + ratio(v))

    return chain(a, log_phi, ratio, curvature)


def _aft_log_cdf(z: Jet, distribution: str) -> Jet:
    """log F(z) of XGBoost's AFT distributions, exact in the tails."""
    if distribution == "normal":
        return _log_ncdf(z)
    if distribution == "logistic":
        return log_sigmoid(z)
    # extreme: F = 1 − exp(−e^z), log F = log(−expm1(−e^z))
    t = exp(z)
    return chain(
        t,
        lambda v: mpmath.log(-mpmath.expm1(-v)),
        lambda v: 1 / mpmath.expm1(v),
        lambda v: -mpmath.exp(v) / mpmath.expm1(v) ** 2,
    )


def _aft_log_sf(z: Jet, distribution: str) -> Jet:
    """log(1 − F(z)), exact in the tails."""
    if distribution == "normal":
        return _log_ncdf(-z)
    if distribution == "logistic":
        return log_sigmoid(-z)
    return -exp(z)


def _aft_cdf(z: Jet, distribution: str) -> Jet:
    return exp(_aft_log_cdf(z, distribution))


def _aft_minus_log_pdf(z: Jet, distribution: str) -> Jet:
    if distribution == "normal":
        return z * z / 2 + mpmath.log(mpmath.sqrt(2 * mpmath.pi))
    if distribution == "logistic":  # pdf = e^z / (1 + e^z)²
        return -z - 2 * log_sigmoid(-z)
    return -(z - exp(z))


def _aft(xs: list[Jet], t: list[Num], prm: dict[str, Any]) -> Jet:
    """XGBoost's AFT loss of one sample: the value floored at 1e-12 of likelihood, and the
    derivatives of the unfloored one clipped to [−15, 15] and [1e-16, 15] as XGBoost clips."""
    dist, sigma = prm.get("distribution", "normal"), mpf(prm.get("sigma", 1.0))
    x = xs[0]
    lower, upper = t[0], t[-1]
    if lower == upper:
        z = (mpmath.log(lower) - x) / sigma
        nll = _aft_minus_log_pdf(z, dist) + mpmath.log(sigma * lower)
    elif upper < 0 and lower <= 0:  # [0, +inf): probability 1
        nll = Jet(0)
    elif upper < 0:  # right-censored: upper +inf
        nll = -_aft_log_sf((mpmath.log(lower) - x) / sigma, dist)
    elif lower <= 0:  # left-censored
        nll = -_aft_log_cdf((mpmath.log(upper) - x) / sigma, dist)
    else:
        high = _aft_cdf((mpmath.log(upper) - x) / sigma, dist)
        nll = -log(high - _aft_cdf((mpmath.log(lower) - x) / sigma, dist))
    floor = -mpmath.log(mpf("1e-12"))
    return Jet(
        min(nll.v, floor),
        min(max(nll.d, mpf(-15)), mpf(15)),
        min(max(nll.h, mpf("1e-16")), mpf(15)),
    )


ROWS: dict[str, Row] = {
    "mse": _elementwise(lambda x, y, _: (x - y) * (x - y)),
    "mae": _elementwise(lambda x, y, _: absolute(x - y)),
    "huber": _elementwise(_huber),
    "smooth_l1": _elementwise(_smooth_l1),
    "pseudo_huber": _elementwise(_pseudo_huber),
    "log_cosh": _elementwise(lambda x, y, _: log_cosh(x - y)),
    "mape": _elementwise(
        lambda x, y, prm: 100 * absolute(x - y) / max(abs(y), mpf(prm.get("epsilon", 1e-7)))
    ),
    "msle": _elementwise(_msle),
    "pinball": _elementwise(
        lambda x, y, prm: (
            mpf(prm.get("quantile", 0.5)) * relu(y - x)
            + (1 - mpf(prm.get("quantile", 0.5))) * relu(x - y)
        )
    ),
    "poisson": _elementwise(_poisson),
    "tweedie": _elementwise(_tweedie),
    "gamma": _elementwise(lambda x, y, _: y * exp(-x) + x),
    "cosine_similarity": _cosine,
    "gaussian_nll": _gaussian_nll,
    "triplet_margin": _triplet_margin,
    "margin_ranking": _margin_ranking,
    "cosine_embedding": _cosine_embedding,
    "binary_cross_entropy": _elementwise(_bce),
    "binary_focal": _elementwise(_binary_focal),
    "hinge": _elementwise(lambda x, y, _: relu(1 - y * x)),
    "squared_hinge": _elementwise(lambda x, y, _: relu(1 - y * x) ** 2),
    "soft_margin": _elementwise(lambda x, y, _: -log_sigmoid(y * x)),
    "hinge_embedding": _elementwise(
        lambda x, y, prm: x if y > 0 else relu(mpf(prm.get("margin", 1.0)) - x)
    ),
    "multilabel_soft_margin": _multilabel_soft_margin,
    "cross_entropy": _cross_entropy,
    "focal": _focal,
    "generalized_cross_entropy": _gce,
    "poly1_cross_entropy": _poly1,
    "simloss": _simloss,
    "categorical_hinge": _categorical_hinge,
    "multi_margin": _multi_margin,
    "sparsemax": _sparsemax,
    "additive_margin_softmax": lambda xs, t, prm: _margin_softmax(
        xs, t, {**prm, "_angular": False}
    ),
    "additive_angular_margin_softmax": lambda xs, t, prm: _margin_softmax(
        xs, t, {**prm, "_angular": True}
    ),
    "multilabel_margin": _multilabel_margin,
    "kl_divergence": _kl,
    "generalized_kl_divergence": _generalized_kl,
    "js_divergence": _js,
    "cauchy_schwarz_divergence": _cauchy_schwarz,
    "dice": _dice,
    "tversky": _tversky,
    "ranking_softmax": _ranking_softmax,
    "pairwise_logistic": _pairwise(lambda d: -log_sigmoid(d)),
    "pairwise_hinge": _pairwise(lambda d: relu(1 - d)),
    "pointwise_sigmoid": _pointwise_sigmoid,
    "aft": _aft,
}


# --- the batch-coupled losses: the whole batch at once -----------------------------------------

BatchFn = Callable[[list[list[Jet]], list[Num], dict[str, Any]], list[Jet]]


def _cox(xss: list[list[Jet]], t: list[Num], prm: dict[str, Any]) -> list[Jet]:
    """XGBoost's cox-nloglik terms: log Σ_{|y_j| ≥ |y_i|} e^{η_j} − η_i for an event."""
    etas = [xs[0] for xs in xss]
    out = []
    for i, y in enumerate(t):
        if y <= 0:
            out.append(Jet(0))
            continue
        risk = [etas[j] for j in range(len(t)) if abs(t[j]) >= abs(y)]
        top = max(e.v for e in risk)
        out.append(log(total([exp(e - top) for e in risk])) + top - etas[i])
    return out


def _ntxent(xss: list[list[Jet]], t: list[Num], prm: dict[str, Any]) -> list[Jet]:
    """optax's ntxent terms by anchor, norms √max(‖x‖², ε) with float64's ε."""
    tau = mpf(prm.get("temperature", 0.07))
    eps = mpf(float(np.finfo(np.float64).eps))
    units = []
    for xs in xss:
        norm = sqrt(maximum(total([x * x for x in xs]), eps))
        units.append([x / norm for x in xs])
    n = len(t)
    sims = [[total([a * b for a, b in zip(units[i], units[j], strict=True)]) / tau
             for j in range(n)] for i in range(n)]  # fmt: skip
    out = []
    for i in range(n):
        negatives = [sims[i][j] for j in range(n) if t[j] != t[i]]
        terms = []
        for p in (j for j in range(n) if j != i and t[j] == t[i]):
            group = [sims[i][p], *negatives]
            top = max(g.v for g in group)
            terms.append(log(total([exp(g - top) for g in group])) + top - sims[i][p])
        out.append(total(terms))
    return out


def _circle(xss: list[list[Jet]], t: list[Num], prm: dict[str, Any]) -> list[Jet]:
    """keras.losses.circle per sample."""
    gamma, m = mpf(prm.get("gamma", 80.0)), mpf(prm.get("margin", 0.4))
    remove = prm.get("remove_diagonal", True)
    n = len(t)
    out = []
    for i in range(n):
        pos, neg = [], []
        for j in range(n):
            dist = maximum(1 - total([a * b for a, b in zip(xss[i], xss[j], strict=True)]), 0)
            if t[j] == t[i]:
                if j != i or not remove:
                    pos.append(-gamma * maximum(m + dist, 0) * (m - dist))
            else:
                neg.append(gamma * maximum(1 + m - dist, 0) * ((1 - m) - dist))
        if not pos or not neg:
            out.append(Jet(0))
            continue
        tp, tn = max(a.v for a in pos), max(b.v for b in neg)
        z = log(total([exp(a - tp) for a in pos])) + tp + log(total([exp(b - tn) for b in neg]))
        out.append(-log_sigmoid(-(z + tn)))  # softplus
    return out


BATCHES: dict[str, BatchFn] = {"cox": _cox, "ntxent": _ntxent, "circle": _circle}


@dataclass(frozen=True)
class Exact:
    """Exact per-sample losses and derivatives of Σ_i l_i (no weights), as mpf lists."""

    per_sample: list[Any]
    gradient: list[list[Any]]
    hessian: list[list[Any]]
    kappa: list[Any]


def evaluate_exact(
    name: str,
    pred: Array,
    targ: Array | None,
    params: dict[str, Any],
    inputs: dict[str, Array] | None = None,
    wrt: str = "predictions",
) -> Exact:
    """The exact per-sample losses, gradient and Hessian diagonal of one batch (the derivatives
    in ``wrt``: the predictions, or one of the extra ``inputs``, each row of them, by name)."""
    n = pred.shape[0]
    p2 = pred.reshape(n, -1).astype(np.float64)  # float32 inputs are exact in float64
    ignored = np.zeros(n, dtype=bool)
    if targ is None:
        t2 = np.zeros((n, 0))
    elif (
        targ.ndim == 1
        and pred.ndim == 2
        and name not in PER_SAMPLE_LABELS
        and CASES[name].targ != "groups"
    ):
        ignore = params.get("ignore_index")
        t2 = one_hot(targ, pred.shape[1], ignore)
        ignored = targ == ignore if ignore is not None else ignored
    else:
        t2 = targ.reshape(n, -1).astype(np.float64)
    if name in SIGN_LABELS and np.isin(t2, (0.0, 1.0)).all():
        t2 = 2 * t2 - 1  # keras: a batch of {0, 1} labels means {−1, 1}
    if name in BATCHES:
        assert targ is not None
        return _evaluate_batch(name, p2, targ, params)
    arrays = {"predictions": p2}
    arrays |= {k: a.reshape(n, -1).astype(np.float64) for k, a in (inputs or {}).items()}
    fn = ROWS[name]
    values, grads, hessians, kappas = [], [], [], []
    with mp.workdps(DIGITS):
        for i in range(n):
            t = [mpf(float(v)) for v in t2[i]]
            g, h = [], []
            value = mpf(0)
            for j in range(arrays[wrt].shape[1]):
                rows = {
                    key: [
                        Jet(float(v), 1 if key == wrt and k == j else 0) for k, v in enumerate(a[i])
                    ]
                    for key, a in arrays.items()
                }
                xs = rows.pop("predictions")
                prm = {**params, "_ignored": bool(ignored[i]), "_inputs": rows}
                out = fn(xs, t, prm)
                value, g, h = out.v, [*g, out.d], [*h, out.h]
            values.append(value)
            grads.append(g)
            hessians.append(h)
            weighted = name in CLASS_WEIGHTED and not ignored[i]
            kappas.append(mpmath.fsum(t) if weighted else mpf(0) if ignored[i] else mpf(1))
        if CASES[name].kappa is not None:
            kappas = [mpf(float(v)) for v in CASES[name].kappa(p2, t2, params)]
    return Exact(values, grads, hessians, kappas)


def _evaluate_batch(name: str, p2: Array, targ: Array, params: dict[str, Any]) -> Exact:
    """A batch-coupled loss: every l_i seeded in each element of the batch in turn; the
    gradient and Hessian diagonal are those of Σ_i l_i."""
    n, d = p2.shape
    t = [mpf(float(v)) for v in targ.reshape(n, -1)[:, 0]]
    values: list[Any] = [mpf(0)] * n
    grads = [[mpf(0)] * d for _ in range(n)]
    hessians = [[mpf(0)] * d for _ in range(n)]
    with mp.workdps(DIGITS):
        for k in range(n):
            for c in range(d):
                xss = [[Jet(float(p2[i, j]), 1 if (i, j) == (k, c) else 0) for j in range(d)]
                       for i in range(n)]  # fmt: skip
                out = BATCHES[name](xss, t, params)
                values = [o.v for o in out]
                grads[k][c] = mpmath.fsum(o.d for o in out)
                hessians[k][c] = mpmath.fsum(o.h for o in out)
        case = CASES[name]
        rows = targ.reshape(n) if case.targ == "groups" else targ.reshape(n, -1)
        kappas = [mpf(float(v)) for v in case.kappa(p2, rows, params)]
    return Exact(values, grads, hessians, kappas)


def rounded(values: Any, dtype: type[np.floating[Any]]) -> Array:
    """Exact numbers rounded to the compute dtype (inf where they are past its range)."""
    with mp.workdps(DIGITS), np.errstate(over="ignore"):
        return np.asarray(
            np.vectorize(lambda v: dtype(float(v)), otypes=[dtype])(
                np.asarray(values, dtype=object)
            )
        )
