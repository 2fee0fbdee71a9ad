"""Event catalog: PHI never in clear under SURGBOX_HOME, search, files, export, play, delete, retention."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from surgbox.catalog import Catalog, CatalogError, NotFoundError
from surgbox.catalog.db import MIGRATIONS, Database
from surgbox.errors import IntegrityError

PATIENT = "Zoë Quintanilla-Brightwater"
MRN = "MRN-7731-QX"
PHYSICIANS = ["Dr. Hélène Okonkwo", "Dr. Rafael Ibsen"]


class Clock:
    def __init__(self, start: datetime):
        self.t = start

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def catalog(surgbox_home):
    with Catalog(surgbox_home) as cat:
        yield cat


@pytest.fixture
def admin(catalog):
    return catalog.login("admin", "admin-password")


def make_event(session, **kw):
    fields = dict(patient=PATIENT, medical_record=MRN, procedure="Laparoscopic cholecystectomy",
                  physicians=PHYSICIANS, place="OR 3", notes=f"{PATIENT} arrived late")
    fields.update(kw)
    return session.events.create(**fields)


def needles(*texts: str) -> list[bytes]:
    out = []
    for t in texts:
        for form in {t, t.casefold(), t.upper()}:
            for enc in ("utf-8", "utf-16-le", "utf-16-be"):
                out.append(form.encode(enc))
    return out


def scan(root: Path, pats: list[bytes]) -> list[tuple[str, bytes]]:
    hits = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            hits += [(str(p.relative_to(root)), n) for n in pats if n in data]
    return hits


def tiny_jpeg(color=(200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 36), color).save(buf, "JPEG")
    return buf.getvalue()


def test_no_phi_in_clear_anywhere_under_home(surgbox_home, tmp_path):
    """Every file under SURGBOX_HOME (db, WAL, -shm, keys, store objects and sidecars, config) is
    scanned for the patient's name and MRN (UTF-8, UTF-16) while open and after checkpoint."""
    pats = needles(PATIENT, MRN, "Quintanilla", "Brightwater", "Okonkwo")
    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        s.users.add("dr_h", "surgeon", "surgeon-pass", physician=PHYSICIANS[0])
        ev = make_event(s)
        s.events.start_event(ev.id)
        s.events.write_file(ev.id, "segment", "segment-0001.mp4", f"fake video of {PATIENT} {MRN}".encode() * 1000)
        s.events.write_file(ev.id, "snapshot", "snap-0001.jpg", tiny_jpeg())
        s.events.stop_event(ev.id)  # stores the PDF report, which prints the name and MRN
        assert [f.kind for f in s.events.get(ev.id).files].count("report") == 1
        assert s.events.search(patient=PATIENT)[0].id == ev.id
        assert s.events.search(text="quintanilla")[0].id == ev.id
        s.events.export(ev.id, tmp_path / "export")  # plaintext lands outside the home
        assert PATIENT in (tmp_path / "export" / "event.json").read_text()
        wal = Path(f"{surgbox_home.catalog_path}-wal")
        assert wal.exists() and wal.stat().st_size > 0 and Path(f"{surgbox_home.catalog_path}-shm").exists()
        assert scan(surgbox_home.path, pats) == []  # before checkpoint: WAL and -shm included
        cat.db.checkpoint()
        assert scan(surgbox_home.path, pats) == []
    assert scan(surgbox_home.path, pats) == []  # after close
    # the scanner itself finds what is there (this test can fail)
    (surgbox_home.path / "leak.txt").write_text(f"x {MRN} x", encoding="utf-16")
    assert scan(surgbox_home.path, pats)


def test_phi_fields_are_encrypted_and_bound_to_their_row(catalog, admin):
    a = make_event(admin)
    b = make_event(admin, patient="Other Person", medical_record="MRN-2")
    raw = catalog.db.query_one("SELECT patient_enc FROM events WHERE id = ?", (a.id,))[0]
    assert PATIENT.encode() not in raw
    # a ciphertext moved into another row does not decrypt there
    with catalog.db.transaction() as c:
        c.execute("UPDATE events SET patient_enc = ? WHERE id = ?", (raw, b.id))
    with pytest.raises(IntegrityError, match="does not authenticate"):
        admin.events.get(b.id)
    assert admin.events.get(a.id).patient == PATIENT


