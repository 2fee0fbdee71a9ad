"""The console over real HTTP on loopback (uvicorn, the real catalog, store and recorder with a
simulated camera): login and lockout, CSRF, every state-changing route's permission, cookies and
headers, playback by range requests, idle logout. The real-browser flows are in
test_console_browser.py."""

from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from console_support import PASSWORD, ROLES_USERS, Client, csrf_of, make_home, start_server  # noqa: E402

from surgbox.catalog import Catalog  # noqa: E402


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from surgbox.cli.demo import SimulatedBIS

    tmp = tmp_path_factory.mktemp("console")
    home = make_home(tmp / "home")
    (tmp / "usb").mkdir()
    with SimulatedBIS(rate=4.0, course_s=30) as bis:  # a BIS monitor on a pty: readings go to the data track
        server = start_server(home, tmp, bis_url=bis.url, export_dirs=[tmp / "usb"], deid_options={"detector": "centerface"})
        yield {"home": home, "server": server, "url": server.url, "tmp": tmp}
        server.stop()


@pytest.fixture(scope="module")
def recorded(env):
    """An event recorded for about 2 s through the console by the operator."""
    c = Client(env["url"])
    assert c.login(ROLES_USERS["operator"]).status_code == 303
    r = c.post("/record/start", {"patient": "Maria Silva", "medical_record": "MRN-77", "procedure": "Appendectomy",
                                 "physician": "Dr. Sam", "place": "OR 2"})
    assert r.status_code == 303, r.text
    time.sleep(2.0)
    r = c.post("/record/stop")
    assert r.status_code == 303
    eid = r.headers["location"].rsplit("/", 1)[1]
    c.close()
    return eid


def client(env, role: str) -> Client:
    c = Client(env["url"])
    assert c.login(ROLES_USERS[role]).status_code == 303
    return c


def test_login_sets_strict_http_only_cookie_and_lands_by_role(env):
    c = Client(env["url"])
    r = c.login("olga")
    assert r.status_code == 303 and r.headers["location"] == "/record"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie  # plain HTTP on loopback
    assert client(env, "viewer").get("/record").status_code == 403
    assert Client(env["url"]).login("aldo").headers["location"] == "/system"
    assert Client(env["url"]).login("vera").headers["location"] == "/events"


def test_wrong_password_then_lockout_even_with_the_right_one(env):
    c = Client(env["url"])
    for _ in range(3):  # max_failures = 3 in this home
        r = c.login("locky", "wrong-password")
        assert r.status_code == 401 and "Wrong user name or password" in r.text
    r = c.login("locky", PASSWORD)
    assert r.status_code == 401, "a locked account must be refused even with the right password"
    assert Client(env["url"]).login("nobody", PASSWORD).status_code == 401


