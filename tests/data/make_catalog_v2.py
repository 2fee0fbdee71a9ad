"""Make tests/data/catalog-v2.tar.gz with the code of main at schema version 2.

Run with a checkout of that code (commit f8815c8): `python make_catalog_v2.py catalog-v2.tar.gz /tmp/v2home`."""
import io, os, sys, tarfile
from pathlib import Path
from surgbox.catalog import install_home, Catalog
import surgbox.catalog.db as db
assert db.SCHEMA_VERSION == 2
out = Path(sys.argv[1]); home_dir = Path(sys.argv[2])
home = install_home(home_dir, "admin", "admin-password")
cfg = home.config_path.read_text()
home.config_path.write_text(cfg.replace("min_length = 8", "min_length = 8\ntime_cost = 1\nmemory_kib = 8192\nparallelism = 1"))
with Catalog(home) as cat:
    s = cat.login("admin", "admin-password")
    s.users.add("op1", "operator", "op1-password")
    ev = s.events.create(patient="Vera Vorversion", medical_record="MRN-V2-1", procedure="Made by schema v2",
                         physicians=["Dr. Alt"], place="OR 2")
    s.events.start_event(ev.id)
    s.events.write_file(ev.id, "segment", "segment-0001.mp4", bytes(range(256)) * 300)
    s.events.write_file(ev.id, "snapshot", "snapshot-0001.jpg", b"\xff\xd8" + bytes(2000) + b"\xff\xd9")
    s.events.stop_event(ev.id, report=False)
    (home_dir / "event-id").write_text(ev.id)
with tarfile.open(out, "w:gz") as tar:
    tar.add(home_dir, arcname="home")
print(ev.id)
