"""``surgbox plugins``: list every registered plugin, its package, and whether it can run here."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plugins",
        help="list plugins (kind, name, package, available or why not)",
        description="List every plugin registered through the 'surgbox' entry-point group.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of objects instead of a table")
    p.add_argument("--kind", choices=["source", "compositor", "encoder", "detector", "store"], help="only this kind")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..plugins import get_plugins

    plugins = get_plugins()
    rows = [e.to_dict() for e in plugins.entries(args.kind)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("KIND", "NAME", "PACKAGE", "STATUS")
    table = [header] + [
        (r["kind"], r["name"], r["package"], "available" if r["available"] else f"unavailable: {r['reason']}") for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3])
    for ep, err in plugins.broken:
        print(f"broken plugin {ep}: {err}")
    if not rows:
        print("(no plugins registered)")
    return 0
