"""Issue 7 item 5: the recorder writes through the encrypted store, so no plaintext recording rests
on disk; a kill -9'd recording into the store recovers up to its last complete segment.

Real components throughout: a ``mirror`` store over two tmp roots, FFmpeg through PyAV, ffprobe
reading decrypted bytes from a pipe, the BIS simulator on a pty, ``surgbox demo`` / ``surgbox
store`` as subprocesses.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import decoded_video_seconds, kill_9_when_recorded
from PIL import Image

from surgbox import layouts
from surgbox.cli.demo import SimulatedBIS
from surgbox.crypto.keys import MasterKey
from surgbox.plugins import get_plugins
from surgbox.readings import read_data_track
from surgbox.recorder import RECORDING_SEGMENT_SIZE, SMALL_SEGMENT_SIZE, Recorder, StoreSink
from surgbox_ext.encoders import X264Encoder
from surgbox_ext.store import MirrorStore, open_store

KEY = "recordings/case-1/case.mp4"


def surgbox(*args: str) -> list[str]:
    return [sys.executable, "-m", "surgbox", *args]


def ffprobe_bytes(data: bytes, *, clean: bool = True) -> dict:
    """ffprobe on decrypted bytes through a pipe (no plaintext file); ``clean``: no error output
    (a killed recording's last fragment is cut off: ffprobe opens it and says "partial file")."""
    proc = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-count_frames", "-show_streams", "-show_format", "-i", "pipe:0"],
                          input=data, capture_output=True, check=True)
    if clean:
        assert proc.stderr == b"", proc.stderr
    return json.loads(proc.stdout)


def plaintext_leaks(roots: list[Path]) -> list[str]:
    """Files under ``roots`` that hold recording plaintext: an MP4 (``ftyp`` box), a PNG, the
    recording sidecar or data track JSON."""
    bad = []
    for root in roots:
        for p in root.rglob("*"):
            if not p.is_file():
                continue
            data = p.read_bytes()
            if data[4:8] == b"ftyp" or data.startswith(b"\x89PNG\r\n\x1a\n") or b"ftypisom" in data:
                bad.append(f"{p}: media")
            for marker in (b"surgbox-recording", b"surgbox-data-track", b'"layout"', b"ev-store-1", b"OR 2"):
                if marker in data:
                    bad.append(f"{p}: {marker.decode()}")
    return bad


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mirror")
    roots = [tmp / "disk-a", tmp / "disk-b"]
    for r in roots:
        r.mkdir()
    key = tmp / "keys" / "master.key"
    key.parent.mkdir()
    MasterKey.generate().save(key)
    store = MirrorStore(roots=roots, key_file=str(key), init=True)
    store.open()
    p = get_plugins()
    with SimulatedBIS(rate=2.0, course_s=60) as sim:
        sources = [p.create("source", "testsrc", name=n, width=640, height=360, fps=30) for n in ("endoscope", "room", "vitals")]
        sources += [p.create("source", "tone", name="mic"), p.create("source", "bis", name="bis", url=sim.url)]
        rec = Recorder(sources, layouts.paper(), StoreSink(store, KEY), encoder=X264Encoder(preset="ultrafast"),
                       duration=3.0, event={"id": "ev-store-1", "place": "OR 2"})
        with rec:
            rec.wait(1.5)
            snap = rec.snapshot("room")
            rec.wait()
    yield {"store": store, "roots": roots, "rec": rec, "snap": snap, "key": key}
    store.close()


def test_mirror_recording_decrypts_to_h264_aac_with_every_frame(mirrored):
    store = mirrored["store"]
    with store.reader(KEY) as r:
        info = ffprobe_bytes(r.read())
    with store.reader(KEY + ".json") as r:
        skipped = json.loads(r.read())["stats"]["skipped_ticks"]  # a starved machine skips ticks, and counts them
    v, a = info["streams"]
    assert (v["codec_name"], v["width"], v["height"], int(v["nb_read_frames"])) == ("h264", 1920, 1080, 90 - skipped)
    assert skipped <= 45
    assert a["codec_name"] == "aac"
    assert info["format"]["tags"]["surgbox_event_id"] == "ev-store-1"
    meta = store.info(KEY)
    assert meta.segment_size == RECORDING_SEGMENT_SIZE and meta.metadata == {"kind": "segment"} and not meta.recovered
    assert store.verify().ok  # both disks hold identical, complete copies


