"""Ensemble detector: fusion (nms, union), score calibration (confirm), member specs, cadence through detect_frames and
the de-identification pipeline, the CLI's --detector ensemble, and masked faces found by the
real members."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from surgbox import hookimpl
from surgbox.errors import ConfigError
from surgbox.interfaces import Detector
from surgbox.types import Detections
from surgbox_ext.ensemble import EnsembleDetector, Member, calibrate, fuse, nms_indices, parse_members


class Spy(Detector):
    """A real detector plugin for the tests: one box per image, at ``box`` with ``score``;
    records the first pixel of every image it saw (the tests paint the frame number there)."""

    name = "spy"

    def __init__(self, box=(10, 10, 50, 50), score=0.9, threshold=None, threads=None, device=None, label=None):
        self.box, self.score, self.threshold, self.threads, self.device = box, score, threshold, threads, device
        self.seen: list[int] = []
        self.opened = 0

    def open(self):
        self.opened += 1

    def detect(self, images):
        self.seen += [int(im[0, 0, 0]) for im in images]
        return [Detections([self.box], [self.score], np.zeros((1, 5, 2), np.float32)) for _ in images]

    def settings(self):
        return {"box": list(self.box), "threshold": self.threshold}


@pytest.fixture
def spies(default_plugins):
    """``default_plugins`` plus detectors ``spy`` and ``spy2``; the built instances are in the list."""
    built: list[Spy] = []

    def factory(**kw):
        built.append(Spy(**kw))
        return built[-1]

    def register_detectors(register):
        register("spy", factory, description="test spy")
        register("spy2", factory, description="test spy")

    default_plugins.add(types.SimpleNamespace(register_detectors=hookimpl(register_detectors)), "test-spies")
    return default_plugins, built


def frames(indices, size=(40, 60)):
    return [np.full((*size, 3), i, np.uint8) for i in indices]


# ----------------------------------------------------------------------------------- fusion


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], np.float32)
    scores = np.array([0.5, 0.9, 0.4, 0.9], np.float32)
    assert nms_indices(boxes, scores, 0.5).tolist() == [1, 2]  # ties keep input order, 0 and 3 overlap 1
    assert nms_indices(boxes, scores, 0.99).tolist() == [1, 3, 0, 2]


def test_fuse_methods():
    a = Detections([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.3], np.zeros((2, 5, 2), np.float32))
    b = Detections([[1, 0, 11, 10]], [0.6], np.ones((1, 5, 2), np.float32))
    nms = fuse([a, b], "nms", iou=0.4)
    assert nms.boxes.tolist() == [[0, 0, 10, 10], [50, 50, 60, 60]] and nms.landmarks.shape == (2, 5, 2)
    union = fuse([a, b], "union")
    assert len(union) == 3 and union.scores.tolist() == pytest.approx([0.9, 0.6, 0.3])
    assert len(fuse([Detections.empty(), Detections.empty()], "nms")) == 0
    assert fuse([b, Detections([[0, 0, 5, 5]], [0.5])], "union").landmarks is None  # a member without landmarks
    with pytest.raises(ValueError, match="fusion 'max'"):
        fuse([a], "max")


def test_calibration_maps_each_members_confirm_to_one_score():
    s = np.array([0.05, 0.1, 0.2, 0.6, 1.0], np.float32)
    c = calibrate(s, 0.2)
    np.testing.assert_allclose(c, [0.125, 0.25, 0.5, 0.75, 1.0], atol=1e-6)
    assert np.all(np.diff(calibrate(s, 0.4)) > 0)  # order kept
    np.testing.assert_allclose(calibrate(s, None), 0.5 + s / 2)  # no confirm: all confident


def test_ensemble_with_confirm_calibrates_and_declares_confirm_score(spies):
    plugins, _ = spies
    det = EnsembleDetector(members=[{"name": "spy", "score": 0.3, "confirm": 0.6},
                                    {"name": "spy2", "score": 0.3, "box": [100, 100, 140, 140]}], plugins=plugins)
    assert det.confirm_score == 0.5
    with det:
        [d] = det.detect(frames([0]))
    # spy: 0.3 of confirm 0.6 -> 0.25 (a candidate); spy2 has no confirm: 0.3 -> 0.65 (confident)
    assert sorted(d.scores.tolist()) == pytest.approx([0.25, 0.65])
    assert det.settings()["confirm_score"] == 0.5
    plain = EnsembleDetector(members=["spy"], plugins=plugins)
    assert plain.confirm_score is None
    with pytest.raises(ConfigError, match="confirm must be in"):
        EnsembleDetector(members=[{"name": "spy", "confirm": 1.5}])


# ------------------------------------------------------------------------------ member specs


def test_member_specs_parse_from_json_and_lists():
    ms = parse_members('[{"name": "centerface", "threshold": 0.2}, {"name": "retinaface", "every": 3, "phase": 1}, "spy"]')
    assert ms == (Member("centerface", {"threshold": 0.2}), Member("retinaface", {}, 3, 1), Member("spy"))
    assert [m.runs_on(f) for m in ms[1:2] for f in range(6)] == [False, True, False, False, True, False]
    assert ms[0].to_dict() == {"name": "centerface", "every": 1, "phase": 0, "threshold": 0.2}


@pytest.mark.parametrize("bad, message", [
    ("[{", "is not JSON"),
    ("[]", "non-empty list"),
    ('{"name": "x"}', "non-empty list"),
    ('[{"threshold": 0.2}]', 'with a "name" key'),
    ('[{"name": "x", "every": 0}]', "every must be an integer >= 1"),
    ('[{"name": "x", "every": 2, "phase": 2}]', "phase must be"),
    ('[{"name": "ensemble"}]', "cannot be a member"),
])
def test_bad_member_specs_say_what_to_write(bad, message):
    with pytest.raises(ConfigError, match=message):
        EnsembleDetector(members=bad)


def test_bad_fusion_and_unknown_member(spies):
    plugins, _ = spies
    with pytest.raises(ConfigError, match="fusion 'max'"):
        EnsembleDetector(members=["spy"], fusion="max")
    with pytest.raises(ConfigError, match="iou"):
        EnsembleDetector(members=["spy"], iou=0)
    from surgbox.errors import PluginNotFoundError

    with pytest.raises(PluginNotFoundError, match="nope"):
        EnsembleDetector(members=["spy", "nope"], plugins=plugins).open()


# ----------------------------------------------------------------------------------- cadence


def test_each_member_runs_on_its_cadence(spies):
    plugins, built = spies
    det = EnsembleDetector(members=[{"name": "spy", "threads": 2}, {"name": "spy2", "every": 3, "phase": 1, "box": [100, 100, 140, 140],
                                                                     "threshold": 0.6}],
                           plugins=plugins, threshold=0.25, threads=1)
    with det:
        a, b = built
        # threads reach members without their own; the ensemble's threshold replaces every member's
        assert (a.threshold, a.threads, b.threshold, b.threads) == (0.25, 2, 0.25, 1)
        out = det.detect_frames(frames([0, 0, 1, 2, 3, 4]), [0, 0, 1, 2, 3, 4])  # two regions of frame 0
        assert a.seen == [0, 0, 1, 2, 3, 4] and b.seen == [1, 4]
        assert [len(d) for d in out] == [1, 1, 2, 1, 1, 2]
        assert det.runs == {"0:spy": 6, "1:spy2": 2}
        # plain detect(): every member on every image
        det.detect(frames([7]))
        assert a.seen[-1] == 7 and b.seen[-1] == 7
        s = det.settings()
        assert s["detector"] == "ensemble" and [m["every"] for m in s["members"]] == [1, 3]
        assert s["members"][1]["box"] == [100, 100, 140, 140]
        with pytest.raises(ValueError, match="frame indices"):
            det.detect_frames(frames([1]), [1, 2])
    assert det._detectors == []


def test_a_frame_no_member_runs_on_has_no_detections(spies):
    plugins, built = spies
    with EnsembleDetector(members=[{"name": "spy", "every": 2}], plugins=plugins) as det:
        out = det.detect_frames(frames([4, 5]), [4, 5])
    assert [len(d) for d in out] == [1, 0] and built[0].seen == [4]


def flat_video(path, n=30):
    """A 160x120 H.264 file of ``n`` flat frames, frame ``i`` of grey level ``60 + i``."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 60 + i, np.uint8), format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode())
    return path


