"""``amnesiac forget``: honour a deletion request on a run."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..config import Thresholds
from ..errors import ConfigError
from .common import add_subparser, emit_json, table

EXAMPLES = """\
  amnesiac forget runs/digits --ids 17,42 --dry-run        # plan only: steps touched, share, recommendation
  amnesiac forget runs/digits --ids 17,42                  # amnesiac: subtract the updates of those steps
  amnesiac forget runs/digits --ids-file deletions.txt --repair-epochs 1
  amnesiac forget runs/digits --class 3 --repair-steps 50
  amnesiac forget runs/digits --subjects alice,bob --subjects-file subjects.json
  amnesiac forget runs/digits --class 3 --method relabel --epochs 1 --out runs/digits-relabel
  amnesiac forget runs/digits --class 3 --method retrain --out runs/digits-retrain
  amnesiac forget runs/digits --ids 17,42 --method scrub --method-option retain_steps=20 --out runs/digits-scrub
"""


def add_parser(sub: Any) -> None:
    p = add_subparser(sub, "forget", help="forget training records (a deletion request)",
                      description="Remove the influence of training records from a run's model. By default the "
                                  "paper's amnesiac method: subtract the stored updates of every step that saw them, "
                                  "then optionally repair with a short fine-tune on the retained data. The stored "
                                  "updates of reverted steps and the optimizer state, which still encode the deleted "
                                  "data, are destroyed afterwards; a receipt goes to the run's audit log.",
                      examples=EXAMPLES)
    p.add_argument("run", help="run directory")
    what = p.add_argument_group("what to forget (exactly one)")
    what.add_argument("--ids", default=None, help="sample ids, e.g. 17,42,100-120")
    what.add_argument("--ids-file", default=None, help="file of sample ids (JSON list, or one per line)")
    what.add_argument("--class", dest="class_", type=int, default=None, metavar="CLASS", help="every training example of this class")
    what.add_argument("--subjects", default=None, help="data subjects, comma-separated (needs --subjects-file)")
    p.add_argument("--subjects-file", default=None, help="subject -> ids mapping (JSON object or 'subject,id' CSV)")
    p.add_argument("--method", default="amnesiac", help="unlearning method (see `amnesiac methods`; default amnesiac)")
    p.add_argument("--repair-epochs", type=int, default=None, help="after amnesiac, fine-tune N epochs on retained data")
    p.add_argument("--repair-steps", type=int, default=None, help="after amnesiac, fine-tune N optimizer steps")
    m = p.add_argument_group("method options (an option the chosen method does not take is refused)")
    m.add_argument("--epochs", type=int, default=None, help="training epochs (naive, relabel, finetune, retrain)")
    m.add_argument("--steps", type=int, default=None, help="cap on optimizer steps (naive, relabel, finetune, gradient-ascent)")
    m.add_argument("--lr", type=float, default=None, help="learning rate (default: the run's; finetune a tenth of it)")
    m.add_argument("--copies", type=int, default=None, help="relabel: wrong-label copies per deleted record (default 4)")
    m.add_argument("--retain-weight", type=float, default=None, help="gradient-ascent: weight of retained-data descent (NegGrad+)")
    m.add_argument("--eval-every", type=int, default=None, help="evaluate every N optimizer steps (for fine-grained curves)")
    m.add_argument("--method-option", action="append", default=[], metavar="NAME=VALUE",
                   help="any other option of the method, e.g. temperature=2 for scrub, saliency=0.3 for salun "
                        "(repeatable; `amnesiac methods` lists each method's options)")
    p.add_argument("--out", default=None, help="write the result to this new run directory; the run itself stays untouched")
    p.add_argument("--max-share", type=float, default=Thresholds().amnesiac_max_share,
                   help="planner: share of steps up to which amnesiac alone is recommended (default %(default)s)")
    p.add_argument("--repair-share", type=float, default=Thresholds().repair_max_share,
                   help="planner: share of steps up to which amnesiac + repair is recommended (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="plan only; change nothing")
    p.add_argument("--force", action="store_true",
                   help="run amnesiac even where the planner recommends another method (it refuses otherwise)")
    p.add_argument("--keep-artifacts-for-research", dest="keep", action="store_true",
                   help="DO NOT destroy the reverted updates and optimizer state; the deletion is then incomplete")
    p.add_argument("--no-eval", action="store_true", help="skip the before/after accuracy figures")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (long work still prints a line now and then)")
    p.add_argument("--proof-out", default=None, metavar="FILE",
                   help="where to write the requester's proof (the request's ids and the secret its receipt's "
                        "commitments were made with; default RUN-proofs/proof-DIGEST.json beside the run). "
                        "Give it to the requester and keep no copy")
    p.add_argument("--json", action="store_true", help="print the plan or the receipt as JSON")
    p.set_defaults(func=run)


OPTION_FLAGS = ("repair_epochs", "repair_steps", "epochs", "steps", "copies", "eval_every", "lr", "retain_weight")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The method options given on the command line, each checked against what the method accepts."""
    from ..unlearn import METHODS
    from ..unlearn.base import check_options

    opts = {name: getattr(args, name) for name in OPTION_FLAGS if getattr(args, name) is not None}
    declared = getattr(METHODS.get(args.method), "options", {})
    for item in args.method_option:
        name, eq, raw = item.partition("=")
        if not eq or not name.strip():
            raise ConfigError(f"--method-option {item!r}: expected NAME=VALUE, e.g. temperature=2")
        if name.strip() in opts:
            raise ConfigError(f"--method-option {item!r}: {name.strip()} is already given")
        check_options(args.method, {name.strip(): _number(raw.strip())})  # unknown name: did-you-mean, the list
        opts[name.strip()] = _number(raw.strip())
    for name in opts:
        if name not in declared:
            flags = ", ".join("--" + o.replace("_", "-") for o in OPTION_FLAGS if o in declared) or "none"
            raise ConfigError(f"--{name.replace('_', '-')} does not apply to --method {args.method} "
                              f"(its options here: {flags})")
    for name, value in opts.items():
        try:
            check_options(args.method, {name: value})
        except ConfigError:
            kind = declared[name]
            what = {"int>=1": "an integer >= 1", "int>=0": "an integer >= 0", "float>0": "a positive number",
                    "float>=0": "a number >= 0"}.get(kind, kind)
            raise ConfigError(f"--{name.replace('_', '-')} must be {what}, got {value}") from None
    return opts


