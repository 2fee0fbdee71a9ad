"""Installing a surgbox home (``surgbox init``): folders, master key, config, store, catalog, first admin.

>>> from surgbox.catalog import install_home
>>> home = install_home("/srv/surgbox", "admin", "a long admin password")   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._fs import atomic_write, fsync_dir
from ..crypto.keys import MasterKey
from ..errors import ConfigError, SurgboxError
from ..home import DEFAULT_CONFIG, Home
from .accounts import bootstrap_admin, check_user_name
from .session import Catalog
from .users import PasswordPolicy

log = logging.getLogger(__name__)


def install_home(home: Home | str | os.PathLike[str], admin: str, admin_password: str, *, force: bool = False,
                 plugins: Any = None) -> Home:
    """Create the layout, a new master key, the default config and store, and the catalog with its
    first admin; returns the (loaded) :class:`~surgbox.home.Home`. Refuses an existing home unless
    ``force``, which first moves the old catalog, keys and config aside into
    ``replaced-<UTC time>/`` (nothing is deleted). The admin name and password are checked before
    anything is created. The key and the config are on disk (data and folder entries fsynced)
    before the catalog that needs them is created: a power loss never leaves a catalog without
    its key."""
    home = home if isinstance(home, Home) else Home(home)
    check_user_name(admin)
    try:
        PasswordPolicy().check_password(admin_password)
    except ValueError as exc:
        raise ConfigError(f"admin password: {exc}") from None
    if home.path.exists() and not home.path.is_dir():
        raise ConfigError(f"{home.path} is a file, not a folder; choose a folder for SURGBOX_HOME")
    if home.exists():
        if not force:
            raise SurgboxError(
                f"{home.path} already holds a surgbox home (catalog, key or config); refusing to replace it. "
                f"Use another SURGBOX_HOME, or --force to move the old files aside into {home.path}/replaced-*/"
            )
        move_aside(home)
    try:
        for d in (home.path, home.keys_dir, home.default_store_root):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        MasterKey.generate().save(home.master_key_path)  # fsyncs the key file
        for d in (home.keys_dir, home.path, home.path.parent):
            fsync_dir(d)
        atomic_write(home.config_path, DEFAULT_CONFIG.encode("utf-8"), mode=0o600)
    except OSError as exc:
        raise ConfigError(f"cannot create the surgbox home {home.path}: {exc.strerror or exc}"
                          f"{f' ({exc.filename})' if exc.filename else ''}; choose a writable folder "
                          f"(--home DIR or SURGBOX_HOME)") from None
    with Catalog(home, plugins=plugins, create=True) as catalog:
        catalog.create_store()
        bootstrap_admin(catalog, admin, admin_password)
    log.info("initialized surgbox home %s", home.path)
    return home.load()


def move_aside(home: Home) -> Path:
    """Move the catalog (with its WAL), the keys folder and the config into ``replaced-<UTC time>/``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    dest = home.path / f"replaced-{stamp}"
    dest.mkdir(mode=0o700)
    for p in (home.catalog_path, Path(f"{home.catalog_path}-wal"), Path(f"{home.catalog_path}-shm"),
              home.config_path, home.keys_dir):
        if p.exists():
            shutil.move(str(p), str(dest / p.name))
    fsync_dir(dest)
    fsync_dir(home.path)
    log.warning("moved the previous catalog, keys and config of %s to %s", home.path, dest)
    return dest
