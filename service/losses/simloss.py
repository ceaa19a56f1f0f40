"""SimLoss (Kobs et al. 2020): cross-entropy that credits probability on similar classes.

Edges (issue 11 audit): log(Σ S p + ε) with p from the stable softmax_entry; no overflow for any
finite logit. Measured: float64 6.1e-9 (the ε inside the log, 1e-8, against exact at |z| = 1e300),
float32 5.6e-8.

Cost (issue 12). With ``ordinal_base``, S_kj = r^|k−j| is never built: every S·x the loss and its
derivatives need is two scans of the row (``ordinal_row``), so a row costs O(C) whatever its
targets, and memory is a few (C,) scratch rows per kernel thread. A given ``similarity`` is an
arbitrary dense matrix; a row visits only the span of its non-zero targets, O(C) for class
indices and O(C²) for soft rows, and no algorithm does soft rows in O(N·C) in general: the
gradient of N rows is −Q·S with q_ik = y_ik/(s_ik + ε), and since the targets y ≥ 0 are free, Q
is any non-negative (N, C) matrix, and S (entries in [0, 1], unit diagonal) any non-negative
matrix up to a scale and a diagonal correction of O(N·C): computing it in O(N·C) would multiply
two n×n matrices in O(n²) time, which no known algorithm does. So a given matrix is budgeted as
what it is (``operations``: C² + N·C², ``working_bytes``: the C×C matrix), and ``matrix``
itself refuses a C whose matrix this process cannot allocate (413, never a MemoryError 500).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..errors import InvalidParams, MemoryBudget
from ..jit import Array, RowArrays, block_range, driver, scalar
from ._checks import require_domain
from ._multiclass import MulticlassParams, Normalize, SoftmaxLogits
from ._spec import ComputeDtype, Kernel, Memo, Prepared, Sent, readonly
from ._stable import row_factor, softmax_entry, softmax_row, target_at

Unit = Annotated[float, Field(ge=0, le=1)]


class SimlossParams(MulticlassParams):
    # p, s = S p and up to three forward scans per class, float64, on every kernel thread
    row_scratch_bytes: ClassVar[int] = 40
    warm_up: ClassVar[dict[str, Any]] = {"ordinal_base": 0.5}
    host_fields: ClassVar[frozenset[str]] = MulticlassParams.host_fields | {
        "similarity",
        "ordinal_base",
    }

    similarity: list[list[Unit]] | None = Field(
        None,
        description="C×C class similarities S (unit diagonal, entries in [0, 1]); "
        "give exactly one of this and ordinal_base",
    )
    ordinal_base: float | None = Field(
        None, ge=0, lt=1, description="r for ordered classes: S_ij = r^|i−j| (0^0 = 1)"
    )
    from_logits: SoftmaxLogits = False
    epsilon: float = Field(1e-8, gt=0, description="added inside the log: −log(Σ_c S_yc p_c + ε)")
    normalize: Normalize = False

    @field_validator("similarity")
    @classmethod
    def _square_with_unit_diagonal(
        cls, value: list[list[float]] | None
    ) -> list[list[float]] | None:
        if value is None:
            return value
        k = len(value)
        if k == 0 or any(len(row) != k for row in value):
            raise ValueError(
                "similarity must be a square C×C matrix (a list of C rows of C numbers)"
            )
        off = [i for i in range(k) if value[i][i] != 1]
        if off:
            i = off[0]
            raise ValueError(
                f"similarity needs a unit diagonal (each class is fully similar to itself); "
                f"entry [{i}][{i}] is {value[i][i]}"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SimlossParams:
        # after the fields, so that neither check depends on the order they are declared in
        if self.similarity is not None and self.ordinal_base is not None:
            raise ValueError(
                "give either similarity (a C×C matrix) or ordinal_base (S_ij = r^|i−j|), not "
                "both: remove one of them"
            )
        if self.similarity is None and self.ordinal_base is None:
            raise ValueError(
                "simloss needs class similarities: give similarity (a C×C matrix with unit "
                "diagonal) or ordinal_base (r in [0, 1): S_ij = r^|i−j|)"
            )
        return self

    def check_domain(self, predictions: Array, targets: Array) -> None:
        require_domain("simloss", predictions, targets, self.from_logits)
        self.require_distributions("simloss", predictions, targets, self.from_logits)

    def matrix(self, classes: int, dtype: ComputeDtype = np.float64) -> Array:
        """S as a (C, C) array of ``dtype``: the given matrix or r^|i−j|; a 413 for a C whose
        matrix this process cannot hold (the memory account refuses it earlier)."""
        if self.similarity is not None and len(self.similarity) != classes:
            k = len(self.similarity)
            raise InvalidParams(
                f"similarity is {k}×{k} but the predictions have {classes} classes; send a "
                f"{classes}×{classes} matrix",
                errors=[(("params", "similarity"), f"needs {classes}×{classes} entries")],
            )
        require_matrix_fits(classes, np.dtype(dtype).itemsize)
        try:
            if self.similarity is not None:
                return np.asarray(self.similarity, dtype=dtype)
            assert self.ordinal_base is not None  # _exactly_one: one of the two is given
            # r^|i−j| is a Toeplitz matrix: row i is a window of (r^(C−1), …, r, 1, r, …, r^(C−1))
            powers = np.power(self.ordinal_base, np.arange(classes), dtype=np.float64)
            both = np.concatenate((powers[:0:-1], powers))
            rows = np.lib.stride_tricks.sliding_window_view(both, classes)[::-1]
            return np.ascontiguousarray(rows, dtype=dtype)
        except MemoryError:
            raise _matrix_too_large(classes, np.dtype(dtype).itemsize, None) from None

    def prepare(
        self, name: str, predictions: Array, targets: Array, dtype: ComputeDtype, memo: Memo
    ) -> Prepared:
        """With ``ordinal_base`` the driver takes r and an empty matrix (it scans, O(C) a row);
        with ``similarity``, S in the compute dtype and r = −1."""
        prepared = super().prepare(name, predictions, targets, dtype, memo)
        if self.ordinal_base is not None:
            matrix, base = NO_MATRIX[np.dtype(dtype)], float(self.ordinal_base)
        else:
            matrix, base = readonly(self.matrix(predictions.shape[1], dtype)), -1.0
        kernel = {**prepared.kernel_params, "similarity": matrix, "ordinal_base": base}
        return replace(prepared, kernel_params=kernel)

    @classmethod
    def working_bytes(
        cls, rows: int, columns: int, itemsize: int, *, sent: Sent = None, indices: bool = False
    ) -> int:
        """The multiclass bound with simloss's row scratch, and the C×C matrix of a given
        ``similarity`` in the compute dtype, unless ``sent`` has an ``ordinal_base`` and no
        ``similarity`` (r^|i−j| is never built)."""
        total = super().working_bytes(rows, columns, itemsize, sent=sent, indices=indices)
        return total + (0 if _ordinal(sent) else columns * columns * itemsize)

    @classmethod
    def operations(cls, rows: int, columns: int, *, sent: Sent = None, targets: Any = None) -> int:
        """N·C with ``ordinal_base`` (scans); a given ``similarity`` is a dense matrix product:
        C² to build S and up to N·C² for soft target rows (the kernel's module docstring says
        why no algorithm does it in O(N·C))."""
        if _ordinal(sent):
            return rows * columns
        return rows * columns + columns * columns * (rows + 1)


def _ordinal(sent: Mapping[str, Any] | None) -> bool:
    """Whether parameters as sent can only be valid as ``ordinal_base`` without a matrix."""
    if sent is None or sent.get("similarity") is not None:
        return False
    base = sent.get("ordinal_base")
    return isinstance(base, int | float) and not isinstance(base, bool)


NO_MATRIX = {np.dtype(t): readonly(np.empty((0, 0), dtype=t)) for t in (np.float64, np.float32)}


def _memory_limit() -> int | None:
    """Bytes this process could still allocate, about: the kernel's MemAvailable, or less
    under a cgroup v2 memory limit; None where neither can be read."""
    limits = []
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            limits.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


def _matrix_too_large(classes: int, itemsize: int, limit: int | None) -> MemoryBudget:
    needed = classes * classes * itemsize
    room = "" if limit is None else f" (about {limit} bytes are free)"
    return MemoryBudget(
        f"simloss's similarity matrix for {classes} classes needs {needed} bytes "
        f"({classes}×{classes} entries of {itemsize} bytes), more than this process can "
        f"allocate{room}; send fewer classes, or ordinal_base without a matrix",
        errors=[(("predictions",), "too many classes for a C×C similarity matrix")],
    )


def require_matrix_fits(classes: int, itemsize: int) -> None:
    """413 ``memory_budget`` for a C×C matrix larger than the memory this process can still
    allocate: a MemoryError (a 500) or the kernel's OOM killer otherwise."""
    limit = _memory_limit()
    if limit is not None and classes * classes * itemsize > limit:
        raise _matrix_too_large(classes, itemsize, limit)


