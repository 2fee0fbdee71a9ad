"""Unit tests of RetinaFace's small pieces: priors, box coding, NMS, postprocess, preprocess,
BatchNorm folding, and the AP metric in surgbox.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from surgbox.metrics import average_precision, evaluate, iou_matrix, voc_ap  # noqa: E402
from surgbox_ext.retinaface import postprocess as pp  # noqa: E402
from surgbox_ext.retinaface.box_coding import decode_boxes, decode_landmarks, encode_boxes  # noqa: E402
from surgbox_ext.retinaface.detector import preprocess  # noqa: E402
from surgbox_ext.retinaface.model import RetinaFace, fold_batchnorm  # noqa: E402
from surgbox_ext.retinaface.priors import make_priors, prior_count  # noqa: E402

# ---------------------------------------------------------------------------------- priors


def test_prior_count_and_layout_640x360():
    # levels: stride 8 -> 45x80 cells, 16 -> 23x40, 32 -> 12x20; 2 anchors each
    assert prior_count(360, 640) == 45 * 80 * 2 + 23 * 40 * 2 + 12 * 20 * 2 == 9520
    p = make_priors(360, 640)  # (P, 4) cx, cy, w, h normalised
    assert p.shape == (9520, 4) and p.dtype == torch.float32
    # first cell of level 1: centre (4, 4) px, anchors 16 and 32 px
    torch.testing.assert_close(p[0], torch.tensor([4 / 640, 4 / 360, 16 / 640, 16 / 360]))
    torch.testing.assert_close(p[1], torch.tensor([4 / 640, 4 / 360, 32 / 640, 32 / 360]))
    # next prior moves one column right (x + 8 px), same row
    torch.testing.assert_close(p[2], torch.tensor([12 / 640, 4 / 360, 16 / 640, 16 / 360]))
    # first prior of row 1 (after 80 columns x 2 anchors)
    torch.testing.assert_close(p[160], torch.tensor([4 / 640, 12 / 360, 16 / 640, 16 / 360]))
    # first prior of level 2 (stride 16, anchors 64/128) and of level 3 (stride 32, anchors 256/512)
    torch.testing.assert_close(p[7200], torch.tensor([8 / 640, 8 / 360, 64 / 640, 64 / 360]))
    torch.testing.assert_close(p[9040 + 1], torch.tensor([16 / 640, 16 / 360, 512 / 640, 512 / 360]))
    # last prior: bottom-right cell of level 3, centre ((19 + .5) * 32, (11 + .5) * 32)
    torch.testing.assert_close(p[-1], torch.tensor([624 / 640, 368 / 360, 512 / 640, 512 / 360]))


@pytest.mark.parametrize("h,w", [(37, 53), (1, 1), (100, 30), (65, 129)])
def test_prior_count_matches_network_output(h, w):
    model = RetinaFace().eval()
    with torch.inference_mode():
        loc, logits, lms = model(torch.zeros(1, 3, h, w))
    n = prior_count(h, w)
    assert loc.shape == (1, n, 4) and logits.shape == (1, n, 2) and lms.shape == (1, n, 10)
    assert make_priors(h, w).shape == (n, 4)
    assert n == sum(math.ceil(h / s) * math.ceil(w / s) * 2 for s in (8, 16, 32))


def test_priors_reject_bad_size():
    with pytest.raises(ValueError, match="positive"):
        make_priors(0, 10)


# ------------------------------------------------------------------------------ box coding


def test_decode_zero_offsets_gives_prior_box():
    priors = torch.tensor([[0.5, 0.25, 0.2, 0.1]])  # (1, 4)
    boxes = decode_boxes(torch.zeros(1, 4), priors)  # (1, 4)
    torch.testing.assert_close(boxes, torch.tensor([[0.4, 0.2, 0.6, 0.3]]))


def test_decode_worked_example():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    loc = torch.tensor([[1.0, -1.0, math.log(2) / 0.2, 0.0]])
    # centre (0.5 + 1*0.1*0.2, 0.5 - 1*0.1*0.4) = (0.52, 0.46); size (0.4, 0.4)
    torch.testing.assert_close(decode_boxes(loc, priors), torch.tensor([[0.32, 0.26, 0.72, 0.66]]))


def test_encode_decode_round_trip_with_batch_dims():
    g = torch.Generator().manual_seed(0)
    priors = make_priors(64, 96)  # (P, 4)
    loc = torch.randn(3, len(priors), 4, generator=g)  # (B, P, 4)
    boxes = decode_boxes(loc, priors)  # (B, P, 4)
    assert boxes.shape == (3, len(priors), 4)
    torch.testing.assert_close(encode_boxes(boxes, priors), loc, atol=1e-4, rtol=1e-4)


def test_decode_landmarks():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.2, 0.1, 0.1]])  # (2, 4)
    pre = torch.zeros(2, 10)
    pre[0, 4:6] = torch.tensor([1.0, 2.0])  # third point (nose) of prior 0
    pts = decode_landmarks(pre, priors)  # (2, 5, 2)
    assert pts.shape == (2, 5, 2)
    torch.testing.assert_close(pts[1], torch.tensor([[0.1, 0.2]] * 5))
    torch.testing.assert_close(pts[0, 2], torch.tensor([0.5 + 0.1 * 0.2, 0.5 + 2 * 0.1 * 0.4]))
    torch.testing.assert_close(pts[0, 0], torch.tensor([0.5, 0.5]))
    assert decode_landmarks(torch.zeros(4, 2, 10), priors).shape == (4, 2, 5, 2)


# ------------------------------------------------------------------------------------- NMS


def reference_nms(boxes: np.ndarray, iou_threshold: float) -> list[int]:
    """The textbook sequential greedy NMS over score-sorted boxes."""
    keep: list[int] = []
    for j in range(len(boxes)):
        if all(iou_matrix(boxes[i], boxes[j])[0, 0] <= iou_threshold for i in keep):
            keep.append(j)
    return keep


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(5, 40, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_equals_sequential_greedy(thr):
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        boxes = random_boxes(rng, n)
        keep = pp.nms_keep(torch.from_numpy(boxes)[None], torch.ones(1, n, dtype=torch.bool), thr)[0]
        assert keep.nonzero().squeeze(1).tolist() == reference_nms(boxes, thr)


def test_nms_batched_with_padding_and_chunks(monkeypatch):
    rng = np.random.default_rng(2)
    sizes = [5, 40, 0, 23]
    k = max(sizes)
    boxes = np.zeros((len(sizes), k, 4), np.float32)
    valid = np.zeros((len(sizes), k), bool)
    for b, n in enumerate(sizes):
        boxes[b, :n] = random_boxes(rng, n)
        boxes[b, n:] = boxes[b, :1] if n else 0  # padding that would suppress if it counted
        valid[b, :n] = True
    want = [reference_nms(boxes[b, :n], 0.4) for b, n in enumerate(sizes)]
    for limit in (1 << 24, 2 * k * k):  # one chunk, then chunks of two images
        monkeypatch.setattr(pp, "_NMS_ELEMENTS", limit)
        keep = pp.nms_keep(torch.from_numpy(boxes), torch.from_numpy(valid), 0.4)
        assert [keep[b].nonzero().squeeze(1).tolist() for b in range(len(sizes))] == want


def test_nms_chain_needs_several_rounds():
    # A suppresses B, B would suppress C: greedy keeps A and C
    boxes = torch.tensor([[[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]]], dtype=torch.float32)
    keep = pp.nms_keep(boxes, torch.ones(1, 3, dtype=torch.bool), 0.3)
    assert keep[0].tolist() == [True, False, True]


def test_box_iou_matches_numpy():
    rng = np.random.default_rng(3)
    a, b = random_boxes(rng, 7), random_boxes(rng, 5)
    np.testing.assert_allclose(pp.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy(), iou_matrix(a, b), atol=1e-6)
    assert pp.box_iou(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0  # empty boxes


# ----------------------------------------------------------------------------- postprocess


def test_postprocess_threshold_sort_decode_and_cap():
    h, w = 64, 96
    priors = make_priors(h, w)  # (P, 4)
    p = len(priors)
    loc = torch.zeros(2, p, 4)
    lms = torch.zeros(2, p, 10)
    logits = torch.full((2, p, 2), 0.0)
    logits[..., 0] = 10.0  # background everywhere
    # image 0: priors 5 (score ~0.88) and 200 (~0.99) are faces; prior 7 exactly at threshold 0.5
    logits[0, 5] = torch.tensor([0.0, 2.0])
    logits[0, 200] = torch.tensor([0.0, 5.0])
    logits[0, 7] = torch.tensor([1.0, 1.0])
    # image 1: priors 5 and 7 are 32 px anchors 8 px apart (IoU 0.6) -> NMS keeps the higher
    logits[1, 5] = torch.tensor([0.0, 3.0])
    logits[1, 7] = torch.tensor([0.0, 2.0])
    out = pp.postprocess(loc, logits, lms, priors, w, h, pp.PostprocessConfig(0.5, 0.4))
    boxes0, scores0, pts0 = out[0]
    assert scores0.tolist() == pytest.approx([torch.sigmoid(torch.tensor(5.0)).item(), torch.sigmoid(torch.tensor(2.0)).item()])
    cx, cy, pw, ph = (priors[200] * torch.tensor([w, h, w, h])).tolist()
    assert boxes0[0].tolist() == pytest.approx([cx - pw / 2, cy - ph / 2, cx + pw / 2, cy + ph / 2], abs=1e-4)
    assert pts0.shape == (2, 5, 2) and pts0[0, 0].tolist() == pytest.approx([cx, cy], abs=1e-4)
    boxes1, scores1, _ = out[1]
    assert len(scores1) == 1 and scores1[0].item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    capped = pp.postprocess(loc, logits, lms, priors, w, h, pp.PostprocessConfig(0.5, 0.4, max_detections=1))
    assert [len(s) for _, s, _ in capped] == [1, 1]


def test_postprocess_reports_stage_times_and_keeps_results():
    priors = make_priors(64, 96)
    p = len(priors)
    logits = torch.zeros(2, p, 2)
    logits[..., 0] = 10.0
    logits[0, 5] = torch.tensor([0.0, 2.0])
    logits[1, 200] = torch.tensor([0.0, 5.0])
    args = (torch.zeros(2, p, 4), logits, torch.zeros(2, p, 10), priors, 96, 64)
    stages: dict[str, float] = {"NMS": 1.0}
    ticks = iter(range(100))
    timed = pp.postprocess(*args, stages=stages, clock=lambda: float(next(ticks)))
    # one tick per boundary: score filter, sort, decoding, NMS, then selection (decoding again)
    assert stages == {"NMS": 2.0, "score filter": 1.0, "sort": 1.0, "output decoding": 2.0}
    plain = pp.postprocess(*args)
    for (b1, s1, p1), (b2, s2, p2) in zip(timed, plain):
        assert torch.equal(b1, b2) and torch.equal(s1, s2) and torch.equal(p1, p2)
    assert [len(s) for _, s, _ in plain] == [1, 1]


def test_postprocess_nothing_above_threshold():
    priors = make_priors(32, 32)
    p = len(priors)
    logits = torch.zeros(3, p, 2)
    logits[..., 0] = 5
    out = pp.postprocess(torch.zeros(3, p, 4), logits, torch.zeros(3, p, 10), priors, 32, 32)
    assert [tuple(b.shape) for b, _, _ in out] == [(0, 4)] * 3


def test_postprocess_config_validates():
    with pytest.raises(ValueError):
        pp.PostprocessConfig(score_threshold=1.0)
    with pytest.raises(ValueError):
        pp.PostprocessConfig(iou_threshold=0.0)


# ------------------------------------------------------------------------------ preprocess


def test_preprocess_bgr_mean_layout_and_resize():
    img = np.zeros((2, 4, 6, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # R, G, B
    x = preprocess(torch.from_numpy(img))  # (2, 3, 4, 6)
    assert x.shape == (2, 3, 4, 6) and x.is_contiguous()
    assert x[0, :, 0, 0].tolist() == [30 - 104, 20 - 117, 10 - 123]  # B, G, R minus mean
    y = preprocess(torch.from_numpy(img), (2, 3), channels_last=True)
    assert y.shape == (2, 3, 2, 3) and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y[0, :, 1, 2], x[0, :, 0, 0])  # uniform image stays uniform


# --------------------------------------------------------------------------- BN folding


@pytest.mark.parametrize("backbone,size", [("mobilenet0.25", (72, 100)), ("resnet50", (32, 40))])
def test_fold_batchnorm_preserves_outputs(backbone, size):
    torch.manual_seed(0)
    model = RetinaFace(backbone).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    x = torch.randn(1, 3, *size) * 50
    with torch.inference_mode():
        ref = model(x)
        fold_batchnorm(model)
        got = model(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-3)


# ---------------------------------------------------------------------------------- metrics


def test_voc_ap_all_point_interpolation():
    # recall 0.5 at precision 1, then a FP, then recall 1 at precision 2/3
    assert voc_ap([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert voc_ap([], []) == 0.0


def test_evaluate_matching_rules():
    gt = [np.array([[0, 0, 10, 10], [20, 0, 30, 10]]), np.array([[0, 0, 10, 10]])]
    dets = [
        # two hits on the same GT (second is a duplicate -> FP), one miss
        (np.array([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]]), np.array([0.9, 0.8, 0.95])),
        (np.array([[1, 1, 11, 11]]), np.array([0.7])),  # IoU 81/119 = 0.68 -> hit
    ]
    r = evaluate(dets, gt, 0.5)
    assert r.num_gt == 3
    assert r.scores.tolist() == [0.95, 0.9, 0.8, 0.7]
    assert r.tp.tolist() == [False, True, False, True]
    np.testing.assert_allclose(r.recall, [0, 1 / 3, 1 / 3, 2 / 3])
    np.testing.assert_allclose(r.precision, [0, 1 / 2, 1 / 3, 2 / 4])
    assert r.ap == pytest.approx(1 / 3 * 1 / 2 + 1 / 3 * 1 / 2)
    assert r.at_threshold(0.85) == (0.5, pytest.approx(1 / 3))
    assert average_precision(dets, gt, 0.7) < r.ap  # stricter IoU loses the 0.68 hit


def test_evaluate_ignore_and_perfect():
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]])]
    dets = [(np.array([[20, 20, 30, 30], [0, 0, 10, 10]]), np.array([0.9, 0.5]))]
    assert average_precision(dets, gt) == 1.0
    r = evaluate(dets, gt, ignore=[np.array([True, False])])
    assert r.num_gt == 1 and len(r.tp) == 1 and r.ap == pytest.approx(1.0)  # ignored match dropped
    assert np.isnan(average_precision([(np.zeros((0, 4)), np.zeros(0))], [np.zeros((0, 4))]))
    with pytest.raises(ValueError, match="ground-truth"):
        evaluate(dets, [])
