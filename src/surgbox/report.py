"""The per-event PDF report (fpdf2): case data, notes, snapshot thumbnails, BIS trend chart, files.

:func:`render_report` is pure: it turns a :class:`ReportData` into PDF bytes and touches no
disk (the catalog reads snapshots and data tracks from the encrypted store, hides faces in
snapshots, and stores the PDF there again: :mod:`surgbox.catalog.reports`).

Text: DejaVu Sans, shipped with surgbox (:mod:`surgbox.fonts`, Bitstream Vera license), with a
fall-back font per glyph for what DejaVu lacks, when installed (:data:`FALLBACK_FONTS`): CJK
from Droid Sans Fallback (Debian ``fonts-droid-fallback``, Apache 2.0), emoji from Noto Color
Emoji (``fonts-noto-color-emoji``, OFL 1.1), other symbols from Symbola (``fonts-symbola``, free
for any use). Only the glyphs used are embedded. A character no font has is printed as
``[U+XXXX]``, never dropped. Without DejaVu the report uses the PDF core font Helvetica (Latin-1;
other characters as ``[U+XXXX]``, logged). Long texts wrap and continue on the next pages; file
names break after ``.``, ``-`` or ``_`` rather than inside a word. Times are printed in the
machine's local time zone with its UTC offset.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs

from . import fonts
from ._version import __version__

log = logging.getLogger(__name__)

FONT_DIRS = fonts.FONT_DIRS  # where the report's faces are looked up (the bundled ones first)
#: Per-glyph fall-back fonts, in order; the first existing file of each entry is used.
FALLBACK_FONTS: tuple[tuple[str, tuple[Path, ...]], ...] = (
    ("DroidFallback", (Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
                       Path("/usr/share/fonts/google-droid-sans-fonts/DroidSansFallbackFull.ttf"))),
    ("NotoColorEmoji", (Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),
                        Path("/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf"),
                        Path("/usr/share/fonts/noto/NotoColorEmoji.ttf"))),
    ("Symbola", (Path("/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf"),
                 Path("/usr/share/fonts/gdouros-symbola/Symbola.ttf"), Path("/usr/share/fonts/TTF/Symbola.ttf"))),
)
MAX_THUMBNAILS = 12
LONG_FIELD = 160  # characters: a longer case field is printed below the table, as a paragraph
_THUMB_PX = 480
_BREAK_AFTER = re.compile(r"(?<=[_\-/ ])|(?<=\.)(?!\d)|(?<=\D\.)")  # not inside a number such as 0.3


@attrs.frozen
class ReportData:
    """What a report shows.

    ``event``: a :class:`surgbox.catalog.Event` (PHI decrypted); ``snapshots``: ``(name, encoded
    image bytes)`` (JPEG/PNG), already de-identified where the policy says so; ``snapshot_notes``:
    a caption note per snapshot name (``"faces blurred (2)"``); ``bis``: ``[(t seconds from
    recording start, value or None)]``; ``video_seconds``: the recorded video time measured from
    the files (``None``: unknown), over ``video_files`` segment files; ``notices``: lines printed
    under the snapshots' heading (the de-identification policy)."""

    event: Any
    snapshots: Sequence[tuple[str, bytes]] = ()
    bis: Sequence[tuple[float, float | None]] = ()
    generated_at: datetime | None = None
    video_seconds: float | None = None
    video_files: int = 0
    snapshot_notes: Mapping[str, str] = attrs.field(factory=dict)
    notices: Sequence[str] = ()


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


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600:d} h {s % 3600 // 60:02d} min {s % 60:02d} s"


def _font_paths() -> dict[str, Path] | None:
    """DejaVu Sans regular (``""``), bold (``"B"``) and mono (``"M"``) from :data:`FONT_DIRS`, or ``None``."""
    paths = {"": fonts.font_path(dirs=FONT_DIRS), "B": fonts.font_path(bold=True, dirs=FONT_DIRS),
             "M": fonts.font_path(mono=True, dirs=FONT_DIRS)}
    if any(p is None for p in paths.values()):
        return None
    return paths  # type: ignore[return-value]


@functools.lru_cache(maxsize=16)
def _coverage(path: Path) -> frozenset[int]:
    """The code points a font file has glyphs for."""
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True) as f:
        return frozenset(f.getBestCmap() or ())


def _duration(ev: Any) -> str:
    if ev.started_at is None or ev.finished_at is None:
        return "-"
    return fmt_seconds((ev.finished_at - ev.started_at).total_seconds())


