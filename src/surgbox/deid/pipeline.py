"""``deidentify()``: the de-identification pipeline in one call.

decode -> crop -> detect (batched) -> temporal -> anonymize -> encode, on four threads
(:mod:`surgbox.deid.run` orchestrates; each stage has its module: ``decode``, ``detect``,
``hide``, ``encode``; the output's rules are in ``output``). Audio packets travel with the next
video frame and are stream-copied untouched. Output timestamps are the input's (same time base
and pts), so frame count, timing and frame rate survive.

    >>> from surgbox.deid import deidentify
    >>> result = deidentify("in.mp4", "out.mp4", region="1280,0,640,360")   # doctest: +SKIP
    >>> result.frames, result.report["fps"]                                   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import IO, Any

from ..interfaces import Detector, Encoder
from ..types import DeidResult
from . import defaults
from .anonymize import Anonymizer
from .options import DeidOptions
from .result import Progress
from .run import DeidRun, FrameWindow

__all__ = ["DeidOptions", "Progress", "deidentify"]


def deidentify(
    src: str | os.PathLike | IO[bytes],
    dst: str | os.PathLike | IO[bytes],
    *,
    region: Any = "auto",
    detector: str | Detector = defaults.DETECTOR,
    detector_options: Mapping[str, Any] | None = None,
    threshold: float | None = None,
    encoder: str | Encoder = defaults.ENCODER,
    encoder_options: Mapping[str, Any] | None = None,
    batch: int = defaults.BATCH,
    detect_scale: float = defaults.DETECT_SCALE,
    queue_size: int = defaults.QUEUE_SIZE,
    queue_memory: int = defaults.QUEUE_MEMORY,
    carry: int = defaults.CARRY,
    max_gap: int = defaults.MAX_GAP,
    confirm_hits: int = defaults.CONFIRM_HITS,
    every: int = defaults.EVERY,
    expand: float = defaults.EXPAND,
    feather: float = defaults.FEATHER,
    anonymizer: str | Anonymizer = defaults.ANONYMIZER,
    anonymizer_options: Mapping[str, Any] | None = None,
    cut_threshold: float | None = defaults.CUT_THRESHOLD,
    detector_threads: int | None = None,
    on_detector_error: str = defaults.ON_DETECTOR_ERROR,
    extra_streams: str = defaults.EXTRA_STREAMS,
    decoder: str = defaults.DECODER,
    strict: bool = False,
    out_of_body: bool = False,
    overwrite: bool = False,
    audit: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    chart: str | os.PathLike | None = None,
    progress: Callable[[Progress], None] | None = None,
    plugins: Any = None,
    options: DeidOptions | None = None,
    window: FrameWindow | None = None,
) -> DeidResult:
    """De-identify the video ``src`` into ``dst``; returns a :class:`~surgbox.types.DeidResult`.

    ``src``: a path or a readable, seekable binary file object (e.g. from the encrypted store).
    ``dst``: an output path ending in ``.mp4`` (or ``.m4v``), written under a temporary name in
    the same folder and renamed when complete — it must not be the input, nor exist unless
    ``overwrite`` — or a writable binary file object (need not seek: it gets fragmented MP4 and
    nothing touches the disk). Every other keyword is a :class:`DeidOptions` field (see it for
    their meaning; defaults from :mod:`surgbox.deid.defaults`), or pass ``options=`` a built
    :class:`DeidOptions` instead of them. ``audit`` / ``report`` / ``chart``: optional JSON Lines
    sidecar, JSON report and PNG stage chart paths. ``progress``: called with :class:`Progress`
    about four times a second from the calling thread. ``plugins``: the
    :class:`~surgbox.plugins.Plugins` manager (default: the process-wide one); its
    ``deid_finished`` hook is called with the result (a hook that raises is logged and ignored).
    ``window``: a :class:`~surgbox.deid.run.FrameWindow` when ``src`` is a segment of a longer
    recording (``surgbox deid-batch``): only its frames are written, numbered as in the whole.

    Raises :class:`~surgbox.errors.DeidError` for unreadable, corrupt or truncated input (an
    input that merely ends early is a warning unless ``strict``),
    :class:`~surgbox.errors.ConfigError` for bad options (also those a plugin factory refuses),
    :class:`~surgbox.errors.DetectorError` when the detector fails with
    ``on_detector_error="fail"``, and the plugins' own errors.
    """
    if options is None:
        options = DeidOptions(
            region=region, detector=detector, detector_options=detector_options, threshold=threshold, encoder=encoder,
            encoder_options=encoder_options, batch=batch, detect_scale=detect_scale, queue_size=queue_size,
            queue_memory=queue_memory, carry=carry, max_gap=max_gap, confirm_hits=confirm_hits, every=every, expand=expand,
            feather=feather, anonymizer=anonymizer, anonymizer_options=anonymizer_options, cut_threshold=cut_threshold,
            detector_threads=detector_threads, on_detector_error=on_detector_error, extra_streams=extra_streams,
            decoder=decoder, strict=strict, out_of_body=out_of_body, overwrite=overwrite)
    run = DeidRun(src, dst, options, audit_path=audit, report_path=report, chart_path=chart, progress=progress,
                  plugins=plugins, window=window)
    return run.execute()
