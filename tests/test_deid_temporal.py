"""Temporal stage: flicker filled, interpolation, carry, edges, scene cuts, bounded state."""

from __future__ import annotations

import numpy as np
import pytest

from surgbox.deid.temporal import TemporalFilter, iou
from surgbox.types import Detections


def run(tf: TemporalFilter, dets: dict[int, list], n: int, cuts=()):
    """Push ``n`` frames (detections per frame index, missing -> empty) and collect the output."""
    out = []
    for i in range(n):
        d = dets.get(i)
        if d is None and tf.every > 1 and i % tf.every:
            item = None
        else:
            item = Detections(d or np.zeros((0, 4)), [0.9] * len(d or []))
        out += tf.push(i, item, cut=i in cuts)
    out += tf.flush()
    assert [j for j, _ in out] == list(range(n))
    return {j: regs for j, regs in out}


def moving(i, x0=100.0, v=2.0, size=40.0):
    return [x0 + v * i, 50.0, x0 + v * i + size, 50.0 + size]


def test_iou():
    assert iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]).round(3).tolist() == [[1.0, 0.333, 0.0]]


def test_flicker_is_filled_by_interpolation_in_one_track():
    dets = {i: [moving(i)] for i in range(40) if i not in (10, 11, 12, 25)}
    out = run(TemporalFilter(carry=2, max_gap=5), dets, 40)
    assert all(len(out[i]) == 1 for i in range(40))
    assert {r.track for i in range(40) for r in out[i]} == {0}
    assert [out[i][0].kind for i in (9, 10, 11, 12, 13, 25)] == ["detected", "interpolated", "interpolated", "interpolated", "detected", "interpolated"]
    np.testing.assert_allclose(out[11][0].box, moving(11), atol=1e-6)  # linear motion is interpolated exactly


def test_gap_longer_than_max_gap_is_not_bridged_but_carried():
    dets = {i: [moving(i)] for i in list(range(10)) + list(range(30, 40))}
    out = run(TemporalFilter(carry=3, max_gap=5, edge_carry=0), dets, 40)
    kinds = {i: [r.kind for r in out[i]] for i in range(40)}
    assert kinds[10] == kinds[12] == ["carried"] and kinds[13] == []
    assert kinds[27] == ["carried"] and kinds[26] == []
    assert all(kinds[i] == [] for i in range(13, 27))


def test_carry_hides_before_first_and_after_last_detection_and_covers_motion():
    dets = {i: [moving(i, v=3.0)] for i in range(10, 20)}
    out = run(TemporalFilter(carry=4, max_gap=2), dets, 30)
    for i in list(range(6, 10)) + list(range(20, 24)):
        (r,) = out[i]
        assert r.kind == "carried"
        true = moving(i, v=3.0)  # where the face actually is, had it kept moving
        assert r.box[0] <= true[0] + 1e-6 and r.box[2] >= true[2] - 1e-6
    assert out[5] == [] and out[24] == []


def test_two_faces_make_two_tracks():
    dets = {i: [moving(i), moving(i, x0=400, v=-1)] for i in range(20)}
    out = run(TemporalFilter(), dets, 20)
    assert all(len(out[i]) == 2 for i in range(20))
    assert len({r.track for i in range(20) for r in out[i]}) == 2


def test_every_nth_frame_detection_is_tracked_in_between():
    tf = TemporalFilter(carry=1, max_gap=1, every=3)
    assert tf.carry_frames >= 2 and tf.gap_frames >= 5
    dets = {i: [moving(i)] for i in range(0, 30, 3)}
    out = run(tf, dets, 30)
    for i in range(30):
        assert len(out[i]) == 1, i
        if i % 3 and i < 27:
            assert out[i][0].kind == "interpolated"
            np.testing.assert_allclose(out[i][0].box, moving(i), atol=1e-6)


def test_face_leaving_through_the_region_edge_is_carried_until_it_is_gone():
    # face moving left out of the region [100, 0, 740, 360]; the detector loses it half way
    box = lambda i: [100 + 30 - 3 * i, 100, 100 + 70 - 3 * i, 150]  # noqa: E731
    dets = {i: [box(i)] for i in range(12)}  # last seen at x1 = 97 (touching the edge)
    tf = TemporalFilter(carry=3, max_gap=2, bounds=[(100, 0, 740, 360)], edge_carry=30)
    out = run(tf, dets, 60)
    for i in range(12, 24):  # the face (x2 = 170 - 3 i) is still visible until frame 23
        assert out[i] and out[i][0].kind == "carried", i
        assert out[i][0].box[2] >= box(i)[2] - 1e-6
    assert out[40] == []  # not forever: it left
    # the same face standing still at the edge is only carried ``carry`` frames
    still = {i: [[101, 100, 141, 150]] for i in range(12)}
    out = run(TemporalFilter(carry=3, max_gap=2, bounds=[(100, 0, 740, 360)], edge_carry=30), still, 40)
    assert out[14] and out[15] == []


def test_scene_cut_stops_carry_and_linking():
    dets = {i: [moving(i)] for i in range(10)}
    dets.update({i: [moving(i, x0=105)] for i in range(10, 20)})
    out = run(TemporalFilter(carry=5, max_gap=5), dets, 25, cuts={10})
    assert {r.track for r in out[9]} != {r.track for r in out[10]}
    assert all(len(out[i]) == 1 for i in range(20))  # no carried duplicates across the cut
    assert len(out[20]) == 1 and out[20][0].kind == "carried"


def test_frames_must_be_consecutive():
    tf = TemporalFilter()
    tf.push(5, None)
    with pytest.raises(ValueError, match="expected 6"):
        tf.push(7, None)


def test_state_stays_bounded_over_a_long_sequence():
    tf = TemporalFilter(carry=5, max_gap=10)
    rng = np.random.default_rng(1)
    held = 0
    for i in range(3000):
        n = int(rng.integers(0, 4))
        boxes = [[x, 10, x + 30, 40] for x in rng.uniform(0, 600, n)]
        tf.push(i, Detections(np.reshape(boxes, (-1, 4)), [0.9] * n))
        held = max(held, sum(len(t.obs) for t in tf._tracks.values()))
    assert held < 200, held  # only the lookahead window (+ a velocity baseline) is kept