def _number(raw: str) -> Any:
    """An option's value as typed: an integer, a number, or the text itself (a path)."""
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..run import RunDir
    from ..unlearn import METHODS, forget, read_subject_map
    from ..utils import parse_ids, read_ids_file

    METHODS.get(args.method)
    options = _options(args)
    if args.proof_out is not None:
        target = Path(args.proof_out)
        if target.is_dir() or not target.parent.is_dir():
            raise ConfigError(f"--proof-out {target}: give a file path in an existing folder")
    ids: np.ndarray | None = None
    if args.ids is not None:
        ids = parse_ids(args.ids)
    if args.ids_file is not None:
        if ids is not None:
            raise ConfigError("give --ids or --ids-file, not both")
        ids = np.asarray(read_ids_file(args.ids_file), dtype=np.int64)
    subjects = subject_map = None
    if args.subjects is not None:
        subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
        if args.subjects_file is None:
            raise ConfigError("--subjects needs --subjects-file, the mapping from data subjects to sample ids")
        subject_map = read_subject_map(args.subjects_file)
    result = forget(RunDir.open(args.run), ids=ids, class_=args.class_, subjects=subjects, subject_map=subject_map,
                    method=args.method, options=options,
                    thresholds=Thresholds(args.max_share, args.repair_share), dry_run=args.dry_run,
                    keep_artifacts=args.keep, evaluate_after=not args.no_eval, out=args.out,
                    progress=False if args.no_progress else None, force=args.force)
    proof = _write_proof(args, result)
    if args.json:
        emit_json({"message": result.message, "plan": result.plan.as_dict() if result.plan else None,
                   "receipt": result.receipt, "proof_file": str(proof) if proof else None})
        return 0
    if result.plan is not None:
        _print_plan(result.plan)
    print(result.message)
    if result.receipt:
        _print_receipt(args, result)
    if proof is not None:
        print(f"proof          {proof} (for the requester: it names the ids; hand it over and delete it here)")
    return 0


