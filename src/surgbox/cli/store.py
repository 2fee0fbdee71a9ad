"""``surgbox store``: inspect, verify, repair and use an encrypted (mirrored) store.

Configuration: ``--root DIR`` once for a ``local`` store or two or more times for a ``mirror``
(default: the environment variable ``SURGBOX_STORE_ROOTS``, roots separated by ``:``), and
``--key-file KEY`` (repeatable, newest first; default ``SURGBOX_KEY_FILE``) where keys are needed
(put, get, recover, ``--decrypt``). Exit status: 0 fine, 1 error, 2 degraded or damage left.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .crypt import _AtomicOutput, passphrase_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="encrypted mirrored store: init, status, verify, scrub, recover, ls/put/get",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)

    def cmd(name: str, func, text: str, *, keys: bool = False) -> argparse.ArgumentParser:
        c = ssub.add_parser(name, help=text, description=text)
        c.add_argument("--root", action="append", type=Path, metavar="DIR",
                       help="store root (repeat for a mirror; default $SURGBOX_STORE_ROOTS, ':'-separated)")
        c.add_argument("--key-file", action="append", type=Path, metavar="KEY",
                       help="master key file, newest first (repeatable; default $SURGBOX_KEY_FILE)"
                       + ("" if keys else "; only needed with --decrypt"))
        c.add_argument("--passphrase-env", metavar="VAR", help="passphrase of a passphrase key file, from VAR")
        c.add_argument("--json", action="store_true", help="machine-readable output")
        c.set_defaults(func=func, needs_keys=keys)
        return c

    cmd("init", run_init, "create the store layout in every root (existing roots keep their objects)")
    cmd("status", run_status, "health of every root (exit 2 when degraded)")
    for name, func, text in (("verify", run_verify, "check every copy's size and SHA-256 (read-only)"),
                             ("scrub", run_scrub, "verify, then repair missing or damaged copies from a good one")):
        c = cmd(name, func, text)
        c.add_argument("keys", nargs="*", metavar="KEY", help="objects to check (default: all)")
        c.add_argument("--decrypt", action="store_true", help="also authenticate every segment (needs --key-file)")
    cmd("recover", run_recover, "commit the authentic prefix of writes whose writer crashed", keys=True)
    c = cmd("ls", run_ls, "list committed objects")
    c.add_argument("prefix", nargs="?", default="")
    c = cmd("put", run_put, "encrypt a file into the store", keys=True)
    c.add_argument("input", type=Path, metavar="IN")
    c.add_argument("key", metavar="KEY")
    c = cmd("get", run_get, "decrypt an object to a file (written only if it authenticates)", keys=True)
    c.add_argument("key", metavar="KEY")
    c.add_argument("output", type=Path, metavar="OUT")


def open_from_args(args: argparse.Namespace, *, init: bool = False):
    """An opened store from ``--root``/``--key-file`` (or the environment)."""
    from surgbox_ext.store import open_store

    from ..crypto.keys import is_passphrase_file
    from ..errors import ConfigError

    roots = args.root or [Path(p) for p in os.environ.get("SURGBOX_STORE_ROOTS", "").split(os.pathsep) if p]
    if not roots:
        raise ConfigError("no store root: pass --root DIR (twice or more for a mirror) or set SURGBOX_STORE_ROOTS")
    key_files = args.key_file or ([Path(os.environ["SURGBOX_KEY_FILE"])] if os.environ.get("SURGBOX_KEY_FILE") else [])
    if (args.needs_keys or getattr(args, "decrypt", False)) and not key_files:
        raise ConfigError(f"`surgbox store {args.store_command}` needs a key: pass --key-file KEY or set SURGBOX_KEY_FILE")
    passphrase = None
    if any(is_passphrase_file(k) for k in key_files):
        passphrase = passphrase_from(args)
    store = open_store(roots, key_file=key_files or None, passphrase=passphrase, init=init)
    store.open()
    return store


def _print_status(st: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(st, indent=2))
        return
    state = "HEALTHY" if st["healthy"] else ("DEGRADED" if st["degraded"] else "NEEDS SCRUB")
    print(f"store {st['store_id']}: {state}")
    for r in st["roots"]:
        if r["state"] == "ok":
            print(f"  ok      {r['path']}  objects={r.get('objects')} partial={r.get('partials')} "
                  f"free={r.get('free_bytes', 0) / 1e9:.1f} GB")
        else:
            print(f"  FAILED  {r['path']}  {r['error']}")
    for s in st["suspect"]:
        print(f"  damaged copy seen while reading: {s} (run `surgbox store scrub`)")
    if st["degraded"]:
        print("WARNING: the store is DEGRADED: writes go to the healthy roots only. Replace or remount the failed "
              "disk, run `surgbox store init` on it if it is new, then `surgbox store scrub`.", file=sys.stderr)


def run_init(args: argparse.Namespace) -> int:
    with open_from_args(args, init=True) as store:
        st = store.status()
        _print_status(st, args.json)
        return 0 if st["healthy"] else 2


def run_status(args: argparse.Namespace) -> int:
    with open_from_args(args) as store:
        st = store.status()
        _print_status(st, args.json)
        return 0 if st["healthy"] else 2


def _report(store, report, args: argparse.Namespace, verb: str) -> int:
    if args.json:
        print(json.dumps({**report.to_dict(), "status": store.status()}, indent=2))
    else:
        for p in report.problems:
            print(f"{'REPAIRED' if p.repaired else 'DAMAGED '} {p.key}  on {p.root}: {p.detail}")
        for k in report.lost:
            print(f"LOST     {k}: no good copy left")
        print(f"{verb} {report.objects} object(s): {len(report.problems)} problem(s), "
              f"{sum(p.repaired for p in report.problems)} repaired, {len(report.lost)} lost")
        if store.degraded:
            _print_status(store.status(), False)
    if verb == "verified":
        return 0 if not report.problems and not report.lost and not store.degraded else 2
    return 0 if report.ok and not store.degraded else 2


def run_verify(args: argparse.Namespace) -> int:
    with open_from_args(args) as store:
        return _report(store, store.verify(args.keys or None, decrypt=args.decrypt), args, "verified")


def run_scrub(args: argparse.Namespace) -> int:
    with open_from_args(args) as store:
        return _report(store, store.scrub(args.keys or None, decrypt=args.decrypt), args, "scrubbed")


def run_recover(args: argparse.Namespace) -> int:
    import attrs

    with open_from_args(args) as store:
        results = store.recover()
        if args.json:
            print(json.dumps([attrs.asdict(r) for r in results], indent=2))
        else:
            for r in results:
                if r.action in ("failed", "no-key"):
                    print(f"{r.action.upper():18s} {r.key}  NOT recovered, files kept: {r.error}")
                    continue
                kind = "complete" if r.complete else "PREFIX (writer was killed)"
                print(f"{r.action:18s} {r.key}  {r.plaintext_size} bytes, {r.segments} segments, {kind}")
            print(f"{len(results)} unfinished write(s) handled")
        return 2 if any(r.action in ("failed", "no-key") for r in results) else 0


def run_ls(args: argparse.Namespace) -> int:
    with open_from_args(args) as store:
        keys = list(store.keys(args.prefix))
        if args.json:
            print(json.dumps([{"key": k, **_meta_dict(store.info(k))} for k in keys], indent=2))
        else:
            for k in keys:
                m = store.info(k)
                print(f"{m.plaintext_size:>14d}  {m.key_id}  {k}{'  (recovered prefix)' if m.recovered else ''}")
        return 0


def _meta_dict(meta) -> dict:
    import attrs

    d = attrs.asdict(meta)
    d.pop("key")
    return d


def run_put(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    with open_from_args(args) as store:
        try:
            src = open(args.input, "rb")
        except OSError as exc:
            raise ConfigError(f"cannot open input {args.input}: {exc.strerror or exc}") from None
        with src, store.writer(args.key) as w:
            while chunk := src.read(1 << 20):
                w.write(chunk)
        print(f"stored {w.plaintext_size} bytes as {args.key} on {len(w.committed_roots)} root(s)", file=sys.stderr)
        return 0 if not store.degraded else 2


def run_get(args: argparse.Namespace) -> int:
    with open_from_args(args) as store, store.reader(args.key) as r, _AtomicOutput(args.output) as out:
        for plain in r.iter_segments():
            out.write(plain)
    return 0
