"""De-identification end to end with real FFmpeg (PyAV), the real ``libx264`` encoder plugin and ffprobe.

The detector here is a small real algorithm for synthetic scenes (it finds near-white squares),
so the tests know exactly where the "faces" are; the RetinaFace privacy test at the end uses
real face photos from ../shared when present.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import ffprobe_json

from surgbox.deid import PAPER_STAGES, DeidError, Progress, defaults, deidentify, read_audit
from surgbox.hookspecs import hookimpl
from surgbox.interfaces import Detector
from surgbox.types import Detections, Layout, Rect, Slot


class WhiteSquareDetector(Detector):
    """Finds near-white blobs (all channels >= 230) in RGB images, one box per column run of
    bright pixels. Reports its own stage times like a real detector."""

    name = "white-squares"
    version = "test-1"

    def __init__(self, level: int = 230):
        self.level = level
        self.calls = 0
        self.stage_seconds = {"preprocessing": 0.0, "inference": 0.0, "output decoding": 0.0}

    def settings(self):
        return {"level": self.level}

    def detect(self, images):
        self.calls += 1
        out = []
        for im in images:
            t0 = time.perf_counter()
            bright = (im >= self.level).all(axis=2)
            t1 = time.perf_counter()
            cols = np.flatnonzero(bright.any(axis=0))
            t2 = time.perf_counter()
            boxes = []
            if len(cols):
                runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
                for r in runs:
                    rows = np.flatnonzero(bright[:, r[0]:r[-1] + 1].any(axis=1))
                    if len(r) >= 4 and len(rows) >= 4:
                        boxes.append([r[0], rows[0], r[-1] + 1, rows[-1] + 1])
            out.append(Detections(np.reshape(boxes, (-1, 4)), [0.99] * len(boxes)))
            t3 = time.perf_counter()
            for k, dt in zip(self.stage_seconds, (t1 - t0, t2 - t1, t3 - t2)):
                self.stage_seconds[k] += dt
        return out


def square_at(i: int, width: int, height: int, x0: int | None = None) -> tuple[int, int, int, int]:
    """Where the white 40x40 square is in frame ``i`` (moves right 2 px per frame)."""
    s = 40
    x = (x0 if x0 is not None else width // 4) + 2 * i
    y = height // 2 - s // 2
    return x, y, x + s, y + s


def make_video(path: Path, *, size=(320, 240), frames=45, fps=30, audio=True, codec="libx264", pts=None,
               squares=1, metadata=None, rotation=None, options=None) -> Path:
    """A textured background with moving white squares, optional AAC audio (440 Hz tone)."""
    w, h = size
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 200, (h + 64, w + 64, 3), dtype=np.uint8)
    out = av.open(str(path), "w", options=options or {})
    for k, v in (metadata or {}).items():
        out.metadata[k] = v
    vs = out.add_stream(codec, rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    if pts is not None:
        vs.codec_context.time_base = Fraction(1, 1000)
    if rotation is not None:
        vs.set_display_rotation(rotation)
    if audio:
        a = out.add_stream("aac", rate=44100, layout="mono")
    apts = 0
    for i in range(frames):
        img = texture[i % 32:i % 32 + h, i % 16:i % 16 + w].copy()
        for q in range(squares):
            x1, y1, x2, y2 = square_at(i, w, h, x0=(w // 8 if squares > 1 else None) if q == 0 else w * 5 // 8)
            img[y1:y2, x1:x2] = 255
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        if pts is not None:
            f.pts, f.time_base = pts[i], Fraction(1, 1000)
        else:
            f.pts = i
        out.mux(vs.encode(f))
        if audio:
            t_end = (i + 1) / fps if pts is None else (pts[i] + 33) / 1000
            n = int(t_end * 44100) - apts
            t = (np.arange(n) + apts) / 44100
            af = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, apts
            apts += n
            out.mux(a.encode(af))
    out.mux(vs.encode())
    if audio:
        out.mux(a.encode())
    out.close()
    return path


def frame_times(path: Path) -> list[float]:
    data = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "frame=pts_time")
    return [float(f["pts_time"]) for f in data["frames"]]


def assert_times_kept(src: Path, dst: Path) -> None:
    """Output frame times equal the input's exactly, also when the copied audio starts before 0
    (AAC priming): the pipeline writes a plain MP4, whose edit lists keep every track's times."""
    tin, tout = frame_times(src), frame_times(dst)
    assert len(tout) == len(tin)
    assert tout == pytest.approx(tin, abs=1e-6)  # ffprobe prints 6 decimals


