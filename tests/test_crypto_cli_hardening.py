"""Issue 18 items 6 and 16 for ``surgbox crypt`` (and ``store get``): signals leave no partial output,
a later run removes a killed run's partial, a full disk and bad segment sizes give one line."""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_fixtures import small_tmpfs

from surgbox.crypto import KeyRing, MasterKey
from surgbox.crypto.streaming import encrypt_file

SLOW_SEGMENT = 57  # 1 plaintext byte in segment 0, 41 in the others: many segments, a slow (killable) run


def surgbox(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "surgbox", *args], capture_output=True, text=True, timeout=120, **kw)


def one_clean_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


@pytest.fixture
def keyed(tmp_path):
    key = MasterKey.generate()
    key.save(tmp_path / "k")
    return tmp_path, key


@pytest.fixture
def slow_ciphertext(keyed):
    """A ciphertext with tiny segments (~200k): decrypting it takes seconds, long enough to signal."""
    d, key = keyed
    (d / "plain").write_bytes(os.urandom(8_000_000))
    with open(d / "plain", "rb") as fin, open(d / "ct", "wb") as fout:
        encrypt_file(fin, fout, key.material, b"", segment_size=SLOW_SEGMENT)
    return d, key


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "surgbox", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def signalled(args: list[str], folder: Path, sig: int = signal.SIGTERM) -> str:
    """Run ``surgbox ARGS``, send ``sig`` once its output's partial file holds data; its stderr,
    after checking it exited 128 + sig without a traceback."""
    proc = start(*args)
    wait_for_partial(proc, folder)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig and "Traceback" not in err, err
    return err


def wait_for_partial(proc: subprocess.Popen, folder: Path, *, timeout: float = 60) -> Path:
    """The output's temporary file once it holds data, checking its mode (0600) on the way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in folder.iterdir() if p.name.endswith(".partial")]
        if found and found[0].stat().st_size > 0:
            assert stat.S_IMODE(found[0].stat().st_mode) == 0o600
            return found[0]
        assert proc.poll() is None, f"finished before it could be signalled: {proc.communicate()}"
        time.sleep(0.002)
    raise AssertionError("no partial output appeared")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_decrypt_leaves_no_plaintext_partial(slow_ciphertext, sig):
    d, _ = slow_ciphertext
    out = d / "out"
    out.mkdir()
    err = signalled(["crypt", "decrypt", "--key-file", str(d / "k"), "--segment-size", str(SLOW_SEGMENT), str(d / "ct"),
                     str(out / "plain.mp4")], out, sig)
    assert signal.Signals(sig).name in err
    assert list(out.iterdir()) == []  # no plaintext partial, no output


def test_sigterm_during_encrypt_leaves_no_ciphertext_partial(slow_ciphertext):
    d, _ = slow_ciphertext
    out = d / "out"
    out.mkdir()
    signalled(["crypt", "encrypt", "--key-file", str(d / "k"), "--segment-size", str(SLOW_SEGMENT), str(d / "plain"),
               str(out / "c.enc")], out)
    assert list(out.iterdir()) == []


def test_sigterm_during_store_get_leaves_no_plaintext_partial(keyed):
    from surgbox_ext.store import LocalStore

    d, key = keyed
    (d / "root").mkdir()
    with LocalStore(d / "root", keyring=KeyRing.of(key), init=True) as s, \
            s.writer("rec.mp4", segment_size=SLOW_SEGMENT) as w:
        w.write(os.urandom(4_000_000))
    out = d / "out"
    out.mkdir()
    signalled(["store", "get", "--root", str(d / "root"), "--key-file", str(d / "k"), "rec.mp4", str(out / "rec.mp4")], out)
    assert list(out.iterdir()) == []


def test_a_later_run_removes_the_partial_a_killed_run_left(slow_ciphertext):
    d, _ = slow_ciphertext
    out = d / "out"
    out.mkdir()
    args = ["crypt", "decrypt", "--key-file", str(d / "k"), "--segment-size", str(SLOW_SEGMENT), str(d / "ct"),
            str(out / "plain.mp4")]
    proc = start(*args)
    stale = wait_for_partial(proc, out)
    proc.kill()  # SIGKILL: nothing can clean up ...
    proc.communicate(timeout=60)
    assert stale.exists()
    (out / ".other.mp4.12345678.partial").write_bytes(b"another output's partial")  # not ours to remove
    done = surgbox(*args)  # ... so the next run writing the same output does
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and (out / "plain.mp4").read_bytes() == (d / "plain").read_bytes()
    assert partials(out) == [".other.mp4.12345678.partial"]


@pytest.mark.parametrize("value", ["56", "-5", "4294967296", "0"])
@pytest.mark.parametrize("command", ["encrypt", "decrypt", "salvage"])
def test_bad_segment_size_is_one_line(keyed, command, value):
    d, _ = keyed
    (d / "in").write_bytes(b"x" * 1000)
    proc = surgbox("crypt", command, "--key-file", str(d / "k"), "--segment-size", value, str(d / "in"), str(d / "o"))
    assert proc.returncode == 1
    line = one_clean_line(proc)
    assert f"--segment-size {value}" in line and "57 to 2147483647" in line
    assert not (d / "o").exists() and partials(d) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB tmpfs (needs root; skipped otherwise)."""
    yield from small_tmpfs(tmp_path, "1m")


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_full_disk_is_one_line_and_leaves_nothing(keyed, tiny_disk, command):
    d, key = keyed
    (d / "plain").write_bytes(os.urandom(3_000_000))
    with open(d / "plain", "rb") as fin, open(d / "ct", "wb") as fout:
        encrypt_file(fin, fout, key.material, b"")
    src = d / ("plain" if command == "encrypt" else "ct")
    proc = surgbox("crypt", command, "--key-file", str(d / "k"), str(src), str(tiny_disk / "out"))
    assert proc.returncode == 1
    line = one_clean_line(proc)
    assert "disk is full (ENOSPC)" in line and str(tiny_disk / "out") in line
    assert list(tiny_disk.iterdir()) == []


def _file_size_limit() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))  # writes past 1 MB fail (EFBIG)


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_file_size_limit_is_one_line_and_leaves_nothing(keyed, command):
    """Runs without root: the kernel's file size limit fails writes like a full disk does."""
    d, key = keyed
    (d / "plain").write_bytes(os.urandom(3_000_000))
    with open(d / "plain", "rb") as fin, open(d / "ct", "wb") as fout:
        encrypt_file(fin, fout, key.material, b"")
    (d / "out").mkdir()
    src = d / ("plain" if command == "encrypt" else "ct")
    proc = surgbox("crypt", command, "--key-file", str(d / "k"), str(src), str(d / "out" / "o"),
                   preexec_fn=_file_size_limit)
    assert proc.returncode == 1
    assert "EFBIG" in one_clean_line(proc)
    assert list((d / "out").iterdir()) == []


def test_output_into_a_missing_folder_is_one_line(keyed):
    d, _ = keyed
    (d / "in").write_bytes(b"minutes of surgery")
    proc = surgbox("crypt", "encrypt", "--key-file", str(d / "k"), str(d / "in"), str(d / "nope" / "c"))
    assert proc.returncode == 1 and "cannot create output" in one_clean_line(proc)
