"""Additive angular margin softmax (ArcFace): softmax cross-entropy of s·cos θ_j, the target's
logit s·cos(θ_y + m), as insightface's ``ArcFace`` (recognition/arcface_torch/losses.py,
easy_margin false) computes it (Deng et al. 2019).

With c = cos θ_y: cos(θ_y + m) = c·cos m − sin θ_y·sin m, sin θ_y = √((1 − c)(1 + c)) (no
cancellation near c = ±1), where θ_y + m ≤ π, that is c > cos(π − m); beyond, insightface's
c − m·sin m keeps the target logit decreasing in θ_y. The two branches do not meet at the
threshold: the loss jumps there (at m = 0.5 the target cosine drops from −1 to −1.117), as in
insightface.

The predictions are cosines, checked to lie in [−1, 1]. At c = 1 the slope of cos(θ_y + m) in c
is infinite: values are answered, a gradient or Hessian asked for there is a 422.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from ..errors import OutOfDomain
from ..jit import Array, RowArrays, block_range, driver, scalar
from ._checks import require_one_hot
from ._margin_softmax import margin_softmax_row, target_class
from ._multiclass import MulticlassParams
from ._spec import Kernel
from ._stable import row_factor


def _first(mask: Array) -> list[int]:
    return [int(k) for k in np.unravel_index(int(np.argmax(mask)), mask.shape)]


class AdditiveAngularMarginSoftmaxParams(MulticlassParams):
    scale: float = Field(64.0, gt=0, description="s, the scale of the cosine logits")
    margin: float = Field(
        0.5, ge=0, lt=math.pi, description="m, the angle added to the target class's angle"
    )

    def check_targets(self, rows: Array, name: str) -> None:
        """One target class a row, where the margin goes: one-hot rows."""
        require_one_hot(rows, name)

    def check_domain(self, predictions: Array, targets: Array) -> None:
        """The predictions are cosines: in [−1, 1] (the target's goes through arccos)."""
        bad = (predictions < -1) | (predictions > 1)
        if predictions.size and bad.any():
            where = _first(bad)
            raise OutOfDomain(
                "additive_angular_margin_softmax takes cosine similarities, in [-1, 1]; "
                f"predictions{where} is outside (normalise the embeddings and class centres)",
                errors=[(("predictions", *where), "must be a cosine in [-1, 1]")],
            )


@scalar
def angular_target(c: float, margin: float) -> tuple[float, float, float]:
    """(φ(c), φ'(c), φ''(c)) of the target's cosine c: cos(arccos c + m) where c > cos(π − m),
    else insightface's c − m·sin m."""
    if c > math.cos(math.pi - margin):
        sine = math.sqrt((1.0 - c) * (1.0 + c))
        sin_m = math.sin(margin)
        value = c * math.cos(margin) - sine * sin_m
        return value, math.cos(margin) + c * sin_m / sine, sin_m / (sine * sine * sine)
    return c - margin * math.sin(margin), 1.0, 0.0


@scalar
def additive_angular_margin_softmax_rows(
    k: int, rows: int, io: RowArrays, params: tuple[float, float]
) -> None:
    r"""Block ``k`` of ``additive_angular_margin_softmax_batch``: rows ``k·rows`` to
    ``(k + 1)·rows``.

    $l_i = -\log \mathrm{softmax}(s\,z_i)_{y_i}$ with $z_{ij} = \cos\theta_{ij}$ off the target
    and $\phi(\cos\theta_{iy_i})$ on it; off the target the derivatives are AM-softmax's, on it
    $-s(1 - p_y)\phi'$ and $s^2 p_y(1 - p_y)\phi'^2 - s(1 - p_y)\phi''$.
    """
    pred, targ, w, scale, loss, grad, hess = io
    s, margin = params
    for i in block_range(k, rows, pred.shape[0]):
        y = target_class(targ, i, pred.shape[1])
        target, slope, curve = angular_target(float(pred[i, y]), margin)
        f = row_factor(w, i, scale)
        margin_softmax_row(pred, i, y, 0.0, target, slope, curve, s, f, loss, grad, hess)


additive_angular_margin_softmax_batch = driver(
    additive_angular_margin_softmax_rows, "scale", "margin"
)


KERNEL = Kernel(AdditiveAngularMarginSoftmaxParams, additive_angular_margin_softmax_batch)
