"""The load test: many clients, mixed losses, sizes and encodings, every answer checked; first
alone, then beside attackers.

    .venv/bin/python -m benchmarks.load [--clients 64] [--duration 60] [--warmup 10]
                                        [--attack | --no-attack] [--max-p99-ratio 2]

Starts a server (or uses ``--port``/``--pid`` of a running one), then keeps ``--clients``
keep-alive connections busy for ``--duration`` seconds after a warm-up, each walking a shuffled
schedule of pre-encoded requests (``benchmarks/_load.py``): eleven losses across regression,
binary, multiclass (class-index targets), distribution and overlap, batches of 64 to 100 000
elements, JSON lists and packed base64 in the request and the response, ``POST /loss``
with several losses, and the Open Inference Protocol's ``/v2`` route when the server has it.

With ``--attack`` (the default) the same phase runs a second time while attackers
(``benchmarks/_attack.py``: slow readers, abandoned heavy requests, header trickles, floods of
unknown keys) work from a process of their own, against a server started with short header and
send timeouts (``ATTACK_ENV``) so that every attack is ended within seconds. The report gives
both phases' latencies (all requests, small ones, and the event loop's as ``GET /healthz`` sees
it), the ratio of their p99s, what each kind of attacker got (statuses, connections the server
closed) and what the server counted (its /metrics: statuses, connections cut by reason).

Every 200 is checked: the per-sample losses, the reduced value and the gradient against the same
batch evaluated in this process by the typed core (``service.core``; the kernels are
deterministic, so the server must give the same numbers, relative 1e-12 allowed), the shape of
the gradient, and the same bytes as the first answer to the same request (SPEC section 4:
deterministic output). The inputs come from a small generator per loss family, inside every
loss's domain, so that the module needs nothing from ``tests/``. The server's RSS is read about
every second. Exit status 1 when any request failed, any answer was wrong, RSS grew by 10% or more
within a phase, the p99 latency under attack was over ``--max-p99-ratio`` times the baseline's,
or an attack outlasted the server (it never ended it).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import socket
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from benchmarks import _attack, _server
from benchmarks._attack import Outcome, Plan
from benchmarks._load import MixedRun, mixed, request_bytes
from service import core
from service.losses import LossSpec, resolve

RTOL, ATOL = 1e-12, 0.0  # the server against the in-process core: the same kernels, same bits
# RSS growth allowed within a phase: from the end of its warm-up (the attacked phase: once its
# attackers have run for SETTLE s) to its last answer. Creep within a phase is a leak; the step
# from the baseline to the attacked phase is the attack's memory in flight, and what stays held
# after the attackers leave is reported apart (``Report.retained``).
MAX_GROWTH = 0.10
MAX_P99_RATIO = 2.0  # the normal clients' p99 latency under attack, over that without
# The server's bounds while attacked, short enough that every attack is ended within seconds
# (defaults: 10 s and 30 s); the load run starts its own server with them.
ATTACK_ENV = {"LOSSD_HEADER_TIMEOUT": "2", "LOSSD_SEND_TIMEOUT": "2"}
# The attackers for 64 clients (``make load``); ``--clients`` scales them.
PLAN = Plan(slow_readers=8, abandoned=2, trickles=32, floods=2)
# Requests of this many elements or fewer compute in microseconds: their latency is time spent
# waiting (for the event loop, the GIL, a compute thread), where an attack that stalls the server
# shows first. The report gives their p50 and p99 apart.
SMALL = 1_000
SETTLE = 3.0  # seconds the attackers run before the attacked phase is measured
LINGER = 3.0  # seconds after the attackers stop before the server's counters and RSS are read
# elements per array, and how often each size comes up in the schedule
SIZES = {64: 8, 1_000: 4, 10_000: 2, 100_000: 1}
# loss, params, classes (None: rank 1); inputs come from ``_inputs``, by the loss's family
LOSSES: tuple[tuple[str, dict[str, Any], int | None], ...] = (
    ("mse", {}, None),
    ("huber", {"delta": 0.5}, 4),
    ("poisson", {"log_input": True}, None),
    ("pinball", {"quantile": 0.9}, None),
    ("hinge", {}, None),
    ("binary_cross_entropy", {"from_logits": True}, 2),
    ("cross_entropy", {"from_logits": True}, 8),  # class-index targets
    ("focal", {"gamma": 2.0}, 4),  # probabilities, class-index targets
    ("multi_margin", {"margin": 0.5}, 5),  # class-index targets
    ("kl_divergence", {"from_logits": True}, 4),
    ("dice", {"from_logits": True}, 4),
)
# POST /loss: losses that take the same batches
GROUPS: tuple[tuple[tuple[str, dict[str, Any]], ...], ...] = (
    (("mse", {}), ("mae", {}), ("huber", {"delta": 2.0}), ("log_cosh", {})),
    (("cross_entropy", {"from_logits": True}), ("poly1_cross_entropy", {"from_logits": True})),
)


@dataclass(frozen=True)
class Expected:
    """What the in-process core answers for one loss of a request."""

    loss: str
    per_sample: np.ndarray[Any, Any]
    value: float | None
    gradient: np.ndarray[Any, Any] | None  # None: not asked for


@dataclass
class Probe:
    """One pre-encoded request and what its answer must hold."""

    label: str
    request: bytes
    route: str  # "loss", "multi" or "v2"
    expected: list[Expected]  # one per loss, in request order
    pred_shape: tuple[int, ...]
    gradient: bool
    weight: int  # how often the schedule holds it
    digest: bytes | None = None  # the first answer's, once checked
    checked: int = 0

    @property
    def pred_size(self) -> int:
        return int(np.prod(self.pred_shape))


def _packed(array: np.ndarray[Any, Any], dtype: str = "float64") -> dict[str, Any]:
    data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    return {
        "dtype": dtype,
        "shape": list(array.shape),
        "data": base64.b64encode(data.tobytes()).decode(),
    }


def _expected(
    name: str,
    params: dict[str, Any],
    pred: np.ndarray[Any, Any],
    targ: np.ndarray[Any, Any],
    weights: np.ndarray[Any, Any] | None,
    reduction: str,
    gradient: bool,
) -> Expected:
    """The in-process core's answer for the same batch, loss, parameters and options."""
    spec = resolve(name)
    result = core.evaluate(
        spec,
        core.validate_params(spec, params),
        core.Batch(pred, targ, weights),
        core.Options(reduction=reduction, gradient=gradient),  # type: ignore[arg-type]
    )
    assert result.per_sample is not None
    return Expected(spec.name, result.per_sample, result.value, result.gradient)


