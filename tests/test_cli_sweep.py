"""Traceback sweep: every command of ``surgbox`` refuses hostile arguments with one line.

The commands are discovered from the argparse tree (``surgbox.cli.build_parser``), so a
command added later is swept without editing this file. Each argument slot of each command
(positionals and options that take a value) gets every hostile value of its kind, the other
required slots get fillers, and the command runs in-process through ``surgbox.cli.main`` with
``SURGBOX_HOME`` in a temporary folder. Every run must exit non-zero with exactly one line on
stderr, no ``Traceback`` and no ``internal error`` (the CLI's last-resort message for a bug).

Two homes: one that does not exist and cannot be created (every command that needs a home
stops there, cleanly), and an initialized one with the admin's credentials in the environment,
for the commands that log in (``--user``): there the hostile values reach the catalog.

When a new command accepts a value here legitimately, or would start long work (a recording)
before refusing one, give it a guard in :data:`GUARDS` with the reason; do not weaken the
assertions.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest

from surgbox.cli import build_parser, main

# What Python makes of bytes that are not UTF-8 on a Linux command line (surrogateescape), and a
# lone surrogate (a library caller can pass one).
NON_UTF8 = os.fsdecode(b"caf\xe9-\xff\xfe")
LONE_SURROGATE = "x\ud800y"
ENCODINGS = {"non-utf8": NON_UTF8, "lone-surrogate": LONE_SURROGATE}
NUMBERS = {"nan": "nan", "inf": "inf", "minus-inf": "-inf", "negative": "-5", "empty": "", "word": "twelve"}
HUGE = {int: "99999999999999999999999999999", float: "1e400"}
SECONDS_PER_CASE = 60  # a case still running after this is a hang (or a recording that started)

# Extra arguments for commands that would otherwise start long work when the swept value is
# refused late or accepted; a guard is skipped when its own option is the slot under test.
GUARDS: dict[tuple[str, ...], list[str]] = {
    # without an invalid duration, `--home DIR` (an existing folder) starts a 20 s recording
    ("demo",): ["--duration=-1"],
    # with an existing folder or file as --port the simulator would run until stopped
    ("simulate", "bis"): ["--duration=-1"],
}

# Hostile values a command accepts by design: command -> {slot: {value labels}}, with the reason.
ACCEPTED: dict[tuple[str, ...], dict[str, set[str]]] = {
    # `store init` makes its roots: a new folder, or an existing empty one, is what it is for
    ("store", "init"): {"--root": {"missing", "missing-folder", "folder"}},
    # `crypt keygen KEY` writes a new key file: a path that does not exist yet is the normal case
    ("crypt", "keygen"): {"key": {"missing"}},
    # `detect --out-dir DIR` makes DIR (as `mkdir -p`), once the images and the model are good
    ("detect",): {"--out-dir": {"missing", "missing-folder", "folder"}},
}


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(path, parser)`` for every runnable command: parsers without subcommands, and parsers
    whose subcommand is optional (``surgbox bis`` prints its help)."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        yield path, parser
        return
    if path and not sub.required:
        yield path, parser
    seen: set[int] = set()
    for name, child in sub.choices.items():
        if id(child) not in seen:  # aliases share a parser
            seen.add(id(child))
            yield from _leaves(child, path + (name,))


def _slots(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction))
            and a.nargs != 0]


_PATHY = re.compile(r"FILE|DIR|PATH|KEY|IMAGE|DATASET|ANNOTATION|GROUND_TRUTH|SRC|IN$|OUT|CONFIG|WEIGHTS|ROOT|HOME|PORT|\.")


def _kind(action: argparse.Action) -> str:
    if action.choices is not None:
        return "choice"
    if action.type is not None and action.type not in (str, Path):
        try:
            if isinstance(action.type("1"), (int, float)):
                return "number"
        except Exception:
            pass
    names = " ".join(filter(None, [str(action.metavar or ""), action.dest, *action.option_strings])).upper()
    if action.type is Path or _PATHY.search(names.replace("-", "_")):
        return "path"
    return "text"


@pytest.fixture
def places(tmp_path) -> dict[str, str]:
    """Hostile paths: missing, in a missing folder, through a file, read-only, a folder, empty, binary."""
    d = tmp_path / "hostile"
    d.mkdir()
    (d / "folder").mkdir()
    (d / "empty").write_bytes(b"")
    (d / "binary").write_bytes(BINARY)
    return {
        "missing": str(d / "absent"),
        "missing-folder": str(d / "absent" / "x.mp4"),
        "through-a-file": str(d / "empty" / "x"),
        "read-only": "/proc/surgbox-sweep/x",  # cannot be created, not even by root
        "folder": str(d / "folder"),
        "empty-file": str(d / "empty"),
        "binary-file": str(d / "binary"),
    }


BINARY = bytes(range(256)) * 64 + b"\x00\xff" * 1000


def _restore(places: dict[str, str]) -> list[str]:
    """Put the hostile paths back as they were; returns what a run created or changed there."""
    changed = []
    missing = Path(places["missing"])
    if os.path.lexists(missing):
        changed.append(str(missing))
        shutil.rmtree(missing) if missing.is_dir() and not missing.is_symlink() else missing.unlink()
    for item in Path(places["folder"]).iterdir():
        changed.append(str(item))
        shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    for name, data in (("empty-file", b""), ("binary-file", BINARY)):
        f = Path(places[name])
        if f.is_symlink() or not f.is_file() or f.read_bytes() != data:
            changed.append(str(f))
            if f.is_dir() and not f.is_symlink():
                shutil.rmtree(f)
            f.unlink(missing_ok=True)
            f.write_bytes(data)
    return changed


def _values(action: argparse.Action, places: dict[str, str]) -> dict[str, str]:
    kind = _kind(action)
    values = dict(ENCODINGS)
    if kind == "choice":
        values["not-a-choice"] = "no-such-choice"
    elif kind == "number":
        values.update(NUMBERS)
        values["huge"] = HUGE[float] if isinstance(action.type("1"), float) else HUGE[int]
    elif kind == "path":
        values.update(places)
    return values


def _filler(action: argparse.Action, places: dict[str, str]) -> str:
    if action.choices is not None:
        return str(next(iter(action.choices)))
    if _kind(action) == "number":
        return "1"
    return places["missing"]


def _argv(path, parser, slot, value, places) -> list[str]:
    """``path`` + required fillers + ``slot`` set to ``value`` + the command's guard."""
    opts: list[str] = []
    positionals: list[str] = []
    for a in _slots(parser):
        v = value if a is slot else _filler(a, places) if (a.required or not a.option_strings) else None
        if v is None:
            continue
        if a.option_strings:
            opts.append(f"{a.option_strings[-1]}={v}")
        elif a.nargs not in ("?", "*") or a is slot:
            positionals.append(v)
    guard = GUARDS.get(path, [])
    if slot.option_strings and any(g.split("=", 1)[0] in slot.option_strings for g in guard):
        guard = []
    return [*path, *opts, *guard, *positionals]


