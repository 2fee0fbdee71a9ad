"""Upload from the console against a real WebDAV server on loopback (WsgiDAV on cheroot, the upload
tests' server): the event page queues an upload to a configured remote, the job's progress shows
while it runs (bandwidth-limited so there is something to see) and its state after; the remote holds
the store's objects byte for byte; permissions; a remote that cannot be reached leaves the job
queued with its error shown; in a real browser the progress bar moves and the page ends on
"uploaded, verified"."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("wsgidav")

from console_support import HAVE_CHROMIUM, PASSWORD, ROLES_USERS, Client, chromium, make_home  # noqa: E402
from upload_fixtures import PASSWORD as DAV_PASSWORD  # noqa: E402
from upload_fixtures import USER as DAV_USER  # noqa: E402
from upload_fixtures import add_remote, make_event, remote_objects, store_objects  # noqa: E402
from upload_servers import free_port, start_script  # noqa: E402

from surgbox.catalog import Catalog  # noqa: E402

BANDWIDTH = 1.0  # MB/s: a 2.5 MB event takes about 2.5 s, long enough to watch


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from surgbox.console import ConsoleServer

    tmp = tmp_path_factory.mktemp("console-upload")
    home = make_home(tmp / "home")
    dav = start_script("wsgidav", tmp / "dav", user=DAV_USER, password=DAV_PASSWORD)
    with Catalog(home) as cat:
        admin = cat.login("admin", PASSWORD)
        add_remote(admin, "nas", "webdav", f"{dav.url}/or-archive", bandwidth=BANDWIDTH,
                   chunk_size=256 * 1024)  # progress every 256 KiB
        add_remote(admin, "down", "webdav", f"http://127.0.0.1:{free_port()}/nothing")  # nobody listens
        events = [make_event(admin, sizes=(2_500_000, 20_000)) for _ in range(3)]
    server = ConsoleServer.for_home(home.path, port=0, upload_options={"retries": 1, "backoff": 0.05, "max_backoff": 0.2,
                                                                       "timeout": 10}).start()
    yield {"home": home, "url": server.url, "dav": tmp / "dav" / "or-archive", "events": events, "server": server}
    server.stop()
    dav.kill()


def client(env, role: str) -> Client:
    c = Client(env["url"])
    assert c.login(ROLES_USERS[role]).status_code == 303
    return c


def job_of(page: str) -> int:
    import re

    m = re.search(r'class="upjob[^"]*" id="upload-(\d+)"', page)
    assert m, "no upload job on the event page"
    return int(m[1])


def wait_job(c: Client, job: int, seen: list[dict] | None = None, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = c.get(f"/api/upload/{job}").json()
        if seen is not None:
            seen.append(st)
        if not st["running"] and st["status"] != "running":
            return st
        time.sleep(0.2)
    raise AssertionError(f"upload job {job} still runs after {timeout} s: {st}")


def test_upload_from_the_event_page_with_progress_lands_byte_for_byte(env):
    eid, other = env["events"][0], env["events"][1]
    c = client(env, "operator")
    page = c.get(f"/events/{eid}").text
    assert 'id="upload-to-0"' in page and "Upload to nas" in page and "Upload to down" in page
    assert c.post(f"/events/{eid}/upload", {"remote": "nas"}).status_code == 303
    running = c.get(f"/events/{eid}").text
    job = job_of(running)
    assert 'data-running="1"' in running and 'data-remote="nas"' not in running  # no second button while it runs
    r = c.post(f"/events/{other}/upload", {"remote": "nas"})  # one upload at a time
    assert r.status_code == 400 and "still running" in r.text
    seen: list[dict] = []
    st = wait_job(c, job, seen)
    assert st["status"] == "done" and st["bytes_done"] == st["bytes_total"] > 2_500_000 and st["fraction"] == 1
    partial = [s for s in seen if s["running"] and 0 < s["bytes_done"] < s["bytes_total"]]
    assert partial, f"no progress seen while it ran: {seen[:3]}"
    assert all(s["rate"] is None or s["rate"] > 0 for s in partial)
    assert remote_objects(env["dav"], eid) == store_objects(env["home"].path, eid)
    page = c.get(f"/events/{eid}").text
    assert "uploaded, verified" in page and 'data-status="done"' in page and "Upload again to nas" in page
    assert client(env, "auditor").get(f"/api/upload/{job}").status_code == 403
    with Catalog.at(env["home"].path) as cat:
        audit = cat.login("aldo", PASSWORD).audit.records(action="event.upload")
        assert [(a.actor, a.result) for a in audit if a.target == eid] == [("olga", "ok")]


def test_an_unreachable_remote_leaves_the_job_queued_with_its_error(env):
    eid = env["events"][2]
    c = client(env, "operator")
    assert c.post(f"/events/{eid}/upload", {"remote": "down"}).status_code == 303
    job = job_of(c.get(f"/events/{eid}").text)
    st = wait_job(c, job)
    assert st["status"] == "queued" and st["next_try_at"] and "cannot reach" in st["last_error"]
    page = c.get(f"/events/{eid}").text
    assert 'data-field="error"' in page and "failed, will retry" in page and "Retry upload to down" in page
    r = c.post(f"/events/{eid}/upload", {"remote": "no-such-remote"})
    assert r.status_code in (400, 404) and "no-such-remote" in r.text


def test_viewer_and_auditor_get_no_upload_button_and_a_forged_post_is_refused(env):
    eid = env["events"][1]
    for role in ("viewer", "auditor"):
        c = client(env, role)
        if role == "viewer":
            assert 'id="upload-to-0"' not in c.get(f"/events/{eid}").text
        assert c.post(f"/events/{eid}/upload", {"remote": "nas"}).status_code == 403
    assert client(env, "operator").post(f"/events/{eid}/upload", {"remote": "nas"}, csrf=False).status_code == 403


@pytest.mark.skipif(not HAVE_CHROMIUM, reason="Chromium is not installed (apt-get install chromium)")
def test_in_the_browser_the_progress_bar_moves_and_the_page_ends_uploaded(env):
    pytest.importorskip("playwright.sync_api")
    eid = env["events"][1]
    with chromium() as browser:
        ctx = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=env["url"])
        page = ctx.new_page()
        page.goto("/login")
        page.fill("#name", ROLES_USERS["operator"])
        page.fill("#password", PASSWORD)
        page.click("#login")
        page.wait_for_url("**/record")
        page.goto(f"/events/{eid}")
        page.click("button[data-remote=nas]")
        page.wait_for_selector(".upjob[data-running='1'] progress")
        page.wait_for_function("() => { const p = document.querySelector('.upjob progress'); return p && p.value > 0 && p.value < 1; }",
                               timeout=60_000)
        assert "MB" in page.text_content(".upjob [data-field=bytes]")
        page.wait_for_selector(".upjob.st-done", timeout=120_000)  # the poll reloads the page when it ends
        assert "uploaded, verified" in page.text_content(".upjob.st-done")
        ctx.close()
    assert remote_objects(env["dav"], eid) == store_objects(env["home"].path, eid)
