"""Which losses a collected test is about, for ``pytest --loss NAME`` (``make test-loss``).

A test is about a loss when its parameters include that loss's ``LossSpec`` (parametrize on
the spec, with ``harness.spec_id`` or ``harness.variant_id`` as ids), or when it is marked
``@pytest.mark.loss("name", ...)`` (names or aliases). A parameter that is a loss's name as a
string identifies nothing: ``unidentified`` lists such tests, and ``tests/test_layout.py`` fails
on them.
"""

from __future__ import annotations

import pytest

from service.losses import REGISTRY, LossSpec, fold, resolve

UNIDENTIFIED = pytest.StashKey[list[str]]()  # node ids of tests with a loss name as a parameter


def losses_of(item: pytest.Item) -> set[str]:
    """The canonical names of the losses this test is about (empty: not about one loss)."""
    names = {resolve(str(name)).name for mark in item.iter_markers("loss") for name in mark.args}
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        names |= {value.name for value in callspec.params.values() if isinstance(value, LossSpec)}
    return names


NAMES = frozenset(fold(name) for spec in REGISTRY for name in (spec.name, *spec.aliases))


def _names_a_loss(value: object) -> bool:
    return isinstance(value, str) and fold(value) in NAMES


def unidentified(item: pytest.Item) -> bool:
    """A test with a loss's name among its parameters but no spec or marker saying which loss."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or losses_of(item):
        return False
    return any(_names_a_loss(value) for value in callspec.params.values())
