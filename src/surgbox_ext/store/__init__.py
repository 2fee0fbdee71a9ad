"""Encrypted stores: ``local`` (one root) and ``mirror`` (RAID-1 style over several roots)."""

from .base import EncryptedStore, ObjectMeta, ObjectNotFoundError, Problem, Recovered, ScrubReport, open_store
from .local import LocalStore
from .mirror import MirrorStore

__all__ = ["EncryptedStore", "LocalStore", "MirrorStore", "ObjectMeta", "ObjectNotFoundError", "Problem", "Recovered",
           "ScrubReport", "open_store"]
