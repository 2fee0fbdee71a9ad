"""``local`` and ``mirror`` stores on real directories: commit, integrity, scrub/repair, degraded mode."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from surgbox.crypto import DecryptionError, KeyRing, MasterKey, WrongKeyError
from surgbox.errors import ConfigError, StoreError
from surgbox_ext.store import LocalStore, MirrorStore, ObjectNotFoundError

SEG = 4096
KEY = MasterKey.generate()


def payload(n: int, seed: int = 0) -> bytes:
    out, i = bytearray(), 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


@pytest.fixture
def roots(tmp_path):
    rs = [tmp_path / "disk1", tmp_path / "disk2"]
    for r in rs:
        r.mkdir()
    return rs


@pytest.fixture
def mirror(roots):
    with MirrorStore(roots, keyring=KeyRing.of(KEY), init=True, segment_size=SEG) as s:
        yield s


@pytest.fixture
def local(tmp_path):
    (tmp_path / "one").mkdir()
    with LocalStore(tmp_path / "one", keyring=KeyRing.of(KEY), init=True, segment_size=SEG) as s:
        yield s


def put(store, key: str, data: bytes, **meta: str) -> None:
    with store.writer(key, meta) as w:
        for i in range(0, len(data), 3000):
            w.write(data[i : i + 3000])


def get(store, key: str) -> bytes:
    with store.reader(key) as r:
        return r.read()


def test_plugins_registered_lazily(default_plugins, tmp_path):
    names = default_plugins.names("store")
    assert {"local", "mirror"} <= set(names)
    (tmp_path / "r").mkdir()
    s = default_plugins.create("store", "local", root=tmp_path / "r", keyring=KeyRing.of(KEY), init=True)
    assert isinstance(s, LocalStore) and not (tmp_path / "r" / "surgbox-store.json").exists()  # no I/O yet
    with s:
        put(s, "a", b"hello")
        assert get(s, "a") == b"hello"
    m = default_plugins.create("store", "mirror", roots=[tmp_path / "r", tmp_path / "r2"])
    assert isinstance(m, MirrorStore)


def test_local_round_trip_sidecar_and_layout(local, tmp_path):
    data = payload(50_000)
    put(local, "2026/11/ev-1/rec.mp4", data, camera="room")
    put(local, "2026/11/ev-1/shot.jpg", b"jpeg")
    put(local, "2026/12/other", b"")
    assert list(local.keys()) == ["2026/11/ev-1/rec.mp4", "2026/11/ev-1/shot.jpg", "2026/12/other"]
    assert list(local.keys("2026/11/")) == ["2026/11/ev-1/rec.mp4", "2026/11/ev-1/shot.jpg"]
    assert get(local, "2026/11/ev-1/rec.mp4") == data and get(local, "2026/12/other") == b""
    root = tmp_path / "one"
    blob = (root / "objects/2026/11/ev-1/rec.mp4").read_bytes()
    assert data[:64] not in blob  # encrypted at rest
    meta = json.loads((root / "meta/2026/11/ev-1/rec.mp4.json").read_text())
    assert meta["key_id"] == KEY.key_id and meta["plaintext_size"] == len(data)
    assert meta["ciphertext_size"] == len(blob) and meta["sha256"] == hashlib.sha256(blob).hexdigest()
    assert meta["metadata"] == {"camera": "room"} and meta["recovered"] is False
    assert list((root / "tmp").iterdir()) == []
    info = local.info("2026/11/ev-1/rec.mp4")
    assert info.plaintext_size == len(data) and info.segment_size == SEG
    with local.reader("2026/11/ev-1/rec.mp4") as r:  # seekable
        r.seek(33_333)
        assert r.read(100) == data[33_333:33_433]


def test_exception_inside_writer_leaves_nothing(local, tmp_path):
    with pytest.raises(RuntimeError):
        with local.writer("x") as w:
            w.write(payload(20_000))
            raise RuntimeError("boom")
    assert list(local.keys()) == [] and list((tmp_path / "one/tmp").iterdir()) == []
    w = local.writer("y")
    w.write(b"abc")
    del w  # dropped without close: discarded, not committed
    assert list(local.keys()) == [] and list((tmp_path / "one/tmp").iterdir()) == []


def test_keys_validated_overwrite_refused_delete(local):
    for bad in ["", "/abs", "a/../b", "a//b", "./a", "a\\b", ".."]:
        with pytest.raises(StoreError, match="relative POSIX"):
            local.writer(bad)
    put(local, "k", b"1")
    with pytest.raises(StoreError, match="already exists"):
        local.writer("k")
    local.delete("k")
    assert list(local.keys()) == []
    with pytest.raises(ObjectNotFoundError):
        local.reader("k")
    with pytest.raises(ObjectNotFoundError):
        local.delete("k")


def test_ciphertext_bound_to_its_key(local, tmp_path):
    """Renaming/copying an object's files under another key is detected (the key is the associated data)."""
    put(local, "a", payload(9000, 1))
    put(local, "b", payload(9000, 2))
    root = tmp_path / "one"
    shutil.copy(root / "objects/a", root / "objects/b")
    meta = json.loads((root / "meta/a.json").read_text())
    meta["key"] = "b"
    (root / "meta/b.json").write_text(json.dumps(meta))
    with pytest.raises(DecryptionError):
        get(local, "b")


