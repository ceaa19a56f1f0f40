"""The kernel cache directory (service/kernel_cache.py): keyed by the kernel sources, so an edit
to any module numba compiles or inlines compiles afresh, and the operator's NUMBA_CACHE_DIR wins."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from numba.core.dispatcher import Dispatcher
from numba.core.extending import _Intrinsic

import service
from service.kernel_cache import (
    ENV,
    MARK,
    PACKAGE,
    SOURCE,
    Access,
    access,
    kernel_modules,
    keyed_dir,
    operator_dir,
    source_key,
)

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ("jit.py", "losses/_stable.py", "losses/_binary.py", "losses/_vmath.py")

# One start, cut down to a single kernel signature (mse, float64, unweighted: seconds cold,
# where the whole warm-up takes minutes): the counts /readyz reports, and the driver's own.
START = """
import json, os
import numpy as np
import service
from service import core
from service.losses import resolve
from service.warmup import kernel_counts

spec = resolve("mse")
params = spec.params.model_validate(spec.params.warm_up)
batch = core.Batch(np.full((2, 2), 0.5), np.full((2, 2), 1.0), None)
core.evaluate(spec, params, batch, core.Options(dtype="float64", gradient=True, hessian=True))
counts = kernel_counts()
print(json.dumps({
    "file": service.__file__,
    "dir": os.environ["NUMBA_CACHE_DIR"],
    "cached": counts.cached,
    "compiled": counts.compiled,
    "driver_compiled": sum(spec.driver.stats.cache_misses.values()),
}))
"""


def copy_package(dest: Path) -> Path:
    """A copy of the service package under ``dest``, without any numba or bytecode cache."""
    ignore = shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc")
    return Path(shutil.copytree(ROOT / "service", dest / "service", ignore=ignore))


def fresh_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's environment with no NUMBA_CACHE_DIR (the operator's or inherited) and the
    cache roots under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if k not in (ENV, MARK, "XDG_CACHE_HOME")}
    return {**env, "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path), **extra}


def run(code: str, env: dict[str, str], cwd: Path = ROOT) -> Any:
    """Run ``code`` in a fresh interpreter; what it printed, as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_edited_helper_compiles_afresh_and_the_next_start_loads_it(tmp_path: Path) -> None:
    """Editing a comment in a helper module makes the next start compile everything again, the
    driver in the unedited mse.py included (numba alone would load it stale); the start after
    that compiles nothing."""
    src = tmp_path / "src"
    package = copy_package(src)
    env = fresh_env(tmp_path, XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(src))

    def start() -> dict[str, Any]:
        counts: dict[str, Any] = run(START, env, cwd=src)
        return counts

    first, second = start(), start()
    with (package / "losses" / "_stable.py").open("a") as helper:
        helper.write("# an edited comment\n")
    third, fourth = start(), start()

    assert first["file"] == str(package / "__init__.py")
    assert Path(first["dir"]).parent == tmp_path / "cache" / "lossd"
    assert first["compiled"] > 0 and first["cached"] == 0, first
    assert second["dir"] == first["dir"]
    assert second["compiled"] == 0 and second["cached"] > 0, second
    assert third["dir"] != first["dir"]
    assert (third["compiled"], third["cached"], third["driver_compiled"]) == (
        first["compiled"],
        0,
        first["driver_compiled"],
    ), third
    assert third["driver_compiled"] > 0
    assert fourth["dir"] == third["dir"]
    assert (fourth["compiled"], fourth["cached"]) == (0, second["cached"]), fourth


def test_the_key_follows_the_kernel_modules_and_nothing_else(tmp_path: Path) -> None:
    """The key is stable for a tree, changes with the bytes of any kernel module (a helper, a
    loss, a new kernel file) and comes back when the edit is undone; other modules do not count."""
    package = copy_package(tmp_path)
    base = source_key(package)
    assert source_key(package) == base
    assert set(HELPERS) | {"losses/mse.py", "reductions.py"} <= set(kernel_modules(package))
    assert not {"settings.py", "errors.py", "losses/_spec.py"} & set(kernel_modules(package))
    seen = {base}
    for name in (*HELPERS, "losses/mse.py", "settings.py", "errors.py", "losses/_spec.py"):
        path = package / name
        original = path.read_bytes()
        path.write_bytes(original + b"# an edited comment\n")
        edited = source_key(package)
        path.write_bytes(original)
        if name in HELPERS or name == "losses/mse.py":
            assert edited not in seen, name
            seen.add(edited)
        else:
            assert edited == base, name
        assert source_key(package) == base
    new = package / "losses" / "new_loss.py"
    new.write_text("from ..jit import Array, batch\n")
    assert source_key(package) != base
    new.write_text("from ..jit import Array\n")
    assert source_key(package) == base


