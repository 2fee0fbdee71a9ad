"""surgbox._fs: atomic, durable file replacement; SURGBOX_HOME init writes its key and config durably."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from surgbox._fs import atomic_write, fsync_dir
from surgbox.catalog import install_home
from surgbox.home import Home

needs_proc_fd = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")


@pytest.fixture
def fsync_log(monkeypatch):
    """Every fsync of this process, as (path of the synced file or folder, and a hook's value),
    while still really syncing: a spy, not a stand-in."""
    real, log = os.fsync, []
    probe = {"value": lambda: None}

    def spy(fd):
        real(fd)
        log.append((os.readlink(f"/proc/self/fd/{fd}"), probe["value"]()))

    monkeypatch.setattr(os, "fsync", spy)
    return log, probe


def test_atomic_write_replaces_whole_file_with_mode_and_leaves_no_temp(tmp_path):
    p = tmp_path / "config.toml"
    p.write_bytes(b"old")
    assert atomic_write(p, b"new contents") == p
    assert p.read_bytes() == b"new contents"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600  # default: owner only, whatever the old mode was
    atomic_write(tmp_path / "pub.txt", b"x", mode=0o640)
    assert stat.S_IMODE((tmp_path / "pub.txt").stat().st_mode) == 0o640 & ~_umask()
    assert sorted(q.name for q in tmp_path.iterdir()) == ["config.toml", "pub.txt"]


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@needs_proc_fd
def test_atomic_write_syncs_data_then_folder(tmp_path, fsync_log):
    log, probe = fsync_log
    p = tmp_path / "f.bin"
    probe["value"] = lambda: p.exists()
    atomic_write(p, b"data")
    (data_path, renamed), (dir_path, renamed_after) = log
    assert Path(data_path).parent == tmp_path and Path(data_path).name.startswith(".f.bin.") and not renamed
    assert dir_path == str(tmp_path) and renamed_after  # the folder is synced after the rename


FILL_DISK = r"""
import resource, signal, sys
from surgbox._fs import atomic_write
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))   # writes past 64 KiB fail: a full disk
try:
    atomic_write(sys.argv[1], b"n" * 1_000_000)
except OSError as exc:
    print("failed", exc.errno)
"""


def test_a_failed_write_leaves_the_old_file_intact(tmp_path):
    p = tmp_path / "report.pdf"
    p.write_bytes(b"old report")
    out = subprocess.run([sys.executable, "-c", FILL_DISK, str(p)], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("failed"), out.stderr
    assert p.read_bytes() == b"old report"
    assert [q.name for q in tmp_path.iterdir()] == ["report.pdf"]  # the temporary file was removed


def test_fsync_dir_needs_an_existing_folder(tmp_path):
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")


@needs_proc_fd
def test_init_makes_key_and_config_durable_before_the_catalog_exists(tmp_path, fsync_log):
    """A power loss during `surgbox init` cannot leave a catalog whose key or config is lost: the key
    file, the config's data and the folder entries naming them are synced before catalog.db appears."""
    log, probe = fsync_log
    home = Home(tmp_path / "home")
    probe["value"] = lambda: home.catalog_path.exists()
    install_home(home, "admin", "admin-password")
    before = [p for p, catalog_exists in log if not catalog_exists]
    assert str(home.master_key_path) in before
    cfg = [i for i, p in enumerate(before) if Path(p).name.startswith(".config.toml.")]
    assert cfg, before  # the config's data, synced under its temporary name ...
    assert str(home.path) in before[cfg[0] + 1:]  # ... then the folder holding its new name
    assert str(home.keys_dir) in before and str(home.path.parent) in before
    assert home.config_path.is_file() and not list(home.path.glob(".config.toml.*"))
    assert stat.S_IMODE(home.config_path.stat().st_mode) == 0o600


# ---- AtomicFile: the streaming "verify, then rename" writer; create_new; stale partials -----------------

from surgbox._fs import AtomicFile, create_new, remove_stale_partials, write_all  # noqa: E402


