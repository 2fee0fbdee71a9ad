"""``tone``: synthetic audio paced on the master clock, with a 1 kHz sync beep every 2 s.

Sample ``i`` (counted from the start) has capture time ``t0 + i * 1e9 / sample_rate`` ns
(``t0`` = clock reading at ``start``; integer arithmetic, no drift). Chunk ``k`` holds samples
``k * chunk .. (k + 1) * chunk - 1``; its ``capture_ns`` is the time of its first sample and it
is released once its last sample's time has passed (as a sound card would deliver it).

Sync marker: for every multiple ``m * beep_period_s`` of capture time (``clock.elapsed_ns``)
at or after the start, a ``beep_ms`` burst of a ``frequency`` Hz sine (phase 0, amplitude
``amplitude``, hard edges) starts at the first sample whose time is ``>=`` the multiple (at
most one sample period, 20.8 us at 48 kHz, late). Silence otherwise, or low white noise of
RMS ``noise``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np

from surgbox.capture import ThreadedSource
from surgbox.clock import NS_PER_S
from surgbox.types import AudioChunk

from ._common import non_negative, pace, positive


def _amplitude(instance: Any, attribute: Any, value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"tone {attribute.name} must be within [0, 1], got {value}")


@attrs.define(eq=False)
class ToneSource(ThreadedSource):
    """Synthetic audio source.

    Options: ``sample_rate`` (Hz, default 48000), ``channels`` (default 1; every channel
    carries the same signal), ``chunk`` (samples per item, default 1024), ``frequency``
    (beep Hz, default 1000), ``beep_ms`` (default 50), ``beep_period_s`` (default 2.0; 0
    disables), ``amplitude`` (beep peak, default 0.5), ``noise`` (RMS of background noise,
    default 0 = silence), ``seed`` (noise seed).

    Items: :class:`~surgbox.types.AudioChunk`, float32 planar ``(channels, chunk)``.
    """

    media: ClassVar[str] = "audio"

    sample_rate: int = attrs.field(default=48000, kw_only=True, converter=int, validator=positive)
    channels: int = attrs.field(default=1, kw_only=True, converter=int, validator=positive)
    chunk: int = attrs.field(default=1024, kw_only=True, converter=int, validator=positive)
    frequency: float = attrs.field(default=1000.0, kw_only=True, converter=float, validator=positive)
    beep_ms: float = attrs.field(default=50.0, kw_only=True, converter=float, validator=positive)
    beep_period_s: float = attrs.field(default=2.0, kw_only=True, converter=float, validator=non_negative)
    amplitude: float = attrs.field(default=0.5, kw_only=True, converter=float, validator=_amplitude)
    noise: float = attrs.field(default=0.0, kw_only=True, converter=float, validator=_amplitude)
    seed: int | None = attrs.field(default=None, kw_only=True)

    _t0: int = attrs.field(init=False, default=0, alias="_t0")
    _k: int = attrs.field(init=False, default=0, alias="_k")
    _rng: Any = attrs.field(init=False, default=None, alias="_rng")
    _beeps: int = attrs.field(init=False, default=0, alias="_beeps")

    def sample_time(self, i: int) -> int:
        """Master-clock ns of sample ``i`` (counted from the start)."""
        return self._t0 + i * NS_PER_S // self.sample_rate

    def first_sample_at(self, t_ns: int) -> int:
        """Index of the first sample whose time is ``>= t_ns``."""
        return -(-(t_ns - self._t0) * self.sample_rate // NS_PER_S)

    def _open(self) -> None:
        assert self.clock is not None
        self._t0 = self.clock.now_ns()
        self._k = 0
        self._rng = np.random.default_rng(self.seed)

    def _capture(self) -> AudioChunk | None:
        assert self.clock is not None
        k = self._k
        first = k * self.chunk
        if not pace(self, self.sample_time(first + self.chunk)):
            return None
        self._k = k + 1
        return AudioChunk(self.name, self.sample_time(first), self.synthesize(first, self.chunk), self.sample_rate)

    def synthesize(self, first: int, n: int) -> np.ndarray:
        """Samples ``first .. first + n - 1`` as float32 ``(channels, n)``."""
        assert self.clock is not None
        out = np.zeros(n, np.float32)
        if self.noise:
            out += self._rng.normal(0.0, self.noise, n).astype(np.float32)
        if self.beep_period_s:
            period = round(self.beep_period_s * NS_PER_S)
            length = round(self.beep_ms * self.sample_rate / 1000)
            origin = self.clock.origin_ns
            # Beeps that may overlap [first, first + n): markers from (start of a beep that could
            # still sound at `first`) to the time of the last sample.
            lo = max(self._t0, self.sample_time(max(0, first - length)))
            m = max(0, -(-(lo - origin) // period))
            while True:
                start = self.first_sample_at(origin + m * period)
                if start >= first + n:
                    break
                a, b = max(start, first), min(start + length, first + n)
                if a < b:
                    idx = np.arange(a - start, b - start, dtype=np.float64)
                    out[a - first : b - first] = (self.amplitude * np.sin(2 * np.pi * self.frequency * idx / self.sample_rate)).astype(np.float32)
                    if a == start:
                        self._beeps += 1
                m += 1
        return np.repeat(out[None, :], self.channels, axis=0) if self.channels > 1 else out[None, :]

    def stats(self) -> dict[str, Any]:
        s = dict(super().stats())
        s.update(beeps=self._beeps, sample_rate=self.sample_rate)
        return s
