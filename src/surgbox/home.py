"""``SURGBOX_HOME``: where a surgbox installation keeps its catalog, keys, default store and config.

Layout (created by :meth:`Home.init`, ``surgbox init``)::

    SURGBOX_HOME/                 mode 0700
      config.toml                 store plugin + options, user policy (no secrets, no PHI)
      catalog.db                  SQLite catalog (+ catalog.db-wal, catalog.db-shm while open)
      keys/                       mode 0700
        master.key                the master key: 64 hex characters, mode 0600
      store/                      default store root (encrypted objects; see docs/storage.md)

``SURGBOX_HOME`` defaults to the per-user data directory (``platformdirs.user_data_dir("surgbox")``,
e.g. ``~/.local/share/surgbox`` on Linux). The master key encrypts every stored object (through a
per-event data key it wraps) and every PHI field of the catalog: back it up separately from the
data, and keep it off the disks that hold the store.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs

from ._fs import atomic_write, fsync_dir
from .errors import ConfigError, SurgboxError

log = logging.getLogger(__name__)

ENV = "SURGBOX_HOME"
CONFIG_NAME = "config.toml"
CATALOG_NAME = "catalog.db"
KEYS_DIR = "keys"
MASTER_KEY_NAME = "master.key"
STORE_DIR = "store"

_DEFAULT_CONFIG = """\
# surgbox home configuration (see docs/catalog.md). No secrets and no patient data here.

[store]
# Store plugin for recordings, snapshots, data tracks and reports ("local" or "mirror").
plugin = "local"
# "local": one root; "mirror": roots = ["/mnt/disk-a/surgbox", "/mnt/disk-b/surgbox"].
# Relative paths are relative to SURGBOX_HOME.
root = "store"

[users]
# Wrong passwords in a row before an account locks, and for how long.
max_failures = 5
lockout_minutes = 15
min_length = 8
"""


def default_home() -> Path:
    """``$SURGBOX_HOME`` if set, else the per-user data directory."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("surgbox", appauthor=False))


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; run `surgbox init` (or set {ENV} to an initialized home)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the file") from None


@attrs.frozen
class Home:
    """A surgbox home directory. Paths only: nothing is read or created until a method asks."""

    path: Path = attrs.field(converter=lambda p: Path(p).expanduser().absolute())

    @classmethod
    def from_env(cls, path: str | os.PathLike[str] | None = None) -> Home:
        """``path`` if given, else ``$SURGBOX_HOME``, else the per-user data directory."""
        return cls(path if path is not None else default_home())

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def catalog_path(self) -> Path:
        return self.path / CATALOG_NAME

    @property
    def keys_dir(self) -> Path:
        return self.path / KEYS_DIR

    @property
    def master_key_path(self) -> Path:
        return self.keys_dir / MASTER_KEY_NAME

    @property
    def default_store_root(self) -> Path:
        return self.path / STORE_DIR

    def exists(self) -> bool:
        """True when the home holds a catalog, a master key or a config."""
        return any(p.exists() for p in (self.catalog_path, self.master_key_path, self.config_path))

    def config(self) -> dict[str, Any]:
        """The parsed ``config.toml``."""
        return _load_toml(self.config_path)

    def store_settings(self) -> tuple[str, dict[str, Any]]:
        """``(plugin name, options)`` of the configured store, relative roots made absolute."""
        store = dict(self.config().get("store") or {})
        plugin = str(store.pop("plugin", "local"))
        if "root" in store:
            store["root"] = str(self.path / Path(store["root"]).expanduser())
        if "roots" in store:
            if not isinstance(store["roots"], list) or not store["roots"]:
                raise ConfigError(f"{self.config_path}: [store] roots must be a non-empty list of directories")
            store["roots"] = [str(self.path / Path(r).expanduser()) for r in store["roots"]]
        return plugin, store

    def user_settings(self) -> Mapping[str, Any]:
        return dict(self.config().get("users") or {})

    def master_key(self) -> bytes:
        """The 32-byte master key from ``keys/master.key``."""
        from .crypto.keys import load_key

        if not self.master_key_path.exists():
            raise ConfigError(f"master key {self.master_key_path} is missing; restore it from your key backup "
                              f"(or run `surgbox init` for a new, empty home)")
        return load_key(self.master_key_path).material

    def contains(self, path: str | os.PathLike[str]) -> bool:
        """True when ``path`` lies inside this home (exports must not: they hold plaintext)."""
        p = Path(path).expanduser().absolute().resolve()
        try:
            p.relative_to(self.path.resolve())
            return True
        except ValueError:
            return False

    def init(self, admin: str, admin_password: str, *, force: bool = False, plugins: Any = None) -> None:
        """Create the layout, a new master key, the default store and the catalog with its first
        admin. Refuses an existing home unless ``force``, which first moves the old catalog, key
        and config aside into ``replaced-<UTC time>/`` (nothing is deleted)."""
        from .catalog.session import Catalog
        from .crypto.keys import MasterKey
        from .catalog.users import PasswordPolicy

        from .catalog.session import check_user_name

        check_user_name(admin)  # before anything is created
        try:
            PasswordPolicy().check_password(admin_password)
        except ValueError as exc:
            raise ConfigError(f"admin password: {exc}") from None
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} is a file, not a folder; choose a folder for SURGBOX_HOME")
        if self.exists():
            if not force:
                raise SurgboxError(
                    f"{self.path} already holds a surgbox home (catalog, key or config); refusing to replace it. "
                    f"Use another SURGBOX_HOME, or --force to move the old files aside into {self.path}/replaced-*/"
                )
            self._move_aside()
        try:
            for d in (self.path, self.keys_dir, self.default_store_root):
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(d, 0o700)
            # The key and the config are on disk (data and folder entries) before the catalog that
            # needs them is created: a power loss can never leave a catalog without its key.
            MasterKey.generate().save(self.master_key_path)  # fsyncs the key file
            for d in (self.keys_dir, self.path, self.path.parent):
                fsync_dir(d)
            atomic_write(self.config_path, _DEFAULT_CONFIG.encode("utf-8"), mode=0o600)
        except OSError as exc:
            raise ConfigError(f"cannot create the surgbox home {self.path}: {exc.strerror or exc}"
                              f"{f' ({exc.filename})' if exc.filename else ''}; choose a writable folder "
                              f"(--home DIR or SURGBOX_HOME)") from None
        with Catalog(self, plugins=plugins, create=True) as catalog:
            catalog.create_store()
            catalog.bootstrap_admin(admin, admin_password)
        log.info("initialized surgbox home %s", self.path)

    def _move_aside(self) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        dest = self.path / f"replaced-{stamp}"
        dest.mkdir(mode=0o700)
        for p in (self.catalog_path, Path(f"{self.catalog_path}-wal"), Path(f"{self.catalog_path}-shm"),
                  self.config_path, self.keys_dir):
            if p.exists():
                shutil.move(str(p), str(dest / p.name))
        fsync_dir(dest)
        fsync_dir(self.path)
        log.warning("moved the previous catalog, keys and config of %s to %s", self.path, dest)
        return dest
