"""One task of a batch: de-identify one segment (bytes in, bytes out), in any worker process.

:func:`run_segment` is what a Ray task or a pool process runs. It gets the segment's
stream-copied MP4 as bytes (so a worker on another node needs no access to the store), runs
:func:`surgbox.deid.deidentify` on it with the batch's :class:`~surgbox.deid.DeidOptions` and
the segment's :class:`~surgbox.deid.FrameWindow`, and returns a :class:`SegmentResult`: the
de-identified segment (fragmented MP4 bytes, no audio), its audit frame lines and counters.
Nothing is written to disk but the audit sidecar, in a private temporary directory removed
before the task returns, also when it fails.
"""

from __future__ import annotations

import io
import json
import logging
import os
import resource
import shutil
import tempfile
import time
from typing import Any

import attrs

from .segments import Segment

TEMP_PREFIX = "surgbox-deid-task-"


class _SegmentStart(logging.Filter):
    """A segment's first frame is not at time 0 by design (the join restamps every frame with
    the recording's times): the encoder's warning about it says nothing here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "the MP4 track will start at 0" not in record.getMessage()


@attrs.frozen(eq=False)
class SegmentResult:
    """What a task returns: ``data`` (fragmented MP4 of the segment's frames), ``audit``
    (its frame lines, recording-wide numbers), ``header`` (the audit header), the run's
    ``report`` summary fields, ``seconds`` of work, ``peak_rss`` (bytes, of the worker
    process so far) and ``pid``."""

    index: int
    data: bytes
    audit: list[dict[str, Any]]
    header: dict[str, Any]
    report: dict[str, Any]
    seconds: float
    peak_rss: int
    pid: int


def temp_root(work_dir: str | None) -> str | None:
    """Where a task's temporary directory goes: ``work_dir`` (the batch's own folder, removed by
    the batch, so even a task killed with its worker leaves nothing) when it exists on this
    machine, else the system default. Folders of tasks whose process is gone are removed first."""
    root = work_dir if work_dir and os.path.isdir(work_dir) else None
    base = root or tempfile.gettempdir()
    try:
        names = os.listdir(base)
    except OSError:
        return root
    for name in names:
        if not name.startswith(TEMP_PREFIX):
            continue
        pid = name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    return root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_segment(data: bytes, seg: Segment, options: Any, work_dir: str | None = None,
                fail_marker: str | None = None) -> SegmentResult:
    """De-identify segment ``seg`` given as MP4 ``data`` (see the module doc). ``fail_marker``
    (tests): a file path; when it exists the worker process kills itself mid-task, once (the
    file is removed first), to show that a task lost with its worker is retried."""
    from ..deid import FrameWindow, deidentify
    from ..deid.audit import read_audit

    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=temp_root(work_dir))
    quiet = _SegmentStart()
    enc_log = logging.getLogger("surgbox_ext.encoders.pyav")
    enc_log.addFilter(quiet)
    try:
        audit_path = os.path.join(tmp, "audit.jsonl")
        out = io.BytesIO()
        killer = _killer(fail_marker)
        result = deidentify(io.BytesIO(data), out, options=options, audit=audit_path, progress=killer,
                            window=FrameWindow(seg.first, seg.start, seg.stop))
        header, frames, _summary = read_audit(audit_path)
        rep = result.report
        report = {k: rep.get(k) for k in ("frames", "detections", "tracks", "frames_with_regions", "regions",
                                          "frames_region_hidden", "warnings", "detector")}
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return SegmentResult(seg.index, out.getvalue(), frames, header, report, time.perf_counter() - t0, peak,
                             os.getpid())
    finally:
        enc_log.removeFilter(quiet)
        shutil.rmtree(tmp, ignore_errors=True)


def _killer(marker: str | None) -> Any:
    if not marker:
        return None

    def progress(p: Any) -> None:
        if p.frames >= 1 and os.path.exists(marker):
            try:
                os.unlink(marker)
            except FileNotFoundError:
                return
            os.kill(os.getpid(), 9)

    return progress


def dumps_audit(header: dict[str, Any], frames: list[dict[str, Any]], summary: dict[str, Any]) -> bytes:
    """An audit sidecar (JSON Lines, the format of :mod:`surgbox.deid.audit`) as bytes."""
    lines = [header, *frames, summary]
    return b"".join((json.dumps(x, separators=(",", ":")) + "\n").encode() for x in lines)
