"""``surgbox demo [--duration S] [--out FILE.mp4]``: record simulated sources into the paper layout.

Sources: ``testsrc`` endoscope 1280x720 at 30 fps, room camera 1920x1080 at 25 fps, vitals
monitor 800x600 at 60 fps (each flashes white every 2 s), ``tone`` (a 1 kHz beep every 2 s), so
the file doubles as an A/V sync check, and a simulated BIS monitor: the BIS simulator writes to a
pty from a background thread and the ``bis`` source reads that pty, as it would read a serial port.

Without ``--out`` the recording goes to the default destination, the encrypted store of
``SURGBOX_HOME`` (no plaintext on disk), and the demo says how to export and play it
(:func:`demo_store`). ``surgbox demo --play [KEY]`` streams a stored demo recording, decrypted,
into a player.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from ._player import player_command

DEMO_SOURCES = {
    "endoscope": {"plugin": "testsrc", "width": 1280, "height": 720, "fps": 30},
    "room": {"plugin": "testsrc", "width": 1920, "height": 1080, "fps": 25},
    "vitals": {"plugin": "testsrc", "width": 800, "height": 600, "fps": 60},
    "mic": {"plugin": "tone"},
}
DEMO_KEY_NAME = "demo.key"
DEMO_PREFIX = "recordings/"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="record simulated sources (3 test cameras, beeping audio, a BIS monitor) into the paper layout",
        description="Record simulated sources into the paper's 1080p layout (see docs/recording.md). Without --out "
        "the recording is encrypted into the store of SURGBOX_HOME.",
    )
    p.add_argument("--duration", type=float, default=20.0, metavar="S", help="seconds to record (default 20)")
    p.add_argument("--out", metavar="FILE.mp4", help="write a plain MP4 (+ sidecars) here instead of the encrypted store; "
                   "an existing one is refused")
    p.add_argument("--overwrite", action="store_true", help="with --out: replace an existing file (and its sidecars)")
    p.add_argument("--preset", help="x264 preset (default: the encoder's default)")
    p.add_argument("--max-behind", type=float, metavar="S",
                   help="how far the recorder may fall behind the clock, catching up, before it skips ticks to stay "
                   "live (default: the recorder's, 3; a slow or shared machine: more)")
    p.add_argument("--home", metavar="DIR", help="the surgbox home (default: $SURGBOX_HOME or the per-user data folder)")
    p.add_argument("--play", nargs="?", const="", metavar="KEY",
                   help="play a stored demo recording (default: the newest) through ffplay/mpv; nothing is decrypted to disk")
    p.add_argument("--player", metavar="CMD", help="player command reading the video on stdin (default: ffplay or mpv)")
    p.add_argument("--quiet", action="store_true", help="no status line")
    p.set_defaults(func=run)


# -- the simulated BIS monitor ---------------------------------------------------------------------
@attrs.define(eq=False)
class SimulatedBIS:
    """The BIS simulator writing to a pty from a background thread (``with SimulatedBIS() as bis:``;
    ``bis.url`` is the pty for the ``bis`` source). ``rate`` records/s, ``course_s`` seconds per
    scripted anaesthesia course. ``on_write(index, monotonic_ns)`` is called right before each
    record is written (the tests map these times onto the recording's time line)."""

    rate: float = 1.0
    course_s: float = 60.0
    seed: int = 0
    on_write: Any = None
    url: str = attrs.field(default="", init=False)
    written: int = attrs.field(default=0, init=False)
    _port: Any = attrs.field(default=None, init=False, alias="_port")
    _thread: threading.Thread | None = attrs.field(default=None, init=False, alias="_thread")
    _stop: threading.Event = attrs.field(factory=threading.Event, init=False, alias="_stop")

    def start(self) -> SimulatedBIS:
        from surgbox_ext.bis.simulator import BISSimulator, PtyPort

        sim = BISSimulator(rate=self.rate, course_s=self.course_s, seed=self.seed)
        self._port = PtyPort.open(header=sim.header())
        self.url = self._port.name
        port, hook = self._port, self.on_write

        class _Port:  # stamps each record right before it is written
            def __init__(self) -> None:
                self.index = 0

            def write(self, data: bytes) -> None:
                if hook is not None:
                    import time

                    hook(self.index, time.monotonic_ns())
                self.index += 1
                port.write(data)

        def run() -> None:
            try:
                self.written = sim.run(_Port(), stop=self._stop)
            except Exception:  # the pty closed under it at shutdown
                pass

        self._thread = threading.Thread(target=run, name="surgbox-bis-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._port is not None:
            self._port.close()
            self._port = None

    def __enter__(self) -> SimulatedBIS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def demo_config(duration: float | None, preset: str | None = None, *, bis_url: str | None = None,
                max_behind_s: float | None = None):
    """The demo's :class:`~surgbox.config.RecordConfig` (with a ``bis`` source on ``bis_url``;
    ``max_behind_s`` ``None``: the recorder's default)."""
    from ..config import RecordConfig

    encoder = {"plugin": "libx264"}
    if preset:
        encoder["preset"] = preset
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    sources: dict[str, Any] = dict(DEMO_SOURCES)
    if bis_url:
        sources["bis"] = {"plugin": "bis", "url": bis_url}
    return RecordConfig.from_mapping(
        {
            "fps": 30,
            "duration_s": duration,
            "audio": "mic",
            "event": {"id": f"demo-{stamp}", "place": "Simulation", "procedure": "surgbox demo"},
            "encoder": encoder,
            "layout": {"preset": "paper"},
            "sources": sources,
            **({} if max_behind_s is None else {"max_behind_s": max_behind_s}),
        }
    )


# -- the default destination -------------------------------------------------------------------------
@attrs.frozen
class DemoStore:
    """Where demos go without ``--out``: the ``store`` (not opened), the key file that encrypts
    them, the store roots, and ``created``: what this call had to create (empty when the home existed)."""

    store: Any
    key_file: Path
    roots: tuple[str, ...]
    created: tuple[str, ...] = ()

    def cli_options(self) -> str:
        return " ".join(f"--root {shlex.quote(r)}" for r in self.roots) + f" --key-file {shlex.quote(str(self.key_file))}"


def demo_store(home: Any = None, *, plugins: Any = None, create: bool = True) -> DemoStore:
    """The encrypted store of ``home`` (default ``$SURGBOX_HOME``) for demo recordings.

    An initialized home (``surgbox init``: config + master key): its configured store, encrypted
    with the master key. A home that was never initialized: the demo creates only what it needs
    and no password is asked: the key ``keys/demo.key`` (0600) and the default store root
    ``store/`` -- no catalog, no users; ``surgbox init`` later keeps both, so earlier demos stay
    readable with ``keys/demo.key``.
    """
    from ..crypto.keys import MasterKey
    from ..home import Home
    from ..plugins import get_plugins

    home = home if isinstance(home, Home) else Home.from_env(home)
    plugins = plugins or get_plugins()
    if home.config_path.exists() and home.master_key_path.exists():
        name, options = home.store_settings()
        roots = tuple(options.get("roots") or [options["root"]]) if ("roots" in options or "root" in options) else ()
        keys = [str(home.master_key_path)]
        if (home.keys_dir / DEMO_KEY_NAME).exists():  # demos made before `surgbox init` stay readable
            keys.append(str(home.keys_dir / DEMO_KEY_NAME))
        store = plugins.create("store", name, key_file=keys, **options)
        return DemoStore(store, home.master_key_path, tuple(str(r) for r in roots))
    key = home.keys_dir / DEMO_KEY_NAME
    root = home.default_store_root
    created = []
    if create:
        for d in (home.path, home.keys_dir, root):
            if not d.exists():
                d.mkdir(mode=0o700, parents=True)
                created.append(str(d) + "/")
        if not key.exists():
            MasterKey.generate().save(key)
            created.append(str(key))
    store = plugins.create("store", "local", root=str(root), key_file=str(key), init=create)
    return DemoStore(store, key, (str(root),), tuple(created))


def _new_key(store: Any, stamp: str) -> str:
    key, n = f"{DEMO_PREFIX}demo-{stamp}.mp4", 1
    while store.exists(key):
        n += 1
        key = f"{DEMO_PREFIX}demo-{stamp}-{n}.mp4"
    return key


# -- commands --------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    if args.play is not None:
        return play(args)
    from ..recording import RecorderOptions, StoreSink
    from .record import run_recorder

    behind = {} if args.max_behind is None else {"max_behind_s": args.max_behind}
    RecorderOptions(duration=args.duration, **behind)  # a bad --duration/--max-behind is one line, before anything starts
    dest = None
    if args.out:
        output: Any = Path(args.out)
    else:
        dest = demo_store(args.home)
        if dest.created:
            print(f"SURGBOX_HOME is not initialized (no `surgbox init` yet): created only the demo key and store "
                  f"({', '.join(dest.created)}); no catalog, no users. `surgbox init` keeps them.", file=sys.stderr)
        dest.store.open()
        key = _new_key(dest.store, datetime.now().strftime("%Y%m%d-%H%M%S"))
        output = StoreSink(dest.store, key, close_store=True)
        print(f"recording into the encrypted store {', '.join(dest.roots)} as {key}", file=sys.stderr)
    course = max(60.0, args.duration or 600.0)
    with SimulatedBIS(rate=1.0, course_s=course) as bis:
        rec = demo_config(args.duration, args.preset, bis_url=bis.url, max_behind_s=args.max_behind).build_recorder(output=output, overwrite=args.overwrite)
        stats = run_recorder(rec, quiet=args.quiet)
    print(f"recorded {stats['frames']} frames ({stats.get('duration_s', 0):.1f} s) to {rec.sink.label}", file=sys.stderr)
    if dest is None:
        print(str(output))
        return 0
    opts = dest.cli_options()
    print(f"files: {', '.join(f['name'] for f in stats.get('files', []))}", file=sys.stderr)
    print(f"play:   surgbox demo --play {key}" + (f" --home {shlex.quote(args.home)}" if args.home else ""), file=sys.stderr)
    print(f"export: surgbox store get {opts} {key} demo.mp4", file=sys.stderr)
    print(f"after a crash: surgbox store recover {opts}", file=sys.stderr)
    print(key)
    return 0


def play(args: argparse.Namespace) -> int:
    """Decrypt a stored demo recording into a player's stdin (no plaintext file)."""
    from ..errors import ConfigError, SurgboxError

    dest = demo_store(args.home, create=False)
    if not dest.key_file.exists():
        raise ConfigError(f"no demo recordings: {dest.key_file} does not exist; run `surgbox demo` first")
    cmd = player_command(args.player)
    with dest.store:
        key = args.play or next(iter(sorted((k for k in dest.store.keys(DEMO_PREFIX) if k.endswith(".mp4")), reverse=True)), None)
        if not key:
            raise ConfigError(f"no demo recordings in {', '.join(dest.roots)}; run `surgbox demo` first")
        print(f"playing {key}", file=sys.stderr)
        with dest.store.reader(key) as r:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
            except OSError as exc:
                raise SurgboxError(f"cannot start the player {cmd[0]!r}: {exc}; pass --player") from None
            with contextlib.suppress(BrokenPipeError):
                for chunk in r.iter_segments():
                    proc.stdin.write(chunk)
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            return proc.wait()
