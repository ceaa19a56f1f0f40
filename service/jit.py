"""The house numba decorators: one place for the JIT options, with the reasons.

- ``cache=True``: compiled kernels are written to numba's on-disk cache, so a second start loads
  them instead of compiling them again.
- ``nogil=True``: a kernel releases the GIL, so the event loop and other requests keep running
  while a large batch is computed on the compute executor.
- ``error_model="numpy"``: division by zero gives inf/nan as in NumPy instead of raising; the
  engine checks results for finiteness and answers 422, which is cheaper than a branch per element.
- no ``fastmath``: it lets LLVM assume there are no NaN or inf values and reassociate sums, which
  changes results and defeats the finiteness checks.

``scalar`` is for the small per-element kernels (inlined into the drivers by LLVM); ``inline``
for the math helpers of loops that must vectorise; ``batch`` is for the drivers that write every
requested output in one pass.

Every driver is one function, written once below (``_driver``) and made per loss by ``driver``:
``<name>_batch(pred, targ, w, scale, loss, grad, hess, *params)`` cuts the batch into blocks of
``block_rows`` rows and hands each to the loss's ``@scalar`` row function ``<name>_rows(k, rows,
io, params)`` (block ``k`` of ``rows`` rows; ``io`` the seven arrays as one ``RowArrays`` tuple,
which the row function unpacks), on the calling thread up to
``SERIAL_ELEMENTS`` elements and in ``prange`` beyond. A parallel launch costs microseconds back
to back, tens of them once the pool has gone idle and milliseconds when another process holds a
core: more than a small batch's whole work (docs/benchmarks.md, Threads). A block of
``BLOCK_ELEMENTS`` elements stays in L2 while its row function works on it. Row functions loop
over ``block_range``, unsigned indices: numba wraps a negative signed index around, and that
select on every element keeps LLVM from vectorising the loop.

A loss's parameters are named once, in its ``driver(<name>_rows, "delta", ...)`` call, which
``LossSpec.kernel_args`` binds them by; past it every loss has the same calling convention
whatever its number of parameters: row functions take ``params``, elementwise point functions
``<name>_point(p, t, params)``, and each unpacks the tuple where it uses it.

A batch-coupled loss (a row's loss depends on other rows: a Cox risk set, the other embeddings of
a contrastive batch) cannot be cut into blocks: its driver hands the whole batch to its row
function as block 0, on the calling thread (``driver(..., coupled=True)``).

Why a made function and not a closure: numba caches a closure under a key that pickles its free
variables, and a dispatcher pickles with a random id, so a closure's kernels would be compiled
afresh at every start. ``specialise`` gives the one code object new globals instead (the row or
point function it calls) and the loss's own name; numba caches it per name like any kernel.

Numba freezes this module's globals at compile time; the kernel cache is keyed by the kernel
sources, this module included (``service/kernel_cache.py``), so an edit here recompiles every
kernel at the next start.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
# What a driver hands its row function: (pred, targ, w, scale, loss, grad, hess), one tuple, so
# that the calling convention is written here once and not in every row function's signature.
RowArrays = tuple[Array, Array, Array, float, Array, Array, Array]
F = TypeVar("F", bound=Callable[..., Any])

_COMMON: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}
_scalar = numba.njit(**_COMMON)
_inline = numba.njit(inline="always", **_COMMON)
_batch = numba.njit(parallel=True, **_COMMON)
prange: Callable[..., range] = numba.prange


def scalar(fn: F) -> F:
    """Compile a small scalar kernel (value, gradient, Hessian of one element)."""
    return cast(F, _scalar(fn))


def inline(fn: F) -> F:
    """Compile a scalar helper that is inlined into its callers' numba IR. LLVM inlines a plain
    ``scalar`` call too, but only after the loop vectoriser has given up on a loop that calls a
    helper that calls another; a loop over ``inline`` helpers vectorises (see ``_vmath``)."""
    return cast(F, _inline(fn))


def batch(fn: F) -> F:
    """Compile a batch driver (parallel beyond ``SERIAL_ELEMENTS``)."""
    return cast(F, _batch(fn))


SERIAL_ELEMENTS = 1 << 12
BLOCK_ELEMENTS = 1 << 12
MIN_BLOCKS = 16


@scalar
def block_rows(n: int, d: int) -> int:
    """Rows per block of an (n, d) batch: all of them up to ``SERIAL_ELEMENTS`` elements (the
    batch runs on the calling thread), else about ``BLOCK_ELEMENTS`` elements and at least
    ``MIN_BLOCKS`` blocks: ``prange`` hands each thread an equal run of blocks, and with a few
    blocks, a thread with one block more than the others sets the time."""
    if n * d <= SERIAL_ELEMENTS:
        return max(1, n)
    return max(1, min(BLOCK_ELEMENTS // d, -(-n // MIN_BLOCKS)))


@inline
def block_range(k: int, rows: int, n: int) -> range:
    """The rows of block ``k`` of an n-row batch cut into blocks of ``rows`` rows, as unsigned
    indices (see above)."""
    return range(np.uint64(k * rows), np.uint64(min(n, (k + 1) * rows)))


def specialise(template: Callable[..., Any], name: str, module: str, **globals_: Any) -> Any:
    """``template``'s code as a function named ``name`` of ``module`` whose globals are
    ``template``'s plus ``globals_``: one written-out kernel, many compiled (and cached) ones."""
    function = types.FunctionType(template.__code__, {**template.__globals__, **globals_}, name)
    function.__qualname__ = name
    function.__module__ = module
    return function


def _rows(k: int, rows: int, io: RowArrays, params: tuple[Any, ...]) -> None:
    """The row function of ``_driver``: each specialised copy's is the loss's ``<name>_rows``."""
    raise NotImplementedError


# Whether a specialised copy's loss is batch-coupled (``driver(..., coupled=True)``): a global,
# so numba folds it into a constant and each copy keeps its own branch only.
_COUPLED = False


def _driver(
    pred: Array, targ: Array, w: Array, scale: float, loss: Array, grad: Array, hess: Array,
    *params: Any,
) -> None:  # fmt: skip
    """Every loss's driver (``driver``): blocks of ``block_rows`` rows, each to ``_rows``; a
    batch-coupled loss's row function takes the whole batch as block 0, on this thread."""
    n, d = pred.shape
    io = (pred, targ, w, scale, loss, grad, hess)
    if _COUPLED:
        _rows(0, max(n, 1), io, params)
        return
    rows = block_rows(n, d)
    if n * d <= SERIAL_ELEMENTS:  # on this thread: a parallel launch costs more than the work
        for k in range(-(-n // rows)):
            _rows(k, rows, io, params)
        return
    for k in prange(-(-n // rows)):
        _rows(k, rows, io, params)


def driver(rows: Any, *names: str, coupled: bool = False) -> Any:
    """The batch driver ``<name>_batch`` of the row function ``<name>_rows``, taking the loss's
    kernel parameters ``names`` in that order after the seven arrays (``kernel_names``).
    ``coupled``: the loss is batch-coupled (a row's loss depends on other rows), and its row
    function is called once, with every row as block 0."""
    python = rows.py_func
    name = python.__name__.removesuffix("_rows") + "_batch"
    function = specialise(_driver, name, python.__module__, _rows=rows, _COUPLED=coupled)
    function.kernel_names = names
    # a coupled driver never reaches its prange: compiled serial (numba warns of a parallel
    # function it cannot parallelise)
    return (_scalar if coupled else _batch)(function)
