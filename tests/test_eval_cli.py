"""`surgbox eval`, `surgbox dataset boxes/import` and `surgbox train` end to end on small real files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from surgbox.cli import main
from surgbox.datasets import Dataset, load_annotations
from surgbox.metrics import coco_evaluate

from train_fixtures import draw_face


def photo_set(tmp_path, n=3):
    """``n`` PNGs with drawn faces and a dlib XML of their boxes."""
    rows = []
    for i in range(n):
        im = Image.new("RGB", (200, 150), (70, 90, 110))
        d = ImageDraw.Draw(im)
        faces = [(60 + 10 * i, 75, 30), (150, 60, 20)][: 1 + i % 2]
        boxes = []
        for cx, cy, s in faces:
            draw_face(d, cx, cy, s)
            boxes.append((cx - 0.8 * s, cy - s, 1.6 * s, 2 * s))
        im.save(tmp_path / f"p{i}.png")
        rows.append(f"<image file='p{i}.png'>" + "".join(
            f"<box top='{y:.0f}' left='{x:.0f}' width='{w:.0f}' height='{h:.0f}'><label>face</label></box>" for x, y, w, h in boxes)
            + "</image>")
    xml = tmp_path / "faces.xml"
    xml.write_text("<?xml version='1.0'?><dataset><images>" + "".join(rows) + "</images></dataset>")
    return xml


def test_boxes_json_lines(tmp_path, capsys):
    xml = photo_set(tmp_path)
    assert main(["dataset", "boxes", str(xml), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["image"] for x in lines] == ["p0.png", "p1.png", "p2.png"] and all(x["frame"] is None for x in lines)
    assert set(lines[1]["boxes"][0]) == {"box", "label", "occluded", "track"} and len(lines[1]["boxes"]) == 2
    assert main(["dataset", "boxes", str(xml), "--label", "head", "--json"]) == 0
    assert all(not json.loads(x)["boxes"] for x in capsys.readouterr().out.splitlines())


def test_eval_detect_output_and_detector_agree(tmp_path, capsys):
    xml = photo_set(tmp_path)
    images = sorted(str(p) for p in tmp_path.glob("p*.png"))
    assert main(["detect", *images, "--detector", "retinaface", "--detector-option", "scale=1.0", "--json", "--threshold", "0.02", "--device", "cpu"]) == 0
    (tmp_path / "dets.json").write_text(capsys.readouterr().out)
    assert main(["eval", str(tmp_path / "dets.json"), str(xml), "--json", "--pr-curve", str(tmp_path / "pr.png")]) == 0
    a = json.loads(capsys.readouterr().out)
    assert {"ap50", "coco_ap", "per_frame_map", "images", "faces"} <= set(a)
    assert a["images"] == 3 and a["faces"] == 4 and a["ap50"] > 0.9
    assert Image.open(tmp_path / "pr.png").size == (560, 460)
    assert main(["dataset", "import", str(xml), "--out", str(tmp_path / "ds")]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "ds"), "--detector", "retinaface", "--detector-option", "device=\"cpu\"", "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    for k in ("ap50", "coco_ap", "per_frame_map", "faces", "images"):
        assert a[k] == pytest.approx(b[k], abs=1e-6), k


def test_eval_by_hand_and_errors(tmp_path, capsys):
    xml = photo_set(tmp_path, n=2)
    ann = load_annotations(xml)
    g0, g1 = ([b.box for b in it.boxes] for it in ann)
    # p0: one hit (0.9) and a false alarm (0.8); p1: one of two faces found (0.7)
    dets = [{"path": "p0.png", "detections": [{"box": g0[0], "score": 0.9}, {"box": [0, 0, 5, 5], "score": 0.8}]},
            {"path": str(tmp_path / "p1.png"), "detections": [{"box": g1[1], "score": 0.7}]}]
    (tmp_path / "d.json").write_text(json.dumps(dets))
    assert main(["eval", str(tmp_path / "d.json"), str(xml), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    # ranked TP, FP, TP of 3 faces: precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3 -> AP = 1/3 + 1/3 * 2/3
    assert r["ap50"] == pytest.approx(1 / 3 + 2 / 9, abs=1e-6)
    # per frame: p0 AP 1 (its hit ranks first), p1 AP 1/2
    assert r["per_frame_map"] == pytest.approx(0.75, abs=1e-6)
    ref = coco_evaluate([(np.array([d["box"] for d in e["detections"]]), np.array([d["score"] for d in e["detections"]]))
                         for e in dets], [np.array(g0), np.array(g1)])
    assert r["coco_ap"] == pytest.approx(ref.ap, abs=1e-6)
    assert r["recall"] == pytest.approx(2 / 3, abs=1e-6) and [s["faces"] for s in r["per_size"]] == [0, 1, 2, 0]
    (tmp_path / "bad.json").write_text(json.dumps([{"path": "nope.png", "detections": []}]))
    assert main(["eval", str(tmp_path / "bad.json"), str(xml)]) == 1
    err = capsys.readouterr().err
    assert "nope.png" in err and err.count("\n") == 1
    assert main(["eval", str(xml)]) == 1
    assert "--detector" in capsys.readouterr().err


def test_eval_outputs_never_replace_a_file(tmp_path, capsys):
    """``--pr-curve d.json`` drew the PNG over the detections it scored and ``--save-detections
    faces.xml`` wrote JSON over the ground truth; an existing file was replaced too. Refused up
    front with one line; the files are as they were."""
    xml = photo_set(tmp_path, n=2)
    dets = tmp_path / "d.json"
    dets.write_text(json.dumps([{"path": "p0.png", "detections": []}, {"path": "p1.png", "detections": []}]))
    earlier = tmp_path / "earlier.png"
    earlier.write_bytes(b"an earlier curve")
    before = {p: p.read_bytes() for p in (xml, dets, earlier)}
    for argv, message in [([str(dets), str(xml), "--pr-curve", str(dets)], "is an input of this run"),
                          ([str(dets), str(xml), "--pr-curve", str(earlier)], "exists; existing files are never replaced"),
                          ([str(dets), str(xml), "--pr-curve", str(tmp_path / "no" / "pr.png")], "does not exist"),
                          ([str(xml), "--detector", "retinaface", "--save-detections", str(xml)], "is an input of this run"),
                          ([str(xml), "--detector", "retinaface", "--save-detections", str(tmp_path / "s.json"),
                            "--pr-curve", str(tmp_path / "." / "s.json")], "give each its own file")]:
        assert main(["eval", *argv]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert {p: p.read_bytes() for p in before} == before and not (tmp_path / "s.json").exists()
    assert main(["eval", str(dets), str(xml), "--pr-curve", str(tmp_path / "pr.png")]) == 0
    assert Image.open(tmp_path / "pr.png").size == (560, 460)


def test_train_cli_small_run(tmp_path, capsys):
    xml = photo_set(tmp_path, n=2)
    assert main(["dataset", "import", str(xml), "--out", str(tmp_path / "ds")]) == 0
    out = tmp_path / "run"
    args = ["train", str(tmp_path / "ds"), "--recipe", "widerface", "--out", str(out), "--epochs", "1", "--image-size", "96",
            "--batch-size", "2", "--device", "cpu", "--threads", "1", "--val", str(tmp_path / "ds"), "--quiet"]
    assert main(args) == 0
    assert "validation AP@0.5" in capsys.readouterr().out
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in log] == [0, 1] and log[1]["images_per_s"] > 0 and "ap50" in log[1]["val"]
    assert main(args[:-1] + ["--resume", "--epochs", "2"]) == 0
    assert [json.loads(x)["epoch"] for x in (out / "log.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert main(["detect", str(tmp_path / "p0.png"), "--weights", str(out / "best.pt"), "--device", "cpu", "--json"]) == 0
    capsys.readouterr()
    # the fine-tuned checkpoint is the retinaface plugin's `weights` option (as `surgbox deid --detector-option`)
    assert main(["eval", str(tmp_path / "ds"), "--detector", "retinaface", "--detector-option", f"weights={out / 'best.pt'}",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 2
    assert main(["train", str(tmp_path / "ds"), "--out", str(tmp_path / "r2"), "--epochs", "0"]) == 1
    assert "--epochs 0 must be >= 1" in capsys.readouterr().err
    assert len(Dataset.load(tmp_path / "ds")) == 2


def test_train_uses_the_split(tmp_path, capsys):
    xml = photo_set(tmp_path, n=3)
    ds = tmp_path / "ds"
    assert main(["dataset", "import", str(xml), "--out", str(ds)]) == 0
    assert main(["dataset", "split", str(ds), "--ratios", "2,1,0", "--no-face-scale"]) == 0
    capsys.readouterr()
    assert main(["train", str(ds), "--out", str(tmp_path / "run"), "--epochs", "1", "--image-size", "64", "--device", "cpu",
                 "--threads", "1", "--no-augment"]) == 0
    err = capsys.readouterr().err
    assert "training on 2 images (2 videos), validating on 1" in err
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["train_images"] == 2 and run["val_images"] == 1
    assert main(["eval", str(ds), "--subset", "val", "--detector", "retinaface", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 1
