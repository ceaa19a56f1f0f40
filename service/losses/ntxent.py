"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020), as
optax's ``ntxent``: for every positive pair (i, p) of the batch, the cross-entropy of p among
p and row i's negatives, over cosine similarities divided by the temperature τ.

With s_ij = cos(x_i, x_j)/τ, P(i) the other rows of i's label and N(i) the rows of other
labels, l_i = Σ_{p ∈ P(i)} [log(e^{s_ip} + Σ_{n ∈ N(i)} e^{s_in}) − s_ip]: optax's loss is
Σ_i l_i / Σ_i |P(i)|, lossd's mean with κ_i = |P(i)| (``_embedding``). The norms are optax's,
√max(‖x‖², ε) with ε the compute dtype's machine epsilon, so a zero row has a zero gradient
rather than none; norms are taken without overflow (``unit_rows``). The exponentials are shifted by each row's largest similarity, as optax
shifts them.

Derivatives: with e_ij = e^{s_ij − m_i}, A_i = Σ_{n ∈ N(i)} e_in and π_ip = e_ip/(e_ip + A_i),
∂l_i/∂s_ip = π_ip − 1 and ∂l_i/∂s_in = e_in Σ_p 1/(e_ip + A_i); they reach the embeddings
through ∂s_ij/∂x_i = (u_j − cos_ij u_i)/(τ r_i), u = x/r. The Hessian diagonal adds the
curvature of each log-sum-exp (diag π − ππᵀ over {p} ∪ N(i)) and of the cosine,
∂²s_ij/∂x_id² = (3 cos_ij u_id² − 2 u_id u_jd − cos_ij)/(τ r_i²), exactly, in O(N²D).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from ..jit import Array, RowArrays, driver, scalar
from ._embedding import EmbeddingParams
from ._spec import ComputeDtype, Kernel, Memo, Prepared
from ._stable import row_factor


class NtxentParams(EmbeddingParams):
    """`ntxent`: the temperature τ, optax's default."""

    temperature: float = Field(0.07, gt=0, description="τ: similarities are cos / τ")

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """The labels, κ, and the norms' floor ε: the compute dtype's machine epsilon."""
        prepared = super().prepare(name, predictions, targets, dtype, memo)
        params: dict[str, Any] = {**prepared.kernel_params, "epsilon": float(np.finfo(dtype).eps)}
        return Prepared(prepared.targets, params, prepared.kappa)


@scalar
def unit_rows(pred: Array, epsilon: float) -> tuple[Array, Array, Array]:
    """(u, r, clipped): u_i = x_i / r_i with r_i = √max(‖x_i‖², ε), optax's safe norm, and
    whether the floor is active (r_i then a constant). The norm is taken of x_i / max_c |x_ic|
    (as hypot does), so a row of norm 1e300 or 1e-300 has its exact direction, where ‖x_i‖²
    would overflow or vanish."""
    n, d = pred.shape
    u = np.empty((n, d))
    r = np.empty(n)
    clipped = np.zeros(n, dtype=np.bool_)
    floor = math.sqrt(epsilon)
    for i in range(n):
        top = 0.0
        for c in range(d):
            top = max(top, abs(float(pred[i, c])))
        square = 0.0
        if top > 0.0:
            for c in range(d):
                square += (float(pred[i, c]) / top) ** 2
        norm = top * math.sqrt(square)
        clipped[i] = norm <= floor
        r[i] = floor if clipped[i] else norm
        for c in range(d):
            if clipped[i]:
                u[i, c] = float(pred[i, c]) / floor
            else:
                u[i, c] = (float(pred[i, c]) / top) / math.sqrt(square)
    return u, r, clipped


@scalar
def cosine(u: Array, i: int, j: int) -> float:
    """u_i · u_j, summed in the order of the columns."""
    total = 0.0
    for c in range(u.shape[1]):
        total += u[i, c] * u[j, c]
    return total