def audio_packets(path: Path) -> list[tuple[int, bytes]]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [(p.duration, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.size]


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def detail(a: np.ndarray) -> float:
    a = a.astype(np.float32)
    return float(np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean())


@pytest.fixture
def run(tmp_path, default_plugins):
    """``run(src, **kw)`` -> (result, dst) with the white-square detector and real libx264."""

    def _run(src, dst_name="out.mp4", **kw):
        kw.setdefault("detector", WhiteSquareDetector())
        kw.setdefault("region", "full")
        dst = tmp_path / dst_name
        return deidentify(src, dst, plugins=default_plugins, **kw), dst

    return _run


def no_partial_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if "partial" in p.name]


def test_frames_timestamps_size_fps_and_audio_survive(tmp_path, run):
    src = make_video(tmp_path / "in.mp4", frames=45)
    result, dst = run(src, audit=tmp_path / "a.jsonl", report=tmp_path / "r.json", chart=tmp_path / "c.png")
    pin, pout = ffprobe_json(src), ffprobe_json(dst)
    vin = next(s for s in pin["streams"] if s["codec_type"] == "video")
    vout = next(s for s in pout["streams"] if s["codec_type"] == "video")
    assert (vout["width"], vout["height"]) == (vin["width"], vin["height"]) == (320, 240)
    assert vout["r_frame_rate"] == vin["r_frame_rate"] == "30/1"
    assert result.frames == 45 and len(frame_times(dst)) == 45
    assert_times_kept(src, dst)
    # audio: the very same packets (bytes and durations), in the same order
    ain, aout = audio_packets(src), audio_packets(dst)
    assert len(ain) > 50 and aout == ain
    assert next(s for s in pout["streams"] if s["codec_type"] == "audio")["codec_name"] == "aac"
    # the square is hidden in every frame; the picture away from it is only re-encoded
    fin, fout = decoded(src), decoded(dst)
    for i in range(45):
        x1, y1, x2, y2 = square_at(i, 320, 240)
        edge_in = fin[i][y1 - 4:y2 + 4, x1 - 4:x2 + 4]
        edge_out = fout[i][y1 - 4:y2 + 4, x1 - 4:x2 + 4]
        assert detail(edge_out) < 0.35 * detail(edge_in), i
        far = (slice(0, 60), slice(240, 320))
        assert np.abs(fout[i][far].astype(int) - fin[i][far]).mean() < 6
    assert result.faces == 1 and result.report["frames_with_regions"] == 45
    assert no_partial_files(tmp_path)
    # report, audit and chart
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["frames"] == 45 and rep["audio_packets_copied"] == len(ain)
    stages = rep["timing"]["stages"]
    for s in ("setup", "decode", "crop", "preprocessing", "inference", "output decoding", "blur", "write"):
        assert stages[s]["seconds"] > 0, s
    header, frames, summary = read_audit(tmp_path / "a.jsonl")
    assert header["detector"]["name"] == "white-squares" and header["detector"]["settings"] == {"level": 230}
    assert header["settings"]["batch"] == 16 and header["regions"] == [[0, 0, 320, 240]]
    assert [f["frame"] for f in frames] == list(range(45)) and summary["complete"] is True
    assert frames[10]["time"] == pytest.approx(frame_times(src)[10], abs=1e-6)
    (region,) = frames[10]["regions"]
    assert region["kind"] == "detected" and region["box"] == pytest.approx(list(square_at(10, 320, 240)), abs=1)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_audio_and_unusual_even_size(tmp_path, run):
    src = make_video(tmp_path / "in.mp4", size=(642, 362), frames=20, audio=False)
    result, dst = run(src, batch=4)
    p = ffprobe_json(dst)
    assert [s["codec_type"] for s in p["streams"]] == ["video"]
    assert (p["streams"][0]["width"], p["streams"][0]["height"]) == (642, 362)
    assert frame_times(dst) == pytest.approx(frame_times(src), abs=1e-6) and result.report["warnings"] == []
    assert p["streams"][0]["avg_frame_rate"] == "30/1"
    fin, fout = decoded(src), decoded(dst)
    x1, y1, x2, y2 = square_at(5, 642, 362)
    assert detail(fout[5][y1:y2, x1:x2]) < 0.35 * detail(fin[5][y1 - 4:y2 + 4, x1 - 4:x2 + 4]) + 1


