"""Every hook is documented (with its exact signature) in docs/plugins.md and is exercised
through the real plugin manager.

A plugin object (:class:`Spy`) implements every hook. Its registration hooks register real
components under new names, which are then built by name and used: a real recording (a
``RecordConfig`` whose source, compositor and encoder are the spy's), a real store write and
read, a real de-identification with the spy's detector. The lifecycle hooks are observed while
those run, and every call's keyword arguments are checked against the hook specification. A
hook that no exercise calls fails :func:`test_every_hook_is_called_through_the_plugin_manager`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np
import pytest

import surgbox_ext.plugin
from surgbox import Detections, Detector, DeidResult, RecordingInfo, SegmentInfo, hookimpl, hookspecs
from surgbox.config import RecordConfig
from surgbox.plugins import Plugins, lazy

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "surgbox_spec"))


def test_hookspecs_found():
    assert set(HOOKS) == set(hookspecs.REGISTRATION_HOOKS.values()) | set(hookspecs.LIFECYCLE_HOOKS)
    assert len(HOOKS) == 11


def _signature(name: str) -> str:
    fn = getattr(hookspecs, name)
    params = ", ".join(inspect.signature(fn).parameters)
    return f"{name}({params})"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented(name):
    doc = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{_signature(name)}`" in doc, f"docs/plugins.md lacks a '### `{_signature(name)}`' section"


@attrs.define(eq=False)
class SpyDetector(Detector):
    """A detector that finds one fixed box per image (so the blur has something to do)."""

    name = "spy-detector"
    version = "1"
    threshold: float = 0.5

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        return [Detections(np.array([[2, 2, 18, 18]], np.float32), np.array([0.9], np.float32)) for _ in images]


class Spy:
    """Implements every hook; records each call's keyword arguments."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []

    def _note(self, name, **kwargs):
        self.calls.append((name, kwargs))

    @hookimpl
    def register_sources(self, register):
        self._note("register_sources", register=register)
        register("spy-testsrc", lazy("surgbox_ext.sources.testsrc:TestSource"), description="the spy's source")

    @hookimpl
    def register_compositors(self, register):
        self._note("register_compositors", register=register)
        register("spy-compositor", lazy("surgbox_ext.compositor:DefaultCompositor"))

    @hookimpl
    def register_encoders(self, register):
        self._note("register_encoders", register=register)
        register("spy-x264", lazy("surgbox_ext.encoders:X264Encoder"))

    @hookimpl
    def register_detectors(self, register):
        self._note("register_detectors", register=register)
        register("spy-detector", SpyDetector)

    @hookimpl
    def register_stores(self, register):
        self._note("register_stores", register=register)
        register("spy-local", lazy("surgbox_ext.store.local:LocalStore"))

    @hookimpl
    def register_decoders(self, register):
        self._note("register_decoders", register=register)
        register("spy-gst", lazy("surgbox_ext.gst.decoder:GstDecoder"))

    @hookimpl
    def register_displays(self, register):
        self._note("register_displays", register=register)
        register("spy-display", lazy("surgbox_ext.gst.display:GstDisplay"))

    @hookimpl
    def recording_started(self, recording):
        self._note("recording_started", recording=recording)

    @hookimpl
    def segment_finalized(self, recording, segment):
        self._note("segment_finalized", recording=recording, segment=segment)

    @hookimpl
    def recording_stopped(self, recording, stats):
        self._note("recording_stopped", recording=recording, stats=stats)

    @hookimpl
    def deid_finished(self, result):
        self._note("deid_finished", result=result)


