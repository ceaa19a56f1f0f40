"""Multilabel soft-margin loss, as torch.nn.MultiLabelSoftMarginLoss: the logistic loss of each
class's logit, weighted per class, averaged over the classes.

Edges: log σ(z) and log σ(−z) from ``sigmoid_logs`` (one exp of −|z|, never overflowing), so any
finite logit gives a finite loss, gradient and Hessian; the gradient (1 − y)σ(z) − y·σ(−z) has no
cancellation where σ(z) → 1.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from ..errors import InvalidParams
from ..jit import Array, RowArrays, block_range, driver, scalar
from ._binary import sigmoid_logs
from ._checks import require_in_unit_interval
from ._spec import ComputeDtype, Kernel, LossParams, Memo, NonNegative, Prepared, readonly
from ._stable import row_factor


class MultilabelSoftMarginParams(LossParams):
    host_fields: ClassVar[frozenset[str]] = frozenset({"weight"})

    weight: NonNegative | Annotated[list[NonNegative], Field(min_length=1)] | None = Field(
        None,
        description="weight w_c of each class's term (torch's `weight`): one number, or one per "
        "column (C entries); null means 1",
    )

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """The driver takes ``weight`` as (C,) weights in the compute dtype."""
        prepared = super().prepare(name, predictions, targets, dtype, memo)
        columns = prepared.targets.shape[1]  # rank-1 inputs are one column
        weights = readonly(self._weights(columns).astype(dtype))
        return replace(prepared, kernel_params={**prepared.kernel_params, "weight": weights})

    def _weights(self, columns: int) -> Array:
        if self.weight is None:
            return np.ones(columns)
        if isinstance(self.weight, list):
            if len(self.weight) != columns:
                raise InvalidParams(
                    f"weight has {len(self.weight)} entries; the predictions have {columns} "
                    f"column{'s' if columns != 1 else ''} (C, the last dimension; 1 for rank-1 "
                    "predictions): send C numbers or a single number",
                    errors=[(("params", "weight"), f"needs {columns} entries")],
                )
            return np.asarray(self.weight, dtype=np.float64)
        return np.full(columns, self.weight)

    def check_domain(self, predictions: Array, targets: Array) -> None:
        """Targets are labels in [0, 1] (soft labels allowed); the predictions are logits."""
        require_in_unit_interval(targets, "multilabel_soft_margin")


@scalar
def multilabel_soft_margin_rows(k: int, rows: int, io: RowArrays, params: tuple[Array]) -> None:
    r"""Block ``k`` of ``multilabel_soft_margin_batch``: rows ``k·rows`` to ``(k + 1)·rows``.

    $l_i = -\frac1C\sum_c w_c[y\log\sigma(z) + (1 - y)\log\sigma(-z)]$,
    $\partial l_i/\partial z_c = w_c((1 - y)\sigma(z) - y\,\sigma(-z))/C$ and
    $\partial^2 l_i/\partial z_c^2 = w_c\,\sigma(z)\sigma(-z)/C$.
    """
    pred, targ, w, scale, loss, grad, hess = io
    (weight,) = params
    n, c = pred.shape
    inv_c = 1.0 / c
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale) * inv_c
        acc = 0.0
        for j in range(c):
            y = targ[i, j]
            s, q, log_s, log_q = sigmoid_logs(pred[i, j])
            acc += weight[j] * -(y * log_s + (1.0 - y) * log_q)
            if want_g:
                grad[i, j] = weight[j] * ((1.0 - y) * s - y * q) * f
            if want_h:
                hess[i, j] = weight[j] * s * q * f
        loss[i] = acc * inv_c


multilabel_soft_margin_batch = driver(multilabel_soft_margin_rows, "weight")


KERNEL = Kernel(MultilabelSoftMarginParams, multilabel_soft_margin_batch)
