"""The console in a real browser: Playwright drives Debian's Chromium (headless, never a
downloaded browser) against a real console server on loopback, recording a simulated camera.

Flows: log in; create an event and record 5 s; the preview picture changes while recording; stop;
the event is in the list and found by search; play it (``currentTime`` advances, seeking works);
download the PDF report; a viewer sees no delete button and a forged delete from the viewer's
session gets 403, as does a POST without the CSRF token; wrong password and lockout; touch
targets and no sideways scrolling at 1280x800 and 1920x1080. Skips with one line when Chromium
or Playwright is missing."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")

from console_support import HAVE_CHROMIUM, PASSWORD, ROLES_USERS, chromium, make_home, start_server, stop_and_open_event  # noqa: E402

if not HAVE_CHROMIUM:
    pytest.skip("Chromium is not installed (apt-get install chromium; scripts/install.sh does it)", allow_module_level=True)

KIOSK = {"width": 1920, "height": 1080}
PATIENT = "Joana Pereira"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-browser")
    home = make_home(tmp / "home")
    server = start_server(home, tmp)
    yield {"home": home, "url": server.url, "server": server}
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def login(browser, env, role: str, password: str = PASSWORD, viewport=KIOSK):
    ctx = browser.new_context(viewport=viewport, base_url=env["url"], accept_downloads=True)
    page = ctx.new_page()
    page.goto("/login")
    page.fill("#name", ROLES_USERS.get(role, role))
    page.fill("#password", password)
    page.click("#login")
    return ctx, page


@pytest.fixture(scope="module")
def recorded(browser, env):
    """The operator records 5 s in the browser; returns (event id, the URLs the browser asked for, preview facts)."""
    ctx, page = login(browser, env, "operator")
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.wait_for_url("**/record")
    page.fill("#patient", PATIENT)
    page.fill("#medical_record", "MRN-4242")
    page.fill("#procedure", "Laparoscopic cholecystectomy")
    page.fill("#physician", "Dr. Sam")
    page.fill("#place", "OR 5")
    page.click("#start")
    page.wait_for_selector("#preview")
    page.wait_for_function("() => Number(document.querySelector('#preview').dataset.seq) >= 1", timeout=30_000)
    first_seq = int(page.get_attribute("#preview", "data-seq"))
    shot1 = page.locator("#preview").screenshot()
    page.wait_for_function(f"() => Number(document.querySelector('#preview').dataset.seq) >= {first_seq + 3}", timeout=30_000)
    shot2 = page.locator("#preview").screenshot()
    page.wait_for_function("() => document.querySelector('#elapsed').textContent >= '00:00:05'", timeout=60_000)
    page.locator("#sources li.ok").first.wait_for()
    elapsed = page.text_content("#elapsed")
    stop_and_open_event(page)
    eid = page.text_content("#event-id").strip()
    ctx.close()
    return {"id": eid, "urls": urls, "shots": (shot1, shot2), "seqs": first_seq, "elapsed": elapsed}


def test_record_five_seconds_with_a_changing_preview(recorded):
    shot1, shot2 = recorded["shots"]
    assert shot1 != shot2, "the preview picture did not change while recording"
    assert recorded["elapsed"] >= "00:00:05"
    assert recorded["id"].startswith("ev-")


def test_no_patient_data_in_any_url(recorded):
    assert recorded["urls"], "no requests seen"
    for url in recorded["urls"]:
        assert "Joana" not in url and "Pereira" not in url and "MRN-4242" not in url, url


def test_event_is_listed_found_and_plays_with_seeking(browser, env, recorded):
    ctx, page = login(browser, env, "viewer")
    page.wait_for_url("**/events")
    assert page.locator(f'a[data-event="{recorded["id"]}"]').count() == 1
    page.fill("#q", "cholecystectomy")
    page.click("#search")
    page.wait_for_selector("#result-count")
    assert page.locator(f'a[data-event="{recorded["id"]}"]').count() == 1
    page.click(f'a[data-event="{recorded["id"]}"]')
    page.wait_for_selector("#player")
    page.evaluate("() => { const v = document.querySelector('#player'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.querySelector('#player').currentTime > 1.0", timeout=30_000)
    duration = page.evaluate("document.querySelector('#player').duration")
    assert 4.0 <= duration <= 7.0, duration
    seeked = page.evaluate("""() => new Promise((ok, fail) => {
        const v = document.querySelector('#player');
        v.pause();
        v.addEventListener('seeked', () => ok(v.currentTime), {once: true});
        v.addEventListener('error', () => fail(String(v.error && v.error.message)), {once: true});
        v.currentTime = 0.5;
    })""")
    assert abs(seeked - 0.5) < 0.3, seeked
    assert page.locator("#delete").count() == 0 and page.locator("#report").count() == 0
    ctx.close()


def test_admin_downloads_the_pdf_report(browser, env, recorded):
    from pypdf import PdfReader

    ctx, page = login(browser, env, "admin")
    page.wait_for_url("**/record")
    page.goto(f"/events/{recorded['id']}")
    with page.expect_download() as dl:
        page.click("#report")
    data = open(dl.value.path(), "rb").read()
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
    for field in (recorded["id"], PATIENT, "MRN-4242", "Laparoscopic cholecystectomy", "Dr. Sam", "OR 5"):
        assert field in text, field
    assert page.locator("#delete").count() == 1
    ctx.close()


def test_viewer_forged_delete_and_csrf_less_post_are_refused(browser, env, recorded):
    ctx, page = login(browser, env, "viewer")
    page.wait_for_url("**/events")
    page.goto(f"/events/{recorded['id']}")
    assert page.locator("#delete").count() == 0
    csrf = page.get_attribute('form[action="/logout"] input[name="csrf"]', "value")
    r = page.request.post(f"/events/{recorded['id']}/delete", form={"csrf": csrf}, max_redirects=0)
    assert r.status == 403, "a viewer's forged delete must be refused by the server"
    r = page.request.post("/record/stop", form={}, max_redirects=0)
    assert r.status == 403, "a POST without the CSRF token must be refused"
    page.goto(f"/events/{recorded['id']}")
    assert page.locator("#event-id").text_content().strip() == recorded["id"]  # still there
    ctx.close()


def test_wrong_password_and_lockout(browser, env):
    for _ in range(3):
        ctx, page = login(browser, env, "locky", "not-the-password")
        assert page.locator("#login-error").is_visible()
        ctx.close()
    ctx, page = login(browser, env, "locky", PASSWORD)
    assert page.locator("#login-error").is_visible(), "the locked account got in"
    assert "/login" in page.url
    ctx.close()


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, {"width": 1920, "height": 1080}], ids=["1280x800", "1920x1080"])
def test_touch_targets_and_no_sideways_scrolling(browser, env, recorded, viewport):
    ctx, page = login(browser, env, "admin", viewport=viewport)
    page.wait_for_url("**/record")
    for path in ("/record", "/events", f"/events/{recorded['id']}", "/system"):
        page.goto(path)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= viewport["width"], (path, wide)
        small = page.evaluate("""() => [...document.querySelectorAll('button, a.btn, a.tab, input:not([type=hidden])')]
            .filter(e => e.offsetParent !== null)
            .map(e => [e.id || e.textContent.trim().slice(0, 20), e.getBoundingClientRect().height])
            .filter(([, h]) => h < 48)""")
        assert small == [], (path, small)
    ctx.close()