class _Hang(BaseException):
    pass


def _run(argv: list[str], capfd) -> tuple[int | None, str, str]:
    """Run ``surgbox ARGV`` in-process: (exit status or None if it raised, stderr, what it raised)."""
    def alarm(signum, frame):
        raise _Hang(f"still running after {SECONDS_PER_CASE} s")

    capfd.readouterr()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []  # so main's logging.basicConfig sends log lines to stderr, as in a terminal
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(SECONDS_PER_CASE)
    raised = ""
    try:
        rc = main(argv)
    except BaseException as exc:  # noqa: BLE001 - everything that escapes main is a failure
        rc, raised = None, f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        root.handlers, root.level = handlers, level
    return rc, capfd.readouterr().err, raised


def _problem(rc, err, raised, *, accepted: bool = False) -> str | None:
    lines = [line for line in err.splitlines() if line.strip()]
    if raised:
        return f"raised {raised}"
    if "Traceback" in err:
        return "printed a traceback"
    if "internal error" in err:
        return f"internal error: {err.strip()[:300]}"
    if rc == 0 and accepted:
        return None
    if rc == 0:
        return "exit status 0 (accepted it; if that is right, give the command a guard in GUARDS)"
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr: {err.strip()[:400]!r}"
    return None


LEAVES = list(_leaves(build_parser()))
AUTH_LEAVES = [(p, c) for p, c in LEAVES if any("--user" in a.option_strings for a in c._actions)]


def _sweep(path, parser, places, capfd) -> list[str]:
    failures = []
    accepted = ACCEPTED.get(path, {})
    for slot in _slots(parser):
        for label, value in _values(slot, places).items():
            argv = _argv(path, parser, slot, value, places)
            rc, err, raised = _run(argv, capfd)
            ok = label in accepted.get(slot.option_strings[-1] if slot.option_strings else slot.dest, ())
            problem = _problem(rc, err, raised, accepted=ok)
            made = _restore(places)
            if made and not ok:
                problem = problem or f"left {', '.join(made)} behind"
            if problem:
                shown = " ".join(a.encode("utf-8", "backslashreplace").decode() for a in argv)
                failures.append(f"{slot.option_strings or slot.dest} = {label}: `surgbox {shown}`: {problem}")
    return failures


@pytest.fixture
def quiet_env(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # no terminal: nothing can prompt
    for var in ("SURGBOX_USER", "SURGBOX_PASSWORD", "SURGBOX_STORE_ROOTS", "SURGBOX_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)


def test_the_sweep_finds_the_commands():
    names = {" ".join(p) for p, _ in LEAVES}
    assert {"record", "deid", "events create", "store get", "crypt decrypt", "simulate bis"} <= names
    assert len(AUTH_LEAVES) >= 15


@pytest.mark.parametrize("path,parser", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_hostile_arguments_without_a_home(path, parser, places, quiet_env, monkeypatch, capfd):
    """SURGBOX_HOME under a file: it does not exist and cannot be made."""
    monkeypatch.setenv("SURGBOX_HOME", str(Path(places["empty-file"]) / "home"))
    failures = _sweep(path, parser, places, capfd)
    assert not failures, f"{len(failures)} hostile runs of `surgbox {' '.join(path)}`:\n" + "\n".join(failures)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from surgbox.catalog import install_home

    home = install_home(tmp_path_factory.mktemp("sweep") / "home", "admin", "admin-password")
    cfg = home.config_path.read_text()
    home.config_path.write_text(cfg.replace("min_length = 8", "min_length = 8\ntime_cost = 1\nmemory_kib = 8192\nparallelism = 1"))
    return home


@pytest.mark.parametrize("path,parser", AUTH_LEAVES, ids=[" ".join(p) for p, _ in AUTH_LEAVES])
def test_hostile_arguments_logged_in(path, parser, places, home, quiet_env, monkeypatch, capfd):
    """An initialized home, logged in as its admin: the values reach the catalog."""
    monkeypatch.setenv("SURGBOX_HOME", str(home.path))
    monkeypatch.setenv("SURGBOX_USER", "admin")
    monkeypatch.setenv("SURGBOX_PASSWORD", "admin-password")
    failures = _sweep(path, parser, places, capfd)
    assert not failures, f"{len(failures)} hostile runs of `surgbox {' '.join(path)}`:\n" + "\n".join(failures)