def test_odd_size_is_padded_to_even_with_a_warning(tmp_path, run):
    """4:2:0 H.264 cannot code odd sizes: the last row/column is repeated (641x361 -> 642x362)."""
    src = make_video(tmp_path / "in.mkv", size=(641, 361), frames=12, audio=False, codec="ffv1")
    assert ffprobe_json(src)["streams"][0]["width"] == 641
    result, dst = run(src)
    s = ffprobe_json(dst)["streams"][0]
    assert (s["width"], s["height"]) == (642, 362) and len(frame_times(dst)) == 12
    assert any("641x361 padded to 642x362" in w for w in result.report["warnings"])
    out = decoded(dst)[3]
    assert np.abs(out[:, 641].astype(int) - out[:, 640]).mean() < 3  # the repeated column (after lossy coding)
    assert np.abs(out[:, 641].astype(int) - out[:, 639]).mean() > 3 * np.abs(out[:, 641].astype(int) - out[:, 640]).mean()


def test_variable_frame_rate_timestamps_are_kept(tmp_path, run):
    pts = [0, 33, 70, 100, 180, 200, 233, 300, 310, 350, 400, 433, 466, 520, 600]
    src = make_video(tmp_path / "in.mp4", frames=len(pts), pts=pts, audio=True)
    tin = frame_times(src)
    assert tin == pytest.approx([p / 1000 for p in pts], abs=1e-3)
    _, dst = run(src)
    assert_times_kept(src, dst)
    assert audio_packets(dst) == audio_packets(src)
    # without audio the times are exactly the input's
    src2 = make_video(tmp_path / "in2.mp4", frames=len(pts), pts=pts, audio=False)
    _, dst2 = run(src2, dst_name="out2.mp4")
    assert frame_times(dst2) == pytest.approx(frame_times(src2), abs=1e-6)


def test_file_object_source_and_auto_region_from_recording_metadata(tmp_path, run):
    """``auto`` blurs only the room-camera slot named by the layout stored in the MP4."""
    layout = Layout(320, 240, [Slot("endo", Rect(0, 0, 160, 240), source="e"),
                               Slot("room", Rect(160, 0, 160, 240), source="r", role="room_camera")])
    src = make_video(tmp_path / "rec.mp4", frames=15, squares=2, options={"movflags": "use_metadata_tags"},
                     metadata={"surgbox_layout": json.dumps(layout.to_dict()), "title": "OR 3"})
    with open(src, "rb") as f:
        result, dst = run(f, region="auto")
    assert result.src == str(src) and result.report["settings"]["region"] == [[160, 0, 160, 240]]
    assert result.report["settings"]["region_origin"] == "layout"
    fin, fout = decoded(src), decoded(dst)
    left, right = square_at(7, 320, 240, x0=40), square_at(7, 320, 240, x0=200)
    cut = lambda a, b: a[b[1]:b[3], b[0]:b[2]]  # noqa: E731
    assert np.abs(cut(fout[7], left).astype(int) - cut(fin[7], left)).mean() < 6  # endoscope slot untouched
    grow = lambda b: (b[0] - 4, b[1] - 4, b[2] + 4, b[3] + 4)  # noqa: E731
    assert detail(cut(fout[7], grow(right))) < 0.35 * detail(cut(fin[7], grow(right)))  # room camera square blurred
    md = ffprobe_json(dst)["format"]["tags"]
    assert md["title"] == "OR 3" and json.loads(md["surgbox_layout"]) == layout.to_dict()