def test_key_rotation_and_wrong_key(roots):
    old, new = MasterKey.generate(), MasterKey.generate()
    with MirrorStore(roots, keyring=KeyRing.of(old), init=True, segment_size=SEG) as s:
        put(s, "old", b"written with the old key")
    with MirrorStore(roots, keyring=KeyRing.of(old).rotated(new), segment_size=SEG) as s:
        put(s, "new", b"written with the new key")
        assert s.info("old").key_id == old.key_id and s.info("new").key_id == new.key_id
        assert get(s, "old") == b"written with the old key" and get(s, "new") == b"written with the new key"
    with MirrorStore(roots, keyring=KeyRing.of(new), segment_size=SEG) as s:
        with pytest.raises(WrongKeyError, match=f"key id {old.key_id}"):
            s.reader("old")
    with MirrorStore(roots, segment_size=SEG) as s:
        with pytest.raises(ConfigError, match="key_file"):
            s.reader("new")


def test_mirror_writes_identical_copies(mirror, roots):
    put(mirror, "rec", payload(30_000))
    a, b = (r / "objects/rec" for r in roots)
    assert a.read_bytes() == b.read_bytes()
    assert (roots[0] / "meta/rec.json").read_bytes() == (roots[1] / "meta/rec.json").read_bytes()
    st = mirror.status()
    assert st["healthy"] and not st["degraded"] and [r["objects"] for r in st["roots"]] == [1, 1]


def flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_corrupted_replica_read_from_good_copy_then_scrub_repairs(mirror, roots):
    data = payload(40_000)
    put(mirror, "rec", data)
    flip(roots[0] / "objects/rec", 5 * SEG + 100)
    assert get(mirror, "rec") == data  # segment 5 taken from disk2
    assert mirror.status()["suspect"] == [f"rec @ {roots[0]}"] and not mirror.status()["healthy"]
    report = mirror.verify()
    assert [(p.root, p.kind, p.repaired) for p in report.problems] == [(str(roots[0]), "checksum", False)]
    assert (roots[0] / "objects/rec").read_bytes() != (roots[1] / "objects/rec").read_bytes()  # verify is read-only
    report = mirror.scrub()
    assert report.ok and [(p.kind, p.repaired) for p in report.problems] == [("checksum", True)]
    assert (roots[0] / "objects/rec").read_bytes() == (roots[1] / "objects/rec").read_bytes()
    assert mirror.verify(decrypt=True).problems == () and mirror.status()["healthy"]


