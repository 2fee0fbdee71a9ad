"""``surgbox report ID [--out FILE.pdf]``: make an event's PDF report (stored encrypted; --out also writes it)."""

from __future__ import annotations

import argparse

from ._auth import add_auth_options, login


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="make an event's PDF report (stored encrypted; --out writes a copy)",
                       description="Render the PDF report of an event (case data, snapshots, BIS trend, files with "
                                   "checksums), store it encrypted with the event, and with --out also write it to "
                                   "FILE.pdf (plaintext: needs the export permission).")
    add_auth_options(p)
    p.add_argument("id", help="the event id (as `surgbox events list` shows it)")
    p.add_argument("--out", metavar="FILE.pdf", help="also write the PDF here (outside SURGBOX_HOME)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with login(args) as s:
        if args.out:
            rec = s.events.save_report(args.id, args.out)
        else:
            rec = s.events.make_report(args.id)
    print(f"{rec.event_id}: report stored as {rec.name} ({rec.size} bytes, sha256 {rec.sha256})")
    if args.out:
        print(f"written to {args.out}")
    return 0
