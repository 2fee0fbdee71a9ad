"""Issue 18 against the catalog: the holes found under attack, each shown closed with real files,
real processes and the real CLI (every test here failed on the code before the fix)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from surgbox.catalog import AccessDenied, Catalog, CatalogError, install_home

PATIENT, MRN = "Rosalind Vantablack-Queeg", "MRN-31337"
CHEAP = "min_length = 8\ntime_cost = 1\nmemory_kib = 8192\nparallelism = 1"


def cli(*args, user="admin", password="admin-password", env=None, **kw):
    e = {**os.environ, "SURGBOX_USER": user, "SURGBOX_PASSWORD": password, **(env or {})}
    return subprocess.run([sys.executable, "-m", "surgbox", *args], capture_output=True, env=e, timeout=120, **kw)


def one_line_error(out, want: str) -> None:
    err = out.stderr.decode(errors="replace") if isinstance(out.stderr, bytes) else out.stderr
    assert out.returncode != 0, err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("surgbox: error: "), err
    assert want in err, err


@pytest.fixture
def admin(surgbox_home):
    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        s.users.add("viewer1", "viewer", "viewer-password")
        s.users.add("op1", "operator", "operator-password")
        yield s


def make_event(s, **kw):
    fields = dict(patient=PATIENT, medical_record=MRN, procedure="Hernia repair", physicians=["Dr. Ode"], place="OR 2")
    return s.events.create(**{**fields, **kw})


# ---- 18.3: play must not hand plaintext to any program a viewer names -------------------------

def test_viewer_cannot_play_into_an_arbitrary_program(admin, surgbox_home, tmp_path):
    ev = make_event(admin)
    admin.events.write_file(ev.id, "segment", "segment-0001.mp4", b"not really a video" * 1000)
    stolen = tmp_path / "x.mp4"
    out = cli("events", "play", ev.id, "--player", f"sh -c 'cat > {stolen}'", user="viewer1", password="viewer-password")
    one_line_error(out, "is not one of the players the admin set")
    assert not stolen.exists()
    out = cli("events", "play", ev.id, "--file", "segment-0001.mp4", "--player", f"sh -c 'cat > {stolen}'",
              user="viewer1", password="viewer-password")
    one_line_error(out, "may not export")
    assert not stolen.exists()
    with Catalog(surgbox_home) as cat:
        denied = [r for r in cat.audit.records(action="event.play") if r.result == "denied"]
        assert len(denied) == 2 and denied[0].actor == "viewer1"


def test_viewer_plays_through_a_player_the_admin_set_and_admin_through_any(admin, surgbox_home, tmp_path):
    import hashlib

    ev = make_event(admin)
    data = os.urandom(200_000)
    admin.events.write_file(ev.id, "segment", "segment-0001.mp4", data)
    digest = tmp_path / "sha.txt"
    vetted = f"{sys.executable} -c 'import sys,hashlib;open(sys.argv[1],\"w\").write(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())' {digest}"
    cfg = surgbox_home.config_path.read_text().replace('players = [', f"players = ['''{vetted}''', ")
    surgbox_home.config_path.write_text(cfg)
    out = cli("events", "play", ev.id, user="viewer1", password="viewer-password")  # the first installed one
    assert out.returncode == 0, out.stderr
    assert digest.read_text() == hashlib.sha256(data).hexdigest()
    digest.unlink()
    out = cli("events", "play", ev.id, "--player", vetted, user="viewer1", password="viewer-password")
    assert out.returncode == 0 and digest.exists(), out.stderr
    other = tmp_path / "admin.bin"
    out = cli("events", "play", ev.id, "--player", f"sh -c 'cat > {other}'")  # may export anyway
    assert out.returncode == 0 and other.read_bytes() == data, out.stderr


# ---- 18.4: a wrong master key is refused when the catalog opens -------------------------------

def test_another_homes_master_key_is_refused_before_anything_is_written(surgbox_home, tmp_path):
    other = install_home(tmp_path / "other", "admin", "admin-password")
    mine = surgbox_home.master_key_path.read_bytes()
    before = {p.name: p.read_bytes() for p in surgbox_home.path.glob("catalog.db*")}
    shutil.copy(other.master_key_path, surgbox_home.master_key_path)
    out = cli("events", "create", "--patient", PATIENT, "--medical-record", MRN, "--procedure", "X")
    one_line_error(out, f"the master key {surgbox_home.master_key_path} is not the key of the catalog")
    with pytest.raises(CatalogError, match="put back this home's own master.key"):
        Catalog(surgbox_home).open()
    assert {p.name: p.read_bytes() for p in surgbox_home.path.glob("catalog.db*")} == before
    surgbox_home.master_key_path.write_bytes(mine)
    with Catalog(surgbox_home) as cat:
        assert cat.login("admin", "admin-password") and cat.audit.verify().ok


def test_a_catalog_without_key_check_value_gets_one_once_its_contents_verify(admin, surgbox_home, tmp_path):
    make_event(admin)
    admin.catalog.close()
    c = sqlite3.connect(surgbox_home.catalog_path)
    c.execute("DELETE FROM meta WHERE key = 'key_check'")  # a catalog from before key checks
    c.commit()
    c.close()
    saved = surgbox_home.master_key_path.read_bytes()
    shutil.copy(install_home(tmp_path / "o", "admin", "admin-password").master_key_path, surgbox_home.master_key_path)
    with pytest.raises(CatalogError, match="is not the key of the catalog"):
        Catalog(surgbox_home).open()  # the audit MACs do not verify with it
    surgbox_home.master_key_path.write_bytes(saved)
    with Catalog(surgbox_home) as cat:
        assert cat.db.query_one("SELECT 1 FROM meta WHERE key = 'key_check'") is not None


# ---- 18.5: no PHI in the names of stored objects ---------------------------------------------

def names_and_contents(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root)).encode()
        hits += [f"name {p}" for n in needles if n.lower() in rel.lower()]
        if p.is_file():
            data = p.read_bytes()
            hits += [f"content {p}" for n in needles if n in data or n.lower() in data.lower()]
    return hits


def test_phi_in_an_attached_file_name_reaches_no_store_path_sidecar_tombstone_or_audit(admin, surgbox_home, tmp_path):
    src = tmp_path / "Jane_Roe_1965-03-02.mp4"
    src.write_bytes(os.urandom(5000))
    ev = make_event(admin)
    admin.catalog.close()
    out = cli("events", "attach", ev.id, str(src), "--kind", "segment")
    assert out.returncode == 0, out.stderr
    needles = [b"Jane_Roe", b"Roe_1965", b"1965-03-02", PATIENT.encode(), MRN.encode()]
    assert names_and_contents(surgbox_home.path, needles) == []
    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        assert [f.name for f in s.events.get(ev.id).files] == [src.name]  # the name, decrypted, for those who may see it
        with s.events.open_file(ev.id, src.name) as f:
            assert f.read() == src.read_bytes()
        s.events.delete(ev.id)
        tombstones = list(surgbox_home.default_store_root.rglob("*.deleted"))
        assert tombstones  # the store keeps a tombstone per deleted object ...
    assert names_and_contents(surgbox_home.path, needles) == []  # ... naming no file
    # the scan finds what is there (this test can fail)
    (surgbox_home.default_store_root / "meta" / "Jane_Roe.leak").write_text("x")
    assert names_and_contents(surgbox_home.path, needles)


def test_file_names_of_a_version_1_catalog_are_encrypted_at_first_open(surgbox_home, tmp_path):
    """A catalog written before names were encrypted: the migration keeps the name aside and the
    first open (which has the key) encrypts it; the old object stays readable under its old key,
    which still holds the name (docs/security.md: objects stored before version 2)."""
    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        ev = make_event(s)
        from surgbox.catalog.keys import event_keyring, load_data_key

        key, key_id = load_data_key(cat.db, cat.kek, ev.id)
        store = cat.make_store(event_keyring(key, ev.id))
        with store.writer(f"events/{ev.id}/Old_Name_Roe.mp4", {"kind": "segment"}) as w:
            w.write(b"old object")
        store.close()
        import hashlib

        with cat.db.transaction() as c:
            c.execute("INSERT INTO files(event_id, kind, legacy_name, store_key, size, sha256, key_id, created_at)"
                      " VALUES (?, 'segment', 'Old_Name_Roe.mp4', ?, 10, ?, ?, '2026-01-01T00:00:00+00:00')",
                      (ev.id, f"events/{ev.id}/Old_Name_Roe.mp4", hashlib.sha256(b"old object").hexdigest(), key_id))
    with Catalog(surgbox_home) as cat:
        assert cat.db.query_one("SELECT count(*) FROM files WHERE legacy_name IS NOT NULL")[0] == 0
        s = cat.login("admin", "admin-password")
        with s.events.open_file(ev.id, "Old_Name_Roe.mp4") as f:
            assert f.read() == b"old object"
        assert cat.db.query_one("SELECT name_enc FROM files WHERE store_key LIKE '%Old_Name_Roe.mp4'")[0]


# ---- 18.8: exported files are 0600 ------------------------------------------------------------

def test_exports_into_an_existing_folder_are_owner_only_unless_asked(admin, surgbox_home, tmp_path):
    ev = make_event(admin)
    admin.events.start_event(ev.id)
    admin.events.write_file(ev.id, "segment", "segment-0001.mp4", os.urandom(3000))
    admin.events.stop_event(ev.id)  # a report PDF too
    dest = tmp_path / "usb"
    dest.mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        admin.events.export(ev.id, dest)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in dest.iterdir()}
        assert set(modes) >= {"segment-0001.mp4", "event.json", "SHA256SUMS"} and any(n.endswith(".pdf") for n in modes)
        assert set(modes.values()) == {0o600}, modes
        out = cli("events", "export", ev.id, "--to", str(tmp_path / "shared"), "--mode", "640")
        assert out.returncode == 0, out.stderr
        assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "shared").iterdir()} == {0o640}
    finally:
        os.umask(old)
    out = cli("events", "export", ev.id, "--to", str(tmp_path / "x"), "--mode", "999")  # an argparse usage error
    assert out.returncode == 2 and b"is not an octal file mode" in out.stderr and b"Traceback" not in out.stderr


# ---- 18.16: one line, never a traceback --------------------------------------------------------

@pytest.mark.parametrize("args,want", [
    (["events", "create", "--patient", b"Jos\xe9 Roe", "--medical-record", "M", "--procedure", "P"], "not valid UTF-8"),
    (["events", "create", "--patient", "P", "--medical-record", "M", "--procedure", "P", "--place", b"OR \xff"],
     "the place is not valid UTF-8"),
    (["events", "search", "--patient", b"\xed\xa0\x80"], "not valid UTF-8"),
    (["events", "search", "--from", "0001-01-01"], "is out of range"),
    (["events", "search", "--to", "9999-12-31"], "is out of range"),
    (["events", "show", b"ev-\xff"], "not valid UTF-8"),
])
def test_hostile_text_arguments_give_one_line(surgbox_home, args, want):
    out = cli(*[a if isinstance(a, bytes) else a.encode() for a in args])
    one_line_error(out, want)


def test_bad_utf8_password_or_user_is_a_failed_login(surgbox_home):
    one_line_error(cli("events", "list", password=os.fsdecode(b"pw-\xff\xfe")), "login failed")
    one_line_error(cli("events", "list", user=os.fsdecode(b"adm\xffin")), "login failed")


def test_a_corrupt_catalog_page_gives_one_line_at_login(surgbox_home):
    """The page of the users table is damaged (the catalog still opens): the login's query fails."""
    with Catalog(surgbox_home) as cat:
        cat.db.checkpoint()
        root = cat.db.query_one("SELECT rootpage FROM sqlite_master WHERE name = 'users'")[0]
        page = cat.db.query_one("PRAGMA page_size")[0]
    data = bytearray(surgbox_home.catalog_path.read_bytes())
    start = (root - 1) * page
    data[start: start + page] = b"\x0d" + os.urandom(page - 1)  # a leaf page of garbage
    surgbox_home.catalog_path.write_bytes(bytes(data))
    out = cli("events", "list")
    one_line_error(out, "is damaged")
    assert "restore it from a backup" in out.stderr.decode()


