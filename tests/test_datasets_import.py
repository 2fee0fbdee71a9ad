"""Annotation import: CVAT video/images 1.1, COCO, dlib; checked against datumaro and by hand."""

from __future__ import annotations

import json
import random
import shutil
import warnings
import xml.etree.ElementTree as ET

import pytest

from surgbox.datasets import load_annotations
from surgbox.errors import DatasetError

from cvat_gen import random_task, sparse, write_xml

VIDEO_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version><meta><task><size>6</size><start_frame>4</start_frame><stop_frame>14</stop_frame>
<frame_filter>step=2</frame_filter><original_size><width>100</width><height>80</height></original_size></task>
<source>snippet.mp4</source></meta>
<track id="3" label="face">
  <box frame="4" outside="0" occluded="1" keyframe="1" xtl="0" ytl="0" xbr="10" ybr="10" z_order="0"></box>
  <box frame="5" outside="0" occluded="0" keyframe="1" xtl="50" ytl="50" xbr="60" ybr="60" z_order="0"></box>
  <box frame="8" outside="0" occluded="0" keyframe="1" xtl="40" ytl="20" xbr="50" ybr="30" z_order="0"></box>
  <box frame="10" outside="1" occluded="0" keyframe="1" xtl="40" ytl="20" xbr="50" ybr="30" z_order="0"></box>
</track>
<track id="7" label="hand">
  <box frame="6" outside="0" occluded="0" keyframe="1" xtl="1" ytl="2" xbr="3" ybr="4" z_order="0"></box>
</track>
<track id="8" label="face">
  <box frame="12" outside="0" occluded="0" keyframe="1" xtl="5" ytl="5" xbr="25" ybr="35" z_order="0"></box>
