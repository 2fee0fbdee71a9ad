"""The training loop behind ``surgbox train``: fine-tune RetinaFace on a dataset folder.

Run folder (``out``): ``last.pt`` after every epoch (weights + optimizer and loop state, for
``--resume``; it is also a valid ``weights=`` file), ``best.pt`` (the weights with the best
validation AP@0.5 so far, or the last ones without validation), ``log.jsonl`` (one JSON object
per epoch: losses, learning rate, validation metrics, seconds, images/s), ``run.json`` (the
settings) and ``landmarks.json`` (the teacher landmarks for the synthetic masks and caps).

Determinism: every random choice of epoch ``e`` comes from ``numpy.random.default_rng([seed, e])``
and nothing random happens in torch, so the same seed, data, device and thread count give the
same weights, and an interrupted run resumed from ``last.pt`` gives the same weights as one that
was not interrupted.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from surgbox.datasets import Dataset, score
from surgbox.errors import ConfigError

from ..checkpoint import build_model, save_checkpoint
from ..detector import RetinaFaceDetector, preprocess
from ..priors import make_priors
from .augment import AugmentConfig, augment
from .data import batches, sample_boxes, teacher_landmarks
from .loss import match, multibox_loss
from .recipes import RECIPES, Recipe

LOG = "log.jsonl"


@attrs.frozen
class TrainOptions:
    """Settings of one run. ``None`` fields take the recipe's value. ``weights``: the starting
    checkpoint (``None``: the shipped weights); ``device``: ``auto``/``cpu``/``cuda[:N]``; ``amp``:
    mixed precision on CUDA; ``patience``: validations without a better AP@0.5 before stopping;
    ``val_max_size``/``val_threshold``: how validation runs the detector; ``threads``: torch CPU
    threads (``None``: leave as is); ``key``: the dataset key for encrypted images."""

    out: Path = attrs.field(converter=Path)
    recipe: Recipe = RECIPES["paper"]
    epochs: int | None = None
    max_examples: int | None = None
    batch_size: int | None = None
    image_size: int | None = None
    lr: float | None = None
    augment: AugmentConfig | None = None
    weights: str | None = None
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    resume: bool = False
    patience: int = 10
    val_every: int = 1
    val_max_size: int | None = 1024
    val_threshold: float = 0.02
    recall_threshold: float = 0.3
    threads: int | None = None
    key: bytes | None = attrs.field(default=None, repr=False)

    def resolved(self) -> Recipe:
        r = self.recipe
        changes: dict[str, Any] = {k: v for k, v in (("epochs", self.epochs), ("batch_size", self.batch_size),
                                                      ("image_size", self.image_size), ("lr", self.lr),
                                                      ("augment", self.augment)) if v is not None}
        if self.max_examples is not None:
            changes["max_examples"] = self.max_examples
        return attrs.evolve(r, **changes)


@attrs.frozen
class Progress:
    """A progress report: ``epoch`` (1-based) of ``epochs``, ``examples`` seen of ``total``,
    mean ``loss`` of the epoch so far, ``images_per_s``, ``eta`` seconds (``None`` unknown);
    ``phase``: ``"landmarks"``, ``"train"`` or ``"validate"``."""

    phase: str
    epoch: int
    epochs: int
    examples: int
    total: int
    loss: float | None
    images_per_s: float | None
    eta: float | None


@attrs.frozen
class TrainResult:
    best: Path
    last: Path
    best_ap50: float | None
    baseline_ap50: float | None
    epochs_run: int
    examples: int
    stopped_early: bool
    history: tuple[dict[str, Any], ...]


RUN_FILES = ("last.pt", "best.pt", "run.json", LOG)  # what a run writes in its folder: an existing one is not replaced


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    return dev


def _check_recipe(recipe: Recipe) -> None:
    """Refuse values SGD or the priors cannot use (a negative learning rate was torch's ValueError)."""
    if not (math.isfinite(recipe.lr) and recipe.lr > 0):
        raise ConfigError(f"learning rate {recipe.lr} must be a positive number, e.g. --lr 1e-3")
    if recipe.image_size < 32:
        raise ConfigError(f"image size {recipe.image_size} must be at least 32 px (RetinaFace's coarsest stride), "
                          f"e.g. --image-size 640")
    if recipe.clip_grad is not None and not (math.isfinite(recipe.clip_grad) and recipe.clip_grad > 0):
        raise ConfigError(f"gradient clipping norm {recipe.clip_grad} must be a positive number, e.g. --clip-grad 10")


def _fixed(recipe: Any) -> Any:
    """What ``--resume`` must not change: the recipe less its length (``epochs``, ``max_examples``)."""
    return {k: v for k, v in recipe.items() if k not in ("epochs", "max_examples")} if isinstance(recipe, dict) else recipe


def freeze_stem(model: torch.nn.Module) -> None:
    """Stop training the first convolution (and its BatchNorm). It sees raw pixel values (about
    +-128), so its gradients are ~10^5 times its tiny weights and one SGD step at lr 1e-3 wipes it
    out; the shipped filters are kept instead."""
    stem = model.backbone.stage1[0] if hasattr(model.backbone, "stage1") else model.backbone.conv1
    for p in stem.parameters():
        p.requires_grad_(False)
    if hasattr(model.backbone, "bn1"):
        for p in model.backbone.bn1.parameters():
            p.requires_grad_(False)


def _freeze_bn(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def validate(weights: Path, dataset: Dataset, *, device: str, max_size: int | None, threshold: float,
             recall_threshold: float, key: bytes | None = None, iou: float = 0.5) -> dict[str, Any]:
    """Score the checkpoint ``weights`` on ``dataset`` (see :func:`surgbox.datasets.score`)."""
    det = RetinaFaceDetector(weights=str(weights), threshold=threshold, device=device, max_size=max_size, batch_size=1)
    with det:
        dets = [det.detect([dataset.read_image(s, key)])[0] for s in dataset]
    return score(dets, [s.item for s in dataset], iou=iou, threshold=recall_threshold)


@attrs.define(eq=False)
class Trainer:
    """``Trainer(train_set, options, val_set=..., progress=...).run()``; see the module doc."""

    train_set: Dataset
    options: TrainOptions
    val_set: Dataset | None = None
    progress: Callable[[Progress], None] | None = None
    _dev: torch.device = attrs.field(init=False, default=torch.device("cpu"))

    def _report(self, **kw: Any) -> None:
        if self.progress is not None:
            self.progress(Progress(**kw))

    def _validate(self, weights: Path, epoch: int, epochs: int) -> dict[str, Any] | None:
        if self.val_set is None or not len(self.val_set):
            return None
        self._report(phase="validate", epoch=epoch, epochs=epochs, examples=0, total=len(self.val_set), loss=None,
                     images_per_s=None, eta=None)
        o = self.options
        return validate(weights, self.val_set, device=str(self._dev), max_size=o.val_max_size, threshold=o.val_threshold,
                        recall_threshold=o.recall_threshold, key=o.key)

    def run(self) -> TrainResult:
        o = self.options
        recipe = o.resolved()
        _check_recipe(recipe)
        if not len(self.train_set):
            raise ConfigError("the training set is empty; check the dataset folder and its split")
        out = o.out
        earlier = [name for name in RUN_FILES if (out / name).exists()]
        if earlier and not o.resume:  # a new run would replace the earlier run's checkpoints and log
            raise ConfigError(f"{out} holds a training run ({', '.join(earlier)}); pass --resume (resume=True) to "
                              f"continue it, or choose a new --out")
        self._dev = dev = _device(o.device)
        out.mkdir(parents=True, exist_ok=True)
        if o.threads:
            torch.set_num_threads(o.threads)
        torch.manual_seed(o.seed)
        last, best = out / "last.pt", out / "best.pt"
        model, meta = build_model(o.weights)
        state: dict[str, Any] = {"epoch": 0, "examples": 0, "best_ap50": None, "best_epoch": None, "stale": 0,
                                 "baseline_ap50": None}
        opt_state = None
        if o.resume:
            if not last.is_file():
                raise ConfigError(f"--resume: {last} does not exist; start without --resume")
            model, meta = build_model(last)
            saved = meta.get("train_state")
            if not isinstance(saved, dict):
                raise ConfigError(f"--resume: {last} holds no training state; it is a plain weights file")
            if _fixed(saved.get("recipe")) != _fixed(attrs.asdict(recipe)) or saved.get("seed") != o.seed:
                raise ConfigError(f"--resume: {last} was made with other settings (recipe or seed); "
                                  f"resume with the same options or start a new --out")
            state = dict(saved["loop"])
            opt_state = meta.get("optimizer")
        (out / "run.json").write_text(json.dumps({"recipe": attrs.asdict(recipe), "seed": o.seed, "device": str(dev),
                                                  "weights": str(meta.get("path")), "train_images": len(self.train_set),
                                                  "val_images": len(self.val_set) if self.val_set else 0,
                                                  "torch": torch.__version__}, indent=1))
        if recipe.freeze_stem:
            freeze_stem(model)
        model = model.to(dev)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
        if opt_state is not None:
            opt.load_state_dict(opt_state)
        amp = o.amp and dev.type == "cuda"
        scaler = torch.amp.GradScaler("cuda") if amp else None

        teacher = RetinaFaceDetector(weights=o.weights, threshold=0.1, device=str(dev), max_size=1600, batch_size=1)
        with teacher:
            points = teacher_landmarks(self.train_set, teacher, key=o.key, cache=out / "landmarks.json",
                                       progress=lambda i, n: self._report(phase="landmarks", epoch=0, epochs=recipe.epochs,
                                                                          examples=i, total=n, loss=None,
                                                                          images_per_s=None, eta=None))
        n = len(self.train_set)
        size = recipe.image_size
        priors = make_priors(size, size, device=dev)
        total = recipe.epochs * n if recipe.max_examples is None else min(recipe.epochs * n, recipe.max_examples)
        history: list[dict[str, Any]] = []
        if not o.resume:
            (out / LOG).write_text("")
            if self.val_set is not None:
                save_checkpoint(model, last, train_state=None)
                val = self._validate(last, 0, recipe.epochs)
                state["baseline_ap50"] = val["ap50"] if val else None
                rec = {"epoch": 0, "examples": 0, "val": val}
                history.append(rec)
                with (out / LOG).open("a") as f:
                    f.write(json.dumps(rec) + "\n")
        stopped_early = False
        t_run = time.monotonic()
        run_examples0 = state["examples"]
        while state["epoch"] < recipe.epochs and (recipe.max_examples is None or state["examples"] < recipe.max_examples):
            epoch = state["epoch"]
            rng = np.random.default_rng([o.seed, epoch])
            model.train()
            if recipe.freeze_bn:
                _freeze_bn(model)
            sums = {"loss": 0.0, "box": 0.0, "cls": 0.0, "landmark": 0.0}
            steps = seen = 0
            t0 = time.monotonic()
            lr = recipe.lr
            for batch in batches(rng.permutation(n).tolist(), recipe.batch_size):
                if recipe.max_examples is not None and state["examples"] >= recipe.max_examples:
                    break
                lr = recipe.lr_at(state["examples"], epoch, recipe.epochs)
                for g in opt.param_groups:
                    g["lr"] = lr
                images, targets = [], []
                for i in batch:
                    s = self.train_set.samples[i]
                    boxes, ignore = sample_boxes(s)
                    img, b, ig = augment(self.train_set.read_image(s, o.key), boxes, ignore, points[i], size,
                                         recipe.augment, rng)
                    images.append(img)
                    targets.append(match(torch.from_numpy(b).to(dev), priors, ignore=torch.from_numpy(ig).to(dev)))
                x = preprocess(torch.from_numpy(np.stack(images)).to(dev))
                with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
                    loc, logits, lms = model(x)
                parts = multibox_loss(loc, logits, lms, targets)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(parts.total).backward()
                    if recipe.clip_grad:
                        scaler.unscale_(opt)
                        torch.nn.utils.clip_grad_norm_(params, recipe.clip_grad)
                    scaler.step(opt)
                    scaler.update()
                else:
                    parts.total.backward()
                    if recipe.clip_grad:
                        torch.nn.utils.clip_grad_norm_(params, recipe.clip_grad)
                    opt.step()
                loss_value = float(parts.total.detach())
                if not math.isfinite(loss_value):
                    raise ConfigError(f"training diverged at epoch {epoch + 1} (loss {loss_value}); "
                                      "lower the learning rate (--lr) or check the boxes")
                steps += 1
                seen += len(batch)
                state["examples"] += len(batch)
                for k, v in (("loss", loss_value), ("box", parts.box), ("cls", parts.cls), ("landmark", parts.landmark)):
                    sums[k] += float(v)
                rate = (state["examples"] - run_examples0) / max(1e-9, time.monotonic() - t_run)
                self._report(phase="train", epoch=epoch + 1, epochs=recipe.epochs, examples=state["examples"], total=total,
                             loss=sums["loss"] / steps, images_per_s=rate,
                             eta=(total - state["examples"]) / rate if rate > 0 else None)
            seconds = time.monotonic() - t0
            state["epoch"] = epoch + 1
            save_checkpoint(model, last, train_state=None)  # weights first: validation reads them
            rec: dict[str, Any] = {"epoch": epoch + 1, "examples": state["examples"], "lr": lr,
                                   **{k: v / max(1, steps) for k, v in sums.items()},
                                   "seconds": round(seconds, 3), "images_per_s": round(seen / max(seconds, 1e-9), 3)}
            val = self._validate(last, epoch + 1, recipe.epochs) if (epoch + 1) % o.val_every == 0 else None
            if val is not None:
                rec["val"] = val
                ap = val["ap50"] if val["ap50"] is not None else -1.0
                if state["best_ap50"] is None or ap > state["best_ap50"]:
                    state.update(best_ap50=ap, best_epoch=epoch + 1, stale=0)
                    save_checkpoint(model, best, epoch=epoch + 1, val_ap50=ap, recipe=recipe.name)
                else:
                    state["stale"] += 1
            elif self.val_set is None:
                save_checkpoint(model, best, epoch=epoch + 1, recipe=recipe.name)
            rec["best_epoch"] = state["best_epoch"]
            save_checkpoint(model, last, optimizer=opt.state_dict(),
                            train_state={"recipe": attrs.asdict(recipe), "seed": o.seed, "loop": dict(state)})
            history.append(rec)
            with (out / LOG).open("a") as f:
                f.write(json.dumps(rec) + "\n")
            if val is not None and state["stale"] >= o.patience:
                stopped_early = True
                break
        return TrainResult(best, last, state["best_ap50"], state["baseline_ap50"], state["epoch"], state["examples"],
                           stopped_early, tuple(history))
