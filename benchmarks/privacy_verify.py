"""Would a second look on an upscaled crop tell weak true faces from weak false candidates?

Reads a de-identified ``--quick`` scene copy's audit sidecar (``bench_privacy.py --keep DIR``
writes ``DIR/out1.jsonl``), takes every *detected* region of the scored frames (every 2nd)
whose calibrated score is below the confident level (0.5), labels it true when its centre and a
labelled face's (or ignored head's) lie in each other's box, cuts a square of ``--context``
times the box's longer side around it from the pristine rendered view (reflected beyond the
view's edge), resizes it so the box becomes ``--face`` pixels, and runs CenterFace (bf16 where
available, threshold 0.02) on it. The candidate's *verified* score is the best detection whose
centre lies in the middle third of the crop. Prints the AUC of the original and the verified
score (true vs false candidates), and for a few verified thresholds the share of true and false
candidates, and of true and false tracks (best verified score over the track), that would be
kept.

    python benchmarks/privacy_verify.py DIR/out1.jsonl [--face 64] [--context 3]

Needs ``../shared``. Development tool, not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_privacy  # noqa: E402  (also puts ../shared/eval on sys.path)
from privacy_misses import centre_in, read_audit  # noqa: E402

from surgbox.cli._parser import number  # noqa: E402  (the CLI's range-checked argparse type)

CONFIDENT = 0.5  # the ensemble's calibrated confident level


def candidates(scene, frames: dict, face: float, context: float):
    """``(labels, tracks, original scores, crops)`` of the weak detected regions, every 2nd frame."""
    from deid_score import OR_VIEW
    from PIL import Image

    side_px = int(round(face * context / 32)) * 32
    labels, tracks, scores, crops = [], [], [], []
    for i in range(0, scene.n_frames(), 2):
        regs = [r for r in frames.get(i, []) if r["kind"] == "detected" and r["score"] < CONFIDENT]
        if not regs:
            continue
        view, gt = scene._or_view(i)
        faces = [tuple(b) for b in gt] + [tuple(b) for b in (scene.ignores_at(i) if getattr(scene, "has_meta", False) else ())]
        pad = max(view.shape[:2])
        big = Image.fromarray(np.pad(view, ((pad, pad), (pad, pad), (0, 0)), mode="reflect"))
        for r in regs:
            b = r["box"]
            side = min(max(b[2] - b[0], b[3] - b[1]) * context, 2 * pad)
            x0 = (b[0] + b[2]) / 2 - OR_VIEW[0] - side / 2 + pad
            y0 = (b[1] + b[3]) / 2 - side / 2 + pad
            crops.append(np.asarray(big.resize((side_px, side_px), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))))
            labels.append(any(centre_in(b, g) or centre_in(g, b) for g in faces))
            tracks.append(r["track"])
            scores.append(r["score"])
    return np.array(labels, bool), tracks, np.array(scores), crops


def verified(crops: list) -> np.ndarray:
    """Best CenterFace score centred in each crop (0 when none)."""
    from surgbox_ext.centerface import CenterFaceDetector

    out = []
    with CenterFaceDetector(threshold=0.02, precision="bf16", threads=1) as det:
        for k in range(0, len(crops), 64):
            for img, d in zip(crops[k:k + 64], det.detect(crops[k:k + 64])):
                s = img.shape[0]
                c = (np.asarray(d.boxes)[:, :2] + np.asarray(d.boxes)[:, 2:]) / 2 if len(d.scores) else np.zeros((0, 2))
                mid = np.all((c >= s / 3) & (c <= 2 * s / 3), axis=1)
                out.append(float(np.asarray(d.scores)[mid].max()) if mid.any() else 0.0)
    return np.array(out)


def auc(score: np.ndarray, label: np.ndarray) -> float:
    p, n = score[label], score[~label]
    return float((p[:, None] > n[None, :]).mean() + 0.5 * (p[:, None] == n[None, :]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("audit", type=Path, help="the audit sidecar of a --quick scene run (bench_privacy --keep DIR: DIR/out1.jsonl)")
    ap.add_argument("--face", type=number(float, minimum=8, maximum=512), default=64.0, help="box side after resizing, pixels (default 64)")
    ap.add_argument("--context", type=number(float, minimum=1, maximum=8), default=3.0, help="crop side / box side (default 3)")
    a = ap.parse_args()
    if not a.audit.is_file():
        sys.exit(f"privacy_verify: no audit sidecar at {a.audit}; run bench_privacy.py --quick --keep DIR first")
    if not (bench_privacy.SHARED / "eval" / "deid_score.py").exists():
        sys.exit("privacy_verify: ../shared is not present beside this checkout (the scene's photos and eval scripts)")
    try:
        _, frames = read_audit(a.audit)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        sys.exit(f"privacy_verify: {a.audit} is not a surgbox deid audit sidecar ({type(exc).__name__}); "
                 "pass the .jsonl that bench_privacy.py --keep DIR wrote")
    scene = bench_privacy.make_scene(True, None)
    label, tracks, orig, crops = candidates(scene, frames, a.face, a.context)
    if label.all() or not label.any():
        sys.exit(f"privacy_verify: {a.audit} has {len(label)} weak detected regions, not both true and false ones: "
                 "nothing to compare (is it the audit of a --quick scene run?)")
    v = verified(crops)
    print(f"weak detected candidates {len(label)}, on a face {int(label.sum())}")
    print(f"AUC: original score {auc(orig, label):.3f}, verified {auc(v, label):.3f}")
    for t in (0.05, 0.1, 0.2, 0.3, 0.5):
        print(f"verified >= {t}: true kept {(v[label] >= t).mean():.3f}, false kept {(v[~label] >= t).mean():.3f}")
    tracks = np.asarray(tracks)
    ids = np.unique(tracks)
    tl = np.array([label[tracks == t].mean() > 0.5 for t in ids])  # a true track: mostly on a face
    tv = np.array([v[tracks == t].max() for t in ids])
    for t in (0.1, 0.2, 0.3, 0.5):
        print(f"track best verified >= {t}: true tracks kept {(tv[tl] >= t).mean():.3f} of {int(tl.sum())}, "
              f"false {(tv[~tl] >= t).mean():.3f} of {int((~tl).sum())}")


if __name__ == "__main__":
    main()
