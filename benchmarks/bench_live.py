"""Live de-identification: privacy, fail-closed exposure, dropped frames, CPU and clock steadiness (issue 15).

A real 1080p30 recording (paper layout, libx264 at the recorder's default preset): endoscope and
vitals are ``testsrc`` patterns, the room camera (640x360, the paper layout's room slot at
1280,0) is a file source playing a face video:

* ``shared`` (skips without ``../shared``): the OR photos of ``../shared/data/or_faces`` panned
  and zoomed as ``../shared/eval/deid_scene.py`` shows them in its room view (4 s a photo; the
  folders in ``SURGBOX_BENCH_LIVE_DIRS``, default ``or_faces``), scored with
  ``../shared/eval/deid_score.py`` (its ``score`` on the recording, each output frame compared
  with the scene frame it shows, plus its criterion frame by frame for the exposure runs);
* ``synthetic`` (any clone): drawn masked, capped faces walking across the room
  (``tests/masked_faces.py``), scored with the tests' detail criterion (``tests/live_fixtures.py``).

Which file frame each output frame shows is read from the room frame's presentation time (the
compositor is wrapped to note it), so drops, repeats and the live delay are scored as they are.
Each scene is recorded once per mode, in the same run: ``plain`` (no live hiding) and ``live``
(``deidentify = true``, the default ``[deid]`` table: the default detector, adaptive cadence every
3rd to every 6th frame); more with ``SURGBOX_BENCH_LIVE_MODES`` (comma-separated names of
:data:`MODES`). Reported per mode:

* recall (protected face-frames / face-frames), frames with an exposed face, and the longest run
  of consecutive output frames with an exposed face in seconds, next to ``latency_s`` (the
  fail-closed latency: no face may stay exposed longer);
* output frames dropped (skipped ticks) and the room source's dropped / repeated frames;
* CPU per recorded second (user + system time of this process and its children, every thread)
  and the ratio to ``plain``; budget: the whole recorder <= 2 cores (<= 2.0 s/s);
* capture-to-composite latency of the room view, and the tick jitter: how much later than the
  median each tick is composed after its time, std / p99 / max (the recorder's clock steadiness);
* the live source's own stats: frames hidden whole, the cadence it settled on, detector calls;
* thread or process (modes ``plain + detector thread`` / ``plain + detector process``): a plain
  recording with the default detector running beside it at the live cadence on a thread of the
  recorder's process or in a child process; their tick jitter against ``plain`` is what the
  detector's hold on the GIL costs the recorder's clock.

Run: ``pytest benchmarks/bench_live.py --benchmark-only -s`` or ``python benchmarks/bench_live.py
[--scene shared|synthetic] [--modes plain,live]`` (``SURGBOX_BENCH_LIVE_S`` seconds per
recording, default 20; ``SURGBOX_BENCH_LIVE_JSON=FILE`` writes the table). Timings on a shared
machine are noisy: say "loaded" when you report them.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO / "tests"))

from live_fixtures import FPS, H, W, detail  # noqa: E402
from masked_faces import face_box, masked_scene  # noqa: E402

from surgbox.clock import NS_PER_S, Clock  # noqa: E402
from surgbox.config import RecordConfig  # noqa: E402
from surgbox_ext.compositor import DefaultCompositor  # noqa: E402

SECONDS = float(os.environ.get("SURGBOX_BENCH_LIVE_S", "20"))
ROOM = (1280, 0)  # the paper layout's room slot (= deid_scene's OR_VIEW)
#: mode -> the [deid] table of the room source (None: no live hiding)
MODES: dict[str, dict[str, Any] | None] = {
    "plain": None,
    "live": {},
    "live fixed every 3": {"max_every": 3},
    # the default ensemble without its native-size CenterFace member (the costliest: see docs/deid.md "Live")
    "live light": {"light": True},
    # surgbox deid's longer gap (20 frames) live: more faces bridged between detections, more delay
    "live max gap 20": {"max_gap": 20},
    # the detector's math on two threads (one call is one image, so two OpenVINO streams cannot
    # split it): shorter calls allow a faster cadence, at the cost of CPU the encoder shares
    "live 2 threads": {"detector_threads": 2},
    # the cadence allowed to reach every 2nd frame (15 detections/s at 30 fps) where the detector keeps up
    "live every 2": {"every": 2},
    # the privacy-first operating point (docs/deid.md): every member from 0.05, every candidate hidden
    "live privacy first": {"threshold": 0.05, "confirm_hits": 1},
    # thread or process worker: a plain recording with the default detector working beside it at the
    # live cadence (10 calls/s on the room video's frames) on a thread of the recorder's process, or
    # in a child process: the difference in tick jitter is what the GIL costs the recorder's clock
    "plain + detector thread": None,
    "plain + detector process": None,
}
NEIGHBOURS = {"plain + detector thread": "thread", "plain + detector process": "process"}
NEIGHBOUR_RATE = 10.0  # detector calls per second (every 3rd frame of 30 fps)
DEFAULT_MODES = "plain,live,live light,plain + detector thread,plain + detector process"


# -- scenes ---------------------------------------------------------------------------------------
class Synthetic:
    """Drawn masked, capped faces walking across a 640x360 room."""

    name = "synthetic"
    deid_score = None

    def n_frames(self) -> int:
        return int(SECONDS * FPS) + 6 * FPS

    def view(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        faces = [(60 + (3 * n) % 520, 120, 36), (560 - (2 * n) % 480, 200, 30), (100 + (4 * n) % 440, 260, 26)]
        return masked_scene(H, W, faces), np.array([face_box(*f) for f in faces], float)

    def exposed(self, src_y: np.ndarray, out_y: np.ndarray, box) -> bool:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(W, x2), min(H, y2)
        if x2 - x1 < 4 or y2 - y1 < 4:
            return False
        raw = detail(src_y[y1:y2, x1:x2])
        return raw > 1.0 and detail(out_y[y1:y2, x1:x2]) >= 0.5 * raw

    def prepare(self, y: np.ndarray) -> np.ndarray:
        return y


class Shared:
    """The room view of ``deid_scene`` over the photos of ``dirs`` (scored with ``deid_score``)."""

    name = "shared"

    def __init__(self, dirs: list[str]):
        sys.path.insert(0, str(SHARED / "eval"))
        import deid_scene
        import deid_score

        class _Scene(deid_scene.Scene):  # (a crop a rounding error outside a photo: clamped, as bench_privacy)
            def _view(self, i):
                shot, x0, y0, zoom = super()._view(i)
                return shot, max(0.0, x0), max(0.0, y0), zoom

        self.scene = _Scene.from_dir(*(str(SHARED / "data" / d) for d in dirs))
        self.deid_score, self.dirs = deid_score, dirs

    def n_frames(self) -> int:
        return self.scene.n_frames()

    def view(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        img, boxes = self.scene._or_view(n)
        return np.asarray(img), np.asarray(boxes, float).reshape(-1, 4) - [*ROOM, *ROOM]

    def prepare(self, y: np.ndarray) -> np.ndarray:
        return self.deid_score.band(y)

    def exposed(self, src_b: np.ndarray, out_b: np.ndarray, box) -> bool:
        a, b, c, d = (int(round(v)) for v in box)
        return not self.deid_score.ncc(src_b[b:d, a:c], out_b[b:d, a:c]) < 0.3  # deid_score's criterion

    def official(self, path: Path, shown: list[int | None]) -> dict:
        """``deid_score.score`` of the recording, each output frame against the scene frame it shows."""
        return self.deid_score.score(_Remapped(self.scene, shown), str(path))


class _Remapped:
    """A ``deid_scene.Scene`` seen through a recording: output frame ``i`` shows scene frame ``shown[i]``."""

    has_meta = True

    def __init__(self, scene: Any, shown: list[int | None]):
        self.scene, self.shown = scene, shown

    def n_frames(self) -> int:
        return len(self.shown)

    def _j(self, i: int) -> int | None:
        j = self.shown[i]
        return j if j is not None and j < self.scene.n_frames() else None

    def render(self, i: int):
        frame = np.zeros((1080, 1920, 3), np.uint8)
        j = self._j(i)
        if j is None:
            return frame, np.zeros((0, 4))
        view, boxes = self.scene._or_view(j)
        frame[ROOM[1]:ROOM[1] + H, ROOM[0]:ROOM[0] + W] = view
        return frame, boxes

    def meta_at(self, i: int):
        j = self._j(i)
        return [] if j is None else self.scene.meta_at(j)

    def ignores_at(self, i: int):
        j = self._j(i)
        return np.zeros((0, 4)) if j is None else self.scene.ignores_at(j)


def write_room(path: Path, scene: Any, frames: int) -> None:
    """The scene's room view as a 640x360 H.264 file at 30 fps (pts = frame number)."""
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "16", "g": "30"})
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        for n in range(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene.view(n)[0]), format="rgb24")
            vf.pts = n
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode():
            out.mux(p)


