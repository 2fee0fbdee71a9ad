"""``surgbox remote``: credentials encrypted in the catalog (never in clear under SURGBOX_HOME, in
logs or process arguments), TLS verified (CA file, loud --insecure), one-line errors, admin only."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from upload_fixtures import PASSWORD, USER
from upload_servers import free_port, start_rclone, start_script


def cli(*args: str, user: str = "admin", password: str = "admin-password", env: dict | None = None):
    e = {**os.environ, "SURGBOX_USER": user, "SURGBOX_PASSWORD": password, **(env or {})}
    return subprocess.run([sys.executable, "-m", "surgbox", *args], capture_output=True, text=True, env=e, timeout=120)


def one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("surgbox: error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "surgbox test server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def scan_home(home: Path, secret: str) -> list[str]:
    needles = [secret.encode(e) for e in ("utf-8", "utf-16-le")]
    return [str(p) for p in home.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


@pytest.fixture
def dav(tmp_path):
    s = start_script("wsgidav", tmp_path / "dav", user=USER, password=PASSWORD, log=tmp_path / "dav.log")
    yield s
    s.kill()


def test_add_list_test_remove_and_no_password_in_clear(surgbox_home, dav, tmp_path):
    r = cli("remote", "add", "box-dav", "--url", f"{dav.url}/surgbox", "--kind", "webdav", "--user", USER,
            "--password-env", "REMOTE_PW", env={"REMOTE_PW": PASSWORD})
    assert r.returncode == 0, r.stderr
    r = cli("-vv", "remote", "test", "box-dav")
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
    assert PASSWORD not in r.stdout + r.stderr  # not in the debug log either
    assert "PUT" in "".join(m for m, _, _ in dav.lines()) and not list((tmp_path / "dav" / "surgbox" / ".surgbox-probe").glob("*"))
    listed = json.loads(cli("remote", "list", "--json").stdout)
    assert listed == [{"name": "box-dav", "kind": "webdav", "url": f"{dav.url}/surgbox", "user": USER, "ca_file": None,
                       "insecure": False, "bandwidth": None, "chunk_size": 10 * 1024 * 1024}]
    table = cli("remote", "list").stdout
    tls = "system CAs" if dav.url.startswith("https://") else "none (http)"  # no certificate on plain HTTP
    assert "box-dav" in table and tls in table and PASSWORD not in table
    pw_file = tmp_path / "pw.txt"
    pw_file.write_text(PASSWORD + "\n")
    pw_file.chmod(0o600)
    r = cli("remote", "add", "box-dav", "--url", f"{dav.url}/other", "--kind", "webdav", "--user", USER,
            "--password-file", str(pw_file), "--bandwidth", "2.5")
    one_line_error(r, "exists already", "--replace")
    r = cli("remote", "add", "box-dav", "--url", f"{dav.url}/other", "--kind", "webdav", "--user", USER,
            "--password-file", str(pw_file), "--bandwidth", "2.5", "--replace")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert cli("remote", "test", "box-dav").returncode == 0
    audit = cli("audit", "show", "--json")
    assert "remote.add" in audit.stdout and PASSWORD not in audit.stdout
    assert scan_home(surgbox_home.path, PASSWORD) == []
    assert cli("remote", "remove", "box-dav").returncode == 0
    one_line_error(cli("remote", "test", "box-dav"), "no remote 'box-dav'")


def test_bad_input_and_server_failures_are_one_line(surgbox_home, dav, tmp_path):
    base = ["remote", "add", "x", "--kind", "webdav", "--user", USER, "--password-env", "REMOTE_PW"]
    env = {"REMOTE_PW": PASSWORD}
    one_line_error(cli(*base, "--url", "ftp://host/x", env=env), "https://")
    one_line_error(cli(*base, "--url", f"http://{USER}:{PASSWORD}@127.0.0.1/x", env=env), "must not hold a user name")
    one_line_error(cli(*base, "--url", f"{dav.url}/x"), "REMOTE_PW is not set")
    one_line_error(cli(*base, "--url", f"{dav.url}/x", "--ca-file", str(tmp_path / "none.pem"), env=env), "CA file")
    one_line_error(cli(*base, "--url", f"{dav.url}/x", "--bandwidth", "-1", env=env), "bandwidth")
    loose = tmp_path / "loose-pw"
    loose.write_text(PASSWORD)
    loose.chmod(0o644)
    one_line_error(cli("remote", "add", "x", "--kind", "webdav", "--user", USER, "--url", f"{dav.url}/x",
                       "--password-file", str(loose)), "other users", "chmod 600")
    one_line_error(cli("remote", "add", "x", "--kind", "webdav", "--user", USER, "--url", f"{dav.url}/x"),
                   "--password-env VAR or --password-file FILE")
    # an integer beyond 64 bits is refused by the CLI's argument plumbing (a usage error, exit 2)
    r = cli("upload", "show", "99999999999999999999")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "too large" in r.stderr and "Traceback" not in r.stderr
    one_line_error(cli("remote", "test", "NO_SUCH"), "not a remote name")
    one_line_error(cli("remote", "add", "Bad Name!", "--kind", "webdav", "--user", USER, "--password-env", "REMOTE_PW",
                       "--url", f"{dav.url}/x", env=env), "remote name")
    assert cli(*base, "--url", f"{dav.url}/x", env={"REMOTE_PW": "not-the-password"}).returncode == 0
    one_line_error(cli("remote", "test", "x"), "HTTP 401", "app password")
    port = free_port()  # nothing listens there
    assert cli(*base, "--url", f"http://127.0.0.1:{port}/x", "--replace", env=env).returncode == 0
    one_line_error(cli("remote", "test", "x"), "cannot reach 127.0.0.1")
    assert scan_home(surgbox_home.path, PASSWORD) == [] and scan_home(surgbox_home.path, "not-the-password") == []


def test_tls_is_verified_with_a_ca_file_and_insecure_is_loud(surgbox_home, tmp_path):
    cert, key = self_signed(tmp_path)
    rc = start_rclone(tmp_path / "tls", user=USER, password=PASSWORD, cert=cert, key=key)
    try:
        base = ["remote", "add", "tls", "--kind", "webdav", "--user", USER, "--password-env", "REMOTE_PW",
                "--url", f"{rc.url}/surgbox", "--replace"]
        env = {"REMOTE_PW": PASSWORD}
        assert cli(*base, env=env).returncode == 0
        one_line_error(cli("remote", "test", "tls"), "TLS certificate of 127.0.0.1 does not verify", "--ca-file")
        assert cli(*base, "--ca-file", str(cert), env=env).returncode == 0
        r = cli("remote", "test", "tls")
        assert r.returncode == 0, r.stderr
        r = cli(*base, "--insecure", env=env)
        assert r.returncode == 0 and "WARNING" in r.stderr and "does not verify TLS" in r.stderr
        r = cli("remote", "test", "tls")
        assert r.returncode == 0 and "WARNING" in r.stderr
        assert "NOT VERIFIED" in cli("remote", "list").stdout
    finally:
        rc.kill()


def test_only_an_admin_adds_remotes_and_viewers_cannot_use_them(surgbox_home, dav):
    for name, role in (("op1", "operator"), ("view1", "viewer")):
        assert cli("users", "add", name, "--role", role, "--password", f"{name}-password").returncode == 0
    args = ["remote", "add", "d", "--kind", "webdav", "--user", USER, "--password-env", "REMOTE_PW", "--url", f"{dav.url}/x"]
    one_line_error(cli(*args, user="op1", password="op1-password", env={"REMOTE_PW": PASSWORD}), "needs an admin")
    assert cli(*args, env={"REMOTE_PW": PASSWORD}).returncode == 0
    assert cli("remote", "test", "d", user="op1", password="op1-password").returncode == 0
    one_line_error(cli("remote", "list", user="view1", password="view1-password"), "may not upload")
    one_line_error(cli("remote", "remove", "d", user="op1", password="op1-password"), "needs an admin")
