"""Recording into an event of the catalog: :class:`EventSink`.

The catalog depends on the recorder here, never the reverse: the recorder knows only the
:class:`~surgbox.recording.sinks.RecordingSink` contract, and the CLI (``surgbox record
--event``) or an integrator hands it an ``EventSink``.

>>> sink = EventSink(events=session.events, event_id=ev.id)          # doctest: +SKIP
>>> with Recorder(sources, layouts.paper(), sink, duration=3600) as rec:   # doctest: +SKIP
...     rec.wait()
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs

from ..errors import ConfigError, SurgboxError
from ..interfaces import RecoverableStore
from ..recording.store_sink import StoreSink
from .errors import CatalogError

log = logging.getLogger(__name__)

SEGMENT_NAME = "segment-{n:04d}.mp4"
_FILE_KINDS = {"segment": "segment", "snapshot": "snapshot", "data": "data", "sidecar": "data", "raw": "raw"}


STREAMED_SUFFIXES = ("", ".data.jsonl", ".json")  # the video, its data track, its sidecar


def next_segment_name(taken: set[str], busy: Callable[[str], bool] = lambda name: False) -> str:
    """The first ``segment-NNNN.mp4`` whose name (and sidecar, data track, snapshots) no
    recording of the event uses yet: ``taken`` holds the event's file names (catalog and store);
    ``busy(name)`` tells whether an unfinished write (a crashed or running recording) holds one."""
    used = {name.split(".mp4", 1)[0] for name in taken if name.startswith("segment-")}
    n = 1
    while True:
        name = SEGMENT_NAME.format(n=n)
        if name[: -len(".mp4")] not in used and not any(busy(name + sfx) for sfx in STREAMED_SUFFIXES):
            return name
        n += 1


@attrs.define(eq=False)
class EventSink(StoreSink):
    """Records an event of the catalog (its life cycle around a recording).

    ``events``: an :class:`~surgbox.catalog.events.EventManager` (its session needs the
    ``record`` permission for the event). :meth:`open` checks access, marks the event
    ``recording`` (when it is ``created``; one still ``recording`` after a crash gets another
    segment) and opens :meth:`~surgbox.catalog.events.EventManager.store_for`: objects are
    encrypted with the event's data key, named ``segment-NNNN.mp4`` (the next number no file of
    the event uses: neither a catalog file, nor an object in the event's store, nor an
    unfinished write -- so a second recording after a crash, before ``events recover``, never
    collides with the crashed one),
    ``segment-NNNN.mp4.json`` / ``.data.jsonl`` / ``.snapshot-0001-composite.png``. :meth:`close`
    adds every file with its size and SHA-256 (the sidecar as kind ``data``), then, with
    ``stop_event``, stops the event, which makes its PDF report (``report``). ``registered``
    holds the catalog's file records afterwards.
    """

    events: Any = None
    event_id: str = ""
    stop_event: bool = True
    report: bool = True
    registered: list[Any] = attrs.field(factory=list, init=False)

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"event {self.event_id}: {self.key or 'segment'}"

    def open(self) -> None:
        if self.events is None or not self.event_id:
            raise ConfigError("EventSink needs events= (an EventManager) and event_id=")
        ev = self.events.get(self.event_id)
        if ev.status == "stopped":
            raise CatalogError(f"event {self.event_id} is stopped; create a new event to record again")
        self.store = self.events.store_for(self.event_id)  # checks the record permission
        self.close_store = True
        try:
            taken = {f.name for f in ev.files} | set(self.store.keys())
            self.key = next_segment_name(taken, self._unfinished())
            if ev.status == "created":
                self.events.start_event(self.event_id)
        except BaseException:
            self._close_store()
            raise

    def _unfinished(self) -> Callable[[str], bool]:
        """``busy(name)``: whether an unfinished write of the event's store (crashed, not yet
        recovered, or still running) is the object of file ``name``."""
        files = getattr(self.store, "files", None)  # an EventStore: names map to generated object keys
        inner = getattr(files, "inner", None)
        if files is None or not isinstance(inner, RecoverableStore):  # a store that keeps no unfinished writes
            return lambda name: False
        keys = {p.get("key") for p in inner.partials(live=True)}
        return lambda name: files.names.object_key(name) in keys

    def close(self, error: BaseException | None = None) -> None:
        super().close(error)
        problems = []
        for f in self.files():
            try:
                self.registered.append(self.events.add_file(self.event_id, _FILE_KINDS[f.kind], f.name, size=f.size, sha256=f.sha256))
            except Exception as exc:
                problems.append(f"{f.name}: {exc}")
                log.error("event %s: file %s could not be added to the catalog: %s", self.event_id, f.name, exc)
        if self.stop_event:
            self.events.stop_event(self.event_id, report=self.report)
        if problems:
            raise SurgboxError(f"event {self.event_id}: files not added to the catalog: {'; '.join(problems)}")
