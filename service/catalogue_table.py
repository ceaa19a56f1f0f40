"""``lossd losses`` on a terminal: the catalogue as a table a person reads in one screen.

The JSON of ``GET /losses`` is what scripts want, and what ``lossd losses`` prints whenever its
output is not a terminal; at a terminal, the same entries as four columns (name, family,
aliases, parameters with their defaults), wrapped to the terminal's width so that a
100-column window shows every loss without horizontal scrolling.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import zip_longest
from typing import Any

HEADINGS = ("NAME", "FAMILY", "ALIASES", "PARAMETERS (default)")
GAP = "  "
# The widest canonical name (generalized_cross_entropy) and family (distribution) fit; what is
# left of the width goes to the two wrapped columns, parameters getting the larger share since
# a multiclass loss has up to eight of them.
NAME_WIDTH = 25
FAMILY_WIDTH = 12
MIN_WRAPPED = 16
ALIASES_SHARE = 0.45


def render(entries: Sequence[Mapping[str, Any]], width: int = 100) -> str:
    """The table of catalogue ``entries`` (``GET /losses``'s), lines at most ``width`` wide
    whenever ``width`` leaves each wrapped column ``MIN_WRAPPED`` characters; a blank line
    between families."""
    wrapped = max(2 * MIN_WRAPPED, width - NAME_WIDTH - FAMILY_WIDTH - 3 * len(GAP))
    aliases_width = max(MIN_WRAPPED, int(wrapped * ALIASES_SHARE))
    widths = (NAME_WIDTH, FAMILY_WIDTH, aliases_width, wrapped - aliases_width)
    lines = [_row(HEADINGS, widths), _row(tuple("-" * w for w in widths), widths)]
    for k, entry in enumerate(entries):
        if k and entry["family"] != entries[k - 1]["family"]:
            lines.append("")  # the registry lists each family's losses together
        cells = (
            [entry["name"]],
            [entry["family"]],
            _wrap(entry["aliases"], widths[2]),
            _wrap(parameters(entry["params"]), widths[3]),
        )
        for parts in zip_longest(*cells, fillvalue=""):
            lines.append(_row(parts, widths))
    return "\n".join(lines) + "\n"


def parameters(schema: Mapping[str, Any]) -> list[str]:
    """A loss's parameters as ``name=default`` in JSON spelling (``from_logits=false``,
    ``class_weight=null``), a parameter without a default as its bare name; ``-`` for none."""
    found = [
        f"{name}={json.dumps(field['default'])}" if "default" in field else name
        for name, field in schema.get("properties", {}).items()
    ]
    return found or ["-"]


def _wrap(items: Sequence[str], width: int) -> list[str]:
    """Comma-separated items over lines of ``width``, breaking only between items; an item
    longer than a line is broken after one of its underscores (``categorical_generalized_`` /
    ``cross_entropy``), mid-word only when it has none to break at."""
    lines: list[str] = []
    for k, item in enumerate(items):
        text = item + ("," if k + 1 < len(items) else "")
        if lines and len(lines[-1]) + 1 + len(text) <= width:
            lines[-1] += " " + text
            continue
        room = width - len(lines[-1]) - 1 if lines else 0
        if room > 0 and len(text) > width:  # a long item starts where the last one ended
            cut = text.rfind("_", 0, room) + 1
            if cut:
                lines[-1] += " " + text[:cut]
                text = text[cut:]
        while len(text) > width:
            cut = text.rfind("_", 0, width) + 1 or width
            lines.append(text[:cut])
            text = text[cut:]
        lines.append(text)
    return lines or ["-"]


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return GAP.join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()
