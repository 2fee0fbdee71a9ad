"""The detect stage: crop the scan regions, run the detector in batches, detect scene cuts and
link detections over time, one temporal filter per region.

Runs on its own thread between the decode and the hide stage. Each region of each frame the
detector looks at (every ``every``-th frame) is cropped, resized by ``detect_scale`` and
converted to RGB (:func:`~surgbox.deid.crop.crop_rgb`); ``batch`` frames' crops go to the
detector in one call — ``detect_frames(images, frame_indices)`` when the detector has it (it
then knows which source frame each image comes from), else ``detect(images)``.

Fail closed: when the detector raises, or its answer cannot be used (a wrong number of
results, not :class:`~surgbox.types.Detections`), no frame of that batch goes on with its
faces exposed. With ``on_detector_error="fail"`` the run stops with a
:class:`~surgbox.errors.DetectorError`; with ``"blur-region"`` every frame of the batch has
its scan regions hidden whole (:attr:`Item.hidden <surgbox.deid.handoff.Item.hidden>`), which
the report and the audit sidecar record.

A detector that declares ``confirm_score`` (the score from which its detections are confident,
e.g. the ``ensemble`` when its members set ``confirm``) gets the temporal stage's hysteresis:
lower-scored detections are shown only as part of a track that is confirmed
(:class:`~surgbox.deid.temporal.TemporalFilter`).

Scene cuts are told per region (a page change on the vitals monitor is not a cut in the room
camera's view), and each region's tracks live in their own
:class:`~surgbox.deid.temporal.TemporalFilter`, so a cut ends only that region's tracks.
"""

from __future__ import annotations

import collections
import itertools
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
from PIL import Image

from ..errors import DetectorError, SurgboxError
from ..types import Detections, Rect
from .anonymize import frame_planes
from .crop import crop_rgb
from .handoff import END, Failure, Item, get, put
from .options import DeidOptions
from .result import RunStats
from .temporal import Region, TemporalFilter
from .timing import StageTimes

WAIT = "queue wait (detect)"


def detector_label(det: Any) -> str:
    return str(getattr(det, "name", None) or type(det).__name__)


def detector_info(det: Any) -> dict[str, Any]:
    """``{"name", "version", "class", "settings"}`` of a detector, for the report and audit."""
    try:
        settings = dict(det.settings()) if hasattr(det, "settings") else {}
    except Exception as exc:  # the audit must not fail on a detector's settings()
        settings = {"error": f"{type(exc).__name__}: {exc}"}
    return {"name": detector_label(det), "version": str(getattr(det, "version", "")),
            "class": f"{type(det).__module__}.{type(det).__qualname__}", "settings": settings}


def detector_stage_seconds(det: Any) -> Mapping[str, float] | None:
    """A detector's cumulative per-stage seconds, if it reports them (``stage_seconds``)."""
    stats = getattr(det, "stage_seconds", None)
    if callable(stats):
        stats = stats()
    return dict(stats) if isinstance(stats, Mapping) else None


@attrs.define(eq=False)
class RegionTracks:
    """One :class:`TemporalFilter` per scan region (shared track ids); frames go in and come
    out in lockstep, so the merged regions of frame ``i`` come out together."""

    filters: list[TemporalFilter]

    @classmethod
    def create(cls, options: DeidOptions, rects: list[Rect]) -> RegionTracks:
        ids = itertools.count()
        return cls([options.make_temporal(bounds=(r.as_xyxy(),), track_ids=ids) for r in rects])

    @property
    def lookahead(self) -> int:
        return self.filters[0].lookahead

    def push(self, index: int, detections: list[Detections] | None, cuts: list[bool]) -> list[tuple[int, list[Region]]]:
        """Frame ``index`` with one :class:`Detections` per region (``None``: not scored) and
        whether each region cut; returns the frames now final, regions merged."""
        outs = [tf.push(index, None if detections is None else detections[k], cut=cuts[k])
                for k, tf in enumerate(self.filters)]
        return _merge(outs)

    def flush(self) -> list[tuple[int, list[Region]]]:
        return _merge([tf.flush() for tf in self.filters])

    def confirm_with(self, det: Any) -> None:
        """Use ``det``'s ``confirm_score`` (if it declares one) for the hysteresis of every region."""
        score = getattr(det, "confirm_score", None)
        for tf in self.filters:
            tf.confirm_score = None if score is None else float(score)


def _merge(outs: list[list[tuple[int, list[Region]]]]) -> list[tuple[int, list[Region]]]:
    merged = []
    for parts in zip(*outs, strict=True):
        index = parts[0][0]
        assert all(p[0] == index for p in parts), [p[0] for p in parts]
        merged.append((index, [r for _, regs in parts for r in regs]))
    return merged


