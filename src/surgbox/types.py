"""Value types that flow between sources, compositor, encoder, detector and store.

Conventions (the contract every plugin follows):

* Time: ``capture_ns`` is an integer on the master :class:`~surgbox.clock.Clock`
  (monotonic nanoseconds), taken when the sample was captured, never when it was processed.
* Pixels: video is carried as a PyAV ``av.VideoFrame`` (usually ``yuv420p``); numpy arrays are
  ``HxWx3 uint8 RGB`` unless a docstring says otherwise. Types holding arrays use ``eq=False``.
* Geometry: :class:`Rect` is ``x, y, width, height`` in integer pixels of the picture it lives in
  (origin top-left). Detection boxes are ``[x1, y1, x2, y2]`` float pixels of the image that was
  given to the detector (x2/y2 exclusive edges).
* Audio: float32 planar samples shaped ``(channels, samples)`` in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import av


RATE_MAX_DENOMINATOR = 1_001_000
""":func:`parse_rate` keeps every rate whose denominator is at most this exactly (``30000/1001``,
``2997/100``, any decimal with up to 6 digits after the point)."""


def parse_rate(value: Any, what: str = "rate") -> Fraction:
    """A frame (or sample) rate as an exact positive :class:`~fractions.Fraction`, the one rate
    parser of surgbox: ``30``, ``29.97`` (a float is read as its decimal text: ``2997/100``),
    ``"29.97"``, ``"30000/1001"`` or a ``Fraction``; denominators are limited to
    :data:`RATE_MAX_DENOMINATOR`. Raises :class:`ValueError` naming ``what`` for anything else.

    >>> parse_rate(29.97), parse_rate("30000/1001"), parse_rate(25)
    (Fraction(2997, 100), Fraction(30000, 1001), Fraction(25, 1))
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Fraction)):
        raise ValueError(f"{what} must be a number like 30, 29.97 or '30000/1001', got {value!r}")
    try:
        rate = value if isinstance(value, Fraction) else Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{what} must be a number like 30, 29.97 or '30000/1001', got {value!r}") from None
    if rate <= 0:
        raise ValueError(f"{what} must be > 0, got {value!r}")
    return rate.limit_denominator(RATE_MAX_DENOMINATOR)


