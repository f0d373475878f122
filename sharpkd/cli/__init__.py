"""``sharpkd`` command line: each subcommand parses arguments and calls one library function.

Errors a user can cause print one line (``sharpkd: error: ...``) and exit with status 2; batch commands report each
bad file (``sharpkd: skipped <path>: <reason>``) and carry on with the rest, exiting 1 if any failed. A failed export or
a crashed benchmark worker exits 1.

The subcommands live by concern in ``train`` (train-teacher, distill, pack-data), ``batch`` (sharpen, degrade) and
``tools`` (evaluate, benchmark, export, video, cards); each adds its parsers through ``add_parsers(sub)``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from sharpkd.cli import batch, tools, train
from sharpkd.cli.common import one_line
from sharpkd.errors import SharpkdError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``sharpkd`` argument parser with every subcommand; each sets ``func`` to the handler it runs."""
    parser = argparse.ArgumentParser(prog="sharpkd", description="Sharpen video-call frames with distilled CNNs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress; show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_parsers(sub)  # train-teacher, distill, pack-data
    batch.add_parsers(sub)  # sharpen, degrade
    tools.add_parsers(sub)  # evaluate, benchmark, export, video, cards
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``sharpkd`` command line; returns the exit status (0 ok, 1 some work failed, 2 bad usage or input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["sharpkd", *argv])
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (SharpkdError, ValueError, FileNotFoundError, ImportError) as err:
        print(f"sharpkd: error: {one_line(err)}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        if args.verbose:
            raise
        print(f"sharpkd: error: {one_line(err)} (rerun with -v for the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sharpkd: interrupted; files written so far are kept", file=sys.stderr)
        return 130
