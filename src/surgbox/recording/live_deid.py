"""Live face hiding: a video source whose frames reach the recorder only after their faces are hidden.

:class:`LiveDeidSource` wraps a video :class:`~surgbox.interfaces.Source` (the room camera).
It starts the wrapped source itself, so the recorder never sees one raw frame of it: the
compositor, the encoder and snapshots get only the hidden frames. It reuses the stages of
``surgbox deid`` (:mod:`surgbox.deid`): the region is cropped for the detector with
:func:`~surgbox.deid.crop.crop_rgb`, detections are linked and carried by the same
:class:`~surgbox.deid.temporal.TemporalFilter`, and faces are hidden by the same anonymizer and
masks (:func:`~surgbox.deid.hide.hide_regions`).

Threads: the wrapper's own thread takes the wrapped source's frames, hands every N-th
frame to the detector worker (:class:`DetectorWorker`, one more thread: the detectors release
the GIL in their math), links the answers in the temporal stage and hides the faces of each
frame once the temporal stage has finalized it (``lookahead`` frames later). N adapts to the
detector (:class:`~surgbox.recording.live_cadence.Cadence`): from ``every`` (the fastest) up to
``max_every`` (the slowest), picked from the measured wall time of the detector's calls so that
it keeps up; the frames in between are covered by the temporal stage's tracks. So each frame
leaves the wrapper about ``lookahead / fps + latency_s`` after its capture, with its capture
time unchanged: the recorder's ``latency_s`` must cover :attr:`LiveDeidSource.delay_s`
(:class:`~surgbox.recording.Recorder` raises it by itself).

Fail closed: a frame is shown with only its faces hidden when every detection it depends on
(the detected frames before and after it, and one more on each side) came back in time. A detection that is not back
``latency_s`` after its frame was captured (the detector is slow, stalled or starved of CPU),
that raised, or that could not even be queued (the worker's queue is full), makes every frame
around it leave with the whole picture hidden (``slot``: ``blur`` or ``fill``). Each change
of state is emitted as a :class:`~surgbox.types.Reading` of kind ``deid`` (the recording's data
track keeps it; the values say ``hidden`` 0/1 and why: ``late``, ``error``, ``busy``, and the
``faces`` shown hidden, and the cadence ``every``), counted in :meth:`LiveDeidSource.stats` with the list of hidden
intervals and their reasons (the sidecar's final stats), and shown on ``surgbox record``'s
status line.

    >>> room = LiveDeidSource(file_source, LiveDeidSettings.from_mapping({"every": 3}), plugins=plugins)  # doctest: +SKIP

The settings (:class:`LiveDeidSettings`, the ``[deid]`` table) are in
:mod:`surgbox.recording.live_settings`.
"""

from __future__ import annotations

import bisect
import collections
import logging
import math
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ..clock import NS_PER_S
from ..deid.anonymize import Anonymizer, make_anonymizer
from ..deid.crop import crop_rgb
from ..deid.detect import detector_info, detector_label
from ..deid.hide import hide_regions
from ..deid.temporal import TemporalFilter
from ..errors import SourceError, SurgboxError
from ..interfaces import Source
from ..types import Detections, Reading, Rect, VideoFrame
from .live_cadence import Cadence
from .live_settings import LiveDeidSettings, light_members
from .live_worker import DetectorWorker
from .raw_copy import RAW_ENCODER, RAW_OPTIONS, RawCopy
from .wrapped import WrappedSource

__all__ = ["LiveDeidSettings", "LiveDeidSource", "light_members", "wrap_sources"]

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0  # a deid reading at least this often while the state does not change


@attrs.define(eq=False)
class _Pending:
    index: int
    frame: VideoFrame  # yuv420p, private to this wrapper
    detect: bool
    status: str | None = None  # detect frames: "ok", "late", "error", "busy"
    dets: Detections | None = None


