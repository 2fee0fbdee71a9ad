"""``surgbox init``: create SURGBOX_HOME (catalog, master key, default store, config) and the first admin."""

from __future__ import annotations

import argparse

from ..catalog import install_home
from ..errors import ConfigError
from ..home import Home
from ._auth import add_home_option, read_secret


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="create the surgbox home: catalog, master key, default store, first admin",
        description="Create SURGBOX_HOME (default: the per-user data folder) with a new master key, the "
                    "catalog database, the default encrypted store and the first admin account. Refuses to "
                    "touch an existing home unless --force (which moves the old files aside, deleting nothing).",
    )
    add_home_option(p)
    p.add_argument("--admin", default="admin", metavar="NAME", help="name of the first admin (default: admin)")
    p.add_argument("--admin-password", metavar="PW", help="its password (default: $SURGBOX_PASSWORD or a prompt)")
    p.add_argument("--force", action="store_true", help="replace an existing home (old catalog, keys, config moved to replaced-*/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = Home.from_env(args.home)
    password = args.admin_password
    if password is None:
        password = read_secret(f"password for the new admin {args.admin!r}: ", "SURGBOX_PASSWORD", confirm=True)
    try:
        home = install_home(home, args.admin, password, force=args.force)
    except ValueError as exc:  # password policy, user name
        raise ConfigError(str(exc)) from None
    print(f"surgbox home ready: {home.path}")
    print(f"  catalog     {home.catalog_path}")
    print(f"  master key  {home.master_key_path}  (back it up, separately from the data)")
    print(f"  store       {home.default_store_root}")
    print(f"  admin       {args.admin}")
    return 0
