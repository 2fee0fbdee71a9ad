"""Replay de-identification settings on cached detections: tune without re-running detectors.

``cache``: decodes the scene video (as ``surgbox deid`` does: ``crop_rgb`` of the room-camera
slot, full size), runs each default ensemble member alone on the frames of its cadence (or
every frame, ``--all-frames``) at a low threshold (``--floor``, default 0.05) and saves every
box and score per member and frame (``.npz``).

``replay``: for one setting (members' thresholds, cadence and ``confirm``, the temporal stage,
the mask), rebuilds what the pipeline would hide — member cadence, score calibration and NMS
fusion (:mod:`surgbox_ext.ensemble`), :class:`~surgbox.deid.temporal.TemporalFilter` with the
scene cuts the pipeline would find, the real anonymizer on the decoded YUV frame — and scores
it with ``deid_score``'s criterion against the pristine render (no second encode: a proxy of
the pipeline that differs from it only by the output's H.264 pass; check a winner with
``bench_privacy.py``). Prints recall, masked, by size, exposed frames and collateral.

    python benchmarks/privacy_replay.py cache --quick SCENE.mp4 CACHE.npz
    python benchmarks/privacy_replay.py replay --quick SCENE.mp4 CACHE.npz [--set KEY=VALUE ...]

``record`` / ``exact``: no proxy. ``record`` runs ``deidentify()`` on the scene with the default
detector wrapped so that every answer it gives (per ``detect_frames`` call) is saved (pickle);
``exact`` runs ``deidentify()`` again — decode, temporal stage, masks, blur, H.264 encode, all
of the real pipeline — with a detector that gives back those answers, and the
``DeidOptions`` fields of ``--set`` (``max_gap``, ``carry``, ``expand``, ...; and the temporal
stage's ``edge_carry``, ``confirm_hits``, ``edge_band``, ``link_iou``), then scores the
output with ``deid_score``. The detector is deterministic, so ``exact`` without ``--set``
reproduces ``bench_privacy.py``'s figures for the defaults exactly; without the detector, a
setting takes about half the time of a full run::

    python benchmarks/privacy_replay.py record --quick SCENE.mp4 ANSWERS.pkl
    python benchmarks/privacy_replay.py exact --quick SCENE.mp4 ANSWERS.pkl --set max_gap=20

Needs ``../shared`` (eval scripts and data). Development tool, not part of the test run.
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_privacy  # noqa: E402  (also puts ../shared/eval on sys.path)
from privacy_misses import textured_tiles  # noqa: E402

REGION = (1280, 0, 640, 360)
# TemporalFilter fields a replay may set with --set KEY=VALUE (besides carry, max_gap, edge_carry, confirm_hits)
TEMPORAL_KEYS = ("link_iou", "edge_band")
# TemporalFilter fields that are no surgbox deid option, which ``exact`` may set
EXACT_TEMPORAL_KEYS = ("edge_carry", "confirm_hits", "edge_band", "link_iou")


def members_default() -> list[dict]:
    from surgbox.deid import defaults

    return copy.deepcopy(list(defaults.detector_options("ensemble")["members"]))


def decode_frames(path: Path):
    import av

    c = av.open(str(path))
    vs = c.streams.video[0]
    vs.thread_type = "AUTO"
    try:
        for fr in c.decode(vs):
            yield fr.reformat(format="yuv420p") if fr.format.name != "yuv420p" else fr
    finally:
        c.close()


def cache(scene_path: Path, out: Path, floor: float, threads: int, all_frames: bool = False) -> None:
    from surgbox.deid.crop import crop_rgb
    from surgbox.plugins import get_plugins
    from surgbox.types import Rect

    plugins = get_plugins()
    specs = members_default()
    dets = []
    for m in specs:
        opts = {k: v for k, v in m.items() if k not in ("name", "every", "phase", "confirm")}
        opts["threshold"] = floor
        opts["threads"] = threads
        d = plugins.create("detector", m["name"], **opts)
        d.open()
        dets.append(d)
    rect = Rect(*REGION)
    boxes: list[list[np.ndarray]] = [[] for _ in dets]
    scores: list[list[np.ndarray]] = [[] for _ in dets]
    batch = []

    def run(batch):
        for k, (d, m) in enumerate(zip(dets, specs)):
            todo = [(i, c) for i, c in batch if all_frames or i % m.get("every", 1) == m.get("phase", 0)]
            found = dict(zip([i for i, _ in todo], d.detect([c.image for _, c in todo]))) if todo else {}
            for i, c in batch:
                r = c.to_frame(found[i]) if i in found else None
                boxes[k].append(np.zeros((0, 4), np.float32) if r is None else np.asarray(r.boxes, np.float32).reshape(-1, 4))
                scores[k].append(np.zeros(0, np.float32) if r is None else np.asarray(r.scores, np.float32).reshape(-1))

    for i, fr in enumerate(decode_frames(scene_path)):
        batch.append((i, crop_rgb(fr, rect, 1.0)))
        if len(batch) == 16:
            run(batch)
            batch = []
            print(f"\r{i + 1} frames", end="", file=sys.stderr, flush=True)
    if batch:
        run(batch)
    arrays = {}
    for k in range(len(dets)):
        arrays[f"m{k}_n"] = np.array([len(b) for b in boxes[k]])
        arrays[f"m{k}_boxes"] = np.concatenate(boxes[k]) if boxes[k] else np.zeros((0, 4), np.float32)
        arrays[f"m{k}_scores"] = np.concatenate(scores[k]) if scores[k] else np.zeros(0, np.float32)
    np.savez_compressed(out, specs=json.dumps(specs), floor=floor, all_frames=all_frames, **arrays)
    print(file=sys.stderr)


def load_cache(path: Path) -> tuple[list[dict], list[list[tuple[np.ndarray, np.ndarray]]]]:
    z = np.load(path)
    specs = json.loads(str(z["specs"]))
    per = []
    for k in range(len(specs)):
        n = z[f"m{k}_n"]
        ends = np.cumsum(n)
        starts = ends - n
        b, s = z[f"m{k}_boxes"], z[f"m{k}_scores"]
        per.append([(b[a:e], s[a:e]) for a, e in zip(starts, ends)])
    return specs, per


def fused(specs: list[dict], per, frame: int):
    """The ensemble's output for ``frame`` from the cached member detections (cadence,
    threshold, calibration, NMS), or None when no member runs on it."""
    from surgbox.types import Detections
    from surgbox_ext.ensemble import calibrate, fuse

    calibrated = any(m.get("confirm") is not None for m in specs)
    parts = []
    for m, cached in zip(specs, per):
        every, phase = m.get("every", 1), m.get("phase", 0)
        if frame % every != phase:
            continue
        b, s = cached[frame]
        keep = s >= m.get("threshold", 0.3)
        d = Detections(b[keep], s[keep])
        if calibrated and len(d):
            d = Detections(d.boxes, calibrate(d.scores, m.get("confirm")))
        parts.append(d)
    if not parts:
        return None
    return fuse(parts, "nms", iou=0.4)


def replay(scene, scene_path: Path, cache_path: Path, cfg: dict, stride: int) -> dict:
    from deid_score import OR_VIEW, band, luma, ncc
    from surgbox.deid import defaults
    from surgbox.deid.anonymize import frame_planes, make_anonymizer
    from surgbox.deid.detect import block_means
    from surgbox.deid.hide import hide_regions
    from surgbox.deid.temporal import TemporalFilter
    from surgbox.types import Rect

    specs, per = load_cache(cache_path)
    # the members' thresholds and confirm scores start from today's defaults (the cache only
    # fixes what each member found above its floor, on its cadence)
    for m, now in zip(specs, members_default()):
        if (m["name"], m.get("every", 1), m.get("phase", 0)) == (now["name"], now.get("every", 1), now.get("phase", 0)):
            m["threshold"], m["confirm"] = now.get("threshold", m.get("threshold")), now.get("confirm")
    for k, m in enumerate(specs):
        for key in ("threshold", "every", "phase", "confirm"):
            if f"m{k}.{key}" in cfg:
                m[key] = cfg[f"m{k}.{key}"]
    drop = {int(k) for k in str(cfg.get("drop", "")).split(",") if k != ""}
    specs_used = [m for k, m in enumerate(specs) if k not in drop]
    per_used = [p for k, p in enumerate(per) if k not in drop]
    calibrated = any(m.get("confirm") is not None for m in specs_used)
    x, y, w, h = REGION
    tf = TemporalFilter(carry=int(cfg.get("carry", defaults.CARRY)), max_gap=int(cfg.get("max_gap", defaults.MAX_GAP)),
                        bounds=[(x, y, x + w, y + h)], edge_carry=int(cfg.get("edge_carry", defaults.EDGE_CARRY)),
                        confirm_score=0.5 if calibrated else None,
                        confirm_hits=int(cfg.get("confirm_hits", defaults.CONFIRM_HITS)))
    for key in TEMPORAL_KEYS:
        if key in cfg:
            setattr(tf, key, cfg[key])
    anon = make_anonymizer("blur", expand=float(cfg.get("expand", defaults.EXPAND)),
                           feather=float(cfg.get("feather", defaults.FEATHER)),
                           margin=float(cfg.get("margin", defaults.MASK_MARGIN)),
                           min_size=float(cfg.get("min_size", defaults.MIN_MASK)),
                           **{k: float(cfg[k]) for k in ("strength", "min_sigma") if k in cfg})
    rect = Rect(*REGION)
    n = scene.n_frames()
    prev = None
    pending = {}
    x0, y0, vw, vh = OR_VIEW
    faces = protected = bad = nframes = coll = coll_tot = 0
    tally: dict[str, list[int]] = {}
    thr = defaults.CUT_THRESHOLD
    blame = Blame(anon.shape)

    def score_frame(i, fr, regs):
        nonlocal faces, protected, bad, nframes, coll, coll_tot
        hide_regions(anon, fr, [rect], regs)
        out = fr.to_ndarray(format="rgb24")
        src, gt = scene.render(i)
        bs, bo = band(luma(src[y0:y0 + vh, x0:x0 + vw])), band(luma(out[y0:y0 + vh, x0:x0 + vw]))
        nframes += 1
        miss, near = False, np.zeros((vh, vw), bool)
        tags = scene.meta_at(i)
        blame.frame(regs, list(gt) + list(scene.ignores_at(i)))
        for bx, tag in zip(gt, tags):
            a, b, c, d = (int(round(v)) for v in bx)
            a, c, b, d = a - x0, c - x0, b - y0, d - y0
            faces += 1
            ok = ncc(bs[b:d, a:c], bo[b:d, a:c]) < 0.3
            protected += ok
            miss |= not ok
            if not ok:
                blame.miss(regs, bx, (a, b, c, d), vw, vh)
            side = min(c - a, d - b)
            groups = ["size " + ("<20" if side < 20 else "20-40" if side < 40 else "40-80" if side < 80 else ">=80"),
                      "source " + tag["source"]]
            if tag["masked"]:
                groups.append("masked")
            for g in groups:
                t = tally.setdefault(g, [0, 0])
                t[0] += ok
                t[1] += 1
            ew, eh = c - a, d - b
            near[max(0, b - eh):d + eh, max(0, a - ew):c + ew] = True
        for bx in scene.ignores_at(i):
            a, b, c, d = (int(round(v)) for v in bx)
            a, c, b, d = a - x0, c - x0, b - y0, d - y0
            ew, eh = c - a, d - b
            near[max(0, b - eh):d + eh, max(0, a - ew):c + ew] = True
        bad += miss
        for tx, ty in textured_tiles(bs, near):
            coll_tot += 1
            hit = ncc(bs[ty:ty + 32, tx:tx + 32], bo[ty:ty + 32, tx:tx + 32]) < 0.3
            coll += hit
            if hit:
                blame.tile(regs, (tx + x0, ty + y0, tx + x0 + 32, ty + y0 + 32))

    for i, fr in enumerate(decode_frames(scene_path)):
        if i >= n:
            break
        yplane = frame_planes(fr, writable=False)[0]
        thumb = block_means(yplane[y:y + h, x:x + w], 16)
        cut = prev is not None and float(np.abs(thumb - prev).mean()) > thr
        prev = thumb
        pending[i] = fr if i % stride == 0 else None
        for j, regs in tf.push(i, fused(specs_used, per_used, i), cut):
            f = pending.pop(j)
            if f is not None:
                score_frame(j, f, regs)
    for j, regs in tf.flush():
        f = pending.pop(j)
        if f is not None:
            score_frame(j, f, regs)
    g = {k: round(p / t, 4) for k, (p, t) in sorted(tally.items())}
    return {"recall": round(protected / max(faces, 1), 4), "masked": g.get("masked"), "<20": g.get("size <20"),
            "20-40": g.get("size 20-40"), "40-80": g.get("size 40-80"), ">=80": g.get("size >=80"),
            "or": g.get("source or_faces"), "exposed_pct": round(100 * bad / max(nframes, 1), 2),
            "collateral_pct": round(100 * coll / max(coll_tot, 1), 2), "face_frames": faces,
            **({"explain": blame.report(coll_tot)} if cfg.get("explain") else {})}


def _centre_in(a, b) -> bool:
    cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    return b[0] <= cx <= b[2] and b[1] <= cy <= b[3]


class Blame:
    """Attribution of destroyed tiles (collateral) and missed face-frames to their causes.

    A tile is blamed on the first region whose mask touches it; the region is ``on a face``
    when its box and a ground-truth (or ignored) box of that frame hold each other's centre.
    At the end, per track: a track never on a face is a false positive (``fp weak``: its best
    calibrated score < 0.5, confirmed by hits; ``fp confident``); a region off its face while
    its track is on one elsewhere is ``stale`` (by kind: a carried or interpolated mask left
    behind, or a detection offset); a region on a face whose mask still reaches a tile
    farther than one face size is ``on a face`` (box far larger than the face)."""

    def __init__(self, shape):
        import collections

        self.shape = shape
        self.tracks = collections.defaultdict(lambda: {"frames": 0, "on": 0, "best": 0.0, "dets": 0, "sizes": []})
        self.tiles = []  # (track, kind, on a face now)
        self.misses = collections.Counter()
        self._on = {}

    def frame(self, regs, faces) -> None:
        self._on = {}
        for r in regs:
            on = any(_centre_in(r.box, g) or _centre_in(g, r.box) for g in faces)
            self._on[id(r)] = on
            t = self.tracks[r.track]
            t["frames"] += 1
            t["on"] += on
            t["best"] = max(t["best"], float(r.score))
            if r.kind == "detected":
                t["dets"] += 1
                t["sizes"].append(max(r.box[2] - r.box[0], r.box[3] - r.box[1]))

    def tile(self, regs, tile) -> None:
        for r in regs:
            ob = self.shape.outer_box(r.box)
            if ob[0] < tile[2] and ob[2] > tile[0] and ob[1] < tile[3] and ob[3] > tile[1]:
                self.tiles.append((r.track, r.kind, self._on.get(id(r), False)))
                return
        self.tiles.append((None, "none", False))

    def miss(self, regs, gt, local, vw, vh) -> None:
        a, b, c, d = local
        edge = a <= 1 or b <= 1 or c >= vw - 1 or d >= vh - 1
        side = min(c - a, d - b)
        near = [r for r in regs if r.box[0] < gt[2] and r.box[2] > gt[0] and r.box[1] < gt[3] and r.box[3] > gt[1]]
        cause = "no region" if not near else "region: " + "/".join(sorted({r.kind for r in near}))
        self.misses[cause] += 1
        self.misses[("edge " if edge else "inside ") + ("<20" if side < 20 else ">=20") + ": " + cause] += 1

    def report(self, total_tiles: int) -> dict:
        import collections

        out = collections.Counter()
        fp = {}
        for tid, kind, on in self.tiles:
            if tid is None:
                out["no region"] += 1
                continue
            t = self.tracks[tid]
            if t["on"] == 0:
                key = "fp confident" if t["best"] >= 0.5 else "fp weak"
                fp.setdefault(tid, 0)
                fp[tid] += 1
            elif on:
                key = f"on a face ({kind})"
            else:
                key = f"stale ({kind})"
            out[key] += 1
        fps = []
        for tid, n in sorted(fp.items(), key=lambda kv: -kv[1])[:15]:
            t = self.tracks[tid]
            sz = np.asarray(t["sizes"] or [0.0])
            fps.append({"track": tid, "tiles": n, "frames": t["frames"], "dets": t["dets"], "best": round(t["best"], 3),
                        "size": round(float(np.median(sz)), 1), "size_cv": round(float(sz.std() / max(sz.mean(), 1e-6)), 3)})
        n_fp = [t for t in self.tracks.values() if t["on"] == 0]
        n_tp = [t for t in self.tracks.values() if t["on"] > 0]

        def stats(ts):
            if not ts:
                return {}
            dens = [t["dets"] / max(t["frames"], 1) for t in ts]
            cv = [float(np.std(t["sizes"]) / max(np.mean(t["sizes"]), 1e-6)) if t["sizes"] else 0.0 for t in ts]
            return {"n": len(ts), "weak": sum(t["best"] < 0.5 for t in ts),
                    "density_p10_50_90": [round(float(v), 2) for v in np.percentile(dens, [10, 50, 90])],
                    "size_cv_p10_50_90": [round(float(v), 3) for v in np.percentile(cv, [10, 50, 90])]}

        return {"tiles_pct": {k: round(100 * v / max(total_tiles, 1), 2) for k, v in out.most_common()},
                "fp_tracks": fps, "fp_stats": stats(n_fp), "tp_stats": stats(n_tp),
                "misses": dict(self.misses.most_common())}


class _Recording:
    """The default detector, with every ``detect_frames`` answer kept in ``calls``."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def detect_frames(self, images, frame_indices):
        out = self.inner.detect_frames(images, frame_indices)
        self.calls.append((list(frame_indices), out))
        return out


