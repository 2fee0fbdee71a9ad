"""Registration of surgbox's default plugins (entry point ``surgbox_ext`` in group ``surgbox``).

Factories are :func:`~surgbox.plugins.lazy` so that listing plugins imports no torch, opens no
device and starts no thread.
"""

from __future__ import annotations

from surgbox.hookspecs import Register, hookimpl
from surgbox.plugins import DEFAULT_PRIORITY, lazy, requires

P = DEFAULT_PRIORITY


@hookimpl
def register_sources(register: Register) -> None:
    pass


@hookimpl
def register_compositors(register: Register) -> None:
    pass


@hookimpl
def register_encoders(register: Register) -> None:
    pass


@hookimpl
def register_detectors(register: Register) -> None:
    pass


@hookimpl
def register_stores(register: Register) -> None:
    pass
