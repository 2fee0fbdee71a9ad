"""The live detector's cadence rule (surgbox.recording.live_cadence): from the measured call times."""

from __future__ import annotations

import pytest

from surgbox.recording.live_cadence import LOAD, WINDOW, Cadence


def test_a_slower_detector_raises_the_cadence_at_once_and_it_comes_back_after_a_window():
    c = Cadence(fastest=3, slowest=8, fps=30)
    assert c.every == 3
    for _ in range(3):
        c.observe(0.05)  # 1.5 frames of work at 70 % load: every 3rd frame is fine
    assert c.every == 3
    assert c.observe(0.12) == 3  # one slow call among four: the 75th percentile is not moved yet
    c.observe(0.12)
    assert c.every == c.need(0.12) == 6  # ceil(0.12 * 30 / 0.7)
    for _ in range(WINDOW - 1):
        c.observe(0.05)
    assert c.every == 6  # the slow calls are still in the window
    for _ in range(WINDOW):
        c.observe(0.05)
    assert c.every == 3 and c.stats()["changes"] == 2


def test_the_cadence_stays_within_its_bounds_and_says_when_it_is_behind():
    c = Cadence(fastest=2, slowest=5, fps=30)
    for _ in range(WINDOW):
        c.observe(1.0)
    assert c.every == 5 and c.behind
    d = Cadence(fastest=4, slowest=6, fps=30)
    for _ in range(WINDOW * 2):
        d.observe(0.001)
    assert d.every == 4 and not d.behind
    assert Cadence(3, 3, 30).observe(5.0) == 3  # a fixed cadence


def test_need_is_the_cadence_that_keeps_the_detector_at_its_load():
    c = Cadence(1, 30, fps=25)
    for secs in (0.01, 0.1, 0.33, 0.9):
        n = c.need(secs)
        assert secs * 25 / n <= LOAD < secs * 25 / (n - 1) if n > 1 else secs * 25 <= LOAD


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="fastest <= slowest"):
        Cadence(4, 3, 30)
