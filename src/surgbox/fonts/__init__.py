"""The fonts surgbox draws and prints with: DejaVu Sans (regular, bold) and DejaVu Sans Mono
(regular, bold), shipped in this folder (Bitstream Vera / DejaVu license, ``LICENSE-DejaVu.txt``).

One lookup for every user: the compositor's panel and slates, the test sources' labels and the
PDF report. :func:`font_path` prefers the bundled files, then a system DejaVu folder;
:func:`load` gives a Pillow font.

>>> font_path(bold=True).name
'DejaVuSans-Bold.ttf'
>>> load(24, mono=True).getname()
('DejaVu Sans Mono', 'Book')
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["BUNDLED_DIR", "FONT_DIRS", "font_file", "font_path", "load"]

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent
FONT_DIRS: tuple[Path, ...] = (
    BUNDLED_DIR,
    Path("/usr/share/fonts/truetype/dejavu"),  # Debian, Ubuntu
    Path("/usr/share/fonts/TTF"),  # Arch
    Path("/usr/share/fonts/dejavu"),  # Fedora
)
"""Where :func:`font_path` looks, in order: the bundled files first."""


def font_file(*, bold: bool = False, mono: bool = False) -> str:
    """The file name of a face: ``DejaVuSans.ttf``, ``DejaVuSans-Bold.ttf``, ``DejaVuSansMono.ttf`` ..."""
    return f"DejaVuSans{'Mono' if mono else ''}{'-Bold' if bold else ''}.ttf"


def font_path(bold: bool = False, mono: bool = False, *, dirs: Sequence[Path] | None = None) -> Path | None:
    """The first existing file of the face in ``dirs`` (default :data:`FONT_DIRS`), or ``None``."""
    name = font_file(bold=bold, mono=mono)
    for d in FONT_DIRS if dirs is None else dirs:
        p = Path(d) / name
        if p.is_file():
            return p
    return None


@functools.lru_cache(maxsize=64)
def load(size: int, bold: bool = False, mono: bool = False) -> Any:
    """A Pillow FreeType font of ``size`` pixels of the face (see :func:`font_path`); when no
    DejaVu file is found, Pillow's own FreeType font (``ImageFont.load_default(size=)``), logged."""
    from PIL import ImageFont

    path = font_path(bold, mono)
    if path is not None:
        return ImageFont.truetype(str(path), size)
    log.warning("%s not found in %s; using Pillow's default font", font_file(bold=bold, mono=mono),
                ", ".join(map(str, FONT_DIRS)))
    return ImageFont.load_default(size=size)
