"""The ``ensemble`` detector plugin: several member detectors, each on its own cadence, fused.

>>> det = EnsembleDetector(members=[                                    # doctest: +SKIP
...     {"name": "centerface", "threshold": 0.2},                       # every frame
...     {"name": "retinaface", "threshold": 0.3, "every": 3},           # every 3rd frame
... ], fusion="nms")
>>> with det:                                                           # doctest: +SKIP
...     dets = det.detect_frames(crops, frame_indices)                  # one Detections per crop

Members are built by plugin name through the plugin manager (so a vendor's detector can be a
member) when the ensemble is opened. The ensemble imports no torch itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs
import numpy as np

from surgbox.deid import defaults
from surgbox.errors import ConfigError
from surgbox.interfaces import Detector
from surgbox.types import Detections

from .fusion import FUSIONS, fuse

# keys of a member spec that belong to the ensemble; every other key is an option of the member
MEMBER_KEYS = ("name", "every", "phase", "confirm")
# options the ensemble hands to members that do not set them themselves
SHARED_OPTIONS = ("threads", "device")


@attrs.frozen
class Member:
    """One member: plugin ``name``, its ``options``, and its cadence: it runs on the frames whose
    index ``i`` has ``i % every == phase`` (``every=1``: every frame). ``confirm``: the score
    from which this member's detections are confident (see :func:`calibrate`; ``None``: all
    of them, from its threshold)."""

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    every: int = attrs.field(default=1)
    phase: int = attrs.field(default=0)
    confirm: float | None = attrs.field(default=None, converter=attrs.converters.optional(float))

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"ensemble member {self.name!r}: every must be an integer >= 1, got {self.every!r}")
        if not isinstance(self.phase, int) or not 0 <= self.phase < self.every:
            raise ConfigError(f"ensemble member {self.name!r}: phase must be an integer in [0, every), got {self.phase!r}")
        if self.confirm is not None and not 0.0 < self.confirm < 1.0:
            raise ConfigError(f"ensemble member {self.name!r}: confirm must be in (0, 1), got {self.confirm}")

    @classmethod
    def from_spec(cls, spec: Any) -> Member:
        """A member from ``"name"`` or ``{"name": ..., "every": ..., "phase": ..., "confirm": ...,
        **options}``."""
        if isinstance(spec, Member):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ConfigError(f"ensemble member {spec!r} must be a plugin name or an object with a \"name\" key, "
                              'e.g. {"name": "centerface", "threshold": 0.2, "every": 1}')
        opts = {k: v for k, v in spec.items() if k not in MEMBER_KEYS}
        return cls(spec["name"], opts, spec.get("every", 1), spec.get("phase", 0), spec.get("confirm"))

    def runs_on(self, frame: int) -> bool:
        return frame % self.every == self.phase

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "every": self.every, "phase": self.phase, **self.options}
        if self.confirm is not None:
            out["confirm"] = self.confirm
        return out


def parse_members(value: Any) -> tuple[Member, ...]:
    """Members from a JSON string (as given on the command line), or a list of specs."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"ensemble members {value!r} is not JSON ({exc.msg}); give e.g. "
                              "members='[{\"name\": \"centerface\"}, {\"name\": \"retinaface\", \"every\": 3}]'") from None
    if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"ensemble members must be a non-empty list of detectors, got {value!r}")
    members = tuple(Member.from_spec(v) for v in value)
    if any(m.name == "ensemble" for m in members):
        raise ConfigError("an ensemble cannot be a member of an ensemble")
    return members


CONFIRMED = 0.5  # a calibrated score from which a detection is confident (every member's ``confirm`` maps here)


def calibrate(scores: np.ndarray, confirm: float | None) -> np.ndarray:
    """Scores of one member on the ensemble's common scale: ``confirm`` maps to
    :data:`CONFIRMED` (0.5), linearly below it (``s * 0.5 / confirm``) and above it (to 1 at 1),
    so the order within a member is kept and members whose raw scores differ in meaning (each
    detector's own calibration, a scale that scores lower) become comparable. ``confirm=None``:
    every detection is confident, ``0.5 + s / 2``."""
    s = np.asarray(scores, np.float32)
    if confirm is None:
        return (CONFIRMED + s * (1 - CONFIRMED)).astype(np.float32)
    low = s * (CONFIRMED / confirm)
    high = CONFIRMED + (s - confirm) * ((1 - CONFIRMED) / (1 - confirm))
    return np.where(s < confirm, low, high).astype(np.float32)


def default_members() -> list[Any]:
    """The de-identification default members (:mod:`surgbox.deid.defaults`)."""
    return list(defaults.detector_options("ensemble").get("members") or [])


