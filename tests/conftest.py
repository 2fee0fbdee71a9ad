"""Shared fixtures. Tests use real components (FFmpeg via PyAV, ffprobe, SQLite, ptys, loopback servers)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout; tests that need it skip cleanly when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared is not present beside this checkout (optional test data)")
    return SHARED


@pytest.fixture(scope="session")
def shared_dir_optional() -> Path | None:
    """``../shared`` when it is present, else ``None`` (for tests that use it only as extra input)."""
    return SHARED if (SHARED / "data" / "faces").is_dir() else None


@pytest.fixture
def hermetic_plugins():
    """A plugin manager with no installed entry points: tests add exactly the plugins they need."""
    from surgbox.plugins import Plugins

    return Plugins.build(entry_points=False)


@pytest.fixture
def default_plugins():
    """A fresh manager with surgbox_ext only (no other installed distributions leak in)."""
    import surgbox_ext.plugin
    from surgbox.plugins import Plugins

    return Plugins.build(entry_points=False, plugins=[(surgbox_ext.plugin, "surgbox")])


def ffprobe_json(path: Path | str, *args: str) -> dict:
    """Run the real ffprobe on ``path`` and return its JSON (streams + format unless ``args`` say otherwise)."""
    exe = shutil.which("ffprobe")
    if exe is None:
        pytest.fail("ffprobe is not installed: apt-get install ffmpeg (.ci/run installs it)")
    cmd = [exe, "-v", "error", "-of", "json", *(args or ("-show_streams", "-show_format")), str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture
def surgbox_home(tmp_path, monkeypatch):
    """An initialized SURGBOX_HOME in ``tmp_path/home`` (admin ``admin`` / ``admin-password``), set in
    the environment for CLI subprocesses; Argon2 made cheap in its config so tests stay fast."""
    from surgbox.catalog import install_home

    home = install_home(tmp_path / "home", "admin", "admin-password")
    cfg = home.config_path.read_text()
    home.config_path.write_text(cfg.replace("min_length = 8", "min_length = 8\ntime_cost = 1\nmemory_kib = 8192\nparallelism = 1"))
    monkeypatch.setenv("SURGBOX_HOME", str(home.path))
    monkeypatch.delenv("SURGBOX_USER", raising=False)
    monkeypatch.delenv("SURGBOX_PASSWORD", raising=False)
    return home


def kill_9_when_recorded(proc, seconds: float, timeout: float = 120) -> int:
    """``kill -9`` a ``surgbox demo``/``record`` subprocess (no ``--quiet``, stderr piped, text
    mode) once it has recorded about ``seconds``: when its status line (printed every 5 s without
    a terminal; ``REC HH:MM:SS`` counts the frames written) shows ``seconds - 3`` or more, 3 s
    later. So a slow start-up or a busy machine does not shorten the recording that is killed.
    Returns the last ``REC`` seconds seen before the kill."""
    import re
    import signal
    import threading
    import time

    seen = [-1]

    def read() -> None:
        for line in proc.stderr:
            m = re.search(r"REC (\d+):(\d\d):(\d\d)", line)
            if m:
                seen[0] = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while seen[0] < seconds - 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert seen[0] >= seconds - 3, f"the recording did not reach {seconds - 3} s (last status: {seen[0]} s)"
    time.sleep(3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return seen[0]


def decoded_video_seconds(src, frame: float = 1 / 30) -> float:
    """Seconds of video a decoder gets out of ``src`` (a path or a readable file object): the
    last decoded frame's time plus one ``frame`` duration. A cut-off last packet — what a
    kill -9 leaves — is skipped, as players do."""
    import av

    times: list[float] = []
    with av.open(str(src) if isinstance(src, Path) else src) as c:
        s = c.streams.video[0]
        for packet in c.demux(s):
            try:
                times += [float(f.pts * s.time_base) for f in packet.decode()]
            except av.InvalidDataError:
                continue
    return max(times) + frame if times else 0.0