# -- thread or process ----------------------------------------------------------------------------
def _neighbour_loop(images: list, stop: Any, calls: Any, cpu: Any) -> None:
    """Run the default detector on ``images`` in turn at :data:`NEIGHBOUR_RATE` until ``stop`` is
    set; ``calls`` and ``cpu`` (this process's CPU seconds, after each call) are shared values."""
    from surgbox.deid import defaults
    from surgbox.plugins import get_plugins

    det = get_plugins().create("detector", defaults.DETECTOR, **defaults.detector_options(defaults.DETECTOR))
    det.open()
    k, t = 0, time.monotonic()
    while not stop.is_set():
        det.detect_frames([images[k % len(images)]], [k])
        k += 1
        calls.value = k
        cpu.value = time.process_time()
        t += 1 / NEIGHBOUR_RATE
        stop.wait(max(0.0, t - time.monotonic()))
    det.close()


class Neighbour:
    """The default detector at the live cadence beside a recording, on a thread or in a child process."""

    def __init__(self, kind: str, video: Path):
        import multiprocessing

        import av

        with av.open(str(video)) as c:
            self.images = [f.to_ndarray(format="rgb24") for _, f in zip(range(30), c.decode(video=0))]
        self.kind, self.ctx = kind, multiprocessing.get_context("spawn")
        self.stop, self.calls, self.cpu = self.ctx.Event(), self.ctx.Value("l", 0), self.ctx.Value("d", 0.0)
        if kind == "thread":
            import threading

            self.worker: Any = threading.Thread(target=_neighbour_loop, args=(self.images, self.stop, self.calls, self.cpu), daemon=True)
        else:
            self.worker = self.ctx.Process(target=_neighbour_loop, args=(self.images, self.stop, self.calls, self.cpu), daemon=True)

    def start(self) -> None:
        self.worker.start()
        deadline = time.monotonic() + 120
        while self.calls.value < 3 and time.monotonic() < deadline:  # the detector is open and running
            time.sleep(0.1)

    def child_cpu(self) -> float:
        """The child process's CPU seconds so far (0 for a thread: this process's time counts it)."""
        return float(self.cpu.value) if self.kind == "process" else 0.0

    def finish(self) -> int:
        self.stop.set()
        self.worker.join(30)
        return int(self.calls.value)


