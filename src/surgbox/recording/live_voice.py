"""Live voice disguise: an audio source whose chunks reach the recorder with voices disguised or muted.

:class:`LiveVoiceSource` wraps an audio :class:`~surgbox.interfaces.Source` (the ambient
microphone) and runs each chunk through :class:`~surgbox.deid.voice.VoiceDisguiser` (FFmpeg's
``asetrate`` + ``atempo`` + ``aresample`` through PyAV, see :mod:`surgbox.deid.voice`) on its own
thread. Output sample ``i`` of a run of continuous input is stamped at the capture time of input
sample ``i`` (the filters hold a few milliseconds, so chunks leave a little later, within the
recorder's ``audio_lag_s``): A/V sync is unchanged. A gap or a jump in the input's capture times
(over :data:`GAP_S`), or a change of rate or channels, ends the run (its tail flushed) and starts
a new one at the new time. The raw audio of a disguised source never reaches the recorder.

In a recording configuration: ``voice = "disguise"`` (or ``"mute"``) in the audio source's
table, ``semitones`` in ``[deid]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import numpy as np

from ..clock import NS_PER_S
from ..deid.voice import VoiceDisguiser, VoiceSettings
from ..types import AudioChunk
from .wrapped import WrappedSource

GAP_S = 0.05  # input capture times off by more than this from continuity start a new run


@attrs.define(eq=False)
class LiveVoiceSource(WrappedSource):
    """The chunks of the audio source ``inner`` with voices disguised per ``settings``
    (:class:`~surgbox.deid.voice.VoiceSettings`); name, rate and channels are ``inner``'s."""

    needs: ClassVar[str] = "audio"
    what: ClassVar[str] = "voice disguise"

    settings: VoiceSettings = attrs.field(factory=VoiceSettings, kw_only=True)
    _disg: VoiceDisguiser | None = attrs.field(default=None, init=False, alias="_disg")
    _anchor_ns: int = attrs.field(default=0, init=False, alias="_anchor_ns")
    _runs: int = attrs.field(default=0, init=False, alias="_runs")
    _samples: int = attrs.field(default=0, init=False, alias="_samples")

    def sidecar_info(self) -> dict[str, Any]:
        """The sidecar's ``voice`` entry for this source."""
        return {**self.inner_sidecar_info(), "voice": {"live": True, **self.settings.to_dict()}}

    def _close(self) -> None:
        try:
            self._end_run()
        finally:
            super()._close()

    def _flush_end(self) -> bool:
        self._end_run()
        return True

    def _item(self, c: Any) -> None:
        if not isinstance(c, AudioChunk):
            return
        d = self._disg
        if d is not None:
            expected = self._anchor_ns + d.samples_in * NS_PER_S // d.rate
            if d.rate != c.sample_rate or d.channels != c.channels or abs(c.capture_ns - expected) > GAP_S * NS_PER_S:
                self._end_run()
                d = None
        if d is None:
            d = self._disg = VoiceDisguiser(c.sample_rate, c.channels, self.settings.semitones, self.settings.mode)
            self._anchor_ns = c.capture_ns
            self._runs += 1
        self._emit(d.samples_out, d.process(c.samples))

    def _emit(self, first: int, block: np.ndarray) -> None:
        d = self._disg
        if d is None or not block.shape[1]:
            return
        self._samples += block.shape[1]
        self.put(AudioChunk(self.name, self._anchor_ns + first * NS_PER_S // d.rate, block, d.rate))

    def _end_run(self) -> None:
        d = self._disg
        if d is not None:
            self._emit(d.samples_out, d.flush())
            self._disg = None

    def stats(self) -> Mapping[str, Any]:
        base = dict(super().stats())
        base["voice"] = {**self.settings.to_dict(), "runs": self._runs, "samples": self._samples}
        return base
