"""``surgbox deid SRC DST``: de-identify a video (find every face in the region, blur it).

Prints a progress line on stderr (frames, fps, percent, ETA) and the stage timing table at
the end; ``--report``/``--audit``/``--chart`` write the JSON report, the JSON Lines audit
sidecar and a PNG bar chart of the stage times.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..deid import defaults as D
from ..errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deid",
        help="de-identify a video: detect faces in a region and blur them",
        description=(
            "De-identify SRC into DST: faces found in the region (default: the room-camera slot of a surgbox "
            "recording, else the whole frame) are hidden in every frame; audio, timestamps and metadata are kept."
        ),
    )
    p.add_argument("src", metavar="SRC", help="input video (any file FFmpeg reads)")
    p.add_argument("dst", metavar="DST", help="output video (.mp4); written under a temporary name, renamed when complete")
    p.add_argument("--region", default="auto", metavar="SPEC",
                   help="auto | full | X,Y,W,H[;X,Y,W,H...] in pixels (default auto: the layout's room_camera slot)")
    p.add_argument("--detector", default=D.DETECTOR, metavar="NAME", help=f"detector plugin (default {D.DETECTOR})")
    p.add_argument("--threshold", type=float, metavar="T", help="detector score threshold (default 0.3: recall first)")
    p.add_argument("--detector-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra detector option (repeatable; VALUE parsed as JSON when possible, e.g. backend=\"onnxruntime\")")
    p.add_argument("--encoder", default=D.ENCODER, metavar="NAME", help=f"encoder plugin (default {D.ENCODER})")
    p.add_argument("--encoder-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra encoder option (repeatable, e.g. preset=veryfast crf=20)")
    p.add_argument("--batch", type=int, default=D.BATCH, metavar="N", help=f"crops per detector call (default {D.BATCH})")
    p.add_argument("--detect-scale", type=float, default=None, metavar="S",
                   help="resize regions by S (0 < S <= 1) for detection (default 0.5: faces from about 32 px are found)")
    p.add_argument("--queue-size", type=int, default=D.QUEUE_SIZE, metavar="N",
                   help=f"decoded frames buffered (default {D.QUEUE_SIZE}, memory-capped)")
    p.add_argument("--carry", type=int, default=D.CARRY, metavar="K",
                   help=f"frames a face stays hidden before/after its detections (default {D.CARRY})")
    p.add_argument("--max-gap", type=int, default=D.MAX_GAP, metavar="G",
                   help=f"longest detector gap bridged by interpolation (default {D.MAX_GAP})")
    p.add_argument("--every", type=int, default=D.EVERY, metavar="N",
                   help=f"run the detector on every Nth frame, track in between (default {D.EVERY})")
    p.add_argument("--expand", type=float, default=D.EXPAND, metavar="F", help=f"mask size relative to the face box (default {D.EXPAND})")
    p.add_argument("--feather", type=float, default=D.FEATHER, metavar="F",
                   help=f"soft mask edge, fraction of its radius (default {D.FEATHER})")
    p.add_argument("--cut-threshold", type=float, default=D.CUT_THRESHOLD, metavar="T",
                   help=f"mean luma change (0-255) that marks a scene cut, across which nothing is carried; 0 disables (default {D.CUT_THRESHOLD:g})")
    p.add_argument("--detector-threads", type=int, default=1, metavar="N",
                   help="CPU math threads for the detector (its 'threads' option; default 1; 0 keeps the library's default)")
    p.add_argument("--anonymizer", default=D.ANONYMIZER, choices=["blur", "pixelate", "fill"], help=f"how faces are hidden (default {D.ANONYMIZER})")
    p.add_argument("--report", metavar="FILE.json", help="write the JSON report (settings, counts, stage timings)")
    p.add_argument("--audit", metavar="FILE.jsonl", help="write the JSON Lines audit sidecar (regions per frame)")
    p.add_argument("--chart", metavar="FILE.png", help="write a PNG bar chart of the stage times")
    p.add_argument("--quiet", action="store_true", help="no progress line and no timing table")
    p.set_defaults(func=run)


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
    """``frames 120/480  25%  31.2 fps  ETA 00:11`` for a :class:`~surgbox.deid.Progress`."""
    total = f"/{p.total}" if p.total else ""
    pct = f"{100 * p.fraction:5.1f}%  " if p.fraction is not None else ""
    return f"frames {p.frames}{total}  {pct}{p.fps:5.1f} fps  elapsed {_fmt_time(p.elapsed)}  ETA {_fmt_time(p.eta)}"


def run(args: argparse.Namespace) -> int:
    from ..deid import StageTimes, deidentify

    det_opts = _options(args.detector_option, "detector")
    if args.threshold is not None:
        det_opts["threshold"] = args.threshold
    enc_opts = _options(args.encoder_option, "encoder")
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(p) -> None:
        now = time.monotonic()
        if not tty and now - last[0] < 5 and not p.done:  # a log file gets a line every 5 s, a terminal a live line
            return
        last[0] = now
        print(("\r" if tty else "") + progress_line(p) + ("\033[K" if tty else ""), end="" if tty else "\n",
              file=sys.stderr, flush=True)

    extra = {} if args.detect_scale is None else {"detect_scale": args.detect_scale}
    result = deidentify(
        args.src, args.dst, region=args.region, detector=args.detector, detector_options=det_opts,
        encoder=args.encoder, encoder_options=enc_opts, batch=args.batch, queue_size=args.queue_size,
        carry=args.carry, max_gap=args.max_gap, every=args.every, expand=args.expand, feather=args.feather,
        cut_threshold=args.cut_threshold or None, detector_threads=args.detector_threads or None,
        anonymizer=args.anonymizer, audit=args.audit, report=args.report, chart=args.chart,
        progress=None if args.quiet else show, **extra,
    )
    rep = result.report
    if tty and not args.quiet:
        print(file=sys.stderr)
    if not args.quiet:
        times = StageTimes()
        for name, st in rep["timing"]["stages"].items():
            times.add(name, st["seconds"], st["count"])  # the table is rendered from the report
        print(times.table(result.frames, result.seconds), file=sys.stderr)
        for w in rep.get("warnings", []):
            print(f"warning: {w}", file=sys.stderr)
    rt = f", {rep['realtime_factor']:.2f}x the video's duration" if rep.get("realtime_factor") else ""
    print(f"{result.dst}: {result.frames} frames, {rep['frames_with_regions']} with faces hidden "
          f"({rep['tracks']} face tracks), {result.seconds:.1f} s{rt}")
    return 0