def test_security_headers_on_every_page(env):
    r = Client(env["url"]).get("/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_pages_need_a_session(env):
    c = Client(env["url"])
    for path in ("/record", "/events", "/system", "/events/ev-20260101-00000000"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    assert c.get("/api/status").status_code == 401


def test_post_without_csrf_token_is_refused(env):
    c = client(env, "admin")
    for path in ("/record/start", "/logout", "/lang", "/events", "/record/stop"):
        assert c.post(path, {"lang": "es"}, csrf=False).status_code == 403, path
    other = client(env, "admin")  # another session's token is no token
    assert c.post("/logout", {"csrf": other.csrf}, csrf=False).status_code == 403
    page = Client(env["url"])
    page.get("/login")
    r = page.post("/login", {"name": "admin", "password": PASSWORD}, csrf=False)
    assert r.status_code == 403, "the login form is CSRF-protected too"
    assert c.get("/system").status_code == 200, "the refused logout did not log out"


# Every POST route (app.STATE_CHANGING) with a user who lacks the permission: 403 from the catalog.
DENIED = {
    "/record/start": ("viewer", {"patient": "X", "medical_record": "1", "procedure": "P"}),
    "/record/start-existing": ("viewer", {"event_id": "EVENT"}),
    "/record/stop": ("auditor", {}),
    "/record/snapshot": ("viewer", {}),
    "/events": ("auditor", {"text": "x"}),
    "/events/{event_id}/delete": ("viewer", {}),
    "/events/{event_id}/export": ("operator", {"target": "0"}),
    "/events/{event_id}/deidentify": ("viewer", {}),
    "/events/{event_id}/upload": ("viewer", {"remote": "nas"}),
}
# Routes any visitor may post to: their protection is a password or the CSRF token alone.
UNPRIVILEGED = {"/login", "/logout", "/lang"}


def test_every_state_changing_route_enforces_its_permission(env, recorded):
    from surgbox.console import ROUTES, STATE_CHANGING

    posts = {r.path for r in ROUTES if "POST" in (r.methods or ())}
    assert posts == set(STATE_CHANGING), "app.STATE_CHANGING must list every POST route"
    assert posts == set(DENIED) | UNPRIVILEGED, "a new state-changing route needs a permission test here"
    for path, (role, data) in DENIED.items():
        c = client(env, role)
        data = {k: (recorded if v == "EVENT" else v) for k, v in data.items()}
        r = c.post(path.replace("{event_id}", recorded), data)
        assert r.status_code == 403, (path, role, r.status_code, r.text[:300])
    with Catalog.at(env["home"].path) as cat:
        denied = [r for r in cat.login("aldo", PASSWORD).audit.records(action="event.delete") if r.result == "denied"]
        assert denied and denied[-1].actor == "vera"
        assert cat.login("admin", PASSWORD).events.get(recorded).status == "stopped"  # still there


def test_viewer_sees_no_delete_button_and_admin_deletes_with_confirmation(env, recorded):
    viewer = client(env, "viewer")
    page = viewer.get(f"/events/{recorded}")
    assert page.status_code == 200 and "Appendectomy" in page.text
    assert 'id="delete"' not in page.text and 'id="report"' not in page.text
    assert viewer.get(f"/events/{recorded}/delete").status_code == 403
    assert viewer.get(f"/events/{recorded}/report.pdf").status_code == 403
    admin = client(env, "admin")
    assert 'id="delete"' in admin.get(f"/events/{recorded}").text
    # a second event to delete (the recorded one serves the other tests)
    r = admin.post("/record/start", {"patient": "To Delete", "medical_record": "MRN-D", "procedure": "Doomed"})
    assert r.status_code == 303
    r = admin.post("/record/stop")
    doomed = r.headers["location"].rsplit("/", 1)[1]
    confirm = admin.get(f"/events/{doomed}/delete")
    assert confirm.status_code == 200 and 'id="confirm-delete"' in confirm.text
    assert admin.post(f"/events/{doomed}/delete").headers["location"] == "/events"
    assert admin.get(f"/events/{doomed}").status_code == 404


def test_search_by_patient_is_a_post_and_finds_the_event(env, recorded):
    c = client(env, "viewer")
    r = c.post("/events", {"patient": "maria silva"})
    assert r.status_code == 200 and recorded in r.text
    assert recorded not in c.post("/events", {"patient": "Someone Else"}).text
    assert recorded in c.post("/events", {"procedure": "append"}).text
    assert recorded in c.post("/events", {"physician": "Dr. Sam"}).text
    r = c.post("/events", {"date_from": "yesterday-ish"})
    assert r.status_code == 400 and "date" in r.text.lower()


def test_playback_serves_decrypted_ranges_and_never_a_download(env, recorded):
    c = client(env, "viewer")
    page = c.get(f"/events/{recorded}").text
    src = re.search(r'<video id="player"[^>]*src="([^"]+)"', page, re.S)[1]
    assert 'controlslist="nodownload' in page
    with Catalog.at(env["home"].path) as cat:
        events = cat.login("admin", PASSWORD).events
        name = src.rsplit("/", 1)[1]
        with events.open_file(recorded, name) as f:
            plain = f.read()
    assert plain[4:8] == b"ftyp" and len(plain) > 10_000
    whole = c.get(src)
    assert whole.status_code == 200 and whole.content == plain
    assert whole.headers["content-disposition"] == "inline" and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["cache-control"] == "no-store"
    for spec, want in (("bytes=0-99", plain[:100]), ("bytes=5000-", plain[5000:]), ("bytes=-300", plain[-300:]),
                       (f"bytes=1000-{len(plain) + 50}", plain[1000:])):
        r = c.get(src, headers={"range": spec})
        assert r.status_code == 206 and r.content == want, spec
        assert r.headers["content-range"].endswith(f"/{len(plain)}")
    assert c.get(src, headers={"range": f"bytes={len(plain)}-"}).status_code == 416
    assert client(env, "auditor").get(src).status_code == 403


def test_report_download_for_export_role_parses_with_the_fields(env, recorded):
    from pypdf import PdfReader

    import io

    r = client(env, "admin").get(f"/events/{recorded}/report.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"].startswith("attachment")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(r.content)).pages)
    for field in (recorded, "Maria Silva", "MRN-77", "Appendectomy", "Dr. Sam", "OR 2"):
        assert field in text, field


