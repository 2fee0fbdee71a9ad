"""Fail closed (issue 11 item 6): when the detector raises or a batch cannot be scored, no frame
of that batch is written with its faces exposed: the run stops (default) or, with
``on_detector_error="blur-region"``, the whole scan region of those frames is hidden and the
audit sidecar says so. The failing detector is a registered plugin of a hermetic manager."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_deid_pipeline import WhiteSquareDetector, decoded, detail, make_video, square_at

from surgbox.deid import deidentify, read_audit
from surgbox.errors import ConfigError, DetectorError
from surgbox.hookspecs import hookimpl

BATCH = 8
FAIL_CALLS = (1, 3)  # the 2nd and 4th detector calls fail: frames 8-15 and 24-31


class FailingDetector(WhiteSquareDetector):
    """White squares, except that some calls fail: ``mode="raise"`` raises, ``"short"`` returns
    too few results, ``"garbage"`` returns something that is not Detections."""

    name = "failing-squares"

    def __init__(self, mode: str = "raise", fail_calls=FAIL_CALLS):
        super().__init__()
        self.mode, self.fail_calls = mode, set(fail_calls)

    def detect(self, images):
        call = self.calls
        out = super().detect(images)
        if call in self.fail_calls:
            if self.mode == "raise":
                raise RuntimeError("CUDA error: an illegal memory access was encountered (test)")
            if self.mode == "short":
                return out[:-1]
            return [{"boxes": d.boxes} for d in out]
        return out


@pytest.fixture
def plugins(default_plugins):
    """surgbox's own plugins (the real libx264 encoder) plus the failing detector, by name."""

    class Reg:
        @hookimpl
        def register_detectors(self, register):
            register("failing-squares", FailingDetector, description="fails on purpose")

    default_plugins.add(Reg(), "failing-test")
    return default_plugins


def _failed_frames():
    return set().union(*(range(c * BATCH, (c + 1) * BATCH) for c in FAIL_CALLS))


def test_default_stops_the_run_and_writes_nothing(tmp_path, plugins):
    src = make_video(tmp_path / "in.mp4", frames=40, audio=False)
    with pytest.raises(DetectorError) as e:
        deidentify(src, tmp_path / "o.mp4", region="full", detector="failing-squares", batch=BATCH, plugins=plugins,
                   audit=tmp_path / "a.jsonl", report=tmp_path / "r.json")
    msg = str(e.value)
    assert "'failing-squares' failed on frames 8-15" in msg and "illegal memory access" in msg
    assert "--on-detector-error blur-region" in msg and "\n" not in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


@pytest.mark.parametrize("mode", ["raise", "short", "garbage"])
def test_blur_region_hides_the_whole_region_of_every_frame_of_a_failed_batch(tmp_path, plugins, mode):
    w, h = 320, 240
    src = make_video(tmp_path / "in.mp4", frames=40, audio=True)
    region = (0, 0, 200, 240)  # the square starts at x=80 and moves right 2 px per frame: inside it
    result = deidentify(src, tmp_path / "o.mp4", region=",".join(map(str, region)), batch=BATCH, plugins=plugins,
                        detector="failing-squares", detector_options={"mode": mode},
                        on_detector_error="blur-region", audit=tmp_path / "a.jsonl", report=tmp_path / "r.json")
    failed = _failed_frames()
    rep = result.report
    assert rep["frames_region_hidden"] == len(failed) == 16 and result.frames == 40
    assert [f["frames"] for f in rep["detector_failures"]] == [[8, 15], [24, 31]]
    assert any("their scan regions were hidden whole" in w for w in rep["warnings"])
    assert json.loads((tmp_path / "r.json").read_text())["frames_region_hidden"] == 16
    header, frames, summary = read_audit(tmp_path / "a.jsonl")
    assert header["settings"]["on_detector_error"] == "blur-region"
    hidden = {f["frame"] for f in frames if "region_hidden" in f}
    assert hidden == failed and summary["frames_region_hidden"] == 16
    assert "failing-squares" in frames[8]["region_hidden"]
    fin, fout = decoded(src), decoded(tmp_path / "o.mp4")
    x0, y0, x1, y1 = region
    for i in range(40):
        inside_in, inside_out = fin[i][y0:y1, x0:x1], fout[i][y0:y1, x0:x1]
        sx1, sy1, sx2, sy2 = square_at(i, w, h)
        square_out = fout[i][sy1 - 4:sy2 + 4, sx1 - 4:sx2 + 4]
        assert detail(square_out) < 0.35 * detail(fin[i][sy1 - 4:sy2 + 4, sx1 - 4:sx2 + 4]), i  # always hidden
        if i in failed:  # the whole region, not just the face, is gone
            assert detail(inside_out) < 0.1 * detail(inside_in), i
        else:  # the texture away from the square is only re-encoded
            assert detail(fout[i][0:60, 0:60]) > 0.7 * detail(fin[i][0:60, 0:60]), i
        assert np.abs(fout[i][:, 240:].astype(int) - fin[i][:, 240:]).mean() < 6, i  # outside the region: untouched


def test_blur_region_through_the_cli(tmp_path, plugins, monkeypatch, capsys):
    """``surgbox deid --on-detector-error blur-region`` (in-process, with the process-wide plugin
    manager replaced by the hermetic one that has the failing detector)."""
    import surgbox.plugins
    from surgbox.cli import main

    monkeypatch.setattr(surgbox.plugins, "_default", plugins)
    src = make_video(tmp_path / "in.mp4", frames=24, audio=False)
    args = ["deid", str(src), str(tmp_path / "o.mp4"), "--detector", "failing-squares", "--region", "full",
            "--batch", str(BATCH), "--audit", str(tmp_path / "a.jsonl"), "--quiet", "--json"]
    assert main(args) == 1  # default: fail
    err = capsys.readouterr()
    assert "failed on frames 8-15" in err.err and not (tmp_path / "o.mp4").exists()
    assert main([*args, "--on-detector-error", "blur-region"]) == 0
    out = capsys.readouterr()
    (summary,) = json.loads(out.out)
    assert summary["ok"] and summary["frames_region_hidden"] == 8 and summary["frames"] == 24
    assert "warning: detector 'failing-squares' failed" in out.err
    _, frames, _ = read_audit(tmp_path / "a.jsonl")
    assert [f["frame"] for f in frames if "region_hidden" in f] == list(range(8, 16))


def test_every_nth_frame_failed_batch_hides_the_skipped_frames_too(tmp_path, plugins):
    """With ``every=2`` a batch of 4 detector frames holds the frames skipped between them: the
    second batch is frames 7-14 (detector frames 8, 10, 12, 14) and all of them are hidden whole
    (the skipped ones had no detection to interpolate from)."""
    src = make_video(tmp_path / "in.mp4", frames=40, audio=False)
    result = deidentify(src, tmp_path / "o.mp4", region="full", batch=4, every=2, plugins=plugins,
                        detector="failing-squares", detector_options={"fail_calls": [1]},
                        on_detector_error="blur-region", audit=tmp_path / "a.jsonl")
    _, frames, _ = read_audit(tmp_path / "a.jsonl")
    assert [f["frame"] for f in frames if "region_hidden" in f] == list(range(7, 15))
    assert result.report["frames_region_hidden"] == 8 and result.report["detector_failures"][0]["frames"] == [7, 14]


def test_cli_rejects_unknown_policy():
    from surgbox.deid import DeidOptions

    with pytest.raises(ConfigError, match="on_detector_error"):
        DeidOptions(on_detector_error="skip")
