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
    ('retinaface', 0.3)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# -- detection ----------------------------------------------------------------------------------
DETECTOR = "retinaface"  # the detector plugin used when none is named
# Options given to a detector built by name, per detector name (see the module docstring).
# threshold 0.3: recall first (privacy); threads 1: decode, detection and encode already run in
# parallel, so one math thread avoids oversubscribing the cores (docs/deid.md "Speed").
DETECTOR_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "retinaface": {"threshold": 0.3, "threads": 1},
    # the ensemble (surgbox_ext.ensemble) also uses these members when it is built without any
    "ensemble": {
        "members": [{"name": "centerface", "threshold": 0.2}, {"name": "retinaface", "threshold": 0.3, "every": 2}],
        "fusion": "nms",
        "threshold": 0.3,
        "threads": 1,
    },
}
DETECT_SCALE = 0.5  # regions are scanned at half size: faces from about 32 frame pixels
BATCH = 16  # crops per detector call
EVERY = 1  # run the detector on every frame

# -- temporal stage -----------------------------------------------------------------------------
CARRY = 5  # frames a face stays hidden before its first / after its last detection
MAX_GAP = 10  # longest run of frames without a detection bridged by interpolation
CUT_THRESHOLD = 30.0  # mean 16x16-block luma change (0-255) that marks a scene cut

# -- masks and anonymizer -----------------------------------------------------------------------
EXPAND = 1.4  # mask size / face box: 1.3 left 2 single frames exposed on the shared scene
FEATHER = 0.25  # soft mask edge, fraction of the ellipse radius
ANONYMIZER = "blur"

# -- plumbing -----------------------------------------------------------------------------------
ENCODER = "libx264"
# Encoders known to take ``fragmented``: de-identification asks them for a plain MP4 (edit lists
# keep every time exact, also with copied AAC audio that starts before 0) when it writes a file,
# and for fragmented MP4 when it writes to a file object (which cannot seek back).
PLAIN_MP4_ENCODERS = ("libx264", "h264_nvenc")
QUEUE_SIZE = 500  # decoded frames buffered between decode and detection (the paper's queue)
QUEUE_MEMORY = 512 * 2**20  # bytes of pictures the pipeline may hold (140 frames of 1080p)
ON_DETECTOR_ERROR = "fail"  # "fail" the run, or "blur-region": hide whole regions of failed batches
EXTRA_STREAMS = "refuse"  # streams beyond the first video and audio: "refuse" (an error) or "drop"


def detector_options(name: str) -> dict[str, Any]:
    """The options a detector built by ``name`` starts from in de-identification (a copy;
    empty for a detector this table does not declare)."""
    return dict(DETECTOR_OPTIONS.get(name.rpartition(":")[2], {}))