def test_sidecar_data_track_and_snapshots_are_store_objects(mirrored):
    store, snap = mirrored["store"], mirrored["snap"]
    assert sorted(store.keys("recordings/case-1/")) == sorted([
        KEY, KEY + ".json", KEY + ".data.jsonl", KEY + ".snapshot-0001-composite.png", KEY + ".snapshot-0001-room.png"])
    with store.reader(KEY + ".json") as r:
        side = json.loads(r.read())
    assert side["status"] == "complete" and side["frames"] == 90 - side["stats"]["skipped_ticks"]
    assert side["output"] == f"store:{KEY}"
    assert side["data_track"] == "case.mp4.data.jsonl" and side["snapshots"][0]["composite"] == snap["composite"]
    with store.reader(KEY + ".data.jsonl") as r:  # read_data_track takes the decrypting stream
        track = read_data_track(r)
    assert len(track.series("BIS")) >= 4 and store.info(KEY + ".data.jsonl").segment_size == SMALL_SEGMENT_SIZE
    with store.reader(KEY + ".snapshot-0001-room.png") as r:
        assert Image.open(io.BytesIO(r.read())).size == (640, 360)
    files = {f["name"]: f for f in mirrored["rec"].stats()["files"]}
    import hashlib

    for name, f in files.items():  # the recorder's size and SHA-256 are those of the stored plaintext
        with store.reader(name) as r:
            data = r.read()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f["size"], f["sha256"]), name


def test_no_plaintext_rests_on_either_disk(mirrored):
    assert plaintext_leaks(mirrored["roots"]) == []