# -- recording ------------------------------------------------------------------------------------
class TimedCompositor(DefaultCompositor):
    """The default compositor, noting for each tick which room file frame it shows, how old that
    frame is, and how late the tick is composed after its time."""

    def __init__(self, clock: Clock):
        super().__init__()
        self.clock, self.ages, self.lateness, self.shown = clock, [], [], []

    def compose(self, frames, readings, event, time_ns):
        now = self.clock.now_ns()
        self.lateness.append((now - time_ns) / NS_PER_S)  # time_ns: the output time (tick time + a constant)
        room = frames.get("room")
        if room is None or getattr(room.image, "pts", None) is None:
            self.shown.append(None)
        else:
            self.ages.append((now - room.capture_ns) / NS_PER_S)
            self.shown.append(int(round(float(room.image.pts * room.image.time_base) * FPS)))
        return super().compose(frames, readings, event, time_ns)


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def record(out: Path, video: Path, deid: dict[str, Any] | None, neighbour: str | None = None) -> dict:
    """Record ``SECONDS`` of the paper layout with ``video`` as the room camera (hidden live with
    the ``deid`` table; ``None``: not hidden; ``neighbour``: ``thread`` / ``process``, the default
    detector working beside it, see :class:`Neighbour`); the measurements and, under ``shown``,
    the room file frame of each output frame."""
    room: dict[str, Any] = {"plugin": "file", "path": str(video), "anchor": "start", "deidentify": deid is not None}
    cfg = RecordConfig.from_mapping({
        "fps": FPS,
        "sources": {"endoscope": {"plugin": "testsrc", "width": 1280, "height": 720}, "room": room,
                    "vitals": {"plugin": "testsrc", "width": 640, "height": 360}},
        "layout": {"preset": "paper"},
        **({"deid": deid} if deid else {}),
    })
    clock = Clock()
    comp = TimedCompositor(clock)
    rec = cfg.build_recorder(output=out, duration=SECONDS, clock=clock, overwrite=True)
    rec.compositor = comp  # the default compositor, timed
    side = Neighbour(neighbour, video) if neighbour else None
    if side is not None:
        side.start()
    rec.start()  # sources (and the detector) open here: not counted
    c0, t0 = _cpu() + (side.child_cpu() if side else 0.0), time.monotonic()
    rec.wait(SECONDS * 10 + 60)
    c1, t1 = _cpu() + (side.child_cpu() if side else 0.0), time.monotonic()
    side_calls = None if side is None else side.finish()
    stats = rec.stop()
    ages = sorted(comp.ages)
    late = np.array(comp.lateness[FPS:])  # (the first second: sources opening)
    late = late - np.median(late) if len(late) else late  # how much later than usual each tick is composed
    rs = stats["sources"]["room"]
    res: dict[str, Any] = {
        "cpu_per_s": round((c1 - c0) / max(t1 - t0, 1e-9), 3), "frames": stats["frames"], "skipped_ticks": stats["skipped_ticks"],
        "room_dropped": rs.get("dropped"), "room_repeated": rs.get("duplicated"),
        "latency_ms_mean": round(1000 * sum(ages) / max(len(ages), 1), 1), "latency_ms_max": round(1000 * ages[-1], 1) if ages else None,
        "tick_jitter_ms": {"std": round(1000 * float(late.std()), 2), "p99": round(1000 * float(np.percentile(late, 99)), 2),
                           "max": round(1000 * float(late.max()), 2)} if len(late) else None,
        "recorder_latency_s": rec.latency_s, "shown": comp.shown,
    }
    if side_calls is not None:
        res["neighbour_calls"] = side_calls
    d = (rs.get("source") or {}).get("deid")
    if d:
        res["deid"] = {k: d.get(k) for k in ("frames", "frames_slot_hidden", "frames_faces_hidden", "hidden_intervals",
                                             "detections", "detector_calls", "detector_busy_s", "latency_ms_mean", "latency_ms_max")}
        res["deid"]["cadence"] = {k: v for k, v in (d.get("cadence") or {}).items() if k != "history"}
        res["latency_s"] = cfg.deid.latency_s
    return res


