"""``surgbox demo [--duration S] [--out FILE.mp4]``: record simulated sources into the paper layout.

Sources: ``testsrc`` endoscope 1280x720 at 30 fps, room camera 1920x1080 at 25 fps, vitals
monitor 800x600 at 60 fps (each flashes white every 2 s) and ``tone`` (a 1 kHz beep every
2 s), so the file doubles as an A/V sync check. Without ``--out`` the file goes to
``<SURGBOX_HOME>/recordings/demo-<time>.mp4`` (SURGBOX_HOME defaults to the per-user data
directory) and the path is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

DEMO_SOURCES = {
    "endoscope": {"plugin": "testsrc", "width": 1280, "height": 720, "fps": 30},
    "room": {"plugin": "testsrc", "width": 1920, "height": 1080, "fps": 25},
    "vitals": {"plugin": "testsrc", "width": 800, "height": 600, "fps": 60},
    "mic": {"plugin": "tone"},
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="record simulated sources (3 test cameras + beeping audio) into the paper layout",
        description="Record simulated sources into the paper's 1080p layout (see docs/recording.md).",
    )
    p.add_argument("--duration", type=float, default=20.0, metavar="S", help="seconds to record (default 20)")
    p.add_argument("--out", metavar="FILE.mp4", help="output file (default: under the user data directory, printed)")
    p.add_argument("--preset", help="x264 preset (default: the encoder's default)")
    p.add_argument("--quiet", action="store_true", help="no status line")
    p.set_defaults(func=run)


def default_output(now: datetime | None = None) -> Path:
    """``<SURGBOX_HOME or user data dir>/recordings/demo-YYYYmmdd-HHMMSS.mp4``."""
    env = os.environ.get("SURGBOX_HOME")
    if env:
        home = Path(env).expanduser()
    else:
        import platformdirs

        home = Path(platformdirs.user_data_dir("surgbox", appauthor=False))
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return home / "recordings" / f"demo-{stamp}.mp4"


def demo_config(duration: float, preset: str | None = None):
    """The demo's :class:`~surgbox.config.RecordConfig`."""
    from ..config import RecordConfig

    encoder = {"plugin": "libx264"}
    if preset:
        encoder["preset"] = preset
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return RecordConfig.from_mapping(
        {
            "fps": 30,
            "duration_s": duration,
            "audio": "mic",
            "event": {"id": f"demo-{stamp}", "place": "Simulation", "procedure": "surgbox demo"},
            "encoder": encoder,
            "layout": {"preset": "paper"},
            "sources": DEMO_SOURCES,
        }
    )


def run(args: argparse.Namespace) -> int:
    from .record import run_recorder

    out = Path(args.out) if args.out else default_output()
    if not args.out:
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"recording to {out}", file=sys.stderr)
    rec = demo_config(args.duration, args.preset).build_recorder(output=out)
    stats = run_recorder(rec, quiet=args.quiet)
    print(f"recorded {stats['frames']} frames ({stats.get('duration_s', 0):.1f} s) to {out}", file=sys.stderr)
    print(str(out))
    return 0
