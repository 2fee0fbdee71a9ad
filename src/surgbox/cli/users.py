"""``surgbox users``: add, list, disable, enable, unlock, passwd (needs the manage_users permission)."""

from __future__ import annotations

import argparse
import json

from ._auth import add_auth_options, credentials, login, read_secret

NEW_PASSWORD_ENV = "SURGBOX_NEW_PASSWORD"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("users", help="user accounts and roles (admin, surgeon, operator, viewer, auditor)",
                       description="Manage accounts. Roles and their permissions: docs/catalog.md.")
    us = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    def cmd(name: str, help: str, func) -> argparse.ArgumentParser:
        c = us.add_parser(name, help=help, description=help)
        add_auth_options(c)
        c.set_defaults(func=func)
        return c

    c = cmd("add", "create an account", _add)
    c.add_argument("name", help="the new account's user name")
    c.add_argument("--role", required=True, choices=["admin", "surgeon", "operator", "viewer", "auditor"],
                   help="its role (permissions: docs/catalog.md)")
    c.add_argument("--password", metavar="PW", help=f"its password (default: ${NEW_PASSWORD_ENV} or a prompt)")
    c.add_argument("--physician", metavar="NAME", help="link a physician name: a surgeon sees the events listing it")
    c = cmd("list", "all accounts", _list)
    c.add_argument("--json", action="store_true", help="print the accounts as JSON")
    for name, help in (("disable", "disable an account"), ("enable", "enable a disabled account"),
                       ("unlock", "clear a lockout after wrong passwords")):
        c = cmd(name, help, _simple)
        c.add_argument("name", help="the user name")
    c = cmd("passwd", "set a password (your own, or anybody's as an admin)", _passwd)
    c.add_argument("name", help="whose password (your own user name, or any as an admin)")
    c.add_argument("--password", metavar="PW", help=f"the new password (default: ${NEW_PASSWORD_ENV} or a prompt)")


def _new_password(args: argparse.Namespace, who: str) -> str:
    return args.password if args.password is not None else read_secret(f"new password for {who}: ", NEW_PASSWORD_ENV, confirm=True)


def _add(args: argparse.Namespace) -> int:
    password = _new_password(args, args.name)
    with login(args) as s:
        u = s.users.add(args.name, args.role, password, physician=args.physician)
    print(f"added {u.name} ({u.role})")
    return 0


def _list(args: argparse.Namespace) -> int:
    with login(args) as s:
        users = s.users.list()
        now = s.catalog.now()
    if args.json:
        print(json.dumps([u.to_dict(now) for u in users], indent=1))
        return 0
    rows = [("NAME", "ROLE", "STATE", "LAST LOGIN")]
    for u in users:
        state = "disabled" if u.disabled else "locked" if u.locked(now) else "active"
        last = u.last_login.astimezone().strftime("%Y-%m-%d %H:%M") if u.last_login else "-"
        rows.append((u.name, u.role, state, last))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _simple(args: argparse.Namespace) -> int:
    with login(args) as s:
        u = getattr(s.users, args.users_command)(args.name)
    print(f"{u.name}: {args.users_command}d" if args.users_command != "unlock" else f"{u.name}: unlocked")
    return 0


def _passwd(args: argparse.Namespace) -> int:
    creds = credentials(args)  # log in first: a wrong password fails before the new one is asked
    with login(args, creds) as s:
        password = _new_password(args, args.name)
        own = args.name == s.user.name
        # one's own password: the login password (however it was given) is the current password
        s.users.set_password(args.name, password, current_password=creds[1] if own else None)
    print(f"password of {args.name} changed")
    return 0