def test_pipeline_passes_frame_numbers(spies, tmp_path):
    """deidentify() calls detect_frames with source frame numbers: a member on every 3rd frame
    runs on a third of them, and its boxes are carried over the frames in between."""
    from surgbox.deid import deidentify, read_audit

    plugins, built = spies
    src = flat_video(tmp_path / "in.mp4")
    det = EnsembleDetector(members=[{"name": "spy", "every": 3, "box": [40, 30, 80, 70]}], plugins=plugins)
    deidentify(src, tmp_path / "out.mp4", region="full", detector=det, threshold=None, detector_threads=None,
               audit=tmp_path / "a.jsonl", plugins=plugins, detect_scale=1.0)
    assert len(built[0].seen) == 10  # frames 0, 3, ... 27
    header, rows, _ = read_audit(tmp_path / "a.jsonl")
    assert header["detector"]["name"] == "ensemble"
    assert len(rows) == 30 and all(r["regions"] for r in rows)  # interpolated / carried between runs
    kinds = {reg["kind"] for r in rows for reg in r["regions"]}
    assert {"detected", "interpolated"} <= kinds


def test_pipeline_hides_only_confirmed_tracks(spies, tmp_path):
    """Hysteresis end to end: an ensemble whose member sets ``confirm`` makes deidentify()'s
    temporal stage show a track only once it is confirmed. A member that scores 0.2 against
    confirm 0.5 on two frames (a flicker) hides nothing; one confident frame (0.6) among the
    low ones confirms the track, which is then hidden on every frame, also the low-scored ones."""
    from surgbox.deid import deidentify, read_audit

    plugins, _ = spies
    src = flat_video(tmp_path / "in.mp4")

    def run(members, name):
        det = EnsembleDetector(members=members, plugins=plugins)
        deidentify(src, tmp_path / f"{name}.mp4", region="full", detector=det, threshold=None, detector_threads=None,
                   audit=tmp_path / f"{name}.jsonl", plugins=plugins, detect_scale=1.0, carry=0, max_gap=2)
        return read_audit(tmp_path / f"{name}.jsonl")[1]

    flicker = {"name": "spy", "every": 15, "score": 0.2, "confirm": 0.5, "box": [40, 30, 80, 70]}  # frames 0 and 15
    assert not any(r["regions"] for r in run([flicker], "flicker"))
    plain = dict(flicker, confirm=None)  # without confirm every detection counts
    assert sum(bool(r["regions"]) for r in run([plain], "plain")) == 2
    low = {"name": "spy", "score": 0.2, "confirm": 0.5, "box": [40, 30, 80, 70]}
    high = {"name": "spy2", "every": 30, "phase": 20, "score": 0.6, "confirm": 0.5, "box": [40, 30, 80, 70]}
    rows = run([low, high], "confirmed")
    assert all(r["regions"] for r in rows)  # frames 0-19 too, before the confident frame 20


