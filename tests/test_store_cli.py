"""``surgbox store``: init, put/get/ls, verify/scrub exit codes, degraded status, recover."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from surgbox.cli import main


@pytest.fixture
def env(tmp_path):
    roots = [tmp_path / "d1", tmp_path / "d2"]
    for r in roots:
        r.mkdir()
    assert main(["crypt", "keygen", str(tmp_path / "key")]) == 0
    data = os.urandom(2_500_000)
    (tmp_path / "rec.mp4").write_bytes(data)
    args = ["--root", str(roots[0]), "--root", str(roots[1]), "--key-file", str(tmp_path / "key")]
    assert main(["store", "init", *args]) == 0
    return tmp_path, roots, args, data


def test_put_ls_get_verify(env, capsys):
    d, roots, args, data = env
    assert main(["store", "put", *args, str(d / "rec.mp4"), "2026/ev-1/rec.mp4"]) == 0
    capsys.readouterr()
    assert main(["store", "ls", *args, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["key"] == "2026/ev-1/rec.mp4" and row["plaintext_size"] == len(data)
    assert main(["store", "get", *args, "2026/ev-1/rec.mp4", str(d / "out.mp4")]) == 0
    assert (d / "out.mp4").read_bytes() == data
    assert main(["store", "verify", *args, "--decrypt"]) == 0
    assert main(["store", "status", *args]) == 0
    assert "HEALTHY" in capsys.readouterr().out


def test_verify_then_scrub_repairs(env, capsys):
    d, roots, args, data = env
    main(["store", "put", *args, str(d / "rec.mp4"), "rec"])
    blob = bytearray((roots[1] / "objects/rec").read_bytes())
    blob[1_000_000] ^= 1
    (roots[1] / "objects/rec").write_bytes(bytes(blob))
    capsys.readouterr()
    assert main(["store", "verify", *args]) == 2
    assert "DAMAGED" in capsys.readouterr().out
    assert main(["store", "scrub", *args]) == 0
    assert "REPAIRED" in capsys.readouterr().out
    assert main(["store", "verify", "--root", str(roots[0]), "--root", str(roots[1])]) == 0  # no key needed
    assert (roots[0] / "objects/rec").read_bytes() == (roots[1] / "objects/rec").read_bytes()


def test_degraded_status_is_loud(env, capsys):
    d, roots, args, data = env
    shutil.rmtree(roots[1])
    capsys.readouterr()
    assert main(["store", "status", *args]) == 2
    out, err = capsys.readouterr()
    assert "DEGRADED" in out and "FAILED" in out and "DEGRADED" in err
    assert main(["store", "put", *args, str(d / "rec.mp4"), "rec"]) == 2  # stored, but on one root only
    assert main(["store", "get", *args, "rec", str(d / "o")]) == 0 and (d / "o").read_bytes() == data
    assert main(["store", "status", "--json", *args]) == 2
    st = json.loads(capsys.readouterr().out)
    assert st["degraded"] and st["roots"][1]["state"] == "failed"


def test_errors_exit_1_and_write_nothing(env, capsys, monkeypatch):
    d, roots, args, data = env
    main(["store", "put", *args, str(d / "rec.mp4"), "rec"])
    assert main(["crypt", "keygen", str(d / "other")]) == 0
    capsys.readouterr()
    other = ["--root", str(roots[0]), "--root", str(roots[1]), "--key-file", str(d / "other")]
    assert main(["store", "get", *other, "rec", str(d / "o")]) == 1
    assert "written with key id" in capsys.readouterr().err and not (d / "o").exists()
    assert main(["store", "get", *args, "missing", str(d / "o")]) == 1 and not (d / "o").exists()
    assert main(["store", "put", *args, str(d / "rec.mp4"), "rec"]) == 1  # exists
    assert main(["store", "put", "--root", str(roots[0]), str(d / "rec.mp4"), "x"]) == 1  # no key
    assert "--key-file" in capsys.readouterr().err
    monkeypatch.delenv("SURGBOX_STORE_ROOTS", raising=False)
    assert main(["store", "status"]) == 1
    assert "--root" in capsys.readouterr().err


def test_environment_configuration_and_recover(env, capsys, monkeypatch):
    d, roots, args, data = env
    monkeypatch.setenv("SURGBOX_STORE_ROOTS", os.pathsep.join(map(str, roots)))
    monkeypatch.setenv("SURGBOX_KEY_FILE", str(d / "key"))
    assert main(["store", "put", str(d / "rec.mp4"), "a"]) == 0
    assert main(["store", "recover"]) == 0
    assert "0 unfinished" in capsys.readouterr().out
    assert main(["store", "ls"]) == 0 and "a" in capsys.readouterr().out.split()


# ---- issue 20 item 11: the home's store by default; issue 18: one clear line for bad input ---------------

def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_store_commands_use_the_initialized_home_store_and_key_by_default(surgbox_home, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SURGBOX_STORE_ROOTS", raising=False)
    monkeypatch.delenv("SURGBOX_KEY_FILE", raising=False)
    data = os.urandom(300_000)
    (tmp_path / "in.bin").write_bytes(data)
    assert main(["store", "status"]) == 0
    out = capsys.readouterr().out
    assert "HEALTHY" in out and str(surgbox_home.default_store_root) in out
    assert main(["store", "put", str(tmp_path / "in.bin"), "exports/in.bin"]) == 0
    assert main(["store", "get", "exports/in.bin", str(tmp_path / "out.bin")]) == 0
    assert (tmp_path / "out.bin").read_bytes() == data
    capsys.readouterr()
    assert main(["store", "ls", "--json"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["key"] == "exports/in.bin"]
    from surgbox.crypto.keys import load_key

    assert row["key_id"] == load_key(surgbox_home.master_key_path).key_id  # encrypted with the home's master key
    assert main(["store", "verify", "--decrypt"]) == 0 and main(["store", "recover"]) == 0
    assert main(["store", "status", "--home", str(surgbox_home.path)]) == 0


def test_without_a_home_or_a_root_the_error_names_both_fixes(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SURGBOX_STORE_ROOTS", raising=False)
    monkeypatch.setenv("SURGBOX_HOME", str(tmp_path / "never-initialized"))
    assert main(["store", "status"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "surgbox init" in line and "--root" in line and "never-initialized" in line


def _actions(parser):
    import argparse

    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from ((f"{name} {n}", x) for n, x in _actions(sub))
        elif not isinstance(a, argparse._HelpAction):
            yield (a.dest, a)


def test_every_store_and_crypt_option_and_argument_has_help_text():
    from surgbox.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = [f"{cmd} {where}" for cmd in ("store", "crypt") for where, a in _actions(sub.choices[cmd])
               if not (a.help or "").strip()]
    assert missing == []


@pytest.mark.parametrize("key", ["k" * 300, "k" * 5000, "fake\nline", "esc\x1b[2J"])
def test_bad_keys_give_one_line_and_leave_the_store_healthy(env, key):
    import subprocess
    import sys

    d, roots, args, _ = env
    run = lambda *a: subprocess.run([sys.executable, "-m", "surgbox", "store", *a], capture_output=True, text=True,
                                    timeout=60)
    proc = run("put", *args, str(d / "rec.mp4"), key)
    assert proc.returncode == 1 and "object key" in one_line(proc.stderr)
    st = run("status", "--json", *args)
    assert st.returncode == 0 and json.loads(st.stdout)["healthy"]


def test_the_same_directory_twice_is_refused(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    for other in (str(tmp_path / "a" / ".." / "a"), str(tmp_path / "link")):
        assert main(["store", "init", "--root", str(tmp_path / "a"), "--root", other]) == 1
        assert "same directory" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "a" / "surgbox-store.json").exists()


@pytest.fixture
def vendor_plugins(monkeypatch):
    """The process-wide plugin manager replaced by one with surgbox's stores and the example vendor store."""
    import store_example_sqlite

    import surgbox.plugins
    import surgbox_ext.plugin

    pm = surgbox.plugins.Plugins.build(entry_points=False, plugins=[(surgbox_ext.plugin, "surgbox"),
                                                                    (store_example_sqlite, "acme-sqlite-store")])
    monkeypatch.setattr(surgbox.plugins, "_default", pm)
    return pm


