"""Plugin manager: registration hooks, lookup by name, priorities, availability, errors."""

from __future__ import annotations

import types

import pytest

from surgbox import hookimpl
from surgbox.errors import PluginConflictError, PluginNotFoundError, PluginUnavailableError
from surgbox.plugins import DEFAULT_PRIORITY, Plugins, lazy, requires


class Thing:
    def __init__(self, **options):
        self.options = options


def make_plugin(**hooks):
    return types.SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


def test_hermetic_manager_sees_no_installed_plugins(hermetic_plugins):
    assert hermetic_plugins.entries() == []
    assert hermetic_plugins.broken == []


@pytest.mark.parametrize(
    "hook, kind",
    [
        ("register_sources", "source"),
        ("register_compositors", "compositor"),
        ("register_encoders", "encoder"),
        ("register_detectors", "detector"),
        ("register_stores", "store"),
    ],
)
def test_registration_hook_records_factory_by_kind(hermetic_plugins, hook, kind):
    calls = []

    def impl(register):
        calls.append(register)
        register("thing", Thing, description="a thing")

    hermetic_plugins.add(make_plugin(**{hook: impl}), "acme-surgbox")
    (entry,) = hermetic_plugins.entries(kind)
    assert (entry.kind, entry.name, entry.package, entry.description) == (kind, "thing", "acme-surgbox", "a thing")
    built = hermetic_plugins.create(kind, "thing", speed=3)
    assert isinstance(built, Thing) and built.options == {"speed": 3}
    # the registry is collected once: hooks are not re-run on every lookup
    hermetic_plugins.create(kind, "thing")
    assert len(calls) == 1
    other_kinds = {e.kind for e in hermetic_plugins.entries()} - {kind}
    assert other_kinds == set()


# One test per registration hook, named as the hook-documentation test expects.
def _one_kind(plugins, hook, kind):
    plugins.add(make_plugin(**{hook: lambda register: register("x", Thing)}), "p")
    assert [e.name for e in plugins.entries(kind)] == ["x"]


def test_hook_register_sources(hermetic_plugins):
    _one_kind(hermetic_plugins, "register_sources", "source")


def test_hook_register_compositors(hermetic_plugins):
    _one_kind(hermetic_plugins, "register_compositors", "compositor")


def test_hook_register_encoders(hermetic_plugins):
    _one_kind(hermetic_plugins, "register_encoders", "encoder")


def test_hook_register_detectors(hermetic_plugins):
    _one_kind(hermetic_plugins, "register_detectors", "detector")


def test_hook_register_stores(hermetic_plugins):
    _one_kind(hermetic_plugins, "register_stores", "store")


def test_unknown_name_lists_available(hermetic_plugins):
    hermetic_plugins.add(make_plugin(register_encoders=lambda register: [register("alpha", Thing), register("beta", Thing)]), "p")
    with pytest.raises(PluginNotFoundError) as info:
        hermetic_plugins.create("encoder", "gamma")
    msg = str(info.value)
    assert "no encoder plugin named 'gamma'" in msg and "alpha, beta" in msg
    assert info.value.available == ["alpha", "beta"]


def test_unknown_kind_is_rejected(hermetic_plugins):
    with pytest.raises(ValueError, match="unknown plugin kind 'camera'"):
        hermetic_plugins.entries("camera")


def test_higher_priority_replaces_default_and_qualified_name_selects(hermetic_plugins):
    class Default(Thing):
        pass

    class Vendor(Thing):
        pass

    hermetic_plugins.add(make_plugin(register_detectors=lambda register: register("faces", Default, priority=DEFAULT_PRIORITY)), "surgbox")
    hermetic_plugins.add(make_plugin(register_detectors=lambda register: register("faces", Vendor)), "acme")
    assert isinstance(hermetic_plugins.create("detector", "faces"), Vendor)
    assert isinstance(hermetic_plugins.create("detector", "surgbox:faces"), Default)
    with pytest.raises(PluginNotFoundError):
        hermetic_plugins.create("detector", "nobody:faces")


def test_same_priority_conflict_names_both_packages(hermetic_plugins):
    hermetic_plugins.add(make_plugin(register_stores=lambda register: register("disk", Thing)), "one")
    hermetic_plugins.add(make_plugin(register_stores=lambda register: register("disk", Thing)), "two")
    with pytest.raises(PluginConflictError, match="one, two"):
        hermetic_plugins.create("store", "disk")
    assert isinstance(hermetic_plugins.create("store", "two:disk"), Thing)


def test_unavailable_plugin_reports_reason_and_refuses_to_build(hermetic_plugins):
    hermetic_plugins.add(
        make_plugin(register_encoders=lambda register: register("hw", Thing, check=lambda: "no encoder chip on this machine")), "vendor"
    )
    (row,) = hermetic_plugins.table()
    assert row["available"] is False and row["reason"] == "no encoder chip on this machine"
    with pytest.raises(PluginUnavailableError, match="no encoder chip on this machine"):
        hermetic_plugins.create("encoder", "hw")


