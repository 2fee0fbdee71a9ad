"""Random "CVAT for video 1.1" files for tests, written the way CVAT exports them.

Independent of surgbox's importer: the expected box of every task frame is computed here by
position along the frame grid, then written in full (every frame of a visible span, keyframe
flags, an ``outside="1"`` box where a span ends early) and in sparse form (keyframes and
outside boxes only, as a hand-written or trimmed file would be).
"""

from __future__ import annotations

import random
from xml.sax.saxutils import quoteattr


def random_task(rng: random.Random, labels=("face", "head")):
    """``(meta, tracks, expected)``: ``meta`` = start, stop, step, width, height; ``tracks`` a list of
    ``(id, label, [(frame, box, outside, occluded, keyframe)])`` in full-export form; ``expected``
    maps frame -> sorted list of ``(track, box, label, occluded)``."""
    start, step = rng.randint(0, 20), rng.randint(1, 4)
    n = rng.randint(3, 25)
    stop = start + (n - 1) * step
    width, height = rng.choice([(640, 360), (1920, 1080), (50, 40)])
    tracks, expected = [], {}
    for tid in range(rng.randint(1, 5)):
        label = rng.choice(labels)
        shapes = []
        k = rng.randrange(n)
        while k < n:
            span_end = rng.randint(k, n - 1)
            # keyframes inside the visible span [k, span_end] (grid indices), first one at k
            keys = sorted({k} | {rng.randint(k, span_end) for _ in range(rng.randint(0, 3))})
            kboxes = {}
            for kk in keys:
                x, y = rng.uniform(0, width - 10), rng.uniform(0, height - 10)
                kboxes[kk] = (x, y, x + rng.uniform(2, width / 3), y + rng.uniform(2, height / 3))
            kocc = {kk: rng.random() < 0.3 for kk in keys}
            for i in range(k, span_end + 1):
                prev = max(kk for kk in keys if kk <= i)
                later = [kk for kk in keys if kk > i]
                if later:
                    nxt = later[0]
                    t = (i - prev) / (nxt - prev)
                    box = tuple(a + (b - a) * t for a, b in zip(kboxes[prev], kboxes[nxt]))
                else:
                    box = kboxes[prev]
                frame = start + i * step
                shapes.append((frame, box, False, kocc[prev], i in keys))
                expected.setdefault(frame, []).append((tid, box, label, kocc[prev]))
            if span_end < n - 1:  # the span ends before the task: an outside box on the next frame
                shapes.append((start + (span_end + 1) * step, shapes[-1][1], True, False, True))
                k = span_end + 1 + rng.randint(1, 6)  # a gap, then maybe a new span
            else:
                k = n
        tracks.append((tid, label, shapes))
    for f in expected:
        expected[f].sort(key=lambda e: e[0])
    return dict(start=start, stop=stop, step=step, width=width, height=height, size=n), tracks, expected


def sparse(tracks):
    """The same tracks with only keyframes and outside boxes (what interpolation must restore).
    A span's interpolated boxes are restored only towards the next keyframe, so the last visible
    frame of a span that ends with an outside box is kept as a keyframe."""
    out = []
    for tid, label, shapes in tracks:
        keep = []
        for j, s in enumerate(shapes):
            nxt_outside = j + 1 < len(shapes) and shapes[j + 1][2]
            if s[4] or s[2] or nxt_outside:
                keep.append((s[0], s[1], s[2], s[3], True))
        out.append((tid, label, keep))
    return out


def write_xml(path, meta, tracks, source="video.mp4", decimals=None):
    """Write a CVAT for video 1.1 file (full-precision coordinates, or rounded to ``decimals``
    places as CVAT itself writes them)."""
    fmt = repr if decimals is None else (lambda v: f"{v:.{decimals}f}")
    step = meta["step"]
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>", "  <meta>", "    <task>",
             f"      <size>{meta['size']}</size>", "      <mode>interpolation</mode>",
             f"      <start_frame>{meta['start']}</start_frame>", f"      <stop_frame>{meta['stop']}</stop_frame>",
             f"      <frame_filter>{'step=%d' % step if step > 1 else ''}</frame_filter>",
             "      <labels>", "        <label><name>face</name><attributes></attributes></label>",
             "        <label><name>head</name><attributes></attributes></label>", "      </labels>",
             f"      <original_size><width>{meta['width']}</width><height>{meta['height']}</height></original_size>",
             "    </task>", f"    <source>{source}</source>", "  </meta>"]
    for tid, label, shapes in tracks:
        lines.append(f"  <track id={quoteattr(str(tid))} label={quoteattr(label)} source=\"manual\">")
        for frame, (x1, y1, x2, y2), outside, occluded, keyframe in shapes:
            lines.append(f'    <box frame="{frame}" outside="{int(outside)}" occluded="{int(occluded)}" '
                         f'keyframe="{int(keyframe)}" xtl="{fmt(x1)}" ytl="{fmt(y1)}" xbr="{fmt(x2)}" ybr="{fmt(y2)}" z_order="0">')
            lines.append("    </box>")
        lines.append("  </track>")
    lines.append("</annotations>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