def test_search_filters(catalog, surgbox_home):
    clock = Clock(datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc))
    with Catalog(surgbox_home, now=clock) as cat:
        s = cat.login("admin", "admin-password")
        e1 = make_event(s)
        s.events.start_event(e1.id)
        clock.t += timedelta(days=5)
        e2 = make_event(s, patient="José Álvarez", medical_record="A-100", procedure="Appendectomy",
                        physicians=["Dr. Bob Li"], place="OR 1", notes="")
        s.events.start_event(e2.id)
        s.events.stop_event(e2.id, report=False)
        ids = lambda **kw: [e.id for e in s.events.search(**kw)]  # noqa: E731
        assert ids() == [e2.id, e1.id]  # newest first
        assert ids(patient="jose alvarez") == [e2.id]  # accents and case ignored
        assert ids(patient="  JOSÉ   álvarez ") == [e2.id]
        assert ids(patient="alvarez") == [e2.id]  # one word
        assert ids(patient="alv") == []  # PHI matches whole words only
        assert ids(medical_record=MRN) == [e1.id]
        assert ids(medical_record="MRN-7731") == []
        assert ids(physician="helene okonkwo") == [e1.id]
        assert ids(physician="li") == [e2.id]
        assert ids(procedure="chole") == [e1.id]
        assert ids(place="or 1") == [e2.id]
        assert ids(status="stopped") == [e2.id]
        assert ids(date_from="2026-03-12") == [e2.id]
        assert ids(date_to="2026-03-10") == [e1.id]
        assert ids(date_from="2026-03-10", date_to="2026-03-15") == [e2.id, e1.id]
        assert ids(text="okonkwo chole") == [e1.id]
        assert ids(text="arrived") == [e1.id]  # a word of the encrypted notes
        assert ids(text="appendectomy jose") == [e2.id]
        assert ids(text="okonkwo appendectomy") == []
        assert ids(text=e2.id[-8:]) == [e2.id]
        with pytest.raises(CatalogError, match="YYYY-MM-DD"):
            s.events.search(date_from="10/03/2026")
        rec = cat.audit.records(action="event.search")[-1]
        assert rec.detail["filters"] == ["text"] and "okonkwo" not in json.dumps(rec.detail)


def test_lifecycle_store_for_add_file_and_report_on_stop(admin):
    ev = make_event(admin)
    admin.events.start_event(ev.id)
    with pytest.raises(CatalogError, match="is recording; start needs status created"):
        admin.events.start_event(ev.id)
    assert admin.events.get(ev.id).status == "recording"
    payload = os.urandom(2_500_000)
    with admin.events.store_for(ev.id) as store:
        with store.writer("segment-0001.mp4") as w:
            w.write(payload)
        assert list(store.keys()) == ["segment-0001.mp4"]
    rec = admin.events.add_file(ev.id, "segment", "segment-0001.mp4")
    assert rec.size == len(payload) and rec.sha256 == hashlib.sha256(payload).hexdigest()
    # issue 18.5: the object's key is generated (no file name, so no typed-in PHI, in the store)
    assert re.fullmatch(rf"events/{ev.id}/[0-9a-f]{{32}}", rec.store_key) and len(rec.key_id) == 16
    with pytest.raises(CatalogError, match="already has a file"):
        admin.events.add_file(ev.id, "segment", "segment-0001.mp4")
    with pytest.raises(CatalogError, match="not valid"):
        admin.events.write_file(ev.id, "snapshot", "../escape.jpg", b"x")
    with pytest.raises(CatalogError, match="kind"):
        admin.events.write_file(ev.id, "movie", "a.bin", b"x")
    stopped = admin.events.stop_event(ev.id)
    assert stopped.status == "stopped" and stopped.finished_at >= stopped.started_at
    reports = [f for f in stopped.files if f.kind == "report"]
    assert len(reports) == 1
    with admin.events.open_file(ev.id, reports[0].name) as f:
        assert f.read(5) == b"%PDF-"
    with admin.events.open_file(ev.id, "segment-0001.mp4") as f:
        f.seek(1_000_000)
        assert f.read(100) == payload[1_000_000:1_000_100]
    with pytest.raises(CatalogError, match="is stopped"):
        admin.events.start_event(ev.id)
    with pytest.raises(NotFoundError):
        admin.events.get("ev-20990101-00000000")