def test_rotation_survives(tmp_path, run):
    src = make_video(tmp_path / "in.mp4", frames=5, audio=False, rotation=90)
    _, dst = run(src)
    with av.open(str(dst)) as c:
        assert next(c.decode(video=0)).rotation == 90


def test_every_nth_frame_with_tracking_still_hides_every_frame(tmp_path, run):
    src = make_video(tmp_path / "in.mp4", frames=30, audio=False)
    det = WhiteSquareDetector()
    result, dst = run(src, detector=det, every=3, batch=4)
    assert result.report["detected_frames"] == 10 and result.report["frames_with_regions"] == 30
    fin, fout = decoded(src), decoded(dst)
    for i in range(30):
        x1, y1, x2, y2 = square_at(i, 320, 240)
        around = (slice(y1 - 4, y2 + 4), slice(x1 - 4, x2 + 4))
        assert detail(fout[i][around]) < 0.35 * detail(fin[i][around]), i


def test_hook_deid_finished(tmp_path, default_plugins):
    """The ``deid_finished`` lifecycle hook gets the run's result once the output is in place."""
    seen = []

    class Listener:
        @hookimpl
        def deid_finished(self, result):
            seen.append((result, Path(result.dst).exists()))

    default_plugins.add(Listener(), "listener")
    src = make_video(tmp_path / "in.mp4", frames=10, audio=False)
    result = deidentify(src, tmp_path / "o.mp4", region="full", detector=WhiteSquareDetector(), plugins=default_plugins)
    assert seen == [(result, True)] and result.frames == 10 and result.report["frames_with_regions"] == 10


def test_default_detector_options_belong_to_the_default_detector(tmp_path, default_plugins):
    """The default ``threshold`` / ``threads`` are the default detector's options
    (``surgbox.deid.defaults.DETECTOR_OPTIONS``): a third-party detector that has neither (here
    one registered by name that takes only ``level``) gets neither and runs with no warning
    (issue 20 item 15: it used to warn on every run). Options the caller names are passed as
    given, and a factory that refuses one is a ConfigError naming it (issue 18 item 16)."""
    from surgbox.errors import ConfigError

    class Registrar:
        @hookimpl
        def register_detectors(self, register):
            register("white-squares", WhiteSquareDetector, description="test detector")

    default_plugins.add(Registrar(), "white-squares-test")
    src = make_video(tmp_path / "in.mp4", frames=6, audio=False)
    result = deidentify(src, tmp_path / "o.mp4", region="full", detector="white-squares", plugins=default_plugins)
    assert result.report["detector"]["settings"] == {"level": 230} and result.report["frames_with_regions"] == 6
    assert result.report["warnings"] == [] and result.report["settings"]["detector_options"] == {}
    result = deidentify(src, tmp_path / "o2.mp4", region="full", detector="white-squares", threshold=None,
                        detector_threads=None, detector_options={"level": 200}, plugins=default_plugins)
    assert result.report["warnings"] == [] and result.report["detector"]["settings"] == {"level": 200}
    for named in ({"detector_options": {"threshold": 0.5}}, {"threshold": 0.5}, {"detector_threads": 2}):
        with pytest.raises(ConfigError, match=r"detector plugin 'white-squares' has no option '(threshold|threads)'"):
            deidentify(src, tmp_path / "o3.mp4", region="full", detector="white-squares", plugins=default_plugins, **named)
    assert not (tmp_path / "o3.mp4").exists() and no_partial_files(tmp_path)


