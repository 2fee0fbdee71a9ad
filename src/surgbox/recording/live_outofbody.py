"""Live out-of-body hiding: the endoscope source's frames reach the recorder with the whole picture
hidden whenever the laparoscope films the room.

:class:`LiveOutOfBodySource` wraps a video source and runs each frame through
:class:`~surgbox.deid.outofbody.OutOfBodyClassifier` and :class:`~surgbox.deid.outofbody.OutOfBodyGate`
(``carry`` frames before and after an out-of-body frame are hidden too, so each frame leaves
``carry`` frames after its capture: :attr:`delay_s`, which the recorder's ``latency_s`` covers).
Hidden frames are blurred whole by the de-identification anonymizer. Each change is a
``outofbody`` :class:`~surgbox.types.Reading` (data track: ``hidden`` 0/1 with the classifier's
``tissue`` and ``cool`` fractions), the hidden intervals are in :meth:`stats` (sidecar).

In a recording configuration: ``out_of_body = true`` in the endoscope source's table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ..deid.anonymize import Anonymizer, frame_planes, make_anonymizer
from ..deid.hide import hide_regions
from ..deid.outofbody import OutOfBodyClassifier, OutOfBodyGate
from ..types import Reading, Rect, VideoFrame
from .wrapped import WrappedSource


@attrs.define(eq=False)
class LiveOutOfBodySource(WrappedSource):
    """The frames of the video source ``inner``, hidden whole while out of the body (module docstring)."""

    what: ClassVar[str] = "hidden when out of the body"
    emits_readings: ClassVar[bool] = True

    classifier: OutOfBodyClassifier = attrs.field(factory=OutOfBodyClassifier, kw_only=True)
    carry: int = attrs.field(default=5, kw_only=True)
    anonymizer: Anonymizer = attrs.field(factory=lambda: make_anonymizer("blur"), kw_only=True)
    _gate: OutOfBodyGate | None = attrs.field(default=None, init=False, alias="_gate")
    _hidden: bool | None = attrs.field(default=None, init=False, alias="_hidden")
    _intervals: list[dict[str, Any]] = attrs.field(factory=list, init=False, alias="_intervals")
    _frames: int = attrs.field(default=0, init=False, alias="_frames")
    _frames_hidden: int = attrs.field(default=0, init=False, alias="_frames_hidden")
    _feats: dict[int, dict[str, float]] = attrs.field(factory=dict, init=False, alias="_feats")

    def __attrs_post_init__(self) -> None:
        self._gate = OutOfBodyGate(self.carry)
        super().__attrs_post_init__()

    @property
    def delay_s(self) -> float:
        """How long after its capture a frame leaves at the latest: ``carry`` + 2 frames, + 0.1 s."""
        return (self.carry + 2) / self.fps_or_default() + 0.1

    def sidecar_info(self) -> dict[str, Any]:
        return {**self.inner_sidecar_info(), "out_of_body": {"live": True, "carry": self.carry, **self.classifier.settings()}}

    def _flush_end(self) -> bool:
        assert self._gate is not None
        for f, hide in self._gate.flush():
            self._emit(f, hide)
        return True

    def _item(self, item: Any) -> None:
        assert self._gate is not None
        if isinstance(item, VideoFrame):
            img = item.image
            if img.format.name not in ("yuv420p", "yuvj420p") or img.width % 2 or img.height % 2:
                img = img.reformat(width=img.width & ~1, height=img.height & ~1, format="yuv420p")
            frame = VideoFrame(self.name, item.capture_ns, img, item.seq)
            feats = self.classifier.features(frame_planes(img, writable=False))
            flag = self.classifier.decide(feats)
            self._feats[id(frame)] = feats
            for f, hide in self._gate.push(flag, frame):
                self._emit(f, hide)

    def _emit(self, frame: VideoFrame, hide: bool) -> None:
        feats = self._feats.pop(id(frame), {})
        if hide:
            hide_regions(self.anonymizer, frame.image, [Rect(0, 0, frame.width, frame.height)], [], whole=True)
            self._frames_hidden += 1
        self._frames += 1
        self.put(frame)
        if hide != self._hidden:
            if hide:
                self._intervals.append({"start_ns": frame.capture_ns, "end_ns": None})
                del self._intervals[:-100]
            elif self._intervals:
                self._intervals[-1]["end_ns"] = frame.capture_ns
            self._hidden = hide
            self.put(Reading(self.name, frame.capture_ns, "outofbody",
                             {"hidden": float(hide), "tissue": feats.get("tissue"), "cool": feats.get("cool")}))

    def stats(self) -> Mapping[str, Any]:
        base = dict(super().stats())
        base["out_of_body"] = {"hidden": bool(self._hidden), "frames": self._frames, "frames_hidden": self._frames_hidden,
                               "intervals": [dict(iv) for iv in self._intervals], "delay_s": round(self.delay_s, 3)}
        return base

