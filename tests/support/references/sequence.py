"""References of the sequence losses (``spec.family == "sequence"``) and their cases.

ctc's batches are (N, T, C) predictions, (N, S) label rows and two (N,) length inputs, which
the registry-wide harness's (N,) and (N, C) draws cannot make: its shapes (``shapes_for``, by
``min_rank``) leave it out (``harness.HARNESSED``), and ``tests/test_ctc.py`` draws batches
with ``batch`` below and checks it against torch, Keras and this reference, and for every
property the registry-wide tests check.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tests.support.references import Array, Case, Sample


def ctc(
    p: Array,
    t: Array,
    input_lengths: Array,
    target_lengths: Array,
    blank: int = 0,
    zero_infinity: bool = False,
    from_logits: bool = False,
    mean_by_target_length: bool = True,
) -> Array:
    """−log p(labels) of each sample by the forward recursion over the extended labels
    (blank, l1, blank, l2, ..., blank), in probabilities, exactly as Graves et al. (2006) write
    it: p (N, T, C) log-probabilities (logits with ``from_logits``)."""
    if from_logits:
        p = (
            p
            - np.log(np.exp(p - p.max(-1, keepdims=True)).sum(-1, keepdims=True))
            - p.max(-1, keepdims=True)
        )
    out = np.empty(len(p))
    for i, (steps, count) in enumerate(zip(input_lengths, target_lengths, strict=True)):
        extended = [blank]
        for label in t[i, : int(count)]:
            extended += [int(label), blank]
        y = np.exp(p[i, : int(steps)])
        alpha = np.zeros(len(extended))
        alpha[0] = y[0, blank] if steps else 1.0
        if steps and count:
            alpha[1] = y[0, extended[1]]
        for step in range(1, int(steps)):
            previous = alpha.copy()
            for s, label in enumerate(extended):
                a = previous[s] + (previous[s - 1] if s >= 1 else 0.0)
                if s >= 2 and label != blank and label != extended[s - 2]:
                    a += previous[s - 2]
                alpha[s] = a * y[step, label]
        total = alpha[-1] + (alpha[-2] if len(extended) > 1 and steps else 0.0)
        if not steps:
            total = 1.0 if not count else 0.0
        loss = -math.log(total) if total > 0 else math.inf
        out[i] = 0.0 if zero_infinity and loss == math.inf else loss
    return out


def batch(
    seed: int, n: int = 6, steps: int = 12, classes: int = 5, width: int = 4
) -> dict[str, Any]:
    """Log-probabilities (a log_softmax's), padded labels (never the blank 0 or ``blank``
    below) and lengths of every kind: full and short inputs, short and empty targets."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, steps, classes)) * 2
    top = z.max(-1, keepdims=True)
    x = z - top - np.log(np.exp(z - top).sum(-1, keepdims=True))  # log_softmax
    labels = rng.integers(1, classes, size=(n, width))
    inputs = rng.integers(steps // 2 + width + 1, steps + 1, size=n)
    counts = rng.integers(0, width + 1, size=n)
    counts[0], inputs[0] = width, steps  # a full sample
    if n > 1:
        counts[1] = 0  # an empty target
    labels[np.arange(width)[None, :] >= counts[:, None]] = -1  # padding: any integer
    return {"x": x, "labels": labels, "input_lengths": inputs, "target_lengths": counts}


def sample(seed: int) -> Sample:
    """A ``batch`` as the harness's ``Sample``: predictions, label rows and the two lengths."""
    drawn = batch(seed)
    lengths = {k: drawn[k] for k in ("input_lengths", "target_lengths")}
    return Sample(drawn["x"], drawn["labels"], lengths)


CASES: dict[str, Case] = {
    "ctc": Case(ctc, params=({}, {"blank": 2}, {"from_logits": True}, {"zero_infinity": True})),
}
