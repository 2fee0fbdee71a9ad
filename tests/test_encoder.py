"""libx264 / h264_nvenc encoder plugins with the real FFmpeg (PyAV), checked with ffprobe/ffmpeg."""

from __future__ import annotations

import errno
import io
import json
import shutil
import subprocess
import uuid
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import decoded_video_seconds, ffprobe_json

from surgbox.errors import EncoderError, PluginUnavailableError
from surgbox_ext.encoders import NvencEncoder, X264Encoder, nvenc_check

NS = 1_000_000_000


def gradient(k: int, w: int = 320, h: int = 180) -> np.ndarray:
    x = np.arange(w, dtype=np.uint16)[None, :] + k * 7
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x % 256).astype(np.uint8)
    img[..., 1] = (np.arange(h)[:, None] * 2 + k) % 256
    img[..., 2] = 128
    return img


def full_decode_errors(path: Path) -> str:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    return out.stderr.strip()


def encode_clip(target, seconds: float = 2.0, fps: int = 30, w: int = 320, h: int = 180, audio: bool = True, **opts) -> X264Encoder:
    enc = X264Encoder(**opts)
    enc.open_output(target, width=w, height=h, fps=fps, audio_rate=48000 if audio else None, metadata={"surgbox_event_id": "ev-1", "title": "test"})
    per = 48000 // fps
    for k in range(int(seconds * fps)):
        t = k * NS // fps
        enc.write_video(gradient(k, w, h), t)
        if audio:
            n = np.arange(k * per, (k + 1) * per)
            enc.write_audio((0.3 * np.sin(2 * np.pi * 440 * n / 48000)).astype(np.float32)[None, :], t)
    enc.close()
    return enc


