"""kill -9 of a process writing through the store: nothing half-written is listed, and recovery
commits an authentic prefix of what was written (up to the last complete segment)."""

from __future__ import annotations

import hashlib
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
