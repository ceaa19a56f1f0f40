"""exp, expm1 and log1p that LLVM can vectorise.

numba lowers ``math.exp`` and ``math.log1p`` to scalar libm calls (4–7 ns each here), and only an
SVML-enabled llvmlite, which the PyPI wheels are not, turns them into SIMD calls. These versions
are straight-line arithmetic, with selects instead of branches, and are inlined into the caller's
numba IR (``inline``), so a loop over them vectorises (8 float64 lanes with AVX-512): the
transcendental-bound kernels run several times faster (docs/benchmarks.md, Kernels).

Accuracy, measured against NumPy on 10⁶ points per range (tests/test_vmath.py): ``exp`` within
1 ulp on [−745, 709.8]; ``log1p_near`` within 2 ulp on (−0.5, 1]; ``expm1_small`` within 2 ulp
on [−0.7, 0.7]. Inputs are finite (the engine rejects NaN and infinity before a kernel runs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
from numba import types
from numba.extending import intrinsic

from ..jit import inline

LOG2E = 1.4426950408889634
# ln 2 split so that n·LN2_HI is exact for |n| < 2^11 (Cody and Waite)
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
SQRT2 = math.sqrt(2.0)
SQRT_HALF = math.sqrt(0.5)
EXP_MIN = -745.2  # below: e^x rounds to 0
EXP_MAX = 709.8  # above: e^x overflows


@intrinsic
def _bitcast(typingctx: Any, bits: Any) -> Any:
    """The float64 whose IEEE-754 bits are the int64 ``bits`` (a register move)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(bits), codegen


float_from_bits: Callable[[Any], float] = cast(Any, _bitcast)  # numba adds the typing context


@inline
def exp(x: float) -> float:
    """e^x: x = n ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor polynomial to r^13 (the first
    left-out term is below 2^-57), times 2^n built from exponent bits as 2^(n//2)·2^(n−n//2), so
    that both factors stay normal from the underflow to the overflow threshold."""
    x = min(max(x, EXP_MIN), EXP_MAX)
    n = math.floor(x * LOG2E + 0.5)
    r = (x - n * LN2_HI) - n * LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    k = np.int64(n)
    half = k >> 1
    return p * float_from_bits((half + 1023) << 52) * float_from_bits((k - half + 1023) << 52)


@inline
def expm1_small(x: float) -> float:
    """e^x − 1 for |x| ≤ 0.7 by its Taylor polynomial to x^18 (relative error below 2^-53)."""
    p = 1.0 / 6402373705728000.0
    p = p * x + 1.0 / 355687428096000.0
    p = p * x + 1.0 / 20922789888000.0
    p = p * x + 1.0 / 1307674368000.0
    p = p * x + 1.0 / 87178291200.0
    p = p * x + 1.0 / 6227020800.0
    p = p * x + 1.0 / 479001600.0
    p = p * x + 1.0 / 39916800.0
    p = p * x + 1.0 / 3628800.0
    p = p * x + 1.0 / 362880.0
    p = p * x + 1.0 / 40320.0
    p = p * x + 1.0 / 5040.0
    p = p * x + 1.0 / 720.0
    p = p * x + 1.0 / 120.0
    p = p * x + 1.0 / 24.0
    p = p * x + 1.0 / 6.0
    p = p * x + 0.5
    p = p * x + 1.0
    return p * x


@inline
def log1p_near(u: float) -> float:
    """log(1 + u) for u in (−0.5, 1]: w = 1 + u = 2^e·m with m in [√½, √2] and e in {−1, 0, 1},
    log m = 2 atanh s with s = (m − 1)/(m + 1), |s| ≤ 0.172, to s^21; the rounding error of w
    itself, (w − 1) − u, is added back as its first-order term, so tiny u keeps full accuracy."""
    w = 1.0 + u
    lost = (w - 1.0) - u
    high = w > SQRT2
    low = w < SQRT_HALF
    m = 0.5 * w if high else (2.0 * w if low else w)
    e = 1.0 if high else (-1.0 if low else 0.0)
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    q = 1.0 / 21.0
    q = q * z + 1.0 / 19.0
    q = q * z + 1.0 / 17.0
    q = q * z + 1.0 / 15.0
    q = q * z + 1.0 / 13.0
    q = q * z + 1.0 / 11.0
    q = q * z + 1.0 / 9.0
    q = q * z + 1.0 / 7.0
    q = q * z + 1.0 / 5.0
    q = q * z + 1.0 / 3.0
    log_m = 2.0 * s + 2.0 * s * (q * z)
    return e * LN2_HI + (log_m + e * LN2_LO) - lost / w
