"""PDF report: every field survives a real text extraction (pypdf), thumbnails and BIS chart, stored encrypted."""

from __future__ import annotations

import io
import re
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("fpdf")
from pypdf import PdfReader  # noqa: E402

from surgbox.catalog import Catalog  # noqa: E402
from surgbox.catalog.events import Event, FileRecord  # noqa: E402
from surgbox.report import ReportData, fmt_time, render_report  # noqa: E402

START = datetime(2026, 4, 2, 7, 45, 12, tzinfo=timezone.utc)


def jpeg(color) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 180), color).save(buf, "JPEG")
    return buf.getvalue()


def event(**kw) -> Event:
    files = [FileRecord(1, "ev-20260402-0badcafe", "segment", "segment-0001.mp4", "events/x/segment-0001.mp4",
                        123456789, "ab" * 32, "0123456789abcdef"),
             FileRecord(2, "ev-20260402-0badcafe", "snapshot", "snap-0001.jpg", "events/x/snap-0001.jpg", 2048,
                        "cd" * 32, "0123456789abcdef")]
    fields = dict(id="ev-20260402-0badcafe", status="stopped", created_at=START - timedelta(minutes=5),
                  place="OR 4 (east wing)", procedure="Laparoscopic cholecystectomy", patient="Łukasz Żółć-Ngata",
                  medical_record="MRN-0099-Z", physicians=("Dr. Siobhán O'Brien", "Dr. Kenji Watanabe"),
                  notes="Converted to open at 40 min", started_at=START, finished_at=START + timedelta(minutes=95),
                  created_by="operator1", files=files)
    fields.update(kw)
    return Event(**fields)


def text_of(pdf: bytes) -> tuple[str, PdfReader]:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(p.extract_text() for p in reader.pages), reader


def test_every_field_is_in_the_extracted_text():
    ev = event()
    bis = [(t * 10.0, 40 + (t % 30)) for t in range(200)] + [(2000.0, None), (2010.0, 55.0)]
    pdf = render_report(ReportData(ev, [("snap-0001.jpg", jpeg((200, 0, 0))), ("snap-0002.jpg", jpeg((0, 90, 200)))], bis))
    text, reader = text_of(pdf)
    flat = " ".join(text.split())
    for value in (ev.id, ev.place, ev.procedure, ev.patient, ev.medical_record, *ev.physicians, ev.notes,
                  fmt_time(ev.started_at), fmt_time(ev.finished_at), "1 h 35 min 00 s", "ab" * 32, "cd" * 32,
                  "segment-0001.mp4", "snap-0001.jpg", "snap-0002.jpg", "BIS trend", "117.7 MiB"):
        assert value in flat, value
    images = sum(len(p.images) for p in reader.pages)
    assert images == 2
    assert reader.metadata.title == f"Surgical event report {ev.id}"


def test_no_chart_without_bis_values_and_unreadable_snapshot_is_noted():
    pdf = render_report(ReportData(event(files=()), [("bad.jpg", b"not an image")], [(0.0, None), (1.0, None)]))
    text, reader = text_of(pdf)
    assert "BIS trend" not in text and "bad.jpg: unreadable image" in text and "No files." in text
    assert sum(len(p.images) for p in reader.pages) == 0


def test_fallback_core_font_when_dejavu_is_missing(monkeypatch, tmp_path, caplog):
    import surgbox.report as report

    monkeypatch.setattr(report, "FONT_DIRS", (tmp_path,))
    pdf = render_report(ReportData(event(patient="José Ñúñez", physicians=("Dr. 王",))))
    text, _ = text_of(pdf)
    assert "José Ñúñez" in text and "Dr. ?" in text
    assert "Helvetica" in caplog.text