def test_kill_9_of_a_demo_into_the_store_recovers_the_completed_seconds(tmp_path):
    """Fresh SURGBOX_HOME (never initialized): the demo creates its key and store, is killed at
    ~12 s; ``surgbox store recover`` commits the prefix; ffprobe opens it with >= 9 s; nothing
    plaintext was on disk; ``surgbox init`` still works on that home afterwards."""
    home = tmp_path / "home"
    env = {**os.environ, "SURGBOX_HOME": str(home)}
    proc = subprocess.Popen(surgbox("demo", "--duration", "60"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        tmpdir = home / "store" / "tmp"
        while time.monotonic() < deadline and len(list(tmpdir.glob("*.part"))) < 2:  # video + data track writers open
            time.sleep(0.05)
        assert len(list(tmpdir.glob("*.part"))) >= 2, "recording did not start"
        leaks = plaintext_leaks([home])  # while recording
        kill_9_when_recorded(proc, 12)  # ~12 s recorded (status line), however busy the machine
    finally:
        if proc.poll() is None:
            proc.kill()
    assert leaks == []
    opts = ["--root", str(home / "store"), "--key-file", str(home / "keys" / "demo.key")]
    out = subprocess.run(surgbox("store", "recover", *opts, "--json"), capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    results = {r["key"]: r for r in json.loads(out.stdout)}
    video = next(k for k in results if k.endswith(".mp4"))
    assert results[video]["action"] == "recovered" and not results[video]["complete"]
    store = open_store([home / "store"], key_file=str(home / "keys" / "demo.key"))
    with store:
        assert store.info(video).recovered
        with store.reader(video) as r:
            info = ffprobe_bytes(r.read(), clean=False)
            r.seek(0)
            seconds = decoded_video_seconds(r)
        with store.reader(video + ".json") as r:  # the sidecar written at start
            assert json.loads(r.read())["status"] == "recording"
        with store.reader(video + ".data.jsonl") as r:
            points = read_data_track(r).points
    print(f"\nkill -9 at ~12 s into the store: {seconds:.2f} s of video recovered, {len(points)} BIS readings")
    assert info["streams"][0]["codec_name"] == "h264"
    assert seconds >= 9
    assert len(points) >= 4
    assert plaintext_leaks([home]) == []
    init = subprocess.run(surgbox("init", "--admin-password", "admin-password"), capture_output=True, text=True, env=env, timeout=120)
    assert init.returncode == 0, init.stderr
    assert (home / "keys" / "demo.key").exists() and (home / "keys" / "master.key").exists()
    # after init, demos use the master key, and the earlier one still plays (decrypted into the player's stdin)
    with open_store([home / "store"], key_file=str(home / "keys" / "demo.key")) as store:
        size = store.info(video).plaintext_size
    played = subprocess.run(surgbox("demo", "--play", video, "--player", "wc -c"), capture_output=True, text=True, env=env, timeout=60)
    assert played.returncode == 0, played.stderr
    assert int(played.stdout.split()[0]) == size


def test_demo_without_out_records_into_the_home_store_and_says_how_to_export(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "SURGBOX_HOME": str(home)}
    proc = subprocess.run(surgbox("demo", "--duration", "2", "--quiet"), capture_output=True, text=True, env=env, timeout=90)
    assert proc.returncode == 0, proc.stderr
    key = proc.stdout.strip().splitlines()[-1]
    assert key.startswith("recordings/demo-") and key.endswith(".mp4")
    assert "not initialized" in proc.stderr and "demo.key" in proc.stderr
    export = next(line for line in proc.stderr.splitlines() if line.startswith("export: "))[len("export: "):]
    assert export.startswith("surgbox store get ") and key in export
    argv = export.split()[1:]
    argv[-1] = str(tmp_path / "exported.mp4")
    got = subprocess.run(surgbox(*argv), capture_output=True, text=True, env=env, timeout=60)
    assert got.returncode == 0, got.stderr
    info = ffprobe_bytes((tmp_path / "exported.mp4").read_bytes())
    with open_store([home / "store"], key_file=str(home / "keys" / "demo.key")) as store, store.reader(key + ".json") as r:
        side = json.loads(r.read())
    assert side["status"] == "complete"
    # every tick is in the file (a starved machine skips ticks to stay live; they are counted)
    assert int(info["streams"][0]["nb_read_frames"]) == side["frames"] == 60 - side["stats"]["skipped_ticks"]
    assert side["frames"] >= 30
    assert plaintext_leaks([home]) == []


def test_recover_with_another_key_leaves_the_unfinished_write_for_its_owner(tmp_path):
    """An event's crashed recording is encrypted with the event's key: a ``store recover`` run with
    the master key must not throw it away (it used to delete the temp files, then fail)."""
    root = tmp_path / "store"
    root.mkdir()
    owner, other = tmp_path / "event.key", tmp_path / "master.key"
    MasterKey.generate().save(owner)
    MasterKey.generate().save(other)
    script = (
        "import os, sys; from surgbox_ext.store import open_store\n"
        f"s = open_store([{str(root)!r}], key_file={str(owner)!r}, init=True); s.open()\n"
        "w = s.writer('events/ev-1/segment-0001.mp4', segment_size=4096); w.write(os.urandom(50000)); w.sync()\n"
        "os._exit(0)  # dies like kill -9: no close, no commit\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    with open_store([root], key_file=str(other)) as store:
        (res,) = store.recover()
        assert (res.key, res.action) == ("events/ev-1/segment-0001.mp4", "no-key")
        assert len(store.partials()) == 1 and list(store.keys()) == []
    with open_store([root], key_file=str(owner)) as store:
        (res,) = store.recover()
        assert res.action == "recovered" and res.plaintext_size >= 40000  # complete 4 KiB segments
        assert store.info(res.key).segment_size == 4096
