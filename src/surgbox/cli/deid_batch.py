"""``surgbox deid-batch (--events QUERY | PATHS... --out-dir DIR)``: de-identify many recordings
in parallel, in GOP-aligned segments, on a local process pool or Ray (docs/cluster.md).

Progress goes to stderr (a line per finished task and an overall line with video-seconds per
second and ETA); ``--json`` prints every progress event as a JSON line on stdout instead. The
exit status is 0 when every recording is done or skipped, 1 when one failed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import deid as deid_cli
from ._auth import add_auth_options, login, terminal_safe

# the options of `surgbox deid` that deid-batch shares (same meaning, same defaults)
SHARED = ("overwrite", "region", "detector", "threshold", "detector_option", "detector_threads", "on_detector_error",
          "encoder", "encoder_option", "batch", "detect_scale", "every", "carry", "max_gap", "confirm_hits", "cut_threshold",
          "expand", "feather", "anonymizer", "queue_size", "extra_streams", "strict", "out_of_body")
QUERY_FIELDS = {"from": "date_from", "to": "date_to", "place": "place", "procedure": "procedure",
                "physician": "physician", "patient": "patient", "mrn": "medical_record", "text": "text",
                "status": "status"}


def _deid_actions() -> list[argparse.Action]:
    holder = argparse.ArgumentParser(add_help=False)
    deid_cli.add_parser(holder.add_subparsers())
    deid_parser = holder._subparsers._group_actions[0].choices["deid"]  # type: ignore[union-attr]
    return [a for a in deid_parser._actions if a.dest in SHARED]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deid-batch",
        help="de-identify many recordings in parallel (segments on a process pool or Ray)",
        description=(
            "De-identify the recordings of catalog events (--events QUERY: each stored encrypted as a new deid file "
            "of its event) or video files (PATHS with --out-dir DIR: each into DIR/NAME.deid.mp4). Long recordings "
            "are split at keyframes into segments that run in parallel and are joined losslessly; a rerun resumes, "
            "skipping finished recordings. The face-hiding options are those of `surgbox deid`."
        ),
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="video files to de-identify (with --out-dir)")
    p.add_argument("--events", metavar="QUERY",
                   help="catalog events to de-identify: 'all', or FIELD=VALUE terms (from, to, place, procedure, "
                        "physician, patient, mrn, text, status; id=EVENT repeatable), e.g. \"procedure=chole "
                        "from=2026-01-01\"; default status=stopped")
    p.add_argument("-o", "--out-dir", metavar="DIR", help="with PATHS: write DIR/NAME.deid.mp4 for each (DIR must exist)")
    p.add_argument("--cluster", default="auto", metavar="MODE",
                   help="local (process pool, no Ray) | ray (start a local Ray) | ray://HOST:PORT (join a Ray "
                        "cluster) | auto (Ray at $RAY_ADDRESS when set, else local; default)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes (local) or CPUs of a local Ray (default: the cores of this machine)")
    p.add_argument("--segment-seconds", type=float, default=60.0, metavar="S",
                   help="cut recordings into segments of about S seconds at keyframes (default 60; 0: one task per "
                        "recording)")
    p.add_argument("--gpus-per-task", type=float, default=0.0, metavar="G",
                   help="GPUs each task asks Ray for (default 0; e.g. 0.5 runs two tasks per GPU; pass "
                        "--detector-option device='\"cuda\"' too)")
    p.add_argument("--max-retries", type=int, default=2, metavar="N",
                   help="times a task whose worker died (killed, out of memory) is run again (default 2)")
    p.add_argument("--replace", action="store_true",
                   help="events: make a new de-identified copy where one exists (it replaces the old one)")
    p.add_argument("--batch-id", metavar="ID",
                   help="name of this batch in the catalog's task state (default: a hash of the inputs and "
                        "settings, so the same command resumes)")
    p.add_argument("--work-dir", metavar="DIR",
                   help="folder for the temporary (encrypted) segments (default: the system's temporary folder)")
    p.add_argument("--audit", metavar="FILE.jsonl",
                   help="PATHS: write each joined audit sidecar here ({name} = the input's name; events store "
                        "theirs in the event)")
    p.add_argument("--status", action="store_true",
                   help="show the catalog's batches (tasks by state; with --batch-id: each task) instead of running one")
    p.add_argument("--json", action="store_true", help="print each progress event as a JSON line on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress lines (the summary and errors are still printed)")
    add_auth_options(p)
    for action in _deid_actions():
        p._add_action(action)
    p.set_defaults(func=run)


def parse_query(text: str) -> tuple[dict[str, str], list[str]]:
    """``"procedure=chole from=2026-01-01 id=E1"`` -> (search filters, event ids); ``"all"``:
    no filter. Raises :class:`ConfigError` naming a bad term."""
    try:
        terms = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"--events {text!r}: {exc} (quote values with spaces: procedure='lap chole')") from None
    filters: dict[str, str] = {}
    ids: list[str] = []
    for term in terms:
        if term == "all":
            continue
        key, sep, value = term.partition("=")
        if not sep or not value:
            raise ConfigError(f"--events term {term!r} is not FIELD=VALUE; fields: id, {', '.join(QUERY_FIELDS)}")
        if key == "id":
            ids.append(value)
        elif key in QUERY_FIELDS:
            filters[QUERY_FIELDS[key]] = value
        else:
            raise ConfigError(f"--events field {key!r} is unknown; use one of id, {', '.join(QUERY_FIELDS)}")
    if not ids:
        filters.setdefault("status", "stopped")
    if not terms:
        raise ConfigError("--events needs a query: 'all', or FIELD=VALUE terms such as procedure=chole")
    return filters, ids


def _inputs_from_paths(args: argparse.Namespace) -> list[Any]:
    from ..cluster.batch import PathInput
    from ..deid.output import default_output

    if args.out_dir is None:
        raise ConfigError("PATHS need --out-dir DIR (each input becomes DIR/NAME.deid.mp4)")
    if not Path(args.out_dir).is_dir():
        raise ConfigError(f"--out-dir {args.out_dir!r} is not a folder; create it first")
    out = []
    for p in args.paths:
        if not Path(p).is_file():
            raise ConfigError(f"input {p!r} is not a file; check the path")
        out.append(PathInput(Path(p), default_output(p, args.out_dir)))
    dsts = [str(i.dst) for i in out]
    dup = sorted({d for d in dsts if dsts.count(d) > 1})
    if dup:
        raise ConfigError(f"several inputs would be written to {dup[0]!r} (same file name); give them distinct names")
    if args.audit is not None and len(out) > 1 and "{name}" not in args.audit:
        raise ConfigError(f"--audit {args.audit!r} would be overwritten by each input; put {{name}} in it")
    return out


def _inputs_from_events(session: Any, filters: dict[str, str], ids: list[str]) -> list[Any]:
    from ..catalog.deid import sources
    from ..catalog.search import MAX_LIMIT
    from ..cluster.batch import EventInput

    events = [session.events.get(i) for i in ids] if ids else session.events.search(limit=MAX_LIMIT, **filters)
    out = []
    for ev in events:
        if not any(f.kind == "segment" for f in ev.files):
            continue
        out.extend(EventInput(ev.id, f.name, f.id) for f in sources(ev, None))
    return out


def _printer(args: argparse.Namespace) -> Any:
    def show(e: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(e, default=str), flush=True)
            return
        kind = e["event"]
        if kind == "end" or args.quiet:
            return
        text = None
        if kind == "plan":
            text = (f"batch {e['batch']}: {e['recordings']} recording(s), {e['tasks']} task(s), "
                    f"{e['video_s']:.1f} s of video on {e.get('cluster')}" + (f"; {e['skipped']} skipped" if e.get("skipped") else ""))
        elif kind == "task":
            if e["state"] == "done":
                text = (f"{terminal_safe(e['recording'])} segment {e['segment']}: {e['video_s']:.1f} s of video in "
                        f"{e['wall_s']:.1f} s ({e.get('video_s_per_s', 0):.2f} video-s/s), attempt {e['attempts']}, "
                        f"worker peak {e.get('worker_peak_rss_mb', 0):.0f} MiB")
            else:
                text = f"{terminal_safe(e['recording'])} segment {e['segment']}: failed: {terminal_safe(e.get('error'))}"
        elif kind == "progress":
            rate = e["video_s_per_s"]
            eta = deid_cli._fmt_time(e["eta_s"])
            text = (f"overall: {e['tasks_done']}/{e['tasks']} tasks, {e['video_s_done']:.1f}/{e['video_s']:.1f} s of "
                    f"video, {rate or 0:.2f} video-s/s, ETA {eta}")
        elif kind == "recording":
            what = {"done": f"done -> {terminal_safe(e.get('dst'))}", "skipped": f"skipped: {terminal_safe(e.get('reason'))}",
                    "failed": f"failed: {terminal_safe(e.get('error'))}"}[e["state"]]
            text = f"{terminal_safe(e['recording'])}: {what}"
            if e.get("warning"):
                text += f" (warning: {terminal_safe(e['warning'])})"
        if text:
            print(text, file=sys.stderr, flush=True)

    return show


def _status(args: argparse.Namespace) -> int:
    from ..cluster.state import TaskState, all_batches

    if args.events or args.paths:
        raise ConfigError("--status shows the catalog's batches; give no --events or PATHS with it")
    with login(args) as session:
        session.authorize("deidentify", operation="deid_batch.status")
        db = session.catalog.db
        rows = ([r.to_dict() for r in TaskState(db, args.batch_id).rows()] if args.batch_id else all_batches(db))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("(no batches)" if not args.batch_id else f"(no tasks in batch {terminal_safe(args.batch_id)})")
    for r in rows:
        if args.batch_id:
            print(f"{r['event_id']} file {r['source_file_id']} segment {r['segment']}: {r['state']} "
                  f"(attempts {r['attempts']}{', ' + terminal_safe(r['error']) if r['error'] else ''})")
        else:
            print(f"{r['batch']}  {r['updated_at']}  {r['tasks']} tasks: {r['done']} done, {r['failed']} failed, "
                  f"{r['pending'] + r['running']} unfinished")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..cluster.backends import make_backend
    from ..cluster.batch import Batch

    if args.status:
        return _status(args)
    if bool(args.events) == bool(args.paths):
        raise ConfigError("give either --events QUERY or PATHS (with --out-dir), not both or neither")
    if args.events and args.out_dir:
        raise ConfigError("--out-dir is for PATHS; event recordings are stored in their event")
    if args.events and args.audit:
        raise ConfigError("--audit is for PATHS; an event's audit sidecar is stored in the event")
    if args.segment_seconds < 0:
        raise ConfigError(f"--segment-seconds must be >= 0 (0: one task per recording), got {args.segment_seconds:g}")
    if args.max_retries < 0:
        raise ConfigError(f"--max-retries must be >= 0, got {args.max_retries}")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.gpus_per_task < 0:
        raise ConfigError(f"--gpus-per-task must be >= 0, got {args.gpus_per_task:g}")
    if args.work_dir is not None and not Path(args.work_dir).is_dir():
        raise ConfigError(f"--work-dir {args.work_dir!r} is not a folder; create it first")
    query = parse_query(args.events) if args.events else None
    options = deid_cli.deid_options(args)
    backend = make_backend(args.cluster, workers=args.workers, max_retries=args.max_retries,
                           gpus_per_task=args.gpus_per_task)
    show = _printer(args)
    try:
        with deid_cli._stop_on_signals():
            if args.paths:
                batch = Batch(options, backend, args.segment_seconds, emit=show, overwrite=args.overwrite,
                              work_dir=args.work_dir, audit_template=args.audit, batch=args.batch_id)
                summary = batch.run(_inputs_from_paths(args))
            else:
                with login(args) as session:
                    inputs = _inputs_from_events(session, *query)
                    batch = Batch(options, backend, args.segment_seconds, session=session, emit=show,
                                  replace=args.replace, work_dir=args.work_dir, batch=args.batch_id)
                    summary = batch.run(inputs)
    except deid_cli._Signalled as sig:
        name = signal.Signals(sig.signum).name
        print(f"surgbox: stopped by {name}; finished recordings are kept, a rerun resumes the rest", file=sys.stderr)
        return 128 + sig.signum
    if not args.json:
        rate = summary.get("video_s_per_s")
        print(f"deid-batch {summary['batch']}: {len(summary['done'])} done, {len(summary['skipped'])} skipped, "
              f"{len(summary['failed'])} failed; {summary['video_s']:.1f} s of video in {summary['elapsed_s']:.1f} s"
              + (f" ({rate:.2f} video-s/s)" if rate else ""))
    return 1 if summary["failed"] else 0
