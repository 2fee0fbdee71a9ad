"""``surgbox remote``: add, list, remove and test upload remotes (Nextcloud, WebDAV; docs/upload.md)."""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import time
from pathlib import Path

from ..errors import SurgboxError
from ._auth import PASSWORD_ENV, USER_ENV, add_auth_options, add_home_option, login, read_secret, terminal_safe
from .upload import print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("remote", help="upload destinations: Nextcloud accounts and WebDAV folders",
                       description="Manage upload remotes. Passwords are stored encrypted in the catalog "
                                   "(docs/upload.md). Adding and removing needs an admin; listing and testing "
                                   "needs the upload permission.")
    rs = p.add_subparsers(dest="remote_command", metavar="ACTION", required=True)

    c = rs.add_parser("add", help="add (or with --replace change) a remote",
                      description="Add a remote. The password is read from an environment variable or a file "
                                  "(never from the command line, where other users could see it) and stored "
                                  "encrypted. TLS certificates are verified (system CAs, or --ca-file).")
    add_home_option(c)
    c.add_argument("--login", metavar="NAME", help=f"log in to surgbox as NAME, an admin (default: ${USER_ENV}; "
                                                   f"password from ${PASSWORD_ENV} or a prompt)")
    c.add_argument("name", help="the remote's name, e.g. hospital-nc (lower-case letters, digits, - and _)")
    c.add_argument("--url", required=True, metavar="URL",
                   help="webdav: the folder to upload into; nextcloud: https://HOST/remote.php/dav/files/USER/FOLDER "
                        "(a bare https://HOST means the folder 'surgbox')")
    c.add_argument("--kind", required=True, choices=["nextcloud", "webdav"],
                   help="nextcloud (chunked, resumable uploads) or webdav (any WebDAV server)")
    c.add_argument("--user", required=True, metavar="USER", help="the account on the remote (not the surgbox login)")
    pw = c.add_mutually_exclusive_group()  # one of them; missing both is one clear line (_password)
    pw.add_argument("--password-env", metavar="VAR", help="read the remote's password (a Nextcloud app password) "
                                                          "from environment variable VAR")
    pw.add_argument("--password-file", metavar="FILE", help="read the remote's password from the first line of FILE")
    c.add_argument("--ca-file", metavar="PEM", help="verify the server's TLS certificate against this CA bundle "
                                                    "(default: the system's CAs)")
    c.add_argument("--insecure", action="store_true",
                   help="DO NOT verify the server's TLS certificate (anyone on the network can then read the "
                        "password and the uploads); for a test server only")
    c.add_argument("--bandwidth", type=float, metavar="MBPS",
                   help="limit uploads to MBPS megabytes (10^6 bytes) per second (default: unlimited)")
    c.add_argument("--chunk-mib", type=float, default=10.0, metavar="MIB",
                   help="Nextcloud chunk size in MiB (default 10; Nextcloud needs 5 to 5120)")
    c.add_argument("--replace", action="store_true", help="replace a remote of the same name")
    c.set_defaults(func=_add)

    c = rs.add_parser("list", help="the remotes (no passwords)", description="List the remotes (no passwords).")
    add_auth_options(c)
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.set_defaults(func=_list)

    c = rs.add_parser("remove", help="forget a remote", description="Remove a remote (refused while jobs use it).")
    add_auth_options(c)
    c.add_argument("name", help="the remote's name")
    c.set_defaults(func=_remove)

    c = rs.add_parser("test", help="check that a remote accepts, keeps and returns a file",
                      description="Log in to the remote, write a small probe file the way uploads do "
                                  "(temporary name, MOVE; Nextcloud: a chunked upload too), read it back, "
                                  "delete it.")
    add_auth_options(c)
    c.add_argument("name", help="the remote's name")
    c.set_defaults(func=_test)


