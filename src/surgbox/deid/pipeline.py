"""The de-identification pipeline: decode -> crop -> detect (batched) -> temporal -> anonymize -> encode.

Four threads overlap the work: the *decode* thread demuxes and decodes (PyAV, threaded
decoding) into a bounded frame queue; the *detect* thread crops the scan regions (resized by
``detect_scale``, then converted to RGB: only the small crops, :mod:`surgbox.deid.crop`), runs the Detector plugin in batches and the temporal
stage, which holds at most ``lookahead`` frames; the *anonymize* thread hides the regions on
the YUV planes; the calling thread feeds the Encoder plugin. Audio packets travel with the next video frame and are
stream-copied untouched. Output timestamps are the input's (same time base and pts), so frame
count, timing and frame rate survive. The output is written under a temporary name in the
destination directory and renamed only when complete; on any error nothing is left there.

    >>> from surgbox.deid import deidentify
    >>> result = deidentify("in.mp4", "out.mp4", region="1280,0,640,360")   # doctest: +SKIP
    >>> result.frames, result.report["fps"]                                   # doctest: +SKIP
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import attrs
import numpy as np

from .._fs import atomic_write
from ..errors import ConfigError, DeidError, SurgboxError
from ..interfaces import Detector, Encoder
from ..types import DeidResult, Detections, Rect
from . import defaults
from .anonymize import Anonymizer, frame_planes, make_anonymizer
from .audit import AuditWriter
from .crop import crop_rgb
from .regions import parse_region_spec, resolve_regions
from .temporal import Region, TemporalFilter
from .timing import StageTimes

log = logging.getLogger(__name__)

DEFAULT_QUEUE_MEMORY = defaults.QUEUE_MEMORY
DEFAULT_THRESHOLD = defaults.detector_options(defaults.DETECTOR)["threshold"]
DEFAULT_DETECT_SCALE = defaults.DETECT_SCALE
DEFAULT_EXPAND = defaults.EXPAND


@attrs.frozen
class Progress:
    """Progress of a run: ``frames`` done of ``total`` (``None`` when unknown), ``elapsed`` s;
    ``done`` on the last report (all frames written)."""

    frames: int
    total: int | None
    elapsed: float
    done: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.frames / self.total) if self.total else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (``None`` when the total is unknown)."""
        if not self.total or self.fps <= 0:
            return None
        return max(0.0, (self.total - self.frames) / self.fps)


@attrs.define(eq=False)
class _Item:
    index: int
    frame: Any  # av.VideoFrame (yuv420p)
    audio: list  # audio packets to mux before this frame
    regions: list[Region] = attrs.field(factory=list)


_END = object()


@attrs.define(eq=False)
class _Failure:
    exc: BaseException


def _source_name(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    return str(getattr(src, "name", None) or f"<{type(src).__name__}>")


def _put(q: queue.Queue, item: Any, stop: threading.Event, times: StageTimes, wait_stage: str) -> bool:
    """Blocking put that gives up when ``stop`` is set; time blocked counts as ``wait_stage``."""
    t0 = time.perf_counter()
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            times.add(wait_stage, time.perf_counter() - t0, count=0)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event, times: StageTimes, wait_stage: str) -> Any:
    t0 = time.perf_counter()
    while True:
        try:
            item = q.get(timeout=0.1)
            times.add(wait_stage, time.perf_counter() - t0, count=0)
            return item
        except queue.Empty:
            if stop.is_set():
                return _END