def _write_proof(args: argparse.Namespace, result: Any) -> Path | None:
    """The requester's proof (ids and secret), written only by the owner-readable file it goes to."""
    from ..unlearn.receipts import Receipt

    receipt = result.receipt
    if not isinstance(receipt, Receipt) or not receipt.secret:
        return None
    run_path = Path(str(result.run.path) if result.run is not None else args.run)
    path = Path(args.proof_out) if args.proof_out else \
        run_path.with_name(run_path.name + "-proofs") / f"proof-{receipt.ids_digest[:16]}.json"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(receipt.proof(), fh, indent=1)
    return path


def _print_receipt(args: argparse.Namespace, result: Any) -> None:
    """What the deletion did: accuracies before and after, what was undone and trained, the model's hashes."""
    r = result.receipt
    if r:
        ev = r["evaluation"]
        stages = [s for s in ("before", "after_revert", "after") if s in ev]
        if stages:
            names = list(ev[stages[0]])
            rows = [[n] + [ev[s].get(n, float("nan")) for s in stages] for n in names]
            print()
            print(table(rows, ["accuracy on"] + stages))
            after = ev.get("after", {}).get("forget")
            if after is not None and after >= 0.5 and r["request"]["type"] != "class":
                print("\nnote: the forgotten records are still classified correctly where the model generalises to "
                      "them (as a model never trained on them would); accuracy does not measure forgetting. "
                      f"Membership inference does: amnesiac attack mia {args.run} --target-ids ... --reference RETRAINED")
        undone = "shard sums subtracted" if r.get("ledger_kind") == "shards" else "steps reverted"
        trained = "repair steps" if r["method"] == "amnesiac" else f"{r['method']} training steps"
        print(f"\n{undone} {r['n_steps_reverted']}; {trained} {r['optimizer_steps']}; "
              f"update blobs destroyed {r['destroyed']['update_blobs']}"
              + ("  [KEPT FOR RESEARCH: deletion incomplete]" if r["kept_for_research"] else ""))
        plan = result.plan
        if r["method"] == "amnesiac" and not r["optimizer_steps"] and plan is not None \
                and plan.recommendation == "amnesiac+repair":
            print("note: the planner recommended a repair and none ran; next time add --repair-epochs 1 (or "
                  "--repair-steps N). Until a deletion repairs, later requests count this one's share too")
        print(f"model          {r['model_hash_before'][:16]} -> {r['model_hash_after'][:16]}")
        print(f"took           {r['timings_s']['total']:.2f} s (method {r['timings_s']['method']:.2f} s)")


def _print_plan(plan: Any) -> None:
    unit = "shards" if plan.ledger_kind == "shards" else "steps "
    print(f"request        {plan.request_ids} record(s)")
    print(f"{unit} touched  {len(plan.affected_steps)} of {plan.total_steps} ({100 * plan.share:.2f}%); "
          f"to revert {len(plan.to_revert)}, already reverted {len(plan.already_reverted)}, "
          f"without stored update {len(plan.missing)}")
    if plan.relative_norm is not None:
        print(f"update norm    {plan.update_norm:.4g} ({100 * plan.relative_norm:.2f}% of the model's norm)")
    print(f"recommended    {plan.recommendation}: {plan.reason}")
