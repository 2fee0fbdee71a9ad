"""``surgbox store``: inspect, verify, repair and use an encrypted (mirrored) store.

Which store: by default the store of the initialized ``SURGBOX_HOME`` (``--home DIR``; its
``config.toml`` names the plugin and roots) with the home's master key. For a stand-alone store
give ``--root DIR`` once for a ``local`` store or two or more times for a ``mirror`` (or set
``SURGBOX_STORE_ROOTS``, roots separated by ``:``), and ``--key-file KEY`` (repeatable, newest
first; default ``SURGBOX_KEY_FILE``) where keys are needed (put, get, recover, ``--decrypt``).
Stores are built through the plugin registry (``--store NAME`` picks another plugin for the
roots). Exit status: 0 fine, 1 error, 2 degraded or damage left.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SurgboxError
from ._parser import plain
from .crypt import _AtomicOutput, _key_paths, check_new_output, guarded, passphrase_from

_ROOTS_ENV, _KEY_ENV = "SURGBOX_STORE_ROOTS", "SURGBOX_KEY_FILE"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="encrypted mirrored store: init, status, verify, scrub, recover, ls/put/get",
                       description=plain(__doc__.split("\n\n", 1)[1]), formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)

    def cmd(name: str, func, text: str, *, keys: bool = False, needs: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        c = ssub.add_parser(name, help=text, description=text)
        c.add_argument("--home", metavar="DIR",
                       help="the surgbox home whose store to use (default: $SURGBOX_HOME or the per-user data folder)")
        c.add_argument("--root", action="append", type=Path, metavar="DIR",
                       help=f"stand-alone store root instead of the home's (repeat for a mirror; default ${_ROOTS_ENV}, "
                            f"':'-separated)")
        c.add_argument("--store", metavar="NAME", help="store plugin for --root (default: 'local' for one root, "
                                                      "'mirror' for several)")
        c.add_argument("--key-file", action="append", type=Path, metavar="KEY",
                       help=f"master key file, newest first (repeatable; default ${_KEY_ENV}, or the home's master key)"
                       + ("" if keys else "; only needed with --decrypt"))
        c.add_argument("--passphrase-env", metavar="VAR", help="passphrase of a passphrase key file, from VAR")
        c.add_argument("--json", action="store_true", help="machine-readable output")
        c.set_defaults(func=guarded(func), needs_keys=keys, needs=needs)
        return c

    cmd("init", run_init, "create the store layout in every root (existing roots keep their objects)")
    cmd("status", run_status, "health of every root (exit 2 when degraded)")
    for name, func, text in (("verify", run_verify, "check every copy's size and SHA-256 (read-only)"),
                             ("scrub", run_scrub, "verify, then repair missing or damaged copies from a good one")):
        c = cmd(name, func, text, needs=("scrub",))
        c.add_argument("keys", nargs="*", metavar="KEY", help="objects to check (default: all)")
        c.add_argument("--decrypt", action="store_true", help="also authenticate every segment (needs a key)")
    cmd("recover", run_recover, "commit the authentic prefix of writes whose writer crashed", keys=True,
        needs=("recovery",))
    c = cmd("ls", run_ls, "list committed objects", needs=("info",))
    c.add_argument("prefix", nargs="?", default="", metavar="PREFIX", help="list only keys starting with PREFIX")
    c = cmd("put", run_put, "encrypt a file into the store", keys=True)
    c.add_argument("input", type=Path, metavar="IN", help="plaintext file to store")
    c.add_argument("key", metavar="KEY", help="object key, a relative path such as 2026/11/ev-1/rec.mp4")
    c = cmd("get", run_get, "decrypt an object to a file (written only if it authenticates)", keys=True)
    c.add_argument("key", metavar="KEY", help="object key (see `surgbox store ls`)")
    c.add_argument("output", type=Path, metavar="OUT", help="plaintext file to write (0600; a new file, only if "
                                                           "every segment authenticates)")


def _home(args: argparse.Namespace) -> Any:
    from ..home import Home

    return Home.from_env(args.home)


def store_from_args(args: argparse.Namespace, *, init: bool = False, plugins: Any = None) -> tuple[Any, str]:
    """``(store, plugin name)`` for the command line (not opened): ``--root``/``$SURGBOX_STORE_ROOTS``
    for a stand-alone store, else the initialized home's configured store; keys from ``--key-file``,
    ``$SURGBOX_KEY_FILE`` or the home's master key. Checks the capabilities the command needs."""
    from ..crypto.keys import is_passphrase_file, load_keyring
    from ..interfaces import check_store
    from ..plugins import get_plugins

    plugins = plugins or get_plugins()
    roots = args.root or [Path(p) for p in os.environ.get(_ROOTS_ENV, "").split(os.pathsep) if p]
    key_files = args.key_file or ([Path(os.environ[_KEY_ENV])] if os.environ.get(_KEY_ENV) else [])
    if roots:
        name = args.store or ("local" if len(roots) == 1 else "mirror")
        options: dict[str, Any] = {"root": str(roots[0])} if len(roots) == 1 else {"roots": [str(r) for r in roots]}
    else:
        if args.store:
            raise ConfigError("--store NAME needs --root DIR (the home's store is set in its config.toml)")
        home = _home(args)
        if not (home.config_path.is_file() and home.master_key_path.is_file()):
            raise ConfigError(f"no store: {home.path} is not an initialized surgbox home (no config.toml and "
                              f"keys/master.key); run `surgbox init`, pass --home DIR, or give a stand-alone store "
                              f"with --root DIR (twice or more for a mirror) or ${_ROOTS_ENV}")
        name, options = home.store_settings()
        if not key_files:
            key_files = [home.master_key_path] + [p for p in (home.keys_dir / "demo.key",) if p.is_file()]
    if (args.needs_keys or getattr(args, "decrypt", False)) and not key_files:
        raise ConfigError(f"`surgbox store {args.store_command}` needs a key: pass --key-file KEY or set {_KEY_ENV}")
    passphrase = passphrase_from(args) if any(is_passphrase_file(k) for k in key_files) else None
    keyring = load_keyring(key_files, passphrase) if key_files else None
    store = plugins.create("store", name, keyring=keyring, init=init, **options)
    check_store(store, *args.needs, plugin=name, purpose=f"`surgbox store {args.store_command}`")
    return store, name


