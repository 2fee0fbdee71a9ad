"""docs/upload.md stays true: its command synopses match the parsers, its Python example runs
against a real WebDAV server, and every option of the new commands has a help text."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from upload_fixtures import PASSWORD, USER, make_event
from upload_servers import start_script

from surgbox.catalog import Catalog
from surgbox.cli import build_parser

DOC = (Path(__file__).resolve().parents[1] / "docs" / "upload.md").read_text()


def _sub(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def test_synopses_name_only_real_subcommands_and_options():
    root = build_parser()
    synopses = re.findall(r"^surgbox (remote|upload) ([a-z]+)(.*(?:\n {20,}.*)*)", DOC, flags=re.M)
    assert len(synopses) >= 11
    seen = set()
    for group, action, rest in synopses:
        p = _sub(root, group, action)
        known = {s for a in p._actions for s in a.option_strings}
        for opt in re.findall(r"--[a-z][a-z-]*", rest):
            assert opt in known, f"surgbox {group} {action}: docs name {opt}, the parser has {sorted(known)}"
        seen.add((group, action))
    for group in ("remote", "upload"):
        assert {a for g, a in seen if g == group} == set(_sub(root, group)._actions[-1].choices), group


def test_every_option_and_argument_has_help():
    root = build_parser()
    for group in ("remote", "upload"):
        for name, p in _sub(root, group)._actions[-1].choices.items():
            for a in p._actions:
                if not isinstance(a, argparse._HelpAction):
                    assert a.help, f"surgbox {group} {name}: {a.dest} has no help"


def test_python_example_runs(surgbox_home, tmp_path):
    blocks = re.findall(r"(<!-- not run: [^>]+ -->\n)?```python\n(.*?)```", DOC, flags=re.S)
    (code,) = [c for skip, c in blocks if not skip]  # the one block that can run here
    with Catalog(surgbox_home) as cat:
        event_id = make_event(cat.login("admin", "admin-password"))
    server = start_script("wsgidav", tmp_path / "dav", user=USER, password=PASSWORD)
    try:
        ns = {"admin_password": "admin-password", "server_url": server.url, "dav_password": PASSWORD,
              "event_id": event_id}
        exec(compile(code, "docs/upload.md", "exec"), ns)
    finally:
        server.kill()
    assert ns["job"].status == "done" and (tmp_path / "dav" / "surgbox" / "manifests" / f"{event_id}.json").exists()
