"""``surgbox detect IMAGE...``: run a face detector on still images.

Prints one line per image (or, with ``--json``, a JSON list of
``{"path", "detections": [{"box", "score", "landmarks"}]}``), and with ``--out-dir`` writes a
PNG per image with the boxes (and landmarks) drawn.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..deid import defaults
from ..errors import ConfigError

DEFAULT_THRESHOLD = defaults.detector_options(defaults.DETECTOR).get("threshold")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help=f"detect faces in images (the de-identification default, {defaults.DETECTOR}, unless --detector)",
        description="Detect faces in still images with the same detector and options as surgbox deid (unless "
                    "--detector / --detector-option say otherwise). Boxes are [x1, y1, x2, y2] pixels of each image.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ... anything Pillow reads)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per image")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="minimum face score in [0, 1) (default: the detector's de-identification options; "
                        "for the ensemble, each member's own)")
    p.add_argument("--nms-iou", type=float, default=None, metavar="IOU", help="NMS overlap threshold (default: the detector's)")
    p.add_argument("--out-dir", type=Path, metavar="DIR",
                   help="write <name>.png with boxes drawn for each image (DIR is made if missing; an existing file "
                        "is never replaced)")
    p.add_argument("--device", default=None, help="auto (CUDA if available), cpu, cuda, cuda:N (default: the detector's, auto)")
    p.add_argument("--weights", metavar="PATH",
                   help="RetinaFace checkpoint, e.g. a run of surgbox train (implies --detector retinaface unless "
                        "--detector is given; default: the shipped weights)")
    p.add_argument("--max-size", type=int, metavar="PX", help="shrink images whose longer side exceeds PX before detection")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per detect() call (default 16)")
    p.add_argument("--detector", default=None, metavar="NAME",
                   help=f"detector plugin (default {defaults.DETECTOR}, as surgbox deid; e.g. retinaface, centerface)")
    p.add_argument("--detector-option", action="append", default=[], metavar="KEY=VALUE",
                   help="detector option (repeatable; VALUE parsed as JSON when possible, "
                        "e.g. members='[{\"name\": \"centerface\"}]' for --detector ensemble)")
    p.set_defaults(func=run)


def _read(path: str):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise ConfigError(f"image {path!r} does not exist; check the path") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ConfigError(f"image {path!r} cannot be read ({exc}); give a JPEG/PNG/TIFF/BMP file") from None


def _check_image(path: str) -> None:
    """Raise :class:`ConfigError` unless ``path`` is an image file Pillow can read (header only)."""
    from PIL import Image, UnidentifiedImageError

    if Path(path).is_dir():
        raise ConfigError(f"image {path!r} is a folder; give image files (JPEG, PNG, ...)")
    try:
        with Image.open(path):
            pass
    except FileNotFoundError:
        raise ConfigError(f"image {path!r} does not exist; check the path") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
        raise ConfigError(f"image {path!r} cannot be read ({exc}); give a JPEG/PNG/TIFF/BMP file") from None


def _out_names(paths: list[str]) -> list[str]:
    """``<stem>.png`` per input, made unique with ``-2``, ``-3``... when stems repeat (also
    against a stem that already ends so: ``a.png a.png a-2.png``)."""
    taken: set[str] = set()
    names = []
    for p in paths:
        stem = Path(p).stem or "image"
        name, n = f"{stem}.png", 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}.png"
        taken.add(name)
        names.append(name)
    return names


def _check_out(out_dir: Path, names: list[str], images: list[str]) -> None:
    """Refuse, before the model loads, drawings that would replace a file (an input among them:
    ``detect a.png --out-dir .`` would draw over a.png)."""
    from ..deid.output import same_file

    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {str(out_dir)!r} is a file; give a folder (it is made if missing)")
    for name, image in zip(names, images):
        path = out_dir / name
        if os.path.lexists(path):
            what = "the input image" if same_file(path, image) else "an existing file"
            raise ConfigError(f"--out-dir: the drawing of {image!r} would replace {what} {str(path)!r}; "
                              f"choose another (or an empty) --out-dir")


def draw(image, detections, path: Path) -> None:
    """Save ``image`` (HxWx3 uint8 RGB) to ``path`` as PNG with boxes, scores and landmarks drawn."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(image)
    d = ImageDraw.Draw(im)
    width = max(2, round(max(im.size) / 400))
    for det in detections:
        x1, y1, x2, y2 = det.box
        d.rectangle([x1, y1, x2, y2], outline=(255, 40, 40), width=width)
        d.text((x1, max(0, y1 - 12)), f"{det.score:.2f}", fill=(255, 40, 40))
        for x, y in det.landmarks or ():
            d.ellipse([x - width, y - width, x + width, y + width], fill=(40, 255, 40))
    with open(path, "xb") as f:  # never over a file that appeared meanwhile
        im.save(f, format="PNG")


def run(args: argparse.Namespace) -> int:
    from ..plugins import get_plugins

    from .deid import _options

    if args.threshold is not None and not 0.0 <= args.threshold < 1.0:
        raise ConfigError(f"--threshold {args.threshold} is outside [0, 1); e.g. --threshold 0.3")
    if args.nms_iou is not None and not 0.0 < args.nms_iou <= 1.0:
        raise ConfigError(f"--nms-iou {args.nms_iou} is outside (0, 1]; e.g. --nms-iou 0.4")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} must be >= 1")
    if args.detector is None:  # a checkpoint from surgbox train is RetinaFace's
        args.detector = "retinaface" if args.weights else defaults.DETECTOR
    # as in de-identification: the options measured for this detector (else the default
    # threshold), then the ones given here
    options = defaults.detector_options(args.detector)
    options.pop("threads", None)  # a one-off CLI run may use every core
    if "threshold" not in options and DEFAULT_THRESHOLD is not None:
        options["threshold"] = DEFAULT_THRESHOLD
    options.update(_options(args.detector_option, "detector"))
    given = {"threshold": args.threshold, "nms_iou": args.nms_iou, "weights": args.weights, "max_size": args.max_size,
             "device": args.device}
    options.update({k: v for k, v in given.items() if v is not None})
    for path in args.images:  # a wrong path or a file that is no image fails now, before the model loads
        _check_image(path)
    names = _out_names(args.images)
    if args.out_dir:
        _check_out(args.out_dir, names, args.images)
    detector = get_plugins().create("detector", args.detector, **options)
    if args.out_dir:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with detector:
        step = max(1, args.batch_size)
        for s in range(0, len(args.images), step):  # bounded: one batch of decoded images at a time
            paths = args.images[s : s + step]
            images = [_read(p) for p in paths]
            for k, (path, image, dets) in enumerate(zip(paths, images, detector.detect(images))):
                results.append({"path": path, "detections": dets.to_list()})
                if args.out_dir:
                    draw(image, dets, args.out_dir / names[s + k])
                if not args.json:
                    boxes = "  ".join(
                        f"[{d.box[0]:.0f},{d.box[1]:.0f},{d.box[2]:.0f},{d.box[3]:.0f}] {d.score:.2f}" for d in dets
                    )
                    print(f"{path}: {len(dets)} face{'s' if len(dets) != 1 else ''}" + (f"  {boxes}" if boxes else ""))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0
