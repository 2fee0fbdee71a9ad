"""The CLI's manners: every command, option and argument has help text without stray markup,
and a mistyped command, choice or option gets a "did you mean" in one line.

The parser tree is walked from ``surgbox.cli.build_parser``, so commands added later are
checked without editing this file.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from surgbox.cli import build_parser, main

# reST/Markdown that reads as noise in a terminal: ``literal``, :role:`x`, **bold**, directives.
MARKUP = re.compile(r"``|:[a-z]+:`|\*\*|^\.\. \w+::", re.M)


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for child in action.choices.values():
                if id(child) not in seen:
                    seen.add(id(child))
                    yield from _parsers(child)


PARSERS = list(_parsers(build_parser()))


def test_the_walk_reaches_nested_commands():
    progs = {p.prog for p in PARSERS}
    assert {"surgbox", "surgbox events create", "surgbox store get", "surgbox simulate bis"} <= progs
    assert len(PARSERS) > 40


def test_every_option_and_argument_has_help():
    missing = []
    for p in PARSERS:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                missing += [f"{p.prog} {c.dest} (subcommand)" for c in a._choices_actions if not (c.help or "").strip()]
            elif a.help is not argparse.SUPPRESS and not (a.help or "").strip():
                missing.append(f"{p.prog} {'/'.join(a.option_strings) or a.dest}")
    assert not missing, "give these a help= text:\n" + "\n".join(missing)


@pytest.mark.parametrize("parser", PARSERS, ids=[p.prog for p in PARSERS])
def test_help_renders_without_stray_markup(parser):
    text = parser.format_help()  # a '%' in a help text that is not '%%' fails here
    found = [text[max(0, m.start() - 30): m.end() + 30] for m in MARKUP.finditer(text)]
    assert not found, f"`{parser.prog} --help` shows markup: {found}"


def _one_line(capsys, argv) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return rc, lines[0]


@pytest.mark.parametrize("argv,wanted", [
    (["evnts", "list"], "did you mean 'events'?"),
    (["events", "lst"], "did you mean 'list'?"),
    (["store", "stauts"], "did you mean 'status'?"),
    (["plugins", "--kind", "detectr"], "did you mean 'detector'?"),
    (["plugins", "--jsn"], "did you mean --json?"),
    (["events", "list", "--limt", "3"], "did you mean --limit?"),
    (["deid", "in.mp4", "--anonymiser", "blur"], "did you mean --anonymizer?"),
])
def test_a_typo_gets_the_closest_name_in_one_line(argv, wanted, capsys):
    rc, line = _one_line(capsys, argv)
    assert rc == 2
    assert wanted in line and "--help" in line, line


def test_no_suggestion_when_nothing_is_close(capsys):
    rc, line = _one_line(capsys, ["xyzzy"])
    assert rc == 2 and "did you mean" not in line and "invalid choice: 'xyzzy'" in line


def test_usage_errors_are_one_line_naming_the_command(capsys):
    rc, line = _one_line(capsys, ["events", "create", "--patient", "A"])
    assert rc == 2 and line.startswith("surgbox events create: error: the following arguments are required")


def test_help_and_version_still_exit_zero(capsys):
    assert main(["--version"]) == 0
    assert main(["events", "--help"]) == 0
    assert "usage: surgbox events" in capsys.readouterr().out


def test_the_real_entry_point_prints_one_line_for_a_typo_and_for_bytes_that_are_not_utf8(tmp_path):
    run = [sys.executable, "-m", "surgbox"]
    typo = subprocess.run(run + ["evnts"], capture_output=True, text=True, timeout=120)
    assert typo.returncode == 2 and typo.stderr.count("\n") == 1 and "did you mean 'events'?" in typo.stderr
    raw = subprocess.run([*map(str.encode, run), b"events", b"search", b"--place", b"OR \xff3"], capture_output=True,
                         timeout=120, env={"SURGBOX_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
    err = raw.stderr.decode("utf-8", "replace")
    assert raw.returncode == 2 and err.count("\n") == 1, err
    assert "argument --place" in err and "not valid UTF-8" in err and "Traceback" not in err
