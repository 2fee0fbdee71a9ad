"""The recording commands' manners: hostile arguments give one line naming the thing and the fix
(never a traceback), nothing recorded is overwritten unless asked, config paths resolve against
the config file. Runs the real ``surgbox`` CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from surgbox.config import RecordConfig

CONFIG = """
[encoder]
plugin = "libx264"
preset = "ultrafast"
[layout]
preset = "single"
sources = { main = "cam" }
[sources.cam]
plugin = "testsrc"
width = 320
height = 180
"""


def surgbox(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGBOX_")}
    env["SURGBOX_HOME"] = str(cwd / "home")
    return subprocess.run([sys.executable, "-m", "surgbox", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def work(tmp_path):
    (tmp_path / "ok.toml").write_text(CONFIG)
    (tmp_path / "bin.toml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "dir.toml").mkdir()
    (tmp_path / "earlier.mp4").write_bytes(b"an earlier recording")
    return tmp_path


HOSTILE = [
    (("record", "--config", "bin.toml", "--out", "x.mp4"), "bin.toml is not a text file"),
    (("record", "--config", "dir.toml", "--out", "x.mp4"), "dir.toml is a folder"),
    (("record", "--config", "nope.toml", "--out", "x.mp4"), "nope.toml does not exist"),
    (("record", "--config", "ok.toml", "--out", "missing/x.mp4", "--duration", "1"), "output folder missing does not exist"),
    (("record", "--config", "ok.toml", "--out", "x.mp4", "--duration", "nan"), "duration must be a finite number"),
    (("record", "--config", "ok.toml", "--out", "x.mp4", "--duration", "inf"), "duration must be a finite number"),
    (("record", "--config", "ok.toml", "--out", "x.mp4", "--duration", "-3"), "duration must be a finite number"),
    (("record", "--config", "ok.toml", "--out", "earlier.mp4", "--duration", "1"), "earlier.mp4 already exists"),
    (("record", "--config", "ok.toml", "--out", "dir.toml", "--duration", "1"), "dir.toml is a folder"),
    (("demo", "--out", "missing/x.mp4", "--duration", "1"), "output folder missing does not exist"),
    (("demo", "--out", "x.mp4", "--duration", "nan"), "duration must be a finite number"),
    (("demo", "--out", "x.mp4", "--duration", "inf"), "duration must be a finite number"),
    (("demo", "--out", "earlier.mp4", "--duration", "1"), "earlier.mp4 already exists"),
    (("simulate", "bis", "--port", "tcp://127.0.0.1:99999", "--duration", "1"), "port 99999"),
    (("simulate", "bis", "--port", "missing/dir/bis", "--duration", "1"), "folder missing/dir does not exist"),
    (("simulate", "bis", "--port", "http://x", "--duration", "1"), "'http://x' is not a --port"),
    (("bis", "parse", "dir.toml"), "is a folder"),
    (("bis", "parse", "nope.log"), "does not exist"),
]


@pytest.mark.parametrize(("args", "message"), HOSTILE, ids=[" ".join(a) for a, _ in HOSTILE])
def test_hostile_arguments_give_one_line_and_no_traceback(work, args, message):
    r = surgbox(*args, cwd=work)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1 and lines[0].startswith("surgbox: error: ") and message in lines[0], r.stderr
    assert (work / "earlier.mp4").read_bytes() == b"an earlier recording"  # nothing recorded is lost
    assert not (work / "x.mp4").exists()


def test_overwrite_replaces_an_earlier_recording_and_a_tiny_duration_records_one_frame(work):
    r = surgbox("record", "--config", "ok.toml", "--out", "earlier.mp4", "--duration", "0.5", "--quiet", "--overwrite", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "earlier.mp4").read_bytes()[4:8] == b"ftyp"
    assert json.loads((work / "earlier.mp4.json").read_text())["frames"] == 15
    r = surgbox("record", "--config", "ok.toml", "--out", "tiny.mp4", "--duration", "1e-9", "--quiet", cwd=work, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads((work / "tiny.mp4.json").read_text())["frames"] == 1


def test_overwrite_keeps_the_old_recording_when_the_new_one_never_starts(work):
    """``--overwrite`` truncated the old recording (and removed its sidecar and snapshots) before
    the new one started: an encoder option typo left nothing at all. The old files are set aside
    until the new video's first fragment is on disk, and put back when it never starts."""
    (work / "earlier.mp4.json").write_text('{"earlier": true}')
    (work / "earlier.mp4.snapshots").mkdir()
    (work / "earlier.mp4.snapshots" / "snapshot-0001-composite.png").write_bytes(b"png")
    (work / "typo.toml").write_text(CONFIG.replace('preset = "ultrafast"', 'preset = "ultrafastt"'))
    r = surgbox("record", "--config", "typo.toml", "--out", "earlier.mp4", "--duration", "1", "--overwrite", cwd=work)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert (work / "earlier.mp4").read_bytes() == b"an earlier recording"
    assert (work / "earlier.mp4.json").read_text() == '{"earlier": true}'
    assert (work / "earlier.mp4.snapshots" / "snapshot-0001-composite.png").read_bytes() == b"png"
    assert not [p.name for p in work.iterdir() if p.name.endswith(".replaced")]
    r = surgbox("record", "--config", "ok.toml", "--out", "earlier.mp4", "--duration", "0.5", "--quiet", "--overwrite",
                cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "earlier.mp4").read_bytes()[4:8] == b"ftyp" and json.loads((work / "earlier.mp4.json").read_text())["frames"]
    assert not (work / "earlier.mp4.snapshots").exists()
    assert not [p.name for p in work.iterdir() if p.name.endswith(".replaced")]


