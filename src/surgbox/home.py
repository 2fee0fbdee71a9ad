"""``SURGBOX_HOME``: where a surgbox installation keeps its catalog, keys, default store and config.

Layout (created by :func:`surgbox.catalog.install_home`, ``surgbox init``)::

    SURGBOX_HOME/                 mode 0700
      config.toml                 store plugin + options, user policy, players, report policy (no secrets, no PHI)
      catalog.db                  SQLite catalog (+ catalog.db-wal, catalog.db-shm while open)
      keys/                       mode 0700
        master.key                the master key: 64 hex characters, mode 0600
        audit-anchor              the audit trail's head, sealed (see docs/security.md), mode 0600
      store/                      default store root (encrypted objects; see docs/storage.md)

:class:`Home` is a value: the paths, and once :meth:`Home.load` read it, the parsed settings. It
creates and changes nothing. ``SURGBOX_HOME`` defaults to the per-user data directory
(``platformdirs.user_data_dir("surgbox")``, e.g. ``~/.local/share/surgbox`` on Linux). The master
key encrypts every stored object (through a per-event data key it wraps) and every PHI field of
the catalog: back it up separately from the data, and keep it off the disks that hold the store.

>>> home = Home("/srv/surgbox")
>>> home.catalog_path.name, home.anchor_path.parent.name
('catalog.db', 'keys')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from ._toml import load_toml
from .crypto.keys import load_key
from .errors import ConfigError

ENV = "SURGBOX_HOME"
CONFIG_NAME = "config.toml"
CATALOG_NAME = "catalog.db"
KEYS_DIR = "keys"
MASTER_KEY_NAME = "master.key"
ANCHOR_NAME = "audit-anchor"
STORE_DIR = "store"

DEFAULT_CONFIG = """\
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

[play]
# The only players a user without the export permission may stream a recording into
# (`surgbox events play`), exactly as written here. Absolute paths are safest.
players = ["ffplay -autoexit -loglevel error -i pipe:0", "mpv --no-config --really-quiet -"]

[report]
# Sources (names) or layout slot roles whose snapshots show people: faces are blurred before a
# snapshot goes into a PDF report (docs/catalog.md "PDF report").
deidentify = ["room_camera"]
"""

_SECTIONS = {"store": None, "users": None, "play": {"players"}, "report": {"deidentify", "detector", "threshold"},
             "upload": {"deidentified", "auto"}}


def default_home() -> Path:
    """``$SURGBOX_HOME`` if set, else the per-user data directory."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("surgbox", appauthor=False))


@attrs.frozen
class Home:
    """A surgbox home directory: paths, and ``settings`` (``config.toml``) once :meth:`load` read them.
    Constructing one reads and creates nothing."""

    path: Path = attrs.field(converter=lambda p: Path(p).expanduser().absolute())
    settings: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def from_env(cls, path: str | os.PathLike[str] | None = None) -> Home:
        """``path`` if given, else ``$SURGBOX_HOME``, else the per-user data directory (not read yet)."""
        return cls(path if path is not None else default_home())

    def load(self) -> Home:
        """This home with its ``config.toml`` parsed and checked (unknown sections refused)."""
        config = load_toml(self.config_path, what="home configuration",
                           hint=f"run `surgbox init` (or set {ENV} to an initialized home)")
        for section, value in config.items():
            if section not in _SECTIONS or not isinstance(value, dict):
                raise ConfigError(f"{self.config_path}: unknown or malformed section [{section}]; "
                                  f"known: {', '.join(f'[{s}]' for s in _SECTIONS)}")
            known = _SECTIONS[section]
            if known is not None and set(value) - known:
                raise ConfigError(f"{self.config_path}: unknown [{section}] settings {sorted(set(value) - known)}; "
                                  f"known: {sorted(known)}")
        return attrs.evolve(self, settings=config)

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
    def anchor_path(self) -> Path:
        return self.keys_dir / ANCHOR_NAME

    @property
    def default_store_root(self) -> Path:
        return self.path / STORE_DIR

    def exists(self) -> bool:
        """True when the home holds a catalog, a master key or a config."""
        return any(p.exists() for p in (self.catalog_path, self.master_key_path, self.config_path))

    def config(self) -> Mapping[str, Any]:
        """The parsed ``config.toml`` (the loaded settings, else read now)."""
        return self.settings if self.settings is not None else self.load().settings  # type: ignore[return-value]

    def _section(self, name: str) -> dict[str, Any]:
        return dict(self.config().get(name) or {})

    def store_settings(self) -> tuple[str, dict[str, Any]]:
        """``(plugin name, options)`` of the configured store, relative roots made absolute."""
        store = self._section("store")
        plugin = str(store.pop("plugin", "local"))
        if "root" in store:
            store["root"] = str(self.path / Path(store["root"]).expanduser())
        if "roots" in store:
            if not isinstance(store["roots"], list) or not store["roots"]:
                raise ConfigError(f"{self.config_path}: [store] roots must be a non-empty list of directories")
            store["roots"] = [str(self.path / Path(r).expanduser()) for r in store["roots"]]
        return plugin, store

    def user_settings(self) -> Mapping[str, Any]:
        """``[users]``: the lockout and password policy (:class:`surgbox.catalog.PasswordPolicy`)."""
        return self._section("users")

    def play_settings(self) -> Mapping[str, Any]:
        """``[play]``: ``players``, the command lines users without ``export`` may play through."""
        return self._section("play")

    def report_settings(self) -> Mapping[str, Any]:
        """``[report]``: ``deidentify``, the sources whose snapshots are blurred in reports."""
        return self._section("report")

    def upload_settings(self) -> Mapping[str, Any]:
        """``[upload]``: ``deidentified`` (allow de-identified plaintext uploads for sharing, default
        false) and ``auto`` (a remote every event recording is uploaded to when it stops; docs/upload.md)."""
        return self._section("upload")

    def master_key(self) -> bytes:
        """The 32-byte master key from ``keys/master.key``."""
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
