"""``surgbox deid SRC [DST]`` / ``surgbox deid SRC... --out-dir DIR``: de-identify videos.

Prints a progress line on stderr (frames, fps, percent, ETA once the rate is known) and one
summary line per input on stdout (``--json``: a JSON list of summaries instead);
``--timing`` adds the stage timing table; ``--report``/``--audit``/``--chart`` write the JSON
report, the JSON Lines audit sidecar and a PNG chart of the stage times. SIGINT, SIGTERM and
SIGHUP stop the run cleanly: every stage thread is joined and no partial output is left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..deid import defaults as D
from ..deid.decoders import DECODERS
from ..errors import ConfigError, SurgboxError

_THRESHOLD = D.detector_options(D.DETECTOR).get("threshold")
_THREADS = D.detector_options(D.DETECTOR).get("threads")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deid",
        help="de-identify videos: detect faces in a region and blur them",
        description=(
            "De-identify SRC into DST (default NAME.deid.mp4 beside SRC), or several inputs into --out-dir: faces "
            "found in the region (default: the room-camera slot of a surgbox recording, else the whole frame) are "
            "hidden in every frame; audio, timestamps and metadata are kept. The output is MP4; an existing file is "
            "never replaced without --overwrite, and the input never."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="SRC [DST]: the input video (any file FFmpeg reads) and the output (.mp4, default NAME.deid.mp4 "
                        "beside SRC; a folder: NAME.deid.mp4 in it); with --out-dir, every PATH is an input")
    p.add_argument("-o", "--out-dir", metavar="DIR",
                   help="de-identify every PATH into DIR/NAME.deid.mp4 (DIR must exist)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output and --report/--audit/--chart files (never the input itself)")
    p.add_argument("--region", default="auto", metavar="SPEC",
                   help="auto | full | X,Y,W,H[;X,Y,W,H...] in pixels (default auto: the layout's room_camera slot)")
    p.add_argument("--detector", default=D.DETECTOR, metavar="NAME", help=f"detector plugin (default {D.DETECTOR})")
    p.add_argument("--threshold", type=float, metavar="T",
                   help=f"detector score threshold (default {_THRESHOLD} for {D.DETECTOR}: recall first; "
                        "other detectors keep their own)")
    p.add_argument("--detector-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra detector option (repeatable; VALUE parsed as JSON when possible, e.g. device='\"cuda\"')")
    p.add_argument("--detector-threads", type=int, metavar="N",
                   help=f"CPU math threads of the detector, its 'threads' option (default {_THREADS} for {D.DETECTOR}; "
                        "0 leaves the library's own setting)")
    p.add_argument("--on-detector-error", choices=["fail", "blur-region"], default=D.ON_DETECTOR_ERROR,
                   help="when the detector cannot score a batch: stop the run (fail, default) or hide the whole "
                        "region of those frames (blur-region, recorded in the audit sidecar)")
    p.add_argument("--encoder", default=D.ENCODER, metavar="NAME", help=f"encoder plugin (default {D.ENCODER})")
    p.add_argument("--encoder-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra encoder option (repeatable, e.g. preset='\"veryfast\"' crf=20)")
    p.add_argument("--batch", type=int, default=D.BATCH, metavar="N",
                   help=f"frames whose regions go to the detector in one call (default {D.BATCH}, at most 256)")
    p.add_argument("--detect-scale", type=float, default=D.DETECT_SCALE, metavar="S",
                   help=f"resize regions by S (0 < S <= 1) for detection (default {D.DETECT_SCALE}: faces from about "
                        f"{16 / D.DETECT_SCALE:.0f} px are found)")
    p.add_argument("--every", type=int, default=D.EVERY, metavar="N",
                   help=f"run the detector on every Nth frame, track in between (default {D.EVERY})")
    p.add_argument("--carry", type=int, default=D.CARRY, metavar="K",
                   help=f"frames a face stays hidden before/after its detections (default {D.CARRY})")
    p.add_argument("--max-gap", type=int, default=D.MAX_GAP, metavar="G",
                   help=f"longest detector gap bridged by interpolation (default {D.MAX_GAP})")
    p.add_argument("--confirm-hits", type=int, default=D.CONFIRM_HITS, metavar="H",
                   help="with the ensemble's hysteresis: a track that never scores confident is hidden once it has H "
                        f"detections; 1 hides every candidate (more faces, more blur; default {D.CONFIRM_HITS})")
    p.add_argument("--cut-threshold", type=float, default=D.CUT_THRESHOLD, metavar="T",
                   help="mean luma change (0-255) that marks a scene cut in a region, across which nothing is carried; "
                        f"0 disables (default {D.CUT_THRESHOLD:g})")
    p.add_argument("--expand", type=float, default=D.EXPAND, metavar="F", help=f"mask size relative to the face box (default {D.EXPAND})")
    p.add_argument("--feather", type=float, default=D.FEATHER, metavar="F",
                   help=f"soft mask edge, fraction of its radius (default {D.FEATHER})")
    p.add_argument("--anonymizer", default=D.ANONYMIZER, choices=["blur", "pixelate", "fill"],
                   help=f"how faces are hidden (default {D.ANONYMIZER})")
    p.add_argument("--out-of-body", action="store_true",
                   help="with --region auto: also hide the layout's endoscope slot whole in frames where the laparoscope "
                        "films the room (a colour classifier, docs/deid.md \"Out of the body\"; counted in the report and audit)")
    p.add_argument("--voice", choices=["keep", "disguise", "mute"], default="keep",
                   help="the audio: keep it (default), disguise voices (pitch and formants shifted by --semitones, "
                        "duration and A/V sync unchanged; the audio is re-encoded as AAC) or mute it (silence, same length)")
    p.add_argument("--semitones", type=float, default=-4.0, metavar="S",
                   help="with --voice disguise: the shift in semitones, 1 <= |S| <= 12 (default -4: a lower voice)")
    p.add_argument("--queue-size", type=int, default=D.QUEUE_SIZE, metavar="N",
                   help=f"decoded frames buffered (default {D.QUEUE_SIZE}, capped by memory)")
    p.add_argument("--extra-streams", choices=["refuse", "drop"], default=D.EXTRA_STREAMS,
                   help="streams besides the first video and audio (a second camera, data tracks): refuse the input "
                        "(default) or drop them (listed in the report)")
    p.add_argument("--decoder", choices=DECODERS, default=D.DECODER,
                   help="what decodes the input: auto (default: NVDEC on an NVIDIA GPU, GStreamer on a Jetson, else PyAV "
                        "in software), pyav[:software|:nvdec] or gstreamer[:cpu|:jetson|:nvidia] (MP4/MOV files); the "
                        "choice and its reason are printed (not with --quiet) and stored in the report, the --json "
                        "summary and the audit sidecar")
    p.add_argument("--strict", action="store_true",
                   help="fail on an input that ends before its container says (cut or crashed); default: warn and "
                        "de-identify what can be read")
    p.add_argument("--report", metavar="FILE.json",
                   help="write the JSON report (settings, counts, stage timings); with several inputs put {name} in it")
    p.add_argument("--audit", metavar="FILE.jsonl",
                   help="write the JSON Lines audit sidecar (regions per frame); with several inputs put {name} in it")
    p.add_argument("--chart", metavar="FILE.png",
                   help="write a PNG chart of the stage times; with several inputs put {name} in it")
    p.add_argument("--timing", action="store_true", help="print the stage timing table on stderr after each input")
    p.add_argument("--json", action="store_true", help="print a JSON list of per-input summaries on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress line (warnings and errors are still printed)")
    p.set_defaults(func=run)
    _allow_intermixed(p)


def _allow_intermixed(parser: argparse.ArgumentParser) -> None:
    """Let options sit between the paths (``deid SRC --region full DST``, as with the single
    SRC/DST positionals before): argparse matches a ``nargs="+"`` positional only in one run of
    arguments unless it parses "intermixed", which it cannot do for the top-level parser (it has
    subparsers), so this subparser does it for itself."""
    plain = parser.parse_known_args
    busy: list[bool] = []

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        if busy:  # parse_known_intermixed_args calls parse_known_args itself
            return plain(args, namespace)
        busy.append(True)
        try:
            return parser.parse_known_intermixed_args(args, namespace)
        finally:
            busy.clear()

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def _options(pairs: list[str], what: str) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} option {pair!r} is not KEY=VALUE (e.g. threshold=0.4)")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def progress_line(p) -> str:
    """``frames 120/480  25.0%  31.2 fps  elapsed 00:04  ETA 00:11`` for a
    :class:`~surgbox.deid.Progress`; fps and ETA read ``--`` until the rate is known."""
    total = f"/{p.total}" if p.total else ""
    pct = f"{100 * p.fraction:5.1f}%  " if p.fraction is not None else ""
    rate = p.rate if p.rate else (p.fps if p.done else None)
    fps = f"{rate:5.1f} fps" if rate else "  --- fps"
    return f"frames {p.frames}{total}  {pct}{fps}  elapsed {_fmt_time(p.elapsed)}  ETA {_fmt_time(p.eta)}"


def _jobs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(input, output) pairs from the positional paths and ``--out-dir``."""
    from ..deid.output import default_output

    paths = args.paths
    if args.out_dir is not None:
        if not Path(args.out_dir).is_dir():
            raise ConfigError(f"--out-dir {args.out_dir!r} is not a folder; create it first")
        jobs = [(p, default_output(p, args.out_dir)) for p in paths]
    elif len(paths) == 1:
        jobs = [(paths[0], default_output(paths[0]))]
    elif len(paths) == 2 and Path(paths[1]).is_dir():  # SRC DIR: as --out-dir DIR
        jobs = [(paths[0], default_output(paths[0], paths[1]))]
    elif len(paths) == 2:
        jobs = [(paths[0], Path(paths[1]))]
    else:
        raise ConfigError(f"{len(paths)} paths given: use SRC [DST] for one input, or --out-dir DIR to de-identify "
                          f"several (each into DIR/NAME.deid.mp4)")
    outs = [str(d) for _, d in jobs]
    dup = sorted({o for o in outs if outs.count(o) > 1})
    if dup:
        raise ConfigError(f"several inputs would be written to {dup[0]!r} (same file name); give them distinct names")
    from ..deid.output import same_file

    for src, dst in jobs:  # one input's output over another input (a.mp4 a.deid.mp4 -o . --overwrite)
        other = next((s for s, _ in jobs if s != src and same_file(dst, s)), None)
        if other is not None:
            raise ConfigError(f"the output of {src!r} would be {str(dst)!r}, which is the input {other!r} of this run; "
                              f"inputs are never overwritten: de-identify into another --out-dir")
    if len(jobs) > 1:
        for flag in ("report", "audit", "chart"):
            value = getattr(args, flag)
            if value is not None and "{name}" not in value:
                raise ConfigError(f"--{flag} {value!r} would be overwritten by each of the {len(jobs)} inputs; "
                                  f"put {{name}} in it (e.g. --{flag} deid-{{name}}.{Path(value).suffix.lstrip('.') or 'json'})")
    return jobs


