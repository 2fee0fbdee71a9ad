"""``testsrc``: synthetic video paced on the master clock, with a white sync flash every 2 s.

Frame ``k`` is captured at ``t0 + k / fps`` (``t0`` = the clock's origin; the first frame is the
first grid point at or after ``start``), computed in integer nanoseconds from ``k`` so that
hours of frames do not drift; the frame is released no
earlier than that instant and carries it as ``capture_ns``. Each frame shows colour bars, a box
moving with capture time, the source name and the capture time (clock-elapsed
``HH:MM:SS.mmm``) and frame index in a real TrueType font.

Sync marker: for every multiple ``m * flash_period_s`` of capture time (``clock.elapsed_ns``)
at or after the source's start, the first frame whose capture time is ``>=`` that multiple is
entirely white (``Y=235, U=V=128``, limited-range white) — pair it with ``tone``'s beeps to
measure A/V offset.

Cost: the picture is precomputed in YUV 4:2:0; per frame only three plane copies, the moving
box and a small text patch are drawn (no RGB->YUV conversion per frame).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, ClassVar

import attrs
import numpy as np

from surgbox.capture import ThreadedSource
from surgbox.clock import NS_PER_S
from surgbox.types import VideoFrame, parse_rate
from surgbox_ext.compositor.yuv import plane_views

from ._common import load_font, markers_between, non_negative, pace

# Limited-range (BT.601) YUV colours.
WHITE_YUV = (235, 128, 128)
BLACK_Y = 16
BOX_YUV = (162, 44, 142)  # a saturated yellow-green: visible motion, never mistaken for a flash
_TEXT_LUT = (16 + np.arange(256, dtype=np.uint16) * 219 // 255).astype(np.uint8)  # alpha -> Y


def _even_at_least_64(instance: Any, attribute: Any, value: int) -> None:
    if value < 64 or value % 2:
        raise ValueError(f"testsrc {attribute.name} must be an even number >= 64, got {value}")


@attrs.define(eq=False)
class TestSource(ThreadedSource):
    """Synthetic video source.

    Options: ``width``/``height`` (even, >= 64; default 1280x720), ``fps`` (``30``, ``29.97``
    or ``"30000/1001"``), ``flash_period_s`` (default 2.0; 0 disables the white frames),
    ``label`` (text burned in; default the source name), ``queue_size`` (default 16).

    Items: :class:`~surgbox.types.VideoFrame` holding a ``yuv420p`` ``av.VideoFrame``;
    ``seq`` is the schedule index ``k`` (a gap means the source fell behind and skipped frames,
    counted in ``stats()['skipped']``).
    """

    __test__: ClassVar[bool] = False  # not a pytest test class
    media: ClassVar[str] = "video"

    width: int = attrs.field(default=1280, kw_only=True, converter=int, validator=_even_at_least_64)
    height: int = attrs.field(default=720, kw_only=True, converter=int, validator=_even_at_least_64)
    fps: Fraction = attrs.field(default=30, kw_only=True, converter=lambda v: parse_rate(v, "fps"))
    flash_period_s: float = attrs.field(default=2.0, kw_only=True, converter=float, validator=non_negative)
    label: str | None = attrs.field(default=None, kw_only=True)
    queue_size: int = attrs.field(default=16, kw_only=True)

    _planes: tuple[np.ndarray, ...] = attrs.field(init=False, default=(), alias="_planes", repr=False)
    _text: Any = attrs.field(init=False, default=None, alias="_text", repr=False)
    _t0: int = attrs.field(init=False, default=0, alias="_t0")
    _k: int = attrs.field(init=False, default=0, alias="_k")
    _prev_ns: int = attrs.field(init=False, default=0, alias="_prev_ns")
    _skipped: int = attrs.field(init=False, default=0, alias="_skipped")
    _flashes: int = attrs.field(init=False, default=0, alias="_flashes")

    # -- schedule -------------------------------------------------------------------------------
    def capture_time(self, k: int) -> int:
        """Master-clock ns of frame ``k``: ``t0 + k * 1e9 / fps``, exact integer arithmetic."""
        return self._t0 + k * NS_PER_S * self.fps.denominator // self.fps.numerator

    def _open(self) -> None:
        self._render_background()
        assert self.clock is not None
        # The schedule is the clock's own 1/fps grid (t0 = clock origin), entered at the first
        # grid point not before now: frames of sources at a multiple of the output rate land
        # exactly on output ticks, so a sync flash is shown at the tick of its own instant.
        now = self.clock.now_ns()
        self._t0 = self.clock.origin_ns
        self._k = -(-(now - self._t0) * self.fps.numerator // (NS_PER_S * self.fps.denominator))
        self._prev_ns = now - 1  # markers count from the start on (m * period >= start)

    def _capture(self) -> VideoFrame | None:
        assert self.clock is not None
        k = self._k
        t = self.capture_time(k)
        behind = self.clock.now_ns() - t
        period_ns = NS_PER_S * self.fps.denominator // self.fps.numerator
        if behind > period_ns:  # fell behind (CPU starved): skip to the newest due frame
            k_now = (self.clock.now_ns() - self._t0) * self.fps.numerator // (NS_PER_S * self.fps.denominator)
            self._skipped += k_now - k
            k = k_now
            t = self.capture_time(k)
        if not pace(self, t):
            return None
        self._k = k + 1
        frame = self.render(k, t)
        self._prev_ns = t
        return VideoFrame(self.name, t, frame, k)

    # -- picture --------------------------------------------------------------------------------
    def is_flash(self, capture_ns: int, previous_ns: int) -> bool:
        """True when a multiple of ``flash_period_s`` (clock-elapsed) lies in ``(previous, capture]``."""
        if not self.flash_period_s:
            return False
        assert self.clock is not None
        period = round(self.flash_period_s * NS_PER_S)
        return len(markers_between(self.clock.elapsed_ns(previous_ns), self.clock.elapsed_ns(capture_ns), period)) > 0

    def render(self, k: int, capture_ns: int) -> Any:
        """The ``yuv420p`` ``av.VideoFrame`` for frame ``k`` captured at ``capture_ns``."""
        import av

        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        y, u, v = plane_views(frame)
        if self.is_flash(capture_ns, self._prev_ns):
            y.fill(WHITE_YUV[0])
            u.fill(WHITE_YUV[1])
            v.fill(WHITE_YUV[2])
            self._flashes += 1
            return frame
        for dst, src in zip((y, u, v), self._planes):
            np.copyto(dst, src)
        assert self.clock is not None
        elapsed = self.clock.elapsed_ns(capture_ns)
        self._draw_box(y, u, v, elapsed)
        self._draw_time(y, elapsed, k)
        return frame

    def _draw_box(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, elapsed_ns: int) -> None:
        # A box crossing the lower third and back every 4 s (triangle wave of capture time).
        size = (self.height // 6) & ~1
        span = self.width - size
        phase = (elapsed_ns % (4 * NS_PER_S)) / (2 * NS_PER_S)
        x = int(span * (phase if phase <= 1 else 2 - phase)) & ~1
        top = (self.height * 2 // 3 + (self.height // 3 - size) // 2) & ~1
        y[top : top + size, x : x + size] = BOX_YUV[0]
        u[top // 2 : (top + size) // 2, x // 2 : (x + size) // 2] = BOX_YUV[1]
        v[top // 2 : (top + size) // 2, x // 2 : (x + size) // 2] = BOX_YUV[2]

    def _draw_time(self, y: np.ndarray, elapsed_ns: int, k: int) -> None:
        # Glyphs were rasterized once (FreeType, anti-aliased) and converted to Y; per frame they
        # are only copied side by side into the patch.
        glyphs, (x0, y0), (tw, th) = self._text
        ms = max(0, elapsed_ns) // 1_000_000
        text = f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d} #{k % 1_000_000:06d}"
        x = x0
        for ch in text:
            g = glyphs[ch]
            w = min(g.shape[1], x0 + tw - x)
            if w <= 0:
                break
            y[y0 : y0 + th, x : x + w] = g[:, :w]
            x += g.shape[1]

    def _render_background(self) -> None:
        """Colour bars + grey ramp + the name, converted once to yuv420p planes."""
        import av
        from PIL import Image, ImageDraw

        w, h = self.width, self.height
        rgb = np.zeros((h, w, 3), np.uint8)
        bars = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0), (0, 0, 192)]
        edges = np.linspace(0, w, len(bars) + 1).astype(int)
        for (r, g, b), a, e in zip(bars, edges[:-1], edges[1:]):
            rgb[: h * 2 // 3, a:e] = (r, g, b)
        rgb[h * 2 // 3 :] = np.linspace(16, 200, w).astype(np.uint8)[None, :, None]
        font = load_font(max(10, h // 24))
        pad = max(2, h // 120)
        picture = Image.fromarray(rgb)
        draw = ImageDraw.Draw(picture)
        label = self.label if self.label is not None else self.name
        x0 = y0 = max(2, h // 40) & ~1
        name_box = draw.textbbox((x0 + pad, y0 + pad), label, font=font)
        draw.rectangle((x0, y0, name_box[2] + pad, name_box[3] + pad), fill=(0, 0, 0))
        draw.text((x0 + pad, y0 + pad), label, fill=(255, 255, 255), font=font)
        # The per-frame time patch: a black box sized for the widest time text, below the name.
        sample = "00:00:00.000 #000000"
        tb = font.getbbox(sample)
        tw = min(w - x0, (tb[2] + 2 * pad + 1) & ~1)
        th = min(h - y0, (tb[3] + 2 * pad + 1) & ~1)
        ty = (name_box[3] + 2 * pad) & ~1
        th = min(th, h - ty)
        draw.rectangle((x0, ty, x0 + tw - 1, ty + th - 1), fill=(0, 0, 0))
        yuv = av.VideoFrame.from_ndarray(np.asarray(picture), format="rgb24").reformat(format="yuv420p")
        self._planes = tuple(p.copy() for p in plane_views(yuv))
        # Black in the patch is exactly Y=16 / U=V=128 so the per-frame patch only writes Y.
        self._planes[0][ty : ty + th, x0 : x0 + tw] = BLACK_Y
        self._planes[1][ty // 2 : (ty + th) // 2, x0 // 2 : (x0 + tw) // 2] = 128
        self._planes[2][ty // 2 : (ty + th) // 2, x0 // 2 : (x0 + tw) // 2] = 128
        glyphs = {}
        for ch in "0123456789:.# ":
            cell = Image.new("L", (max(1, round(font.getlength(ch))), th))
            ImageDraw.Draw(cell).text((0, pad), ch, fill=255, font=font)
            glyphs[ch] = _TEXT_LUT[np.asarray(cell)]
        glyphs[" "][:] = BLACK_Y
        self._text = (glyphs, (x0 + pad, ty), (tw - pad, th))

    def stats(self) -> dict[str, Any]:
        s = dict(super().stats())
        s.update(skipped=self._skipped, flashes=self._flashes, fps=float(self.fps))
        return s
