"""The stages together: scene cuts per region (issue 11 item 5), the detector's frame context
(``detect_frames``), a raising ``deid_finished`` hook, the one IoU, module sizes."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
from test_deid_pipeline import WhiteSquareDetector, decoded, detail

from surgbox.deid import deidentify, read_audit
from surgbox.hookspecs import hookimpl
from surgbox.types import Detections

W, H = 320, 240
ROOM = (0, 0, 160, 240)  # the "room camera": texture and a moving face (white square)
MONITOR = (160, 0, 160, 240)  # the "vitals monitor": flat, its page changes at CUT
CUT = 22
BLIND = range(20, 28)  # frames where the detector misses the face


def square(i: int) -> tuple[int, int, int, int]:
    x = 30 + i
    return x, 100, x + 40, 140


def two_slot_video(path: Path, frames: int = 40) -> Path:
    rng = np.random.default_rng(3)
    texture = rng.integers(0, 200, (H, 160, 3), dtype=np.uint8)
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=30)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    vs.options = {"crf": "18"}
    for i in range(frames):
        img = np.zeros((H, W, 3), np.uint8)
        img[:, :160] = texture
        x1, y1, x2, y2 = square(i)
        img[y1:y2, x1:x2] = 255
        img[:, 160:] = 40 if i < CUT else 215  # a page change on the monitor
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts = i
        out.mux(vs.encode(f))
    out.mux(vs.encode())
    out.close()
    return path


class BlindSpotDetector(WhiteSquareDetector):
    """White squares, but blind on the frames in ``blind``. Given the frame context
    (``detect_frames``) it uses it and records it; through plain ``detect`` (``every=1``,
    ``regions`` crops per frame) it counts frames itself."""

    def __init__(self, blind=(), regions: int = 1):
        super().__init__()
        self.blind, self.regions = set(blind), regions
        self.seen: list[list[int]] = []
        self.plain_calls = 0
        self._next = 0  # images seen through detect()

    def detect(self, images):
        self.plain_calls += 1
        indices = [(self._next + k) // self.regions for k in range(len(images))]
        self._next += len(images)
        return self._blind(WhiteSquareDetector.detect(self, images), indices)

    def detect_frames(self, images, frame_indices):
        self.seen.append(list(frame_indices))
        return self._blind(WhiteSquareDetector.detect(self, images), frame_indices)

    def _blind(self, out, indices):
        return [Detections.empty() if i in self.blind else d for d, i in zip(out, indices)]


def test_a_cut_in_one_region_does_not_end_another_regions_tracks(tmp_path, default_plugins):
    """The monitor's page changes at frame 22 while the detector misses the room camera's face on
    frames 20-27. The room's track is interpolated across the gap; the old pipeline ended every
    region's tracks at the monitor's cut and exposed the face on frames 22-25."""
    src = two_slot_video(tmp_path / "in.mp4")
    det = BlindSpotDetector(blind=BLIND, regions=2)
    region = ";".join(",".join(map(str, r)) for r in (ROOM, MONITOR))
    result = deidentify(src, tmp_path / "o.mp4", region=region, detector=det, carry=2, max_gap=10, batch=4,
                        audit=tmp_path / "a.jsonl", plugins=default_plugins)
    fin, fout = decoded(src), decoded(tmp_path / "o.mp4")
    for i in range(40):
        x1, y1, x2, y2 = square(i)
        around = (slice(y1 - 4, y2 + 4), slice(x1 - 4, x2 + 4))
        assert detail(fout[i][around]) < 0.35 * detail(fin[i][around]), i
    _, frames, _ = read_audit(tmp_path / "a.jsonl")
    for i in BLIND:
        kinds = [r["kind"] for r in frames[i]["regions"]]
        assert kinds == ["interpolated"], (i, frames[i]["regions"])
    assert result.faces == 1  # one track through the gap
    assert result.report["scene_cuts"] == 1 and result.report["scene_cuts_by_region"] == [0, 1]


def test_a_cut_in_the_faces_own_region_still_ends_its_tracks(tmp_path, default_plugins):
    """The same scene with one region over both slots: the page change is a cut in that region,
    and nothing is carried across it (the rule the per-region split keeps)."""
    src = two_slot_video(tmp_path / "in.mp4")
    result = deidentify(src, tmp_path / "o.mp4", region="full", detector=BlindSpotDetector(blind=BLIND), carry=2,
                        max_gap=10, batch=4, audit=tmp_path / "a.jsonl", plugins=default_plugins)
    assert result.report["scene_cuts_by_region"] == [1]
    _, frames, _ = read_audit(tmp_path / "a.jsonl")
    assert [i for i in BLIND if not frames[i]["regions"]] == [22, 23, 24, 25]


def test_detector_gets_the_frame_context(tmp_path, default_plugins):
    """``detect_frames(images, frame_indices)`` is called when the detector has it: the source
    frame of every image (regions of one frame share it), non-decreasing across calls."""
    src = two_slot_video(tmp_path / "in.mp4", frames=12)
    det = BlindSpotDetector()
    region = ";".join(",".join(map(str, r)) for r in (ROOM, MONITOR))
    deidentify(src, tmp_path / "o.mp4", region=region, detector=det, batch=4, every=2, plugins=default_plugins)
    assert det.plain_calls == 0
    assert det.seen == [[0, 0, 2, 2, 4, 4, 6, 6], [8, 8, 10, 10]]


def test_a_raising_deid_finished_hook_does_not_fail_the_run(tmp_path, default_plugins, caplog):
    """docs/plugins.md: an exception raised by a hook is logged and never stops a run. The old
    pipeline raised it after the output was already committed."""
    class Broken:
        @hookimpl
        def deid_finished(self, result):
            raise RuntimeError("upload server down (test)")

    default_plugins.add(Broken(), "broken-listener")
    src = two_slot_video(tmp_path / "in.mp4", frames=6)
    with caplog.at_level(logging.ERROR, logger="surgbox.deid"):
        result = deidentify(src, tmp_path / "o.mp4", region="full", detector=WhiteSquareDetector(), plugins=default_plugins)
    assert result.frames == 6 and (tmp_path / "o.mp4").exists()
    assert any("deid_finished hook raised" in r.getMessage() and r.exc_info for r in caplog.records)


def test_one_iou_implementation():
    import surgbox.deid.temporal
    import surgbox.metrics

    assert surgbox.deid.temporal.iou is surgbox.metrics.iou_matrix


def test_deid_modules_stay_small():
    import surgbox.deid

    for path in Path(surgbox.deid.__file__).parent.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, path


@pytest.mark.parametrize("anonymizer", ["blur", "pixelate", "fill"])
def test_hide_all_covers_every_pixel(anonymizer):
    from surgbox.deid import frame_planes, make_anonymizer

    rng = np.random.default_rng(0)
    frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8), format="rgb24").reformat(format="yuv420p")
    before = [p.copy() for p in frame_planes(frame, writable=False)]
    planes = frame_planes(frame)
    make_anonymizer(anonymizer).hide_all(planes)
    for a, b in zip(before, planes):
        assert detail(b) < 0.1 * detail(a)


def test_batch_is_lowered_to_fit_queue_memory(tmp_path, default_plugins):
    """A batch holds ``batch x every`` frames until it is scored: with ``every=30`` the default 16
    held 480 pictures whatever ``queue_memory`` said. It is lowered to fit, with a warning."""
    from test_deid_pipeline import make_video

    src = make_video(tmp_path / "in.mp4", frames=70, audio=False)
    frame = 320 * 240 * 3 // 2
    det = BlindSpotDetector()
    result = deidentify(src, tmp_path / "o.mp4", region="full", detector=det, every=30, queue_memory=200 * frame,
                        plugins=default_plugins)
    (warning,) = result.report["warnings"]
    assert warning.startswith("detector batch lowered from 16 to 3: 16 x every 30 frames of 320x240")
    assert [len(s) for s in det.seen] == [3]  # frames 0, 30, 60 in one call of 3
    assert result.report["frames_with_regions"] == 70