@attrs.define(eq=False)
class LiveDeidSource(WrappedSource):
    """The frames of ``inner`` with their faces hidden (see the module docstring).

    ``settings``: :class:`LiveDeidSettings`; ``plugins``: the plugin manager the detector is
    built from by name (``None``: the process-wide one); ``detector``: an already built detector
    (instead of the settings' name); ``keep_raw``: the purpose of an encrypted raw copy of the
    source (``None``: none; :mod:`surgbox.recording.raw_copy`; the recorder hands over its
    destination through :meth:`attach_sink` and finishes the copy with :meth:`finish_outputs`). The name, frame rate and size are ``inner``'s. Its items:
    hidden :class:`~surgbox.types.VideoFrame` s (``yuv420p``, capture times unchanged) and
    ``deid`` :class:`~surgbox.types.Reading` s (the recorder writes them to the data track).
    """

    what: ClassVar[str] = "faces hidden live"
    emits_readings: ClassVar[bool] = True  # the recorder keeps a data track for its deid readings

    settings: LiveDeidSettings = attrs.field(factory=LiveDeidSettings, kw_only=True)
    plugins: Any = attrs.field(default=None, kw_only=True)
    detector: Any = attrs.field(default=None, kw_only=True)
    keep_raw: str | None = attrs.field(default=None, kw_only=True)
    _raw: RawCopy | None = attrs.field(default=None, init=False, alias="_raw")
    _worker: DetectorWorker | None = attrs.field(default=None, init=False, alias="_worker")
    _owns_detector: bool = attrs.field(default=False, init=False, alias="_owns_detector")
    _pending: collections.deque = attrs.field(factory=collections.deque, init=False, alias="_pending")
    _pushed: int = attrs.field(default=0, init=False, alias="_pushed")  # frames given to the temporal stage
    _next_index: int = attrs.field(default=0, init=False, alias="_next_index")
    _cadence: Cadence | None = attrs.field(default=None, init=False, alias="_cadence")
    _detects: list[int] = attrs.field(factory=list, init=False, alias="_detects")  # detect frames still needed, in order
    _status: dict[int, str] = attrs.field(factory=dict, init=False, alias="_status")  # detect frame -> status
    _early: dict[int, Any] = attrs.field(factory=dict, init=False, alias="_early")
    _tf: TemporalFilter | None = attrs.field(default=None, init=False, alias="_tf")
    _rect: Rect | None = attrs.field(default=None, init=False, alias="_rect")
    _anon: Anonymizer | None = attrs.field(default=None, init=False, alias="_anon")
    _slot_anon: Anonymizer | None = attrs.field(default=None, init=False, alias="_slot_anon")
    _reformatter: Any = attrs.field(default=None, init=False, alias="_reformatter")
    _hidden: str | None = attrs.field(default=None, init=False, alias="_hidden")  # why the slot is hidden now
    _intervals: list[dict[str, Any]] = attrs.field(factory=list, init=False, alias="_intervals")
    _counts: collections.Counter = attrs.field(factory=collections.Counter, init=False, alias="_counts")
    _latency: list[float] = attrs.field(factory=lambda: [0.0, 0.0, 0], init=False, alias="_latency")  # sum, max, n (s)
    _last_reading_ns: int | None = attrs.field(default=None, init=False, alias="_last_reading_ns")
    _info: dict[str, Any] = attrs.field(factory=dict, init=False, alias="_info")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")

    def __attrs_post_init__(self) -> None:
        if self.queue_size == 64:  # ThreadedSource's default: hold what the recorder's latency needs
            self.queue_size = max(64, 4 * self.delay_frames)
        super().__attrs_post_init__()

    # -- what the recorder asks -------------------------------------------------------------------
    @property
    def lookahead(self) -> int:
        """Frames the temporal stage holds before a frame is final."""
        return self.settings.temporal(16, 16).lookahead

    @property
    def delay_frames(self) -> int:
        return self.lookahead + 1

    @property
    def delay_s(self) -> float:
        """How long after its capture a frame leaves at the latest while detection keeps up:
        the temporal stage's lookahead plus ``latency_s`` plus one frame of slack."""
        s = (self.delay_frames + 1) / self.fps_or_default() + self.settings.latency_s
        return math.ceil(s * 1000 - 1e-6) / 1000  # whole milliseconds, rounded up (the recorder keeps ms)

    def sidecar_info(self) -> dict[str, Any]:
        """The sidecar's ``deid`` entry for this source: hidden live, with which settings (and
        the encrypted raw copy's file and purpose, when one is kept)."""
        raw = {} if self._raw is None else {"raw_copy": {"file": self._raw.name, "purpose": self.keep_raw}}
        return {"deid": {"live": True, **self.settings.to_dict(), **self._info, **raw}}

    def attach_sink(self, sink: Any) -> None:
        """The recorder's destination, before the source starts: opens the raw copy's file
        (``keep_raw``; a sink that is not encrypted refuses it with a ConfigError)."""
        if self.keep_raw is None or self._raw is not None:
            return
        name, target = sink.raw_target(self.name)
        plugins = self.plugins
        if plugins is None:
            from ..plugins import get_plugins

            plugins = get_plugins()
        try:
            encoder = plugins.create("encoder", RAW_ENCODER, **RAW_OPTIONS)
        except BaseException:
            target.abort() if hasattr(target, "abort") else target.close()
            raise
        self._raw = RawCopy(target, name, encoder)

    def finish_outputs(self) -> None:
        """Finish the raw copy (the recorder calls it before its destination closes)."""
        if self._raw is not None:
            self._raw.close()

    # -- ThreadedSource ---------------------------------------------------------------------------
    def _open(self) -> None:
        assert self.clock is not None
        det = self.detector
        d = self.settings.deid
        if det is None:
            if not isinstance(d.detector, str):
                det = d.detector
            else:
                plugins = self.plugins
                if plugins is None:
                    from ..plugins import get_plugins

                    plugins = get_plugins()
                try:
                    det = plugins.create("detector", d.detector, **d.detector_factory_options())
                except SurgboxError as exc:
                    raise SourceError(f"source {self.name!r}: the [deid] detector: {exc}") from None
                self._owns_detector = True
        try:
            det.open()
        except SurgboxError:
            raise
        except Exception as exc:
            raise SourceError(f"source {self.name!r}: the live de-identification detector {detector_label(det)!r} "
                              f"could not open ({type(exc).__name__}: {exc}); fix its options or turn deidentify off") from exc
        self.detector = det
        self._info = {"detector_info": detector_info(det)}
        self._anon = d.make_anonymizer()
        self._slot_anon = make_anonymizer(self.settings.slot, expand=d.expand, feather=d.feather)
        try:
            self.start_inner()
        except BaseException:
            self._close_detector()
            raise
        self._cadence = self.settings.cadence(self.fps_or_default())
        self._worker = DetectorWorker(det, self.clock.now_ns)
        self._worker.start(self.name)

    def _item(self, item: Any) -> None:
        if isinstance(item, VideoFrame):
            self._ingest(item)

    def _tick(self) -> None:
        self._advance()

    def _flush_end(self) -> bool:
        return self._advance(ended=True)

    def _close(self) -> None:
        try:
            self.finish_outputs()  # (normally done by the recorder already)
            self.inner.stop()
        finally:
            if self._worker is not None and not self._worker.stop():
                log.warning("source %r: the detector did not return within 5 s of the stop", self.name)
            self._close_detector()

    def _close_detector(self) -> None:
        if self._owns_detector and self.detector is not None:
            try:
                self.detector.close()
            except Exception as exc:  # pragma: no cover - best effort at shutdown
                log.warning("source %r: closing the detector failed: %s", self.name, exc)

    # -- the stages -------------------------------------------------------------------------------
    def _ingest(self, item: VideoFrame) -> None:
        img = item.image
        if img.format.name not in ("yuv420p", "yuvj420p") or img.width % 2 or img.height % 2:
            img = img.reformat(width=img.width & ~1, height=img.height & ~1, format="yuv420p")
        if self._tf is None:
            self._rect = Rect(0, 0, img.width, img.height)
            self._tf = self.settings.temporal(img.width, img.height)
        if self._raw is not None:  # the raw pixels, before anything is hidden in place
            self._raw.write(img, item.capture_ns, self.fps_or_default())
        frame = VideoFrame(self.name, item.capture_ns, img, item.seq)
        index = self._next_index
        self._next_index += 1
        assert self._cadence is not None
        entry = _Pending(index, frame, not self._detects or index - self._detects[-1] >= self._cadence.every)
        if entry.detect:
            self._detects.append(index)
            assert self._worker is not None and self._rect is not None
            if self._reformatter is None:
                from av.video.reformatter import VideoReformatter

                self._reformatter = VideoReformatter()
            crop = crop_rgb(img, self._rect, self.settings.deid.detect_scale, reformatter=self._reformatter)
            deadline = item.capture_ns + round(self.settings.latency_s * NS_PER_S)
            if not self._worker.submit(index, crop, deadline):
                entry.status = "busy"
        self._pending.append(entry)

    def _advance(self, ended: bool = False) -> bool:
        """Collect the detector's answers, push every frame whose detection is settled to the
        temporal stage, and emit the frames it finalizes. With ``ended`` (``inner`` has ended):
        True once every frame is out."""
        assert self.clock is not None
        if self._worker is None or self._tf is None:
            return ended
        assert self._cadence is not None
        for index, res, seconds in self._worker.take():
            if index >= self._pushed:  # (an answer for a frame that already failed closed is dropped)
                self._early[index] = res
            if seconds is not None:
                self._cadence.observe(seconds)
        now = self.clock.now_ns()
        budget = round(self.settings.latency_s * NS_PER_S)
        finals = []
        while self._pending and self._pushed - self._pending[0].index < len(self._pending):
            e = self._pending[self._pushed - self._pending[0].index]
            if e.detect and e.status is None:
                if e.index in self._early:
                    res = self._early.pop(e.index)
                    if isinstance(res, Detections):
                        e.status, e.dets = "ok", res
                    elif res is None:
                        e.status = "late"
                    else:
                        e.status = "error"
                        self._note_error(res)
                elif now > e.frame.capture_ns + budget:
                    e.status = "late"
                else:
                    break
            if e.detect:
                self._status[e.index] = e.status or "ok"
                self._counts[f"detections_{e.status}"] += 1
                if e.status == "ok":
                    self._counts["faces_detected"] += len(e.dets or ())
            finals.extend(self._tf.push(e.index, e.dets if e.status == "ok" else None))
            self._pushed += 1
        ended = ended and self._pushed == self._next_index  # the last detections settle first
        if ended:
            finals.extend(self._tf.flush())
        for j, regions in finals:
            self._emit(j, regions)
        return ended

    def _unsafe(self, j: int) -> str | None:
        """Why frame ``j`` cannot be shown with only its faces hidden (``None``: it can)."""
        # the detections the temporal stage bridges this frame with: the bracketing detected
        # frames and one more on each side (a face one detection misses is interpolated or carried
        # from its neighbours, as in surgbox deid)
        d = self._detects
        k = bisect.bisect_right(d, j)  # d[k - 1] <= j < d[k]
        after = 1 if k and d[k - 1] == j else 2
        if len(d) - k < after:
            return "late"  # the detections after it are not there (the end of the recording)
        for i in d[max(0, k - 2):k + after]:
            st = self._status.get(i)
            if st is None:
                return "late"  # not settled (the end of the recording) counts as late
            if st != "ok":
                return st
        return None

    def _emit(self, j: int, regions: list) -> None:
        e = self._pending.popleft()
        assert e.index == j, (e.index, j)
        reason = self._unsafe(j)
        assert self._anon is not None and self._slot_anon is not None and self._rect is not None
        if reason is not None:
            hide_regions(self._slot_anon, e.frame.image, [self._rect], [], whole=True)
            self._counts["frames_slot_hidden"] += 1
        elif regions:
            hide_regions(self._anon, e.frame.image, [self._rect], regions)
            self._counts["frames_faces_hidden"] += 1
        horizon = j - 3 * self.settings.slowest
        for d in [k for k in self._status if k < horizon]:
            del self._status[d]
        while len(self._detects) > 2 and self._detects[1] < horizon:
            del self._detects[0]
        self._counts["frames"] += 1
        assert self.clock is not None
        lat = (self.clock.now_ns() - e.frame.capture_ns) / NS_PER_S
        with self._lock:
            self._latency[0] += lat
            self._latency[1] = max(self._latency[1], lat)
            self._latency[2] += 1
        self.put(e.frame)
        self._set_state(reason, e.frame.capture_ns, faces=len(regions))

    def _note_error(self, exc: BaseException) -> None:
        self._counts["detector_errors"] += 1
        if self._counts["detector_errors"] == 1:
            log.warning("source %r: live detector %s failed (%s: %s); the slot is hidden whole until it answers again",
                        self.name, detector_label(self.detector), type(exc).__name__, exc)
        self._info["last_detector_error"] = f"{type(exc).__name__}: {exc}"

    def _set_state(self, reason: str | None, capture_ns: int, *, faces: int = 0, force: bool = False) -> None:
        """Track the hidden intervals and emit a ``deid`` reading on each change (and once a second)."""
        changed = reason != self._hidden
        with self._lock:
            if changed and reason is None and self._intervals:
                self._intervals[-1]["end_ns"] = capture_ns
            elif changed and self._hidden is None:
                self._intervals.append({"start_ns": capture_ns, "end_ns": None, "reason": reason, "reasons": [reason]})
                del self._intervals[:-100]  # bounded; the counters keep the totals
                self._counts["hidden_intervals"] += 1
            elif changed and reason not in self._intervals[-1]["reasons"]:
                self._intervals[-1]["reasons"].append(reason)
            self._hidden = reason
        due = self._last_reading_ns is None or capture_ns - self._last_reading_ns >= STATUS_EVERY_S * NS_PER_S
        if changed or due or force:
            self._last_reading_ns = capture_ns
            values = {"hidden": float(reason is not None), "faces": float(faces),
                      "late": float(reason == "late"), "error": float(reason == "error"), "busy": float(reason == "busy"),
                      "every": float(self._cadence.every if self._cadence else self.settings.deid.every)}
            self.put(Reading(self.name, capture_ns, "deid", values))
            if changed:
                (log.warning if reason else log.info)(
                    "source %r: %s", self.name,
                    f"slot hidden whole: detection {REASONS[reason]}" if reason else "detection caught up; faces hidden again")

    def stats(self) -> Mapping[str, Any]:
        base = dict(super().stats())
        with self._lock:
            total, peak, n = self._latency
            intervals = [dict(iv) for iv in self._intervals]
            hidden = self._hidden
        w = self._worker
        counts = dict(self._counts)
        base["deid"] = {
            "hidden": hidden, "frames": counts.get("frames", 0), "frames_slot_hidden": counts.get("frames_slot_hidden", 0),
            "frames_faces_hidden": counts.get("frames_faces_hidden", 0), "faces_detected": counts.get("faces_detected", 0),
            "detections": {k.removeprefix("detections_"): v for k, v in counts.items() if k.startswith("detections_")},
            "detector_errors": counts.get("detector_errors", 0), "hidden_intervals": counts.get("hidden_intervals", 0),
            "intervals": intervals, "latency_ms_mean": round(1000 * total / n, 1) if n else None,
            "latency_ms_max": round(1000 * peak, 1), "detector_busy_s": None if w is None else round(w.busy_s, 3),
            "detector_calls": None if w is None else w.calls, "delay_s": round(self.delay_s, 3),
            "cadence": None if self._cadence is None else self._cadence.stats(),
            "raw_copy": None if self._raw is None else self._raw.stats(),
        }
        return base


REASONS = {"late": "is late (no answer within latency_s)", "error": "failed (the detector raised)",
           "busy": "could not be queued (the detector is behind)"}


def wrap_sources(sources: list[Source], deidentify: Mapping[str, LiveDeidSettings], *, plugins: Any = None) -> list[Source]:
    """``sources`` with each one named in ``deidentify`` wrapped in a :class:`LiveDeidSource`
    with its settings (the others unchanged)."""
    out = []
    for s in sources:
        settings = deidentify.get(s.name)
        out.append(s if settings is None else LiveDeidSource(inner=s, settings=settings, plugins=plugins))
    return out
