"""Issue 4's must-show: a recording with the BIS simulator on a pty. The panel shows the live BIS
value, and the data track's timestamps line up with video time within 100 ms.

Everything is real: the simulator writes ASCII records to a pty from a thread, the ``bis``
source reads the pty with pyserial, the recorder composites and encodes with FFmpeg, and the
checks decode the file.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from surgbox import layouts
from surgbox.cli.demo import SimulatedBIS
from surgbox.plugins import get_plugins
from surgbox.readings import read_data_track
from surgbox.recording import Recorder
from surgbox.types import Reading
from surgbox_ext.bis.simulator import BISSimulator
from surgbox_ext.compositor import panel_cells, render_panel
from surgbox_ext.encoders import X264Encoder

FPS = 30
PANEL = layouts.paper().slot("panel").rect  # (0, 720, 1920, 360)
RATE = 2.0  # records per second: ~20 value changes in 10 s
COURSE = 40.0  # induction within the recording: BIS falls from ~95 to ~45


@pytest.fixture(scope="module")
def bis_recording(tmp_path_factory):
    out = tmp_path_factory.mktemp("bis") / "bis.mp4"
    writes: dict[int, int] = {}
    p = get_plugins()
    with SimulatedBIS(rate=RATE, course_s=COURSE, on_write=lambda i, ns: writes.setdefault(i, ns)) as sim:
        sources = [p.create("source", "testsrc", name=n, width=320, height=180, fps=30) for n in ("endoscope", "room", "vitals")]
        sources.append(p.create("source", "bis", name="bis", url=sim.url))
        rec = Recorder(sources, layouts.paper(), out, encoder=X264Encoder(preset="ultrafast"), duration=10.0,
                       event={"id": "ev-bis", "place": "OR 1"})
        with rec:
            rec.wait()
    track = read_data_track(out.with_name("bis.mp4.data.jsonl"))
    frames = []
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        for f in c.decode(s):
            y = f.to_ndarray()[: f.height]  # raw Y plane
            frames.append((round(float(f.pts * s.time_base) * FPS), y[PANEL.y : PANEL.y2, PANEL.x : PANEL.x2].copy()))
    return {"out": out, "track": track, "writes": writes, "frames": frames, "stats": rec.stats()}


def _record_index(values: dict, sim: BISSimulator, candidates: range) -> int | None:
    """The simulator record whose channel-12 values are exactly ``values``."""
    for i in candidates:
        ch = sim.channel_values(i)["12"]
        if all(values.get(k) == (None if ch[k] is None else float(ch[k])) for k in ("BIS", "SQI", "EMGLOW", "SR", "SEF", "TOTPOW")):
            return i
    return None


def test_data_track_times_line_up_with_the_simulator_writes(bis_recording):
    track, writes = bis_recording["track"], bis_recording["writes"]
    sim = BISSimulator(rate=RATE, course_s=COURSE)
    inside = [pt for pt in track.points if 0 <= pt.t <= 10.0]
    assert len(inside) >= 16, f"only {len(inside)} readings in 10 s at {RATE}/s"
    errors = []
    for pt in inside:
        i = _record_index(dict(pt.values), sim, range(max(writes) + 1))
        assert i is not None, f"reading at t={pt.t} matches no simulator record"
        t_write = (writes[i] - track.start_ns) / 1e9  # the simulator's write time on the recording's time line
        errors.append(pt.t - t_write)
    print(f"\ndata track t - simulator write time (ms): max {max(errors) * 1000:.1f}, min {min(errors) * 1000:.1f} over {len(errors)} readings")
    assert all(0 <= e <= 0.1 for e in errors), errors


def _value_crop(values: dict, t: float) -> np.ndarray:
    """Y plane of the BIS value box as the compositor renders ``values`` (panel coordinates)."""
    readings = {"bis": Reading("bis", 0, "bis", values)}
    img = render_panel(PANEL.width, PANEL.height, readings, {"id": "ev-bis"}, int(t * 1e9))
    box = next(c.box for c in panel_cells(PANEL.width, PANEL.height, readings) if c.name == "BIS")
    y = av.VideoFrame.from_image(img).reformat(format="yuv420p").to_ndarray()[: PANEL.height]
    return y[box.y : box.y2, box.x : box.x2].astype(np.int16)


def _bis_text(values: dict) -> str:
    """The BIS text the panel prints for ``values`` (an integer: 95.0 and 95.1 both print "95")."""
    return next(c.text for c in panel_cells(PANEL.width, PANEL.height, {"bis": Reading("bis", 0, "bis", values)}) if c.name == "BIS")


def test_panel_shows_the_live_bis_value_from_the_frame_of_its_capture(bis_recording):
    track, frames = bis_recording["track"], bis_recording["frames"]
    assert len(frames) == 300
    points = sorted(track.points, key=lambda p: p.t)
    box = next(c.box for c in panel_cells(PANEL.width, PANEL.height, {"bis": Reading("bis", 0, "bis", {"BIS": 1.0})}) if c.name == "BIS")
    texts_checked = changes_checked = 0
    for k, crop in frames[FPS // 2 :: 5] + frames[FPS // 2 + 1 :: 5]:  # 120 frames, every part of the recording
        t = k / FPS
        shown = [p for p in points if p.t <= t]
        assert shown, f"frame {k}: no reading yet"
        expected = shown[-1]
        got = crop[box.y : box.y2, box.x : box.x2].astype(np.int16)
        want = float(np.abs(got - _value_crop(dict(expected.values), t)).mean())
        assert want < 4.0, f"frame {k} (t={t:.3f}): the BIS box differs from {expected.values['BIS']} by {want:.1f}"
        # it is the reading captured last, not its predecessor (when they print differently)
        older = [p for p in shown[:-1] if _bis_text(dict(p.values)) != _bis_text(dict(expected.values))]
        if older:
            other = float(np.abs(got - _value_crop(dict(older[-1].values), t)).mean())
            assert other > want + 4.0, f"frame {k}: BIS {older[-1].values['BIS']} fits about as well as {expected.values['BIS']}"
        texts_checked += 1
    # the value changes exactly on the first frame at or after the reading's capture time
    by_k = dict(frames)
    for prev, cur in zip(points, points[1:]):
        if not (0 < cur.t < 9.9) or _bis_text(dict(prev.values)) == _bis_text(dict(cur.values)):
            continue
        first = -int(-cur.t * FPS // 1)  # ceil(t * fps): the first tick at or after the capture
        before = by_k[first - 1][box.y : box.y2, box.x : box.x2].astype(np.int16)
        after = by_k[first][box.y : box.y2, box.x : box.x2].astype(np.int16)
        assert float(np.abs(before - _value_crop(dict(prev.values), cur.t)).mean()) < 4.0, f"t={cur.t}: changed early"
        assert float(np.abs(after - _value_crop(dict(cur.values), cur.t)).mean()) < 4.0, f"t={cur.t}: changed late"
        changes_checked += 1
    print(f"\npanel BIS text matched in {texts_checked} frames; {changes_checked} value changes on the exact frame")
    assert texts_checked >= 100 and changes_checked >= 10
