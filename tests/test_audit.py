"""Audit trail: hash chain, MACs and head seal; tampering directly in SQLite is caught by `surgbox audit verify`."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from surgbox.catalog import Catalog
from surgbox.catalog.audit import GENESIS, canonical_json, chain_hash

PATIENT = "Ingrid Vasquez-Holloway"


def cli(*args, user="admin", password="admin-password"):
    env = {**os.environ, "SURGBOX_USER": user, "SURGBOX_PASSWORD": password}
    return subprocess.run([sys.executable, "-m", "surgbox", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def trail(surgbox_home):
    """A home with some history: users, events, a search, a denial."""
    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        s.users.add("aud", "auditor", "auditor-pw")
        s.users.add("view", "viewer", "viewer-pw")
        for i in range(3):
            ev = s.events.create(patient=PATIENT, medical_record=f"MRN-{i}", procedure="Biopsy")
            s.events.start_event(ev.id)
        s.events.search(patient=PATIENT)
        v = cat.login("view", "viewer-pw")
        with pytest.raises(Exception):
            v.events.delete(ev.id)
        assert cat.audit.verify().ok
    return surgbox_home


def raw(home):
    c = sqlite3.connect(home.catalog_path, isolation_level=None)
    c.execute("DROP TRIGGER audit_append_only_update")  # an attacker with file access can
    c.execute("DROP TRIGGER audit_append_only_delete")
    return c


def test_records_chain_and_contain_no_phi(trail):
    with Catalog(trail) as cat:
        recs = cat.audit.records()
        assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
        prev = GENESIS
        for r in recs:
            body = {"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "target": r.target,
                    "result": r.result, "detail": dict(r.detail)}
            assert r.prev_hash == prev and r.hash == hashlib.sha256(prev + canonical_json(body)).digest()
            prev = r.hash
        actions = {r.action for r in recs}
        assert {"user.create", "user.login", "event.create", "event.start", "event.search", "event.delete"} <= actions
        assert any(r.result == "denied" and r.action == "event.delete" and r.actor == "view" for r in recs)
        dump = json.dumps([r.to_dict() for r in recs], ensure_ascii=False)
        assert PATIENT not in dump and "Vasquez" not in dump and "MRN-1" not in dump


def test_append_only_triggers_refuse_accidental_edits(trail):
    c = sqlite3.connect(trail.catalog_path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        c.execute("UPDATE audit SET actor = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        c.execute("DELETE FROM audit WHERE seq = 1")


def test_cli_verify_ok_and_show(trail):
    out = cli("audit", "verify", user="aud", password="auditor-pw")
    assert out.returncode == 0 and "intact" in out.stdout, out.stderr
    out = cli("audit", "show", "--action", "event.*", "--json", user="aud", password="auditor-pw")
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert lines and all(x["action"].startswith("event.") for x in lines)
    assert cli("audit", "verify", user="view", password="viewer-pw").returncode == 1  # viewers may not


def edit(c):
    c.execute("UPDATE audit SET result = 'ok' WHERE result = 'denied'")


def delete_middle(c):
    c.execute("DELETE FROM audit WHERE seq = 5")


def reorder(c):
    a = c.execute("SELECT at, actor, action, target, result, detail, prev_hash, hash, mac FROM audit WHERE seq = 6").fetchone()
    b = c.execute("SELECT at, actor, action, target, result, detail, prev_hash, hash, mac FROM audit WHERE seq = 7").fetchone()
    cols = "at = ?, actor = ?, action = ?, target = ?, result = ?, detail = ?, prev_hash = ?, hash = ?, mac = ?"
    c.execute(f"UPDATE audit SET {cols} WHERE seq = 6", b)
    c.execute(f"UPDATE audit SET {cols} WHERE seq = 7", a)


def truncate_tail(c):
    last = c.execute("SELECT max(seq) FROM audit").fetchone()[0]
    c.execute("DELETE FROM audit WHERE seq >= ?", (last - 1,))


def forge_chain(c):
    """Edit a record and recompute every SHA-256 after it: only the keyed MACs give it away."""
    c.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 3")
    prev = GENESIS
    for row in c.execute("SELECT seq, at, actor, action, target, result, detail FROM audit ORDER BY seq").fetchall():
        body = {"seq": row[0], "at": row[1], "actor": row[2], "action": row[3], "target": row[4], "result": row[5],
                "detail": json.loads(row[6])}
        h = chain_hash(prev, body)
        c.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, row[0]))
        prev = h


@pytest.mark.parametrize("tamper", [edit, delete_middle, reorder, truncate_tail, forge_chain])
def test_tampering_is_detected_by_cli_verify(trail, tamper):
    c = raw(trail)
    tamper(c)
    c.close()
    out = cli("audit", "verify", user="aud", password="auditor-pw")
    assert out.returncode == 1, out.stdout
    assert "TAMPERED" in out.stderr
    out = cli("audit", "verify", "--json", user="aud", password="auditor-pw")
    assert out.returncode == 1 and json.loads(out.stdout)["ok"] is False


def test_truncation_stays_detected_after_new_records(trail):
    c = raw(trail)
    truncate_tail(c)
    c.close()
    with Catalog(trail) as cat:
        for _ in range(3):
            cat.login("admin", "admin-password")  # appends records after the cut
        res = cat.audit.verify()
        assert not res.ok and any("expected" in p for p in res.problems)



APPENDER = r"""
import sys, time
from surgbox.catalog import Catalog
from surgbox.home import Home
with Catalog(Home(sys.argv[1])) as cat:
    print("ready", flush=True)
    end, i = time.monotonic() + float(sys.argv[2]), 0
    while time.monotonic() < end:
        cat.audit.record("-", "test.tick", None, "ok", {"i": i})
        i += 1
        time.sleep(float(sys.argv[3]))
    print(i, flush=True)
