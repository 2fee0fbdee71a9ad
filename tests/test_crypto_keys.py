"""Master keys: key files (0600, raw or hex), passphrase keys (scrypt), key ids, key rings."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from surgbox.crypto.keys import (
    KeyFileError,
    KeyRing,
    MasterKey,
    ScryptParams,
    WrongKeyError,
    is_passphrase_file,
    key_id_of,
    load_key,
    load_keyring,
)

FAST = {"n": 1 << 10, "r": 8, "p": 1}  # cheap scrypt for tests; the default is n = 2**17


def test_save_creates_0600_hex_file_and_never_overwrites(tmp_path):
    old = os.umask(0)  # even a permissive umask must not widen it
    try:
        k = MasterKey.generate()
        p = k.save(tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert p.read_text().strip() == k.material.hex() and len(p.read_text().strip()) == 64
    assert load_key(p) == k
    with pytest.raises(KeyFileError, match="already exists"):
        MasterKey.generate().save(p)
    assert load_key(p) == k


def test_binary_and_hex_key_files(tmp_path):
    raw = os.urandom(32)
    (tmp_path / "bin").write_bytes(raw)
    (tmp_path / "hex").write_text("  " + raw.hex().upper() + "\r\n")
    assert load_key(tmp_path / "bin").material == raw
    assert load_key(tmp_path / "hex").material == raw
    b = MasterKey.generate()
    b.save(tmp_path / "b2", binary=True)
    assert (tmp_path / "b2").read_bytes() == b.material


@pytest.mark.parametrize("content", [b"", b"short", os.urandom(31), os.urandom(33), b"zz" * 32, b"ab" * 31])
def test_bad_key_files_are_refused_with_the_fix(tmp_path, content):
    p = tmp_path / "k"
    p.write_bytes(content)
    with pytest.raises(KeyFileError, match="32 raw bytes or 64 hex"):
        load_key(p)


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist.*keygen"):
        load_key(tmp_path / "nope")


def test_loose_permissions_warn(tmp_path, caplog):
    p = tmp_path / "k"
    p.write_text(os.urandom(32).hex())
    p.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="surgbox.crypto.keys"):
        load_key(p)
    assert "chmod 600" in caplog.text


def test_key_id_is_stable_and_does_not_reveal_the_key():
    k = MasterKey(bytes(32))
    assert k.key_id == key_id_of(bytes(32)) and len(k.key_id) == 16
    assert k.key_id != bytes(32).hex()[:16]
    assert MasterKey(bytes(31) + b"\x01").key_id != k.key_id
    assert k.material.hex() not in repr(k)
    with pytest.raises(ValueError):
        MasterKey(b"x" * 16)


def test_passphrase_key_round_trip_and_wrong_passphrase(tmp_path):
    p = tmp_path / "pass.key"
    params, key = ScryptParams.create(p, "correct horse", **FAST)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert params.key_id == key.key_id and b"correct" not in p.read_bytes()
    assert load_key(p, "correct horse") == key
    assert load_key(p, b"correct horse") == key
    with pytest.raises(WrongKeyError, match="wrong passphrase"):
        load_key(p, "wrong horse")
    with pytest.raises(KeyFileError, match="passphrase key"):
        load_key(p)
    # parameters are stored: a fresh salt gives a different key for the same passphrase
    _, other = ScryptParams.create(tmp_path / "p2", "correct horse", **FAST)
    assert other != key


def test_corrupt_passphrase_file(tmp_path):
    p = tmp_path / "k"
    p.write_text('{"kdf": "argon9"}')
    with pytest.raises(KeyFileError, match="only 'scrypt'"):
        load_key(p, "x")
    with pytest.raises(ValueError):
        ScryptParams(b"salt", n=1000)


@pytest.mark.parametrize("cost, words", [
    ({"n": 1 << 40}, "would need 1073741824 MiB"),  # was a MemoryError (an internal error), or the machine's memory
    ({"n": 1 << 20, "r": 16}, "at most 1024 MiB"),
    ({"n": 1024, "p": 10 ** 8}, "p must be from 1 to 16"),  # CPU for hours at every login
    ({"n": 1024, "r": 0}, "r must be >= 1"),
])
def test_a_passphrase_file_cannot_ask_scrypt_for_the_machine(tmp_path, cost, words):
    import json

    p = tmp_path / "k"
    p.write_text(json.dumps({"kdf": "scrypt", "salt": "00", "n": 1024, "r": 8, "p": 1, **cost}))
    with pytest.raises(KeyFileError, match=words):
        load_key(p, "passphrase")
    with pytest.raises(ValueError, match=words):
        ScryptParams(b"salt", **{"n": 1024, "r": 8, "p": 1, **cost})
    assert ScryptParams(b"salt", n=1 << 20).n == 1 << 20  # 1 GiB: the ceiling itself is allowed


def test_keyring_rotation_and_lookup(tmp_path):
    old, new = MasterKey.generate(), MasterKey.generate()
    ring = KeyRing.of(old)
    rotated = ring.rotated(new)
    assert rotated.primary == new and rotated.get(old.key_id) == old
    assert rotated.ids == [new.key_id, old.key_id]
    with pytest.raises(WrongKeyError, match="written with key id ffff.*--key-file"):
        ring.get("ffffffffffffffff", "object 'a'")
    with pytest.raises(ValueError):
        KeyRing((old, old))
    with pytest.raises(ValueError):
        KeyRing(())
    old.save(tmp_path / "old")
    new.save(tmp_path / "new")
    loaded = load_keyring([tmp_path / "new", tmp_path / "old"])
    assert loaded.primary == new and loaded.ids == rotated.ids
    with pytest.raises(KeyFileError, match="--key-file"):
        load_keyring([])


def test_new_key_files_fsync_their_directory(tmp_path, monkeypatch):
    """Power-loss durability: after creating a key file, its directory entry is fsynced too (a spy on
    the fsync system call, which is the durability edge that cannot be cut here)."""
    synced: list[tuple[bool, int]] = []
    real = os.fsync

    def spy(fd):
        st = os.fstat(fd)
        synced.append((stat.S_ISDIR(st.st_mode), st.st_ino))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    d = tmp_path / "keys"
    d.mkdir()
    MasterKey.generate().save(d / "k")
    assert synced == [(False, (d / "k").stat().st_ino), (True, d.stat().st_ino)]
    synced.clear()
    ScryptParams.create(d / "p", "pw", **FAST)
    assert synced == [(False, (d / "p").stat().st_ino), (True, d.stat().st_ino)]


@pytest.mark.parametrize("start", [b"{", b" {", b"\n{"])
def test_raw_key_that_starts_like_json_is_not_a_passphrase_file(tmp_path, start):
    material = start + os.urandom(32 - len(start))
    p = tmp_path / "raw.key"
    MasterKey(material).save(p, binary=True)
    assert not is_passphrase_file(p)
    assert load_key(p).material == material
    ScryptParams.create(tmp_path / "pass.key", "pw", **FAST)
    assert is_passphrase_file(tmp_path / "pass.key")
    assert not is_passphrase_file(MasterKey.generate().save(tmp_path / "hex.key"))
    assert not is_passphrase_file(tmp_path / "missing")


def test_passphrase_file_without_passphrase_message_fits_every_caller(tmp_path):
    p = tmp_path / "pass.key"
    ScryptParams.create(p, "pw", **FAST)
    with pytest.raises(KeyFileError) as info:
        load_key(p)  # e.g. `events export --key-file`, which has no --passphrase-env
    msg = str(info.value)
    assert str(p) in msg and "surgbox crypt keygen" in msg and "where the command supports it" in msg
