"""Render the console's pages to docs/images/console-*.png (the screenshots in docs/console.md).

    .venv/bin/python scripts/render_console.py [--out docs/images] [--chromium /usr/bin/chromium]

Makes a throw-away home (users of every role, made-up patients), serves the console on loopback
recording simulated sources (the paper layout: three test patterns and a simulated BIS monitor),
and photographs each page at kiosk size (1920x1080; the record page also at 1280x800) in headless
Chromium through Playwright. Nothing here is drawn by hand: rerun it after changing a page.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from console_support import PASSWORD, make_home, stop_and_open_event  # noqa: E402

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
width = 640
height = 360
fps = 15
[sources.room]
plugin = "testsrc"
width = 320
height = 180
fps = 15
[sources.vitals]
plugin = "testsrc"
width = 320
height = 180
fps = 15
[sources.bis]
plugin = "bis"
url = "socket://127.0.0.1:{port}"
require_device = false
"""

CASES = [("Ana Souza", "MRN-1001", "Laparoscopic cholecystectomy", "Dr. Sam", "OR 3"),
         ("Bruno Lima", "MRN-1002", "Appendectomy", "Dr. Sam", "OR 1"),
         ("Carla Ruiz", "MRN-1003", "Inguinal hernia repair", "Dr. Lee", "OR 2")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"), help="folder for console-*.png")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from surgbox.catalog import Catalog
    from surgbox.console import ConsoleServer

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
        bis = subprocess.Popen([sys.executable, "-m", "surgbox", "simulate", "bis", "--port", f"tcp://127.0.0.1:{bis_port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
            bis.terminate()
            bis.wait(10)
    for s in shots:
        print(s)
    return 0


def render(browser, url: str, out: Path) -> list[Path]:
    shots = []

    def shot(page, name: str) -> None:
        path = out / f"console-{name}.png"
        page.screenshot(path=str(path))
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
    page.wait_for_function("() => Number(document.querySelector('#preview').dataset.seq) >= 3", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#elapsed').textContent >= '00:00:06'", timeout=60_000)
    page.click("#snapshot")
    page.wait_for_function("() => document.querySelector('#snapshot-note').textContent.length > 0", timeout=30_000)
    time.sleep(1.5)
    shot(page, "record")
    ctx2, page2 = context(small, "admin")
    page2.goto("/record")
    page2.wait_for_function("() => Number(document.querySelector('#preview').dataset.seq) >= 2", timeout=60_000)
    time.sleep(1.5)
    shot(page2, "record-1280x800")
    ctx2.close()
    stop_and_open_event(page)
    eid = page.text_content("#event-id").strip()
    ctx.close()

    ctx, page = context(big, "admin")
    page.goto("/events")
    shot(page, "events")
    page.goto(f"/events/{eid}")
    page.evaluate("""() => new Promise(ok => { const v = document.querySelector('#player'); v.muted = true;
        v.addEventListener('seeked', ok, {once: true}); v.currentTime = 3; })""")
    page.wait_for_function("() => document.querySelector('#player').readyState >= 3", timeout=30_000)
    time.sleep(1.0)
    shot(page, "event")
    page.goto(f"/events/{eid}/delete")
    shot(page, "delete")
    page.goto("/system")
    shot(page, "system")
    ctx.close()
    return shots


if __name__ == "__main__":
    sys.exit(main())
