"""The console's recorder: at most one recording at a time, into an event of the catalog, with a live preview.

:class:`LiveRecorder` builds a :class:`~surgbox.recording.Recorder` from the serve command's
:class:`~surgbox.config.RecordConfig` with an :class:`~surgbox.catalog.recording_sink.EventSink`
(the files go encrypted into the event; the sink checks the ``record`` permission, starts the
event, adds the files and stops it with its PDF report) and a
:class:`~surgbox.recording.preview.PreviewTap` (the picture the browsers show). The recording
belongs to the box, not to a browser: it goes on when the user who started it logs out or idles
out, and anybody with the ``record`` permission for the event may stop it or take a snapshot.
The panel burned into the video gets the event id, place and procedure only (no patient data),
as ``surgbox record --event`` does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from ..catalog.recording_sink import EventSink
from ..errors import SurgboxError
from ..recording.preview import PreviewTap

log = logging.getLogger(__name__)

STATES = ("idle", "recording", "stopping")


@attrs.define(eq=False)
class LiveRecorder:
    """One recording at a time from ``config`` (a :class:`~surgbox.config.RecordConfig`);
    ``plugins`` builds its components; the preview runs at ``preview_fps``, ``preview_width``
    pixels wide. ``on_starting(session, event_id)`` runs before a recording is built (an
    exception refuses the start: a setting the end of the recording needs is wrong);
    ``on_stopped(session, event_id, error)`` runs after a recording ended and its files are in
    the catalog (``session``: the one that started it; ``error``: ``None`` or why it ended badly),
    in the recording's finishing thread. Thread-safe."""

    config: Any
    plugins: Any = None
    preview_fps: float = 5.0
    preview_width: int = 960
    on_starting: Callable[[Any, str], None] | None = None
    on_stopped: Callable[[Any, str, str | None], None] | None = None
    state: str = attrs.field(default="idle", init=False)
    event: dict[str, Any] | None = attrs.field(default=None, init=False)
    started_by: str | None = attrs.field(default=None, init=False)
    last_error: str | None = attrs.field(default=None, init=False)
    last_event: str | None = attrs.field(default=None, init=False)
    tap: PreviewTap | None = attrs.field(default=None, init=False)
    _rec: Any = attrs.field(default=None, init=False, alias="_rec")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")
    _finisher: threading.Thread | None = attrs.field(default=None, init=False, alias="_finisher")
    _stopping: threading.Event = attrs.field(factory=threading.Event, init=False, alias="_stopping")
    _session: Any = attrs.field(default=None, init=False, alias="_session")

    @property
    def source_names(self) -> list[str]:
        return [s.name for s in self.config.sources]

    def start(self, session: Any, event_id: str, *, duration: float | None = None) -> dict[str, Any]:
        """Start recording event ``event_id`` as ``session``'s user (the catalog checks ``record``).
        Raises :class:`SurgboxError` while another recording runs."""
        session.authorize("record", event_id, operation="recording.start")
        with self._lock:
            if self.state != "idle":
                busy = (self.event or {}).get("id", "?")
                raise SurgboxError(f"a recording is already running (event {busy}); stop it first")
            self.state = "starting"
        try:
            events = session.events
            ev = events.get(event_id)  # view; the sink checks record
            if self.on_starting is not None:
                self.on_starting(session, ev.id)
            panel = {**dict(self.config.event), "id": ev.id, "place": ev.place, "procedure": ev.procedure}
            tap = PreviewTap(max_fps=self.preview_fps, width=self.preview_width)
            sink = EventSink(events=events, event_id=ev.id)
            rec = self.config.build_recorder(plugins=self.plugins, output=sink, duration=duration, event=panel,
                                             preview=tap)
            rec.start()
        except BaseException:
            with self._lock:
                self.state = "idle"
            raise
        with self._lock:
            self._rec, self.tap, self._session = rec, tap, session
            self.event = {"id": ev.id, "place": ev.place, "procedure": ev.procedure}
            self.started_by, self.last_error, self.last_event = session.user.name, None, None
            self._stopping.clear()
            self.state = "recording"
            self._finisher = threading.Thread(target=self._finish_when_done, args=(rec,), name="surgbox-console-rec",
                                              daemon=True)
            self._finisher.start()
        return self.status()

    def _finish_when_done(self, rec: Any) -> None:
        """Wait for the recording to end (stop asked, duration reached, an error), then stop it:
        the files go into the catalog and the event is stopped with its report."""
        while not rec.wait(0.2) and not self._stopping.is_set():
            pass
        with self._lock:
            self.state = "stopping"
        error = None
        try:
            rec.stop()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("console recording of %s ended with an error: %s", (self.event or {}).get("id"), error)
        eid = (self.event or {}).get("id")
        tap, session = self.tap, self._session
        with self._lock:
            self.state, self._rec, self.last_error, self.last_event, self._session = "idle", None, error, eid, None
        if tap is not None:
            tap.close()
        if self.on_stopped is not None and eid:
            try:
                self.on_stopped(session, eid, error)
            except Exception:  # the recording is safe in the catalog whatever the callback does
                log.exception("console: after the recording of %s", eid)

    def _authorize(self, session: Any, operation: str) -> dict[str, Any]:
        session.authorize("record", operation=operation)  # refused before saying whether anything runs
        with self._lock:
            if self.state != "recording" or self.event is None:
                raise SurgboxError("no recording is running")
            event = dict(self.event)
        session.authorize("record", event["id"], operation=operation)
        return event

    def stop(self, session: Any) -> None:
        """Ask the running recording to stop (``record`` on its event); it finishes in the background."""
        event = self._authorize(session, "recording.stop")
        session.record_action("recording.stop", event["id"])
        self._stopping.set()  # the finisher stops the recorder within 0.2 s

    def snapshot(self, session: Any) -> dict[str, Any]:
        """A snapshot of the composite, as the foot switch takes (``record`` on the event)."""
        self._authorize(session, "recording.snapshot")
        rec = self._rec
        if rec is None:
            raise SurgboxError("no recording is running")
        entry = rec.snapshot(None, trigger="console")
        return {"index": entry.get("index"), "t": entry.get("t")}

    def wait_idle(self, timeout: float) -> bool:
        """Block until no recording runs (at most ``timeout`` s); True when idle."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.state == "idle":
                return True
            time.sleep(0.1)
        return self.state == "idle"

    def status(self) -> dict[str, Any]:
        """What the record page shows: ``state``, ``event`` (id, place, procedure), ``elapsed_s``,
        ``sources`` (``{name: {media, fps, no_signal, error}}``), ``readings`` (the newest values
        the panel shows per data source), ``frames``, ``skipped``, ``last_error``."""
        rec, tap = self._rec, self.tap
        out: dict[str, Any] = {"state": self.state, "event": self.event, "started_by": self.started_by,
                               "last_error": self.last_error, "last_event": self.last_event, "elapsed_s": 0.0,
                               "sources": {}, "readings": {}, "frames": 0, "skipped": 0, "preview_seq": 0}
        if rec is None:
            return out
        try:
            st = rec.stats()
        except Exception:  # finishing right now
            return out
        out.update(elapsed_s=float(st.get("elapsed_s") or 0.0), frames=st.get("frames", 0),
                   skipped=st.get("skipped_ticks", 0))
        for name, s in (st.get("sources") or {}).items():
            out["sources"][name] = {"media": s.get("media"), "fps": s.get("fps_in"), "no_signal": bool(s.get("stale")) or bool(s.get("error")),
                                    "error": s.get("error")}
        frame = tap.peek() if tap is not None else None
        if frame is not None:
            out["preview_seq"] = frame.seq
        if tap is not None:
            for name, r in dict(tap.readings).items():
                values = getattr(r, "values", {}) or {}
                out["readings"][name] = {k: v for k, v in values.items() if isinstance(v, (int, float)) or v is None}
        return out

    def close(self, timeout: float = 60.0) -> None:
        """Stop a running recording (server shutdown) and wait for its files to be in the catalog."""
        self._stopping.set()
        t = self._finisher
        if t is not None:
            t.join(timeout)
