"""Issue 20.10: `surgbox events deid ID` de-identifies an event's recording straight from the
encrypted store into a new encrypted file of the event; no plaintext file appears anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from surgbox.catalog import AccessDenied, Catalog, CatalogError

LAYOUT = {"name": "small", "width": 640, "height": 360, "slots": [
    {"name": "endoscope", "rect": [0, 0, 320, 360], "kind": "video", "source": "endoscope", "role": "endoscope"},
    {"name": "room", "rect": [320, 0, 320, 180], "kind": "video", "source": "room", "role": "room_camera"},
    {"name": "vitals", "rect": [320, 180, 320, 180], "kind": "video", "source": "vitals", "role": "vitals"}]}
ROOM = (320, 0, 640, 180)


def synthetic_face_recording(path: Path, frames: int = 20) -> bytes:
    """A fragmented MP4 (as the recorder writes) of a 640x360 composite whose room-camera slot shows
    a drawn face, with the layout in the container metadata (``surgbox_layout``)."""
    import av
    import numpy as np
    from PIL import Image, ImageDraw

    sys.path.insert(0, str(Path(__file__).parent))
    from test_report import synthetic_face

    face = synthetic_face((320, 180), (160 + 0, 90), 62)
    with av.open(str(path), "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}) as c:
        c.metadata["surgbox_layout"] = json.dumps(LAYOUT)
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        for i in range(frames):
            img = Image.new("RGB", (640, 360), (30, 30, 30))
            ImageDraw.Draw(img).rectangle([20 + i * 4, 100, 120 + i * 4, 200], fill=(180, 40, 40))  # the "endoscope"
            img.paste(face, (320 + i, 0))
            for p in s.encode(av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path.read_bytes()


def faces_in_room(src) -> list[int]:
    """Faces the real detector finds in the room slot of each decoded frame."""
    import av

    from surgbox.deid import defaults
    from surgbox.plugins import get_plugins

    det = get_plugins().create("detector", defaults.DETECTOR, threshold=0.5)
    det.open()
    try:
        with av.open(src) as c:
            return [len(det.detect([f.to_ndarray(format="rgb24")[ROOM[1]:ROOM[3], ROOM[0]:ROOM[2]]])[0].boxes)
                    for f in c.decode(video=0)]
    finally:
        det.close()


@pytest.fixture
def recorded(surgbox_home, tmp_path):
    data = synthetic_face_recording(tmp_path / "rec.mp4")
    (tmp_path / "rec.mp4").unlink()
    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        s.users.add("viewer1", "viewer", "viewer-password")
        s.users.add("op1", "operator", "operator-password")
        ev = s.events.create(patient="Pat Example", medical_record="MRN-1", procedure="Biopsy")
        s.events.write_file(ev.id, "segment", "segment-0001.mp4", data)
    return ev.id, data


def test_events_deidentify_stores_a_blurred_copy_of_the_recording(surgbox_home, recorded):
    import io

    eid, data = recorded
    assert all(n == 1 for n in faces_in_room(io.BytesIO(data)))  # the test video shows the face
    with Catalog(surgbox_home) as cat:
        op = cat.login("op1", "operator-password")
        [rec] = op.events.deidentify(eid, detect_scale=1.0)  # a 320x180 slot: scan it at full size
        assert (rec.kind, rec.name) == ("deid", "segment-0001.deid.mp4") and rec.size > 0
        with op.events.open_file(eid, rec.name) as f:  # SHA-256 as catalogued, decrypted in memory
            assert faces_in_room(f) == [0] * 20
        audit = cat.audit.records(action="event.deidentify", target=eid)[-1]
        assert audit.actor == "op1" and audit.detail["frames"] == 20 and audit.detail["faces"] >= 1
        with pytest.raises(CatalogError, match="already has a de-identified copy of segment-0001.mp4"):
            op.events.deidentify(eid)
        [again] = op.events.deidentify(eid, replace=True, detect_scale=1.0)
        names = [f.name for f in op.events.get(eid).files]
        assert again.name == "segment-0001.deid-2.mp4" and names == ["segment-0001.deid-2.mp4", "segment-0001.mp4"]
        with pytest.raises(AccessDenied, match="may not deidentify"):
            cat.login("viewer1", "viewer-password").events.deidentify(eid)


PLAINTEXT = (b"ftyp", b"moof", b"mdat")


def plaintext_files(roots: list[Path]) -> list[str]:
    """Files under ``roots`` that hold MP4 boxes in clear (what a plaintext recording would)."""
    hits = []
    for root in roots:
        for p in root.rglob("*"):
            try:
                if p.is_file() and any(b in p.read_bytes()[:1 << 20] for b in PLAINTEXT):
                    hits.append(str(p))
            except OSError:  # removed while we looked
                pass
    return hits


def test_cli_events_deid_writes_no_plaintext_anywhere_while_it_runs(surgbox_home, recorded, tmp_path):
    eid, data = recorded
    scratch, cwd = tmp_path / "tmpdir", tmp_path / "cwd"
    scratch.mkdir()
    cwd.mkdir()
    roots = [scratch, cwd, surgbox_home.path]
    (scratch / "probe.mp4").write_bytes(data)
    assert plaintext_files(roots) == [str(scratch / "probe.mp4")]  # the scan finds plaintext (this test can fail)
    (scratch / "probe.mp4").unlink()
    env = {**os.environ, "SURGBOX_USER": "op1", "SURGBOX_PASSWORD": "operator-password", "TMPDIR": str(scratch)}
    proc = subprocess.Popen([sys.executable, "-m", "surgbox", "events", "deid", eid, "--json"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    scans = [0]

    def watch() -> None:
        while proc.poll() is None:
            seen.extend(plaintext_files(roots))
            scans[0] += 1
            time.sleep(0.02)

    t = threading.Thread(target=watch)
    t.start()
    out, err = proc.communicate(timeout=600)
    t.join()
    assert proc.returncode == 0, err
    assert scans[0] > 5 and seen == [], seen
    [rec] = json.loads(out)
    assert rec["kind"] == "deid" and rec["name"] == "segment-0001.deid.mp4"
    assert plaintext_files(roots) == []
    out = subprocess.run([sys.executable, "-m", "surgbox", "events", "deid", eid],
                         env={**env, "SURGBOX_USER": "viewer1", "SURGBOX_PASSWORD": "viewer-password"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "may not deidentify" in out.stderr and out.stderr.count("\n") == 1