class _Signalled(BaseException):
    """SIGTERM / SIGHUP arrived: unwind (every ``finally`` runs, partial files are removed)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """The first SIGINT raises ``KeyboardInterrupt``, the first SIGTERM/SIGHUP ``_Signalled``;
    later ones are ignored so the clean-up they started is not cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if fired:
            return
        fired.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise _Signalled(signum)

    wanted = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def deid_options(args: argparse.Namespace) -> Any:
    """The :class:`~surgbox.deid.DeidOptions` that the parsed options of ``deid`` describe
    (also used by ``deid-batch``, which shares them)."""
    det_opts = _options(args.detector_option, "detector")
    if args.threshold is not None:
        det_opts["threshold"] = args.threshold
    if args.detector_threads == 0:
        det_opts.setdefault("threads", None)  # the library's own setting
    from ..deid import DeidOptions

    return DeidOptions(
        region=args.region, detector=args.detector, detector_options=det_opts,
        detector_threads=args.detector_threads or None, encoder=args.encoder,
        encoder_options=_options(args.encoder_option, "encoder"), batch=args.batch, detect_scale=args.detect_scale,
        queue_size=args.queue_size, carry=args.carry, max_gap=args.max_gap, confirm_hits=args.confirm_hits,
        every=args.every, expand=args.expand,
        feather=args.feather, cut_threshold=args.cut_threshold or None, anonymizer=args.anonymizer,
        on_detector_error=args.on_detector_error, extra_streams=args.extra_streams, strict=args.strict,
        decoder=getattr(args, "decoder", D.DECODER),
        out_of_body=args.out_of_body,
        overwrite=args.overwrite)


