"""POST /loss with five losses against the slowest single-loss call, on a packed 1e6 x 10 batch.

Issue target: the five-loss call takes at most 2.5 times the slowest single-loss call. Both are
timed in-process through the engine's request path (raw body in, response bytes out), median of
several runs after a warm-up, in the same run, so the ratio is comparable across machines.

    .venv/bin/python -m benchmarks.multi_loss
"""

from __future__ import annotations

import base64
import sys

import numpy as np
import orjson

from benchmarks._common import Section, Table, Target, measure
from service.codecs.loss import evaluate_many, evaluate_one

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


def run(quick: bool = False) -> Section:
    """Time each single-loss call and the five-loss POST /loss on the same packed batch."""
    n = 200_000 if quick else N
    rng = np.random.default_rng(0)
    common = {
        "predictions": packed(rng.normal(scale=2, size=(n, C))),
        "targets": packed(rng.integers(0, C, size=n).astype(np.float64)),
        "array_format": "packed",
    }
    runs = 3 if quick else 5
    table = Table(f"POST /loss vs single calls, packed {n} x {C}, in-process", ["call", "time"])
    singles = {}
    for loss in LOSSES:
        body = orjson.dumps({**common, "params": loss["params"]})
        name = str(loss["name"])
        singles[name] = measure(lambda b=body, nm=name: evaluate_one(nm, b, n * C), runs)
        table.add(name, singles[name].ms())
    many_body = orjson.dumps({**common, "losses": LOSSES})
    many = measure(lambda: evaluate_many(many_body, n * C), runs)
    table.add(f"POST /loss ({len(LOSSES)} losses)", many.ms())
    ratio = many.median / max(t.median for t in singles.values())
    section = Section(
        "POST /loss",
        "Five losses in one call against the slowest of the five single calls (issue 3); the "
        "arrays and the converted targets are shared across the losses of one call.",
        tables=[table],
    )
    section.targets.append(
        Target(
            "POST /loss, 5 losses, 1e6 x 10: <= 2.5x slowest single", f"{ratio:.2f}x", ratio <= 2.5
        )
    )
    return section


def main() -> int:
    section = run()
    print(section.tables[0].text())
    return 0 if all(t.met for t in section.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