def test_broken_pipe_is_silent(surgbox_home):
    proc = subprocess.Popen([sys.executable, "-m", "surgbox", "events", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "SURGBOX_USER": "admin",
                                                         "SURGBOX_PASSWORD": "admin-password"})
    proc.stdout.close()  # the reader is gone before anything is written (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(60) != 0 and err == "", err


@pytest.fixture
def tiny_home(tmp_path):
    """A home on a real 2 MiB tmpfs (needs root; skipped otherwise)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {r.stderr.decode().strip()}")
    try:
        home = install_home(mnt / "home", "admin", "admin-password")
        home.config_path.write_text(home.config_path.read_text().replace("min_length = 8", CHEAP))
        yield home, mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_events_create_on_a_full_disk_says_the_disk_is_full(tiny_home):
    home, mnt = tiny_home
    filler = mnt / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    env = {"SURGBOX_HOME": str(home.path)}
    out = None
    for i in range(50):  # the last free blocks go first
        out = cli("events", "create", "--patient", PATIENT, "--medical-record", f"M{i}", "--procedure", "X",
                  "--notes", "n" * 20000, env=env)
        if out.returncode != 0:
            break
    one_line_error(out, "is full")
    assert "backup" not in out.stderr.decode()
    filler.unlink()
    with Catalog(home) as cat:  # nothing recorded is lost, the chain verifies
        assert cat.audit.verify().ok and cat.db.check() == []


# ---- 18.18: control characters in fields are shown, not executed ------------------------------

def test_list_and_show_escape_ansi_and_line_breaks(admin, surgbox_home):
    ev = make_event(admin, patient="Evil\x1b[2J\x1b[31mRed\rFake", place="OR\n9\u202e")
    for args in (["events", "list"], ["events", "show", ev.id], ["events", "search", "--text", "hernia"]):
        out = cli(*args)
        text = out.stdout.decode()
        assert out.returncode == 0 and "\x1b" not in text and "\r" not in text and "\u202e" not in text, text
        assert "Evil\\x1b[2J\\x1b[31mRed\\rFake" in text and "OR\\n9\\u202e" in text, text


# ---- 18.9: what a recording handle may delete ---------------------------------------------------

def test_store_for_handle_deletes_only_its_own_unlisted_objects_without_delete(admin, surgbox_home):
    ev = make_event(admin)
    admin.events.write_file(ev.id, "segment", "segment-0001.mp4", b"evidence")
    with Catalog(surgbox_home) as cat:
        op = cat.login("op1", "operator-password")
        with op.events.store_for(ev.id) as st:
            with st.writer("segment-0002.mp4.json", {"kind": "sidecar"}) as w:
                w.write(b"{}")
            st.delete("segment-0002.mp4.json")  # a recording replacing its own sidecar
            with pytest.raises(AccessDenied, match="may not delete"):
                st.delete("segment-0001.mp4")
            assert list(st.keys()) == ["segment-0001.mp4"]
        assert [f.name for f in admin.events.get(ev.id).files] == ["segment-0001.mp4"]
    with admin.events.store_for(ev.id) as st:  # with the delete permission: removed from the catalog too
        st.delete("segment-0001.mp4")
    assert admin.events.get(ev.id).files == ()


def test_the_tombstones_of_deleted_event_files_verify_with_the_homes_master_key(surgbox_home):
    """The catalog deletes through stores holding an event's key (or a throw-away one); the
    tombstones are signed with the home's master key (metadata_key), so `store scrub` with that key
    trusts them and removes the copy a mirror disk kept while it was away during the delete."""
    import json

    cfg = surgbox_home.config_path.read_text().replace('plugin = "local"', 'plugin = "mirror"').replace(
        'root = "store"', 'roots = ["disk-a", "disk-b"]')
    surgbox_home.config_path.write_text(cfg)
    for d in ("disk-a", "disk-b"):
        (surgbox_home.path / d).mkdir()  # the mounted disks
    with Catalog(surgbox_home) as cat:
        cat.create_store()
        s = cat.login("admin", "admin-password")
        ev = make_event(s)
        s.events.write_file(ev.id, "segment", "segment-0001.mp4", b"to be deleted" * 100)
        b, away = surgbox_home.path / "disk-b", surgbox_home.path / "disk-b.away"
        b.rename(away)  # the second disk is away during the delete
        s.events.delete(ev.id)
        away.rename(b)
    roots = ["--root", str(surgbox_home.path / "disk-a"), "--root", str(b), "--key-file", str(surgbox_home.master_key_path)]
    out = cli("store", "scrub", "--json", *roots)
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["ok"], (out.stdout, out.stderr)
    assert [p["kind"] for p in report["problems"]] == ["deleted"] and report["problems"][0]["repaired"], report
    assert not list((b / "objects").rglob("*")) or all(p.is_dir() for p in (b / "objects").rglob("*"))
