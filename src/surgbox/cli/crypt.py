"""``surgbox crypt``: keys and Tink-compatible streaming AES-256-GCM files.

* ``keygen KEY [--binary | --passphrase]``: create a key file (mode 0600).
* ``keyid KEY``: print a key's id.
* ``encrypt --key-file KEY [--aad TEXT] IN OUT``
* ``decrypt --key-file KEY [--key-file OLD ...] [--aad TEXT] IN OUT``: OUT appears only if the
  whole file authenticates (temporary file + rename); exit 1 otherwise.
* ``salvage --key-file KEY [--aad TEXT] IN OUT``: recover the authentic prefix of a file whose
  writer was killed (exit 0 complete, 2 prefix only, 1 nothing).

OUT is written through a 0600 temporary file beside it (``.OUT.XXXXXXXX.partial``), named only
on success, and must be a new file: an existing one (the input, a key file, an earlier output)
is refused before any work and never replaced. SIGTERM, SIGHUP and Ctrl-C remove it (exit 128 + signal); one left by a killed run
(``kill -9``) is removed by the next run writing the same OUT. A full disk gives one line.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .._fs import AtomicFile
from ..errors import ConfigError, SurgboxError
from ._parser import number

SEGMENT_HELP = "ciphertext segment size in bytes, 57 to 2147483647 (default 1048576; must match the encrypting side)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("crypt", help="encrypt/decrypt files (Tink AES256-GCM-HKDF streaming), manage keys",
                       description="Streaming AES-256-GCM in Tink's AES-GCM-HKDF format, byte-compatible with Tink.")
    csub = p.add_subparsers(dest="crypt_command", metavar="ACTION", required=True)

    k = csub.add_parser("keygen", help="create a new key file (mode 0600, never overwrites)")
    k.add_argument("key", type=Path, help="key file to create")
    g = k.add_mutually_exclusive_group()
    g.add_argument("--binary", action="store_true", help="write 32 raw bytes instead of 64 hex characters")
    g.add_argument("--passphrase", action="store_true",
                   help="derive the key from a passphrase (scrypt); the file stores only salt and parameters")
    k.add_argument("--passphrase-env", metavar="VAR", help="read the passphrase from environment variable VAR")
    k.add_argument("--scrypt-n", type=number(int, minimum=2), default=1 << 17, help="scrypt cost n (power of two, default 131072)")
    k.set_defaults(func=guarded(run_keygen))

    i = csub.add_parser("keyid", help="print the id of a key (as stored in object metadata)")
    _key_args(i, multiple=False)
    i.set_defaults(func=guarded(run_keyid))

    for name, func, text, out_help in (
        ("encrypt", run_encrypt, "encrypt IN to OUT", "encrypted file to write (0600; a new file)"),
        ("decrypt", run_decrypt, "decrypt IN to OUT; OUT is written only if all of IN authenticates",
         "plaintext file to write (0600; a new file, only if all of IN authenticates)"),
        ("salvage", run_salvage, "recover the authentic prefix of a file whose writer was killed",
         "plaintext file to write (0600; a new file) with the authentic prefix"),
    ):
        c = csub.add_parser(name, help=text, description=text)
        _key_args(c, multiple=name != "encrypt")
        c.add_argument("--aad", default="", metavar="TEXT", help="associated data (UTF-8), bound to the ciphertext")
        c.add_argument("--segment-size", type=int, default=None, metavar="BYTES", help=SEGMENT_HELP)
        c.add_argument("input", type=Path, metavar="IN",
                       help="file to read" + (" (plaintext)" if name == "encrypt" else " (encrypted)"))
        c.add_argument("output", type=Path, metavar="OUT", help=out_help)
        c.set_defaults(func=guarded(func))


def _key_args(p: argparse.ArgumentParser, *, multiple: bool) -> None:
    help_ = "key file: 32 raw bytes, 64 hex characters, or a passphrase key file"
    if multiple:
        p.add_argument("--key-file", action="append", type=Path, required=True,
                       help=help_ + " (repeat to try several keys, e.g. after a rotation)")
    else:
        p.add_argument("--key-file", type=Path, required=True, help=help_)
    p.add_argument("--passphrase-env", metavar="VAR", help="read the passphrase of a passphrase key file from VAR")


# -- clean exits: signals, full disks, partial outputs ------------------------------------------------

class Terminated(BaseException):
    """Raised in the main thread by SIGTERM/SIGHUP while a guarded command runs, so that every
    ``with`` block unwinds (partial outputs are removed). Not an ``Exception``: nothing swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def signals_unwind() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


