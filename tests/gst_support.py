"""Shared by the tests/test_gst_*.py modules: skip cleanly, with the reason, where GStreamer is absent."""

from __future__ import annotations

import pytest

from surgbox_ext.gst import runtime

GST_REASON = runtime.reason()
needs_gst = pytest.mark.skipif(GST_REASON is not None, reason=f"GStreamer is not usable here: {GST_REASON}")


def needs_elements(*names: str):
    """Skip unless GStreamer has every element in ``names``."""
    if GST_REASON is not None:
        return needs_gst
    lacking = [n for n in names if not runtime.has_element(n)]
    return pytest.mark.skipif(bool(lacking), reason=f"GStreamer lacks {', '.join(lacking)}")
