"""Frame extraction (plain file, encrypted store, catalog event) and splitting by video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from surgbox.cli import main
from surgbox.datasets import Dataset
from surgbox.datasets.split import face_scale, make_split, read_split, split_videos
from surgbox.errors import DatasetError

XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version><meta><task><size>{size}</size><start_frame>2</start_frame><stop_frame>{stop}</stop_frame>
<frame_filter>step=3</frame_filter><original_size><width>64</width><height>48</height></original_size></task>
<source>clip.mp4</source></meta>
<track id="0" label="face">
  <box frame="2" outside="0" occluded="0" keyframe="1" xtl="4" ytl="4" xbr="20" ybr="24" z_order="0"></box>
  <box frame="14" outside="1" occluded="0" keyframe="1" xtl="4" ytl="4" xbr="20" ybr="24" z_order="0"></box>
</track>
</annotations>
"""


def make_video(path: Path, n: int = 30) -> Path:
    """An H.264 clip whose frame i is flat grey at level 8 * i (decodable index)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(n):
            img = np.full((48, 64, 3), 8 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def annotation(tmp_path: Path, stop: int = 26) -> Path:
    p = tmp_path / "clip.xml"
    p.write_text(XML.format(size=(stop - 2) // 3 + 1, stop=stop))
    return p


def frame_level(img: np.ndarray) -> int:
    return round(float(img.mean()) / 8)


def test_extract_from_file(tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4")
    out = tmp_path / "ds"
    assert main(["dataset", "extract", str(annotation(tmp_path)), "--video", str(video), "--out", str(out), "--quiet"]) == 0
    ds = Dataset.load(out)
    assert [s.item.frame for s in ds] == [2, 5, 8, 11, 14, 17, 20, 23, 26]
    assert [len(s.item.boxes) for s in ds] == [1, 1, 1, 1, 0, 0, 0, 0, 0]  # outside at 14
    for s in ds:
        assert frame_level(ds.read_image(s)) == s.item.frame  # the right frame was written
        assert s.image == f"images/clip/{s.item.frame:06d}.png" and not s.encrypted
    # a second extraction of the same video replaces its samples; --every keeps every Nth
    assert main(["dataset", "extract", str(annotation(tmp_path)), "--video", str(video), "--out", str(out), "--quiet",
                 "--every", "2"]) == 0
    assert [s.item.frame for s in Dataset.load(out)] == [2, 8, 14, 20, 26]


def test_short_video_keeps_what_was_found(tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4", n=12)
    out = tmp_path / "ds"
    assert main(["dataset", "extract", str(annotation(tmp_path)), "--video", str(video), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "5 of 9 annotated frames are missing" in err and err.count("\n") == 1
    assert [s.item.frame for s in Dataset.load(out)] == [2, 5, 8, 11]


def _no_plaintext_frames(root: Path) -> None:
    assert not list(root.rglob("*.png")) and list(root.rglob("*.png.enc"))


def test_extract_from_encrypted_store_stays_encrypted(tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4")
    assert main(["crypt", "keygen", str(tmp_path / "master")]) == 0
    assert main(["crypt", "keygen", str(tmp_path / "dskey")]) == 0
    store = ["--root", str(tmp_path / "s1"), "--key-file", str(tmp_path / "master")]
    (tmp_path / "s1").mkdir()
    assert main(["store", "init", *store]) == 0
    assert main(["store", "put", *store, str(video), "ev/clip.mp4"]) == 0
    video.unlink()
    out = tmp_path / "ds"
    base = ["dataset", "extract", str(annotation(tmp_path)), "--video", "store:ev/clip.mp4", *store, "--out", str(out), "--quiet"]
    capsys.readouterr()
    assert main(base) == 1  # frames of an encrypted recording would rest in clear: refused
    assert "--encrypt-key" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--encrypt-key", str(tmp_path / "dskey")]) == 0
    _no_plaintext_frames(out)
    ds = Dataset.load(out)
    from surgbox.crypto import load_key

    key = load_key(tmp_path / "dskey").material
    assert [frame_level(ds.read_image(s, key)) for s in ds] == [s.item.frame for s in ds]
    with pytest.raises(DatasetError, match="key-file"):
        ds.read_image(ds.samples[0])


def test_extract_from_catalog_event(tmp_path, surgbox_home, monkeypatch, capsys):
    from surgbox.catalog import Catalog

    video = make_video(tmp_path / "clip.mp4")
    with Catalog.at(surgbox_home.path) as cat:
        events = cat.login("admin", "admin-password").events
        ev = events.create(patient="P", medical_record="1", procedure="x")
        events.write_file(ev.id, "segment", "clip.mp4", video.read_bytes())
    video.unlink()
    monkeypatch.setenv("SURGBOX_USER", "admin")
    monkeypatch.setenv("SURGBOX_PASSWORD", "admin-password")
    assert main(["crypt", "keygen", str(tmp_path / "dskey")]) == 0
    out = tmp_path / "ds"
    assert main(["dataset", "extract", str(annotation(tmp_path)), "--video", f"event:{ev.id}/clip.mp4", "--out", str(out),
                 "--encrypt-key", str(tmp_path / "dskey"), "--quiet"]) == 0
    _no_plaintext_frames(out)
    assert len(Dataset.load(out)) == 9
    assert main(["dataset", "extract", str(annotation(tmp_path)), "--video", f"event:{ev.id}", "--out", str(out),
                 "--plaintext"]) == 1
    assert "event:EVENT_ID/FILE_NAME" in capsys.readouterr().err


def test_extracting_an_events_frames_needs_export_and_is_audited(tmp_path, surgbox_home, monkeypatch, capsys):
    """A viewer (no export permission) wrote every annotated frame of an event's recording in
    clear with ``dataset extract --video event:ID/NAME --plaintext``: a copy out of the box past
    the permission matrix. Now it needs ``export`` (refusals audited, as the extraction is), and
    the frames never go inside SURGBOX_HOME."""
    from surgbox.catalog import Catalog

    video = make_video(tmp_path / "clip.mp4")
    with Catalog.at(surgbox_home.path) as cat:
        admin = cat.login("admin", "admin-password")
        ev = admin.events.create(patient="P", medical_record="1", procedure="x")
        admin.events.write_file(ev.id, "segment", "clip.mp4", video.read_bytes())
        for role in ("viewer", "operator"):
            admin.users.add(f"u{role}", role, "password-1")
    args = ["dataset", "extract", str(annotation(tmp_path)), "--video", f"event:{ev.id}/clip.mp4", "--plaintext", "--quiet"]
    for user in ("uviewer", "uoperator"):
        monkeypatch.setenv("SURGBOX_USER", user)
        monkeypatch.setenv("SURGBOX_PASSWORD", "password-1")
        assert main([*args, "--out", str(tmp_path / user)]) == 1
        err = capsys.readouterr().err
        assert "may not export" in err and err.count("\n") == 1 and not (tmp_path / user).exists()
    monkeypatch.setenv("SURGBOX_USER", "admin")
    monkeypatch.setenv("SURGBOX_PASSWORD", "admin-password")
    assert main([*args, "--out", str(surgbox_home.path / "frames")]) == 1
    assert "lies inside SURGBOX_HOME" in capsys.readouterr().err and not (surgbox_home.path / "frames").exists()
    assert main([*args, "--out", str(tmp_path / "ok")]) == 0 and len(Dataset.load(tmp_path / "ok")) == 9
    with Catalog.at(surgbox_home.path) as cat:
        rows = [(r.actor, r.result) for r in cat.login("admin", "admin-password").audit.records()
                if r.action == "dataset.extract"]
    assert rows == [("uviewer", "denied"), ("uoperator", "denied"), ("admin", "ok")]


# -- split -------------------------------------------------------------------------------------

def _video_dataset(tmp_path, n_videos=57, seed=0):
    from surgbox.datasets import Box, Item, Sample

    rng = np.random.default_rng(seed)
    samples = []
    for v in range(n_videos):
        size = rng.choice([15, 30, 60, 120])
        for f in range(3):
            samples.append(Sample(Item(f, None, [Box((0, 0, size, size), "face")], 640, 360, f"snip{v:02d}"), f"x/{v}/{f}.png"))
    return Dataset(tmp_path, samples)


def test_paper_split_by_video_stratified_seeded(tmp_path):
    ds = _video_dataset(tmp_path)
    keys = {v: {"lighting": ["dim", "bright"][i % 2]} for i, v in enumerate(ds.videos)}
    a = make_split(ds, keys=keys, seed=3)
    sets = a["sets"]
    assert [len(sets[k]) for k in ("train", "val", "test")] == [31, 12, 14]
    assert sorted(sets["train"] + sets["val"] + sets["test"]) == sorted(ds.videos)  # each video once
    assert make_split(ds, keys=keys, seed=3)["sets"] == sets and make_split(ds, keys=keys, seed=4)["sets"] != sets
    # every stratum is spread close to 31:12:14
    for stratum in set(a["strata"].values()):
        members = [v for v, s in a["strata"].items() if s == stratum]
        for name, share in (("train", 31 / 57), ("val", 12 / 57), ("test", 14 / 57)):
            got = sum(v in sets[name] for v in members)
            assert abs(got - share * len(members)) <= 1.5, (stratum, name, got, len(members))
    assert set(face_scale(ds).values()) <= {"<20", "20-40", "40-80", ">=80"}


def test_split_cli_writes_and_train_reads(tmp_path, capsys):
    ds = _video_dataset(tmp_path / "d", n_videos=10)
    ds.save()
    csv = tmp_path / "keys.csv"
    csv.write_text("video,team\n" + "".join(f"{v},{i % 3}\n" for i, v in enumerate(ds.videos)))
    assert main(["dataset", "split", str(ds.root), "--ratios", "6,2,2", "--keys", str(csv), "--seed", "1"]) == 0
    sets = read_split(ds.root / "split.json", ds)
    assert [len(sets[k]) for k in ("train", "val", "test")] == [6, 2, 2]
    data = json.loads((ds.root / "split.json").read_text())
    assert data["keys"] == ["team", "face_scale"] and data["seed"] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("video,team\nsnip00,1\n")
    assert main(["dataset", "split", str(ds.root), "--keys", str(bad), "--out", str(tmp_path / "other.json")]) == 1
    assert "no row for video" in capsys.readouterr().err


def test_split_and_import_never_replace_a_file(tmp_path, capsys):
    """``split --out DATASET/dataset.json`` wrote the split over the manifest (the dataset was
    gone), ``--out faces.xml`` over the annotations, a rerun over split.json; ``import --out``
    into a dataset replaced its manifest (extracted videos dropped); ``--ratios nan,1,1`` was an
    internal error. Each is one line now, and nothing changes."""
    ds = _video_dataset(tmp_path / "d", n_videos=10)
    ds.save()
    manifest = (ds.root / "dataset.json").read_bytes()
    xml = tmp_path / "faces.xml"
    xml.write_text("<dataset><images><image file='p.png'><box top='1' left='1' width='2' height='3'/></image>"
                   "</images></dataset>")
    (tmp_path / "p.png").write_bytes(b"")
    assert main(["dataset", "split", str(ds.root), "--ratios", "6,2,2"]) == 0
    split = (ds.root / "split.json").read_bytes()
    capsys.readouterr()
    for argv, words in [(["split", str(ds.root), "--out", str(ds.root / "dataset.json")], "exists; existing files"),
                        (["split", str(ds.root), "--out", str(xml)], "exists; existing files"),
                        (["split", str(ds.root), "--ratios", "2,1,1"], "remove it first (an earlier split)"),
                        (["split", str(ds.root), "--ratios", "nan,1,1", "--out", str(tmp_path / "s.json")],
                         "must be three non-negative numbers"),
                        (["split", str(ds.root), "--ratios", "1e400,1,1", "--out", str(tmp_path / "s.json")],
                         "must be three non-negative numbers"),
                        (["import", str(xml), "--out", str(ds.root)], "is already a dataset folder")]:
        assert main(["dataset", *argv]) == 1
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1 and "internal error" not in err, (argv, err)
    assert (ds.root / "dataset.json").read_bytes() == manifest and (ds.root / "split.json").read_bytes() == split
    assert xml.read_text().startswith("<dataset>") and not (tmp_path / "s.json").exists()


def test_split_videos_exact_counts():
    strata = {f"v{i}": "a" if i < 40 else "b" for i in range(57)}
    out = split_videos(strata, (31, 12, 14), seed=0)
    assert [len(out[k]) for k in ("train", "val", "test")] == [31, 12, 14]
    with pytest.raises(DatasetError):
        split_videos(strata, (1, 2))
