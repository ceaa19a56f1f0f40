"""Soft-margin (logistic) loss for ±1 (or 0/1) labels, as torch.nn.SoftMarginLoss.

Edges: l = −log σ(t·ŷ) from ``sigmoid_logs``: one exp of −|t·ŷ| (never overflows) and one log1p,
so any finite score gives a finite loss, gradient and Hessian (±1e300: l = 1e300 or 0); torch
computes log1p(exp(−t·ŷ)), which overflows to inf past t·ŷ ≈ −709. The gradient −t·σ(−t·ŷ) and
the Hessian σ(t·ŷ)σ(−t·ŷ) keep their relative accuracy in both tails.
"""

from __future__ import annotations

from ..jit import driver, inline
from ._binary import SignTargetParams, sigmoid_logs
from ._elementwise import elementwise_rows
from ._spec import Kernel


class SoftMarginParams(SignTargetParams):
    """`soft_margin` takes no parameters; targets are {-1, 1}, or {0, 1} with 0 meaning -1."""


@inline
def soft_margin_point(p: float, t: float, params: tuple[()]) -> tuple[float, float, float]:
    r"""$l = \log(1 + e^{-t\hat y}) = -\log\sigma(t\hat y)$, $l' = -t\,\sigma(-t\hat y)$,
    $l'' = t^2\sigma(t\hat y)\sigma(-t\hat y)$."""
    s, q, log_s, _ = sigmoid_logs(t * p)
    return -log_s, -t * q, t * t * s * q


soft_margin_rows = elementwise_rows(soft_margin_point, "column")
soft_margin_batch = driver(soft_margin_rows)


KERNEL = Kernel(SoftMarginParams, soft_margin_batch)
