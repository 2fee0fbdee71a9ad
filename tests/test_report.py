"""PDF report: every field survives a real text extraction (pypdf), thumbnails and BIS chart, stored encrypted."""

from __future__ import annotations

import io
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