@scalar
def ordinal_row(
    i: int, pred: Array, targ: Array, from_logits: bool, r: float, epsilon: float,
    prob: Array, mixed: Array,
) -> tuple[float, float]:  # fmt: skip
    """(l_i, A) of row i with S_kj = r^|k−j|, leaving p in ``prob`` and s = S p in ``mixed``:
    s_k = F_k + r·B_{k+1}, F_k = p_k + r·F_{k−1} forward and B_k = p_k + r·B_{k+1} backward."""
    c = pred.shape[1]
    top, arg, rest = softmax_row(pred, i) if from_logits else (0.0, 0, 0.0)
    f = 0.0
    for j in range(c):
        p = softmax_entry(pred[i, j], top, rest, j == arg)[0] if from_logits else pred[i, j]
        prob[j] = p
        f = p + r * f
        mixed[j] = f
    b = 0.0
    acc = 0.0
    big_a = 0.0
    for j in range(c - 1, -1, -1):
        s = mixed[j] + r * b
        mixed[j] = s
        b = prob[j] + r * b
        y = target_at(targ, i, j)
        if y != 0.0:
            acc -= y * math.log(s + epsilon)
            big_a -= y * s / (s + epsilon)
    return acc, big_a


@scalar
def ordinal_terms(y: float, s: float, epsilon: float) -> tuple[float, float, float]:
    """(y/(s + ε), y/(s + ε)², y·s/(s + ε)²) of one target class: what the scans spread."""
    if y == 0.0:
        return 0.0, 0.0, 0.0
    den = s + epsilon
    u = y / (den * den)
    return y / den, u, u * s


