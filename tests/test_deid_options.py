"""DeidOptions (one frozen, validated value), the defaults module, the declared detector-option
rule, and plugin option errors as one ConfigError (issue 18 item 16, issue 19 item 4)."""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest

from surgbox.deid import DeidOptions, defaults
from surgbox.errors import ConfigError
from surgbox.hookspecs import hookimpl


def test_defaults_are_todays_values_in_one_module():
    o = DeidOptions()
    assert (o.detector, o.detect_scale, o.expand, o.carry, o.max_gap, o.every, o.batch) == (
        defaults.DETECTOR, defaults.DETECT_SCALE, defaults.EXPAND, defaults.CARRY, defaults.MAX_GAP, defaults.EVERY,
        defaults.BATCH)
    # the detector defaults chosen by measurement (issue 11, docs/deid.md "Detectors and defaults")
    assert defaults.DETECTOR == "ensemble" and "threshold" not in defaults.detector_options("ensemble")
    assert [m["threshold"] for m in defaults.detector_options("ensemble")["members"]] == [0.1, 0.1, 0.2]
    assert [m["confirm"] for m in defaults.detector_options("ensemble")["members"]] == [0.4, 0.4, 0.5]
    assert [m["name"] for m in defaults.detector_options("ensemble")["members"]] == ["centerface", "centerface", "retinaface"]
    assert defaults.detector_options("retinaface") == {"threshold": 0.3, "threads": 1, "scale": 0.5}
    assert defaults.detector_options("surgbox:retinaface") == {"threshold": 0.3, "threads": 1, "scale": 0.5}
    assert defaults.detector_options("acme-faces") == {}
    d = defaults.detector_options("retinaface")
    d["threshold"] = 0.9  # a copy: the table itself does not change
    assert defaults.DETECTOR_OPTIONS["retinaface"]["threshold"] == 0.3


def test_options_are_frozen_and_validated():
    o = DeidOptions(region="1280,0,640,360", every=2, detector_options={"device": "cpu"})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        o.every = 3
    with pytest.raises(TypeError):
        o.detector_options["device"] = "cuda"  # read-only mapping
    assert o == DeidOptions(region="1280,0,640,360", every=2, detector_options={"device": "cpu"})
    for bad, match in [({"carry": -1}, "carry must be an integer in"), ({"every": 31}, "every"), ({"batch": 0}, "batch"),
                       ({"detect_scale": 1.5}, "detect_scale"), ({"detect_scale": "half"}, "detect_scale"),
                       ({"detector_threads": 0}, "detector_threads"), ({"cut_threshold": -1}, "cut_threshold"),
                       ({"on_detector_error": "ignore"}, "on_detector_error must be one of fail, blur-region"),
                       ({"extra_streams": "copy"}, "extra_streams"), ({"region": "1,2,3"}, "region"),
                       ({"expand": 0.5}, "expand"), ({"anonymizer": "smudge"}, "unknown anonymizer"),
                       ({"anonymizer_options": {"strength": -1}}, "strength"), ({"carry": True}, "carry"),
                       ({"queue_memory": 0}, "queue_memory"), ({"confirm_hits": 0}, "confirm_hits must be an integer in"),
                       ({"confirm_hits": 2.5}, "confirm_hits")]:
        with pytest.raises(ConfigError, match=match):
            DeidOptions(**bad)


def test_confirm_hits_reaches_the_temporal_stage_and_the_settings():
    """``confirm_hits`` (default CONFIRM_HITS) is the temporal stage's, offline and live, and is
    recorded with the run's settings."""
    from surgbox.recording.live_settings import LiveDeidSettings

    assert DeidOptions().make_temporal().confirm_hits == defaults.CONFIRM_HITS
    o = DeidOptions(confirm_hits=1)
    assert o.make_temporal(bounds=((0, 0, 640, 360),)).confirm_hits == 1 and o.settings()["confirm_hits"] == 1
    live = LiveDeidSettings.from_mapping({"confirm_hits": 2})
    assert live.temporal(640, 360).confirm_hits == 2 and live.to_dict()["confirm_hits"] == 2
    assert LiveDeidSettings.from_mapping({}).temporal(640, 360).confirm_hits == defaults.CONFIRM_HITS
    with pytest.raises(ConfigError, match="confirm_hits"):
        LiveDeidSettings.from_mapping({"confirm_hits": 0})


