"""``mirror`` store: RAID-1 style copies of every encrypted object on two or more roots (disks).

Writes go to every healthy root; reads use any copy whose sidecar matches, and take a segment that
fails authentication from another copy; :meth:`~EncryptedStore.scrub` rewrites damaged or missing
copies from a good one. A root that disappears, errors or fills up is marked failed: the store is
*degraded* (logged at ERROR, shown by ``status()`` and ``surgbox store status``) and keeps writing
to the remaining roots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from surgbox.errors import ConfigError

from .base import EncryptedStore


class MirrorStore(EncryptedStore):
    """An :class:`EncryptedStore` over ``roots`` (at least two, on different disks)."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]], **options: Any):
        if isinstance(roots, (str, os.PathLike)) or len(roots) < 2:
            raise ConfigError(f"a mirror store needs at least two roots (got {roots!r}); use the 'local' store for one")
        super().__init__(roots=list(roots), **options)