@attrs.define(eq=False)
class _Writer:
    """The PDF being drawn, its fonts and the text filter that keeps every character visible."""

    pdf: Any
    family: str
    covered: frozenset[int] | None  # None: core font, Latin-1 only
    mono: str
    missing: set[str] = attrs.field(factory=set)

    def t(self, text: str) -> str:
        out = []
        if self.covered is None:  # core font: Latin-1, the rest as '?' (logged once)
            return str(text).encode("latin-1", "replace").decode("latin-1")
        for ch in str(text):
            cp = ord(ch)
            ok = cp in self.covered or ch in "\n\t"
            if ok:
                out.append(ch)
            elif unicodedata.category(ch) in ("Cf", "Mn") and cp >= 0x200:  # joiners, variation selectors
                continue
            else:
                out.append(f"[U+{cp:04X}]")
                self.missing.add(ch)
        return "".join(out)

    def lines(self, text: str, width: float) -> str:
        """``text`` (a file name) with line breaks after ``-``, ``_``, ``/``, ``.`` or a space where a
        line would overflow ``width`` mm, never inside a word or before the name's extension."""
        parts, line, out = [p for p in _BREAK_AFTER.split(text) if p], "", []
        if len(parts) > 1 and parts[-2].endswith(".") and not re.search(r"[._\-/ ]", parts[-1]):
            parts[-2:] = [parts[-2] + parts[-1]]  # "room." + "png" stay together
        for part in parts:
            if line and self.pdf.get_string_width(line + part) > width:
                out.append(line)
                line = ""
            line += part
        out.append(line)
        return "\n".join(out)


def _new_pdf(event_id: str) -> _Writer:
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
    paths = _font_paths()
    if paths is None:
        log.warning("DejaVu Sans not found in %s; the report uses Helvetica (Latin-1 only)",
                    ", ".join(str(d) for d in FONT_DIRS))
        return _Writer(pdf, "helvetica", None, "courier")
    pdf.add_font("DejaVu", "", str(paths[""]))
    pdf.add_font("DejaVu", "B", str(paths["B"]))
    pdf.add_font("DejaVuMono", "", str(paths["M"]))
    covered = set(_coverage(paths[""]))
    fallbacks = []
    for name, candidates in FALLBACK_FONTS:
        path = next((p for p in candidates if p.is_file()), None)
        if path is not None:
            pdf.add_font(name, "", str(path))
            fallbacks.append(name)
            covered |= _coverage(path)
    if fallbacks:
        pdf.set_fallback_fonts(fallbacks, exact_match=False)
    return _Writer(pdf, "DejaVu", frozenset(covered), "DejaVuMono")


