"""The ``lossd`` command: ``serve``, ``losses``, ``openapi``, ``docs``, ``clean-cache``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import orjson


@contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, a fresh PROMETHEUS_MULTIPROC_DIR for this run, removed after it.

    Set before uvicorn spawns the workers and before anything imports prometheus-client, which
    picks its multiprocess mode at import. One worker keeps its metrics in memory.
    """
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if workers == 1:
        yield
        return
    path = tempfile.mkdtemp(prefix="lossd-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .settings import DRAIN_SECONDS, Settings

    # Flags win over LOSSD_* variables; they go through the environment so that every worker
    # process (uvicorn spawns them with --workers > 1) builds the same settings.
    for key in ("host", "port", "grpc_port", "workers", "log_level"):
        value = getattr(args, key)
        if value is not None:
            os.environ[f"LOSSD_{key.upper()}"] = str(value)
    settings = Settings()
    # uvicorn drains on SIGTERM and then re-raises the signal with the handler that was there
    # before it started; a no-op handler makes that re-raise harmless, so a drained stop exits 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    with _metrics_dir(settings.workers):
        from .logs import configure
        from .server import HttpProtocol

        # lossd's format for the parent's own lines too; each worker configures itself again
        # in create_app. uvicorn's access log is off: lossd writes one line per request.
        configure(settings.log_level, settings.log_format)
        uvicorn.run(
            "service.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=DRAIN_SECONDS,
            # lossd's connection bounds (server.py); each worker imports the class by name
            http=HttpProtocol,
            timeout_keep_alive=settings.keep_alive_timeout,
        )
    return 0


def _losses(args: argparse.Namespace) -> int:
    """The catalogue: a table for a person at a terminal, JSON for a pipe or a file (what a
    script reads, and what this command printed before the table existed), unless a flag says."""
    from .catalogue_table import render
    from .core import catalogue

    entries = catalogue()
    table = args.format == "table" or (args.format is None and sys.stdout.isatty())
    if table:
        sys.stdout.write(render(entries, shutil.get_terminal_size((100, 24)).columns))
        return 0
    sys.stdout.write(orjson.dumps({"losses": entries}, option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\n")
    return 0


def _openapi(_: argparse.Namespace) -> int:
    from .app import create_app
    from .settings import Settings

    spec = create_app(Settings()).openapi()
    sys.stdout.write(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
    return 0


def _docs(_: argparse.Namespace) -> int:
    from .catalogue_doc import render

    sys.stdout.write(render())
    return 0


def _clean_cache(args: argparse.Namespace) -> int:
    from .kernel_cache import clean

    for path in clean(everything=args.all):
        sys.stdout.write(f"removed {path}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lossd`` and ``python -m service``."""
    parser = argparse.ArgumentParser(prog="lossd", description="loss functions as a service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the HTTP service")
    serve.add_argument("--host", default=None, help="bind address (LOSSD_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (LOSSD_PORT, 8000)")
    serve.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="the gRPC Open Inference Protocol's port (LOSSD_GRPC_PORT; off when unset)",
    )
    serve.add_argument("--workers", type=int, default=None, help="processes (LOSSD_WORKERS, 1)")
    serve.add_argument("--log-level", default=None, help="LOSSD_LOG_LEVEL (info)")
    serve.set_defaults(run=_serve)
    losses = commands.add_parser(
        "losses",
        help="print the catalogue: a table on a terminal, JSON otherwise",
        description=(
            "Print every loss lossd serves. On a terminal: a table of names, families, aliases "
            "and parameters with their defaults, as wide as the terminal. When stdout is not a "
            "terminal (a pipe, a file): the JSON of GET /losses, unless --table is given."
        ),
    )
    shape = losses.add_mutually_exclusive_group()
    shape.add_argument(
        "--json",
        dest="format",
        action="store_const",
        const="json",
        help="the JSON of GET /losses, also on a terminal",
    )
    shape.add_argument(
        "--table",
        dest="format",
        action="store_const",
        const="table",
        help="the table, also when stdout is not a terminal (COLUMNS sets its width)",
    )
    losses.set_defaults(run=_losses, format=None)
    commands.add_parser("openapi", help="print the OpenAPI spec").set_defaults(run=_openapi)
    commands.add_parser("docs", help="print docs/losses.md").set_defaults(run=_docs)
    clean_cache = commands.add_parser(
        "clean-cache", help="remove this checkout's kernel caches for sources it no longer has"
    )
    clean_cache.add_argument(
        "--all", action="store_true", help="every lossd kernel cache, the current one included"
    )
    clean_cache.set_defaults(run=_clean_cache)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
