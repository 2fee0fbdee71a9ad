"""Hardware sources (v4l2, alsa, pulse, evdev foot switch): registration, availability checks and
the real error paths. No capture device exists on CI; the checks must say so, and starting must
fail with a SourceError that names the source, the device and the fix."""

from __future__ import annotations

import glob
import importlib
import importlib.util

import pytest

from surgbox.clock import Clock
from surgbox.errors import PluginUnavailableError, SourceError
from surgbox_ext.sources import checks
from surgbox_ext.sources.alsa import AlsaSource
from surgbox_ext.sources.pulse import PulseSource
from surgbox_ext.sources.v4l2 import V4L2Source

SOURCES = {
    "testsrc": ("TestSource", "video"),
    "tone": ("ToneSource", "audio"),
    "file": ("FileSource", "video"),
    "v4l2": ("V4L2Source", "video"),
    "url": ("UrlSource", "video"),
    "alsa": ("AlsaSource", "audio"),
    "pulse": ("PulseSource", "audio"),
    "footswitch": ("FootSwitch", "trigger"),
    "footswitch_evdev": ("EvdevFootSwitch", "trigger"),
}


def test_every_source_is_registered_lazily_with_a_description(default_plugins):
    entries = {e.name: e for e in default_plugins.entries("source")}
    for name, (cls, media) in SOURCES.items():
        e = entries[name]
        assert e.description and e.factory.target.endswith(":" + cls) and e.priority == -100
        module, _, attr = e.factory.target.partition(":")
        assert getattr(importlib.import_module(module), attr).media == media or name == "file"
    for name in ("v4l2", "alsa", "pulse", "footswitch_evdev"):
        assert entries[name].check is not None
    for name in ("testsrc", "tone", "file", "url", "footswitch"):
        assert entries[name].unavailable_reason() is None


def test_v4l2_check_matches_the_machine(default_plugins):
    reason = default_plugins.entry("source", "v4l2").unavailable_reason()
    if glob.glob("/dev/video*"):
        assert reason is None
    else:
        assert "no video device (/dev/video*)" in reason
        with pytest.raises(PluginUnavailableError, match="v4l2.*/dev/video"):
            default_plugins.create("source", "v4l2", name="endo")


def test_v4l2_missing_device_is_a_clear_error():
    src = V4L2Source("endo", device="/dev/video97", video_size="1920x1080", framerate=30, input_format="mjpeg")
    assert src.demuxer_options() == {"video_size": "1920x1080", "framerate": "30", "input_format": "mjpeg"}
    with pytest.raises(SourceError) as err:
        src.start(Clock())
    msg = str(err.value)
    assert "source 'endo'" in msg and "/dev/video97 does not exist" in msg and "v4l2-ctl --list-devices" in msg
    assert not src.running


def test_v4l2_on_something_that_is_not_a_capture_device(tmp_path):
    """The real FFmpeg v4l2 input on a plain file: the error explains the fix."""
    fake = tmp_path / "video0"
    fake.write_bytes(b"\0" * 64)
    src = V4L2Source("endo", device=str(fake), video_size=(1280, 720))
    with pytest.raises(SourceError) as err:
        src.start(Clock())
    msg = str(err.value)
    assert "source 'endo'" in msg and "could not open" in msg and "--list-formats-ext" in msg and "video_size=1280x720" in msg


def test_v4l2_rejects_a_bad_size():
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        V4L2Source("endo", video_size="big")


def test_alsa_check_and_error_path(default_plugins):
    reason = default_plugins.entry("source", "alsa").unavailable_reason()
    device = "hw:97,0"  # a card number no machine has
    src = AlsaSource("mic", device=device)
    assert src.demuxer_options() == {"sample_rate": "48000", "channels": "1"}
    with pytest.raises(SourceError) as err:
        src.start(Clock())
    msg = str(err.value)
    assert "source 'mic'" in msg
    if reason is not None:  # no sound card here: both say so
        assert "sound card" in reason or "capture device" in reason or "alsa input" in reason
        assert "microphone" in msg or "alsa input" in msg or "arecord -l" in msg
    else:
        assert device in msg and "arecord -l" in msg
    # The FFmpeg ALSA input itself, on a card that does not exist (runs even without /proc/asound).
    with pytest.raises(SourceError) as err:
        AlsaSource("mic", device=device).open_input()
    msg = str(err.value)
    assert "source 'mic' (ALSA device hw:97,0) could not open" in msg and "arecord -l" in msg and "plughw" in msg


def test_pulse_check_and_error_path(default_plugins):
    reason = default_plugins.entry("source", "pulse").unavailable_reason()
    src = PulseSource("mic")
    if reason is None:
        pytest.skip("a PulseAudio server and PyAV's pulse input exist here; nothing to fail")
    if not checks.pyav_has("pulse"):
        assert "no pulse input" in reason and "'alsa' source" in reason
    with pytest.raises(SourceError, match="source 'mic'.*(pulse input|PulseAudio)"):
        src.start(Clock())


def test_evdev_footswitch_check_and_error_path(default_plugins):
    from surgbox_ext.sources.footswitch import EvdevFootSwitch

    reason = default_plugins.entry("source", "footswitch_evdev").unavailable_reason()
    has_evdev = importlib.util.find_spec("evdev") is not None
    if not has_evdev:
        assert reason == checks.evdev() and "pip install evdev" in reason
    elif not glob.glob("/dev/input/event*"):
        assert "/dev/input/event*" in reason
    src = EvdevFootSwitch("pedal", device="/dev/input/event97")
    with pytest.raises(SourceError) as err:
        src.start(Clock())
    msg = str(err.value)
    assert "source 'pedal'" in msg and ("pip install evdev" in msg or "/dev/input/event97" in msg)
    with pytest.raises(ValueError, match="device="):
        EvdevFootSwitch("pedal")
