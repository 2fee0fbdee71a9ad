"""url source against real loopback servers: an ffmpeg process streaming MPEG-TS over UDP
(stopped and restarted to show reconnection), and an HTTP server for the open errors."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time

import pytest

from surgbox.clock import Clock
from surgbox.errors import SourceError
from surgbox_ext.sources.url import UrlSource, redact

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg CLI is not installed (apt-get install ffmpeg)")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_udp(port: int) -> subprocess.Popen:
    """A live camera stand-in: ffmpeg sends 160x120 25 fps MPEG-2 in MPEG-TS, paced with -re."""
    return subprocess.Popen(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25",
         "-c:v", "mpeg2video", "-q:v", "5", "-g", "5", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"],
        stdin=subprocess.DEVNULL,
    )


def wait_for(predicate, timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


@needs_ffmpeg
def test_url_udp_stream_reconnects_after_the_sender_stops_and_restarts():
    port = free_port()
    sender = stream_udp(port)
    clock = Clock()
    src = UrlSource("ipcam", url=f"udp://127.0.0.1:{port}", open_timeout_s=5, read_timeout_s=0.6,
                    backoff_initial_s=0.1, backoff_max_s=0.4)
    frames = []

    def collect() -> int:
        while (f := src.get()) is not None:
            frames.append(f)
        return len(frames)

    try:
        src.start(clock)
        # deadlines are generous (a loaded machine starts ffmpeg slowly); the checks are events
        assert wait_for(lambda: collect() >= 12, 30), "no frames from the live UDP stream"
        first = frames[0]
        assert (first.width, first.height) == (160, 120) and src.media == "video"
        sender.terminate()
        sender.wait(5)
        assert wait_for(lambda: src.stats()["failed_attempts"] >= 1, 30), src.stats()  # the loss was noticed
        collect()
        noticed = clock.now_ns()
        assert wait_for(lambda: src.stats()["failed_attempts"] >= 2, 30), src.stats()  # backing off, retrying
        collect()
        # Only the demuxer's last buffered packets may still come out, before the read times
        # out: nothing is delivered once the source has noticed the sender is gone.
        assert not [f for f in frames if f.capture_ns > noticed]
        assert src.running and src.error is None
        sender = stream_udp(port)
        restarted = clock.now_ns()
        assert wait_for(lambda: collect() and frames[-1].capture_ns > restarted and len([f for f in frames if f.capture_ns > restarted]) >= 10, 30), src.stats()
        stats = src.stats()
        assert stats["reconnects"] >= 1 and stats["failed_attempts"] == 0 and stats["last_error"]
        caps = [f.capture_ns for f in frames]
        seqs = [f.seq for f in frames]
        assert caps == sorted(caps) and seqs == sorted(set(seqs))
        assert len(frames) + stats["dropped"] + stats["queued"] == stats["captured"]  # drop-oldest, all counted
    finally:
        src.stop()
        sender.kill()
        sender.wait()
    assert not src.running


@needs_ffmpeg
def test_url_gives_up_after_max_retries_and_reports_the_error():
    port = free_port()
    sender = stream_udp(port)
    src = UrlSource("ipcam", url=f"udp://127.0.0.1:{port}", open_timeout_s=1.5, read_timeout_s=0.4,
                    backoff_initial_s=0.05, max_retries=2)
    try:
        src.start(Clock())
        assert wait_for(lambda: src.get() is not None, 30)
        sender.terminate()
        sender.wait(5)
        assert wait_for(lambda: not src.running, 60), src.stats()
    finally:
        src.stop()
        sender.kill()
        sender.wait()
    assert isinstance(src.error, SourceError)
    assert "gave up after 2 reconnect attempts" in str(src.error) and "'ipcam'" in str(src.error)


def test_url_open_failure_at_start_names_source_url_and_fix():
    port = free_port(socket.SOCK_STREAM)  # nothing listens here
    src = UrlSource("room", url=f"http://admin:secret@127.0.0.1:{port}/live.ts", open_timeout_s=2)
    with pytest.raises(SourceError) as err:
        src.start(Clock())
    msg = str(err.value)
    assert "source 'room'" in msg and f"127.0.0.1:{port}/live.ts" in msg and "reachable" in msg
    assert "secret" not in msg  # credentials are redacted


def test_url_open_times_out_on_a_server_that_never_answers():
    """An HTTP server that accepts but never replies: open gives up after open_timeout_s."""
    hang = threading.Event()

    class Silent(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hang.wait(10)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Silent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = UrlSource("room", url=f"http://127.0.0.1:{server.server_port}/cam.ts", open_timeout_s=1.0)
        t = time.monotonic()
        with pytest.raises(SourceError, match="could not open"):
            src.start(Clock())
        # it waited for the timeout (not an instant refusal) and then gave up (it did not hang:
        # the server never answers); the upper bound is a ratio to the timeout, for a busy machine
        elapsed = time.monotonic() - t
        assert 0.8 * src.open_timeout_s <= elapsed < 10 * src.open_timeout_s
    finally:
        hang.set()
        server.shutdown()
        server.server_close()


def test_url_validates_and_redacts():
    with pytest.raises(ValueError, match="not a URL"):
        UrlSource("x", url="camera.local")
    assert redact("rtsp://user:pw@cam/stream") == "rtsp://***@cam/stream"
    assert UrlSource("x", url="rtsp://cam/s").demuxer_options() == {"rtsp_transport": "tcp"}
    assert UrlSource("x", url="rtsp://cam/s", options={"rtsp_transport": "udp"}).demuxer_options() == {"rtsp_transport": "udp"}
