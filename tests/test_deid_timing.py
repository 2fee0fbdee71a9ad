"""Stage timers (table, JSON, PNG chart, detector sub-stages) and the audit sidecar writer."""

from __future__ import annotations

import json

from PIL import Image

from surgbox.deid import PAPER_STAGES, AuditWriter, Region, StageTimes, read_audit
from surgbox.deid.timing import canonical_stage


def test_stage_names_and_aliases():
    assert canonical_stage("nms") == "NMS" and canonical_stage("score_filter") == "score filter"
    assert canonical_stage("preprocess") == "preprocessing" and canonical_stage("write") == "write"
    assert len(PAPER_STAGES) == 10


def test_detector_sub_stages_split_one_detect_call():
    t = StageTimes()
    t.add_detector({"preprocess": 1.0, "nms": 0.5}, {"preprocess": 1.2, "nms": 0.6, "forward": 0.3}, total=0.8)
    d = t.to_dict(frames=10)["stages"]
    assert round(d["preprocessing"]["seconds"], 6) == 0.2 and round(d["NMS"]["seconds"], 6) == 0.1
    assert round(d["inference"]["seconds"], 6) == round(0.3 + 0.2, 6)  # the model + what was not broken down
    t2 = StageTimes()
    t2.add_detector(None, None, total=0.8)
    assert t2.to_dict()["not_measured"] == ["preprocessing", "output decoding", "score filter", "sort", "NMS"]


def test_table_dict_and_chart(tmp_path):
    t = StageTimes()
    with t.stage("setup"):
        pass
    t.add("inference", 2.0, count=16)
    t.add("blur", 0.5, count=100)
    t.add("queue wait (encode)", 1.0, count=0)
    d = t.to_dict(frames=100, wall=3.0)
    assert d["wall_s"] == 3.0 and d["stages"]["inference"]["ms_per_frame"] == 20.0
    assert d["stages"]["write"]["seconds"] == 0.0  # a paper section that did not occur
    json.dumps(d)
    table = t.table(frames=100, wall=3.0)
    assert "inference" in table and "33.3 fps" in table and "not measured: preprocessing" in table
    t.chart(tmp_path / "c.png", frames=100)
    with Image.open(tmp_path / "c.png") as im:
        assert im.format == "PNG" and im.width > 600


def test_audit_writer_commits_atomically_or_leaves_nothing(tmp_path):
    path = tmp_path / "a.jsonl"
    w = AuditWriter(path)
    w.open({"src": "in.mp4", "detector": {"name": "x", "version": "1", "settings": {}}})
    w.frame(0, 0, None, [])
    assert not path.exists()  # still under its temporary name
    w.abort()
    assert list(tmp_path.iterdir()) == []
    from fractions import Fraction

    w = AuditWriter(path)
    w.open({"src": "in.mp4"})
    w.frame(0, 0, Fraction(1, 15360), [Region((1, 2, 3, 4), 0.9, 0, "detected")])
    w.frame(1, 512, Fraction(1, 15360), [])
    w.commit()
    header, frames, summary = read_audit(path)
    assert header["format"] == "surgbox-deid-audit" and header["src"] == "in.mp4"
    assert frames[1]["time"] == round(512 / 15360, 6) and frames[0]["regions"][0]["kind"] == "detected"
    assert summary == {"type": "summary", "frames": 2, "frames_with_regions": 1, "regions": 1, "complete": True}
