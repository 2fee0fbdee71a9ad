"""Live face hiding with the real default detector (issue 15 "must show"): a recording whose room
camera is a file of drawn masked, capped faces moving across the room, recorded through the TOML
configuration with ``deidentify = true`` and the default ``[deid]`` settings, scored against the
faces' ground truth frame by frame (which file frame each output frame shows is read from a
barcode burned into it)."""

from __future__ import annotations

import json

from live_fixtures import FPS, H, W, decode_luma, exposed, read_code, room_layout, write_video
from masked_faces import face_box, masked_scene

from surgbox.clock import Clock
from surgbox.config import RecordConfig
from surgbox.deid import deidentify

SECONDS = 4.0


def scene(n: int):
    """Two masked, capped faces (half-heights 40 and 34 px) walking across the room at 2-3 px/frame.
    (Smaller drawn faces, 26-30 px, are missed by the default detector in some frames also by
    ``surgbox deid --every 1``: see docs/deid.md "Live de-identification".)"""
    faces = [(60 + (3 * n) % 520, 120, 40), (560 - (2 * n) % 480, 230, 34)]
    img = masked_scene(H, W, faces)
    return img, [face_box(*f) for f in faces]


def exposures(path, raw, truth, limit=None):
    """``(exposed {(file frame, face)}, faces scored, frames hidden whole)`` of a recording or a
    de-identified copy of the room video (file frames read from the barcode)."""
    bad, scored, whole = set(), 0, 0
    for y in decode_luma(path)[:limit]:
        n = read_code(y)
        if n is None:  # the whole slot hidden (fail closed): every face in it hidden
            whole += 1
            continue
        scored += len(truth[n])
        bad |= {(n, k) for k, b in enumerate(truth[n]) if exposed(y, raw[n], b)}
    return bad, scored, whole


def test_live_hiding_hides_what_surgbox_deid_hides(tmp_path, default_plugins):
    """The live path is the same detector -> temporal -> mask stages as ``surgbox deid``: with the
    default detector on the same frames (every 3rd: the cadence fixed, ``max_every = 3``), (almost) no face is exposed live that
    ``surgbox deid --every 3`` at the live gap hides, frames the detector answered late are hidden whole, no tick is lost,
    and the sidecar names the detector. (How many faces the default detector itself misses on
    this drawn scene is measured in docs/deid.md, not asserted here.)"""
    video = tmp_path / "room.mp4"
    truth = write_video(video, int((SECONDS + 2) * FPS), scene)
    cfg = RecordConfig.from_mapping({
        "fps": FPS,
        "sources": {"room": {"plugin": "file", "path": str(video), "anchor": "start", "deidentify": True}},
        "layout": {"slots": [s.to_dict() for s in room_layout().slots], "width": W, "height": H},
        "encoder": {"plugin": "libx264", "preset": "ultrafast", "crf": 18},
        "deid": {"max_every": 3},  # a fixed cadence: the frames surgbox deid --every 3 detects
    })
    rec = cfg.build_recorder(plugins=default_plugins, output=tmp_path / "rec.mp4", duration=SECONDS, clock=Clock(),
                             max_behind_s=30.0)
    rec.start()
    rec.wait(SECONDS + 60)
    stats = rec.stop()
    assert stats["frames"] == SECONDS * FPS and stats["skipped_ticks"] == 0
    raw = decode_luma(video)
    assert all(exposed(raw[n], raw[n], b) for n in (0, 50, 100) for b in truth[n])  # the scorer sees raw faces
    live_bad, scored, whole = exposures(tmp_path / "rec.mp4", raw, truth)
    side = json.loads((tmp_path / "rec.mp4.json").read_text())
    # Live bridges shorter gaps than surgbox deid's default (a longer gap is more delay): the
    # offline run is given the gap the recording used (its sidecar), so both run the same stages.
    live_gap = side["sources"][0]["deid"]["max_gap"]
    deidentify(video, tmp_path / "offline.mp4", every=3, max_gap=live_gap, region="full", plugins=default_plugins)
    off_bad, _, _ = exposures(tmp_path / "offline.mp4", raw, truth)
    deid = stats["sources"]["room"]["source"]["deid"]
    # The same stages on the same frames: faces exposed live but not by surgbox deid are at most
    # 1 % of the face-frames scored (single borderline frames: a feathered mask edge over the
    # box, judged after two different encodes), 2 % when the file source dropped frames on a
    # starved machine (then the detected frames differ).
    dropped = stats["sources"]["room"]["source"]["inner"]["dropped"]
    extra = live_bad - off_bad
    assert len(extra) <= (0.01 if dropped == 0 else 0.02) * max(scored, 1), (sorted(extra), scored, dropped)
    assert scored + whole > 0 and deid["frames"] > 0 and deid["faces_detected"] + deid["frames_slot_hidden"] > 0
    assert side["sources"][0]["deid"]["detector"] == "ensemble"
