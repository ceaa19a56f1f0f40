"""Fixtures (a real uvicorn server on 127.0.0.1 and its HTTP client) and the ``--loss`` option.

Everything else the tests share is in ``tests/support`` (see its docstring).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from service.errors import UnknownLoss
from service.losses import resolve
from tests.support.selection import UNIDENTIFIED, losses_of, unidentified
from tests.support.servers import Server, http_client, served


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--loss",
        metavar="NAME",
        help="run only the tests of this loss (a name or an alias): its contract tests, "
        "conventions and references (tests parametrized on its LossSpec or marked "
        "@pytest.mark.loss)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """``--loss`` names a registered loss (any alias), checked before collection."""
    name = config.getoption("--loss")
    if name is not None:
        try:
            resolve(name)
        except UnknownLoss as exc:
            raise pytest.UsageError(f"--loss: {exc.detail}") from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Record tests that name a loss without saying so (tests/test_layout.py fails on them);
    with ``--loss NAME``, deselect every test that is not about that loss."""
    config.stash[UNIDENTIFIED] = [item.nodeid for item in items if unidentified(item)]
    name = config.getoption("--loss")
    if name is None:
        return
    wanted = resolve(name).name
    keep = [item for item in items if wanted in losses_of(item)]
    config.hook.pytest_deselected(items=[item for item in items if wanted not in losses_of(item)])
    items[:] = keep


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """One server for the whole session."""
    with served() as srv:
        yield srv


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with http_client(server) as http:
        yield http
