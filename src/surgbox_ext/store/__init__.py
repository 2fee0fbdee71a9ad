"""Encrypted stores: ``local`` (one root) and ``mirror`` (RAID-1 style over several roots).

Modules: :mod:`.base` (the engine: lifecycle, health, object CRUD), :mod:`.layout` (one root's
files and the key rules), :mod:`.metadata` (sidecars, tombstones, their MAC), :mod:`.writer`
(the tee writer), :mod:`.failover` (reading a mirror's copies), :mod:`.scrub`, :mod:`.recover`,
:mod:`.locks`; :mod:`.local` and :mod:`.mirror` are the two plugins.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .base import EncryptedStore, ObjectNotFoundError
from .layout import Replica, object_aad, validate_key
from .local import LocalStore
from .metadata import ObjectMeta, Tombstone
from .mirror import MirrorStore
from .recover import Recovered
from .scrub import Problem, ScrubReport
from .writer import StoreWriter


def open_store(roots: Sequence[str | os.PathLike[str]], **options: Any) -> EncryptedStore:
    """A ``local`` store for one root or a ``mirror`` for several (not opened)."""
    if len(roots) == 1:
        return LocalStore(root=roots[0], **options)
    return MirrorStore(roots=list(roots), **options)


__all__ = ["EncryptedStore", "LocalStore", "MirrorStore", "ObjectMeta", "ObjectNotFoundError", "Problem", "Recovered",
           "Replica", "ScrubReport", "StoreWriter", "Tombstone", "object_aad", "open_store", "validate_key"]
