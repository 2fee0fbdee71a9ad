"""Integrity checks of a store: :meth:`verify` (read-only) and :meth:`scrub` (repair).

Scrub prefers keeping data over deleting it when copies or records disagree:

* a damaged copy (size or SHA-256 differs from its own sidecar) is rewritten from a good one;
* a different, intact version whose replacement is not proven by a verified sidecar (the store
  holds no key to check it) is moved to ``quarantine/`` before the newer one is copied over it;
* a tombstone removes copies only when its MAC verifies under a key the store holds; a tombstone
  that cannot be verified keeps the copies (reported), a forged one or one from the far future is
  moved to ``quarantine/`` and the object is kept (reported);
* an object with no good copy left is reported ``lost``, never deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import attrs

from surgbox._fs import AtomicFile, make_dirs, write_all
from surgbox.crypto.format import DecryptionError
from surgbox.crypto.keys import WrongKeyError
from surgbox.crypto.reader import DecryptingReader
from surgbox.errors import IntegrityError

from .layout import Replica, object_aad, validate_key
from .metadata import FORGED, IMPLAUSIBLE, UNSIGNED, UNVERIFIABLE, VERIFIED, ObjectMeta, Tombstone

logger = logging.getLogger(__name__)

__all__ = ["Problem", "ScrubMixin", "ScrubReport"]

_COPY_CHUNK = 1 << 20


def sha256_file(path: Any) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_COPY_CHUNK)
        while n := f.readinto(buf):
            h.update(memoryview(buf)[:n])
    return h.hexdigest()


@attrs.frozen
class Problem:
    """A damaged copy or record found by verify/scrub. ``kind``: ``missing``, ``bad-meta``, ``size``,
    ``checksum``, ``stale`` (an older version), ``auth`` (segments fail authentication), ``deleted``
    (a copy of an object deleted while its disk was away: removed by scrub when the tombstone
    verifies), ``tombstone`` (a tombstone that is forged, from the far future, or cannot be
    verified). ``repaired``: scrub fixed it (``detail`` says how, e.g. what went to quarantine)."""

    key: str
    root: str
    kind: str
    detail: str = ""
    repaired: bool = False


@attrs.frozen
class ScrubReport:
    """Result of :meth:`verify` / :meth:`scrub`: ``objects`` checked, ``problems``, ``lost`` keys
    (no good copy left) and, with ``decrypt``, ``unchecked`` keys whose segments could not be
    authenticated because the store was not given their key."""

    objects: int
    problems: tuple[Problem, ...]
    lost: tuple[str, ...]
    unchecked: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing is left damaged (every problem repaired, nothing lost)."""
        return not self.lost and all(p.repaired for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"objects": self.objects, "ok": self.ok, "lost": list(self.lost), "unchecked": list(self.unchecked),
                "problems": [attrs.asdict(p) for p in self.problems]}


_NO_KEY = object()