def test_export_plaintext_and_reencrypted(admin, surgbox_home, tmp_path):
    from surgbox.crypto import DecryptingReader, MasterKey

    ev = make_event(admin)
    video = os.urandom(1_500_000)
    admin.events.write_file(ev.id, "segment", "segment-0001.mp4", video)
    admin.events.write_file(ev.id, "snapshot", "snap.jpg", tiny_jpeg())
    res = admin.events.export(ev.id, tmp_path / "plain")
    d = tmp_path / "plain"
    assert (d / "segment-0001.mp4").read_bytes() == video
    assert sorted(res.files) == ["SHA256SUMS", "event.json", "segment-0001.mp4", "snap.jpg"]
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=d, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    meta = json.loads((d / "event.json").read_text())
    assert meta["patient"] == PATIENT and meta["medical_record"] == MRN and meta["physicians"] == PHYSICIANS
    assert not list(d.glob(".*.part"))

    key_file = MasterKey.generate().save(tmp_path / "partner.key")
    res = admin.events.export(ev.id, tmp_path / "enc", key_file=key_file)
    assert res.encrypted and (tmp_path / "enc" / "segment-0001.mp4.enc").exists()
    assert not (tmp_path / "enc" / "segment-0001.mp4").exists()
    key = MasterKey.from_bytes(key_file.read_bytes()).material
    with DecryptingReader.open(str(tmp_path / "enc" / "segment-0001.mp4.enc"), key, b"segment-0001.mp4") as r:
        assert r.read() == video
    # the partner decrypts with the documented CLI
    out = subprocess.run([sys.executable, "-m", "surgbox", "crypt", "decrypt", "--key-file", str(key_file), "--aad",
                          "event.json", str(tmp_path / "enc" / "event.json.enc"), str(tmp_path / "event.json")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "event.json").read_text())["patient"] == PATIENT

    with pytest.raises(CatalogError, match="inside SURGBOX_HOME"):
        admin.events.export(ev.id, surgbox_home.path / "leak")


def test_copies_out_of_the_box_never_replace_a_file(admin, tmp_path):
    """An export into a folder that holds one of its names (an earlier export: another event's
    event.json and SHA256SUMS were replaced) and report --out onto a file (it wrote the PDF over
    a recording) are refused before anything is written; the files are as they were."""
    a, b = make_event(admin), make_event(admin, patient="Other Patient")
    admin.events.write_file(a.id, "segment", "segment-0001.mp4", b"recording a" * 100)
    admin.events.write_file(b.id, "segment", "segment-0002.mp4", b"recording b" * 100)
    usb = tmp_path / "usb"
    admin.events.export(a.id, usb)
    before = {p.name: p.read_bytes() for p in usb.iterdir()}
    with pytest.raises(CatalogError, match=r"already holds 'event.json' \(and 1 more.*new or empty folder"):
        admin.events.export(b.id, usb)
    with pytest.raises(CatalogError, match="already holds 'segment-0001.mp4'"):
        admin.events.export(a.id, usb, names=["segment-0001.mp4"])
    assert {p.name: p.read_bytes() for p in usb.iterdir()} == before
    recording = tmp_path / "case.mp4"
    recording.write_bytes(b"a recording")
    reports = len([f for f in admin.events.get(a.id).files if f.kind == "report"])
    with pytest.raises(CatalogError, match="exists; existing files are never replaced"):
        admin.events.save_report(a.id, recording)
    assert recording.read_bytes() == b"a recording"
    assert len([f for f in admin.events.get(a.id).files if f.kind == "report"]) == reports  # refused before storing
    admin.events.save_report(a.id, tmp_path / "r.pdf")
    assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"


def test_export_refuses_data_that_does_not_match_the_catalog_checksum(catalog, admin, tmp_path):
    ev = make_event(admin)
    admin.events.write_file(ev.id, "segment", "segment-0001.mp4", b"recording" * 1000)
    with catalog.db.transaction() as c:
        c.execute("UPDATE files SET sha256 = ? WHERE event_id = ?", ("0" * 64, ev.id))
    with pytest.raises(IntegrityError, match="differ from the catalog"):
        admin.events.export(ev.id, tmp_path / "out")
    assert not (tmp_path / "out" / "segment-0001.mp4").exists()
    assert not list((tmp_path / "out").glob(".*.part"))


