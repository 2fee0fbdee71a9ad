"""Issue 18 (store items): signed tombstones and sidecars, scrub that keeps data when records
disagree, persisted degradation, key rules, duplicate roots, and recovery that never drops a write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from surgbox.crypto import KeyRing, MasterKey
from surgbox.errors import ConfigError, StoreError
from surgbox.testing.store_conformance import payload
from surgbox_ext.store import LocalStore, MirrorStore

SEG = 4096
KEY = MasterKey.generate()
DAY_NS = 24 * 3600 * 10**9


@pytest.fixture
def roots(tmp_path):
    rs = [tmp_path / "disk1", tmp_path / "disk2"]
    for r in rs:
        r.mkdir()
    with MirrorStore(rs, keyring=KeyRing.of(KEY), init=True, segment_size=SEG):
        pass
    return rs


def mirror(roots, keyring=KeyRing.of(KEY)):
    return MirrorStore(roots, keyring=keyring, segment_size=SEG)


def put(store, key: str, data: bytes) -> None:
    with store.writer(key) as w:
        w.write(data)


def get(store, key: str) -> bytes:
    with store.reader(key) as r:
        return r.read()


def forge_tombstone(root, key: str, deleted_ns: int, **extra) -> None:
    """What an attacker with write access to one disk (and no key) can write."""
    (root / "meta" / (key + ".deleted")).write_text(json.dumps(
        {"format": "surgbox-tombstone", "version": 1, "key": key, "deleted_ns": deleted_ns, **extra}))


# ---- 18.2: a forged tombstone on one disk deletes nothing ------------------------------------------

@pytest.mark.parametrize("when", ["far-future", "now"])
def test_forged_tombstone_on_one_disk_deletes_nothing_scrub_keeps_the_data(roots, when):
    data = payload(30_000, 1)
    with mirror(roots) as s:
        put(s, "rec.mp4", data)
    deleted = time.time_ns() + (365 * DAY_NS if when == "far-future" else 0)
    forge_tombstone(roots[1], "rec.mp4", deleted, mac_key_id=KEY.key_id, mac="00" * 32)
    with mirror(roots) as s:
        assert list(s.keys()) == ["rec.mp4"] and get(s, "rec.mp4") == data  # the forgery is not believed
        report = s.scrub()
        assert [(p.root, p.kind, p.repaired) for p in report.problems] == [(str(roots[1]), "tombstone", True)]
        assert ("far future" if when == "far-future" else "does not verify") in report.problems[0].detail
        assert all((r / "objects/rec.mp4").read_bytes() == (roots[0] / "objects/rec.mp4").read_bytes() for r in roots)
        assert not (roots[1] / "meta/rec.mp4.deleted").exists()  # set aside ...
        assert list((roots[1] / "quarantine").rglob("rec.mp4.deleted"))  # ... in quarantine, for the record
        assert get(s, "rec.mp4") == data and s.scrub().problems == ()


def test_unsigned_tombstone_without_a_key_to_check_it_keeps_every_copy(roots):
    """A store opened without keys cannot tell a forgery: it hides the object but never deletes it."""
    data = payload(20_000, 2)
    with mirror(roots) as s:
        put(s, "rec.mp4", data)
    forge_tombstone(roots[1], "rec.mp4", time.time_ns())
    with MirrorStore(roots, segment_size=SEG) as keyless:
        report = keyless.scrub()
        assert [(p.kind, p.repaired) for p in report.problems] == [("deleted", False), ("deleted", False)]
        assert "cannot be verified" in report.problems[0].detail and not report.ok
        assert all((r / "objects/rec.mp4").exists() and (r / "meta/rec.mp4.json").exists() for r in roots)
    with mirror(roots) as s:  # with the key the forgery is found, and the object stays
        assert get(s, "rec.mp4") == data
        assert [p.kind for p in s.scrub().problems] == ["tombstone"]


def test_tombstones_and_sidecars_carry_a_mac_under_the_store_key(roots, tmp_path):
    with mirror(roots) as s:
        put(s, "a", b"x")
        side = json.loads((roots[0] / "meta/a.json").read_text())
        s.delete("a")
    tomb = json.loads((roots[0] / "meta/a.deleted").read_text())
    for rec in (side, tomb):
        assert rec["mac_key_id"] == KEY.key_id and len(rec["mac"]) == 64
    assert tomb["version"] == 2 and tomb["key"] == "a"
    # the same bytes in another store (another store id) do not verify there
    other = [tmp_path / "o1", tmp_path / "o2"]
    for r in other:
        r.mkdir()
    with MirrorStore(other, keyring=KeyRing.of(KEY), init=True, segment_size=SEG) as o:
        put(o, "a", b"kept")
        (other[1] / "meta/a.deleted").write_text(json.dumps(tomb))
        assert get(o, "a") == b"kept" and [p.kind for p in o.scrub().problems] == ["tombstone"]


def test_a_real_delete_while_a_disk_was_away_is_still_applied(roots, tmp_path):
    with mirror(roots) as s:
        put(s, "a", b"to be deleted")
    away = tmp_path / "away"
    roots[1].rename(away)
    with mirror(roots) as s:
        s.delete("a")
    away.rename(roots[1])
    with mirror(roots) as s:
        report = s.scrub()
        assert [(p.kind, p.repaired) for p in report.problems] == [("deleted", True)] and report.ok
        assert not any((r / "objects/a").exists() for r in roots)


def test_forged_newer_sidecar_on_one_disk_does_not_overwrite_the_good_copy(roots):
    data = payload(20_000, 3)
    with mirror(roots) as s:
        put(s, "rec.mp4", data)
        put(s, "other.mp4", payload(25_000, 4))
    good = (roots[0] / "objects/rec.mp4").read_bytes()
    # disk 2: another object's ciphertext and a sidecar claiming a newer version (no valid MAC)
    (roots[1] / "objects/rec.mp4").write_bytes((roots[1] / "objects/other.mp4").read_bytes())
    side = json.loads((roots[1] / "meta/other.mp4.json").read_text())
    side.update(key="rec.mp4", created_ns=time.time_ns() + 1000)
    (roots[1] / "meta/rec.mp4.json").write_text(json.dumps(side))
    with mirror(roots) as s:
        assert get(s, "rec.mp4") == data
        report = s.scrub()
        assert [(p.root, p.kind, p.repaired) for p in report.problems] == [(str(roots[1]), "bad-meta", True)]
        assert (roots[0] / "objects/rec.mp4").read_bytes() == good == (roots[1] / "objects/rec.mp4").read_bytes()
        assert get(s, "other.mp4") == payload(25_000, 4) and s.scrub().problems == ()


def test_without_a_key_scrub_quarantines_an_older_version_instead_of_overwriting_it(roots, tmp_path):
    with mirror(roots) as s:
        put(s, "a", b"version 1")
    roots[1].rename(tmp_path / "away")
    with mirror(roots) as s:
        s.delete("a")
        put(s, "a", b"version 2")
    (tmp_path / "away").rename(roots[1])
    old = (roots[1] / "objects/a").read_bytes()
    with MirrorStore(roots, segment_size=SEG) as keyless:  # cannot verify which version is real
        report = keyless.scrub()
        assert [(p.kind, p.repaired) for p in report.problems] == [("stale", True)]
        assert "kept in" in report.problems[0].detail
    (kept,) = list((roots[1] / "quarantine").rglob("objects/a"))
    assert kept.read_bytes() == old
    with mirror(roots) as s:
        assert get(s, "a") == b"version 2"


# ---- 18.13: persisted degradation, key rules, a key that is a folder of another ---------------------

def status_in_a_new_process(roots) -> tuple[int, dict]:
    args = [a for r in roots for a in ("--root", str(r))]
    out = subprocess.run([sys.executable, "-m", "surgbox", "store", "status", "--json", *args],
                         capture_output=True, text=True, timeout=60)
    return out.returncode, json.loads(out.stdout)


def test_degraded_write_stays_degraded_in_a_new_process_until_scrub(roots, tmp_path):
    roots[1].rename(tmp_path / "away")
    with mirror(roots) as s:
        put(s, "rec.mp4", payload(10_000))  # one copy only
    (tmp_path / "away").rename(roots[1])
    rc, st = status_in_a_new_process(roots)
    assert rc == 2 and st["degraded"] and not st["healthy"] and st["under_replicated"] == ["rec.mp4"]
    assert all(r["state"] == "ok" for r in st["roots"])
    with mirror(roots) as s:
        assert s.degraded
        report = s.scrub()
        assert report.ok and [(p.root, p.kind) for p in report.problems] == [(str(roots[1]), "missing")]
    rc, st = status_in_a_new_process(roots)
    assert rc == 0 and st["healthy"] and st["under_replicated"] == []


@pytest.mark.parametrize("bad", ["a\nb", "fake\r\nline", "esc\x1b[31mred", "tab\t", "del\x7f", "sep\u2028x",
                                 "rtl\u202eevil", "c1\x85"])
def test_keys_with_control_characters_are_refused(roots, bad):
    with mirror(roots) as s:
        with pytest.raises(StoreError, match="control character"):
            s.writer(bad)
        assert not s.degraded and list(s.keys()) == []


@pytest.mark.parametrize("n", [300, 5000])
def test_too_long_keys_are_refused_before_touching_a_disk(roots, n):
    with mirror(roots) as s:
        for key in ("k" * n, "dir/" + "k" * n, ("abcd/" * n)[:-1]):
            with pytest.raises(StoreError, match="too long|at most 200 bytes") as info:
                s.writer(key)
            assert len(str(info.value)) < 300  # the key is shortened in the message
        assert not s.degraded and s.status()["healthy"]


@pytest.mark.parametrize("first, second", [("a/b", "a"), ("a", "a/b"), ("a", "a.json/b"), ("a.json/b", "a")])
def test_a_key_that_collides_with_another_objects_folder_is_refused_not_degrading(roots, first, second):
    with mirror(roots) as s:
        put(s, first, b"first")
        with pytest.raises(StoreError, match="choose another key"):
            put(s, second, b"second")
        assert not s.degraded and all(r["state"] == "ok" for r in s.status()["roots"])
        assert list(s.keys()) == [first] and get(s, first) == b"first"
        assert [p for r in roots for p in (r / "tmp").iterdir()] == []  # nothing of the refused write is left


# ---- 18.12: the same directory twice ----------------------------------------------------------------

def test_the_same_directory_twice_is_refused_by_real_path_and_inode(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "sub").mkdir()
    (tmp_path / "link").symlink_to(a)
    for other in (a / "sub" / "..", tmp_path / "link"):
        with pytest.raises(ConfigError, match="same directory"):
            MirrorStore([a, other], init=True).open()
    assert not (a / "surgbox-store.json").exists()  # refused before anything was written


def test_a_bind_mount_of_the_same_directory_is_refused_by_inode(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(a), str(b)], capture_output=True).returncode:
        pytest.skip("a bind mount needs root")
    try:
        assert os.path.realpath(a) != os.path.realpath(b)  # different paths, one directory
        with pytest.raises(ConfigError, match="same directory"):
            MirrorStore([a, b], init=True).open()
    finally:
        subprocess.run(["umount", str(b)], check=False)


# ---- 18.14: recovery never drops a write, and lists unfinished keys --------------------------------

CRASH = """
import os, sys
from surgbox.crypto import KeyRing
from surgbox.crypto.keys import load_key
from surgbox_ext.store import MirrorStore
s = MirrorStore(sys.argv[1:3], keyring=KeyRing.of(load_key(sys.argv[3])), segment_size=4096)
s.open()
w = s.writer(sys.argv[4], {"kind": "segment"})
w.write(bytes(range(256)) * 400)
w.sync()
os._exit(0)  # dies like kill -9: no close, no commit
"""


def crash_writer(roots, key_file, key: str) -> None:
    subprocess.run([sys.executable, "-c", CRASH, *map(str, roots), str(key_file), key], check=True, timeout=60)


@pytest.fixture
def key_file(tmp_path):
    return KEY.save(tmp_path / "key")


def test_recover_never_drops_a_crashed_write_whose_key_was_taken(roots, key_file):
    crash_writer(roots, key_file, "events/ev-1/segment-0001.mp4")
    with mirror(roots) as s:
        assert [p["key"] for p in s.partials()] == ["events/ev-1/segment-0001.mp4"] * 2
        put(s, "events/ev-1/segment-0001.mp4", b"a second recording numbered before recovery")
        (res,) = s.recover()
        assert res.action == "recovered" and res.original_key == "events/ev-1/segment-0001.mp4"
        assert res.key == "events/ev-1/segment-0001.recovered-1.mp4"
        assert get(s, "events/ev-1/segment-0001.mp4") == b"a second recording numbered before recovery"
        got = get(s, res.key)
        assert len(got) >= 100_000 - 2 * SEG and got == (bytes(range(256)) * 400)[: len(got)]
        assert s.info(res.key).metadata["surgbox.recovered-from"] == "events/ev-1/segment-0001.mp4"
        assert s.partials() == [] and s.recover() == []


def test_recover_drops_only_the_very_same_write_already_committed(roots, key_file):
    """A writer killed after committing on disk 1 but before disk 2: disk 2's leftover is that same write."""
    with mirror(roots) as s:
        put(s, "rec", payload(30_000, 5))
    blob = (roots[0] / "objects/rec").read_bytes()
    tmp = roots[1] / "tmp"
    (tmp / "w1.json").write_text(json.dumps({"key": "rec", "key_id": KEY.key_id, "segment_size": SEG}))
    (tmp / "w1.part").write_bytes(blob[: 4 * SEG])
    (roots[1] / "meta/rec.json").unlink()
    (roots[1] / "objects/rec").unlink()
    with mirror(roots) as s:
        (res,) = s.recover()
        assert res.action == "already-committed" and list(tmp.iterdir()) == []
        assert s.status()["under_replicated"] == ["rec"]  # and the missing copy is noted for scrub
        assert s.scrub().ok and not s.degraded


