"""``amnesiac methods``: list the unlearning methods."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_subparser, emit_json, table


def add_parser(sub: Any) -> None:
    p = add_subparser(sub, "methods", help="list the unlearning methods",
                      description="List the unlearning methods that `amnesiac forget --method NAME` accepts.",
                      examples="  amnesiac methods\n  amnesiac forget runs/digits --class 3 --method relabel --epochs 1\n")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..unlearn import METHODS

    rows = [(n, "yes" if getattr(METHODS.get(n), "needs_ledger", False) else "no", METHODS.help(n)) for n in METHODS.names()]
    options = {n: dict(getattr(METHODS.get(n), "options", {})) for n in METHODS.names()}
    if args.json:
        emit_json([{"name": r[0], "needs_ledger": r[1] == "yes", "description": r[2], "options": options[r[0]]}
                   for r in rows])
        return 0
    print(table(rows, ["method", "needs ledger", "description"]))
    print("\noptions (forget --method NAME --method-option NAME=VALUE, or the flags of `amnesiac forget --help`):")
    for name, opts in options.items():
        print(f"  {name:<16} " + (", ".join(f"{k} ({v})" for k, v in sorted(opts.items())) or "none"))
    return 0
