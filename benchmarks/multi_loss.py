"""POST /loss with five losses against the slowest single-loss call, on a packed 1e6 x 10 batch.

Issue target: the five-loss call takes at most 2.5 times the slowest single-loss call. Both are
timed in-process through the engine's request path (raw body in, response bytes out), median of
several runs after a warm-up, in the same run, so the ratio is comparable across machines.

    .venv/bin/python benchmarks/multi_loss.py
"""

from __future__ import annotations

import base64
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import orjson

from service import engine
from service.losses import resolve

N, C = 1_000_000, 10
LOSSES = [
    {"name": "cross_entropy", "params": {"from_logits": True}},
    {"name": "focal", "params": {"from_logits": True}},
    {"name": "poly1_cross_entropy", "params": {}},
    {"name": "kl_divergence", "params": {"from_logits": True}},
    {"name": "multi_margin", "params": {}},
]


def packed(array: np.ndarray) -> dict[str, object]:
    data = base64.b64encode(np.ascontiguousarray(array, dtype="<f8").tobytes()).decode()
    return {"dtype": "float64", "shape": list(array.shape), "data": data}


def median_time(fn: Callable[[], object], runs: int = 5) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times) - min(times)


def main() -> int:
    losses = [loss for loss in LOSSES if _registered(str(loss["name"]))]
    rng = np.random.default_rng(0)
    common = {
        "predictions": packed(rng.normal(scale=2, size=(N, C))),
        "targets": packed(rng.integers(0, C, size=N).astype(np.float64)),
        "array_format": "packed",
    }
    singles = {}
    for loss in losses:
        body = orjson.dumps({**common, "params": loss["params"]})
        name = str(loss["name"])
        singles[name] = median_time(lambda b=body, n=name: engine.evaluate(n, b, N * C))
        print(f"{name:24s} {singles[name][0] * 1000:8.1f} ms  (spread {singles[name][1] * 1000:.1f})")
    many_body = orjson.dumps({**common, "losses": losses})
    many = median_time(lambda: engine.evaluate_many(many_body, N * C))
    slowest = max(t for t, _ in singles.values())
    ratio = many[0] / slowest
    print(f"{'POST /loss (' + str(len(losses)) + ' losses)':24s} {many[0] * 1000:8.1f} ms")
    print(f"ratio to the slowest single call: {ratio:.2f} (target <= 2.5)")
    return 0 if ratio <= 2.5 else 1


def _registered(name: str) -> bool:
    try:
        resolve(name)
    except LookupError:
        return False
    except Exception:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
