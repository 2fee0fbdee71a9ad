"""A third-party package (examples/plugin-example) installed for real is discovered and used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from surgbox import Clock, VideoFrame
from surgbox.plugins import Plugins

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin-example"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """``pip install --target`` of the example package: a real install, isolated from the venv."""
    target = tmp_path_factory.mktemp("example-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture
def with_example(example_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_site))
    yield
    for name in [m for m in sys.modules if m.startswith("surgbox_example")]:
        del sys.modules[name]


def test_example_plugin_is_discovered_by_the_cli(example_site):
    env = {**os.environ, "PYTHONPATH": str(example_site)}
    out = subprocess.run([sys.executable, "-m", "surgbox", "plugins", "--json"], capture_output=True, text=True, check=True, env=env)
    rows = {(r["kind"], r["name"]): r for r in json.loads(out.stdout)}
    assert rows[("source", "example-ramp")]["package"] == "surgbox-example"
    assert rows[("detector", "example-zones")]["available"] is True
    table = subprocess.run([sys.executable, "-m", "surgbox", "plugins"], capture_output=True, text=True, check=True, env=env).stdout
    assert any(line.split()[:3] == ["detector", "example-zones", "surgbox-example"] for line in table.splitlines())


def test_example_source_and_detector_selected_by_name(with_example):
    plugins = Plugins.build()
    source = plugins.create("source", "example-ramp", name="ramp", width=64, height=48, fps=50)
    source.start(Clock())
    frames = [source.get(timeout=2) for _ in range(5)]
    source.stop()
    assert all(isinstance(f, VideoFrame) for f in frames)
    assert [f.seq for f in frames] == [0, 1, 2, 3, 4]
    gaps = np.diff([f.capture_ns for f in frames])
    assert np.all(gaps == 20_000_000)  # paced on the clock: capture times exactly 1/50 s apart

    detector = plugins.create("detector", "example-zones", zones=[[10, 10, 40, 30], [60, 0, 100, 10]])
    (dets,) = detector.detect([frames[0].to_ndarray()])
    np.testing.assert_array_equal(dets.boxes, [[10, 10, 40, 30], [60, 0, 64, 10]])  # clipped to the 64-px image


def test_example_override_replaces_a_default(with_example):
    """A vendor plugin registered under a default's name (higher priority) wins; the default stays reachable."""
    import surgbox_example.override

    plugins = Plugins.build()
    default = plugins.entry("detector", "retinaface")
    assert default.package == "surgbox"
    plugins.add(surgbox_example.override, "surgbox-example", name="example-override")
    chosen = plugins.entry("detector", "retinaface")
    assert chosen.package == "surgbox-example"
    assert type(plugins.create("detector", "retinaface")).__name__ == "ZoneDetector"
    assert plugins.entry("detector", "surgbox:retinaface") == default