@scalar
def ordinal_derivatives(
    i: int, targ: Array, f: float, grad: Array, hess: Array,
    from_logits: bool, r: float, epsilon: float, big_a: float,
    prob: Array, mixed: Array, fd: Array, fe: Array, fv: Array,
) -> None:  # fmt: skip
    r"""Row i's gradient and Hessian diagonal (times f) with S symmetric, $S_{kj} = r^{|k-j|}$:
    $D_j = -\sum_k S_{kj} q_k$, $q_k = y_k/(s_k + \varepsilon)$; $\sum_k S_{kj}^2 u_k$ with
    $S_{kj}^2 = (r^2)^{|k-j|}$, $u_k = y_k/(s_k + \varepsilon)^2$; and from logits
    $\sum_k u_k (S_{kj} - s_k)^2 = \sum_k S_{kj}^2 u_k - 2\sum_k S_{kj} u_k s_k
    + \sum_k u_k s_k^2$: three scans, forward into ``fd``, ``fe``, ``fv``, backward here."""
    c = mixed.shape[0]
    want_h = hess.shape[0] > 0
    r2 = r * r
    sd = 0.0
    se = 0.0
    sv = 0.0
    total_v = 0.0  # Σ_k u_k s_k²
    for k in range(c):
        xd, xe, xv = ordinal_terms(target_at(targ, i, k), mixed[k], epsilon)
        sd = xd + r * sd
        fd[k] = sd
        if want_h:
            se = xe + r2 * se
            fe[k] = se
            if from_logits:
                sv = xv + r * sv
                fv[k] = sv
                total_v += xv * mixed[k]
    bd = 0.0
    be = 0.0
    bv = 0.0
    for j in range(c - 1, -1, -1):
        d = -(fd[j] + r * bd)
        e = 0.0
        if want_h:
            e = fe[j] + r2 * be
            if from_logits:  # ≥ 0 exactly; rounding may leave a few ulps below
                e = max(0.0, (e + total_v) - 2.0 * (fv[j] + r * bv))
        xd, xe, xv = ordinal_terms(target_at(targ, i, j), mixed[j], epsilon)
        bd = xd + r * bd
        be = xe + r2 * be
        bv = xv + r * bv
        put_derivatives(grad, hess, i, j, f, prob[j], d, e, big_a, from_logits)


