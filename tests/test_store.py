"""``local`` and ``mirror`` stores on real directories: commit, integrity, scrub/repair, degraded mode."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest
from store_fixtures import small_tmpfs

from surgbox.crypto import DecryptionError, KeyRing, MasterKey, WrongKeyError
from surgbox.errors import ConfigError, StoreError
from surgbox.testing.store_conformance import payload
from surgbox_ext.store import LocalStore, MirrorStore, ObjectNotFoundError

SEG = 4096
KEY = MasterKey.generate()




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


def test_damaged_header_on_the_first_copy_read_from_the_second(mirror, roots, caplog):
    data = payload(40_000)
    put(mirror, "rec", data)
    flip(roots[0] / "objects/rec", 5)  # a salt byte of disk 1's header
    caplog.clear()
    assert get(mirror, "rec") == data
    with mirror.reader("rec") as r:
        r.seek(30_000)
        assert r.read(100) == data[30_000:30_100]
    blamed = [rec.getMessage() for rec in caplog.records if "damaged" in rec.getMessage()]
    assert blamed and all(str(roots[0]) in m and str(roots[1]) not in m for m in blamed)
    assert mirror.status()["suspect"] == [f"rec @ {roots[0]}"]
    report = mirror.scrub(decrypt=True)
    assert report.ok and [(p.root, p.kind, p.repaired) for p in report.problems] == [(str(roots[0]), "checksum", True)]
    assert (roots[0] / "objects/rec").read_bytes() == (roots[1] / "objects/rec").read_bytes()
    assert mirror.status()["healthy"]


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


def test_delete_while_a_disk_is_away_is_not_resurrected_by_scrub(roots, tmp_path):
    def store():
        return MirrorStore(roots, keyring=KeyRing.of(KEY), segment_size=SEG)

    with MirrorStore(roots, keyring=KeyRing.of(KEY), init=True, segment_size=SEG) as s:
        put(s, "a", payload(9000, 1))
        put(s, "b", payload(9000, 2))
    away = tmp_path / "away"
    roots[1].rename(away)  # disk 2 unplugged
    with store() as s:
        assert s.degraded
        s.delete("a")
        assert list(s.keys()) == ["b"]
    away.rename(roots[1])  # disk 2 is back, still holding "a"
    with store() as s:
        assert not s.degraded and (roots[1] / "objects/a").exists()
        assert list(s.keys()) == ["b"] and not s.exists("a")
        with pytest.raises(ObjectNotFoundError, match="deleted"):
            s.reader("a")
        with pytest.raises(ObjectNotFoundError):
            s.delete("a")
        report = s.verify()
        assert [(p.key, p.root, p.kind, p.repaired) for p in report.problems] == [("a", str(roots[1]), "deleted", False)]
        report = s.scrub()
        assert report.ok and [(p.key, p.kind, p.repaired) for p in report.problems] == [("a", "deleted", True)]
        assert not (roots[1] / "objects/a").exists() and not (roots[1] / "meta/a.json").exists()
        assert (roots[1] / "meta/a.deleted").exists() and (roots[0] / "meta/a.deleted").exists()
        assert s.scrub().problems == () and list(s.keys()) == ["b"]
        assert not (roots[0] / "objects/a").exists()  # never re-replicated
        put(s, "a", b"a new object under the same key")  # a later write supersedes the tombstone
        assert get(s, "a") == b"a new object under the same key" and list(s.keys()) == ["a", "b"]
        assert not any((r / "meta/a.deleted").exists() for r in roots)
        assert s.scrub().problems == ()


def test_rewrite_after_delete_while_a_disk_is_away_wins_over_the_old_copy(roots, tmp_path):
    with MirrorStore(roots, keyring=KeyRing.of(KEY), init=True, segment_size=SEG) as s:
        put(s, "a", payload(9000, 1))
    away = tmp_path / "away"
    roots[1].rename(away)
    with MirrorStore(roots, keyring=KeyRing.of(KEY), segment_size=SEG) as s:
        s.delete("a")
        put(s, "a", payload(5000, 7))
    away.rename(roots[1])
    with MirrorStore(roots, keyring=KeyRing.of(KEY), segment_size=SEG) as s:
        assert get(s, "a") == payload(5000, 7)
        report = s.scrub()
        assert report.ok and [(p.root, p.kind) for p in report.problems] == [(str(roots[1]), "stale")]
        assert (roots[1] / "objects/a").read_bytes() == (roots[0] / "objects/a").read_bytes()


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


def test_root_removed_mid_write_fails_at_commit_and_write_completes(mirror, roots, caplog):
    """rmtree keeps the open part file writable (the inode lives on), so this failure shows only when
    committing; see test_root_failing_with_eio_mid_write... for a disk that fails while writing."""
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
    yield from small_tmpfs(tmp_path, "256k")


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


def test_two_writers_of_one_key_second_is_refused(mirror, roots):
    w1 = mirror.writer("rec/k")
    w1.write(b"first writer")
    with pytest.raises(StoreError, match="'rec/k' is being written by another writer"):
        mirror.writer("rec/k")
    other = MirrorStore(roots, keyring=KeyRing.of(KEY), segment_size=SEG)  # another store object, same disks
    with other, pytest.raises(StoreError, match="'rec/k' is being written"):
        other.writer("rec/k")
    put(mirror, "rec/other", b"other keys are not blocked")
    w1.close()
    assert get(mirror, "rec/k") == b"first writer"  # not overwritten by a racing second commit
    with pytest.raises(StoreError, match="already exists"):
        mirror.writer("rec/k")
    assert all(list((r / "tmp").iterdir()) == [] for r in roots)  # lock files removed on release
    w2 = mirror.writer("rec/k2")
    w2.abort()  # an aborted writer releases its lock too
    put(mirror, "rec/k2", b"x")


HOLDER = """
import sys
from surgbox.crypto import KeyRing, MasterKey
from surgbox_ext.store import MirrorStore
s = MirrorStore(sys.argv[1:3], keyring=KeyRing.of(MasterKey.generate()))
s.open()
w = s.writer("rec/k")
print("writing", flush=True)
sys.stdin.readline()
"""


def test_writer_lock_is_held_across_processes_and_freed_when_the_holder_dies(mirror, roots):
    import sys

    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *map(str, roots)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        with pytest.raises(StoreError, match="'rec/k' is being written by another writer"):
            mirror.writer("rec/k")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    put(mirror, "rec/k", b"the lock died with its process")
    assert get(mirror, "rec/k") == b"the lock died with its process"


def test_every_root_failing_names_each_root_and_its_error(mirror, roots):
    for r in roots:
        shutil.rmtree(r / "tmp")  # both disks lose their working directory (e.g. remounted empty)
    with pytest.raises(StoreError) as info:
        mirror.writer("k")
    msg = str(info.value)
    assert all(str(r) in msg for r in roots) and "No such file" in msg and "surgbox store status" in msg


class FailingDisk:
    """A disk that fails with EIO after ``limit`` bytes (the hardware edge: a dying drive), injected
    where the store writes ciphertext to a root's part file."""

    def __init__(self, real_write, fd: int, limit: int):
        self.real_write, self.fd, self.limit, self.written = real_write, fd, limit, 0

    def __call__(self, fd: int, data) -> None:
        if fd == self.fd:
            if self.written + len(data) > self.limit:
                raise OSError(5, "Input/output error")  # EIO
            self.written += len(data)
        self.real_write(fd, data)


