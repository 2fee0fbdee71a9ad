"""Recording configuration from TOML (``surgbox record --config FILE.toml``).

Format (every key optional except ``[sources.*]``; see ``examples/record.toml``)::

    fps = 30                     # output frames per second
    stale_timeout_s = 1.0        # NO SIGNAL after this long without a frame
    max_behind_s = 3.0           # fall this far behind the clock (catching up) before skipping ticks
    duration_s = 3600            # stop by itself after this long (omit: until stopped)
    audio = "mic"                # audio source to record (default: the first audio source)

    [output]
    path = "case.mp4"            # relative to the config file (as every path in it)

    [event]                      # shown in the data panel and stored as metadata
    id = "ev-2026-0001"
    place = "OR 3"

    [encoder]
    plugin = "libx264"           # other keys are the plugin's options
    preset = "veryfast"

    [compositor]
    plugin = "default"

    [layout]
    preset = "paper"             # or width/height + [[layout.slots]]
    sources = { endoscope = "endo" }   # slot -> source name (default: same name)

    [sources.endo]
    plugin = "testsrc"           # other keys are the plugin's options
    optional = false             # true: a source that fails to start shows NO SIGNAL
    deidentify = false           # true: faces hidden live, the raw frames never recorded
    # keep_raw = "case review"   # with deidentify: an encrypted raw copy, readable by view_raw roles
    # voice = "disguise"         # an audio source: keep | disguise | mute voices live
    # out_of_body = true         # the endoscope: hidden whole while it films the room
    fps = 30

    [deid]                       # live de-identification (surgbox deid's option names)
    every = 3                    # + latency_s, slot, edge_carry, semitones (docs/deid.md "Live")

    [display]                    # the composite on a monitor (docs/backends.md "Live display")
    sink = "kmssink"             # + profile, queue_frames, max_fps, enabled

Paths: every path in the file -- ``[output] path`` and the path options of sources (a ``file``
source's ``path``, a serial ``port`` or ``url`` that is not a URL, a device path) -- is relative
to the folder of the config file, not to the current directory. A source plugin names its path
options in ``path_options`` (a class attribute).

Errors are :class:`~surgbox.errors.ConfigError` naming the key and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs

from . import layouts
from ._toml import load_toml
from .errors import ConfigError
from .plugins import get_plugins
from .recording import Recorder
from .deid.voice import VOICE_MODES, VoiceSettings
from .recording.display import DisplayOutput
from .recording.live_deid import LiveDeidSettings, LiveDeidSource
from .recording.live_outofbody import LiveOutOfBodySource
from .recording.live_voice import LiveVoiceSource
from .recording.options import RecorderOptions
from .recording.raw_copy import check_purpose
from .types import Layout, parse_rate

_RECORDER = attrs.fields(RecorderOptions)  # the recorder's defaults, which a key left out keeps
TOP_KEYS = {"fps", "stale_timeout_s", "max_behind_s", "duration_s", "audio", "output", "event", "encoder", "compositor", "layout", "sources", "deid", "display"}


@attrs.frozen
class PluginSpec:
    """A plugin name and its options (``{"plugin": name, **options}`` in TOML)."""

    plugin: str
    options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class SourceSpec:
    """One ``[sources.NAME]`` table: plugin, options, and whether it may fail at start."""

    name: str
    plugin: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    optional: bool = False
    deidentify: bool = False  # hide its faces live (docs/deid.md "Live de-identification")
    voice: str = "keep"  # an audio source: keep, disguise or mute voices live
    out_of_body: bool = False  # an endoscope source: hidden whole while it films the room
    keep_raw: str | None = None  # hidden live: the purpose of an encrypted raw copy (None: no copy)


def _table(m: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    v = m.get(key, {})
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}{key} must be a table ([{where}{key}]), got {type(v).__name__} {v!r}")
    return dict(v)


def _number(m: Mapping[str, Any], key: str, default: Any, *, positive: bool = True) -> Any:
    v = m.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ConfigError(f"{key} must be a number, got {v!r}")
    try:
        num = Fraction(str(v))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{key} must be a number like 30 or 29.97, got {v!r}") from None
    if positive and num <= 0:
        raise ConfigError(f"{key} must be > 0, got {v!r}")
    return num


def _plugin(m: Mapping[str, Any], key: str, default: str) -> PluginSpec:
    t = _table(m, key, "")
    name = t.pop("plugin", default)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{key}.plugin must be a plugin name (e.g. {default!r}), got {name!r}")
    return PluginSpec(name, t)


@attrs.frozen
class RecordConfig:
    """A parsed recording configuration. Build with :meth:`load` or :meth:`from_mapping`."""

    sources: tuple[SourceSpec, ...]
    layout: Layout
    output: Path | None = None
    encoder: PluginSpec = PluginSpec("libx264")
    compositor: PluginSpec = PluginSpec("default")
    fps: Fraction = Fraction(30)
    stale_timeout_s: float = _RECORDER.stale_timeout_s.default
    max_behind_s: float = _RECORDER.max_behind_s.default
    duration_s: float | None = None
    audio: str | None = None
    event: Mapping[str, Any] = attrs.field(factory=dict)
    base_dir: Path | None = None
    deid: LiveDeidSettings = attrs.field(factory=LiveDeidSettings)
    display: DisplayOutput | None = None  # [display]: a fresh copy per recorder (build_recorder)

    @classmethod
    def load(cls, path: str | Path) -> RecordConfig:
        """Parse a TOML file; relative paths in it resolve against its folder."""
        p = Path(path)
        data = load_toml(p, what="config file", hint="pass --config with an existing TOML file (see examples/record.toml)")
        try:
            return cls.from_mapping(data, base_dir=p.parent)
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any], *, base_dir: Path | None = None) -> RecordConfig:
        unknown = sorted(set(m) - TOP_KEYS)
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)}; allowed top-level keys: {', '.join(sorted(TOP_KEYS))}")
        raw_sources = _table(m, "sources", "")
        if not raw_sources:
            raise ConfigError("no sources: add at least one [sources.NAME] table with a plugin (e.g. plugin = \"testsrc\")")
        sources = []
        for name, t in raw_sources.items():
            if not isinstance(t, Mapping):
                raise ConfigError(f"sources.{name} must be a table ([sources.{name}]) with plugin = \"...\", got {t!r}")
            t = dict(t)
            plugin = t.pop("plugin", None)
            if not isinstance(plugin, str) or not plugin:
                raise ConfigError(f"sources.{name}.plugin is missing; name the source plugin (e.g. plugin = \"v4l2\"; `surgbox plugins --kind source` lists them)")
            optional = t.pop("optional", False)
            if not isinstance(optional, bool):
                raise ConfigError(f"sources.{name}.optional must be true or false, got {optional!r}")
            deidentify = t.pop("deidentify", False)
            if not isinstance(deidentify, bool):
                raise ConfigError(f"sources.{name}.deidentify must be true or false (hide its faces live), got {deidentify!r}")
            voice = t.pop("voice", "keep")
            if voice not in VOICE_MODES:
                raise ConfigError(f"sources.{name}.voice must be one of {', '.join(VOICE_MODES)}, got {voice!r}")
            oob = t.pop("out_of_body", False)
            if not isinstance(oob, bool):
                raise ConfigError(f"sources.{name}.out_of_body must be true or false (hide the endoscope view while it "
                                  f"films the room), got {oob!r}")
            keep_raw = check_purpose(t.pop("keep_raw", None), f"sources.{name}")
            if keep_raw is not None and not deidentify:
                raise ConfigError(f"sources.{name}.keep_raw applies to a source hidden live: set deidentify = true "
                                  f"(without it the source is recorded as it is), or drop keep_raw")
            sources.append(SourceSpec(str(name), plugin, t, optional, deidentify, voice, oob, keep_raw))
        layout = cls._layout(_table(m, "layout", ""))
        out = _table(m, "output", "")
        unknown = sorted(set(out) - {"path"})
        if unknown:
            raise ConfigError(f"unknown key(s) output.{', output.'.join(unknown)}; [output] takes only path")
        output = None
        if "path" in out:
            if not isinstance(out["path"], str) or not out["path"]:
                raise ConfigError(f"output.path must be a file path string, got {out['path']!r}")
            output = Path(out["path"]).expanduser()
            if base_dir is not None and not output.is_absolute():
                output = base_dir / output
        audio = m.get("audio")
        if audio is not None and audio not in raw_sources:
            raise ConfigError(f"audio = {audio!r} names no source; sources: {', '.join(raw_sources)}")
        duration = _number(m, "duration_s", None)
        try:
            fps = parse_rate(m.get("fps", 30), "fps")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if fps > 240:
            raise ConfigError(f"fps must be at most 240, got {m.get('fps')!r}")
        return cls(
            sources=tuple(sources),
            layout=layout,
            output=output,
            encoder=_plugin(m, "encoder", "libx264"),
            compositor=_plugin(m, "compositor", "default"),
            fps=fps,
            stale_timeout_s=float(_number(m, "stale_timeout_s", _RECORDER.stale_timeout_s.default)),
            max_behind_s=float(_number(m, "max_behind_s", _RECORDER.max_behind_s.default)),
            duration_s=None if duration is None else float(duration),
            audio=audio,
            event=_table(m, "event", ""),
            base_dir=base_dir,
            deid=LiveDeidSettings.from_mapping(_table(m, "deid", "")),
            display=DisplayOutput.from_mapping(_table(m, "display", "")) if "display" in m else None,
        )

    @staticmethod
    def _layout(t: dict[str, Any]) -> Layout:
        mapping = t.pop("sources", None)
        if mapping is not None and (not isinstance(mapping, Mapping) or not all(isinstance(v, str) for v in mapping.values())):
            raise ConfigError(f"layout.sources must map slot names to source names, e.g. {{ endoscope = \"endo\" }}, got {mapping!r}")
        if "slots" in t:
            if "preset" in t:
                raise ConfigError("layout: give either preset = \"...\" or explicit [[layout.slots]], not both")
            try:
                lay = Layout.from_mapping({"width": t.get("width", 1920), "height": t.get("height", 1080), "slots": t["slots"], "name": t.get("name", "custom")})
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"layout.slots: {exc}; each [[layout.slots]] needs name, rect = [x, y, w, h] and kind = \"video\"|\"panel\" "
                    "(optional source, role)"
                ) from None
            if mapping:
                raise ConfigError("layout.sources applies to presets; with explicit slots set each slot's source")
            return lay
        unknown = sorted(set(t) - {"preset"})
        if unknown:
            raise ConfigError(f"unknown key(s) layout.{', layout.'.join(unknown)}; use preset = \"...\" (+ sources) or [[layout.slots]]")
        return layouts.preset(str(t.get("preset", "paper")), mapping)

    # -- building -------------------------------------------------------------------------------
    def build_sources(self, plugins: Any) -> list[Any]:
        """Create every source through ``plugins`` (no device is opened yet); relative path
        options resolve against the config file's folder (:meth:`resolve_paths`)."""
        out = []
        for spec in self.sources:
            try:
                src = plugins.create("source", spec.plugin, name=spec.name, **spec.options)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"sources.{spec.name}: plugin {spec.plugin!r} rejected its options ({exc}); check the option names and values") from exc
            src = self.resolve_paths(src)
            if spec.deidentify:
                src = LiveDeidSource(inner=src, settings=self.deid, plugins=plugins, keep_raw=spec.keep_raw)
            if spec.out_of_body:
                src = LiveOutOfBodySource(inner=src, anonymizer=self.deid.deid.make_anonymizer())
            if spec.voice != "keep":
                src = LiveVoiceSource(inner=src, settings=VoiceSettings(spec.voice, self.deid.semitones))
            out.append(src)
        return out

    def resolve_paths(self, component: Any) -> Any:
        """``component`` with each relative path option (``type(component).path_options``; a
        value containing ``://`` is a URL and stays) resolved against :attr:`base_dir`."""
        if self.base_dir is None:
            return component
        for name in getattr(type(component), "path_options", ()):
            value = getattr(component, name, None)
            if isinstance(value, str) and value and "://" not in value:
                p = Path(value).expanduser()
                if not p.is_absolute():
                    setattr(component, name, str(self.base_dir / p))
        return component

    def build_recorder(self, *, plugins: Any = None, output: Any = None, duration: float | None = None,
                       event: Any = None, **kwargs: Any) -> Recorder:
        """A :class:`~surgbox.recording.Recorder` for this configuration; ``output`` (a path, file
        object or :class:`~surgbox.recording.RecordingSink`), ``duration`` and ``event`` (the
        panel's event fields) override the file's values; other keyword arguments go to the
        Recorder (its options, e.g. ``overwrite=True``, or components)."""
        plugins = plugins or get_plugins()
        target = output if output is not None else self.output
        if target is None:
            raise ConfigError("no output: set [output] path = \"FILE.mp4\" in the config, pass --out FILE.mp4, "
                              "or record into an event with --event ID")
        try:
            encoder = plugins.create("encoder", self.encoder.plugin, **self.encoder.options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"encoder: plugin {self.encoder.plugin!r} rejected its options ({exc})") from exc
        try:
            compositor = plugins.create("compositor", self.compositor.plugin, **self.compositor.options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"compositor: plugin {self.compositor.plugin!r} rejected its options ({exc})") from exc
        if self.display is not None and "display" not in kwargs:
            kwargs["display"] = attrs.evolve(self.display)  # its counters are per recording
        if kwargs.get("display") is not None:
            kwargs["display"].check()  # a missing sink element is an error before anything starts
        sources = self.build_sources(plugins)
        info = {s.name: {"plugin": s.plugin} for s in self.sources}
        return Recorder(
            sources,
            self.layout,
            target,
            encoder=encoder,
            compositor=compositor,
            fps=self.fps,
            stale_timeout_s=self.stale_timeout_s,
            max_behind_s=kwargs.pop("max_behind_s", self.max_behind_s),
            event=self.event if event is None else event,
            optional=frozenset(s.name for s in self.sources if s.optional),
            audio=self.audio,
            duration=duration if duration is not None else self.duration_s,
            plugins=plugins,
            source_info=info,
            **kwargs,
        )
