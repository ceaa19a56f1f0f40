"""Start-up: compile, or load from numba's cache, every kernel a request can reach, and count
how the kernels got there (``/readyz`` reports it); a cache that fails costs compilations, never
the start (``guard_caches``)."""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numba.core.caching import NullCache, _Cache
from numba.core.dispatcher import Dispatcher

from . import core, kernel_cache
from .codecs.base64 import Base64
from .codecs.jsontext import LIFT_MIN, dumps
from .codecs.loss import evaluate_one
from .jit import Array
from .losses import REGISTRY, LossSpec, resolve

log = logging.getLogger("lossd")


# The losses a cold start compiles first: the most asked for (regression, binary and multiclass
# defaults), so that the requests a newcomer sends first are served while the rest compile.
FIRST = ("mse", "binary_cross_entropy", "cross_entropy", "mae", "huber")


def warm_up_order() -> tuple[LossSpec, ...]:
    """Every loss, ``FIRST`` first and the rest in catalogue order."""
    first = tuple(resolve(name) for name in FIRST)
    return first + tuple(spec for spec in REGISTRY if spec not in first)


def warm_up(
    specs: tuple[LossSpec, ...] = REGISTRY,
    count: tuple[int, int] | None = None,
    codecs: bool = True,
) -> None:
    """Compile, or load from numba's cache, every signature a request can reach: the codecs'
    kernels (unless ``codecs`` is false: a start warms them once) and those of ``specs``. With
    ``count`` (losses warmed before these, of how many), a loss whose kernels had to be compiled
    (a cold cache: minutes in all) is logged with how many are ready and the time left."""
    started = time.monotonic()
    compiled = kernel_counts().compiled if count is not None else 0
    if codecs:
        _warm_up_codecs()
    for spec in specs:
        params = spec.params.model_validate(spec.params.warm_up)
        # a batch inside the loss's domain; the losses that take class indices read them as
        # they are ((N,) int64, no one-hot rows), another signature of their drivers
        predictions, rows = spec.params.warm_up_batch()
        forms: list[Array | None] = [rows if spec.targets else None]
        if "class_index" in spec.targets:
            forms.append(np.arange(2))
        inputs = spec.params.warm_up_inputs(predictions)
        for targets, weight in itertools.product(forms, (None, np.ones(2))):
            batch = core.Batch(predictions, targets, weight, inputs)
            for dtype in core.DTYPES:
                options = core.Options(
                    dtype=dtype,  # type: ignore[arg-type]
                    gradient=True,
                    hessian=spec.hessian,
                    input_gradients=bool(inputs),
                )
                core.evaluate(spec, params, batch, options)
    if count is not None and kernel_counts().compiled > compiled:
        done, total = count
        elapsed = time.monotonic() - started
        log.info(
            "compiled the kernels of %s in %.1f s: %d of %d losses ready, about %.0f s left",
            ", ".join(spec.name for spec in specs),
            elapsed,
            done + len(specs),
            total,
            elapsed / len(specs) * (total - done - len(specs)),
        )


