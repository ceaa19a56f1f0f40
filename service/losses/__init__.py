"""THE REGISTRY: every loss lossd serves, in catalogue order.

Adding a loss is one file in this folder, one line here and one reference function (with its
case) in ``tests/support/references/<family>.py``; the registry-wide tests then cover it.
"""

from __future__ import annotations

import difflib

from ..errors import UnknownLoss, shown
from . import (
    binary_cross_entropy,
    binary_focal,
    categorical_hinge,
    cosine_similarity,
    cross_entropy,
    dice,
    focal,
    generalized_cross_entropy,
    hinge,
    huber,
    js_divergence,
    kl_divergence,
    log_cosh,
    mae,
    mape,
    mse,
    msle,
    multi_margin,
    pinball,
    poisson,
    poly1_cross_entropy,
    pseudo_huber,
    simloss,
    smooth_l1,
    squared_hinge,
    tversky,
    tweedie,
)
from ._spec import LossParams, LossSpec

__all__ = ["REGISTRY", "LossParams", "LossSpec", "resolve"]

REGISTRY: tuple[LossSpec, ...] = (
    mse.SPEC,
    mae.SPEC,
    huber.SPEC,
    smooth_l1.SPEC,
    pseudo_huber.SPEC,
    log_cosh.SPEC,
    mape.SPEC,
    msle.SPEC,
    pinball.SPEC,
    poisson.SPEC,
    tweedie.SPEC,
    cosine_similarity.SPEC,
    cross_entropy.SPEC,
    focal.SPEC,
    generalized_cross_entropy.SPEC,
    poly1_cross_entropy.SPEC,
    simloss.SPEC,
    categorical_hinge.SPEC,
    multi_margin.SPEC,
    binary_cross_entropy.SPEC,
    binary_focal.SPEC,
    hinge.SPEC,
    squared_hinge.SPEC,
    kl_divergence.SPEC,
    js_divergence.SPEC,
    dice.SPEC,
    tversky.SPEC,
)


def fold(name: str) -> str:
    """Names match case-insensitively with '-' and '_' interchangeable."""
    return name.lower().replace("-", "_")


_BY_NAME: dict[str, LossSpec] = {
    fold(alias): spec for spec in REGISTRY for alias in (spec.name, *spec.aliases)
}


def resolve(name: str) -> LossSpec:
    """The loss a name or alias stands for; ``UnknownLoss`` suggests the closest names."""
    spec = _BY_NAME.get(fold(name))
    if spec is not None:
        return spec
    close = difflib.get_close_matches(fold(name)[:100], list(_BY_NAME), n=6, cutoff=0.5)
    names = list(dict.fromkeys(_BY_NAME[c].name for c in close))[:3]
    hint = f"; did you mean {', '.join(map(repr, names))}?" if names else ""
    raise UnknownLoss(f"unknown loss {shown(name, 100)!r}{hint} GET /losses lists every loss")
