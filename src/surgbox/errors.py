"""Exceptions raised by surgbox. Every message names the thing that failed and the fix."""

from __future__ import annotations


class SurgboxError(Exception):
    """Base class of every error surgbox raises on purpose."""


class ConfigError(SurgboxError, ValueError):
    """A configuration value is missing or wrong (the message names the key and the fix)."""


class PluginNotFoundError(SurgboxError, LookupError):
    """No plugin of that kind has that name; the message lists the names that exist."""

    def __init__(self, kind: str, name: str, available: list[str]):
        self.kind, self.name, self.available = kind, name, available
        names = ", ".join(sorted(available)) or "(none installed)"
        super().__init__(
            f"no {kind} plugin named {name!r}; available {kind}s: {names}. "
            f"Check the spelling, or install the package that provides it (`surgbox plugins` lists them)."
        )


class PluginUnavailableError(SurgboxError, RuntimeError):
    """The plugin exists but cannot run on this machine; the message says why."""

    def __init__(self, kind: str, name: str, reason: str):
        self.kind, self.name, self.reason = kind, name, reason
        super().__init__(f"{kind} plugin {name!r} is not available here: {reason}")


class MissingCapabilityError(ConfigError):
    """A plugin lacks an optional capability the caller needs (e.g. a store without crash recovery
    used for recording); the message names the plugin, the capability and its methods."""


class PluginConflictError(SurgboxError):
    """Two packages register the same kind and name at the same priority."""


class SourceError(SurgboxError, RuntimeError):
    """A source could not open or stopped delivering."""


class EncoderError(SurgboxError, RuntimeError):
    """The encoder could not open or write its output."""


class DetectorError(SurgboxError, RuntimeError):
    """The detector could not load its model or run."""


class DeidError(SurgboxError, RuntimeError):
    """De-identification failed: unreadable, corrupt or truncated input, or a stage failed.
    The message names the input and the fix."""


class StoreError(SurgboxError, RuntimeError):
    """The store could not write, read or verify an object."""


class IntegrityError(StoreError):
    """Stored data failed authentication or checksum verification."""


class DatasetError(SurgboxError, ValueError):
    """An annotation file, dataset folder or split file is missing, malformed or inconsistent."""
