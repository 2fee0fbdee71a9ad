"""``[upload] auto = "REMOTE"`` for recordings made from the console: when a recording started on
the record page stops, the event's upload is queued and sent to that remote, as ``surgbox record
--event`` does (a real WebDAV server on loopback, a real recording of simulated sources); a
setting that names no remote refuses the start, before anything is recorded."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("wsgidav")

from console_support import ROLES_USERS, Client, make_home, start_server  # noqa: E402
from upload_fixtures import PASSWORD as DAV_PASSWORD  # noqa: E402
from upload_fixtures import USER as DAV_USER  # noqa: E402
from upload_fixtures import add_remote, remote_objects, store_objects  # noqa: E402
from upload_servers import start_script  # noqa: E402

from surgbox.catalog import Catalog  # noqa: E402

PASSWORD = "admin-password"


def _jobs(home, eid: str) -> list[dict]:
    with Catalog(home) as cat:
        return [dict(r) for r in cat.db.query("SELECT id, status, remote FROM upload_jobs WHERE event_id = ?", (eid,))]


def _record(url: str, seconds: float = 1.5) -> str:
    c = Client(url)
    assert c.login(ROLES_USERS["operator"]).status_code == 303
    r = c.post("/record/start", {"patient": "Ana Auto", "medical_record": "MRN-AU", "procedure": "Cholecystectomy"})
    assert r.status_code == 303, r.text
    time.sleep(seconds)
    r = c.post("/record/stop")
    assert r.status_code == 303
    c.close()
    return r.headers["location"].rsplit("/", 1)[1]


def test_a_console_recording_is_uploaded_when_it_stops(tmp_path):
    from console_support import PASSWORD as USER_PASSWORD

    home = make_home(tmp_path / "home")
    dav = start_script("wsgidav", tmp_path / "dav", user=DAV_USER, password=DAV_PASSWORD)
    server = None
    try:
        with Catalog(home) as cat:
            add_remote(cat.login("admin", USER_PASSWORD), "nas", "webdav", f"{dav.url}/or-archive")
        home.config_path.write_text(home.config_path.read_text() + '\n[upload]\nauto = "nas"\n')
        server = start_server(home, tmp_path, upload_options={"retries": 1, "backoff": 0.05, "timeout": 10})
        eid = _record(server.url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and [j["status"] for j in _jobs(home, eid)] != ["done"]:
            time.sleep(0.2)
        assert [(j["status"], j["remote"]) for j in _jobs(home, eid)] == [("done", "nas")]
        objects = store_objects(home.path, eid)
        assert len(objects) >= 2, objects  # the recording and its report, at least
        assert remote_objects(tmp_path / "dav" / "or-archive", eid) == objects
    finally:
        if server is not None:
            server.stop()
        dav.kill()


@pytest.mark.parametrize("value,message", [("5", "[upload] auto must be a remote"),
                                           ('"nsa"', "[upload] auto = 'nsa': no remote 'nsa'")])
def test_an_auto_setting_that_is_not_a_remote_name_refuses_the_start(tmp_path, value, message):
    home = make_home(tmp_path / "home")
    home.config_path.write_text(home.config_path.read_text() + f"\n[upload]\nauto = {value}\n")
    server = start_server(home, tmp_path)
    try:
        c = Client(server.url)
        assert c.login(ROLES_USERS["operator"]).status_code == 303
        r = c.post("/record/start", {"patient": "Ana Auto", "medical_record": "MRN-AU", "procedure": "Cholecystectomy"})
        assert r.status_code != 303 and message in r.text.replace("&#x27;", "'").replace("&#39;", "'"), r.text[:800]
        assert server.state.live.state == "idle"
        c.close()
    finally:
        server.stop()