def test_progress_reports(tmp_path, default_plugins):
    src = make_video(tmp_path / "in.mp4", frames=30, audio=False)
    progress: list[Progress] = []
    deidentify(src, tmp_path / "o.mp4", region="full", detector=WhiteSquareDetector(), plugins=default_plugins,
               progress=progress.append)
    assert progress and all(p.total == 30 for p in progress)
    assert progress[-1].done and progress[-1].frames == 30 and progress[-1].eta == 0.0
    assert [p.frames for p in progress] == sorted(p.frames for p in progress)


@pytest.mark.parametrize("case", ["missing", "directory", "garbage", "truncated-moov", "truncated-data", "no-video", "empty"])
def test_bad_input_gives_a_clear_error_and_no_output(tmp_path, run, case):
    bad = tmp_path / "bad.mp4"
    if case == "directory":
        bad.mkdir()
    elif case == "garbage":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "truncated-moov":  # moov at the end: cut off
        data = make_video(tmp_path / "full.mp4", frames=30).read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif case == "truncated-data":  # moov first (faststart): the index promises frames that are gone
        data = make_video(tmp_path / "full.mp4", frames=60, options={"movflags": "faststart"}).read_bytes()
        bad.write_bytes(data[: int(len(data) * 0.6)])
    elif case == "no-video":
        out = av.open(str(bad), "w")
        a = out.add_stream("aac", rate=44100, layout="mono")
        af = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = 44100, 0
        out.mux(a.encode(af))
        out.mux(a.encode())
        out.close()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(DeidError) as e:
        run(bad, dst_name="out/o.mp4")
    msg = str(e.value)
    assert "bad.mp4" in msg
    assert any(w in msg for w in ("does not exist", "not a readable video", "truncated", "corrupt", "no video stream", "no decodable"))
    assert list(out_dir.iterdir()) == []


def test_edit_list_that_hides_frames_is_not_mistaken_for_truncation(tmp_path, run):
    """``ffmpeg -ss 0.5 -c copy`` keeps the GOP's leading frames in the file but hides them
    with an edit list: fewer frames decode than the index lists, and the file is fine."""
    full = make_video(tmp_path / "full.mp4", frames=60, audio=False)
    cut = tmp_path / "cut.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "0.5", "-i", str(full), "-c", "copy", str(cut)], check=True)
    with av.open(str(cut)) as c:
        declared, decoded = c.streams.video[0].frames, sum(1 for _ in c.decode(video=0))
    assert decoded < declared
    result, dst = run(cut)
    assert result.frames == decoded and len(frame_times(dst)) == decoded


def test_bad_options(tmp_path, run):
    from surgbox.errors import ConfigError

    src = make_video(tmp_path / "in.mp4", frames=3, audio=False)
    with pytest.raises(ConfigError, match="region"):
        run(src, region="1,2,3")
    with pytest.raises(ConfigError, match="does not exist"):
        run(src, dst_name="nodir/o.mp4")
    with pytest.raises(ConfigError, match="carry"):
        run(src, carry=-1)
    for bad in (0, 1.5, "half"):
        with pytest.raises(ConfigError, match="detect_scale"):
            run(src, detect_scale=bad)
    with pytest.raises(ConfigError, match="detector_threads"):
        run(src, detector_threads=0)
    assert no_partial_files(tmp_path)


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.37])
def test_detect_scale_maps_boxes_back_to_frame_pixels(tmp_path, run, scale):
    """Regions are shrunk for the detector (an odd region origin, a non-integer scale); the
    boxes it finds come back in frame pixels."""
    src = make_video(tmp_path / "in.mp4", frames=12, audio=False)
    det = WhiteSquareDetector()
    result, _ = run(src, detector=det, region="41,21,260,200", detect_scale=scale, audit=tmp_path / "a.jsonl")
    assert result.report["settings"]["detect_scale"] == scale
    _, frames, _ = read_audit(tmp_path / "a.jsonl")
    for i in (0, 5, 11):
        (region,) = frames[i]["regions"]
        tol = 1 if scale == 1.0 else 1.5 / scale  # a box edge is known to one detector pixel
        assert region["box"] == pytest.approx(list(square_at(i, 320, 240)), abs=tol), (i, region)


