"""kill -9 during catalog writes leaves a consistent database: integrity and foreign keys hold, the audit
chain verifies, every committed file row points at a readable object with the recorded checksum."""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time

import pytest

from surgbox.catalog import Catalog, PasswordPolicy

WRITER = r"""
import sys
from surgbox.catalog import Catalog, PasswordPolicy
from surgbox.home import Home
cat = Catalog(Home(sys.argv[1]), policy=PasswordPolicy(time_cost=1, memory_kib=8192, parallelism=1)).open()
s = cat.login("admin", "admin-password")
i = 0
while True:
    ev = s.events.create(patient=f"Patient {i}", medical_record=f"MRN-{i}", procedure="Crash test", physicians=["Dr. K"])
    s.events.start_event(ev.id)
    s.events.write_file(ev.id, "segment", "segment-0001.mp4", bytes([i % 256]) * (50_000 + i))
    s.events.stop_event(ev.id, report=False)
    if i % 3 == 0:
        s.events.delete(ev.id)
    print(i, flush=True)
    i += 1
"""


def check(home):
    with Catalog(home, policy=PasswordPolicy(time_cost=1, memory_kib=8192, parallelism=1)) as cat:
        assert cat.db.check() == []
        res = cat.audit.verify()
        assert res.ok, res.problems
        db = cat.db
        assert db.query("SELECT id FROM events WHERE id NOT IN (SELECT event_id FROM event_keys)") == []
        s = cat.login("admin", "admin-password")
        files = [f for r in db.query("SELECT id FROM events") for f in s.events.get(r["id"]).files]
        assert len(files) == db.query_one("SELECT count(*) FROM files")[0]
        for f in files:
            with s.events.open_file(f.event_id, f.name) as r:
                data = r.read()
            assert len(data) == f.size and hashlib.sha256(data).hexdigest() == f.sha256
        return len(db.query("SELECT id FROM events")), len(files), res.records


@pytest.mark.slow
def test_kill_9_during_catalog_writes(surgbox_home, tmp_path):
    rng = random.Random(7)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    seen = []
    for round_ in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(surgbox_home.path)], stdout=subprocess.PIPE, text=True)
        target = rng.randint(2, 8)
        for _ in range(target):
            if not proc.stdout.readline():
                pytest.fail(f"writer died early (rc {proc.wait()})")
        time.sleep(rng.uniform(0, 0.05))  # land somewhere inside the next operation
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        seen.append(check(surgbox_home))
    events, files, records = zip(*seen)
    assert records == tuple(sorted(records)) and records[-1] > records[0]  # the history only grows
    assert files[-1] > 0
