"""The one TOML file loader of surgbox: every failure becomes one :class:`ConfigError` line.

>>> load_toml("missing.toml", what="config file")  # doctest: +SKIP
ConfigError: config file missing.toml does not exist; ...

Used by the recording configuration (:mod:`surgbox.config`) and, for the home's
``config.toml``, by :mod:`surgbox.home`. A missing file, a folder, an unreadable file, bytes
that are not UTF-8 (a binary file given by mistake) and invalid TOML each give a message that
names the file and the fix; ``hint`` is appended to the "does not exist" message.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["load_toml"]


def load_toml(path: str | os.PathLike[str], *, what: str = "config file", hint: str = "") -> dict[str, Any]:
    """The parsed TOML table of ``path``; raises :class:`ConfigError` naming ``what`` and the file."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{what} {p} does not exist" + (f"; {hint}" if hint else "")) from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {p} is a folder, not a TOML file; give the path of the file") from None
    except PermissionError:
        raise ConfigError(f"{what} {p} cannot be read (permission denied); check its owner and mode") from None
    except OSError as exc:
        raise ConfigError(f"{what} {p} cannot be read ({exc.strerror or exc}); check the path") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {p} is not a text file (byte {exc.start} is not UTF-8); give a TOML file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {p} is not valid TOML ({exc}); fix the file") from None
