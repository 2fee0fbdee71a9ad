"""``surgbox audit``: verify the hash chain, show records (needs the view_audit permission)."""

from __future__ import annotations

import argparse
import json
import sys

from ._auth import add_auth_options, login


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="verify or show the tamper-evident audit trail",
                       description="The audit trail records every access and change (docs/catalog.md).")
    au = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    c = au.add_parser("verify", help="recompute the hash chain; exit status 1 when it was tampered with")
    add_auth_options(c)
    c.add_argument("--json", action="store_true", help="print the result as one JSON object")
    c.set_defaults(func=_verify)
    c = au.add_parser("show", help="print audit records (oldest first)")
    add_auth_options(c)
    c.add_argument("--limit", type=int, metavar="N", help="only the newest N records")
    c.add_argument("--actor", metavar="USER", help="only records of this user")
    c.add_argument("--action", metavar="NAME", help="exact, or a prefix ending in '*' (event.*)")
    c.add_argument("--target", metavar="ID", help="an event id or user name")
    c.add_argument("--json", action="store_true", help="JSON Lines, one record per line, with hashes")
    c.set_defaults(func=_show)


def _verify(args: argparse.Namespace) -> int:
    with login(args) as s:
        res = s.audit.verify()
    if args.json:
        print(json.dumps({"ok": res.ok, "records": res.records, "head": res.head, "problems": list(res.problems)}))
    elif res.ok:
        print(f"audit trail intact: {res.records} records, head {res.head}")
    if not res.ok:
        if not args.json:
            print(f"AUDIT TRAIL TAMPERED: {len(res.problems)} problem(s) in {res.records} records", file=sys.stderr)
            for p in res.problems:
                print(f"  {p}", file=sys.stderr)
        return 1
    return 0


def _show(args: argparse.Namespace) -> int:
    with login(args) as s:
        recs = s.audit.records(limit=args.limit, actor=args.actor, action=args.action, target=args.target,
                               newest_first=args.limit is not None)
    recs.sort(key=lambda r: r.seq)
    for r in recs:
        if args.json:
            print(json.dumps(r.to_dict(), ensure_ascii=False))
        else:
            detail = json.dumps(dict(r.detail), ensure_ascii=False, separators=(",", ":")) if r.detail else ""
            print(f"{r.seq:6d}  {r.at}  {r.actor:12s} {r.action:16s} {r.result:6s} {r.target:22s} {detail}".rstrip())
    return 0