def _password(args: argparse.Namespace) -> str:
    if not args.password_env and not args.password_file:
        raise SurgboxError("no password for the remote: give --password-env VAR or --password-file FILE "
                           "(never the password itself on the command line)")
    if args.password_env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", args.password_env):
            raise SurgboxError(f"--password-env {args.password_env!r} is not an environment variable name "
                               f"(letters, digits and _), e.g. NC_APP_PASSWORD")
        value = os.environ.get(args.password_env)
        if not value:
            raise SurgboxError(f"environment variable {args.password_env} is not set or empty; export the remote's "
                               f"password in it (or use --password-file FILE)")
        return value
    path = Path(args.password_file).expanduser()
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise SurgboxError(f"password file {path!s:.200}: {getattr(exc, 'strerror', None) or exc}; give a readable "
                           f"text file holding the password") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SurgboxError(f"password file {path} can be read or written by other users; `chmod 600` it first")
    value = text.splitlines()[0] if text else ""
    if not value:
        raise SurgboxError(f"password file {path} is empty; write the remote's password on its first line")
    return value


def _warn_insecure(name: str) -> None:
    print(f"surgbox: WARNING: remote {name} does not verify TLS certificates (--insecure): anyone on the network "
          f"can pose as the server and read its password and uploads", file=sys.stderr)


def _add(args: argparse.Namespace) -> int:
    from ..catalog import Catalog
    from ..upload import Remote, RemoteBook
    from ..upload.remotes import check_ca_file

    if args.chunk_mib != args.chunk_mib or not 0.0625 <= args.chunk_mib <= 5120:
        raise SurgboxError(f"--chunk-mib must be from 0.0625 to 5120, got {args.chunk_mib}")
    if args.ca_file and args.insecure:
        raise SurgboxError("--ca-file and --insecure contradict each other; give one")
    password = _password(args)
    remote = Remote(args.name, args.kind, args.url, args.user, password, check_ca_file(args.ca_file), args.insecure,
                    args.bandwidth, int(args.chunk_mib * 1024 * 1024))
    user = args.login or os.environ.get(USER_ENV)
    if not user:
        raise SurgboxError(f"who are you? pass --login NAME (a surgbox admin) or set {USER_ENV}")
    login_pw = read_secret(f"password for {user}: ", PASSWORD_ENV)
    with Catalog.at(args.home) as catalog:
        RemoteBook(catalog.login(user, login_pw)).add(remote, replace=args.replace)
    if args.insecure:
        _warn_insecure(args.name)
    print(f"remote {args.name} added ({args.kind}, {terminal_safe(remote.files_url)})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..upload import RemoteBook
    with login(args) as s:
        remotes = RemoteBook(s).list()
    if args.json:
        print(json.dumps([r.to_dict() for r in remotes], indent=1))
        return 0
    rows = [("NAME", "KIND", "USER", "URL", "TLS", "BANDWIDTH")]
    for r in remotes:
        if not r.url.lower().startswith("https://"):
            tls = "none (http)"  # a plain-HTTP remote has no certificate to verify
        else:
            tls = "NOT VERIFIED" if r.insecure else ("ca-file" if r.ca_file else "system CAs")
        rows.append((r.name, r.kind, terminal_safe(r.user), terminal_safe(r.url), tls,
                     f"{r.bandwidth:g} MB/s" if r.bandwidth else "-"))
    print_table(rows)
    return 0


def _remove(args: argparse.Namespace) -> int:
    from ..upload import RemoteBook
    with login(args) as s:
        RemoteBook(s).remove(args.name)
    print(f"remote {args.name} removed")
    return 0


def _test(args: argparse.Namespace) -> int:
    from ..upload import RemoteBook
    from ..upload.probe import probe
    with login(args) as s:
        remote = RemoteBook(s).get(args.name)
        if remote.insecure:
            _warn_insecure(remote.name)
        t = time.monotonic()
        try:
            done = probe(remote)
        except SurgboxError as exc:
            s.record_action("remote.test", None, "failed", {"remote": remote.name, "host": remote.host,
                                                            "error": str(exc)[:300]})
            raise
        s.record_action("remote.test", None, "ok", {"remote": remote.name, "host": remote.host})
    print(f"remote {args.name}: OK ({', '.join(done)}; {time.monotonic() - t:.2f} s)")
    return 0
