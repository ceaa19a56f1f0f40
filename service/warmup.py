"""Start-up: compile, or load from numba's cache, every kernel a request can reach, and count
how the kernels got there (``/readyz`` reports it)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from numba.core.dispatcher import Dispatcher

from . import core
from .codecs.base64 import Base64
from .codecs.jsontext import LIFT_MIN, dumps
from .codecs.loss import evaluate_one
from .losses import REGISTRY, LossSpec


def warm_up(specs: tuple[LossSpec, ...] = REGISTRY) -> None:
    """Compile, or load from numba's cache, every signature a request can reach."""
    big = np.zeros(LIFT_MIN // 8 + 1)
    wire = {"dtype": "float64", "shape": [big.size], "data": Base64(big)}
    body = dumps({"predictions": wire, "targets": wire, "array_format": "packed"}).tobytes()
    evaluate_one(REGISTRY[0].name, body, big.size)  # the body scan and the base64 kernels
    for spec in specs:
        params = spec.params.model_validate(spec.params.warm_up)
        # predictions 0.5 and one-hot targets are in every loss's domain: probability rows and
        # target rows that are distributions, counts, hinge labels (0 stands for -1), masks
        predictions, targets = np.full((2, 2), 0.5), np.eye(2)
        for weight in (None, np.ones(2)):
            batch = core.Batch(predictions, targets, weight)
            for dtype in core.DTYPES:
                options = core.Options(dtype=dtype, gradient=True, hessian=spec.hessian)  # type: ignore[arg-type]
                core.evaluate(spec, params, batch, options)


@dataclass(frozen=True)
class KernelCounts:
    """Kernel signatures this process loaded from numba's on-disk cache, and those it compiled."""

    cached: int
    compiled: int


def kernel_counts() -> KernelCounts:
    """Cache hits and fresh compilations so far, over every numba dispatcher in lossd's modules.

    A start whose warm-up compiled nothing was served entirely by the cache (the Docker image's
    baked one, say); numba counts both per signature in ``Dispatcher.stats``.
    """
    package = __name__.partition(".")[0]
    dispatchers = {
        id(obj): obj
        for name, module in list(sys.modules.items())
        if name == package or name.startswith(f"{package}.")
        for obj in list(vars(module).values())
        if isinstance(obj, Dispatcher)
    }
    stats = [dispatcher.stats for dispatcher in dispatchers.values()]
    return KernelCounts(
        cached=sum(sum(s.cache_hits.values()) for s in stats),
        compiled=sum(sum(s.cache_misses.values()) for s in stats),
    )