def _imported_from(module: ModuleType) -> dict[str, str]:
    """The names ``module`` takes with ``from X import name``, mapped to the absolute X."""
    assert module.__file__ is not None
    names = {}
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if isinstance(node, ast.ImportFrom):
            relative = "." * node.level + (node.module or "")
            origin = importlib.util.resolve_name(relative, module.__package__)
            names.update({alias.asname or alias.name: origin for alias in node.names})
    return names


def _code_names(code: CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _code_names(const)
    return names


def test_every_compiled_function_and_what_it_uses_is_in_the_key() -> None:
    """Every numba function and intrinsic in the package is defined in a hashed module, and so
    is every global a compiled function takes from another lossd module (numba freezes it)."""
    for info in pkgutil.walk_packages(service.__path__, "service."):
        importlib.import_module(info.name)
    hashed = {str(PACKAGE / name) for name in kernel_modules()}
    functions = []
    for name, module in list(sys.modules.items()):
        if name != "service" and not name.startswith("service."):
            continue
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher) and obj.py_func.__module__ == name:
                functions.append((module, obj.py_func))
            elif isinstance(obj, _Intrinsic) and obj._defn.__module__ == name:
                functions.append((module, obj._defn))
    assert len(functions) > 50
    for module, function in functions:
        where = f"{module.__name__}.{function.__name__}"
        assert function.__code__.co_filename in hashed, where
        imported = _imported_from(module)
        for name in _code_names(function.__code__) & set(imported):
            value = function.__globals__.get(name)
            origin = value if isinstance(value, ModuleType) else sys.modules.get(imported[name])
            origin_file = getattr(origin, "__file__", None) or ""
            if origin_file.startswith(str(PACKAGE)):
                assert origin_file in hashed, f"{where} uses {name} from {origin_file}"


def test_the_operators_numba_cache_dir_wins_but_an_inherited_keyed_one_does_not() -> None:
    """A NUMBA_CACHE_DIR the operator set is used as it is; one that lossd set in a parent
    process (its mark alongside) is not taken for the operator's."""
    assert operator_dir({ENV: "/srv/cache"}) == "/srv/cache"
    assert operator_dir({ENV: "/srv/cache", MARK: "/home/u/.cache/lossd/numba-1"}) == "/srv/cache"
    assert (
        operator_dir({ENV: "/home/u/.cache/lossd/numba-1", MARK: "/home/u/.cache/lossd/numba-1"})
        is None
    )
    assert operator_dir({ENV: ""}) is None
    assert operator_dir({}) is None


CONFIG = """
import json, os
import numba
import service
from numba.core import config
print(json.dumps([str(service.KERNEL_CACHE), config.CACHE_DIR, os.environ.get("NUMBA_CACHE_DIR")]))
"""


def test_a_started_process_honours_the_operator_and_rekeys_an_inherited_dir(
    tmp_path: Path,
) -> None:
    """In a fresh process (numba imported first): the operator's NUMBA_CACHE_DIR stays numba's
    cache directory; an inherited keyed one is replaced by this tree's, under the cache root."""
    operator = str(tmp_path / "operator")
    assert run(CONFIG, fresh_env(tmp_path, NUMBA_CACHE_DIR=operator)) == [
        "None",
        operator,
        operator,
    ]
    inherited = str(tmp_path / "cache" / "lossd" / "numba-0123456789abcdef")
    env = fresh_env(tmp_path, XDG_CACHE_HOME=str(tmp_path / "cache"), NUMBA_CACHE_DIR=inherited)
    keyed = str(tmp_path / "cache" / "lossd" / f"numba-{source_key()}")
    assert run(CONFIG, {**env, MARK: inherited}) == [keyed, keyed, keyed]
    assert (Path(keyed) / SOURCE).read_text() == f"{PACKAGE}\n"


