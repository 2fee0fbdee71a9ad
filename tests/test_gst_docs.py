"""The Python examples of docs/backends.md run as written (in a fresh folder) and print what they say."""

from __future__ import annotations

import contextlib
import io

from gst_support import needs_elements
from test_docs_examples import blocks

pytestmark = needs_elements("videotestsrc", "x264enc", "h264parse", "appsrc", "appsink", "qtdemux", "avdec_h264", "fakesink")


def test_the_python_examples_of_backends_md_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "docs_backends"}
    out = io.StringIO()
    ran = 0
    for line, code, why in blocks("backends.md"):
        assert why is None, f"docs/backends.md:{line} is not run: {why}"
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"docs/backends.md:{line}", "exec"), ns)
        ran += 1
    assert ran == 6
    text = out.getvalue().splitlines()
    assert text[0] == "None" and "cpu encoder ok" in text
    assert [t for t in text if t.startswith("fragment ")] == ["fragment 0 0 1000000000", "fragment 1 1000000000 2000000000"]
    assert "2 h264 " in "\n".join(text) and (tmp_path / "gst.mp4").stat().st_size > 0
    assert "endo 640 360 yuv420p True" in text
    assert "60 gstreamer cpu" in text  # the de-identification decoder
    assert text[-1] == "30 30 None"  # the live display: every tick offered, shown or dropped at the display
