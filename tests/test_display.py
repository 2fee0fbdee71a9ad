"""The live display: the composite shown through GStreamer (``fakesink`` / a deliberately slow
sink here) as an extra recorder output that drops frames at the display, never in the recording."""

from __future__ import annotations

import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import ffprobe_json
from gst_support import needs_elements

from surgbox.config import RecordConfig
from surgbox.errors import ConfigError
from surgbox.recording.display import DisplayOutput, fanout

pytestmark = needs_elements("appsrc", "videoconvert", "fakesink", "identity")

SLOW_SINK = "identity sleep-time=100000 ! fakesink"  # 0.1 s per picture: a 10 fps monitor


def config(tmp_path: Path, display: dict | None = None) -> RecordConfig:
    m = {"fps": 30, "layout": {"width": 320, "height": 180, "slots": [{"name": "cam", "rect": [0, 0, 320, 180], "kind": "video"}]},
         "sources": {"cam": {"plugin": "testsrc", "width": 320, "height": 180}}}
    if display is not None:
        m["display"] = display
    return RecordConfig.from_mapping(m, base_dir=tmp_path)


def frames_in(path: Path) -> int:
    return int(ffprobe_json(path, "-count_frames", "-show_entries", "stream=nb_read_frames")["streams"][0]["nb_read_frames"])


def record(tmp_path: Path, seconds: float, **display: object) -> dict:
    rec = config(tmp_path, display).build_recorder(output=tmp_path / "rec.mp4", duration=seconds)
    rec.start()
    rec.wait(seconds + 30)
    return rec.stop()


def test_every_composite_reaches_a_fakesink_and_the_recording(tmp_path):
    stats = record(tmp_path, 1.0, sink="fakesink", queue_frames=8)
    d = stats["display"]
    assert stats["frames"] == frames_in(tmp_path / "rec.mp4") == 30
    assert d["offered"] == 30 and d["error"] is None
    assert d["rendered"] == d["shown"] and d["shown"] + d["dropped"] == 30 and d["shown"] >= 25
    assert d["pipeline"].endswith("! videoconvert ! fakesink sync=false")


def test_a_slow_display_drops_display_frames_while_the_recording_keeps_all_of_its(tmp_path):
    stats = record(tmp_path, 2.0, sink=SLOW_SINK)
    d = stats["display"]
    assert stats["frames"] == frames_in(tmp_path / "rec.mp4") == 60  # nothing lost in the file
    assert stats["skipped_ticks"] == 0
    assert d["offered"] == 60 and d["shown"] + d["dropped"] == 60
    assert 5 <= d["shown"] <= 30 and d["dropped"] >= 30  # about 10 pictures a second got through
    assert d["rendered"] == d["shown"]


def test_the_display_shows_the_composite_itself():
    """An ``appsink`` at the end of the display pipeline gets the very picture offered."""
    from surgbox_ext.gst import runtime

    display = DisplayOutput(sink="appsink name=shown max-buffers=4 drop=false emit-signals=false")
    display.start(64, 32, Fraction(30))
    picture = av.VideoFrame.from_ndarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))[..., None].repeat(3, 2),
                                         format="rgb24").reformat(format="yuv420p")
    for _ in range(50):  # the pipeline starts on the display's thread
        if display._gst is not None and display._gst._src is not None:
            break
        time.sleep(0.05)
    display.offer(picture, None, 0)
    sink = None
    for _ in range(100):
        sink = display._gst._pipeline.get_by_name("shown") if display._gst._pipeline is not None else None
        if display.shown:
            break
        time.sleep(0.05)
    sample = sink.try_pull_sample(2 * 10**9)
    display.close()
    Gst = runtime.load()
    buf = sample.get_buffer()
    luma = np.frombuffer(buf.extract_dup(0, 64 * 32), np.uint8).reshape(32, 64)
    assert np.abs(luma.astype(int) - picture.to_ndarray()[:32].astype(int)).max() <= 1
    assert buf.pts == 0 and sample.get_caps().get_structure(0).get_value("width") == 64 and Gst is not None


def test_a_failing_display_stops_itself_and_the_recording_goes_on(tmp_path):
    stats = record(tmp_path, 1.0, sink="fakesink num-buffers=5")  # the sink ends after 5 pictures
    d = stats["display"]
    assert stats["frames"] == frames_in(tmp_path / "rec.mp4") == 30 and stats["error"] is None
    assert d["error"] and "display failed" in d["error"] and d["rendered"] == 5 and d["shown"] + d["dropped"] == 30


