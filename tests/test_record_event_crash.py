"""An event recording killed with ``kill -9``, then another recording into the same event before
``events recover``, then the recovery: both recordings intact (issue 18 item 14). The second one
is numbered after the crashed one's unfinished writes, which the store keeps for recovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import decoded_video_seconds, kill_9_when_recorded

from surgbox.catalog import Catalog, install_home
from surgbox.catalog.recording_sink import EventSink, next_segment_name
from surgbox.interfaces import SegmentedStore
from surgbox.recording import RECORDING_SEGMENT_SIZE

CONFIG = ('[encoder]\nplugin = "libx264"\npreset = "ultrafast"\n[layout]\npreset = "paper"\n'
          + "".join(f'[sources.{n}]\nplugin = "testsrc"\nwidth = 640\nheight = 360\n' for n in ("endoscope", "room", "vitals"))
          + '[sources.mic]\nplugin = "tone"\n')
OP = ("op1", "op1-password")


@pytest.fixture
def event_home(tmp_path):
    home = install_home(tmp_path / "home", "admin", "admin-password")
    cfg = home.config_path.read_text()  # cheap Argon2: a fast test
    home.config_path.write_text(cfg.replace("min_length = 8", "min_length = 8\ntime_cost = 1\nmemory_kib = 8192\nparallelism = 1"))
    with Catalog.at(home) as catalog:
        session = catalog.login("admin", "admin-password")
        session.users.add(*OP[:1], "operator", OP[1])
        ev = session.events.create(patient="Kim Crash", medical_record="MRN-9", procedure="Appendectomy", place="OR 2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGBOX_")}
    env.update(SURGBOX_HOME=str(home.path), SURGBOX_USER=OP[0], SURGBOX_PASSWORD=OP[1])
    (tmp_path / "rec.toml").write_text(CONFIG)
    return {"home": home, "event": ev.id, "env": env, "config": tmp_path / "rec.toml"}


def cli(env, *args, timeout=180):
    return subprocess.run([sys.executable, "-m", "surgbox", *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_numbering_skips_names_held_by_unfinished_writes():
    taken = {"segment-0001.mp4.json", "report.pdf"}
    assert next_segment_name(set()) == "segment-0001.mp4"
    assert next_segment_name(taken) == "segment-0002.mp4"
    assert next_segment_name(set(), lambda name: name == "segment-0001.mp4.data.jsonl") == "segment-0002.mp4"


def test_an_unfinished_video_write_without_a_sidecar_takes_its_number(event_home):
    """A write the store keeps unfinished (here a live one; after a crash a dead one) and no
    committed object of that recording: the next recording must not reuse its name."""
    with Catalog.at(event_home["home"]) as catalog:
        events = catalog.login(*OP).events
        held = events.store_for(event_home["event"])
        assert isinstance(held, SegmentedStore)  # so the recorder's 32 KiB video segments reach the event's store
        w = held.writer("segment-0001.mp4", {"kind": "segment"}, segment_size=RECORDING_SEGMENT_SIZE)
        try:
            w.write(b"\0" * 100_000)
            w.sync()
            sink = EventSink(events=events, event_id=event_home["event"])
            sink.open()
            try:
                assert sink.key == "segment-0002.mp4"
            finally:
                sink.abort()
        finally:
            w.abort()
            held.close()


def test_kill_9_then_record_again_then_recover_keeps_both_recordings(event_home):
    env, event_id, config = event_home["env"], event_home["event"], str(event_home["config"])
    proc = subprocess.Popen([sys.executable, "-m", "surgbox", "record", "--config", config, "--event", event_id, "--duration", "60"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        killed_at = kill_9_when_recorded(proc, 5) + 3
    finally:
        if proc.poll() is None:
            proc.kill()
    again = cli(env, "record", "--config", config, "--event", event_id, "--duration", "2", "--quiet", "--no-stop")
    assert again.returncode == 0, again.stderr
    assert "segment-0002.mp4" in again.stderr, again.stderr  # numbered after the crashed recording
    r = cli(env, "events", "recover", event_id, "--stop")
    assert r.returncode == 0, r.stderr + r.stdout
    with Catalog.at(event_home["home"]) as catalog:
        events = catalog.login(*OP).events
        ev = events.get(event_id)
        names = {f.name: f.kind for f in ev.files}
        assert ev.status == "stopped"
        for seg in ("segment-0001.mp4", "segment-0002.mp4"):
            assert names[seg] == "segment" and names[seg + ".json"] == "data", names
        with events.open_file(event_id, "segment-0001.mp4") as f:  # the crashed one, recovered
            first = decoded_video_seconds(f)
        with events.open_file(event_id, "segment-0002.mp4") as f:  # the second one, complete
            second = decoded_video_seconds(f)
        with events.open_file(event_id, "segment-0002.mp4.json") as f:
            assert json.loads(f.read())["status"] == "complete"
    print(f"\nkilled at ~{killed_at} s: {first:.2f} s recovered; the second recording: {second:.2f} s")
    assert first >= killed_at - 2.5 and abs(second - 2.0) < 0.1
