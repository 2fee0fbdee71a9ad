"""Why faces are missed: decompose a de-identified ``deid_scene`` copy's face-frames by cause.

Reads the scene (as ``bench_privacy.make_scene`` builds it, or from data folders), the
de-identified output and its audit sidecar (``surgbox deid ... --audit FILE``), and for every
scored ground-truth face-frame decides, with ``deid_score``'s own criterion (band-passed luma
NCC < 0.3 inside the box), whether it was protected, and if not, why:

* ``no region``: no hidden region touches the face in this frame; split by whether the face
  was ever detected in its shot (``never detected``) and, if it was, how many frames away the
  nearest detection lies (``detected N frames away``: the temporal stage lost it);
* ``partial``: a region touches it, but the mask's opaque part (alpha >= 250) covers less than
  95 % of the ground-truth box (mask geometry: expand, ellipse corners, box offset or lag);
* ``covered``: the opaque mask covers the box, yet detail survived (the blur is too weak).

Every group (size, source folder, masked, ``at the view's edge``: a face cut by the border of
the room view, entering or leaving it) gets the same split.

Collateral (textured 32x32 tiles away from faces whose detail was destroyed, as ``deid_score``
counts it) is attributed to the regions whose masks touch the tile: their kind, score and the
length of their track. A few frames with misses are rendered to PNG (source | output, ground
truth green when protected, red when missed; detected regions yellow, interpolated cyan,
carried magenta).

    python benchmarks/privacy_misses.py --quick SCENE.mp4 OUT.mp4 AUDIT.jsonl [--stride 2] [--png DIR]
    python benchmarks/privacy_misses.py --dirs faces or_faces SCENE.mp4 OUT.mp4 AUDIT.jsonl

Prints JSON (``--json FILE`` writes it too). Needs ``../shared`` (the eval scripts and data).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_privacy  # noqa: E402  (also puts ../shared/eval on sys.path)

OPAQUE = 250  # alpha counted as fully hidden
COVER = 0.95  # share of the box under the opaque mask that counts as covered


def size_class(side: float) -> str:
    return "<20" if side < 20 else "20-40" if side < 40 else "40-80" if side < 80 else ">=80"


def read_audit(path: Path) -> tuple[dict, dict[int, list[dict]]]:
    header, frames = {}, {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["type"] == "header":
                header = rec
            elif rec["type"] == "frame":
                frames[rec["frame"]] = rec["regions"]
    return header, frames


def face_ids(scene, i: int) -> list[tuple[int, int]]:
    """(shot, photo box index) of each ground-truth box of frame ``i`` (the scene's order)."""
    shot, x0, y0, zoom = scene._view(i)
    keep = scene._project(scene.shots[shot][1], x0, y0, zoom, 10)[1]
    return [(shot, int(k)) for k in keep]


def touches(a, b) -> bool:
    return a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]


def centre_in(a, b) -> bool:
    cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    return b[0] <= cx <= b[2] and b[1] <= cy <= b[3]


def matches(det, gt) -> bool:
    """A detection belongs to a ground-truth face: either box's centre lies in the other."""
    return centre_in(det, gt) or centre_in(gt, det)


def textured_tiles(bs: np.ndarray, near: np.ndarray):
    """``(x, y)`` of the 32x32 tiles ``deid_score`` counts for collateral: textured (band-passed
    source std >= 4) and away from every face (``near`` False throughout)."""
    h, w = bs.shape
    for ty in range(0, h - 31, 32):
        for tx in range(0, w - 31, 32):
            if not near[ty:ty + 32, tx:tx + 32].any() and bs[ty:ty + 32, tx:tx + 32].std() >= 4:
                yield tx, ty


def alpha_map(shape, boxes, view) -> np.ndarray:
    """The union (max) of the masks of ``boxes`` (frame pixels) over the scan region ``view``
    ``(x, y, w, h)``, as the hide stage draws them (region coordinates, edge push at its edges)."""
    x, y, w, h = view
    out = np.zeros((h, w), np.uint8)
    for b in boxes:
        if not touches(b, (x, y, x + w, y + h)):
            continue
        m = shape.alpha((b[0] - x, b[1] - y, b[2] - x, b[3] - y), w, h)
        if m is None:
            continue
        x0, y0, a = m
        win = out[y0:y0 + a.shape[0], x0:x0 + a.shape[1]]
        np.maximum(win, a, out=win)
    return out