def test_bad_display_settings_are_one_clear_error_before_recording(tmp_path):
    with pytest.raises(ConfigError, match=r"display.colour; \[display\] takes enabled, profile, sink"):
        config(tmp_path, {"colour": 1})
    with pytest.raises(ConfigError, match="queue_frames must be an integer in"):
        config(tmp_path, {"queue_frames": 0})
    with pytest.raises(ConfigError, match="profile must be one of cpu, jetson, nvidia"):
        config(tmp_path, {"profile": "tegra"})
    assert config(tmp_path, {"enabled": False}).display is None
    cfg = config(tmp_path, {"sink": "nosuchvideosink"})
    with pytest.raises(ConfigError, match="the display \\(nosuchvideosink, .*lacks nosuchvideosink"):
        cfg.build_recorder(output=tmp_path / "x.mp4", duration=1)
    assert not (tmp_path / "x.mp4").exists()
    cfg = config(tmp_path, {"plugin": "acme-hdmi"})
    with pytest.raises(ConfigError, match="no display plugin 'acme-hdmi' is installed"):
        cfg.build_recorder(output=tmp_path / "x.mp4", duration=1)
    with pytest.raises(ConfigError, match="display plugin must be the name"):
        config(tmp_path, {"plugin": ""})


def test_a_vendors_display_plugin_replaces_gstreamers(tmp_path, monkeypatch):
    """The display is a plugin (kind ``display``): a vendor's ``gstreamer`` (priority 0) wins over
    surgbox's, is built with the profile and sink, and gets every composite the recorder shows."""
    import types

    import surgbox.plugins
    import surgbox_ext.plugin
    from surgbox import hookimpl
    from surgbox.plugins import Plugins

    shown: list[tuple[int, int, int]] = []

    class Sink:
        description = "acme hdmi"
        rendered = 0

        def show(self, frame, time_ns):
            shown.append((frame.width, frame.height, time_ns))
            self.rendered += 1
            return True

        def close(self):
            pass

    class AcmeDisplay:
        def __init__(self, profile, sink):
            self.options = (profile, sink)

        def check(self):
            return None

        def open(self, width, height, fps):
            assert (width, height, fps) == (320, 180, 30) and self.options == ("cpu", "hdmi-1")
            return Sink()

    @hookimpl
    def register_displays(register):
        register("gstreamer", AcmeDisplay)

    pm = Plugins.build(entry_points=False, plugins=[(surgbox_ext.plugin, "surgbox"),
                                                    (types.SimpleNamespace(register_displays=register_displays), "acme")])
    monkeypatch.setattr(surgbox.plugins, "_default", pm)
    stats = record(tmp_path, 1.0, sink="hdmi-1", queue_frames=8)
    d = stats["display"]
    assert d["error"] is None and d["pipeline"] == "acme hdmi" and d["rendered"] == d["shown"] == len(shown) >= 25
    assert {s[:2] for s in shown} == {(320, 180)} and [s[2] for s in shown] == sorted(s[2] for s in shown)


def test_fanout_detaches_a_failing_tap_and_keeps_the_others():
    seen = []

    class Broken:
        def offer(self, *a):
            raise RuntimeError("gone")

    class Good:
        def offer(self, picture, readings, out_ns):
            seen.append(out_ns)

    tap = fanout(Broken(), None, Good())
    for t in range(3):
        tap.offer(None, None, t)
    assert seen == [0, 1, 2] and len(tap.taps) == 1
    assert fanout(None, None) is None and isinstance(fanout(Good()), Good)


def test_surgbox_record_display_option(tmp_path):
    cfg = tmp_path / "rec.toml"
    cfg.write_text('fps = 30\n[layout]\nwidth = 320\nheight = 180\n[[layout.slots]]\nname = "cam"\nrect = [0, 0, 320, 180]\n'
                   'kind = "video"\n[sources.cam]\nplugin = "testsrc"\nwidth = 320\nheight = 180\n')
    exe = Path(sys.executable).with_name("surgbox")
    out = subprocess.run([str(exe), "record", "--config", str(cfg), "--duration", "1", "--out", str(tmp_path / "r.mp4"),
                          "--quiet", "--display", SLOW_SINK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "recorded 30 frames" in out.stderr and "dropped at the display" in out.stderr
    assert frames_in(tmp_path / "r.mp4") == 30
