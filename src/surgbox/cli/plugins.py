"""``surgbox plugins``: list every registered plugin, its package, and whether it can run here.

Plugins that could not be loaded (an import error in a vendor package, a registration hook
that raised) are listed too, as ``BROKEN`` rows (JSON: ``"broken": true``, ``"available":
false`` and the error as ``"reason"``). When two packages register the same kind and name, the
row of the one that a bare name selects says ``selected``; the other says which wins and how
to pick it anyway (``PACKAGE:NAME``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..hookspecs import REGISTRATION_HOOKS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plugins",
        help="list plugins (kind, name, package, available or why not, broken ones too)",
        description="List every plugin registered through the 'surgbox' entry-point group, those that cannot "
                    "run here (and why), those that could not be loaded, and which of two same-named plugins wins.",
    )
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of objects (kind, name, package, available, reason, selected, broken, ...)")
    p.add_argument("--kind", choices=list(REGISTRATION_HOOKS), help="only this kind")
    p.set_defaults(func=run)


def status(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The STATUS column of one ``Plugins.table()`` row among ``rows``."""
    if row["broken"]:
        return f"BROKEN: {row['reason']}"
    text = "available" if row["available"] else f"unavailable: {row['reason']}"
    rivals = [r for r in rows if not r["broken"] and (r["kind"], r["name"]) == (row["kind"], row["name"]) and r is not row]
    if not rivals:
        return text
    if row["selected"]:
        return f"{text}; selected (wins over {', '.join(r['package'] for r in rivals)} by priority)"
    winner = next((r for r in rivals if r["selected"]), None)
    if winner is None:
        return f"{text}; conflict: same priority as {', '.join(r['package'] for r in rivals)}, select as '{row['package']}:{row['name']}'"
    return f"{text}; not selected ({winner['package']} wins), select as '{row['package']}:{row['name']}'"


def run(args: argparse.Namespace) -> int:
    from ..plugins import get_plugins

    rows = get_plugins().table(args.kind)
    if args.kind:  # broken plugins have no kind: show them with every listing, they may be the one asked for
        rows = [r for r in rows if r["kind"] in (args.kind, None)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("KIND", "NAME", "PACKAGE", "STATUS")
    table = [header] + [(r["kind"] or "-", r["name"], r["package"], status(r, rows)) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3])
    named = [r for r in rows if not r["broken"]]
    if not rows:
        print("(no plugins registered)")
    elif len({(r["kind"], r["name"]) for r in named}) < len(named):
        print("(a name registered twice: the 'selected' one is used; PACKAGE:NAME picks another)")
    return 0
