"""The argument parser of ``surgbox``: one-line errors, "did you mean", values checked once.

:class:`Parser` is the class of the top-level parser; ``add_subparsers`` makes every
subcommand's parser a :class:`Parser` too, so each rule here holds for every command,
including commands added later:

* a usage error is ONE line on stderr naming the command, the argument and the fix
  (``surgbox events: error: argument ACTION: invalid choice: 'lst'; did you mean 'list'? ...``),
  exit status 2;
* a mistyped subcommand, choice or option suggests the closest valid one;
* a value that is not valid UTF-8 (what Python makes of undecodable bytes on the command
  line: lone surrogates) is refused before any command sees it;
* an ``int`` option refuses values beyond 64 bits; NaN, infinities and ranges that depend on
  the option are the command's to check (:func:`number` makes such a ``type``, or the library
  refuses the value with its own message).
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

INT64 = 2**63 - 1


def not_utf8(text: str) -> bool:
    """True when ``text`` cannot be written as UTF-8 (it holds lone surrogates, e.g. from
    undecodable bytes on a Linux command line)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def plain(text: str) -> str:
    """``text`` (e.g. a module docstring reused as a command's description) without reST inline
    markup: ````literal```` and ``:role:`target``` become their text."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return re.sub(r"``(.+?)``", r"\1", text, flags=re.S)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``word`` (a typo of it), or ``None`` when none is close."""
    found = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.6)
    return found[0] if found else None


def number(kind: Callable[[str], Any], *, minimum: float | None = None, maximum: float | None = None,
           above: float | None = None, below: float | None = None) -> Callable[[str], Any]:
    """An argparse ``type`` that parses ``kind`` (``int`` or ``float``) and checks its range:
    ``minimum <= v <= maximum``, ``above < v < below`` (each bound optional). The error names the
    range, e.g. ``argument --limit: -5 is not >= 1``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        _check_int(text, value)
        for bound, ok, sign in ((minimum, lambda v, b: v >= b, ">="), (maximum, lambda v, b: v <= b, "<="),
                                (above, lambda v, b: v > b, ">"), (below, lambda v, b: v < b, "<")):
            if bound is not None and not ok(value, bound):
                raise argparse.ArgumentTypeError(f"{text} is not {sign} {bound:g}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _check_int(text: str, value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64:
        raise argparse.ArgumentTypeError(f"{text} is too large")


def leaf_parser(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> argparse.ArgumentParser:
    """The deepest subcommand parser that ``namespace`` selected under ``parser``."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(namespace, sub.dest, None) if sub is not None else None
        if sub is None or name not in (sub.choices or {}):
            return parser
        parser = sub.choices[name]


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the rules in the module docstring."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")

    def _get_value(self, action: argparse.Action, arg_string: Any) -> Any:
        # (a subcommand's own parser checks the strings after its name, naming its argument)
        if isinstance(arg_string, str) and not isinstance(action, argparse._SubParsersAction) and not_utf8(arg_string):
            raise argparse.ArgumentError(
                action, f"{arg_string.encode('utf-8', 'backslashreplace').decode()!r} is not valid UTF-8 text; "
                        f"give names and paths in UTF-8 (rename a file whose name is not)")
        value = super()._get_value(action, arg_string)
        try:
            _check_int(arg_string, value)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(action, str(exc)) from None
        return value

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            shown = value.encode("utf-8", "backslashreplace").decode() if isinstance(value, str) else value
            guess = closest(value, action.choices) if isinstance(value, str) else None
            hint = f"; did you mean {guess!r}?" if guess else ""
            choices = ", ".join(map(str, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice: {shown!r}{hint} (choose from {choices})")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            leaf = leaf_parser(self, ns)
            known = [o for a in leaf._actions for o in a.option_strings]
            words = []
            for extra in extras:
                guess = closest(extra.split("=", 1)[0], known) if extra.startswith("-") else None
                words.append(f"{extra} (did you mean {guess}?)" if guess else extra)
            leaf.error(f"unrecognized arguments: {' '.join(words)}")
        return ns
