"""``surgbox bis parse FILE [--json]``: the readings of a BIS capture or HISTORY export."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import SurgboxError

TABLE_LIVE = ("BIS", "SQI", "EMGLOW", "SR", "SEF", "TOTPOW")
TABLE_HISTORY = ("AVGBIS", "MINBIS", "MAXBIS", "AVGSQI", "AVGEMG", "AVGSR")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bis", help="BIS monitor data: parse captures", description="Tools for BIS Vista / A-2000 serial data.")
    bsub = p.add_subparsers(dest="bis_command", metavar="SUBCOMMAND")
    pp = bsub.add_parser(
        "parse",
        help="print the readings of a serial capture or HISTORY export",
        description="Parse a raw BIS serial log (NUL bytes, split lines and garbage are tolerated) or a 1-minute "
        "HISTORY export. Prints a table, or JSON Lines with --json; a summary of what was skipped goes to stderr.",
    )
    pp.add_argument("file", help="capture file (raw bytes as logged from the serial port)")
    pp.add_argument("--json", action="store_true", help="JSON Lines: one reading per line (see docs/bis.md)")
    pp.add_argument("--channel", default="12", help="channel shown in the table (default 12, the combined channel)")
    pp.set_defaults(func=run_parse)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def run_parse(args: argparse.Namespace) -> int:
    from surgbox_ext.bis.parser import parse_file

    try:
        records, parser = parse_file(args.file)
    except FileNotFoundError:
        raise SurgboxError(f"bis parse: {args.file} does not exist; give the path of a capture file") from None
    except IsADirectoryError:
        raise SurgboxError(f"bis parse: {args.file} is a folder; give the path of a capture file") from None
    except OSError as exc:
        raise SurgboxError(f"bis parse: cannot read {args.file}: {exc.strerror or exc}") from None
    s = parser.stats
    if not records:
        raise SurgboxError(f"bis parse: no BIS records in {args.file} ({s.skipped_bytes} bytes skipped); give a raw "
                           f"BIS Vista serial capture or a HISTORY export")
    present = sorted({ch for r in records for ch in r.channels}, key=lambda c: (len(c), c))
    if not args.json and present and args.channel not in present:  # the table would show another channel
        raise SurgboxError(f"bis parse: --channel {args.channel} is not in {args.file} (its channels: "
                           f"{', '.join(present)}); give one of those")
    out = sys.stdout
    if args.json:
        for r in records:
            out.write(json.dumps(r.to_json_dict()) + "\n")
    else:
        names = TABLE_HISTORY if parser.header.kind == "bis-history" else TABLE_LIVE
        rows = [("TIME",) + names]
        for r in records:
            vals = r.main_values(args.channel)
            rows.append((r.device_time.isoformat(sep=" "),) + tuple(_fmt(vals.get(n)) for n in names))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            out.write("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) + "\n")
    print(
        f"{args.file}: {s.records} records ({parser.header.kind}), {s.invalid_values} invalid values; skipped "
        f"{s.skipped_bytes} bytes, {s.partial_records} partial and {s.corrupt_records} corrupt records, "
        f"{s.nul_bytes} NUL bytes; {s.repaired_times} timestamps repaired",
        file=sys.stderr,
    )
    return 0
