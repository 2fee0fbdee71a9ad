"""AP metrics: VOC all-point by hand, COCO AP@[.5:.95] equal to pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from surgbox.metrics import average_precision, coco_evaluate, evaluate, per_frame_ap


def test_voc_ap_by_hand():
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([[0, 0, 10, 10]])]
    # ranked: 0.9 TP (img0 gt0), 0.8 FP, 0.7 TP (img1), 0.6 TP (img0 gt1)
    det = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]]), np.array([0.9, 0.6, 0.8])),
           (np.array([[1, 0, 10, 10]]), np.array([0.7]))]
    # precision 1, 1/2, 2/3, 3/4 at recall 1/3, 1/3, 2/3, 1 -> envelope 1, 3/4, 3/4, 3/4
    # AP = 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4
    assert average_precision(det, gt) == pytest.approx(1 / 3 + 0.25 + 0.25)
    # a duplicate of an already matched face is a false positive; an IoU of 0.45 misses at 0.5
    det2 = [(np.array([[0, 0, 10, 10], [0, 0, 10, 10]]), np.array([0.9, 0.8])), (np.array([[0, 0, 10, 4.5]]), np.array([0.7]))]
    r = evaluate(det2, gt)
    assert list(r.tp) == [True, False, False] and r.ap == pytest.approx(1 / 3)
    assert evaluate(det2, gt, iou_threshold=0.45).ap == pytest.approx(1 / 3 + 1 / 3 * 2 / 3)


def test_per_frame_map_by_hand():
    gt = [np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.zeros((0, 4))]
    det = [(np.array([[0, 0, 10, 10]]), np.array([0.9])),
           (np.array([[50, 50, 60, 60], [20, 20, 30, 30]]), np.array([0.9, 0.5])),
           (np.array([[0, 0, 5, 5]]), np.array([0.99]))]
    # frame 0: AP 1; frame 1: FP then TP at recall 1/2 -> precision 1/2 -> AP 1/4; frame 2 has no face: left out
    mean, n = per_frame_ap(det, gt)
    assert n == 2 and mean == pytest.approx((1 + 0.25) / 2)


def _random_case(rng, n_images=30):
    gts, dets, crowd = [], [], []
    for _ in range(n_images):
        g = []
        for _ in range(rng.integers(0, 6)):
            x, y = rng.uniform(0, 400, 2)
            w, h = rng.uniform(4, 150, 2)
            g.append([x, y, x + w, y + h])
        g = np.array(g).reshape(-1, 4)
        d = []
        for b in g:
            if rng.random() < 0.8:  # a jittered hit, sometimes two
                for _ in range(rng.integers(1, 3)):
                    j = rng.normal(0, 0.12, 4) * np.r_[b[2] - b[0], b[3] - b[1], b[2] - b[0], b[3] - b[1]]
                    d.append(b + j)
        for _ in range(rng.integers(0, 4)):  # false alarms
            x, y = rng.uniform(0, 400, 2)
            w, h = rng.uniform(4, 100, 2)
            d.append([x, y, x + w, y + h])
        d = np.array(d).reshape(-1, 4)
        d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 1)
        s = np.round(rng.uniform(0, 1, len(d)), 3)  # rounded: ties happen, order must match
        gts.append(g)
        dets.append((d, s))
        crowd.append(rng.random(len(g)) < 0.1)
    return dets, gts, crowd


def _pycoco(dets, gts, crowd, area_rng=None, max_dets=100):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, results, aid = [], [], [], 1
    for i, (g, c) in enumerate(zip(gts, crowd)):
        images.append({"id": i + 1, "width": 600, "height": 600})
        for b, cr in zip(g, c):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": aid, "image_id": i + 1, "category_id": 1, "bbox": [b[0], b[1], w, h], "area": w * h,
                         "iscrowd": int(cr)})
            aid += 1
    for i, (d, s) in enumerate(dets):
        for b, sc in zip(d, s):
            results.append({"image_id": i + 1, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": sc})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}
        gt.createIndex()
        dt = gt.loadRes(results) if results else COCO()
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [max_dets]
        if area_rng is not None:
            ev.params.areaRng = [area_rng]
            ev.params.areaRngLbl = ["x"]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][:, :, 0, 0, -1]  # (T, R)
    return float(np.mean(prec[prec > -1])), prec


@pytest.mark.parametrize("seed", range(6))
def test_coco_ap_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    dets, gts, crowd = _random_case(rng)
    ours = coco_evaluate(dets, gts, crowd)
    ref, prec = _pycoco(dets, gts, crowd)
    assert abs(ours.ap - ref) <= 1e-6
    assert np.abs(ours.precision - prec).max() <= 1e-6


def test_coco_ap_equals_pycocotools_max_dets_and_sizes():
    rng = np.random.default_rng(42)
    dets, gts, crowd = _random_case(rng, 40)
    for max_dets in (1, 3):
        assert abs(coco_evaluate(dets, gts, crowd, max_dets=max_dets).ap - _pycoco(dets, gts, crowd, max_dets=max_dets)[0]) <= 1e-6
    for lo, hi in ((0, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e10)):
        ours = coco_evaluate(dets, gts, crowd, size_range=(lo, hi)).ap
        assert abs(ours - _pycoco(dets, gts, crowd, area_rng=[lo, hi])[0]) <= 1e-6


def test_coco_ap_by_hand():
    gt = [np.array([[0, 0, 10, 10]])]
    # IoU 0.81 with the face: a hit for thresholds 0.5..0.8 (7 of 10), a miss above
    det = [(np.array([[0, 0, 10, 8.1]]), np.array([0.9]))]
    r = coco_evaluate(det, gt)
    assert r.ap == pytest.approx(0.7) and r.ap_at(0.5) == pytest.approx(1.0) and r.ap_at(0.85) == 0.0
    assert np.isnan(coco_evaluate([(np.zeros((0, 4)), np.zeros(0))], [np.zeros((0, 4))]).ap)
