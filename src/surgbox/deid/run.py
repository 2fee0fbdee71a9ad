"""One de-identification run: set up, start the stages, wait, commit or clean up.

::

    decode thread ──► frames ──► detect thread ──► hide thread ──► calling thread
    (decode.py)      (bounded)   (detect.py)       (hide.py)       (encode.py) ──► Output (output.py)

Set-up opens the input, resolves the scan regions, builds the encoder (cheap: no I/O) and
starts decoding, then builds and opens the detector (the model loads while the frame queue
fills). On success the output is committed, then the audit sidecar, the JSON report and the
chart are written and the ``deid_finished`` hook is called (an exception raised by a hook is
logged, never turned into a failed run). On any error, or a ``KeyboardInterrupt``, every stage
thread is stopped and joined **before** the detector, the encoder and the input are closed,
and nothing is left at the destination.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import attrs

from ..errors import DeidError
from ..plugins import get_plugins
from ..types import DeidResult
from .audit import AuditWriter
from .decode import DecodeStage, InputVideo, source_name
from .detect import DetectStage, RegionTracks, detector_info
from .encode import EncodeStage
from .handoff import Workers
from .hide import HideStage
from .options import DeidOptions
from .outofbody import out_of_body_check
from .output import Output, check_sidecars
from .regions import resolve_regions
from .result import Progress, RunStats, build_report, write_json
from .timing import StageTimes

log = logging.getLogger(__name__)


@attrs.frozen
class FrameWindow:
    """A segment of a longer recording (``surgbox deid-batch``): its first decoded picture is
    frame ``first`` of the whole recording, and only frames ``[start, stop)`` are written (and
    audited, under their recording-wide numbers); the frames around them are decoded and
    scanned as context, so detection cadence, tracks and carried boxes match a single pass.
    The input's audio is not written (the caller copies it once for the whole recording)."""

    first: int = attrs.field(validator=attrs.validators.ge(0))
    start: int = attrs.field()
    stop: int = attrs.field()

    @start.validator
    def _check(self, attribute: attrs.Attribute, value: int) -> None:
        if not self.first <= value < self.stop:
            raise ValueError(f"frame window needs first <= start < stop, got {self.first}, {value}, {self.stop}")


