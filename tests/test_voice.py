"""Voice disguise (issue 15 item 5): pitch and formants shifted by FFmpeg filters through PyAV,
measured on a synthesized voice (median f0 moves by the configured semitones), duration equal
to the sample, A/V sync measured with flash frames and beeps, for ``surgbox deid --voice`` and
the recorder's live ``voice`` option."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from surgbox.deid.voice import VoiceDisguiser, VoiceSettings, disguise_file
from surgbox.errors import ConfigError

RATE = 48000
FPS = 30


def voice(seconds: float, f0: float = 140.0, rate: int = RATE) -> np.ndarray:
    """A synthesized vowel-like voice: harmonics of ``f0`` (with 5 Hz vibrato of 2 %) shaped by two
    formant-like resonances (700 and 1200 Hz), syllables of 250 ms; ``(1, n)`` float32."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))) / rate
    x = np.zeros_like(t)
    for h in range(1, 25):
        fh = h * f0
        amp = 1 / h * (1.5 * np.exp(-((fh - 700) / 250) ** 2) + np.exp(-((fh - 1200) / 300) ** 2) + 0.2)
        x += amp * np.sin(h * phase)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 2 * t) ** 2
    return (0.3 * x / np.abs(x).max() * env).astype(np.float32)[None]


def median_f0(x: np.ndarray, rate: int = RATE, lo: float = 60, hi: float = 400) -> float:
    """Median fundamental frequency of 40 ms windows (autocorrelation peak, parabolic refinement)."""
    w = int(0.04 * rate)
    out = []
    for i in range(0, x.shape[-1] - w, w):
        seg = x[..., i:i + w].mean(axis=0) if x.ndim == 2 else x[i:i + w]
        seg = seg - seg.mean()
        if np.sqrt((seg ** 2).mean()) < 1e-3:
            continue
        ac = np.correlate(seg, seg, "full")[w - 1:]
        a, b = int(rate / hi), int(rate / lo)
        k = a + int(np.argmax(ac[a:b]))
        y0, y1, y2 = ac[k - 1], ac[k], ac[k + 1]
        k = k + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
        out.append(rate / k)
    return float(np.median(out))


@pytest.mark.parametrize("semitones", [-4.0, 3.0])
def test_disguise_shifts_f0_by_the_semitones_and_keeps_the_length(semitones):
    x = voice(3.0)
    v = VoiceDisguiser(RATE, 1, semitones)
    parts = [v.process(x[:, i:i + 1000]) for i in range(0, x.shape[1], 1000)] + [v.flush()]
    y = np.concatenate(parts, 1)
    assert y.shape == x.shape
    f_in, f_out = median_f0(x), median_f0(y)
    shift = 12 * math.log2(f_out / f_in)
    assert abs(f_in - 140) < 3 and abs(shift - semitones) < 0.3, (f_in, f_out, shift)
    assert np.sqrt((y[:, 2000:] ** 2).mean()) > 0.5 * np.sqrt((x ** 2).mean())  # not silenced


def test_mute_is_silence_of_the_same_length():
    x = voice(1.0)
    v = VoiceDisguiser(RATE, 1, mode="mute")
    y = np.concatenate([v.process(x), v.flush()], 1)
    assert y.shape == x.shape and not y.any()


@pytest.mark.parametrize("bad", [0, 0.5, 13, float("nan"), "x", True])
def test_bad_semitones_are_refused(bad):
    with pytest.raises(ConfigError, match="semitones"):
        VoiceSettings("disguise", bad)


def beeps_video(path, seconds=3.0, flashes=(1.0, 2.0), rate=RATE):
    """160x120 black video with white flash frames at ``flashes`` and 80 ms 1 kHz beeps at the same
    times over a quiet synthesized voice, H.264 + AAC."""
    import av

    n = int(seconds * rate)
    t = np.arange(n) / rate
    audio = 0.1 * voice(seconds)[0]
    for f in flashes:
        m = (t >= f) & (t < f + 0.08)
        audio[m] += 0.6 * np.sin(2 * np.pi * 1000 * t[m])
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = 160, 120, "yuv420p"
        ast = out.add_stream("aac", rate=rate, layout="mono")
        flash_frames = {round(f * FPS) for f in flashes}
        for k in range(int(seconds * FPS)):
            img = np.full((120, 160, 3), 255 if k in flash_frames else 0, np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for i in range(0, n, 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[None, i:i + 1024], np.float32), format="fltp", layout="mono")
            fr.sample_rate, fr.pts, fr.time_base = rate, i, Fraction(1, rate)
            out.mux(ast.encode(fr))
        out.mux(ast.encode(None))
        out.mux(vs.encode(None))
    return audio


def decode_av(path):
    """(audio ``(n,)`` at the stream's rate with its start time, [(t, mean luma)] of the video)."""
    import av

    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        frames = [f for f in c.decode(a)]
        start = float(frames[0].pts * frames[0].time_base)
        audio = np.concatenate([f.to_ndarray().reshape(-1) if f.format.is_planar else f.to_ndarray()[0] for f in frames])
    with av.open(str(path)) as c:
        video = [(float(f.pts * f.time_base), float(f.to_ndarray(format="gray").mean())) for f in c.decode(video=0)]
    return audio, start, video


