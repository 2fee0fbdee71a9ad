"""``deid-batch`` speedup over one process, and peak memory per worker, on one synthetic 1080p recording.

Input: a synthetic 1080p30 recording with AAC audio and a keyframe every second (FFmpeg's
``testsrc2``), ``SURGBOX_BENCH_CLUSTER_SECONDS`` long (default 120 s; the issue's figure is one
hour: ``SURGBOX_BENCH_CLUSTER_SECONDS=3600``, which takes hours on a small machine). It is
de-identified at the documented defaults with the room-camera region of the default layout
(``1280,0,640,360``), three ways in the same run:

* ``test_one_process``: the baseline, the whole recording as one task in one worker process
  (``--segment-seconds 0 --workers 1``: exactly a single-pass ``deidentify()``).
* ``test_local_pool``: segments of ``SURGBOX_BENCH_CLUSTER_SEGMENT`` seconds (default 20) on
  the local pool with ``SURGBOX_BENCH_CLUSTER_WORKERS`` processes (default: every core).
* ``test_ray``: the same segments on a local Ray with that many CPUs (skipped without Ray).

Reported (``extra_info`` and a table at the end): wall time, video-seconds per second,
``speedup`` = one-process wall time / this wall time (a ratio measured in the same run), and
the peak RSS of each worker process (MiB). Nothing is asserted: the speedup depends on the
cores (at most the worker count; the detector already runs beside decoding and encoding in one
process) and on what else runs on the machine.

Run::

    pytest benchmarks/bench_cluster.py --benchmark-only -s
    SURGBOX_BENCH_CLUSTER_SECONDS=3600 SURGBOX_BENCH_CLUSTER_WORKERS=16 pytest benchmarks/bench_cluster.py -s
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from surgbox.cluster.backends import LocalPool, RayCluster, cpu_count
from surgbox.cluster.batch import Batch, PathInput
from surgbox.deid import DeidOptions

SECONDS = int(os.environ.get("SURGBOX_BENCH_CLUSTER_SECONDS", "120"))
SEGMENT = float(os.environ.get("SURGBOX_BENCH_CLUSTER_SEGMENT", "20"))
WORKERS = int(os.environ.get("SURGBOX_BENCH_CLUSTER_WORKERS", "0")) or cpu_count()
REGION = "1280,0,640,360"
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg is not installed")
    path = tmp_path_factory.mktemp("cluster") / "synthetic-1080p.mp4"
    subprocess.run([exe, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-f", "lavfi",
                    "-i", "sine=f=440:sample_rate=48000", "-t", str(SECONDS), "-c:v", "libx264", "-preset", "ultrafast",
                    "-crf", "28", "-g", "30", "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-shortest", str(path)], check=True)
    return path


def _batch(benchmark, recording: Path, tmp_path: Path, name: str, backend, segment: float) -> dict:
    out = tmp_path / f"{name.replace(' ', '-')}.mp4"
    batch = Batch(DeidOptions(region=REGION), backend, segment_seconds=segment, work_dir=str(tmp_path))
    summary = benchmark.pedantic(batch.run, args=([PathInput(recording, out)],), rounds=1, iterations=1)
    assert summary["done"] == [str(recording)], summary
    row = {"wall_s": summary["elapsed_s"], "video_s": summary["video_s"], "video_s_per_s": summary["video_s_per_s"],
           "workers": summary["workers"], "worker_peak_rss_mb": summary["worker_peak_rss_mb"]}
    base = RESULTS.get("one process")
    if base is not None:
        row["speedup"] = round(base["wall_s"] / row["wall_s"], 3)
    RESULTS[name] = row
    benchmark.extra_info.update(row)
    return row


def test_one_process(benchmark, recording, tmp_path):
    _batch(benchmark, recording, tmp_path, "one process", LocalPool(1), 0)


def test_local_pool(benchmark, recording, tmp_path):
    if "one process" not in RESULTS:
        pytest.skip("run with test_one_process (the baseline) in the same session")
    _batch(benchmark, recording, tmp_path, f"local pool x{WORKERS}", LocalPool(WORKERS), SEGMENT)


def test_ray(benchmark, recording, tmp_path):
    pytest.importorskip("ray")
    if "one process" not in RESULTS:
        pytest.skip("run with test_one_process (the baseline) in the same session")
    _batch(benchmark, recording, tmp_path, f"ray x{WORKERS}", RayCluster(None, WORKERS), SEGMENT)


def teardown_module(module) -> None:
    if RESULTS:
        print(f"\ndeid-batch, {SECONDS} s synthetic 1080p30, region {REGION}, segments of {SEGMENT:g} s")
        for name, r in RESULTS.items():
            peak = max(r["worker_peak_rss_mb"].values()) if r["worker_peak_rss_mb"] else None
            print(f"  {name:16s} wall {r['wall_s']:8.1f} s  {r['video_s_per_s'] or 0:6.2f} video-s/s  "
                  f"speedup {r.get('speedup', 1.0):5.2f}x  workers {r['workers']}  peak/worker {peak} MiB")
