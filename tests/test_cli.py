"""``lossd losses``: a table for a terminal, JSON for scripts (a pipe, a file, ``--json``)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import time

import pytest

from service.losses import REGISTRY
from tests.support.servers import ROOT

WIDTH = 100


def _piped(*args: str, **env: str) -> str:
    """``python -m service losses ...`` with stdout a pipe."""
    done = subprocess.run(
        [sys.executable, "-m", "service", "losses", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
        timeout=120,
    )
    return done.stdout


def _on_a_terminal(*args: str, columns: int = WIDTH) -> str:
    """``python -m service losses ...`` with stdout a pseudo-terminal ``columns`` wide (and no
    COLUMNS variable, so that the width comes from the terminal itself)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "losses", *args],
        cwd=ROOT,
        stdout=terminal,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed its end of the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    # the terminal turns each "\n" into "\r\n"
    return b"".join(chunks).decode().replace("\r\n", "\n")


def _check_table(text: str, width: int) -> None:
    """Every loss has a row naming it and its family, and no line is wider than ``width``."""
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "FAMILY", "ALIASES", "PARAMETERS", "(default)"]
    assert max(len(line) for line in lines) <= width
    rows = {line.split()[0]: line.split()[1] for line in lines[2:] if line and line[0] != " "}
    assert rows == {spec.name: spec.family for spec in REGISTRY}
    # defaults in JSON spelling, wrapped but never broken inside a name=default pair
    assert "delta=1.0" in text and "from_logits=false" in text and "class_weight=null" in text
    for spec in REGISTRY:
        for alias in spec.aliases:
            if len(alias) < 15:  # longer ones may be broken after an underscore
                assert alias in text, alias


def test_a_terminal_gets_the_table() -> None:
    """On a 100-column terminal `lossd losses` prints the table, every line within 100."""
    _check_table(_on_a_terminal(), WIDTH)


def test_json_on_a_terminal_with_the_flag() -> None:
    """`--json` prints the catalogue's JSON even on a terminal."""
    doc = json.loads(_on_a_terminal("--json"))
    assert [entry["name"] for entry in doc["losses"]] == [spec.name for spec in REGISTRY]


def test_a_pipe_gets_json_unless_table_is_asked_for() -> None:
    """Piped, `lossd losses` is the JSON it always was; `--table` gives the table (COLUMNS wide)."""
    doc = json.loads(_piped())
    assert [entry["name"] for entry in doc["losses"]] == [spec.name for spec in REGISTRY]
    assert json.loads(_piped("--json")) == doc
    _check_table(_piped("--table", COLUMNS=str(WIDTH)), WIDTH)
    _check_table(_piped("--table", COLUMNS="80"), 80)


def test_the_help_says_when_it_prints_what() -> None:
    """`lossd losses --help` explains the terminal rule and both flags; they exclude each other."""
    done = subprocess.run(
        [sys.executable, "-m", "service", "losses", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    assert "not a terminal" in done.stdout
    assert "--json" in done.stdout and "--table" in done.stdout
    with pytest.raises(subprocess.CalledProcessError):
        _piped("--json", "--table")
