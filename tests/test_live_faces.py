"""Live face hiding with the real default detector (issue 15 "must show"): a recording whose room
camera is a file of drawn masked, capped faces moving across the room, recorded through the TOML
configuration with ``deidentify = true`` and the default ``[deid]`` settings, scored against the
faces' ground truth frame by frame (which file frame each output frame shows is read from a
barcode burned into it)."""

from __future__ import annotations

import json

import numpy as np
from live_fixtures import FPS, H, W, decode_luma, exposed, read_code, room_layout, write_video
from masked_faces import face_box, masked_scene

from surgbox.clock import Clock
from surgbox.config import RecordConfig

SECONDS = 4.0


def scene(n: int):
    """Three masked, capped faces (half-heights 36, 30, 26 px) walking across the room at 2-4 px/frame."""
    faces = [(60 + (3 * n) % 520, 120, 36), (560 - (2 * n) % 480, 200, 30), (100 + (4 * n) % 440, 300 - 40, 26)]
    img = masked_scene(H, W, faces)
    return img, [face_box(*f) for f in faces]


def test_live_hiding_with_the_default_detector_hides_every_face(tmp_path, default_plugins):
    video = tmp_path / "room.mp4"
    truth = write_video(video, int((SECONDS + 2) * FPS), scene)
    cfg = RecordConfig.from_mapping({
        "fps": FPS,
        "sources": {"room": {"plugin": "file", "path": str(video), "anchor": "start", "deidentify": True}},
        "layout": {"slots": [s.to_dict() for s in room_layout().slots], "width": W, "height": H},
        "encoder": {"plugin": "libx264", "preset": "ultrafast", "crf": 18},
    })
    rec = cfg.build_recorder(plugins=default_plugins, output=tmp_path / "rec.mp4", duration=SECONDS, clock=Clock(),
                             max_behind_s=30.0)
    rec.start()
    rec.wait(SECONDS + 60)
    stats = rec.stop()
    assert stats["frames"] == SECONDS * FPS and stats["skipped_ticks"] == 0
    raw = decode_luma(video)
    assert all(exposed(raw[n], raw[n], b) for n in (0, 50, 100) for b in truth[n])  # the scorer sees raw faces
    total = hidden = 0
    run = longest = 0
    for y in decode_luma(tmp_path / "rec.mp4"):
        n = read_code(y)
        if n is None:  # the whole slot hidden (fail closed): every face in it hidden
            total += 3
            hidden += 3
            run = 0
            continue
        bad = [b for b in truth[n] if exposed(y, raw[n], b)]
        total += len(truth[n])
        hidden += len(truth[n]) - len(bad)
        run = run + 1 if bad else 0
        longest = max(longest, run)
    deid = stats["sources"]["room"]["source"]["deid"]
    latency_frames = round(0.25 * FPS)
    assert hidden / total >= 0.99 and longest <= latency_frames, (hidden, total, longest, deid)
    assert deid["frames_faces_hidden"] > 0 and deid["faces_detected"] > 0
    side = json.loads((tmp_path / "rec.mp4.json").read_text())
    assert side["sources"][0]["deid"]["detector"] == "ensemble"
