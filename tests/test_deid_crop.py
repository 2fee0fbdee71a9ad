"""Detector input from YUV regions (surgbox.deid.crop): colour conversion (the frame's tags),
cropping, resizing, and the mapping of detections back to frame pixels."""

from __future__ import annotations

import av
import numpy as np
import pytest

from surgbox.deid import Crop, crop_rgb
from surgbox.types import Detections, Rect


def yuv_frame(rgb: np.ndarray, colorspace: str | None = None, full_range: bool = False) -> av.VideoFrame:
    """A yuv420p frame converted from ``rgb`` by FFmpeg (swscale), tagged as asked."""
    src = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    kw = {}
    if colorspace:
        kw["dst_colorspace"] = colorspace
    if full_range:
        kw["dst_color_range"] = "JPEG"
    frame = src.reformat(format="yuv420p", **kw)
    if colorspace == "ITU709":
        frame.colorspace = 1  # AVCOL_SPC_BT709
    if full_range:
        frame.color_range = 2  # AVCOL_RANGE_JPEG
    return frame


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """Smooth colour gradients (chroma subsampling loses little) with a few flat patches."""
    h, w = 120, 200
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, (1 - xx / w) * 200 + 30], -1)
    img[20:60, 20:80] = (200, 40, 40)
    img[70:110, 120:180] = (30, 160, 220)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("colorspace,full", [(None, False), ("ITU709", False), (None, True)])
def test_conversion_honours_the_frames_colour_tags(picture, colorspace, full):
    frame = yuv_frame(picture, colorspace, full)
    crop = crop_rgb(frame, Rect(0, 0, 200, 120), 1.0)
    assert crop.image.shape == (120, 200, 3) and crop.image.dtype == np.uint8
    diff = np.abs(crop.image.astype(int) - picture.astype(int))  # 4:2:0 loses chroma at colour edges only
    assert diff.mean() < 3 and np.median(diff) <= 1, diff.mean()
    # the same samples read with the other matrix / range give other colours: the tags are used
    frame.colorspace = 5 if colorspace else 1  # BT.601 <-> BT.709
    frame.color_range = 1 if full else 2  # limited <-> full
    wrong = np.abs(crop_rgb(frame, Rect(0, 0, 200, 120), 1.0).image.astype(int) - picture.astype(int))
    assert wrong.mean() > 5


def test_a_kept_reformatter_gives_the_same_result(picture):
    from av.video.reformatter import VideoReformatter

    frame = yuv_frame(picture)
    rf = VideoReformatter()
    for rect, scale in [(Rect(0, 0, 200, 120), 0.5), (Rect(40, 20, 100, 60), 1.0), (Rect(40, 20, 100, 60), 0.5)] * 2:
        assert np.array_equal(crop_rgb(frame, rect, scale, reformatter=rf).image, crop_rgb(frame, rect, scale).image)


def test_region_is_cropped_even_aligned_and_resized(picture):
    frame = yuv_frame(picture)
    full = crop_rgb(frame, Rect(0, 0, 200, 120)).image
    c = crop_rgb(frame, Rect(41, 21, 100, 60), 1.0)
    assert c.origin == (40, 20) and c.factor == (1.0, 1.0)  # 4:2:0: starts on even pixels
    assert c.image.shape == (62, 102, 3)
    # same pixels as the whole picture's conversion (chroma interpolation differs on the border)
    assert np.abs(c.image[2:-2, 2:-2].astype(int) - full[22:80, 42:140].astype(int)).max() <= 2
    half = crop_rgb(frame, Rect(40, 20, 100, 60), 0.5)
    assert half.image.shape == (30, 50, 3) and half.factor == (2.0, 2.0)
    small = full[20:80, 40:140].reshape(30, 2, 50, 2, 3).mean(axis=(1, 3))
    assert np.abs(half.image - small).mean() < 2
    odd = crop_rgb(frame, Rect(0, 0, 200, 120), 0.3)
    assert odd.image.shape == (36, 60, 3) and odd.factor == pytest.approx((200 / 60, 120 / 36))
    with pytest.raises(ValueError, match="scale"):
        crop_rgb(frame, Rect(0, 0, 10, 10), 0)


def test_detections_map_back_to_frame_pixels():
    crop = Crop(np.zeros((30, 50, 3), np.uint8), origin=(40, 20), factor=(2.0, 2.5))
    d = Detections([[1, 2, 11, 12]], [0.9], np.ones((1, 5, 2), np.float32))
    out = crop.to_frame(d)
    assert out.boxes.tolist() == [[42, 25, 62, 50]] and out.scores.tolist() == pytest.approx([0.9])
    assert out.landmarks[0, 0].tolist() == [42, 22.5]
    same = Crop(np.zeros((1, 1, 3), np.uint8), (0, 0), (1.0, 1.0)).to_frame(d)
    assert same is d