def run(args: argparse.Namespace) -> int:
    options = deid_options(args)
    if args.voice == "disguise":
        from ..deid.voice import check_semitones

        check_semitones(args.semitones)
    jobs = _jobs(args)
    summaries: list[dict[str, Any]] = []
    failed = 0
    try:
        with _stop_on_signals():
            for src, dst in jobs:
                try:
                    summaries.append(_one(args, options, src, dst, several=len(jobs) > 1))
                except SurgboxError as exc:
                    if len(jobs) == 1 and not args.json:
                        raise
                    failed += 1
                    print(f"surgbox: error: {exc}", file=sys.stderr)
                    summaries.append({"src": src, "dst": str(dst), "ok": False, "error": str(exc)})
    except _Signalled as sig:
        name = signal.Signals(sig.signum).name
        print(f"surgbox: stopped by {name}; the unfinished output was removed", file=sys.stderr)
        return 128 + sig.signum
    finally:
        if args.json and summaries:
            print(json.dumps(summaries, indent=2))
    return 1 if failed else 0


def _one(args: argparse.Namespace, options: Any, src: str, dst: Path, several: bool) -> dict[str, Any]:
    from ..deid import StageTimes, deidentify

    tty = sys.stderr.isatty()
    last = [0.0]

    def show(p) -> None:
        now = time.monotonic()
        if not tty and now - last[0] < 5 and not p.done:  # a log file gets a line every 5 s, a terminal a live line
            return
        last[0] = now
        prefix = f"{Path(src).name}: " if several else ""
        print(("\r" if tty else "") + prefix + progress_line(p) + ("\033[K" if tty else ""), end="" if tty else "\n",
              file=sys.stderr, flush=True)

    name = Path(src).stem
    paths = {k: (None if getattr(args, k) is None else getattr(args, k).replace("{name}", name))
             for k in ("report", "audit", "chart")}
    try:
        result = deidentify(src, dst, options=options, progress=None if args.quiet else show, **paths)
    finally:
        if tty and not args.quiet:
            print(file=sys.stderr)
    rep = result.report
    voice = None if args.voice == "keep" else _voice(args, Path(result.dst), paths["report"])
    if args.timing:
        print(StageTimes.from_dict(rep["timing"]).table(result.frames, result.seconds), file=sys.stderr)
    if "decoder" in rep and not args.quiet:  # also in the report, the audit header and the --json summary
        d = rep["decoder"]
        print(f"{Path(src).name + ': ' if several else ''}decoder: {d['label']} ({d['reason']})", file=sys.stderr)
    for w in rep.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    if not args.json:
        rt = f", {rep['realtime_factor']:.2f}x the video's duration" if rep.get("realtime_factor") else ""
        print(f"{result.dst}: {result.frames} frames, {rep['frames_with_regions']} with faces hidden "
              f"({rep['tracks']} face tracks), {result.seconds:.1f} s{rt}")
    return {"src": src, "dst": result.dst, "ok": True, "frames": result.frames,
            "frames_with_regions": rep["frames_with_regions"], "tracks": rep["tracks"], "detections": rep["detections"],
            "frames_region_hidden": rep["frames_region_hidden"], "seconds": round(result.seconds, 3),
            "realtime_factor": rep["realtime_factor"], "fps": rep["fps"], "input": rep["input"],
            "warnings": rep["warnings"], "decoder": rep.get("decoder"), **({"voice": voice} if voice else {}),
            **{k: v for k, v in paths.items() if v is not None}}


def _voice(args: argparse.Namespace, dst: Path, report: str | None) -> dict[str, Any]:
    """``--voice disguise|mute``: rewrite the finished output's audio (video packets copied) into a
    temporary file beside it, then replace it; on failure the output is removed (an output with
    the voices left in must not pass for done). The report, if written, gains a ``voice`` entry."""
    from ..deid.voice import VoiceSettings, disguise_file

    settings = VoiceSettings(args.voice, args.semitones if args.voice == "disguise" else -4.0)
    tmp = dst.with_name(f".{dst.name}.voice.tmp.mp4")
    try:
        info = disguise_file(dst, tmp, settings)
        tmp.replace(dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
        raise
    if report is not None and Path(report).is_file():
        rep = json.loads(Path(report).read_text())
        rep["voice"] = info
        Path(report).write_text(json.dumps(rep, indent=2))
    if not args.json:
        what = "muted" if args.voice == "mute" else f"voices disguised ({args.semitones:+g} semitones)"
        print(f"{dst}: audio {what}" + ("" if info["samples_in"] is not None else " (no audio stream)"), file=sys.stderr)
    return info