def test_recover_keeps_a_write_whose_descriptor_is_unreadable(roots):
    tmp = roots[0] / "tmp"
    (tmp / "w2.json").write_text("{not json")
    (tmp / "w2.part").write_bytes(os.urandom(3 * SEG))
    with mirror(roots) as s:
        (res,) = s.recover()
        assert res.action == "failed" and "descriptor" in res.error
    assert sorted(p.name for p in tmp.iterdir()) == ["w2.json", "w2.part"]


def test_partials_list_unfinished_and_live_writes(roots, key_file):
    crash_writer(roots, key_file, "events/ev-1/segment-0002.mp4")
    with mirror(roots) as s:
        w = s.writer("events/ev-1/segment-0003.mp4")
        w.write(b"live")
        dead = {(p["key"], p["live"]) for p in s.partials()}
        both = {(p["key"], p["live"]) for p in s.partials(live=True)}
        assert dead == {("events/ev-1/segment-0002.mp4", False)}
        assert both == dead | {("events/ev-1/segment-0003.mp4", True)}
        w.close()


def test_segment_size_option_errors_are_config_errors(tmp_path):
    for bad in (56, -5, 4294967296, "1k"):
        with pytest.raises(ConfigError, match="segment_size"):
            LocalStore(tmp_path, segment_size=bad)
