"""``surgbox train DATASET --recipe paper|widerface --out DIR``: fine-tune RetinaFace on a dataset folder.

With ``DATASET/split.json`` the ``train`` videos train and the ``val`` videos validate (``--val``
overrides the validation set with another dataset folder); without it the whole folder trains.
Prints a progress line (epoch, examples, loss, images/s, ETA) on stderr and a summary at the end;
``DIR/log.jsonl`` has every epoch. ``DIR/best.pt`` loads as ``--detector-option weights=DIR/best.pt``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import ConfigError
from ._parser import number
from .deid import _fmt_time


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune the RetinaFace detector on a dataset folder",
                       description="Fine-tune RetinaFace (MobileNet-0.25) on annotated faces (docs/training.md).")
    p.add_argument("dataset", type=Path, metavar="DATASET", help="dataset folder (surgbox dataset import/extract)")
    p.add_argument("--recipe", default="paper", choices=["paper", "widerface"], help="hyperparameters and schedule (default paper)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="run folder: last.pt, best.pt, log.jsonl")
    p.add_argument("--val", type=Path, metavar="DATASET", help="validation dataset folder (default: the split's val videos)")
    p.add_argument("--weights", metavar="PATH", help="starting checkpoint (default: the shipped weights)")
    p.add_argument("--epochs", type=int, metavar="N", help="epochs (default: the recipe's)")
    p.add_argument("--max-examples", type=int, metavar="N", help="stop after N training examples")
    p.add_argument("--batch-size", type=int, metavar="N", help="images per training step (default: the recipe's)")
    p.add_argument("--image-size", type=int, metavar="PX", help="square training input side (default 640)")
    p.add_argument("--lr", type=float, metavar="LR", help="initial learning rate (default: the recipe's)")
    p.add_argument("--mask-prob", type=float, metavar="P", help="chance of a drawn surgical mask per face (default 0.5)")
    p.add_argument("--cap-prob", type=float, metavar="P", help="chance of a drawn cap per face (default 0.5)")
    p.add_argument("--train-bn", action="store_true", help="update BatchNorm statistics (default: frozen)")
    p.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the gradient L2 norm to NORM (default: no clipping)")
    p.add_argument("--no-augment", action="store_true", help="no crops, jitter, mirror, masks or caps")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--no-amp", action="store_true", help="full precision on CUDA (default: mixed precision)")
    p.add_argument("--seed", type=number(int, minimum=0), default=0, help="random seed of sampling and augmentation (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/last.pt")
    p.add_argument("--patience", type=int, default=10, metavar="N", help="stop after N validations without a better AP@0.5")
    p.add_argument("--val-max-size", type=int, default=1024, metavar="PX", help="validation shrinks longer sides above PX")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    p.add_argument("--key-file", type=Path, metavar="KEY", help="key of an encrypted dataset")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


def progress_line(p) -> str:
    """``epoch 3/30  examples 600/6000  loss 1.234  9.8 img/s  ETA 09:10`` for a trainer Progress."""
    if p.phase == "landmarks":
        return f"teacher landmarks {p.examples}/{p.total}"
    if p.phase == "validate":
        return f"epoch {p.epoch}/{p.epochs}  validating on {p.total} images"
    loss = f"{p.loss:.3f}" if p.loss is not None else "-"
    rate = f"{p.images_per_s:.1f}" if p.images_per_s else "-"
    return f"epoch {p.epoch}/{p.epochs}  examples {p.examples}/{p.total}  loss {loss}  {rate} img/s  ETA {_fmt_time(p.eta)}"


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError("surgbox train needs torch: pip install 'surgbox[detect]'") from None
    import attrs

    from surgbox_ext.retinaface.train.augment import AugmentConfig
    from surgbox_ext.retinaface.train.recipes import RECIPES
    from surgbox_ext.retinaface.train.trainer import Trainer, TrainOptions

    from ..crypto import load_key
    from ..datasets import Dataset
    from ..datasets.split import SPLIT, read_split

    for name in ("epochs", "max_examples", "batch_size", "image_size", "patience"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {v} must be >= 1")
    ds = Dataset.load(args.dataset)
    train, val = ds, None
    split_file = ds.root / SPLIT
    if split_file.is_file():
        sets = read_split(split_file, ds)
        train, val = ds.subset(sets["train"]), ds.subset(sets.get("val", []))
    if args.val:
        val = Dataset.load(args.val)
    recipe = RECIPES[args.recipe]
    aug = recipe.augment
    if args.no_augment:
        aug = AugmentConfig.none()
    for name in ("mask_prob", "cap_prob"):
        v = getattr(args, name)
        if v is not None:
            if not 0 <= v <= 1:
                raise ConfigError(f"--{name.replace('_', '-')} {v} must be in [0, 1]")
            aug = attrs.evolve(aug, **{name: v})
    if args.train_bn:
        recipe = attrs.evolve(recipe, freeze_bn=False)
    if args.clip_grad is not None:
        recipe = attrs.evolve(recipe, clip_grad=args.clip_grad or None)
    key = load_key(args.key_file).material if args.key_file else None
    opts = TrainOptions(args.out, recipe, epochs=args.epochs, max_examples=args.max_examples, batch_size=args.batch_size,
                        image_size=args.image_size, lr=args.lr, augment=aug, weights=args.weights, device=args.device,
                        amp=not args.no_amp, seed=args.seed, resume=args.resume, patience=args.patience,
                        val_max_size=args.val_max_size, threads=args.threads, key=key)
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(p) -> None:
        if args.quiet:
            return
        now = time.monotonic()
        if not tty and now - last[0] < 10 and p.phase == "train":
            return
        last[0] = now
        print(("\r" if tty else "") + progress_line(p) + ("\033[K" if tty else ""), end="" if tty else "\n",
              file=sys.stderr, flush=True)

    print(f"training on {len(train)} images ({len(train.videos)} videos), validating on "
          f"{len(val) if val is not None else 0}; recipe {args.recipe}; run folder {args.out}", file=sys.stderr)
    res = Trainer(train, opts, val_set=val, progress=show).run()
    if tty and not args.quiet:
        print(file=sys.stderr)
    base = f"{res.baseline_ap50:.4f}" if res.baseline_ap50 is not None else "-"
    best = f"{res.best_ap50:.4f}" if res.best_ap50 is not None else "-"
    print(f"{res.best}: {res.epochs_run} epochs, {res.examples} examples"
          f"{', stopped early' if res.stopped_early else ''}; validation AP@0.5 {base} (start) -> {best} (best)")
    return 0