def test_report_cli_end_to_end_with_snapshots_and_data_track(surgbox_home, tmp_path):
    from surgbox.readings import DataTrackWriter
    from surgbox.types import Reading

    track = tmp_path / "rec.data.jsonl"
    with DataTrackWriter.open(track, start_ns=0) as w:
        for i in range(120):
            w.write(Reading("bis", i * 5_000_000_000, "bis", {"BIS": None if 50 <= i < 55 else 45.0 + i % 20, "SQI": 90.0}))
    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        ev = s.events.create(patient="Amélie Kowalczyk", medical_record="MRN-5150", procedure="Thyroidectomy",
                             physicians=["Dr. Priya Raman"], place="OR 7")
        s.events.start_event(ev.id)
        s.events.write_file(ev.id, "snapshot", "snap-0001.jpg", jpeg((10, 200, 10)))
        s.events.write_file(ev.id, "data", "rec.data.jsonl", track.read_bytes())
        ev = s.events.stop_event(ev.id)
    out_pdf = tmp_path / "report.pdf"
    env = {**os.environ, "SURGBOX_USER": "admin", "SURGBOX_PASSWORD": "admin-password"}
    out = subprocess.run([sys.executable, "-m", "surgbox", "report", ev.id, "--out", str(out_pdf)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    # written atomically (no temporary file left) and readable by the owner only: it holds PHI
    assert [q.name for q in tmp_path.iterdir() if q.name.startswith(".")] == []
    assert out_pdf.stat().st_mode & 0o777 == 0o600
    text, reader = text_of(out_pdf.read_bytes())
    flat = " ".join(text.split())
    for value in (ev.id, "Amélie Kowalczyk", "MRN-5150", "Thyroidectomy", "Dr. Priya Raman", "OR 7",
                  fmt_time(ev.started_at), fmt_time(ev.finished_at), "BIS trend", "rec.data.jsonl", "snap-0001.jpg"):
        assert value in flat, value
    for f in ev.files:
        assert f.sha256 in flat
    assert sum(len(p.images) for p in reader.pages) == 1
    # issue 20.8: the report on demand replaced the one made on stop (was: both kept); both stay audited
    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        reports = [f for f in s.events.get(ev.id).files if f.kind == "report"]
        assert len(reports) == 1
        added = [r for r in cat.audit.records(action="file.add", target=ev.id) if r.detail["kind"] == "report"]
        replaced = [r for r in cat.audit.records(action="file.delete", target=ev.id) if r.detail["kind"] == "report"]
        assert len(added) == 2 and [r.detail["file_id"] for r in replaced] == [added[0].detail["file_id"]]
        with s.events.open_file(ev.id, reports[-1].name) as f:
            assert f.read() == out_pdf.read_bytes()
    # --out needs the export permission; inside SURGBOX_HOME is refused
    out = subprocess.run([sys.executable, "-m", "surgbox", "report", ev.id, "--out", str(surgbox_home.path / "r.pdf")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1 and "inside SURGBOX_HOME" in out.stderr


# ---- issue 18.15: long texts, every script, and a stop that never fails because of the report ----

def squash(text: str) -> str:
    """``text`` without white space and without the page footers (text that runs across pages)."""
    return "".join(re.sub(r"surgbox \S+ - event \S+ - page \d+/\d+", "", text).split())


def test_long_notes_and_very_long_fields_wrap_and_paginate():
    notes = " ".join(f"note{i} intraoperative finding, irrigation and haemostasis checked" for i in range(70))  # ~4.6k
    assert len(notes) > 4000
    long_word = "Extraordinarily" * 60  # 900 characters without a space
    ev = event(notes=notes, procedure=f"Cholecystectomy {long_word}", place="OR " + "west wing annex " * 20)
    pdf = render_report(ReportData(ev, [("snap-0001.jpg", jpeg((200, 0, 0)))], [(0.0, 50.0), (60.0, 55.0)]))
    text, reader = text_of(pdf)
    assert len(reader.pages) >= 2
    flat = squash(text)
    for value in (notes, long_word, ev.place, ev.patient, "ab" * 32):
        assert squash(value) in flat, value[:40]


def test_cjk_and_emoji_are_printed_never_dropped():
    import surgbox.report as report

    ev = event(patient="王小明 (Wang Xiaoming) 😀", physicians=("Dr. 佐藤 健", "Dr. Ωmega ✓"))
    text, _ = text_of(render_report(ReportData(ev)))
    have = {name for name, paths in report.FALLBACK_FONTS if any(p.is_file() for p in paths)}
    cjk = "王小明" if "DroidFallback" in have else "[U+738B]"
    emoji = "😀" if have & {"NotoColorEmoji", "Symbola"} else "[U+1F600]"
    for value in (cjk, emoji, "Ωmega", "Wang Xiaoming"):
        assert value in text, (value, text[:400])


def test_a_glyph_no_font_has_is_printed_as_its_code_point(monkeypatch):
    import surgbox.report as report

    monkeypatch.setattr(report, "FALLBACK_FONTS", ())  # only DejaVu: no CJK glyphs
    text, _ = text_of(render_report(ReportData(event(patient="王小明"))))
    assert "[U+738B][U+5C0F][U+660E]" in text


def test_file_names_break_after_separators_and_a_short_event_fits_one_page():
    names = ["segment-0001.mp4.snapshot-0001-composite.png", "segment-0001.mp4.snapshot-0012-room_camera_left.png",
             "segment-0001.mp4.data.jsonl", "deid-segment-0001-retinaface-threshold-0.3.mp4"]
    files = [FileRecord(i, "ev-20260402-0badcafe", "snapshot", n, f"events/x/{i}", 1000 + i, f"{i:02d}" * 32, "k")
             for i, n in enumerate(names)]
    pdf = render_report(ReportData(event(files=files), [("snap-0001.jpg", jpeg((0, 90, 200)))],
                                   [(t * 10.0, 45.0 + t % 10) for t in range(60)]))
    text, reader = text_of(pdf)
    joined = re.sub(r"(?<=[-_./])[ \n]", "", text)  # a table cell's lines come out joined by a space
    for n in names:
        assert n in joined, (n, text)
    assert not re.search(r"composite\.pn\b|0\. 3\.mp4|[a-z] [a-z]+\.png", text), text
    assert len(reader.pages) == 1  # no near-empty second page for a short event


def test_duration_shows_recorded_video_and_event_time_labelled():
    flat = " ".join(text_of(render_report(ReportData(event(), video_seconds=3.4, video_files=1)))[0].split())
    assert "Event time 1 h 35 min 00 s (start to stop)" in flat
    assert "Recorded video 0 h 00 min 03 s in 1 file" in flat
    flat = " ".join(text_of(render_report(ReportData(event(files=()))))[0].split())
    assert "Recorded video - (no recording)" in flat


def test_video_seconds_are_measured_from_the_packets(tmp_path):
    import av
    import numpy as np

    from surgbox.catalog.reports import video_seconds

    path = tmp_path / "v.mp4"
    with av.open(str(path), "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(50):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with open(path, "rb") as f:
        assert video_seconds(f) == pytest.approx(2.0, abs=0.05)
    with open(tmp_path / "x", "wb+") as f:
        f.write(b"not a video")
        f.seek(0)
        assert video_seconds(f) is None


def test_stop_holds_when_the_report_fails_and_report_id_retries(surgbox_home, tmp_path):
    """The store's disk goes away between start and stop: the stop holds, the failure is kept with
    the event and shown, and `surgbox report ID` makes the report once the disk is back."""
    import shutil

    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        ev = s.events.create(patient="Pat Example", medical_record="MRN-1", procedure="Biopsy")
        s.events.start_event(ev.id)
    root, away = surgbox_home.default_store_root, tmp_path / "unmounted"
    shutil.move(str(root), str(away))
    env = {**os.environ, "SURGBOX_USER": "admin", "SURGBOX_PASSWORD": "admin-password"}
    out = subprocess.run([sys.executable, "-m", "surgbox", "events", "stop", ev.id], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "the PDF report could not be made" in out.stderr and f"surgbox report {ev.id}" in out.stderr
    show = subprocess.run([sys.executable, "-m", "surgbox", "events", "show", ev.id], capture_output=True, text=True,
                          env=env, timeout=120)
    assert "FAILED" in show.stdout and "missing" in show.stdout, show.stdout
    shutil.move(str(away), str(root))
    out = subprocess.run([sys.executable, "-m", "surgbox", "report", ev.id], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    with Catalog(surgbox_home) as cat:
        got = cat.login("admin", "admin-password").events.get(ev.id)
        assert got.status == "stopped" and got.report_error is None
        assert [f.kind for f in got.files] == ["report"]
        assert [r.result for r in cat.audit.records(action="report.create", target=ev.id)] == ["failed"]


# ---- issue 20.6: faces of de-identified sources are blurred in the report's snapshots -------------

def synthetic_face(size=(640, 360), center=(320, 180), r=110):
    """A drawn face (no real person) that the RetinaFace detector finds with a high score."""
    from PIL import Image, ImageDraw, ImageFilter

    img = Image.new("RGB", size, (70, 90, 110))
    d = ImageDraw.Draw(img)
    cx, cy = center
    d.ellipse([cx - r * 0.8, cy - r, cx + r * 0.8, cy + r], fill=(224, 182, 150))
    d.ellipse([cx - r * 0.85, cy - r * 1.05, cx + r * 0.85, cy - r * 0.35], fill=(60, 40, 25))
    for ex in (-0.33, 0.33):
        e = r / 110
        d.ellipse([cx + ex * r - 16 * e, cy - r * 0.15 - 9 * e, cx + ex * r + 16 * e, cy - r * 0.15 + 9 * e], fill=(250, 250, 250))
        d.ellipse([cx + ex * r - 7 * e, cy - r * 0.15 - 7 * e, cx + ex * r + 7 * e, cy - r * 0.15 + 7 * e], fill=(50, 30, 20))
        d.line([cx + ex * r - 20 * e, cy - r * 0.32, cx + ex * r + 20 * e, cy - r * 0.34], fill=(60, 40, 25), width=max(1, int(5 * e)))
    d.polygon([(cx, cy - r * 0.05), (cx - 12 * r / 110, cy + r * 0.25), (cx + 12 * r / 110, cy + r * 0.25)], fill=(200, 150, 120))
    d.chord([cx - 38 * r / 110, cy + r * 0.35, cx + 38 * r / 110, cy + r * 0.62], 0, 180, fill=(170, 70, 70))
    return img.filter(ImageFilter.GaussianBlur(2))


def png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def faces_found():
    """Faces the real detector finds in an image (bytes or PIL), at the de-identification
    threshold — counting, for a detector with hysteresis (the default ensemble), only confident
    detections (score >= its ``confirm_score``): its low candidates (0.1) are not a face by
    themselves, and a blurred face still scores there."""
    import numpy as np
    from PIL import Image

    from surgbox.deid import defaults
    from surgbox.plugins import get_plugins

    det = get_plugins().create("detector", defaults.DETECTOR, **defaults.detector_options(defaults.DETECTOR))
    det.open()

    def found(image, box=None) -> int:
        im = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
        im = im.convert("RGB")
        if box is not None:
            im = im.crop(box)
        scores = det.detect([np.asarray(im)])[0].scores
        return int((scores >= (getattr(det, "confirm_score", None) or 0.0)).sum())

    yield found
    det.close()


def deid_event(home, snapshots, sidecar=True, config=None):
    """An event with ``snapshots`` ({name: PIL image}) and, with ``sidecar``, the paper layout's
    recording sidecar; returns its ReportData as the catalog builds it."""
    import json

    from surgbox import layouts
    from surgbox.catalog.reports import report_data

    if config is not None:
        home.config_path.write_text(home.config_path.read_text().split("[report]")[0] + "[report]\n" + config)
    with Catalog(home) as cat:
        s = cat.login("admin", "admin-password")
        ev = s.events.create(patient="Pat Example", medical_record="MRN-1", procedure="Biopsy")
        for name, img in snapshots.items():
            s.events.write_file(ev.id, "snapshot", name, png(img))
        if sidecar:
            side = {"layout": layouts.paper().to_dict(), "status": "complete", "duration_s": 2.0}
            s.events.write_file(ev.id, "data", "segment-0001.mp4.json", json.dumps(side).encode())
        ev = s.events.get(ev.id)
        with s.events._files(ev.id) as files:
            data = report_data(ev, files, cat.home.report_settings())
        pdf = s.events.report_pdf(ev.id)
    return dict(data.snapshots), data.snapshot_notes, pdf


def test_room_camera_snapshots_are_blurred_and_other_sources_kept(surgbox_home, faces_found):
    from PIL import Image

    face = synthetic_face()
    composite = Image.new("RGB", (1920, 1080), (20, 20, 20))
    composite.paste(synthetic_face((1280, 720), (640, 360), 200), (0, 0))  # a face on the endoscope (a poster)
    composite.paste(face, (1280, 0))  # the room camera slot
    assert faces_found(face) == 1 and faces_found(composite, (1280, 0, 1920, 360)) == 1
    snaps, notes, pdf = deid_event(surgbox_home, {
        "segment-0001.mp4.snapshot-0001-room.png": face,
        "segment-0001.mp4.snapshot-0001-endoscope.png": face,
        "segment-0001.mp4.snapshot-0001-composite.png": composite,
    })
    assert faces_found(snaps["segment-0001.mp4.snapshot-0001-room.png"]) == 0
    assert notes["segment-0001.mp4.snapshot-0001-room.png"] == "faces blurred (1)"
    assert snaps["segment-0001.mp4.snapshot-0001-endoscope.png"] == png(face)  # not a de-identified source
    blurred = Image.open(io.BytesIO(snaps["segment-0001.mp4.snapshot-0001-composite.png"]))
    assert faces_found(blurred, (1280, 0, 1920, 360)) == 0
    assert blurred.crop((0, 0, 1280, 720)).tobytes() == composite.crop((0, 0, 1280, 720)).tobytes()
    text, reader = text_of(pdf)
    assert "faces blurred (1)" in text and "room_camera" in text
    embedded = [im.image for p in reader.pages for im in p.images]
    assert len(embedded) == 3 and sum(faces_found(im) for im in embedded) == 2  # the endoscope face, twice


def test_snapshots_of_unknown_origin_are_searched_whole_and_a_missing_detector_hides_them(surgbox_home, faces_found):
    face = synthetic_face()
    snaps, notes, _ = deid_event(surgbox_home, {"photo-from-a-phone.png": face}, sidecar=False)
    assert faces_found(snaps["photo-from-a-phone.png"]) == 0 and notes["photo-from-a-phone.png"] == "faces blurred (1)"
    snaps, notes, _ = deid_event(surgbox_home, {"segment-0001.mp4.snapshot-0001-room.png": face},
                                 config='deidentify = ["room_camera"]\ndetector = "no-such-detector"\n')
    assert notes["segment-0001.mp4.snapshot-0001-room.png"] == "de-identification unavailable: hidden"
    assert faces_found(snaps["segment-0001.mp4.snapshot-0001-room.png"]) == 0  # fail closed
    snaps, notes, _ = deid_event(surgbox_home, {"segment-0001.mp4.snapshot-0001-room.png": face}, config="deidentify = []\n")
    assert snaps["segment-0001.mp4.snapshot-0001-room.png"] == png(face) and not notes


def test_real_face_photos_are_blurred_in_report_snapshots(surgbox_home, shared_dir):
    """Every hand-labelled face of the shared photos (dlib's training.xml, 18 boxes) is found and
    blurred: afterwards the detector finds no face on any of them (no detection overlapping a
    labelled box by IoU >= 0.3 with a score >= 0.5, the picture scanned at 3x), while pixels far
    from every face are kept."""
    import re as _re

    import numpy as np
    from PIL import Image

    from surgbox.metrics import iou_matrix
    from surgbox.plugins import get_plugins

    folder = shared_dir / "data" / "faces"
    xml = (folder / "training.xml").read_text(encoding="iso-8859-1")
    labels = {m[1]: [tuple(int(v) for v in b) for b in _re.findall(r"top='(\d+)' left='(\d+)' width='(\d+)' height='(\d+)'", m[2])]
              for m in _re.finditer(r"<image file='([^']+)'[^>]*>(.*?)</image>", xml, _re.S)}
    originals = {f"segment-0001.mp4.snapshot-{i + 1:04d}-room.png": (Image.open(folder / f).convert("RGB"), boxes)
                 for i, (f, boxes) in enumerate(sorted(labels.items()))}
    assert sum(len(b) for _, b in originals.values()) == 18
    snaps, notes, _ = deid_event(surgbox_home, {k: im for k, (im, _) in originals.items()})
    # the re-detection oracle is RetinaFace, as when this test was written: CenterFace (in the
    # default ensemble since issue 11) still finds 1 of the 18 faces after the snapshot blur at
    # 3x (score >= 0.5), reported as an open point for the blur strength
    det = get_plugins().create("detector", "retinaface", threshold=0.5)
    det.open()
    try:
        for name, (im, boxes) in originals.items():
            after = Image.open(io.BytesIO(snaps[name])).convert("RGB")
            for pic, want in ((im, True), (after, False)):
                big = pic.resize((pic.width * 3, pic.height * 3), Image.BICUBIC)
                found = det.detect([np.asarray(big)])[0].boxes / 3
                for top, left, w, h in boxes:
                    hit = bool(len(found) and iou_matrix(found, [left, top, left + w, top + h]).max() >= 0.3)
                    assert hit is want, (name, (left, top, w, h), "original" if want else "report", notes[name])
            assert after.crop((0, 0, 30, 30)).tobytes() == im.crop((0, 0, 30, 30)).tobytes()
    finally:
        det.close()


@pytest.mark.parametrize("value", ["5", '"room_camera"', "{ a = 1 }"])
def test_report_deidentify_that_is_not_a_list_is_one_line(value):
    from surgbox.catalog.snapshots import SnapshotPolicy
    from surgbox.errors import ConfigError

    import tomllib

    settings = tomllib.loads(f"deidentify = {value}")
    with pytest.raises(ConfigError, match=r"\[report\] deidentify must be a list"):  # 5 was a TypeError
        SnapshotPolicy.from_settings(settings)
