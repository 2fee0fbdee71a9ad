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