def test_scrub_repairs_deleted_replica_and_sidecar(mirror, roots):
    put(mirror, "a", payload(10_000, 1))
    put(mirror, "b/c", payload(10_000, 2))
    (roots[1] / "objects/a").unlink()
    (roots[0] / "meta/b/c.json").unlink()
    (roots[1] / "objects/b/c").write_bytes(b"short")  # the only other copy of b/c is damaged too
    report = mirror.scrub()
    kinds = sorted((p.key, p.root == str(roots[0]), p.kind, p.repaired) for p in report.problems)
    assert kinds == [("a", False, "missing", True), ("b/c", False, "size", False), ("b/c", True, "missing", False)]
    assert report.lost == ("b/c",) and not report.ok  # no good copy of b/c left: reported, never deleted
    assert (roots[1] / "objects/a").read_bytes() == (roots[0] / "objects/a").read_bytes()
    assert get(mirror, "a") == payload(10_000, 1)


def test_scrub_repairs_whole_replaced_disk(roots, tmp_path):
    with MirrorStore(roots, keyring=KeyRing.of(KEY), init=True, segment_size=SEG) as s:
        for i in range(3):
            put(s, f"k{i}", payload(5000, i))
    shutil.rmtree(roots[1])
    roots[1].mkdir()  # a new, empty disk mounted in place
    with MirrorStore(roots, keyring=KeyRing.of(KEY), segment_size=SEG) as s:
        assert s.degraded and "not a surgbox store root" in s.status()["roots"][1]["error"]
    with MirrorStore(roots, keyring=KeyRing.of(KEY), init=True, segment_size=SEG) as s:  # `store init`
        assert not s.degraded
        assert json.loads((roots[1] / "surgbox-store.json").read_text())["store_id"] == s.store_id
        report = s.scrub()
        assert report.ok and len(report.problems) == 3
    for i in range(3):
        assert (roots[1] / f"objects/k{i}").read_bytes() == (roots[0] / f"objects/k{i}").read_bytes()


def test_root_removed_mid_write_degrades_and_write_completes(mirror, roots, caplog):
    data = payload(100_000)
    w = mirror.writer("rec/live.mp4")
    w.write(data[:30_000])
    shutil.rmtree(roots[1])  # disk2 pulled out in the middle of the recording
    w.write(data[30_000:])
    w.close()
    assert w.committed_roots == [str(roots[0])]
    st = mirror.status()
    assert st["degraded"] and not st["healthy"]
    failed = st["roots"][1]
    assert failed["state"] == "failed" and failed["error"]
    assert "STORE DEGRADED" in caplog.text
    assert list(mirror.keys()) == ["rec/live.mp4"] and get(mirror, "rec/live.mp4") == data
    put(mirror, "after", b"writes continue on the remaining root")
    assert get(mirror, "after") == b"writes continue on the remaining root"


def test_missing_root_at_open_is_degraded_not_fatal(roots):
    with MirrorStore(roots, keyring=KeyRing.of(KEY), init=True, segment_size=SEG) as s:
        put(s, "a", b"x")
    shutil.rmtree(roots[0])
    with MirrorStore(roots, keyring=KeyRing.of(KEY), segment_size=SEG) as s:
        assert s.status()["degraded"] and get(s, "a") == b"x"
    shutil.rmtree(roots[1])
    with pytest.raises(StoreError, match="no usable store root"):
        MirrorStore(roots, keyring=KeyRing.of(KEY)).open()


def test_roots_of_different_stores_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    LocalStore(a, init=True).open()
    LocalStore(b, init=True).open()
    with MirrorStore([a, b]) as s:
        assert s.degraded and "another store" in s.status()["roots"][1]["error"]


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="at least two roots"):
        MirrorStore([tmp_path])
    with pytest.raises(ConfigError, match="distinct"):
        MirrorStore([tmp_path, tmp_path])


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB tmpfs (needs root / CAP_SYS_ADMIN; skipped otherwise)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_degrades_and_write_completes_on_other_root(tmp_path, tiny_disk, caplog):
    big = tmp_path / "big"
    big.mkdir()
    data = payload(600_000)  # more than the tiny disk holds
    with MirrorStore([big, tiny_disk], keyring=KeyRing.of(KEY), init=True, segment_size=SEG) as s:
        put(s, "rec", data)
        st = s.status()
        assert st["degraded"] and "disk full" in st["roots"][1]["error"]
        assert get(s, "rec") == data
        assert list((tiny_disk / "tmp").iterdir()) == []  # the partial copy was removed
