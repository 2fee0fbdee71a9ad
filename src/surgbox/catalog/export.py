"""Copies out of the box: export into a folder (plaintext or re-encrypted, every file verified)
and playback into a player's standard input (no plaintext file).

Exported files are created with mode ``0600`` (owner only: they hold patient data) unless the
caller asks for another ``file_mode``. Playback hands decrypted media to another program, which
could keep a copy: users without the ``export`` permission may only use the players the admin
set in ``config.toml`` (``[play] players``, see :data:`DEFAULT_PLAYERS`), exactly as written there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._fs import atomic_write, fsync_dir, rename_new
from ..crypto.keys import load_key
from ..crypto.streaming import DecryptingReader, EncryptingWriter
from ..errors import IntegrityError
from .errors import CatalogError, NotFoundError
from .files import CHUNK, EventFiles, hash_stream
from .model import Event, FileRecord

log = logging.getLogger(__name__)

#: The players a user without ``export`` may use when the home's config names none: each reads
#: the media from standard input and only shows it (mpv without its user configuration, which
#: could otherwise dump the stream to a file).
DEFAULT_PLAYERS = ("ffplay -autoexit -loglevel error -i pipe:0", "mpv --no-config --really-quiet -")
FILE_MODE = 0o600


def check_file_mode(mode: Any) -> int:
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise CatalogError(f"file mode {mode!r} is not valid: give octal permission bits such as 600 or 640")
    return mode


def check_new_file(out: Path, what: str, example: str) -> Path:
    """``out``, once it is known to be a new file in an existing folder (a copy out of the box
    never replaces a file); else :class:`CatalogError` naming it and the fix."""
    if out.is_dir():
        raise CatalogError(f"{out} is a folder; give the {what}'s file name, e.g. {out / example}")
    if not out.parent.is_dir():
        raise CatalogError(f"folder {out.parent} does not exist; create it or choose another place for the {what}")
    if os.path.lexists(out):
        raise CatalogError(f"{out} exists; existing files are never replaced: remove it first or choose another "
                           f"name for the {what}")
    return out


def write_verified(path: Path, key: bytes | None, name: str, produce: Callable[[Callable[[bytes], Any]], Any],
                   sha256: str, mode: int = FILE_MODE) -> None:
    """Write plaintext (``key`` None) or a re-encrypted stream to ``path`` via a temporary file
    created with ``mode``, check the plaintext SHA-256 (decrypting the written file back when
    encrypted), then rename it into place (never over an existing file) and fsync the folder."""
    tmp = path.with_name(f".{path.name}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with open(fd, "wb") as raw:
            os.fchmod(fd, mode)  # exactly what was asked for, whatever the umask
            if key is None:
                produce(raw.write)
            else:
                w = EncryptingWriter.open(raw, key, name.encode("utf-8"))
                produce(w.write)
                w.close()
            raw.flush()
            os.fsync(raw.fileno())
        if key is None:
            with open(tmp, "rb") as f:
                _, digest = hash_stream(f)
        else:
            with DecryptingReader.open(str(tmp), key, name.encode("utf-8")) as r:
                _, digest = hash_stream(r)
        if digest != sha256:
            raise IntegrityError(f"{path.name}: the written copy does not match SHA-256 {sha256[:16]}...; "
                                 f"check the destination disk and export again")
        rename_new(tmp, path)  # never over a file, also one that appeared meanwhile
        fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, FileExistsError):
            raise CatalogError(f"{path} exists; existing files are never replaced: export into a new or empty "
                               f"folder") from None
        if isinstance(exc, OSError):
            raise CatalogError(f"cannot write {path}: {exc.strerror or exc}; free space on that disk or "
                               f"choose another folder") from exc
        raise


def select_files(ev: Event, names: Sequence[str] | None) -> list[FileRecord]:
    files = [f for f in ev.files if names is None or f.name in names]
    if names is not None:
        missing = set(names) - {f.name for f in files}
        if missing:
            raise NotFoundError(f"event {ev.id} has no file(s) {sorted(missing)}")
    return files


def checked(session: Any, ev: Event, recs: Sequence[FileRecord], operation: str) -> Sequence[FileRecord]:
    """``recs``, once allowed: raw copies (file kind ``raw``: a source hidden live kept unhidden,
    ``keep_raw``) need ``view_raw`` besides the action itself (``session.authorize`` audits a refusal)."""
    if any(r.kind == "raw" for r in recs):
        session.authorize("view_raw", ev, operation=operation,
                          hint="raw copies of sources hidden live are readable only by roles with the view_raw "
                               "permission (docs/security.md); ask an admin")
    return recs


def readable(session: Any, ev: Event, names: Sequence[str] | None, operation: str) -> Sequence[str] | None:
    """The files an export takes: ``names`` (raw ones checked), or, when ``None``, every file
    the user may read (raw copies left out without ``view_raw``)."""
    if names is None and not session.can("view_raw", ev):
        names = [f.name for f in ev.files if f.kind != "raw"]
    checked(session, ev, select_files(ev, names), operation)
    return names


def export_files(ev: Event, files: EventFiles, dest: Path, *, key_file: str | os.PathLike[str] | None,
                 names: Sequence[str] | None, mode: int = FILE_MODE) -> tuple[list[str], int, int]:
    """Write the event's files (``names``, default all), ``event.json`` and ``SHA256SUMS`` into
    ``dest``: ``(names written, bytes of the event's files, files exported)``."""
    chosen = select_files(ev, names)
    key = load_key(key_file).material if key_file is not None else None
    try:
        dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise CatalogError(f"cannot create the export folder {dest}: {exc.strerror or exc}; "
                           f"choose a writable folder (--to DIR)") from None
    meta_name = "event.json" + (".enc" if key else "")
    names_out = [rec.name + (".enc" if key else "") for rec in chosen] + [meta_name, "SHA256SUMS"]
    there = [n for n in names_out if os.path.lexists(dest / n)]
    if there:  # before anything is written: an earlier export (another event's event.json) stays whole
        more = f" (and {len(there) - 1} more of the export's names)" if len(there) > 1 else ""
        raise CatalogError(f"export folder {dest} already holds {there[0]!r}{more}; existing files are never "
                           f"replaced: export into a new or empty folder (--to DIR)")
    written, total, sums = [], 0, []
    meta = json.dumps(ev.to_dict(), indent=1, ensure_ascii=False).encode("utf-8")
    for rec in chosen:
        out = dest / (rec.name + (".enc" if key else ""))
        write_verified(out, key, rec.name, lambda sink, rec=rec: files.copy_verified(rec, sink), rec.sha256, mode)
        written.append(out.name)
        sums.append(f"{rec.sha256}  {rec.name}\n")
        total += rec.size
    write_verified(dest / meta_name, key, "event.json", lambda sink: sink(meta), hashlib.sha256(meta).hexdigest(), mode)
    try:
        atomic_write(dest / "SHA256SUMS", "".join(sums).encode(), mode=mode, exclusive=True)
    except OSError as exc:
        raise CatalogError(f"cannot write {dest / 'SHA256SUMS'}: {exc.strerror or exc}; free space on that "
                           f"disk or choose another folder") from exc
    return written + [meta_name, "SHA256SUMS"], total, len(chosen)


def playable(ev: Event, names: Sequence[str] | None) -> list[FileRecord]:
    """The files to play: ``names``, else the segments in name order, else the de-identified copies."""
    if names:
        return [ev.file(n) for n in names]
    files = sorted((f for f in ev.files if f.kind == "segment"), key=lambda f: f.name) or \
        sorted((f for f in ev.files if f.kind == "deid"), key=lambda f: f.name)
    if not files:
        raise NotFoundError(f"event {ev.id} has no recording to play; give a file with --file NAME")
    return files


def vetted_players(settings: Any) -> list[list[str]]:
    """The admin's ``[play] players`` (command lines), each split into arguments."""
    players = settings if settings is not None else DEFAULT_PLAYERS
    if isinstance(players, str) or not all(isinstance(p, str) and p.strip() for p in players):
        raise CatalogError("config.toml [play] players must be a list of command lines, e.g. "
                           f"players = [{DEFAULT_PLAYERS[0]!r}]")
    return [shlex.split(p) for p in players]


def choose_player(player: Sequence[str] | None, vetted: list[list[str]]) -> list[str]:
    """``player`` as given, or the first installed vetted player; :class:`CatalogError` when none is."""
    if player:
        cmd = list(player)
    else:
        cmd = next((p for p in vetted if shutil.which(p[0])), [])
    if not cmd or shutil.which(cmd[0]) is None:
        raise CatalogError(f"player {cmd[0] if cmd else '(none)'!r} is not installed; install ffplay (ffmpeg) "
                           f"or mpv, or give --player 'COMMAND ARGS' reading the media from standard input")
    return cmd


def stream_to_player(files: EventFiles, recs: Sequence[FileRecord], player: Sequence[str]) -> int:
    """Pipe each file into a new run of ``player`` (its stdin), checking SHA-256 as it streams;
    stops at the first non-zero exit status, which it returns (0 when every run succeeded)."""
    rc = 0
    for rec in recs:
        proc = subprocess.Popen(list(player), stdin=subprocess.PIPE)
        try:
            files.copy_verified(rec, proc.stdin.write)
        except BrokenPipeError:
            log.info("player closed its input while playing %s", rec.name)
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            rc = proc.wait()
        if rc != 0:
            break
    return rc


__all__ = ["CHUNK", "DEFAULT_PLAYERS", "FILE_MODE", "check_file_mode", "check_new_file", "choose_player", "export_files", "playable",
           "select_files", "stream_to_player", "vetted_players", "write_verified"]
