"""The Recorder end to end with real FFmpeg: sidecar, metadata, hooks, slates, snapshots, faults.

Sources are tiny ThreadedSource subclasses defined here (solid colours on a schedule, with
programmable stalls and failures) plus the real ``tone`` plugin.
"""

from __future__ import annotations

import errno
import io
import json
import re
import subprocess
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import attrs
import av
import numpy as np
import pytest
from conftest import ffprobe_json
from PIL import Image

import surgbox_ext.plugin
from surgbox import layouts
from surgbox.capture import ThreadedSource
from surgbox.clock import NS_PER_S
from surgbox.config import RecordConfig
from surgbox.errors import ConfigError, EncoderError, SourceError, SurgboxError
from surgbox.hookspecs import hookimpl
from surgbox.plugins import Plugins
from surgbox.recording import FileSink, Recorder
from surgbox.types import Layout, Reading, Trigger, VideoFrame
from surgbox_ext.compositor import render_slate
from surgbox_ext.compositor.yuv import DefaultCompositor
from surgbox_ext.encoders import X264Encoder
from surgbox_ext.sources.tone import ToneSource


@attrs.define(eq=False)
class Flat(ThreadedSource):
    """Solid-luma video at ``fps``; silent during ``gaps`` (seconds from start); raises at ``die_at``."""

    media: ClassVar[str] = "video"
    width: int = attrs.field(default=320, kw_only=True)
    height: int = attrs.field(default=180, kw_only=True)
    fps: float = attrs.field(default=30, kw_only=True)
    value: int = attrs.field(default=180, kw_only=True)
    gaps: tuple = attrs.field(default=(), kw_only=True)
    die_at: float | None = attrs.field(default=None, kw_only=True)
    fail_start: bool = attrs.field(default=False, kw_only=True)
    noise: bool = attrs.field(default=False, kw_only=True)
    _t0: int = attrs.field(default=0, init=False, alias="_t0")
    _k: int = attrs.field(default=0, init=False, alias="_k")

    def _open(self) -> None:
        if self.fail_start:
            raise SourceError(f"source {self.name!r}: /dev/video9 does not exist; check the device path")
        self._t0 = self.clock.now_ns()

    def _capture(self) -> Any:
        t = self._t0 + round(self._k * NS_PER_S / self.fps)
        self._k += 1
        if self.wait(max(0.0, (t - self.clock.now_ns()) / NS_PER_S)):
            return None
        s = (t - self._t0) / NS_PER_S
        if self.die_at is not None and s >= self.die_at:
            raise OSError("capture card unplugged")
        if any(a <= s < b for a, b in self.gaps):
            return None
        if self.noise:
            arr = np.random.default_rng(self._k).integers(0, 256, (self.height * 3 // 2, self.width), dtype=np.uint8)
        else:
            arr = np.full((self.height * 3 // 2, self.width), 128, np.uint8)
            arr[: self.height] = self.value
        return VideoFrame(self.name, t, av.VideoFrame.from_ndarray(arr, format="yuv420p"), self._k - 1)


@attrs.define(eq=False)
class Pedal(ThreadedSource):
    """Presses once at ``at`` seconds, asking for a snapshot of ``detail_source``."""

    media: ClassVar[str] = "trigger"
    at: float = attrs.field(default=1.0, kw_only=True)
    detail_source: str = attrs.field(default="room", kw_only=True)
    _done: bool = attrs.field(default=False, init=False, alias="_done")
    pressed_ns: int | None = attrs.field(default=None, init=False)

    def _capture(self) -> Any:
        if self._done:
            self.wait(0.05)
            return None
        if self.wait(self.at):
            return None
        self._done = True
        self.pressed_ns = self.clock.now_ns()
        return Trigger(self.name, self.pressed_ns, "snapshot", {"source": self.detail_source})


@attrs.define(eq=False)
class Monitor(ThreadedSource):
    """A data source: a BIS-like reading every 0.25 s."""

    media: ClassVar[str] = "data"
    _n: int = attrs.field(default=0, init=False, alias="_n")

    def _capture(self) -> Any:
        if self.wait(0.25):
            return None
        self._n += 1
        return Reading(self.name, self.clock.now_ns(), "bis", {"BIS": 40.0 + self._n, "SQI": 90.0, "SR": None})


class HookLog:
    def __init__(self):
        self.calls: list[tuple[str, dict]] = []

    @hookimpl
    def recording_started(self, recording):
        self.calls.append(("recording_started", {"recording": recording}))

    @hookimpl
    def segment_finalized(self, recording, segment):
        self.calls.append(("segment_finalized", {"recording": recording, "segment": segment}))

    @hookimpl
    def recording_stopped(self, recording, stats):
        self.calls.append(("recording_stopped", {"recording": recording, "stats": stats}))


def plugins_with(hooks: HookLog) -> Plugins:
    return Plugins.build(entry_points=False, plugins=[(surgbox_ext.plugin, "surgbox"), (hooks, "test-hooks")])


# A loaded machine starves capture threads and the pipeline. Output made from capture times
# (frames are stamped with their scheduled time) is then deterministic if the pipeline waits long
# enough for late frames (latency_s) and never skips ticks to stay live (max_behind_s): the
# recordings below test content, not real-time capacity (benchmarks/bench_record.py does that).
STEADY = {"latency_s": 1.0, "max_behind_s": 60.0}


def fast_encoder() -> X264Encoder:
    return X264Encoder(preset="ultrafast")


def slot_luma(path: Path, rect: tuple[int, int, int, int]) -> list[tuple[float, np.ndarray]]:
    x, y, w, h = rect
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for f in c.decode(s):
            out.append((float(f.pts * s.time_base), f.to_ndarray()[: f.height][y : y + h, x : x + w]))  # raw Y plane
    return out


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """One 3 s recording exercising sources of every media, a snapshot, hooks and the sidecar."""
    tmp = tmp_path_factory.mktemp("rec")
    out = tmp / "case.mp4"
    hooks = HookLog()
    sources = [
        Flat("endoscope", width=1280, height=720, fps=30, value=180),
        Flat("room", width=800, height=600, fps=25, value=120),
        Flat("vitals", width=640, height=360, fps=60, value=60),
        ToneSource("mic"),
        Monitor("bis"),
        Pedal("pedal", at=1.0, detail_source="room"),
    ]
    rec = Recorder(sources, layouts.paper(), out, encoder=fast_encoder(), duration=3.0, plugins=plugins_with(hooks),
                   event={"id": "ev-77", "place": "OR 3", "procedure": "test"}, **STEADY)
    with rec:
        rec.wait(1.5)
        asked_ns = rec.clock.now_ns()
        api_snap = rec.snapshot("endoscope")
        started_hook_seen_while_running = [c[0] for c in hooks.calls]
        rec.wait()
    return {"out": out, "rec": rec, "hooks": hooks, "api_snap": api_snap, "early": started_hook_seen_while_running,
            "asked_ns": asked_ns, "pressed_ns": sources[5].pressed_ns}


def test_recording_is_h264_aac_1080p_with_exact_frame_count(recording):
    info = ffprobe_json(recording["out"], "-count_frames", "-show_streams", "-show_format")
    v, a = info["streams"]
    assert (v["codec_name"], v["width"], v["height"], int(v["nb_read_frames"])) == ("h264", 1920, 1080, 90)
    assert a["codec_name"] == "aac"
    tags = info["format"]["tags"]
    assert tags["surgbox_event_id"] == "ev-77"
    assert json.loads(tags["surgbox_layout"]) == layouts.paper().to_dict()
    assert [s["name"] for s in json.loads(tags["surgbox_sources"])] == ["endoscope", "room", "vitals", "mic", "bis", "pedal"]
    assert tags["surgbox_started_at"]


def test_sidecar_json(recording):
    out = recording["out"]
    side = json.loads(out.with_name("case.mp4.json").read_text())
    assert side["format"] == "surgbox-recording" and side["status"] == "complete" and side["error"] is None
    assert side["event_id"] == "ev-77" and side["event"]["place"] == "OR 3"
    assert side["layout"] == layouts.paper().to_dict()
    assert side["frames"] == 90 and side["duration_s"] == 3.0 and side["fps"] == "30"
    assert side["audio"] == {"source": "mic", "sample_rate": 48000, "channels": 1, "resampled_from": [], "error": None}
    assert side["data_track"] == "case.mp4.data.jsonl"
    assert side["started_at"].endswith("+00:00")
    assert {s["name"]: s["media"] for s in side["sources"]} == {
        "endoscope": "video", "room": "video", "vitals": "video", "mic": "audio", "bis": "data", "pedal": "trigger"}
    st = side["stats"]["sources"]
    assert st["vitals"]["dropped"] > 40  # 60 fps into 30 fps
    assert st["room"]["duplicated"] > 5  # 25 fps into 30 fps


def test_data_track_and_panel(recording):
    lines = recording["out"].with_name("case.mp4.data.jsonl").read_text().splitlines()
    header, rows = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    assert header["format"] == "surgbox-data-track" and len(rows) >= 8
    assert rows[0]["values"]["SQI"] == 90.0 and rows[0]["values"]["SR"] is None
    assert all(-0.5 < r["t"] < 3.5 for r in rows), [r["t"] for r in rows if not -0.5 < r["t"] < 3.5]
    frames = slot_luma(recording["out"], (0, 720, 1920, 360))
    panels = {bytes(p[::8, ::8].tobytes()) for _, p in frames}
    assert len(panels) >= 3  # BIS values and REC clock change the panel


def test_snapshots_api_and_trigger(recording):
    out = recording["out"]
    side = json.loads(out.with_name("case.mp4.json").read_text())
    snaps = side["snapshots"]
    assert len(snaps) == 2
    by_trigger = {s["trigger"]: s for s in snaps}
    api, pedal = by_trigger["api"], by_trigger["trigger:pedal"]
    assert recording["api_snap"]["composite"] == api["composite"]
    for s, src, size in ((api, "endoscope", (1280, 720)), (pedal, "room", (800, 600))):
        comp = Image.open(out.parent / s["composite"])
        assert comp.size == (1920, 1080)
        native = Image.open(out.parent / s["source_image"])
        assert native.size == size and s["source"] == src and s["source_size"] == list(size)
    # each is served by the first output tick due at or after the master-clock time it was asked
    # for (an event, whatever the machine's load): t is that tick's output time
    start_ns = side["start_ns"]

    def first_tick_t(at_ns):
        k = 0
        while start_ns + round(k * NS_PER_S / 30) < at_ns:
            k += 1
        return round(k / 30, 6)

    assert pedal["t"] == first_tick_t(recording["pressed_ns"]) and api["t"] == first_tick_t(recording["asked_ns"])
    assert 0 < pedal["t"] < 3.0 and 0 < api["t"] < 3.0


def test_hook_recording_started(recording):
    assert recording["early"][0] == "recording_started"
    name, kw = recording["hooks"].calls[0]
    info = kw["recording"]
    assert name == "recording_started" and info.id == "ev-77" and info.layout == layouts.paper()
    assert info.path.endswith("case.mp4") and info.sources[:3] == ("endoscope", "room", "vitals")


def test_hook_segment_finalized(recording):
    """Once per fragment (1 s GOPs: three in 3 s), each with its byte range and time range."""
    segs = [kw["segment"] for n, kw in recording["hooks"].calls if n == "segment_finalized"]
    assert [s.index for s in segs] == [0, 1, 2]
    assert [(s.start_ns, s.duration_ns) for s in segs] == [(i * NS_PER_S, NS_PER_S) for i in range(3)]
    size = recording["out"].stat().st_size
    assert segs[0].offset == segs[0].init_size > 0 and all(s.size_bytes > 0 for s in segs)
    assert all(b.offset == a.offset + a.size_bytes for a, b in zip(segs, segs[1:]))
    assert segs[-1].offset + segs[-1].size_bytes < size  # then only the MP4's index trailer
    assert {s.recording_id for s in segs} == {"ev-77"} and segs[0].path.endswith("case.mp4")


def test_hook_recording_stopped(recording):
    names = [n for n, _ in recording["hooks"].calls]
    assert names == ["recording_started"] + ["segment_finalized"] * 3 + ["recording_stopped"]
    stats = recording["hooks"].calls[-1][1]["stats"]
    assert stats["frames"] == 90 and stats["error"] is None
    assert recording["hooks"].calls[-1][1]["recording"].metadata["status"] == "complete"


def test_flat_colours_land_in_their_slots(recording):
    frames = slot_luma(recording["out"], (0, 0, 1280, 720))
    assert abs(float(frames[45][1].mean()) - 180) < 3


def is_slate(region: np.ndarray, name: str, *, connecting: bool = False) -> bool:
    h, w = region.shape
    ref = av.VideoFrame.from_image(render_slate(name, w, h, connecting=connecting)).reformat(format="yuv420p").to_ndarray()[:h]
    return float(np.abs(region.astype(int) - ref).mean()) < 6


def test_a_source_not_yet_connected_shows_connecting_then_no_signal(tmp_path):
    """The recorder tells the compositor its stale timeout (``set_context``): a camera that has not
    sent its first frame shows the calm CONNECTING slate for that long, then NO SIGNAL; an optional
    source that could not start shows NO SIGNAL from the first frame."""
    out = tmp_path / "connect.mp4"
    sources = [Flat("endoscope", width=640, height=360, gaps=((0.0, 5.0),)), Flat("room", fail_start=True), Flat("vitals")]
    rec = Recorder(sources, layouts.paper(), out, encoder=fast_encoder(), duration=2.0, stale_timeout_s=1.0,
                   optional={"room"}, **STEADY)
    with rec:
        rec.wait()
    endo = [(t, "connecting" if is_slate(y, "endoscope", connecting=True) else "no signal" if is_slate(y, "endoscope") else "other")
            for t, y in slot_luma(out, (0, 0, 1280, 720))]
    assert len(endo) == 60 and all(state != "other" for _, state in endo), endo
    assert all(state == "connecting" for t, state in endo if t < 0.9) and all(state == "no signal" for t, state in endo if t > 1.1)
    room = slot_luma(out, (1280, 0, 640, 360))
    assert all(is_slate(y, "room") for _, y in room)


def test_stalled_source_shows_slate_and_recovers(tmp_path):
    out = tmp_path / "stall.mp4"
    sources = [Flat("endoscope", width=640, height=360, gaps=((1.0, 2.5),)), Flat("room"), Flat("vitals")]
    rec = Recorder(sources, layouts.paper(), out, encoder=fast_encoder(), duration=3.5, stale_timeout_s=0.4, **STEADY)
    with rec:
        rec.wait()
    states = ["slate" if is_slate(y, "endoscope") else ("live" if abs(float(y.mean()) - 180) < 4 else "other") for _, y in slot_luma(out, (0, 0, 1280, 720))]
    assert "other" not in states
    runs = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    assert runs[-3:] == ["live", "slate", "live"]
    n_slate = states.count("slate")
    assert 25 <= n_slate <= 40  # 1.5 s gap minus the 0.4 s timeout, at 30 fps (+- scheduling)
    assert rec.stats()["sources"]["endoscope"]["stale_ticks"] == n_slate


def test_source_that_cannot_open_is_a_clear_error(tmp_path):
    good = Flat("room")
    sources = [Flat("endoscope", fail_start=True), good, Flat("vitals")]
    rec = Recorder(sources, layouts.paper(), tmp_path / "x.mp4", encoder=fast_encoder(), duration=1)
    with pytest.raises(SourceError, match=r"/dev/video9 does not exist.*mark source 'endoscope' optional"):
        rec.start()
    assert not good.running  # sources that did start were stopped again
    assert not (tmp_path / "x.mp4").exists()


def test_optional_source_that_cannot_open_gets_a_slate(tmp_path):
    out = tmp_path / "opt.mp4"
    sources = [Flat("endoscope"), Flat("room", fail_start=True), Flat("vitals")]
    rec = Recorder(sources, layouts.paper(), out, encoder=fast_encoder(), duration=1.0, optional={"room"}, **STEADY)
    with rec:
        rec.wait()
    frames = slot_luma(out, (1280, 0, 640, 360))
    assert len(frames) == 30 and all(is_slate(y, "room") for _, y in frames)
    side = json.loads(out.with_name("opt.mp4.json").read_text())
    assert "video9" in next(s for s in side["sources"] if s["name"] == "room")["start_error"]


def test_source_dying_mid_recording_gets_a_slate_and_recording_continues(tmp_path):
    out = tmp_path / "die.mp4"
    sources = [Flat("endoscope"), Flat("room", die_at=0.8), Flat("vitals")]
    rec = Recorder(sources, layouts.paper(), out, encoder=fast_encoder(), duration=2.5, stale_timeout_s=0.3, **STEADY)
    with rec:
        rec.wait()
    st = rec.stats()
    assert st["frames"] == 75 and "capture card unplugged" in st["sources"]["room"]["error"]
    frames = slot_luma(out, (1280, 0, 640, 360))
    assert not is_slate(frames[10][1], "room") and is_slate(frames[-1][1], "room")


class FullDisk(io.RawIOBase):
    def __init__(self, limit: int):
        self.buf = bytearray()
        self.limit = limit

    def writable(self):
        return True

    def write(self, b):
        if len(self.buf) + len(b) > self.limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.buf += b
        return len(b)


def test_full_disk_stops_the_recording_cleanly(tmp_path):
    sink = FullDisk(1_500_000)  # a few frames of noise: full well before the 10 s end, even on a slow machine
    sources = [Flat("endoscope", width=640, height=360, noise=True), Flat("room"), Flat("vitals")]
    # a keyframe (= a complete fragment) every frame, so frames written before the disk filled play
    rec = Recorder(sources, layouts.paper(), sink, encoder=X264Encoder(preset="ultrafast", gop_seconds=1 / 30), duration=10,
                   sidecar=tmp_path / "full.json")
    rec.start()
    assert rec.wait(30), "the recording did not stop on the full disk"
    with pytest.raises(EncoderError, match="disk is full"):
        rec.stop()
    side = json.loads((tmp_path / "full.json").read_text())
    assert side["status"] == "failed" and "disk is full" in side["error"]
    kept = tmp_path / "kept.mp4"
    kept.write_bytes(bytes(sink.buf))
    with av.open(str(kept)) as c:  # what was written before plays
        n = 0
        for p in c.demux(video=0):
            try:
                n += len(p.decode())
            except av.InvalidDataError:
                pass
    assert n >= 3


def test_bad_layout_and_names_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="slot 'room' shows source 'room', but no source has that name"):
        Recorder([Flat("endoscope"), Flat("vitals")], layouts.paper(), tmp_path / "x.mp4")
    with pytest.raises(ConfigError, match="used twice"):
        Recorder([Flat("endoscope"), Flat("endoscope")], layouts.paper(), tmp_path / "x.mp4")
    with pytest.raises(ConfigError, match="optional source"):
        Recorder([Flat("endoscope"), Flat("room"), Flat("vitals")], layouts.paper(), tmp_path / "x.mp4", optional={"cam9"})


def test_config_example_builds_a_recorder(tmp_path, default_plugins):
    example = Path(__file__).resolve().parents[1] / "examples" / "record.toml"
    cfg = RecordConfig.load(example)
    assert cfg.layout.slot("endoscope").source == "endo" and cfg.fps == Fraction(30)
    assert [s.name for s in cfg.sources] == ["endo", "room", "vitals", "mic", "bis"] and cfg.sources[1].optional
    assert cfg.output == example.parent / "case.mp4"
    rec = cfg.build_recorder(plugins=default_plugins, output=tmp_path / "c.mp4", duration=1)
    assert rec.encoder.preset == "veryfast" and rec.optional == {"room"} and rec.duration == 1
    assert cfg.max_behind_s == 3.0 and rec.options.max_behind_s == 3.0
    slow = RecordConfig.from_mapping({"max_behind_s": 20, "sources": {n: {"plugin": "testsrc"} for n in ("endoscope", "room", "vitals")}})
    assert slow.build_recorder(plugins=default_plugins, output=tmp_path / "d.mp4").options.max_behind_s == 20
    assert slow.build_recorder(plugins=default_plugins, output=tmp_path / "e.mp4", max_behind_s=5).options.max_behind_s == 5


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("fps = 30\n", "no sources"),
        ("fsp = 30\n[sources.a]\nplugin='testsrc'\n", "unknown key.*fsp"),
        ("[sources.a]\nwidth = 3\n", r"sources\.a\.plugin is missing"),
        ("fps = 'fast'\n[sources.a]\nplugin='testsrc'\n", "fps must be a number"),
        ("[layout]\npreset='grid'\n[sources.a]\nplugin='testsrc'\n", "unknown layout preset 'grid'"),
        ("[layout]\npreset='paper'\nsources={cam=1}\n[sources.a]\nplugin='testsrc'\n", "layout.sources must map"),
        ("audio = 'mic'\n[sources.a]\nplugin='testsrc'\n", "audio = 'mic' names no source"),
        ("[sources.a]\nplugin='testsrc'\noptional='yes'\n", "optional must be true or false"),
        ("[sources.a]\nplugin='testsrc'\n[[layout.slots]]\nname='x'\n", "layout.slots"),
        ("[sources.a\n", "not valid TOML"),
        ("max_behind_s = 'long'\n[sources.a]\nplugin='testsrc'\n", "max_behind_s"),
        ("max_behind_s = 0\n[sources.a]\nplugin='testsrc'\n", "max_behind_s"),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, match):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        RecordConfig.load(p)


def test_config_option_errors(tmp_path, default_plugins):
    cfg = RecordConfig.from_mapping({"sources": {"endoscope": {"plugin": "testsrc", "colour": "red"}, "room": {"plugin": "testsrc"}, "vitals": {"plugin": "testsrc"}}})
    with pytest.raises(ConfigError, match="sources.endoscope: plugin 'testsrc' rejected its options"):
        cfg.build_recorder(plugins=default_plugins, output=tmp_path / "x.mp4")
    with pytest.raises(ConfigError, match="no output"):
        cfg.build_recorder(plugins=default_plugins)


@attrs.define(eq=False)
class FlushFailsEncoder(X264Encoder):
    """The real x264 encoder whose final flush meets an FFmpeg error (a true codec/device edge)."""

    def flush(self):
        real = self._video
        if real is not None:
            class Broken:
                def __getattr__(self, name):
                    return getattr(real, name)

                def encode(self, frame=None):
                    if frame is None:
                        raise av.FFmpegError(errno.EIO, "Input/output error")
                    return real.encode(frame)

            self._video = Broken()
        return super().flush()


@attrs.define(eq=False)
class CloseBugEncoder(X264Encoder):
    """A third-party encoder plugin whose close() has a bug (not an EncoderError)."""

    def close(self):
        super().close()
        raise RuntimeError("plugin bug in close")


@pytest.mark.parametrize(("encoder", "error", "match"), [
    (FlushFailsEncoder, EncoderError, r"fin\.mp4.*flushing the video encoder.*Input/output error"),
    (CloseBugEncoder, SurgboxError, r"fin\.mp4: closing the encoder failed: RuntimeError: plugin bug in close"),
])
def test_error_while_finalizing_ends_the_recording_as_failed(tmp_path, encoder, error, match):
    out = tmp_path / "fin.mp4"
    sources = [Flat("endoscope"), Flat("room"), Flat("vitals"), Monitor("bis")]
    rec = Recorder(sources, layouts.paper(), out, encoder=encoder(preset="ultrafast"), duration=0.5)
    rec.start()
    assert rec.wait(20), "the recording hangs after an error in finalizing"
    assert not rec.running
    with pytest.raises(error, match=match):
        rec.stop()
    side = json.loads(out.with_name("fin.mp4.json").read_text())
    assert side["status"] == "failed" and re.search(match, side["error"])
    assert rec.stats()["error"] == side["error"]
    assert out.with_name("fin.mp4.data.jsonl").read_text().startswith("{")  # the data track was closed


def test_snapshot_timeout_says_why(tmp_path):
    out = tmp_path / "snap.mp4"
    rec = Recorder([Flat("endoscope"), Flat("room"), Flat("vitals")], layouts.paper(), out, encoder=fast_encoder(), duration=2)
    with rec:
        # a snapshot is served by the first tick at or after the request, latency_s (0.25 s) later
        with pytest.raises(SurgboxError, match=r"^snapshot: not served within 0\.01 s \(recorder \d+ ticks behind\); try again$"):
            rec.snapshot(timeout=0.01)
        rec.wait()


def test_file_audio_at_44100_hz_is_resampled_into_a_48_khz_recording(tmp_path):
    """A ``file`` audio source (rate unset = the file's 44.1 kHz) recorded at the default 48 kHz."""
    from surgbox_ext.sources.file import FileSource

    clip = tmp_path / "tone44k.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100:duration=8",
                    "-c:a", "aac", str(clip)], check=True)
    out = tmp_path / "a.mp4"
    sources = [Flat("endoscope"), Flat("room"), Flat("vitals"), FileSource("mic", path=str(clip), stream="audio")]
    rec = Recorder(sources, layouts.paper(), out, encoder=fast_encoder(), duration=3, **STEADY)
    with rec:
        rec.wait()
    side = json.loads(out.with_name("a.mp4.json").read_text())
    assert side["status"] == "complete"
    assert side["audio"]["sample_rate"] == 48000 and side["audio"]["resampled_from"] == [44100]
    assert side["audio"]["error"] is None and side["stats"]["audio"]["rejected_chunks"] == 0
    with av.open(str(out)) as c:
        assert c.streams.audio[0].rate == 48000
        pcm = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    heard = np.abs(pcm[48000 // 2 : 48000 * 5 // 2]) > 0.05  # 0.5 s .. 2.5 s
    assert heard.mean() > 0.4, "the audio track is silent"
    seg = pcm[48000 : 48000 * 2]
    pitch = np.argmax(np.abs(np.fft.rfft(seg))) * 48000 / len(seg)
    assert abs(pitch - 1000) <= 2, pitch  # resampled, not relabelled (that would be 1088 Hz)


@pytest.mark.parametrize(("value", "want"), [
    (29.97, Fraction(2997, 100)), ("30000/1001", Fraction(30000, 1001)), (25, Fraction(25)), (1 / 3, Fraction(1, 3)),
])
def test_one_rate_parser_everywhere(tmp_path, value, want):
    """Recorder, config, sync, test source and encoder read a rate the same way (surgbox.types.parse_rate)."""
    from surgbox.sync import TickClock
    from surgbox.types import parse_rate
    from surgbox_ext.sources.testsrc import TestSource

    assert parse_rate(value) == want
    assert TickClock(value, 0).fps == want
    assert Recorder([Flat("endoscope"), Flat("room"), Flat("vitals")], layouts.paper(), tmp_path / "x.mp4", fps=value).fps == want
    assert RecordConfig.from_mapping({"fps": value, "sources": {"a": {"plugin": "testsrc"}}}).fps == want
    assert TestSource("t", fps=value).fps == want
    enc = X264Encoder(preset="ultrafast")
    enc.open_output(io.BytesIO(), width=64, height=64, fps=value)
    try:
        assert enc._video.framerate == want and enc.streams[0].rate == want
    finally:
        enc.close()


class FailingHooks:
    """An integrator's hooks that all raise."""

    def __init__(self):
        self.threads: dict[str, str] = {}

    def _fail(self, name):
        import threading

        self.threads[name] = threading.current_thread().name
        raise RuntimeError(f"{name} hook bug")

    @hookimpl
    def recording_started(self, recording):
        self._fail("recording_started")

    @hookimpl
    def segment_finalized(self, recording, segment):
        self._fail("segment_finalized")

    @hookimpl
    def recording_stopped(self, recording, stats):
        self._fail("recording_stopped")


def test_hook_exceptions_are_logged_and_never_stop_a_recording(tmp_path, caplog):
    import threading

    hooks = FailingHooks()
    out = tmp_path / "hooks.mp4"
    rec = Recorder([Flat("endoscope"), Flat("room"), Flat("vitals")], layouts.paper(), out, encoder=fast_encoder(), duration=1.0,
                   **STEADY, plugins=Plugins.build(entry_points=False, plugins=[(surgbox_ext.plugin, "surgbox"), (hooks, "bad-hooks")]))
    with rec:
        assert rec.wait(30)
    assert rec.stats()["frames"] == 30 and rec.stats()["error"] is None
    assert json.loads(out.with_name("hooks.mp4.json").read_text())["status"] == "complete"
    # as documented: recording_started on the caller's thread, the others on the pipeline thread
    assert hooks.threads == {"recording_started": threading.current_thread().name,
                             "segment_finalized": "surgbox-recorder", "recording_stopped": "surgbox-recorder"}
    for name in ("recording_started", "segment_finalized", "recording_stopped"):
        assert f"lifecycle hook {name} failed" in caplog.text and f"{name} hook bug" in caplog.text


SMALL = Layout.from_mapping({"name": "small", "width": 320, "height": 180, "slots": [
    {"name": "a", "rect": [0, 0, 160, 180]}, {"name": "b", "rect": [160, 0, 160, 180]}]})


def test_hook_segment_finalized_once_per_fragment_of_a_10_s_recording_teed_to_a_second_muxer(tmp_path):
    """10 s with 1 s GOPs: 10 calls, each with the fragment's byte and time range (header +
    fragment plays on its own); the same packets also went, encoded once, to a second muxer."""
    from surgbox.mux import Mp4Muxer

    hooks = HookLog()
    out, copy = tmp_path / "ten.mp4", tmp_path / "copy.mp4"
    second = Mp4Muxer(copy)
    rec = Recorder([Flat("a", width=160, height=180), Flat("b", width=160, height=180, value=90)], SMALL, out,
                   encoder=X264Encoder(preset="ultrafast", gop_seconds=1.0), duration=10, plugins=plugins_with(hooks),
                   consumers=[second], **STEADY)
    with rec:
        assert rec.wait(120)
    segs = [kw["segment"] for n, kw in hooks.calls if n == "segment_finalized"]
    assert len(segs) == 10 == rec.stats()["segments"] == rec.stats()["encoder"]["fragments"]
    assert [(s.index, s.start_ns, s.duration_ns) for s in segs] == [(i, i * NS_PER_S, NS_PER_S) for i in range(10)]
    data = out.read_bytes()
    assert segs[0].offset == segs[0].init_size and all(b.offset == a.offset + a.size_bytes for a, b in zip(segs, segs[1:]))
    for s in segs:
        alone = tmp_path / f"seg{s.index}.mp4"
        alone.write_bytes(data[: s.init_size] + data[s.offset:s.offset + s.size_bytes])
        with av.open(str(alone)) as c:
            times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
        assert len(times) == 30 and s.start_ns / NS_PER_S - 1e-6 <= min(times) and max(times) < (s.start_ns + s.duration_ns) / NS_PER_S
    assert rec.stats()["consumers_failed"] == {} and second.fragments == 10
    with av.open(str(out)) as a, av.open(str(copy)) as b:
        assert [bytes(p) for p in a.demux(video=0) if p.size] == [bytes(p) for p in b.demux(video=0) if p.size]
    assert rec.stats()["encoder"]["video_frames"] == 300  # encoded once for both files


@attrs.define(eq=False)
class StallingSink(FileSink):
    """A disk that stalls for ``stall_s`` on every fsync and on the first write of every
    fragment; it notes which thread stalled and how many output frames the recorder wrote
    meanwhile (``probe``)."""

    stall_s: float = 0.3
    probe: Any = None
    stalls: list = attrs.Factory(list)

    def _stall(self, what):
        import threading
        import time

        before = self.probe() if self.probe else 0
        time.sleep(self.stall_s)
        self.stalls.append((what, threading.current_thread().name, (self.probe() if self.probe else 0) - before, before))

    def video_target(self):
        inner, sink = super().video_target(), self

        class Slow(io.RawIOBase):
            def writable(self):
                return True

            def write(self, b):
                if bytes(b[4:8]) == b"moof":  # a fragment starts
                    sink._stall("write")
                return inner.write(b)

            def flush(self):
                inner.flush()

        return Slow()

    def sync(self):
        self._stall("fsync")
        super().sync()


def test_a_300_ms_disk_stall_drops_no_frame_of_60_fps_sources(tmp_path):
    """Disk I/O is off the real-time path: while the disk stalls, the pipeline keeps writing
    ticks, the writer's queue (sized from the stall budget) absorbs it, every source frame is
    shown once, and source queues were sized from the budget (they were built with 4 slots)."""
    sources = [Flat("a", width=160, height=180, fps=60, queue_size=4), Flat("b", width=160, height=180, fps=60, queue_size=4)]
    sink = StallingSink(tmp_path / "stall.mp4")
    # STEADY absorbs a loaded machine's scheduling (late capture threads); the disk stalls are
    # absorbed by the writer queue, not by latency: see the ticks written during each stall
    rec = Recorder(sources, SMALL, sink, encoder=X264Encoder(preset="ultrafast", gop_seconds=0.5), fps=60, duration=4,
                   stall_budget_s=1.0, **STEADY)
    sink.probe = lambda: rec.stats()["frames"]
    with rec:
        assert all(s.queue_size >= rec.options.queue_items(60) >= 60 for s in sources)
        assert rec.wait(120)
    st = rec.stats()
    assert st["frames"] == 240 and st["skipped_ticks"] == 0 and st["error"] is None
    writes = [x for x in sink.stalls if x[0] == "write"]
    assert len(writes) >= 6 and len([x for x in sink.stalls if x[0] == "fsync"]) >= 6
    assert {x[1] for x in sink.stalls} == {"surgbox-recorder-writer"}  # never the pipeline thread
    during = [ticks for what, _, ticks, before in sink.stalls if before < 200]  # stalls while ticks were still due
    assert len(during) >= 8 and min(during) >= 1, f"the pipeline waited for the disk: ticks written during each stall {during}"
    assert st["writer"]["blocked"] == 0 and st["writer"]["max_queued"] < st["writer"]["capacity"]
    for name in ("a", "b"):
        s = st["sources"][name]
        # none lost in the queue; each of the 240 ticks showed a new frame (60 fps into 60 fps):
        # every frame captured during the recording was shown ("dropped" counts only the
        # frames captured in the ~0.1 s before the first tick, replaced by newer ones)
        assert s["queue_dropped"] == 0 and s["shown"] == 240 and s["duplicated"] == 0 and s["dropped"] <= 15, s
    assert int(ffprobe_json(tmp_path / "stall.mp4", "-count_frames", "-show_streams")["streams"][0]["nb_read_frames"]) == 240


@pytest.mark.parametrize(("value", "match"), [
    (float("nan"), "duration must be a finite number"), (float("inf"), "duration must be a finite number"),
    (0, "duration must be a finite number of seconds > 0"), (-1, "> 0"),
])
def test_bad_durations_are_config_errors(tmp_path, value, match):
    with pytest.raises(ConfigError, match=match):
        Recorder([Flat("endoscope"), Flat("room"), Flat("vitals")], layouts.paper(), tmp_path / "x.mp4", duration=value)


@pytest.mark.parametrize("option", ["stale_timeout_s", "latency_s", "audio_lag_s", "data_timeout_s", "max_behind_s",
                                    "stall_budget_s", "sync_interval_s"])
def test_huge_timing_options_are_config_errors_not_overflows(tmp_path, option):
    """1e308 s is finite, but nanosecond and queue-size arithmetic on it overflows: one line instead."""
    with pytest.raises(ConfigError, match=f"{option} must be a finite number of seconds .* and at most 86400, got 1e"):
        Recorder([Flat("endoscope"), Flat("room"), Flat("vitals")], layouts.paper(), tmp_path / "x.mp4", **{option: 1e308})
    Recorder([Flat("endoscope"), Flat("room"), Flat("vitals")], layouts.paper(), tmp_path / "y.mp4", **{option: 86_400})


def test_a_tiny_duration_records_one_frame_not_forever(tmp_path):
    out = tmp_path / "tiny.mp4"
    rec = Recorder([Flat("a", width=160, height=180), Flat("b", width=160, height=180)], SMALL, out, encoder=fast_encoder(),
                   duration=1e-9)
    assert rec.options.end_tick == 1
    with rec:
        assert rec.wait(30), "a 1e-9 s recording did not end"
    assert rec.stats()["frames"] == 1


def test_an_existing_output_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "case.mp4"
    out.write_bytes(b"an earlier recording")
    sources = lambda: [Flat("a", width=160, height=180), Flat("b", width=160, height=180)]  # noqa: E731
    rec = Recorder(sources(), SMALL, out, encoder=fast_encoder(), duration=0.5)
    with pytest.raises(ConfigError, match=r"case\.mp4 already exists; choose a new output name, or pass --overwrite"):
        rec.start()
    assert out.read_bytes() == b"an earlier recording"
    with pytest.raises(ConfigError, match=r"output folder .*missing does not exist"):
        Recorder(sources(), SMALL, tmp_path / "missing" / "x.mp4", encoder=fast_encoder(), duration=0.5).start()
    rec = Recorder(sources(), SMALL, out, encoder=fast_encoder(), duration=0.5, overwrite=True)
    with rec:
        rec.wait(30)
    assert rec.stats()["frames"] == 15 and out.read_bytes()[4:8] == b"ftyp"


def test_options_are_a_frozen_value_separate_from_running_state(tmp_path):
    from surgbox.recording import RecorderOptions

    opts = RecorderOptions(fps=25, duration=2, optional={"b"})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        opts.fps = 30  # type: ignore[misc]
    rec = Recorder([Flat("a"), Flat("b")], SMALL, tmp_path / "o.mp4", options=opts, stale_timeout_s=0.5)
    assert rec.options == attrs.evolve(opts, stale_timeout_s=0.5) and rec.fps == 25 and rec.optional == {"b"}
    with pytest.raises(ConfigError, match="unknown recorder option"):
        Recorder([Flat("a"), Flat("b")], SMALL, tmp_path / "o.mp4", fsp=30)


@attrs.define(eq=False)
class StallOnce(DefaultCompositor):
    """The default compositor, asleep for ``stall_s`` once, at output tick ``at`` (a CPU hiccup)."""

    at: int = attrs.field(default=30, kw_only=True)
    stall_s: float = attrs.field(default=1.5, kw_only=True)
    calls: int = attrs.field(default=0, init=False)

    def compose(self, frames, readings, event, time_ns):
        self.calls += 1
        if self.calls == self.at:
            time.sleep(self.stall_s)
        return super().compose(frames, readings, event, time_ns)


@pytest.mark.parametrize("max_behind_s", [0.5, 10.0])
def test_a_pipeline_that_falls_behind_catches_up_or_skips_past_max_behind(tmp_path, max_behind_s):
    """A 1.5 s stall at tick 30 of a 3 s 30 fps recording: with ``max_behind_s`` 10 the pipeline
    catches up and writes all 90 ticks; with 0.5 it skips the ticks it is more than 0.5 s behind,
    counts them, and every written frame keeps its exact timestamp. ``most_behind_s`` says how
    far behind it fell either way."""
    out = tmp_path / "behind.mp4"
    rec = Recorder([Flat("a", width=160, height=180), Flat("b", width=160, height=180)], SMALL, out,
                   encoder=fast_encoder(), compositor=StallOnce(), duration=3.0, latency_s=1.0, max_behind_s=max_behind_s)
    with rec:
        assert rec.wait(60)
    st = rec.stats()
    assert st["error"] is None and st["frames"] + st["skipped_ticks"] == 90
    assert st["most_behind_s"] >= min(max_behind_s, 1.2)  # the stall put it at least that far behind
    if max_behind_s > 1.5:
        assert st["skipped_ticks"] == 0 and st["frames"] == 90
    else:
        assert st["skipped_ticks"] >= 20  # about 1.5 s - 0.5 s ... 1.5 s of ticks
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        pts = [round(float(f.pts * s.time_base) * 30) for f in c.decode(s)]
    assert len(pts) == st["frames"] and len(set(pts)) == len(pts) and all(0 <= k < 90 for k in pts)
    assert (90 - len(pts) == 0) == (st["skipped_ticks"] == 0)
