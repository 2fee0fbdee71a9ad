"""The live recorder: sources -> sync -> compositor -> encoder -> writer, on one master clock.

>>> with Recorder(sources, layout=layouts.paper(), output="case.mp4", duration=60) as rec:  # doctest: +SKIP
...     rec.snapshot("room")
...     rec.wait()

Threads: every source captures on its own thread into its bounded queue; the pipeline thread
(``surgbox-recorder``, :mod:`surgbox.recording.pipeline`) runs the output ticks: it composes,
encodes, aligns audio by capture time and serves snapshot requests; the writer thread
(``surgbox-recorder-writer``, :mod:`surgbox.recording.writer`) muxes the packets into the
crash-safe file, writes the data track and syncs the destination; PNG snapshots are written by
a helper thread (:mod:`surgbox.recording.snapshots`). Memory is bounded by the queue sizes;
nothing grows with the recording's length.

Where the files go is a :class:`~surgbox.recording.sinks.RecordingSink`: a path gets a
:class:`~surgbox.recording.sinks.FileSink` (plain files beside it), a store a
:class:`~surgbox.recording.store_sink.StoreSink` (encrypted), a catalog event
:class:`surgbox.catalog.recording_sink.EventSink`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import attrs

from ..clock import NS_PER_S, Clock
from ..errors import ConfigError, SourceError, SurgboxError
from ..interfaces import Compositor, Encoder, Source
from ..mux import Mp4Muxer
from ..packets import FragmentInfo, PacketConsumer, PacketTee
from ..plugins import get_plugins
from ..readings import DataTrackWriter
from ..types import Layout, RecordingInfo, SegmentInfo
from .display import fanout
from .metadata import container_tags, describe_source, sidecar_meta
from .options import FALLBACK_ITEM_RATE, RecorderOptions
from .pipeline import TickLoop, first_tick, make_aligner, make_selectors
from .sinks import FileSink, RecordingSink, source_paths
from .snapshots import SnapshotRequest, SnapshotService
from .writer import OutputWriter

log = logging.getLogger("surgbox.recorder")

@attrs.define(eq=False, init=False)
class Recorder:
    """Records ``sources`` into one composite video at ``output``: a path (plain files beside
    it; an existing file is refused unless ``overwrite=True``), a binary file object, or a
    :class:`~surgbox.recording.sinks.RecordingSink`.

    Components: ``layout`` (slots name the sources they show); ``encoder`` / ``compositor``
    (instances; default the ``libx264`` / ``default`` plugins); ``plugins`` for the defaults and
    the lifecycle hooks; ``clock``; ``consumers``: extra :class:`~surgbox.packets.PacketConsumer`
    s (an upload spooler) that get every encoded packet too, on the writer thread (one that
    fails is detached; it never stops the recording); ``preview``: a
    :class:`~surgbox.recording.preview.PreviewTap` offered every composite on the pipeline
    thread (it never blocks; JPEGs are made on its own thread, only while someone watches; one
    that fails is detached); ``display``: a :class:`~surgbox.recording.display.DisplayOutput`
    showing every composite on a monitor (it drops at the display, never at the encoder). How it runs is
    ``options`` (a :class:`~surgbox.recording.options.RecorderOptions`), or its fields as
    keyword arguments (``fps=25, duration=60``); they are readable as attributes
    (``rec.fps``).
    """

    sources: tuple[Source, ...]
    layout: Layout
    output: str | os.PathLike | IO[bytes] | RecordingSink
    encoder: Encoder | None
    compositor: Compositor | None
    plugins: Any
    clock: Clock | None
    consumers: tuple[PacketConsumer, ...]
    options: RecorderOptions
    preview: Any
    _sink: RecordingSink
    _thread: threading.Thread | None = None
    _stop_evt: threading.Event = attrs.Factory(threading.Event)
    _done_evt: threading.Event = attrs.Factory(threading.Event)
    _error: BaseException | None = None
    _loop: TickLoop | None = None
    _writer: OutputWriter | None = None
    _muxer: Mp4Muxer | None = None
    _tee: PacketTee | None = None
    _snaps: SnapshotService | None = None
    _info: RecordingInfo | None = None
    _meta: dict[str, Any] = attrs.Factory(dict)
    _snapshot_entries: list[dict[str, Any]] = attrs.Factory(list)
    _failed_sources: dict[str, str] = attrs.Factory(dict)
    _started: list[Source] = attrs.Factory(list)
    _event_id: str | None = None
    _announced: int = 0
    _stopped_stats: dict[str, Any] | None = None
    _sink_closed: bool = False
    _display: Any = None  # a DisplayOutput (recording.display), or None

    def __init__(self, sources: Sequence[Source], layout: Layout, output: str | os.PathLike | IO[bytes] | RecordingSink, *,
                 encoder: Encoder | None = None, compositor: Compositor | None = None, plugins: Any = None,
                 clock: Clock | None = None, consumers: Sequence[PacketConsumer] = (), options: RecorderOptions | None = None,
                 preview: Any = None, display: Any = None, **option_values: Any):
        unknown = sorted(set(option_values) - set(RecorderOptions.names()))
        if unknown:
            raise ConfigError(f"unknown recorder option(s) {', '.join(unknown)}; options: {', '.join(RecorderOptions.names())}")
        opts = options or RecorderOptions()
        if option_values:
            try:
                opts = attrs.evolve(opts, **option_values)
            except TypeError as exc:
                raise ConfigError(f"recorder options: {exc}") from None
        delay = max((float(getattr(s, "delay_s", 0) or 0) for s in sources), default=0.0)
        if delay > opts.latency_s:  # a source that hands its frames on late (live de-identification)
            opts = attrs.evolve(opts, latency_s=round(delay, 3))
        self.__attrs_init__(tuple(sources), layout, output, encoder, compositor, plugins, clock, tuple(consumers), opts, preview, None)  # type: ignore[arg-type]
        opts.check_against(self.sources, layout)
        self._display = display
        if isinstance(output, RecordingSink):
            if opts.sidecar is not None or opts.snapshots is not None:
                raise ConfigError("sidecar=/snapshots= apply to a path or file output; a RecordingSink names its own files")
            self._sink = output
        else:
            self._sink = FileSink(output, opts.sidecar, opts.snapshots, overwrite=opts.overwrite,
                                  inputs=source_paths(self.sources))

    def __getattr__(self, name: str) -> Any:
        if name in RecorderOptions.names():
            return getattr(object.__getattribute__(self, "options"), name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- properties -----------------------------------------------------------------------------
    @property
    def sink(self) -> RecordingSink:
        """Where the files go (a :class:`FileSink` for a path or file object output)."""
        return self._sink

    @property
    def sidecar(self) -> Path | None:
        """The sidecar path of a plain-file recording (``None`` for other sinks)."""
        return self._sink.sidecar if isinstance(self._sink, FileSink) else None

    @property
    def event_id(self) -> str | None:
        return self._event_id or self.options.event_id

    @property
    def audio_source(self) -> Source | None:
        audio = [s for s in self.sources if s.media == "audio"]
        if self.options.audio is not None:
            return next(s for s in audio if s.name == self.options.audio)
        return audio[0] if audio else None

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done_evt.is_set()

    @property
    def error(self) -> BaseException | None:
        """The error that ended the recording early (full disk ...), if any."""
        return self._error

    def _plugins(self) -> Any:
        if self.plugins is None:
            self.plugins = get_plugins()  # the process-wide manager only when none was given
        return self.plugins

    def _label(self) -> str:
        return self._sink.label

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.stop()
        except SurgboxError:
            if exc_type is None:
                raise

    def start(self) -> None:
        """Start the sources, open the output and begin recording.

        Raises :class:`ConfigError` for a bad destination (missing folder, existing file),
        :class:`SourceError` when a non-optional source cannot open (every source that did start
        is stopped again), :class:`EncoderError` when the output cannot be created.
        """
        if self._thread is not None:
            raise SurgboxError("this recorder was already started; create a new Recorder for a new recording")
        if self.encoder is None:
            self.encoder = self._plugins().create("encoder", "libx264")
        if self.compositor is None:
            self.compositor = self._plugins().create("compositor", "default")
        self.compositor.configure(self.layout)
        clock = self.clock = self.clock or Clock()
        self._sink.open()  # a bad destination fails before any device opens
        try:  # sources that write files of their own (live hiding's encrypted raw copy)
            for src in self.sources:
                attach = getattr(src, "attach_sink", None)
                if callable(attach):
                    attach(self._sink)
        except BaseException:
            self._sink.abort()
            raise
        for src in self.sources:
            self._size_queue(src)
            try:
                src.start(clock)
            except Exception as exc:
                if src.name in self.options.optional:
                    self._failed_sources[src.name] = str(exc)
                    log.warning("optional source %r did not start (%s); it shows NO SIGNAL", src.name, exc)
                    continue
                self._stop_sources()
                self._sink.abort()
                if isinstance(exc, SourceError):
                    raise SourceError(f"{exc} (mark source {src.name!r} optional to record without it)") from exc
                raise SourceError(f"source {src.name!r} could not start: {type(exc).__name__}: {exc}; fix its options or mark it optional") from exc
            self._started.append(src)
        self._tell_compositor()
        try:
            self._open_output(clock)
        except BaseException:
            self._stop_sources()
            self._abort_output()
            raise
        if self._display is not None:  # its pipeline starts on its own thread; closed when the recording ends
            self._display.start(self.layout.width, self.layout.height, self.options.fps)
        self._thread = threading.Thread(target=self._run, name="surgbox-recorder", daemon=True)
        self._thread.start()

    def _tell_compositor(self) -> None:
        """Give the compositor what the recorder knows before the first tick (optional
        ``Compositor.set_context``): the stale timeout (its CONNECTING phase), the optional sources
        that could not start, the data sources in declaration order and the data timeout."""
        set_context = getattr(self.compositor, "set_context", None)
        if callable(set_context):
            set_context(stale_timeout_s=self.options.stale_timeout_s, failed_sources=sorted(self._failed_sources),
                        data_sources=[s.name for s in self.sources if s.media == "data"],
                        data_timeout_s=self.options.data_timeout_s)

    def _size_queue(self, src: Source) -> None:
        """Raise a source's queue (never lower it) to hold ``stall_budget_s`` of its items."""
        size = getattr(src, "queue_size", None)
        if isinstance(size, int) and not isinstance(size, bool):
            need = self.options.queue_items(getattr(src, "fps", None) if src.media == "video" else FALLBACK_ITEM_RATE)
            if size < need:
                src.queue_size = need  # type: ignore[attr-defined]

    def _open_output(self, clock: Clock) -> None:
        opts = self.options
        ticks = first_tick(clock, opts.fps)
        start_ns = ticks.start_ns
        selectors = make_selectors(self.layout, opts)
        asrc = self.audio_source
        aligner, audio = make_aligner(asrc, start_ns)
        started_at = clock.wall_time(start_ns)
        ev = opts.event
        self._event_id = opts.event_id or str(ev.get("id") or ev.get("event_id") or f"rec-{started_at:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}")
        sources = [describe_source(s, opts, self._failed_sources.get(s.name)) for s in self.sources]
        readings = any(s.media == "data" or getattr(s, "emits_readings", False) for s in self._started)
        data_track = self._sink.data_track_name if readings else None
        assert self.encoder is not None and self.compositor is not None
        self._meta = sidecar_meta(event_id=self._event_id, options=opts, label=self._label(), started_at=started_at,
                                  start_ns=start_ns, layout=self.layout, sources=sources, audio=audio, encoder=self.encoder,
                                  data_track=data_track, snapshots=self._snapshot_entries)
        self._sink.write_sidecar(self._meta)  # fails early on an unwritable folder
        streams = self.encoder.open_codecs(width=self.layout.width, height=self.layout.height, fps=opts.fps,
                                           audio_rate=None if audio is None else audio["sample_rate"],
                                           audio_channels=1 if audio is None else audio["channels"], label=self._label())
        track = None
        if data_track is not None:
            track = DataTrackWriter.open(self._sink.data_track_target(), start_ns, name=data_track)
        writer = OutputWriter(None, self._sink, opts.writer_queue_items, opts.sync_interval_s, track)  # type: ignore[arg-type]
        self._writer = writer
        self._muxer = Mp4Muxer(self._sink.video_target(), metadata=container_tags(self._meta), on_fragment=writer.fragment_done,
                               name=f"{self._meta['encoder']['name']} encoder")
        self._tee = writer.consumer = PacketTee(self._muxer, self.consumers)
        self._tee.open(streams)  # the header is written now
        self._snaps = SnapshotService(self._sink, self._snapshot_entries, lambda: self._sink.write_sidecar(self._meta), self._label)
        self._snaps.start()
        writer.start()
        self._loop = TickLoop(opts, ticks, clock, self.compositor, self.encoder, writer, self._snaps, list(self._started), selectors,
                              aligner, asrc, {**self._meta["event"], "id": self._meta["event"].get("id", self._event_id)},
                              self._announce, self._label, preview=fanout(self.preview, self._display))
        self._info = RecordingInfo(id=self._event_id, path=self._label(), layout=self.layout, sources=tuple(s.name for s in self.sources),
                                   started_at=started_at, metadata=dict(self._meta))
        self._call_hook("recording_started", recording=self._info)

    def _abort_output(self) -> None:
        """The recording could not start: close what was opened, discard what a sink began."""
        if self._writer is not None and self._writer.started:
            self._writer.finish()
        elif self._tee is not None:
            with contextlib.suppress(Exception):
                self._tee.close()
        if self._writer is not None and self._writer.data_track is not None:
            self._writer.data_track.close()
        if self.encoder is not None:
            with contextlib.suppress(Exception):
                self.encoder.close()
        if self._snaps is not None:
            self._snaps.shutdown()
        self._sink.abort()  # discards what a store sink began (the data track's writer too)

    def _call_hook(self, name: str, **kwargs: Any) -> None:
        try:
            getattr(self._plugins().hook, name)(**kwargs)
        except Exception:  # an integrator's hook must not break the recording
            log.exception("lifecycle hook %s failed", name)

    def _announce(self, frag: FragmentInfo) -> None:
        """A fragment is durable: ``segment_finalized`` (pipeline thread)."""
        assert self._info is not None
        self._announced += 1
        seg = SegmentInfo(self.event_id or "", frag.index, self._label(), frag.start_ns, frag.duration_ns, frag.size,
                          frag.offset, frag.init_size)
        self._call_hook("segment_finalized", recording=self._info, segment=seg)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the recording ends (``duration`` reached or an error); True if it ended."""
        if self._thread is None:
            return True
        return self._done_evt.wait(timeout)

    def stop(self) -> dict[str, Any]:
        """End the recording: the last tick is written, the file finalized, sources stopped.

        Returns :meth:`stats`. Raises the error that ended the recording early (e.g.
        :class:`EncoderError` for a full disk, after everything was closed). Idempotent.
        """
        if self._thread is None:
            self._stop_sources()
            return self.stats()
        self._stop_evt.set()
        self._thread.join()
        self._stop_sources()
        if self._error is not None:
            raise self._error
        return self.stats()

    def _stop_sources(self) -> None:
        for src in self._started:
            try:
                src.stop()
            except Exception as exc:  # pragma: no cover - best effort
                log.warning("source %r: stop failed: %s", src.name, exc)

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self, source: str | None = None, *, timeout: float | None = 10.0, trigger: str = "api") -> dict[str, Any]:
        """Save a PNG of the next composite and, if ``source`` is given, of that source's current
        frame at its native resolution. Blocks until written (at most ``timeout`` s) and returns
        the sidecar entry (``t`` seconds on the output time line, file names ...)."""
        if not self.running:
            raise SurgboxError("snapshot: the recorder is not running; call start() first")
        video = [s.name for s in self.sources if s.media == "video"]
        if source is not None and source not in video:
            raise ConfigError(f"snapshot: no video source named {source!r}; video sources: {', '.join(video)}")
        if not self._sink.can_snapshot:
            raise ConfigError("snapshot: no snapshot folder; give Recorder(snapshots=DIR) when the output is a file object")
        assert self.clock is not None and self._snaps is not None
        req = SnapshotRequest(trigger, source, self.clock.now_ns())
        if not self._snaps.request(req):
            raise SurgboxError("snapshot: too many snapshots pending; try again in a moment")
        try:
            return req.done.result(timeout)
        except concurrent.futures.TimeoutError:
            raise SurgboxError(f"snapshot: not served within {timeout:g} s (recorder {self.ticks_behind()} ticks behind); "
                               "try again") from None

    def ticks_behind(self) -> int:
        """How many output ticks are due (their ``latency_s`` included) but not yet written."""
        if self._loop is None or not self.running:
            return 0
        return self._loop.ticks_behind()

    # -- pipeline thread ------------------------------------------------------------------------
    def _run(self) -> None:
        assert self._loop is not None
        k = 0
        try:
            k = self._loop.run(self._stop_evt.wait)
        except BaseException as exc:
            self._error = exc
            log.error("recording %s stopped: %s", self._label(), exc)
            k = self._loop.next_tick
        finally:
            try:
                if self._display is not None:
                    self._display.close()  # the queued pictures shown, before the final stats
                self._finalize(k)
            except BaseException as exc:  # a bug or an unexpected error while finishing: never hang, never "complete"
                self._note_error("finishing", exc)
                self._finalize_failed()
            finally:
                self._done_evt.set()

    def _note_error(self, what: str, exc: BaseException) -> None:
        """An error while finishing: logged; the first one ends the recording as failed."""
        if isinstance(exc, SurgboxError):
            log.error("recording %s: %s failed: %s", self._label(), what, exc)
        else:  # not one of ours (FFmpeg, a bug): keep the traceback
            log.error("recording %s: %s failed", self._label(), what, exc_info=exc)
        if self._error is None:
            if isinstance(exc, SurgboxError):
                self._error = exc
            else:
                self._error = SurgboxError(f"recording {self._label()}: {what} failed: {type(exc).__name__}: {exc}")
                self._error.__cause__ = exc

    def _step(self, what: str, fn: Any) -> bool:
        try:
            fn()
            return True
        except Exception as exc:
            self._note_error(what, exc)
            return False

    def _finalize(self, k: int) -> None:
        assert self.encoder is not None and self._writer is not None and self._loop is not None
        writer, loop = self._writer, self._loop
        if writer.error is None and self.encoder.streams:
            self._step("flushing the encoder", lambda: writer.put_packets(self.encoder.flush()))  # type: ignore[union-attr]
        writer.finish()  # the file's trailer; the data track closed
        if writer.error is not None:
            self._note_error("writing the video", writer.error)
        self._step("closing the encoder", self.encoder.close)
        finished = self._step("finishing the video", self._sink.finish_video)  # fsync / commit, even after an error
        for src in self._started:  # a source's own files (the raw copy) close before the destination
            fin = getattr(src, "finish_outputs", None)
            if callable(fin):
                self._step(f"finishing the files of source {src.name!r}", fin)
        for frag in writer.take_durable() + (writer.take_unsynced() if finished else []):
            loop.announce(frag)
        duration_ns = loop.ticks.output_ns(k)
        assert self._snaps is not None
        self._snaps.shutdown()
        stats = self.stats()
        stats["duration_s"] = duration_ns / NS_PER_S
        self._stopped_stats = stats
        if self._meta.get("audio") is not None and stats.get("audio") is not None:
            self._meta["audio"] = {**self._meta["audio"], "resampled_from": stats["audio"]["resampled_from"],
                                   "error": stats["audio"]["error"]}
        self._meta.update(status="failed" if self._error else "complete", error=None if self._error is None else str(self._error),
                          stopped_at=datetime.now(timezone.utc).isoformat(), duration_s=duration_ns / NS_PER_S,
                          frames=loop.frames_out, stats=stats)
        try:
            self._sink.write_sidecar(self._meta)
        except Exception as exc:
            log.error("cannot write the sidecar of %s: %s", self._label(), exc)
        assert self._info is not None
        info = attrs.evolve(self._info, metadata=dict(self._meta))
        self._sink_closed = True
        try:
            self._sink.close(self._error)
        except Exception as exc:
            log.error("recording %s: closing the destination failed: %s", self._label(), exc)
            if self._error is None:
                self._error = exc
        stats["files"] = [f.to_dict() for f in self._sink.files()]
        stats["error"] = None if self._error is None else str(self._error)
        self._stopped_stats = stats
        self._call_hook("recording_stopped", recording=info, stats=stats)

    def _finalize_failed(self) -> None:
        """After :meth:`_finalize` itself raised: best effort to leave a ``failed`` sidecar and a
        closed destination (each step guarded), so nothing reports the recording complete."""
        steps = [self._write_failed_sidecar]
        if not self._sink_closed:
            self._sink_closed = True
            steps.append(lambda: self._sink.close(self._error))
        for step in steps:
            try:
                step()
            except Exception as exc:
                log.error("recording %s: cleaning up after the failure: %s", self._label(), exc)
        if self._stopped_stats is None:
            with contextlib.suppress(Exception):
                self._stopped_stats = self.stats()
        if self._stopped_stats is not None:
            self._stopped_stats["error"] = str(self._error)
        if self._snaps is not None:
            self._snaps.shutdown()

    def _write_failed_sidecar(self) -> None:
        frames = 0 if self._loop is None else self._loop.frames_out
        self._meta.update(status="failed", error=str(self._error), stopped_at=datetime.now(timezone.utc).isoformat(), frames=frames)
        self._sink.write_sidecar(self._meta)

    # -- stats ----------------------------------------------------------------------------------
    def _source_stats(self, src: Source) -> dict[str, Any]:
        d: dict[str, Any] = {"media": src.media}
        if self._loop is not None:
            d.update(self._loop.selector_stats(src.name))
        try:
            ss = dict(src.stats())
            d["captured"], d["queue_dropped"] = ss.get("captured"), ss.get("dropped")
            d["source"] = ss
        except Exception:  # pragma: no cover - a plugin's broken stats() must not break ours
            pass
        d["error"] = self._failed_sources.get(src.name) or (None if self._loop is None else self._loop.source_errors.get(src.name))
        return d

    def stats(self) -> dict[str, Any]:
        """Counters (safe to call from any thread while recording).

        ``frames``: output frames written; ``fps_out``; ``skipped_ticks``; ``most_behind_s``: the
        furthest the pipeline fell behind the clock (it skips ticks past ``max_behind_s``); ``sources``: per
        source ``fps_in``, ``received``/``shown``/``dropped``/``duplicated`` (video), ``stale``,
        ``captured``/``queue_dropped`` at the source, ``error``; ``audio``: ``av_offset_ms``,
        gap/trimmed samples; ``encoder``: its stats, ``size_bytes`` and ``fragments`` of the
        file; ``writer``: the writer thread's queue (``blocked`` puts, ``max_queued``, ``syncs``,
        ``max_sync_ms``); ``segments`` announced; ``snapshots``; ``error``.
        """
        if self._stopped_stats is not None and not self.running:
            return dict(self._stopped_stats)
        loop = self._loop
        srcs = {src.name: self._source_stats(src) for src in self.sources}
        audio = None if loop is None else loop.audio_stats()
        enc = dict(self.encoder.stats()) if self.encoder is not None and hasattr(self.encoder, "stats") else {}
        if self._muxer is not None:
            enc.update(size_bytes=self._muxer.size_bytes, fragments=self._muxer.fragments)
        frames = 0 if loop is None else loop.frames_out
        return {
            "event_id": self.event_id,
            "frames": frames,
            "fps_out": 0.0 if loop is None else round(loop.rates.get("_out", 0.0), 2),
            "skipped_ticks": 0 if loop is None else loop.skipped,
            "most_behind_s": 0.0 if loop is None else round(loop.most_behind / float(self.options.fps), 3),
            "elapsed_s": frames / float(self.options.fps),
            "sources": srcs,
            "audio": audio,
            "encoder": enc,
            "writer": None if self._writer is None else self._writer.stats(),
            "consumers_failed": {} if self._tee is None else dict(self._tee.failed),
            "segments": self._announced,
            "snapshots": len(self._snapshot_entries),
            **({"display": self._display.stats()} if self._display is not None else {}),
            "error": None if self._error is None else str(self._error),
        }
