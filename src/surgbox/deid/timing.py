"""Stage timers for the de-identification pipeline.

The paper's ten sections (setup, crop, preprocessing, inference, output decoding, score
filter, sort, NMS, blur, write) plus ``decode``, ``temporal`` and the queue waits. Stages run
on different threads at the same time, so their sum exceeds the wall time; the table shows
each stage's total seconds, milliseconds per frame and share of the summed busy time.

    >>> t = StageTimes()
    >>> with t.stage("crop"):
    ...     pass
    >>> t.add("inference", 0.5, count=16)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from ..fonts import load

# Display order; the first ten are the paper's sections.
PAPER_STAGES = ("setup", "crop", "preprocessing", "inference", "output decoding", "score filter", "sort", "NMS", "blur", "write")
STAGES = ("decode", *PAPER_STAGES[:2], *PAPER_STAGES[2:8], "temporal", *PAPER_STAGES[8:], "queue wait (decode)", "queue wait (detect)",
          "queue wait (anonymize)", "queue wait (encode)")
# Sections inside a detector's ``detect`` call, known only when it reports ``stage_seconds``.
DETECTOR_STAGES = ("preprocessing", "output decoding", "score filter", "sort", "NMS")
# Spellings a detector may use for its own sub-stages -> our names.
ALIASES = {"preprocess": "preprocessing", "pre": "preprocessing", "forward": "inference", "model": "inference",
           "decode": "output decoding", "decoding": "output decoding", "postprocess": "output decoding",
           "output_decoding": "output decoding", "filter": "score filter", "score_filter": "score filter",
           "threshold": "score filter", "nms": "NMS"}


def canonical_stage(name: str) -> str:
    """Our name for a stage (``"score_filter"`` -> ``"score filter"``, ``"nms"`` -> ``"NMS"``)."""
    key = name.strip()
    if key in STAGES:
        return key
    low = key.lower()
    return ALIASES.get(low, ALIASES.get(low.replace(" ", "_"), low.replace("_", " ")))


@attrs.define(eq=False)
class StageTimes:
    """Thread-safe accumulator of seconds and event counts per stage."""

    seconds: dict[str, float] = attrs.field(factory=dict)
    counts: dict[str, int] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, alias="_lock")

    @classmethod
    def from_dict(cls, timing: Mapping[str, Any]) -> StageTimes:
        """The timer back from :meth:`to_dict`'s output (a report's ``timing``), e.g. to print
        its :meth:`table` or draw its :meth:`chart` later."""
        t = cls()
        for stage, st in timing.get("stages", {}).items():
            t.add(stage, st["seconds"], st.get("count", 0))
        return t

    def add(self, stage: str, seconds: float, count: int = 1) -> None:
        stage = canonical_stage(stage)
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + float(seconds)
            self.counts[stage] = self.counts.get(stage, 0) + int(count)

    @contextlib.contextmanager
    def stage(self, name: str, count: int = 1) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0, count)

    def add_detector(self, before: Mapping[str, float] | None, after: Mapping[str, float] | None, total: float) -> None:
        """Split one ``detect`` call of ``total`` seconds into the detector's own sub-stages.

        ``before``/``after`` are the detector's cumulative per-stage seconds around the call
        (``None`` when the detector reports none: everything counts as ``inference``).
        """
        if not after:
            self.add("inference", total)
            return
        known = 0.0
        for k, v in after.items():
            d = float(v) - float((before or {}).get(k, 0.0))
            if d > 0:
                self.add(k, d)
                known += d
        if total - known > 0:
            self.add("inference", total - known, count=0)

    def to_dict(self, frames: int = 0, wall: float | None = None) -> dict[str, Any]:
        """JSON-ready ``{"wall_s", "frames", "stages": {name: {"seconds", "ms_per_frame", "count"}}}``."""
        with self._lock:
            secs, counts = dict(self.seconds), dict(self.counts)
        order = [s for s in STAGES if s in secs] + sorted(s for s in secs if s not in STAGES)
        stages = {
            s: {"seconds": round(secs[s], 4), "ms_per_frame": round(1000 * secs[s] / frames, 3) if frames else None,
                "count": counts.get(s, 0)}
            for s in order
        }
        missing = [s for s in DETECTOR_STAGES if s not in secs]
        for s in PAPER_STAGES:  # a paper section that did not occur (no face: no blur) took 0 s
            if s not in stages and s not in missing:
                stages[s] = {"seconds": 0.0, "ms_per_frame": 0.0 if frames else None, "count": 0}
        stages = {s: stages[s] for s in [s for s in STAGES if s in stages] + [s for s in stages if s not in STAGES]}
        return {"wall_s": None if wall is None else round(wall, 3), "frames": frames, "stages": stages,
                "not_measured": missing}

    def table(self, frames: int = 0, wall: float | None = None) -> str:
        """A fixed-width text table (stage, seconds, ms/frame, share of busy time)."""
        full = self.to_dict(frames, wall)
        d = full["stages"]
        busy = sum(v["seconds"] for k, v in d.items() if not k.startswith("queue")) or 1.0
        rows = [("stage", "seconds", "ms/frame", "share")]
        for k, v in d.items():
            share = "" if k.startswith("queue") else f"{100 * v['seconds'] / busy:5.1f}%"
            rows.append((k, f"{v['seconds']:.3f}", "" if v["ms_per_frame"] is None else f"{v['ms_per_frame']:.2f}", share))
        for k in full["not_measured"]:  # e.g. a detector that does not report its sub-stages
            rows.append((k, "-", "-", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]) for r in rows]
        if wall is not None:
            fps = f", {frames / wall:.1f} fps" if wall > 0 and frames else ""
            lines.append(f"wall {wall:.3f} s for {frames} frames{fps} (stages overlap on threads)")
        if full["not_measured"]:
            lines.append(f"- not measured: {', '.join(full['not_measured'])} (the detector reports no sub-stage "
                         "times (stage_seconds); they are counted in 'inference')")
        return "\n".join(lines)

    def chart(self, path: str | Path, frames: int = 0, title: str = "surgbox deid: time per stage", *,
              wall: float | None = None, duration: float | None = None) -> None:
        """Write a horizontal bar chart PNG of seconds per stage (rendered with Pillow).

        The title gives the overall speed when ``wall`` (s) is known: frames per second and,
        with the video's ``duration`` (s), the multiple of real time (``duration / wall``: 2.0x
        means twice as fast as the video plays). Bars are coloured by kind (see the legend):
        the paper's ten sections, the other stages, and the time a thread waited on its queue.
        """
        from PIL import Image, ImageDraw

        d = self.to_dict(frames)["stages"]
        if not d:
            d = {"(no stages)": {"seconds": 0.0, "ms_per_frame": None}}
        font, bold, small = load(17), load(20, bold=True), load(15)
        kinds = {"paper": ((200, 80, 60), "the paper's sections"), "other": ((60, 110, 190), "other stages"),
                 "queue": ((165, 165, 165), "waiting on a queue")}

        def kind(stage: str) -> str:
            return "queue" if stage.startswith("queue") else ("paper" if stage in PAPER_STAGES else "other")

        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        label_w = 24 + max(int(probe.textlength(k, font=font)) for k in d)
        bar_w, row_h, top = 560, 30, 104
        width = label_w + bar_w + 240
        height = top + row_h * len(d) + 70
        img = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(img)
        draw.text((16, 12), title, fill="black", font=bold)
        speed = []
        if frames:
            speed.append(f"{frames} frames")
        if wall:
            if duration:
                speed.append(f"{duration:.1f} s of video in {wall:.1f} s: {duration / wall:.2f}x real time")
            else:
                speed.append(f"{wall:.1f} s")
            if frames:
                speed.append(f"{frames / wall:.1f} fps")
        draw.text((16, 42), ", ".join(speed) or "(speed not known)", fill="black", font=font)
        x = 16
        for colour, text in kinds.values():  # the legend
            draw.rectangle([x, 76, x + 16, 92], fill=colour)
            draw.text((x + 22, 74), text, fill="black", font=small)
            x += 22 + int(probe.textlength(text, font=small)) + 28
        peak = max(v["seconds"] for v in d.values()) or 1.0
        for i, (k, v) in enumerate(d.items()):
            y = top + i * row_h
            draw.text((label_w - 12 - probe.textlength(k, font=font), y + 4), k, fill="black", font=font)
            w = int(bar_w * v["seconds"] / peak)
            draw.rectangle([label_w, y + 5, label_w + max(w, 1), y + row_h - 5], fill=kinds[kind(k)][0])
            ms = v.get("ms_per_frame")
            value = f"{v['seconds']:.2f} s" + (f"  ({ms:.1f} ms/frame)" if ms is not None else "")
            draw.text((label_w + w + 8, y + 4), value, fill="black", font=small)
        note = "Stages run on four threads at once: their sum exceeds the wall time."
        draw.text((16, height - 34), note, fill=(90, 90, 90), font=small)
        img.save(str(path), format="PNG")