def _detector_stage_seconds(det: Any) -> Mapping[str, float] | None:
    """A detector's cumulative per-stage seconds, if it reports them (``stage_seconds``)."""
    stats = getattr(det, "stage_seconds", None)
    if callable(stats):
        stats = stats()
    return dict(stats) if isinstance(stats, Mapping) else None


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def deidentify(
    src: str | os.PathLike | IO[bytes],
    dst: str | os.PathLike,
    *,
    region: Any = "auto",
    detector: str | Detector = defaults.DETECTOR,
    detector_options: Mapping[str, Any] | None = None,
    threshold: float | None = DEFAULT_THRESHOLD,
    encoder: str | Encoder = defaults.ENCODER,
    encoder_options: Mapping[str, Any] | None = None,
    batch: int = defaults.BATCH,
    detect_scale: float = DEFAULT_DETECT_SCALE,
    queue_size: int = defaults.QUEUE_SIZE,
    queue_memory: int = DEFAULT_QUEUE_MEMORY,
    carry: int = defaults.CARRY,
    max_gap: int = defaults.MAX_GAP,
    every: int = defaults.EVERY,
    expand: float = DEFAULT_EXPAND,
    feather: float = defaults.FEATHER,
    anonymizer: str | Anonymizer = defaults.ANONYMIZER,
    anonymizer_options: Mapping[str, Any] | None = None,
    cut_threshold: float | None = defaults.CUT_THRESHOLD,
    detector_threads: int | None = defaults.detector_options(defaults.DETECTOR)["threads"],
    audit: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    chart: str | os.PathLike | None = None,
    progress: Callable[[Progress], None] | None = None,
    plugins: Any = None,
) -> DeidResult:
    """De-identify the video ``src`` into ``dst``; returns a :class:`~surgbox.types.DeidResult`.

    ``src``: a path or a readable, seekable binary file object (e.g. from the encrypted store).
    ``dst``: output path (its extension picks the container; written as a temporary file in
    the same directory and renamed when complete). ``region``: ``"auto"``, ``"full"``,
    ``"X,Y,W,H[;...]"`` or Rect(s) (see :mod:`surgbox.deid.regions`). ``detector`` /
    ``encoder``: plugin names (or built instances) with their ``*_options``. ``threshold``:
    passed to a detector built by name as its ``threshold`` option (default 0.3: recall first;
    ``None`` keeps the plugin's own default), if its factory takes that option (else it is left
    out, with a warning in the report). ``batch``: crops
    per detector call. ``detect_scale``: each region is resized by this factor (0 < s <= 1,
    default 0.5) while it is converted to RGB for the detector, and detections are mapped back
    to frame pixels; RetinaFace finds faces down to about 16 pixels of its input, i.e. about
    ``16 / detect_scale`` frame pixels. ``queue_size``: decoded frames buffered between decode and detection,
    capped so that all pictures the pipeline holds (the queue, a detection batch, the temporal
    stage's lookahead) fit in ``queue_memory`` bytes (default 512 MiB: 140 frames of 1080p). ``carry``/``max_gap``/``every``: the
    temporal stage (:class:`~surgbox.deid.temporal.TemporalFilter`). ``expand``/``feather``:
    the mask (:class:`~surgbox.deid.masks.MaskShape`). ``anonymizer``: ``blur``, ``pixelate``
    or ``fill`` with ``anonymizer_options``. ``cut_threshold``: mean luma change (0-255, of
    16x16-block averages of the regions) between frames that marks a scene cut, across which nothing is
    carried (``None``: never). ``detector_threads``: passed to a detector built by name as its
    ``threads`` option (CPU math threads; RetinaFace sets torch's process-wide count while open
    and restores it at close); decode, detection and encode already run in parallel, so 1
    (default) avoids oversubscribing the cores; left out like ``threshold`` for a factory
    without that option; ``None`` passes nothing (keeps the library's setting). ``audit``/``report``/``chart``: optional JSON
    Lines sidecar, JSON report and PNG stage chart paths. ``progress``: called with
    :class:`Progress` about four times a second from the calling thread. ``plugins``: the
    :class:`~surgbox.plugins.Plugins` manager to use (default: the process-wide one); its
    ``deid_finished`` hook is called with the result.

    Raises :class:`DeidError` for unreadable, corrupt or truncated input,
    :class:`~surgbox.errors.ConfigError` for bad options, and the plugins' own errors.
    """
    detector_options = dict(detector_options or {})
    implied: dict[str, Any] = {}  # given to a detector built by name, when its factory takes them
    if threshold is not None and isinstance(detector, str) and "threshold" not in detector_options:
        implied["threshold"] = threshold
    if detector_threads is not None:
        if not isinstance(detector_threads, int) or detector_threads < 1:
            raise ConfigError(f"detector_threads must be an integer >= 1 or None, got {detector_threads!r}")
        if isinstance(detector, str) and "threads" not in detector_options:
            implied["threads"] = detector_threads
    if not (isinstance(detect_scale, (int, float)) and 0 < detect_scale <= 1):
        raise ConfigError(f"detect_scale must be in (0, 1], got {detect_scale!r} (0.5 scans regions at half size)")
    run = _Run(src, dst, region=region, detector=detector, detector_options=detector_options, implied_options=implied,
               encoder=encoder, encoder_options=dict(encoder_options or {}), batch=batch, detect_scale=float(detect_scale),
               queue_size=queue_size,
               queue_memory=queue_memory, every=every, progress=progress, plugins=plugins,
               audit_path=audit, report_path=report, chart_path=chart, cut_threshold=cut_threshold,
               detector_threads=detector_threads,
               temporal=TemporalFilter(carry=carry, max_gap=max_gap, every=every) if _valid_temporal(carry, max_gap, every) else None,
               anonymizer=make_anonymizer(anonymizer, expand=expand, feather=feather, **dict(anonymizer_options or {})))
    return run.execute()


