"""``python -m lossd_client``: evaluate a loss on files of any size, or list the losses.

    python -m lossd_client eval --url URL --loss NAME PREDICTIONS TARGETS [--weights FILE]
        [--params JSON] [--reduction mean|sum] [--json]
    python -m lossd_client losses --url URL

PREDICTIONS, TARGETS and the weights are ``.npy``, ``.csv`` or ``.parquet`` files of the same
number of rows. They are read a batch of rows at a time (``.npy`` memory-mapped) and the
batches are evaluated as they are read, a few requests in flight, so memory stays bounded
whatever the files' size. A progress bar goes to stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import IO

from ._client import DEFAULT_URL, Batch, Client
from ._errors import LossdError
from ._files import Source, open_source
from ._jobs import BLOCK_ROWS, Result

# Rows per batch: about 16 MiB of float64 predictions, a multiple of the server's summation
# block (so the batches' sums are the blocks one request would add up).
BATCH_BYTES = 1 << 24


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "losses":
            return _losses(args)
        return _evaluate(args)
    except LossdError as error:
        print(f"lossd: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"lossd-client: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lossd_client", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("LOSSD_URL", DEFAULT_URL))
    common.add_argument(
        "--api-key", default=os.environ.get("LOSSD_API_KEY"), help="or $LOSSD_API_KEY"
    )
    evaluate = commands.add_parser("eval", parents=[common], help="evaluate a loss on files")
    evaluate.add_argument("--loss", required=True, help="a loss name or alias")
    evaluate.add_argument("predictions", metavar="PREDICTIONS", help=".npy, .csv or .parquet")
    evaluate.add_argument("targets", metavar="TARGETS", help=".npy, .csv or .parquet")
    evaluate.add_argument("--weights", help="sample weights, (N,): .npy, .csv or .parquet")
    evaluate.add_argument("--params", default="{}", help="the loss's parameters as JSON")
    evaluate.add_argument("--reduction", choices=("mean", "sum"), default="mean")
    evaluate.add_argument("--dtype", choices=("float64", "float32"))
    evaluate.add_argument("--batch-rows", type=int, help="rows per request (default: ~16 MiB)")
    evaluate.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    commands.add_parser("losses", parents=[common], help="list the losses and their aliases")
    return parser


def _losses(args: argparse.Namespace) -> int:
    with Client(args.url, args.api_key) as client:
        for entry in client.losses():
            aliases = ", ".join(entry.get("aliases", []))
            print(f"{entry['name']}\t{entry.get('family', '')}\t{aliases}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    params = json.loads(args.params)
    if not isinstance(params, dict):
        raise ValueError("--params must be a JSON object")
    sources = [open_source(args.predictions), open_source(args.targets)]
    if args.weights:
        sources.append(open_source(args.weights))
    rows = args.batch_rows or _batch_rows(sources[0])
    progress = Progress(sources[0].rows, sys.stderr)
    with Client(args.url, args.api_key, concurrency=args.concurrency) as client:
        result = client.evaluate_stream(
            args.loss,
            _zipped(sources, rows),
            reduction=args.reduction,
            params=params,
            dtype=args.dtype,
            progress=progress.advance,
        )
    progress.close()
    print(_shown(result, as_json=args.json))
    return 0


def _batch_rows(source: Source) -> int:
    rows = max(1, BATCH_BYTES // (8 * source.width))
    return rows - rows % BLOCK_ROWS if rows >= BLOCK_ROWS else rows


def _zipped(sources: list[Source], rows: int) -> Iterator[Batch]:
    """The files' batches side by side; a ValueError when their row counts differ."""
    iterators = [s.batches(rows) for s in sources]
    while True:
        batches = [next(it, None) for it in iterators]
        present = [b for b in batches if b is not None]
        if not present:
            return
        if len(present) < len(batches) or len({len(b) for b in present}) > 1:
            names = ", ".join(str(s.path) for s in sources)
            raise ValueError(f"{names}: the files do not have the same number of rows")
        weights = present[2] if len(present) == 3 else None
        yield present[0], present[1], weights


def _shown(result: Result, *, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "loss": result.loss,
                "reduction": result.reduction,
                "value": result.value,
                "weight_sum": result.weight_sum,
                "n": result.n,
            }
        )
    return (
        f"{result.loss} ({result.reduction}): {result.value!r}  "
        f"weight_sum {result.weight_sum!r}  n {result.n}  ({result.requests} requests)"
    )


class Progress:
    """A one-line progress bar on ``stream`` when it is a terminal, redrawn at most ten times a
    second; nothing otherwise (a pipe or a log gets only the result)."""

    WIDTH = 30

    def __init__(self, total: int | None, stream: IO[str]) -> None:
        self.total = total
        self.stream = stream
        self.enabled = stream.isatty()
        self.done = 0
        self.started = time.monotonic()
        self.drawn = 0.0

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if self.enabled and (now - self.drawn >= 0.1 or self.done == self.total):
            self.drawn = now
            self.stream.write("\r" + self.line(now))
            self.stream.flush()

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.started, 1e-9)
        if not self.total:
            return f"{self.done:,} rows  {rate:,.0f} rows/s"
        share = min(1.0, self.done / self.total)
        bar = "#" * round(share * self.WIDTH)
        return (
            f"[{bar:<{self.WIDTH}}] {share:6.1%}  {self.done:,}/{self.total:,} rows  "
            f"{rate:,.0f} rows/s"
        )

    def close(self) -> None:
        if self.enabled and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


if __name__ == "__main__":
    sys.exit(main())
