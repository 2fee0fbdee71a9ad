"""Entry point ``example`` in group ``surgbox``: registers one Source and one Detector."""

from surgbox import hookimpl
from surgbox.plugins import lazy


@hookimpl
def register_sources(register):
    register("example-ramp", lazy("surgbox_example.components:RampSource"), description="scrolling colour-ramp video")


@hookimpl
def register_detectors(register):
    register("example-zones", lazy("surgbox_example.components:ZoneDetector"), description="fixed privacy zones")