def test_root_failing_with_eio_mid_write_degrades_and_write_completes(mirror, roots, monkeypatch, caplog):
    import surgbox_ext.store.writer as tee  # where the store writes ciphertext to each root's part file

    data = payload(100_000)
    w = mirror.writer("rec/live.mp4")
    disk2 = next(s for s in w._sessions if s.replica.root == roots[1])
    monkeypatch.setattr(tee, "write_all", FailingDisk(tee.write_all, disk2.part_fd, 5 * SEG))
    w.write(data[:50_000])
    # the failure is seen while writing (not only at commit): disk 2 is dropped at once
    st = mirror.status()
    assert st["degraded"] and st["roots"][1]["state"] == "failed" and "Input/output error" in st["roots"][1]["error"]
    assert "STORE DEGRADED" in caplog.text and not (roots[1] / "tmp" / disk2.part.name).exists()
    w.write(data[50_000:])
    w.close()
    assert w.committed_roots == [str(roots[0])]
    assert not (roots[1] / "objects/rec/live.mp4").exists() and list(mirror.keys()) == ["rec/live.mp4"]
    assert get(mirror, "rec/live.mp4") == data
    put(mirror, "after", b"writes continue on the remaining root")
    assert get(mirror, "after") == b"writes continue on the remaining root"
