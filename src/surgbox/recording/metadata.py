"""What a recording says about itself: the sidecar's metadata and the container's tags."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from fractions import Fraction
from typing import Any

from ..interfaces import Encoder, Source
from ..types import Layout
from .options import RecorderOptions
from .sinks import SIDECAR_FORMAT, SIDECAR_VERSION

ENCODER_SETTINGS = ("preset", "crf", "bitrate", "profile", "gop_seconds", "tune", "threads", "cq")


def describe_source(src: Source, options: RecorderOptions, start_error: str | None = None) -> dict[str, Any]:
    """A source's sidecar entry: name, media, optional, configured info, device, size/rate."""
    d: dict[str, Any] = {"name": src.name, "media": src.media, "optional": src.name in options.optional}
    d.update(options.source_info.get(src.name, {}))
    info = getattr(src, "sidecar_info", None)  # a source's own sidecar fields (live de-identification)
    if callable(info):
        d.update(info())
    describe = getattr(src, "describe", None)
    if callable(describe):
        try:
            d["device"] = str(describe())
        except Exception:  # a description is optional
            pass
    for attr in ("width", "height", "fps", "sample_rate", "channels"):
        v = getattr(src, attr, None)
        if isinstance(v, (int, float, Fraction)) and not isinstance(v, bool):
            d.setdefault(attr, str(v) if isinstance(v, Fraction) else v)
    if start_error is not None:
        d["start_error"] = start_error
    return d


def encoder_settings(encoder: Encoder) -> dict[str, Any]:
    """``name`` and the options that shape the picture (preset, crf, bitrate ...)."""
    out: dict[str, Any] = {"name": getattr(encoder, "codec", None) or type(encoder).__name__}
    for k in ENCODER_SETTINGS:
        v = getattr(encoder, k, None)
        if v is not None:
            out[k] = v
    return out


def sidecar_meta(*, event_id: str, options: RecorderOptions, label: str, started_at: datetime, start_ns: int,
                 layout: Layout, sources: Sequence[Mapping[str, Any]], audio: Mapping[str, Any] | None,
                 encoder: Encoder, data_track: str | None, snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """The sidecar at start (``status`` ``recording``); finished fields are added at the end."""
    return {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "event_id": event_id,
        "event": {str(k): v for k, v in options.event.items()},
        "output": label,
        "started_at": started_at.isoformat(),
        "start_ns": start_ns,
        "fps": str(options.fps),
        "layout": layout.to_dict(),
        "sources": list(sources),
        "audio": None if audio is None else dict(audio),
        "encoder": encoder_settings(encoder),
        "data_track": data_track,
        "snapshots": snapshots,
        "status": "recording",
    }


def container_tags(meta: Mapping[str, Any]) -> dict[str, str]:
    """MP4 tags (``ffprobe -show_format``): the event id, start time, layout, sources, event."""
    compact = {"separators": (",", ":"), "default": str}
    return {
        "title": meta["event_id"],
        "comment": "surgbox recording",
        "surgbox_event_id": meta["event_id"],
        "surgbox_started_at": meta["started_at"],
        "surgbox_layout": json.dumps(meta["layout"], separators=(",", ":")),
        "surgbox_sources": json.dumps(meta["sources"], **compact),  # type: ignore[arg-type]
        "surgbox_event": json.dumps(meta["event"], **compact),  # type: ignore[arg-type]
    }
