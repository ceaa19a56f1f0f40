"""Circle loss (Sun et al. 2020), as Keras' ``keras.losses.circle``: every embedding of the batch
against the others of its label (positives) and of other labels (negatives), each similarity
re-weighted by how far it is from its optimum.

Keras' form, on embeddings it takes as L2-normalised (it does not normalise them, nor does
lossd): with D_ij = max(1 − x_i·x_j, 0), γ the scale and m the margin,
a_ij = −γ max(m + D_ij, 0)(m − D_ij) for a positive, b_ij = γ max(1 + m − D_ij, 0)(1 − m − D_ij)
for a negative, and l_i = softplus(LSE_{P(i)} a_i + LSE_{N(i)} b_i), 0 for a row without a
positive or without a negative (Keras' log-sum-exp of nothing is −∞). ``remove_diagonal``
(Keras' default true) keeps a row out of its own positives. The weights are not detached, as
Keras does not detach them. Keras' mean divides by the rows whose loss is positive (it masks
the others): lossd's κ_i = 1 for a row with a positive and a negative, which is that row set
wherever softplus does not underflow (its argument above −745).

Derivatives: with σ_i = σ(z_i) for z_i the softplus's argument, π and ρ the softmaxes of a and
b over P(i) and N(i), ∂l_i/∂D_ij = σ_i π_ij a'_ij (positives) or σ_i ρ_ij b'_ij (negatives),
a' = 2γD and b' = −2γ(1 − D) where the weight is positive (0 where it is clipped), and
∂D_ij/∂x_i = −x_j where 1 − x_i·x_j > 0 (0 where the clamp holds; −2x_i for the diagonal). The
Hessian diagonal adds σ_i(1 − σ_i)(∂z_i)² and each log-sum-exp's curvature, exactly.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from ..jit import Array, RowArrays, driver, scalar
from ._binary import sigmoid_pair
from ._embedding import EmbeddingParams
from ._spec import Kernel
from ._stable import log1p_exp, row_factor


class CircleParams(EmbeddingParams):
    """`circle`: Keras' scale γ, margin m and diagonal rule, with its defaults."""

    gamma: float = Field(80.0, gt=0, description="γ: the scale of the similarities")
    margin: float = Field(0.4, description="m: the relaxation of the optima (1 + m, −m)")
    remove_diagonal: bool = Field(True, description="a row is not its own positive")

    def kappa(self, labels: Array) -> Array:
        """κ_i = 1 for a row with a positive and a negative, the rows Keras' mean counts."""
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        own = counts[inverse]
        positive = own > (1 if self.remove_diagonal else 0)
        return np.asarray(positive & (own < labels.shape[0]), dtype=np.float64)


@scalar
def pair_terms(
    dot: float, positive: bool, gamma: float, margin: float
) -> tuple[float, float, float, bool]:
    """(t, ∂t/∂D, ∂²t/∂D², live) of one pair of similarity s = ``dot``: its weighted term (a for
    a positive, b for a negative) at D = max(1 − s, 0), and whether D moves with s (1 − s > 0;
    where the clamp holds, D and so t have slope 0 in the embeddings)."""
    dist = max(1.0 - dot, 0.0)
    live = 1.0 - dot > 0.0
    if positive:
        if margin + dist > 0.0:
            t = -gamma * (margin + dist) * (margin - dist)
            return t, 2.0 * gamma * dist, 2.0 * gamma, live
        return 0.0, 0.0, 0.0, live
    if 1.0 + margin - dist > 0.0:
        t = gamma * (1.0 + margin - dist) * ((1.0 - margin) - dist)
        return t, -2.0 * gamma * (1.0 - dist), 2.0 * gamma, live
    return 0.0, 0.0, 0.0, live


@scalar
def dot_rows(pred: Array, i: int, j: int) -> float:
    """x_i · x_j in float64, summed in the order of the columns."""
    total = 0.0
    for c in range(pred.shape[1]):
        total += float(pred[i, c]) * float(pred[j, c])
    return total


