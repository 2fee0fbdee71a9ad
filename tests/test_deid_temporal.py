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
    for band in (0.0, 0.25):
        tf = TemporalFilter(carry=3, max_gap=2, bounds=[(100, 0, 740, 360)], edge_carry=30, edge_band=band)
        out = run(tf, dets, 60)
        for i in range(12, 24):  # the face (x2 = 170 - 3 i) is still visible until frame 23
            assert out[i] and out[i][0].kind == "carried", i
            assert out[i][0].box[2] >= box(i)[2] - 1e-6
        assert out[42] == []  # not forever: it left (held at the edge at most edge_carry frames)
        assert (out[30] == []) is (band == 0)  # without a band the carry ends once the box is out
    # the same face standing still at the edge is only carried ``carry`` frames
    still = {i: [[101, 100, 141, 150]] for i in range(12)}
    out = run(TemporalFilter(carry=3, max_gap=2, bounds=[(100, 0, 740, 360)], edge_carry=30), still, 40)
    assert out[14] and out[15] == []


def test_a_face_that_stops_at_the_edge_stays_hidden_while_its_box_shrinks():
    """A face cut by the region's edge: the detector's box shrinks as the face goes (only the
    visible part is boxed), so the box's motion runs ahead of the face; here the face then stops
    half out of the view. At the defaults the carried mask is held at the edge (``edge_band``)
    for ``edge_carry`` frames instead of leaving the view with the shrinking box."""
    # face 40 px wide moving left at 2 px/frame into the edge x = 100, still from frame 20 with
    # x in [80, 120] (half out); the detector boxes its visible part, ever shorter, until frame 14
    face = lambda i: (120.0 - 2 * min(i, 20), 120.0 - 2 * min(i, 20) + 40)  # noqa: E731
    dets = {i: [[max(face(i)[0], 100.0), 100.0, face(i)[1] - 1.5 * max(0, i - 9), 140.0]] for i in range(15)}
    tf = TemporalFilter(carry=5, max_gap=10, bounds=[(100, 0, 740, 360)])
    out = run(tf, dets, 70)
    for i in range(15, 15 + tf.edge_carry - 1):
        assert out[i], i
        b = out[i][0].box
        visible = (max(face(i)[0], 100.0), face(i)[1])
        # the mask (1.6x the box about its centre, see masks) still covers the visible part
        cx, half = (b[0] + b[2]) / 2, 0.8 * (b[2] - b[0])
        assert cx - half <= visible[0] and cx + half >= visible[1], (i, b, visible)
    assert out[15 + tf.edge_carry + 2] == []


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


# ------------------------------------------------------------------------------ hysteresis


def push_scored(tf: TemporalFilter, seq: dict[int, list[tuple[list[float], float]]], n: int):
    """Push ``n`` frames whose detections are ``seq[i]`` = [(box, score), ...]; the output by frame."""
    out = []
    for i in range(n):
        d = seq.get(i, [])
        out += tf.push(i, Detections(np.array([b for b, _ in d], float).reshape(-1, 4), [s for _, s in d]))
    out += tf.flush()
    return {j: regs for j, regs in out}


def test_hysteresis_hides_a_low_scored_face_from_its_first_frame_once_confirmed():
    """A face scoring 0.2 for 10 frames, then 0.7 once, then 0.2 again: one track, hidden in
    every frame (also the low-score frames before the confident one); a 0.2 blip elsewhere that
    is seen twice is never shown."""
    seq = {i: [(moving(i), 0.7 if i == 10 else 0.2)] for i in range(30)}
    for i in (3, 4):
        seq[i].append(([400, 200, 440, 240], 0.2))
    out = push_scored(TemporalFilter(carry=2, max_gap=4, confirm_score=0.5, confirm_hits=4), seq, 30)
    assert all([r.kind for r in out[i]] == ["detected"] for i in range(30)), {i: out[i] for i in (0, 3, 29)}
    assert {r.track for i in range(30) for r in out[i]} == {0}
    # without hysteresis the blip is shown (and carried)
    plain = push_scored(TemporalFilter(carry=2, max_gap=4), seq, 30)
    assert any(r.box[0] == 400 for r in plain[3])


def test_hysteresis_confirms_a_track_seen_often_enough():
    """No detection reaches confirm_score: the track is shown once it has confirm_hits
    detections, and then from its first one; a track with fewer is never shown."""
    seq = {i: [(moving(i), 0.2)] for i in range(5, 9)}  # 4 detections
    seq.update({i: [([400, 200, 440, 240], 0.3)] for i in (20, 22, 24)})  # 3 detections
    out = push_scored(TemporalFilter(carry=2, max_gap=4, confirm_score=0.5, confirm_hits=4), seq, 40)
    shown = sorted(i for i in range(40) if out[i])
    assert shown == list(range(3, 11)), shown  # frames 5-8 plus carry 2 either side
    out3 = push_scored(TemporalFilter(carry=2, max_gap=4, confirm_score=0.5, confirm_hits=3), seq, 40)
    assert any(out3[i] for i in range(20, 25))  # 3 hits confirm at confirm_hits=3


def test_hysteresis_links_confident_detections_first():
    """A confident detection and a low-scored one both near a track's prediction: the track
    takes the confident one (ByteTrack's first round); the other starts a tentative track."""
    seq = {i: [(moving(i), 0.9)] for i in range(6)}
    seq[6] = [([moving(6)[0] + 6, 50, moving(6)[2] + 6, 90], 0.1), (moving(6), 0.8)]
    out = push_scored(TemporalFilter(carry=0, max_gap=2, confirm_score=0.5, confirm_hits=5), seq, 8)
    [r] = out[6]
    assert r.track == 0 and r.score == pytest.approx(0.8)


def test_hysteresis_confirms_a_face_in_a_still_picture():
    """A one-frame input (a snapshot) cannot reach confirm_hits: a weak face detected in every
    frame of the input is hidden anyway; in a long input a single weak blip is not."""
    tf = TemporalFilter(carry=2, max_gap=4, confirm_score=0.5, confirm_hits=6)
    out = tf.push(0, Detections([[10, 10, 50, 50]], [0.2])) + tf.flush()
    assert [[r.kind for r in regs] for _, regs in out] == [["detected"]]
    long = push_scored(TemporalFilter(carry=2, max_gap=4, confirm_score=0.5, confirm_hits=6),
                       {20: [([10, 10, 50, 50], 0.2)]}, 60)
    assert not any(long.values())
