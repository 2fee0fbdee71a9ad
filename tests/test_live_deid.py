"""Live face hiding (issue 15 items 1-3): a room-camera source wrapped by ``LiveDeidSource`` reaches
the recorder only with its faces hidden; when detection stalls, the whole slot is hidden for the
stall and the data track, the stats and the sidecar say so. The detectors are plugins registered
through the real plugin manager; the recordings are real (file source, libx264, MP4, data track)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from live_fixtures import FPS, H, W, decode_luma, detail, exposed, read_code, room_layout, write_video

from surgbox.clock import NS_PER_S, Clock
from surgbox.config import RecordConfig
from surgbox.errors import ConfigError
from surgbox.hookspecs import hookimpl
from surgbox.interfaces import Detector
from surgbox.readings import read_data_track
from surgbox.recording import Recorder
from surgbox.recording.live_deid import LiveDeidSettings, LiveDeidSource
from surgbox.types import Detections

MAGENTA = (255, 0, 255)
FACE = 48  # side of the drawn "face" (a checkerboard in a magenta frame)


def checker(side: int, cell: int = 4) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side]
    return np.where(((yy // cell) + (xx // cell)) % 2 == 0, 230, 20).astype(np.uint8)


def face_frame(n: int):
    """A mid-grey room with a textured "decoy" (never detected) and one moving "face": a checkerboard
    in a 4-pixel magenta frame, which :class:`MagentaDetector` finds."""
    img = np.full((H, W, 3), 120, np.uint8)
    img[40:100, 40:100] = checker(60)[..., None]  # decoy texture: stays sharp unless the slot is hidden
    x = 200 + int(150 * np.sin(n / 25))
    y = 150 + int(40 * np.cos(n / 40))
    img[y:y + FACE, x:x + FACE] = MAGENTA
    img[y + 4:y + FACE - 4, x + 4:x + FACE - 4] = checker(FACE - 8)[..., None]
    return img, [(x, y, x + FACE, y + FACE)]


class MagentaDetector(Detector):
    """Finds the magenta-framed square; ``stall_at``: the first call from this detection on (the
    frame context of the live worker: 0, 1, 2, ... over its detections) blocks for ``stall_s`` (a
    detector that stops answering); ``delay_s``: every call takes this long (a slow detector).
    ``codes``: the file frame numbers (read from the barcode) of the images it was given."""

    name = "magenta"

    def __init__(self, stall_at: int | None = None, stall_s: float = 2.0, delay_s: float = 0.0):
        self.stall_at, self.stall_s, self.stalled_at, self.delay_s = stall_at, stall_s, None, delay_s
        self.calls, self.codes = 0, []

    def detect_frames(self, images, frame_indices):
        if self.stall_at is not None and self.stalled_at is None and frame_indices[0] >= self.stall_at:
            self.stalled_at, self.stalled_ns = frame_indices[0], time.monotonic_ns()  # the master clock's base
            time.sleep(self.stall_s)
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.detect(images)

    def detect(self, images):
        self.calls += 1
        out = []
        for im in images:
            if im.shape[:2] == (H, W):
                self.codes.append(read_code(im.mean(axis=2)))
            m = (im[..., 0] > 180) & (im[..., 1] < 90) & (im[..., 2] > 180)
            ys, xs = np.nonzero(m)
            if len(xs) < 20:
                out.append(Detections.empty())
            else:
                out.append(Detections([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], [0.99]))
        return out


@pytest.fixture
def plugins(default_plugins):
    made: list[MagentaDetector] = []

    def factory(**options):
        det = MagentaDetector(**options)
        made.append(det)
        return det

    class Reg:
        @hookimpl
        def register_detectors(self, register):
            register("magenta", factory, description="finds magenta-framed squares (test)")

    default_plugins.add(Reg(), "live-test")
    return default_plugins, made


def record(tmp_path, plugins, video, seconds, deid=None, *, deidentify=True):
    """Record ``video`` (a file source named room, anchored to the clock) for ``seconds`` through
    the TOML configuration path; returns (recorder, stats, clock)."""
    cfg = RecordConfig.from_mapping({
        "fps": FPS,
        "sources": {"room": {"plugin": "file", "path": str(video), "deidentify": deidentify}},
        "layout": {"slots": [s.to_dict() for s in room_layout().slots], "width": W, "height": H},
        "encoder": {"plugin": "libx264", "preset": "ultrafast", "crf": 18},
        "deid": {"detector": "magenta", **(deid or {})},
    })
    clock = Clock()
    rec = cfg.build_recorder(plugins=plugins, output=tmp_path / "rec.mp4", duration=seconds, clock=clock, max_behind_s=30.0)
    rec.start()
    rec.wait(seconds + 30)
    return rec, rec.stop(), clock


def frames_by_code(path):
    return [(read_code(y), y) for y in decode_luma(path)]


def test_stalled_detector_hides_the_slot_for_the_stall_and_recovers(tmp_path, plugins):
    plugins, made = plugins
    """The detector blocks for 2 s on its 20th detection (frame 60 at every 3rd frame: about 2 s into the file; a file
    source starts at the clock's time, so the first frames can be skipped): from then until it answers
    again the whole slot is hidden (the decoy's texture is gone too), the face is never shown, and
    the data track, the stats and the sidecar record one hidden interval of about 2 s, reason late."""
    video = tmp_path / "room.mp4"
    truth = write_video(video, 8 * FPS, face_frame)  # (its end, hidden whole, well after the recording's)
    rec, stats, clock = record(tmp_path, plugins, video, 5.5, {"detector_options": {"stall_at": 20, "stall_s": 2.0}})
    assert stats["frames"] == round(5.5 * FPS) and stats["skipped_ticks"] == 0
    det = made[0]
    assert det.stalled_at is not None and 20 <= det.stalled_at < 22
    raw = {n: y for n, y in enumerate(decode_luma(video))}

    deid = stats["sources"]["room"]["source"]["deid"]
    end_ns = json.loads((tmp_path / "rec.mp4.json").read_text())["start_ns"] + 5.5 * NS_PER_S
    inside = [iv for iv in deid["intervals"] if iv["start_ns"] < end_ns]  # (the file's last frames fail closed after it)
    assert len(inside) == 1, deid["intervals"]
    iv = inside[0]
    assert iv["reason"] == "late" and set(iv["reasons"]) <= {"late", "busy"}
    start_s, end_s = (iv["start_ns"] - clock.origin_ns) / NS_PER_S, (iv["end_ns"] - clock.origin_ns) / NS_PER_S
    # hidden from the frames before the stalled one (detected within latency_s of its capture)
    stall_s = (det.stalled_ns - clock.origin_ns) / NS_PER_S
    assert stall_s - 0.4 <= start_s <= stall_s and 1.9 <= end_s - start_s <= 2.7, (start_s, end_s, stall_s)

    hidden_codes, shown = 0, 0
    for code, y in frames_by_code(tmp_path / "rec.mp4"):
        t_code = None if code is None else code / FPS
        decoy = detail(y[44:96, 44:96])
        if code is None:  # the barcode is blurred away: the whole slot is hidden
            hidden_codes += 1
            assert decoy < 0.3 * detail(raw[0][44:96, 44:96])
            continue
        shown += 1
        assert not (start_s + 0.05 < t_code < end_s - 0.05), f"frame {code} shown during the stall"
        assert not exposed(y, raw[code], truth[code][0]), f"face exposed in file frame {code}"
        assert decoy > 0.7 * detail(raw[code][44:96, 44:96])  # faces-only mode: the rest stays sharp
    assert shown >= 3 * FPS - 10 and 1.9 * FPS <= hidden_codes <= 2.8 * FPS, (shown, hidden_codes)

    track = read_data_track(tmp_path / "rec.mp4.data.jsonl")
    pts = [p for p in track.points if p.source == "room" and p.kind == "deid"]
    flags = [(p.t, p.values["hidden"]) for p in pts]
    ups = [t for (t, h), (_, h0) in zip(flags[1:], flags) if h == 1 and h0 == 0]
    downs = [t for (t, h), (_, h0) in zip(flags[1:], flags) if h == 0 and h0 == 1]
    assert flags[0][1] == 0 and len(ups) == 1 and len(downs) == 1 and 1.9 <= downs[0] - ups[0] <= 2.7, flags
    assert any(p.values["late"] or p.values["busy"] for p in pts if p.values["hidden"])

    side = json.loads((tmp_path / "rec.mp4.json").read_text())
    room = next(s for s in side["sources"] if s["name"] == "room")
    assert room["deid"]["live"] is True and room["deid"]["detector"] == "magenta"
    assert room["deid"]["detector_info"]["name"] == "magenta" and room["deid"]["latency_s"] == 0.25
    assert side["stats"]["sources"]["room"]["source"]["deid"]["intervals"][0]["reason"] == iv["reason"]


def adaptive_run(tmp_path, plugins, delay_s, deid=None, seconds=4.0):
    """Record the moving face with a detector taking ``delay_s`` a call: (stats' deid, detector, frames by code, truth, raw)."""
    plugins, made = plugins
    video = tmp_path / "room.mp4"
    truth = write_video(video, int(seconds + 2) * FPS, face_frame)
    table = {"detector_options": {"delay_s": delay_s}, "latency_s": 0.6, **(deid or {})}  # (0.6 s: slack for a loaded machine)
    rec, stats, clock = record(tmp_path, plugins, video, seconds, table)
    assert stats["frames"] == round(seconds * FPS) and stats["skipped_ticks"] == 0
    return stats["sources"]["room"]["source"]["deid"], made[-1], frames_by_code(tmp_path / "rec.mp4"), truth, decode_luma(video)


def test_slow_detector_the_cadence_adapts_and_tracking_covers_the_frames_between(tmp_path, plugins):
    """A detector taking 0.15 s a call cannot run on every 3rd frame (10 calls/s = 1.5 s of work a
    second): the cadence goes to the slowest allowed (every 6th frame, 75 % busy), detection keeps
    up, so the slot is (almost) never hidden whole, and the face is hidden in every shown frame,
    most of which the detector never saw (the temporal stage's tracks carry it between)."""
    deid, det, frames, truth, raw = adaptive_run(tmp_path, plugins, 0.15)
    cad = deid["cadence"]
    assert cad["every"] == 6 and cad["fastest"] == 3 and cad["slowest"] == 6 and cad["changes"] >= 1, cad
    assert 0.1 <= cad["call_ms_median"] / 1000 < 0.25
    shown = [(c, y) for c, y in frames if c is not None]
    assert len(shown) >= 0.85 * len(frames), (len(shown), len(frames), deid["intervals"])
    seen = set(det.codes)
    between = [c for c, _ in shown if c not in seen]
    assert len(between) >= 0.7 * len(shown), (len(between), len(shown))
    for c, y in shown:
        assert not exposed(y, raw[c], truth[c][0]), f"face exposed in file frame {c} (detected: {c in seen})"


def test_slow_detector_at_a_fixed_cadence_fails_closed(tmp_path, plugins):
    """The control: the same detector with the cadence fixed at every 3rd frame (max_every = 3)
    falls behind, and the slot is hidden whole for much of the recording (never shown raw)."""
    deid, det, frames, truth, raw = adaptive_run(tmp_path, plugins, 0.15, {"max_every": 3})
    assert deid["cadence"]["every"] == 3 and deid["cadence"]["changes"] == 0
    hidden = sum(c is None for c, _ in frames)
    assert hidden >= 0.3 * len(frames), (hidden, len(frames))
    assert deid["frames_slot_hidden"] >= 0.3 * deid["frames"]
    assert all(not exposed(y, raw[c], truth[c][0]) for c, y in frames if c is not None)


def test_detector_too_slow_even_for_the_slowest_cadence_fails_closed(tmp_path, plugins):
    """0.8 s a call is longer than latency_s (0.6 s): no cadence helps; every frame leaves with
    the slot hidden whole, reason late."""
    deid, det, frames, truth, raw = adaptive_run(tmp_path, plugins, 0.8, seconds=3.0)
    assert deid["cadence"]["every"] == 6 and deid["cadence"]["behind"] is True
    assert sum(c is None for c, _ in frames) >= 0.95 * len(frames)
    assert deid["intervals"][0]["reason"] in ("late", "busy") and deid["frames_faces_hidden"] <= 0.05 * deid["frames"]


def test_without_live_hiding_the_face_is_recorded(tmp_path, plugins):
    plugins, _ = plugins
    """The control: the same recording without ``deidentify`` shows the face (the scorer can fail)."""
    video = tmp_path / "room.mp4"
    truth = write_video(video, 2 * FPS, face_frame)
    rec, stats, clock = record(tmp_path, plugins, video, 1.0, deidentify=False)
    raw = decode_luma(video)
    seen = [(c, y) for c, y in frames_by_code(tmp_path / "rec.mp4") if c is not None]
    assert len(seen) >= FPS - 2 and all(exposed(y, raw[c], truth[c][0]) for c, y in seen)
    side = json.loads((tmp_path / "rec.mp4.json").read_text())
    assert "deid" not in side["sources"][0]


def test_detector_errors_fail_closed(tmp_path, plugins):
    plugins, _ = plugins
    """A detector that raises on every call: every frame leaves with the slot hidden whole."""
    video = tmp_path / "room.mp4"
    write_video(video, 2 * FPS, face_frame)

    class Broken(MagentaDetector):
        def detect(self, images):
            raise RuntimeError("model crashed (test)")

    inner = plugins.create("source", "file", name="room", path=str(video))
    src = LiveDeidSource(inner=inner, settings=LiveDeidSettings.from_mapping({}), detector=Broken())
    rec = Recorder([src], room_layout(), tmp_path / "rec.mp4", duration=1.0, plugins=plugins)
    rec.start()
    rec.wait(30)
    stats = rec.stop()
    assert all(c is None for c, _ in frames_by_code(tmp_path / "rec.mp4"))
    deid = stats["sources"]["room"]["source"]["deid"]
    assert deid["detector_errors"] > 0 and deid["intervals"][0]["reason"] == "error" and deid["frames_faces_hidden"] == 0


def test_recorder_latency_covers_the_live_delay(tmp_path, plugins):
    plugins, _ = plugins
    inner = plugins.create("source", "testsrc", name="room")
    src = LiveDeidSource(inner=inner, settings=LiveDeidSettings.from_mapping({"latency_s": 0.5}))
    rec = Recorder([src], room_layout(), tmp_path / "x.mp4")
    assert rec.latency_s >= src.delay_s > 0.5 + src.lookahead / 30


@pytest.mark.parametrize("table, message", [
    ({"latency_s": 0}, "latency_s must be seconds in (0, 5]"),
    ({"slot": "pink"}, "slot must be one of blur, fill"),
    ({"every": 0}, "every must be an integer in [1, 30]"),
    ({"every": 4, "max_every": 3}, "max_every must be an integer from every (4) to 30"),
    ({"max_every": 2.5}, "max_every must be an integer"),
    ({"region": "full"}, "unknown key(s) deid.region"),
])
def test_bad_deid_tables_are_one_line_errors(table, message):
    with pytest.raises(ConfigError) as err:
        RecordConfig.from_mapping({"sources": {"room": {"plugin": "testsrc", "deidentify": True}}, "deid": table,
                                   "layout": {"preset": "single", "sources": {"main": "room"}}})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_deidentify_must_be_a_bool():
    with pytest.raises(ConfigError, match="deidentify must be true or false"):
        RecordConfig.from_mapping({"sources": {"room": {"plugin": "testsrc", "deidentify": "yes"}}})


def test_status_line_says_when_the_slot_is_hidden():
    from surgbox.cli.record import status_line

    line = status_line({"sources": {"room": {"media": "video", "fps_in": 30.0, "source": {"deid": {"hidden": "late"}}}}})
    assert "room 30.0 in" in line and "SLOT HIDDEN (late)" in line
    assert "faces hidden" in status_line({"sources": {"room": {"media": "video", "source": {"deid": {"hidden": None}}}}})