def test_status_api_and_idle_logout(env):
    from surgbox.console import ConsoleServer

    server = ConsoleServer.for_home(env["home"].path, port=0, idle_s=1.5).start()
    try:
        c = Client(server.url)
        assert c.login("olga").status_code == 303
        st = c.get("/api/status").json()
        assert st["recording"] is None and st["storage"]["healthy"] is True and st["storage"]["free_bytes"] > 0
        page = c.get("/record")
        assert page.status_code == 200 and "--config" in page.text  # no recording configuration given
        for _ in range(4):  # polls do not keep a session alive
            time.sleep(0.5)
            c.get("/api/status")
        assert c.get("/record").headers["location"] == "/login"
        assert c.get("/api/status").status_code == 401
    finally:
        server.stop()


def test_language_by_browser_and_by_button(env):
    c = Client(env["url"])
    assert "Senha" in c.get("/login", headers={"accept-language": "pt-BR,pt;q=0.9"}).text
    assert "Contraseña" in c.get("/login", headers={"accept-language": "es-419"}).text
    c = client(env, "operator")
    r = c.post("/lang", {"lang": "es", "back": "/record"})
    assert r.status_code == 303 and r.headers["location"] == "/record"
    assert "Iniciar grabación" in c.get("/record").text
    assert c.post("/lang", {"lang": "pt-BR", "back": "//evil.example/"}).headers["location"] == "/"


def test_translations_cover_every_key():
    from surgbox.console.i18n import LANGUAGES, Translations

    tr = Translations.load()
    for lang in LANGUAGES:
        assert tr.missing(lang) == [], lang


def test_login_page_token_is_tied_to_its_cookie(env):
    a, b = Client(env["url"]), Client(env["url"])
    token_a = csrf_of(a.get("/login").text)
    b.get("/login")
    r = b.http.post("/login", data={"csrf": token_a, "name": "admin", "password": PASSWORD})
    assert r.status_code == 403


def test_a_disabled_account_loses_its_open_session(env):
    c = client(env, "surgeon")
    assert c.get("/events").status_code == 200
    with Catalog.at(env["home"].path) as cat:
        cat.login("admin", PASSWORD).users.disable("sam")
    try:
        assert c.get("/events").status_code == 403
        assert c.post("/record/start", {"patient": "X", "medical_record": "1", "procedure": "P"}).status_code == 403
        assert Client(env["url"]).login("sam").status_code == 401
    finally:
        with Catalog.at(env["home"].path) as cat:
            cat.login("admin", PASSWORD).users.enable("sam")


