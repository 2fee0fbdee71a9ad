"""The packet API of the encoders and the MP4 muxer with real FFmpeg: fragments reported with
their byte and time ranges, each playable after the header; packets teed to several consumers."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import ffprobe_json

from surgbox.errors import EncoderError
from surgbox.mux import Mp4Muxer
from surgbox.packets import FragmentInfo, Packet, PacketConsumer, PacketTee, StreamSpec
from surgbox_ext.encoders import X264Encoder

NS = 1_000_000_000


def picture(k: int, w: int = 160, h: int = 96) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (np.arange(w)[None, :] + 5 * k) % 256
    img[..., 1] = (k * 9) % 256
    return img


def encode_packets(enc: X264Encoder, seconds: float, fps: int = 30, audio: bool = True) -> list[list[Packet]]:
    """Packets per encode call (frames, then audio, then the flush)."""
    out = []
    per = 48000 // fps
    for k in range(int(seconds * fps)):
        t = k * NS // fps
        out.append(enc.encode(picture(k), t))
        if audio:
            n = np.arange(k * per, (k + 1) * per)
            out.append(enc.encode_audio((0.2 * np.sin(2 * np.pi * 440 * n / 48000)).astype(np.float32)[None, :], t))
    out.append(enc.flush())
    return out


def frame_times(src) -> list[float]:
    with av.open(src) as c:
        s = c.streams.video[0]
        return [float(f.pts * s.time_base) for f in c.decode(s)]


def test_packet_api_gives_values_and_stream_specs():
    enc = X264Encoder(preset="ultrafast")
    streams = enc.open_codecs(width=160, height=96, fps=30, audio_rate=48000)
    assert [s.kind for s in streams] == ["video", "audio"] and streams == enc.streams
    v, a = streams
    assert (v.codec, v.width, v.height, v.rate, v.time_base) == ("libx264", 160, 96, Fraction(30), Fraction(1, 90000))
    assert v.extradata[:4] == b"\x00\x00\x00\x01" and len(a.extradata) >= 2  # SPS/PPS, AudioSpecificConfig
    batches = encode_packets(enc, 1.0)
    packets = [p for b in batches for p in b]
    video = [p for p in packets if p.stream == "video"]
    assert len(video) == 30 and video[0].keyframe and video[0].time_ns == 0
    assert [p.pts for p in video] == [k * 3000 for k in range(30)]  # 1/90000 s units
    assert all(isinstance(p.data, bytes) and p.size > 0 for p in packets)
    assert enc.stats()["video_frames"] == 30
    with pytest.raises(EncoderError, match="closed"):
        enc.encode(picture(0), 2 * NS)  # flushed: no more frames
    enc.close()


def test_fragments_are_reported_with_byte_and_time_ranges_and_play_after_the_header(tmp_path):
    """10 s at 30 fps with 1 s GOPs: 10 fragments, contiguous, each a valid MP4 after the header."""
    path = tmp_path / "frag.mp4"
    enc = X264Encoder(preset="ultrafast", gop_seconds=1.0)
    streams = enc.open_codecs(width=160, height=96, fps=30, audio_rate=48000)
    seen: list[FragmentInfo] = []
    mux = Mp4Muxer(path, on_fragment=seen.append)
    mux.open(streams)
    for batch in encode_packets(enc, 10.0):
        mux.mux(batch)
    mux.close()
    enc.close()
    data = path.read_bytes()
    assert len(seen) == 10 == mux.fragments
    assert [f.index for f in seen] == list(range(10))
    assert [(f.start_ns, f.end_ns) for f in seen] == [(i * NS, (i + 1) * NS) for i in range(10)]
    assert seen[0].offset == seen[0].init_size == mux.init_size > 0
    for a, b in zip(seen, seen[1:]):
        assert b.offset == a.offset + a.size  # contiguous byte ranges
    assert data[seen[-1].offset + seen[-1].size:][4:8] == b"mfra"  # only the index trailer after the last one
    for f in seen:
        chunk = data[f.offset:f.offset + f.size]
        assert chunk[4:8] == b"moof"
        alone = tmp_path / f"frag{f.index}.mp4"
        alone.write_bytes(data[: f.init_size] + chunk)
        times = frame_times(str(alone))
        assert len(times) == 30 and f.start_ns / NS - 1e-6 <= min(times) and max(times) < f.end_ns / NS
    assert int(ffprobe_json(path, "-count_frames", "-show_streams")["streams"][0]["nb_read_frames"]) == 300


class Collect:
    """A second consumer (a live preview stand-in): keeps what it was given."""

    def __init__(self):
        self.streams: list[StreamSpec] = []
        self.packets: list[Packet] = []
        self.closed = False

    def open(self, streams):
        self.streams = list(streams)

    def mux(self, packets):
        self.packets += packets

    def close(self):
        self.closed = True


class Broken(Collect):
    def mux(self, packets):
        raise OSError("preview socket closed")


def test_tee_feeds_a_file_a_second_muxer_and_a_consumer_from_one_encoding(tmp_path):
    enc = X264Encoder(preset="ultrafast")
    streams = enc.open_codecs(width=160, height=96, fps=30, audio_rate=48000)
    second = io.BytesIO()
    collect, broken = Collect(), Broken()
    assert isinstance(collect, PacketConsumer)
    tee = PacketTee(Mp4Muxer(tmp_path / "main.mp4"), [Mp4Muxer(second), collect, broken])
    tee.open(streams)
    for batch in encode_packets(enc, 3.0):
        tee.mux(batch)
    tee.close()
    enc.close()
    assert enc.stats()["video_frames"] == 90  # encoded once
    assert list(tee.failed.values()) == ["mux: OSError: preview socket closed"]  # detached, the file went on
    assert collect.closed and collect.streams == list(streams)
    second_path = tmp_path / "second.mp4"
    second_path.write_bytes(second.getvalue())
    main_bytes = (tmp_path / "main.mp4").read_bytes()

    def demuxed(path):
        with av.open(str(path)) as c:
            return [(p.stream.type, p.pts, bytes(p)) for p in c.demux() if p.size]

    a, b = demuxed(tmp_path / "main.mp4"), demuxed(second_path)
    assert len([x for x in a if x[0] == "video"]) == 90 and a == b  # the same packets in both files
    assert main_bytes == second.getvalue()  # and the same bytes
    video = [p for p in collect.packets if p.stream == "video"]  # the consumer got every packet, as encoded
    assert [p.pts for p in video] == [x[1] for x in a if x[0] == "video"] == [k * 3000 for k in range(90)]


def test_muxer_errors_name_the_output(tmp_path):
    with pytest.raises(EncoderError, match=r"cannot create output .*nope.*check the directory exists"):
        Mp4Muxer(tmp_path / "nope" / "x.mp4").open([])
    with pytest.raises(EncoderError, match="give a file path"):
        Mp4Muxer(io.BytesIO(), fragmented=False).open([])
    m = Mp4Muxer(io.BytesIO())
    with pytest.raises(EncoderError, match="not open"):
        m.mux([])
