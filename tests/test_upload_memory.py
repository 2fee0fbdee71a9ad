"""Memory stays bounded whatever the file size: uploading (and reading back) a 64 MB object costs
the uploading process about what a 1 MB one does (objects are streamed in 256 KiB pieces)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from upload_fixtures import PASSWORD, USER, add_remote, make_event, open_catalog
from upload_servers import start_script

PEAK = """
import resource, sys
from surgbox.cli import main
rc = main(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(rc)
"""


def _peak_kb(eid: str, remote: str) -> int:
    env = {**os.environ, "SURGBOX_USER": "admin", "SURGBOX_PASSWORD": "admin-password"}
    r = subprocess.run([sys.executable, "-c", PEAK, "upload", "start", eid, "--remote", remote, "--quiet"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return int(r.stderr.split("PEAK_KB")[1].split()[0])


@pytest.mark.parametrize("kind", ["webdav", "nextcloud"])
def test_peak_memory_does_not_grow_with_the_file(kind, surgbox_home, tmp_path):
    server = start_script("nextcloud" if kind == "nextcloud" else "wsgidav", tmp_path / "srv", user=USER,
                          password=PASSWORD, min_chunk=1 << 20)
    try:
        with open_catalog(surgbox_home) as cat:
            s = cat.login("admin", "admin-password")
            url = f"{server.url}/remote.php/dav/files/{USER}/box" if kind == "nextcloud" else f"{server.url}/box"
            add_remote(s, "small", kind, url, chunk_size=4 << 20)
            add_remote(s, "big", kind, url, chunk_size=4 << 20)
            small, big = make_event(s, sizes=(1_000_000,)), make_event(s, sizes=(64_000_000,))
        base, peak = _peak_kb(small, "small"), _peak_kb(big, "big")
    finally:
        server.kill()
    print(f"\n{kind}: peak RSS {base / 1024:.0f} MiB for 1 MB, {peak / 1024:.0f} MiB for 64 MB")
    assert peak - base < 24 * 1024, (base, peak)  # far less than the 64 MB the file holds
