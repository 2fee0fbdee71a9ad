"""Render the console's pages to docs/images/console-*.png (the screenshots in docs/console.md).

    .venv/bin/python scripts/render_console.py [--out docs/images] [--chromium /usr/bin/chromium]

Makes a throw-away home (users of every role, made-up patients), serves the console on loopback
recording simulated sources (the paper layout: three test patterns without their white sync
flashes, and a simulated BIS monitor), uploads the recorded event to a WebDAV server on loopback
(WsgiDAV, the upload tests' server), and photographs each page at kiosk size (1920x1080; the
record and event pages also at 1280x800, the event page also in Portuguese) in headless Chromium through Playwright. The live
pictures are taken only once the preview shows a representative frame (a test pattern, not a
blank or white one). Nothing here is drawn by hand: rerun it after changing a page.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from console_support import PASSWORD, make_home, stop_and_open_event  # noqa: E402
from upload_servers import free_port, start_script  # noqa: E402

RECORD_TOML = """
fps = 15
[encoder]
plugin = "libx264"
preset = "ultrafast"
[layout]
preset = "paper"
sources = {{ endoscope = "endo", room = "room", vitals = "vitals" }}
[sources.endo]
plugin = "testsrc"
flash_period_s = 0
width = 640
height = 360
fps = 15
[sources.room]
plugin = "testsrc"
flash_period_s = 0
width = 320
height = 180
fps = 15
[sources.vitals]
plugin = "testsrc"
flash_period_s = 0
width = 320
height = 180
fps = 15
[sources.bis]
plugin = "bis"
url = "socket://127.0.0.1:{port}"
require_device = false
"""

DAV_PASSWORD = "render-dav-password"
# A preview frame worth a picture: decoded, not blank, and not a white flash (mean luminance 20-200 of 255).
REPRESENTATIVE = """(minSeq) => {
    const img = document.querySelector('#preview');
    if (!img || !img.complete || !img.naturalWidth || Number(img.dataset.seq) < minSeq) { return false; }
    const c = document.createElement('canvas'); c.width = 64; c.height = 36;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0, 64, 36);
    const d = g.getImageData(0, 0, 64, 36).data; let sum = 0;
    for (let i = 0; i < d.length; i += 4) { sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]; }
    const mean = sum / (d.length / 4);
    return mean > 20 && mean < 200;
}"""

CASES = [("Ana Souza", "MRN-1001", "Laparoscopic cholecystectomy", "Dr. Sam", "OR 3"),
         ("Bruno Lima", "MRN-1002", "Appendectomy", "Dr. Sam", "OR 1"),
         ("Carla Ruiz", "MRN-1003", "Inguinal hernia repair", "Dr. Lee", "OR 2")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"), help="folder for console-*.png")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from surgbox.catalog import Catalog
    from surgbox.console import ConsoleServer
    from surgbox.upload import Remote, RemoteBook

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        home = make_home(tmp / "home")
        with Catalog(home) as cat:
            events = cat.login("admin", PASSWORD).events
            for patient, mrn, proc, doc, place in CASES[1:]:
                ev = events.create(patient=patient, medical_record=mrn, procedure=proc, physicians=[doc], place=place)
                events.start_event(ev.id)
                events.stop_event(ev.id, report=False)
        bis_port = free_port()
        bis = subprocess.Popen([sys.executable, "-m", "surgbox", "simulate", "bis", "--port", f"tcp://127.0.0.1:{bis_port}",
                                "--rate", "2", "--course", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dav = start_script("wsgidav", tmp / "dav", user="surgbox", password=DAV_PASSWORD)
        with Catalog(home) as cat:  # a remote slow enough that the screenshot catches the upload half way
            RemoteBook(cat.login("admin", PASSWORD)).add(Remote("hospital-nas", "webdav", f"{dav.url}/or-archive", "surgbox",
                                                                DAV_PASSWORD, bandwidth=0.5, chunk_size=256 * 1024))
        cfg = tmp / "record.toml"
        cfg.write_text(RECORD_TOML.format(port=bis_port))
        server = ConsoleServer.for_home(home.path, config=cfg, port=0).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
                shots = render(browser, server.url, out)
                browser.close()
        finally:
            server.stop()
            dav.kill()
            bis.terminate()
            bis.wait(10)
    for s in shots:
        print(s)
    return 0


def render(browser, url: str, out: Path) -> list[Path]:
    shots = []

    def shot(page, name: str) -> None:
        path = out / f"console-{name}.png"
        page.screenshot(path=str(path), animations="disabled")  # the blinking REC dot at full colour
        shots.append(path)

    def context(viewport, user=None):
        ctx = browser.new_context(viewport=viewport, base_url=url, device_scale_factor=1, has_touch=True)
        page = ctx.new_page()
        page.goto("/login")
        if user:
            page.fill("#name", user)
            page.fill("#password", PASSWORD)
            page.click("#login")
            page.wait_for_selector("#logout")
        return ctx, page

    def live_picture(page, min_seq: int) -> None:
        page.wait_for_function(REPRESENTATIVE, arg=min_seq, timeout=60_000, polling=100)

    big, small = {"width": 1920, "height": 1080}, {"width": 1280, "height": 800}
    ctx, page = context(big)
    page.fill("#name", "olga")
    shot(page, "login")
    ctx.close()

    ctx, page = context(big, "olga")
    patient, mrn, proc, doc, place = CASES[0]
    for field, value in (("#patient", patient), ("#medical_record", mrn), ("#procedure", proc), ("#physician", doc), ("#place", place)):
        page.fill(field, value)
    shot(page, "record-new")
    page.click("#start")
    page.wait_for_function("() => document.querySelector('#elapsed').textContent >= '00:00:06'", timeout=60_000)
    page.click("#snapshot")
    page.wait_for_function("() => document.querySelector('#snapshot-note').textContent.length > 0", timeout=30_000)
    page.wait_for_selector("#readings .tile")
    live_picture(page, 3)
    shot(page, "record")
    ctx2, page2 = context(small, "admin")
    page2.goto("/record")
    page2.wait_for_selector("#readings .tile")
    live_picture(page2, 2)
    shot(page2, "record-1280x800")
    ctx2.close()
    page.wait_for_function("() => document.querySelector('#elapsed').textContent >= '00:00:20'", timeout=120_000)
    stop_and_open_event(page)
    eid = page.text_content("#event-id").strip()
    ctx.close()

    ctx, page = context(big, "admin")
    page.goto("/events")
    shot(page, "events")
    page.goto(f"/events/{eid}")
    page.click("button[data-remote=hospital-nas]")
    page.wait_for_function("() => { const p = document.querySelector('.upjob progress'); return p && p.value > 0.3; }",
                           timeout=120_000)
    page.evaluate("""() => new Promise(ok => { const v = document.querySelector('#player'); v.muted = true;
        v.addEventListener('seeked', ok, {once: true}); v.currentTime = 3; })""")
    page.wait_for_function("() => { const v = document.querySelector('#player'); return v.readyState >= 3 && !v.seeking; }",
                           timeout=30_000)
    page.wait_for_timeout(1000)
    shot(page, "event")
    page.wait_for_selector(".upjob.st-done", timeout=300_000)
    page.evaluate("() => document.querySelector('#bis-trend').scrollIntoView({block: 'center'})")
    shot(page, "event-trend")
    page.goto(f"/events/{eid}/delete")
    shot(page, "delete")
    page.goto("/system")
    shot(page, "system")
    ctx.close()

    ctx, page = context(small, "olga")
    page.goto(f"/events/{eid}")
    page.evaluate("""() => new Promise(ok => { const v = document.querySelector('#player'); v.muted = true;
        v.addEventListener('seeked', ok, {once: true}); v.currentTime = 8; })""")
    page.wait_for_function("() => { const v = document.querySelector('#player'); return v.readyState >= 3 && !v.seeking; }",
                           timeout=30_000)
    page.wait_for_timeout(1500)  # the player's loading spinner fades out
    shot(page, "event-1280x800")
    page.click("button.lang[value=pt-BR]")  # the longest labels: nothing may be cut off
    page.wait_for_selector("html[lang=pt-BR] #bis-chart")
    page.wait_for_function("() => document.querySelector('#player').readyState >= 2", timeout=30_000)
    page.wait_for_timeout(1500)
    shot(page, "event-pt-BR-1280x800")
    ctx.close()
    return shots


if __name__ == "__main__":
    sys.exit(main())