def test_declared_detector_option_rule():
    # the default detector gets its declared options; the caller's override them
    assert DeidOptions().detector_factory_options() == defaults.detector_options(defaults.DETECTOR)
    given = DeidOptions(threshold=0.2, detector_threads=2).detector_factory_options()
    assert (given["threshold"], given["threads"]) == (0.2, 2)
    assert DeidOptions(detector_options={"threshold": 0.4}, threshold=0.2).detector_factory_options()["threshold"] == 0.4
    # a detector the table does not declare gets only what the caller names
    assert DeidOptions(detector="acme-faces").detector_factory_options() == {}
    assert DeidOptions(detector="acme-faces", threshold=0.5).detector_factory_options() == {"threshold": 0.5}
    # an already built detector takes no options
    with pytest.raises(ConfigError, match="already built detector"):
        DeidOptions(detector=object(), threshold=0.5)
    with pytest.raises(ConfigError, match="already built encoder"):
        DeidOptions(encoder=object(), encoder_options={"crf": 20})
    # the default encoders are asked for a plain MP4 on a path, fragmented MP4 on a file object
    assert DeidOptions().encoder_factory_options(streaming=False) == {"fragmented": False}
    assert DeidOptions().encoder_factory_options(streaming=True) == {"fragmented": True}
    assert DeidOptions(encoder="acme-hevc").encoder_factory_options(streaming=False) == {}


def test_no_signature_probing_left():
    from pathlib import Path

    import surgbox.deid

    for path in Path(surgbox.deid.__file__).parent.glob("*.py"):
        assert "inspect.signature" not in path.read_text() and "_factory_accepts" not in path.read_text(), path


class _Picky:
    """A plugin factory with attrs-style validation (like the real detectors and encoders)."""

    def __init__(self, level: int = 1):
        if not 0 < level < 10:
            raise ValueError(f"level must be in (0, 10), got {level}")


def test_plugins_create_turns_option_errors_into_one_config_error(hermetic_plugins):
    class Reg:
        @hookimpl
        def register_detectors(self, register):
            register("picky", _Picky)

    hermetic_plugins.add(Reg(), "picky-pkg")
    assert isinstance(hermetic_plugins.create("detector", "picky", level=3), _Picky)
    with pytest.raises(ConfigError) as e:
        hermetic_plugins.create("detector", "picky", threshold=0.5)
    assert str(e.value) == ("detector plugin 'picky' has no option 'threshold' (given threshold=0.5); remove it, or see "
                            "the plugin's documentation for its options")
    assert isinstance(e.value.__cause__, TypeError)
    with pytest.raises(ConfigError, match=r"^detector plugin 'picky': option level=12 is not valid: level must be in"):
        hermetic_plugins.create("detector", "picky", level=12)


def test_real_plugins_option_errors(default_plugins):
    with pytest.raises(ConfigError, match=r"^detector plugin 'retinaface': option threshold=1.5 is not valid: threshold must be"):
        default_plugins.create("detector", "retinaface", threshold=1.5)
    with pytest.raises(ConfigError, match=r"^encoder plugin 'libx264': option crf=99 is not valid"):
        default_plugins.create("encoder", "libx264", crf=99)
    with pytest.raises(ConfigError, match="has no option 'qualty'"):
        default_plugins.create("encoder", "libx264", qualty=3)


def test_cli_bad_threshold_is_one_line(tmp_path):
    """``surgbox deid --threshold 1.5`` printed a traceback (issue 18 item 16)."""
    from test_deid_pipeline import make_video

    src = make_video(tmp_path / "in.mp4", frames=3, audio=False)
    proc = subprocess.run([sys.executable, "-m", "surgbox", "deid", str(src), str(tmp_path / "o.mp4"), "--threshold", "1.5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["surgbox: error: detector plugin 'ensemble': option threshold=1.5 is not valid: "
                     "threshold must be in [0, 1), got 1.5 (e.g. 0.15)"], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