def score(scene: Any, path: Path, shown: list[int | None]) -> dict:
    """Recall, frames with an exposed face and the longest run of them (seconds), from the pixels."""
    import av

    faces = protected = bad = run = longest = 0
    with av.open(str(path)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i >= len(shown):
                break
            j = shown[i]
            miss = False
            if j is not None and j < scene.n_frames():
                src, boxes = scene.view(j)
                out = fr.to_ndarray(format="gray")[ROOM[1]:ROOM[1] + H, ROOM[0]:ROOM[0] + W]
                sy = (0.299 * src[..., 0] + 0.587 * src[..., 1] + 0.114 * src[..., 2]).astype(np.uint8)
                sb, ob = scene.prepare(sy), scene.prepare(out)
                for box in boxes:
                    faces += 1
                    hit = scene.exposed(sb, ob, box)
                    protected += not hit
                    miss |= hit
            bad += miss
            run = run + 1 if miss else 0
            longest = max(longest, run)
    return {"recall": round(protected / max(faces, 1), 4), "face_frames": faces, "frames_with_exposed_face": bad,
            "longest_exposure_s": round(longest / FPS, 3)}


def run_scene(scene: Any, tmp: Path, modes: list[str], log: Callable[[str], None] = print) -> dict[str, dict]:
    video = tmp / f"room-{scene.name}.mp4"
    write_room(video, scene, min(scene.n_frames(), int(SECONDS * FPS) + 6 * FPS))
    results: dict[str, dict] = {}
    for mode in modes:
        out = tmp / f"rec-{scene.name}-{mode.replace(' ', '_')}.mp4"
        r = record(out, video, MODES[mode], NEIGHBOURS.get(mode))
        shown = r.pop("shown")
        r.update(score(scene, out, shown))
        if mode != "plain" and getattr(scene, "deid_score", None) is not None:
            off = scene.official(out, shown)
            r["deid_score"] = {k: off[k] for k in ("recall", "frames_with_exposed_face", "collateral", "face_frames")}
            r["deid_score"]["masked_recall"] = (off.get("groups", {}).get("masked") or {}).get("recall")
        results[mode] = r
        log(f"{scene.name} / {mode}: {json.dumps(r)}")
    base = results.get("plain", {}).get("cpu_per_s")
    for r in results.values():
        if base:
            r["cpu_ratio_to_plain"] = round(r["cpu_per_s"] / base, 3)
    return results


def table(all_results: dict[str, dict[str, dict]]) -> str:
    rows = ["scene      mode                  recall  exposed-frames longest-s (latency_s) skipped cpu s/s (ratio) "
            "jitter std/p99/max ms  slot-hidden cadence"]
    for sname, res in all_results.items():
        for mode, r in res.items():
            j = r.get("tick_jitter_ms") or {}
            d = r.get("deid") or {}
            cad = d.get("cadence") or {}
            rows.append(f"{sname:10s} {mode:21s} {r['recall']:.4f}  {r['frames_with_exposed_face']:5d}/{r['frames']:<5d}     "
                        f"{r['longest_exposure_s']:6.3f} ({r.get('latency_s', '-')})  {r['skipped_ticks']:5d}   "
                        f"{r['cpu_per_s']:.2f} ({r.get('cpu_ratio_to_plain', 1.0):.2f})  "
                        f"{j.get('std')}/{j.get('p99')}/{j.get('max')}  "
                        f"{d.get('frames_slot_hidden', '-')}/{d.get('frames', '-')}  {cad.get('every', '-')}")
    return "\n".join(rows)


def _modes() -> list[str]:
    modes = [m.strip() for m in os.environ.get("SURGBOX_BENCH_LIVE_MODES", DEFAULT_MODES).split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"unknown mode(s) {', '.join(unknown)}; modes: {', '.join(MODES)}")
    return modes


def _dirs() -> list[str]:
    return [d for d in os.environ.get("SURGBOX_BENCH_LIVE_DIRS", "or_faces").split(",") if d]


RESULTS: dict[str, dict[str, dict]] = {}


@pytest.mark.parametrize("which", ["synthetic", "shared"])
def test_live_hiding_privacy_cpu_drops(benchmark, tmp_path, which):
    if which == "shared" and not (SHARED / "eval" / "deid_score.py").exists():
        pytest.skip("../shared (the scene and its scorer) is not here")
    scene = Synthetic() if which == "synthetic" else Shared(_dirs())
    modes = _modes()
    benchmark.pedantic(lambda: RESULTS.__setitem__(which, run_scene(scene, tmp_path, modes)), rounds=1, iterations=1)
    res = RESULTS[which]
    benchmark.extra_info.update(res)
    print("\n" + table({which: res}))
    if path := os.environ.get("SURGBOX_BENCH_LIVE_JSON"):
        Path(path).write_text(json.dumps(RESULTS, indent=1))
    for r in res.values():
        assert r["frames"] == round(SECONDS * FPS)


def main(argv: list[str]) -> None:
    import argparse
    import tempfile

    p = argparse.ArgumentParser(description="live de-identification benchmark (see the module docstring)")
    p.add_argument("--scene", choices=("synthetic", "shared"), action="append", help="scene(s) to record (default: both)")
    p.add_argument("--modes", default=None, help=f"comma-separated modes of {', '.join(MODES)} (default {DEFAULT_MODES})")
    p.add_argument("--json", default=None, help="write the results as JSON to this file")
    a = p.parse_args(argv)
    if a.modes:
        os.environ["SURGBOX_BENCH_LIVE_MODES"] = a.modes
    out: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for which in a.scene or ["synthetic", "shared"]:
            if which == "shared" and not (SHARED / "eval" / "deid_score.py").exists():
                print("shared: skipped (../shared is not here)")
                continue
            scene = Synthetic() if which == "synthetic" else Shared(_dirs())
            out[which] = run_scene(scene, Path(tmp), _modes())
    print(table(out))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
