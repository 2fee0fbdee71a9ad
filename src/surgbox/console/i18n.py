"""The console's languages: English, Brazilian Portuguese and Spanish (``translations/*.json``).

>>> tr = Translations.load()
>>> tr.pick(None, None, "es-ES,es;q=0.9,en;q=0.5")
'es'
>>> tr.text("pt-BR", "nav.events")
'Eventos'

Every message has a key (``nav.events``); each language file maps every key of ``en.json`` to its
text (a test checks that no key is missing). Texts may hold ``{name}`` fields filled by
:meth:`Translations.text`. The language is picked in this order: the user's choice (saved per
user name, :class:`LanguagePrefs`), the browser's cookie (the language buttons), the browser's
``Accept-Language``, then English.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from .._fs import atomic_write

LANGUAGES = ("en", "pt-BR", "es")
NAMES = {"en": "English", "pt-BR": "Português", "es": "Español"}
DEFAULT = "en"


def _normal(tag: str) -> str | None:
    """``pt_br`` / ``pt-BR`` / ``pt`` -> ``pt-BR``; ``es-419`` -> ``es``; unknown -> ``None``."""
    t = tag.strip().replace("_", "-").lower()
    for lang in LANGUAGES:
        if t == lang.lower():
            return lang
    base = t.split("-", 1)[0]
    return {"pt": "pt-BR", "es": "es", "en": "en"}.get(base)


def parse_accept_language(header: str | None) -> list[str]:
    """The console languages of an ``Accept-Language`` header, best first."""
    out: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")):
        tag, _, params = part.partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = _normal(tag) if tag.strip() and tag.strip() != "*" else None
        if lang and q > 0:
            out.append((-q, i, lang))
    seen: list[str] = []
    for _, _, lang in sorted(out):
        if lang not in seen:
            seen.append(lang)
    return seen


@attrs.frozen
class Translations:
    """The message tables, ``{language: {key: text}}``."""

    tables: Mapping[str, Mapping[str, str]]

    @classmethod
    def load(cls) -> Translations:
        base = resources.files("surgbox.console") / "translations"
        tables = {}
        for lang in LANGUAGES:
            tables[lang] = json.loads((base / f"{lang}.json").read_text(encoding="utf-8"))
        return cls(tables)

    def pick(self, user_choice: str | None, cookie: str | None, accept_language: str | None) -> str:
        for choice in (user_choice, cookie):
            if choice in self.tables:
                return choice
        for lang in parse_accept_language(accept_language):
            if lang in self.tables:
                return lang
        return DEFAULT

    def text(self, lang: str, key: str, **fields: Any) -> str:
        """The text of ``key`` in ``lang`` (English when missing there, the key itself when unknown)."""
        raw = self.tables.get(lang, {}).get(key) or self.tables[DEFAULT].get(key) or key
        return raw.format(**fields) if fields else raw

    def missing(self, lang: str) -> list[str]:
        """Keys of English that ``lang`` lacks."""
        return sorted(set(self.tables[DEFAULT]) - set(self.tables.get(lang, {})))


@attrs.define(eq=False)
class LanguagePrefs:
    """Each user's chosen language, in ``path`` (JSON ``{user name: language}``; user names are no
    patient data). A missing or unreadable file means no choices yet."""

    path: Path
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and v in LANGUAGES} if isinstance(data, dict) else {}

    def get(self, user: str) -> str | None:
        return self._read().get(user)

    def set(self, user: str, lang: str) -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"language {lang!r} is not one of {', '.join(LANGUAGES)}")
        with self._lock:
            data = self._read()
            data[user] = lang
            os.makedirs(self.path.parent, mode=0o700, exist_ok=True)
            atomic_write(self.path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode(), mode=0o600)
