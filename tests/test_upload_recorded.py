"""A recorded event (22 s of video, BIS data track and sidecars, snapshots, the PDF report) uploaded
with the CLI to each real server: WsgiDAV, ``rclone serve webdav`` and the Nextcloud v2 stand-in
(in several chunks). The remote bytes equal the store's objects (SHA-256)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from upload_fixtures import PASSWORD, USER, record_config, remote_objects, store_objects
from upload_servers import start_rclone, start_script

from surgbox.cli.demo import SimulatedBIS

SECONDS = 22


def cli(env, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "surgbox", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recorded")
    home = tmp / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGBOX_")}
    env.update(SURGBOX_HOME=str(home), SURGBOX_USER="admin", SURGBOX_PASSWORD="admin-password")
    assert cli(env, "init", "--admin-password", "admin-password").returncode == 0
    cfg = (home / "config.toml").read_text()
    (home / "config.toml").write_text(cfg.replace("min_length = 8", "min_length = 8\ntime_cost = 1\nmemory_kib = 8192\nparallelism = 1"))
    r = cli(env, "events", "create", "--patient", "Quirin Uploadtest", "--medical-record", "MRN-UP-22",
            "--procedure", "Laparoscopic appendectomy", "--physician", "Dr. Anna Beispiel", "--place", "OR 4")
    assert r.returncode == 0, r.stderr
    eid = r.stdout.strip().splitlines()[-1]
    with SimulatedBIS(rate=2.0, course_s=60) as sim:
        config = tmp / "rec.toml"
        config.write_text(record_config((320, 180), sim.url))
        proc = subprocess.Popen([sys.executable, "-m", "surgbox", "record", "--config", str(config), "--event", eid,
                                 "--duration", str(SECONDS)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        lines: list[str] = []
        started = threading.Event()

        def read() -> None:
            for line in proc.stderr:
                lines.append(line)
                started.set()  # the first status line: recording, SIGUSR1 handled

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert started.wait(180), "the recorder printed no status line"
        for _ in range(2):  # two snapshots (SIGUSR1, as a foot switch would)
            time.sleep(3)
            proc.send_signal(signal.SIGUSR1)
        proc.wait(600)
        reader.join(10)
        err = "".join(lines)
    assert proc.returncode == 0, err
    show = json.loads(cli(env, "events", "show", eid, "--json").stdout)
    return {"env": env, "home": home, "id": eid, "show": show, "tmp": tmp}


def test_the_recording_has_video_data_snapshots_and_a_report(recorded):
    kinds = [f["kind"] for f in recorded["show"]["files"]]
    assert "segment" in kinds and "data" in kinds and "report" in kinds, kinds
    assert kinds.count("snapshot") >= 1, kinds


@pytest.mark.parametrize("kind", ["wsgidav", "rclone", "nextcloud"])
def test_recorded_event_uploads_byte_for_byte(kind, recorded, tmp_path):
    env, eid = recorded["env"], recorded["id"]
    root = tmp_path / "srv"
    if kind == "rclone":
        server, url, folder = start_rclone(root, user=USER, password=PASSWORD), None, root / "or"
        url = f"{server.url}/or"
    elif kind == "wsgidav":
        server = start_script("wsgidav", root, user=USER, password=PASSWORD)
        url, folder = f"{server.url}/or", root / "or"
    else:
        server = start_script("nextcloud", root, user=USER, password=PASSWORD, log=tmp_path / "nc.log",
                              min_chunk=256 * 1024)
        url, folder = f"{server.url}/remote.php/dav/files/{USER}/or", root / "or"
    try:
        name = f"r-{kind}"
        r = cli({**env, "REMOTE_PW": PASSWORD}, "remote", "add", name, "--kind",
                "nextcloud" if kind == "nextcloud" else "webdav", "--url", url, "--user", USER,
                "--password-env", "REMOTE_PW", "--chunk-mib", "0.25")
        assert r.returncode == 0, r.stderr
        r = cli(env, "upload", "start", eid, "--remote", name)
        assert r.returncode == 0, r.stderr
        assert "verified" in r.stdout
    finally:
        server.kill()
    expected = store_objects(recorded["home"], eid)
    assert len(expected) == len(recorded["show"]["files"])
    assert remote_objects(folder, eid) == expected
    if kind == "nextcloud":
        chunks = [p for m, p, _ in server.lines() if m == "PUT" and "/uploads/" in p]
        assert len(chunks) >= 4  # the video went in several chunks
