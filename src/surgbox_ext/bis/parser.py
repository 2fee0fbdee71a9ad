"""Streaming parser for the BIS Vista / A-2000 ASCII serial output and the 1-minute HISTORY export.

Wire format (facts from device captures): records are ``|``-terminated, right-aligned fields;
the first field is the device time ``MM/DD/YYYY HH:MM:SS``; a record ends with ``CR LF``.
Headers announce the columns::

    S_HDR3             |SYS 3.30|        | ... |Ch. 1   |        | ... |Ch. 2   | ... |Ch. 12  | ... |
    TIME               |DSC     |PIC     |Filters |Alarm   |Lo-Limit|Hi-Limit|Silence |SR12    |SEF08   | ...
    07/02/2015 12:27:16|       10|       0|On      |None    |Off     |Off     |No      |     0.0|    30.0| ...

and a 9-field block (SR, SEF, BISBIT, BIS, TOTPOW, EMGLOW, SQI, IMPEDNCE, ARTF2) per channel
(1, 2 and 12 = combined). Firmware versions add algorithm-version suffixes (``SR11``/``SR12``,
``SEF07``/``SEF08``, ``SQI09``/``SQI10``); the parser maps them to the stable names above.

Robustness: real loggers leave NUL bytes, break records with stray line breaks (even inside a
field), lose leading bytes and insert garbage. Because every field ends with ``|``, the parser
ignores CR/LF/NUL altogether, splits on ``|`` and resynchronizes on the next timestamp field;
whatever it cannot use is counted in :class:`ParserStats`, never raised.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from surgbox.types import Reading

#: The stable names of the per-channel variables, in wire order.
CHANNEL_VARIABLES = ("SR", "SEF", "BISBIT", "BIS", "TOTPOW", "EMGLOW", "SQI", "IMPEDNCE", "ARTF2")
#: Columns that carry hexadecimal bit fields (given as integers).
BIT_FIELDS = frozenset({"BISBIT", "ARTF2", "BISBITS"})
#: Columns that carry text settings (kept in ``BISRecord.settings``, never in values).
SETTINGS = frozenset({"Filters", "Alarm", "Lo-Limit", "Hi-Limit", "Silence"})
#: Channel ids in the default layout (channel 12 is the combined channel the monitor displays).
DEFAULT_CHANNELS = ("1", "2", "12")
DEFAULT_GLOBALS = ("TIME", "DSC", "PIC", "Filters", "Alarm", "Lo-Limit", "Hi-Limit", "Silence")
#: |value| at or above this is a special code of the device's 16-bit fields (scaled by 10), not a number.
SPECIAL_LIMIT = 3276.7
#: HISTORY byte fields: 255 marks an invalid minute, 254 a value that was not computed.
HISTORY_INVALID = frozenset({254.0, 255.0})

MAX_TOKEN_CHARS = 512  # a field longer than this is garbage (e.g. wrong baud rate)
MAX_HEADER_FIELDS = 256

_TIME_RE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})$")
_NUMBER_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)$")
_HEX_RE = re.compile(r"[0-9A-Fa-f]+$")
_INVALID_TEXT_RE = re.compile(r"[-*?]*$|N/?A$", re.IGNORECASE)
_SUFFIX_RE = re.compile(r"^([A-Z]+?)\d+$")
_CHANNEL_RE = re.compile(r"Ch\.?\s*(\w+)", re.IGNORECASE)
_PRINTABLE = re.compile(r"[\x20-\x7e]*$")


def canonical_name(column: str) -> str:
    """Stable name of a header column: ``"SR12"`` -> ``"SR"``, ``"SEF08"`` -> ``"SEF"``,
    ``"TOTPOW07"`` -> ``"TOTPOW"``, ``"BISBIT00"`` -> ``"BISBIT"``; ``"ARTF2"`` and names without
    a version suffix stay as they are."""
    column = column.strip()
    if column in CHANNEL_VARIABLES:
        return column
    m = _SUFFIX_RE.match(column)
    if m and m.group(1) in CHANNEL_VARIABLES:
        return m.group(1)
    return column


@attrs.frozen
class Header:
    """The column layout that data records are read with.

    ``columns``: raw names as sent (``"SR12"``); ``names``: stable names (``"SR"``);
    ``channel_of``: channel id per column (``None`` for device-wide columns such as DSC);
    ``kind``: ``"bis"`` (live trend records) or ``"bis-history"`` (1-minute HISTORY export);
    ``system``: the device's version label if a header line gave one (``"SYS 3.30"``, ``"VISTA 3.22"``).
    """

    columns: tuple[str, ...]
    names: tuple[str, ...]
    channel_of: tuple[str | None, ...]
    kind: str = "bis"
    system: str | None = None

    @property
    def size(self) -> int:
        return len(self.columns)

    @property
    def channels(self) -> tuple[str, ...]:
        seen: list[str] = []
        for ch in self.channel_of:
            if ch is not None and ch not in seen:
                seen.append(ch)
        return tuple(seen)

    @classmethod
    def default(cls) -> Header:
        """The BIS Vista layout used until a header arrives: 8 device fields + 3 channels x 9."""
        cols = DEFAULT_GLOBALS + CHANNEL_VARIABLES * len(DEFAULT_CHANNELS)
        return cls.from_columns(cols)

    @classmethod
    def from_columns(cls, columns: Iterable[str], channel_labels: Iterable[str] | None = None,
                     kind: str = "bis", system: str | None = None) -> Header:
        """Build a layout from a ``TIME|...`` line's fields (and an ``S_HDR`` line's fields, if any).

        Channels come from the ``S_HDR`` labels (``"Ch. 12"`` -> ``"12"``) when given; otherwise
        each repeat of a channel variable starts a new block, numbered 1, 2, 12 (the BIS Vista
        order) or 1..n for other counts.
        """
        columns = tuple(c.strip() for c in columns)
        names = tuple(canonical_name(c) for c in columns)
        channel_of: list[str | None] = [None] * len(columns)
        labels = [lab.strip() for lab in channel_labels] if channel_labels is not None else None
        if labels and any(_CHANNEL_RE.match(lab) for lab in labels):
            current = None
            for i in range(len(columns)):
                lab = labels[i] if i < len(labels) else ""
                m = _CHANNEL_RE.match(lab)
                if m:
                    current = m.group(1)
                channel_of[i] = current
        elif kind == "bis":
            blocks: list[int] = []  # start index of each block
            seen: set[str] = set()
            for i, n in enumerate(names):
                if n in CHANNEL_VARIABLES:
                    if not blocks or n in seen:
                        blocks.append(i)
                        seen = set()
                    seen.add(n)
            ids = DEFAULT_CHANNELS if len(blocks) == 3 else tuple(str(k + 1) for k in range(len(blocks)))
            for b, start in enumerate(blocks):
                end = blocks[b + 1] if b + 1 < len(blocks) else len(columns)
                for i in range(start, end):
                    channel_of[i] = ids[b]
        return cls(columns, names, tuple(channel_of), kind, system)


@attrs.frozen
class BISRecord:
    """One parsed record.

    ``device_time``: the monitor's own clock (naive, device-local). ``values``: device-wide
    numbers (``DSC``, ``PIC``; every HISTORY column such as ``AVGBIS``) by stable name.
    ``channels``: per channel id (``"1"``, ``"2"``, ``"12"``) the channel variables by stable
    name. ``settings``: text columns (``Filters``, ``Alarm``, ``Silence`` ...). Numbers are
    ``float`` (or ``int`` where the device sent an integer or a hex bit field); invalid or
    missing values are ``None``.
    """

    device_time: datetime
    kind: str = "bis"
    values: Mapping[str, float | int | None] = attrs.field(factory=dict)
    channels: Mapping[str, Mapping[str, float | int | None]] = attrs.field(factory=dict)
    settings: Mapping[str, str] = attrs.field(factory=dict)

    def main_values(self, main_channel: str = "12") -> dict[str, float | int | None]:
        """Device-wide values plus the variables of ``main_channel`` (or of the last channel
        present when that one is absent: the combined channel comes last on the wire)."""
        out = dict(self.values)
        if self.channels:
            ch = main_channel if main_channel in self.channels else list(self.channels)[-1]
            out.update(self.channels[ch])
        return out

    def to_reading(self, source: str, capture_ns: int, main_channel: str = "12") -> Reading:
        """A :class:`~surgbox.types.Reading` (kind ``"bis"`` or ``"bis-history"``) stamped ``capture_ns``."""

        def floats(m: Mapping[str, float | int | None]) -> dict[str, float | None]:
            return {k: (None if v is None else float(v)) for k, v in m.items()}

        return Reading(
            source=source,
            capture_ns=capture_ns,
            kind=self.kind,
            values=floats(self.main_values(main_channel)),
            channels={ch: floats(v) for ch, v in self.channels.items()},
            device_time=self.device_time,
        )

    def to_json_dict(self) -> dict[str, Any]:
        """The ``surgbox bis parse --json`` shape (see docs/bis.md)."""
        return {
            "time": self.device_time.isoformat(),
            "kind": self.kind,
            "values": dict(self.values),
            "channels": {ch: dict(v) for ch, v in self.channels.items()},
            "settings": dict(self.settings),
        }


@attrs.define
class ParserStats:
    """What the parser used and what it skipped (all counters, never reset)."""

    bytes_in: int = 0
    records: int = 0
    headers: int = 0
    nul_bytes: int = 0
    skipped_bytes: int = 0  # bytes outside any record: lost leading bytes, garbage, logger text
    partial_records: int = 0  # a record cut short by the next record, a header or the end
    corrupt_records: int = 0  # right length but a field that cannot be what its column says
    repaired_times: int = 0  # timestamps that lost a leading digit and were rebuilt
    invalid_values: int = 0  # values that became None

    def to_dict(self) -> dict[str, int]:
        return attrs.asdict(self)


@attrs.define(eq=False)
class BISParser:
    """Incremental parser: :meth:`feed` bytes as they arrive, get complete records back.

    A record is returned by the ``feed`` call that delivers its last field's ``|``, so a
    caller that stamps records right after ``feed`` stamps them when their last byte arrived.
    Memory is bounded (``MAX_TOKEN_CHARS`` per field, one pending record). Never raises on input.

    >>> p = BISParser()
    >>> recs = p.feed(b"07/02/2015 12:27:16|  10|   0|On |None |Off |Off |No |" + b" 1.0| 2.0| 0000| 45.0| 60.0| 30.0| 90.0| 5|00000000|" * 3)
    >>> recs[0].channels["12"]["BIS"]
    45.0
    """

    header: Header = attrs.field(factory=Header.default)
    stats: ParserStats = attrs.field(factory=ParserStats)
    _buf: str = attrs.field(default="", alias="_buf")
    _pending: list[str] | None = attrs.field(default=None, alias="_pending")
    _pending_kind: str = attrs.field(default="", alias="_pending_kind")  # "record", "time", "shdr", "history", "version"
    _pending_time: datetime | None = attrs.field(default=None, alias="_pending_time")
    _shdr: list[str] | None = attrs.field(default=None, alias="_shdr")
    _history_system: str | None = attrs.field(default=None, alias="_history_system")
    _last_time: datetime | None = attrs.field(default=None, alias="_last_time")
    version: tuple[str, ...] = ()

    # -- public API ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[BISRecord]:
        """Parse ``data`` (any split of the byte stream); return the records it completed."""
        self.stats.bytes_in += len(data)
        nuls = data.count(0)
        if nuls:
            self.stats.nul_bytes += nuls
            data = data.replace(b"\x00", b"")
        text = data.decode("latin-1").replace("\r", "").replace("\n", "")
        out: list[BISRecord] = []
        buf = self._buf + text
        *tokens, rest = buf.split("|")
        if len(rest) > MAX_TOKEN_CHARS:
            self.stats.skipped_bytes += len(rest)
            rest = ""
        self._buf = rest
        for tok in tokens:
            rec = self._token(tok)
            if rec is not None:
                out.append(rec)
        return out

    def finish(self) -> list[BISRecord]:
        """End of stream: count what is left over (a partial record, trailing text)."""
        if self._buf.strip():
            self.stats.skipped_bytes += len(self._buf)
        self._buf = ""
        self._end_pending(final=True)
        return []

    def discard_partial(self) -> None:
        """Forget a half-received record or field (after a disconnect), counting it as skipped."""
        if self._buf:
            self.stats.skipped_bytes += len(self._buf)
            self._buf = ""
        self._end_pending()

    # -- internals ------------------------------------------------------------------------------
    def _token(self, tok: str) -> BISRecord | None:
        stripped = tok.strip()
        start = self._start_of(stripped)
        if start is not None:
            kind, junk, value = start
            if kind == "time" and self._pending_kind == "version" and self._pending is not None and len(self._pending) == 1:
                self._pending.append(value)  # VERSION |<date>|...: the date belongs to the version line
                return None
            self._end_pending()
            if junk:
                self.stats.skipped_bytes += len(junk)
            if kind == "time":
                when = self._parse_time(value)
                if when is None:
                    self.stats.skipped_bytes += len(tok)
                    return None
                self._pending, self._pending_kind, self._pending_time = [value], "record", when
                if self.header.size == 1:  # degenerate header: a record of just the time
                    return self._complete()
                return None
            self._pending, self._pending_kind = [value], kind
            return None
        if self._pending is None:
            self.stats.skipped_bytes += len(tok) + 1
            return None
        if self._pending_kind == "record":
            self._pending.append(tok)
            if len(self._pending) == self.header.size:
                return self._complete()
            return None
        if len(self._pending) >= MAX_HEADER_FIELDS:
            self.stats.skipped_bytes += sum(len(t) + 1 for t in self._pending)
            self._pending = None
            return None
        self._pending.append(tok)
        return None

    def _start_of(self, tok: str) -> tuple[str, str, str] | None:
        """``(kind, junk_prefix, token)`` when ``tok`` starts a record or header line."""
        m = _TIME_RE.search(tok)
        if m:
            return "time", tok[: m.start()], tok[m.start():]
        for kind, word in (("header", "TIME"), ("shdr", "S_HDR"), ("history", "HISTORY"), ("version", "VERSION")):
            pos = tok.upper().rfind(word)
            if pos < 0:
                continue
            rest = tok[pos + len(word):]
            if (kind == "shdr" and rest.isdigit()) or rest == "" and (kind != "header" or tok[pos:] in ("TIME", "Time")):
                return kind, tok[:pos], tok[pos:]
        return None

    def _parse_time(self, text: str) -> datetime | None:
        m = _TIME_RE.match(text)
        if not m:
            return None
        month_s, day_s, year, hh, mm, ss = m.groups()
        month, day = int(month_s), int(day_s)
        repaired = False
        if len(month_s) == 1 or month > 12:  # the leading digit was lost (or replaced)
            digit = int(month_s[-1])
            candidates = [c for c in (digit, 10 + digit) if 1 <= c <= 12]
            if self._last_time is not None and self._last_time.month in candidates:
                month = self._last_time.month
            elif candidates:
                month = candidates[0]
            repaired = True
        if len(day_s) == 1:
            repaired = True  # only reachable when the month kept its digits: day lost nothing we can fix
        try:
            when = datetime(int(year), month, day, int(hh), int(mm), int(ss))
        except ValueError:
            return None
        if repaired:
            self.stats.repaired_times += 1
        return when

    def _end_pending(self, final: bool = False) -> None:
        pending, kind = self._pending, self._pending_kind
        self._pending, self._pending_kind = None, ""
        if pending is None:
            return
        if kind == "record":
            self.stats.partial_records += 1
            self.stats.skipped_bytes += sum(len(t) + 1 for t in pending)
        elif kind == "shdr":
            self._shdr = pending
            self.stats.headers += 1
        elif kind == "history":
            self._history_system = " ".join(t.strip() for t in pending[1:3] if t.strip()) or None
            self._shdr = None
            self.stats.headers += 1
        elif kind == "version":
            self.version = tuple(t.strip() for t in pending[1:])
            self.stats.headers += 1
        elif kind == "header":
            if final:  # a header with nothing after it is still a header
                pass
            history = self._history_system is not None or any(n.startswith("AVG") for n in pending)
            system = None
            if history:
                system = self._history_system
            elif self._shdr is not None and len(self._shdr) > 1:
                system = self._shdr[1].strip() or None
            self.header = Header.from_columns(
                pending, None if history else self._shdr, kind="bis-history" if history else "bis", system=system
            )
            self._shdr, self._history_system = None, None
            self.stats.headers += 1

    def _complete(self) -> BISRecord | None:
        fields, when = self._pending or [], self._pending_time
        self._pending, self._pending_kind = None, ""
        assert when is not None
        h = self.header
        values: dict[str, float | int | None] = {}
        channels: dict[str, dict[str, float | int | None]] = {ch: {} for ch in h.channels}
        settings: dict[str, str] = {}
        invalid = 0
        for i in range(1, h.size):
            name, raw = h.names[i], fields[i].strip()
            if not _PRINTABLE.match(raw):
                return self._corrupt(fields)
            if name in SETTINGS:
                settings[name] = raw
                continue
            if name in BIT_FIELDS:
                if not _HEX_RE.match(raw):
                    if _INVALID_TEXT_RE.match(raw):
                        val: float | int | None = None
                        invalid += 1
                    else:
                        return self._corrupt(fields)
                else:
                    val = int(raw, 16)
            else:
                if _NUMBER_RE.match(raw):
                    num = float(raw)
                    if "." not in raw:
                        num = int(raw)
                    if num < 0 or abs(num) >= SPECIAL_LIMIT or (h.kind == "bis-history" and float(num) in HISTORY_INVALID):
                        val, invalid = None, invalid + 1
                    else:
                        val = num
                elif _INVALID_TEXT_RE.match(raw):
                    val, invalid = None, invalid + 1
                elif h.channel_of[i] is None and not any(c.isdigit() for c in raw):
                    settings[name] = raw  # an unknown text column
                    continue
                else:
                    return self._corrupt(fields)
            ch = h.channel_of[i]
            if ch is None:
                values[name] = val
            else:
                channels[ch][name] = val
        self.stats.records += 1
        self.stats.invalid_values += invalid
        self._last_time = when
        return BISRecord(device_time=when, kind=h.kind, values=values, channels=channels, settings=settings)

    def _corrupt(self, fields: list[str]) -> None:
        self.stats.corrupt_records += 1
        self.stats.skipped_bytes += sum(len(t) + 1 for t in fields)
        return None


def iter_records(chunks: Iterable[bytes], parser: BISParser | None = None) -> Iterator[BISRecord]:
    """Records from an iterable of byte chunks (a file read in blocks, a socket)."""
    parser = parser if parser is not None else BISParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.finish()


def parse_bytes(data: bytes) -> tuple[list[BISRecord], BISParser]:
    """All records of a complete capture, plus the parser (for ``.stats``, ``.header``)."""
    parser = BISParser()
    records = parser.feed(data)
    records += parser.finish()
    return records, parser


def parse_file(path: str | Path, chunk_size: int = 65536) -> tuple[list[BISRecord], BISParser]:
    """Parse a capture file (a raw serial log or a HISTORY export) in bounded chunks."""
    parser = BISParser()
    records: list[BISRecord] = []
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            records += parser.feed(chunk)
    records += parser.finish()
    return records, parser
