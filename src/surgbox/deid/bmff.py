"""Is an MP4 (ISO BMFF) file complete? A walk over its top-level boxes.

An MP4 is a sequence of boxes, each starting with its size and type. A file that was cut off
(a copy interrupted, a recorder killed mid-fragment) ends inside its last box; a fragmented MP4
written by FFmpeg ends with an ``mfra`` box (fragment index) once its writer finished it. The
walk reads 8-16 bytes per top-level box (seeking over the payloads), so it costs a few
milliseconds even for hours of one-second fragments, and leaves the file position as it was.

    >>> with open("recording.mp4", "rb") as f:                    # doctest: +SKIP
    ...     scan_boxes(f)
    BoxScan(boxes=12, fragmented=True, has_mfra=False, truncated=TruncatedBox(kind='mdat', ...))
"""

from __future__ import annotations

import os
import struct
from typing import IO

import attrs

# Top-level box types that can open an ISO BMFF file.
FIRST_BOXES = {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"}
MAX_BOXES = 1_000_000  # stop walking a pathological file after this many boxes


@attrs.frozen
class TruncatedBox:
    """The box the file ends inside: its ``kind`` (``"mdat"``), byte ``offset``, declared
    ``size`` and the bytes the file still has of it (``available``)."""

    kind: str
    offset: int
    size: int
    available: int

    @property
    def missing(self) -> int:
        return self.size - self.available

    def describe(self) -> str:
        return (f"the file ends inside its {self.kind!r} box at byte {self.offset}: "
                f"{self.missing} of its {self.size} bytes are missing")


@attrs.frozen
class BoxScan:
    """Result of :func:`scan_boxes`: top-level ``boxes`` walked, ``fragmented`` (a ``moof``
    was seen), ``has_mfra`` (closing fragment index present) and ``truncated`` (or ``None``)."""

    boxes: int
    fragmented: bool
    has_mfra: bool
    truncated: TruncatedBox | None


def scan_boxes(f: IO[bytes]) -> BoxScan | None:
    """Walk the top-level boxes of the seekable binary file ``f``; ``None`` when ``f`` is not
    an ISO BMFF file or cannot seek. The file position is restored."""
    try:
        start = f.tell()
        end = f.seek(0, os.SEEK_END)
    except (OSError, AttributeError, ValueError):
        return None
    try:
        f.seek(0)
        pos, count, fragmented, mfra = 0, 0, False, False
        while pos < end and count < MAX_BOXES:
            f.seek(pos)
            head = f.read(16)
            if len(head) < 8:
                return BoxScan(count, fragmented, mfra, TruncatedBox("?", pos, 8, len(head)))
            size, kind = struct.unpack(">I4s", head[:8])
            if count == 0 and kind not in FIRST_BOXES:
                return None
            if not all(32 <= c < 127 for c in kind):  # not a box type: trailing data, not a cut box
                return BoxScan(count, fragmented, mfra, None)
            if size == 1:
                if len(head) < 16:
                    return BoxScan(count, fragmented, mfra, TruncatedBox(_name(kind), pos, 16, len(head)))
                size = struct.unpack(">Q", head[8:16])[0]
            elif size == 0:  # the box runs to the end of the file
                size = end - pos
            if size < 8:
                return BoxScan(count, fragmented, mfra, None) if count else None  # not boxes: leave it to FFmpeg
            count += 1
            fragmented |= kind == b"moof"
            mfra |= kind == b"mfra"
            if pos + size > end:
                return BoxScan(count, fragmented, mfra, TruncatedBox(_name(kind), pos, size, end - pos))
            pos += size
        return BoxScan(count, fragmented, mfra, None)
    finally:
        f.seek(start)


def _name(kind: bytes) -> str:
    return kind.decode("latin-1")

