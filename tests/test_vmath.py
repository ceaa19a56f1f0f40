"""The vectorisable exp, expm1 and log1p of the kernels (service/losses/_vmath.py) against NumPy."""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import pytest

from service.losses import _vmath

EPS = np.finfo(np.float64).eps


def _loop(fn: Callable[[float], float]) -> Callable[[np.ndarray], np.ndarray]:
    @numba.njit
    def apply(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = fn(x[i])
        return out

    return apply  # type: ignore[no-any-return]


def _ulps(got: np.ndarray, want: np.ndarray) -> float:
    keep = want != 0
    return float(np.max(np.abs(got[keep] - want[keep]) / np.abs(want[keep])) / EPS)


RNG = np.random.default_rng(7)


def test_exp_within_one_ulp_from_underflow_to_overflow() -> None:
    x = np.concatenate(
        [
            RNG.uniform(-708, 709.7, 10**6),
            RNG.uniform(-1, 1, 10**5),
            RNG.normal(size=10**5) * 1e-12,
            np.array([0.0, -0.0, 1.0, -1.0, 709.78, -708.3]),
        ]
    )
    assert _ulps(_loop(_vmath.exp)(x), np.exp(x)) <= 1.05


def test_exp_saturates_like_libm() -> None:
    x = np.array([-746.0, -1e300, 710.0, 1e300, -745.1])
    got = _loop(_vmath.exp)(x)
    assert got[0] == 0.0 and got[1] == 0.0
    assert np.isinf(got[2]) and np.isinf(got[3])
    assert got[4] == pytest.approx(np.exp(-745.1), rel=0.5)  # subnormal: few bits left


def test_log1p_near_within_two_ulps() -> None:
    u = np.concatenate(
        [
            RNG.uniform(-0.4999, 1.0, 10**6),
            np.exp(-RNG.uniform(0, 700, 10**5)),  # the softplus tail e^{-|z|}
            RNG.uniform(-1e-12, 1e-12, 10**5),
            np.array([1.0, 0.0, 2**-60, -2**-60, np.sqrt(2) - 1, np.sqrt(0.5) - 1]),
        ]
    )
    assert _ulps(_loop(_vmath.log1p_near)(u), np.log1p(u)) <= 2.0


def test_expm1_small_within_two_ulps() -> None:
    x = np.concatenate([RNG.uniform(-0.7, 0.7, 10**6), RNG.normal(size=10**5) * 1e-15])
    assert _ulps(_loop(_vmath.expm1_small)(x), np.expm1(x)) <= 2.0
