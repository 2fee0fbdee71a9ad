"""Generic WebDAV upload against real servers on loopback (WsgiDAV on cheroot, ``rclone serve
webdav``): remote bytes equal the store's, a server dying mid-upload resumes without resending
finished files, full disk and unreachable hosts leave the job queued, permissions, pause/cancel,
bandwidth limit, and the CLI (progress as JSON lines, no password in its output)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest
from upload_fixtures import PASSWORD, USER, add_remote, make_event, open_catalog, remote_objects, store_objects, upload
from upload_servers import free_port, start_rclone, start_script

from surgbox.catalog import AccessDenied
from surgbox.upload import Queue, UploadError, Uploader


@pytest.fixture
def session(surgbox_home):
    cat = open_catalog(surgbox_home)
    yield cat.login("admin", "admin-password")
    cat.close()


@pytest.fixture
def servers():
    started = []

    def start(kind, *args, **kw):
        s = start_rclone(*args, **kw) if kind == "rclone" else start_script(kind, *args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


@pytest.mark.parametrize("kind", ["wsgidav", "rclone"])
def test_upload_lands_byte_for_byte_with_a_manifest_and_no_temporary_files(kind, servers, session, surgbox_home, tmp_path):
    kw = {"log": tmp_path / "log"} if kind == "wsgidav" else {}
    server = servers(kind, tmp_path / "srv", user=USER, password=PASSWORD, **kw)
    eid = make_event(session, sizes=(900_000, 4_000, 300))
    add_remote(session, "r", "webdav", f"{server.url}/a/b")  # folders made as needed
    up, job = upload(session, eid, "r")
    assert job.status == "done" and len(job.files) == 7
    folder = tmp_path / "srv" / "a" / "b"
    assert remote_objects(folder, eid) == store_objects(surgbox_home.path, eid)
    sidecars = sorted(p.name for p in (folder / "meta" / "events" / eid).iterdir())
    assert sidecars == sorted(k.rsplit("/", 1)[1] + ".json" for k in store_objects(surgbox_home.path, eid))
    assert not [p for p in folder.rglob("*") if "surgbox-part" in p.name]
    manifest = json.loads((folder / "manifests" / f"{eid}.json").read_text())
    assert manifest["format"] == "surgbox-upload-manifest" and manifest["event_id"] == eid
    assert {f["object_sha256"] for f in manifest["files"]} == set(store_objects(surgbox_home.path, eid).values())
    text = "".join(p.read_text(errors="replace") for p in folder.rglob("*.json"))
    assert "Ulrike" not in text and "segment-0000" not in text and "wrapped" not in text  # no PHI, names or keys
    assert up.last_requests["GET"] == 7  # every file read back
    ev = session.events.get(eid)
    assert {f.store_key for f in job.files if f.part == "object"} == {f.store_key for f in ev.files}


def test_server_killed_mid_put_resumes_without_resending_finished_files(servers, session, surgbox_home, tmp_path):
    eid = make_event(session, sizes=(200_000, 150_000, 120_000, 90_000))
    first = servers("wsgidav", tmp_path / "srv", user=USER, password=PASSWORD, log=tmp_path / "1.log", die_after_puts=5)
    port = first.port
    add_remote(session, "r", "webdav", f"{first.url}/box")
    with pytest.raises(UploadError, match="cannot reach|connection lost"):
        upload(session, eid, "r", retries=1)
    assert first.wait_dead() == 137
    job = Queue(session).list()[0]
    done_before = {f.remote_path for f in job.files if f.uploaded_at is not None}
    assert 1 <= len(done_before) < len(job.files) and job.status == "queued"
    second = servers("wsgidav", tmp_path / "srv", user=USER, password=PASSWORD, log=tmp_path / "2.log", port=port)
    job = Uploader(session, backoff=0.05).run(job.id)
    assert job.status == "done"
    resent = {p.split("/box/", 1)[1] for p in second.requests("MOVE")}
    assert resent and not resent & done_before  # what was verified before was not sent again
    assert len(resent) == len(job.files) - len(done_before)
    assert remote_objects(tmp_path / "srv" / "box", eid) == store_objects(surgbox_home.path, eid)


def test_full_server_disk_and_unreachable_host_keep_the_job_queued(servers, session, surgbox_home, tmp_path):
    server = servers("wsgidav", tmp_path / "srv", user=USER, password=PASSWORD, quota=100_000)
    eid = make_event(session, sizes=(300_000,))
    add_remote(session, "full", "webdav", f"{server.url}/box")
    add_remote(session, "gone", "webdav", f"http://127.0.0.1:{free_port()}/box")
    with pytest.raises(UploadError, match=r"no space left \(HTTP 507"):
        upload(session, eid, "full")
    t = time.monotonic()
    with pytest.raises(UploadError, match="cannot reach 127.0.0.1"):
        upload(session, eid, "gone", retries=2, backoff=0.1, max_backoff=0.1)
    assert time.monotonic() - t < 10
    jobs = Queue(session).list()
    assert {j.status for j in jobs} == {"queued"} and all(j.next_try_at for j in jobs)
    assert Queue(session).due() == []  # both wait for their next try
    assert session.events.get(eid).files and store_objects(surgbox_home.path, eid)


def test_permissions_pause_resume_cancel_and_the_audit_trail(servers, session, surgbox_home, tmp_path):
    server = servers("wsgidav", tmp_path / "srv", user=USER, password=PASSWORD)
    session.users.add("view1", "viewer", "view1-password")
    session.users.add("surg1", "surgeon", "surg1-password")
    eid = make_event(session)
    add_remote(session, "r", "webdav", f"{server.url}/box")
    cat = session.catalog
    viewer, surgeon = cat.login("view1", "view1-password"), cat.login("surg1", "surg1-password")
    with pytest.raises(AccessDenied, match="may not upload"):
        Queue(viewer).enqueue(eid, "r")
    with pytest.raises(AccessDenied, match="may not upload"):
        Queue(surgeon).enqueue(eid, "r")  # not the surgeon's event
    own = surgeon.events.create(patient="P", medical_record="M", procedure="x")
    surgeon.events.write_file(own.id, "segment", "s.mp4", os.urandom(1000))
    assert Uploader(surgeon).run(Queue(surgeon).enqueue(own.id, "r").id).status == "done"
    assert [j.event_id for j in Queue(surgeon).list(statuses=("done",))] == [own.id]  # only its own jobs
    job = Queue(session).enqueue(eid, "r")
    assert Queue(session).enqueue(eid, "r").id == job.id  # one unfinished job per event and remote
    Queue(session).pause(job.id)
    with pytest.raises(UploadError, match="paused; resume it first"):
        Uploader(session).run(job.id)
    assert Queue(session).due() == []
    Queue(session).resume(job.id)
    assert Queue(session).due() == [job.id]
    Queue(session).cancel(job.id)
    with pytest.raises(UploadError, match="cancelled"):
        Queue(session).resume(job.id)
    actions = [(r.action, r.result) for r in cat.audit.records() if r.action.startswith(("upload.", "event.upload"))]
    assert actions.count(("upload.queue", "denied")) == 2  # the viewer's and the surgeon's refusals
    assert {"upload.queue", "upload.pause", "upload.resume", "upload.cancel", "event.upload"} <= {a for a, _ in actions}


def test_bandwidth_limit_is_respected(servers, session, surgbox_home, tmp_path):
    server = servers("wsgidav", tmp_path / "srv", user=USER, password=PASSWORD)
    eid = make_event(session, sizes=(1_500_000,))
    add_remote(session, "slow", "webdav", f"{server.url}/box", bandwidth=1.0)  # 1 MB/s
    t = time.monotonic()
    _, job = upload(session, eid, "slow")
    elapsed = time.monotonic() - t
    assert job.bytes_total > 1_500_000 and elapsed >= (job.bytes_total / 1e6) * 0.9, elapsed


def test_cli_upload_json_progress_and_no_password_in_its_output(servers, session, surgbox_home, tmp_path):
    server = servers("rclone", tmp_path / "srv", user=USER, password=PASSWORD)
    eid = make_event(session, sizes=(2_000_000,))
    add_remote(session, "rc", "webdav", f"{server.url}/box")
    env = {**os.environ, "SURGBOX_USER": "admin", "SURGBOX_PASSWORD": "admin-password"}
    r = subprocess.run([sys.executable, "-m", "surgbox", "-vv", "upload", "start", eid, "--json"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert lines[-1]["state"] == "done" and lines[-1]["files"] == 3
    progress = [ln for ln in lines if "bytes_done" in ln]
    assert progress[-2]["bytes_done"] == progress[-2]["bytes_total"] and {"rate", "eta", "file"} <= set(progress[0])
    assert PASSWORD not in r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "surgbox", "upload", "show", str(lines[-1]["job"])], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.count("objects/events/") == 1 and "not yet" not in r.stdout
    shown = json.loads(subprocess.run([sys.executable, "-m", "surgbox", "events", "show", eid, "--json"], env=env,
                                      capture_output=True, text=True, timeout=60).stdout)
    assert sorted(u["part"] for u in shown["uploads"]) == ["manifest", "object", "sidecar"]
    assert {u["remote"] for u in shown["uploads"]} == {"rc"} and all(u["uploaded_at"] for u in shown["uploads"])
    r = subprocess.run([sys.executable, "-m", "surgbox", "events", "upload", eid, "--quiet"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "verified" in r.stdout, r.stderr  # a second job: the event again
    r = subprocess.run([sys.executable, "-m", "surgbox", "upload", "start", "ev-20260101-00000000"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no event" in r.stderr


def test_deidentified_sharing_upload_needs_policy_and_export_and_sends_only_deid_plaintext(servers, session,
                                                                                           surgbox_home, tmp_path):
    server = servers("wsgidav", tmp_path / "srv", user=USER, password=PASSWORD)
    eid = make_event(session)
    deid = os.urandom(300_000)
    session.events.write_file(eid, "deid", "segment-0000.deid.mp4", deid)
    add_remote(session, "share", "webdav", f"{server.url}/share")
    session.users.add("op1", "operator", "op1-password")
    with pytest.raises(UploadError, match=r"de-identified uploads are off.*\[upload\]"):
        Queue(session).enqueue(eid, "share", deidentified=True)
    cfg = surgbox_home.config_path
    cfg.write_text(cfg.read_text() + "\n[upload]\ndeidentified = true\n")
    session.catalog.home = session.catalog.home.load()
    with pytest.raises(AccessDenied, match="may not export"):
        Queue(session.catalog.login("op1", "op1-password")).enqueue(eid, "share", deidentified=True)
    job = Queue(session).enqueue(eid, "share", deidentified=True)
    job = Uploader(session).run(job.id)
    assert job.status == "done" and [f.part for f in job.files] == ["deidentified", "manifest"]
    folder = tmp_path / "srv" / "share" / "deidentified" / eid
    (video,) = [p for p in folder.iterdir() if p.suffix == ".mp4"]
    assert video.read_bytes() == deid  # decrypted, byte for byte
    assert (folder / "SHA256SUMS").read_text() == f"{hashlib.sha256(deid).hexdigest()}  {video.name}\n"
    assert not (tmp_path / "srv" / "share" / "objects").exists()  # nothing else went
