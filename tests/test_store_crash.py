"""kill -9 of a process writing through the store: nothing half-written is listed, and recovery
commits an authentic prefix of what was written (up to the last complete segment)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from surgbox.crypto import KeyRing, MasterKey
from surgbox_ext.store import MirrorStore

SEG = 4096

WRITER = textwrap.dedent("""
    import hashlib, sys
    from surgbox_ext.store import MirrorStore
    roots, key_file = sys.argv[1:3], sys.argv[3]
    store = MirrorStore(roots, key_file=key_file, segment_size=%d)
    store.open()
    with store.writer("done/first.bin") as w:
        w.write(b"committed before the crash")
    w = store.writer("rec/live.mp4", {"event": "ev-1"})
    i = 0
    while True:  # an endless recording: block i is sha256(i) * 32
        w.write(hashlib.sha256(str(i).encode()).digest() * 32)
        i += 1
        if i %% 8 == 0:
            w.sync()
            print(w.plaintext_size, flush=True)
""" % SEG)


def expected_stream(n: int) -> bytes:
    out, i = bytearray(), 0
    while len(out) < n:
        out += hashlib.sha256(str(i).encode()).digest() * 32
        i += 1
    return bytes(out[:n])


@pytest.fixture
def crashed(tmp_path):
    """Two roots and a key file after a writer process was SIGKILLed mid-recording; returns
    (roots, key, last plaintext size the writer reported as synced)."""
    roots = [tmp_path / "d1", tmp_path / "d2"]
    for r in roots:
        r.mkdir()
    key = MasterKey.generate()
    key.save(tmp_path / "key")
    MirrorStore(roots, init=True).open()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, *map(str, roots), str(tmp_path / "key")],
                            stdout=subprocess.PIPE, text=True)
    synced = 0
    try:
        for line in proc.stdout:
            synced = int(line)
            if synced > 20 * SEG:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and synced > 20 * SEG
    return roots, key, synced


def test_kill_9_leaves_store_consistent_and_recover_gives_a_prefix(crashed):
    roots, key, synced = crashed
    with MirrorStore(roots, keyring=KeyRing.of(key), segment_size=SEG) as store:
        # the killed write is not listed; what was committed before is intact
        assert list(store.keys()) == ["done/first.bin"]
        assert store.verify(decrypt=True).problems == ()
        with store.reader("done/first.bin") as r:
            assert r.read() == b"committed before the crash"
        partials = store.partials()
        assert sorted(p["root"] for p in partials) == sorted(map(str, roots))
        assert {p["key"] for p in partials} == {"rec/live.mp4"} and all(p["bytes"] >= synced for p in partials)

        (result,) = store.recover()
        assert result.key == "rec/live.mp4" and result.action == "recovered" and not result.complete
        # everything synced before the kill is recovered (at most the open segment is lost)
        assert result.plaintext_size >= synced - SEG
        with store.reader("rec/live.mp4") as r:
            got = r.read()
        assert got == expected_stream(len(got)) and len(got) == result.plaintext_size
        meta = store.info("rec/live.mp4")
        assert meta.recovered and meta.metadata == {"event": "ev-1", "surgbox.recovered": "prefix"}
        assert store.partials() == [] and all(list((r / "tmp").iterdir()) == [] for r in roots)
        assert store.verify(decrypt=True).problems == ()
        assert store.recover() == []


def test_recover_leaves_a_live_write_alone(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r2").mkdir()
    with MirrorStore([tmp_path / "r", tmp_path / "r2"], keyring=KeyRing.of(MasterKey.generate()),
                     init=True, segment_size=SEG) as store:
        w = store.writer("live")
        w.write(os.urandom(10 * SEG))
        w.sync()
        assert not store.degraded
        assert store.partials() == [] and store.recover() == []  # its lock is held
        w.close()
        assert list(store.keys()) == ["live"]


def _tmp_files(roots) -> list[str]:
    """The unfinished writes' files (a dead writer's unlocked ``.lock`` file may come and go)."""
    return sorted(f"{r.name}/{p.name}" for r in roots for p in (r / "tmp").iterdir() if p.suffix != ".lock")


def test_recover_with_the_wrong_key_keeps_the_crashed_write(crashed):
    roots, key, synced = crashed
    before = _tmp_files(roots)
    assert len(before) == 4 and all(p.endswith((".json", ".part")) for p in before)  # ID.json + ID.part per root
    with MirrorStore(roots, keyring=KeyRing.of(MasterKey.generate()), segment_size=SEG) as store:
        (res,) = store.recover()
        assert res.action == "no-key" and res.key == "rec/live.mp4" and key.key_id in res.error
    assert _tmp_files(roots) == before  # nothing deleted
    with MirrorStore(roots, keyring=KeyRing.of(key), segment_size=SEG) as store:
        (res,) = store.recover()
        assert res.action == "recovered" and res.plaintext_size >= synced - SEG


RECOVER_ON_FULL_DISK = textwrap.dedent("""
    import json, resource, signal, sys
    from surgbox_ext.store import MirrorStore
    store = MirrorStore(sys.argv[1:3], key_file=sys.argv[3], segment_size=%d)
    store.open()
    # the kernel refuses writes past 8 KiB from here on (EFBIG): the disk "fills up" during recovery
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * %d, 2 * %d))
    print(json.dumps([[r.key, r.action, r.error] for r in store.recover()]))
""" % (SEG, SEG, SEG))


def test_recover_failing_on_a_full_disk_keeps_the_crashed_write(crashed, tmp_path):
    roots, key, synced = crashed
    before = _tmp_files(roots)
    out = subprocess.run([sys.executable, "-c", RECOVER_ON_FULL_DISK, *map(str, roots), str(tmp_path / "key")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (res,) = json.loads(out.stdout)
    assert res[:2] == ["rec/live.mp4", "failed"] and "every store root failed" in res[2]
    assert _tmp_files(roots) == before  # the crashed write's data is still there
    with MirrorStore(roots, keyring=KeyRing.of(key), segment_size=SEG) as store:  # the disk was fixed: retry
        assert list(store.keys()) == ["done/first.bin"]
        (result,) = store.recover()
        assert result.action == "recovered" and result.plaintext_size >= synced - SEG
        with store.reader("rec/live.mp4") as r:
            got = r.read()
        assert got == expected_stream(len(got))
        assert _tmp_files(roots) == []


def test_cli_recover_reports_a_write_it_cannot_recover_and_exits_2(crashed, tmp_path, capsys):
    from surgbox.cli import main

    roots, key, _ = crashed
    MasterKey.generate().save(tmp_path / "other.key")
    args = ["--root", str(roots[0]), "--root", str(roots[1])]
    assert main(["store", "recover", *args, "--key-file", str(tmp_path / "other.key")]) == 2
    out = capsys.readouterr().out
    assert "NO-KEY" in out and "rec/live.mp4" in out and "files kept" in out
    assert main(["store", "recover", *args, "--key-file", str(tmp_path / "key")]) == 0
    assert "recovered" in capsys.readouterr().out
