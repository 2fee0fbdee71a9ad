"""``surgbox plugins`` with real third-party packages: broken ones are listed (JSON and table),
and of two same-named plugins the table and the JSON say which one a bare name selects."""

from __future__ import annotations

import json
import subprocess

import pytest

from vendor_plugins import SURGBOX, env_with, install


@pytest.fixture(scope="module")
def vendors(tmp_path_factory):
    return install(tmp_path_factory.mktemp("vendors"))


def _run(vendors, *args):
    out = subprocess.run([*SURGBOX, "plugins", *args], capture_output=True, text=True, env=env_with(vendors), timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_json_lists_broken_plugins_with_the_reason(vendors):
    rows = json.loads(_run(vendors, "--json"))
    broken = {r["package"]: r for r in rows if r["broken"]}
    assert set(broken) == {"acme-broken", "acme-hook"}
    for r in broken.values():
        assert r["available"] is False and r["kind"] is None and r["selected"] is False
    assert "libacme.so.3" in broken["acme-broken"]["reason"] and "ImportError" in broken["acme-broken"]["reason"]
    assert "register_detectors() failed" in broken["acme-hook"]["reason"]
    assert "licence server unreachable" in broken["acme-hook"]["reason"]
    # the broken ones hide nothing else: the vendor's good detectors and surgbox's own are there
    names = {(r["package"], r["name"]) for r in rows if r["kind"] == "detector"}
    assert {("acme-faces", "acme_boxes"), ("surgbox", "centerface"), ("surgbox", "retinaface")} <= names


def test_json_marks_which_same_named_plugin_is_selected(vendors):
    rows = [r for r in json.loads(_run(vendors, "--json", "--kind", "detector")) if not r["broken"]]
    by = {(r["package"], r["name"]): r for r in rows}
    assert by[("acme-faces", "retinaface")]["selected"] is True  # a vendor (priority 0) beats the default (-100)
    assert by[("surgbox", "retinaface")]["selected"] is False
    assert by[("surgbox", "centerface")]["selected"] is True  # the only one of its name
    assert by[("acme-faces", "twin")]["selected"] is by[("acme-twin", "twin")]["selected"] is False  # a tie


def test_table_shows_broken_rows_and_the_winner(vendors):
    lines = _run(vendors, "--kind", "detector").splitlines()
    assert lines[0].split() == ["KIND", "NAME", "PACKAGE", "STATUS"]

    def row(package, name):
        found = [line for line in lines if line.split()[1:3] == [name, package]]
        assert len(found) == 1, (package, name, lines)
        return found[0]

    assert "BROKEN: cannot be loaded" in row("acme-broken", "broken") and "libacme.so.3" in row("acme-broken", "broken")
    assert "BROKEN: register_detectors() failed" in row("acme-hook", "hook")
    assert "selected (wins over surgbox by priority)" in row("acme-faces", "retinaface")
    assert "not selected (acme-faces wins), select as 'surgbox:retinaface'" in row("surgbox", "retinaface")
    assert "conflict" in row("acme-twin", "twin") and "select as 'acme-twin:twin'" in row("acme-twin", "twin")
    assert row("surgbox", "centerface").split()[3:] == ["available"]  # no note where there is no rival


def test_listing_without_vendor_packages_has_no_broken_rows():
    out = subprocess.run([*SURGBOX, "plugins", "--json"], capture_output=True, text=True, timeout=300)
    rows = json.loads(out.stdout)
    assert rows and not [r for r in rows if r["broken"]]
    assert all(r["selected"] for r in rows), "surgbox's own plugins each have a name of their own"


def test_a_detector_without_threshold_threads_or_device_runs_without_warnings(vendors, tmp_path):
    """issue 20 item 15: a vendor detector whose factory takes none of the usual options runs
    through `surgbox deid` and `surgbox detect` with the defaults and says nothing but its result;
    asking it for an option it lacks is one error line naming the option."""
    from PIL import Image
    from test_deid_pipeline import make_video

    src = make_video(tmp_path / "in.mp4", frames=10, audio=False)
    env = env_with(vendors)
    deid = subprocess.run([*SURGBOX, "deid", str(src), str(tmp_path / "out.mp4"), "--detector", "acme_boxes", "--json",
                           "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert deid.returncode == 0, deid.stderr
    assert deid.stderr == ""  # no warning, per run or per batch
    (summary,) = json.loads(deid.stdout)
    assert summary["frames"] == 10 and summary["warnings"] == []
    assert summary["detections"] >= 10, summary  # its box in every frame reached the pipeline

    Image.new("RGB", (90, 60), (128, 128, 128)).save(tmp_path / "a.png")
    detect = subprocess.run([*SURGBOX, "detect", str(tmp_path / "a.png"), "--detector", "acme_boxes", "--json"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert detect.returncode == 0 and detect.stderr == "", detect.stderr
    (entry,) = json.loads(detect.stdout)
    assert [d["box"] for d in entry["detections"]] == [[30.0, 20.0, 60.0, 40.0]]

    asked = subprocess.run([*SURGBOX, "deid", str(src), str(tmp_path / "o2.mp4"), "--detector", "acme_boxes",
                            "--threshold", "0.5", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert asked.returncode == 1 and asked.stderr.count("\n") == 1, asked.stderr
    assert "has no option 'threshold'" in asked.stderr and not (tmp_path / "o2.mp4").exists()
