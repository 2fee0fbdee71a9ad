"""The ``surgbox`` command line.

Each subcommand lives in its own module of this package with ``add_parser(subparsers)`` that
adds its parser and sets ``func(args) -> int``. Heavy imports happen inside ``func``.

Every failure is one line on stderr and a non-zero exit status (docs/architecture.md):
usage errors ``surgbox CMD: error: ...`` (2, from :class:`~surgbox.cli._parser.Parser`),
:class:`~surgbox.errors.SurgboxError` and operating-system errors (a missing, unreadable or
full file) ``surgbox: error: ...`` (1), Ctrl-C ``surgbox: interrupted`` (130). Anything else
is a bug: ``surgbox: internal error: ...`` (70), with the traceback only under ``-vv``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import SurgboxError
from ._parser import Parser

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
    "init",
    "events",
    "users",
    "audit",
    "remote",
    "upload",
    "report",
    "dataset",
    "train",
    "eval",
    "console",
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage error (one line, already printed), --help, --version
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
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
        _fail(f"error: {exc}")
        return 1
    except OSError as exc:  # the machine's answer about a file: name it and say what to do
        _fail(f"error: {os_error(exc)}")
        return 1
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except Exception as exc:  # a bug: one line for the operator, the traceback for a bug report
        logging.getLogger("surgbox.cli").debug("internal error", exc_info=True)
        _fail(f"internal error: {type(exc).__name__}: {exc} (a bug in surgbox: please report it with the output "
              f"of the same command run with -vv)")
        return 70


_OS_HINTS = {
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "give a file, not a folder",
    errno.EACCES: "check its permissions",
    errno.EPERM: "check its permissions",
    errno.EROFS: "the file system is read-only; choose another place",
    errno.ENOSPC: "the disk is full; free space or choose another place",
    errno.EDQUOT: "the disk quota is used up; free space or choose another place",
    errno.EEXIST: "remove it or choose another name",
    errno.ENAMETOOLONG: "use a shorter name",
}


def os_error(exc: OSError) -> str:
    """One line for an operating-system error: what it is, the file(s) it names, the fix."""
    what = exc.strerror or str(exc) or type(exc).__name__
    files = " -> ".join(repr(os.fsdecode(f)) for f in (exc.filename, exc.filename2) if f is not None)
    hint = _OS_HINTS.get(exc.errno or 0)
    return what + (f": {files}" if files else "") + (f"; {hint}" if hint else "")


def _fail(message: str) -> None:
    """Print ``surgbox: MESSAGE`` as one line on stderr (newlines inside become spaces)."""
    print("surgbox: " + " ".join(str(message).split()), file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
