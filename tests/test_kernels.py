"""The Cython kernels agree with a numpy reference."""

import numpy as np
import pytest

from surgbox._kernels import blend_masked


def test_blend_masked_matches_numpy_reference():
    rng = np.random.default_rng(0)
    dst = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    src = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    alpha = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    alpha[:10] = 0
    expected = ((src.astype(np.uint32) * alpha + dst.astype(np.uint32) * (255 - alpha) + 127) // 255).astype(np.uint8)
    expected[:10] = dst[:10]
    out = dst.copy()
    touched = blend_masked(out, src, alpha)
    np.testing.assert_array_equal(out, expected)
    assert touched == int((alpha > 0).sum())


def test_blend_masked_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        blend_masked(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), np.zeros((4, 4), np.uint8))
