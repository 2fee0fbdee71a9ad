"""``pulse``: a microphone through a PulseAudio/PipeWire server (``av.open(device, format="pulse")``).

``device`` is a PulseAudio source name (``"default"``, or one from ``pactl list short sources``).
The PyAV wheels from PyPI are built without the pulse input; there this source reports itself
unavailable and the ``alsa`` source with ``device="pulse"`` reaches the same server.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from surgbox.errors import SourceError

from . import checks
from ._avinput import MicrophoneSource


@attrs.define(eq=False)
class PulseSource(MicrophoneSource):
    """PulseAudio capture; options as :class:`~surgbox_ext.sources._avinput.MicrophoneSource`."""

    input_format: ClassVar[str | None] = "pulse"
    kind_label: ClassVar[str] = "PulseAudio source"

    def _open(self) -> None:
        if not checks.pyav_has("pulse"):
            raise SourceError(f"{self.describe()}: {checks.pulse()}")
        if checks.pulse_server() is None:
            raise SourceError(f"{self.describe()}: no PulseAudio/PipeWire server is running for this user (start one or set PULSE_SERVER)")
        super()._open()

    def explain(self, exc: BaseException) -> str:
        return f"{exc}; check the source name with `pactl list short sources` and that the server is running"
