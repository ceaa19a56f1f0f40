"""Slow NumPy references of the binary losses, and how each is exercised (see tests/reference.py)."""

from __future__ import annotations

from tests.reference import Array, Case, one_hot  # noqa: F401

CASES: dict[str, Case] = {}
