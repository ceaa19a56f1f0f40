"""Where numba caches lossd's kernels: a directory keyed by a hash of the kernel sources.

numba's on-disk cache checks only the stamp of a kernel's own file, so an edit to a helper it
inlines (``losses/_stable.py``, ``_binary.py``, ``_vmath.py``) or to a global it froze
(``jit.py``) would leave every cached caller on the old code. Unless the operator sets
``NUMBA_CACHE_DIR``, lossd points it at ``<root>/numba-<key>``: the key hashes every kernel
module (see ``kernel_modules``), the numba version and where the package lives, so any edit to
them starts an empty cache, an unchanged tree loads everything from the last one, and going back
to an earlier tree finds its cache again. ``<root>`` is ``$XDG_CACHE_HOME/lossd`` or
``~/.cache/lossd``, else ``$TMPDIR/lossd-<uid>``: the first one this user owns and can write
(numba would fall back to ``__pycache__`` beside the sources, stale helpers and all).

This is process bootstrap, not settings (those are read by ``create_app``, never at import):
``service/__init__.py`` calls ``configure()`` before any kernel module is imported, because numba
picks a function's cache directory when it decorates it. The chosen directory goes into the
environment, so numba keeps it when it re-reads ``NUMBA_*`` variables, with a copy in
``_LOSSD_NUMBA_CACHE_DIR`` marking it as lossd's: a child process (a uvicorn worker, a test's
server on an edited copy) sees the mark and keys its own tree again instead of taking the
inherited directory for the operator's.

lossd's kernels are cached in that directory or nowhere: ``Locator`` keeps numba from falling
back to ``__pycache__`` beside the sources (stale helpers again) or ``~/.cache/numba``, and from
failing at import when neither is writable. What lossd may do with the directory (``access``:
load and save, load only, neither) is decided at start-up, and a cache entry that fails to load or
save costs a compilation, never the start (``service/warmup.py``, ``guard_caches``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
ENV = "NUMBA_CACHE_DIR"
MARK = "_LOSSD_NUMBA_CACHE_DIR"  # not LOSSD_: that prefix belongs to the settings
PREFIX = "numba-"
SOURCE = "source"  # in each keyed directory: the package it caches, for clean()
LOCATORS = "NUMBA_CACHE_LOCATOR_CLASSES"

# Patterns start with a literal, so that re can skip to it: a few ms for the whole package.
# The house decorators (service/jit.py) imported by name, or used as ``jit.<name>``.
_HOUSE_IMPORT = re.compile(r"from[ \t]+(?:service)?\.*jit[ \t]+import[ \t]+(\([^)]*\)|.*)")
_HOUSE_ATTRIBUTE = re.compile(r"jit\.(?:scalar|inline|batch)\b")
_HOUSE = {"scalar", "inline", "batch", "driver", "specialise"}
# numba's own compiling decorators, imported from numba or used as ``numba.<name>``.
_NUMBA_IMPORT = re.compile(r"from[ \t]+numba(?:\.[\w.]+)?[ \t]+import[ \t]+(\([^)]*\)|.*)")
_NUMBA_ATTRIBUTE = re.compile(r"numba\.(?:njit|jit|vectorize|guvectorize|cfunc|stencil)\b")
_NUMBA = {
    "njit",
    "jit",
    "vectorize",
    "guvectorize",
    "cfunc",
    "stencil",
    "jitclass",
    "intrinsic",
    "overload",
    "overload_method",
    "overload_attribute",
    "register_jitable",
    "generated_jit",
}


def _names(imports: re.Pattern[str], source: str) -> set[str]:
    """Every name the ``from ... import`` statements matched by ``imports`` bring in."""
    return {
        name
        for match in imports.finditer(source)
        for name in re.findall(r"\w+", re.sub(r"#.*", "", match.group(1)))
    }


def is_kernel_module(path: Path, source: str) -> bool:
    """Whether numba compiles or inlines code from this module of the package: ``jit.py`` (the
    decorators and the globals kernels freeze) and every module that applies a house or numba
    compiling decorator."""
    if "jit" not in source and "numba" not in source:  # most modules: no regex needed
        return path.name == "jit.py"
    return (
        path.name == "jit.py"
        or bool(_names(_HOUSE_IMPORT, source) & _HOUSE)
        or bool(_HOUSE_ATTRIBUTE.search(source))
        or bool(_names(_NUMBA_IMPORT, source) & _NUMBA)
        or bool(_NUMBA_ATTRIBUTE.search(source))
    )


def kernel_modules(package: Path = PACKAGE) -> dict[str, bytes]:
    """The kernel modules under ``package`` (see ``is_kernel_module``), by relative path, sorted."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        data = path.read_bytes()
        if is_kernel_module(path, data.decode("utf-8", errors="replace")):
            modules[path.relative_to(package).as_posix()] = data
    return modules


def _numba_version() -> str:
    try:
        return metadata.version("numba")
    except metadata.PackageNotFoundError:
        return "none"


def source_key(package: Path = PACKAGE) -> str:
    """A short hex digest of the kernel modules' paths and bytes, the numba version and the
    package's location: what decides whether a cached kernel is still this tree's."""
    digest = hashlib.sha256()
    for part in (_numba_version(), str(package)):
        digest.update(part.encode() + b"\0")
    for name, data in kernel_modules(package).items():
        digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()[:16]