def test_deid_error_is_a_surgbox_error():
    import surgbox.deid
    import surgbox.errors

    assert surgbox.deid.DeidError is surgbox.errors.DeidError
    assert issubclass(DeidError, surgbox.errors.SurgboxError) and issubclass(DeidError, RuntimeError)


def test_frame_queue_is_bounded_by_memory(tmp_path, run):
    from surgbox.errors import ConfigError

    src = make_video(tmp_path / "in.mp4", size=(640, 360), frames=10, audio=False)
    frame = 640 * 360 * 3 // 2
    lookahead = max(defaults.EDGE_CARRY, defaults.MAX_GAP + 1) + 8  # edge carry (or gap) + velocity span 8
    held = lookahead + 4 + 2 * 4 + 4  # temporal lookahead + batch + 2 queues + margin
    result, _ = run(src, queue_size=500, batch=4, queue_memory=frame * (held + 7))
    assert result.report["settings"]["lookahead"] == lookahead and result.report["queue_depth"] == 7
    result, _ = run(src, queue_size=3, dst_name="o2.mp4")
    assert result.report["queue_depth"] == 3
    with pytest.raises(ConfigError, match="every"):
        run(src, every=31)


# -- CLI -------------------------------------------------------------------------------------------

def test_cli_deid_prints_progress_and_stage_table(tmp_path):
    """With ``--timing`` (the table is not printed without it: test_deid_cli.py)."""
    src = make_video(tmp_path / "in.mp4", frames=20)
    out = tmp_path / "o.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "surgbox", "deid", str(src), str(out), "--region", "0,0,320,240", "--report", str(tmp_path / "r.json"),
         "--audit", str(tmp_path / "a.jsonl"), "--chart", str(tmp_path / "c.png"), "--batch", "8", "--timing"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "frames 20/20" in proc.stderr and "fps" in proc.stderr and "ETA" in proc.stderr
    for stage in ("setup", "decode", "crop", "inference", "write", "queue wait (decode)", "score filter", "NMS"):
        assert stage in proc.stderr
    assert "not measured" not in proc.stderr
    assert "20 frames" in proc.stdout
    rep = json.loads((tmp_path / "r.json").read_text())
    from surgbox.deid import defaults  # the defaults passed through (each member at its own threshold)

    members = rep["detector"]["settings"]["members"]
    assert rep["detector"]["name"] == defaults.DETECTOR == "ensemble"
    assert [m["threshold"] for m in members] == [m["threshold"] for m in defaults.detector_options("ensemble")["members"]]
    assert all(m["threads"] == 1 for m in members) and rep["settings"]["detect_scale"] == defaults.DETECT_SCALE
    # the detector (CenterFace members) reports its sub-stages: all ten sections of the paper are measured
    timing = rep["timing"]
    assert timing["not_measured"] == []
    for s in PAPER_STAGES:
        assert s in timing["stages"], s
        if s != "blur":  # no face in this video: nothing blurred (seconds are rounded to 0.1 ms)
            assert timing["stages"][s]["count"] > 0, s
    assert len(frame_times(out)) == 20 and (tmp_path / "c.png").exists() and (tmp_path / "a.jsonl").exists()


