"""Helpers shared by the source modules: option converters, pacing, reconnecting, fonts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from surgbox import fonts
from surgbox.clock import NS_PER_S
from surgbox.errors import SourceError

if TYPE_CHECKING:  # pragma: no cover
    from surgbox.capture import ThreadedSource

def positive(instance: Any, attribute: Any, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be > 0, got {value!r}")


def non_negative(instance: Any, attribute: Any, value: float) -> None:
    if value < 0:
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be >= 0, got {value!r}")


def reconnect(source: Any, reopen: Callable[[], None], log: logging.Logger) -> bool:
    """Call ``reopen()`` until it succeeds, waiting ``backoff_initial_s * 2**n`` seconds (at most
    ``backoff_max_s``) before attempt ``n``; True once reopened (``_reconnects`` counted), False
    when the source stopped meanwhile. ``reopen`` signals failure by raising :class:`SourceError`
    (kept as ``_last_error``); after ``max_retries`` failed attempts (``None``: no limit) this
    raises :class:`SourceError` naming the last error. The source keeps ``_attempts`` (reset by
    the caller when a frame arrives or the source is up again)."""
    while not source.stopping:
        if source.max_retries is not None and source._attempts >= source.max_retries:
            raise SourceError(f"{source.describe()}: gave up after {source._attempts} reconnect attempts; "
                              f"last error: {source._last_error}")
        delay = min(source.backoff_max_s, source.backoff_initial_s * 2 ** min(source._attempts, 30))
        source._attempts += 1
        if source.wait(delay):
            return False
        try:
            reopen()
        except SourceError as err:
            source._last_error = str(err)
            log.debug("%s: reconnect attempt %d failed: %s", source.describe(), source._attempts, err)
            continue
        source._reconnects += 1
        log.info("%s reconnected", source.describe())
        return True
    return False


def pace(source: ThreadedSource, t_ns: int) -> bool:
    """Wait on the source's clock until ``t_ns``; False if the source was stopped meanwhile.

    Long waits are cut into stop-aware slices; the last 50 ms use ``clock.sleep_until`` so the
    release instant is as exact as the clock allows.
    """
    clock = source.clock
    assert clock is not None
    while True:
        delay = t_ns - clock.now_ns()
        if delay <= 50_000_000:
            break
        if source.wait(min(delay - 50_000_000, 250_000_000) / NS_PER_S):
            return False
    clock.sleep_until(t_ns)
    return not source.stopping


def markers_between(a_ns: int, b_ns: int, period_ns: int) -> range:
    """Indices ``m`` of the multiples ``m * period_ns`` that lie in ``(a_ns, b_ns]``."""
    return range(a_ns // period_ns + 1, b_ns // period_ns + 1)


def load_font(size: int) -> Any:
    """DejaVu Sans Mono Bold of ``size`` pixels as a Pillow font (:func:`surgbox.fonts.load`;
    bundled with surgbox, so the digits of every test source have the same fixed width)."""
    return fonts.load(size, bold=True, mono=True)
