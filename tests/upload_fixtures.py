"""Helpers of the upload tests: an event with files in a real catalog, and what the remote holds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from surgbox.catalog import Catalog
from surgbox.upload import Queue, Remote, RemoteBook, Uploader

USER, PASSWORD = "alice", "app-pw-Zq9-7741"


def record_config(size: tuple[int, int], bis_url: str | None = None) -> str:
    """A ``surgbox record`` configuration: the paper layout, x264 ultrafast, three test patterns of
    ``size`` (w, h), a tone, and with ``bis_url`` a (simulated) BIS monitor."""
    w, h = size
    text = '[encoder]\nplugin = "libx264"\npreset = "ultrafast"\n[layout]\npreset = "paper"\n'
    for name in ("endoscope", "room", "vitals"):
        text += f'[sources.{name}]\nplugin = "testsrc"\nwidth = {w}\nheight = {h}\n'
    text += '[sources.mic]\nplugin = "tone"\n'
    if bis_url:
        text += f'[sources.bis]\nplugin = "bis"\nurl = "{bis_url}"\n'
    return text


def make_event(session, sizes=(700_000, 5_000)) -> str:
    """A stopped event with one segment and one snapshot of random bytes (sizes in bytes)."""
    ev = session.events.create(patient="Ulrike Testperson", medical_record="MRN-UPL-1", procedure="Upload test")
    session.events.start_event(ev.id)
    for i, n in enumerate(sizes):
        kind, name = ("segment", f"segment-{i:04d}.mp4") if i == 0 else ("snapshot", f"snapshot-{i:04d}.jpg")
        session.events.write_file(ev.id, kind, name, os.urandom(n))
    session.events.stop_event(ev.id, report=False)
    return ev.id


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_objects(home_path: Path, event_id: str) -> dict[str, str]:
    """``{store key: SHA-256}`` of the event's ciphertext files in the home's local store."""
    root = home_path / "store" / "objects"
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted((root / "events" / event_id).iterdir())}


def remote_objects(folder: Path, event_id: str) -> dict[str, str]:
    """``{store key: SHA-256}`` of the event's objects on a WebDAV server whose files live in ``folder``."""
    root = folder / "objects"
    d = root / "events" / event_id
    if not d.is_dir():
        return {}
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(d.iterdir()) if not p.name.startswith(".")}


def add_remote(session, name: str, kind: str, url: str, **kw) -> Remote:
    return RemoteBook(session).add(Remote(name, kind, url, USER, PASSWORD, **kw))


def upload(session, event_id: str, remote: str, **kw) -> tuple[Uploader, object]:
    """Queue and run one upload with fast retries; returns ``(uploader, job)`` (raises on failure)."""
    job = Queue(session).enqueue(event_id, remote)
    kw.setdefault("backoff", 0.05)
    kw.setdefault("max_backoff", 0.2)
    up = Uploader(session, **kw)
    return up, up.run(job.id)


def open_catalog(home) -> Catalog:
    return Catalog(home).open()
