"""The short load run: ``benchmarks/load.py`` with 16 clients for 10 s a phase (``make load``: 64
for 60 s), first alone, then with a few attackers of each kind (``benchmarks/_attack.py``).

Mixed losses, sizes (64 to 100 000 elements) and encodings (JSON lists, packed, ``POST /loss``,
``/v2``) against a server of its own; every answer is checked against the same batch evaluated
in-process by the typed core.
"""

from __future__ import annotations

import orjson
import pytest

from benchmarks._attack import Plan
from benchmarks.load import ATTACK_ENV, MAX_GROWTH, Probe, build_probes, run_load, verify
from tests.support.servers import served

CLIENTS, DURATION, WARMUP = 16, 10.0, 3.0
# a few attackers of each kind; the slow readers' answers (500 000 elements, 10 MiB) still
# overflow every socket buffer between them and the server
PLAN = Plan(slow_readers=2, abandoned=1, trickles=8, floods=1, answer_elements=500_000)
# The p99 bound of this short run. `make load` holds 2x over 60 s phases. On this shared
# two-core machine the ratio measured 1.00 and 1.29 for this run (16 clients, 10 s phases), and
# 0.76 to 1.25 for 64 clients and 20 to 30 s phases, each kind of attacker alone or all together;
# a 10 s phase's p99 rests on its slowest ~20 answers: the bound leaves room for other tenants.
MAX_RATIO = 3.0


def test_load_under_attack_has_no_errors_no_wrong_answers_and_bounded_rss_and_latency() -> None:
    """16 clients, 10 s alone then 10 s beside attackers: every request answered 200 and right,
    RSS growth < 10%, p99 latency within MAX_RATIO of the baseline's, and every attack ended by
    the server (slow readers cut, trickles 408, floods refused, abandoned work dropped)."""
    with served(env=ATTACK_ENV) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        report = run_load(
            port, srv.process.pid, CLIENTS, DURATION, WARMUP, PLAN, ATTACK_ENV, MAX_RATIO
        )
    print(report.text())
    text = report.text()
    assert report.errors == 0, text
    assert report.wrong == 0, text
    assert report.growth < MAX_GROWTH, text
    # every distinct request was answered, and checked against the in-process core, at least once
    unchecked = [p.label for p in report.probes if p.digest is None]
    assert not unchecked, unchecked
    assert {"loss", "multi"} <= {p.route for p in report.probes}
    assert report.attacked is not None
    assert min(len(report.baseline.latencies), len(report.attacked.latencies)) > 100, text
    assert report.p99_ratio is not None and report.p99_ratio <= MAX_RATIO, text
    # every kind attacked, and the server ended every attack
    outcomes = report.outcomes
    assert all(o.attempts > 0 for o in outcomes.values()), text
    assert report.outlasted == 0, text
    slow = outcomes["slow_reader"]
    assert sum(slow.closed.values()) >= PLAN.slow_readers and not slow.failed, text
    trickle = outcomes["trickle"]
    assert set(trickle.statuses) == {"408"} and trickle.statuses["408"] >= PLAN.trickles, text
    flood = outcomes["flood"]
    assert flood.statuses and all(s.startswith("4") for s in flood.statuses), text
    assert flood.answer_bytes < 16_384, text  # the unknown keys are not all listed back
    assert report.server_cuts["send_timeout"] >= PLAN.slow_readers, text
    assert report.server_cuts["header_timeout"] >= PLAN.trickles, text
    assert report.server_statuses["499"] >= 1, text  # abandoned work was dropped
    assert not any(s.startswith("5") for s in report.server_statuses), text


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