@scalar
def circle_rows(k: int, rows: int, io: RowArrays, params: tuple[float, float, bool]) -> None:
    r"""The whole batch (block 0 of ``circle_batch``, batch-coupled): $l_i =
    \mathrm{softplus}(\mathrm{LSE}_{P(i)}\, a_i + \mathrm{LSE}_{N(i)}\, b_i)$ and the
    derivatives of $\sum_i w_i l_i$."""
    pred, targ, w, scale, loss, grad, hess = io
    n, d = pred.shape
    if n == 0:
        return
    gamma, margin, remove_diagonal = params
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    # per row: each group's maximum and log-sum-exp (shifted), z and σ(z), σ'(z)
    top_p = np.full(n, -np.inf)
    top_n = np.full(n, -np.inf)
    sum_p = np.zeros(n)
    sum_n = np.zeros(n)
    sig = np.zeros(n)
    slope = np.zeros(n)
    live = np.zeros(n, dtype=np.bool_)
    terms = np.empty(n)  # row i's terms a_ij (positives) and b_ij (negatives)
    for i in range(n):
        for j in range(n):
            positive = targ[j] == targ[i]
            if positive and j == i and remove_diagonal:
                continue
            terms[j] = pair_terms(dot_rows(pred, i, j), positive, gamma, margin)[0]
            if positive:
                top_p[i] = max(top_p[i], terms[j])
            else:
                top_n[i] = max(top_n[i], terms[j])
        live[i] = top_p[i] > -np.inf and top_n[i] > -np.inf
        if not live[i]:
            loss[i] = 0.0
            continue
        for j in range(n):
            if j == i and remove_diagonal:
                continue
            if targ[j] == targ[i]:
                sum_p[i] += math.exp(terms[j] - top_p[i])
            else:
                sum_n[i] += math.exp(terms[j] - top_n[i])
        z = top_p[i] + math.log(sum_p[i]) + top_n[i] + math.log(sum_n[i])
        loss[i] = log1p_exp(z)
        big, small = sigmoid_pair(z)
        sig[i] = big
        slope[i] = big * small
    if not (want_g or want_h):
        return
    g = np.zeros(d)
    h = np.zeros(d)
    grad_z = np.zeros(d)  # Σ_j ∂z_k/∂D_kj v_j: the row's own first-order term
    curv_p = np.zeros(d)
    first_p = np.zeros(d)
    curv_n = np.zeros(d)
    first_n = np.zeros(d)
    for k in range(n):
        fk = row_factor(w, k, scale)
        g[:] = 0.0
        h[:] = 0.0
        grad_z[:] = 0.0
        curv_p[:] = 0.0
        first_p[:] = 0.0
        curv_n[:] = 0.0
        first_n[:] = 0.0
        for j in range(n):
            positive = targ[j] == targ[k]
            if positive and j == k and remove_diagonal:
                continue
            dot = dot_rows(pred, k, j)
            t, t1, t2, active = pair_terms(dot, positive, gamma, margin)
            if not active:
                continue
            # row k's weight of this pair (π or ρ) and ∂l_k/∂D_kj
            share_k = 0.0
            if live[k]:
                share_k = math.exp(t - (top_p[k] if positive else top_n[k]))
                share_k /= sum_p[k] if positive else sum_n[k]
            dk = sig[k] * share_k * t1
            if j == k:  # the diagonal: D = 1 − ‖x_k‖², ∂D/∂x = −2x, ∂²D/∂x² = −2
                for col in range(d):
                    v = -2.0 * float(pred[k, col])
                    g[col] += fk * dk * v
                    if want_h:
                        h[col] += fk * dk * -2.0
                        grad_z[col] += share_k * t1 * v
                        first_p[col] += share_k * t1 * v
                        curv_p[col] += share_k * (t1 * t1 + t2) * v * v
                continue
            share_j = 0.0
            if live[j]:
                share_j = math.exp(t - (top_p[j] if positive else top_n[j]))
                share_j /= sum_p[j] if positive else sum_n[j]
            fj = row_factor(w, j, scale)
            dj = sig[j] * share_j * t1
            m = fk * dk + fj * dj
            # H^j_kk: row j's loss through D_jk alone
            curve_j = slope[j] * (share_j * t1) ** 2
            curve_j += sig[j] * (share_j * (t1 * t1 + t2) - (share_j * t1) ** 2)
            for col in range(d):
                v = -float(pred[j, col])
                g[col] += m * v
                if want_h:
                    h[col] += fj * curve_j * v * v
                    grad_z[col] += share_k * t1 * v
                    if positive:
                        first_p[col] += share_k * t1 * v
                        curv_p[col] += share_k * (t1 * t1 + t2) * v * v
                    else:
                        first_n[col] += share_k * t1 * v
                        curv_n[col] += share_k * (t1 * t1 + t2) * v * v
        if want_g:
            for col in range(d):
                grad[k, col] = g[col]
        if want_h:
            for col in range(d):
                own = slope[k] * grad_z[col] * grad_z[col]
                own += sig[k] * (curv_p[col] - first_p[col] ** 2 + curv_n[col] - first_n[col] ** 2)
                hess[k, col] = h[col] + fk * own


circle_batch = driver(circle_rows, "gamma", "margin", "remove_diagonal", coupled=True)


KERNEL = Kernel(CircleParams, circle_batch)
