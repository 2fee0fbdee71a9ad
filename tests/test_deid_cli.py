"""``surgbox deid`` manners (issue 20 items 1, 9, 13, 14) and signals (issue 18 item 17), with
real subprocesses, the real RetinaFace detector and real signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from test_deid_pipeline import make_video

from surgbox.cli.deid import progress_line
from surgbox.deid import Progress, StageTimes

DEID = [sys.executable, "-m", "surgbox", "deid"]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*DEID, *args], capture_output=True, text=True, timeout=timeout)


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name)


def test_timing_table_only_with_timing_and_json_summary(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=12)
    proc = cli(str(src), str(tmp_path / "o.mp4"), "--region", "full")
    assert proc.returncode == 0, proc.stderr
    assert "queue wait" not in proc.stderr and "ms/frame" not in proc.stderr  # no 17-line table
    assert "frames 12/12" in proc.stderr and proc.stdout.startswith(f"{tmp_path / 'o.mp4'}: 12 frames")
    proc = cli(str(src), str(tmp_path / "o2.mp4"), "--region", "full", "--json", "--quiet", "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    (summary,) = json.loads(proc.stdout)
    assert summary["ok"] is True and summary["frames"] == 12 and summary["dst"] == str(tmp_path / "o2.mp4")
    assert summary["src"] == str(src) and summary["report"] == str(tmp_path / "r.json")
    assert summary["input"]["problem"] is None and summary["warnings"] == [] and summary["realtime_factor"] > 0
    assert json.loads((tmp_path / "r.json").read_text())["frames"] == 12


def test_several_inputs_in_one_call(tmp_path):
    a = make_video(tmp_path / "a.mp4", frames=8, audio=False)
    b = make_video(tmp_path / "b.mp4", frames=10, audio=False)
    out = tmp_path / "out"
    out.mkdir()
    proc = cli(str(a), str(b), "-o", str(out), "--region", "full", "--report", str(out / "{name}.json"), "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["src"], r["dst"], r["frames"]) for r in rows] == [(str(a), str(out / "a.deid.mp4"), 8),
                                                                 (str(b), str(out / "b.deid.mp4"), 10)]
    assert sorted(p.name for p in out.iterdir()) == ["a.deid.mp4", "a.json", "b.deid.mp4", "b.json"]
    # one bad input does not stop the others; the exit status says something failed
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage" * 100)
    proc = cli(str(bad), str(a), "-o", str(out), "--region", "full", "--overwrite", "--quiet")
    assert proc.returncode == 1
    assert "bad.mp4" in proc.stderr and "not a readable video" in proc.stderr and "a.deid.mp4: 8 frames" in proc.stdout
    # three paths without --out-dir, a report without {name}, two inputs into one name: refused up front
    for args, msg in [((str(a), str(b), str(bad)), "use SRC [DST] for one input, or --out-dir DIR"),
                      ((str(a), str(b), "-o", str(out), "--report", "r.json"), "put {name} in it"),
                      ((str(a), str(tmp_path / "x" / ".." / "a.mp4"), "-o", str(out)), "same file name")]:
        proc = cli(*args)
        assert proc.returncode == 1 and msg in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_no_eta_until_the_rate_is_known():
    assert Progress(1, 600, 14.0).eta is None  # the model load says nothing about the speed
    assert "ETA --:--" in progress_line(Progress(1, 600, 14.0)) and "--- fps" in progress_line(Progress(1, 600, 14.0))
    p = Progress(300, 600, 20.0, rate=30.0)
    assert p.eta == 10.0 and progress_line(p).endswith("30.0 fps  elapsed 00:20  ETA 00:10")
    assert Progress(600, 600, 30.0, done=True).eta == 0.0


def test_first_progress_line_has_no_eta(tmp_path):
    """The first line used to say ``ETA 2:37:15`` for a 20 s video (the rate included the model load)."""
    src = make_video(tmp_path / "in.mp4", frames=60, audio=False)
    proc = cli(str(src), str(tmp_path / "o.mp4"))
    assert proc.returncode == 0, proc.stderr
    first = next(line for line in proc.stderr.splitlines() if line.startswith("frames "))
    assert "ETA --:--" in first, first


def test_every_option_has_help_text():
    from surgbox.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["deid"]
    for action in sub._actions:
        assert action.help and action.help.strip() and "%(" not in action.help, action.dest
    text = sub.format_help()
    for flag in ("--overwrite", "--timing", "--json", "--strict", "--on-detector-error", "--extra-streams", "--out-dir"):
        assert flag in text


def test_chart_has_title_speed_legend_and_labels(tmp_path):
    t = StageTimes()
    for stage, s in [("decode", 2.6), ("setup", 1.6), ("crop", 0.9), ("inference", 4.1), ("blur", 4.0), ("write", 7.8),
                     ("temporal", 0.4), ("queue wait (decode)", 5.0)]:
        t.add(stage, s, count=480)
    path = tmp_path / "c.png"
    t.chart(path, frames=480, wall=10.27, duration=16.0)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 800 and im.height >= 400
        px = im.convert("RGB").load()
        colours = {px[x, y] for x in range(0, im.width, 3) for y in range(0, im.height, 3)}
    assert {(200, 80, 60), (60, 110, 190), (165, 165, 165)} <= colours  # legend and bars of each kind


# -- signals: real subprocesses, real RetinaFace, real signals -----------------------------------------

@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """20 s of 960x540: de-identified with --region full --detect-scale 1, detection is slow, so a
    signal arrives while the frame queue is full and the detector busy."""
    exe = shutil.which("ffmpeg")
    path = tmp_path_factory.mktemp("sig") / "long.mp4"
    subprocess.run([exe, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=960x540:rate=30", "-f", "lavfi", "-i",
                    "sine=f=440:sample_rate=44100", "-t", "20", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
                    "yuv420p", "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


def _signal_after_first_frames(args: list[str], sig: int, cwd: Path) -> tuple[int, str, float]:
    """Start ``surgbox deid``, send ``sig`` 1 s after its first progress line (frames already
    written, the partial output exists), return (exit status, stderr, seconds to exit)."""
    proc = subprocess.Popen([*DEID, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("frames "):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert started.wait(240), "".join(lines)
    time.sleep(1.0)
    assert partials(cwd), "the partial output should exist while the run goes on"
    t0 = time.monotonic()
    proc.send_signal(sig)
    rc = proc.wait(120)
    reader.join(10)
    return rc, "".join(lines), time.monotonic() - t0


SLOW = ["--region", "full", "--detect-scale", "1"]


def test_ctrl_c_stops_the_threads_in_order(tmp_path, long_video):
    """SIGINT while the detector is busy and the queue full: exit 130 with one message, never
    ``terminate called without an active exception`` (rc -6, the detector thread still inside
    torch at exit), and no partial file."""
    rc, err, took = _signal_after_first_frames([str(long_video), "out.mp4", *SLOW], signal.SIGINT, tmp_path)
    assert rc == 130, err
    assert "terminate called" not in err and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "surgbox: interrupted"
    assert partials(tmp_path) == [] and not (tmp_path / "out.mp4").exists()
    assert took < 60


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_leave_no_partial_files(tmp_path, long_video, sig):
    rc, err, _ = _signal_after_first_frames([str(long_video), "out.mp4", "--audit", "a.jsonl"], sig, tmp_path)
    assert rc == 128 + sig, err
    assert err.strip().splitlines()[-1] == f"surgbox: stopped by {signal.Signals(sig).name}; the unfinished output was removed"
    assert partials(tmp_path) == [] and sorted(os.listdir(tmp_path)) == []


HOSTILE = [
    ["--threshold", "nan"], ["--threshold", "1.5"], ["--threshold", "-1"], ["--detect-scale", "nan"], ["--detect-scale", "0"],
    ["--expand", "inf"], ["--expand", "nan"], ["--feather", "nan"], ["--cut-threshold", "nan"], ["--cut-threshold", "inf"],
    ["--batch", "99999999999"], ["--batch", "-1"], ["--queue-size", "-5"], ["--every", "0"], ["--carry", "99999"],
    ["--max-gap", "-2"], ["--confirm-hits", "0"], ["--confirm-hits", "x"], ["--detector-threads", "-3"],
    ["--region", "0,0,0,0"], ["--region", "99999999,0,10,10"],
    ["--region", "a,b,c,d"], ["--detector", "no-such-detector"], ["--encoder", "no-such-encoder"],
    ["--encoder-option", "crf=nan"], ["--encoder-option", "nokey"], ["--detector-option", "threshold=nan"],
    ["--detector-option", "bogus=1"], ["--report", "{missing}/r.json"], ["--audit", "{missing}/a.jsonl"],
    ["--chart", "{dir}"], ["--report", "{dir}"], ["--out-dir", "{missing}"], ["{dir}/o.mkv"], ["{dir}/o"],
    ["{missing}/o.mp4"],
]


def test_hostile_arguments_give_one_line_and_no_traceback(tmp_path):
    """Every bad value: a non-zero exit with one line on stderr naming the thing, no Traceback,
    no output and no partial file (issue 18's sweep, for deid)."""
    src = make_video(tmp_path / "in.mp4", frames=3, audio=False)
    out = tmp_path / "out"
    out.mkdir()
    subs = {"{missing}": str(tmp_path / "missing"), "{dir}": str(out)}
    bad_inputs = {"empty": tmp_path / "empty.mp4", "dir": tmp_path / "adir.mp4", "nonutf8": Path(os.fsdecode(b"/tmp/\xff\xfe.mp4"))}
    bad_inputs["empty"].write_bytes(b"")
    bad_inputs["dir"].mkdir()
    cases = [[str(src), *(_sub(a, subs) for a in args)] for args in HOSTILE]
    cases = [c if len(c) > 1 and not c[1].startswith("-") else [c[0], str(out / "o.mp4"), *c[1:]] for c in cases]
    cases += [[str(p), str(out / "o.mp4")] for p in bad_inputs.values()]
    for case in cases:
        proc = subprocess.run([*DEID, *case, "--quiet"], capture_output=True, timeout=300)
        err = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode not in (0, -6) and "Traceback" not in err, (case, err)
        assert len(err.strip().splitlines()) == 1 or proc.returncode == 2, (case, err)  # 2: argparse's usage + error
        assert os.listdir(out) == [], (case, os.listdir(out))


def _sub(arg: str, subs: dict[str, str]) -> str:
    for k, v in subs.items():
        arg = arg.replace(k, v)
    return arg


def test_sidecars_never_replace_the_input_the_output_or_an_existing_file(tmp_path):
    """``--report``/``--audit``/``--chart`` follow the output's rule: the input is never replaced
    (it was: ``--report in.mp4`` wrote JSON over the recording), nor the output or another sidecar,
    and an existing file only with --overwrite; all refused before anything runs."""
    src = make_video(tmp_path / "in.mp4", frames=3, audio=False)
    original = src.read_bytes()
    kept = tmp_path / "r.json"
    kept.write_text("kept")
    (tmp_path / "link.mp4").symlink_to(src)
    for args, msg in [(["--report", str(src)], "is the input file"),
                      (["--audit", str(tmp_path / "link.mp4")], "is the input file"),
                      (["--chart", str(tmp_path / "o.mp4")], "is the output video"),
                      (["--report", str(tmp_path / "a.json"), "--audit", str(tmp_path / "." / "a.json")], "both"),
                      (["--report", str(kept)], "exists; pass --overwrite"),
                      (["--report", str(src), "--overwrite"], "is the input file")]:
        proc = cli(str(src), str(tmp_path / "o.mp4"), "--region", "full", "--quiet", *args)
        assert proc.returncode == 1 and msg in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert src.read_bytes() == original and kept.read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "link.mp4", "r.json"]
    proc = cli(str(src), str(tmp_path / "o.mp4"), "--region", "full", "--quiet", "--report", str(kept), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(kept.read_text())["frames"] == 3


def test_one_inputs_output_is_never_another_input(tmp_path):
    """``deid a.mp4 a.deid.mp4 -o . --overwrite`` wrote a.mp4's output over the second input
    before it was read. Refused up front; the inputs are as they were."""
    a = make_video(tmp_path / "a.mp4", frames=3, audio=False)
    b = make_video(tmp_path / "a.deid.mp4", frames=4, audio=False)
    before = {p: p.read_bytes() for p in (a, b)}
    proc = cli(str(a), str(b), "-o", str(tmp_path), "--overwrite", "--region", "full", "--quiet")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "which is the input" in proc.stderr and "inputs are never overwritten" in proc.stderr
    assert {p: p.read_bytes() for p in before} == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.deid.mp4", "a.mp4"]

