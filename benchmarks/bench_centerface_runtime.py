"""CenterFace on CPU: which runtime, as a ratio to onnxruntime (f32) measured in the same run.

``CenterFaceDetector.detect`` end to end (resize, pad, network, decode, NMS) on a 640x360
room-camera view at native size (the input of the default ensemble's first member, padded to
640x384), one image per call, one thread (the de-identification defaults), for:

* ``onnxruntime`` (the baseline: ``backend="onnxruntime"``, f32);
* ``openvino-f32`` (``backend="openvino"``);
* ``openvino-bf16`` (``precision="bf16"``: OpenVINO in bfloat16; skipped where this CPU has no
  bf16 hardware, :func:`surgbox_ext.torch_detect.openvino_bf16`).

Each row's ``extra_info`` has ``ms_per_image`` and ``ratio`` (its time / the baseline's). The
bf16 row asserts ``ratio <= 0.8`` (where it runs), the reason ``precision="bf16"`` is in the
defaults (docs/detectors.md "Runtime: chosen by measurement")::

    pytest benchmarks/bench_centerface_runtime.py --benchmark-only -s
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from masked_faces import masked_scene  # noqa: E402  (the tests' drawn masked faces)

from surgbox_ext.centerface import CenterFaceDetector  # noqa: E402
from surgbox_ext.torch_detect import openvino_bf16  # noqa: E402

ROUNDS = 30
RESULTS: dict[str, float] = {}
PATHS = {
    "onnxruntime": {"backend": "onnxruntime"},
    "openvino-f32": {"backend": "openvino"},
    "openvino-bf16": {"backend": "openvino", "precision": "bf16"},
}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return masked_scene(360, 640, [(120, 150, 55), (330, 130, 38), (500, 200, 26), (580, 90, 14)])


@pytest.mark.parametrize("path", list(PATHS))
def test_centerface_runtime(benchmark, image, path):
    if path.startswith("openvino"):
        pytest.importorskip("openvino")
    if path == "openvino-bf16" and not openvino_bf16():
        pytest.skip("this CPU has no bfloat16 hardware that OpenVINO uses (AVX512-BF16 / AMX)")
    if path != "onnxruntime" and "onnxruntime" not in RESULTS:
        pytest.skip("run with the onnxruntime baseline in the same session")
    with CenterFaceDetector(device="cpu", threads=1, threshold=0.1, **PATHS[path]) as det:
        # warm-up: OpenVINO compiles kernels for a new input shape on first use
        benchmark.pedantic(det.detect, args=([image],), rounds=ROUNDS, iterations=1, warmup_rounds=3)
    ms = benchmark.stats.stats.mean * 1000
    RESULTS[path] = ms
    ratio = ms / RESULTS["onnxruntime"]
    benchmark.extra_info.update(ms_per_image=round(ms, 2), ratio=round(ratio, 3))
    print(f"\nCenterFace 640x360 native, 1 thread, {path}: {ms:.1f} ms per image, {ratio:.2f}x onnxruntime")
    if path == "openvino-bf16":
        assert ratio <= 0.8, f"bf16 took {ratio:.2f}x the onnxruntime time: not worth its precision here"