def test_atomic_file_renames_only_after_a_clean_exit(tmp_path):
    p = tmp_path / "out.mp4"
    p.write_bytes(b"previous")
    with pytest.raises(ValueError):
        with AtomicFile(p) as f:
            f.write(b"half of it")
            tmp = next(q for q in tmp_path.iterdir() if q.name.endswith(".partial"))
            assert stat.S_IMODE(tmp.stat().st_mode) == 0o600 and tmp.name.startswith(".out.mp4.")
            raise ValueError("the data did not verify")
    assert p.read_bytes() == b"previous" and sorted(q.name for q in tmp_path.iterdir()) == ["out.mp4"]
    with AtomicFile(p) as f:
        write_all(f, memoryview(b"new data"))
    assert p.read_bytes() == b"new data" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert sorted(q.name for q in tmp_path.iterdir()) == ["out.mp4"]


def test_exclusive_atomic_file_never_replaces_a_file(tmp_path, monkeypatch):
    """``exclusive=True`` commits by a hard link: a file that exists, or appears while the data is
    written, is kept and FileExistsError names it; on a file system without hard links (FAT)
    it falls back to a check and a rename."""
    import errno

    import surgbox._fs as fs

    p = tmp_path / "out"
    with AtomicFile(p, exclusive=True) as f:
        f.write(b"new")
    assert p.read_bytes() == b"new" and sorted(q.name for q in tmp_path.iterdir()) == ["out"]
    with pytest.raises(FileExistsError) as exc:
        atomic_write(p, b"again", exclusive=True)
    assert exc.value.filename == str(p) and p.read_bytes() == b"new"
    late = tmp_path / "late"
    with pytest.raises(FileExistsError):
        with AtomicFile(late, exclusive=True) as f:
            f.write(b"mine")
            late.write_bytes(b"appeared meanwhile")
    assert late.read_bytes() == b"appeared meanwhile" and sorted(q.name for q in tmp_path.iterdir()) == ["late", "out"]

    def no_links(*a, **kw):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(fs.os, "link", no_links)
    with pytest.raises(FileExistsError):
        atomic_write(p, b"again", exclusive=True)
    atomic_write(tmp_path / "fat", b"on FAT", exclusive=True)
    assert p.read_bytes() == b"new" and (tmp_path / "fat").read_bytes() == b"on FAT"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["fat", "late", "out"]


def test_atomic_file_never_writes_through_a_planted_link(tmp_path, monkeypatch):
    """Someone who can guess the temporary name and plants a link there gets an error, not the plaintext."""
    import surgbox._fs as fs

    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    monkeypatch.setattr(fs.secrets, "token_hex", lambda n: "guessed0")
    (tmp_path / ".out.guessed0.partial").symlink_to(victim)
    with pytest.raises(FileExistsError):
        with AtomicFile(tmp_path / "out") as f:
            f.write(b"secret")
    assert victim.read_bytes() == b"untouched" and not (tmp_path / "out").exists()


LIVE_WRITER = """
import sys, time
from surgbox._fs import AtomicFile
f = AtomicFile(sys.argv[1])
f.open()
f.write(b"being written")
f.file.flush()
print(f.tmp, flush=True)
sys.stdin.readline()
"""


def test_stale_partials_of_dead_writers_are_removed_but_not_a_live_ones(tmp_path):
    out = tmp_path / "rec.mp4"
    live = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, str(out)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        live_tmp = Path(live.stdout.readline().strip())
        dead = tmp_path / ".rec.mp4.deadbeef.partial"
        dead.write_bytes(b"a killed run's plaintext")
        other = tmp_path / ".other.mp4.deadbeef.partial"
        other.write_bytes(b"another output's")
        assert remove_stale_partials(out) == [dead]
        assert live_tmp.exists() and other.exists() and not dead.exists()
        with AtomicFile(out) as f:  # opening does the same
            f.write(b"x")
        assert live_tmp.exists()
    finally:
        live.kill()
        live.wait(timeout=30)
    assert remove_stale_partials(out) == [live_tmp]  # its writer died: now it is stale


def test_create_new_is_exclusive_exact_mode_and_durable(tmp_path):
    p = create_new(tmp_path / "master.key", b"k" * 64, mode=0o600)
    assert p.read_bytes() == b"k" * 64 and stat.S_IMODE(p.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        create_new(p, b"other")
    assert p.read_bytes() == b"k" * 64
