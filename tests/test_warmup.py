"""The start-up warm-up reaches every kernel a request can reach, in-process."""

from __future__ import annotations

from service.losses import REGISTRY
from service.warmup import kernel_counts, warm_up


def test_warm_up_runs_every_loss_in_both_dtypes() -> None:
    """warm_up's inputs are in every loss's domain: a server whose warm-up raised would never
    turn ready (and now exits with 3), so a loss whose domain rule refuses them fails here."""
    warm_up(REGISTRY)
    counts = kernel_counts()
    assert counts.cached + counts.compiled > 0