@attrs.define(eq=False)
class DetectStage:
    """Crops, detector batches, scene cuts and the temporal stage (run on its own thread)."""

    det: Any
    rects: list[Rect]
    options: DeidOptions
    stop: threading.Event
    times: StageTimes
    stats: RunStats
    tracks: RegionTracks
    batch: int  # detector frames per call (the options' batch, or less to fit queue_memory)
    _thumbs: list[np.ndarray] | None = attrs.field(default=None, alias="_thumbs")
    _reformatters: dict[int, Any] = attrs.field(factory=dict, alias="_reformatters")

    def __attrs_post_init__(self) -> None:
        self.tracks.confirm_with(self.det)

    def run(self, q_in: queue.Queue, q_out: queue.Queue) -> None:
        pending: collections.deque[Item] = collections.deque()
        chunk: list[Item] = []
        every, batch = self.options.every, self.batch
        try:
            while True:
                item = get(q_in, self.stop, self.times, WAIT)
                if item is END:
                    break
                if isinstance(item, Failure):
                    put(q_out, item, self.stop, self.times, WAIT)
                    return
                if item.frame is None:  # trailing audio
                    self._run_chunk(chunk, pending, q_out)
                    chunk = []
                    for idx, regs in self.tracks.flush():
                        self._emit(pending, idx, regs, q_out)
                    put(q_out, item, self.stop, self.times, WAIT)
                    continue
                chunk.append(item)
                if sum(1 for c in chunk if c.index % every == 0) >= batch:
                    self._run_chunk(chunk, pending, q_out)
                    chunk = []
            if not self.stop.is_set():
                self._run_chunk(chunk, pending, q_out)
                for idx, regs in self.tracks.flush():
                    self._emit(pending, idx, regs, q_out)
                put(q_out, END, self.stop, self.times, WAIT)
        except BaseException as exc:
            put(q_out, Failure(exc), self.stop, self.times, WAIT)

    def _run_chunk(self, chunk: list[Item], pending: collections.deque[Item], q_out: queue.Queue) -> None:
        if not chunk or self.stop.is_set():
            return
        todo = [c for c in chunk if c.index % self.options.every == 0]
        try:
            found = self._score(todo)
        except Exception as exc:
            found = self._failed(chunk, exc)
        finals = []
        with self.times.stage("temporal", count=len(chunk)):
            for c in chunk:
                pending.append(c)
                dets = found.get(c.index)
                if dets is not None:
                    self.stats.detected_frames += 1
                    self.stats.detections += sum(len(d) for d in dets)
                finals.extend(self.tracks.push(c.index, dets, self._cuts(c.frame)))
        for idx, regs in finals:
            self._emit(pending, idx, regs, q_out)

    def _score(self, todo: list[Item]) -> dict[int, list[Detections]]:
        """Detections per frame of ``todo`` (one per region, frame pixels). Raises when the
        batch cannot be scored."""
        crops, owners = [], []
        with self.times.stage("crop", count=len(todo) * len(self.rects)):
            for c in todo:
                for k, r in enumerate(self.rects):
                    crops.append(crop_rgb(c.frame, r, self.options.detect_scale, reformatter=self._reformatter(k)))
                    owners.append(c.index)
        found: dict[int, list[Detections]] = {c.index: [] for c in todo}
        if not crops:
            return found
        det = self.det
        images = [c.image for c in crops]
        before = detector_stage_seconds(det)
        t0 = time.perf_counter()
        detect_frames = getattr(det, "detect_frames", None)
        results = detect_frames(images, owners) if callable(detect_frames) else det.detect(images)
        self.times.add_detector(before, detector_stage_seconds(det), time.perf_counter() - t0)
        results = list(results)
        if len(results) != len(crops):
            raise SurgboxError(f"it returned {len(results)} results for {len(crops)} images")
        for idx, crop, d in zip(owners, crops, results):
            if not isinstance(d, Detections):
                raise SurgboxError(f"it returned {type(d).__name__}, not Detections")
            found[idx].append(crop.to_frame(d))
        return found

    def _failed(self, chunk: list[Item], exc: Exception) -> dict[int, list[Detections]]:
        """Fail closed for a batch that could not be scored (see the module doc)."""
        first, last = chunk[0].index, chunk[-1].index
        cause = " ".join(f"{type(exc).__name__}: {exc}".split())
        label = detector_label(self.det)
        if self.options.on_detector_error == "fail":
            raise DetectorError(
                f"detector {label!r} failed on frames {first}-{last} ({cause}); the run was stopped and no frame of "
                f"that batch was written. Fix the detector, or pass --on-detector-error blur-region "
                f"(on_detector_error='blur-region') to hide whole regions of such frames instead"
            ) from exc
        reason = f"detector {label!r} failed ({cause})"
        self.stats.detector_failures.append({"frames": [first, last], "error": cause})
        self.stats.warn(f"{reason} on frames {first}-{last}: their scan regions were hidden whole")
        for c in chunk:
            c.hidden = reason
        return {}

    def _reformatter(self, k: int) -> Any:
        """The swscale context kept for region ``k`` (this thread only): set-up is most of a
        fresh conversion's cost."""
        if k not in self._reformatters:
            from av.video.reformatter import VideoReformatter

            self._reformatters[k] = VideoReformatter()
        return self._reformatters[k]

    def _cuts(self, frame: Any) -> list[bool]:
        """Per region: a scene cut, i.e. the region's luma, averaged over 16x16 blocks (so
        motion and texture do not count), changed by more than ``cut_threshold`` on average
        (0-255) since the previous frame."""
        threshold = self.options.cut_threshold
        if threshold is None:
            return [False] * len(self.rects)
        y = frame_planes(frame, writable=False)[0]
        thumbs = [block_means(y[r.y:r.y2, r.x:r.x2], 16) for r in self.rects]
        prev, self._thumbs = self._thumbs, thumbs
        if prev is None:
            return [False] * len(self.rects)
        cuts = [float(np.abs(a - b).mean()) > threshold for a, b in zip(thumbs, prev)]
        for k, cut in enumerate(cuts):
            self.stats.cuts[k] += cut
        return cuts

    def _emit(self, pending: collections.deque[Item], idx: int, regs: list[Region], q_out: queue.Queue) -> None:
        item = pending.popleft()
        assert item.index == idx, (item.index, idx)
        item.regions = regs
        put(q_out, item, self.stop, self.times, WAIT)


def block_means(plane: np.ndarray, k: int) -> np.ndarray:
    """Mean of each ``k x k`` block of a 2-D ``uint8`` plane (partial blocks at the edges
    average the pixels they have), rounded to integers, as ``float32``."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(plane)).reduce(k), np.float32)