def _warm_up_codecs() -> None:
    """The body scan, the base64 kernels and the JSON number parser's."""
    big = np.zeros(LIFT_MIN // 8 + 1)
    wire = {"dtype": "float64", "shape": [big.size], "data": Base64(big)}
    body = dumps({"predictions": wire, "targets": wire, "array_format": "packed"}).tobytes()
    evaluate_one(REGISTRY[0].name, body, big.size)  # the body scan and the base64 kernels
    # the number parser's kernels (a float and an integer list, each long enough to be lifted):
    # compiled on a request instead, they hold the GIL and stall the event loop for that request
    rows = LIFT_MIN // 6 + 1
    lists = {
        "predictions": np.full((rows, 2), 0.5).tolist(),
        "targets": np.eye(2, dtype=int)[np.arange(rows) % 2].tolist(),
    }
    evaluate_one(REGISTRY[0].name, dumps(lists).tobytes(), 2 * rows)


@dataclass(frozen=True)
class KernelCounts:
    """Kernel signatures this process loaded from numba's on-disk cache, and those it compiled."""

    cached: int
    compiled: int


def dispatchers() -> list[Dispatcher]:
    """Every numba dispatcher in lossd's modules imported so far."""
    package = __name__.partition(".")[0]
    found = {
        id(obj): obj
        for name, module in list(sys.modules.items())
        if name == package or name.startswith(f"{package}.")
        for obj in list(vars(module).values())
        if isinstance(obj, Dispatcher)
    }
    return list(found.values())


def kernel_counts() -> KernelCounts:
    """Cache hits and fresh compilations so far, over every numba dispatcher in lossd's modules.

    A start whose warm-up compiled nothing was served entirely by the cache (the Docker image's
    baked one, say); numba counts both per signature in ``Dispatcher.stats``. A cache entry that
    failed to load counts as compiled (``GuardedCache``).
    """
    stats = [dispatcher.stats for dispatcher in dispatchers()]
    return KernelCounts(
        cached=sum(sum(s.cache_hits.values()) for s in stats),
        compiled=sum(sum(s.cache_misses.values()) for s in stats),
    )


class CachePolicy:
    """What the guarded caches of one process may still do, shared by all of them, and the one
    warning per kind of failure (the rest go to the debug log)."""

    def __init__(self, access: kernel_cache.Access) -> None:
        self.directory = access.directory
        self.load = access.load
        self.save = access.save
        self.failed_loads = 0

    def load_failed(self, where: str, exc: Exception) -> None:
        self.failed_loads += 1
        level = logging.WARNING if self.failed_loads == 1 else logging.DEBUG
        log.log(
            level,
            "kernel cache %s: cannot load %s (%s: %s); compiling it afresh%s",
            self.directory,
            where,
            type(exc).__name__,
            exc,
            "; later failures are logged at debug level" if level == logging.WARNING else "",
        )

    def save_failed(self, exc: Exception) -> None:
        self.save = False
        log.warning(
            "kernel cache %s: cannot save (%s: %s); this process saves no more kernels and "
            "compiles those it lacks in memory",
            self.directory,
            type(exc).__name__,
            exc,
        )


class GuardedCache(_Cache):
    """A dispatcher's numba cache whose failures cost a compilation: an entry that does not load
    (a truncated or garbage index or data file, one that cannot be read) is compiled afresh, and
    its index is reset first, so that the fresh compilation overwrites it where the directory is
    writable; the first save that fails (a full disk, a file size limit, a directory gone
    read-only) stops the saving for the whole process."""

    def __init__(self, inner: Any, policy: CachePolicy, name: str) -> None:
        self._inner = inner
        self._policy = policy
        self._name = name  # the kernel's, for the log

    @property
    def cache_path(self) -> Any:
        return self._inner.cache_path

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        if not self._policy.load:
            return None
        try:
            return self._inner.load_overload(sig, target_context)
        except Exception as exc:  # whatever a bad entry raises, compiling it is right
            self._policy.load_failed(f"{self._name}{sig}", exc)
            if self._policy.save:
                try:
                    self._inner.flush()  # an empty index, for the fresh compilation's entry
                except Exception as flush_exc:
                    self._policy.save_failed(flush_exc)
            return None

    def save_overload(self, sig: Any, data: Any) -> None:
        if not self._policy.save:
            return
        try:
            self._inner.save_overload(sig, data)
        except Exception as exc:  # the kernel is compiled: only its copy is lost
            self._policy.save_failed(exc)

    def enable(self) -> None:
        self._inner.enable()

    def disable(self) -> None:
        self._inner.disable()

    def flush(self) -> None:
        self._inner.flush()


def guard_caches() -> kernel_cache.Access:
    """Put every lossd dispatcher's cache behind a ``GuardedCache`` (or none, when the directory
    holds nothing to load), after one warning when the directory cannot take both loads and
    saves; how this process may use it. numba's own cache raises into the compilation that
    loads or saves an entry, and so failed the warm-up (a full disk, one corrupt file).

    Call it before anything compiles, once lossd's kernel modules are imported. It reaches into
    a numba internal (``Dispatcher._cache``): tests/test_startup_faults.py holds it to account.
    """
    access = kernel_cache.access(Path(os.environ[kernel_cache.ENV]))
    if not access.load:
        log.warning(
            "kernel cache %s is unusable (%s): every kernel is compiled in memory, none saved",
            access.directory,
            access.cause,
        )
    elif not access.save:
        log.warning(
            "kernel cache %s is read-only (%s): kernels load from it, those it lacks are "
            "compiled in memory and not saved",
            access.directory,
            access.cause,
        )
    policy = CachePolicy(access)
    dispatcher: Any  # its _cache is not in numba's annotations
    for dispatcher in dispatchers():
        cache = dispatcher._cache
        if isinstance(cache, (NullCache, GuardedCache)):
            continue
        name = f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}"
        dispatcher._cache = GuardedCache(cache, policy, name) if access.load else NullCache()
    return access