def open_from_args(args: argparse.Namespace, *, init: bool = False) -> Any:
    """An opened store from the command line (see :func:`store_from_args`)."""
    store, _name = store_from_args(args, init=init)
    store.open()
    return store


def _degraded(store: Any) -> bool:
    return bool(store.status().get("degraded"))


def _print_status(st: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(st, indent=2))
        return
    state = "HEALTHY" if st["healthy"] else ("DEGRADED" if st.get("degraded") else "NEEDS SCRUB")
    print(f"store {st.get('store_id')}: {state}")
    for r in st.get("roots", []):
        if r.get("state") == "ok":
            extra = f" quarantined={r['quarantined']}" if r.get("quarantined") else ""
            print(f"  ok      {r['path']}  objects={r.get('objects')} partial={r.get('partials')}{extra} "
                  f"free={r.get('free_bytes', 0) / 1e9:.1f} GB")
        else:
            print(f"  FAILED  {r.get('path')}  {r.get('error')}")
    for s in st.get("suspect", []):
        print(f"  damaged copy seen while reading: {s} (run `surgbox store scrub`)")
    under = st.get("under_replicated", [])
    for k in under[:20]:
        print(f"  fewer copies than roots: {k} (written while degraded; run `surgbox store scrub`)")
    if len(under) > 20:
        print(f"  ... and {len(under) - 20} more objects with fewer copies than roots")
    if st.get("degraded"):
        print("WARNING: the store is DEGRADED: a root has failed or objects have fewer copies than roots. Replace or "
              "remount the failed disk, run `surgbox store init` on it if it is new, then `surgbox store scrub`.",
              file=sys.stderr)


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


