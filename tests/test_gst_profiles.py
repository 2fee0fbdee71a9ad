"""Profiles and availability: ``surgbox plugins`` lists every GStreamer plugin honestly, the
missing element and its package named; without PyGObject every gst plugin says how to install it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from gst_support import needs_gst

GST_NAMES = {"source": {"gst_testsrc", "gst_v4l2", "gst_argus", "gst_uri", "gst_pipeline"},
             "encoder": {"gst_x264", "gst_nvv4l2h264", "gst_nvh264"}}


def plugins_json() -> list[dict]:
    exe = Path(sys.executable).with_name("surgbox")
    out = subprocess.run([str(exe), "plugins", "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_every_gst_plugin_is_registered_lazily(default_plugins):
    for kind, names in GST_NAMES.items():
        entries = {e.name: e for e in default_plugins.entries(kind)}
        assert names <= set(entries)
        for n in names:
            assert entries[n].check is not None and "gi" not in repr(entries[n].factory)


@needs_gst
def test_surgbox_plugins_reports_each_profile_with_the_missing_element_and_package():
    from surgbox_ext.gst import runtime

    rows = {(r["kind"], r["name"]): r for r in plugins_json()}
    assert rows[("encoder", "gst_x264")]["available"] is True  # profile cpu: CI installs it
    assert rows[("source", "gst_testsrc")]["available"] is True and rows[("source", "gst_uri")]["available"] is True
    for name, element, package in [("gst_nvv4l2h264", "nvv4l2h264enc", "JetPack package nvidia-l4t-gstreamer"),
                                   ("gst_nvh264", "nvh264enc", "gstreamer1.0-plugins-bad")]:
        row = rows[("encoder", name)]
        if runtime.has_element(element):
            assert row["available"] is True
        else:
            assert row["available"] is False and element in row["reason"] and package in row["reason"]
    argus = rows[("source", "gst_argus")]
    assert argus["available"] is runtime.has_element("nvarguscamerasrc")
    if not argus["available"]:
        assert "nvarguscamerasrc, nvvidconv (JetPack package nvidia-l4t-gstreamer; runs only on an NVIDIA Jetson)" in argus["reason"]


@needs_gst
def test_an_installed_plugin_that_registered_nothing_is_told_apart_from_a_missing_package():
    from surgbox_ext.gst import profiles, runtime

    if not runtime.has_plugin("nvcodec") or runtime.has_element("nvh264enc"):
        pytest.skip("needs the nvcodec plugin installed without a usable NVIDIA GPU")
    why = profiles.check("nvidia", "encoder")
    assert why is not None and "the nvcodec plugin of gstreamer1.0-plugins-bad is installed but registered no nvh264enc" in why
    assert "libnvidia-encode" in why


@needs_gst
def test_profile_table_lists_every_role_of_every_profile():
    from surgbox_ext.gst import profiles

    rows = profiles.table()
    assert {(r["profile"], r["role"]) for r in rows} == {(p, r) for p in profiles.PROFILES for r in profiles.ROLES}
    cpu_encoder = next(r for r in rows if (r["profile"], r["role"]) == ("cpu", "encoder"))
    assert cpu_encoder["available"] is True and cpu_encoder["missing"] == []


def test_without_pygobject_every_gst_plugin_says_how_to_install_it():
    """Run in a Python where ``gi`` cannot be imported: the checks still answer, with the fix."""
    code = (
        "import sys, json; sys.modules['gi'] = None\n"
        "import surgbox_ext.plugin; from surgbox.plugins import Plugins\n"
        "p = Plugins.build(entry_points=False, plugins=[(surgbox_ext.plugin, 'surgbox')])\n"
        "print(json.dumps({e.name: e.unavailable_reason() for e in p.entries() if e.name.startswith('gst_')}))\n"
        "from surgbox.errors import EncoderError\n"
        "try:\n    p.create('encoder', 'gst_x264')\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    reasons = json.loads(out[0])
    assert set(reasons) == GST_NAMES["source"] | GST_NAMES["encoder"]
    for why in reasons.values():
        assert why.startswith("GStreamer plugins need PyGObject") and "bash scripts/install.sh" in why
    assert out[1].startswith("PluginUnavailableError") and "PyGObject" in out[1]


def test_import_surgbox_and_listing_plugins_stay_free_of_gi():
    code = ("import sys, surgbox, surgbox_ext.gst, surgbox_ext.gst.pipelines, surgbox_ext.gst.profiles; "
            "from surgbox.plugins import Plugins; Plugins.build().entries(); print('gi' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@needs_gst
def test_loading_gstreamer_leaves_cpp_exceptions_of_later_libraries_working():
    """libgstreamer brings libunwind into the global scope; onnxruntime imported afterwards must
    still unwind with GCC's unwinder (a torch ONNX export throws and catches C++ exceptions)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    code = (
        "import io, warnings, torch\n"
        "from surgbox_ext.gst import runtime; runtime.load()\n"
        "import onnxruntime\n"
        "warnings.simplefilter('ignore')\n"
        "torch.onnx.export(torch.nn.Conv2d(3, 4, 3), (torch.zeros(1, 3, 8, 8),), io.BytesIO(), dynamo=False,\n"
        "                  opset_version=17, input_names=['input'], dynamic_axes={'input': {0: 'b'}})\n"
        "print('exported')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "exported", out.stderr[-2000:]