def _positive(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen
class Rect:
    """Axis-aligned rectangle in integer pixels: top-left ``(x, y)``, size ``(width, height)``.

    >>> Rect(1280, 0, 640, 360).x2
    1920
    """

    x: int = attrs.field(converter=int, validator=_non_negative)
    y: int = attrs.field(converter=int, validator=_non_negative)
    width: int = attrs.field(converter=int, validator=_positive)
    height: int = attrs.field(converter=int, validator=_positive)

    @property
    def x2(self) -> int:
        """Exclusive right edge."""
        return self.x + self.width

    @property
    def y2(self) -> int:
        """Exclusive bottom edge."""
        return self.y + self.height

    @property
    def area(self) -> int:
        return self.width * self.height

    def as_xywh(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)

    def as_xyxy(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.x2, self.y2)

    def contains(self, other: Rect) -> bool:
        """True when ``other`` lies entirely inside this rectangle."""
        return self.x <= other.x and self.y <= other.y and other.x2 <= self.x2 and other.y2 <= self.y2

    def fit_inside(self, width: int, height: int) -> Rect:
        """The largest rectangle of aspect ``width:height`` centred in this one (letterbox fit)."""
        scale = min(self.width / width, self.height / height)
        w = max(1, round(width * scale))
        h = max(1, round(height * scale))
        return Rect(self.x + (self.width - w) // 2, self.y + (self.height - h) // 2, w, h)

    @classmethod
    def parse(cls, text: str) -> Rect:
        """Parse ``"X,Y,W,H"``; raises ``ValueError`` naming the text and the expected form."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4 or not all(p.lstrip("-").isdigit() for p in parts):
            raise ValueError(f"rectangle {text!r} is not X,Y,W,H in integer pixels (e.g. 1280,0,640,360)")
        return cls(*map(int, parts))


@attrs.define(eq=False, frozen=True)
class VideoFrame:
    """One captured picture.

    ``image`` is a PyAV ``av.VideoFrame`` in any pixel format (sources prefer ``yuv420p``);
    ``capture_ns`` is master-clock time of capture; ``seq`` counts frames from 0 per source.
    """

    source: str
    capture_ns: int
    image: av.VideoFrame
    seq: int = 0

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    def to_ndarray(self, format: str = "rgb24") -> np.ndarray:
        """Pixels as a numpy array in ``format`` (default ``HxWx3 uint8 RGB``), converted by swscale."""
        return self.image.to_ndarray(format=format)

    @classmethod
    def from_ndarray(cls, source: str, capture_ns: int, array: np.ndarray, format: str = "rgb24", seq: int = 0) -> VideoFrame:
        """Wrap a numpy picture (``HxWx3 uint8 RGB`` by default) as a frame."""
        import av

        return cls(source, capture_ns, av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=format), seq)


@attrs.define(eq=False, frozen=True)
class AudioChunk:
    """A block of audio: float32 planar ``samples`` shaped ``(channels, n)``.

    ``capture_ns`` is the master-clock time of the chunk's first sample.
    """

    source: str
    capture_ns: int
    samples: np.ndarray
    sample_rate: int = attrs.field(validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.samples.ndim != 2:
            raise ValueError(f"audio samples must be shaped (channels, n), got {self.samples.shape}")

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_ns(self) -> int:
        return self.samples.shape[1] * 1_000_000_000 // self.sample_rate

    @property
    def end_ns(self) -> int:
        return self.capture_ns + self.duration_ns


def channel_layout(channels: int) -> str:
    """FFmpeg's layout name for ``channels`` planar channels: ``mono``, ``stereo``, else ``"Nc"``
    (N channels, order unspecified): the one map used by sources, the audio aligner and encoders.

    >>> channel_layout(1), channel_layout(2), channel_layout(6)
    ('mono', 'stereo', '6c')
    """
    n = int(channels)
    if n < 1:
        raise ValueError(f"an audio layout needs at least 1 channel, got {channels!r}")
    return {1: "mono", 2: "stereo"}.get(n, f"{n}c")


Value = float | None


@attrs.frozen
class Reading:
    """One record from a data device (a BIS monitor, a vitals monitor, ...).

    ``values`` maps the device's own names (``"BIS"``, ``"SQI"``, ``"HR"``) to numbers, with
    ``None`` for a value the device marked invalid or did not send. Multi-channel devices put
    per-channel values in ``channels`` (``{"1": {"BIS": 45.0, ...}, "2": {...}}``) and a summary
    of the main channel in ``values``. ``device_time`` is the device's own timestamp if it sends
    one (naive, device-local); ordering always uses ``capture_ns``.
    """

    source: str
    capture_ns: int
    kind: str
    values: Mapping[str, Value] = attrs.field(factory=dict)
    channels: Mapping[str, Mapping[str, Value]] = attrs.field(factory=dict)
    device_time: datetime | None = None


@attrs.frozen
class Trigger:
    """A discrete event from a trigger source (foot switch, API, CLI).

    ``action`` says what was asked (``"snapshot"`` by default); ``detail`` carries extras
    (e.g. ``{"source": "room"}`` to also save that source at native resolution).
    """

    source: str
    capture_ns: int
    action: str = "snapshot"
    detail: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Detection:
    """One detected object: ``box`` ``(x1, y1, x2, y2)`` in float pixels, ``score`` in [0, 1],
    optional five ``landmarks`` ``((x, y), ...)`` (eyes, nose, mouth corners for faces)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"box": [float(v) for v in self.box], "score": float(self.score)}
        if self.landmarks is not None:
            d["landmarks"] = [[float(x), float(y)] for x, y in self.landmarks]
        return d


def _boxes(value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32).reshape(-1, 4)
    return arr


@attrs.define(eq=False, frozen=True)
class Detections:
    """All detections in one image, as arrays.

    ``boxes``: ``(N, 4)`` float32 ``[x1, y1, x2, y2]`` pixels of the image given to the detector;
    ``scores``: ``(N,)`` float32; ``landmarks``: ``(N, 5, 2)`` float32 or ``None``.
    """

    boxes: np.ndarray = attrs.field(converter=_boxes)
    scores: np.ndarray = attrs.field(converter=lambda v: np.asarray(v, dtype=np.float32).reshape(-1))
    landmarks: np.ndarray | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        n = len(self.boxes)
        if len(self.scores) != n:
            raise ValueError(f"detections: {n} boxes but {len(self.scores)} scores")
        if self.landmarks is not None and np.shape(self.landmarks)[:1] != (n,):
            raise ValueError(f"detections: {n} boxes but landmarks shaped {np.shape(self.landmarks)}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), None)

    @classmethod
    def from_list(cls, items: Sequence[Detection]) -> Detections:
        if not items:
            return cls.empty()
        lms = None
        if all(d.landmarks is not None for d in items):
            lms = np.asarray([d.landmarks for d in items], np.float32).reshape(len(items), -1, 2)
        return cls([d.box for d in items], [d.score for d in items], lms)

    def __len__(self) -> int:
        return len(self.boxes)

    def __iter__(self) -> Iterator[Detection]:
        for i in range(len(self)):
            lm = None
            if self.landmarks is not None:
                lm = tuple((float(x), float(y)) for x, y in self.landmarks[i])
            yield Detection(tuple(float(v) for v in self.boxes[i]), float(self.scores[i]), lm)  # type: ignore[arg-type]

    def shifted(self, dx: float, dy: float) -> Detections:
        """The same detections moved by ``(dx, dy)`` pixels (crop coordinates -> frame coordinates)."""
        lms = None if self.landmarks is None else self.landmarks + np.float32([dx, dy])
        return Detections(self.boxes + np.float32([dx, dy, dx, dy]), self.scores.copy(), lms)

    def scaled(self, factor: float) -> Detections:
        """Coordinates multiplied by ``factor`` (resized image -> original image)."""
        lms = None if self.landmarks is None else self.landmarks * np.float32(factor)
        return Detections(self.boxes * np.float32(factor), self.scores.copy(), lms)

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready ``[{"box": [...], "score": s, "landmarks": [[x, y] x 5]}]``."""
        return [d.to_dict() for d in self]


SLOT_KINDS = ("video", "panel")


@attrs.frozen
class Slot:
    """A named region of the composite.

    ``kind`` is ``"video"`` (shows ``source``, scaled to fit, aspect preserved) or ``"panel"``
    (the data panel). ``role`` tags what the slot shows for later stages: the de-identification
    step's ``--region auto`` uses the slot whose role is ``"room_camera"``.
    """

    name: str
    rect: Rect
    kind: str = attrs.field(default="video", validator=attrs.validators.in_(SLOT_KINDS))
    source: str | None = None
    role: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rect": list(self.rect.as_xywh()), "kind": self.kind, "source": self.source, "role": self.role}

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Slot:
        rect = m["rect"]
        rect = Rect.parse(rect) if isinstance(rect, str) else Rect(*rect)
        return cls(name=str(m["name"]), rect=rect, kind=m.get("kind", "video"), source=m.get("source"), role=m.get("role"))


@attrs.frozen
class Layout:
    """The composite picture: ``width x height`` pixels with named, non-overlapping-or-not slots.

    Stored with every recording (container metadata and sidecar) as :meth:`to_dict` JSON.
    """

    width: int = attrs.field(validator=_positive)
    height: int = attrs.field(validator=_positive)
    slots: tuple[Slot, ...] = attrs.field(converter=tuple)
    name: str = "custom"

    def __attrs_post_init__(self) -> None:
        canvas = Rect(0, 0, self.width, self.height)
        seen: set[str] = set()
        for s in self.slots:
            if s.name in seen:
                raise ValueError(f"layout {self.name!r}: slot name {s.name!r} used twice")
            seen.add(s.name)
            if not canvas.contains(s.rect):
                raise ValueError(
                    f"layout {self.name!r}: slot {s.name!r} {s.rect.as_xywh()} lies outside the {self.width}x{self.height} canvas"
                )

    def slot(self, name: str) -> Slot:
        for s in self.slots:
            if s.name == name:
                return s
        raise KeyError(f"layout {self.name!r} has no slot {name!r}; slots: {', '.join(s.name for s in self.slots)}")

    def slots_with_role(self, role: str) -> list[Slot]:
        return [s for s in self.slots if s.role == role]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "width": self.width, "height": self.height, "slots": [s.to_dict() for s in self.slots]}

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Layout:
        return cls(
            width=int(m["width"]),
            height=int(m["height"]),
            slots=tuple(Slot.from_mapping(s) for s in m["slots"]),
            name=str(m.get("name", "custom")),
        )


@attrs.frozen
class RecordingInfo:
    """What the lifecycle hooks learn about a recording.

    ``id`` is the event/recording id; ``path`` the main output (file path or store key);
    ``started_at`` the wall-clock start; ``metadata`` the same mapping written to the sidecar.
    """

    id: str
    path: str
    layout: Layout | None = None
    sources: tuple[str, ...] = ()
    started_at: datetime | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class SegmentInfo:
    """A finished, durable piece of a recording: one fragment of its fragmented MP4.

    ``start_ns``/``duration_ns`` are its video time on the recording's output time line (0 =
    first frame); bytes ``[offset, offset + size_bytes)`` of the recording at ``path`` (a file
    path, or ``store:KEY``) hold it, and bytes ``[0, init_size)`` the header (``ftyp`` +
    ``moov``) that makes it playable on its own (header + fragment is a valid MP4). ``index``
    counts fragments from 0.
    """

    recording_id: str
    index: int
    path: str
    start_ns: int
    duration_ns: int
    size_bytes: int
    offset: int = 0
    init_size: int = 0


@attrs.frozen
class DeidResult:
    """Outcome of one de-identification run, passed to ``deid_finished``.

    ``report`` is the JSON-ready report (settings, stage timings, counts).
    """

    src: str
    dst: str
    frames: int
    faces: int
    seconds: float
    report: Mapping[str, Any] = attrs.field(factory=dict)
