"""PyAV plays an encrypted MP4 straight from the seekable decrypting reader (no plaintext on disk)."""

from __future__ import annotations

import io
import os

import av
import numpy as np
import pytest

from surgbox.crypto.streaming import DecryptingReader, DecryptionError, EncryptingWriter

KEY = os.urandom(32)
SEG = 2048  # small segments: the MP4 spans many, so seeks cross segment boundaries


def make_mp4(target, frames: int = 60, **open_options) -> None:
    """A real H.264 MP4 (libx264), 30 fps: noise on top (so the file spans many segments), and a
    bottom half whose gray level identifies the frame."""
    rng = np.random.default_rng(0)
    with av.open(target, "w", format="mp4", **open_options) as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        s.options = {"g": "15"}
        for i in range(frames):
            img = np.full((120, 160, 3), (i * 4) % 250, np.uint8)
            img[:40] = rng.integers(0, 255, (40, 160, 3), dtype=np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def encrypted_mp4(tmp_path_factory):
    plain = io.BytesIO()
    make_mp4(plain)
    path = tmp_path_factory.mktemp("enc") / "rec.mp4.enc"
    with open(path, "wb") as f:
        w = EncryptingWriter.open(f, KEY, b"rec", segment_size=SEG)
        w.write(plain.getvalue())
        w.close()
    return path, plain.getvalue()


def test_pyav_decodes_every_frame_through_the_reader(encrypted_mp4):
    path, plain = encrypted_mp4
    assert plain[4:8] not in path.read_bytes()[:64]  # no 'ftyp' box in clear
    with DecryptingReader.open(path, KEY, b"rec", segment_size=SEG) as r:
        assert r.segments > 10
        with av.open(r) as c:
            v = c.streams.video[0]
            assert (v.codec_context.width, v.codec_context.height) == (160, 120)
            frames = [f.to_ndarray(format="gray")[90, 80] for f in c.decode(video=0)]
    assert len(frames) == 60
    assert [int(x) for x in frames[:3]] == pytest.approx([0, 4, 8], abs=3)


def test_pyav_seeks_in_the_encrypted_file(encrypted_mp4):
    path, _ = encrypted_mp4
    with DecryptingReader.open(path, KEY, b"rec", segment_size=SEG) as r, av.open(r) as c:
        v = c.streams.video[0]
        c.seek(int(1.5 / v.time_base), stream=v)  # 1.5 s -> keyframe at or before frame 45
        first = next(c.decode(video=0))
        assert 30 <= first.pts * v.time_base * 30 <= 45


def test_tampered_mp4_never_plays_wrong_frames(encrypted_mp4, tmp_path):
    path, _ = encrypted_mp4
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    bad = tmp_path / "bad.enc"
    bad.write_bytes(bytes(data))
    with pytest.raises(DecryptionError):
        with DecryptingReader.open(bad, KEY, b"rec", segment_size=SEG) as r, av.open(r) as c:
            for _ in c.decode(video=0):
                pass
