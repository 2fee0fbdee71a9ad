"""``DeidOptions``: every setting of a de-identification run, as one validated, frozen value.

Defaults come from :mod:`surgbox.deid.defaults`. Each invalid value raises
:class:`~surgbox.errors.ConfigError` naming the option and the accepted range when the value is
built, before any file is touched. Options of the detector and encoder plugins are checked by
their factories when the run builds them (see :meth:`surgbox.plugins.Plugins.create`).

    >>> opts = DeidOptions(region="1280,0,640,360", every=2)
    >>> opts.every, opts.detect_scale
    (2, 1.0)
    >>> DeidOptions(carry=-1)
    Traceback (most recent call last):
    ...
    surgbox.errors.ConfigError: carry must be an integer in [0, 120], got -1
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from ..errors import ConfigError
from . import defaults
from .anonymize import Anonymizer, make_anonymizer
from .decoders import check_decoder
from .regions import RegionSpec, parse_region_spec
from .temporal import TemporalFilter

MAX_BATCH = 256  # crops per detector call (the frames of a batch are held until it is scored)
MAX_EVERY = 30  # detect at least once a second at 30 fps (the temporal stage holds ~2 * every frames)
MAX_WINDOW = 120  # frames: bounds carry / max_gap, hence the frames held for the temporal stage
ON_DETECTOR_ERROR = ("fail", "blur-region")
EXTRA_STREAMS = ("refuse", "drop")


def _mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if value is None:
        return types.MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping of options, got {value!r}")
    return types.MappingProxyType({str(k): v for k, v in value.items()})


def _int_in(lo: int, hi: int | None):
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise ConfigError(f"{attribute.name} must be an integer {'in ' if hi is not None else ''}{rng}, got {value!r}")
    return check


def _one_of(choices: tuple[str, ...]):
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise ConfigError(f"{attribute.name} must be one of {', '.join(choices)}; got {value!r}")
    return check


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_scale(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not (_number(value) and 0 < value <= 1):
        raise ConfigError(f"detect_scale must be in (0, 1], got {value!r} (0.5 scans regions at half size)")


def _check_threshold(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not _number(value):
        raise ConfigError(f"threshold must be a number or None, got {value!r}")


def _check_threads(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"detector_threads must be an integer >= 1 or None, got {value!r}")


def _check_cut(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not (_number(value) and 0 <= value <= 255):
        raise ConfigError(f"cut_threshold must be in [0, 255] (mean luma change) or None (no cut detection), got {value!r}")


def _check_number(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not _number(value):
        raise ConfigError(f"{attribute.name} must be a number, got {value!r}")


@attrs.frozen(kw_only=True)
class DeidOptions:
    """How to de-identify (not what: the input, output and sidecar paths are the run's).

    ``region``: ``"auto"``, ``"full"``, ``"X,Y,W,H[;...]"`` or Rect(s) (parsed into a
    :class:`~surgbox.deid.regions.RegionSpec`). ``detector`` / ``encoder``: plugin names (or
    built instances, which take no ``*_options``). ``threshold`` / ``detector_threads``: the
    detector's ``threshold`` / ``threads`` options, passed only when given (``None``: the
    detector's de-identification defaults from :data:`~surgbox.deid.defaults.DETECTOR_OPTIONS`,
    else its own). ``batch``: frames whose crops go to the detector in one call (at most
    :data:`MAX_BATCH`; lowered by the run when ``batch * every`` frames would not fit in
    ``queue_memory``). ``detect_scale``: regions are resized by
    this factor (0 < s <= 1) for the detector. ``queue_size`` / ``queue_memory``: decoded frames
    buffered, capped so the pictures held fit in ``queue_memory`` bytes. ``carry`` /
    ``max_gap`` / ``every``: the temporal stage; ``confirm_hits``: with a detector that declares
    ``confirm_score``, a track none of whose detections is confident is hidden once it has this
    many detections (1: every candidate track is hidden; docs/deid.md "Temporal stage").
    ``expand`` / ``feather``: the mask.
    ``anonymizer`` (``blur``, ``pixelate``, ``fill`` or an instance) with
    ``anonymizer_options``. ``cut_threshold``: mean luma change (0-255) of a region's 16x16-block
    averages that marks a scene cut in that region (``None``: never). ``on_detector_error``:
    ``"fail"`` (the run stops, nothing is written) or ``"blur-region"`` (the frames of a batch
    the detector could not score get their whole regions hidden). ``extra_streams``: streams
    beyond the first video and first audio stream are ``"refuse"``-d (an error listing them) or
    ``"drop"``-ped (listed in the report). ``decoder``: which decoder makes the pictures, one of
    :data:`~surgbox.deid.decoders.DECODERS` (``auto``: NVDEC or a Jetson's GStreamer decoder
    where present, else PyAV in software; the report says which ran and why). ``strict``: an input that ends before its container
    says (a cut or crashed recording) is an error instead of a warning. ``out_of_body``: with
    ``region="auto"``, also hide the layout's endoscope slot whole in frames where it films the
    room (:mod:`surgbox.deid.outofbody`). ``overwrite``: replace
    an existing output (never the input itself).
    """

    region: RegionSpec = attrs.field(default="auto", converter=parse_region_spec)
    detector: Any = attrs.field(default=defaults.DETECTOR)
    detector_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping, hash=False)
    threshold: float | None = attrs.field(default=None, validator=_check_threshold)
    detector_threads: int | None = attrs.field(default=None, validator=_check_threads)
    encoder: Any = attrs.field(default=defaults.ENCODER)
    encoder_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping, hash=False)
    batch: int = attrs.field(default=defaults.BATCH, validator=_int_in(1, MAX_BATCH))
    detect_scale: float = attrs.field(default=defaults.DETECT_SCALE, validator=_check_scale)
    queue_size: int = attrs.field(default=defaults.QUEUE_SIZE, validator=_int_in(1, None))
    queue_memory: int = attrs.field(default=defaults.QUEUE_MEMORY, validator=_int_in(1, None))
    carry: int = attrs.field(default=defaults.CARRY, validator=_int_in(0, MAX_WINDOW))
    max_gap: int = attrs.field(default=defaults.MAX_GAP, validator=_int_in(0, MAX_WINDOW))
    confirm_hits: int = attrs.field(default=defaults.CONFIRM_HITS, validator=_int_in(1, MAX_WINDOW))
    every: int = attrs.field(default=defaults.EVERY, validator=_int_in(1, MAX_EVERY))
    expand: float = attrs.field(default=defaults.EXPAND, validator=_check_number)
    feather: float = attrs.field(default=defaults.FEATHER, validator=_check_number)
    anonymizer: Any = attrs.field(default=defaults.ANONYMIZER)
    anonymizer_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping, hash=False)
    cut_threshold: float | None = attrs.field(default=defaults.CUT_THRESHOLD, validator=_check_cut)
    on_detector_error: str = attrs.field(default=defaults.ON_DETECTOR_ERROR, validator=_one_of(ON_DETECTOR_ERROR))
    extra_streams: str = attrs.field(default=defaults.EXTRA_STREAMS, validator=_one_of(EXTRA_STREAMS))
    decoder: str = attrs.field(default=defaults.DECODER, validator=check_decoder)
    strict: bool = attrs.field(default=False, converter=bool)
    out_of_body: bool = attrs.field(default=False, converter=bool)
    overwrite: bool = attrs.field(default=False, converter=bool)

    def __attrs_post_init__(self) -> None:
        for kind in ("detector", "encoder"):
            if not isinstance(getattr(self, kind), str) and getattr(self, f"{kind}_options"):
                spec = getattr(self, kind)
                raise ConfigError(f"{kind} options given with an already built {kind} {spec!r}; pass a name instead")
        if not isinstance(self.detector, str) and (self.threshold is not None or self.detector_threads is not None):
            raise ConfigError("threshold/detector_threads given with an already built detector; set them on it, or pass its name")
        self.make_anonymizer()  # validates the anonymizer, its options and the mask shape

    def make_anonymizer(self) -> Anonymizer:
        """The anonymizer these options describe (a new one per call, unless given built)."""
        return make_anonymizer(self.anonymizer, expand=self.expand, feather=self.feather, **dict(self.anonymizer_options))

    def make_temporal(self, bounds: tuple[tuple[float, float, float, float], ...] = (),
                      track_ids: Iterator[int] | None = None) -> TemporalFilter:
        """A fresh temporal stage for scan regions ``bounds`` (frame pixels ``x1, y1, x2, y2``),
        drawing track ids from ``track_ids`` (default: its own 0, 1, 2, ...)."""
        extra = {} if track_ids is None else {"track_ids": track_ids}
        return TemporalFilter(carry=self.carry, max_gap=self.max_gap, every=self.every, bounds=bounds,
                              confirm_hits=self.confirm_hits, **extra)

    def detector_factory_options(self) -> dict[str, Any]:
        """The options a detector built by name gets: its de-identification defaults
        (:func:`~surgbox.deid.defaults.detector_options`), then ``detector_options``, then
        ``threshold`` / ``detector_threads`` where given and not already in
        ``detector_options`` (see :mod:`surgbox.deid.defaults` for the rule)."""
        if not isinstance(self.detector, str):
            return {}
        options = defaults.detector_options(self.detector)
        options.update(self.detector_options)
        if self.threshold is not None and "threshold" not in self.detector_options:
            options["threshold"] = self.threshold
        if self.detector_threads is not None and "threads" not in self.detector_options:
            options["threads"] = self.detector_threads
        return options

    def encoder_factory_options(self, streaming: bool) -> dict[str, Any]:
        """The options an encoder built by name gets: ``encoder_options``, plus, for the encoders
        :data:`~surgbox.deid.defaults.PLAIN_MP4_ENCODERS` declares, ``fragmented`` — a plain MP4
        (exact times with edit lists) for a file path, fragmented MP4 for a file object, which
        cannot seek — unless the caller chose it."""
        options = dict(self.encoder_options)
        if isinstance(self.encoder, str) and self.encoder.rpartition(":")[2] in defaults.PLAIN_MP4_ENCODERS:
            options.setdefault("fragmented", streaming)
        return options

    def settings(self) -> dict[str, Any]:
        """The JSON-ready settings that change the result (for the report and audit header)."""
        return {"batch": self.batch, "detect_scale": self.detect_scale, "queue_size": self.queue_size,
                "carry": self.carry, "max_gap": self.max_gap, "confirm_hits": self.confirm_hits, "every": self.every,
                "cut_threshold": self.cut_threshold,
                "detector_threads": self.detector_threads, "on_detector_error": self.on_detector_error,
                "extra_streams": self.extra_streams, "strict": self.strict, "out_of_body": self.out_of_body}