def test_a_failed_mirror_disk_is_shown_loudly(tmp_path):
    import shutil

    from surgbox.console import ConsoleServer

    home = make_home(tmp_path / "home")
    cfg = home.config_path.read_text().replace('plugin = "local"', 'plugin = "mirror"').replace('root = "store"', 'roots = ["disk-a", "disk-b"]')
    home.config_path.write_text(cfg)
    for d in ("disk-a", "disk-b"):
        (home.path / d).mkdir()
    with Catalog(home) as cat:
        cat.create_store()
    server = ConsoleServer.for_home(home.path, port=0).start()
    try:
        c = Client(server.url)
        assert c.login("olga").status_code == 303
        assert 'id="store-alarm"' not in c.get("/record").text
        assert "All disks healthy" in c.get("/system").text
        shutil.rmtree(home.path / "disk-b")  # the disk is gone
        server.state.store_status_ttl_s = 0.0  # the status is cached for 10 s; look again now
        system = c.get("/system").text
        assert 'class="alert loud"' in system and "DISK FAILURE" in system and "disk-b" in system
        assert 'id="store-alarm"' in c.get("/record").text
        assert c.get("/api/status").json()["storage"]["degraded"] is True
    finally:
        server.stop()


def test_export_copies_the_event_verified_to_an_export_folder(env, recorded):
    import hashlib

    assert 'id="export-0"' not in client(env, "viewer").get(f"/events/{recorded}").text
    c = client(env, "admin")
    assert 'id="export-0"' in c.get(f"/events/{recorded}").text
    for bad in ("1", "-1", "x", ""):
        assert c.post(f"/events/{recorded}/export", {"target": bad}).status_code == 400, bad
    r = c.post(f"/events/{recorded}/export", {"target": "0"})
    assert r.status_code == 200 and 'id="exported"' in r.text
    out = env["tmp"] / "usb" / recorded
    sums = (out / "SHA256SUMS").read_text().splitlines()
    assert any(line.endswith("segment-0001.mp4") for line in sums)
    for line in sums:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest


def test_deidentify_in_the_background_with_progress(env, recorded):
    c = client(env, "operator")
    assert 'id="deidentify"' not in client(env, "viewer").get(f"/events/{recorded}").text
    assert 'id="deidentify"' in c.get(f"/events/{recorded}").text
    assert c.post(f"/events/{recorded}/deidentify").status_code == 303
    seen = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = c.get(f"/api/deid/{recorded}").json()
        seen.append(job["frames"])
        if job["state"] != "running":
            break
        time.sleep(0.5)
    assert job["state"] == "done", job
    assert job["files"] == ["segment-0001.deid.mp4"] and job["frames"] >= 15 and job["frames"] == job["total"]
    page = c.get(f"/events/{recorded}").text
    assert "/media/segment-0001.deid.mp4" in page
    r = c.get(f"/events/{recorded}/media/segment-0001.deid.mp4", headers={"range": "bytes=0-15"})
    assert r.status_code == 206 and r.content[4:8] == b"ftyp"
    assert client(env, "auditor").get(f"/api/deid/{recorded}").status_code == 403


def test_idle_sessions_end_without_a_request():
    from surgbox.console.sessions import SessionStore

    now = [0.0]
    ended = []
    store = SessionStore(idle_s=60, clock=lambda: now[0], on_end=ended.append)
    a = store.create(object())
    now[0] = 30
    assert store.get(a.token, touch=False) is a
    now[0] = 61
    store.create(object())  # a login sweeps: the first browser never came back
    assert ended == [a] and len(store) == 1 and store.get(a.token, touch=True) is None


def _chart_points(html: str) -> tuple[int, int, int]:
    """``(data-points, vertices drawn, lines drawn)`` of the page's BIS chart."""
    svg = re.search(r'<svg id="bis-chart"[^>]*data-points="(\d+)"[^>]*>(.*?)</svg>', html, re.S)
    assert svg, "no BIS chart on the page"
    lines = re.findall(r'<polyline class="series" points="([^"]+)"', svg[2])
    dots = re.findall(r'<circle class="series-dot"', svg[2])
    return int(svg[1]), sum(len(p.split()) for p in lines) + len(dots), len(lines) + len(dots)


