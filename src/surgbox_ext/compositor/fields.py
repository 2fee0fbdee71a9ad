"""What the data panel shows of a reading, how each value is written, and when it is out of range.

Pure functions and values (no drawing), so the rules are testable and documented in one place
(``docs/recording.md``, "The composite and its data panel"):

* :data:`PANEL_FIELDS`: per ``Reading.kind``, the fields in display order, each a
  :class:`FieldSpec` (value name, label, unit, decimals, alarm :class:`Limits`).
* :func:`format_field`: the text a monitor shows (BIS an integer; SQI and SR in %, EMG in dB).
* :func:`severity`: ``normal``, ``caution``, ``alarm``, ``unreliable`` or ``invalid`` for a value,
  judged on the *displayed* (rounded) number so colour and digits always agree.

Ranges (BIS monitor documentation: Mindray WATO EX-65 and BeneVision N22 operator's manuals, BIS
Vista and BIS Advance operator's manuals): BIS 40-60 is the general-anaesthesia range; SQI below
50 % means the numerics are not reliable and below 15 % they cannot be derived (the monitor blanks
them); EMG at or below 30 dB is optimal, above 55 dB unacceptable; SR is the percentage of the
last 63 s in suppression, so anything above 0 means burst suppression.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

NORMAL, CAUTION, ALARM, UNRELIABLE, INVALID = "normal", "caution", "alarm", "unreliable", "invalid"
SEVERITIES = (NORMAL, CAUTION, ALARM, UNRELIABLE, INVALID)


@attrs.frozen
class Limits:
    """Out-of-range rule of one value: below ``caution_low`` / above ``caution_high`` is
    ``caution``, below ``alarm_low`` / above ``alarm_high`` is ``alarm`` (strict comparisons: a value
    on a limit is inside). ``None`` means no limit on that side."""

    caution_low: float | None = None
    caution_high: float | None = None
    alarm_low: float | None = None
    alarm_high: float | None = None

    def judge(self, v: float) -> str:
        if (self.alarm_low is not None and v < self.alarm_low) or (self.alarm_high is not None and v > self.alarm_high):
            return ALARM
        if (self.caution_low is not None and v < self.caution_low) or (self.caution_high is not None and v > self.caution_high):
            return CAUTION
        return NORMAL


BIS_LIMITS = Limits(caution_low=40, caution_high=60)
SQI_LIMITS = Limits(caution_low=50, alarm_low=15)
EMG_LIMITS = Limits(caution_high=30, alarm_high=55)
SR_LIMITS = Limits(caution_high=0)
SQI_UNRELIABLE = 50.0
"""BIS (and the other numerics) below this SQI are drawn as ``unreliable``."""
SQI_BLANK = 15.0
"""Below this SQI the monitor cannot derive the numerics: the panel shows ``--`` for BIS."""


@attrs.frozen
class FieldSpec:
    """One field of a panel block: the reading value ``name`` (``"EMGLOW"``), its ``label``
    (``"EMG"``), ``unit`` (``"%"``, ``"dB"``, ``""``), ``decimals`` shown, alarm ``limits``, and
    ``quality``: the name of the value whose low level makes this one unreliable or blank
    (``"SQI"`` for BIS and SR, the numerics the monitor derives from the EEG)."""

    name: str
    label: str
    unit: str = ""
    decimals: int = 0
    limits: Limits | None = None
    quality: str | None = None


def _bis_fields(bis: str, sqi: str, emg: str, sr: str) -> tuple[FieldSpec, ...]:
    return (
        FieldSpec(bis, "BIS", "", 0, BIS_LIMITS, quality=sqi),
        FieldSpec(sqi, "SQI", "%", 0, SQI_LIMITS),
        FieldSpec(emg, "EMG", "dB", 0, EMG_LIMITS),
        FieldSpec(sr, "SR", "%", 0, SR_LIMITS, quality=sqi),
    )


PANEL_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    "bis": _bis_fields("BIS", "SQI", "EMGLOW", "SR"),
    "bis-history": _bis_fields("AVGBIS", "AVGSQI", "AVGEMG", "AVGSR"),
}
"""What the panel shows of a reading, by ``Reading.kind``, in display order (the first field is the
big one and the one trended). A BIS monitor shows BIS, SQI, EMG (``EMGLOW``) and SR; other kinds
show every value of the reading (:func:`fields_for`)."""

TREND_FIELD = 0
"""Index in a kind's :data:`PANEL_FIELDS` of the value the trend chart draws (BIS)."""


def fields_for(kind: str, values: Mapping[str, Any]) -> tuple[FieldSpec, ...]:
    """The fields of a block for a reading of ``kind``: :data:`PANEL_FIELDS` when the kind is
    known, else one plain field per value name in the reading's order."""
    known = PANEL_FIELDS.get(kind)
    if known is not None:
        return known
    return tuple(FieldSpec(str(n), str(n), "", -1) for n in values)


def format_value(v: float | None, decimals: int = -1) -> str:
    """A panel number: ``--`` for missing/invalid; ``decimals >= 0`` rounds to that many places;
    ``-1`` (automatic) writes integers without decimals and other values with one (three digits or
    more: none).

    >>> format_value(45.0), format_value(47.4, 0), format_value(3.25), format_value(None)
    ('45', '47', '3.2', '--')
    """
    if v is None:
        return "--"
    f = float(v)
    if f != f or f in (float("inf"), float("-inf")):
        return "--"
    if decimals < 0:
        return f"{f:.0f}" if f.is_integer() or abs(f) >= 100 else f"{f:.1f}"
    text = f"{f:.{decimals}f}"
    return "0" if text in ("-0", "-0.0") and decimals == 0 else text


def displayed(spec: FieldSpec, v: float | None) -> float | None:
    """The number shown for ``v`` (rounded as :func:`format_value` writes it), ``None`` when missing."""
    text = format_value(v, spec.decimals)
    return None if text == "--" else float(text)


def format_field(spec: FieldSpec, values: Mapping[str, Any]) -> tuple[str, str]:
    """``(value text, unit)`` of ``spec`` in a reading's ``values``: ``("45", "")``, ``("93", "%")``,
    ``("32", "dB")``; ``("--", unit)`` when the value is missing, invalid, or (a field with a
    ``quality`` value: BIS, SR) the quality is below :data:`SQI_BLANK`, where the monitor blanks it."""
    v = values.get(spec.name)
    q = _quality(spec, values)
    if q is not None and q < SQI_BLANK:
        v = None
    return format_value(v, spec.decimals), spec.unit


def _quality(spec: FieldSpec, values: Mapping[str, Any]) -> float | None:
    if spec.quality is None:
        return None
    return displayed(FieldSpec(spec.quality, spec.quality, decimals=0), values.get(spec.quality))


def severity(spec: FieldSpec, values: Mapping[str, Any]) -> str:
    """How the value of ``spec`` in ``values`` is drawn (see the module doc):

    * ``invalid``: nothing to show (``--``);
    * ``unreliable``: the field's ``quality`` value (SQI) is below :data:`SQI_UNRELIABLE`;
    * ``alarm`` / ``caution``: outside ``spec.limits`` (of the displayed number);
    * ``normal`` otherwise.
    """
    text, _ = format_field(spec, values)
    if text == "--":
        return INVALID
    q = _quality(spec, values)
    if q is not None and q < SQI_UNRELIABLE:
        return UNRELIABLE
    if spec.limits is None:
        return NORMAL
    return spec.limits.judge(float(text))
