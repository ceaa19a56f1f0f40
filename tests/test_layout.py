"""The test suite's own layout: shared helpers live in ``tests/support`` and nowhere else, the
benchmarks stand on their own, and every test of one loss is found by ``--loss``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.selection import UNIDENTIFIED
from tests.support.servers import ROOT

TESTS = ROOT / "tests"


def _imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file; ``from a import b`` counts as ``a.b``, and a
    relative import is resolved against the file's package."""
    package = ".".join(path.relative_to(ROOT).parent.parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _from_tests(module: str) -> bool:
    return module == "tests" or module.startswith("tests.")


def _support(module: str) -> bool:
    return module == "tests.support" or module.startswith("tests.support.")


@pytest.mark.parametrize("path", sorted(TESTS.glob("test_*.py")), ids=lambda p: p.name)
def test_a_test_module_imports_from_tests_only_the_support_package(path: Path) -> None:
    """A test module takes shared helpers from tests/support, never from another test module
    (nor from conftest.py, which holds only fixtures and hooks)."""
    wrong = [
        f"{path.name}:{line} {m}"
        for line, m in _imported(path)
        if _from_tests(m) and not _support(m)
    ]
    assert not wrong, wrong


@pytest.mark.parametrize(
    "path",
    sorted([TESTS / "conftest.py", *(TESTS / "support").rglob("*.py")]),
    ids=lambda p: str(p.relative_to(TESTS)),
)
def test_the_support_package_and_conftest_import_no_test_module(path: Path) -> None:
    """tests/support and conftest.py build on tests/support alone: no test module, no conftest."""
    wrong = [f"{line} {m}" for line, m in _imported(path) if _from_tests(m) and not _support(m)]
    assert not wrong, wrong


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("*.py")), ids=lambda p: p.name)
def test_the_benchmarks_import_nothing_from_tests(path: Path) -> None:
    """benchmarks/ stands on its own: its inputs and expected answers come from the service."""
    wrong = [f"{line} {m}" for line, m in _imported(path) if _from_tests(m)]
    assert not wrong, wrong


def test_every_test_of_one_loss_says_which(request: pytest.FixtureRequest) -> None:
    """A test with a loss's name among its parameters is parametrized on the LossSpec instead
    (or marked @pytest.mark.loss), so that ``pytest --loss NAME`` finds it."""
    assert request.config.stash.get(UNIDENTIFIED, []) == []
