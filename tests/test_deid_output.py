"""Where the output goes: never over the input (issue 18 item 10), no overwrite without being
asked (issue 20 item 1), MP4 only, default names, and streaming to a writable file object that
cannot seek (store -> deid -> store, no plaintext file on disk)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from test_deid_pipeline import WhiteSquareDetector, audio_packets, decoded, detail, frame_times, make_video, square_at

from surgbox.deid import deidentify
from surgbox.errors import ConfigError


@pytest.fixture
def run(tmp_path, default_plugins):
    def _run(src, dst, **kw):
        kw.setdefault("detector", WhiteSquareDetector())
        kw.setdefault("region", "full")
        return deidentify(src, dst, plugins=default_plugins, **kw)

    return _run


def surgbox_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "surgbox", "deid", *args, "--quiet"], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.mark.parametrize("how", ["same path", "relative path", "hard link", "symbolic link", "file object"])
def test_the_input_is_never_the_output(tmp_path, run, how, monkeypatch):
    src = make_video(tmp_path / "in.mp4", frames=6, audio=False)
    original = src.read_bytes()
    dst: object = src
    if how == "relative path":
        monkeypatch.chdir(tmp_path)
        dst = Path("sub/../in.mp4")
        (tmp_path / "sub").mkdir()
    elif how == "hard link":
        dst = tmp_path / "hard.mp4"
        os.link(src, dst)
    elif how == "symbolic link":
        dst = tmp_path / "sym.mp4"
        dst.symlink_to(src)
    for overwrite in (False, True):
        if how == "file object":
            with open(src, "r+b") as f:
                with pytest.raises(ConfigError, match="is the input file"):
                    run(src, f, overwrite=overwrite)
        else:
            with pytest.raises(ConfigError, match="is the input file"):
                run(src, dst, overwrite=overwrite)
    assert src.read_bytes() == original
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_cli_refuses_src_as_dst_and_keeps_the_original(tmp_path):
    """``surgbox deid SRC SRC`` replaced the original recording with the blurred copy."""
    src = make_video(tmp_path / "in.mp4", frames=6, audio=False)
    original = src.read_bytes()
    for extra in ([], ["--overwrite"]):
        proc = surgbox_cli(str(src), str(src), *extra)
        assert proc.returncode == 1 and "is the input file" in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert src.read_bytes() == original


def test_an_existing_output_is_kept_unless_overwrite(tmp_path, run):
    src = make_video(tmp_path / "in.mp4", frames=6, audio=False)
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"an earlier de-identified copy")
    with pytest.raises(ConfigError, match=r"exists; pass --overwrite \(overwrite=True\)"):
        run(src, dst)
    assert dst.read_bytes() == b"an earlier de-identified copy"
    result = run(src, dst, overwrite=True)
    assert result.frames == 6 and len(frame_times(dst)) == 6
    # CLI: refused without --overwrite, replaced with it
    dst.write_bytes(b"again")
    proc = surgbox_cli(str(src), str(dst))
    assert proc.returncode == 1 and "exists; pass --overwrite" in proc.stderr and dst.read_bytes() == b"again"
    proc = surgbox_cli(str(src), str(dst), "--overwrite", "--region", "full")
    assert proc.returncode == 0, proc.stderr
    assert len(frame_times(dst)) == 6
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_an_output_that_appears_meanwhile_is_not_replaced(tmp_path, run):
    """The commit links the finished file into place, which fails if a file of that name
    appeared during the run (a rename would silently replace it)."""
    src = make_video(tmp_path / "in.mp4", frames=30, audio=False)
    dst = tmp_path / "out.mp4"

    def progress(p):
        if p.frames and not dst.exists():
            dst.write_bytes(b"someone else's file")

    with pytest.raises(ConfigError, match="appeared while de-identifying"):
        run(src, dst, progress=progress)
    assert dst.read_bytes() == b"someone else's file"
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


@pytest.mark.parametrize("name,ok", [("o.mp4", True), ("o.MP4", True), ("o.m4v", True), ("o.mkv", False),
                                     ("o.avi", False), ("o", False), ("o.mp4.tmp", False)])
def test_output_must_be_an_mp4_family_name(tmp_path, run, name, ok):
    src = make_video(tmp_path / "in.mp4", frames=4, audio=False)
    if ok:
        run(src, tmp_path / name)
        assert av.open(str(tmp_path / name)).format.name.startswith("mov,mp4")
    else:
        with pytest.raises(ConfigError, match="de-identification writes MP4"):
            run(src, tmp_path / name)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_output_that_is_a_directory_is_refused(tmp_path, run):
    src = make_video(tmp_path / "in.mp4", frames=4, audio=False)
    (tmp_path / "d.mp4").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        run(src, tmp_path / "d.mp4")


class NonSeekableSink(io.RawIOBase):
    """A write-only stream that cannot seek or tell (like an encrypting store writer or a pipe)."""

    def __init__(self):
        self.chunks: list[bytes] = []
        self.flushed = False

    def writable(self):
        return True

    def seekable(self):
        return False

    def write(self, b):
        self.chunks.append(bytes(b))
        return len(b)

    def seek(self, *a):
        raise io.UnsupportedOperation("seek")

    def tell(self):
        raise io.UnsupportedOperation("tell")

    def flush(self):
        self.flushed = True

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def test_streams_to_a_non_seekable_file_object(tmp_path, run):
    src = make_video(tmp_path / "in.mp4", frames=45, audio=True)
    sink = NonSeekableSink()
    with open(src, "rb") as f:
        result = run(f, sink, audit=tmp_path / "a.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "in.mp4"]  # nothing else touched the disk
    assert result.frames == 45 and result.dst.startswith("<NonSeekableSink")
    data = sink.data
    assert data[4:8] == b"ftyp" and b"moof" in data  # fragmented MP4: written front to back
    with av.open(io.BytesIO(data)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        out = [fr.to_ndarray(format="gray") for fr in c.decode(video=0)]
    fin = decoded(src)
    assert len(out) == 45
    for i in (0, 20, 44):
        x1, y1, x2, y2 = square_at(i, 320, 240)
        around = (slice(y1 - 4, y2 + 4), slice(x1 - 4, x2 + 4))
        assert detail(out[i][around]) < 0.35 * detail(fin[i][around]), i
    (tmp_path / "streamed.mp4").write_bytes(data)
    assert audio_packets(tmp_path / "streamed.mp4") == audio_packets(src)  # audio copied, same packets
    # A fragmented MP4 written front to back has no edit list: with copied AAC (whose priming
    # starts before 0) frame times may move by up to the priming, 1024 samples (docs/deid.md)
    tin, tout = frame_times(src), frame_times(tmp_path / "streamed.mp4")
    assert len(tout) == 45 and max(abs(a - b) for a, b in zip(tin, tout)) <= 1024 / 44100 + 1e-3


def test_store_to_deid_to_store_with_no_plaintext_on_disk(tmp_path, default_plugins):
    """What ``surgbox events deid`` does: read a recording from the encrypted store, write the
    de-identified copy into it, with no plaintext file anywhere on disk."""
    from surgbox.crypto import KeyRing, MasterKey
    from surgbox_ext.store import LocalStore

    src = make_video(tmp_path / "in.mp4", frames=30)
    root = tmp_path / "store"
    root.mkdir()
    with LocalStore(root, keyring=KeyRing.of(MasterKey.generate()), init=True) as store:
        with store.writer("ev-1/rec.mp4") as w:
            w.write(src.read_bytes())
        src.unlink()
        with store.reader("ev-1/rec.mp4") as r, store.writer("ev-1/rec.deid.mp4") as w:
            result = deidentify(r, w, region="full", detector=WhiteSquareDetector(), plugins=default_plugins)
        assert result.frames == 30
        with store.reader("ev-1/rec.deid.mp4") as r:
            data = r.read()
    with av.open(io.BytesIO(data)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 30
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and b"ftyp" in p.read_bytes()[:64]]
    assert leaks == []


def test_default_output_name_and_folder(tmp_path):
    src = make_video(tmp_path / "case 1.mkv", frames=4, audio=False, codec="ffv1")
    proc = surgbox_cli(str(src), "--region", "full")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "case 1.deid.mp4").exists() and "case 1.deid.mp4: 4 frames" in proc.stdout
    proc = surgbox_cli(str(src), "--region", "full")  # a second run does not replace the first
    assert proc.returncode == 1 and "exists; pass --overwrite" in proc.stderr
    (tmp_path / "out").mkdir()
    proc = surgbox_cli(str(src), str(tmp_path / "out"), "--region", "full")  # SRC FOLDER
    assert proc.returncode == 0 and (tmp_path / "out" / "case 1.deid.mp4").exists(), proc.stderr


def _partial(folder: Path, name: str, age: float) -> Path:
    p = folder / name
    p.write_bytes(b"half a video")
    t = __import__("time").time() - age
    os.utime(p, (t, t))
    return p


def test_partial_files_of_a_killed_run_are_removed_by_the_next(tmp_path, run):
    """A partial output a ``kill -9`` left (unlocked, untouched) goes at the next run to the
    same destination; one another run holds locked, a fresh one, or another name's, stays."""
    import fcntl

    src = make_video(tmp_path / "in.mp4", frames=4, audio=False)
    stale = _partial(tmp_path, ".out.mp4.deadbeef.partial.mp4", age=60)
    fresh = _partial(tmp_path, ".out.mp4.0badf00d.partial.mp4", age=0)
    other = _partial(tmp_path, ".other.mp4.deadbeef.partial.mp4", age=60)
    busy = _partial(tmp_path, ".out.mp4.12345678.partial.mp4", age=60)
    with open(busy, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running de-identification holds its own
        result = run(src, tmp_path / "out.mp4")
    assert not stale.exists() and fresh.exists() and other.exists() and busy.exists()
    assert result.report["warnings"] == [f"removed '{stale.name}', a partial output left by an interrupted run"]


def test_kill_9_leaves_a_partial_that_the_next_run_removes(tmp_path):
    import signal
    import threading
    import time

    src = tmp_path / "long.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "20",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)], check=True)
    proc = subprocess.Popen([sys.executable, "-m", "surgbox", "deid", str(src), str(tmp_path / "out.mp4")],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    started = threading.Event()
    threading.Thread(target=lambda: [started.set() for line in proc.stderr if line.startswith("frames ")],
                     daemon=True).start()
    assert started.wait(240)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    (left,) = [p for p in tmp_path.iterdir() if "partial" in p.name]
    t = time.time() - 60
    os.utime(left, (t, t))  # a minute later
    short = make_video(tmp_path / "short.mp4", frames=4, audio=False)
    proc = surgbox_cli(str(short), str(tmp_path / "out.mp4"), "--region", "full")
    assert proc.returncode == 0, proc.stderr
    assert f"warning: removed '{left.name}', a partial output left by an interrupted run" in proc.stderr
    assert not left.exists() and [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
