"""Privacy and speed of de-identification on real faces: the defaults against each member alone.

Input: a 1080p30 OR composite made by ``../shared/eval/deid_scene.py`` from the annotated photos
in ``../shared/data`` (``faces``: the 4 shared photos; ``or_faces``: real OR/clinic staff in masks
and caps; ``masked_faces``: 197 photos, 117 masked faces), each photo panned and zoomed in the
room-camera slot for 4 s. Skips without ``../shared``.

For each setting, ``surgbox deid SCENE OUT --region 1280,0,640,360`` runs as a subprocess (as a
user runs it; its cold start counts), and ``../shared/eval/deid_score.py``'s ``score`` rates the
output from pixels: recall (protected face-frames), recall on masked faces and by face size
(short side < 20, 20-40, 40-80, >= 80 px), frames with an exposed face, collateral blur. A plain
decode + encode of the same file with the same ``libx264`` plugin settings, in the same run, is
the speed baseline. Settings: ``defaults`` (no option), then each default ensemble member alone
at its own threshold and scale, then the earlier default (RetinaFace at half size, 0.3).

One table is printed at the end (and written as JSON with ``SURGBOX_BENCH_PRIVACY_JSON=FILE``)::

    pytest benchmarks/bench_privacy.py --benchmark-only -s                      # whole scene (~14 min of video)
    SURGBOX_BENCH_PRIVACY_QUICK=1 pytest benchmarks/bench_privacy.py -s         # subset: runs in minutes
    python benchmarks/bench_privacy.py [--quick] [--stride N]                   # the same without pytest
    python benchmarks/bench_privacy.py --quick --only defaults --keep DIR        # one setting, outputs + audit kept

``--quick`` (or ``SURGBOX_BENCH_PRIVACY_QUICK=1``) keeps the 4 shared photos, the OR photos and
every 40th masked-faces photo (14 shots, 56 s of video) and scores every 2nd frame.
Targets (issue 11; checked here only as a report, the coordinator times on a quiet machine):
recall >= 0.995, masked >= 0.99, frames with an exposed face <= 0.5 %, collateral <= 2 %,
wall <= 1.0x the video's duration.

The scene writer of ``deid_scene.py`` can place a crop a rounding error outside one
masked-faces photo (980x619: ``x0 = -1e-13``, which Pillow refuses); :class:`_Scene` clamps it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REGION = "1280,0,640,360"
QUICK = os.environ.get("SURGBOX_BENCH_PRIVACY_QUICK", "") not in ("", "0")
# comma-separated setting names (or name prefixes) to run, e.g. "defaults"; empty: all of them
ONLY = [s for s in os.environ.get("SURGBOX_BENCH_PRIVACY_ONLY", "").split(",") if s]
RESULTS: dict[str, dict] = {}


def settings() -> dict[str, list[str]]:
    """Setting name -> extra ``surgbox deid`` arguments: the defaults, the privacy-first operating
    point (every member from 0.05, every candidate track hidden), each default member alone."""
    from surgbox.deid import defaults

    out: dict[str, list[str]] = {"defaults": [], "privacy first (--threshold 0.05 --confirm-hits 1)":
                                 ["--threshold", "0.05", "--confirm-hits", "1"]}
    if defaults.DETECTOR == "ensemble":
        opts = defaults.detector_options("ensemble")
        for m in opts["members"]:
            own = {k: v for k, v in m.items() if k not in ("name", "every", "phase", "confirm")}
            own.setdefault("threshold", opts.get("threshold"))
            args = ["--detector", m["name"]]
            for k, v in own.items():
                args += ["--detector-option", f"{k}={json.dumps(v)}"]
            label = f"{m['name']} alone " + ",".join(f"{k}={v}" for k, v in own.items())
            out[label] = args
    # RetinaFace by name runs at its declared options: scale 0.5, threshold 0.3 (the earlier default)
    out["retinaface scale 0.5 (earlier default)"] = ["--detector", "retinaface"]
    return out


def _eval_modules():
    sys.path.insert(0, str(SHARED / "eval"))
    import deid_scene
    import deid_score

    return deid_scene, deid_score


def make_scene(quick: bool, dirs: list[str] | None = None):
    """The scene (a ``deid_scene.Scene`` with the crop clamped inside each photo): the photos of
    ``dirs`` (folder names under ``../shared/data``; default ``faces``, ``or_faces`` and
    ``masked_faces``), with ``quick`` every 40th masked-faces photo only."""
    deid_scene, _ = _eval_modules()

    class _Scene(deid_scene.Scene):
        def _view(self, i):
            shot, x0, y0, zoom = super()._view(i)
            return shot, max(0.0, x0), max(0.0, y0), zoom

    data = SHARED / "data"
    full = _Scene.from_dir(*(str(data / d) for d in (dirs or ("faces", "or_faces", "masked_faces"))))
    if not quick:
        return full
    keep = [i for i, m in enumerate(full.meta) if not m or m[0]["source"] != "masked_faces"]
    masked = [i for i, m in enumerate(full.meta) if m and m[0]["source"] == "masked_faces"]
    keep += masked[::40]
    return _Scene([full.shots[i] for i in keep], [full.ignores[i] for i in keep], [full.meta[i] for i in keep])


def _duration(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        return float(vs.frames / vs.average_rate)


def run_deid(src: Path, dst: Path, args: list[str]) -> dict:
    """``surgbox deid`` in a subprocess; its JSON report plus the measured wall time."""
    report = dst.with_suffix(".json")
    cmd = [sys.executable, "-m", "surgbox", "deid", str(src), str(dst), "--region", REGION, "--quiet", "--report", str(report), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return {"wall_s": wall, "report": json.loads(report.read_text())}


def row(name: str, scored: dict, wall: float, duration: float, base_fps: float | None, frames: int) -> dict:
    g = scored.get("groups", {})

    def rec(key: str):
        return g.get(key, {}).get("recall")

    fps = frames / wall
    out = {"recall": scored["recall"], "masked": rec("masked"), "<20": rec("size <20"), "20-40": rec("size 20-40"),
           "40-80": rec("size 40-80"), ">=80": rec("size >=80"),
           "exposed_frames_pct": round(100 * scored["frames_with_exposed_face"] / max(1, scored["frames"]), 2),
           "collateral_pct": round(100 * scored["collateral"], 2), "wall_x_duration": round(wall / duration, 3),
           "throughput_vs_plain": round(fps / base_fps, 3) if base_fps else None, "load_after": os.getloadavg()[0]}
    RESULTS[name] = out
    return out


def table(results: dict[str, dict]) -> str:
    cols = ["recall", "masked", "<20", "20-40", "40-80", ">=80", "exposed_frames_pct", "collateral_pct", "wall_x_duration",
            "throughput_vs_plain"]
    head = "| setting | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join("" if r.get(c) is None else str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def run_all(workdir: Path, quick: bool, stride: int | None = None, only: list[str] | None = None,
            audit: bool = False) -> dict[str, dict]:
    """Write the scene, run the baseline and every setting (or those whose name starts with one
    of ``only``), score, and return the rows; with ``audit`` each run keeps its audit sidecar
    beside its output (for ``privacy_misses.py``)."""
    _, deid_score = _eval_modules()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_deid import transcode

    stride = stride or (2 if quick else 1)
    scene = make_scene(quick)
    src = workdir / "scene.mp4"
    if not (audit and src.exists()):  # a kept folder's scene is reused (the scene is deterministic)
        scene.write(str(src))
    duration = _duration(src)
    t0 = time.perf_counter()
    frames = transcode(src, workdir / "plain.mp4")
    base_fps = frames / (time.perf_counter() - t0)
    RESULTS["plain decode+encode (baseline)"] = {"wall_x_duration": round(frames / base_fps / duration, 3),
                                                 "throughput_vs_plain": 1.0}
    for name, args in settings().items():
        if only and not any(name.startswith(o) for o in only):
            continue
        dst = workdir / f"out{len(RESULTS)}.mp4"
        if audit:
            args = [*args, "--audit", str(dst.with_suffix(".jsonl"))]
        res = run_deid(src, dst, args)
        scored = deid_score.score(scene, str(dst), stride)
        row(name, scored, res["wall_s"], duration, base_fps, res["report"]["frames"])
        print(f"{name}: {json.dumps(RESULTS[name])}", flush=True)
    return RESULTS


@pytest.fixture(scope="module")
def shared():
    if not (SHARED / "eval" / "deid_score.py").exists() or not (SHARED / "data" / "or_faces").is_dir():
        pytest.skip("../shared (eval scripts and annotated photos) is not present beside this checkout")
    return SHARED


def test_privacy_table(benchmark, shared, tmp_path):
    results = benchmark.pedantic(run_all, args=(tmp_path, QUICK, None, ONLY), rounds=1, iterations=1)
    benchmark.extra_info.update(results)
    print("\n" + table(results))
    out = os.environ.get("SURGBOX_BENCH_PRIVACY_JSON")
    if out:
        Path(out).write_text(json.dumps(results, indent=2) + "\n")
    assert results["defaults"]["recall"] > 0  # the numbers are reported, the targets judged by a person (see docstring)


if __name__ == "__main__":
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="subset of the photos, every 2nd frame scored")
    ap.add_argument("--stride", type=int, help="score every Nth frame")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only the settings whose name starts with NAME (repeatable), e.g. --only defaults")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="write the scene, outputs and audit sidecars into DIR (kept) instead of a temporary folder")
    a = ap.parse_args()
    if not (SHARED / "eval" / "deid_score.py").exists():
        sys.exit("../shared is not present beside this checkout")
    with tempfile.TemporaryDirectory() as d:
        work = a.keep or Path(d)
        work.mkdir(parents=True, exist_ok=True)
        res = run_all(work, a.quick or QUICK, a.stride, a.only or ONLY, audit=a.keep is not None)
    print(table(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