def av_offsets(path):
    """Per flash: beep onset minus flash frame time, seconds (positive: the sound comes later)."""
    audio, start, video = decode_av(path)
    env = np.convolve(np.abs(audio), np.ones(96) / 96, "same")
    flashes = [t for t, y in video if y > 128]
    out = []
    for f in flashes:
        i0 = int((f - 0.3 - start) * RATE)
        seg = env[i0:i0 + int(0.6 * RATE)]
        onset = i0 + int(np.argmax(seg > 0.25))
        out.append(start + onset / RATE - f)
    return out, len(audio)


def test_disguise_file_keeps_duration_and_av_sync(tmp_path):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    beeps_video(src)
    info = disguise_file(src, dst, VoiceSettings("disguise", -4))
    assert info["samples_in"] == info["samples_out"]
    off_in, n_in = av_offsets(src)
    off_out, n_out = av_offsets(dst)
    assert len(off_in) == len(off_out) == 2
    assert abs(n_out - n_in) <= 1024  # within one AAC frame
    assert all(abs(a - b) <= 1 / FPS for a, b in zip(off_in, off_out)), (off_in, off_out)
    audio_in, _, _ = decode_av(src)
    audio_out, _, _ = decode_av(dst)
    shift = 12 * math.log2(median_f0(audio_out[int(0.3 * RATE):int(0.9 * RATE)]) / median_f0(audio_in[int(0.3 * RATE):int(0.9 * RATE)]))
    assert abs(shift + 4) < 0.5, shift


def test_cli_deid_voice_mute_and_bad_semitones(tmp_path):
    src = tmp_path / "in.mp4"
    beeps_video(src, seconds=1.5, flashes=(1.0,))
    run = [sys.executable, "-m", "surgbox", "deid", str(src), str(tmp_path / "out.mp4"), "--region", "full",
           "--detector", "centerface", "--quiet", "--report", str(tmp_path / "rep.json")]
    bad = subprocess.run(run + ["--voice", "disguise", "--semitones", "40"], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("surgbox: error: voice semitones")
    assert not (tmp_path / "out.mp4").exists()
    ok = subprocess.run(run + ["--voice", "mute"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    audio, _, video = decode_av(tmp_path / "out.mp4")
    audio_in, _, _ = decode_av(src)
    assert np.abs(audio).max() < 1e-3 and abs(len(audio) - len(audio_in)) <= 1024 and len(video) == 45
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["voice"]["voice"] == {"mode": "mute"} and rep["voice"]["samples_in"] == rep["voice"]["samples_out"]
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("mode", ["disguise", "keep"])
def test_live_voice_disguise_in_a_recording(tmp_path, default_plugins, mode):
    """``voice = "disguise"`` on the recorded tone source: its 1 kHz beeps come out 4 semitones
    lower (794 Hz), at the same times as without the disguise (within one video frame of the
    whole seconds of the clock they were captured at), and the audio lasts as long as the video."""
    from surgbox.clock import Clock
    from surgbox.config import RecordConfig

    cfg = RecordConfig.from_mapping({
        "fps": FPS,
        "sources": {"main": {"plugin": "testsrc", "width": 320, "height": 180},
                    "mic": {"plugin": "tone", "beep_ms": 100, "beep_period_s": 1.0, "voice": mode}},
        "layout": {"preset": "single"},
        "encoder": {"plugin": "libx264", "preset": "ultrafast"},
        "deid": {"semitones": -4},
    })
    clock = Clock()
    out = tmp_path / "rec.mp4"
    rec = cfg.build_recorder(plugins=default_plugins, output=out, duration=3.5, clock=clock, max_behind_s=30.0)
    rec.start()
    rec.wait(60)
    stats = rec.stop()
    side = json.loads((tmp_path / "rec.mp4.json").read_text())
    audio, start, video = decode_av(out)
    assert abs(len(audio) / RATE - len(video) / FPS) <= 1024 / RATE + 1 / FPS
    rec_start = (side["start_ns"] - clock.origin_ns) / 1e9
    env = np.convolve(np.abs(audio), np.ones(96) / 96, "same")
    offsets, freqs = [], []
    beeps = range(math.ceil(rec_start + 0.3), math.floor(rec_start + 3.5 - 0.3) + 1)
    assert len(beeps) >= 2
    for m in beeps:
        t = m - rec_start  # the beep's time on the output time line
        i0 = int((t - 0.2 - start) * RATE)
        seg = env[i0:i0 + int(0.4 * RATE)]
        onset = i0 + int(np.argmax(seg > 0.15))
        offsets.append(start + onset / RATE - t)
        burst = audio[onset + 480:onset + 480 + 2400]
        spec = np.abs(np.fft.rfft(burst * np.hanning(len(burst)), 48000))
        freqs.append(float(np.argmax(spec)))
    assert all(abs(o) <= 1 / FPS for o in offsets), offsets
    want = 1000 * 2 ** (-4 / 12) if mode == "disguise" else 1000
    assert all(abs(f - want) < 8 for f in freqs), (freqs, want)
    mic = next(s for s in side["sources"] if s["name"] == "mic")
    if mode == "disguise":
        assert mic["voice"] == {"live": True, "mode": "disguise", "semitones": -4.0,
                                "method": "asetrate+atempo+aresample (FFmpeg via PyAV)"}
        assert stats["sources"]["mic"]["source"]["voice"]["runs"] == 1
    else:
        assert "voice" not in mic
