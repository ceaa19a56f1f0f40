"""Hinge embedding loss for ±1 (or 0/1) labels, as torch.nn.HingeEmbeddingLoss.

Edges: linear in the prediction on both branches: ±1e300 are answered exactly; only sums past the
range overflow (a 422). For t = 1 the loss is the prediction itself, negative where it is, as in
torch.
"""

from __future__ import annotations

from pydantic import Field

from ..jit import driver, scalar
from ._binary import SignTargetParams
from ._elementwise import elementwise_rows
from ._spec import Kernel


class HingeEmbeddingParams(SignTargetParams):
    """Targets are {-1, 1}, or {0, 1} with 0 meaning -1."""

    margin: float = Field(1.0, description="m in max(0, m − ŷ) for the targets t = −1")


@scalar
def hinge_embedding_point(p: float, t: float, params: tuple[float]) -> tuple[float, float, float]:
    r"""$l = \hat y$ for $t = 1$ ($l' = 1$); $l = \max(0, m - \hat y)$ for $t = -1$, $l' = -1$
    where $m - \hat y > 0$ else 0 (0 at the margin); $l'' = 0$."""
    (margin,) = params
    if t > 0:
        return p, 1.0, 0.0
    m = margin - p
    if m > 0:
        return m, -1.0, 0.0
    return 0.0, 0.0, 0.0


hinge_embedding_rows = elementwise_rows(hinge_embedding_point, "outputs")
hinge_embedding_batch = driver(hinge_embedding_rows, "margin")


KERNEL = Kernel(HingeEmbeddingParams, hinge_embedding_batch)
