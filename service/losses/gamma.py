"""Gamma regression with a log link, as XGBoost's ``reg:gamma`` objective.

The prediction ŷ is a margin, the log of the mean μ = e^ŷ, as XGBoost hands it to an objective.
XGBoost's gradient 1 − y·e^{−ŷ} and Hessian y·e^{−ŷ} are the derivatives of its ``gamma-nloglik``
metric with dispersion ψ = 1, y/μ + log μ = y·e^{−ŷ} + ŷ: that is the value (the gamma deviance
2(y/μ − log(y/μ) − 1) is 2(l − 1 − log y), with twice those derivatives).

Edges: y·e^{−ŷ} is formed as e^{log y − ŷ} where e^{−ŷ} alone would overflow or be subnormal
(|ŷ| > 700), so a large y times a tiny e^{−ŷ}, or a tiny y times a huge one, keeps its value and
relative accuracy; where the product itself is past the range the exact loss is too (a 422).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import OutOfDomain
from ..jit import Array, driver, scalar
from ._elementwise import elementwise_rows
from ._spec import Kernel, LossParams

# Past this |ŷ|, e^{−ŷ} overflows or loses digits to subnormals: y·e^{−ŷ} is e^{log y − ŷ}
DIRECT_EXP = 700.0


class GammaParams(LossParams):
    """`gamma` takes no parameters; predictions are log-means, targets positive."""

    @classmethod
    def warm_up_batch(cls) -> tuple[Array, Array]:
        """Positive targets (the default one-hot rows hold zeros)."""
        return np.full((2, 2), 0.5), np.eye(2) + 1.0

    def check_domain(self, predictions: Array, targets: Array) -> None:
        """Targets are positive, as XGBoost's reg:gamma requires ("label must be positive")."""
        if targets.size and float(np.min(targets)) <= 0:
            raise OutOfDomain(
                "gamma targets must be positive (XGBoost's reg:gamma refuses labels <= 0); the "
                "predictions are log-means, any real number",
                errors=[(("targets",), "must be > 0")],
            )


@scalar
def gamma_point(p: float, t: float, params: tuple[()]) -> tuple[float, float, float]:
    r"""$l = y e^{-\hat y} + \hat y$, $l' = 1 - y e^{-\hat y}$, $l'' = y e^{-\hat y}$, in
    float64 whatever the compute dtype (e^{−90} is a float32 subnormal)."""
    x = float(p)
    y = float(t)
    r = math.exp(math.log(y) - x) if abs(x) > DIRECT_EXP else y * math.exp(-x)
    return r + x, 1.0 - r, r


gamma_rows = elementwise_rows(gamma_point)
gamma_batch = driver(gamma_rows)


KERNEL = Kernel(GammaParams, gamma_batch)
