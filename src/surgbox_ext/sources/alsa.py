"""``alsa``: a microphone or line input through FFmpeg's ALSA input (``av.open(device, format="alsa")``).

``device`` is an ALSA PCM name: ``"default"``, ``"hw:1,0"`` (card 1, device 0),
``"plughw:1,0"`` (with rate/format conversion), or ``"pulse"`` where PulseAudio/PipeWire
provide their ALSA plugin. ``arecord -l`` lists the capture devices.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import attrs

from surgbox.errors import SourceError

from . import checks
from ._avinput import MicrophoneSource


@attrs.define(eq=False)
class AlsaSource(MicrophoneSource):
    """ALSA capture; options as :class:`~surgbox_ext.sources._avinput.MicrophoneSource`."""

    input_format: ClassVar[str | None] = "alsa"
    kind_label: ClassVar[str] = "ALSA device"

    def _open(self) -> None:
        cards = Path("/proc/asound/cards")
        if not cards.is_file() or "no soundcards" in cards.read_text(errors="replace"):
            raise SourceError(
                f"{self.describe()}: no sound card on this machine (/proc/asound/cards lists none); "
                f"connect a microphone or USB audio interface (in a container pass --device /dev/snd)"
            )
        super()._open()

    def explain(self, exc: BaseException) -> str:
        found = ", ".join(checks.alsa_capture_devices()) or "none"
        return (f"{exc}; check the device name (capture devices found: {found}; `arecord -l` lists them as "
                f"card/device -> use device='hw:CARD,DEVICE' or 'plughw:CARD,DEVICE'), and that "
                f"{self.sample_rate} Hz x {self.channels} channel(s) is supported (plughw: converts)")
