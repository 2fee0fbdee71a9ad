"""The de-identification defaults, in one place.

``deidentify()``, ``surgbox deid``, ``surgbox detect`` and live de-identification read their
default detector, its options and the pipeline settings from here, so one change (after
measuring, see ``docs/deid.md``) moves every entry point together.

The rule for detector options: a detector built **by name** starts from
``DETECTOR_OPTIONS.get(name, {})`` — the options this project measured for that detector — and
the caller's own options (``detector_options``, ``threshold``, ``detector_threads``) override
them. Only options the caller gives, or that this table declares for that detector, are passed
to its factory; a detector that is not in the table (a vendor's) gets only what the caller
names, so it never sees an option it did not ask for.

    >>> from surgbox.deid import defaults
    >>> defaults.DETECTOR, defaults.detector_options("retinaface")["threshold"]
    ('ensemble', 0.3)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# -- detection ----------------------------------------------------------------------------------
DETECTOR = "ensemble"  # the detector plugin used when none is named (docs/deid.md "Detectors and defaults")
# Options given to a detector built by name, per detector name (see the module docstring).
# threads 1: decode, detection and encode already run in parallel, so one math thread avoids
# oversubscribing the cores (docs/deid.md "Speed").
DETECTOR_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    # RetinaFace alone: recall first (0.3); scale 0.5 = the earlier detect_scale 0.5 (faces from ~32 px)
    "retinaface": {"threshold": 0.3, "threads": 1, "scale": 0.5},
    # CenterFace alone: at native size (faces from 12 px), 0.15 (no hysteresis without the ensemble)
    "centerface": {"threshold": 0.15, "threads": 1},
    # The default: CenterFace native on every frame and at half size on odd frames, both in
    # bfloat16 where the CPU computes it (OpenVINO; f32 elsewhere: precision is a request). bf16
    # runs the native pass about 2x faster, so it runs on every frame instead of every 2nd for
    # less detector work than f32 every 2nd, and more recall (docs/deid.md "bfloat16 and the
    # native pass on every frame"). The small-face rule (docs/detectors.md) sets each scale from the region:
    # min_face 12 -> native size for a 640x360 region (faces from 12 px), capped at 250 000
    # pixels (a whole 1080p frame runs at 0.35: faces from 35 px); min_face 24 -> half size,
    # which finds the masked, capped OR faces native size scores low (0.03-0.11 -> 0.19-0.23 on
    # the shared OR photos). RetinaFace at half size on every 4th frame adds a second model
    # (large frontal faces CenterFace can score low; a large face moves little against its size,
    # so the temporal stage bridges the 3 frames between: every 2 -> 4 kept recall within 2 of
    # 2516 face-frames, for 1.1 points less collateral and half of RetinaFace's work; docs/deid.md
    # "RetinaFace's cadence"). The half-size pass sees its picture inside a 16-pixel margin of its
    # own reflection (32 px of a 640x360 region): a face cut by the region's edge is completed by
    # its mirror image (docs/deid.md "Faces cut by the edge"; on the native pass it cost more
    # work and lost small faces). Hysteresis (docs/deid.md "Detectors and defaults"): each member
    # reports candidates from a low ``threshold`` and is confident from ``confirm``; the
    # temporal stage hides a track once one of its detections is confident or it has
    # CONFIRM_HITS detections, and then over its whole length. ``streams`` 2: each CenterFace
    # pass of several images is split between two infer requests (OpenVINO) or threads
    # (onnxruntime) of one thread each, so detection (the pipeline's critical path) uses the
    # core that decoding, blurring and encoding leave idle: the same detections, 15 % (bf16)
    # to 31 % (f32) less wall time on 2 cores (docs/deid.md "Two inference streams").
    # The surgbox_ext ensemble also uses these members when it is built without any.
    "ensemble": {
        "members": [
            {"name": "centerface", "scale": "auto", "min_face": 12, "pixel_budget": 250_000, "every": 1, "threshold": 0.1,
             "confirm": 0.4, "precision": "bf16", "streams": 2},
            {"name": "centerface", "scale": "auto", "min_face": 24, "pixel_budget": 62_500, "every": 2, "phase": 1,
             "threshold": 0.1, "confirm": 0.4, "precision": "bf16", "mirror": 16, "streams": 2},
            {"name": "retinaface", "scale": "auto", "min_face": 32, "pixel_budget": 62_500, "every": 4, "threshold": 0.2,
             "confirm": 0.5},
        ],
        "fusion": "nms",  # no "threshold": each member has its own; a caller's threshold sets all of them
        "threads": 1,
    },
}
DETECT_SCALE = 1.0  # regions reach the detector at full size; the ensemble's members scale them (small-face rule)
BATCH = 16  # crops per detector call
EVERY = 1  # run the detector on every frame

# -- temporal stage -----------------------------------------------------------------------------
CARRY = 5  # frames a face stays hidden before its first / after its last detection
# longest run of frames without a detection bridged by interpolation: 20 (0.67 s at 30 fps) bridges
# the small and masked faces the detector finds only now and then (10 -> 20 on the --quick privacy
# scene: recall 0.961 -> 0.970, faces under 20 px 0.830 -> 0.903, frames with an exposed face 10.1 ->
# 8.2 %, collateral 10.0 -> 10.9 %; 30 added little more: docs/deid.md "Longer gaps bridged")
MAX_GAP = 20
CUT_THRESHOLD = 30.0  # mean 16x16-block luma change (0-255) that marks a scene cut
# hysteresis (temporal.TemporalFilter, used when the detector declares confirm_score): a track
# none of whose detections is confident is hidden once it has this many detections
CONFIRM_HITS = 6
# a track leaving (or entering) through the edge of a scan region is carried up to EDGE_CARRY
# frames, at least its largest recent size, held at that edge: EDGE_BAND of its box stays inside
# (temporal.TemporalFilter; a cut face's box shrinks and runs ahead of the face, docs/deid.md)
EDGE_CARRY = 15
EDGE_BAND = 0.25

# -- masks and anonymizer -----------------------------------------------------------------------
# mask size / face box: a 1.4x ellipse only just reaches a detector box's corners, while the
# faces' labelled boxes reach 1.4-1.65x of it (p50-p90, benchmarks/privacy_misses.py): masks too
# small were the largest cause of exposed face-frames (docs/deid.md "Detectors and defaults")
EXPAND = 1.6
FEATHER = 0.25  # soft mask edge, fraction of the ellipse radius
MASK_MARGIN = 3.0  # pixels of opaque mask beyond a face box's corners (masks.MaskShape): small faces' boxes are a few px off
# boxes smaller than this (luma pixels) are hidden as this size (masks.MaskShape.min_size): a small
# face's box is a few pixels off and its blur weak (docs/deid.md "Detectors and defaults"); 0: off
MIN_MASK = 24.0
ANONYMIZER = "blur"

# -- plumbing -----------------------------------------------------------------------------------
ENCODER = "libx264"
# Encoders known to take ``fragmented``: de-identification asks them for a plain MP4 (edit lists
# keep every time exact, also with copied AAC audio that starts before 0) when it writes a file,
# and for fragmented MP4 when it writes to a file object (which cannot seek back).
PLAIN_MP4_ENCODERS = ("libx264", "h264_nvenc")
QUEUE_SIZE = 500  # decoded frames buffered between decode and detection (the paper's queue)
# bytes of pictures the pipeline may hold (123 frames of 1080p): with the default ensemble's
# models (~680 MiB) and the codecs, 512 MiB peaked at 1470 MiB (bench_deid.py, 1 min), too near 1.5 GB
QUEUE_MEMORY = 384 * 2**20
ON_DETECTOR_ERROR = "fail"  # "fail" the run, or "blur-region": hide whole regions of failed batches
DECODER = "auto"  # the decoder (surgbox.deid.decoders): NVDEC / Jetson GStreamer where present, else PyAV software
EXTRA_STREAMS = "refuse"  # streams beyond the first video and audio: "refuse" (an error) or "drop"


def detector_options(name: str) -> dict[str, Any]:
    """The options a detector built by ``name`` starts from in de-identification (a copy;
    empty for a detector this table does not declare)."""
    return dict(DETECTOR_OPTIONS.get(name.rpartition(":")[2], {}))
