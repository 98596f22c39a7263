"""``amnesiac receipts``: list, verify, export or prove the deletion receipts of a run."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_subparser, emit_json, table

ACTIONS = ("list", "verify", "export", "prove")


def add_parser(sub: Any) -> None:
    p = add_subparser(sub, "receipts", help="list, verify, export or prove a run's deletion receipts",
                      description="The deletion receipts of a run (or of a ledger of your own loop): list them "
                                  "(the default action), check their hash chain, export them for an auditor, or "
                                  "show a requester that their ids are in one. See docs/receipts.md.",
                      examples="  amnesiac receipts runs/digits\n  amnesiac receipts runs/digits --json\n"
                               "  amnesiac receipts verify runs/digits\n"
                               "  amnesiac receipts export runs/digits --out digits.receipts.json\n"
                               "  amnesiac receipts prove digits.receipts.json --proof proof.json\n")
    acts = p.add_subparsers(dest="receipts_command", metavar="ACTION")
    ls = add_subparser(acts, "list", help="list the receipts (the default action)",
                       description="List every deletion carried out on a run (or a ledger of your own loop), from "
                                   "its audit log, numbered from 1 (--json also gives each its audit-log entry, id).",
                       examples="  amnesiac receipts list runs/digits\n  amnesiac receipts runs/digits --json\n"
                                "  amnesiac receipts my-ledger/            # a ledger from your own loop\n")
    ls.add_argument("run", help="run directory, or a ledger directory recorded from your own loop")
    ls.add_argument("--json", action="store_true", help="print the full receipts as JSON")
    ls.set_defaults(func=run)
    ver = add_subparser(acts, "verify", help="check the receipts' hash chain, rows and model",
                        description="Recompute every receipt's hash and the chain's links, check the chain's head, "
                                    "that the ledger's rows are those the last receipt committed to (Merkle root), "
                                    "that every reverted step is marked and its update destroyed, and that the last "
                                    "receipt's model is the model file's and the ledger's head. Works on a run, a "
                                    "ledger of your own loop, or a bundle from 'receipts export' (with --model). "
                                    "Exit 0 when all holds, 1 naming each receipt or file that does not.",
                        examples="  amnesiac receipts verify runs/digits\n"
                                 "  amnesiac receipts verify digits.receipts.json --model model.safetensors\n")
    ver.add_argument("target", help="run directory, ledger directory, or exported bundle")
    ver.add_argument("--model", default=None, help="a model file to check against the last receipt")
    ver.add_argument("--json", action="store_true", help="print the findings as JSON")
    ver.set_defaults(func=run_verify)
    exp = add_subparser(acts, "export", help="write the receipts for an auditor (no ledger needed to check them)",
                        description="Write the chained receipts, the chain's head, the rows' Merkle leaves (a hash "
                                    "of each row's ids, never the ids) and root, and the head model's hash to one "
                                    "JSON file that 'receipts verify BUNDLE --model FILE' checks on any machine.",
                        examples="  amnesiac receipts export runs/digits --out digits.receipts.json\n")
    exp.add_argument("run", help="run directory or ledger directory")
    exp.add_argument("--out", required=True, help="the bundle file to write (must not exist)")
    exp.set_defaults(func=run_export)
    prv = add_subparser(acts, "prove", help="show that a requester's ids are in a receipt of a bundle",
                        description="Find the receipt that commits to the proof's ids under its secret, and give a "
                                    "Merkle inclusion proof for every row that receipt reverted, each checked against "
                                    "the bundle's root. Exit 0 when the proof holds, 1 when it does not.",
                        examples="  amnesiac receipts prove digits.receipts.json --proof proof.json\n"
                                 "  amnesiac receipts prove digits.receipts.json --proof proof.json --ids 17,42\n")
    prv.add_argument("bundle", help="a bundle from 'amnesiac receipts export'")
    prv.add_argument("--proof", required=True, help="the proof file the requester was given")
    prv.add_argument("--ids", default=None, help="the request's ids, when the proof holds only the secret")
    prv.add_argument("--json", action="store_true", help="print the whole proof as JSON")
    prv.set_defaults(func=run_prove)
    p.set_defaults(func=lambda args: p.error("give a run directory (amnesiac receipts RUN) or an action: "
                                             + ", ".join(ACTIONS)))


def with_default_action(argv: list[str]) -> list[str]:
    """``amnesiac receipts RUN`` (and ``receipts --json RUN``) mean ``receipts list ...``."""
    if len(argv) > 1 and argv[0] == "receipts" and argv[1] not in (*ACTIONS, "-h", "--help"):
        return [argv[0], "list", *argv[1:]]
    return argv


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


def run_verify(args: argparse.Namespace) -> int:
    from ..unlearn.proofs import verify_receipts

    report = verify_receipts(args.target, model=args.model)
    if args.json:
        emit_json(report.as_dict())
    else:
        print(f"receipts of {report.source}: {report.receipts} chained"
              + (f", from receipt #{report.chain_start}" if report.chain_start else "")
              + (f"; head {report.head[:16]}" if report.head else ""))
        for note in report.notes:
            print(f"note: {note}")
        for problem in report.problems:
            print(f"PROBLEM: {problem}")
        print("ok: the chain, the rows and the model agree" if report.ok else f"{len(report.problems)} problem(s)")
    return 0 if report.ok else 1


def run_export(args: argparse.Namespace) -> int:
    from ..unlearn.proofs import export_receipts

    bundle = export_receipts(args.run, args.out)
    print(f"wrote {args.out}: {len(bundle['receipts'])} chained receipt(s), {len(bundle['rows'])} rows, head "
          f"{str(bundle['chain_head'])[:16]}; check it with: amnesiac receipts verify {args.out} --model MODEL_FILE")
    return 0


def run_prove(args: argparse.Namespace) -> int:
    from ..unlearn.proofs import prove_receipt
    from ..utils import parse_id_list

    ids = parse_id_list(args.ids) if args.ids else None
    result = prove_receipt(args.bundle, args.proof, ids=ids)
    if args.json:
        emit_json(result)
    elif result["ok"]:
        print(f"proven: chained receipt {result['receipt_number']} ({str(result['receipt_hash'])[:16]}, method "
              f"{result['method']}) commits to these ids; {len(result['inclusion'])} row(s) it reverted are, in the "
              f"committed state (root {str(result['rows_root'])[:16]}), reverted with their updates destroyed")
    else:
        for problem in result["problems"]:
            print(f"PROBLEM: {problem}")
    return 0 if result["ok"] else 1
