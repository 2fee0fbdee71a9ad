#!/usr/bin/env python
"""Render the 1080p composite of the layout presets, with the BIS simulator, to PNG for the docs.

    .venv/bin/python scripts/render_composite.py [--out docs/images] [--minutes 10]

What it does, with the real components: grabs one frame from each slot's ``testsrc`` source, runs
the BIS simulator (``surgbox_ext.bis.simulator``) for ``--minutes`` of a scripted anaesthesia course
through the BIS parser (the bytes a monitor sends -> readings, one a second), and feeds both to the
``default`` compositor tick by tick (one tick a second: the panel and its trend only change with
the readings and the clock), then writes the composite of the last tick:

* ``composite-paper.png``: paper layout early in maintenance, BIS dipping below 40 with burst
  suppression (caution colours for BIS and SR); the ten-minute trend shows the induction;
* ``composite-paper-artifact.png``: the same during an EMG artifact (EMG in the alarm colour, SQI low,
  BIS drawn as unreliable);
* ``composite-paper-connecting.png``: the first tick of a recording: the endoscope live, the room
  camera and vitals monitor CONNECTING, the BIS monitor block waiting for its first reading;
* ``composite-single.png``, ``composite-side_by_side.png``: the other presets with a panel.

The pictures depend only on this script and the code (fixed times, seeds and names), so a rerun
after a change shows exactly what changed.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from pathlib import Path

from surgbox import layouts
from surgbox.clock import Clock
from surgbox.plugins import get_plugins
from surgbox.types import VideoFrame
from surgbox_ext.bis.parser import BISParser
from surgbox_ext.bis.simulator import BISSimulator
from surgbox_ext.compositor import DefaultCompositor

NS = 1_000_000_000
COURSE_S = 1800.0  # one anaesthesia course: induction at 2.4-5.4 min, maintenance until 24 min
SEED = 3
START = datetime(2026, 11, 26, 10, 30, 0)
EVENT = {
    "id": "ev-2026-0001",
    "place": "OR 3",
    "procedure": "Laparoscopic cholecystectomy",
    "surgeon": "Dr. A. Example",
    "anaesthetist": "Dr. B. Example",
}
SIZES = {"endoscope": (1280, 720), "room": (1920, 1080), "vitals": (800, 600)}


def grab_frames(names: list[str]) -> dict[str, VideoFrame]:
    """One frame of a ``testsrc`` source per slot name (its label is the name)."""
    plugins = get_plugins()
    clock = Clock()
    frames = {}
    for name in names:
        w, h = SIZES.get(name, (1280, 720))
        src = plugins.create("source", "testsrc", name=name, width=w, height=h, fps=30, flash_period_s=0)
        src.start(clock)
        try:
            item = src.get(timeout=5.0)
        finally:
            src.stop()
        if item is None:
            raise SystemExit(f"testsrc {name!r} gave no frame within 5 s")
        frames[name] = item
    return frames


def readings(sim: BISSimulator, seconds: int):
    """The simulator's records of ``seconds`` seconds, through the parser, one a second."""
    parser = BISParser()
    parser.feed(sim.header())
    for i in range(seconds):
        for rec in parser.feed(sim.record(i, START + timedelta(seconds=i))):
            yield i, rec.to_reading("bis", i * NS)


def compose(layout, frames: dict[str, VideoFrame | None], seconds: int, sim: BISSimulator):
    comp = DefaultCompositor()
    comp.configure(layout)
    comp.set_context(stale_timeout_s=1.0, data_sources=["bis"], data_timeout_s=10.0)
    picture = None
    for i, r in readings(sim, seconds):
        event = {**EVENT, "time": f"{START + timedelta(seconds=i):%Y-%m-%d %H:%M:%S}"}
        picture = comp.compose(frames, {"bis": r}, event, i * NS)
    return picture


def find_second(sim: BISSimulator, lo: int, hi: int, want) -> int:
    for i in range(lo, hi):
        if want(i, sim.channel_values(i)["12"]):
            return i
    raise SystemExit(f"no second in {lo}..{hi} s matches")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    ap.add_argument("--minutes", type=float, default=10.0,
                    help="minutes of the course before the paper screenshot (default 10: the trend shows the induction)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sim = BISSimulator(rate=1.0, course_s=COURSE_S, seed=SEED)
    start = int(args.minutes * 60)
    # a second in maintenance with BIS below 40 (burst suppression) and a clean signal
    dip = find_second(sim, start, start + 600, lambda i, v: v["BIS"] is not None and v["BIS"] < 39 and sim.artifact_at(i) is None)
    emg = find_second(sim, int(COURSE_S * 0.12), int(COURSE_S * 0.8), lambda i, v: sim.artifact_at(i) == "emg" and sim.artifact_at(i - 3) == "emg" and v["EMGLOW"] > 56)
    written = []
    paper = layouts.paper()
    frames = grab_frames(["endoscope", "room", "vitals"])
    for name, seconds in (("composite-paper.png", dip + 1), ("composite-paper-artifact.png", emg + 1)):
        compose(paper, frames, seconds, sim).to_image().save(args.out / name)
        written.append(name)
    comp = DefaultCompositor()
    comp.configure(paper)
    comp.set_context(stale_timeout_s=1.0, data_sources=["bis"], data_timeout_s=10.0)
    first = comp.compose({"endoscope": frames["endoscope"], "room": None, "vitals": None}, {},
                         {**EVENT, "time": f"{START:%Y-%m-%d %H:%M:%S}"}, 0)
    first.to_image().save(args.out / "composite-paper-connecting.png")
    written.append("composite-paper-connecting.png")
    for preset in ("single", "side_by_side"):
        lay = layouts.preset(preset)
        names = [s.source or s.name for s in lay.slots if s.kind == "video"]
        compose(lay, grab_frames(names), dip + 1, sim).to_image().save(args.out / f"composite-{preset}.png")
        written.append(f"composite-{preset}.png")
    for name in written:
        print(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
