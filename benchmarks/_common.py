"""What every benchmark section shares: timing, tables, targets, plots, machine facts.

Every figure is the median of several runs after a warm-up, with the spread (min..max) shown.
Targets are ratios against a baseline measured in the same run, so they compare across
machines where absolute times do not.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PLOTS = DOCS / "benchmarks"


@dataclass(frozen=True)
class Timing:
    """Median and spread of repeated runs, in seconds."""

    median: float
    low: float
    high: float

    def ms(self) -> str:
        return f"{self.median * 1e3:.2f} ms ({self.low * 1e3:.2f}..{self.high * 1e3:.2f})"


def measure(fn: Callable[[], object], runs: int = 5, warmup: int = 1) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then the median of ``runs`` timed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), min(times), max(times))


@dataclass
class Table:
    """One table of a section: printed as text, written as Markdown."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def text(self) -> str:
        widths = [
            max(len(r[i]) for r in [self.columns, *self.rows]) for i in range(len(self.columns))
        ]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
        return "\n".join([self.title, line(self.columns), *map(line, self.rows)])

    def markdown(self) -> str:
        head = f"| {' | '.join(self.columns)} |\n| {' | '.join('---' for _ in self.columns)} |"
        body = "\n".join(f"| {' | '.join(r)} |" for r in self.rows)
        return f"**{self.title}**\n\n{head}\n{body}\n"


@dataclass
class Target:
    """An issue target, the ratio achieved, and what limits it where it is missed."""

    goal: str
    achieved: str
    met: bool
    note: str = ""


@dataclass
class Section:
    """What one section measured."""

    name: str
    intro: str
    tables: list[Table] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def machine() -> dict[str, str]:
    """CPU, cores and library versions, for the report's header."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    facts = {
        "CPU": cpu,
        "cores available": str(len(os.sched_getaffinity(0))),
        "load average at the end (1/5/15 min; the cores are shared)": "/".join(
            f"{x:.1f}" for x in os.getloadavg()
        ),
        "Python": platform.python_version(),
    }
    for package in ("numpy", "numba", "llvmlite", "fastapi", "uvicorn", "orjson", "torch"):
        try:
            facts[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            facts[package] = "not installed"
    return facts


def plot_path(name: str) -> Path:
    PLOTS.mkdir(parents=True, exist_ok=True)
    return PLOTS / f"{name}.png"
