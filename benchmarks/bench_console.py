"""What the console's live preview costs the recorder (not in the default test run).

Budget (issue 14): while two browsers stream the preview, a 60 s recording keeps 0 dropped
output frames (the recorder's ``skipped_ticks``) and its CPU cost per recorded second rises by at
most 0.15 core-seconds. The baseline in the same run is the same recording through the same
console with nobody watching.

Each run starts ``surgbox serve --config examples/record.toml`` (paper layout, 1080p30, three
test patterns, tone audio) in a subprocess, logs in as an operator over HTTP, starts a recording,
lets ``watchers`` clients (threads of this process, each with its own login, doing what the page's
script does: long-polling ``/api/preview``) fetch pictures, stops, and reads the server's CPU
time (user + system, from /proc) over the recording, per second of recording (wall clock: the
recording runs in real time; ``recorded_s`` is the video written in that time, less when ticks
were skipped). The clients' own CPU is not counted: a
browser runs on the kiosk, not in the recorder process (on a one-box appliance it competes for the
same cores: see docs/console.md).

Run: ``pytest benchmarks/bench_console.py --benchmark-only -s`` (``SURGBOX_BENCH_SECONDS=20`` for a quick look).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from surgbox.config import RecordConfig

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from console_support import PASSWORD, Client, make_home  # noqa: E402

SECONDS = float(os.environ.get("SURGBOX_BENCH_SECONDS", "60"))
BUDGET_CORE_S_PER_S = 0.15
TICK = os.sysconf("SC_CLK_TCK")
CONFIG = ROOT / "examples" / "record.toml"
# the two status requests that bracket a run each take some time: frames within this much of the
# wall-clock count are not counted as missing
DEFICIT_SLACK_S = 0.25


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime of the process (all its threads)


def watch(url: str, stop: threading.Event, counts: list[int]) -> None:
    c = Client(url)
    assert c.login("olga").status_code == 303
    seq = 0
    while not stop.is_set():
        r = c.get(f"/api/preview?after={seq}")
        if r.status_code == 200:
            seq = int(r.headers["x-preview-seq"])
            counts.append(len(r.content))
        else:
            time.sleep(0.25)
    c.close()


def run_once(tmp: Path, watchers: int) -> dict:
    home = make_home(tmp / f"home-{watchers}")
    env = {**os.environ, "SURGBOX_HOME": str(home.path)}
    proc = subprocess.Popen([sys.executable, "-m", "surgbox", "serve", "--port", "0", "--config", str(CONFIG)],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        for line in proc.stderr:
            m = re.search(r"console on (http://\S+)", line)
            if m:
                url = m[1]
                break
        assert url, "the console did not start"
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain its log
        c = Client(url)
        assert c.login("olga").status_code == 303
        r = c.post("/record/start", {"patient": "Bench Patient", "medical_record": "B-1", "procedure": "Benchmark"})
        assert r.status_code == 303, r.text
        while c.get("/api/status").json()["recording"]["frames"] < 30:  # past the start-up
            time.sleep(0.2)
        stop, counts = threading.Event(), []
        threads = [threading.Thread(target=watch, args=(url, stop, counts)) for _ in range(watchers)]
        for t in threads:
            t.start()
        st0, cpu0, t0 = c.get("/api/status").json()["recording"], cpu_s(proc.pid), time.monotonic()
        time.sleep(SECONDS)
        st1, cpu1, t1 = c.get("/api/status").json()["recording"], cpu_s(proc.pid), time.monotonic()
        stop.set()
        for t in threads:
            t.join(10)
        assert c.post("/record/stop").status_code == 303
        recorded = st1["elapsed_s"] - st0["elapsed_s"]
        frames = st1["frames"] - st0["frames"]
        fps = float(RecordConfig.load(CONFIG).fps)
        return {"watchers": watchers, "seconds": round(t1 - t0, 1), "recorded_s": round(recorded, 1), "frames": frames,
                "skipped": st1["skipped"] - st0["skipped"],
                "deficit": max(0, round((t1 - t0) * fps) - frames - round(fps * DEFICIT_SLACK_S)),
                "pictures": len(counts), "pictures_per_s": round(len(counts) / max(t1 - t0, 1e-9), 2),
                "core_s_per_s": round((cpu1 - cpu0) / (t1 - t0), 4)}
    finally:
        proc.terminate()
        proc.wait(60)


def test_preview_cost_two_watchers(benchmark, tmp_path):
    results = {}

    def measure():
        results["base"] = run_once(tmp_path, 0)
        results["two"] = run_once(tmp_path, 2)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    base, two = results["base"], results["two"]
    rise = two["core_s_per_s"] - base["core_s_per_s"]
    ratio = two["core_s_per_s"] / base["core_s_per_s"]
    dropped = {k: max(r["skipped"], r["deficit"]) for k, r in results.items()}
    benchmark.extra_info.update(baseline=base, watched=two, rise_core_s_per_s=round(rise, 3), cpu_ratio=round(ratio, 3),
                                dropped_output_frames=dropped)
    print(f"\nnobody watching: {base}\ntwo watchers:    {two}\n"
          f"dropped output frames (max of skipped ticks, frame deficit): nobody watching {dropped['base']}, two watchers "
          f"{dropped['two']} (budget 0)\n"
          f"CPU: {two['core_s_per_s']:.3f} / {base['core_s_per_s']:.3f} core-s per recorded second = {ratio:.3f}x the "
          f"recording without preview; rise {rise:+.3f} (budget {BUDGET_CORE_S_PER_S})")
    assert two["pictures"] > 0
    assert dropped == {"base": 0, "two": 0}, "the recording dropped output frames"
    assert rise <= BUDGET_CORE_S_PER_S
