"""The shipped store conformance suite (surgbox.testing.store_conformance) on ``local``, ``mirror`` and
an example third-party store (one SQLite file, tests/store_example_sqlite.py) built through a hermetic
plugin manager; plus the capability protocols and their check."""

from __future__ import annotations

import pytest
import store_example_sqlite as example

import surgbox_ext.plugin
from surgbox.crypto import KeyRing, MasterKey
from surgbox.errors import MissingCapabilityError
from surgbox.interfaces import STORE_CAPABILITIES, check_store, store_capabilities
from surgbox.plugins import Plugins
from surgbox.testing.store_conformance import StoreConformance

ALL = tuple(STORE_CAPABILITIES)


@pytest.fixture
def plugins():
    """surgbox's own stores and the example vendor store, and nothing installed."""
    return Plugins.build(entry_points=False, plugins=[(surgbox_ext.plugin, "surgbox"), (example, "acme-sqlite-store")])


class TestLocal(StoreConformance):
    required = ALL

    @pytest.fixture
    def make_store(self, plugins, tmp_path):
        (tmp_path / "root").mkdir()
        return lambda keyring: plugins.create("store", "local", root=tmp_path / "root", keyring=keyring, init=True)

    @pytest.fixture
    def raw_paths(self, tmp_path):
        return [tmp_path / "root"]


class TestMirror(StoreConformance):
    required = ALL

    @pytest.fixture
    def make_store(self, plugins, tmp_path):
        roots = [tmp_path / "disk-a", tmp_path / "disk-b"]
        for r in roots:
            r.mkdir()
        return lambda keyring: plugins.create("store", "mirror", roots=roots, keyring=keyring, init=True)

    @pytest.fixture
    def raw_paths(self, tmp_path):
        return [tmp_path / "disk-a", tmp_path / "disk-b"]


class TestExampleThirdPartyStore(StoreConformance):
    required = ALL

    @pytest.fixture
    def make_store(self, plugins, tmp_path):
        return lambda keyring: plugins.create("store", "example-sqlite", root=tmp_path / "sq", keyring=keyring, init=True)

    @pytest.fixture
    def raw_paths(self, tmp_path):
        return [tmp_path / "sq"]


def test_capabilities_are_declared_protocols(plugins, tmp_path):
    ring = KeyRing.of(MasterKey.generate())
    local = plugins.create("store", "local", root=tmp_path, keyring=ring)
    assert store_capabilities(local) == sorted(ALL)
    assert store_capabilities(plugins.create("store", "example-sqlite", root=tmp_path, keyring=ring)) == sorted(ALL)
    minimal = plugins.create("store", "example-minimal", root=tmp_path, keyring=ring)
    assert store_capabilities(minimal) == ["keyring", "segment_size"]
    assert check_store(local, *ALL) is local
    with pytest.raises(MissingCapabilityError) as info:
        check_store(minimal, "keyring", "recovery", "scrub", plugin="example-minimal", purpose="record --event")
    msg = str(info.value)
    assert "'example-minimal'" in msg and "record --event" in msg and "'recovery' (partials(), recover())" in msg
    assert "'scrub' (verify(), scrub())" in msg and "keyring" not in msg.split("lacks")[1]
    with pytest.raises(MissingCapabilityError, match="not a Store"):
        check_store(object(), plugin="junk")
    with pytest.raises(ValueError, match="unknown store capabilities"):
        check_store(local, "teleport")
