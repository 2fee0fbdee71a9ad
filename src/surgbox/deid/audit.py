"""The audit sidecar: a JSON Lines record of what was hidden in every frame.

Format (one JSON object per line, UTF-8):

1. header: ``{"type": "header", "format": "surgbox-deid-audit", "version": 1, "src": ...,
   "created": ISO time, "detector": {"name", "version", "settings"}, "settings": {...},
   "regions": [[x, y, w, h], ...], "time_base": "1/15360", "decoder": {"backend", "mode",
   "label", "reason"}}`` (``decoder``: what decodes the pictures and why, :mod:`surgbox.deid.decoders`)
2. one line per output frame, in order: ``{"type": "frame", "frame": i, "pts": p,
   "time": seconds, "regions": [{"box": [x1, y1, x2, y2], "score": s, "track": t,
   "kind": "detected"|"interpolated"|"carried"}]}`` (boxes in frame pixels, before the mask's
   expansion; ``time`` = ``pts * time_base``); a frame whose detector batch failed (with
   ``on_detector_error="blur-region"``) also has ``"region_hidden": REASON``: every scan
   region of it was hidden whole;
3. summary: ``{"type": "summary", "frames": n, "frames_with_regions": m, "regions": r,
   "complete": true}``, plus ``"frames_region_hidden": h`` when some frames were.

The file is written under a temporary name and renamed when complete, like the video.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import attrs

from .temporal import Region

FORMAT = "surgbox-deid-audit"
VERSION = 1


@attrs.define(eq=False)
class AuditWriter:
    """Writes the audit sidecar at ``path``; use as a context manager or ``open``/``commit``/``abort``."""

    path: Path = attrs.field(converter=Path)
    _f: IO[str] | None = attrs.field(default=None, init=False, alias="_f")
    _tmp: str | None = attrs.field(default=None, init=False, alias="_tmp")
    frames: int = attrs.field(default=0, init=False)
    frames_with_regions: int = attrs.field(default=0, init=False)
    regions: int = attrs.field(default=0, init=False)
    frames_region_hidden: int = attrs.field(default=0, init=False)
    frames_out_of_body: int = attrs.field(default=0, init=False)

    def open(self, header: Mapping[str, Any]) -> None:
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent or ".")
        self._f = os.fdopen(fd, "w", encoding="utf-8")
        rec = {"type": "header", "format": FORMAT, "version": VERSION,
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **header}
        self._f.write(json.dumps(rec, default=str) + "\n")

    def frame(self, index: int, pts: int | None, time_base: Fraction | None, regions: Iterable[Region],
              hidden: str | None = None, out_of_body: bool = False) -> None:
        """One frame's record; ``hidden``: why its scan regions were hidden whole (or ``None``);
        ``out_of_body``: its endoscope slot was hidden whole (the laparoscope filmed the room)."""
        regs = [r.to_dict() for r in regions]
        t = None if pts is None or time_base is None else round(float(pts * time_base), 6)
        assert self._f is not None, "AuditWriter.open() first"
        rec = {"type": "frame", "frame": index, "pts": pts, "time": t, "regions": regs}
        if hidden is not None:
            rec["region_hidden"] = hidden
        if out_of_body:
            rec["out_of_body"] = True
            self.frames_out_of_body += 1
        self._f.write(json.dumps(rec) + "\n")
        self.frames += 1
        self.frames_with_regions += bool(regs)
        self.regions += len(regs)
        self.frames_region_hidden += hidden is not None

    def commit(self) -> None:
        """Write the summary, fsync and rename into place."""
        if self._f is None:
            return
        summary = {"type": "summary", "frames": self.frames, "frames_with_regions": self.frames_with_regions,
                   "regions": self.regions, "complete": True}
        if self.frames_region_hidden:
            summary["frames_region_hidden"] = self.frames_region_hidden
        if self.frames_out_of_body:
            summary["frames_out_of_body"] = self.frames_out_of_body
        self._f.write(json.dumps(summary) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        self._f = None
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        if self._f is not None:
            self._f.close()
            self._f = None
        if self._tmp and os.path.exists(self._tmp):
            os.unlink(self._tmp)


def read_audit(path: str | Path) -> tuple[dict, list[dict], dict | None]:
    """``(header, frame records, summary or None)`` of an audit sidecar."""
    header, frames, summary = {}, [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            kind = rec.get("type")
            if kind == "header":
                header = rec
            elif kind == "frame":
                frames.append(rec)
            elif kind == "summary":
                summary = rec
    return header, frames, summary
