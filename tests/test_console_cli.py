"""``surgbox serve`` as a real subprocess: one-line errors, the kiosk command line, clean SIGTERM;
HTTPS with a self-signed certificate gives Secure cookies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("starlette")

from console_support import Client, make_home  # noqa: E402


def surgbox(*args: str, home, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "SURGBOX_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "surgbox", *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return make_home(tmp_path_factory.mktemp("console-cli") / "home")


@pytest.mark.parametrize("args, message", [
    (("--host", "0.0.0.0"), "without TLS would send passwords"),
    (("--launch",), "--launch starts the kiosk browser"),
    (("--config", "nope.toml"), "nope.toml does not exist"),
    (("--tls-cert", "c.pem", "--host", "10.0.0.1"), "TLS needs both"),
    (("--tls-cert", "c.pem", "--tls-key", "k.pem"), "TLS file c.pem does not exist"),
])
def test_bad_options_get_one_line(home, args, message):
    r = surgbox("serve", "--port", "0", *args, home=home.path)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert r.stderr.startswith("surgbox: error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [("--port", "99999"), ("--port", "http"), ("--idle-minutes", "0"), ("--idle-minutes", "nan")])
def test_bad_numbers_are_refused_by_the_parser(home, args):
    r = surgbox("serve", *args, home=home.path)
    assert r.returncode == 2 and "must be" in r.stderr and "Traceback" not in r.stderr


def test_not_a_home(tmp_path):
    r = surgbox("serve", "--port", "0", home=tmp_path / "nothing")
    assert r.returncode == 1 and "is not a surgbox home" in r.stderr


def test_serves_prints_the_kiosk_command_and_stops_on_sigterm(home):
    env = {**os.environ, "SURGBOX_HOME": str(home.path)}
    proc = subprocess.Popen([sys.executable, "-m", "surgbox", "serve", "--port", "0", "--kiosk"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = re.search(r"console on (http://127\.0\.0\.1:\d+)", proc.stderr.readline())[1]
        kiosk = proc.stdout.readline().split()
        assert kiosk[:2] == ["chromium", "--kiosk"] and f"--app={url}" in kiosk
        assert Client(url).login("olga").status_code == 303
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def _self_signed(folder, stem: str = "") -> None:
    """``c{stem}.pem`` and ``k{stem}.pem`` in ``folder``: a self-signed localhost certificate and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (folder / f"c{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"k{stem}.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))


def test_a_bad_certificate_or_key_is_named(home, tmp_path):
    """A key that is not the certificate's, or a file that is no PEM, gave only "the console did
    not start on https://..." (the server thread died on it): now one line naming both files."""
    _self_signed(tmp_path)
    _self_signed(tmp_path, "2")
    (tmp_path / "not.pem").write_text("not a certificate")
    for cert, key in (("c.pem", "k2.pem"), ("not.pem", "k.pem"), ("c.pem", "not.pem")):
        r = surgbox("serve", "--port", "0", "--tls-cert", str(tmp_path / cert), "--tls-key", str(tmp_path / key),
                    home=home.path)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"--tls-cert {tmp_path / cert} / --tls-key {tmp_path / key} are not a PEM certificate" in r.stderr


def test_an_export_folder_inside_the_home_is_refused_at_start(home):
    """The console started with --export-dir inside SURGBOX_HOME, and every export there failed
    later (plaintext must not rest in the home): refused before serving."""
    inside = home.path / "exports"
    inside.mkdir(exist_ok=True)
    r = surgbox("serve", "--port", "0", "--export-dir", str(inside), home=home.path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "lies inside SURGBOX_HOME" in r.stderr, r.stderr


def test_https_sets_secure_cookies(home, tmp_path):
    from surgbox.console import ConsoleServer

    _self_signed(tmp_path)
    server = ConsoleServer.for_home(home.path, port=0, certfile=str(tmp_path / "c.pem"), keyfile=str(tmp_path / "k.pem")).start()
    try:
        assert server.url.startswith("https://")
        c = Client(server.url)
        c.http = type(c.http)(base_url=server.url, verify=False, follow_redirects=False, timeout=60)
        r = c.login("olga")
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
    finally:
        server.stop()
