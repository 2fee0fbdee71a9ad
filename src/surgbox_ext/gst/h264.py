"""H.264 Annex B helpers: split an access unit into NAL units, take its parameter sets.

An Annex B stream separates NAL units with start codes (``00 00 01`` or ``00 00 00 01``); the
NAL unit type is the low 5 bits of the first byte after it (5 IDR slice, 7 SPS, 8 PPS).
"""

from __future__ import annotations

import re

NAL_IDR, NAL_SPS, NAL_PPS = 5, 7, 8
_START = re.compile(rb"\x00\x00\x01")


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of Annex B ``data`` (start codes removed, trailing zero bytes of a 4-byte
    start code stripped from the unit before it)."""
    starts = [m.end() for m in _START.finditer(data)]
    units = []
    for i, s in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        unit = data[s:end]
        if i + 1 < len(starts):
            unit = unit.rstrip(b"\x00")
        if unit:
            units.append(unit)
    return units


def nal_type(unit: bytes) -> int:
    return unit[0] & 0x1F


def parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS NAL units of an access unit, in Annex B form (each after ``00 00 00 01``),
    SPS first: the global header (``extradata``) an MP4 muxer turns into ``avcC``. Empty when the
    unit has none."""
    units = nal_units(data)
    sets = [u for u in units if nal_type(u) == NAL_SPS] + [u for u in units if nal_type(u) == NAL_PPS]
    return b"".join(b"\x00\x00\x00\x01" + u for u in sets)


def is_idr(data: bytes) -> bool:
    """True when the access unit holds an IDR slice."""
    return any(nal_type(u) == NAL_IDR for u in nal_units(data))