_FULL = {errno.ENOSPC: "the disk is full (ENOSPC)", errno.EDQUOT: "the disk quota is exceeded (EDQUOT)",
         errno.EFBIG: "the file is too large for this file system or the file size limit (EFBIG)"}


def describe_os_error(exc: OSError, what: str = "") -> str:
    """One line for an :class:`OSError`: what failed, why, and the fix for a full disk."""
    where = f"{what}: " if what else (f"{exc.filename}: " if exc.filename else "")
    if exc.errno in _FULL:
        return f"{where}{_FULL[exc.errno]}; free space there (or write elsewhere) and run the command again"
    return f"{where}{exc.strerror or exc}"


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: SIGTERM/SIGHUP unwind it (exit 128 + signal, one line), an :class:`OSError`
    becomes one line naming the file and the fix (a :class:`SurgboxError`: exit 1)."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            with signals_unwind():
                return func(args)
        except Terminated as t:
            name = signal.Signals(t.signum).name
            print(f"surgbox: stopped by {name}; no partial output was left", file=sys.stderr)
            return 128 + t.signum
        except OSError as exc:
            raise SurgboxError(describe_os_error(exc)) from None

    return run


def check_new_output(output: Path, inputs: Any = (), keys: Any = ()) -> None:
    """Refuse, before any work, an OUT that exists: OUT is never replaced (not the input, not a
    key file, not an earlier output), so nothing already there is lost."""
    output = Path(output)
    if not os.path.lexists(output):
        return
    def same_file(a: Any, b: Any) -> bool:
        try:
            return os.path.samefile(a, b)
        except OSError:
            return False

    if output.is_dir():
        raise ConfigError(f"output {str(output)!r} is a folder; give the name of a new file in it")
    for key in keys or ():
        if same_file(output, key):
            raise ConfigError(f"output {str(output)!r} is the key file {str(key)!r}: writing it would destroy the "
                              f"key; write to another (new) file")
    for given in inputs:
        if same_file(output, given):
            raise ConfigError(f"output {str(output)!r} is the input file; write to another (new) file")
    raise ConfigError(f"output {str(output)!r} exists; existing files are never replaced: remove it first or "
                      f"choose another OUT")


