"""Helpers of the console tests: a home with one user per role, a real console server on
loopback recording simulated sources, and an HTTP client that logs in like a browser."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

PASSWORD = "console-password"
ROLES_USERS = {"admin": "admin", "operator": "olga", "viewer": "vera", "auditor": "aldo", "surgeon": "sam"}

# 1920x1080 composite of one small test pattern at 10 fps, ultrafast: cheap on a busy 2-core machine.
RECORD_TOML = """
fps = 10
[encoder]
plugin = "libx264"
preset = "ultrafast"
[layout]
preset = "single"
sources = { main = "cam" }
[sources.cam]
plugin = "testsrc"
width = 320
height = 180
fps = 10
"""

#: Debian's Chromium (never a browser Playwright downloads); SURGBOX_CHROMIUM overrides it
CHROMIUM = os.environ.get("SURGBOX_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = os.access(CHROMIUM, os.X_OK)

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def make_home(path: Path) -> Any:
    """A home at ``path`` (cheap Argon2) with one user per role (:data:`ROLES_USERS`, password
    :data:`PASSWORD`); a surgeon linked to physician "Dr. Sam"."""
    from surgbox.catalog import Catalog, install_home

    home = install_home(path, "admin", PASSWORD)
    cfg = home.config_path.read_text()
    home.config_path.write_text(cfg.replace("min_length = 8", "min_length = 8\ntime_cost = 1\nmemory_kib = 8192\n"
                                                              "parallelism = 1").replace("max_failures = 5", "max_failures = 3"))
    with Catalog(home) as cat:
        users = cat.login("admin", PASSWORD).users
        for role, name in ROLES_USERS.items():
            if role != "admin":
                users.add(name, role, PASSWORD, physician="Dr. Sam" if role == "surgeon" else None)
        users.add("locky", "operator", PASSWORD)
    return home


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "no CSRF token in the page"
    return m[1]


class Client:
    """An HTTP client holding cookies like a browser; :meth:`login` logs in through the form."""

    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, follow_redirects=False, timeout=60)
        self.csrf: str | None = None

    def login(self, name: str, password: str = PASSWORD) -> httpx.Response:
        page = self.http.get("/login")
        r = self.http.post("/login", data={"csrf": csrf_of(page.text), "name": name, "password": password})
        if r.status_code == 303:
            self.csrf = csrf_of(self.http.get(r.headers["location"]).text)
        return r

    def post(self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True, **kw: Any) -> httpx.Response:
        body = dict(data or {})
        if csrf and self.csrf:
            body["csrf"] = self.csrf
        return self.http.post(path, data=body, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def close(self) -> None:
        self.http.close()


def start_server(home: Any, tmp: Path, *, bis_url: str | None = None, **options: Any) -> Any:
    """A console on a free loopback port recording :data:`RECORD_TOML` (with ``bis_url``: also a
    BIS monitor there, e.g. ``SimulatedBIS().url``, whose readings go to the data track)."""
    from surgbox.console import ConsoleServer

    cfg = tmp / "record.toml"
    cfg.write_text(RECORD_TOML + (f'[sources.bis]\nplugin = "bis"\nurl = "{bis_url}"\n' if bis_url else ""))
    return ConsoleServer.for_home(home.path, config=cfg, port=0, **options).start()


def stop_and_open_event(page: Any) -> None:
    """In a Playwright ``page`` showing a recording: press Stop and land on the recorded event's
    page (straight away, or through the record page's link when storing the files took longer
    than the stop request waits)."""
    page.click("#stop", no_wait_after=True)
    page.wait_for_function("() => location.pathname.startsWith('/events/ev-') || document.querySelector('#last-event')",
                           timeout=180_000)
    if page.locator("#last-event").count():
        page.click("#last-event")
    page.wait_for_selector("#event-id")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium (:data:`CHROMIUM`) driven by Playwright, allowed to autoplay."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            yield b
        finally:
            b.close()