def _report(store: Any, report: Any, args: argparse.Namespace, verb: str) -> int:
    degraded = _degraded(store)
    if args.json:
        print(json.dumps({**report.to_dict(), "status": store.status()}, indent=2))
    else:
        for p in report.problems:
            print(f"{'REPAIRED' if p.repaired else 'DAMAGED '} {p.key}  on {p.root}: {p.detail}")
        for k in report.lost:
            print(f"LOST     {k}: no good copy left")
        unchecked = getattr(report, "unchecked", ())
        if unchecked:
            print(f"{len(unchecked)} object(s) not authenticated: their key was not given (e.g. event files: "
                  f"`surgbox events export` checks those)")
        print(f"{verb} {report.objects} object(s): {len(report.problems)} problem(s), "
              f"{sum(p.repaired for p in report.problems)} repaired, {len(report.lost)} lost")
        if degraded:
            _print_status(store.status(), False)
    if verb == "verified":
        return 0 if not report.problems and not report.lost and not degraded else 2
    return 0 if report.ok and not degraded else 2


def _keys(args: argparse.Namespace) -> list[str] | None:
    return list(args.keys) or None


def run_verify(args: argparse.Namespace) -> int:
    with open_from_args(args) as store:
        return _report(store, store.verify(_keys(args), decrypt=args.decrypt), args, "verified")


def run_scrub(args: argparse.Namespace) -> int:
    with open_from_args(args) as store:
        return _report(store, store.scrub(_keys(args), decrypt=args.decrypt), args, "scrubbed")


def _as_dict(value: Any) -> dict:
    import attrs

    if attrs.has(type(value)):
        return attrs.asdict(value)
    return {k: getattr(value, k) for k in ("key", "action", "plaintext_size", "segments", "complete", "error")
            if hasattr(value, k)}


def run_recover(args: argparse.Namespace) -> int:
    with open_from_args(args) as store:
        results = store.recover()
        if args.json:
            print(json.dumps([_as_dict(r) for r in results], indent=2))
        else:
            for r in results:
                if r.action in ("failed", "no-key"):
                    hint = " (an event's file: use `surgbox events recover ID`)" if (
                        r.action == "no-key" and str(r.key).startswith("events/")) else ""
                    print(f"{r.action.upper():18s} {r.key}  NOT recovered, files kept: {r.error}{hint}")
                    continue
                kind = "complete" if r.complete else "PREFIX (writer was killed)"
                moved = f" (written as {r.original_key}, which another object holds)" if getattr(r, "original_key", "") else ""
                print(f"{r.action:18s} {r.key}  {r.plaintext_size} bytes, {r.segments} segments, {kind}{moved}")
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
                print(f"{m.plaintext_size:>14d}  {getattr(m, 'key_id', '-')}  {k}"
                      f"{'  (recovered prefix)' if getattr(m, 'recovered', False) else ''}")
        return 0


def _meta_dict(meta: Any) -> dict:
    d = _as_dict(meta) if not isinstance(meta, dict) else dict(meta)
    d.pop("key", None)
    return d


def run_put(args: argparse.Namespace) -> int:
    from ..crypto.streaming import DEFAULT_SEGMENT_SIZE

    with open_from_args(args) as store:
        try:
            src = open(args.input, "rb")
        except OSError as exc:
            raise ConfigError(f"cannot open input {args.input}: {exc.strerror or exc}") from None
        with src, store.writer(args.key) as w:
            while chunk := src.read(DEFAULT_SEGMENT_SIZE):
                w.write(chunk)
        where = f" on {len(w.committed_roots)} root(s)" if hasattr(w, "committed_roots") else ""
        print(f"stored {getattr(w, 'plaintext_size', os.path.getsize(args.input))} bytes as {args.key}{where}",
              file=sys.stderr)
        return 0 if not _degraded(store) else 2


def run_get(args: argparse.Namespace) -> int:
    from ..crypto.keys import WrongKeyError

    check_new_output(args.output, keys=_key_paths(args))
    with open_from_args(args) as store:
        try:
            reader = store.reader(args.key)
        except WrongKeyError as exc:
            if args.key.startswith("events/") and not args.key_file:
                raise SurgboxError(f"{exc}. {args.key} is a file of a catalog event, encrypted with the event's own "
                                   f"key: export it with `surgbox events export`") from None
            raise
        with reader as r, _AtomicOutput(args.output) as out:
            chunks = r.iter_segments() if hasattr(r, "iter_segments") else iter(lambda: r.read(1 << 20), b"")
            for plain in chunks:
                out.write(plain)
    return 0