def _fragmented_mp4(path: Path, frames: int = 30) -> bytes:
    import av
    import numpy as np

    with av.open(str(path), "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}) as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        for i in range(frames):
            img = np.full((96, 160, 3), (i * 8) % 255, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path.read_bytes()


def test_play_streams_decrypted_video_into_a_real_player(admin, tmp_path):
    """ffmpeg reads the decrypted recording from its stdin (as ffplay/mpv would) and decodes every frame."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    ev = make_event(admin)
    data = _fragmented_mp4(tmp_path / "src.mp4")
    (tmp_path / "src.mp4").unlink()
    admin.events.write_file(ev.id, "segment", "segment-0001.mp4", data)
    out = tmp_path / "frames.txt"
    rc = admin.events.play(ev.id, ["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "framemd5", str(out)])
    assert rc == 0
    assert sum(1 for line in out.read_text().splitlines() if not line.startswith("#")) == 30
    digest = tmp_path / "sha.txt"
    rc = admin.events.play(ev.id, [sys.executable, "-c",
                                   "import sys,hashlib;open(sys.argv[1],'w').write(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
                                   str(digest)])
    assert rc == 0 and digest.read_text() == hashlib.sha256(data).hexdigest()
    assert admin.events.play(ev.id, [sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
    with pytest.raises(CatalogError, match="not installed"):
        admin.events.play(ev.id, ["no-such-player-xyz"])


def test_delete_destroys_the_key_so_kept_copies_are_unreadable(catalog, admin, surgbox_home, tmp_path):
    ev = make_event(admin)
    rec = admin.events.write_file(ev.id, "segment", "segment-0001.mp4", b"secret video" * 10000)
    wrapped = bytes(catalog.db.query_one("SELECT wrapped FROM event_keys WHERE event_id = ?", (ev.id,))[0])
    backup = tmp_path / "store-backup"
    shutil.copytree(surgbox_home.default_store_root, backup)  # somebody kept a copy of the disk
    res = admin.events.delete(ev.id)
    assert res.objects_deleted == 1 and not res.objects_left
    with pytest.raises(NotFoundError):
        admin.events.get(ev.id)
    assert catalog.db.query_one("SELECT count(*) FROM event_keys WHERE event_id = ?", (ev.id,))[0] == 0
    assert catalog.db.query_one("SELECT count(*) FROM files WHERE event_id = ?", (ev.id,))[0] == 0
    # the wrapped key is gone from the database files too (secure_delete + WAL checkpoint)
    for p in surgbox_home.path.glob("catalog.db*"):
        assert wrapped not in p.read_bytes(), p
    # the kept ciphertext cannot be opened with any key the home still has
    from surgbox.crypto import KeyRing, MasterKey, WrongKeyError
    from surgbox_ext.store import LocalStore

    store = LocalStore(root=backup, keyring=KeyRing.of(MasterKey(surgbox_home.master_key())))
    store.open()
    with pytest.raises(WrongKeyError):
        store.reader(rec.store_key)
    rec = catalog.audit.records(action="event.delete")[-1]
    assert rec.target == ev.id and rec.detail["key_destroyed"] is True


def test_retention_deletes_old_stopped_events_and_orphans(surgbox_home):
    clock = Clock(datetime(2026, 1, 1, 8, 0, tzinfo=timezone.utc))
    with Catalog(surgbox_home, now=clock) as cat:
        s = cat.login("admin", "admin-password")
        old = make_event(s)
        s.events.start_event(old.id)
        s.events.write_file(old.id, "segment", "segment-0001.mp4", b"a" * 100)
        s.events.stop_event(old.id, report=False)
        live = make_event(s)
        s.events.start_event(live.id)  # still recording: never deleted
        clock.t += timedelta(days=10)
        recent = make_event(s)
        s.events.stop_event(recent.id, report=False)
        from surgbox.crypto import KeyRing, MasterKey

        store = cat.make_store(KeyRing.of(MasterKey.generate()))
        # an object of an event the catalog no longer has (crash between key destruction and removal)
        with store.writer("events/ev-20250101-deadbeef/segment-0001.mp4") as w:
            w.write(b"x")
        with s.events.store_for(recent.id) as st, st.writer("kept.bin") as w:
            w.write(b"y")
        assert s.events.retention(7, dry_run=True) == [old.id]
        assert s.events.get(old.id)
        assert s.events.retention(7) == [old.id]
        assert {e.id for e in s.events.list()} == {live.id, recent.id}
        kept = list(store.keys("events/"))  # object keys are generated: the name shows through the handle
        assert len(kept) == 1 and kept[0].startswith(f"events/{recent.id}/")
        with s.events.store_for(recent.id) as st:
            assert list(st.keys()) == ["kept.bin"]
        for bad in (-1, float("nan"), float("inf"), 1e300):
            with pytest.raises(CatalogError, match="--keep-days must be a number of days from 0 to 36525"):
                s.events.retention(bad)


def test_migrations_are_recorded_and_a_newer_schema_is_refused(tmp_path):
    db = Database(tmp_path / "c.db").open(create=True)
    assert db.schema_version() == MIGRATIONS[-1].version
    rows = db.query("SELECT version, name FROM schema_migrations")
    assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
    assert db.query_one("PRAGMA journal_mode")[0] == "wal"
    assert db.query_one("PRAGMA foreign_keys")[0] == 1
    assert db.query_one("PRAGMA synchronous")[0] == 2  # FULL
    db.close()
    db = Database(tmp_path / "c.db").open()  # reopening applies nothing twice
    assert len(db.query("SELECT * FROM schema_migrations")) == len(MIGRATIONS)
    with db.transaction() as c:
        c.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    db.close()
    with pytest.raises(CatalogError, match="newer than this surgbox"):
        Database(tmp_path / "c.db").open()
    with pytest.raises(CatalogError, match="surgbox init"):
        Database(tmp_path / "missing.db").open()


def test_transactions_roll_back_whole(catalog, admin):
    ev = make_event(admin)
    n_audit = len(catalog.audit.records())
    with pytest.raises(sqlite3.IntegrityError):
        with catalog.db.transaction() as c:
            catalog.audit.append(c, "admin", "file.add", ev.id)
            c.execute("INSERT INTO files(event_id, kind, legacy_name, store_key, size, sha256, key_id, created_at) "
                      "VALUES ('no-such-event', 'segment', 'a', 'k', 1, ?, 'k', 'now')", ("0" * 64,))
    assert len(catalog.audit.records()) == n_audit
    assert catalog.audit.verify().ok


# ---- CLI ----------------------------------------------------------------------------------

def cli(*args: str, user: str = "admin", password: str = "admin-password", stdin: str | None = None):
    env = {**os.environ, "SURGBOX_USER": user, "SURGBOX_PASSWORD": password}
    return subprocess.run([sys.executable, "-m", "surgbox", *args], capture_output=True, text=True, env=env,
                          input=stdin, timeout=120)


def test_cli_events_round_trip(surgbox_home, tmp_path):
    out = cli("events", "create", "--patient", PATIENT, "--medical-record", MRN, "--procedure", "Hernia repair",
              "--physician", PHYSICIANS[0], "--physician", PHYSICIANS[1], "--place", "OR 5", "--start")
    assert out.returncode == 0, out.stderr
    eid = out.stdout.strip().splitlines()[-1]
    assert eid.startswith("ev-")
    listed = json.loads(cli("events", "list", "--json").stdout)
    assert [e["id"] for e in listed] == [eid] and listed[0]["status"] == "recording"
    found = cli("events", "search", "--physician", "helene okonkwo", "--procedure", "hernia", "--json")
    assert [e["id"] for e in json.loads(found.stdout)] == [eid]
    assert json.loads(cli("events", "search", "--patient", "nobody", "--json").stdout) == []
    snap = tmp_path / "snap-0001.jpg"
    snap.write_bytes(tiny_jpeg())
    out = cli("events", "attach", eid, str(snap), "--kind", "snapshot")
    assert out.returncode == 0, out.stderr
    out = cli("events", "stop", eid)
    assert out.returncode == 0 and "report" in out.stdout, out.stderr
    shown = json.loads(cli("events", "show", eid, "--json").stdout)
    assert shown["patient"] == PATIENT and {f["kind"] for f in shown["files"]} == {"snapshot", "report"}
    table = cli("events", "show", eid).stdout
    assert MRN in table and "snap-0001.jpg" in table
    out = cli("events", "export", eid, "--to", str(tmp_path / "exp"))
    assert out.returncode == 0 and (tmp_path / "exp" / "snap-0001.jpg").read_bytes() == snap.read_bytes()
    out = cli("events", "play", eid, "--file", "snap-0001.jpg", "--player", f"{sys.executable} -c 'import sys; sys.stdin.buffer.read()'")
    assert out.returncode == 0, out.stderr
    out = cli("events", "retention", "--keep-days", "30", "--json")
    assert json.loads(out.stdout) == {"dry_run": False, "events": []}
    out = cli("events", "delete", eid)
    assert out.returncode == 0 and "key destroyed" in out.stdout
    out = cli("events", "show", eid)
    assert out.returncode == 1 and "no event" in out.stderr


def test_cli_requires_login(surgbox_home):
    env = {k: v for k, v in os.environ.items() if k not in ("SURGBOX_USER", "SURGBOX_PASSWORD")}
    out = subprocess.run([sys.executable, "-m", "surgbox", "events", "list"], capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "--user" in out.stderr
    out = subprocess.run([sys.executable, "-m", "surgbox", "events", "list", "--user", "admin"], capture_output=True,
                         text=True, env=env, stdin=subprocess.DEVNULL)
    assert out.returncode == 1 and "SURGBOX_PASSWORD" in out.stderr
    out = cli("events", "list", password="wrong-password")
    assert out.returncode == 1 and "login failed" in out.stderr


def test_cli_bad_input_gives_one_line_errors(surgbox_home, admin, tmp_path, monkeypatch, capsys):
    """Bad names, dates, ids, limits, paths and homes: one line naming the thing and the fix, exit 1,
    never a traceback (the real CLI entry point, in-process to stay fast)."""
    from surgbox.cli import main

    monkeypatch.setenv("SURGBOX_USER", "admin")
    monkeypatch.setenv("SURGBOX_PASSWORD", "admin-password")
    eid = make_event(admin).id
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        (["users", "add", "bad name", "--role", "viewer", "--password", "abcdefghij"], "user name 'bad name' is not valid"),
        (["users", "passwd", "nobody", "--password", "abcdefghij"], "no user named 'nobody'; `surgbox users list`"),
        (["users", "unlock", "nobody"], "no user named 'nobody'; `surgbox users list`"),
        (["events", "search", "--from", "2026-13-45"], "date '2026-13-45' is not YYYY-MM-DD"),
        (["events", "search", "--to", "yesterday"], "date 'yesterday' is not YYYY-MM-DD"),
        (["events", "list", "--limit", "0"], "--limit must be a whole number from 1"),
        (["events", "show", "ev-20260101-deadbeef"], "no event 'ev-20260101-deadbeef'; `surgbox events list`"),
        (["events", "stop", "nonsense"], "no event 'nonsense'"),
        (["events", "export", eid, "--to", str(a_file)], f"cannot create the export folder {a_file}"),
        (["events", "retention", "--keep-days", "nan"], "--keep-days must be a number of days from 0 to"),
        (["events", "retention", "--keep-days", "1e300"], "--keep-days must be a number of days from 0 to"),
        (["report", eid, "--out", str(tmp_path)], f"{tmp_path} is a folder; give the report's file name"),
        (["report", eid, "--out", str(tmp_path / "no" / "r.pdf")], f"folder {tmp_path / 'no'} does not exist"),
        (["report", eid, "--out", str(a_file)], f"{a_file} exists; existing files are never replaced"),
        (["audit", "show", "--limit", "-1"], "--limit must be a whole number from 1"),
        (["events", "list", "--home", str(tmp_path / "nohome")], "is not a surgbox home"),
        (["events", "list", "--user", "ghost"], "login failed for 'ghost'"),
        (["init", "--home", str(a_file), "--admin-password", "abcdefghij"], f"{a_file} is a file, not a folder"),
        (["init", "--home", str(tmp_path / "h2"), "--admin", "bad name", "--admin-password", "abcdefghij"],
         "user name 'bad name' is not valid"),
    ]
    for args, want in cases:
        rc = main(args)
        err = capsys.readouterr().err
        assert rc == 1, (args, err)
        assert err.startswith("surgbox: error: ") and err.count("\n") == 1 and want in err, (args, err)
    assert not (tmp_path / "h2").exists()  # a refused init creates nothing
    assert a_file.read_text() == "x"  # report --out wrote the PDF over it
    assert not (tmp_path / "no").exists()


def test_docs_catalog_cli_synopses_match_argparse():
    """Every `surgbox init/users/events/audit/report` synopsis in docs/catalog.md names real options,
    and every option of those commands is documented (--home/--user/-h are documented once, globally)."""
    import argparse
    import re

    from surgbox.cli import build_parser

    doc = (Path(__file__).resolve().parents[1] / "docs" / "catalog.md").read_text()
    text = doc.replace("\\\n", " ")
    lines = re.findall(r"^\$ (surgbox [^\n#]*)", text, re.M) + re.findall(r"`(surgbox [^`]*)`", text)

    def subparsers(p):
        return next((a.choices for a in p._actions if isinstance(a, argparse._SubParsersAction)), {})

    top = subparsers(build_parser())
    documented: dict[tuple[str, ...], set[str]] = {}
    for line in lines:
        words = line.split()[1:]
        if not words or words[0] not in ("init", "users", "events", "audit", "report"):
            continue
        group = words[0]
        for k, part in enumerate(" ".join(words).split(" | ")):
            ws = part.split() if k == 0 else [group, *part.split()]
            parser, path = top[ws[0]], [ws[0]]
            if len(ws) > 1 and ws[1] in subparsers(parser):
                parser, path = subparsers(parser)[ws[1]], path + [ws[1]]
            assert not subparsers(parser), f"docs line {line!r}: incomplete command"
            known = {o for a in parser._actions for o in a.option_strings}
            used = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", part))
            assert used <= known, f"docs line {line!r}: {sorted(used - known)} not options of surgbox {' '.join(path)}"
            documented.setdefault(tuple(path), set()).update(used)
    for group in ("init", "users", "events", "audit", "report"):
        cmds = {(group, n): p for n, p in subparsers(top[group]).items()} or {(group,): top[group]}
        for path, parser in cmds.items():
            assert path in documented, f"surgbox {' '.join(path)} has no synopsis in docs/catalog.md"
            opts = {a.option_strings[-1] for a in parser._actions if a.option_strings} - {"--help", "--home", "--user"}
            missing = opts - documented[path]
            assert not missing, f"surgbox {' '.join(path)}: {sorted(missing)} missing from docs/catalog.md"


def test_each_catalog_module_imports_alone_and_hides_no_cycle_in_a_function():
    """issue 19.1: every module of the catalog, home and report imports in a fresh interpreter, and
    none imports a surgbox module inside a function (the way a cycle used to be hidden); heavy
    optional libraries (PyAV, fpdf2, fontTools, Pillow for the PDF) may load late."""
    import ast
    import pkgutil

    import surgbox.catalog

    src = Path(surgbox.catalog.__file__).parent
    modules = [f"surgbox.catalog.{m.name}" for m in pkgutil.iter_modules([str(src)])] + ["surgbox.home", "surgbox.report"]
    late_ok = {"av", "fpdf", "fpdf.fonts", "fontTools.ttLib", "PIL"}
    for mod in modules:
        out = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (mod, out.stderr)
        path = Path(sys.modules[mod].__file__) if mod in sys.modules else Path(__import__(mod, fromlist=["x"]).__file__)
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom):
                        name = "." * node.level + (node.module or "")
                        assert node.level == 0 and name in late_ok, f"{mod}.{fn.name} imports {name} inside a function"
                    elif isinstance(node, ast.Import):
                        names = {a.name for a in node.names}
                        assert names <= late_ok, f"{mod}.{fn.name} imports {names} inside a function"


def test_retention_keeps_events_that_were_never_started(surgbox_home):
    """issue 19.8: retention is for old footage. An event that never recorded (status created: a
    case prepared in advance) is not deleted, however old, not even with --keep-days 0; once it is
    stopped it ages like any other stopped event."""
    clock = Clock(datetime(2026, 1, 1, 8, 0, tzinfo=timezone.utc))
    with Catalog(surgbox_home, now=clock) as cat:
        s = cat.login("admin", "admin-password")
        prepared = make_event(s)
        clock.t += timedelta(days=400)
        assert s.events.retention(0, dry_run=True) == []
        assert s.events.retention(0) == [] and s.events.get(prepared.id).status == "created"
        s.events.stop_event(prepared.id, report=False)  # cancelled: stopped now, without footage
        assert s.events.retention(30) == []
        clock.t += timedelta(days=31)
        assert s.events.retention(30) == [prepared.id]
