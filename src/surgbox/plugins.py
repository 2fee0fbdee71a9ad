"""The plugin manager: discovery through the ``surgbox`` entry-point group, lookup by name.

>>> from surgbox.plugins import get_plugins
>>> enc = get_plugins().create("encoder", "libx264", preset="veryfast")   # doctest: +SKIP

Names may be qualified with the providing package (``"surgbox:libx264"``) to pick one of
several registrations of the same name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import ConfigError, PluginConflictError, PluginNotFoundError, PluginUnavailableError, SurgboxError
from .hookspecs import REGISTRATION_HOOKS

ENTRY_POINT_GROUP = "surgbox"
KINDS = tuple(REGISTRATION_HOOKS)
DEFAULT_PRIORITY = -100  # priority of surgbox's own plugins: any vendor plugin of the same name wins


@attrs.frozen
class PluginEntry:
    """One registered component: ``kind`` / ``name`` / ``factory`` and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    package: str
    description: str = ""
    check: Callable[[], str | None] | None = None
    priority: int = 0

    def unavailable_reason(self) -> str | None:
        """``None`` when the plugin can run here, else why not (``check`` errors count as reasons)."""
        if self.check is None:
            return None
        try:
            return self.check()
        except Exception as exc:  # a broken check must not break listing
            return f"availability check failed: {type(exc).__name__}: {exc}"

    def to_dict(self) -> dict[str, Any]:
        reason = self.unavailable_reason()
        return {
            "kind": self.kind,
            "name": self.name,
            "package": self.package,
            "available": reason is None,
            "reason": reason,
            "description": self.description,
            "priority": self.priority,
        }


