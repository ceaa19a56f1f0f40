"""The house numba decorators: one place for the JIT options, with the reasons.

- ``cache=True``: compiled kernels are written to numba's on-disk cache, so a second start loads
  them instead of compiling them again.
- ``nogil=True``: a kernel releases the GIL, so the event loop and other requests keep running
  while a large batch is computed on the compute executor.
- ``error_model="numpy"``: division by zero gives inf/nan as in NumPy instead of raising; the
  engine checks results for finiteness and answers 422, which is cheaper than a branch per element.
- no ``fastmath``: it lets LLVM assume there are no NaN or inf values and reassociate sums, which
  changes results and defeats the finiteness checks.

``scalar`` is for the small per-element kernels (inlined into the drivers by LLVM); ``batch`` is
for the ``prange`` drivers that write every requested output in one pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy.typing as npt

Array = npt.NDArray[Any]
F = TypeVar("F", bound=Callable[..., Any])

_COMMON: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}
_scalar = numba.njit(**_COMMON)
_batch = numba.njit(parallel=True, **_COMMON)
prange: Callable[..., range] = numba.prange


def scalar(fn: F) -> F:
    """Compile a small scalar kernel (value, gradient, Hessian of one element)."""
    return cast(F, _scalar(fn))


def batch(fn: F) -> F:
    """Compile a parallel batch driver."""
    return cast(F, _batch(fn))
