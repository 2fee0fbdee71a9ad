"""The console script: --version, plugins table and JSON, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import surgbox
from surgbox.cli import main

KINDS = {"source", "compositor", "encoder", "detector", "store", "decoder", "display"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "surgbox", *args], capture_output=True, text=True)


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"surgbox {surgbox.__version__}"


def test_console_script_installed():
    import shutil

    # pip puts console scripts beside the interpreter (a venv's bin/), whether or not it is on PATH
    exe = shutil.which("surgbox", path=os.path.dirname(sys.executable)) or shutil.which("surgbox")
    assert exe, f"no 'surgbox' console script beside {sys.executable} or on PATH; install the package (README)"
    assert subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.startswith("surgbox ")


def test_plugins_json_lists_objects_with_required_fields():
    out = run_cli("plugins", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows, "no plugins listed"
    for r in rows:
        assert {"kind", "name", "package", "available", "reason"} <= set(r)
        assert r["kind"] in KINDS or r["broken"]  # a plugin that could not be loaded has no kind
        assert isinstance(r["available"], bool)
        assert (r["reason"] is None) == r["available"]


def test_plugins_table_has_header_and_rows():
    out = run_cli("plugins", "--kind", "detector")
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "PACKAGE", "STATUS"]
    assert all(line.startswith("detector") for line in lines[1:])
    for kind in ("decoder", "display"):  # every registration kind can be asked for
        rows = run_cli("plugins", "--kind", kind).stdout.splitlines()[1:]
        assert rows and all(r.split()[:3] == [kind, "gstreamer", "surgbox"] for r in rows)


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: surgbox" in capsys.readouterr().out