@attrs.define(eq=False)
class DeidRun:
    """State of one :func:`~surgbox.deid.deidentify` call: what it reads and writes, the
    stage threads, queues and counters. :meth:`execute` runs it once."""

    src: str | os.PathLike | IO[bytes]
    dst: str | os.PathLike | IO[bytes]
    options: DeidOptions
    audit_path: str | os.PathLike | None = None
    report_path: str | os.PathLike | None = None
    chart_path: str | os.PathLike | None = None
    progress: Callable[[Progress], None] | None = None
    plugins: Any = None
    window: FrameWindow | None = None
    times: StageTimes = attrs.field(factory=StageTimes)
    stats: RunStats = attrs.field(factory=RunStats)
    stop: threading.Event = attrs.field(factory=threading.Event)

    def execute(self) -> DeidResult:
        opts = self.options
        name = source_name(self.src)
        out = Output.prepare(self.dst, self.src, overwrite=opts.overwrite, src_name=name)
        check_sidecars(((self.audit_path, "audit sidecar"), (self.report_path, "report"), (self.chart_path, "chart")),
                       self.src, self.dst, overwrite=opts.overwrite, src_name=name)
        plugins = self.plugins if self.plugins is not None else get_plugins()
        t_start = time.perf_counter()
        workers = Workers(self.stop)
        inp = det = enc = audit = None
        committed = False
        try:
            with self.times.stage("setup"):
                for stale in out.open():
                    self.stats.warn(f"removed {stale!r}, a partial output left by an interrupted run")
                inp = InputVideo.open(self.src, name, opts.extra_streams, opts.decoder)
                for s in inp.dropped:
                    self.stats.warn(f"stream {s} of the input was left out (extra_streams='drop')")
                width, height = inp.width, inp.height
                rects, origin = resolve_regions(opts.region, width, height, metadata=inp.metadata, path=inp.path)
                tracks = RegionTracks.create(opts, rects)
                self.stats.cuts = [0] * len(rects)
                enc = self._make(plugins, "encoder", opts.encoder, opts.encoder_factory_options(out.streaming))
                frame_bytes = width * height * 3 // 2
                budget = opts.queue_memory // max(frame_bytes, 1)  # pictures that fit in queue_memory
                batch = self._batch(budget, tracks.lookahead, width, height)
                # frames held beyond the queue: lookahead, a batch, the two hand-over queues, a margin
                held = tracks.lookahead + batch * opts.every + 2 * max(4, batch) + 4
                depth = max(1, min(opts.queue_size, budget - held))
                if depth < opts.queue_size:
                    log.info("frame queue capped at %d frames (%d MiB of %dx%d pictures)", depth,
                             opts.queue_memory >> 20, width, height)
                q_frames: queue.Queue = queue.Queue(maxsize=depth)
                q_found: queue.Queue = queue.Queue(maxsize=max(4, batch))
                q_hidden: queue.Queue = queue.Queue(maxsize=max(4, batch))
                # decoding starts now and fills the queue while the detector loads
                first = self.window.first if self.window is not None else 0
                workers.start("decode", DecodeStage(inp, self.stop, self.times, self.stats, first).run, q_frames)
                det = self._make(plugins, "detector", opts.detector, opts.detector_factory_options())
                det.open()
                # 4:2:0 needs even sizes: odd inputs are padded by one repeated row/column (decode.to_yuv420p).
                # Opened by the encode stage at the first picture, whose display rotation goes in the header.
                open_output = functools.partial(_open_output, enc, out.target, width=width + (width & 1),
                                                height=height + (height & 1), fps=inp.fps, time_base=inp.time_base,
                                                audio_template=inp.audio if self.window is None else None,
                                                metadata=inp.metadata)
                settings = self._settings(rects, origin)
                if self.audit_path is not None:
                    audit = AuditWriter(Path(self.audit_path))
                    header = {"src": name, "dst": out.label, "detector": detector_info(det), "settings": settings,
                              "decoder": inp.decoder.to_dict(),
                              "regions": [list(r.as_xywh()) for r in rects], "time_base": str(inp.time_base)}
                    try:
                        audit.open(header)
                    except OSError as exc:
                        raise DeidError(f"cannot write the audit sidecar {str(self.audit_path)!r}: {exc}") from None
            workers.start("detect", DetectStage(det, rects, opts, self.stop, self.times, self.stats, tracks, batch).run,
                          q_frames, q_found)
            oob = out_of_body_check(opts, width, height, inp.metadata, inp.path, self.stats)
            workers.start("anonymize", HideStage(opts.make_anonymizer(), rects, self.stop, self.times, self.stats, oob).run,
                          q_found, q_hidden)
            win = self.window
            keep = None if win is None else (win.start, win.stop)
            total = inp.total if win is None else win.stop - win.start
            written = EncodeStage(enc, open_output, audit, inp.time_base, inp.fps, total, t_start, self.progress,
                                  self.stop, self.times, self.stats, keep).run(q_hidden)
            if workers.join():
                raise KeyboardInterrupt
            with self.times.stage("write"):
                enc.close()
            self._check_input(inp, written)
            out.commit()
            committed = True
            if audit is not None:
                audit.commit()
            wall = time.perf_counter() - t_start
            report = build_report(name=name, dst=out.label, stats=self.stats, wall=wall, width=width, height=height,
                                  fps=inp.fps, duration=inp.claimed_duration or (written / float(inp.fps)),
                                  depth=depth, detector=detector_info(det), settings=settings,
                                  input_info=inp.info(self.stats), timing=self.times.to_dict(written, wall))
            report["decoder"] = inp.decoder.to_dict()  # which decoder ran and why (surgbox.deid.decoders)
            result = DeidResult(src=name, dst=out.label, frames=written, faces=len(self.stats.tracks), seconds=wall,
                                report=report)
            for path, what, write in (
                (self.report_path, "report", lambda p: write_json(p, report)),
                (self.chart_path, "chart", lambda p: self.times.chart(p, written, wall=wall, duration=report["duration_s"])),
            ):
                if path is not None:
                    try:
                        write(path)
                    except OSError as exc:
                        raise DeidError(f"{out.label} was written, but the {what} {str(path)!r} could not be: "
                                        f"{exc}") from None
            self._notify(plugins, result)
            return result
        finally:
            interrupted = workers.shutdown()
            if not committed:
                if enc is not None:
                    try:
                        enc.close()
                    except Exception:  # the real error is already propagating
                        log.debug("encoder close after failure raised", exc_info=True)
                out.abort()
                if audit is not None:
                    audit.abort()
            if det is not None:
                det.close()
            if inp is not None:
                inp.close()
            if interrupted:
                log.debug("KeyboardInterrupt while stopping the stages; they were joined first")

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _make(plugins: Any, kind: str, spec: Any, options: dict) -> Any:
        """Build a component by name (an instance passes as is; options were refused for it)."""
        return plugins.create(kind, spec, **options) if isinstance(spec, str) else spec

    def _batch(self, budget: int, lookahead: int, width: int, height: int) -> int:
        """The options' ``batch``, lowered (with a warning) when ``batch * every`` frames, held
        until their batch is scored, would not fit in ``queue_memory`` with the rest."""
        opts = self.options
        batch = opts.batch
        fixed = lookahead + 2 * max(4, batch) + 4
        if batch * opts.every + fixed > budget:
            batch = max(1, (budget - fixed) // opts.every)
            if batch < opts.batch:
                self.stats.warn(f"detector batch lowered from {opts.batch} to {batch}: {opts.batch} x every {opts.every} "
                                f"frames of {width}x{height} would not fit in queue_memory ({opts.queue_memory >> 20} MiB)")
        return batch

    def _settings(self, rects: list, origin: str) -> dict[str, Any]:
        opts = self.options
        tf = opts.make_temporal(bounds=tuple(r.as_xyxy() for r in rects))
        return {"region": [list(r.as_xywh()) for r in rects], "region_origin": origin, **opts.settings(),
                "detector_options": opts.detector_factory_options(), "edge_carry": tf.edge_carry,
                "lookahead": tf.lookahead, **opts.make_anonymizer().settings()}

    def _check_input(self, inp: InputVideo, written: int) -> None:
        """No picture, fewer packets than the index declares, or (with ``strict``) an input that
        ends before its container says: :class:`DeidError`; an incomplete input otherwise warns."""
        name, stats = inp.name, self.stats
        if written == 0:
            raise DeidError(f"input {name!r} has no decodable video frame; check it with ffprobe")
        declared = inp.video.frames
        if declared and stats.video_packets < declared:  # packets, not frames: edit lists may hide frames
            raise DeidError(
                f"input {name!r} is truncated or corrupt: its index declares {declared} video frames but the file "
                f"holds only {stats.video_packets}; re-copy the file, or repair it (e.g. ffmpeg -i IN -c copy OUT.mp4)"
            )
        problem = inp.problem(stats)
        if problem is None:
            return
        read = inp.read_duration(stats) or 0.0
        if self.options.strict:
            raise DeidError(f"input {name!r} is incomplete: {problem}; re-copy it, or run without --strict "
                            f"(strict=False) to de-identify the {stats.decoded} frames that can be read")
        stats.warn(f"input {name!r} is incomplete ({problem}); the {stats.decoded} frames ({read:.2f} s) that could "
                   f"be read were de-identified (--strict makes this an error)")

    @staticmethod
    def _notify(plugins: Any, result: DeidResult) -> None:
        """Call ``deid_finished``; a hook's exception is logged, never fails the finished run."""
        try:
            plugins.hook.deid_finished(result=result)
        except Exception:
            log.exception("a deid_finished hook raised; the run itself succeeded (%s)", result.dst)


def _open_output(enc: Any, target: Any, rotation: float, **kw: Any) -> None:
    enc.open_output(target, rotation=rotation, **kw)