</track>
</annotations>
"""


def boxes_by_frame(ann):
    return {it.frame: [(b.track, b.box, b.label, b.occluded) for b in it.boxes] for it in ann}


def test_cvat_video_by_hand(tmp_path):
    p = tmp_path / "a.xml"
    p.write_text(VIDEO_XML)
    ann = load_annotations(p)
    assert ann.format == "cvat-video" and ann.source == "snippet.mp4"
    assert [it.frame for it in ann] == [4, 6, 8, 10, 12, 14]  # start_frame, step=2, stop_frame
    got = boxes_by_frame(ann)
    # frame 5 is off the step grid: ignored; 4 -> 8 interpolated at 6 (half way), occluded from frame 4
    assert got[4] == [(3, (0, 0, 10, 10), "face", True)]
    assert got[6] == [(3, (20, 10, 30, 20), "face", True), (7, (1, 2, 3, 4), "hand", False)]
    assert got[8][0] == (3, (40, 20, 50, 30), "face", False)
    # outside="1" at 10 ends track 3; track 7 (last box not outside) lasts to stop_frame
    assert got[10] == [(7, (1, 2, 3, 4), "hand", False)]
    assert got[14] == [(7, (1, 2, 3, 4), "hand", False), (8, (5, 5, 25, 35), "face", False)]
    assert [b.keyframe for b in ann.items[1].boxes] == [False, True]
    faces = load_annotations(p, labels=["face"])
    assert [len(it.boxes) for it in faces] == [1, 1, 1, 0, 1, 1]
    assert all(it.width == 100 and it.height == 80 and it.video == "snippet.mp4" for it in faces)


def test_random_cvat_sparse_equals_full_and_expected(tmp_path):
    rng = random.Random(1234)
    for n in range(60):
        meta, tracks, expected = random_task(rng)
        full = load_annotations(write_xml(tmp_path / f"full{n}.xml", meta, tracks))
        keys = load_annotations(write_xml(tmp_path / f"keys{n}.xml", meta, sparse(tracks)))
        assert [it.frame for it in full] == list(range(meta["start"], meta["stop"] + 1, meta["step"]))
        for ann in (full, keys):
            got = boxes_by_frame(ann)
            for f in got:
                exp = expected.get(f, [])
                assert [(t, lab, occ) for t, _, lab, occ in got[f]] == [(t, lab, occ) for t, _, lab, occ in exp], (n, f)
                for (_, b, _, _), (_, e, _, _) in zip(got[f], exp):
                    assert b == pytest.approx(e, abs=1e-6), (n, f)


def test_dlib_and_coco(tmp_path):
    dl = tmp_path / "d.xml"
    dl.write_text("<?xml version='1.0'?><dataset><images><image file='a.jpg' width='30' height='20'>"
                  "<box top='2' left='3' width='10' height='5'><label>face_mask</label></box>"
                  "<box top='1' left='1' width='4' height='4' ignore='1'/></image><image file='b.jpg'/></images></dataset>")
    a = load_annotations(dl)
    assert a.format == "dlib" and [it.image for it in a] == ["a.jpg", "b.jpg"]
    b0, b1 = a.items[0].boxes
    assert b0.box == (3, 2, 13, 7) and b0.label == "face_mask" and not b0.ignore and b1.ignore
    assert len(load_annotations(dl, labels=["face*"]).items[0].boxes) == 1
    co = tmp_path / "c.json"
    co.write_text(json.dumps({"images": [{"id": 5, "file_name": "x.png", "width": 9, "height": 9}, {"id": 2, "file_name": "y.png"}],
                              "annotations": [{"id": 1, "image_id": 5, "bbox": [1, 2, 3, 4], "category_id": 1, "iscrowd": 0,
                                               "attributes": {"occluded": True}},
                                              {"id": 2, "image_id": 2, "bbox": [0, 0, 1, 1], "category_id": 2, "iscrowd": 1}],
                              "categories": [{"id": 1, "name": "face"}, {"id": 2, "name": "crowd"}]}))
    c = load_annotations(co)
    assert [it.image for it in c] == ["x.png", "y.png"]
    assert c.items[0].boxes[0].box == (1, 2, 4, 6) and c.items[0].boxes[0].occluded
    assert c.items[1].boxes[0].ignore and c.items[1].boxes[0].label == "crowd"


@pytest.mark.parametrize("text, words", [
    ("<annotations><track id='0' label='f'><box frame='0' xtl='a'/></track></annotations>", "numeric xtl"),
    ("<annotations><meta><task><frame_filter>every=2</frame_filter></task></meta><track id='0'/></annotations>", "frame_filter"),
    ("<annotations", "not well-formed"),
    ("hello", "not a CVAT"),
    # values of the wrong type or out of range (each was a ValueError/KeyError/TypeError: an internal error)
    ("<annotations><meta><task><start_frame>abc</start_frame></task></meta><track id='1' label='f'>"
     "<box frame='0' xtl='1' ytl='1' xbr='2' ybr='2'/></track></annotations>", "malformed cvat annotations"),
    ("<annotations><track id='x' label='f'><box frame='0' xtl='1' ytl='1' xbr='2' ybr='2'/></track></annotations>",
     "malformed cvat annotations"),
    ("<annotations><track id='1' label='f'><box xtl='1' ytl='1' xbr='2' ybr='2'/></track></annotations>",
     "missing attribute 'frame'"),
    ("<annotations><image id='0' name='a.png' width='abc' height='5'/></annotations>", "malformed cvat annotations"),
    ("<annotations><track id='1' label='f'><box frame='0' xtl='nan' ytl='1' xbr='2' ybr='2'/></track></annotations>",
     "must be finite numbers"),
    ("<annotations><image id='0' name='a.png'><box label='f' xtl='inf' ytl='1' xbr='2' ybr='2'/></image></annotations>",
     "must be finite numbers"),
    ("<dataset><images><image file='a.png'><box top='1' left='1' width='nan' height='3'/></image></images></dataset>",
     "must be finite numbers"),
    # one box on frame 10**14: every frame up to it was made (the import hung, memory growing)
    ("<annotations><track id='1' label='f'><box frame='99999999999999' xtl='1' ytl='1' xbr='2' ybr='2'/></track>"
     "</annotations>", "more than 10000000 frames after the start"),
    ("<annotations><meta><task><size>99999999999</size></task></meta><track id='1' label='f'>"
     "<box frame='0' xtl='1' ytl='1' xbr='2' ybr='2'/></track></annotations>", "stop_frame"),
])
def test_bad_files_one_clear_error(tmp_path, text, words):
    p = tmp_path / "bad.xml"
    p.write_text(text)
    with pytest.raises(DatasetError, match=words):
        load_annotations(p)


@pytest.mark.parametrize("data, words", [
    ({"images": [{"id": 1, "file_name": "a.png", "width": "x"}], "annotations": []}, "malformed coco annotations"),
    ({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1, "bbox": [1, 2, 3, 4],
                                                                   "category_id": [1]}]}, "malformed coco annotations"),
    ({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1, "bbox": [1, 2, float("nan"), 4]}]},
     "must be finite numbers"),
])
def test_bad_coco_files_one_clear_error(tmp_path, data, words):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=words):
        load_annotations(p)


# -- against datumaro ------------------------------------------------------------------------

def datumaro_boxes(xml_path, tmp_path):
    """Frame (or image id) -> sorted visible boxes as datumaro reads a CVAT file (its images must exist)."""
    dm = pytest.importorskip("datumaro")
    from datumaro.components.annotation import AnnotationType

    work = tmp_path / f"dm-{xml_path.stem}"
    (work / "images").mkdir(parents=True)
    dst = shutil.copy(xml_path, work)
    for im in ET.parse(xml_path).getroot().iter("image"):
        (work / "images" / im.get("name")).touch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dm.Dataset.import_from(str(dst), "cvat")
    labels = ds.categories()[AnnotationType.label]
    out = {}
    for item in ds:
        rows = []
        for a in item.annotations:
            if a.type != AnnotationType.bbox or a.attributes.get("outside"):
                continue
            x, y, w, h = a.get_bbox()
            rows.append((a.attributes.get("track_id"), (x, y, x + w, y + h), labels[a.label].name, bool(a.attributes.get("occluded"))))
        key = (item.subset, item.attributes["frame"])
        out.setdefault(key, []).extend(sorted(rows, key=lambda r: (r[0] is None, r[0] or 0)))
    return out


def ours_boxes(xml_path):
    return [(it.frame, [(b.track, b.box, b.label, b.occluded) for b in it.boxes]) for it in load_annotations(xml_path)]


def same_rows(a, b):
    """Equal tracks, labels, flags; boxes equal to datumaro's float32 (1e-4 px)."""
    return [(t, lab, o) for t, _, lab, o in a] == [(t, lab, o) for t, _, lab, o in b] and all(
        x == pytest.approx(y, abs=1e-4) for (_, x, _, _), (_, y, _, _) in zip(a, b))


def assert_same_as_datumaro(xml_path, tmp_path):
    dm = datumaro_boxes(xml_path, tmp_path)
    ours = ours_boxes(xml_path)
    seen = set()
    for frame, rows in ours:
        matches = [v for (subset, f), v in dm.items() if f == frame]
        if rows:
            assert any(same_rows(rows, m) for m in matches), (xml_path.name, frame, rows, matches)
        else:
            assert not matches or [] in matches, (xml_path.name, frame, matches)
        seen.add(frame)
    assert all(f in seen for (_, f), v in dm.items() if v), "datumaro has boxes on frames we do not list"


def test_shared_cvat_files_equal_datumaro(shared_dir, tmp_path):
    files = sorted((shared_dir / "data" / "cvat").glob("*.xml"))
    assert len(files) == 3
    for p in files:
        assert_same_as_datumaro(p, tmp_path)


def test_random_cvat_files_equal_datumaro(tmp_path):
    rng = random.Random(99)
    for n in range(25):
        meta, tracks, _ = random_task(rng)
        assert_same_as_datumaro(write_xml(tmp_path / f"r{n}.xml", meta, tracks, decimals=2), tmp_path)
