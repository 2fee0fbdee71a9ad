"""De-identifying an event's recording inside the box (``surgbox events deid ID``).

Each segment is read from the encrypted store (a decrypting, seekable reader) and
:func:`surgbox.deid.deidentify` writes the blurred copy straight into a new store object of the
event (encrypted with its key, fragmented MP4 into a writer that never seeks): no plaintext frame,
file or temporary file touches a disk. The copy ``segment-0001.deid.mp4`` (``-2``, ``-3`` ... when
taken) is a ``deid`` file of the event; size and SHA-256 are read back, which also authenticates it.
The scan region is ``auto`` by default: the room-camera slot of the layout the recorder stored in
the video's metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..deid import deidentify
from ..types import DeidResult
from .errors import CatalogError, NotFoundError
from .files import EventFiles
from .model import Event, FileRecord


def deid_name(source: str, taken: set[str]) -> str:
    """``segment-0001.mp4`` -> ``segment-0001.deid.mp4`` (``segment-0001.deid-2.mp4`` ... when taken)."""
    stem = source[: -len(".mp4")] if source.endswith(".mp4") else source
    name, n = f"{stem}.deid.mp4", 1
    while name in taken:
        n += 1
        name = f"{stem}.deid-{n}.mp4"
    return name


def sources(ev: Event, names: Sequence[str] | None) -> list[FileRecord]:
    """The recordings to de-identify: ``names`` (segments), else every segment in name order."""
    if names:
        recs = [ev.file(n) for n in names]
        wrong = [r.name for r in recs if r.kind != "segment"]
        if wrong:
            raise CatalogError(f"{', '.join(wrong)}: only recordings (kind segment) are de-identified")
        return recs
    recs = sorted((f for f in ev.files if f.kind == "segment"), key=lambda f: f.name)
    if not recs:
        raise NotFoundError(f"event {ev.id} has no recording to de-identify (no segment file)")
    return recs


def copies_of(ev: Event, source: FileRecord) -> list[FileRecord]:
    """The event's earlier de-identified copies of ``source``."""
    stem = source.name[: -len(".mp4")] if source.name.endswith(".mp4") else source.name
    return [f for f in ev.files if f.kind == "deid" and (f.name == f"{stem}.deid.mp4" or f.name.startswith(f"{stem}.deid-"))]


def run(ev: Event, files: EventFiles, recs: Sequence[FileRecord], *, replace: bool,
        register: Callable[[FileRecord, str, str, int, str, DeidResult, list[FileRecord]], FileRecord],
        progress: Callable[[Any], None] | None = None, plugins: Any = None,
        runner: Callable[..., DeidResult] | None = None, **options: Any) -> Iterator[FileRecord]:
    """De-identify each of ``recs`` into a new object of the event; ``register(source, name, store
    key, size, sha256, result, replaced)`` records it in the catalog. Yields the new file records.
    An earlier copy refuses the run unless ``replace`` (then it is replaced once the new one is in).
    ``runner``: called as :func:`~surgbox.deid.deidentify` is (``runner(src, dst, progress=...,
    plugins=..., **options)``), e.g. the segment join of ``surgbox deid-batch``; default
    :func:`~surgbox.deid.deidentify`."""
    runner = runner or deidentify
    taken = {f.name for f in ev.files}
    for rec in recs:
        old = copies_of(ev, rec)
        if old and not replace:
            raise CatalogError(f"event {ev.id} already has a de-identified copy of {rec.name} ({old[0].name}); "
                               f"give --replace to make a new one in its place")
        name = deid_name(rec.name, taken)
        key = files.names.object_key(name)
        with files.reader(rec.store_key) as src, files.writer(name, "deid") as dst:
            result = runner(src, dst, progress=progress, plugins=plugins, **options)
        size, sha256 = files.digest(key)
        taken.add(name)
        yield register(rec, name, key, size, sha256, result, old)