@pytest.fixture(scope="module")
def exercised(tmp_path_factory):
    """Builds a manager with the spy and runs a recording, a store round trip and a de-identification."""
    from surgbox.crypto.keys import MasterKey
    from surgbox.deid import deidentify

    tmp = tmp_path_factory.mktemp("hooks")
    spy = Spy()
    plugins = Plugins.build(entry_points=False, plugins=[(surgbox_ext.plugin, "surgbox"), (spy, "spy")])
    cfg = RecordConfig.from_mapping({
        "encoder": {"plugin": "spy-x264", "preset": "ultrafast", "gop_seconds": 0.5},
        "compositor": {"plugin": "spy-compositor"},
        "layout": {"width": 320, "height": 192, "slots": [{"name": "main", "rect": [0, 0, 320, 192], "source": "cam",
                                                            "role": "room_camera"}]},
        "sources": {"cam": {"plugin": "spy-testsrc", "width": 320, "height": 192}},
    })
    out = tmp / "rec.mp4"
    rec = cfg.build_recorder(plugins=plugins, output=out, duration=1.5, latency_s=1.0, max_behind_s=60)
    assert type(rec.encoder).__name__ == "X264Encoder" and type(rec.compositor).__name__ == "DefaultCompositor"
    with rec:
        assert rec.wait(120)
    key = tmp / "k.key"
    MasterKey.generate().save(key)
    (tmp / "store").mkdir()
    store = plugins.create("store", "spy-local", root=str(tmp / "store"), key_file=str(key), init=True)
    with store:
        with store.writer("a/b.bin") as w:
            w.write(b"hook-checked")
        with store.reader("a/b.bin") as r:
            stored = r.read()
    result = deidentify(out, tmp / "rec.deid.mp4", detector="spy-detector", threshold=None, detector_threads=None,
                        region="full", plugins=plugins)
    decoded = shown = None  # the spy's decoder and display, built by name and used where GStreamer runs
    decoder, why = plugins.create_checked("decoder", "spy-gst", profile="cpu")
    if why is None:
        import av

        with av.open(str(out)) as c:
            time_base = c.streams.video[0].time_base
        reader = decoder.open(str(out), time_base, "rec.mp4")
        try:
            pictures = list(reader.frames())
        finally:
            reader.close()
        decoded = len(pictures)
        display, why = plugins.create_checked("display", "spy-display", profile="cpu", sink="fakesink")
        if why is None:
            sink = display.open(pictures[0].width, pictures[0].height, 30)
            sink.show(pictures[0], 0)
            sink.close()
            shown = sink.rendered
    return {"spy": spy, "rec": rec, "stored": stored, "result": result, "plugins": plugins, "decoded": decoded,
            "shown": shown}


EXPECTED_TYPES: Mapping[str, Mapping[str, type]] = {
    "recording_started": {"recording": RecordingInfo},
    "segment_finalized": {"recording": RecordingInfo, "segment": SegmentInfo},
    "recording_stopped": {"recording": RecordingInfo, "stats": Mapping},
    "deid_finished": {"result": DeidResult},
}


def test_every_hook_is_called_through_the_plugin_manager(exercised):
    called = {name for name, _ in exercised["spy"].calls}
    assert called == set(HOOKS), f"hooks never called through the plugin manager: {sorted(set(HOOKS) - called)}"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_calls_match_the_specification(exercised, name):
    calls = [kw for n, kw in exercised["spy"].calls if n == name]
    assert calls, f"{name} was never called"
    params = list(inspect.signature(getattr(hookspecs, name)).parameters)
    for kw in calls:
        assert sorted(kw) == sorted(params)
        for arg, typ in EXPECTED_TYPES.get(name, {}).items():
            assert isinstance(kw[arg], typ), (name, arg, type(kw[arg]))
        if name in hookspecs.REGISTRATION_HOOKS.values():
            assert callable(kw["register"])


@pytest.mark.parametrize(("kind", "name"), [("source", "spy-testsrc"), ("compositor", "spy-compositor"), ("encoder", "spy-x264"),
                                            ("detector", "spy-detector"), ("store", "spy-local"), ("decoder", "spy-gst"),
                                            ("display", "spy-display")])
def test_registration_hooks_put_components_in_the_registry(exercised, kind, name):
    entry = exercised["plugins"].entry(kind, name)
    assert entry.package == "spy" and entry.unavailable_reason() is None


def test_lifecycle_hooks_saw_the_recording_and_the_deid_run(exercised):
    calls, rec, result = exercised["spy"].calls, exercised["rec"], exercised["result"]
    life = [n for n, _ in calls if n in ("recording_started", "segment_finalized", "recording_stopped")]
    assert life == ["recording_started"] + ["segment_finalized"] * 3 + ["recording_stopped"]  # 1.5 s of 0.5 s fragments
    started = next(kw["recording"] for n, kw in calls if n == "recording_started")
    assert started.id == rec.event_id and started.sources == ("cam",)
    segs = [kw["segment"] for n, kw in calls if n == "segment_finalized"]
    assert [s.start_ns for s in segs] == [0, 500_000_000, 1_000_000_000]
    stopped = next(kw for n, kw in calls if n == "recording_stopped")
    assert stopped["stats"]["frames"] == 45 and stopped["recording"].metadata["status"] == "complete"
    assert exercised["stored"] == b"hook-checked"
    finished = next(kw["result"] for n, kw in calls if n == "deid_finished")
    assert finished is result and finished.frames == 45 and finished.faces > 0


def test_the_registered_decoder_and_display_are_built_by_name_and_used(exercised):
    """The spy's decoder decodes every frame of the recording, its display shows one (where
    GStreamer runs; .ci/run requires its cpu profile)."""
    if exercised["decoded"] is None:
        pytest.skip("GStreamer's cpu decoder cannot run here")
    assert exercised["decoded"] == 45 and exercised["shown"] == 1
