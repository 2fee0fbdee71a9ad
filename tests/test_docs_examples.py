"""The Python examples of docs/recording.md, docs/plugins.md and docs/sources.md run, so they stay true.

Every fenced ``python`` block of a page is executed, in page order, in one namespace per page,
in a fresh folder (``SURGBOX_HOME`` an initialized home there, with the operator ``op1`` whose
password is ``password``). A block that cannot run here says why on the line before it:
``<!-- not run: REASON -->``. Plugin hooks a block defines are registered with a real plugin
manager (which checks their names and arguments) and the registration hooks are called. The
fragment uploader of the recording guide is run on a real recording.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

import surgbox_ext.plugin
from surgbox.plugins import Plugins

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ("recording.md", "plugins.md", "sources.md")
NOT_RUN = re.compile(r"^<!-- not run: (?P<why>.+\S) -->$")
PASSWORD = "op1-password"


def blocks(page: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, reason)`` of every python block; ``reason`` is set for a block not run."""
    out, lines = [], (DOCS / page).read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            prev = next((lines[k].strip() for k in range(start - 1, -1, -1) if lines[k].strip()), "")
            m = NOT_RUN.match(prev)
            out.append((start + 1, "\n".join(lines[start + 1 : j]) + "\n", m["why"] if m else None))
            i = j
        i += 1
    return out


def _home(path: Path) -> None:
    from surgbox.catalog import Catalog, install_home

    home = install_home(path, "admin", "admin-password")
    cfg = home.config_path.read_text()  # cheap Argon2: a fast test
    home.config_path.write_text(cfg.replace("min_length = 8", "min_length = 8\ntime_cost = 1\nmemory_kib = 8192\nparallelism = 1"))
    with Catalog.at(home) as catalog:
        catalog.login("admin", "admin-password").users.add("op1", "operator", PASSWORD)


def _check_hooks(code_ns: dict, before: dict, where: str) -> int:
    """Register the hooks a block defined (new functions with a surgbox hookimpl marker)."""
    hooks = {k: v for k, v in code_ns.items() if callable(v) and hasattr(v, "surgbox_impl") and before.get(k) is not v}
    if not hooks:
        return 0
    plugins = Plugins.build(entry_points=False, plugins=[(types.SimpleNamespace(**hooks), f"doc:{where}")])
    entries = [e for e in plugins.entries() if e.package == f"doc:{where}"]
    registrations = [n for n in hooks if n.startswith("register_")]
    assert len(entries) >= len(registrations), (where, hooks, entries)
    return len(hooks)


_RUNS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def run_page(tmp_path_factory):
    """``run_page(page)``: the page's examples run once per test module (results cached)."""
    mp = pytest.MonkeyPatch()

    def run(page: str) -> dict:
        if page not in _RUNS:
            _RUNS[page] = _run(page, tmp_path_factory, mp)
        return _RUNS[page]

    yield run
    mp.undo()
    _RUNS.clear()


def _run(page: str, tmp_path_factory, mp) -> dict:
    work = tmp_path_factory.mktemp(page.replace(".", "-"))
    mp.chdir(work)
    _home(work / "home")
    mp.setenv("SURGBOX_HOME", str(work / "home"))
    ns: dict = {"__name__": f"docs_{page.split('.')[0]}", "password": PASSWORD}
    ran, skipped, hooks = [], [], 0
    for line, code, why in blocks(page):
        if why is not None:
            skipped.append((line, why))
            continue
        before = dict(ns)
        try:
            exec(compile(code, f"docs/{page}:{line}", "exec"), ns)
        except Exception as exc:  # name the block in the failure
            raise AssertionError(f"docs/{page}, the python block at line {line} failed: {type(exc).__name__}: {exc}") from exc
        hooks += _check_hooks(ns, before, f"{page}:{line}")
        ran.append(line)
    return {"page": page, "ran": ran, "skipped": skipped, "hooks": hooks, "ns": ns, "work": work}


MINIMUM = {"recording.md": 8, "plugins.md": 9, "sources.md": 6}


@pytest.mark.parametrize("page", PAGES)
def test_the_python_examples_of_the_page_run(run_page, page):
    page_run = run_page(page)
    assert len(page_run["ran"]) >= MINIMUM[page], page_run  # the examples really ran (not all marked "not run")
    assert len(page_run["skipped"]) <= 3, page_run["skipped"]
    if page == "plugins.md":
        assert page_run["hooks"] >= 9  # every hook's example was registered with a real manager


def test_the_recording_guides_examples_made_what_they_say(run_page):
    page_run = run_page("recording.md")
    ns, work = page_run["ns"], page_run["work"]
    assert (work / "case.mp4").is_file() and (work / "case.mp4.json").is_file()
    assert len(ns["fragments"]) == 3 and [f.start_ns for f in ns["fragments"]] == [0, 10**9, 2 * 10**9]
    assert (work / "teed.mp4").read_bytes() == ns["preview"].getvalue()  # the tee wrote the same file twice
    from surgbox.catalog import Catalog

    with Catalog.at(work / "home") as catalog:
        ev = catalog.login("op1", PASSWORD).events.get(ns["ev"].id)
    assert ev.status == "stopped" and {f.name for f in ev.files} >= {"segment-0001.mp4", "segment-0001.mp4.json"}
    assert ns["opts"].end_tick == 1500


def test_the_fragment_uploader_of_the_guide_sends_the_whole_recording(run_page, tmp_path):
    page_run = run_page("recording.md")
    from surgbox.plugins import get_plugins
    from surgbox.recording import Recorder
    from surgbox.types import Layout
    from surgbox_ext.encoders import X264Encoder

    sent: list[tuple[int, bytes]] = []
    uploader = page_run["ns"]["FragmentUploader"](lambda name, offset, data: sent.append((offset, data)))
    plugins = Plugins.build(entry_points=False, plugins=[(surgbox_ext.plugin, "surgbox"), (uploader, "uploader")])
    layout = Layout.from_mapping({"width": 320, "height": 180, "slots": [{"name": "cam", "rect": [0, 0, 320, 180]}]})
    out = tmp_path / "up.mp4"
    source = get_plugins().create("source", "testsrc", name="cam", width=320, height=180)
    with Recorder([source], layout, out, encoder=X264Encoder(preset="ultrafast", gop_seconds=0.5), duration=2, plugins=plugins,
                  latency_s=1.0, max_behind_s=60) as rec:
        rec.wait()
    uploader.todo.join()
    data = out.read_bytes()
    assembled = b"".join(d for _, d in sorted(sent))
    assert len(sent) == 1 + 4 and data.startswith(assembled)  # the header and four 0.5 s fragments, in place
    assert data[len(assembled):][4:8] == b"mfra"  # only the MP4's index trailer was not sent


@pytest.mark.parametrize("module", ["surgbox.recording.options", "surgbox.types", "surgbox.sync", "surgbox._toml",
                                    "surgbox.recording.recorder", "surgbox.catalog.recording_sink"])
def test_docstring_examples_of_the_recording_modules(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if module in ("surgbox.recording.options", "surgbox.types", "surgbox.sync"):
        assert result.attempted >= 2  # the examples really ran
