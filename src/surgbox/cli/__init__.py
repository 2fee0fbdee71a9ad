"""The ``surgbox`` command line.

Each subcommand lives in its own module of this package with ``add_parser(subparsers)`` that
adds its parser and sets ``func(args) -> int``. Heavy imports happen inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import SurgboxError

# Subcommand modules, in the order `surgbox --help` lists them.
COMMAND_MODULES = [
    "plugins",
    "record",
    "demo",
    "bis",
    "simulate",
    "detect",
    "crypt",
    "store",
    "deid",
    "deid_batch",
    "init",
    "events",
    "users",
    "audit",
    "report",
    "dataset",
    "train",
    "eval",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surgbox",
        description="Operating-room video recording and AI de-identification.",
    )
    parser.add_argument("--version", action="version", version=f"surgbox {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``surgbox`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return rc
    except BrokenPipeError:  # `surgbox events list | head -1`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 141  # as if killed by SIGPIPE
    except SurgboxError as exc:
        print(f"surgbox: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("surgbox: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