def _inputs(
    spec: LossSpec, params: dict[str, Any], classes: int | None, size: int, seed: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Predictions and targets inside the domain of the loss, from its family in the registry
    (``spec.family``, ``spec.targets``, ``from_logits`` among ``spec.params``)."""
    rng = np.random.default_rng(seed)
    shape = (size,) if classes is None else (size // classes, classes)
    if spec.family == "regression":  # positive values are inside every regression loss's domain
        return rng.uniform(0.1, 4.0, size=shape), rng.uniform(0.1, 4.0, size=shape)
    fields = spec.params.model_fields
    # a loss without from_logits (the hinges, multi_margin) takes scores: any real number
    default = fields["from_logits"].default if "from_logits" in fields else True
    logits = params.get("from_logits", default)
    if logits:
        pred = rng.uniform(-4.0, 4.0, size=shape)
    elif "class_index" in spec.targets:  # probability rows
        raw = rng.uniform(0.1, 1.0, size=shape)
        pred = raw / raw.sum(axis=1, keepdims=True)
    else:  # probabilities, element by element
        pred = rng.uniform(0.02, 0.98, size=shape)
    if "class_index" in spec.targets:
        return pred, rng.integers(0, shape[1], size=shape[0]).astype(np.float64)
    return pred, rng.integers(0, 2, size=shape).astype(np.float64)  # {0, 1} labels and masks


def build_probes(v2: bool) -> list[Probe]:
    """Every loss at every size, encodings and options varied by a seeded generator."""
    rng = np.random.default_rng(20)
    probes = []
    for k, (name, params, classes) in enumerate(LOSSES):
        for size in SIZES:
            pred, targ = _inputs(resolve(name), params, classes, size, seed=k * 10 + size)
            weights = rng.uniform(0.1, 2.0, size=pred.shape[0]) if rng.random() < 0.4 else None
            reduction = str(rng.choice(["mean", "sum", "none"]))
            packed_in = bool(rng.random() < 0.5)
            doc: dict[str, Any] = {
                "predictions": _packed(pred) if packed_in else pred.tolist(),
                "targets": _packed(targ) if packed_in else targ.tolist(),
                "params": params,
                "reduction": reduction,
                "gradient": bool(rng.random() < 0.5),
                "array_format": str(rng.choice(["list", "packed"])),
            }
            if weights is not None:
                doc["sample_weight"] = _packed(weights) if packed_in else weights.tolist()
            expected = [_expected(name, params, pred, targ, weights, reduction, doc["gradient"])]
            label = f"{name} {size} {'packed' if packed_in else 'list'}->{doc['array_format']}"
            body = orjson.dumps(doc)
            probes.append(
                Probe(
                    label,
                    request_bytes("POST", f"/loss/{name}", body),
                    "loss",
                    expected,
                    pred.shape,
                    doc["gradient"],
                    SIZES[size],
                )
            )
            if v2 and size <= 10_000:
                probes.append(_v2_probe(name, params, pred, targ, weights, reduction))
    for g, group in enumerate(GROUPS):
        first, params = group[0]
        spec = resolve(first)
        classes = 6 if "class_index" in spec.targets else 3
        for size in (1_000, 100_000):
            pred, targ = _inputs(spec, params, classes, size, seed=1000 + g)
            doc = {
                "predictions": _packed(pred),
                "targets": _packed(targ),
                "losses": [{"name": n, "params": p} for n, p in group],
                "gradient": True,
                "array_format": "packed",
            }
            expected = [_expected(n, p, pred, targ, None, "mean", True) for n, p in group]
            probes.append(
                Probe(
                    f"POST /loss {'+'.join(n for n, _ in group)} {size}",
                    request_bytes("POST", "/loss", orjson.dumps(doc)),
                    "multi",
                    expected,
                    pred.shape,
                    True,
                    4 if size < 10_000 else 1,
                )
            )
    return probes


def _v2_probe(
    name: str,
    params: dict[str, Any],
    pred: np.ndarray[Any, Any],
    targ: np.ndarray[Any, Any],
    weights: np.ndarray[Any, Any] | None,
    reduction: str,
) -> Probe:
    """The same batch as an Open Inference Protocol v2 request with JSON tensors."""

    def tensor(tensor_name: str, array: np.ndarray[Any, Any], datatype: str) -> dict[str, Any]:
        data = array.astype(np.int64 if datatype == "INT64" else np.float64).ravel().tolist()
        return {"name": tensor_name, "shape": list(array.shape), "datatype": datatype, "data": data}

    index = targ.ndim == 1 and pred.ndim == 2
    inputs = [
        tensor("predictions", pred, "FP64"),
        tensor("targets", targ, "INT64" if index else "FP64"),
    ]
    if weights is not None:
        inputs.append(tensor("sample_weight", weights, "FP64"))
    doc = {
        "inputs": inputs,
        "parameters": {**params, "reduction": reduction},
        "outputs": [{"name": "per_sample"}, *([{"name": "value"}] if reduction != "none" else [])],
    }
    return Probe(
        f"v2 {name} {pred.size}",
        request_bytes("POST", f"/v2/models/{name}/infer", orjson.dumps(doc)),
        "v2",
        [_expected(name, params, pred, targ, weights, reduction, False)],
        pred.shape,
        False,
        2,
    )


def _array(value: Any) -> np.ndarray[Any, Any]:
    """A response array: a JSON list or a packed object."""
    if isinstance(value, dict):
        raw = base64.b64decode(value["data"], validate=True)
        dtype = np.dtype(value["dtype"]).newbyteorder("<")
        return np.frombuffer(raw, dtype=dtype).reshape(value["shape"])
    return np.asarray(value, dtype=np.float64)


def _results(probe: Probe, body: bytes) -> list[dict[str, Any]]:
    """The answer as one result document per loss: loss, value, per_sample, gradient."""
    doc = orjson.loads(body)
    if probe.route == "multi":
        return list(doc["results"])
    if probe.route == "v2":
        outputs = {t["name"]: t for t in doc["outputs"]}
        result: dict[str, Any] = {"loss": doc["model_name"]}
        result["per_sample"] = np.asarray(outputs["per_sample"]["data"], dtype=np.float64)
        result["value"] = outputs["value"]["data"][0] if "value" in outputs else None
        return [result]
    return [doc]


def verify(probe: Probe, body: bytes) -> str | None:
    """What is wrong with this answer to ``probe`` (None: nothing)."""
    digest = hashlib.blake2b(body, digest_size=16).digest()
    if digest == probe.digest:
        return None  # byte-identical to an answer already checked
    try:
        results = _results(probe, body)
    except (ValueError, KeyError, TypeError) as exc:
        return f"{probe.label}: unreadable answer ({type(exc).__name__})"
    if len(results) != len(probe.expected):
        return f"{probe.label}: {len(results)} results"
    for result, want in zip(results, probe.expected, strict=True):
        name = want.loss
        got = _array(result["per_sample"]).reshape(-1)
        if got.shape != want.per_sample.shape or not np.allclose(got, want.per_sample, RTOL, ATOL):
            return f"{probe.label}: {name} per_sample differs from the in-process core"
        if (want.value is None) != (result["value"] is None) or (
            want.value is not None and not np.isclose(result["value"], want.value, RTOL, ATOL)
        ):
            return f"{probe.label}: {name} value {result['value']} != in-process {want.value}"
        if probe.gradient:
            gradient = _array(result["gradient"])
            if gradient.shape != probe.pred_shape:
                return f"{probe.label}: {name} gradient has the wrong shape"
            if want.gradient is not None and not np.allclose(gradient, want.gradient, RTOL, ATOL):
                return f"{probe.label}: {name} gradient differs from the in-process core"
    if probe.digest is not None:
        return f"{probe.label}: not byte-identical to the first answer"  # SPEC: deterministic
    probe.digest = digest
    probe.checked += 1
    return None


@dataclass
class Report:
    """The numbers of one load run: the baseline phase, and the attacked phase when there was one."""

    clients: int
    duration: float
    baseline: MixedRun
    attacked: MixedRun | None
    rss_start_kib: int  # when the baseline's warm-up ended
    rss_end_kib: int  # when the last answer was in (and the attackers had left)
    probes: list[Probe] = field(default_factory=list)
    plan: Plan | None = None
    server_env: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    # what the server counted while the attackers ran: answers other than 200 by status, and
    # connections its bounds cut by reason (its /metrics before and after)
    server_statuses: Counter[str] = field(default_factory=Counter)
    server_cuts: Counter[str] = field(default_factory=Counter)
    max_ratio: float = MAX_P99_RATIO
    loop_lag: list[list[float]] = field(default_factory=list)  # /healthz latencies, per phase
    attack_cpu: float = 0.0  # the attack process's CPU seconds a second

    @property
    def runs(self) -> list[MixedRun]:
        return [self.baseline] if self.attacked is None else [self.baseline, self.attacked]

    @property
    def errors(self) -> int:
        return sum(sum(run.errors.values()) for run in self.runs)

    @property
    def wrong(self) -> int:
        return sum(sum(run.wrong.values()) for run in self.runs)

    @property
    def growth(self) -> float:
        """The largest RSS growth within a phase (see MAX_GROWTH)."""
        return max(_growth(_rss(run)[0], _rss(run)[-1]) for run in self.runs)

    @property
    def retained(self) -> float:
        """RSS once the run (and its attackers) left, over that after the baseline's warm-up."""
        return _growth(self.rss_start_kib, self.rss_end_kib)

    def rss_max_kib(self, run: MixedRun) -> int:
        return max(_rss(run))

    @property
    def p99_ratio(self) -> float | None:
        """The normal clients' p99 latency with the attackers over that without them."""
        if self.attacked is None:
            return None
        return self.attacked.percentile(99) / self.baseline.percentile(99)

    @property
    def outlasted(self) -> int:
        """Attacks the server never ended within the attackers' patience."""
        return sum(o.outlasted for o in self.outcomes.values())

    @property
    def ok(self) -> bool:
        calm = self.errors == 0 and self.wrong == 0 and self.growth < MAX_GROWTH
        ratio = self.p99_ratio
        return calm and (ratio is None or (ratio <= self.max_ratio and self.outlasted == 0))

    def text(self) -> str:
        routes = Counter(p.route for p in self.probes)
        phases = "1 phase" if self.attacked is None else "2 phases (baseline, attacked)"
        lines = [
            f"load: {self.clients} clients, {phases} of {self.duration:g} s measured, "
            f"{len(self.probes)} distinct requests "
            f"({', '.join(f'{n} {r}' for r, n in routes.items())})",
            f"{'phase':<10} {'answers':>8} {'req/s':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'errors':>6} {'wrong':>5}",
        ]
        for name, run in zip(("baseline", "attacked"), self.runs, strict=False):
            lines.append(
                f"{name:<10} {run.answers:>8} {len(run.latencies) / self.duration:>6.0f} "
                f"{run.percentile(50) * 1e3:>8.1f} {run.percentile(99) * 1e3:>8.1f} "
                f"{max(run.latencies) * 1e3:>8.1f} {sum(run.errors.values()):>6} "
                f"{sum(run.wrong.values()):>5}"
            )
        small = [p.pred_size <= SMALL for p in self.probes]
        lines.append(
            f"  requests of <= {SMALL} elements: p50 / p99 "
            + ", ".join(
                f"{name} {run.percentile(50, small.__getitem__) * 1e3:.1f} / "
                f"{run.percentile(99, small.__getitem__) * 1e3:.1f} ms"
                for name, run in zip(("baseline", "attacked"), self.runs, strict=False)
            )
        )
        if self.loop_lag and all(self.loop_lag):
            lines.append(
                "  the event loop (GET /healthz every 0.2 s): p50 / p99 "
                + ", ".join(
                    f"{name} {_quantile(lag, 0.5) * 1e3:.1f} / {_quantile(lag, 0.99) * 1e3:.1f} ms"
                    for name, lag in zip(("baseline", "attacked"), self.loop_lag, strict=False)
                )
            )
        for run in self.runs:
            lines += [f"  error  {k}: {v}" for k, v in run.errors.items()]
            lines += [f"  wrong  {k}: {v}" for k, v in run.wrong.items()]
        if self.p99_ratio is not None and self.plan is not None:
            env = " ".join(f"{k}={v}" for k, v in self.server_env.items()) or "as running"
            lines.append(
                f"p99 ratio  {self.p99_ratio:.2f} attacked / baseline (bound {self.max_ratio:g})"
            )
            lines.append(
                f"attackers  server limits: {env}; the attackers used {self.attack_cpu:.0%} of a "
                "core"
            )
            lines += [f"  {o.kind:<11} {o.text()}" for o in self.outcomes.values()]
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.server_statuses.items()))
            cuts = ", ".join(f"{k}: {v}" for k, v in sorted(self.server_cuts.items()))
            lines.append(f"  server answered non-200: {statuses or 'none'}")
            lines.append(f"  server cut connections: {cuts or 'none'}")
        for name, run in zip(("baseline", "attacked"), self.runs, strict=False):
            rss = _rss(run)
            lines.append(
                f"RSS {name:<8} {rss[0] / 1024:.1f} MiB at its start, {rss[-1] / 1024:.1f} MiB at "
                f"its end ({_growth(rss[0], rss[-1]):+.1%}), max {max(rss) / 1024:.1f} MiB"
            )
        lines.append(
            f"RSS at end  {self.rss_end_kib / 1024:.1f} MiB once every client had left "
            f"({self.retained:+.1%} over the baseline's start)"
        )
        bounds = f"0 errors, 0 wrong, RSS growth within a phase < {MAX_GROWTH:.0%}"
        if self.attacked is not None:
            bounds += f", p99 ratio <= {self.max_ratio:g}, every attack ended by the server"
        lines.append(f"verdict    {'PASS' if self.ok else 'FAIL'} ({bounds})")
        return "\n".join(lines)