class ScrubMixin:
    """``verify``/``scrub`` of :class:`~surgbox_ext.store.base.EncryptedStore` (which provides
    ``roots``, ``_healthy``, ``_fail``, ``_lock``, ``suspect``, ``_master``, ``_mac_keys`` and
    ``_tombstones``)."""

    roots: list[Replica]
    suspect: set[tuple[str, str]]

    def verify(self, keys: Sequence[str] | None = None, *, decrypt: bool = False) -> ScrubReport:
        """Check every copy of ``keys`` (default: all) against its sidecar's size and SHA-256; with
        ``decrypt`` also authenticate every segment of one good copy (needs the key). Read-only."""
        return self._check(keys, decrypt=decrypt, repair=False)

    def scrub(self, keys: Sequence[str] | None = None, *, decrypt: bool = False) -> ScrubReport:
        """:meth:`verify`, then repair (see the module doc); clears the under-replicated note of every
        object it brings back to one good copy per root."""
        return self._check(keys, decrypt=decrypt, repair=True)

    def _check(self, keys: Sequence[str] | None, *, decrypt: bool, repair: bool) -> ScrubReport:
        healthy = self._healthy()
        if keys is None:  # every key with a sidecar or a pending note anywhere (stale copies of deleted objects too)
            found: set[str] = set()
            for r in healthy:
                with contextlib.suppress(OSError):
                    found.update(r.iter_keys())
                    found.update(r.pending())
            keys = found
        todo = sorted(set(keys))
        problems: list[Problem] = []
        lost: list[str] = []
        unchecked: list[str] = []
        for key in todo:
            validate_key(key)
            self._check_one(key, healthy, decrypt, repair, problems, lost, unchecked)
        return ScrubReport(len(todo), tuple(problems), tuple(lost), tuple(unchecked))

    def _copy_state(self, r: Replica, key: str, now: int) -> tuple[ObjectMeta | None, str, str]:
        """``(sidecar, trust, why)`` of ``r``'s copy: ``why`` is empty for a good copy, else
        ``"kind: detail"``; a sidecar that is forged or from the far future counts as bad-meta."""
        try:
            m = r.read_meta(key)
        except (OSError, ValueError) as exc:
            return None, "", f"bad-meta: {exc}"
        if m is None:
            return None, "", "missing: no sidecar"
        trust = m.trust(self._mac_keys(), now)
        if trust in (FORGED, IMPLAUSIBLE):
            return None, trust, f"bad-meta: the sidecar is {trust} ({'MAC does not verify' if trust == FORGED else 'created in the far future'})"
        try:
            size = r.data_path(key).stat().st_size
        except FileNotFoundError:
            return m, trust, "missing: no data file"
        except OSError as exc:
            return m, trust, f"missing: {exc}"
        if size != m.ciphertext_size:
            return m, trust, f"size: {size} bytes, sidecar says {m.ciphertext_size}"
        try:
            digest = sha256_file(r.data_path(key))
        except OSError as exc:
            return m, trust, f"missing: unreadable ({exc})"
        return m, trust, "" if digest == m.sha256 else "checksum: SHA-256 differs from the sidecar"

    def _check_one(self, key: str, healthy: list[Replica], decrypt: bool, repair: bool, problems: list[Problem],
                   lost: list[str], unchecked: list[str]) -> None:
        now = time.time_ns()
        state = {r: self._copy_state(r, key, now) for r in healthy}
        honoured: list[tuple[Replica, Tombstone, str]] = []
        for r, tomb, trust in self._tombstones(key, healthy):
            if self.honours(trust):
                honoured.append((r, tomb, trust))
            elif trust == UNVERIFIABLE:  # signed with a key we do not hold: maybe real, never acted upon here
                problems.append(Problem(key, str(r.root), "tombstone", f"tombstone: signed with key id "
                                        f"{tomb.mac_key_id}, which this store was not given: it is ignored and the "
                                        f"object kept; scrub with that key to apply it"))
            else:  # forged, from the far future, or unsigned where keys can check: set it aside, keep the data
                fixed, note = False, ""
                if repair:
                    try:
                        note = f"; moved to {r.quarantine(key, data=False, meta=False, tombstone=True)}"
                        fixed = True
                    except OSError as exc:
                        self._fail(r, exc, f"quarantining the tombstone of {key!r}")
                what = {FORGED: "its MAC does not verify", UNSIGNED: "it carries no MAC",
                        IMPLAUSIBLE: f"its time {tomb.deleted_ns} ns is in the far future"}[trust]
                problems.append(Problem(key, str(r.root), "tombstone", f"tombstone: {trust}, {what}; the object is kept{note}", fixed))
        newest = max(honoured, key=lambda t: t[1].deleted_ns, default=None)
        created = [m.created_ns for m, _t, _w in state.values() if m is not None]
        if newest is not None and not any(c > newest[1].deleted_ns for c in created):
            self._check_deleted(key, newest[1], newest[2] == VERIFIED, state, problems, repair)  # a newer tombstone wins
            return
        deleted_ns = newest[1].deleted_ns if newest is not None else None
        valid = {r: m for r, (m, _t, why) in state.items()
                 if not why and m is not None and (deleted_ns is None or m.created_ns > deleted_ns)}
        if not valid:
            if all(why.startswith("missing: no sidecar") and not r.data_path(key).exists() for r, (_, _, why) in state.items()):
                if repair:  # nothing of it anywhere: only a stale under-replication note
                    self._clear_pending(key)
                return
            lost.append(key)  # no copy left that matches its sidecar: nothing to repair from
            for r, (_, _, why) in state.items():
                problems.append(Problem(key, str(r.root), why.split(":")[0], why))
            return
        best = max(valid.values(), key=lambda m: m.created_ns)
        best_trust = next(t for r, (m, t, _w) in state.items() if m is best)
        good = [r for r, m in valid.items() if m.sha256 == best.sha256]
        if decrypt:
            err = self._authenticate(key, best, good)
            if err is _NO_KEY:
                unchecked.append(key)
            elif err is not None:
                lost.append(key)
                problems.append(Problem(key, ",".join(str(r.root) for r in good), "auth", str(err)))
                return
        whole = True
        for r, (m, _t, why) in state.items():
            if r in good:
                continue
            if not why:
                why = f"stale: an older version (checksum {m.sha256[:12]}...)" if m else "stale"
            fixed, note = False, ""
            if repair:
                keep = best_trust != VERIFIED and why.split(":")[0] in ("stale", "bad-meta")
                fixed, note = self._repair(key, best, good[0], r, keep_old=keep)
            whole = whole and fixed
            problems.append(Problem(key, str(r.root), why.split(":")[0], why + note, fixed))
            if fixed:
                with self._lock:
                    self.suspect.discard((key, str(r.root)))
        if repair and whole and all(r.ok for r in self.roots):
            self._clear_pending(key)

    def _clear_pending(self, key: str) -> None:
        for r in self._healthy():
            try:
                r.remove_pending(key)
            except OSError as exc:
                self._fail(r, exc, f"clearing the under-replication note of {key!r}")

    def _check_deleted(self, key: str, tomb: Tombstone, verified: bool, state: dict[Replica, Any],
                       problems: list[Problem], repair: bool) -> None:
        """``key`` was deleted after every copy left: report (and, with ``repair`` and a verified
        tombstone, remove) the copies still there; an unverifiable tombstone keeps them."""
        for r in state:
            if not (r.meta_path(key).exists() or r.data_path(key).exists()):
                continue
            fixed = False
            if not verified:
                problems.append(Problem(key, str(r.root), "deleted", f"deleted: a copy of an object whose tombstone "
                                        f"({tomb.deleted_ns} ns) cannot be verified (no key for it): the copy is "
                                        f"kept; scrub with the key that deleted it to remove it"))
                continue
            if repair:
                try:
                    r.write_tombstone(tomb)
                    r.remove_copy(key)
                    fixed = True
                    logger.warning("object %r: removed the stale copy on %s (the object was deleted)", key, r.root)
                except OSError as exc:
                    self._fail(r, exc, f"removing the deleted {key!r}")
            problems.append(Problem(key, str(r.root), "deleted",
                                    f"deleted: a copy of an object deleted at {tomb.deleted_ns} ns (tombstone)", fixed))
            with self._lock:
                self.suspect.discard((key, str(r.root)))
        if repair and verified:
            self._clear_pending(key)

    def _authenticate(self, key: str, meta: ObjectMeta, good: list[Replica]) -> Any:
        """``None`` when every segment of a good copy authenticates, ``_NO_KEY`` without its key, else the error."""
        try:
            master = self._master().get(meta.key_id, f"object {key!r}")
        except WrongKeyError:
            return _NO_KEY
        try:
            with DecryptingReader.open(good[0].data_path(key), master.material, object_aad(key),
                                       segment_size=meta.segment_size, cache_segments=1) as rd:
                for _ in rd.iter_segments():
                    pass
        except DecryptionError as exc:
            return str(exc)
        except OSError as exc:
            return f"cannot read the copy on {good[0].root}: {exc}"
        return None

    def _repair(self, key: str, meta: ObjectMeta, src: Replica, dst: Replica, *, keep_old: bool) -> tuple[bool, str]:
        """Copy ``src``'s good copy to ``dst`` (verified against ``meta.sha256`` before the rename);
        ``keep_old``: first move ``dst``'s differing copy to quarantine. Returns (done, note)."""
        note = ""
        try:
            if keep_old and dst.data_path(key).is_file() and sha256_file(dst.data_path(key)) != meta.sha256:
                q = dst.quarantine(key, data=True, meta=True)
                note = f"; the other version is kept in {q}"
                logger.warning("object %r: moved the differing copy on %s to %s", key, dst.root, q)
            final = dst.data_path(key)
            make_dirs(final.parent, dst.root)
            with open(src.data_path(key), "rb", buffering=0) as fin, AtomicFile(final, tmp_dir=dst.tmp) as out:
                h = hashlib.sha256()
                buf = bytearray(_COPY_CHUNK)
                while n := fin.readinto(buf):
                    chunk = memoryview(buf)[:n]
                    h.update(chunk)
                    write_all(out, chunk)
                if h.hexdigest() != meta.sha256:
                    raise IntegrityError(f"source copy on {src.root} changed while copying")
                dst.meta_path(key).unlink(missing_ok=True)  # uncommit first: never a listed object with bad data
            dst.write_meta(meta)
            logger.warning("object %r: repaired the copy on %s from %s", key, dst.root, src.root)
            return True, note
        except (OSError, IntegrityError) as exc:
            logger.error("object %r: could not repair the copy on %s: %s", key, dst.root, exc)
            if isinstance(exc, OSError):
                self._fail(dst, exc, f"repairing {key!r}")
            return False, note