def test_registration_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys, surgbox_ext.plugin as p\n"
        "from surgbox.plugins import Plugins\n"
        "pl = Plugins.build(entry_points=False, plugins=[(p, 'surgbox')])\n"
        "for n in ('centerface', 'ensemble'):\n"
        "    assert pl.entry('detector', n).unavailable_reason() is None\n"
        "det = pl.create('detector', 'ensemble', members=['centerface'])\n"
        "assert 'torch' not in sys.modules, 'registration or an unopened ensemble imported torch'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


# ----------------------------------------------------------------- real members, masked faces


torch = pytest.importorskip("torch")

from masked_faces import face_box, masked_scene  # noqa: E402

FACES = [(120, 150, 55), (330, 130, 38), (500, 200, 26), (580, 90, 14)]


def _all_found(dets, faces) -> bool:
    c = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
    return all(((c[:, 0] > x1) & (c[:, 0] < x2) & (c[:, 1] > y1) & (c[:, 1] < y2)).any()
               for x1, y1, x2, y2 in (face_box(*f) for f in faces))


@pytest.mark.parametrize("fusion", ["nms", "union"])
def test_real_members_find_drawn_masked_faces(default_plugins, fusion):
    img = masked_scene(360, 640, FACES)
    members = [{"name": "centerface", "threshold": 0.15, "device": "cpu"}, {"name": "retinaface", "threshold": 0.3, "device": "cpu"}]
    with EnsembleDetector(members=members, fusion=fusion, plugins=default_plugins) as det:
        [d] = det.detect([img])
        assert set(det.stage_seconds) >= {"inference", "NMS", "fusion"}
    assert _all_found(d, FACES)
    if fusion == "nms":
        assert len(d) == len(FACES)  # one box per face