def render_report(data: ReportData) -> bytes:
    """The report as PDF bytes (A4): header, case table, notes and long fields, snapshots, BIS
    chart (when there are BIS values), files with SHA-256 checksums."""
    ev = data.event
    w = _new_pdf(ev.id)
    pdf, family, t = w.pdf, w.family, w.t
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

    if data.video_seconds is not None:
        video = f"{fmt_seconds(data.video_seconds)} in {data.video_files} file{'s' * (data.video_files != 1)}"
    else:
        video = "- (no recording)" if not data.video_files else f"unknown ({data.video_files} file(s) not measurable)"
    rows = [
        ("Event ID", ev.id),
        ("Status", ev.status),
        ("Start", fmt_time(ev.started_at)),
        ("Finish", fmt_time(ev.finished_at)),
        ("Event time", f"{_duration(ev)} (start to stop)"),
        ("Recorded video", video),
        ("Place", ev.place or "-"),
        ("Medical record", ev.medical_record),
        ("Procedure", ev.procedure),
        ("Patient", ev.patient),
        ("Physicians", "; ".join(ev.physicians) or "-"),
        ("Created", f"{fmt_time(ev.created_at)} by {ev.created_by or '-'}"),
    ]
    if ev.notes:
        rows.append(("Notes", ev.notes))
    long_rows = [(label, value) for label, value in rows if len(value) > LONG_FIELD or "\n" in value]
    pdf.set_font(family, "", 10)
    with pdf.table(col_widths=(38, 148), first_row_as_headings=False, line_height=5.5,
                   borders_layout="HORIZONTAL_LINES") as table:
        for label, value in rows:
            r = table.row()
            r.cell(t(label), style=_bold(family))
            r.cell(t(value) if (label, value) not in long_rows else "(below)")
    for label, value in long_rows:
        _section(pdf, family, t(label))
        pdf.set_font(family, "", 10)
        pdf.multi_cell(0, 5, t(value), align="L", new_x="LMARGIN", new_y="NEXT")

    if data.snapshots:
        _section(pdf, family, t(f"Snapshots ({len(data.snapshots)})"), need=62)  # the heading stays with a row
        for notice in data.notices:
            pdf.set_font(family, "", 8)
            pdf.set_text_color(70)
            pdf.multi_cell(0, 4, t(notice), align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.set_text_color(0)
        pdf.ln(1)
        _thumbnails(w, data.snapshots[:MAX_THUMBNAILS], data.snapshot_notes)
    values = [(x, y) for x, y in data.bis if y is not None and math.isfinite(y)]
    if values:
        _section(pdf, family, "BIS trend", need=65)
        _bis_chart(pdf, family, data.bis)

    _files(w, ev.files)
    if w.missing:
        log.warning("report of %s: no font has %s; printed as [U+XXXX] (install fonts-droid-fallback, "
                    "fonts-symbola)", ev.id, ", ".join(f"U+{ord(c):04X}" for c in sorted(w.missing)))
    return bytes(pdf.output())


def _files(w: _Writer, files: Sequence[Any]) -> None:
    pdf, family, t = w.pdf, w.family, w.t
    _section(pdf, family, f"Files ({len(files)})", need=24)
    if not files:
        pdf.set_font(family, "", 9)
        pdf.cell(0, 6, "No files.", new_x="LMARGIN", new_y="NEXT")
        return
    widths = (15, 67, 17, 87)
    pdf.set_font(family, "", 7.5)
    with pdf.table(col_widths=widths, line_height=4, borders_layout="HORIZONTAL_LINES",
                   headings_style=_bold(family, 7.5), padding=(0.8, 1)) as table:
        head = table.row()
        for h in ("Kind", "Name", "Size", "SHA-256 (plaintext)"):
            head.cell(h)
        for f in files:
            r = table.row()
            r.cell(f.kind)
            r.cell(w.lines(t(f.name), widths[1] - 2.5))
            r.cell(fmt_size(f.size))
            r.cell(f.sha256, style=_mono(w.mono, 6.2))


def _bold(family: str, size: float | None = None) -> Any:
    from fpdf.fonts import FontFace

    return FontFace(family=family, emphasis="BOLD", size_pt=size)


def _mono(family: str, size: float) -> Any:
    from fpdf.fonts import FontFace

    return FontFace(family=family, size_pt=size)


def _section(pdf: Any, family: str, title: str, need: float = 40) -> None:
    """A section heading; on a new page when less than ``need`` mm are left (no orphaned heading)."""
    pdf.ln(4)
    if pdf.get_y() > pdf.h - pdf.b_margin - need:
        pdf.add_page()
    pdf.set_font(family, "B", 12)
    pdf.cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_draw_color(160)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(2)


def _thumbnails(w: _Writer, snapshots: Sequence[tuple[str, bytes]], notes: Mapping[str, str]) -> None:
    from PIL import Image, UnidentifiedImageError

    pdf, family, t = w.pdf, w.family, w.t
    cols, gap, caption = 3, 4.0, 8.0
    width = (pdf.w - pdf.l_margin - pdf.r_margin - gap * (cols - 1)) / cols
    height = width * 9 / 16
    top = pdf.get_y()
    for i, (name, blob) in enumerate(snapshots):
        col = i % cols
        if col == 0:
            if pdf.get_y() + height + caption > pdf.h - pdf.b_margin:
                pdf.add_page()
            top = pdf.get_y()
        x = pdf.l_margin + col * (width + gap)
        try:
            with Image.open(io.BytesIO(blob)) as im:
                im = im.convert("RGB")
                im.thumbnail((_THUMB_PX, _THUMB_PX))
                scale = min(width / im.width, height / im.height)
                iw, ih = im.width * scale, im.height * scale
                pdf.image(im, x=x + (width - iw) / 2, y=top + (height - ih) / 2, w=iw, h=ih)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            log.warning("snapshot %s is not a readable image (%s); left out of the report", name, exc)
            pdf.set_xy(x, top + height / 2)
            pdf.set_font(family, "", 7)
            pdf.cell(width, 4, t(f"({name}: unreadable image)"), align="C")
        pdf.set_font(family, "", 6.5)
        pdf.set_xy(x, top + height + 0.5)
        label = w.lines(t(name), width - 2 * pdf.c_margin - 0.5) + (f"\n{t(notes[name])}" if notes.get(name) else "")
        pdf.multi_cell(width, 3, label, align="C", max_line_height=3)
        if col == cols - 1 or i == len(snapshots) - 1:
            pdf.set_xy(pdf.l_margin, top + height + caption + 2)


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
    height, left_pad, bottom_pad = 45.0, 10.0, 8.0
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
