"""Synthetic recordings for the deid-batch tests: a drawn face (no real person) that moves,
appears and disappears around segment boundaries, with AAC audio, keyframes every ``gop``."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def face_video(path: Path, frames: int = 60, fps: int = 10, gop: int = 10, size=(320, 180), audio: bool = True,
               visible=((8, 26), (33, 52)), fragmented: bool = False) -> Path:
    """An H.264 MP4 of ``frames`` pictures; the face shows in the frame ranges ``visible``;
    ``fragmented``: a fragment per keyframe, as the recorder writes."""
    import av
    import numpy as np
    from PIL import Image

    from test_report import synthetic_face

    w, h = size
    plain = np.array(Image.new("RGB", size, (70, 90, 110)))
    with av.open(str(path), "w", format="mp4",
                 options={"movflags": "frag_keyframe+empty_moov"} if fragmented else None) as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.gop_size = gop
        s.codec_context.options = {"bf": "0", "sc_threshold": "0", "preset": "ultrafast"}
        a = None
        if audio:
            a = c.add_stream("aac", rate=48000)
            a.layout = "mono"
        samples = 0
        for i in range(frames):
            if any(lo <= i < hi for lo, hi in visible):
                img = np.array(synthetic_face(size, (70 + (i * 4) % (w - 140), h // 2), 50))
            else:
                img = plain
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            for p in s.encode(f):
                c.mux(p)
            if a is not None:
                while samples < (i + 1) * 48000 // fps:
                    n = 1024
                    t = (np.arange(samples, samples + n) / 48000.0).astype(np.float32)
                    af = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t))[None, :], format="fltp",
                                                    layout="mono")
                    af.sample_rate, af.pts, af.time_base = 48000, samples, Fraction(1, 48000)
                    samples += n
                    for p in a.encode(af):
                        c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            for p in a.encode():
                c.mux(p)
    return path


def cut_off(path: Path, keep: float = 0.5) -> int:
    """Cut the file ``path`` (a fragmented MP4) inside its last video packet, as a crash
    (``kill -9``, power loss) leaves a recording: ``keep`` of the packet stays (a fraction, or
    ``int`` bytes: 5 keeps a NAL unit's 4-byte length and 1 byte of it, which cannot decode);
    returns the frames that are still whole."""
    import av

    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    pos, size = packets[-1]
    with open(path, "r+b") as f:
        f.truncate(pos + (keep if isinstance(keep, int) else int(size * keep)))
    return len(packets) - 1