def test_the_cli_builds_stores_through_the_plugin_registry(vendor_plugins, env, capsys):
    d, _roots, _args, data = env
    args = ["--root", str(d / "vendor"), "--store", "example-sqlite", "--key-file", str(d / "key")]
    assert main(["store", "init", *args]) == 0
    assert main(["store", "put", *args, str(d / "rec.mp4"), "2026/ev-1/rec.mp4"]) == 0
    assert (d / "vendor" / "objects.sqlite3").is_file()  # the vendor's store, not ours
    assert main(["store", "get", *args, "2026/ev-1/rec.mp4", str(d / "back.mp4")]) == 0
    assert (d / "back.mp4").read_bytes() == data
    capsys.readouterr()
    assert main(["store", "ls", *args]) == 0 and "2026/ev-1/rec.mp4" in capsys.readouterr().out
    assert main(["store", "scrub", *args, "--decrypt"]) == 0 and main(["store", "recover", *args]) == 0


def test_a_store_without_a_capability_gets_one_line_naming_it(vendor_plugins, env, capsys):
    d, *_ = env
    args = ["--root", str(d / "vendor"), "--store", "example-minimal", "--key-file", str(d / "key")]
    assert main(["store", "init", *args]) == 0
    capsys.readouterr()
    assert main(["store", "recover", *args]) == 1
    line = one_line(capsys.readouterr().err)
    assert "'example-minimal'" in line and "'recovery' (partials(), recover())" in line
    assert main(["store", "scrub", *args]) == 1 and "'scrub'" in capsys.readouterr().err
    assert main(["store", "status", *args]) == 0  # what it has still works


def test_objects_under_another_key_are_reported_not_fatal(surgbox_home, tmp_path, capsys, monkeypatch):
    """In a home, event files are encrypted with each event's key: `store verify --decrypt` with the
    master key lists them as not authenticated (it used to stop at the first one), `store get` says
    how to export them."""
    from surgbox.crypto import KeyRing, MasterKey
    from surgbox_ext.store import LocalStore

    monkeypatch.delenv("SURGBOX_STORE_ROOTS", raising=False)
    monkeypatch.delenv("SURGBOX_KEY_FILE", raising=False)
    with LocalStore(surgbox_home.default_store_root, keyring=KeyRing.of(MasterKey.generate())) as s, \
            s.writer("events/ev-1/0001") as w:
        w.write(b"an event's file, under the event's own key")
    (tmp_path / "in").write_bytes(b"under the master key")
    assert main(["store", "put", str(tmp_path / "in"), "exports/in"]) == 0
    capsys.readouterr()
    assert main(["store", "verify", "--decrypt"]) == 0
    assert "1 object(s) not authenticated" in capsys.readouterr().out
    assert main(["store", "get", "events/ev-1/0001", str(tmp_path / "o")]) == 1
    assert "surgbox events export" in one_line(capsys.readouterr().err) and not (tmp_path / "o").exists()