def analyse(scene, out_path: Path, audit_path: Path, stride: int = 2, png_dir: Path | None = None, pngs: int = 8) -> dict:
    import av
    from PIL import Image, ImageDraw

    from deid_score import OR_VIEW, band, luma, ncc
    from surgbox.deid.masks import MaskShape

    header, regions = read_audit(audit_path)
    s = header.get("settings", {})
    shape = MaskShape(s.get("expand", 1.4), s.get("feather", 0.25), s.get("square", True), margin=s.get("margin", 0.0),
                      min_size=s.get("min_size", 0.0))
    x0, y0, w, h = OR_VIEW
    n = scene.n_frames()
    # per face: frames where a detected region matches it (for the temporal split)
    detected_at: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    for i in range(n):
        gt = gt_boxes(scene, i)
        dets = [r["box"] for r in regions.get(i, []) if r["kind"] == "detected"]
        for fid, g in zip(face_ids(scene, i), gt):
            if any(matches(d, g) for d in dets):
                detected_at[fid].append(i)
    causes = collections.Counter()
    by_group: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    coll = collections.Counter()
    coll_tiles = coll_total = 0
    fp_tracks: dict[int, dict] = {}
    faces = protected = 0
    rendered = 0
    container = av.open(str(out_path))
    vs = container.streams.video[0]
    vs.thread_type = "AUTO"
    for i, fr in enumerate(container.decode(vs)):
        if i >= n:
            break
        if i % stride:
            continue
        src, gt = scene.render(i)
        out = fr.to_ndarray(format="rgb24")
        bs, bo = band(luma(src[y0:y0 + h, x0:x0 + w])), band(luma(out[y0:y0 + h, x0:x0 + w]))
        regs = regions.get(i, [])
        alpha = alpha_map(shape, [r["box"] for r in regs], OR_VIEW)
        tags = scene.meta_at(i) if getattr(scene, "has_meta", False) else [None] * len(gt)
        near = np.zeros((h, w), bool)
        verdicts = []
        for fid, bx, tag in zip(face_ids(scene, i), gt, tags):
            a, b, c, d = (int(round(v)) for v in bx)
            a, c, b, d = a - x0, c - x0, b - y0, d - y0
            faces += 1
            ok = ncc(bs[b:d, a:c], bo[b:d, a:c]) < 0.3
            protected += ok
            side = min(c - a, d - b)
            groups = ["all", "size " + size_class(side)]
            if a <= 1 or b <= 1 or c >= w - 1 or d >= h - 1:
                groups.append("at the view's edge")
            if tag:
                groups.append("source " + tag["source"])
                if tag["masked"]:
                    groups.append("masked")
            box_alpha = alpha[b:d, a:c]
            cover = float((box_alpha >= OPAQUE).mean()) if box_alpha.size else 0.0
            if ok:
                cause = "protected"
            elif not (box_alpha > 0).any():
                seen = detected_at.get(fid, [])
                if not seen:
                    cause = "no region: never detected in its shot"
                else:
                    gap = min(abs(j - i) for j in seen)
                    cause = "no region: detected 1-10 frames away" if gap <= 10 else "no region: detected > 10 frames away"
            elif cover < COVER:
                touching = [r for r in regs if touches(r["box"], bx)]
                kinds = sorted({r["kind"] for r in touching}) or ["feather only"]
                cause = f"partial ({'/'.join(kinds)})"
            else:
                cause = "covered, detail left"
            causes[cause] += 1
            for g in groups:
                by_group[g][cause] += 1
            verdicts.append((bx, ok, cause, cover))
            ew, eh = c - a, d - b
            near[max(0, b - eh):d + eh, max(0, a - ew):c + ew] = True
        for bx in (scene.ignores_at(i) if getattr(scene, "has_meta", False) else ()):
            a, b, c, d = (int(round(v)) for v in bx)
            a, c, b, d = a - x0, c - x0, b - y0, d - y0
            ew, eh = c - a, d - b
            near[max(0, b - eh):d + eh, max(0, a - ew):c + ew] = True
        for tx, ty in textured_tiles(bs, near):
            coll_total += 1
            if ncc(bs[ty:ty + 32, tx:tx + 32], bo[ty:ty + 32, tx:tx + 32]) >= 0.3:
                continue
            coll_tiles += 1
            tile = (tx + x0, ty + y0, tx + x0 + 32, ty + y0 + 32)
            culprits = [r for r in regs if touches(shape.outer_box(r["box"]), tile)]
            if not culprits:
                coll["no region (encoder?)"] += 1
            for r in culprits[:1]:
                coll[r["kind"]] += 1
                t_info = fp_tracks.setdefault(r["track"], {"tiles": 0, "kinds": collections.Counter(), "score": 0.0})
                t_info["tiles"] += 1
                t_info["kinds"][r["kind"]] += 1
                t_info["score"] = max(t_info["score"], r["score"])
        if png_dir is not None and rendered < pngs and any(not v[1] for v in verdicts) and i % (stride * 10) == 0:
            png_dir.mkdir(parents=True, exist_ok=True)
            pic = Image.new("RGB", (2 * w, h))
            pic.paste(Image.fromarray(src[y0:y0 + h, x0:x0 + w]), (0, 0))
            pic.paste(Image.fromarray(out[y0:y0 + h, x0:x0 + w]), (w, 0))
            dr = ImageDraw.Draw(pic)
            colours = {"detected": (255, 255, 0), "interpolated": (0, 255, 255), "carried": (255, 0, 255)}
            for r in regs:
                bb = r["box"]
                dr.rectangle([bb[0] - x0, bb[1] - y0, bb[2] - x0, bb[3] - y0], outline=colours[r["kind"]])
                dr.text((bb[0] - x0, bb[3] - y0 + 1), f"{r['score']:.2f}", fill=colours[r["kind"]])
            for bx, ok, cause, cover in verdicts:
                for off in (0, w):
                    dr.rectangle([bx[0] - x0 + off, bx[1] - y0, bx[2] - x0 + off, bx[3] - y0],
                                 outline=(0, 255, 0) if ok else (255, 0, 0))
            pic.save(png_dir / f"frame{i:05d}.png")
            rendered += 1
    container.close()
    # tracks that caused collateral and never matched a face: false positives
    return {"face_frames": faces, "recall": round(protected / max(faces, 1), 4),
            "causes": dict(causes.most_common()),
            "by_group": {g: dict(c.most_common()) for g, c in sorted(by_group.items())},
            "collateral": round(coll_tiles / max(coll_total, 1), 4), "collateral_by_kind": dict(coll),
            "collateral_tracks": sorted(({"track": t, "tiles": v["tiles"], "score": round(v["score"], 3),
                                          "kinds": dict(v["kinds"])} for t, v in fp_tracks.items()),
                                        key=lambda r: -r["tiles"])[:25]}


def gt_boxes(scene, i: int) -> np.ndarray:
    """Ground-truth boxes of frame ``i`` without rendering the picture."""
    shot, x0, y0, zoom = scene._view(i)
    return scene._project(scene.shots[shot][1], x0, y0, zoom, 10)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scene", type=Path, help="the scene video (unused but for its name; the scene is rebuilt)")
    ap.add_argument("out", type=Path, help="the de-identified copy")
    ap.add_argument("audit", type=Path, help="its audit sidecar")
    ap.add_argument("--quick", action="store_true", help="bench_privacy's quick scene")
    ap.add_argument("--dirs", nargs="+", help="data folders under ../shared/data (default: bench_privacy's full scene)")
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--png", type=Path, help="render frames with misses here")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    scene = bench_privacy.make_scene(a.quick, a.dirs)
    res = analyse(scene, a.out, a.audit, a.stride, a.png)
    text = json.dumps(res, indent=1)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
