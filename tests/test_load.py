"""The short load run: ``benchmarks/load.py`` with 16 clients for 10 s (``make load``: 64 for 60 s).

Mixed losses, sizes (64 to 100 000 elements) and encodings (JSON lists, packed, ``POST /loss``,
``/v2``) against a server of its own; every answer is checked against the same batch evaluated
in-process by the typed core.
"""

from __future__ import annotations

import orjson
import pytest

from benchmarks.load import MAX_GROWTH, Probe, build_probes, run_load, verify
from tests.support.servers import served

CLIENTS, DURATION, WARMUP = 16, 10.0, 3.0


def test_load_has_no_errors_no_wrong_answers_and_bounded_rss() -> None:
    """16 clients for 10 s: every request answered 200, every answer right, RSS growth < 10%."""
    with served() as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        report = run_load(port, srv.process.pid, CLIENTS, DURATION, WARMUP)
    print(report.text())
    assert report.errors == 0, report.text()
    assert report.wrong == 0, report.text()
    assert report.growth < MAX_GROWTH, report.text()
    # every distinct request was answered, and checked against the in-process core, at least once
    unchecked = [p.label for p in report.probes if p.digest is None]
    assert not unchecked, unchecked
    families = {p.route for p in report.probes}
    assert {"loss", "multi"} <= families
    assert len(report.run.latencies) > 100


@pytest.fixture(scope="module")
def probes() -> list[Probe]:
    """The load run's requests, without /v2."""
    return build_probes(v2=False)


def test_the_check_refuses_a_wrong_value(probes: list[Probe]) -> None:
    """The checker is not vacuous: a per-sample loss or a gradient off by 1e-6 relative is a
    wrong answer."""
    listed = [p for p in probes if p.route == "loss" and b'"array_format":"list"' in p.request]
    probe = next(p for p in listed if p.gradient)
    want = probe.expected[0]
    assert want.gradient is not None
    answer = {"loss": want.loss, "value": want.value, "per_sample": want.per_sample.tolist(),
              "gradient": want.gradient.tolist()}  # fmt: skip
    assert verify(probe, orjson.dumps(answer)) is None
    wrong = {**answer, "per_sample": (want.per_sample * (1 + 1e-6)).tolist()}
    assert "per_sample differs from the in-process core" in str(verify(probe, orjson.dumps(wrong)))
    wrong = {**answer, "gradient": (want.gradient * (1 + 1e-6)).tolist()}
    assert "gradient differs from the in-process core" in str(verify(probe, orjson.dumps(wrong)))