def roots(environ: Mapping[str, str]) -> Iterator[Path]:
    """Where keyed directories may live, in order of preference."""
    xdg = environ.get("XDG_CACHE_HOME", "")
    home = environ.get("HOME", "")
    if os.path.isabs(xdg):
        yield Path(xdg) / "lossd"
    elif os.path.isabs(home):
        yield Path(home) / ".cache" / "lossd"
    yield Path(environ.get("TMPDIR") or tempfile.gettempdir()) / f"lossd-{os.getuid()}"


def _usable(root: Path) -> bool:
    """Create ``root`` if needed; usable when it is this user's own directory, writable, and no
    one else can write to it (numba unpickles what it finds there)."""
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = root.lstat()
    except OSError:
        return False
    return (
        root.is_dir()
        and not root.is_symlink()
        and st.st_uid == os.getuid()
        and not st.st_mode & 0o022
        and os.access(root, os.W_OK | os.X_OK)
    )


def keyed_dir(environ: Mapping[str, str], package: Path = PACKAGE) -> Path | None:
    """This tree's keyed directory, created (with its ``source`` note), or None when there is
    no usable root."""
    key = f"{PREFIX}{source_key(package)}"
    for root in roots(environ):
        if not _usable(root):
            continue
        path = root / key
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            note = path / SOURCE
            if not note.exists():
                note.write_text(f"{package}\n")
        except OSError:
            continue
        return path
    return None


def operator_dir(environ: Mapping[str, str]) -> str | None:
    """The operator's ``NUMBA_CACHE_DIR``, or None when it is unset or lossd's own mark."""
    value = environ.get(ENV, "")
    return value if value and value != environ.get(MARK) else None


class Locator:
    """lossd's numba cache locator (``NUMBA_CACHE_LOCATOR_CLASSES``): numba's own for
    ``NUMBA_CACHE_DIR`` without the check, when a kernel is decorated, that the directory is
    writable. numba's skips such a directory for the next locator in its list, which caches in
    ``__pycache__`` beside the sources or in ``~/.cache/numba``, or fails the import when none is
    writable; with this one a kernel is looked up in lossd's directory or nowhere."""

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        """numba's locator of ``py_func`` in ``NUMBA_CACHE_DIR``; it touches no file."""
        from numba.core import caching

        numba_locator: Any = caching.UserProvidedCacheLocator
        return numba_locator(py_func, py_file)


def configure() -> Path | None:
    """Point numba at this tree's keyed directory unless the operator chose one, and at lossd's
    ``Locator``; the keyed directory, or None when the operator's stands or no root is usable
    (numba is then pointed at the first root's keyed directory, which ``access`` finds unusable:
    every kernel is compiled in memory)."""
    locator = f"{__name__}.{Locator.__name__}"
    os.environ.setdefault(LOCATORS, locator)  # an operator's own list stands
    config: Any = sys.modules.get("numba.core.config")  # numba imported before lossd: tell it now
    if config is not None:
        config.CACHE_LOCATOR_CLASSES = os.environ[LOCATORS]
    if operator_dir(os.environ) is not None:
        return None
    path = keyed_dir(os.environ)
    chosen = path or next(roots(os.environ)) / f"{PREFIX}{source_key()}"
    os.environ[ENV] = os.environ[MARK] = str(chosen)
    if config is not None:
        config.CACHE_DIR = os.environ[ENV]
    return path


@dataclass(frozen=True)
class Access:
    """What this process may do with its cache directory, and why not more."""

    directory: Path
    load: bool
    save: bool
    cause: str = ""


def _cause(exc: OSError) -> str:
    return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")


def access(directory: Path) -> Access:
    """Whether kernels can be loaded from ``directory`` and saved to it, found as numba would
    (create the directory, then a temporary file in it): a directory that cannot be created
    holds nothing to load; one that takes no new file (read-only, or another user's) may still
    hold a whole cache. A full disk passes (an empty file fits); its first failed save stops the
    saving (``guard_caches``)."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        return Access(directory, load=False, save=False, cause=_cause(exc))
    try:
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as exc:
        readable = os.access(directory, os.R_OK | os.X_OK)
        return Access(directory, load=readable, save=False, cause=_cause(exc))
    return Access(directory, load=True, save=True)


def stale_dirs(
    environ: Mapping[str, str], package: Path = PACKAGE, everything: bool = False
) -> list[Path]:
    """Keyed directories under every root that are this package's (or an absent one's) but not
    for its current sources; with ``everything``, all of them, other checkouts' included."""
    current = f"{PREFIX}{source_key(package)}"
    found = []
    for root in roots(environ):
        if not root.is_dir():
            continue
        for path in sorted(root.glob(f"{PREFIX}*")):
            if everything:
                found.append(path)
                continue
            try:
                origin = (path / SOURCE).read_text().strip()
            except OSError:
                continue  # being created, or not lossd's: leave it
            if path.name != current and (origin == str(package) or not Path(origin).exists()):
                found.append(path)
    return found


def clean(everything: bool = False) -> list[Path]:
    """Remove ``stale_dirs`` and return them."""
    paths = stale_dirs(os.environ, everything=everything)
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
    return paths
