# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython hot paths (only where profiling showed numpy is not enough).

``blend_masked``: per-pixel alpha blend of one 8-bit plane into another in place, skipping
pixels whose alpha is 0 — the inner loop of feathered-mask anonymization, where numpy would
allocate three full-size temporaries per plane per frame.
"""

import numpy as np
cimport numpy as cnp

cnp.import_array()


def blend_masked(cnp.uint8_t[:, ::1] dst, const cnp.uint8_t[:, ::1] src, const cnp.uint8_t[:, ::1] alpha):
    """``dst = (src * a + dst * (255 - a) + 127) // 255`` where ``a = alpha``, in place.

    All three are C-contiguous ``uint8`` 2-D arrays of the same shape (one image plane).
    Returns the number of pixels changed (alpha > 0).
    """
    cdef Py_ssize_t h = dst.shape[0], w = dst.shape[1], y, x
    cdef unsigned int a
    cdef Py_ssize_t touched = 0
    if src.shape[0] != h or src.shape[1] != w or alpha.shape[0] != h or alpha.shape[1] != w:
        raise ValueError(
            f"blend_masked: shapes differ: dst {dst.shape[0]}x{dst.shape[1]}, "
            f"src {src.shape[0]}x{src.shape[1]}, alpha {alpha.shape[0]}x{alpha.shape[1]}"
        )
    with nogil:
        for y in range(h):
            for x in range(w):
                a = alpha[y, x]
                if a:
                    dst[y, x] = <cnp.uint8_t>((src[y, x] * a + dst[y, x] * (255 - a) + 127) // 255)
                    touched += 1
    return touched
