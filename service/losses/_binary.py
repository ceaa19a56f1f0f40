"""Shared pieces of the binary losses: cancellation-free sigmoids, the mask link of the overlap
losses and hinge label rules."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated

import numpy as np
from pydantic import Field

from ..errors import InvalidArray
from ..jit import Array, inline, scalar
from ._spec import ComputeDtype, LossParams, Memo, Prepared, Sent, readonly
from ._stable import log_sigmoid
from ._vmath import exp, log1p_near

# Fields several binary and overlap losses share
SigmoidLogits = Annotated[bool, Field(description="predictions are logits (sigmoid inside)")]
BinarySmoothing = Annotated[float, Field(ge=0, lt=1, description="y' = y (1 - s) + s/2")]
MaskLogits = Annotated[bool, Field(description="predictions are logits (sigmoid elementwise)")]
MaskSmooth = Annotated[float, Field(ge=0, description="added to numerator and denominator")]


@inline
def sigmoid_pair(z: float) -> tuple[float, float]:
    """(σ(z), σ(−z)) for any finite z: σ(−z) = 1 − σ(z) is formed without the subtraction, which
    would cancel to 0 for large z and lose the relative accuracy of the small tail."""
    e = exp(-abs(z))  # in (0, 1]: never overflows
    big = 1.0 / (1.0 + e)
    small = e * big
    return (big if z >= 0 else small), (small if z >= 0 else big)


@inline
def sigmoid_logs(z: float) -> tuple[float, float, float, float]:
    """(σ(z), σ(−z), log σ(z), log σ(−z)) from one exp and one log1p, for any finite z.

    The same bits as ``sigmoid_pair`` and ``log_sigmoid``, which take three exps and two log1ps
    between them: with e = e^{−|z|} and s = log1p(e), log σ(z) = −(max(−z, 0) + s) and
    log(1 − σ(z)) = log σ(−z) = −(max(z, 0) + s). Selects, not branches, so a loop over it
    vectorises (``_vmath``).
    """
    e = exp(-abs(z))  # in (0, 1]: never overflows
    soft = log1p_near(e)
    big = 1.0 / (1.0 + e)
    small = e * big
    positive = z >= 0
    return (
        big if positive else small,
        small if positive else big,
        -(max(-z, 0.0) + soft),
        -(max(z, 0.0) + soft),
    )


@scalar
def mask_link(x: float, from_logits: bool) -> tuple[float, float, float, float]:
    r"""The mask value $p$ of a prediction $x$, with $1 - p$, $dp/dx$ and $d^2p/dx^2$: $x$ itself,
    or $\sigma(x)$ with $1 - \sigma(x) = \sigma(-x)$, $\sigma' = \sigma(x)\sigma(-x)$ and
    $\sigma'' = \sigma'(\sigma(-x) - \sigma(x))$, both sigmoids as $e^{\log\sigma}$ so that any
    finite logit stays finite (dice, tversky)."""
    if not from_logits:
        return x, 1.0 - x, 1.0, 0.0
    p = math.exp(log_sigmoid(x))
    q = math.exp(log_sigmoid(-x))  # 1 − σ(x) without cancellation
    d1 = p * q
    return p, q, d1, d1 * (q - p)


def _where(mask: Array) -> list[int]:
    return [int(k) for k in np.argwhere(mask)[0]]


def sign_labels(targets: Array, name: str) -> Array:
    """Hinge targets as ±1: {−1, 1} as sent, or {0, 1} with 0 meaning −1 (Keras's 2y − 1).

    ``targets`` is the array as sent, so error locations are the client's indices.
    """
    zero, minus = targets == 0, targets == -1
    other = ~(zero | minus | (targets == 1))
    if other.any():
        raise InvalidArray(
            f"{name} needs targets in {{-1, 1}}, or in {{0, 1}} where 0 means -1; the first "
            f"other value is at {_where(other)}",
            errors=[(("targets", *_where(other)), "must be -1 or 1 (or 0 or 1)")],
        )
    if zero.any() and minus.any():
        raise InvalidArray(
            f"{name} got targets with both 0 (first at {_where(zero)}) and -1 (first at "
            f"{_where(minus)}), which is ambiguous: send labels in either {{0, 1}} (0 means -1) "
            "or {-1, 1}",
            errors=[(("targets", *_where(zero)), "0 and -1 in one batch: use {0, 1} or {-1, 1}")],
        )
    return targets if not zero.any() else 2.0 * targets - 1.0


def plus_minus_labels(targets: Array, name: str) -> None:
    """Pair labels exactly ±1, as torch's ranking and embedding losses take them (torch reads
    any other value silently: a 0 gives ``margin_ranking`` the margin and ``cosine_embedding``
    a zero loss); 422 naming the first other value. ``targets`` is the array as sent."""
    other = ~((targets == 1) | (targets == -1))
    if other.any():
        raise InvalidArray(
            f"{name} needs targets in {{-1, 1}} (1: the pair is alike or ranked first, -1: "
            f"unlike or ranked second); the first other value is at {_where(other)}",
            errors=[(("targets", *_where(other)), "must be -1 or 1")],
        )


class SignTargetParams(LossParams):
    """Base of the hinge losses: targets in {−1, 1}, or {0, 1} converted with 2y − 1."""

    @classmethod
    def working_bytes(
        cls, rows: int, columns: int, itemsize: int, *, sent: Sent = None, indices: bool = False
    ) -> int:
        """``sign_labels``' five boolean masks and 2y − 1 in float64 (with its temporary),
        then the converted rows in the compute dtype."""
        return (5 + 16 + itemsize) * rows * columns

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        prepared = super().prepare(name, predictions, targets, dtype, memo)
        signs = sign_labels(targets, name)
        if signs is targets:
            return prepared
        rows = np.ascontiguousarray(signs, dtype=dtype).reshape(prepared.targets.shape)
        return replace(prepared, targets=readonly(rows))


# Below this, a row's Σ p_j t_j may have lost terms to underflow (products of two numbers below
# 1e-154): it is recomputed from the row scaled by its maxima (``scaled_intersection``)
INTERSECTION_UNDERFLOW = 1e-250


@scalar
def scaled_intersection(
    pred: Array, targ: Array, i: int, from_logits: bool
) -> tuple[float, float, float]:
    """(Î, m_p, m_t) with Σ_j p_j t_j = Î·m_p·m_t of row i, m the rows' max (1 for a zero row)
    and Î = Σ_j (p_j/m_p)(t_j/m_t) in [0, D]: the products of masks of 1e-300 are 1e-600,
    0 in floats, where Î keeps them (dice, tversky)."""
    mp = 0.0
    mt = 0.0
    for j in range(pred.shape[1]):
        p, _, _, _ = mask_link(pred[i, j], from_logits)
        mp = max(mp, p)
        mt = max(mt, targ[i, j])
    mp = mp if mp > 0.0 else 1.0
    mt = mt if mt > 0.0 else 1.0
    total = 0.0
    for j in range(pred.shape[1]):
        p, _, _, _ = mask_link(pred[i, j], from_logits)
        total += (p / mp) * (targ[i, j] / mt)
    return total, mp, mt
