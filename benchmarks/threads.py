"""Section 6, Threads: the kernels with 1 and 2 numba threads, and what a parallel launch costs.

.venv/bin/python -m benchmarks.threads [--quick]
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numba
import numpy as np

from benchmarks._common import Section, Table, Timing
from benchmarks.kernels import (
    CROSS_ENTROPY,
    ELEMENTWISE,
    floor_call,
    fmt,
    inputs,
    interleaved,
    lossd_calls,
    timed,
)

THREADS = (1, 2)
INTRO = """\
The drivers of the Kernels section, loss and gradient, reduction mean, at N = 1e7 (cross-entropy
1e6 x 10; --quick: a tenth) with `numba.set_num_threads(1)` and then 2 (restored afterwards),
beside the copy kernel that sets the memory-bandwidth floor. The second table times a parallel
region that does no work: back to back, after the thread pool has been idle for 10 ms, and while
another process keeps one core busy; beside it a whole mse batch of 1e3, which lossd's driver runs
on the calling thread."""


@contextmanager
def threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` numba threads (this thread only), then restore the count."""
    before = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        yield
    finally:
        numba.set_num_threads(before)


@numba.njit(parallel=True, cache=True)
def empty_region(out: np.ndarray) -> None:
    """A parallel region with one trivial iteration per thread: the launch and nothing else."""
    for i in numba.prange(out.shape[0]):
        out[i] = i


def idle_then(fn: Callable[[], object], pause: float, runs: int) -> Timing:
    """Time ``fn()`` after ``pause`` seconds of idling, ``runs`` times."""
    times = []
    for _ in range(runs):
        time.sleep(pause)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return Timing(times[len(times) // 2], times[0], times[-1])


@contextmanager
def busy_core() -> Iterator[None]:
    """Another process spinning on one core for the duration of the block."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # let it start spinning
        yield
    finally:
        spinner.kill()
        spinner.wait()


def scaling_table(quick: bool, budget: float) -> tuple[Table, dict[str, float]]:
    n = 10**6 if quick else 10**7
    table = Table(
        "Threads: loss + gradient, float64, reduction mean, numba threads 1 and 2",
        ["kernel", "size", "1 thread", "2 threads", "speed-up"],
    )
    speedups = {}
    cases = [(case, (n,)) for case in ELEMENTWISE]
    cases.append((CROSS_ENTROPY, (n // 10, 10)))
    for case, shape in cases:
        pred, targ = inputs(case, shape, seed=7)
        calls = lossd_calls(case, pred, targ, "float64", hessian=False)
        row = scaled(calls.driver, budget)
        speedups[case.name] = row[0].median / row[1].median
        size = f"{shape[0]:.0e}" + (f" x {shape[1]}" if len(shape) > 1 else "")
        table.add(case.label, size, fmt(row[0]), fmt(row[1]), f"{speedups[case.name]:.2f}x")
        if case is ELEMENTWISE[0]:  # the floor of the elementwise kernels: mse's bytes
            floor = scaled(floor_call(calls), budget)
    speedups["floor"] = floor[0].median / floor[1].median
    table.add(
        "copy (floor of mse)", f"{n:.0e}", fmt(floor[0]), fmt(floor[1]), f"{speedups['floor']:.2f}x"
    )
    return table, speedups


def scaled(fn: Callable[[], object], budget: float) -> list[Timing]:
    """``fn`` with each thread count of ``THREADS``, timed in turns (see ``interleaved``)."""

    def with_threads(count: int) -> Callable[[], object]:
        def run() -> object:
            with threads(count):
                return fn()

        return run

    return interleaved([with_threads(count) for count in THREADS], budget)


def launch_table(quick: bool) -> Table:
    runs = 11 if quick else 25
    out = np.empty(numba.get_num_threads())
    case = ELEMENTWISE[0]
    pred, targ = inputs(case, (1000,), seed=7)
    small = lossd_calls(case, pred, targ, "float64", hessian=False).driver
    table = Table(
        "What a parallel launch costs: an empty prange region vs a whole mse batch of 1e3 "
        "(serial path)",
        ["call", "back to back", "after 10 ms idle", "another process busy on a core"],
    )
    for label, fn in (("empty prange region", lambda: empty_region(out)), ("mse, N = 1e3", small)):
        fn()
        back = timed(fn, 0.05)
        idle = idle_then(fn, 0.01, runs)
        with busy_core():
            busy = idle_then(fn, 0.001, runs)
        table.add(label, fmt(back), fmt(idle), fmt(busy))
    return table


def run(quick: bool = False) -> Section:
    budget = 0.15 if quick else 0.4
    scaling, speedups = scaling_table(quick, budget)
    launch = launch_table(quick)
    cores = numba.config.NUMBA_NUM_THREADS
    gain = {k: f"{v:.2f}x" for k, v in speedups.items()}
    bandwidth = (
        "one thread nearly saturates this machine's memory bandwidth"
        if speedups["floor"] < 1.3
        else "a second thread still adds memory bandwidth here"
    )
    section = Section("Threads", INTRO, tables=[scaling, launch])
    section.notes = [
        f"{cores} cores. The kernels bound by exp/log1p per element gain from the second thread "
        f"(log_cosh {gain['log_cosh']}, BCE {gain['binary_cross_entropy']}, cross_entropy "
        f"{gain['cross_entropy']}); mse ({gain['mse']}) and huber ({gain['huber']}) move bytes, "
        f"and a copy of mse's bytes gains {gain['floor']}: {bandwidth}.",
        "A parallel region ends when its slowest thread does: when another process holds a "
        "core, the launch can wait a scheduler time slice for the pool's second thread (last "
        "column of the second table). lossd's drivers run batches of up to SERIAL_ELEMENTS elements "
        "(service/jit.py) on the calling thread, with no launch at all.",
        "The service runs each kernel with the compute executor's thread count (all cores by "
        "default); the output does not depend on it "
        "(tests/test_losses.py::test_results_do_not_depend_on_the_thread_count).",
    ]
    return section


def main() -> int:
    section = run(quick="--quick" in sys.argv)
    for table in section.tables:
        print(table.text(), end="\n\n")
    print("\n".join(section.notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