@attrs.define(eq=False)
class Plugins:
    """A pluggy manager plus the component registry built from the registration hooks.

    Build one with :meth:`build` (tests pass ``entry_points=False`` for a hermetic manager) or
    use the process-wide :func:`get_plugins`.
    """

    pm: pluggy.PluginManager
    packages: dict[str, str] = attrs.field(factory=dict)  # pluggy plugin name -> distribution
    broken: list[tuple[str, str]] = attrs.field(factory=list)  # (entry point, error)
    _entries: dict[str, list[PluginEntry]] | None = attrs.field(default=None, alias="_entries")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, alias="_lock")

    @classmethod
    def build(cls, *, entry_points: bool = True, plugins: Iterable[tuple[Any, str]] = ()) -> Plugins:
        """A new manager; ``entry_points`` loads the ``surgbox`` group; ``plugins`` adds
        ``(plugin_object, package_name)`` pairs directly (tests, embedded apps)."""
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        self = cls(pm)
        if entry_points:
            self._load_entry_points()
        for plugin, package in plugins:
            self.add(plugin, package)
        return self

    def _load_entry_points(self) -> None:
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP or self.pm.get_plugin(ep.name) is not None:
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:  # a broken vendor package must not break the others
                    self.broken.append((f"{dist.metadata['Name']}:{ep.name}",
                                        f"cannot be loaded ({ep.value}): {type(exc).__name__}: {exc}"))
                    continue
                self.pm.register(plugin, name=ep.name)
                self.packages[ep.name] = dist.metadata["Name"]

    def add(self, plugin: Any, package: str, name: str | None = None) -> None:
        """Register a plugin object (module or instance with hookimpls) under ``package``."""
        name = name or package
        self.pm.register(plugin, name=name)
        self.packages[name] = package
        self._entries = None

    @property
    def hook(self) -> Any:
        """Lifecycle notifications: ``plugins.hook.recording_started(recording=...)``."""
        return self.pm.hook

    def _collect(self) -> dict[str, list[PluginEntry]]:
        with self._lock:
            if self._entries is not None:
                return self._entries
            entries: dict[str, list[PluginEntry]] = {k: [] for k in KINDS}
            for kind, hook_name in REGISTRATION_HOOKS.items():
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    package = self.packages.get(impl.plugin_name, impl.plugin_name)
                    made: list[PluginEntry] = []

                    def register(name: str, factory: Callable[..., Any], *, description: str = "",
                                 check: Callable[[], str | None] | None = None, priority: int = 0,
                                 _kind: str = kind, _package: str = package, _made: list = made) -> None:
                        if not callable(factory):
                            raise TypeError(f"plugin {_package!r} registered {_kind} {name!r} with a non-callable factory {factory!r}")
                        _made.append(PluginEntry(_kind, str(name), factory, _package, description, check, priority))

                    try:
                        impl.function(register=register)
                    except Exception as exc:  # one broken vendor hook must not hide every other plugin
                        broken = (f"{package}:{impl.plugin_name}", f"{hook_name}() failed: {type(exc).__name__}: {exc}")
                        if broken not in self.broken:
                            self.broken.append(broken)
                        continue
                    entries[kind].extend(made)
            self._entries = entries
            return entries

    def entries(self, kind: str | None = None) -> list[PluginEntry]:
        """All registrations (of one ``kind``), sorted by kind then name then priority (high first)."""
        data = self._collect()
        kinds = [self._check_kind(kind)] if kind else list(KINDS)
        return [e for k in kinds for e in sorted(data[k], key=lambda e: (e.name, -e.priority, e.package))]

    def names(self, kind: str) -> list[str]:
        return sorted({e.name for e in self.entries(kind)})

    @staticmethod
    def _check_kind(kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")
        return kind

    def entry(self, kind: str, name: str) -> PluginEntry:
        """The registration selected by ``name`` (``"pkg:name"`` to pick a package).

        Raises :class:`PluginNotFoundError` listing the available names, or
        :class:`PluginConflictError` when two packages tie at the highest priority.
        """
        package, _, bare = name.rpartition(":")
        candidates = [e for e in self.entries(kind) if e.name == bare and (not package or e.package == package)]
        if not candidates:
            raise PluginNotFoundError(kind, name, self.names(kind))
        best = max(e.priority for e in candidates)
        top = [e for e in candidates if e.priority == best]
        if len(top) > 1:
            pkgs = ", ".join(sorted(e.package for e in top))
            raise PluginConflictError(
                f"{kind} {bare!r} is registered by several packages at priority {best}: {pkgs}; "
                f"select one as 'PACKAGE:{bare}' or uninstall one of them"
            )
        return top[0]

    def create(self, kind: str, name: str, /, **options: Any) -> Any:
        """Build the component ``kind``/``name`` with ``options``.

        Raises :class:`PluginUnavailableError` with the plugin's own reason when it cannot run
        here, and :class:`~surgbox.errors.ConfigError` (one line naming the plugin and the
        option) when its factory refuses the options: an unknown keyword (``TypeError``) or a
        value its validators reject (``ValueError``). A factory's own
        :class:`~surgbox.errors.SurgboxError` passes unchanged."""
        e = self.entry(kind, name)
        reason = e.unavailable_reason()
        if reason is not None:
            raise PluginUnavailableError(kind, name, reason)
        try:
            return e.factory(**options)
        except SurgboxError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(option_error(kind, name, options, exc)) from exc

    def create_checked(self, kind: str, name: str, /, **options: Any) -> tuple[Any, str | None]:
        """``(component, None)`` when ``kind``/``name`` is installed, can run here and its
        ``check()`` (a component that has one: decoders, displays) says ``None``; else
        ``(component or None, why)`` in one line -- for the optional backends the core picks
        between (a missing or unavailable plugin is a reason, not an error). Bad options still
        raise :class:`~surgbox.errors.ConfigError`."""
        try:
            component = self.create(kind, name, **options)
        except PluginNotFoundError:
            return None, f"no {kind} plugin {name!r} is installed (surgbox's default plugins, surgbox_ext, provide it)"
        except PluginUnavailableError as exc:
            return None, exc.reason
        check = getattr(component, "check", None)
        return component, check() if callable(check) else None

    def selected(self, entry: PluginEntry) -> bool:
        """True when selecting ``entry.name`` by its bare name gets ``entry`` (it is the only one,
        or it wins on priority); False when another registration of the name wins, or when two
        tie (then neither is picked without ``PACKAGE:NAME``)."""
        try:
            return self.entry(entry.kind, entry.name) is entry
        except PluginConflictError:
            return False

    def table(self, kind: str | None = None) -> list[dict[str, Any]]:
        """JSON-ready rows for ``surgbox plugins --json``: every registration (:meth:`PluginEntry.to_dict`
        plus ``selected``, see :meth:`selected`, and ``broken: false``), then one row per plugin
        that could not be loaded or whose registration hook failed (``kind: null``, ``name`` the
        entry point, ``available: false``, ``reason`` the error, ``broken: true``)."""
        rows = [{**e.to_dict(), "selected": self.selected(e), "broken": False} for e in self.entries(kind)]
        for where, error in self.broken:
            package, _, name = where.rpartition(":")
            rows.append({"kind": None, "name": name, "package": package, "available": False, "reason": error,
                         "description": "", "priority": None, "selected": False, "broken": True})
        return rows


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def option_error(kind: str, name: str, options: dict[str, Any], exc: BaseException) -> str:
    """One line saying which option of plugin ``kind``/``name`` its factory refused, and why."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    unknown = re.search(r"unexpected keyword argument '([^']+)'", msg)
    if unknown and unknown[1] in options:
        key = unknown[1]
        return (f"{kind} plugin {name!r} has no option {key!r} (given {key}={_short(options[key])}); "
                f"remove it, or see the plugin's documentation for its options")
    if options and re.search(r"takes no (keyword )?arguments", msg):
        keys = ", ".join(repr(k) for k in options)
        given = ", ".join(f"{k}={_short(v, 30)}" for k, v in options.items())
        return (f"{kind} plugin {name!r} has no option {keys} (given {given}; it takes no options); "
                f"remove {'it' if len(options) == 1 else 'them'}")
    named = [k for k in options if re.search(rf"(?<![\w]){re.escape(k)}(?![\w])", msg)]
    if len(named) == 1:
        key = named[0]
        return f"{kind} plugin {name!r}: option {key}={_short(options[key])} is not valid: {msg}"
    given = ", ".join(f"{k}={_short(v, 30)}" for k, v in options.items())
    if given:
        return f"{kind} plugin {name!r} refused its options ({given}): {msg}"
    return f"{kind} plugin {name!r} could not be built: {msg}"


_default: Plugins | None = None
_default_lock = threading.Lock()


def get_plugins() -> Plugins:
    """The process-wide manager, built on first use from installed entry points."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Plugins.build()
        return _default


@attrs.frozen
class _Lazy:
    """Factory that imports ``module:attr`` on call; equal when the targets are equal."""

    target: str

    def __call__(self, **options: Any) -> Any:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)(**options)

    def __repr__(self) -> str:
        return f"lazy({self.target!r})"


def lazy(target: str) -> Callable[..., Any]:
    """A factory for ``"package.module:Attribute"`` that imports it only when first called.

    Registration must stay cheap (no torch, no hardware): register ``lazy("acme.cam:Camera")``
    instead of importing ``Camera`` at module level. Two lazy factories of the same target are
    equal, so registrations collected twice compare equal.
    """
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ValueError(f"lazy target {target!r} must look like 'package.module:Attribute'")
    return _Lazy(target)


@attrs.frozen
class _Requires:
    """Availability check: ``None`` when every module is importable, else the reason and fix."""

    modules: tuple[str, ...]
    install: str

    def __call__(self) -> str | None:
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if missing:
            return f"needs the Python package(s) {', '.join(missing)}: {self.install}"
        return None


def requires(*modules: str, install: str) -> Callable[[], str | None]:
    """An availability check: ``None`` when every module is importable, else a reason naming the
    missing module and the ``install`` command that brings it."""
    return _Requires(modules, install)
