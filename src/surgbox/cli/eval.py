"""``surgbox eval [DETECTIONS.json] GROUND_TRUTH``: score detections against annotated faces.

DETECTIONS.json is what ``surgbox detect --json`` prints (a list of ``{"path", "detections":
[{"box", "score"}]}``; entries may carry ``"frame"`` instead of ``"path"``). GROUND_TRUTH is a
dataset folder or an annotation file (CVAT, COCO, dlib). Without DETECTIONS.json, ``--detector``
runs a detector plugin on the ground truth's images itself. Prints the metrics and tables, or one
JSON object with ``--json`` (keys: ``ap50``, ``coco_ap``, ``per_frame_map``, ``images``, ``faces``, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DatasetError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score face detections: VOC AP@0.5, COCO AP, per-frame mAP, tables",
                       description="Score detections (surgbox detect --json) or a detector against annotated faces.")
    p.add_argument("inputs", nargs="+", metavar="[DETECTIONS.json] GROUND_TRUTH",
                   help="detections file and dataset folder / annotation file; only the latter with --detector")
    p.add_argument("--iou", type=float, default=0.5, help="IoU for a hit in the VOC AP and the tables (default 0.5)")
    p.add_argument("--threshold", type=float, default=0.3, metavar="T",
                   help="score above which a detection counts for recall/precision and the tables (default 0.3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--pr-curve", type=Path, metavar="FILE.png", help="write the precision-recall curve as PNG (a new file)")
    p.add_argument("--label", action="append", default=[], metavar="NAME", help="only faces with this label (repeatable, patterns)")
    p.add_argument("--subset", choices=["train", "val", "test"], help="only this set of the dataset's split.json")
    p.add_argument("--images", type=Path, metavar="DIR", help="images of an annotation file (default: beside it)")
    p.add_argument("--key-file", type=Path, metavar="KEY", help="key of an encrypted dataset")
    g = p.add_argument_group("running a detector (instead of DETECTIONS.json)")
    g.add_argument("--detector", metavar="NAME", help="detector plugin to run, e.g. retinaface")
    g.add_argument("--detector-option", action="append", default=[], metavar="KEY=VALUE",
                   help="detector option (repeatable; e.g. weights=run/best.pt)")
    g.add_argument("--det-threshold", type=float, default=0.02, metavar="T",
                   help="detector score threshold (default 0.02: low, so the whole PR curve is seen)")
    g.add_argument("--save-detections", type=Path, metavar="FILE.json", help="also write the detections (detect --json format; a new file)")
    p.set_defaults(func=run)


def _ground_truth(args: argparse.Namespace, path: Path):
    import attrs

    from ..datasets import Dataset, Sample, label_matches, load_annotations
    from ..datasets.split import SPLIT, read_split

    if path.is_dir() or path.name == "dataset.json":
        ds = Dataset.load(path)
        if args.subset:
            split = ds.root / SPLIT
            if not split.is_file():
                raise ConfigError(f"--subset {args.subset}: {ds.root} has no split.json; run `surgbox dataset split` first")
            ds = ds.subset(read_split(split, ds)[args.subset])
        if args.label:
            ds = attrs.evolve(ds, samples=[attrs.evolve(s, item=attrs.evolve(s.item, boxes=[
                b for b in s.item.boxes if label_matches(b.label, args.label)])) for s in ds])
        return ds
    if args.subset:
        raise ConfigError("--subset needs a dataset folder with a split.json, not an annotation file")
    ann = load_annotations(path, labels=args.label)
    root = (args.images or path.parent).resolve()
    samples = [Sample(it, it.image if it.image is not None else f"frame_{it.frame:06d}.png") for it in ann]
    return Dataset(root, samples)


def _entry_key(ds, sample) -> list[str]:
    keys = [str(ds.path_of(sample).resolve()), sample.image]
    if sample.item.image:
        keys.append(sample.item.image)
    return keys


def match_detections(entries: list[dict[str, Any]], ds, source: str) -> tuple[list[Any], int]:
    """One ``Detections`` per sample of ``ds`` from detect-format ``entries``; returns the list and
    how many samples had no entry (counted as finding nothing)."""
    import numpy as np

    from ..types import Detections

    by_path: dict[str, int] = {}
    by_base: dict[str, list[int]] = {}
    by_frame: dict[int, list[int]] = {}
    for i, s in enumerate(ds.samples):
        for k in _entry_key(ds, s):
            by_path.setdefault(k, i)
        by_base.setdefault(os.path.basename(s.item.image or s.image), []).append(i)
        if s.item.frame is not None:
            by_frame.setdefault(s.item.frame, []).append(i)
    out: list[Any] = [None] * len(ds)
    for n, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("detections"), list):
            raise DatasetError(f"{source}: entry #{n} is not {{\"path\", \"detections\": [...]}} (surgbox detect --json output)")
        idx = None
        if e.get("frame") is not None:
            hits = by_frame.get(int(e["frame"]), [])
            if e.get("video") is not None:
                hits = [i for i in hits if ds.samples[i].item.video == e["video"]]
            idx = hits[0] if len(hits) == 1 else None
        elif e.get("path") is not None:
            p = str(e["path"])
            idx = by_path.get(str(Path(p).resolve())) if Path(p).exists() else None
            if idx is None:
                idx = next((i for k, i in by_path.items() if p.endswith("/" + k) or p == k), None)
            if idx is None and len(by_base.get(os.path.basename(p), [])) == 1:
                idx = by_base[os.path.basename(p)][0]
        if idx is None:
            what = e.get("path", e.get("frame"))
            raise DatasetError(f"{source}: detections for {what!r} match no annotated image or frame of the ground truth "
                               "(or several); run detect on the dataset's images, or give 'frame' and 'video'")
        if out[idx] is not None:
            raise DatasetError(f"{source}: two entries for {ds.samples[idx].image!r}")
        dets = e["detections"]
        boxes = np.array([d["box"] for d in dets], np.float32).reshape(-1, 4)
        scores = np.array([d["score"] for d in dets], np.float32)
        out[idx] = Detections(boxes, scores)
    missing = sum(d is None for d in out)
    return [d if d is not None else Detections.empty() for d in out], missing


def _run_detector(args: argparse.Namespace, ds, key: bytes | None) -> list[Any]:
    from ..plugins import get_plugins
    from .deid import _options

    opts = {"threshold": args.det_threshold, **_options(args.detector_option, "detector")}
    det = get_plugins().create("detector", args.detector, **opts)
    out = []
    tty = sys.stderr.isatty()
    with det:
        for i, s in enumerate(ds):
            out.append(det.detect([ds.read_image(s, key)])[0])
            if not args.json and tty:
                print(f"\rdetecting {i + 1}/{len(ds)}", end="", file=sys.stderr, flush=True)
    if not args.json and tty:
        print(file=sys.stderr)
    return out


def draw_pr_curve(recall, precision, ap: float, path: Path, title: str = "") -> None:
    """Save the precision-recall curve as a PNG (Pillow only)."""
    from PIL import Image, ImageDraw

    w, h, m = 560, 460, 60
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    x0, y0, x1, y1 = m, 30, w - 20, h - m

    def xy(r: float, p: float) -> tuple[float, float]:
        return x0 + r * (x1 - x0), y1 - p * (y1 - y0)

    for t in range(11):
        v = t / 10
        d.line([xy(v, 0), xy(v, 1)], fill=(230, 230, 230))
        d.line([xy(0, v), xy(1, v)], fill=(230, 230, 230))
        d.text((xy(v, 0)[0] - 8, y1 + 6), f"{v:.1f}", fill="black")
        d.text((x0 - 30, xy(0, v)[1] - 6), f"{v:.1f}", fill="black")
    d.rectangle([x0, y0, x1, y1], outline="black")
    pts = [xy(0.0, 1.0 if len(precision) else 0.0)] + [xy(float(r), float(p)) for r, p in zip(recall, precision)]
    if len(pts) > 1:
        d.line(pts, fill=(200, 30, 30), width=2)
    d.text((x0 + (x1 - x0) // 2 - 20, h - 25), "recall", fill="black")
    d.text((8, y0 - 20), "precision", fill="black")
    d.text((x0 + 10, y0 + 8), f"{title}  AP@0.5 = {ap:.4f}".strip(), fill=(200, 30, 30))
    with open(path, "xb") as f:  # never over a file (see _check_outputs)
        im.save(f, format="PNG")


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _check_outputs(args: argparse.Namespace) -> None:
    """``--pr-curve`` and ``--save-detections`` are new files: refused before any scoring when one
    exists (the detections or the ground truth given as one were written over), when both are one
    file, or when the folder is missing."""
    given = [(opt, path) for opt, path in (("--pr-curve", args.pr_curve), ("--save-detections", args.save_detections))
             if path is not None]
    if len(given) == 2 and given[0][1].resolve() == given[1][1].resolve():
        raise ConfigError(f"--pr-curve and --save-detections are both {str(given[0][1])!r}; give each its own file")
    inputs = [Path(p).resolve() for p in args.inputs]
    for opt, path in given:
        if path.resolve() in inputs:
            raise ConfigError(f"{opt} {str(path)!r} is an input of this run; write to another (new) file")
        if os.path.lexists(path):
            raise ConfigError(f"{opt} {str(path)!r} exists; existing files are never replaced: remove it first "
                              f"or choose another name")
        if not path.parent.is_dir():
            raise ConfigError(f"{opt}: folder {str(path.parent)!r} does not exist; create it or choose another place")


def run(args: argparse.Namespace) -> int:
    from .._fs import atomic_write
    from ..crypto import load_key
    from ..datasets import pr_curve, score
    from ..datasets.annotations import read_json

    if not 0.0 < args.iou <= 1.0:
        raise ConfigError(f"--iou {args.iou} must be in (0, 1], e.g. --iou 0.5")
    _check_outputs(args)
    if args.detector:
        if len(args.inputs) != 1:
            raise ConfigError("with --detector give only GROUND_TRUTH (the detector makes the detections)")
        det_file, gt_path = None, Path(args.inputs[0])
    else:
        if len(args.inputs) != 2:
            raise ConfigError("give DETECTIONS.json and GROUND_TRUTH, or GROUND_TRUTH with --detector NAME")
        det_file, gt_path = Path(args.inputs[0]), Path(args.inputs[1])
    if not gt_path.exists():
        raise ConfigError(f"ground truth {str(gt_path)!r} does not exist; give a dataset folder or an annotation file")
    ds = _ground_truth(args, gt_path)
    key = load_key(args.key_file).material if args.key_file else None
    missing = 0
    if det_file is not None:
        entries = read_json(det_file, "detections", "give `surgbox detect --json` output")
        if not isinstance(entries, list):
            raise ConfigError(f"{det_file}: expected a JSON list (surgbox detect --json output)")
        dets, missing = match_detections(entries, ds, str(det_file))
    else:
        dets = _run_detector(args, ds, key)
        if args.save_detections:
            atomic_write(args.save_detections, json.dumps(
                [{"path": str(ds.path_of(s)), "frame": s.item.frame, "video": s.item.video, "detections": d.to_list()}
                 for s, d in zip(ds, dets)], indent=1).encode("utf-8"), mode=0o666, exclusive=True)
    items = [s.item for s in ds]
    report = score(dets, items, iou=args.iou, threshold=args.threshold)
    report["missing_entries"] = missing
    if args.pr_curve:
        r, p, _ = pr_curve(dets, items, args.iou)
        draw_pr_curve(r, p, report["ap50"] or 0.0, args.pr_curve, gt_path.name)
    if missing:
        print(f"warning: {missing} of {len(ds)} images have no entry in {det_file}; counted as finding no face", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{gt_path}: {report['images']} images, {report['faces']} faces ({report['ignored']} ignored), "
          f"{report['detections']} detections")
    print(f"  AP@{args.iou:g} (VOC, all-point)       {_fmt(report['ap50'])}")
    print(f"  AP@[.5:.95] (COCO, 101-point) {_fmt(report['coco_ap'])}   AP50 {_fmt(report['coco_ap50'])}   AP75 {_fmt(report['coco_ap75'])}")
    print(f"  per-frame mean AP@{args.iou:g}          {_fmt(report['per_frame_map'])}   ({report['per_frame_frames']} frames with faces)")
    print(f"  at score > {args.threshold:g}: recall {_fmt(report['recall'])}, precision {_fmt(report['precision'])}"
          + (f", masked-face recall {_fmt(report['masked_recall'])} of {report['masked_faces']}" if report["masked_faces"] else ""))
    print("  by face size (short side, px):")
    for row in report["per_size"]:
        print(f"    {row['size']:>6}  faces {row['faces']:6d}  recall {_fmt(row['recall']):>7}  AP {_fmt(row['ap50']):>7}")
    if len(report["per_video"]) > 1 and len(report["per_video"]) <= 200:
        print("  by video:")
        for row in report["per_video"]:
            print(f"    {row['video'][:40]:40}  images {row['images']:5d}  faces {row['faces']:6d}  AP {_fmt(row['ap50']):>7}  recall {_fmt(row['recall']):>7}")
    if len(report["per_label"]) > 1:
        print("  by label:")
        for row in report["per_label"]:
            print(f"    {row['label'] or '(none)':20}  faces {row['faces']:6d}  recall {_fmt(row['recall']):>7}")
    return 0