MAX_EVERY = 30  # detect at least once a second at 30 fps (the temporal stage holds ~2 * every frames)
MAX_WINDOW = 120  # frames: bounds carry / max_gap, hence the frames held for the temporal stage


def _valid_temporal(carry: int, max_gap: int, every: int) -> bool:
    for name, v, lo, hi in (("carry", carry, 0, MAX_WINDOW), ("max_gap", max_gap, 0, MAX_WINDOW), ("every", every, 1, MAX_EVERY)):
        if not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
    return True


@attrs.define(eq=False)
class _Run:
    """State of one :func:`deidentify` call (threads, queues, counters)."""

    src: Any
    dst: Any
    region: Any
    detector: Any
    detector_options: dict
    implied_options: dict
    encoder: Any
    encoder_options: dict
    batch: int
    detect_scale: float
    queue_size: int
    queue_memory: int
    every: int
    progress: Any
    plugins: Any
    audit_path: Any
    report_path: Any
    chart_path: Any
    temporal: TemporalFilter
    anonymizer: Anonymizer
    times: StageTimes = attrs.field(factory=StageTimes)
    stop: threading.Event = attrs.field(factory=threading.Event)
    warnings: list[str] = attrs.field(factory=list)
    decoded: int = 0
    detections: int = 0
    detected_frames: int = 0
    tracks: set = attrs.field(factory=set)
    frames_with_regions: int = 0
    regions_total: int = 0
    audio_packets: int = 0
    video_packets: int = 0
    cut_threshold: float | None = 30.0
    detector_threads: int | None = 1
    cuts: int = 0
    _thumbs: Any = attrs.field(default=None, alias="_thumbs")
    _reformatters: dict = attrs.field(factory=dict, alias="_reformatters")

    def execute(self) -> DeidResult:
        if self.batch < 1:
            raise ConfigError(f"batch must be >= 1, got {self.batch}")
        if self.queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {self.queue_size}")
        name = _source_name(self.src)
        dst = Path(self.dst)
        if not dst.parent.is_dir():
            raise ConfigError(f"output directory {str(dst.parent)!r} does not exist; create it or choose another DST")
        if dst.suffix == "":
            raise ConfigError(f"output {str(dst)!r} has no extension; give e.g. OUT.mp4 so the container can be chosen")
        spec = parse_region_spec(self.region)
        plugins = self.plugins
        if plugins is None:
            from ..plugins import get_plugins

            plugins = get_plugins()
        t_start = time.perf_counter()
        tmp = str(dst.parent / f".{dst.name}.{secrets.token_hex(4)}.partial{dst.suffix}")
        container = det = enc = audit = None
        threads: list[threading.Thread] = []
        committed = False
        try:
            with self.times.stage("setup"):
                container, vs, as_ = self._open_input(name)
                width, height = vs.codec_context.width, vs.codec_context.height
                if width < 1 or height < 1:
                    raise DeidError(f"input {name!r}: video stream has no picture size; is the file complete? (check with ffprobe)")
                path = os.fspath(self.src) if isinstance(self.src, (str, os.PathLike)) else None
                rects, origin = resolve_regions(spec, width, height, metadata=dict(container.metadata), path=path)
                self.temporal.bounds = tuple(r.as_xyxy() for r in rects)
                frame_bytes = width * height * 3 // 2
                # frames held beyond the queue: lookahead, a batch, the two hand-over queues, a margin
                held = self.temporal.lookahead + self.batch * self.every + 2 * max(4, self.batch) + 4
                depth = max(1, min(self.queue_size, self.queue_memory // max(frame_bytes, 1) - held))
                if depth < self.queue_size:
                    log.info("frame queue capped at %d frames (%d MiB of %dx%d pictures)", depth, self.queue_memory >> 20, width, height)
                q_frames: queue.Queue = queue.Queue(maxsize=depth)
                q_out: queue.Queue = queue.Queue(maxsize=max(4, self.batch))
                fps = vs.average_rate or vs.guessed_rate or vs.base_rate or Fraction(30)
                metadata = {str(k): str(v) for k, v in container.metadata.items()}
                total = vs.frames or (int(float(vs.duration * vs.time_base) * float(fps)) if vs.duration else None)
                # decoding starts now and fills the queue while the detector loads
                threads.append(threading.Thread(target=self._decode_loop, args=(container, vs, as_, q_frames, name),
                                                name="surgbox-deid-decode", daemon=True))
                threads[-1].start()
                det = self._make("detector", self.detector, self._detector_options(plugins), plugins)
                det.open()
                enc_options = dict(self.encoder_options)
                if "fragmented" not in enc_options and _factory_accepts(plugins, "encoder", self.encoder, "fragmented"):
                    # written under a temporary name anyway: a plain MP4 keeps edit lists, so audio
                    # copied with its priming (starting before 0) leaves every video time exact
                    enc_options["fragmented"] = False
                enc = self._make("encoder", self.encoder, enc_options, plugins)
                # 4:2:0 needs even sizes: odd inputs are padded by one repeated row/column (see _to_yuv420p).
                # Opened by the encode loop at the first picture, whose display rotation goes in the header.
                open_output = functools.partial(enc.open_output, tmp, width=width + (width & 1), height=height + (height & 1),
                                                fps=fps, time_base=vs.time_base, audio_template=as_, metadata=metadata)
                if self.audit_path is not None:
                    audit = AuditWriter(Path(self.audit_path))
                    audit.open({"src": name, "dst": str(dst), "detector": _detector_info(det),
                                "settings": self._settings(rects, origin), "regions": [list(r.as_xywh()) for r in rects],
                                "time_base": str(vs.time_base)})
            q_blurred: queue.Queue = queue.Queue(maxsize=max(4, self.batch))
            threads.append(threading.Thread(target=self._detect_loop, args=(det, rects, q_frames, q_out),
                                            name="surgbox-deid-detect", daemon=True))
            threads.append(threading.Thread(target=self._anonymize_loop, args=(rects, q_out, q_blurred),
                                            name="surgbox-deid-anonymize", daemon=True))
            for t in threads[1:]:
                t.start()
            written = self._encode_loop(enc, open_output, q_blurred, audit, vs.time_base, fps, total, t_start)
            for t in threads:
                t.join()
            with self.times.stage("write"):
                enc.close()
            if written == 0:
                raise DeidError(f"input {name!r} has no decodable video frame; check it with ffprobe")
            if vs.frames and self.video_packets < vs.frames:  # packets, not frames: edit lists may hide frames
                raise DeidError(
                    f"input {name!r} is truncated or corrupt: its index declares {vs.frames} video frames but the file "
                    f"holds only {self.video_packets}; re-copy the file, or repair it (e.g. ffmpeg -i IN -c copy OUT.mp4)"
                )
            _fsync_path(tmp)
            os.replace(tmp, dst)
            committed = True
            if audit is not None:
                audit.commit()
            wall = time.perf_counter() - t_start
            result = self._result(name, str(dst), written, wall, vs, fps, rects, origin, det, depth, width, height)
            if self.report_path is not None:
                _write_json(Path(self.report_path), result.report)
            if self.chart_path is not None:
                self.times.chart(self.chart_path, written)
            plugins.hook.deid_finished(result=result)
            return result
        except BaseException:
            self.stop.set()
            raise
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=10)
            if not committed:
                if enc is not None:
                    try:
                        enc.close()
                    except Exception:  # the real error is already propagating
                        log.debug("encoder close after failure raised", exc_info=True)
                if os.path.exists(tmp):
                    os.unlink(tmp)
                if audit is not None:
                    audit.abort()
            if det is not None:
                det.close()
            if container is not None:
                container.close()

    # -- setup -----------------------------------------------------------------------------------
    def _open_input(self, name: str):
        import av

        try:
            container = av.open(self.src if not isinstance(self.src, os.PathLike) else os.fspath(self.src), mode="r")
        except FileNotFoundError:
            raise DeidError(f"input {name!r} does not exist; check the path") from None
        except PermissionError:
            raise DeidError(f"input {name!r} cannot be read (permission denied); check its permissions") from None
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise DeidError(
                f"input {name!r} is not a readable video ({exc}); it may be corrupt, truncated or not a media file "
                f"(check it with ffprobe)"
            ) from None
        if not container.streams.video:
            container.close()
            raise DeidError(f"input {name!r} has no video stream; give a video file")
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        as_ = container.streams.audio[0] if container.streams.audio else None
        return container, vs, as_

    def _detector_options(self, plugins: Any) -> dict:
        """The explicit detector options plus the implied ones (``threshold``, ``threads``) that
        the detector's factory takes; an implied option it does not take is left out, with a
        warning in the report."""
        options = dict(self.detector_options)
        for key, value in self.implied_options.items():
            if _factory_accepts(plugins, "detector", self.detector, key):
                options[key] = value
            else:
                self.warnings.append(f"detector {self.detector!r} has no {key!r} option; {key}={value!r} was not passed to it")
        return options

    def _make(self, kind: str, spec: Any, options: dict, plugins: Any) -> Any:
        if not isinstance(spec, str):
            if options:
                raise ConfigError(f"{kind} options given with an already built {kind} {spec!r}; pass a name instead")
            return spec
        return plugins.create(kind, spec, **options)

    def _settings(self, rects: list[Rect], origin: str) -> dict[str, Any]:
        return {"region": [list(r.as_xywh()) for r in rects], "region_origin": origin, "batch": self.batch,
                "detect_scale": self.detect_scale,
                "queue_size": self.queue_size, "carry": self.temporal.carry, "max_gap": self.temporal.max_gap,
                "every": self.temporal.every, "edge_carry": self.temporal.edge_carry, "lookahead": self.temporal.lookahead,
                "cut_threshold": self.cut_threshold, "detector_threads": self.detector_threads,
                **self.anonymizer.settings()}

    # -- threads ---------------------------------------------------------------------------------
    def _decode_loop(self, container, vs, as_, q: queue.Queue, name: str) -> None:
        import av

        audio: list = []
        index = 0
        streams = [vs] + ([as_] if as_ is not None else [])
        try:
            t0 = time.perf_counter()
            for packet in container.demux(streams):
                if self.stop.is_set():
                    return
                if packet.stream.type == "audio":
                    if packet.size:
                        audio.append(packet)
                    continue
                if packet.size:
                    self.video_packets += 1
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:
                    raise DeidError(
                        f"input {name!r} is corrupt near frame {index} ({exc}); repair or re-copy it"
                    ) from None
                for frame in frames:
                    if frame.format.name not in ("yuv420p", "yuvj420p") or frame.width % 2 or frame.height % 2:
                        frame = self._to_yuv420p(frame)
                    frame.pict_type = 0  # let the encoder choose frame types
                    item = _Item(index, frame, audio)
                    audio = []
                    index += 1
                    self.times.add("decode", time.perf_counter() - t0)
                    if not _put(q, item, self.stop, self.times, "queue wait (decode)"):
                        return
                    t0 = time.perf_counter()
            self.decoded = index
            _put(q, _Item(-1, None, audio), self.stop, self.times, "queue wait (decode)")
            _put(q, _END, self.stop, self.times, "queue wait (decode)")
        except BaseException as exc:  # handed to the consumer, which re-raises it
            if isinstance(exc, av.FFmpegError):
                exc = DeidError(f"input {name!r} could not be decoded at frame {index} ({exc}); it may be corrupt or truncated")
            _put(q, _Failure(exc), self.stop, self.times, "queue wait (decode)")

    def _to_yuv420p(self, frame: Any) -> Any:
        """Frames in other pixel formats are converted; odd sizes are padded to even (last
        row/column repeated), since 4:2:0 H.264 cannot code odd sizes."""
        w, h = frame.width, frame.height
        out = frame.reformat(format="yuv420p") if frame.format.name not in ("yuv420p", "yuvj420p") else frame
        if w % 2 == 0 and h % 2 == 0:
            return out
        import av

        ew, eh = w + (w & 1), h + (h & 1)
        msg = f"odd picture size {w}x{h} padded to {ew}x{eh} (4:2:0 needs even sizes; last row/column repeated)"
        if msg not in self.warnings:
            self.warnings.append(msg)
        src = frame_planes(out, writable=False)
        padded = av.VideoFrame(ew, eh, "yuv420p")
        for s, d in zip(src, frame_planes(padded)):
            d[: s.shape[0], : s.shape[1]] = s
            d[s.shape[0]:, : s.shape[1]] = s[-1:, :]
            d[:, s.shape[1]:] = d[:, s.shape[1] - 1: s.shape[1]]
        padded.pts, padded.time_base = frame.pts, frame.time_base
        padded.color_range, padded.colorspace = out.color_range, out.colorspace
        return padded

    def _detect_loop(self, det: Any, rects: list[Rect], q_in: queue.Queue, q_out: queue.Queue) -> None:
        pending: collections.deque[_Item] = collections.deque()
        chunk: list[_Item] = []
        try:
            while True:
                item = _get(q_in, self.stop, self.times, "queue wait (detect)")
                if item is _END:
                    break
                if isinstance(item, _Failure):
                    _put(q_out, item, self.stop, self.times, "queue wait (detect)")
                    return
                if item.frame is None:  # trailing audio
                    self._run_chunk(det, rects, chunk, pending, q_out)
                    chunk = []
                    for idx, regs in self.temporal.flush():
                        self._emit(pending, idx, regs, q_out)
                    _put(q_out, item, self.stop, self.times, "queue wait (detect)")
                    continue
                chunk.append(item)
                if sum(1 for c in chunk if c.index % self.every == 0) >= self.batch:
                    self._run_chunk(det, rects, chunk, pending, q_out)
                    chunk = []
            if not self.stop.is_set():
                self._run_chunk(det, rects, chunk, pending, q_out)
                for idx, regs in self.temporal.flush():
                    self._emit(pending, idx, regs, q_out)
                _put(q_out, _END, self.stop, self.times, "queue wait (detect)")
        except BaseException as exc:
            _put(q_out, _Failure(exc), self.stop, self.times, "queue wait (detect)")

    def _run_chunk(self, det: Any, rects: list[Rect], chunk: list[_Item], pending, q_out) -> None:
        if not chunk:
            return
        todo = [c for c in chunk if c.index % self.every == 0]
        crops, owners = [], []
        with self.times.stage("crop", count=len(todo) * len(rects)):
            for c in todo:
                for k, r in enumerate(rects):
                    crops.append(crop_rgb(c.frame, r, self.detect_scale, reformatter=self._reformatter(k)))
                    owners.append(c.index)
        found: dict[int, list[Detections]] = {c.index: [] for c in todo}
        if crops:
            before = _detector_stage_seconds(det)
            t0 = time.perf_counter()
            images = [c.image for c in crops]
            # the detector frame-context seam (Detector.detect_frames); plain detect() for detectors without it
            results = det.detect_frames(images, owners) if hasattr(det, "detect_frames") else det.detect(images)
            self.times.add_detector(before, _detector_stage_seconds(det), time.perf_counter() - t0)
            if len(results) != len(crops):
                raise SurgboxError(f"detector {getattr(det, 'name', det)!r} returned {len(results)} results for {len(crops)} images")
            for idx, crop, d in zip(owners, crops, results):
                found[idx].append(crop.to_frame(d))
        with self.times.stage("temporal", count=len(chunk)):
            finals = []
            for c in chunk:
                pending.append(c)
                dets = None
                if c.index in found:
                    parts = found[c.index]
                    dets = _concat(parts)
                    self.detected_frames += 1
                    self.detections += len(dets)
                finals.extend(self.temporal.push(c.index, dets, cut=self._is_cut(c.frame, rects)))
        for idx, regs in finals:
            self._emit(pending, idx, regs, q_out)

    def _reformatter(self, k: int) -> Any:
        """The swscale context kept for region ``k`` (detect thread only): set-up is most of a
        fresh conversion's cost."""
        if k not in self._reformatters:
            from av.video.reformatter import VideoReformatter

            self._reformatters[k] = VideoReformatter()
        return self._reformatters[k]

    def _is_cut(self, frame: Any, rects: list[Rect]) -> bool:
        """Scene cut: the regions' luma, averaged over 16x16 blocks (so motion and texture do
        not count), changed by more than ``cut_threshold`` on average (0-255) since the
        previous frame."""
        if self.cut_threshold is None:
            return False
        y = frame_planes(frame, writable=False)[0]
        thumbs = [_block_means(y[r.y:r.y2, r.x:r.x2], 16) for r in rects]
        prev, self._thumbs = self._thumbs, thumbs
        if prev is None:
            return False
        cut = any(float(np.abs(a - b).mean()) > self.cut_threshold for a, b in zip(thumbs, prev))
        self.cuts += cut
        return cut

    def _emit(self, pending, idx: int, regs: list[Region], q_out) -> None:
        item = pending.popleft()
        assert item.index == idx, (item.index, idx)
        item.regions = regs
        _put(q_out, item, self.stop, self.times, "queue wait (detect)")

    def _anonymize_loop(self, rects: list[Rect], q_in: queue.Queue, q_out: queue.Queue) -> None:
        """Hide the regions of each frame (own thread: Pillow and the blend kernel release the GIL)."""
        try:
            while True:
                item = _get(q_in, self.stop, self.times, "queue wait (anonymize)")
                if item is _END or isinstance(item, _Failure):
                    _put(q_out, item, self.stop, self.times, "queue wait (anonymize)")
                    return
                if item.frame is not None and item.regions:
                    with self.times.stage("blur"):
                        self._anonymize(item.frame, rects, item.regions)
                if not _put(q_out, item, self.stop, self.times, "queue wait (anonymize)"):
                    return
        except BaseException as exc:
            _put(q_out, _Failure(exc), self.stop, self.times, "queue wait (anonymize)")

    def _encode_loop(self, enc, open_output, q: queue.Queue, audit, time_base, fps, total, t_start) -> int:
        """Encode pictures and copy audio in order. The output is opened at the first picture
        (``open_output(rotation=...)``) so the input's display rotation reaches the header; audio
        demuxed before it waits in ``early_audio`` (a few packets)."""
        written = 0
        last_report = 0.0
        early_audio: list[Any] | None = []  # None once the output is open

        def open_now(rotation: float) -> None:
            nonlocal early_audio
            with self.times.stage("setup", count=0):
                open_output(rotation=rotation)
            pending, early_audio = early_audio or [], None
            for p in pending:
                enc.copy_audio(p)

        while True:
            item = _get(q, self.stop, self.times, "queue wait (encode)")
            if item is _END:
                if early_audio is not None:
                    open_now(0.0)
                if self.progress is not None:
                    self.progress(Progress(written, total, time.perf_counter() - t_start, done=True))
                return written
            if isinstance(item, _Failure):
                raise item.exc
            if item.audio:
                if early_audio is not None:
                    early_audio.extend(item.audio)
                else:
                    with self.times.stage("write", count=0):
                        for p in item.audio:
                            enc.copy_audio(p)
                self.audio_packets += len(item.audio)
            if item.frame is None:
                continue
            frame = item.frame
            if early_audio is not None:
                open_now(float(getattr(frame, "rotation", 0) or 0))
            if item.regions:
                self.frames_with_regions += 1
                self.regions_total += len(item.regions)
                self.tracks.update(r.track for r in item.regions)
            pts = frame.pts
            if pts is None:  # a stream without timestamps (raw formats): the nominal frame rate
                time_ns = round(written * 1_000_000_000 / float(fps))
            else:
                time_ns = int(round(Fraction(pts) * time_base * 1_000_000_000))
            with self.times.stage("write"):
                enc.write_video(frame, time_ns)
            if audit is not None:
                audit.frame(item.index, pts, time_base, item.regions)
            written += 1
            now = time.perf_counter()
            if self.progress is not None and now - last_report >= 0.25:
                last_report = now
                self.progress(Progress(written, total, now - t_start))

    def _anonymize(self, frame: Any, rects: list[Rect], regions: list[Region]) -> None:
        planes = frame_planes(frame)
        boxes = [r.box for r in regions]
        for rect in rects:
            inside = [b for b in boxes if b[0] < rect.x2 and b[2] > rect.x and b[1] < rect.y2 and b[3] > rect.y]
            if not inside:
                continue
            cx0, cy0 = rect.x // 2, rect.y // 2
            cx1, cy1 = (rect.x2 + 1) // 2, (rect.y2 + 1) // 2
            views = [planes[0][rect.y:rect.y2, rect.x:rect.x2], planes[1][cy0:cy1, cx0:cx1], planes[2][cy0:cy1, cx0:cx1]]
            shifted = [(b[0] - rect.x, b[1] - rect.y, b[2] - rect.x, b[3] - rect.y) for b in inside]
            self.anonymizer.apply(views, shifted)

    # -- result ----------------------------------------------------------------------------------
    def _result(self, name, dst, frames, wall, vs, fps, rects, origin, det, depth, width, height) -> DeidResult:
        duration = float(vs.duration * vs.time_base) if vs.duration else (frames / float(fps) if fps else None)
        report = {
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
            "audio_packets_copied": self.audio_packets,
            "detected_frames": self.detected_frames,
            "detections": self.detections,
            "tracks": len(self.tracks),
            "scene_cuts": self.cuts,
            "frames_with_regions": self.frames_with_regions,
            "regions": self.regions_total,
            "queue_depth": depth,
            "detector": _detector_info(det),
            "settings": self._settings(rects, origin),
            "warnings": list(self.warnings),
            "timing": self.times.to_dict(frames, wall),
        }
        return DeidResult(src=name, dst=dst, frames=frames, faces=len(self.tracks), seconds=wall, report=report)


def _factory_accepts(plugins: Any, kind: str, name: str, option: str) -> bool:
    """Whether the factory of plugin ``kind``/``name`` takes the keyword ``option`` (named in its
    signature, or ``**kwargs``); ``True`` when that cannot be told or the plugin cannot run here
    (building it then raises the plugin's own error)."""
    import importlib
    import inspect

    entry = plugins.entry(kind, name)
    if entry.unavailable_reason() is not None:
        return True
    factory = entry.factory
    target = getattr(factory, "target", None)  # a lazy("module:Attribute") factory: look at the attribute
    if isinstance(target, str) and ":" in target:
        module, _, attr = target.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == option or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _block_means(plane: np.ndarray, k: int) -> np.ndarray:
    """Mean of each ``k x k`` block of a 2-D ``uint8`` plane (partial blocks at the edges
    average the pixels they have), rounded to integers, as ``float32``."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(plane)).reduce(k), np.float32)


def _concat(parts: list[Detections]) -> Detections:
    if len(parts) == 1:
        return parts[0]
    parts = [p for p in parts if len(p)]
    if not parts:
        return Detections.empty()
    return Detections(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]))


def _detector_info(det: Any) -> dict[str, Any]:
    try:
        settings = dict(det.settings()) if hasattr(det, "settings") else {}
    except Exception as exc:  # audit must not fail on a detector's settings()
        settings = {"error": f"{type(exc).__name__}: {exc}"}
    return {"name": getattr(det, "name", type(det).__name__), "version": str(getattr(det, "version", "")),
            "class": f"{type(det).__module__}.{type(det).__qualname__}", "settings": settings}


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    import json

    atomic_write(path, (json.dumps(data, indent=2, default=str) + "\n").encode("utf-8"), mode=0o666)
