"""Shared CLI helpers: ``--home``/``--user`` options and logging in (``SURGBOX_USER``, ``SURGBOX_PASSWORD``)."""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import SurgboxError

# C0/C1 controls (ESC starts ANSI sequences; CR and LF fake lines), DEL, the bidirectional
# overrides and the Unicode line and paragraph separators.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

USER_ENV = "SURGBOX_USER"
PASSWORD_ENV = "SURGBOX_PASSWORD"


def terminal_safe(text: object) -> str:
    """``text`` with every character that could steer a terminal (ANSI escapes, CR/LF, bidi
    overrides) written as an escape (``\\x1b``, ``\\n``, ``\\u202e``), and bytes that are not UTF-8
    (lone surrogates) as ``\\udcXX``: what a field holds is shown, never executed."""
    s = str(text)
    s = _UNSAFE.sub(lambda m: _NAMED.get(m[0]) or (f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}"), s)
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def add_home_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="DIR", help="the surgbox home (default: $SURGBOX_HOME or the per-user data folder)")


def add_auth_options(p: argparse.ArgumentParser) -> None:
    """``--home`` and ``--user`` (the password comes from $SURGBOX_PASSWORD or a prompt)."""
    add_home_option(p)
    p.add_argument("--user", metavar="NAME", help=f"log in as NAME (default: ${USER_ENV}); password from ${PASSWORD_ENV} or a prompt")


def read_secret(prompt: str, env: str | None = None, *, confirm: bool = False) -> str:
    """A secret from ``env`` (if set) or typed at a prompt (twice with ``confirm``)."""
    if env and os.environ.get(env) is not None:
        return os.environ[env]
    if not sys.stdin.isatty():
        raise SurgboxError(f"no password given and no terminal to ask for one: set {env or 'the option'}")
    try:
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != first:
            raise SurgboxError("the two passwords differ; nothing was changed")
    except EOFError:
        raise SurgboxError(f"no password entered; type it at the prompt or set {env or 'the option'}") from None
    return first


def credentials(args: argparse.Namespace) -> tuple[str, str]:
    """``(user, password)``: ``--user`` or ``$SURGBOX_USER``; the password from ``$SURGBOX_PASSWORD``
    or typed at a prompt (asked once; pass the pair to :func:`login`, and the password to whatever
    needs it again, such as changing one's own password)."""
    user = getattr(args, "user", None) or os.environ.get(USER_ENV)
    if not user:
        raise SurgboxError(f"who are you? pass --user NAME or set {USER_ENV}")
    return user, read_secret(f"password for {user}: ", PASSWORD_ENV)


@contextmanager
def login(args: argparse.Namespace, creds: tuple[str, str] | None = None) -> Iterator[Any]:
    """``with login(args) as session:`` an authenticated :class:`~surgbox.catalog.Session`
    (``creds`` from :func:`credentials`, else read now)."""
    from ..catalog import Catalog

    user, password = creds or credentials(args)
    with Catalog.at(getattr(args, "home", None)) as catalog:
        yield catalog.login(user, password)
