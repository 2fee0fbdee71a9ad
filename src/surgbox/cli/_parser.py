"""The argument parser of ``surgbox``: one-line errors, "did you mean", values checked once.

:class:`Parser` is the class of the top-level parser; ``add_subparsers`` makes every
subcommand's parser a :class:`Parser` too, so each rule here holds for every command,
including commands added later:

* a usage error is ONE line on stderr naming the command, the argument and the fix
  (``surgbox events: error: argument ACTION: invalid choice: 'lst'; did you mean 'list'? ...``),
  exit status 2;
* a mistyped subcommand, choice or option suggests the closest valid one;
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


def selected_parsers(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> list[argparse.ArgumentParser]:
    """``parser`` and the subcommand parsers ``namespace`` selected under it, the deepest last."""
    chain = [parser]
    while True:
        sub = next((a for a in chain[-1]._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(namespace, sub.dest, None) if sub is not None else None
        if sub is None or name not in (sub.choices or {}):
            return chain
        chain.append(sub.choices[name])


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the rules in the module docstring."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")

    def _get_value(self, action: argparse.Action, arg_string: Any) -> Any:
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
            raise argparse.ArgumentError(action, f"invalid choice: '{shown}'{hint} (choose from {choices})")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        ns, extras = self.parse_known_args(args, namespace)
        if extras:  # suggest the command's own option, else one of a command above it (given before the name)
            chain = selected_parsers(self, ns)
            leaf = chain[-1]
            words = []
            for extra in extras:
                word, hint = extra.split("=", 1)[0], ""
                for level, p in reversed(list(enumerate(chain))):
                    guess = closest(word, [o for a in p._actions for o in a.option_strings]) if extra.startswith("-") else None
                    if guess:
                        where = "" if p is leaf else f" before `{chain[level + 1].prog.rsplit(' ', 1)[-1]}`"
                        hint = f" (did you mean {guess}{where}?)"
                        break
                words.append(extra + hint)
            leaf.error(f"unrecognized arguments: {' '.join(words)}")
        return ns
