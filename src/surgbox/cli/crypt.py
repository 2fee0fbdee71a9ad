"""``surgbox crypt``: keys and Tink-compatible streaming AES-256-GCM files.

* ``keygen KEY [--binary | --passphrase]``: create a key file (mode 0600).
* ``keyid KEY``: print a key's id.
* ``encrypt --key-file KEY [--aad TEXT] IN OUT``
* ``decrypt --key-file KEY [--key-file OLD ...] [--aad TEXT] IN OUT``: OUT appears only if the
  whole file authenticates (temporary file + rename); exit 1 otherwise.
* ``salvage --key-file KEY [--aad TEXT] IN OUT``: recover the authentic prefix of a file whose
  writer was killed (exit 0 complete, 2 prefix only, 1 nothing).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SEGMENT_HELP = "ciphertext segment size in bytes (default 1048576; must match the encrypting side)"


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
    k.add_argument("--scrypt-n", type=int, default=1 << 17, help="scrypt cost n (power of two, default 131072)")
    k.set_defaults(func=run_keygen)

    i = csub.add_parser("keyid", help="print the id of a key (as stored in object metadata)")
    _key_args(i, multiple=False)
    i.set_defaults(func=run_keyid)

    for name, func, text in (
        ("encrypt", run_encrypt, "encrypt IN to OUT"),
        ("decrypt", run_decrypt, "decrypt IN to OUT; OUT is written only if all of IN authenticates"),
        ("salvage", run_salvage, "recover the authentic prefix of a file whose writer was killed"),
    ):
        c = csub.add_parser(name, help=text, description=text)
        _key_args(c, multiple=name != "encrypt")
        c.add_argument("--aad", default="", metavar="TEXT", help="associated data (UTF-8), bound to the ciphertext")
        c.add_argument("--segment-size", type=int, default=None, help=SEGMENT_HELP)
        c.add_argument("input", type=Path, metavar="IN")
        c.add_argument("output", type=Path, metavar="OUT")
        c.set_defaults(func=func)


def _key_args(p: argparse.ArgumentParser, *, multiple: bool) -> None:
    help_ = "key file: 32 raw bytes, 64 hex characters, or a passphrase key file"
    if multiple:
        p.add_argument("--key-file", action="append", type=Path, required=True,
                       help=help_ + " (repeat to try several keys, e.g. after a rotation)")
    else:
        p.add_argument("--key-file", type=Path, required=True, help=help_)
    p.add_argument("--passphrase-env", metavar="VAR", help="read the passphrase of a passphrase key file from VAR")


def passphrase_from(args: argparse.Namespace, *, confirm: bool = False) -> str | None:
    """The passphrase from ``--passphrase-env VAR`` or, on a terminal, a prompt; ``None`` if neither."""
    from ..errors import ConfigError

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


def load_keys(args: argparse.Namespace) -> list:
    """The master keys named by ``--key-file`` (asking for a passphrase only when one is needed)."""
    from ..crypto.keys import is_passphrase_file, load_key

    paths = args.key_file if isinstance(args.key_file, list) else [args.key_file]
    pw = passphrase_from(args) if any(is_passphrase_file(p) for p in paths) else None
    return [load_key(p, pw) for p in paths]


def run_keygen(args: argparse.Namespace) -> int:
    from ..crypto.keys import MasterKey, ScryptParams
    from ..errors import ConfigError

    if args.passphrase:
        pw = passphrase_from(args, confirm=True)
        if not pw:
            raise ConfigError("--passphrase needs a passphrase: use --passphrase-env VAR or run on a terminal")
        _, key = ScryptParams.create(args.key, pw, n=args.scrypt_n)
    else:
        key = MasterKey.generate()
        key.save(args.key, binary=args.binary)
    print(f"created {args.key} (mode 0600), key id {key.key_id}")
    return 0


def run_keyid(args: argparse.Namespace) -> int:
    print(load_keys(args)[0].key_id)
    return 0


def _segment(args: argparse.Namespace) -> int:
    from ..crypto.streaming import DEFAULT_SEGMENT_SIZE

    return args.segment_size or DEFAULT_SEGMENT_SIZE


def _open_input(path: Path):
    from ..errors import ConfigError

    try:
        return open(path, "rb")
    except OSError as exc:
        raise ConfigError(f"cannot open input {path}: {exc.strerror or exc}") from None


class _AtomicOutput:
    """A 0600 temp file beside ``path``: on a clean exit it is fsynced and renamed onto ``path``
    (then the directory is fsynced); on an exception it is deleted, leaving ``path`` untouched."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")

    def __enter__(self):
        from ..errors import ConfigError

        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot create output {self.path}: {exc.strerror or exc}") from None
        self.f = os.fdopen(fd, "wb")
        return self.f

    def __exit__(self, exc_type, *rest) -> None:
        try:
            if exc_type is None:
                self.f.flush()
                os.fsync(self.f.fileno())
        finally:
            self.f.close()
            if exc_type is not None:
                self.tmp.unlink(missing_ok=True)
        if exc_type is None:
            os.replace(self.tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def run_encrypt(args: argparse.Namespace) -> int:
    from ..crypto.streaming import encrypt_file

    key = load_keys(args)[0]
    with _open_input(args.input) as src, _AtomicOutput(args.output) as out:
        n = encrypt_file(src, out, key.material, args.aad.encode(), segment_size=_segment(args))
    print(f"encrypted {n} bytes -> {args.output} (key id {key.key_id})", file=sys.stderr)
    return 0


def run_decrypt(args: argparse.Namespace) -> int:
    from ..crypto.streaming import DecryptingReader, DecryptionError

    keys = load_keys(args)
    errors = []
    with _open_input(args.input) as src:
        for key in keys:
            try:
                reader = DecryptingReader.open(src, key.material, args.aad.encode(), segment_size=_segment(args),
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
    from ..crypto.streaming import salvage

    keys = load_keys(args)
    best = None
    for key in keys:
        res = salvage(args.input, key.material, args.aad.encode(), segment_size=_segment(args))
        if best is None or res.segments > best[1].segments:
            best = (key, res)
    key, res = best
    if res.segments == 0:
        print(f"surgbox: nothing recoverable in {args.input}: {res.stopped}", file=sys.stderr)
        return 1
    with _AtomicOutput(args.output) as out:
        res = salvage(args.input, key.material, args.aad.encode(), out.write, segment_size=_segment(args))
    state = "complete file" if res.complete else f"PREFIX ONLY (stopped: {res.stopped})"
    print(f"salvaged {res.plaintext_size} bytes in {res.segments} segments -> {args.output}: {state}", file=sys.stderr)
    return 0 if res.complete else 2
