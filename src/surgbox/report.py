"""The per-event PDF report (fpdf2): case data, snapshot thumbnails, BIS trend chart, files.

:func:`render_report` is pure: it turns a :class:`ReportData` into PDF bytes and touches no
disk (the event manager reads snapshots and data tracks from the encrypted store and stores the
PDF there again, see :meth:`surgbox.catalog.events.EventManager.make_report`).

Text is set in DejaVu Sans, shipped with surgbox (:mod:`surgbox.fonts`, Bitstream Vera license), so
every script DejaVu covers prints correctly; if the font files are missing the report falls back
to the PDF core font Helvetica and replaces characters outside Latin-1 with ``?`` (logged).
Times are printed in the machine's local time zone with its UTC offset.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from . import fonts
from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .catalog.events import Event

log = logging.getLogger(__name__)

FONT_DIRS = fonts.FONT_DIRS  # where the report's faces are looked up (the bundled ones first)
MAX_THUMBNAILS = 12
_THUMB_PX = 480


@attrs.frozen
class ReportData:
    """What a report shows: the ``event`` (PHI decrypted), snapshot images as ``(name, encoded
    bytes)`` (JPEG/PNG), and the BIS series as ``[(t seconds from recording start, value or None)]``."""

    event: Event
    snapshots: Sequence[tuple[str, bytes]] = ()
    bis: Sequence[tuple[float, float | None]] = ()
    generated_at: datetime | None = None


def fmt_time(when: datetime | None) -> str:
    """How the report prints a time: local, to the second, with the UTC offset."""
    if when is None:
        return "-"
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S (UTC%z)")


def fmt_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _font_paths() -> dict[str, Path] | None:
    """DejaVu Sans regular (``""``) and bold (``"B"``) from :data:`FONT_DIRS`, or ``None``."""
    paths = {"": fonts.font_path(dirs=FONT_DIRS), "B": fonts.font_path(bold=True, dirs=FONT_DIRS)}
    if any(p is None for p in paths.values()):
        return None
    return paths  # type: ignore[return-value]


def _duration(ev: Event) -> str:
    if ev.started_at is None or ev.finished_at is None:
        return "-"
    s = int((ev.finished_at - ev.started_at).total_seconds())
    return f"{s // 3600:d} h {s % 3600 // 60:02d} min {s % 60:02d} s"


def _new_pdf(event_id: str) -> tuple[Any, str, bool]:
    from fpdf import FPDF

    class _Report(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font(self.font_family, size=7)
            self.set_text_color(110)
            self.cell(0, 5, f"surgbox {__version__} - event {event_id} - page {self.page_no()}/{{nb}}", align="C")

    pdf = _Report(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.set_margins(12, 12, 12)
    fonts = _font_paths()
    if fonts is not None:
        for style, path in fonts.items():
            pdf.add_font("DejaVu", style, str(path))
        return pdf, "DejaVu", True
    log.warning("DejaVu Sans not found in %s; the report uses Helvetica (Latin-1 only)",
                ", ".join(str(d) for d in FONT_DIRS))
    return pdf, "helvetica", False


def render_report(data: ReportData) -> bytes:
    """The report as PDF bytes (A4): header, case table, snapshots, BIS chart (when there are BIS
    values), files with SHA-256 checksums."""
    ev = data.event
    pdf, family, unicode_ok = _new_pdf(ev.id)

    def t(text: str) -> str:
        return text if unicode_ok else text.encode("latin-1", "replace").decode("latin-1")

    generated = data.generated_at or datetime.now(timezone.utc)
    pdf.set_title(f"Surgical event report {ev.id}")
    pdf.set_creator(f"surgbox {__version__}")
    pdf.set_creation_date(generated)
    pdf.add_page()
    pdf.set_font(family, "B", 16)
    pdf.cell(0, 9, t("Surgical event report"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, "", 9)
    pdf.set_text_color(90)
    pdf.cell(0, 5, t(f"Event {ev.id} - generated {fmt_time(generated)}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0)
    pdf.ln(3)

    rows = [
        ("Event ID", ev.id),
        ("Status", ev.status),
        ("Start", fmt_time(ev.started_at)),
        ("Finish", fmt_time(ev.finished_at)),
        ("Duration", _duration(ev)),
        ("Place", ev.place or "-"),
        ("Medical record", ev.medical_record),
        ("Procedure", ev.procedure),
        ("Patient", ev.patient),
        ("Physicians", "; ".join(ev.physicians) or "-"),
        ("Created", f"{fmt_time(ev.created_at)} by {ev.created_by or '-'}"),
    ]
    if ev.notes:
        rows.append(("Notes", ev.notes))
    pdf.set_font(family, "", 10)
    with pdf.table(col_widths=(38, 148), first_row_as_headings=False, line_height=6,
                   borders_layout="HORIZONTAL_LINES") as table:
        for label, value in rows:
            r = table.row()
            r.cell(t(label), style=_bold(family))
            r.cell(t(value))

    if data.snapshots:
        _section(pdf, family, t(f"Snapshots ({len(data.snapshots)})"))
        _thumbnails(pdf, family, data.snapshots[:MAX_THUMBNAILS], t)
    values = [(x, y) for x, y in data.bis if y is not None and math.isfinite(y)]
    if values:
        _section(pdf, family, "BIS trend")
        _bis_chart(pdf, family, data.bis)

    _section(pdf, family, f"Files ({len(ev.files)})")
    if ev.files:
        pdf.set_font(family, "", 7)
        with pdf.table(col_widths=(15, 52, 17, 102), line_height=4.5, borders_layout="HORIZONTAL_LINES",
                       headings_style=_bold(family, 7)) as table:
            head = table.row()
            for h in ("Kind", "Name", "Size", "SHA-256 (plaintext)"):
                head.cell(h)
            for f in ev.files:
                r = table.row()
                r.cell(f.kind)
                r.cell(t(f.name))
                r.cell(fmt_size(f.size))
                r.cell(f.sha256)
    else:
        pdf.set_font(family, "", 9)
        pdf.cell(0, 6, "No files.", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _bold(family: str, size: float | None = None) -> Any:
    from fpdf.fonts import FontFace

    return FontFace(family=family, emphasis="BOLD", size_pt=size)


def _section(pdf: Any, family: str, title: str) -> None:
    pdf.ln(4)
    if pdf.get_y() > pdf.h - 40:
        pdf.add_page()
    pdf.set_font(family, "B", 12)
    pdf.cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_draw_color(160)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(2)


def _thumbnails(pdf: Any, family: str, snapshots: Sequence[tuple[str, bytes]], t: Any) -> None:
    from PIL import Image, UnidentifiedImageError

    cols, gap = 3, 4.0
    width = (pdf.w - pdf.l_margin - pdf.r_margin - gap * (cols - 1)) / cols
    height = width * 9 / 16
    for i, (name, blob) in enumerate(snapshots):
        col = i % cols
        if col == 0:
            if pdf.get_y() + height + 8 > pdf.h - pdf.b_margin:
                pdf.add_page()
            top = pdf.get_y()
        x = pdf.l_margin + col * (width + gap)
        try:
            with Image.open(io.BytesIO(blob)) as im:
                im = im.convert("RGB")
                im.thumbnail((_THUMB_PX, _THUMB_PX))
                scale = min(width / im.width, height / im.height)
                w, h = im.width * scale, im.height * scale
                pdf.image(im, x=x + (width - w) / 2, y=top + (height - h) / 2, w=w, h=h)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            log.warning("snapshot %s is not a readable image (%s); left out of the report", name, exc)
            pdf.set_xy(x, top + height / 2)
            pdf.set_font(family, "", 7)
            pdf.cell(width, 4, t(f"({name}: unreadable image)"), align="C")
        pdf.set_font(family, "", 7)
        pdf.set_xy(x, top + height + 0.5)
        pdf.cell(width, 4, t(name), align="C")
        if col == cols - 1 or i == len(snapshots) - 1:
            pdf.set_xy(pdf.l_margin, top + height + 6)


def _nice_step(span: float, target: int = 6) -> float:
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag  # pragma: no cover


def _bis_chart(pdf: Any, family: str, series: Sequence[tuple[float, float | None]]) -> None:
    """BIS (0-100) against minutes since the recording started; gaps where the monitor sent no value;
    the usual general-anaesthesia target band 40-60 shaded."""
    height, left_pad, bottom_pad = 55.0, 10.0, 8.0
    if pdf.get_y() + height + bottom_pad > pdf.h - pdf.b_margin:
        pdf.add_page()
    x0, y0 = pdf.l_margin + left_pad, pdf.get_y() + 2
    w = pdf.w - pdf.r_margin - x0
    h = height
    ts = [p[0] for p in series]
    t_lo, t_hi = min(ts) / 60, max(ts) / 60
    if t_hi - t_lo < 1e-6:
        t_hi = t_lo + 1
    X = lambda m: x0 + (m - t_lo) / (t_hi - t_lo) * w  # noqa: E731
    Y = lambda v: y0 + h - max(0.0, min(100.0, v)) / 100 * h  # noqa: E731
    pdf.set_fill_color(225, 242, 225)
    pdf.rect(x0, Y(60), w, Y(40) - Y(60), style="F")
    pdf.set_font(family, "", 7)
    pdf.set_draw_color(200)
    pdf.set_line_width(0.1)
    for v in range(0, 101, 20):
        pdf.line(x0, Y(v), x0 + w, Y(v))
        pdf.set_xy(x0 - left_pad, Y(v) - 2)
        pdf.cell(left_pad - 1, 4, str(v), align="R")
    step = _nice_step(t_hi - t_lo)
    m = math.ceil(t_lo / step) * step
    while m <= t_hi + 1e-9:
        pdf.line(X(m), y0, X(m), y0 + h)
        pdf.set_xy(X(m) - 8, y0 + h + 0.5)
        pdf.cell(16, 4, f"{m:g}", align="C")
        m += step
    pdf.set_xy(x0, y0 + h + 4)
    pdf.cell(w, 4, "minutes since recording start (shaded: BIS 40-60)", align="C")
    pdf.set_draw_color(0)
    pdf.set_line_width(0.25)
    pdf.rect(x0, y0, w, h)
    pdf.set_draw_color(30, 80, 200)
    pdf.set_line_width(0.4)
    run: list[tuple[float, float]] = []

    def flush() -> None:
        if len(run) == 1:
            pdf.circle(run[0][0], run[0][1], 0.4, style="F")
        elif run:
            pdf.polyline(run)
        run.clear()

    for sec, v in series:
        if v is None or not math.isfinite(v):
            flush()
        else:
            run.append((X(sec / 60), Y(v)))
    flush()
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0)
    pdf.set_y(y0 + h + bottom_pad + 2)
