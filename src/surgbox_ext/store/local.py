"""``local`` store: encrypted objects under one root directory.

>>> store = LocalStore(root="/srv/surgbox", key_file="/etc/surgbox/master.key", init=True)  # doctest: +SKIP
>>> with store, store.writer("2026/11/ev-1/rec.mp4") as f:                                  # doctest: +SKIP
...     f.write(data)
"""

from __future__ import annotations

import os
from typing import Any

from .base import EncryptedStore


class LocalStore(EncryptedStore):
    """An :class:`EncryptedStore` with exactly one root (``root=``); see the base class for options."""

    def __init__(self, root: str | os.PathLike[str], **options: Any):
        super().__init__(roots=[root], **options)
