"""Progress of a batch: overall and per task, in video-seconds per second.

A :class:`Tracker` turns what the batch reports into JSON-ready events (dicts with an
``"event"`` key), passed to the batch's ``emit`` callback:

* ``{"event": "plan", "recordings": n, "tasks": t, "video_s": s, ...}`` once everything is planned;
* ``{"event": "task", "recording": label, "segment": i, "state": "done"|"failed", "frames": f,
  "video_s": s, "wall_s": w, "video_s_per_s": s / w, "attempts": a, "worker_pid": p,
  "worker_peak_rss_mb": m, "error": ...}`` per finished task;
* ``{"event": "recording", "recording": label, "state": "done"|"failed"|"skipped", "dst": ...,
  "frames": f, "reason"/"error": ...}`` per recording;
* ``{"event": "progress", "tasks_done": d, "tasks": t, "video_s_done": x, "video_s": s,
  "elapsed_s": e, "video_s_per_s": x / e, "eta_s": ...}`` after each task;
* ``{"event": "end", ...}``: the summary (also the return value of the batch).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs


@attrs.define(eq=False)
class Tracker:
    emit: Callable[[dict[str, Any]], None]
    tasks: int = 0
    video_s: float = 0.0
    tasks_done: int = 0
    video_s_done: float = 0.0
    t0: float = attrs.field(factory=time.perf_counter)
    peak_rss: dict[int, int] = attrs.field(factory=dict)  # worker pid -> bytes

    def planned(self, recordings: int, tasks: int, video_s: float, **extra: Any) -> None:
        self.tasks, self.video_s = tasks, video_s
        self.t0 = time.perf_counter()
        self.emit({"event": "plan", "recordings": recordings, "tasks": tasks, "video_s": round(video_s, 3), **extra})

    def task(self, label: str, segment: int, video_s: float, *, ok: bool, **detail: Any) -> None:
        self.tasks_done += 1
        if ok:
            self.video_s_done += video_s
        pid, rss = detail.pop("pid", None), detail.pop("peak_rss", None)
        if pid is not None and rss is not None:
            self.peak_rss[pid] = max(self.peak_rss.get(pid, 0), rss)
            detail.update(worker_pid=pid, worker_peak_rss_mb=round(rss / 2**20, 1))
        wall = detail.get("wall_s")
        if ok and wall:
            detail["video_s_per_s"] = round(video_s / wall, 3)
        self.emit({"event": "task", "recording": label, "segment": segment, "state": "done" if ok else "failed",
                   "video_s": round(video_s, 3), **detail})
        elapsed = time.perf_counter() - self.t0
        rate = self.video_s_done / elapsed if elapsed > 0 else None
        eta = (self.video_s - self.video_s_done) / rate if rate else None
        self.emit({"event": "progress", "tasks_done": self.tasks_done, "tasks": self.tasks,
                   "video_s_done": round(self.video_s_done, 3), "video_s": round(self.video_s, 3),
                   "elapsed_s": round(elapsed, 3), "video_s_per_s": None if rate is None else round(rate, 3),
                   "eta_s": None if eta is None else round(eta, 1)})

    def skipped_task(self, video_s: float) -> None:
        """A task of a recording that failed meanwhile: it will not run."""
        self.tasks -= 1
        self.video_s -= video_s

    def recording(self, label: str, state: str, **detail: Any) -> None:
        self.emit({"event": "recording", "recording": label, "state": state, **detail})

    def summary(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.t0
        return {"elapsed_s": round(elapsed, 3), "video_s": round(self.video_s_done, 3),
                "video_s_per_s": round(self.video_s_done / elapsed, 3) if elapsed > 0 else None,
                "workers": len(self.peak_rss),
                "worker_peak_rss_mb": {str(p): round(v / 2**20, 1) for p, v in sorted(self.peak_rss.items())}}
