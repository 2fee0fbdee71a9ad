"""RetinaFace throughput (images/s of ``RetinaFaceDetector.detect``, end to end: upload,
preprocess, network, decode, NMS, results back as numpy), as a ratio to a baseline measured in
the same run.

CPU paths (``baseline`` = the model as converted: BatchNorm unfolded, NCHW, eager torch, the
whole batch in one forward pass): ``folded`` (BatchNorm folded), ``folded+channels_last``,
``default`` (folded + channels_last + at most 1 Mpixel per forward pass, what
``RetinaFaceDetector()`` does on CPU), ``onnxruntime`` (when installed) and ``compile``
(``torch.compile`` of the default; opt-in with ``SURGBOX_BENCH_COMPILE=1`` or ``--paths``, it
compiles for about a minute per input shape on 2 cores).
CUDA paths (skipped without a GPU): ``cuda-fp32`` (baseline, NCHW) and ``cuda-fp16`` (half
precision + channels_last, the CUDA default).

pytest-benchmark::

    pytest benchmarks/bench_retinaface.py --benchmark-only -s      # table printed at the end
    pytest benchmarks/bench_retinaface.py -k cuda -s                # GPU machine

Script (same measurement, markdown table)::

    python benchmarks/bench_retinaface.py                           # CPU, 640x360 + 1920x1080, batch 1 + 16
    python benchmarks/bench_retinaface.py --device cuda --sizes 1920x1080 --batches 1,16,32
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image, ImageDraw  # noqa: E402

from surgbox_ext.retinaface import RetinaFaceDetector  # noqa: E402

SIZES = {"640x360": (360, 640), "1920x1080": (1080, 1920)}
BATCHES = (1, 16)
CPU_PATHS = {
    "baseline": dict(device="cpu", fold_bn=False, channels_last=False, cpu_batch_pixels=None),
    "folded": dict(device="cpu", fold_bn=True, channels_last=False, cpu_batch_pixels=None),
    "folded+channels_last": dict(device="cpu", cpu_batch_pixels=None),
    "default": dict(device="cpu"),  # folded + channels_last + at most 1 Mpixel per forward pass
    "onnxruntime": dict(device="cpu", backend="onnxruntime"),
    "compile": dict(device="cpu", compile=True),
}
CUDA_PATHS = {
    "cuda-fp32": dict(device="cuda", fp16=False, channels_last=False),
    "cuda-fp16": dict(device="cuda", fp16=True, channels_last=True),
}


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A room-like picture with a few drawn faces (the detector finds them), ``HxWx3`` uint8 RGB."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (height // 40 + 1, width // 40 + 1, 3), dtype=np.uint8)
    im = Image.fromarray(base).resize((width, height), Image.BILINEAR)
    d = ImageDraw.Draw(im)
    for _ in range(6):
        s = rng.uniform(0.04, 0.12) * height
        cx, cy = rng.uniform(s, width - s), rng.uniform(s, height - s)
        d.ellipse([cx - 0.8 * s, cy - s, cx + 0.8 * s, cy + s], fill=(224, 172, 140))
        for ex in (-0.33, 0.33):
            d.ellipse([cx + ex * s - 0.1 * s, cy - 0.22 * s, cx + ex * s + 0.1 * s, cy - 0.08 * s], fill=(30, 20, 20))
        d.chord([cx - 0.3 * s, cy + 0.25 * s, cx + 0.3 * s, cy + 0.55 * s], 0, 180, fill=(150, 60, 60))
    return np.asarray(im)


def batch_of(size: str, n: int) -> list[np.ndarray]:
    """``n`` scenes of ``size`` (``"WxH"``, e.g. ``"320x180"``, the de-identification default input)."""
    w, h = (int(v) for v in size.split("x"))
    frames = [scene(h, w, i) for i in range(min(n, 4))]
    return [frames[i % len(frames)] for i in range(n)]


def available(path: str) -> str | None:
    """``None`` when ``path`` can run here, else why not."""
    if path.startswith("cuda") and not torch.cuda.is_available():
        return "no CUDA GPU"
    if path == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime not installed"
    return None


def rounds_for(size: str, batch: int) -> int:
    pixels = SIZES[size][0] * SIZES[size][1] * batch
    return max(2, min(10, int(2e7 // pixels)))


# ------------------------------------------------------------------------- pytest-benchmark

_RESULTS: dict[tuple[str, int, str], float] = {}
_DETECTORS: dict[str, RetinaFaceDetector] = {}


def _detector(path: str) -> RetinaFaceDetector:
    if path not in _DETECTORS:
        opts = {**CPU_PATHS, **CUDA_PATHS}[path]
        _DETECTORS[path] = RetinaFaceDetector(**opts)
        _DETECTORS[path].open()
    return _DETECTORS[path]


def _cases(paths: dict, sizes=SIZES, batches=BATCHES) -> list:
    # the baseline of each (size, batch) runs first so later paths can report a ratio
    return [pytest.param(s, b, p, id=f"{s}-b{b}-{p}") for s in sizes for b in batches for p in paths]


@pytest.fixture(scope="module", autouse=True)
def _table(request):
    yield
    if not _RESULTS:
        return
    tr = request.config.pluginmanager.getplugin("terminalreporter")
    write = tr.write_line if tr else print
    write("")
    for line in format_table(_RESULTS, "baseline" if any(k[2] == "baseline" for k in _RESULTS) else "cuda-fp32"):
        write(line)


def _run(benchmark, size: str, batch: int, path: str, baseline: str) -> None:
    reason = available(path)
    if reason:
        pytest.skip(reason)
    if path == "compile" and os.environ.get("SURGBOX_BENCH_COMPILE") != "1":
        pytest.skip("torch.compile path is opt-in: SURGBOX_BENCH_COMPILE=1 (about a minute of compiling per shape)")
    det = _detector(path)
    images = batch_of(size, batch)
    det.detect(images)  # warm up this shape (allocations, compile)
    benchmark.pedantic(det.detect, args=(images,), rounds=rounds_for(size, batch), iterations=1, warmup_rounds=0)
    ips = batch / benchmark.stats.stats.median
    _RESULTS[(size, batch, path)] = ips
    base = _RESULTS.get((size, batch, baseline))
    benchmark.extra_info.update(images_per_s=round(ips, 2), ratio_to_baseline=round(ips / base, 2) if base else None)


@pytest.mark.parametrize("size,batch,path", _cases(CPU_PATHS))
def test_cpu_throughput(benchmark, size, batch, path):
    _run(benchmark, size, batch, path, "baseline")


@pytest.mark.parametrize("size,batch,path", _cases(CUDA_PATHS, sizes=["1920x1080"], batches=(1, 16)))
def test_cuda_throughput(benchmark, size, batch, path):
    _run(benchmark, size, batch, path, "cuda-fp32")


# ------------------------------------------------------------------------------ script mode


def format_table(results: dict[tuple[str, int, str], float], baseline: str) -> list[str]:
    lines = ["| size | batch | path | images/s | x baseline |", "|---|---|---|---|---|"]
    for (size, batch, path), ips in results.items():
        base = results.get((size, batch, baseline))
        ratio = f"{ips / base:.2f}" if base else "-"
        lines.append(f"| {size} | {batch} | {path} | {ips:.2f} | {ratio} |")
    return lines


def measure(det: RetinaFaceDetector, images: list[np.ndarray], min_seconds: float, min_rounds: int = 2) -> float:
    """Median images/s over rounds of ``det.detect(images)`` after one warm-up call."""
    det.detect(images)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_rounds or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        det.detect(images)
        times.append(time.perf_counter() - t)
        if len(times) >= 50:
            break
    return len(images) / float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="RetinaFace throughput table")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--sizes", default="640x360,1920x1080")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--paths", help="comma list (default: all but compile on CPU; cuda-fp32,cuda-fp16 on CUDA)")
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum measuring time per case")
    args = ap.parse_args(argv)
    table = CUDA_PATHS if args.device == "cuda" else CPU_PATHS
    paths = args.paths.split(",") if args.paths else [p for p in table if p != "compile"]
    baseline = "cuda-fp32" if args.device == "cuda" else "baseline"
    if args.device == "cuda":
        print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}")
    else:
        print(f"# CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")
    results: dict[tuple[str, int, str], float] = {}
    for size in args.sizes.split(","):
        for batch in map(int, args.batches.split(",")):
            for path in paths:
                reason = available(path)
                if reason:
                    print(f"skip {path}: {reason}", file=sys.stderr)
                    continue
                ips = measure(_detector(path), batch_of(size, batch), args.seconds)
                results[(size, batch, path)] = ips
                print(f"{size} b{batch} {path}: {ips:.2f} images/s", file=sys.stderr, flush=True)
    print("\n".join(format_table(results, baseline)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