def _rss(run: MixedRun) -> list[int]:
    """The server's RSS samples of a phase, KiB."""
    return [int(v) for _, v in run.samples if isinstance(v, int)]


def _growth(start: int, end: int) -> float:
    return (end - start) / start


def _quantile(values: list[float], q: float) -> float:
    return float(np.quantile(values, q))


def _has_v2(port: int) -> bool:
    return _server.status_code(port, "/v2/health/ready") == 200


def _counted(port: int) -> tuple[Counter[str], Counter[str]]:
    """The server's requests by status and connections cut by reason, from its /metrics."""
    statuses: Counter[str] = Counter()
    cuts: Counter[str] = Counter()
    with urllib.request.urlopen(f"http://{_server.HOST}:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith("lossd_requests_total{"):
            status = re.search(r'status="(\d+)"', line)
            if status is not None:
                statuses[status[1]] += int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("lossd_connections_cut_total{"):
            reason = re.search(r'reason="(\w+)"', line)
            if reason is not None:
                cuts[reason[1]] += int(float(line.rsplit(" ", 1)[1]))
    return statuses, cuts


@contextmanager
def _loop_probe(port: int, every: float = 0.2) -> Iterator[list[float]]:
    """``GET /healthz`` every ``every`` s from a thread, on one kept-alive connection, for the
    block: its latencies (seconds). /healthz does no work, so they are the time the server's
    event loop took to get to it (the GIL, callbacks ahead of it, the CPU)."""
    latencies: list[float] = []
    stop = threading.Event()
    request = request_bytes("GET", "/healthz")

    def probe() -> None:
        sock: socket.socket | None = None
        while not stop.wait(every):
            sent = time.perf_counter()
            try:
                sock = sock or socket.create_connection((_server.HOST, port), timeout=60)
                sock.sendall(request)
                answer = b""
                while not answer.endswith(b"}"):  # the JSON body ends the answer
                    data = sock.recv(4096)
                    if not data:
                        raise ConnectionResetError
                    answer += data
            except OSError:
                if sock is not None:
                    sock.close()
                sock = None
                continue
            latencies.append(time.perf_counter() - sent)
        if sock is not None:
            sock.close()

    thread = threading.Thread(target=probe, name="loop-probe", daemon=True)
    thread.start()
    try:
        yield latencies
    finally:
        stop.set()
        thread.join()


def run_load(
    port: int,
    pid: int,
    clients: int,
    duration: float,
    warmup: float,
    plan: Plan | None = None,
    server_env: dict[str, str] | None = None,
    max_ratio: float = MAX_P99_RATIO,
) -> Report:
    """Load the server on ``port`` (process ``pid``) and check every answer: a baseline phase,
    then, with a ``plan``, the same phase while its attackers run (``benchmarks/_attack.py``)."""
    probes = build_probes(_has_v2(port))
    schedule = [i for i, p in enumerate(probes) for _ in range(p.weight)]
    np.random.default_rng(7).shuffle(schedule)
    requests = [p.request for p in probes]

    def check(index: int, _status: int, body: bytes) -> str | None:
        return verify(probes[index], body)

    def rss() -> int:
        return _server.memory_kib(pid, "VmRSS")

    with _loop_probe(port) as lag:
        baseline = mixed(port, requests, schedule, clients, warmup, duration, check, rss)
    rss_start = next(int(v) for _, v in baseline.samples if isinstance(v, int))
    report = Report(clients, duration, baseline, None, rss_start, rss(), probes)
    report.loop_lag.append(lag)
    if plan is None:
        return report
    statuses, cuts = _counted(port)
    with _attack.launched(port, plan) as attack:
        attack.start()
        with _loop_probe(port) as lag:
            attacked = mixed(port, requests, schedule, clients, SETTLE, duration, check, rss)
        outcomes = attack.stop()
    report.loop_lag.append(lag)
    report.attack_cpu = attack.cpu
    time.sleep(LINGER)  # the server lets go of the attackers' last connections
    statuses_after, cuts_after = _counted(port)
    statuses_after.subtract(statuses)
    cuts_after.subtract(cuts)
    statuses_after.pop("200", None)
    report.attacked = attacked
    report.rss_end_kib = rss()
    report.plan = plan
    report.server_env = dict(server_env or {})
    report.outcomes = outcomes
    report.server_statuses = +statuses_after  # the unary plus drops zeros
    report.server_cuts = +cuts_after
    report.max_ratio = max_ratio
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.load", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=64, help="concurrent connections (64)")
    parser.add_argument("--duration", type=float, default=60.0, help="measured s per phase (60)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before (10)")
    parser.add_argument(
        "--attack",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a second phase with attackers (on)",
    )
    parser.add_argument(
        "--max-p99-ratio", type=float, default=MAX_P99_RATIO, help="attacked / baseline (2)"
    )
    parser.add_argument("--port", type=int, help="load a running server instead of starting one")
    parser.add_argument("--pid", type=int, help="that server's process id (for its RSS)")
    args = parser.parse_args(argv)
    plan = PLAN.scaled(args.clients / 64) if args.attack else None
    env = ATTACK_ENV if args.attack else {}

    def load(port: int, pid: int, server_env: dict[str, str]) -> Report:
        return run_load(
            port,
            pid,
            args.clients,
            args.duration,
            args.warmup,
            plan,
            server_env,
            args.max_p99_ratio,
        )

    if args.port is not None:
        report = load(args.port, args.pid, {})
    else:
        with _server.start(env) as srv:
            report = load(srv.port, srv.pid, env)
    print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
