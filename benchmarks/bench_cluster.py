"""``deid-batch`` speedup over one process, and peak memory per worker, on one synthetic 1080p recording.

Input: a synthetic 1080p30 recording with AAC audio and a keyframe every second (FFmpeg's
``testsrc2`` at 6 Mbit/s), ``SURGBOX_BENCH_CLUSTER_SECONDS`` long (default 120 s; the issue's
figure is one hour: ``SURGBOX_BENCH_CLUSTER_SECONDS=3600``). Past a minute the recording is one
encoded minute repeated with stream copy (FFmpeg's concat demuxer), so making an hour takes
seconds, not the quarter of an hour a fresh encode takes on 2 cores. It is de-identified with
the room-camera region of the default layout (``1280,0,640,360``) and the detector chosen by
``SURGBOX_BENCH_CLUSTER_DETECTOR``: ``defaults`` (the documented defaults, the default) or
``light`` (the default ensemble without its native-size member, as ``[deid] light = true``:
:func:`surgbox.recording.live_settings.light_members`), three ways in the same run:

* ``test_one_process``: the baseline, the recording as one task in one worker process
  (``--segment-seconds 0 --workers 1``: exactly a single-pass ``deidentify()``), on the first
  ``SURGBOX_BENCH_CLUSTER_BASELINE_SECONDS`` of it (default: all of it; cut with stream copy
  from the first keyframe). One process streams, so its throughput does not depend on the
  length; a shorter baseline saves an hour of a small machine's time on the one-hour figure.
* ``test_local_pool``: segments of ``SURGBOX_BENCH_CLUSTER_SEGMENT`` seconds (default 20) on
  the local pool with ``SURGBOX_BENCH_CLUSTER_WORKERS`` processes (default: every core).
* ``test_ray``: the same segments on a local Ray with that many CPUs (skipped without Ray).

``SURGBOX_BENCH_CLUSTER_ONLY`` (comma-separated ``pool``, ``ray``) runs only those after the
baseline. Reported (``extra_info`` and a table at the end): wall time, video-seconds per
second, ``speedup`` = this run's video-seconds per second / the one process's (a ratio
measured in the same run; the ratio of wall times when both cover the same video), and the
peak RSS of each worker process (MiB). Nothing is asserted: the speedup depends on the cores
(at most the worker count; the detector already runs beside decoding and encoding in one
process) and on what else runs on the machine.

Run::

    pytest benchmarks/bench_cluster.py --benchmark-only -s
    SURGBOX_BENCH_CLUSTER_SECONDS=3600 SURGBOX_BENCH_CLUSTER_WORKERS=16 pytest benchmarks/bench_cluster.py -s
    # the one-hour figure of docs/cluster.md on 2 cores (about an hour):
    SURGBOX_BENCH_CLUSTER_SECONDS=3600 SURGBOX_BENCH_CLUSTER_BASELINE_SECONDS=300 SURGBOX_BENCH_CLUSTER_SEGMENT=60 \
        SURGBOX_BENCH_CLUSTER_DETECTOR=light SURGBOX_BENCH_CLUSTER_ONLY=ray pytest benchmarks/bench_cluster.py --benchmark-only -s
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
from surgbox.recording.live_settings import light_members

SECONDS = int(os.environ.get("SURGBOX_BENCH_CLUSTER_SECONDS", "120"))
BASELINE_SECONDS = int(os.environ.get("SURGBOX_BENCH_CLUSTER_BASELINE_SECONDS", "0")) or SECONDS
DETECTOR = os.environ.get("SURGBOX_BENCH_CLUSTER_DETECTOR", "defaults")
ONLY = {w.strip() for w in os.environ.get("SURGBOX_BENCH_CLUSTER_ONLY", "pool,ray").split(",") if w.strip()}
CLIP_SECONDS = 60  # longer recordings repeat one encoded minute
SEGMENT = float(os.environ.get("SURGBOX_BENCH_CLUSTER_SEGMENT", "20"))
WORKERS = int(os.environ.get("SURGBOX_BENCH_CLUSTER_WORKERS", "0")) or cpu_count()
REGION = "1280,0,640,360"
RESULTS: dict[str, dict] = {}
# each test may take up to 4x the video's duration (one process at the defaults takes about 2x on
# 2 cores), above the suite's 600 s per-test limit for long recordings
pytestmark = pytest.mark.timeout(max(600, 4 * SECONDS))


def _ffmpeg(*args: str) -> None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg is not installed")
    subprocess.run([exe, "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    if DETECTOR not in ("defaults", "light"):
        pytest.fail(f"SURGBOX_BENCH_CLUSTER_DETECTOR must be defaults or light, got {DETECTOR!r}")
    work = tmp_path_factory.mktemp("cluster")
    path, clip = work / "synthetic-1080p.mp4", work / "clip.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000",
            "-t", str(min(SECONDS, CLIP_SECONDS)), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "6M", "-maxrate", "8M",
            "-bufsize", "12M", "-g", "30", "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
            str(clip))
    if SECONDS <= CLIP_SECONDS:
        return clip
    listing = work / "clips.txt"
    listing.write_text(f"file '{clip.name}'\n" * -(-SECONDS // CLIP_SECONDS), encoding="utf-8")
    _ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-t", str(SECONDS), "-c", "copy", str(path))
    clip.unlink()
    return path


@pytest.fixture(scope="module")
def baseline_recording(recording: Path, tmp_path_factory) -> Path:
    if BASELINE_SECONDS >= SECONDS:
        return recording
    path = tmp_path_factory.mktemp("baseline") / "first.mp4"
    _ffmpeg("-i", str(recording), "-t", str(BASELINE_SECONDS), "-c", "copy", str(path))
    return path


def _options() -> DeidOptions:
    if DETECTOR == "light":
        return DeidOptions(region=REGION, detector="ensemble", detector_options={"members": light_members()})
    return DeidOptions(region=REGION)


def _batch(benchmark, recording: Path, tmp_path: Path, name: str, backend, segment: float) -> dict:
    out = tmp_path / f"{name.replace(' ', '-')}.mp4"
    batch = Batch(_options(), backend, segment_seconds=segment, work_dir=str(tmp_path))
    summary = benchmark.pedantic(batch.run, args=([PathInput(recording, out)],), rounds=1, iterations=1)
    assert summary["done"] == [str(recording)], summary
    row = {"wall_s": summary["elapsed_s"], "video_s": summary["video_s"], "video_s_per_s": summary["video_s_per_s"],
           "workers": summary["workers"], "worker_peak_rss_mb": summary["worker_peak_rss_mb"]}
    base = RESULTS.get("one process")
    if base is not None and base["video_s_per_s"] and row["video_s_per_s"]:
        row["speedup"] = round(row["video_s_per_s"] / base["video_s_per_s"], 3)
    RESULTS[name] = row
    benchmark.extra_info.update(row)
    out.unlink(missing_ok=True)
    return row


def test_one_process(benchmark, baseline_recording, tmp_path):
    _batch(benchmark, baseline_recording, tmp_path, "one process", LocalPool(1), 0)


def test_local_pool(benchmark, recording, tmp_path):
    if "pool" not in ONLY:
        pytest.skip("not in SURGBOX_BENCH_CLUSTER_ONLY")
    if "one process" not in RESULTS:
        pytest.skip("run with test_one_process (the baseline) in the same session")
    _batch(benchmark, recording, tmp_path, f"local pool x{WORKERS}", LocalPool(WORKERS), SEGMENT)


def test_ray(benchmark, recording, tmp_path):
    if "ray" not in ONLY:
        pytest.skip("not in SURGBOX_BENCH_CLUSTER_ONLY")
    pytest.importorskip("ray")
    if "one process" not in RESULTS:
        pytest.skip("run with test_one_process (the baseline) in the same session")
    _batch(benchmark, recording, tmp_path, f"ray x{WORKERS}", RayCluster(None, WORKERS), SEGMENT)


def teardown_module(module) -> None:
    if RESULTS:
        print(f"\ndeid-batch, {SECONDS} s synthetic 1080p30 (one process: the first {min(BASELINE_SECONDS, SECONDS)} s), "
              f"region {REGION}, detector {DETECTOR}, segments of {SEGMENT:g} s")
        for name, r in RESULTS.items():
            peak = max(r["worker_peak_rss_mb"].values()) if r["worker_peak_rss_mb"] else None
            print(f"  {name:16s} wall {r['wall_s']:8.1f} s  video {r['video_s'] or 0:7.1f} s  {r['video_s_per_s'] or 0:6.2f} video-s/s  "
                  f"speedup {r.get('speedup', 1.0):5.2f}x  workers {r['workers']}  peak/worker {peak} MiB")