def test_crashing_check_is_reported_not_raised(hermetic_plugins):
    def check():
        raise OSError("device busy")

    hermetic_plugins.add(make_plugin(register_sources=lambda register: register("cam", Thing, check=check)), "v")
    (row,) = hermetic_plugins.table()
    assert row["available"] is False and "OSError: device busy" in row["reason"]


def test_requires_names_missing_module_and_install_command():
    assert requires("json", install="-")() is None
    reason = requires("json", "surely_not_a_module_xyz", install="pip install xyz")()
    assert "surely_not_a_module_xyz" in reason and "pip install xyz" in reason


def test_lazy_imports_only_when_called():
    import sys

    factory = lazy("fractions:Fraction")
    assert factory.target == "fractions:Fraction"
    assert factory(numerator=1, denominator=3) == __import__("fractions").Fraction(1, 3)
    with pytest.raises(ValueError, match="package.module:Attribute"):
        lazy("no_colon")
    bad = lazy("surgbox_no_such_module_zz:X")
    assert "surgbox_no_such_module_zz" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        bad()


def test_non_callable_factory_is_rejected(hermetic_plugins):
    """The plugin that registers it is listed as broken (with the reason); the others still load."""
    hermetic_plugins.add(make_plugin(register_sources=lambda register: register("bad", 42)), "v")
    hermetic_plugins.add(make_plugin(register_sources=lambda register: register("good", Thing)), "w")
    assert [e.name for e in hermetic_plugins.entries()] == ["good"]
    ((where, error),) = hermetic_plugins.broken
    assert where == "v:v" and "register_sources() failed" in error and "non-callable factory" in error
    rows = hermetic_plugins.table()
    assert [(r["name"], r["broken"], r["available"]) for r in rows] == [("good", False, True), ("v", True, False)]
    with pytest.raises(PluginNotFoundError):
        hermetic_plugins.create("source", "bad")


def test_a_registration_hook_that_raises_drops_only_its_own_registrations(hermetic_plugins):
    def hook(register):
        register("half", Thing)
        raise RuntimeError("licence server unreachable")

    hermetic_plugins.add(make_plugin(register_detectors=hook), "acme")
    assert hermetic_plugins.entries() == []
    assert hermetic_plugins.broken == [("acme:acme", "register_detectors() failed: RuntimeError: licence server unreachable")]
    hermetic_plugins.add(make_plugin(register_detectors=lambda register: register("x", Thing)), "other")
    assert [e.name for e in hermetic_plugins.entries()] == ["x"] and len(hermetic_plugins.broken) == 1  # not listed twice


def test_broken_entry_point_is_listed_not_fatal(tmp_path, monkeypatch):
    dist = tmp_path / "broken_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[surgbox]\nbroken = broken_pkg_module_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = Plugins.build()
    assert any(ep == "broken-pkg:broken" and "ModuleNotFoundError" in err for ep, err in plugins.broken)


def test_default_plugins_register_through_entry_point():
    """surgbox_ext is found through the same entry-point group a vendor uses."""
    plugins = Plugins.build()
    assert "surgbox_ext" in plugins.packages and plugins.packages["surgbox_ext"] == "surgbox"


def test_registration_imports_no_heavy_modules():
    """Listing plugins must not import torch or open devices."""
    import subprocess
    import sys

    code = (
        "import sys; from surgbox.plugins import Plugins; p = Plugins.build(); p.entries();"
        "heavy = [m for m in ('torch', 'onnxruntime', 'serial', 'gi') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# The defaults every kind must offer on a plain install (the CLI and the demo select these names).
DEFAULTS = {
    "source": {"testsrc", "tone", "file", "v4l2", "url", "alsa", "footswitch", "bis"},
    "compositor": {"default"},
    "encoder": {"libx264", "h264_nvenc"},
    "detector": {"retinaface"},
    "store": {"local", "mirror"},
}


@pytest.mark.parametrize("kind", sorted(DEFAULTS))
def test_surgbox_ext_registers_the_documented_defaults(default_plugins, kind):
    assert DEFAULTS[kind] <= set(default_plugins.names(kind))
    assert all(e.package == "surgbox" and e.priority == DEFAULT_PRIORITY for e in default_plugins.entries(kind))


@pytest.mark.parametrize("kind, name", [("source", "testsrc"), ("compositor", "default"), ("encoder", "libx264"), ("store", "local")])
def test_core_defaults_are_available_here(default_plugins, kind, name):
    assert default_plugins.entry(kind, name).unavailable_reason() is None


def test_lazy_factories_compare_by_target():
    assert lazy("a.b:C") == lazy("a.b:C") and lazy("a.b:C") != lazy("a.b:D")
    assert repr(lazy("a.b:C")) == "lazy('a.b:C')"