"""


def test_verify_while_another_process_appends_never_raises_a_false_alarm(surgbox_home):
    """verify() reads records, head seal and alarm in one snapshot: a concurrent writer (another
    process, committing record after record) never makes the seal look ahead of the chain."""
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(surgbox_home.path), "3", "0.001"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        runs, seen = 0, set()
        with Catalog(surgbox_home) as cat:
            while proc.poll() is None and runs < 2000:
                res = cat.audit.verify()
                assert res.ok, (runs, res.problems)
                runs += 1
                seen.add(res.records)
        appended = int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    # the verifications really overlapped the appends: they saw many different chain lengths
    assert appended > 50 and len(seen) > 10, (appended, runs, len(seen))
    with Catalog(surgbox_home) as cat:
        assert cat.audit.verify().ok


# ---- issue 18.1: the chain is anchored outside the database -------------------------------------

def verify_cli(home):
    out = cli("audit", "verify", "--json", user="aud", password="auditor-pw")
    return out.returncode, json.loads(out.stdout)


def test_attack_wipe_every_record_and_the_meta_rows_is_detected(trail):
    """Drop the append-only trigger, delete every audit row and the audit_head/audit_alarm meta
    rows (file access, no key): before the anchor, `audit verify` then said "intact: 1 records"."""
    c = raw(trail)
    c.execute("DELETE FROM audit")
    c.execute("DELETE FROM meta WHERE key IN ('audit_head', 'audit_alarm')")
    c.close()
    rc, res = verify_cli(trail)
    assert rc == 1 and not res["ok"], res
    assert any("anchor names record" in p or "no creation record" in p for p in res["problems"]), res


def test_attack_cut_the_tail_and_write_back_an_older_head_seal_is_detected(trail, tmp_path):
    """Keep an old copy of the catalog (a backup has one); later delete an event and add an admin
    with sqlite3, cut the audit chain back to the old copy's length and write back its head seal:
    every record left verifies, so only something outside the database can tell."""
    import argon2

    old = sqlite3.connect(trail.catalog_path).execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()[0]
    old_len = sqlite3.connect(trail.catalog_path).execute("SELECT max(seq) FROM audit").fetchone()[0]
    with Catalog(trail) as cat:  # life goes on: an event is created and recorded
        s = cat.login("admin", "admin-password")
        ev = s.events.create(patient=PATIENT, medical_record="MRN-9", procedure="Biopsy")
        s.events.start_event(ev.id)
    c = raw(trail)
    c.execute("PRAGMA foreign_keys = ON")
    c.execute("DELETE FROM events WHERE id = ?", (ev.id,))
    c.execute("INSERT INTO users(name, role, password_hash, created_at) VALUES ('mallory', 'admin', ?, '2026-01-01')",
              (argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("mallory-pw"),))
    c.execute("DELETE FROM audit WHERE seq > ?", (old_len,))
    c.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (old,))
    c.close()
    with Catalog(trail) as cat:  # the seal and the chain agree: the database alone looks intact
        assert cat.audit._read_seal(cat.db.conn)[0] == old_len
    rc, res = verify_cli(trail)
    assert rc == 1, res
    assert any("anchor names record" in p for p in res["problems"]), res
    assert any("'mallory' has no creation record" in p for p in res["problems"]), res


def test_missing_anchor_file_is_tampering(trail):
    trail.anchor_path.unlink()
    rc, res = verify_cli(trail)
    assert rc == 1 and any("anchor" in p and "missing" in p for p in res["problems"]), res


def test_forged_anchor_and_a_role_raised_with_sqlite_are_detected(trail):
    d = json.loads(trail.anchor_path.read_text())
    d["seq"] = 1
    trail.anchor_path.write_text(json.dumps(d))
    c = raw(trail)
    c.execute("UPDATE users SET role = 'admin' WHERE name = 'view'")
    c.close()
    rc, res = verify_cli(trail)
    assert rc == 1 and any("does not verify" in p for p in res["problems"]), res
    assert any("'view' has role admin but was created as viewer" in p for p in res["problems"]), res


def test_an_anchor_that_trails_the_chain_is_no_alarm(trail, tmp_path):
    """A crash between COMMIT and the anchor write leaves the anchor one transaction behind: the
    records after it verify (MACs), so that is no tampering. (Shown by putting an older anchor back.)"""
    older = trail.anchor_path.read_bytes()
    with Catalog(trail) as cat:
        cat.login("admin", "admin-password")
    trail.anchor_path.write_bytes(older)
    rc, res = verify_cli(trail)
    assert rc == 0 and res["ok"], res


def test_the_honest_limit_a_rollback_of_catalog_and_anchor_together(trail, tmp_path):
    """What stays undetectable (docs/security.md): every file of the catalog and its anchor put back
    to an older copy of both. Only a head noted elsewhere (`audit verify` prints it) shows that."""
    files = [trail.catalog_path, trail.anchor_path]
    with Catalog(trail) as cat:
        cat.db.checkpoint()
    saved = {p: p.read_bytes() for p in files}
    with Catalog(trail) as cat:
        s = cat.login("admin", "admin-password")
        s.events.create(patient=PATIENT, medical_record="MRN-10", procedure="Biopsy")
        cat.db.checkpoint()
        before = cat.audit.verify().records
    for p in [Path(f"{trail.catalog_path}-wal"), Path(f"{trail.catalog_path}-shm")]:
        p.unlink(missing_ok=True)
    for p, data in saved.items():
        p.write_bytes(data)
    rc, res = verify_cli(trail)
    assert rc == 0 and res["ok"], res
    assert res["records"] < before  # records were lost, and nothing inside the box can tell