def test_event_page_draws_the_recorded_bis_trend(env, recorded):
    from surgbox.readings import read_data_track

    with Catalog.at(env["home"].path) as cat:
        events = cat.login("admin", PASSWORD).events
        track = next(f.name for f in events.get(recorded).files if f.name.endswith(".data.jsonl"))
        with events.open_file(recorded, track) as f:
            series = read_data_track(f).series("BIS")
    valid = [v for _, v in series if v is not None]
    assert len(valid) >= 3, series  # 4 readings a second for about 2 s
    page = client(env, "viewer").get(f"/events/{recorded}").text
    declared, drawn, _ = _chart_points(page)
    assert declared == drawn == len(valid)
    assert 'id="bis-none"' not in page and ">BIS<" in page and "seconds" in page  # axis and unit labels


def test_bis_trend_breaks_at_missing_values_and_pauses_and_shows_an_empty_state(env):
    import json

    admin = Catalog.at(env["home"].path).open()
    try:
        events = admin.login("admin", PASSWORD).events
        quiet = events.create(patient="No Monitor", medical_record="MRN-Q", procedure="No BIS here")
        ev = events.create(patient="Gappy Trend", medical_record="MRN-G", procedure="Gaps")
        events.start_event(ev.id)
        lines = [{"format": "surgbox-data-track", "version": 1, "start_ns": 0}]
        values = [(float(t), 60.0 - t / 10) for t in range(0, 300)]  # 5 min at 1 Hz ...
        values[100:103] = [(100.0, None), (101.0, None), (102.0, None)]  # ... the monitor marks 3 invalid
        values = values[:200] + values[260:]  # ... and sends nothing for a minute
        lines += [{"t": t, "source": "bis", "kind": "bis", "values": {"BIS": v}} for t, v in values]
        events.write_file(ev.id, "data", "segment-0001.mp4.data.jsonl",
                          "".join(json.dumps(x) + "\n" for x in lines).encode())
        events.stop_event(ev.id, report=False)
    finally:
        admin.close()
    c = client(env, "viewer")
    declared, drawn, runs = _chart_points(c.get(f"/events/{ev.id}").text)
    assert declared == drawn == 300 - 3 - 60 and runs == 3
    page = c.get(f"/events/{quiet.id}").text
    assert 'id="bis-none"' in page and 'id="bis-chart"' not in page


def test_trend_chart_layout():
    from surgbox.console.chart import MAX_POINTS, trend_chart

    assert trend_chart([]) is None and trend_chart([(0.0, None), (1.0, None)]) is None
    c = trend_chart([(t * 1.0, 50.0) for t in range(3 * 3600)])  # 3 h at 1 Hz: averaged to at most MAX_POINTS
    assert c.points <= MAX_POINTS and c.gaps == 0 and c.x_unit == "min" and c.minutes == pytest.approx(180, abs=0.1)
    assert [label for _, label in c.x_ticks] == ["0", "50", "100", "150"] and [lab for _, lab in c.y_ticks] == ["0", "20", "40", "60", "80", "100"]
    (line,) = c.lines
    x0, y0, x1, y1 = c.area
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in line) and list(line) == sorted(line)
    assert all(y == pytest.approx((y0 + y1) / 2, abs=0.1) for _, y in line)  # BIS 50: half way up
    assert c.band_y[0] < c.band_y[1]  # BIS 60 above BIS 40


def test_uploads_and_deidentification_wait_until_the_recording_ends(env, recorded):
    c = client(env, "operator")
    assert c.post("/record/start", {"patient": "Busy Box", "medical_record": "MRN-B", "procedure": "Busy"}).status_code == 303
    try:
        for path, data in ((f"/events/{recorded}/upload", {"remote": "nas"}), (f"/events/{recorded}/deidentify", {})):
            r = c.post(path, data)
            assert r.status_code == 400 and "a recording is running" in r.text, (path, r.status_code)
    finally:
        assert c.post("/record/stop").status_code == 303
