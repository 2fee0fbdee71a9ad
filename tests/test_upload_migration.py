"""Schema version 3 (upload remotes, jobs, files) upgrades a version-2 catalog in place.

``tests/data/catalog-v2.tar.gz`` is a home made by main's code at schema version 2 (the script
``tests/data/make_catalog_v2.py``, run with that code): admin + operator, one stopped event with
a segment and a snapshot in the store, its audit trail and anchor."""

from __future__ import annotations

import hashlib
import sqlite3
import tarfile
from pathlib import Path

import pytest
from upload_fixtures import PASSWORD, USER, add_remote, remote_objects, store_objects, upload
from upload_servers import start_script

from surgbox.catalog import SCHEMA_VERSION, Catalog
from surgbox.home import Home

DATA = Path(__file__).parent / "data" / "catalog-v2.tar.gz"


@pytest.fixture
def v2_home(tmp_path, monkeypatch):
    with tarfile.open(DATA) as tar:
        tar.extractall(tmp_path, filter="data")
    home = tmp_path / "home"
    home.chmod(0o700)
    (home / "keys").chmod(0o700)
    for p in (home / "keys").iterdir():
        p.chmod(0o600)
    monkeypatch.setenv("SURGBOX_HOME", str(home))
    return Home(home)


def test_v2_catalog_upgrades_in_place_keeping_events_files_and_the_audit_chain(v2_home, tmp_path):
    db_path = v2_home.catalog_path
    with sqlite3.connect(db_path) as c:
        assert [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2]
        before = c.execute("SELECT seq, hash FROM audit ORDER BY seq").fetchall()
        tables_before = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert SCHEMA_VERSION == 3 and "remotes" not in tables_before
    event_id = (v2_home.path / "event-id").read_text()
    with Catalog(v2_home) as cat:
        assert cat.db.schema_version() == 3
        tables = {r[0] for r in cat.db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"remotes", "upload_jobs", "upload_files"} <= tables and tables_before <= tables
        s = cat.login("admin", "admin-password")
        ev = s.events.get(event_id)
        assert sorted(f.name for f in ev.files) == ["segment-0001.mp4", "snapshot-0001.jpg"]
        with s.events.open_file(event_id, "segment-0001.mp4") as f:
            assert hashlib.sha256(f.read()).hexdigest() == ev.file("segment-0001.mp4").sha256
        after = cat.db.query("SELECT seq, hash FROM audit ORDER BY seq")
        assert [tuple(r) for r in after[: len(before)]] == [tuple(r) for r in before]  # append-only
        assert s.audit.verify().ok
        server = start_script("wsgidav", tmp_path / "dav", user=USER, password=PASSWORD)
        try:
            add_remote(s, "dav", "webdav", f"{server.url}/box")
            _, job = upload(s, event_id, "dav")
        finally:
            server.kill()
        assert job.status == "done"
        assert remote_objects(tmp_path / "dav" / "box", event_id) == store_objects(v2_home.path, event_id)
        assert s.audit.verify().ok
    with Catalog(v2_home) as cat:  # reopening applies nothing twice
        assert [r[0] for r in cat.db.query("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2, 3]