class _AtomicOutput:
    """OUT written through :class:`surgbox._fs.AtomicFile` (0600 temporary file beside it, linked
    into place on a clean exit, never over an existing file; removed on an exception, SIGTERM
    included), with errors as one line."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = AtomicFile(self.path, exclusive=True)

    def __enter__(self) -> Any:
        try:
            return self.file.open()
        except OSError as exc:
            raise ConfigError(f"cannot create output {self.path}: {exc.strerror or exc} (the folder must exist "
                              f"and be writable)") from None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            try:
                self.file.commit()
            except OSError as e:
                raise SurgboxError(describe_os_error(e, f"cannot write {self.path}") + "; nothing was written") from None
            return
        self.file.abort()
        if isinstance(exc, OSError) and exc.errno in _FULL:
            raise SurgboxError(describe_os_error(exc, f"cannot write {self.path}") + "; nothing was written") from None


# -- commands ---------------------------------------------------------------------------------------

def passphrase_from(args: argparse.Namespace, *, confirm: bool = False) -> str | None:
    """The passphrase from ``--passphrase-env VAR`` or, on a terminal, a prompt; ``None`` if neither."""
    var = getattr(args, "passphrase_env", None)
    if var:
        if var not in os.environ:
            raise ConfigError(f"--passphrase-env {var}: the environment variable {var} is not set")
        return os.environ[var]
    if not sys.stdin.isatty():
        return None
    import getpass

    pw = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("again: ") != pw:
        raise ConfigError("the passphrases differ; run the command again")
    return pw


def _key_paths(args: argparse.Namespace) -> list:
    key_file = getattr(args, "key_file", None)
    return [p for p in (key_file if isinstance(key_file, list) else [key_file]) if p is not None]


def load_keys(args: argparse.Namespace) -> list:
    """The master keys named by ``--key-file`` (asking for a passphrase only when one is needed)."""
    from ..crypto.keys import is_passphrase_file, load_key

    paths = args.key_file if isinstance(args.key_file, list) else [args.key_file]
    pw = passphrase_from(args) if any(is_passphrase_file(p) for p in paths) else None
    return [load_key(p, pw) for p in paths]


def run_keygen(args: argparse.Namespace) -> int:
    from ..crypto.keys import MasterKey, ScryptParams

    if args.passphrase:
        pw = passphrase_from(args, confirm=True)
        if not pw:
            raise ConfigError("--passphrase needs a passphrase: use --passphrase-env VAR or run on a terminal")
        try:
            _, key = ScryptParams.create(args.key, pw, n=args.scrypt_n)
        except ValueError as exc:
            raise ConfigError(f"--scrypt-n {args.scrypt_n}: {exc}") from None
    else:
        for given, option in ((args.passphrase_env, "--passphrase-env"), (args.scrypt_n != 1 << 17, "--scrypt-n")):
            if given:
                raise ConfigError(f"{option} goes with --passphrase (a random key needs no passphrase); add "
                                  f"--passphrase or leave {option} out")
        key = MasterKey.generate()
        key.save(args.key, binary=args.binary)
    print(f"created {args.key} (mode 0600), key id {key.key_id}")
    return 0


def run_keyid(args: argparse.Namespace) -> int:
    print(load_keys(args)[0].key_id)
    return 0


def _segment(args: argparse.Namespace) -> int:
    from ..crypto.format import DEFAULT_SEGMENT_SIZE, check_segment_size

    if args.segment_size is None:
        return DEFAULT_SEGMENT_SIZE
    try:
        return check_segment_size(args.segment_size)
    except ValueError:
        raise ConfigError(f"--segment-size {args.segment_size}: a segment is 57 to 2147483647 bytes "
                          f"(default 1048576); give the size the file was encrypted with") from None


def _aad(args: argparse.Namespace) -> bytes:
    try:
        return args.aad.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("--aad is not valid UTF-8 text; give the associated data as text") from None


def _open_input(path: Path):
    try:
        return open(path, "rb")
    except OSError as exc:
        raise ConfigError(f"cannot open input {path}: {exc.strerror or exc}") from None


def run_encrypt(args: argparse.Namespace) -> int:
    from ..crypto.bulk import encrypt_file

    seg, aad = _segment(args), _aad(args)
    check_new_output(args.output, [args.input], _key_paths(args))
    key = load_keys(args)[0]
    with _open_input(args.input) as src, _AtomicOutput(args.output) as out:
        n = encrypt_file(src, out, key.material, aad, segment_size=seg)
    print(f"encrypted {n} bytes -> {args.output} (key id {key.key_id})", file=sys.stderr)
    return 0


def run_decrypt(args: argparse.Namespace) -> int:
    from ..crypto.format import DecryptionError
    from ..crypto.reader import DecryptingReader

    seg, aad = _segment(args), _aad(args)
    check_new_output(args.output, [args.input], _key_paths(args))
    keys = load_keys(args)
    errors = []
    with _open_input(args.input) as src:
        for key in keys:
            try:
                reader = DecryptingReader.open(src, key.material, aad, segment_size=seg,
                                               cache_segments=1, name=str(args.input))
                break
            except DecryptionError as exc:
                errors.append(f"key {key.key_id}: {exc}")
        else:
            raise DecryptionError(f"cannot decrypt {args.input}: " + " | ".join(errors) +
                                  "; check --key-file, --aad and --segment-size. Nothing was written.")
        with reader, _AtomicOutput(args.output) as out:
            for plain in reader.iter_segments():  # every segment authenticates before the rename
                out.write(plain)
    print(f"decrypted {reader.size} bytes -> {args.output}", file=sys.stderr)
    return 0


def run_salvage(args: argparse.Namespace) -> int:
    from ..crypto.salvage import salvage

    seg, aad = _segment(args), _aad(args)
    check_new_output(args.output, [args.input], _key_paths(args))
    keys = load_keys(args)
    best = None
    for key in keys:
        res = salvage(args.input, key.material, aad, segment_size=seg)
        if best is None or res.segments > best[1].segments:
            best = (key, res)
    key, res = best
    if res.segments == 0:
        print(f"surgbox: nothing recoverable in {args.input}: {res.stopped}", file=sys.stderr)
        return 1
    with _AtomicOutput(args.output) as out:
        res = salvage(args.input, key.material, aad, out.write, segment_size=seg)
    state = "complete file" if res.complete else f"PREFIX ONLY (stopped: {res.stopped})"
    print(f"salvaged {res.plaintext_size} bytes in {res.segments} segments -> {args.output}: {state}", file=sys.stderr)
    return 0 if res.complete else 2