class _Answers:
    """Gives back recorded answers: per frame index, in the order they were given (regions of
    one frame share the index). Declares what the recorded detector declared (``confirm_score``,
    settings for the audit) through the unopened detector it wraps."""

    def __init__(self, inner, calls):
        self.inner, self.by_frame, self.used = inner, {}, {}
        for indices, out in calls:
            for i, det in zip(indices, out):
                self.by_frame.setdefault(i, []).append(det)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def detect_frames(self, images, frame_indices):
        out = []
        for i in frame_indices:
            n = self.used.get(i, 0)
            out.append(self.by_frame[i][n])
            self.used[i] = n + 1
        return out


def exact(scene_path: Path, answers: Path, cfg: dict, stride: int, quick: bool, record: bool) -> dict:
    """Run ``deidentify()`` on ``scene_path`` (recording the default detector's answers into
    ``answers``, or giving them back), score the output; ``cfg``: ``DeidOptions`` fields, and
    ``TemporalFilter`` fields that are no option of ``surgbox deid`` (``edge_carry``,
    ``confirm_hits``, ``edge_band``, ``link_iou``), given to every region's temporal stage."""
    import tempfile
    import time

    from surgbox.deid import DeidOptions, deidentify, defaults
    from surgbox.deid.temporal import TemporalFilter
    from surgbox.errors import ConfigError
    from surgbox.plugins import get_plugins

    cfg = dict(cfg)
    temporal = {k: cfg.pop(k) for k in EXACT_TEMPORAL_KEYS if k in cfg}
    try:  # checked before the run: the pipeline builds its temporal stages once it has started
        TemporalFilter(**temporal)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--set: {exc}") from None

    class Options(DeidOptions):
        def make_temporal(self, bounds=(), track_ids=None) -> TemporalFilter:
            tf = DeidOptions.make_temporal(self, bounds, track_ids)
            for k, v in temporal.items():  # validated on assignment; lookahead is derived from them
                setattr(tf, k, v)
            return tf

    inner = get_plugins().create("detector", defaults.DETECTOR, **defaults.detector_options(defaults.DETECTOR))
    if record:
        det = _Recording(inner)
    else:
        with open(answers, "rb") as f:
            det = _Answers(inner, pickle.load(f))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        t0 = time.perf_counter()
        deidentify(str(scene_path), str(out), options=Options(region=",".join(map(str, REGION)), detector=det, **cfg))
        wall = time.perf_counter() - t0
        if record:
            with open(answers, "wb") as f:
                pickle.dump(det.calls, f)
        _, deid_score = bench_privacy._eval_modules()
        scored = deid_score.score(bench_privacy.make_scene(quick), str(out), stride)
    row = bench_privacy.row("exact", scored, wall, 1.0, None, 1)
    keys = ("recall", "masked", "<20", "20-40", "40-80", ">=80", "exposed_frames_pct", "collateral_pct")
    return {**{k: row[k] for k in keys}, "wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="run each default member on every frame, save the detections")
    c.add_argument("scene", type=Path)
    c.add_argument("cache", type=Path)
    c.add_argument("--floor", type=float, default=0.05, help="lowest score kept")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--all-frames", action="store_true", help="run every member on every frame (default: its cadence)")
    r = sub.add_parser("replay", help="score one setting from the cache")
    r.add_argument("scene", type=Path)
    r.add_argument("cache", type=Path)
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="m<K>.threshold/every/phase/confirm, drop=K[,K], carry, max_gap, edge_carry, confirm_hits, "
                        "link_iou, edge_band, expand, feather, margin, min_size, strength, min_sigma; explain=1: attribute collateral and misses")
    r.add_argument("--stride", type=int, default=2)
    rec = sub.add_parser("record", help="run surgbox deid's pipeline, keep the default detector's answers")
    ex = sub.add_parser("exact", help="run surgbox deid's pipeline on recorded answers with other DeidOptions")
    for p in (rec, ex):
        p.add_argument("scene", type=Path)
        p.add_argument("answers", type=Path)
        p.add_argument("--stride", type=int, default=2)
    ex.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a DeidOptions field, or edge_carry, confirm_hits, edge_band, link_iou (JSON value)")
    rec.set_defaults(set=[])
    for p in (c, r, rec, ex):
        p.add_argument("--quick", action="store_true", help="bench_privacy's quick scene")
    a = ap.parse_args()
    if a.cmd == "cache":
        cache(a.scene, a.cache, a.floor, a.threads, a.all_frames)
        return
    cfg = {}
    for kv in a.set:
        k, _, v = kv.partition("=")
        try:
            cfg[k] = json.loads(v) if v not in ("",) else None
        except json.JSONDecodeError:
            ap.error(f"--set {kv}: the value must be JSON (e.g. max_gap=20, expand=1.6, anonymizer=\"blur\")")
    if a.cmd in ("record", "exact"):
        if not a.scene.is_file():
            ap.error(f"scene {str(a.scene)!r} is not a file; make it with bench_privacy.py --keep DIR (DIR/scene.mp4)")
        if a.cmd == "exact" and not a.answers.is_file():
            ap.error(f"answers {str(a.answers)!r} is not a file; write it first with: privacy_replay.py record SCENE ANSWERS")
        import attrs

        from surgbox.deid import DeidOptions
        from surgbox.errors import SurgboxError

        known = [*attrs.fields_dict(DeidOptions), *EXACT_TEMPORAL_KEYS]
        for k in cfg:
            if k not in known:
                ap.error(f"--set {k}: not a DeidOptions field nor one of {', '.join(EXACT_TEMPORAL_KEYS)}")
        try:
            result = exact(a.scene, a.answers, cfg, a.stride, a.quick, a.cmd == "record")
        except SurgboxError as exc:  # a bad --set value (ConfigError), an unreadable scene (DeidError)
            ap.error(str(exc))
        except (pickle.UnpicklingError, EOFError, KeyError) as exc:
            ap.error(f"answers {str(a.answers)!r} do not fit this scene, or are not a file written by record ({exc!r})")
        print(json.dumps({"set": cfg, **result}), flush=True)
        return
    scene = bench_privacy.make_scene(a.quick)
    print(json.dumps({"set": cfg, **replay(scene, a.scene, a.cache, cfg, a.stride)}), flush=True)


if __name__ == "__main__":
    main()
