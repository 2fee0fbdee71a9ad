"""Test helpers for live de-identification: a room-camera video with known "faces" and the tools to
score a recording of it (which file frame an output frame shows, is a face's detail gone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from surgbox.types import Layout, Rect, Slot

W, H, FPS = 640, 360, 30
CODE_BITS = 10  # frame number barcode along the bottom edge
CODE_CELL = 16


def room_layout() -> Layout:
    """One 640x360 video slot showing source ``room`` (role room_camera): the composite is the room view."""
    return Layout(W, H, (Slot("room", Rect(0, 0, W, H), "video", "room", "room_camera"),), name="room-only")


def write_code(img: np.ndarray, n: int) -> None:
    """Burn frame number ``n`` into the bottom-left corner (black/white cells)."""
    for b in range(CODE_BITS):
        v = 255 if (n >> b) & 1 else 0
        img[H - CODE_CELL:H, b * CODE_CELL:(b + 1) * CODE_CELL] = v


def read_code(y: np.ndarray) -> int | None:
    """The frame number of a decoded luma plane (``None`` when the cells are unreadable: hidden)."""
    n = 0
    for b in range(CODE_BITS):
        cell = y[H - CODE_CELL + 4:H - 4, b * CODE_CELL + 4:(b + 1) * CODE_CELL - 4].astype(float)
        m = cell.mean()
        if 70 < m < 185 or cell.std() > 40:
            return None
        n |= int(m >= 128) << b
    return n


def write_video(path: Path, frames: int, draw) -> list[list[tuple[float, float, float, float]]]:
    """Encode ``frames`` frames of ``draw(n) -> (HxWx3 RGB, [face boxes])`` (the barcode added)
    as H.264 at 30 fps; returns the boxes per frame."""
    import av

    truth = []
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "16", "g": "30"})
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        for n in range(frames):
            img, boxes = draw(n)
            img = np.array(img)
            write_code(img, n)
            truth.append(boxes)
            for p in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return truth


def decode_luma(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def detail(y: np.ndarray) -> float:
    """Fine detail of a luma patch: mean absolute difference from its 2-pixel Gaussian blur."""
    a = np.asarray(y, np.float32)
    b = np.asarray(Image.fromarray(np.ascontiguousarray(y)).filter(ImageFilter.GaussianBlur(2)), np.float32)
    return float(np.abs(a - b).mean())


def exposed(out_y: np.ndarray, raw_y: np.ndarray, box, keep: float = 0.5) -> bool:
    """A face is exposed when its box in the output keeps at least ``keep`` of the raw frame's detail."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(W, x2), min(H - CODE_CELL, y2)
    if x2 - x1 < 4 or y2 - y1 < 4:
        return False
    raw = detail(raw_y[y1:y2, x1:x2])
    return raw > 1.0 and detail(out_y[y1:y2, x1:x2]) >= keep * raw
