"""``amnesiac receipts``: list the deletion receipts of a run."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_subparser, emit_json, table


def add_parser(sub: Any) -> None:
    p = add_subparser(sub, "receipts", help="list the deletion receipts of a run",
                      description="List every deletion carried out on a run (or a ledger of your own loop), from "
                                  "its audit log, numbered from 1 (--json also gives each its audit-log entry, id).",
                      examples="  amnesiac receipts runs/digits\n  amnesiac receipts runs/digits --json\n"
                               "  amnesiac receipts my-ledger/            # a ledger from your own loop\n")
    p.add_argument("run", help="run directory, or a ledger directory recorded from your own loop")
    p.add_argument("--json", action="store_true", help="print the full receipts as JSON")
    p.set_defaults(func=run)


def describe_request(req: dict[str, Any]) -> str:
    """``class 3 (146 records)``, ``2 records``, ``2 subjects (9 records)``."""
    n = req.get("count")
    if req.get("type") == "class":
        return f"class {req.get('class')} ({n} records)"
    if req.get("type") == "subjects":
        return f"{req.get('subjects')} subjects ({n} records)"
    return f"{n} record{'s' if n != 1 else ''}"


def run(args: argparse.Namespace) -> int:
    from ..unlearn import list_receipts

    receipts = list_receipts(args.run)
    if args.json:
        emit_json(receipts)
        return 0
    if not receipts:
        print("no deletions recorded")
        return 0
    rows = []
    for r in receipts:
        after = (r.get("evaluation") or {}).get("after", {})
        rows.append([r["number"], r["time"], r["method"], describe_request(r["request"]),
                     r["n_steps_reverted"], r["optimizer_steps"], f"{r['model_hash_before'][:10]}->{r['model_hash_after'][:10]}",
                     after.get("forget", ""), after.get("test", "")])
    print(table(rows, ["#", "time", "method", "request", "reverted", "repair", "model", "forget acc", "test acc"]))
    return 0
