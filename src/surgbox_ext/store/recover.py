"""Crash recovery of a store: :meth:`partials` lists unfinished writes, :meth:`recover` commits the
longest authentic prefix of each write whose writer died.

Recovery never throws away data it cannot prove is kept elsewhere: the temporary files of a write
are removed only once its prefix is committed, when it holds no complete segment, or when the very
same write (same stream header) is already committed. A write whose key meanwhile belongs to another
object (e.g. a second recording numbered before the crashed one was recovered) is committed under a
free key (``NAME.recovered-N.EXT``); one it cannot read (another key, a damaged descriptor, no
authentic segment) keeps its files and is reported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import attrs

from surgbox.crypto.format import DEFAULT_SEGMENT_SIZE, HEADER_SIZE, check_segment_size
from surgbox.crypto.keys import WrongKeyError
from surgbox.crypto.salvage import salvage
from surgbox.errors import StoreError

from .layout import Replica, object_aad, validate_key
from .locks import try_lock

logger = logging.getLogger(__name__)

__all__ = ["RecoverMixin", "Recovered"]

_DONE = ("recovered", "already-committed", "discarded")  # the temporary files may go


@attrs.frozen
class Recovered:
    """One crashed write handled by :meth:`recover`. ``action``: ``"recovered"`` (committed under
    ``key``; ``original_key`` is the key it was written as when that key was taken by another
    object), ``"already-committed"`` (this very write is committed), ``"discarded"`` (it held no
    complete segment), ``"no-key"`` (written with a key this store was not given: left untouched)
    or ``"failed"`` (``error`` says why; the temporary files are kept for a retry)."""

    key: str
    plaintext_size: int
    segments: int
    complete: bool
    action: str
    error: str = ""
    original_key: str = ""


def _read_desc(path: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _desc_key(d: dict[str, Any] | None) -> str | None:
    key = d.get("key") if d else None
    try:
        return validate_key(key) if isinstance(key, str) else None
    except StoreError:
        return None


def _header(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(HEADER_SIZE)
    except OSError:
        return None


def free_key(key: str, taken: Any) -> str:
    """The first ``DIR/STEM.recovered-N.EXT`` (N = 1, 2, ...) for which ``taken(k)`` is false."""
    folder, slash, name = key.rpartition("/")
    stem, dot, ext = name.partition(".")
    n = 1
    while True:
        k = f"{folder}{slash}{stem}.recovered-{n}{dot}{ext}"
        if not taken(k):
            return k
        n += 1


class RecoverMixin:
    """``partials``/``recover`` of :class:`~surgbox_ext.store.base.EncryptedStore`."""

    roots: list[Replica]
    segment_size: int

    def partials(self, *, live: bool = False) -> list[dict[str, Any]]:
        """Unfinished writes left in ``tmp/``, one entry per root: ``{"root", "id", "key", "key_id",
        "segment_size", "started_ns", "bytes", "live"}`` (``key`` is ``None`` when the descriptor is
        unreadable). Writes still in progress (their writer holds the lock) are listed only with
        ``live=True``. Number new objects after both these keys and the committed ones."""
        out = []
        for r in self._healthy():
            for desc in sorted(r.tmp.glob("*.json")):
                lock = try_lock(desc)
                if lock is not None:
                    os.close(lock)
                elif not live:
                    continue
                d = _read_desc(desc) or {}
                part = desc.with_suffix(".part")
                out.append({"root": str(r.root), "id": desc.stem, "key": _desc_key(d), "key_id": d.get("key_id"),
                            "segment_size": d.get("segment_size"), "started_ns": d.get("started_ns"),
                            "bytes": part.stat().st_size if part.exists() else 0, "live": lock is None})
        return out

    def recover(self) -> list[Recovered]:
        """Turn every crashed write into a committed object holding the longest authentic prefix.

        For each write whose writer died (its lock is free), the complete segments of the longest
        copy are authenticated in order (:func:`~surgbox.crypto.salvage.salvage`) and re-encrypted
        into an object with ``recovered=True`` in the sidecar (the prefix cannot prove it is the
        whole recording) and metadata ``surgbox.recovered`` = ``"prefix"`` or ``"complete"``. Needs
        the key that wrote them. See :class:`Recovered` for the outcomes; run ``recover`` again once
        the cause of a ``"failed"`` one is fixed.
        """
        groups: dict[str, list[tuple[Replica, Path, int]]] = {}
        results: list[Recovered] = []
        for r in self._healthy():
            for desc in sorted(r.tmp.glob("*.json")):
                lock = try_lock(desc)
                if lock is not None:
                    groups.setdefault(desc.stem, []).append((r, desc, lock))
        for wid, items in groups.items():
            try:
                res = self._recover_one(items)
            except WrongKeyError as exc:  # another key's write (e.g. an event's data key): keep it for its owner
                logger.warning("unfinished write %s is encrypted with a key this store was not given (%s); left "
                               "as it is: recover it with that key", wid, exc)
                res = Recovered(self._partial_key(items), 0, 0, False, "no-key", str(exc))
            except Exception as exc:  # e.g. a full disk: keep the crashed write's files for a retry
                logger.error("could not recover unfinished write %s (%s: %s); its files are kept in tmp/: fix the "
                             "cause and run `surgbox store recover` again", wid, type(exc).__name__, exc)
                res = Recovered(self._partial_key(items), 0, 0, False, "failed", f"{type(exc).__name__}: {exc}")
            except BaseException:
                for _r, _desc, lock in items:
                    os.close(lock)
                raise
            results.append(res)
            for _r, desc, lock in items:
                if res.action in _DONE:
                    with contextlib.suppress(OSError):
                        desc.with_suffix(".part").unlink()
                    with contextlib.suppress(OSError):
                        desc.unlink()
                os.close(lock)
        return results

    @staticmethod
    def _partial_key(items: list[tuple[Replica, Path, int]]) -> str:
        for _r, path, _ in items:
            key = _desc_key(_read_desc(path))
            if key is not None:
                return key
        return "?"

    def _recover_one(self, items: list[tuple[Replica, Path, int]]) -> Recovered:
        desc = next((d for _r, p, _ in items if (d := _read_desc(p)) is not None), None) or {}
        key = _desc_key(desc)
        try:
            seg = check_segment_size(desc.get("segment_size", self.segment_size))
        except ValueError:
            seg = DEFAULT_SEGMENT_SIZE
        parts = [(r, p.with_suffix(".part")) for r, p, _ in items]
        has_segment = any(part.exists() and part.stat().st_size >= seg for _r, part in parts)
        if key is None:
            if not has_segment:
                return Recovered("?", 0, 0, False, "discarded")
            return Recovered("?", 0, 0, False, "failed", "the write's descriptor (tmp/*.json) is unreadable; its "
                             "files are kept: recover them by hand with `surgbox crypt salvage`")
        target, original = key, ""
        if self.exists(key):
            if self._same_write(key, parts):
                self._note_missing_copies(key)
                return Recovered(key, 0, 0, True, "already-committed")
            target, original = free_key(key, self._taken), key
        master = self._master().get(desc.get("key_id", "?"), f"unfinished write of {key!r}")
        best, best_res = None, None
        for r, part in parts:
            if not part.exists():
                orphan = r.data_path(key)  # crashed between data rename and sidecar: move it back
                if orphan.exists() and not r.meta_path(key).exists():
                    os.replace(orphan, part)
                else:
                    continue
            res = salvage(str(part), master.material, object_aad(key), segment_size=seg)
            if best_res is None or res.segments > best_res.segments:
                best, best_res = part, res
        if best is None or best_res is None or best_res.segments == 0:
            if not has_segment:
                return Recovered(key, 0, 0, False, "discarded")
            return Recovered(key, 0, 0, False, "failed", "no complete segment authenticates (the temporary files "
                             "are damaged); they are kept in tmp/")
        meta = {**desc.get("metadata", {}), "surgbox.recovered": "complete" if best_res.complete else "prefix"}
        if original:
            meta["surgbox.recovered-from"] = original
        w = self.writer(target, meta, recovered=not best_res.complete, segment_size=seg)
        with w:
            res = salvage(str(best), master.material, object_aad(key), w.write, segment_size=seg)
        logger.warning("recovered %r%s: %d bytes in %d segments (%s)", target,
                       f" (written as {original!r}, which another object holds)" if original else "",
                       res.plaintext_size, res.segments, "complete" if res.complete else "prefix of a killed write")
        return Recovered(target, res.plaintext_size, res.segments, res.complete, "recovered", original_key=original)

    def _taken(self, key: str) -> bool:
        if self.exists(key):
            return True
        return any(p["key"] == key for p in self.partials(live=True))

    def _same_write(self, key: str, parts: list[tuple[Replica, Path]]) -> bool:
        """Whether the committed ``key`` is this very write (same random stream header)."""
        committed = {h for r in self._healthy() if (h := _header(r.data_path(key))) is not None}
        return any(h is not None and len(h) == HEADER_SIZE and h in committed
                   for h in (_header(part) for _r, part in parts))

    def _note_missing_copies(self, key: str) -> None:
        """A writer died between committing on some roots and the others: note the missing copies."""
        holders = [r for r in self._healthy() if r.meta_path(key).exists()]
        if len(holders) < len(self.roots):
            for r in holders:
                with contextlib.suppress(OSError):
                    r.add_pending(key, len(holders), len(self.roots))