def test_the_default_ensemble_finds_drawn_masked_faces(default_plugins):
    from surgbox.deid import defaults

    opts = defaults.detector_options("ensemble")
    img = masked_scene(360, 640, FACES)
    with default_plugins.create("detector", "ensemble", plugins=default_plugins, **opts) as det:
        [d] = det.detect_frames([img], [0])
    assert _all_found(d, FACES)


# ----------------------------------------------------------------------------------------- CLI


MEMBERS = json.dumps([{"name": "centerface", "threshold": 0.15}, {"name": "retinaface", "every": 2}])


def test_cli_detect_with_an_ensemble(tmp_path, capsys):
    from PIL import Image

    from surgbox.cli import main

    png = tmp_path / "or.png"
    Image.fromarray(masked_scene(360, 640, FACES)).save(png)
    assert main(["detect", "--json", "--device", "cpu", "--detector", "ensemble", "--detector-option", f"members={MEMBERS}",
                 str(png)]) == 0
    [res] = json.loads(capsys.readouterr().out)
    from surgbox.types import Detections as D

    found = D([d["box"] for d in res["detections"]], [d["score"] for d in res["detections"]])
    assert _all_found(found, FACES)
    assert main(["detect", "--detector", "ensemble", "--detector-option", "members=[{", str(png)]) == 1
    assert "is not JSON" in capsys.readouterr().err


def test_cli_detect_defaults_are_the_deid_defaults(tmp_path, capsys, default_plugins):
    """`surgbox detect` without options runs de-identification's default detector with its
    options and threshold: same boxes as building it from surgbox.deid.defaults."""
    from PIL import Image

    from surgbox.cli import main
    from surgbox.deid import defaults

    img = masked_scene(360, 640, FACES)
    png = tmp_path / "or.png"
    Image.fromarray(img).save(png)
    assert main(["detect", "--json", str(png)]) == 0
    [res] = json.loads(capsys.readouterr().out)
    opts = defaults.detector_options(defaults.DETECTOR)
    opts.pop("threads", None)
    with default_plugins.create("detector", defaults.DETECTOR, **opts) as det:
        [ref] = det.detect([img])
    assert [d["score"] for d in res["detections"]] == pytest.approx(ref.scores.tolist(), abs=1e-4)
    assert len(ref) >= len(FACES) and _all_found(ref, FACES)


def test_cli_detect_finds_masked_or_faces_at_the_default_threshold(shared_dir, tmp_path, capsys):
    """Issue 11: `surgbox detect` (no options) finds the masked, capped staff of the shared OR
    photos (RetinaFace, the earlier default, found none of the OR section's three)."""
    from PIL import Image

    from surgbox.cli import main
    from surgbox.types import Detections as D
    from test_centerface import hits, or_faces

    photos = or_faces(shared_dir)
    paths = []
    for k, (img, _) in enumerate(photos):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(img).save(paths[-1])
    assert main(["detect", "--json", *map(str, paths)]) == 0
    results = json.loads(capsys.readouterr().out)
    found = [hits(D([d["box"] for d in r["detections"]], [d["score"] for d in r["detections"]]), boxes)
             for r, (_, boxes) in zip(results, photos)]
    assert found[0] == 3, found  # the OR section: three masked, capped faces
    assert sum(found) >= 7, found  # of 8


def test_cli_deid_with_an_ensemble(tmp_path, capsys):
    import av

    from surgbox.cli import main
    from surgbox.deid import read_audit

    src = tmp_path / "in.mp4"
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        for i in range(8):
            img = masked_scene(360, 640, [(x + 2 * i, y, r) for x, y, r in FACES])
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode())
    audit = tmp_path / "a.jsonl"
    assert main(["deid", str(src), str(tmp_path / "out.mp4"), "--region", "full", "--quiet", "--detector", "ensemble",
                 "--detector-option", f"members={MEMBERS}", "--detect-scale", "1", "--audit", str(audit)]) == 0, capsys.readouterr().err
    header, rows, _ = read_audit(audit)
    members = header["detector"]["settings"]["members"]
    assert [m["detector"] for m in members] == ["centerface", "retinaface"] and members[1]["every"] == 2
    assert len(rows) == 8 and all(len(r["regions"]) >= len(FACES) for r in rows)
