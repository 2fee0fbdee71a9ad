"""``surgbox serve [--host 127.0.0.1] [--port 8080] [--config record.toml] [--export-dir DIR] [--kiosk [--launch]]``: the web console.

Serves the console (docs/console.md) on the catalog and store of ``SURGBOX_HOME``, recording
with ``--config``. Loopback only unless TLS is given (``--tls-cert``/``--tls-key``). ``--kiosk``
prints the Chromium command line that opens it full screen; ``--launch`` also runs it.
Ctrl-C or SIGTERM stops cleanly: a running recording is stopped and its files go into the catalog.
"""

from __future__ import annotations

import argparse
import math
import shlex
import shutil
import signal
import subprocess
import sys
import threading

from ..errors import ConfigError
from ._auth import add_home_option


def _port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a whole number from 0 to 65535, got {text!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"port must be a whole number from 0 to 65535, got {text!r}")
    return n


def _minutes(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or not 1 <= v <= 24 * 60:
        raise argparse.ArgumentTypeError(f"idle minutes must be a number from 1 to 1440, got {text!r}")
    return v


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the touch-screen web console (record, events, playback, system)",
        description="Serve the recorder's web console on the catalog and store of SURGBOX_HOME (docs/console.md).",
    )
    add_home_option(p)
    p.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                   help="address to listen on (default 127.0.0.1; anything else needs --tls-cert/--tls-key)")
    p.add_argument("--port", type=_port, default=8080, metavar="N", help="TCP port (default 8080; 0 picks a free one)")
    p.add_argument("--config", metavar="FILE.toml", help="recording configuration (sources, layout, encoder); "
                   "without it the console only finds and plays events")
    p.add_argument("--export-dir", action="append", default=[], metavar="DIR",
                   help="a folder (e.g. a USB stick's mount point) users with the export permission may copy events "
                        "into, as DIR/EVENT-ID; repeat for several")
    p.add_argument("--idle-minutes", type=_minutes, default=15.0, metavar="M",
                   help="log a browser out after M minutes without a touch (default 15)")
    p.add_argument("--tls-cert", metavar="FILE.pem", help="serve HTTPS with this certificate (cookies get Secure)")
    p.add_argument("--tls-key", metavar="FILE.pem", help="the private key of --tls-cert")
    p.add_argument("--access-log", action="store_true", help="log every request (paths hold event ids, never patient data)")
    p.add_argument("--kiosk", action="store_true", help="print the Chromium kiosk command line for this console")
    p.add_argument("--launch", action="store_true", help="with --kiosk: also start Chromium full screen on it")
    p.add_argument("--browser", default="chromium", metavar="EXE", help="the browser --kiosk uses (default chromium)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.launch and not args.kiosk:
        raise ConfigError("--launch starts the kiosk browser: give it together with --kiosk")
    try:
        from ..console import ConsoleServer, kiosk_command
    except ImportError as exc:
        raise ConfigError(f"the console needs its extra: pip install 'surgbox[console]' ({exc.name} is missing)") from None

    server = ConsoleServer.for_home(args.home, config=args.config, idle_s=args.idle_minutes * 60, kiosk=args.kiosk,
                                    export_dirs=args.export_dir,
                                    host=args.host, port=args.port, certfile=args.tls_cert, keyfile=args.tls_key,
                                    access_log=args.access_log)
    done = threading.Event()
    old = signal.signal(signal.SIGTERM, lambda *a: done.set())
    browser = None
    try:
        server.start()
        print(f"surgbox serve: console on {server.url} (Ctrl-C stops)", file=sys.stderr, flush=True)
        if args.kiosk:
            cmd = kiosk_command(server.url, browser=args.browser)
            print(shlex.join(cmd), flush=True)
            if args.launch:
                if shutil.which(cmd[0]) is None:
                    raise ConfigError(f"browser {cmd[0]!r} not found; install chromium or give --browser EXE")
                browser = subprocess.Popen(cmd)
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        server.stop()
        if browser is not None and browser.poll() is None:
            browser.terminate()
    return 0
