"""``surgbox simulate bis --port PATH|tcp://HOST:PORT``: a live BIS monitor for demos and tests."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ._parser import number


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulated devices (a BIS monitor on a pty or TCP)", description="Run a simulated device.")
    ssub = p.add_subparsers(dest="device", metavar="DEVICE")
    b = ssub.add_parser(
        "bis",
        help="a BIS Vista sending a scripted anaesthesia course",
        description="Write BIS Vista ASCII records (induction, maintenance, emergence, artifacts) to a pty or to TCP "
        "clients. With --port PATH a pseudo-terminal is created and PATH becomes a symlink to it (open PATH as a "
        "serial port; the symlink is removed on exit). With --port tcp://HOST:PORT the simulator listens there; "
        "connect with the pyserial URL socket://HOST:PORT.",
    )
    b.add_argument("--port", required=True, help="PATH for a pty symlink, or tcp://HOST:PORT to listen on")
    b.add_argument("--rate", type=number(float, above=0, maximum=1000), default=1.0, help="records per second, at most 1000 (default 1)")
    b.add_argument("--duration", type=number(float, above=0), default=None, help="stop after this many seconds (default: run until Ctrl-C)")
    b.add_argument("--course", type=number(float, above=0), default=600.0, help="seconds per whole anaesthesia course (default 600; it repeats)")
    b.add_argument("--seed", type=number(int, minimum=0), default=0, help="seed for artifacts and noise (default 0)")
    b.add_argument("--noise", type=number(float, minimum=0, maximum=1), default=0.0, help="probability per record of a line fault: NUL, split line, lost byte")
    b.add_argument("--no-artifacts", action="store_true", help="no SQI drops, EMG bursts or electrode lifts")
    b.set_defaults(func=run_bis)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_bis(args: argparse.Namespace) -> int:
    from surgbox_ext.bis.simulator import BISSimulator, PtyPort, open_port

    sim = BISSimulator(rate=args.rate, course_s=args.course, seed=args.seed, artifacts=not args.no_artifacts, noise=args.noise)
    port = open_port(args.port, sim.header())
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if isinstance(port, PtyPort):
            print(f"BIS simulator: pty {port.name} linked at {port.link}; open {port.link} as the serial port", flush=True)
        else:
            host, p = port.address
            print(f"BIS simulator: listening on tcp://{host}:{p}; connect with socket://{host}:{p}", flush=True)
        try:
            n = sim.run(port, duration=args.duration, stop=stop)
        except KeyboardInterrupt:
            n = -1
        print(f"BIS simulator: stopped{'' if n < 0 else f' after {n} records'}", file=sys.stderr)
    finally:
        port.close()
        signal.signal(signal.SIGTERM, previous)
    return 0
