"""Nextcloud chunked upload v2 against the loopback stand-in for Nextcloud (tests/upload_servers.py:
WsgiDAV for the files, the documented v2 chunking rules for the uploads folder): multi-chunk uploads,
a server killed in the middle, resume sending only the missing chunks, a corrupted chunk caught by
read-back verification, an expired upload folder, and the server's errors as one line each."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from upload_fixtures import PASSWORD, USER, add_remote, make_event, open_catalog, remote_objects, store_objects, upload
from upload_servers import free_port, start_script

from surgbox.upload import Queue, UploadError, Uploader

CHUNK = 128 * 1024


@pytest.fixture
def nc(tmp_path):
    """Start the stand-in (``start(**opts)``, restartable on the same port); killed at the end."""
    servers = []
    port = free_port()

    def start(tag: str = "1", **opts):
        s = start_script("nextcloud", tmp_path / "nc-files", user=USER, password=PASSWORD, log=tmp_path / f"nc-{tag}.log",
                         port=port, min_chunk=CHUNK, state=tmp_path / "nc-uploads", **opts)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.kill()


def _remote_url(server) -> str:
    return f"{server.url}/remote.php/dav/files/{USER}/surgbox"


def _chunk_puts(server) -> list[int]:
    return [int(p.rsplit("/", 1)[1]) for p in server.requests("PUT", "/remote.php/dav/uploads/")]


@pytest.fixture
def session(surgbox_home):
    cat = open_catalog(surgbox_home)
    yield cat.login("admin", "admin-password")
    cat.close()


def test_multi_chunk_upload_lands_byte_for_byte_and_is_recorded(nc, session, surgbox_home, tmp_path):
    server = nc()
    eid = make_event(session, sizes=(600_000, 3_000))
    add_remote(session, "nc", "nextcloud", _remote_url(server), chunk_size=CHUNK)
    up, job = upload(session, eid, "nc")
    assert job.status == "done"
    expected = store_objects(surgbox_home.path, eid)
    assert remote_objects(tmp_path / "nc-files" / "surgbox", eid) == expected
    seg = max(expected, key=lambda k: (tmp_path / "nc-files" / "surgbox" / "objects" / k).stat().st_size)
    size = (surgbox_home.path / "store" / "objects" / seg).stat().st_size
    assert sorted(_chunk_puts(server)) == list(range(1, -(-size // CHUNK) + 1))  # one PUT per chunk, no more
    assert server.requests("MOVE", ".file") and not list((tmp_path / "nc-uploads").iterdir())  # folder removed
    assert all(f.uploaded_at is not None for f in job.files) and {f.part for f in job.files} == {"object", "sidecar", "manifest"}
    assert (tmp_path / "nc-files" / "surgbox" / "manifests" / f"{eid}.json").exists()
    rec = [r for r in session.catalog.audit.records(action="event.upload") if r.target == eid][-1]
    assert rec.result == "ok" and rec.detail["remote"] == "nc" and rec.detail["bytes"] == job.bytes_total


def test_server_killed_mid_chunk_then_resume_sends_only_the_missing_chunks(nc, session, surgbox_home, tmp_path):
    eid = make_event(session, sizes=(1_300_000,))
    size = next(iter((surgbox_home.path / "store" / "objects" / "events" / eid).iterdir())).stat().st_size
    count = -(-size // CHUNK)
    assert count >= 8
    first = nc("1", die_after_puts=4)  # dies half way through the body of the 5th PUT
    add_remote(session, "nc", "nextcloud", _remote_url(first), chunk_size=CHUNK)
    with pytest.raises(UploadError, match="cannot reach|connection lost"):
        upload(session, eid, "nc", retries=1)
    assert first.wait_dead() == 137
    job = Queue(session).list()[0]
    assert job.status == "queued" and job.last_error and job.next_try_at is not None
    obj = next(f for f in job.files if f.part == "object")
    assert obj.transfer_id is not None and obj.uploaded_at is None  # the upload id is kept
    assert sorted(_chunk_puts(first)) == [1, 2, 3, 4]  # the 5th never completed
    second = nc("2")
    job = Uploader(session, backoff=0.05).run(job.id)
    assert job.status == "done"
    assert sorted(_chunk_puts(second)) == list(range(5, count + 1))  # chunks 1-4 were not sent again
    assert second.requests("PROPFIND", "/remote.php/dav/uploads/")  # it listed what was there
    assert remote_objects(tmp_path / "nc-files" / "surgbox", eid) == store_objects(surgbox_home.path, eid)


def test_a_chunk_corrupted_on_the_server_is_caught_and_the_file_sent_again(nc, session, surgbox_home, tmp_path):
    eid = make_event(session, sizes=(1_000_000,))
    first = nc("1", die_after_puts=3)
    add_remote(session, "nc", "nextcloud", _remote_url(first), chunk_size=CHUNK)
    with pytest.raises(UploadError):
        upload(session, eid, "nc", retries=0)
    first.wait_dead()
    (folder,) = (tmp_path / "nc-uploads").iterdir()
    chunk = folder / "00002"
    data = bytearray(chunk.read_bytes())
    data[1000] ^= 0xFF  # same size: only a checksum can tell
    chunk.write_bytes(bytes(data))
    second = nc("2")
    job = Queue(session).list()[0]
    up = Uploader(session, backoff=0.05)
    job = up.run(job.id)
    assert job.status == "done"
    size = next(iter((surgbox_home.path / "store" / "objects" / "events" / eid).iterdir())).stat().st_size
    count = -(-size // CHUNK)
    puts = _chunk_puts(second)
    assert sorted(puts) == sorted(list(range(4, count + 1)) + list(range(1, count + 1)))  # resumed, then redone whole
    assert len(second.requests("MOVE", ".file")) == 2 and second.requests("DELETE", "/files/")
    assert remote_objects(tmp_path / "nc-files" / "surgbox", eid) == store_objects(surgbox_home.path, eid)


def test_an_expired_upload_folder_restarts_the_file_cleanly(nc, session, surgbox_home, tmp_path):
    eid = make_event(session, sizes=(700_000,))
    first = nc("1", die_after_puts=2, expire=1.0)
    add_remote(session, "nc", "nextcloud", _remote_url(first), chunk_size=CHUNK)
    with pytest.raises(UploadError):
        upload(session, eid, "nc", retries=0)
    first.wait_dead()
    time.sleep(1.5)
    second = nc("2", expire=1.0)
    job = Uploader(session, backoff=0.05).run(Queue(session).list()[0].id)
    assert job.status == "done"
    size = next(iter((surgbox_home.path / "store" / "objects" / "events" / eid).iterdir())).stat().st_size
    assert sorted(_chunk_puts(second)) == list(range(1, -(-size // CHUNK) + 1))
    assert len(second.requests("MKCOL", "/remote.php/dav/uploads/")) == 1  # a new upload folder
    assert remote_objects(tmp_path / "nc-files" / "surgbox", eid) == store_objects(surgbox_home.path, eid)


def test_wrong_password_and_full_server_disk_give_one_line_and_keep_the_job(nc, session, surgbox_home, tmp_path):
    server = nc("1", quota=200_000)
    eid = make_event(session, sizes=(400_000,))
    add_remote(session, "bad", "nextcloud", _remote_url(server), chunk_size=CHUNK)
    session.catalog.db.conn.execute("UPDATE remotes SET password_enc = ? WHERE name = 'bad'",
                                    (session.catalog.phi.encrypt("wrong-password", "remotes.password:bad"),))
    with pytest.raises(UploadError) as err:
        upload(session, eid, "bad")
    assert "HTTP 401" in str(err.value) and "\n" not in str(err.value) and PASSWORD not in str(err.value)
    assert server.requests("MKCOL") and len(server.lines()) <= 2  # a lasting failure is not retried at once
    add_remote(session, "nc", "nextcloud", _remote_url(server), chunk_size=CHUNK)
    with pytest.raises(UploadError, match=r"no space left \(HTTP 507"):
        upload(session, eid, "nc")
    jobs = {j.remote: j for j in Queue(session).list()}
    assert jobs["bad"].status == jobs["nc"].status == "queued"
    assert "507" in jobs["nc"].last_error and "401" in jobs["bad"].last_error
    failed = [r for r in session.catalog.audit.records(action="event.upload") if r.result == "failed"]
    assert {r.detail["status"] for r in failed} == {401, 507}
    assert session.events.get(eid).files  # nothing lost on the box


def test_the_stand_in_enforces_the_documented_v2_rules(nc, tmp_path):
    server = nc()
    base = f"{server.url}/remote.php/dav/uploads/{USER}/t1"
    dest = {"Destination": f"{server.url}/remote.php/dav/files/{USER}/x.bin"}
    with httpx.Client(auth=(USER, PASSWORD)) as c:
        assert c.request("MKCOL", base).status_code == 400  # Destination is required
        assert c.request("MKCOL", base, headers=dest).status_code == 201
        total = {**dest, "OC-Total-Length": str(CHUNK + 10)}
        assert c.put(f"{base}/0", content=b"x", headers=total).status_code == 400  # numbers 1..10000 only
        assert c.put(f"{base}/10001", content=b"x", headers=total).status_code == 400
        assert c.put(f"{base}/00001", content=b"x" * CHUNK, headers=dest).status_code == 400  # OC-Total-Length
        assert c.put(f"{base}/00002", content=b"b" * 10, headers=total).status_code == 201
        assert c.put(f"{base}/00001", content=b"a" * CHUNK, headers=total).status_code == 201
        assert c.get(f"{base}/00001").status_code == 403  # chunks cannot be downloaded
        wrong = {**dest, "OC-Total-Length": str(CHUNK + 11)}
        assert c.request("MOVE", f"{base}/.file", headers=wrong).status_code == 400
        assert c.request("MOVE", f"{base}/.file", headers=total).status_code == 201
        got = c.get(dest["Destination"])
        assert got.content == b"a" * CHUNK + b"b" * 10  # assembled in the order of the names
        assert httpx.get(dest["Destination"]).status_code == 401


def test_cancel_aborts_the_unfinished_chunked_upload_on_the_server(nc, session, surgbox_home, tmp_path):
    eid = make_event(session, sizes=(700_000,))
    first = nc("1", die_after_puts=2)
    add_remote(session, "nc", "nextcloud", _remote_url(first), chunk_size=CHUNK)
    with pytest.raises(UploadError):
        upload(session, eid, "nc", retries=0)
    first.wait_dead()
    assert len(list((tmp_path / "nc-uploads").iterdir())) == 1  # the upload folder with 2 chunks
    second = nc("2")
    job = Uploader(session).cancel(Queue(session).list()[0].id)
    assert job.status == "cancelled" and not any(f.transfer_id for f in job.files)
    assert second.requests("DELETE", "/remote.php/dav/uploads/") and not list((tmp_path / "nc-uploads").iterdir())


def test_pause_stops_a_running_upload_before_its_next_chunk_and_resume_goes_on(nc, session, surgbox_home, tmp_path):
    server = nc()
    eid = make_event(session, sizes=(1_300_000,))
    add_remote(session, "nc", "nextcloud", _remote_url(server), chunk_size=CHUNK, bandwidth=0.4)  # ~3 s
    job = Queue(session).enqueue(eid, "nc")
    timer = threading.Timer(1.0, lambda: Queue(session).pause(job.id))
    timer.start()
    with pytest.raises(UploadError, match="paused or cancelled"):
        Uploader(session).run(job.id)
    timer.join()
    sent = _chunk_puts(server)
    size = next(iter((surgbox_home.path / "store" / "objects" / "events" / eid).iterdir())).stat().st_size
    count = -(-size // CHUNK)
    assert 1 <= len(sent) < count and Queue(session).get(job.id).status == "paused"
    Queue(session).resume(job.id)
    assert Uploader(session).run(job.id).status == "done"
    assert sorted(_chunk_puts(server)) == list(range(1, count + 1))  # each chunk sent once
    assert remote_objects(tmp_path / "nc-files" / "surgbox", eid) == store_objects(surgbox_home.path, eid)
