"""``surgbox crypt``: round trip, failure exit codes, nothing written on failure."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from surgbox.cli import main
from surgbox.crypto import EncryptingWriter, MasterKey, load_key


@pytest.fixture
def files(tmp_path):
    assert main(["crypt", "keygen", str(tmp_path / "k")]) == 0
    data = os.urandom(3 * (1 << 20) + 777)
    (tmp_path / "in.bin").write_bytes(data)
    return tmp_path, data


def test_round_trip_with_aad(files, capsys):
    d, data = files
    assert stat.S_IMODE((d / "k").stat().st_mode) == 0o600
    assert main(["crypt", "encrypt", "--key-file", str(d / "k"), "--aad", "event 42", str(d / "in.bin"), str(d / "c")]) == 0
    ct = (d / "c").read_bytes()
    assert ct[0] == 40 and len(ct) == 40 + len(data) + 4 * 16  # 1 MiB segments, Tink layout
    assert main(["crypt", "decrypt", "--key-file", str(d / "k"), "--aad", "event 42", str(d / "c"), str(d / "out")]) == 0
    assert (d / "out").read_bytes() == data
    assert stat.S_IMODE((d / "out").stat().st_mode) == 0o600
    assert main(["crypt", "keyid", "--key-file", str(d / "k")]) == 0
    assert load_key(d / "k").key_id in capsys.readouterr().out


def leftovers(d):
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".partial"))


@pytest.mark.parametrize("damage", ["wrong-aad", "tamper", "truncate", "wrong-key"])
def test_decrypt_failure_writes_nothing_and_exits_1(files, capsys, damage):
    d, data = files
    main(["crypt", "encrypt", "--key-file", str(d / "k"), "--aad", "A", str(d / "in.bin"), str(d / "c")])
    ct = bytearray((d / "c").read_bytes())
    aad, key = "A", d / "k"
    if damage == "wrong-aad":
        aad = "B"
    elif damage == "tamper":
        ct[len(ct) // 2] ^= 1  # in a middle segment: found only after earlier segments were written out
    elif damage == "truncate":
        ct = ct[: 2 * (1 << 20)]  # cut exactly at a segment boundary
    else:
        main(["crypt", "keygen", str(d / "k2")])
        key = d / "k2"
    (d / "c").write_bytes(bytes(ct))
    (d / "out").write_bytes(b"previous content")
    capsys.readouterr()
    assert main(["crypt", "decrypt", "--key-file", str(key), "--aad", aad, str(d / "c"), str(d / "out")]) == 1
    assert "error" in capsys.readouterr().err
    assert (d / "out").read_bytes() == b"previous content" and leftovers(d) == []
    (d / "out").unlink()
    assert main(["crypt", "decrypt", "--key-file", str(key), "--aad", aad, str(d / "c"), str(d / "out")]) == 1
    assert not (d / "out").exists() and leftovers(d) == []


def test_decrypt_with_several_keys_after_rotation(files):
    d, data = files
    main(["crypt", "keygen", "--binary", str(d / "new")])
    assert len((d / "new").read_bytes()) == 32
    main(["crypt", "encrypt", "--key-file", str(d / "k"), str(d / "in.bin"), str(d / "c")])
    assert main(["crypt", "decrypt", "--key-file", str(d / "new"), "--key-file", str(d / "k"),
                 str(d / "c"), str(d / "out")]) == 0
    assert (d / "out").read_bytes() == data


def test_bad_key_file_and_missing_input(files, capsys):
    d, _ = files
    (d / "bad").write_text("not a key")
    assert main(["crypt", "encrypt", "--key-file", str(d / "bad"), str(d / "in.bin"), str(d / "c")]) == 1
    assert "64 hex" in capsys.readouterr().err
    assert main(["crypt", "encrypt", "--key-file", str(d / "k"), str(d / "nope"), str(d / "c")]) == 1
    assert "cannot open input" in capsys.readouterr().err
    assert not (d / "c").exists()
    assert main(["crypt", "keygen", str(d / "k")]) == 1  # never overwrites a key
    assert "already exists" in capsys.readouterr().err


def test_passphrase_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PW", "open sesame")
    assert main(["crypt", "keygen", "--passphrase", "--passphrase-env", "PW", "--scrypt-n", "1024", str(tmp_path / "pk")]) == 0
    (tmp_path / "m").write_bytes(b"minutes of surgery")
    args = ["--key-file", str(tmp_path / "pk"), "--passphrase-env", "PW"]
    assert main(["crypt", "encrypt", *args, str(tmp_path / "m"), str(tmp_path / "c")]) == 0
    monkeypatch.setenv("PW", "wrong")
    assert main(["crypt", "decrypt", *args, str(tmp_path / "c"), str(tmp_path / "o")]) == 1
    monkeypatch.setenv("PW", "open sesame")
    assert main(["crypt", "decrypt", *args, str(tmp_path / "c"), str(tmp_path / "o")]) == 0
    assert (tmp_path / "o").read_bytes() == b"minutes of surgery"


def test_raw_key_starting_with_a_brace_needs_no_passphrase(tmp_path, capsys):
    key = MasterKey(b"{" + os.urandom(31))
    key.save(tmp_path / "raw", binary=True)
    assert main(["crypt", "keyid", "--key-file", str(tmp_path / "raw")]) == 0
    assert capsys.readouterr().out.strip() == key.key_id
    roots = [tmp_path / "d1", tmp_path / "d2"]
    for r in roots:
        r.mkdir()
    (tmp_path / "m").write_bytes(b"minutes of surgery")
    args = ["--root", str(roots[0]), "--root", str(roots[1]), "--key-file", str(tmp_path / "raw")]
    assert main(["store", "init", *args]) == 0
    assert main(["store", "put", *args, str(tmp_path / "m"), "m"]) == 0
    assert main(["store", "get", *args, "m", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o").read_bytes() == b"minutes of surgery"


def test_salvage_of_killed_writer_output(tmp_path):
    main(["crypt", "keygen", str(tmp_path / "k")])
    key = load_key(tmp_path / "k")
    data = os.urandom(3 * (1 << 20))
    f = open(tmp_path / "c", "wb", buffering=0)
    w = EncryptingWriter.open(f, key.material, b"")
    w.write(data)  # the writer is "killed" here: complete segments are in the file, no last segment
    args = ["--key-file", str(tmp_path / "k"), str(tmp_path / "c"), str(tmp_path / "o")]
    assert main(["crypt", "decrypt", *args]) == 1 and not (tmp_path / "o").exists()
    assert main(["crypt", "salvage", *args]) == 2
    got = (tmp_path / "o").read_bytes()
    assert len(got) == 3 * (1 << 20) - 56 - 2 * 16 and got == data[: len(got)]  # 3 full segments
    w.close()
    f.close()
    assert main(["crypt", "salvage", *args]) == 1 and (tmp_path / "o").read_bytes() == got  # OUT is never replaced
    (tmp_path / "o").unlink()
    assert main(["crypt", "salvage", *args]) == 0 and (tmp_path / "o").read_bytes() == data


@pytest.mark.parametrize("action", ["encrypt", "decrypt", "salvage", "store get"])
def test_out_is_never_an_existing_file(tmp_path, capsys, action):
    """OUT that exists is refused before any work, with one line: the input (encrypt IN IN made
    IN ciphertext), the key file (encrypt KEY KEY / store get OBJ KEY destroyed the key and with it
    every file it encrypts) or any earlier file; nothing there changes."""
    key = tmp_path / "k"
    assert main(["crypt", "keygen", str(key)]) == 0
    plain, enc = tmp_path / "plain", tmp_path / "enc"
    plain.write_bytes(b"minutes of surgery")
    assert main(["crypt", "encrypt", "--key-file", str(key), str(plain), str(enc)]) == 0
    earlier = tmp_path / "earlier"
    earlier.write_bytes(b"an earlier file")
    roots = ["--root", str(tmp_path / "store"), "--key-file", str(key)]
    if action == "store get":
        (tmp_path / "store").mkdir()
        assert main(["store", "init", *roots]) == 0 and main(["store", "put", *roots, str(plain), "m"]) == 0
    source = plain if action == "encrypt" else enc
    cases = [(source, "is the input file"), (key, "is the key file"), (earlier, "exists; existing files are never replaced")]
    if action == "store get":
        cases = cases[1:]
    capsys.readouterr()
    before = {p: p.read_bytes() for p in (plain, enc, key, earlier)}
    for out, message in cases:
        argv = (["store", "get", *roots, "m", str(out)] if action == "store get"
                else ["crypt", action, "--key-file", str(key), str(source), str(out)])
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (out, err)
    assert {p: p.read_bytes() for p in before} == before
    assert load_key(key)  # still a key


def test_console_script_exit_status(files):
    d, _ = files
    (d / "junk").write_bytes(b"\x00" * 100)
    r = subprocess.run([sys.executable, "-m", "surgbox", "crypt", "decrypt", "--key-file", str(d / "k"),
                        str(d / "junk"), str(d / "o")], capture_output=True, text=True)
    assert r.returncode == 1 and "header length byte" in r.stderr and not (d / "o").exists()