def test_h264_aac_fragmented_with_metadata(tmp_path):
    out = tmp_path / "a.mp4"
    enc = X264Encoder()
    enc.open_output(out, fps=30, audio_rate=48000, metadata={"surgbox_layout": '{"name": "paper"}', "surgbox_event_id": "ev-42"})
    for k in range(45):  # default size is 1920x1080
        enc.write_video(av.VideoFrame.from_ndarray(gradient(k, 640, 360), format="rgb24"), k * NS // 30)
        enc.write_audio(np.zeros((1, 1600), np.float32), k * NS // 30)
    enc.close()
    enc.close()  # idempotent
    info = ffprobe_json(out)
    v, a = info["streams"]
    assert (v["codec_name"], v["width"], v["height"], v["pix_fmt"], v["profile"]) == ("h264", 1920, 1080, "yuv420p", "High")
    assert (a["codec_name"], int(a["sample_rate"]), a["channels"]) == ("aac", 48000, 1)
    tags = info["format"]["tags"]
    assert tags["surgbox_event_id"] == "ev-42" and json.loads(tags["surgbox_layout"]) == {"name": "paper"}
    assert float(info["format"]["duration"]) == pytest.approx(1.5, abs=0.1)
    assert full_decode_errors(out) == ""
    # fragmented: an empty moov first, then one moof per GOP (1 s at 30 fps)
    data = out.read_bytes()
    assert data.count(b"moof") >= 2 and data.index(b"moov") < data.index(b"moof")
    assert enc.stats()["video_frames"] == 45 and enc.stats()["size_bytes"] == len(data)


def test_time_base_round_trip(tmp_path):
    tb = Fraction(1, 12800)
    pts_in = [0, 400, 850, 1300, 1700, 2200, 2560, 3000, 3841, 5000]  # starts at 0: MP4 tracks play from 0
    out = tmp_path / "tb.mp4"
    enc = X264Encoder()
    enc.open_output(out, width=320, height=180, fps=30, time_base=tb)
    assert enc.time_base == tb
    for i, p in enumerate(pts_in):
        enc.write_video(gradient(i), int(p * tb * NS))  # ns as an input stream would give them
    enc.close()
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        got = sorted(f.pts * s.time_base for f in c.decode(s))
    assert got == [p * tb for p in pts_in]


def test_timestamps_must_increase(tmp_path):
    enc = X264Encoder()
    enc.open_output(tmp_path / "x.mp4", width=320, height=180, fps=30)
    enc.write_video(gradient(0), 0)
    with pytest.raises(EncoderError, match="not after the previous pts"):
        enc.write_video(gradient(1), 0)
    enc.close()


def test_audio_stream_copy(tmp_path):
    src = tmp_path / "src.mp4"
    encode_clip(src, seconds=2.0)
    dst = tmp_path / "dst.mp4"
    with av.open(str(src)) as inp:
        a_in = inp.streams.audio[0]
        v_in = inp.streams.video[0]
        enc = X264Encoder()
        enc.open_output(dst, width=320, height=180, fps=30, time_base=v_in.time_base, audio_template=a_in)
        copied = []
        for packet in inp.demux(a_in, v_in):
            if packet.stream is a_in:
                if packet.dts is None:
                    continue
                copied.append((packet.pts, bytes(packet)))
                enc.copy_audio(packet)
            else:
                for f in packet.decode():
                    enc.write_video(f, int(f.pts * f.time_base * NS))
        enc.close()
    with av.open(str(dst)) as out:
        a_out = out.streams.audio[0]
        assert a_out.codec_context.name == "aac"
        got = [(p.pts, bytes(p)) for p in out.demux(a_out) if p.dts is not None]
    assert got == copied  # bit-exact, same timestamps
    with pytest.raises(EncoderError, match="audio_template"):
        e = X264Encoder()
        e.open_output(tmp_path / "y.mp4", width=320, height=180, fps=30, audio_rate=48000)
        try:
            e.copy_audio(None)
        finally:
            e.close()


def test_audio_gaps_filled_and_overlaps_trimmed(tmp_path):
    out = tmp_path / "gap.mp4"
    enc = X264Encoder()
    enc.open_output(out, width=320, height=180, fps=30, audio_rate=48000)
    ones = np.full((1, 4800), 0.5, np.float32)  # 100 ms chunks
    enc.write_audio(ones, 0)
    enc.write_audio(ones, 200_000_000)  # 100 ms gap -> silence
    enc.write_audio(ones, 250_000_000)  # 50 ms overlap -> trimmed
    for k in range(12):
        enc.write_video(gradient(k), k * NS // 30)
    enc.close()
    st = enc.stats()
    assert st["audio_gap_samples"] == 4800 and st["audio_trimmed_samples"] == 2400
    assert st["audio_samples"] == 4800 * 3 - 2400 + 4800 - 1024  # the first 1024 play as AAC priming
    with av.open(str(out)) as c:
        frames = list(c.decode(audio=0))
        assert frames[0].pts == 0
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])[:16800]
    rms = [float(np.sqrt(np.mean(pcm[i : i + 2400] ** 2))) for i in range(0, 16800, 2400)]
    # 0-100 ms tone, 100-200 ms silence, 200-350 ms tone
    assert rms[1] > 0.3 and rms[2] < 0.05 and rms[3] < 0.05 and rms[5] > 0.3 and rms[6] > 0.3


class NonSeekable(io.RawIOBase):
    def __init__(self):
        self.buf = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.buf += b
        return len(b)


def test_writes_to_non_seekable_file_object(tmp_path):
    sink = NonSeekable()
    enc = encode_clip(sink, seconds=2.0)
    path = tmp_path / "pipe.mp4"
    path.write_bytes(bytes(sink.buf))
    assert enc.size_bytes == len(sink.buf) > 0
    info = ffprobe_json(path)
    assert [s["codec_name"] for s in info["streams"]] == ["h264", "aac"]
    assert full_decode_errors(path) == ""


def test_truncation_leaves_completed_fragments_playable(tmp_path):
    """Power loss at any byte: every fragment completed before the cut still plays."""
    full = tmp_path / "full.mp4"
    encode_clip(full, seconds=5.0)
    data = full.read_bytes()
    # byte offsets where fragments (moof boxes) start; the box size is the 4 bytes before the type
    moofs = [i - 4 for i in range(len(data)) if data[i : i + 4] == b"moof"]
    assert len(moofs) >= 5
    for cut_frag in (2, 3, 4):
        cut = moofs[cut_frag] + (moofs[cut_frag + 1] - moofs[cut_frag]) // 2 if cut_frag + 1 < len(moofs) else len(data) - 100
        part = tmp_path / f"cut{cut_frag}.mp4"
        part.write_bytes(data[:cut])
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", str(part)], capture_output=True, text=True)
        assert probe.returncode == 0
        # fragments 0..cut_frag-1 (1 s each) are complete
        assert decoded_video_seconds(part) >= cut_frag - 0.05


def noisy(k: int) -> np.ndarray:
    return np.random.default_rng(k).integers(0, 256, (360, 640, 3), dtype=np.uint8)


class FullDisk(io.RawIOBase):
    """A file object on a device that fills up after ``limit`` bytes (the hardware edge)."""

    def __init__(self, path: Path, limit: int):
        self.f = open(path, "wb")
        self.limit = limit
        self.n = 0

    def writable(self):
        return True

    def write(self, b):
        if self.n + len(b) > self.limit:
            room = self.limit - self.n
            if room > 0:
                self.f.write(bytes(b[:room]))
                self.n += room
            raise OSError(errno.ENOSPC, "No space left on device")
        self.f.write(b)
        self.n += len(b)
        return len(b)

    def close(self):
        self.f.close()
        super().close()


def fill_until_error(target, frames: int = 300) -> tuple[X264Encoder, EncoderError, int]:
    enc = X264Encoder(gop_seconds=0.5)
    enc.open_output(target, width=640, height=360, fps=30, audio_rate=48000)
    for k in range(frames):
        try:
            enc.write_video(noisy(k), k * NS // 30)
            enc.write_audio(np.zeros((1, 1600), np.float32), k * NS // 30)
        except EncoderError as exc:
            enc.close()  # safe after the error
            return enc, exc, k
    enc.close()
    pytest.fail("the output never filled up")


def test_full_disk_file_object_stops_cleanly(tmp_path):
    path = tmp_path / "full.mp4"
    sink = FullDisk(path, limit=3_000_000)
    enc, exc, k = fill_until_error(sink)
    sink.close()
    assert "disk is full" in str(exc) and "everything written before is playable" in str(exc)
    assert enc.failed is exc
    with pytest.raises(EncoderError, match="disk is full"):
        enc.write_video(noisy(0), 10 * NS)
    assert path.stat().st_size <= 3_000_000
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", str(path)], capture_output=True, text=True)
    assert probe.returncode == 0  # only the fragment cut by the full disk is damaged
    assert decoded_video_seconds(path) >= 0.5


def test_full_disk_tmpfs_stops_cleanly(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not shutil.which("mount") or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a 2 MiB tmpfs here (needs root); the file-object test covers ENOSPC")
    try:
        out = mnt / f"{uuid.uuid4().hex}.mp4"
        enc, exc, k = fill_until_error(str(out))
        assert "disk is full" in str(exc), str(exc)
        assert 0 < k < 300
        keep = tmp_path / "kept.mp4"
        shutil.copy(out, keep)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", str(keep)], capture_output=True, text=True)
    assert probe.returncode == 0
    assert decoded_video_seconds(keep) >= 0.5


def test_bad_option_is_a_clear_error(tmp_path):
    enc = X264Encoder(preset="warp-speed")
    with pytest.raises(EncoderError, match="libx264 encoder: cannot open"):
        enc.open_output(tmp_path / "bad.mp4", width=320, height=180, fps=30)
    with pytest.raises(EncoderError, match="even"):
        X264Encoder().open_output(tmp_path / "odd.mp4", width=321, height=180, fps=30)
    with pytest.raises(EncoderError, match="cannot create output"):
        X264Encoder().open_output(tmp_path / "no" / "such" / "dir.mp4", width=320, height=180, fps=30)
    with pytest.raises(ValueError, match="crf"):
        X264Encoder(crf=99)


def test_bitrate_mode(tmp_path):
    out = tmp_path / "abr.mp4"
    encode_clip(out, seconds=3.0, audio=False, bitrate=200_000, preset="ultrafast")
    kbps = int(ffprobe_json(out)["streams"][0]["bit_rate"]) / 1000
    assert 100 < kbps < 320


def test_nvenc_reports_why_it_is_unavailable(default_plugins):
    reason = nvenc_check()
    entry = default_plugins.entry("encoder", "h264_nvenc")
    assert entry.unavailable_reason() == reason
    if reason is None:  # a machine with NVENC: it must really encode
        out = Path("/tmp") / f"nv-{uuid.uuid4().hex}.mp4"
        enc = NvencEncoder()
        enc.open_output(out, width=640, height=360, fps=30)
        for k in range(30):
            enc.write_video(gradient(k, 640, 360), k * NS // 30)
        enc.close()
        assert ffprobe_json(out)["streams"][0]["codec_name"] == "h264"
        out.unlink()
    else:
        assert "NVENC" in reason or "nvenc" in reason
        with pytest.raises(PluginUnavailableError, match="h264_nvenc"):
            default_plugins.create("encoder", "h264_nvenc")


def test_registered_by_name(default_plugins):
    enc = default_plugins.create("encoder", "libx264", preset="ultrafast", crf=30)
    assert isinstance(enc, X264Encoder) and enc.preset == "ultrafast"


class _FlushFails:
    """Stands in for the video stream at a true FFmpeg edge: encoding works, the final flush
    (``encode(None)``) fails with an FFmpeg error as a broken codec or device would."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def encode(self, frame=None):
        if frame is None:
            raise av.FFmpegError(errno.EIO, "Input/output error")
        return self.real.encode(frame)


def test_ffmpeg_error_in_close_is_an_encoder_error_naming_the_output(tmp_path):
    out = tmp_path / "flush.mp4"
    enc = X264Encoder(preset="ultrafast")
    enc.open_output(out, width=320, height=180, fps=30)
    for k in range(10):
        enc.write_video(gradient(k), k * 1_000_000_000 // 30)
    enc._video = _FlushFails(enc._video)
    with pytest.raises(EncoderError, match=r"flush\.mp4.*flushing the video encoder.*Input/output error") as info:
        enc.close()
    assert isinstance(info.value.__cause__, av.FFmpegError)
    assert enc.failed is info.value and "flush.mp4" in enc.stats()["error"]
    enc.close()  # closed: a second close does nothing
    with pytest.raises(EncoderError, match="flushing"):
        enc.write_video(gradient(0), 10**9)


def _aac_input(tmp_path):
    """A normal (non-fragmented) MP4 from the ffmpeg CLI: 30 fps video + AAC whose first packet
    starts before 0 (encoder priming, shifted back by an edit list)."""
    import subprocess

    src = tmp_path / "in.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=30:duration=2", "-f", "lavfi",
         "-i", "sine=frequency=1000:sample_rate=48000:duration=2", "-c:v", "libx264", "-preset", "ultrafast",
         "-bf", "0", "-c:a", "aac", "-shortest", str(src)],
        check=True,
    )
    return src


def test_plain_mp4_keeps_video_times_exact_with_copied_audio_starting_before_zero(tmp_path):
    from surgbox_ext.encoders import X264Encoder

    src = _aac_input(tmp_path)
    out = tmp_path / "out.mp4"
    with av.open(str(src)) as inp:
        vin, ain = inp.streams.video[0], inp.streams.audio[0]
        in_time_base = vin.time_base
        enc = X264Encoder(preset="ultrafast", fragmented=False)
        enc.open_output(str(out), width=128, height=96, fps=30, time_base=vin.time_base, audio_template=ain)
        in_video, in_audio = [], []
        for packet in inp.demux(vin, ain):
            if packet.stream is ain:
                if packet.size:
                    in_audio.append((packet.pts, bytes(packet)))
                    enc.copy_audio(packet)
                continue
            for frame in packet.decode():
                in_video.append(frame.pts)
                enc.write_video(frame, round(frame.pts * vin.time_base * 1_000_000_000))
        enc.close()
    assert in_audio[0][0] < 0  # the case that shifts fragmented MP4: audio begins before 0
    with av.open(str(out)) as res:
        vout = res.streams.video[0]
        out_video = [f.pts for f in res.decode(vout)]
        assert vout.time_base == in_time_base
    with av.open(str(out)) as res:
        out_audio = [(p.pts, bytes(p)) for p in res.demux(res.streams.audio[0]) if p.size]
    assert out_video == in_video  # every frame at its input time, to the tick
    assert out_audio == in_audio  # audio packets identical, timestamps included


def test_rotation_is_stored_in_the_header(tmp_path):
    from surgbox_ext.encoders import X264Encoder

    for fragmented in (True, False):
        out = tmp_path / f"rot-{fragmented}.mp4"
        enc = X264Encoder(preset="ultrafast", fragmented=fragmented)
        enc.open_output(str(out), width=64, height=48, fps=30, rotation=90)
        for i in range(5):
            enc.write_video(np.zeros((48, 64, 3), np.uint8), i * 33_333_333)
        enc.close()
        side = ffprobe_json(out, "-show_streams")["streams"][0].get("side_data_list", [])
        assert [d.get("rotation") for d in side if "rotation" in d] == [90], (fragmented, side)


def test_plain_mp4_refuses_a_file_object(tmp_path):
    import io

    from surgbox_ext.encoders import X264Encoder

    with pytest.raises(EncoderError, match="give a file path"):
        X264Encoder(fragmented=False).open_output(io.BytesIO(), width=64, height=48, fps=30)


@pytest.mark.parametrize("sliced", [False, True])
def test_frame_or_slice_threads_both_encode_every_frame(tmp_path, sliced):
    """Frame threads (default) overlap a frame's encoding with the next calls; slice threads encode
    it inside the call. Either way every frame reaches the file, in order."""
    out = tmp_path / "t.mp4"
    enc = encode_clip(out, seconds=1.0, audio=False, threads=2, sliced_threads=sliced)
    assert enc.stats()["video_frames"] == 30
    info = ffprobe_json(out, "-count_frames", "-show_streams")
    assert int(info["streams"][0]["nb_read_frames"]) == 30 and full_decode_errors(out) == ""
    enc2 = X264Encoder(threads=2, sliced_threads=sliced)
    enc2.open_codecs(width=320, height=180, fps=30)
    assert str(enc2._video.thread_type).endswith("SLICE" if sliced else "FRAME")
    enc2.close()


@pytest.mark.parametrize("option", ["sliced_threads", "fragmented"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_boolean_options_must_be_booleans(option, value):
    """A string such as "no" must not silently read as true."""
    with pytest.raises(ValueError, match=f"{option} must be true or false"):
        X264Encoder(**{option: value})
