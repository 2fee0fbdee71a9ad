"""The Python examples of docs/storage.md run as written, in page order, in one namespace, in a
fresh folder (a block that cannot run here says why: ``<!-- not run: REASON -->``)."""

from __future__ import annotations

import textwrap

import pytest
from test_docs_examples import blocks

PAGE = "storage.md"


def test_the_storage_guide_has_runnable_examples():
    runnable = [b for b in blocks(PAGE) if b[2] is None]
    assert len(runnable) >= 8


def test_the_storage_guides_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PW", raising=False)
    ns: dict = {"__name__": "storage_guide"}
    for line, code, why in blocks(PAGE):
        if why is not None:
            continue
        try:
            exec(compile(textwrap.dedent(code), f"docs/{PAGE}:{line}", "exec"), ns)  # noqa: S102 - the guide's own code
        except Exception as exc:  # name the block that broke
            pytest.fail(f"docs/{PAGE} line {line}: {type(exc).__name__}: {exc}")
    assert (tmp_path / "rec.mp4").read_bytes() == ns["mp4_bytes"]
    assert ns["store_capabilities"](ns["store"]) == ["info", "keyring", "recovery", "scrub", "segment_size"]