@attrs.define(eq=False)
class EnsembleDetector(Detector):
    """Runs ``members`` (see :class:`Member`) and fuses their boxes per image.

    Options: ``members`` (list of specs or a JSON string; default: the de-identification
    default members in :data:`surgbox.deid.defaults.DETECTOR_OPTIONS`), ``fusion`` (``"nms"`` or
    ``"union"``, see :mod:`.fusion`), ``iou`` (overlap that makes two boxes one face),
    ``threshold``: when given, every member's threshold (``None``: each member's own);
    ``threads``/``device``: given to each member that does not set its own.
    ``plugins``: the plugin manager that builds members (default: the process-wide one).

    :meth:`detect` runs every member on every image; :meth:`detect_frames` runs each member only
    on the frames of its cadence (an image no member runs on gets no detections: the temporal
    stage bridges it). ``stage_seconds`` sums the members' own stage times (plus ``fusion``).

    Hysteresis: when some member sets ``confirm``, every member's scores are put on one scale
    (:func:`calibrate`: ``confirm`` -> 0.5) and :attr:`confirm_score` is 0.5; the
    de-identification temporal stage then shows a track only once one of its detections is
    confident or it has been seen often enough (:class:`surgbox.deid.temporal.TemporalFilter`),
    so members can run at low thresholds. Without ``confirm`` scores are the members' own and
    :attr:`confirm_score` is ``None`` (every detection counts).
    """

    name: ClassVar[str] = "ensemble"
    version: ClassVar[str] = "1"

    members: tuple[Member, ...] = attrs.field(factory=lambda: default_members(), converter=parse_members)
    fusion: str = attrs.field(default="nms")
    iou: float = attrs.field(default=0.4, converter=float)
    threshold: float | None = attrs.field(default=None, converter=attrs.converters.optional(float))
    threads: int | None = attrs.field(default=None, converter=attrs.converters.optional(int))
    device: str | None = None
    plugins: Any = None
    _detectors: list[Any] = attrs.field(factory=list, init=False, alias="_detectors")
    _own_seconds: dict[str, float] = attrs.field(factory=dict, init=False, alias="_own_seconds")
    runs: dict[str, int] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ConfigError(f"ensemble fusion {self.fusion!r} is not one of {', '.join(FUSIONS)}")
        if not 0.0 < self.iou <= 1.0:
            raise ConfigError(f"ensemble iou must be in (0, 1], got {self.iou}")
        if self.threshold is not None and not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold} (e.g. 0.15)")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")

    @property
    def confirm_score(self) -> float | None:
        """The (calibrated) score from which a detection is confident, for the temporal stage's
        hysteresis; ``None`` when no member sets ``confirm``."""
        return CONFIRMED if any(m.confirm is not None for m in self.members) else None

    def member_options(self, member: Member) -> dict[str, Any]:
        """The options ``member``'s plugin is built with: its own, plus the ensemble's ``threads``
        and ``device`` where it sets none; the ensemble's ``threshold``, when given, replaces every
        member's (one minimum score for the whole ensemble, as a caller asking for one means)."""
        opts = dict(member.options)
        if self.threshold is not None:
            opts["threshold"] = self.threshold
        for key in SHARED_OPTIONS:
            value = getattr(self, key)
            if value is not None and key not in opts:
                opts[key] = value
        return opts

    @property
    def is_open(self) -> bool:
        return bool(self._detectors)

    def open(self) -> None:
        """Build and open every member (idempotent); on a failure the ones opened are closed."""
        if self.is_open:
            return
        plugins = self.plugins
        if plugins is None:
            from surgbox.plugins import get_plugins

            plugins = get_plugins()
        built: list[Any] = []
        try:
            for m in self.members:
                det = plugins.create("detector", m.name, **self.member_options(m))
                det.open()
                built.append(det)
        except BaseException:
            for det in built:
                det.close()
            raise
        self._detectors = built
        self.runs = {self._label(i): 0 for i in range(len(self.members))}

    def close(self) -> None:
        for det in self._detectors:
            det.close()
        self._detectors = []

    def _label(self, i: int) -> str:
        return f"{i}:{self.members[i].name}"

    def settings(self) -> Mapping[str, Any]:
        """Fusion options and each member's cadence and own settings, for audit records."""
        members = []
        for i, m in enumerate(self.members):
            own = dict(self._detectors[i].settings()) if self.is_open else self.member_options(m)
            members.append({"every": m.every, "phase": m.phase, "confirm": m.confirm, **own, "detector": m.name})
        return {"detector": self.name, "fusion": self.fusion, "iou": self.iou, "confirm_score": self.confirm_score,
                "members": members}

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Cumulative seconds per stage over all members (those that report them) and fusion."""
        out = dict(self._own_seconds)
        for det in self._detectors:
            stats = getattr(det, "stage_seconds", None)
            stats = stats() if callable(stats) else stats
            if isinstance(stats, Mapping):
                for k, v in stats.items():
                    out[k] = out.get(k, 0.0) + float(v)
        return out

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Every member on every image, fused."""
        return self._run(images, None)

    def detect_frames(self, images: Sequence[np.ndarray], frame_indices: Sequence[int]) -> list[Detections]:
        """Each member on the images whose frame index is on its cadence, fused per image."""
        if len(frame_indices) != len(images):
            raise ValueError(f"detect_frames got {len(images)} images but {len(frame_indices)} frame indices")
        return self._run(images, [int(i) for i in frame_indices])

    def _run(self, images: Sequence[np.ndarray], frames: list[int] | None) -> list[Detections]:
        if not self.is_open:
            self.open()
        per_image: list[list[Detections]] = [[] for _ in images]
        calibrated = self.confirm_score is not None
        for k, (m, det) in enumerate(zip(self.members, self._detectors)):
            todo = list(range(len(images))) if frames is None else [i for i, f in enumerate(frames) if m.runs_on(f)]
            if not todo:
                continue
            found = det.detect([images[i] for i in todo])
            if len(found) != len(todo):
                raise ConfigError(f"ensemble member {m.name!r} returned {len(found)} results for {len(todo)} images")
            self.runs[self._label(k)] = self.runs.get(self._label(k), 0) + len(todo)
            for i, d in zip(todo, found):
                if calibrated and len(d):
                    d = Detections(d.boxes, calibrate(d.scores, m.confirm), d.landmarks)
                per_image[i].append(d)
        t0 = time.perf_counter()
        out = [fuse(parts, self.fusion, iou=self.iou) if parts else Detections.empty() for parts in per_image]
        self._own_seconds["fusion"] = self._own_seconds.get("fusion", 0.0) + time.perf_counter() - t0
        return out