def test_the_cache_root_is_one_this_user_alone_can_write(tmp_path: Path) -> None:
    """XDG_CACHE_HOME/lossd, else ~/.cache/lossd; a root that cannot be created or that others
    can write to (numba unpickles what it finds) is passed over for $TMPDIR/lossd-<uid>."""
    key = f"numba-{source_key()}"
    xdg = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "TMPDIR": str(tmp_path / "t")}
    assert keyed_dir(xdg) == tmp_path / "xdg" / "lossd" / key
    home = {"HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "t")}
    assert keyed_dir(home) == tmp_path / "home" / ".cache" / "lossd" / key
    fallback = tmp_path / "t" / f"lossd-{os.getuid()}" / key
    (tmp_path / "file").write_text("")
    assert keyed_dir({"HOME": str(tmp_path / "file"), "TMPDIR": str(tmp_path / "t")}) == fallback
    (tmp_path / "xdg" / "lossd").chmod(0o777)
    assert keyed_dir(xdg) == fallback


def test_clean_cache_removes_this_checkouts_stale_dirs_and_keeps_the_current_one(
    tmp_path: Path,
) -> None:
    """``lossd clean-cache`` removes this checkout's directories for other sources and those of
    checkouts that no longer exist; the current one and other checkouts' stay. ``--all``
    removes every one."""
    root = tmp_path / "cache" / "lossd"
    current = root / f"numba-{source_key()}"
    dirs = {
        "old": str(PACKAGE),
        "orphan": str(tmp_path / "deleted" / "service"),
        "other": str(tmp_path),  # another checkout, still there
    }
    for name, origin in dirs.items():
        (root / f"numba-{name}").mkdir(parents=True)
        (root / f"numba-{name}" / SOURCE).write_text(f"{origin}\n")
    env = fresh_env(tmp_path, XDG_CACHE_HOME=str(tmp_path / "cache"))

    def clean(*flags: str) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-m", "service", "clean-cache", *flags],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    assert clean() == [f"removed {root / 'numba-old'}", f"removed {root / 'numba-orphan'}"]
    assert sorted(p.name for p in root.iterdir()) == [current.name, "numba-other"]
    assert clean() == []
    assert clean("--all") == [f"removed {current}", f"removed {root / 'numba-other'}"]
    assert list(root.iterdir()) == []


def test_access_says_what_a_directory_allows(tmp_path: Path) -> None:
    """A directory that exists or can be created takes loads and saves; one that cannot be
    created (a regular file, or a path under one: so for root too) takes neither, and says why."""
    fresh = tmp_path / "new" / "cache"
    assert access(fresh) == Access(fresh, load=True, save=True)
    assert fresh.is_dir()
    (tmp_path / "file").write_text("")
    under = access(tmp_path / "file" / "numba")
    assert (under.load, under.save) == (False, False)
    assert "Not a directory" in under.cause
    instead = access(tmp_path / "file")
    assert (instead.load, instead.save) == (False, False)
    assert "File exists" in instead.cause


LOCATED = """
import json
import service
from numba.core import config
from service.losses import resolve
print(json.dumps([str(service.KERNEL_CACHE), config.CACHE_DIR, config.CACHE_LOCATOR_CLASSES,
                  resolve("mse").driver._cache.cache_path]))
"""


def test_kernels_are_cached_in_lossds_directory_or_nowhere(tmp_path: Path) -> None:
    """A cache directory that cannot be created does not send numba to ``__pycache__`` beside the
    sources (stale helpers) nor fail the import: the kernels' caches stay pointed at it, and
    start-up finds it unusable (service/warmup.py guard_caches). Without any usable root, numba
    is pointed at the first root's keyed directory, just as unusable."""
    (tmp_path / "file").write_text("")
    operator = tmp_path / "file" / "numba"
    kernel, directory, locators, driver = run(LOCATED, fresh_env(tmp_path, **{ENV: str(operator)}))
    assert (kernel, directory, locators) == ("None", str(operator), "service.kernel_cache.Locator")
    assert driver.startswith(f"{operator}{os.sep}"), driver
    nowhere = {"HOME": str(tmp_path / "file"), "TMPDIR": str(tmp_path / "file")}
    kernel, directory, _, driver = run(LOCATED, fresh_env(tmp_path, **nowhere))
    keyed = tmp_path / "file" / ".cache" / "lossd" / f"numba-{source_key()}"
    assert (kernel, directory) == ("None", str(keyed))
    assert driver.startswith(f"{keyed}{os.sep}"), driver
    assert not access(keyed).load
