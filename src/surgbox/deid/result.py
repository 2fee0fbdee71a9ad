"""What a run tells its caller: :class:`Progress` while it runs, the counters it keeps
(:class:`RunStats`) and the JSON report it ends with (:func:`build_report`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .._fs import atomic_write

RATE_MIN_FRAMES = 10  # frames written before the rate (and so an ETA) is trusted
RATE_MIN_SECONDS = 1.0  # ... and seconds since the first one


@attrs.frozen
class Progress:
    """Progress of a run: ``frames`` written of ``total`` (``None`` when unknown), ``elapsed``
    seconds since the run started, ``done`` on the last report (all frames written), ``rate``
    frames per second measured since the first frame was written (``None`` until at least
    :data:`RATE_MIN_FRAMES` frames and :data:`RATE_MIN_SECONDS` seconds are behind it: the
    model load and the first batch say nothing about the speed)."""

    frames: int
    total: int | None
    elapsed: float
    done: bool = False
    rate: float | None = None

    @property
    def fps(self) -> float:
        """Frames per second since the run started (set-up included)."""
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.frames / self.total) if self.total else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the measured ``rate``: ``0.0`` when done, ``None`` while the rate or
        the total is unknown."""
        if self.done:
            return 0.0
        if not self.total or not self.rate:
            return None
        return max(0.0, (self.total - self.frames) / self.rate)


@attrs.define(eq=False)
class RunStats:
    """Counters of one run. Each stage writes only its own fields (decode: ``decoded``,
    ``video_packets``, ``corrupt_packets``, ``last_time`` (end of the last decoded frame, s); detect: ``detected_frames``,
    ``detections``, ``cuts``, ``detector_failures``; encode: the rest); ``warnings`` is
    appended to by any."""

    decoded: int = 0
    video_packets: int = 0
    corrupt_packets: int = 0
    last_time: float | None = None  # s, end of the last decoded frame
    audio_packets: int = 0
    detected_frames: int = 0
    detections: int = 0
    cuts: list[int] = attrs.field(factory=list)  # scene cuts per scan region
    detector_failures: list[dict[str, Any]] = attrs.field(factory=list)  # {"frames": [a, b], "error": ...}
    frames_region_hidden: int = 0
    frames_out_of_body: int = 0  # endoscope slot hidden whole (out_of_body option)
    tracks: set[int] = attrs.field(factory=set)
    frames_with_regions: int = 0
    regions: int = 0
    written: int = 0
    warnings: list[str] = attrs.field(factory=list)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)


def build_report(*, name: str, dst: str, stats: RunStats, wall: float, width: int, height: int, fps: Any,
                 duration: float | None, depth: int, detector: Mapping[str, Any], settings: Mapping[str, Any],
                 input_info: Mapping[str, Any], timing: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON report of a run (``DeidResult.report``; the layout is documented in docs/deid.md)."""
    frames = stats.written
    return {
        "src": name,
        "dst": dst,
        "frames": frames,
        "width": width,
        "height": height,
        "fps_input": float(fps) if fps else None,
        "duration_s": duration,
        "wall_s": round(wall, 3),
        "fps": round(frames / wall, 2) if wall > 0 else None,
        "realtime_factor": round(wall / duration, 4) if duration else None,
        "audio_packets_copied": stats.audio_packets,
        "detected_frames": stats.detected_frames,
        "detections": stats.detections,
        "tracks": len(stats.tracks),
        "scene_cuts": sum(stats.cuts),
        "scene_cuts_by_region": list(stats.cuts),
        "frames_with_regions": stats.frames_with_regions,
        "regions": stats.regions,
        "detector_failures": list(stats.detector_failures),
        "frames_region_hidden": stats.frames_region_hidden,
        "frames_out_of_body": stats.frames_out_of_body,
        "queue_depth": depth,
        "input": dict(input_info),
        "detector": dict(detector),
        "settings": dict(settings),
        "warnings": list(stats.warnings),
        "timing": dict(timing),
    }


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically and durably."""
    atomic_write(Path(path), (json.dumps(data, indent=2, default=str) + "\n").encode("utf-8"), mode=0o666)
