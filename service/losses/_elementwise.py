"""The row functions of the elementwise losses, written once: ``l_i = mean_j point(p_ij, t_ij)``.

A loss whose value is a mean of one scalar function over its columns writes only that function,
``<name>_point(p, t, params) -> (l, l', l'')``, and takes its row function from
``elementwise_rows``: ``_rows`` below, specialised to the point function and a layout and named
after the loss, so numba compiles (and caches) it per loss as if it were written out in the
loss's module (``jit.specialise``). The layouts give the same bits wherever they overlap; they
differ only in how a single column is laid out for LLVM's vectoriser.
"""

from __future__ import annotations

from typing import Any, Literal

from ..jit import RowArrays, block_range, scalar, specialise
from ._stable import row_factor

Layout = Literal["rows", "outputs", "column"]


def _point(p: float, t: float, params: Any) -> tuple[float, float, float]:
    """The point function of a layout: each specialised copy's is the loss's ``<name>_point``."""
    raise NotImplementedError


# The layout of each specialised copy: a global, so numba folds it into a constant and each copy
# keeps the branches of its own layout only.
_LAYOUT = 0
_LAYOUTS = {"rows": 0, "outputs": 1, "column": 2}


def _rows(k: int, rows: int, io: RowArrays, params: Any) -> None:
    """Block ``k`` of the loss's driver: rows ``k·rows`` to ``(k + 1)·rows``, each the mean of
    ``_point`` over its columns. Layouts ``outputs`` (cheap point functions) and ``column``
    (point functions of ``_vmath`` helpers) lay a single column out for the vectoriser."""
    pred, targ, w, scale, loss, grad, hess = io
    n, d = pred.shape
    block = block_range(k, rows, n)
    want_g = grad.shape[0] > 0
    want_h = hess.shape[0] > 0
    if _LAYOUT == 1 and d == 1 and w.shape[0] == 0:
        # (N,) unweighted: one flat loop per output, each vectorised with plain stores. In one
        # loop an `if` around a store becomes a masked vector store, and into an empty output the
        # flat indices run onto unmapped pages, where even masked-off stores take microcode's
        # slow path (mse at 1e7: 75 ms instead of 10). The block's inputs stay in L2 meanwhile.
        p, t = pred.reshape(-1), targ.reshape(-1)
        for i in block:
            # 0.0 +: the bits of the row mean below (never −0.0)
            loss[i] = 0.0 + _point(p[i], t[i], params)[0]
        if want_g:
            g1 = grad.reshape(-1)
            for i in block:
                g1[i] = _point(p[i], t[i], params)[1] * scale
        if want_h:
            h1 = hess.reshape(-1)
            for i in block:
                h1[i] = _point(p[i], t[i], params)[2] * scale
        return
    if _LAYOUT == 2 and d == 1:
        # one column: one flat loop over the block, which LLVM vectorises (exp, expm1 and log1p
        # are _vmath's); the general loop below runs over one element per row
        p, t = pred.reshape(n), targ.reshape(n)
        g2, h2 = grad.reshape(grad.shape[0]), hess.reshape(hess.shape[0])
        for i in block:
            v, g, h = _point(p[i], t[i], params)
            f = row_factor(w, i, scale)
            loss[i] = v
            if want_g:
                g2[i] = g * f
            if want_h:
                h2[i] = h * f
        return
    inv_d = 1.0 / d
    for i in block:
        f = row_factor(w, i, scale) * inv_d
        acc = 0.0
        for j in range(d):
            v, g, h = _point(pred[i, j], targ[i, j], params)
            acc += v
            if want_g:
                grad[i, j] = g * f
            if want_h:
                hess[i, j] = h * f
        loss[i] = acc * inv_d


def elementwise_rows(point: Any, layout: Layout = "rows") -> Any:
    """The row function ``<name>_rows`` of the point function ``<name>_point``, in ``layout``."""
    python = point.py_func
    name = python.__name__.removesuffix("_point") + "_rows"
    function = specialise(_rows, name, python.__module__, _point=point, _LAYOUT=_LAYOUTS[layout])
    return scalar(function)
