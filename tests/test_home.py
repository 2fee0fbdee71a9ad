"""SURGBOX_HOME: layout, permissions, `surgbox init` refusing to clobber, --force moving aside."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from surgbox.errors import SurgboxError
from surgbox.catalog import install_home
from surgbox.home import Home, default_home


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "surgbox", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_default_home_is_env_or_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SURGBOX_HOME", str(tmp_path / "x"))
    assert default_home() == tmp_path / "x"
    monkeypatch.delenv("SURGBOX_HOME")
    import platformdirs

    assert default_home() == Path(platformdirs.user_data_dir("surgbox", appauthor=False))
    assert Home.from_env("rel").path == Path("rel").absolute()


def test_init_creates_private_layout(surgbox_home):
    h = surgbox_home
    assert mode(h.path) == 0o700 and mode(h.keys_dir) == 0o700 and mode(h.default_store_root) == 0o700
    assert mode(h.master_key_path) == 0o600
    assert mode(h.catalog_path) & 0o077 == 0
    assert len(h.master_key()) == 32
    assert (h.default_store_root / "surgbox-store.json").is_file()
    plugin, opts = h.store_settings()
    assert plugin == "local" and opts["root"] == str(h.default_store_root)
    from surgbox.catalog import Catalog

    with Catalog(h) as cat:
        s = cat.login("admin", "admin-password")
        assert s.user.role == "admin"


def test_init_refuses_existing_home_and_force_moves_aside(surgbox_home):
    h = surgbox_home
    old_key = h.master_key()
    with pytest.raises(SurgboxError, match="refusing to replace"):
        install_home(h, "admin", "another-password")
    assert h.master_key() == old_key
    out = run_cli("init", "--admin-password", "another-password")
    assert out.returncode == 1 and "refusing to replace" in out.stderr
    assert h.master_key() == old_key
    out = run_cli("init", "--admin", "root", "--admin-password", "another-password", "--force")
    assert out.returncode == 0, out.stderr
    assert h.master_key() != old_key
    aside = [p for p in h.path.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1
    assert (aside[0] / "keys" / "master.key").is_file() and (aside[0] / "catalog.db").is_file()
    from surgbox.catalog import AuthenticationError, Catalog

    with Catalog(h) as cat:
        assert cat.login("root", "another-password").user.role == "admin"
        with pytest.raises(AuthenticationError):
            cat.login("admin", "admin-password")


def test_init_cli_rejects_short_password(tmp_path):
    out = run_cli("init", "--home", str(tmp_path / "h"), "--admin-password", "short")
    assert out.returncode == 1 and "at least 8" in out.stderr


def test_commands_without_home_say_how_to_fix(tmp_path):
    out = run_cli("events", "list", "--home", str(tmp_path / "none"), env={"SURGBOX_USER": "a", "SURGBOX_PASSWORD": "b"})
    assert out.returncode == 1 and "surgbox init" in out.stderr
