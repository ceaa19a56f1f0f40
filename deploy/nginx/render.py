"""Render deploy/nginx/lossd.conf.template: ``${LOSSD_UPSTREAMS}`` and ``${NGINX_LISTEN}`` filled
in, every other ``$name`` (nginx's own variables) left as it is, as the official nginx image's
envsubst does with the variables it is given (deploy/compose.yaml). Standard library only.

    python deploy/nginx/render.py --listen 8080 lossd-1:8000 lossd-2:8000 > lossd.conf
    python deploy/nginx/render.py --standalone --prefix /tmp/n --listen 127.0.0.1:8080 \\
        127.0.0.1:8001 127.0.0.1:8002 > /tmp/n/nginx.conf   # nginx -p /tmp/n -c nginx.conf

``--standalone`` wraps the template in a whole nginx.conf for a foreground nginx that keeps its
pid file and temporary files under ``--prefix`` and logs errors to stderr (the tests' nginx).
"""

from __future__ import annotations

import argparse
import getpass
import os
import string
import sys
from collections.abc import Sequence
from pathlib import Path

TEMPLATE = Path(__file__).with_name("lossd.conf.template")
# Passive health checks: a replica that fails MAX_FAILS times within FAIL_TIMEOUT seconds (no
# connection, a timeout, a 502 or 503) is passed over for FAIL_TIMEOUT seconds.
MAX_FAILS = 2
FAIL_TIMEOUT = "5s"


def upstreams(servers: Sequence[str]) -> str:
    """The upstream block's server lines, one per replica (``host:port``)."""
    if not servers:
        raise ValueError("at least one replica")
    return "\n".join(
        f"server {s} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT};" for s in servers
    )


def render(servers: Sequence[str], listen: str, template: str | None = None) -> str:
    """The template with the replicas and the listen address filled in."""
    text = TEMPLATE.read_text() if template is None else template
    return string.Template(text).safe_substitute(
        LOSSD_UPSTREAMS=upstreams(servers), NGINX_LISTEN=listen
    )


def standalone(servers: Sequence[str], listen: str, prefix: Path) -> str:
    """A whole nginx.conf around the rendered template: foreground, one worker, errors to
    stderr, the pid file and every temporary path under ``prefix``."""
    temp = {name: prefix / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    paths = "\n".join(f"    {name}_temp_path {path};" for name, path in temp.items())
    body = "\n".join("    " + line if line else "" for line in render(servers, listen).splitlines())
    # nginx started as root runs its workers as `nobody`, who could not write the temporary
    # files here: as root, keep them the starting user's
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    return (
        "daemon off;\n"
        f"{user}"
        "master_process on;\n"
        "worker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        "error_log stderr warn;\n"
        "events {\n    worker_connections 1024;\n}\n"
        "http {\n"
        f"{paths}\n"
        f"{body}\n"
        "}\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("servers", nargs="+", help="the replicas, host:port")
    parser.add_argument(
        "--listen", default="8080", help="nginx's listen address (port or host:port)"
    )
    parser.add_argument("--standalone", action="store_true", help="a whole nginx.conf")
    parser.add_argument("--prefix", type=Path, help="with --standalone: pid and temp files")
    args = parser.parse_args(argv)
    if args.standalone:
        if args.prefix is None:
            parser.error("--standalone needs --prefix")
        sys.stdout.write(standalone(args.servers, args.listen, args.prefix.resolve()))
    else:
        sys.stdout.write(render(args.servers, args.listen))


if __name__ == "__main__":
    main()
