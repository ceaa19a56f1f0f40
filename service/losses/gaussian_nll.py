"""Gaussian negative log-likelihood with predicted variances, as torch.nn.GaussianNLLLoss.

The variances come under ``inputs.var``: one per prediction, or one per sample shared by its D
outputs ((N,) or (N, 1) next to (N, D) predictions, torch's homoscedastic forms). As torch does,
they are clamped to at least ``eps`` and the gradient passes the clamp unchanged (torch clamps a
copy under ``no_grad``): below eps it is the derivative at eps. A negative variance is a 422 (torch
raises).

Edges: l = ½(log v + q·r) with q = r/v, so r² is never formed: r = 1e200 over v = 1e300 is
answered (5e99); only a loss or derivative past the range is a 422 (the exact one is past it too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
from pydantic import Field

from ..errors import OutOfDomain
from ..jit import Array, RowArrays, block_range, driver, scalar
from ._spec import ExtraInput, Kernel, LossParams
from ._stable import row_factor

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class GaussianNLLParams(LossParams):
    """Predictions are the means μ, targets the observations y, ``inputs.var`` the variances."""

    inputs: ClassVar[tuple[ExtraInput, ...]] = (
        ExtraInput(
            "var",
            "the predicted variances σ² ≥ 0: one per prediction, or one per sample shared by "
            "its outputs ((N,) or (N, 1) next to (N, D) predictions)",
            ("same", "rows", "column"),
        ),
    )

    full: bool = Field(False, description="add the constant ½·log 2π to every term")
    eps: float = Field(
        1e-6, gt=0, description="variances are clamped to at least eps (the gradient passes it)"
    )

    def check_inputs(self, predictions: Array, inputs: Mapping[str, Array]) -> None:
        """Variances must be non-negative (torch raises on a negative one)."""
        var = inputs["var"]
        if var.size and float(np.min(var)) < 0:
            row, column = (int(k) for k in np.unravel_index(int(np.argmin(var)), var.shape))
            where = [row] if var.shape[1] == 1 and predictions.shape[1] > 1 else [row, column]
            raise OutOfDomain(
                f"inputs.var{where} is negative; variances must be >= 0 (values below eps "
                "are clamped to eps)",
                errors=[(("inputs", "var", *where), "must be >= 0")],
            )


@scalar
def gaussian_nll_rows(
    k: int, rows: int, io: RowArrays, params: tuple[Array, Array, bool, float]
) -> None:
    r"""Block ``k`` of ``gaussian_nll_batch``. With $v = \max(\sigma^2, \epsilon)$ and
    $r = \hat y - y$: $l = \tfrac12(\log v + r^2/v)$ (plus $\tfrac12\log 2\pi$ when ``full``),
    $\partial l/\partial\hat y = r/v$, $\partial^2 l/\partial\hat y^2 = 1/v$,
    $\partial l/\partial\sigma^2 = \tfrac12(1/v - r^2/v^2)$ (through the clamp, as torch);
    a variance shared by a row's D outputs gets the sum of their derivatives. Reference:
    ``torch.nn.functional.gaussian_nll_loss``."""
    pred, targ, w, scale, loss, grad, hess = io
    var, grad_var, full, eps = params
    n, d = pred.shape
    shared = var.shape[1] == 1  # one variance per sample, for its d outputs
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    want_v = grad_var.shape[0] > 0
    constant = HALF_LOG_2PI if full else 0.0
    inv_d = 1.0 / d
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale) * inv_d
        acc = 0.0
        shared_v = 0.0
        for j in range(d):
            v = max(var[i, 0] if shared else var[i, j], eps)
            r = pred[i, j] - targ[i, j]
            q = r / v  # r²/v as q·r: r² alone overflows where the quotient does not
            acc += 0.5 * (math.log(v) + q * r) + constant
            if want_g:
                grad[i, j] = q * f
            if want_h:
                hess[i, j] = f / v
            if want_v:
                dv = 0.5 * (1.0 / v - q * q)
                if shared:
                    shared_v += dv
                else:
                    grad_var[i, j] = dv * f
        loss[i] = acc * inv_d
        if want_v and shared:
            grad_var[i, 0] = shared_v * f


gaussian_nll_batch = driver(gaussian_nll_rows, "var", "grad_var", "full", "eps")


KERNEL = Kernel(GaussianNLLParams, gaussian_nll_batch)
