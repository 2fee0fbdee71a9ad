"""README stays true: its commands exist and its library example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from surgbox.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_command_in_the_readme_table_exists():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    documented = set(re.findall(r"^\| `surgbox ([a-z]+)", README, flags=re.M))
    assert documented, "README has no command table"
    assert documented <= set(sub.choices), documented - set(sub.choices)
    assert set(sub.choices) <= documented, f"commands missing from README: {set(sub.choices) - documented}"


def test_every_subcommand_is_in_its_commands_row_and_every_linked_page_exists():
    """A command with actions (``events``, ``store``, ...) lists every one of them in its row."""
    import argparse

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `surgbox ([a-z-]+)[^\n]*$", README, flags=re.M)}
    missing = []
    for name, parser in sub.choices.items():
        actions = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if actions is None or name not in rows:
            continue
        shown = set(re.findall(r"[a-z][a-z-]*", rows[name].split("`")[1]))
        missing += [f"{name} {action}" for action in actions.choices if action not in shown]
    assert not missing, f"README command table rows lack: {missing}"
    pages = set(re.findall(r"\]\((docs/[^)#]+)", README))
    assert pages and all((ROOT / p).is_file() for p in pages), sorted(p for p in pages if not (ROOT / p).is_file())


def test_quickstart_names_the_install_script_and_the_test_command():
    assert "bash scripts/install.sh && .venv/bin/surgbox demo" in README
    assert ".venv/bin/python -m pytest" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/install.sh && .venv/bin/surgbox demo" in ci and ".venv/bin/python -m pytest" in ci


def test_library_example_runs(tmp_path):
    code = re.search(r"```python\n(import surgbox\n.*?)```", README, flags=re.S).group(1)
    assert "duration=60" in code
    code = code.replace("duration=60", "duration=2").replace('"examples/record.toml"', repr(str(ROOT / "examples" / "record.toml")))
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=300)
    assert (tmp_path / "case.mp4").stat().st_size > 0
    assert (tmp_path / "case-deid.mp4").stat().st_size > 0