def test_the_output_is_never_a_file_a_source_reads_even_with_overwrite(work):
    """``record --out clip.mp4 --overwrite`` with a ``file`` source reading clip.mp4 truncated the
    clip, then failed to read it, and removed it: the input was gone. Refused (also through a
    link, also for the sidecar's name) before anything opens."""
    from test_deid_pipeline import make_video

    clip = make_video(work / "clip.mp4", frames=10, audio=False)
    original = clip.read_bytes()
    (work / "link.mp4").symlink_to(clip)
    (work / "file.toml").write_text(CONFIG.replace('plugin = "testsrc"', 'plugin = "file"\npath = "clip.mp4"')
                                    .replace("width = 320\nheight = 180\n", ""))
    for out in ("clip.mp4", "link.mp4"):
        r = surgbox("record", "--config", "file.toml", "--out", out, "--duration", "1", "--overwrite", cwd=work)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert "is the file that source 'cam' (path) reads" in lines[0] and "not even with --overwrite" in lines[0]
    assert clip.read_bytes() == original and not (work / "clip.mp4.json").exists()
    r = surgbox("record", "--config", "file.toml", "--out", "copy.mp4", "--duration", "0.3", "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr


def test_every_path_in_a_config_is_relative_to_the_config_file(tmp_path, default_plugins):
    sub = tmp_path / "cases"
    sub.mkdir()
    (sub / "rec.toml").write_text("""
[output]
path = "out/case.mp4"
[layout]
preset = "single"
sources = { main = "clip" }
[sources.clip]
plugin = "file"
path = "media/clip.mp4"
[sources.bis]
plugin = "bis"
url = "ports/bis"
[sources.remote]
plugin = "bis"
url = "socket://127.0.0.1:4001"
""")
    cfg = RecordConfig.load(sub / "rec.toml")
    assert cfg.output == sub / "out" / "case.mp4"
    clip, bis, remote = cfg.build_sources(default_plugins)
    assert clip.path == str(sub / "media" / "clip.mp4")  # not the current directory's media/clip.mp4
    assert bis.url == str(sub / "ports" / "bis")
    assert remote.url == "socket://127.0.0.1:4001"  # a URL stays as it is
    absolute = RecordConfig.from_mapping({"sources": {"main": {"plugin": "file", "path": str(tmp_path / "a.mp4")}},
                                          "layout": {"preset": "single"}}, base_dir=sub)
    assert absolute.build_sources(default_plugins)[0].path == str(tmp_path / "a.mp4")


def test_a_file_source_in_a_config_records_from_another_directory(tmp_path):
    sub = tmp_path / "cases"
    (sub / "media").mkdir(parents=True)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=3", "-c:v", "libx264",
                    "-preset", "ultrafast", str(sub / "media" / "clip.mp4")], check=True)
    (sub / "rec.toml").write_text(CONFIG.replace('plugin = "testsrc"\nwidth = 320\nheight = 180', 'plugin = "file"\npath = "media/clip.mp4"')
                                  + '\n[output]\npath = "case.mp4"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = surgbox("record", "--config", str(sub / "rec.toml"), "--duration", "1", "--quiet", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    side = json.loads((sub / "case.mp4.json").read_text())
    assert side["status"] == "complete" and side["stats"]["sources"]["cam"]["error"] is None
    assert side["stats"]["sources"]["cam"]["received"] > 0