@scalar
def put_derivatives(
    grad: Array, hess: Array, i: int, j: int, f: float,
    p: float, d: float, e: float, big_a: float, from_logits: bool,
) -> None:  # fmt: skip
    """Element (i, j) of the gradient and Hessian (times f), when asked for, from the derivatives
    with respect to the probability p_j (d, e); with logits, through the softmax's chain rule."""
    if from_logits:
        g = p * (d - big_a)
        h = (1.0 - 2.0 * p) * g + p * p * e
    else:
        g = d
        h = e
    if grad.shape[0] > 0:
        grad[i, j] = g * f
    if hess.shape[0] > 0:
        hess[i, j] = h * f


@scalar
def matrix_row(
    i: int, pred: Array, targ: Array, grad: Array, hess: Array, f: float,
    similarity: Array, from_logits: bool, epsilon: float, prob: Array, mixed: Array,
) -> float:  # fmt: skip
    """l_i of row i with a given S, and its derivatives (times f) when asked for: only the span
    of the row's non-zero targets is visited, so index targets cost O(C), soft rows O(C²)."""
    c = pred.shape[1]
    top, arg, rest = softmax_row(pred, i) if from_logits else (0.0, 0, 0.0)
    first = c
    last = -1
    for t in range(c):
        prob[t] = softmax_entry(pred[i, t], top, rest, t == arg)[0] if from_logits else pred[i, t]
        if target_at(targ, i, t) != 0.0:
            first = min(first, t)
            last = t
    acc = 0.0
    big_a = 0.0
    for t in range(first, last + 1):
        y = target_at(targ, i, t)
        if y == 0.0:
            continue
        s = 0.0
        for j in range(c):
            s += similarity[t, j] * prob[j]
        mixed[t] = s  # s_t of the row's target classes t (k in the formula)
        acc -= y * math.log(s + epsilon)
        big_a -= y * s / (s + epsilon)
    if grad.shape[0] == 0 and hess.shape[0] == 0:
        return acc
    for j in range(c):
        p = prob[j]
        d = 0.0
        e = 0.0
        for t in range(first, last + 1):
            y = target_at(targ, i, t)
            if y == 0.0:
                continue
            den = mixed[t] + epsilon
            d -= y * similarity[t, j] / den
            spread = similarity[t, j] - mixed[t] if from_logits else similarity[t, j]
            e += y * spread * spread / (den * den)
        put_derivatives(grad, hess, i, j, f, p, d, e, big_a, from_logits)
    return acc


@scalar
def simloss_rows(
    k: int, rows: int, io: RowArrays, params: tuple[Array, float, bool, float]
) -> None:
    """Block ``k`` of ``simloss_batch``: rows ``k·rows`` to ``(k + 1)·rows``."""
    pred, targ, w, scale, loss, grad, hess = io
    similarity, ordinal_base, from_logits, epsilon = params
    n, c = pred.shape
    ordinal = ordinal_base >= 0.0
    want_d = grad.shape[0] > 0 or hess.shape[0] > 0
    scan_e = ordinal and hess.shape[0] > 0
    # float64 row scratch: p, s = S p, and the forward scans of the derivatives
    prob = np.empty(c)
    mixed = np.empty(c)
    fd = np.empty(c if ordinal and want_d else 0)
    fe = np.empty(c if scan_e else 0)
    fv = np.empty(c if scan_e and from_logits else 0)
    for i in block_range(k, rows, n):
        f = row_factor(w, i, scale)
        if ordinal:
            acc, big_a = ordinal_row(i, pred, targ, from_logits, ordinal_base, epsilon, prob,
                                     mixed)  # fmt: skip
            loss[i] = acc
            if want_d:
                ordinal_derivatives(i, targ, f, grad, hess, from_logits, ordinal_base, epsilon,
                                    big_a, prob, mixed, fd, fe, fv)  # fmt: skip
        else:
            loss[i] = matrix_row(i, pred, targ, grad, hess, f, similarity, from_logits, epsilon,
                                 prob, mixed)  # fmt: skip


simloss_batch = driver(simloss_rows, "similarity", "ordinal_base", "from_logits", "epsilon")


KERNEL = Kernel(SimlossParams, simloss_batch)