@scalar
def ntxent_rows(k: int, rows: int, io: RowArrays, params: tuple[float, float]) -> None:
    r"""The whole batch (block 0 of ``ntxent_batch``, batch-coupled): $l_i = \sum_{p \in P(i)}
    \log(e^{s_{ip}} + \sum_{n \in N(i)} e^{s_{in}}) - s_{ip}$ and the derivatives of
    $\sum_i w_i l_i$."""
    pred, targ, w, scale, loss, grad, hess = io
    n, d = pred.shape
    if n == 0:
        return
    tau, epsilon = params
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    u, r, clipped = unit_rows(pred, epsilon)
    top = np.full(n, -np.inf)  # m_i: the row's largest similarity
    neg = np.zeros(n)  # A_i
    inv = np.zeros(n)  # Σ_p 1/(e_ip + A_i)
    inv2 = np.zeros(n)  # Σ_p 1/(e_ip + A_i)²
    sims = np.empty(n)
    for i in range(n):
        for j in range(n):
            sims[j] = cosine(u, i, j) / tau
            if j != i:
                top[i] = max(top[i], sims[j])
        for j in range(n):
            if targ[j] != targ[i]:
                neg[i] += math.exp(sims[j] - top[i])
        total = 0.0
        for j in range(n):
            if j != i and targ[j] == targ[i]:
                e = math.exp(sims[j] - top[i])
                total += math.log(e + neg[i]) - (sims[j] - top[i])
                inv[i] += 1.0 / (e + neg[i])
                inv2[i] += 1.0 / ((e + neg[i]) * (e + neg[i]))
        loss[i] = total
    if not (want_g or want_h):
        return
    g = np.zeros(d)  # Σ_j M_kj u_j
    q = np.zeros(d)  # Σ_{n ∈ N(k)} e_kn v_n
    q2 = np.zeros(d)  # Σ_{n ∈ N(k)} e_kn v_n²
    h = np.zeros(d)
    for k in range(n):
        fk = row_factor(w, k, scale)
        g[:] = 0.0
        q[:] = 0.0
        q2[:] = 0.0
        h[:] = 0.0
        along = 0.0  # Σ_j M_kj cos_kj
        rk = r[k]
        for j in range(n):
            if j == k:
                continue
            c = cosine(u, k, j)
            s = c / tau
            fj = row_factor(w, j, scale)
            ek = math.exp(s - top[k])
            ej = math.exp(s - top[j])
            same = targ[j] == targ[k]
            if same:  # j is a positive of k and k of j
                pk = ek / (ek + neg[k])
                pj = ej / (ej + neg[j])
                dk, dj = pk - 1.0, pj - 1.0
                curve_j = pj * (1.0 - pj)
            else:
                dk, dj = ek * inv[k], ej * inv[j]
                curve_j = ej * inv[j] - ej * ej * inv2[j]
            m = fk * dk + fj * dj
            along += m * c
            for col in range(d):
                g[col] += m * u[j, col]
            if not want_h:
                continue
            for col in range(d):
                if clipped[k]:
                    v = u[j, col] / (tau * rk)
                    second = 0.0
                else:
                    v = (u[j, col] - c * u[k, col]) / (tau * rk)
                    second = 3.0 * c * u[k, col] * u[k, col] - 2.0 * u[k, col] * u[j, col] - c
                    second /= tau * rk * rk
                # row j's loss through s_jk alone, and row k's first-order part
                h[col] += fj * curve_j * v * v + m * second
                if not same:
                    q[col] += ek * v
                    q2[col] += ek * v * v
        if want_g:
            for col in range(d):
                if clipped[k]:
                    grad[k, col] = g[col] / (tau * rk)
                else:
                    grad[k, col] = (g[col] - along * u[k, col]) / (tau * rk)
        if not want_h:
            continue
        # row k's log-sum-exps: Σ_p (e_p v_p² + Q2)/D_p − ((e_p v_p + Q)/D_p)², D_p = e_p + A_k
        for j in range(n):
            if j == k or targ[j] != targ[k]:
                continue
            c = cosine(u, k, j)
            ek = math.exp(c / tau - top[k])
            den = ek + neg[k]
            for col in range(d):
                if clipped[k]:
                    v = u[j, col] / (tau * rk)
                else:
                    v = (u[j, col] - c * u[k, col]) / (tau * rk)
                first = (ek * v + q[col]) / den
                h[col] += fk * ((ek * v * v + q2[col]) / den - first * first)
        for col in range(d):
            hess[k, col] = h[col]


ntxent_batch = driver(ntxent_rows, "temperature", "epsilon", coupled=True)


KERNEL = Kernel(NtxentParams, ntxent_batch)