def test_cli_deid_errors_exit_1_with_a_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "surgbox", "deid", str(tmp_path / "nope.mp4"), str(tmp_path / "o.mp4")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "nope.mp4" in proc.stderr and "does not exist" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "surgbox", "deid", "a.mp4", "b.mp4", "--region", "1,2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "X,Y,W,H" in proc.stderr


# -- privacy with a real face detector on real face photos -----------------------------------------

def test_real_faces_are_hidden(tmp_path, shared_dir, default_plugins):
    """Face photos (../shared/data/faces, dlib boxes; skipped when ../shared is absent) panned through a small video: after
    de-identification with RetinaFace, the fine detail of every labelled face is gone and the
    detector finds none of them again."""
    import xml.etree.ElementTree as ET

    from PIL import Image

    faces = shared_dir / "data" / "faces"
    root = ET.parse(faces / "training.xml").getroot()
    im = root.find("images")[0] if root.find("images") is not None else next(root.iter("image"))
    photo = np.asarray(Image.open(faces / im.get("file")).convert("RGB"))
    gt = [(int(b.get("left")), int(b.get("top")), int(b.get("width")), int(b.get("height"))) for b in im.iter("box")]
    h, w = 240, 320
    ph, pw = photo.shape[:2]
    path = tmp_path / "faces.mp4"
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=30)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"crf": "16"}
    truth = []
    for i in range(24):
        x0, y0 = min(i * 2, max(0, pw - w)), max(0, (ph - h) // 2)
        frame = np.zeros((h, w, 3), np.uint8)
        crop = photo[y0:y0 + h, x0:x0 + w]
        frame[:crop.shape[0], :crop.shape[1]] = crop
        truth.append([(x - x0, y - y0, x - x0 + bw, y - y0 + bh) for x, y, bw, bh in gt
                      if x - x0 >= 0 and y - y0 >= 0 and x - x0 + bw <= w and y - y0 + bh <= h])
        f = av.VideoFrame.from_ndarray(frame, format="rgb24")
        f.pts = i
        out.mux(vs.encode(f))
    out.mux(vs.encode())
    out.close()
    assert sum(map(len, truth)) >= 24, "the photo should show at least one whole face per frame"
    dst = tmp_path / "deid.mp4"
    result = deidentify(path, dst, region="full", detector_options={"threshold": 0.3}, plugins=default_plugins)
    stages = result.report["timing"]["stages"]
    assert result.report["timing"]["not_measured"] == []
    assert all(stages[s]["seconds"] > 0 for s in PAPER_STAGES), stages  # all ten sections, blur included
    fin = [f.to_ndarray(format="rgb24") for f in av.open(str(path)).decode(video=0)]
    fout = [f.to_ndarray(format="rgb24") for f in av.open(str(dst)).decode(video=0)]
    det = default_plugins.create("detector", "retinaface", threshold=0.5)
    det.open()
    before, after = det.detect(fin), det.detect(fout)
    for i, boxes in enumerate(truth):
        for x1, y1, x2, y2 in boxes:
            a = fin[i][y1:y2, x1:x2].mean(axis=2)
            b = fout[i][y1:y2, x1:x2].mean(axis=2)
            assert detail(b) < 0.35 * detail(a), (i, (x1, y1, x2, y2))
    found_before = sum(len(d) for d in before)
    found_after = sum(len(d) for d in after)
    assert found_before >= sum(map(len, truth)) and found_after == 0


def test_a_failing_detector_stops_the_run_and_leaves_nothing(tmp_path, run):
    from surgbox.errors import DetectorError

    class Failing(WhiteSquareDetector):
        def detect(self, images):
            if self.calls >= 1:
                raise DetectorError("model crashed (test)")
            return super().detect(images)

    src = make_video(tmp_path / "in.mp4", frames=40, audio=False)
    with pytest.raises(DetectorError, match="model crashed"):
        run(src, detector=Failing(), batch=8, audit=tmp_path / "a.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
