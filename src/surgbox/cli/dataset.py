"""``surgbox dataset``: read annotations, make dataset folders, extract frames, split by video.

* ``boxes ANNOTATIONS [--label NAME] [--json]``: the boxes of an annotation file (JSON Lines with
  ``--json``: ``{"frame", "image", "boxes": [{"box", "label", "occluded", "track"}]}`` per line).
* ``import ANNOTATIONS... --images DIR --out DATASET``: a dataset folder for annotated photos
  (images referenced in place, not copied).
* ``extract ANNOTATIONS --video SRC --out DATASET``: decode the annotated frames of a video (a
  file, ``store:KEY`` or ``event:ID/NAME``) into a dataset folder.
* ``split DATASET [--preset paper]``: train/val/test by video, stratified, seeded -> ``split.json``.
* ``show DATASET``: what a dataset folder holds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DatasetError
from ._parser import number


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="face annotations: import CVAT/COCO/dlib, extract frames, split by video",
                       description="Annotation import, dataset folders and splits for fine-tuning (docs/training.md).")
    ds = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)

    def labels(c: argparse.ArgumentParser) -> None:
        c.add_argument("--label", action="append", default=[], metavar="NAME",
                       help="keep only boxes with this label (repeatable; fnmatch patterns such as 'face*' allowed)")
        c.add_argument("--format", default="auto", choices=["auto", "cvat", "coco", "dlib"], help="annotation format (default: detect)")

    c = ds.add_parser("boxes", help="print the boxes of an annotation file", description="Print the boxes of an annotation file.")
    c.add_argument("annotations", metavar="ANNOTATIONS", help="annotation file: CVAT 1.1 XML, COCO JSON or dlib XML")
    labels(c)
    c.add_argument("--json", action="store_true", help="JSON Lines: one object per annotated frame or image")
    c.set_defaults(func=_boxes)

    c = ds.add_parser("import", help="make a dataset folder for annotated photos (referenced in place)",
                      description="Make a dataset folder from image annotations; the images stay where they are.")
    c.add_argument("annotations", nargs="+", metavar="ANNOTATIONS", help="annotation files: CVAT 1.1 XML, COCO JSON or dlib XML")
    c.add_argument("--images", action="append", type=Path, metavar="DIR",
                   help="folder of the images (once, or once per annotation file; default: beside each file)")
    c.add_argument("--out", required=True, type=Path, metavar="DATASET", help="dataset folder to create")
    c.add_argument("--relabel", metavar="NAME", help="give every kept box this label (e.g. face_mask for an all-masked set)")
    labels(c)
    c.set_defaults(func=_import)

    c = ds.add_parser("extract", help="decode annotated video frames into a dataset folder",
                      description="Decode the frames a CVAT video export annotates into DATASET/images/, with the manifest.")
    c.add_argument("annotations", metavar="ANNOTATIONS", help="annotation file: CVAT 1.1 XML, COCO JSON or dlib XML")
    c.add_argument("--video", required=True, metavar="SRC",
                   help="the video: a file, store:KEY (with --root/--key-file) or event:ID/NAME (with --home/--user)")
    c.add_argument("--out", required=True, type=Path, metavar="DATASET", help="dataset folder to create")
    c.add_argument("--name", metavar="VIDEO", help="video name in the dataset (default: the export's <source>, else the file stem)")
    c.add_argument("--every", type=int, default=1, metavar="N", help="keep every Nth annotated frame (default 1: all)")
    c.add_argument("--image-format", default="png", choices=["png", "jpg"], help="frame files (default png, lossless)")
    c.add_argument("--encrypt-key", type=Path, metavar="KEY",
                   help="write the frames encrypted with this 32-byte key file (see `surgbox crypt keygen`)")
    c.add_argument("--plaintext", action="store_true",
                   help="write frames of an encrypted recording in clear (refused otherwise without --encrypt-key)")
    c.add_argument("--root", action="append", type=Path, metavar="DIR", help="store root for store:KEY (repeat for a mirror)")
    c.add_argument("--key-file", action="append", type=Path, metavar="KEY", help="store master key for store:KEY")
    c.add_argument("--home", metavar="DIR", help="surgbox home for event:ID/NAME")
    c.add_argument("--user", metavar="NAME", help="catalog user for event:ID/NAME (password from $SURGBOX_PASSWORD)")
    c.add_argument("--quiet", action="store_true", help="no progress line")
    labels(c)
    c.set_defaults(func=_extract)

    c = ds.add_parser("split", help="split a dataset into train/val/test by video (writes split.json)",
                      description="Split by video, stratified on per-video keys and face scale, seeded.")
    c.add_argument("dataset", type=Path, metavar="DATASET", help="dataset folder (surgbox dataset import/extract)")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--preset", choices=["paper", "70-15-15", "80-10-10"], help="paper = 31/12/14 (default)")
    g.add_argument("--ratios", metavar="T,V,S", help="train,val,test proportions, e.g. 60,20,20")
    c.add_argument("--seed", type=number(int, minimum=0), default=0, help="random seed of the split (default 0)")
    c.add_argument("--keys", type=Path, metavar="FILE", help="per-video keys: CSV with a 'video' column, or JSON {video: {key: value}}")
    c.add_argument("--stratify", metavar="K1,K2", help="which keys to balance (default: all in --keys)")
    c.add_argument("--no-face-scale", action="store_true", help="do not add the computed face-scale bucket")
    c.add_argument("--out", type=Path, metavar="FILE", help="split file (default DATASET/split.json; a new file)")
    c.set_defaults(func=_split)

    c = ds.add_parser("show", help="summarize a dataset folder", description="Summarize a dataset folder.")
    c.add_argument("dataset", type=Path, metavar="DATASET", help="dataset folder (surgbox dataset import/extract)")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.set_defaults(func=_show)


def _boxes(args: argparse.Namespace) -> int:
    from ..datasets import load_annotations

    ann = load_annotations(args.annotations, labels=args.label, format=args.format)
    if args.json:
        for it in ann:
            sys.stdout.write(json.dumps(it.to_dict()) + "\n")
        return 0
    labels: dict[str, int] = {}
    for it in ann:
        for b in it.boxes:
            labels[b.label] = labels.get(b.label, 0) + 1
    what = "frames" if ann.format == "cvat-video" else "images"
    print(f"{args.annotations}: {ann.format}, {len(ann)} {what}, {ann.box_count} boxes"
          + (f", source {ann.source}" if ann.source else ""))
    for lab, n in sorted(labels.items()):
        print(f"  {lab or '(no label)'}: {n}")
    return 0


def _import(args: argparse.Namespace) -> int:
    import attrs

    from ..datasets import Dataset, Sample, load_annotations
    from ..datasets.folder import MANIFEST

    if (args.out / MANIFEST).exists():  # a new manifest would drop what was imported or extracted there
        raise ConfigError(f"{args.out} is already a dataset folder ({MANIFEST}); import into a new folder "
                          f"(`dataset extract` adds videos to an existing one)")
    dirs = args.images or []
    if len(dirs) not in (0, 1, len(args.annotations)):
        raise ConfigError(f"--images given {len(dirs)} times for {len(args.annotations)} annotation files; give it once or once per file")
    samples, sources = [], []
    for k, path in enumerate(args.annotations):
        ann = load_annotations(path, labels=args.label, format=args.format)
        folder = (dirs[k] if len(dirs) > 1 else dirs[0] if dirs else Path(path).parent).resolve()
        missing = [it.image for it in ann if it.image is None or not (folder / it.image).is_file()]
        if missing:
            raise DatasetError(f"{path}: {len(missing)} of {len(ann)} images are not in {folder} (first: {missing[0]!r}); "
                               "pass --images DIR")
        for it in ann:
            if args.relabel:
                it = attrs.evolve(it, boxes=[attrs.evolve(b, label=args.relabel) for b in it.boxes])
            samples.append(Sample(it, str(folder / it.image)))
        sources.append({"annotations": str(Path(path).resolve()), "format": ann.format, "images": str(folder),
                        "labels": args.label, "items": len(ann)})
    ds = Dataset(args.out, samples, sources)
    ds.save()
    print(f"{args.out}: {len(ds)} images, {sum(len(s.item.boxes) for s in ds)} boxes from {len(args.annotations)} file(s)")
    return 0


@contextmanager
def open_video_source(args: argparse.Namespace) -> Iterator[tuple[Any, bool]]:
    """``(path or seekable file object, encrypted?)`` for ``--video``: a file, ``store:KEY`` or
    ``event:ID/NAME`` (decrypted while read, never to disk)."""
    spec = args.video
    if spec.startswith("store:"):
        from ..plugins import get_plugins

        roots = args.root or [Path(p) for p in os.environ.get("SURGBOX_STORE_ROOTS", "").split(os.pathsep) if p]
        keys = args.key_file or ([Path(os.environ["SURGBOX_KEY_FILE"])] if os.environ.get("SURGBOX_KEY_FILE") else [])
        if not roots or not keys:
            raise ConfigError(f"--video {spec}: pass --root DIR and --key-file KEY (or set SURGBOX_STORE_ROOTS, SURGBOX_KEY_FILE)")
        # the store plugins by name, as `surgbox store` builds them: a vendor's local / mirror replaces surgbox's
        name, where = ("local", {"root": str(roots[0])}) if len(roots) == 1 else ("mirror", {"roots": [str(r) for r in roots]})
        store = get_plugins().create("store", name, key_file=[str(k) for k in keys], **where)
        with store, store.reader(spec[len("store:"):]) as r:
            yield r, True
    elif spec.startswith("event:"):
        from ._auth import login

        event_id, sep, name = spec[len("event:"):].partition("/")
        if not sep or not name:
            raise ConfigError(f"--video {spec!r}: write event:EVENT_ID/FILE_NAME (`surgbox events show ID` lists the files)")
        with login(args) as session:
            # frames written out (plaintext, or encrypted for a key of the user's) are a copy that leaves
            # the box, as `events export` is: the export permission, audited; never inside the home
            session.authorize("export", event_id, operation="dataset.extract")
            if session.catalog.home.contains(args.out):
                raise ConfigError(f"dataset folder {args.out} lies inside SURGBOX_HOME; extract an event's frames "
                                  f"outside it")
            with session.events.open_file(event_id, name) as f:
                session.record_action("dataset.extract", event_id, detail={
                    "file": name, "encrypted_frames": bool(args.encrypt_key), "every": args.every})
                yield f, True
    else:
        if not Path(spec).is_file():
            raise ConfigError(f"--video {spec!r} does not exist; give a video file, store:KEY or event:ID/NAME")
        yield spec, False


def _extract(args: argparse.Namespace) -> int:
    from ..datasets.frames import extract_frames

    if args.every < 1:
        raise ConfigError(f"--every {args.every} must be >= 1")
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if args.quiet:
            return
        end = "\n" if done == total or not tty else ""
        if tty or done == total or done % 100 == 0:
            print(("\r" if tty else "") + f"frames {done}/{total}  {100 * done / max(total, 1):5.1f}%", end=end,
                  file=sys.stderr, flush=True)

    key = None
    if args.encrypt_key:
        from ..crypto import load_key

        key = load_key(args.encrypt_key).material
    elif args.video.startswith(("store:", "event:")) and not args.plaintext:
        raise ConfigError(f"{args.video} is an encrypted recording: its frames would rest in clear in {args.out}; "
                          "pass --encrypt-key KEY to keep them encrypted, or --plaintext if that is what you want")
    with open_video_source(args) as (video, encrypted):
        ds = extract_frames(args.annotations, video, args.out, labels=args.label, fmt=args.format, name=args.name,
                            every=args.every, image_format=args.image_format, key=key, source=args.video,
                            encrypted_source=encrypted, progress=progress)
    print(f"{args.out}: {len(ds)} frames in the dataset ({'encrypted' if ds.encrypted else 'plaintext'})")
    return 0


def _split(args: argparse.Namespace) -> int:
    from ..datasets import Dataset
    from ..datasets.split import PRESETS, SPLIT, make_split, read_keys, write_split

    ds = Dataset.load(args.dataset)
    if args.ratios:
        try:
            ratios = [float(x) for x in args.ratios.split(",")]
        except ValueError:
            raise ConfigError(f"--ratios {args.ratios!r} must be three numbers, e.g. 60,20,20") from None
    else:
        ratios = list(PRESETS[args.preset or "paper"])
    keys = read_keys(args.keys) if args.keys else None
    stratify = [k.strip() for k in args.stratify.split(",") if k.strip()] if args.stratify else None
    out = args.out or ds.root / SPLIT
    if os.path.lexists(out):  # an earlier split, the manifest, an annotation file: never replaced
        raise ConfigError(f"{out} exists; existing files are never replaced: remove it first (an earlier split) "
                          f"or give --out another file")
    split = make_split(ds, ratios=ratios, seed=args.seed, keys=keys, stratify=stratify, face_scale_key=not args.no_face_scale)
    out = write_split(split, out, exclusive=True)
    sizes = {k: len(v) for k, v in split["sets"].items()}
    print(f"{out}: train {sizes['train']}, val {sizes['val']}, test {sizes['test']} videos (seed {args.seed}; keys {', '.join(split['keys']) or 'none'})")
    return 0


def _show(args: argparse.Namespace) -> int:
    from ..datasets import Dataset

    ds = Dataset.load(args.dataset)
    faces = sum(1 for s in ds for b in s.item.boxes if not b.ignore)
    info = {"dataset": str(ds.root), "images": len(ds), "videos": len(ds.videos), "faces": faces,
            "ignored": sum(1 for s in ds for b in s.item.boxes if b.ignore), "encrypted": ds.encrypted,
            "split": (ds.root / "split.json").is_file()}
    if args.json:
        print(json.dumps(info))
    else:
        print("  ".join(f"{k} {v}" for k, v in info.items()))
    return 0
