"""Replacing a default: register under the default's name with a priority above -100.

Add ``override = "surgbox_example.override"`` to the entry points (or
``plugins.add(surgbox_example.override, "surgbox-example")``) and every ``detector="retinaface"``
resolves to the zone detector; ``"surgbox:retinaface"`` still selects the original.
"""

from surgbox import hookimpl
from surgbox.plugins import lazy


@hookimpl
def register_detectors(register):
    register("retinaface", lazy("surgbox_example.components:ZoneDetector"), description="zones instead of faces", priority=0)
