"""RetinaFace fine-tuning: matching and loss by hand, augmentation, overfit, determinism, resume, early stop."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from surgbox_ext.retinaface import DEFAULT_WEIGHTS, RetinaFaceDetector, make_priors  # noqa: E402
from surgbox_ext.retinaface.box_coding import decode_boxes  # noqa: E402
from surgbox_ext.retinaface.checkpoint import read_checkpoint  # noqa: E402
from surgbox_ext.retinaface.train.augment import AugmentConfig, augment, canonical_landmarks, random_crop  # noqa: E402
from surgbox_ext.retinaface.train.loss import match, multibox_loss, prior_corners  # noqa: E402
from surgbox_ext.retinaface.train.recipes import RECIPES, Recipe  # noqa: E402
from surgbox_ext.retinaface.train.trainer import Trainer, TrainOptions  # noqa: E402

from train_fixtures import overfit_scenes, write_dataset  # noqa: E402


def test_match_by_hand():
    priors = torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.4, 0.4]])
    # face A = prior 0 exactly (IoU 1, and prior 3 overlaps it by 0.64 -> positive too);
    # face B: best IoU 0.25 with prior 1 (< 0.35) but forced onto it; face C overlaps nothing by 0.2: ignored
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.75, 0.75], [0.9, 0.0, 0.92, 0.02]])
    t = match(boxes, priors)
    assert t.labels.tolist() == [1, 1, 0, 1]
    dec = decode_boxes(t.loc, priors)
    assert torch.allclose(dec[0], boxes[0], atol=1e-6) and torch.allclose(dec[1], boxes[1], atol=1e-6)
    assert torch.allclose(dec[3], boxes[0], atol=1e-6)
    assert not t.has_landmarks.any()
    # an ignored face makes its priors neither positive nor negative
    t2 = match(boxes[:1], priors, ignore=torch.tensor([True]))
    assert t2.labels.tolist() == [-1, 0, 0, -1]
    # landmarks: only faces that have them get targets
    lm = torch.full((2, 5, 2), float("nan"))
    lm[0] = 0.25
    t3 = match(boxes[:2], priors, landmarks=lm)
    assert t3.has_landmarks.tolist() == [True, False, False, True]


def test_hard_negative_mining_counts():
    p = 400
    labels = torch.zeros(p, dtype=torch.long)
    labels[:3] = 1
    labels[3:5] = -1
    from surgbox_ext.retinaface.train.loss import Targets

    t = Targets(labels, torch.zeros(p, 4), torch.zeros(p, 10), torch.zeros(p, dtype=torch.bool))
    logits = torch.zeros(1, p, 2, requires_grad=True)
    with torch.no_grad():
        logits[0, :, 1] = torch.linspace(-3, 3, p)  # later priors look more like faces: the hardest negatives
    loss = multibox_loss(torch.zeros(1, p, 4), logits, torch.zeros(1, p, 10), [t], min_negatives=0)
    loss.total.backward()
    used = (logits.grad[0].abs().sum(1) > 0).nonzero().flatten().tolist()
    assert used == [0, 1, 2] + list(range(p - 21, p))  # 3 positives + 7 x 3 hardest negatives, ignored never
    loss2 = multibox_loss(torch.zeros(1, p, 4), torch.zeros(1, p, 2), torch.zeros(1, p, 10),
                          [Targets(torch.zeros(p, dtype=torch.long), t.loc, t.landmarks, t.has_landmarks)], min_negatives=16)
    assert float(loss2.cls) == pytest.approx(16 * np.log(2), rel=1e-5)  # a face-less image still mines 16


def test_augment_keeps_boxes_consistent():
    rng = np.random.default_rng(3)
    img = np.zeros((200, 300, 3), np.uint8)
    img[50:100, 100:140] = 255  # a white "face"
    boxes = np.array([[100.0, 50.0, 140.0, 100.0]])
    for _ in range(20):
        out, b, ig = augment(img, boxes, np.zeros(1, bool), canonical_landmarks(boxes[0])[None], 160,
                             AugmentConfig(mask_prob=0, cap_prob=0, jitter=False), rng)
        assert out.shape == (160, 160, 3) and len(b) == 1
        x1, y1, x2, y2 = (b[0] * 160).round().astype(int)
        inner = out[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2]
        assert inner.size and inner.mean() > 200  # the box still covers the white patch
    c, cb, _ = random_crop(img, np.zeros((0, 4)), np.zeros(0, bool), rng)
    assert c.shape[0] == c.shape[1] and len(cb) == 0


def test_masks_and_caps_change_the_face_only():
    rng = np.random.default_rng(0)
    img = np.full((120, 120, 3), 128, np.uint8)
    box = np.array([[40.0, 30.0, 80.0, 80.0]])
    out = augment(img, box, np.zeros(1, bool), canonical_landmarks(box[0])[None], 120,
                  AugmentConfig(mask_prob=1, cap_prob=1, crop=False, jitter=False, mirror=False), rng)[0]
    changed = np.abs(out.astype(int) - img).sum(2) > 10
    ys, xs = np.nonzero(changed)
    assert changed[60:80, 45:75].mean() > 0.8  # the lower face is covered
    assert changed[:, :30].sum() == 0 and changed[:, 95:].sum() == 0 and ys.max() < 100


def tiny_recipe(epochs: int, lr: float = 1e-3, **kw) -> Recipe:
    return Recipe("test", lr, 0.9, 5e-4, (), "examples", epochs=epochs, batch_size=4, image_size=128,
                  augment=kw.pop("augment", AugmentConfig.none()), **kw)


def test_overfit_reaches_ap_095(tmp_path):
    ds = write_dataset(tmp_path / "data", overfit_scenes(4))
    opts = TrainOptions(tmp_path / "run", tiny_recipe(12), device="cpu", threads=1, val_every=12, val_max_size=None)
    res = Trainer(ds, opts, val_set=ds).run()
    assert res.baseline_ap50 is not None and res.baseline_ap50 < 0.8  # the shipped weights miss masked, capped faces
    assert res.best_ap50 >= 0.95
    # the result loads as the retinaface detector and finds the faces
    with RetinaFaceDetector(weights=str(res.best), threshold=0.5, device="cpu") as det:
        found = det.detect([ds.read_image(s) for s in ds])
    assert sum(len(f) for f in found) >= sum(len(s.item.boxes) for s in ds)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(13)) and "val" in log[0] and "val" in log[-1]
    assert log[-1]["loss"] < log[1]["loss"]


def _weights(path):
    state, _ = read_checkpoint(path)
    return state


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_seed_determinism_and_resume(tmp_path):
    ds = write_dataset(tmp_path / "data", overfit_scenes(4, seed=5))
    aug = AugmentConfig(mask_prob=0.5, cap_prob=0.5)
    recipe = tiny_recipe(3, augment=aug)
    run = lambda out, **kw: Trainer(ds, TrainOptions(out, kw.pop("recipe", recipe), device="cpu", threads=1, seed=kw.pop("seed", 7), **kw)).run()  # noqa: E731
    a = run(tmp_path / "a")
    b = run(tmp_path / "b")
    assert _same(_weights(a.last), _weights(b.last))
    c = run(tmp_path / "c", seed=8)
    assert not _same(_weights(a.last), _weights(c.last))
    # 1 epoch, then --resume to 3: the same weights as 3 epochs straight
    with pytest.raises(Exception, match="other settings"):  # another seed (or recipe): refused
        run(tmp_path / "a", resume=True, seed=9)
    run(tmp_path / "e", recipe=tiny_recipe(1, augment=aug))
    e = Trainer(ds, TrainOptions(tmp_path / "e", recipe, device="cpu", threads=1, seed=7, resume=True, epochs=3)).run()
    assert e.epochs_run == 3
    assert _same(_weights(a.last), _weights(e.last))


def test_early_stopping(tmp_path):
    ds = write_dataset(tmp_path / "data", overfit_scenes(2, seed=2))
    # a learning rate of ~0 never improves validation AP: stop after `patience` validations
    opts = TrainOptions(tmp_path / "run", tiny_recipe(20, lr=1e-12), device="cpu", threads=1, patience=2, val_max_size=None)
    res = Trainer(ds, opts, val_set=ds).run()
    assert res.stopped_early and res.epochs_run == 3  # epoch 1 sets the best, 2 and 3 do not improve


def test_a_run_never_replaces_an_earlier_one_and_bad_settings_are_one_line(tmp_path):
    """Training into a folder that holds a run replaced its last.pt, best.pt and log without a
    word; a negative learning rate and an unknown device were torch's ValueError/RuntimeError
    (internal errors); image size 1 hung. Each is a ConfigError now, raised before anything is
    written."""
    from surgbox.errors import ConfigError

    ds = write_dataset(tmp_path / "data", overfit_scenes(2, seed=3))
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"an earlier run")
    opts = lambda out, **kw: TrainOptions(out, tiny_recipe(1), device=kw.pop("device", "cpu"), threads=1, **kw)  # noqa: E731
    with pytest.raises(ConfigError, match=r"holds a training run \(last.pt\); pass --resume"):
        Trainer(ds, opts(run)).run()
    assert (run / "last.pt").read_bytes() == b"an earlier run" and sorted(p.name for p in run.iterdir()) == ["last.pt"]
    fresh = tmp_path / "fresh"
    for kw, words in [({"lr": -1.0}, "learning rate -1.0 must be a positive number"),
                      ({"lr": float("nan")}, "learning rate nan"), ({"image_size": 1}, "at least 32 px"),
                      ({"device": "banana"}, "'banana' is not a torch device")]:
        with pytest.raises(ConfigError, match=words):
            Trainer(ds, opts(fresh, **kw)).run()
        assert not fresh.exists()


def test_recipes():
    p = RECIPES["paper"]
    assert (p.lr, p.momentum, p.weight_decay) == (1e-3, 0.95, 0.05)
    assert p.lr_at(1499, 0, 10) == 1e-3 and p.lr_at(1500, 0, 10) == pytest.approx(1e-4) and p.lr_at(2750, 0, 10) == pytest.approx(1e-5)
    w = RECIPES["widerface"]
    assert (w.lr, w.momentum, w.weight_decay) == (1e-3, 0.9, 5e-4)
    assert w.lr_at(0, 189, 250) == 1e-3 and w.lr_at(0, 190, 250) == pytest.approx(1e-4) and w.lr_at(0, 220, 250) == pytest.approx(1e-5)
    assert DEFAULT_WEIGHTS.is_file() and make_priors(128, 128).shape[0] == prior_corners(make_priors(128, 128)).shape[0]
