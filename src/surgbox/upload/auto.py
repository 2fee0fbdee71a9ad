"""Automatic upload when an event's recording stops (``[upload] auto = "REMOTE"`` in config.toml).

:class:`AutoUpload` is a lifecycle hook implementation: registered with the recorder's plugin
manager, its ``recording_stopped`` queues the event's upload (quick: one catalog write, in the
recorder's thread); whoever runs the recording then sends it (:meth:`AutoUpload.run`, as
``surgbox record --event`` does right after the recording) or leaves it to ``surgbox upload run``.

>>> auto = AutoUpload.configured(session, event_id)          # doctest: +SKIP
>>> if auto: plugins.add(auto, "surgbox", name=f"auto-upload-{event_id}")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..errors import ConfigError, SurgboxError
from ..hookspecs import hookimpl
from .jobs import Job, Queue
from .remotes import RemoteBook
from .runner import Uploader


@attrs.define(eq=False)
class AutoUpload:
    """Queues the upload of ``event_id`` to ``remote`` when its recording stops. ``job_id`` is the
    queued job afterwards; ``error`` the one-line reason when it could not be queued (the
    recording itself is safe either way)."""

    session: Any
    event_id: str
    remote: str
    job_id: int | None = None
    error: str | None = None

    @classmethod
    def configured(cls, session: Any, event_id: str) -> AutoUpload | None:
        """The hook for ``event_id`` when the home's ``[upload] auto`` names a remote, else ``None``.
        Raises :class:`~surgbox.errors.ConfigError` when ``auto`` is not the name of a remote."""
        name = session.catalog.home.upload_settings().get("auto")
        if name is None or name == "":
            return None
        if not isinstance(name, str):
            raise ConfigError(f"{session.catalog.home.config_path}: [upload] auto must be a remote's name "
                              f"(`surgbox remote list`), got {name!r}")
        try:  # a typo must stop the recording from starting, not surface after it
            RemoteBook(session).require(name)
        except SurgboxError as exc:
            raise ConfigError(f"{session.catalog.home.config_path}: [upload] auto = {name!r}: {exc}") from None
        return cls(session, event_id, name)

    @hookimpl
    def recording_stopped(self, recording: Any, stats: Mapping[str, Any]) -> None:
        if recording.id != self.event_id:
            return
        try:
            self.job_id = Queue(self.session).enqueue(self.event_id, self.remote).id
        except SurgboxError as exc:
            self.error = str(exc)

    def run(self, progress: Callable[[Mapping[str, Any]], None] | None = None) -> Job | None:
        """Send the queued job now (``None`` when none was queued); raises
        :class:`~.errors.UploadError` when it fails (the job stays queued)."""
        if self.job_id is None:
            return None
        return Uploader(self.session, progress=progress).run(self.job_id)
