"""Automatic upload on the recording-stopped hook: ``[upload] auto = "REMOTE"`` in config.toml makes
``surgbox record --event`` queue the event's upload when the recording stops, and send it."""

from __future__ import annotations

import os
import subprocess
import sys

from upload_fixtures import PASSWORD, USER, add_remote, open_catalog, record_config, remote_objects, store_objects
from upload_servers import free_port, start_script



def _record(tmp_path, eid: str) -> subprocess.CompletedProcess:
    (tmp_path / "rec.toml").write_text(record_config((160, 90)))
    env = {**os.environ, "SURGBOX_USER": "admin", "SURGBOX_PASSWORD": "admin-password"}
    return subprocess.run([sys.executable, "-m", "surgbox", "record", "--config", str(tmp_path / "rec.toml"), "--event",
                           eid, "--duration", "2", "--quiet"], env=env, capture_output=True, text=True, timeout=300)


def _event(surgbox_home) -> str:
    with open_catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        return s.events.create(patient="Auto Upload", medical_record="MRN-AU", procedure="x").id


def test_recording_stopped_queues_and_sends_the_upload(surgbox_home, tmp_path):
    server = start_script("wsgidav", tmp_path / "dav", user=USER, password=PASSWORD)
    try:
        with open_catalog(surgbox_home) as cat:
            add_remote(cat.login("admin", "admin-password"), "archive", "webdav", f"{server.url}/box")
        cfg = surgbox_home.config_path
        cfg.write_text(cfg.read_text() + '\n[upload]\nauto = "archive"\n')
        eid = _event(surgbox_home)
        r = _record(tmp_path, eid)
    finally:
        server.kill()
    assert r.returncode == 0, r.stderr
    assert "uploaded to archive (verified)" in r.stderr
    assert remote_objects(tmp_path / "dav" / "box", eid) == store_objects(surgbox_home.path, eid)
    with open_catalog(surgbox_home) as cat:
        jobs = cat.db.query("SELECT status FROM upload_jobs WHERE event_id = ?", (eid,))
        assert [j["status"] for j in jobs] == ["done"]


def test_a_failing_automatic_upload_warns_and_keeps_the_recording_and_the_job(surgbox_home, tmp_path):
    with open_catalog(surgbox_home) as cat:
        add_remote(cat.login("admin", "admin-password"), "gone", "webdav", f"http://127.0.0.1:{free_port()}/box")
    cfg = surgbox_home.config_path
    cfg.write_text(cfg.read_text() + '\n[upload]\nauto = "gone"\n')
    eid = _event(surgbox_home)
    r = _record(tmp_path, eid)
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("surgbox: warning: upload job")]
    assert len(warnings) == 1 and "stays queued" in warnings[0] and "cannot reach" in warnings[0]
    with open_catalog(surgbox_home) as cat:
        assert [j["status"] for j in cat.db.query("SELECT status FROM upload_jobs WHERE event_id = ?", (eid,))] == ["queued"]
        assert cat.db.query_one("SELECT status FROM events WHERE id = ?", (eid,))["status"] == "stopped"
        assert cat.db.query("SELECT id FROM files WHERE event_id = ? AND kind = 'segment'", (eid,))


def test_an_auto_setting_naming_no_remote_stops_the_recording_from_starting(surgbox_home, tmp_path):
    cfg = surgbox_home.config_path
    cfg.write_text(cfg.read_text() + '\n[upload]\nauto = "archve"\n')  # a typo: no such remote
    eid = _event(surgbox_home)
    r = _record(tmp_path, eid)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "[upload] auto = 'archve': no remote 'archve'" in lines[0], r.stderr
    with open_catalog(surgbox_home) as cat:
        assert not cat.db.query("SELECT id FROM files WHERE event_id = ?", (eid,))  # nothing recorded
        assert not cat.db.query("SELECT id FROM upload_jobs WHERE event_id = ?", (eid,))


def test_the_console_queues_the_automatic_upload_when_it_cannot_send_it_now(surgbox_home):
    from surgbox.console.uploads import UploadJobs

    with open_catalog(surgbox_home) as cat:
        add_remote(cat.login("admin", "admin-password"), "archive", "webdav", f"http://127.0.0.1:{free_port()}/box")
    cfg = surgbox_home.config_path
    cfg.write_text(cfg.read_text() + '\n[upload]\nauto = "archive"\n')
    eid = _event(surgbox_home)
    uploads = UploadJobs()
    uploads.worker.busy = lambda: True  # as while a recording runs: nothing may start
    with open_catalog(surgbox_home) as cat:
        session = cat.login("admin", "admin-password")
        assert uploads.after_recording(session, eid, "RuntimeError: the recording failed") is None
        assert not cat.db.query("SELECT id FROM upload_jobs WHERE event_id = ?", (eid,))
        job = uploads.after_recording(session, eid, None)
        rows = cat.db.query("SELECT id, status, remote FROM upload_jobs WHERE event_id = ?", (eid,))
        assert [(r["id"], r["status"], r["remote"]) for r in rows] == [(job, "queued", "archive")]
