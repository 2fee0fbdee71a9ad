"""A batch: plan every recording, run its segments on a backend, join, store (see docs/cluster.md).

::

    inputs ──► plan (keyframes, segments) ──► split (stream copy, lazily) ──► backend tasks
                                                                              │ (any order, retried)
    store / out-dir ◄── join (stream copy + audio) ◄── spool (encrypted) ◄────┘

Inputs are :class:`PathInput` (a file, written to its ``dst``) or :class:`EventInput` (a
recording of a catalog event: read from the encrypted store, joined into a new encrypted
``deid`` file of the event through :meth:`EventManager.deidentify
<surgbox.catalog.events.EventManager.deidentify>`, which checks permissions, names, stores and
audits it as ``surgbox events deid`` does). Finished segments wait for their join in a
:class:`~.spool.Spool` (encrypted under a key held only in memory). A recording whose task
fails (after the backend's retries) is abandoned: its other tasks are not started, its spooled
parts are dropped, nothing is written for it, and the batch goes on with the others.

Resuming: a path whose output exists is skipped (unless ``overwrite``); an event recording
that already has a de-identified copy is skipped unless ``replace``, and with ``replace`` when
this batch (same id) already finished it (:mod:`.state`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigError, DeidError, SurgboxError
from ..types import DeidResult
from . import segments as S
from .backends import Job
from .progress import Tracker
from .spool import Spool
from .state import TaskState, batch_id
from .task import SegmentResult, dumps_audit


@attrs.frozen
class PathInput:
    """A video file ``src`` de-identified into ``dst`` (an ``.mp4`` path)."""

    src: Path
    dst: Path

    @property
    def label(self) -> str:
        return str(self.src)

    @property
    def key(self) -> str:
        return f"path:{os.path.abspath(self.src)}"


@attrs.frozen
class EventInput:
    """Recording ``name`` (kind ``segment``, file id ``file_id``) of catalog event ``event_id``."""

    event_id: str
    name: str
    file_id: int

    @property
    def label(self) -> str:
        return f"{self.event_id}/{self.name}"

    @property
    def key(self) -> str:
        return f"event:{self.event_id}:{self.file_id}"


@attrs.define(eq=False)
class _Rec:
    """One recording in flight: its plan, finished parts, state."""

    n: int
    input: PathInput | EventInput
    plan: S.Plan
    options: dict[str, Any]
    done: dict[int, dict[str, Any]] = attrs.field(factory=dict)  # segment -> summary
    failed: str | None = None
    output: Any = None  # deid.output.Output of a path input

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.plan.segments)


def options_kwargs(options: Any) -> dict[str, Any]:
    """A :class:`~surgbox.deid.DeidOptions` as plain keyword arguments (picklable for workers)."""
    out = {}
    for f in attrs.fields(type(options)):
        v = getattr(options, f.name)
        if f.name == "region":
            continue  # resolved per recording by the driver
        out[f.name] = dict(v) if hasattr(v, "items") else v
    if not all(isinstance(out[k], str) for k in ("detector", "encoder", "anonymizer")):
        raise SurgboxError("deid-batch builds the detector, encoder and anonymizer by name in each worker; "
                           "pass plugin names, not built instances")
    return out


@attrs.define(eq=False)
class Batch:
    """One ``deid-batch`` run. ``options``: :class:`~surgbox.deid.DeidOptions`; ``backend``:
    :func:`~.backends.make_backend`'s; ``session``: a catalog session (event inputs);
    ``emit``: called with each progress event (:mod:`.progress`); ``audit_template``: for path
    inputs, where to write each joined audit sidecar (``{name}`` = the input's stem)."""

    options: Any
    backend: Any
    segment_seconds: float = 60.0
    session: Any = None
    emit: Callable[[dict[str, Any]], None] = lambda e: None
    replace: bool = False
    overwrite: bool = False
    work_dir: str | None = None
    in_flight: int | None = None
    audit_template: str | None = None
    fail_marker: str | None = None  # tests: see task.run_segment
    batch: str | None = None
    _tracker: Tracker | None = attrs.field(default=None, alias="_tracker")
    _state: TaskState | None = attrs.field(default=None, alias="_state")
    _task_dir: str | None = attrs.field(default=None, alias="_task_dir")

    # -- entry point -------------------------------------------------------------------------------
    def run(self, inputs: Sequence[PathInput | EventInput]) -> dict[str, Any]:
        """Run the batch; returns the summary (the ``end`` event). Recordings that fail are
        reported (``failed`` in the summary), not raised; a failure of the batch itself raises."""
        tracker = self._tracker = Tracker(self.emit)
        settings = {**self.options.settings(), "region": str(self.options.region), "segment_seconds": self.segment_seconds,
                    "detector": self.options.detector, "detector_options": dict(self.options.detector_options),
                    "encoder": self.options.encoder, "encoder_options": dict(self.options.encoder_options),
                    "expand": self.options.expand, "feather": self.options.feather, "anonymizer": self.options.anonymizer}
        self.batch = self.batch or batch_id([i.key for i in inputs], settings)
        if self.session is not None:
            self._state = TaskState(self.session.catalog.db, self.batch)
        results: dict[str, dict[str, Any]] = {}
        self._audit("deid_batch.start", "ok", {"batch": self.batch, "recordings": len(inputs), **self.backend.describe()})
        ok = False
        try:
            recs = self._plan_all(inputs, results)
            tracker.planned(len(recs), sum(len(r.plan.segments) for r in recs), sum(r.plan.duration_s for r in recs),
                            batch=self.batch, skipped=sum(1 for v in results.values() if v["state"] == "skipped"),
                            **self.backend.describe())
            if recs:
                self._run(recs, results)
            ok = True
        finally:
            summary = {"event": "end", "batch": self.batch, **tracker.summary(),
                       "done": sorted(k for k, v in results.items() if v["state"] == "done"),
                       "skipped": sorted(k for k, v in results.items() if v["state"] == "skipped"),
                       "failed": sorted(k for k, v in results.items() if v["state"] == "failed"),
                       "interrupted": not ok}
            self._audit("deid_batch.finish", "ok" if ok and not summary["failed"] else "failed",
                        {k: (len(v) if isinstance(v, list) else v) for k, v in summary.items()
                         if k in ("batch", "done", "skipped", "failed", "interrupted", "video_s", "elapsed_s")})
            self.emit(summary)
        return summary

    # -- planning ----------------------------------------------------------------------------------
    def _plan_all(self, inputs: Sequence[PathInput | EventInput], results: dict[str, dict[str, Any]]) -> list[_Rec]:
        from ..deid.output import Output

        recs = []
        context = S.context_frames(self.options)
        for inp in inputs:
            why = self._skip(inp)
            if why is not None:
                results[inp.label] = {"state": "skipped"}
                self._tracker.recording(inp.label, "skipped", reason=why)
                continue
            try:
                output = None
                if isinstance(inp, PathInput):
                    output = Output.prepare(inp.dst, inp.src, overwrite=self.overwrite, src_name=str(inp.src))
                    self._check_outputs(inp, inputs)
                with self._source(inp) as src:
                    plan = S.plan(src, seconds=self.segment_seconds, context=context)
                    options = self._resolved_options(plan, src, inp)
                if plan.cut_tail and self.options.strict:  # as surgbox deid --strict: an input cut off at its end is refused
                    raise DeidError(f"input {inp.label!r} is incomplete: its last {plan.cut_tail} video packet(s) are "
                                    f"cut off or corrupt; re-copy it, or run without --strict to de-identify the "
                                    f"frames that can be read")
            except SurgboxError as exc:
                results[inp.label] = {"state": "failed"}
                self._tracker.recording(inp.label, "failed", error=str(exc))
                continue
            rec = _Rec(len(recs), inp, plan, options, output=output)
            if isinstance(inp, EventInput):
                self._state.begin(inp.event_id, inp.file_id, [s.frames for s in plan.segments])
            recs.append(rec)
        return recs

    def _check_outputs(self, inp: PathInput, inputs: list[PathInput | EventInput]) -> None:
        """``inp``'s output is no other input of the batch (``a.mp4 a.deid.mp4 -o .``), and its joined
        audit sidecar follows the output's rule (no input, not the output, an existing one only with
        ``overwrite``): refused before any segment runs."""
        from ..deid.output import check_sidecars, same_file

        other = next((o for o in inputs if isinstance(o, PathInput) and o is not inp and same_file(inp.dst, o.src)), None)
        if other is not None:
            raise ConfigError(f"the output {str(inp.dst)!r} is the input {str(other.src)!r} of this batch; inputs are "
                              f"never overwritten: write into another --out-dir")
        if not self.audit_template:
            return
        path = self.audit_template.replace("{name}", inp.src.stem)
        for other in inputs:
            if isinstance(other, PathInput) and same_file(path, other.src):
                raise ConfigError(f"audit sidecar {path!r} is the input file {str(other.src)!r}; the original is never "
                                  f"overwritten: choose another --audit")
        check_sidecars(((path, "audit sidecar"),), inp.src, inp.dst, overwrite=self.overwrite, src_name=str(inp.src))

    def _skip(self, inp: PathInput | EventInput) -> str | None:
        if isinstance(inp, PathInput):
            if inp.dst.exists() and not self.overwrite:
                return f"{inp.dst} exists (finished earlier; --overwrite redoes it)"
            return None
        from ..catalog.deid import copies_of

        ev = self.session.events.get(inp.event_id)
        copies = copies_of(ev, ev.file(inp.name))
        if copies and self._state is not None and self._state.finished(inp.file_id):
            return f"finished by this batch ({copies[-1].name})"
        if copies and not self.replace:
            return f"already has a de-identified copy ({copies[0].name}; --replace makes a new one)"
        return None

    @contextlib.contextmanager
    def _source(self, inp: PathInput | EventInput) -> Iterator[Any]:
        if isinstance(inp, PathInput):
            yield inp.src
        else:
            with self.session.events.open_file(inp.event_id, inp.name) as f:
                yield f

    def _resolved_options(self, plan: S.Plan, src: Any, inp: PathInput | EventInput) -> dict[str, Any]:
        """The workers' options: the scan region resolved here, once, from the recording's
        layout (a segment carries the metadata, but not a layout sidecar beside a file)."""
        from ..deid.regions import resolve_regions

        path = src if isinstance(src, (str, os.PathLike)) else None
        rects, _origin = resolve_regions(self.options.region, plan.width, plan.height, metadata=plan.metadata, path=path)
        kw = options_kwargs(self.options)
        kw["region"] = ";".join(",".join(str(v) for v in r.as_xywh()) for r in rects)
        return kw

    # -- running -----------------------------------------------------------------------------------
    def _run(self, recs: list[_Rec], results: dict[str, dict[str, Any]]) -> None:
        backend = self.backend
        backend.start()
        spool = Spool.create(self.work_dir)
        self._task_dir = os.path.join(spool.path, "tasks")
        os.mkdir(self._task_dir, 0o700)
        finished = False
        try:
            in_flight = self.in_flight or max(2, 2 * int(backend.describe().get("cpus") or getattr(backend, "workers", 2)))
            for job, res in backend.run(self._jobs(recs), in_flight):
                rec = recs[job.key[0]]
                seg = job.segment
                attempts = backend.attempts.get(job.key, 1)
                video_s = rec.plan.seconds(seg.start, seg.stop)
                if rec.failed is not None:
                    self._tracker.skipped_task(video_s)
                    continue
                if isinstance(res, BaseException):
                    self._fail(rec, spool, f"segment {seg.index}: {_one_line(res)}", seg.index, attempts)
                    self._tracker.task(rec.input.label, seg.index, video_s, ok=False, attempts=attempts,
                                       error=_one_line(res))
                    results[rec.input.label] = {"state": "failed"}
                    continue
                self._keep(rec, spool, seg, res, attempts)
                self._tracker.task(rec.input.label, seg.index, video_s, ok=True, frames=seg.frames,
                                   wall_s=round(res.seconds, 3), attempts=attempts, pid=res.pid, peak_rss=res.peak_rss)
                if rec.complete:
                    try:
                        detail = self._finish(rec, spool)
                    except SurgboxError as exc:
                        self._fail(rec, spool, _one_line(exc), None, None)
                        results[rec.input.label] = {"state": "failed"}
                    else:
                        results[rec.input.label] = {"state": "done"}
                        self._tracker.recording(rec.input.label, "done", **detail)
            finished = True
        finally:
            if finished:
                backend.close()
            else:  # interrupted: do not wait for the tasks in flight
                backend.abort()
            spool.close()
            for rec in recs:
                if rec.output is not None:
                    rec.output.abort()

    def _jobs(self, recs: list[_Rec]) -> Iterator[Job]:
        for rec in recs:
            if rec.failed is not None:
                continue
            try:
                with self._source(rec.input) as src:
                    for seg in rec.plan.segments:
                        if rec.failed is not None:
                            self._tracker.skipped_task(rec.plan.seconds(seg.start, seg.stop))
                            continue
                        data = S.split(src, seg, rec.plan)
                        self._mark(rec, seg.index, "running")
                        yield Job((rec.n, seg.index), data, seg, rec.options, self._task_dir, self.fail_marker)
            except SurgboxError as exc:
                self._fail(rec, None, _one_line(exc), None, None)

    def _keep(self, rec: _Rec, spool: Spool, seg: S.Segment, res: SegmentResult, attempts: int) -> None:
        spool.put(f"{rec.n}-{seg.index}", res.data)
        spool.put(f"{rec.n}-{seg.index}.audit", json.dumps(res.audit, separators=(",", ":")).encode())
        rec.done[seg.index] = {"header": res.header, "report": res.report}
        self._mark(rec, seg.index, "done", attempts=attempts, seconds=round(res.seconds, 3))

    def _fail(self, rec: _Rec, spool: Spool | None, error: str, segment: int | None, attempts: int | None) -> None:
        if rec.failed is not None:
            return
        rec.failed = error
        if spool is not None:
            for i in list(rec.done):
                spool.drop(f"{rec.n}-{i}")
                spool.drop(f"{rec.n}-{i}.audit")
        rec.done.clear()
        if rec.output is not None:
            rec.output.abort()
        if isinstance(rec.input, EventInput):
            if segment is not None:
                self._state.mark(rec.input.file_id, segment, "failed", error=error, attempts=attempts)
                self._state.mark(rec.input.file_id, None, "failed", error="abandoned")
            else:  # the recording failed as a whole (split, join): its segments' outputs are dropped too
                self._state.mark(rec.input.file_id, None, "failed", error=error, every=True)
            self._audit("deid_batch.recording", "failed", {"batch": self.batch, "source_file_id": rec.input.file_id,
                                                            "error": error}, target=rec.input.event_id)
        self._tracker.recording(rec.input.label, "failed", error=error)

    def _mark(self, rec: _Rec, segment: int, state: str, **kw: Any) -> None:
        if isinstance(rec.input, EventInput):
            self._state.mark(rec.input.file_id, segment, state, **kw)

    # -- joining -----------------------------------------------------------------------------------
    def _parts(self, rec: _Rec, spool: Spool) -> list[tuple[S.Segment, Callable[[], Any]]]:
        return [(seg, (lambda name=f"{rec.n}-{seg.index}": spool.open(name))) for seg in rec.plan.segments]

    def _audit_bytes(self, rec: _Rec, spool: Spool, dst: str) -> tuple[bytes, int]:
        frames: list[dict[str, Any]] = []
        for seg in rec.plan.segments:
            with spool.open(f"{rec.n}-{seg.index}.audit") as f:
                frames.extend(json.loads(f.read()))
        header = dict(rec.done[0]["header"])
        header.update(src=rec.input.label, dst=dst, segments=[[s.start, s.stop] for s in rec.plan.segments])
        with_regions = sum(1 for f in frames if f["regions"])
        summary = {"type": "summary", "frames": len(frames), "frames_with_regions": with_regions,
                   "regions": sum(len(f["regions"]) for f in frames), "complete": True}
        hidden = sum(1 for f in frames if "region_hidden" in f)
        if hidden:
            summary["frames_region_hidden"] = hidden
        return dumps_audit(header, frames, summary), with_regions

    def _finish(self, rec: _Rec, spool: Spool) -> dict[str, Any]:
        t0 = time.perf_counter()
        reports = [rec.done[i]["report"] for i in sorted(rec.done)]
        faces = sum(r.get("tracks") or 0 for r in reports)
        warnings = list(dict.fromkeys(w for r in reports for w in r.get("warnings") or ()))  # an incomplete input, ...
        try:
            if isinstance(rec.input, PathInput):
                detail = self._finish_path(rec, spool, faces)
            else:
                detail = self._finish_event(rec, spool, faces, t0)
            if rec.plan.cut_tail:  # a cut-off end (it may or may not have decoded), as surgbox deid warns
                warnings.insert(0, f"input {rec.input.label!r} is incomplete ({rec.plan.cut_tail} video packet(s) "
                                   f"at its end are cut off or corrupt); the {detail['frames']} frames "
                                   f"that could be read were de-identified (--strict makes this an error)")
            if warnings:
                detail["warning"] = "; ".join(warnings + ([detail["warning"]] if detail.get("warning") else []))
            return detail
        finally:
            for seg in rec.plan.segments:
                spool.drop(f"{rec.n}-{seg.index}")
                spool.drop(f"{rec.n}-{seg.index}.audit")

    def _finish_path(self, rec: _Rec, spool: Spool, faces: int) -> dict[str, Any]:
        from .._fs import atomic_write

        out, inp = rec.output, rec.input
        out.open()
        try:
            frames = S.join(rec.plan, self._parts(rec, spool), out.target, fragmented=False, audio_src=inp.src)
            out.commit()
        except BaseException:
            out.abort()
            raise
        rec.output = None
        detail: dict[str, Any] = {"dst": str(inp.dst), "frames": frames, "faces": faces}
        if self.audit_template:
            audit_path = Path(self.audit_template.replace("{name}", inp.src.stem))
            blob, with_regions = self._audit_bytes(rec, spool, str(inp.dst))
            atomic_write(audit_path, blob, mode=0o666)
            detail.update(audit=str(audit_path), frames_with_regions=with_regions)
        return detail

    def _finish_event(self, rec: _Rec, spool: Spool, faces: int, t0: float) -> dict[str, Any]:
        inp = rec.input
        events = self.session.events

        joined = {}

        def join_runner(src: Any, dst: Any, progress: Any = None, plugins: Any = None, **_: Any) -> DeidResult:
            frames = joined["frames"] = S.join(rec.plan, self._parts(rec, spool), dst, fragmented=True, audio_src=src)
            report = {"frames": frames, "segments": len(rec.plan.segments), "batch": self.batch,
                      "duration_s": rec.plan.duration_s}
            return DeidResult(src=inp.label, dst=str(getattr(dst, "name", "") or "<store>"), frames=frames, faces=faces,
                              seconds=time.perf_counter() - t0, report=report)

        [new] = events.deidentify(inp.event_id, [inp.name], replace=self.replace, runner=join_runner)
        self._state.mark(inp.file_id, None, "done", result_file_id=new.id)
        detail: dict[str, Any] = {"dst": f"{inp.event_id}/{new.name}", "file_id": new.id, "frames": joined["frames"],
                                  "faces": faces, "sha256": new.sha256}
        blob, with_regions = self._audit_bytes(rec, spool, new.name)
        audit_name = new.name[: -len(".mp4")] + ".audit.jsonl"
        try:
            events.write_file(inp.event_id, "data", audit_name, io.BytesIO(blob))
            detail.update(audit=f"{inp.event_id}/{audit_name}", frames_with_regions=with_regions)
        except SurgboxError as exc:
            detail["warning"] = f"the audit sidecar was not stored: {_one_line(exc)}"
        return detail

    def _audit(self, action: str, result: str, detail: dict[str, Any], target: str | None = None) -> None:
        if self.session is not None:
            self.session.catalog.audit.record(self.session.user.name, action, target, result, detail)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]
