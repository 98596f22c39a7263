"""``amnesiac ledger``: inspect, verify and size update ledgers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LedgerError, PendingChangeError
from .common import add_subparser, emit_json, in_flags

EXAMPLES = """\
  amnesiac ledger info runs/digits
  amnesiac ledger verify runs/digits            # manifest, index, initial weights, model vs head, blob sizes
  amnesiac ledger verify runs/digits --deep     # ... and every blob's checksum, initial + updates = model
  amnesiac ledger recover runs/digits           # finish or roll back a change a crash interrupted
  amnesiac ledger estimate --model resnet18 --dataset mnist --epochs 10 --batch-size 64
  amnesiac ledger estimate --model resnet18 --dataset mnist --epochs 10 --watch 100 --dtype float16
"""


def add_parser(sub: Any) -> None:
    p = add_subparser(sub, "ledger", help="inspect, verify or size an update ledger",
                      description="Inspect, verify or estimate the size of the update ledger of a run.",
                      examples=EXAMPLES)
    ls = p.add_subparsers(dest="ledger_command", metavar="ACTION")
    info = ls.add_parser("info", help="summarise a run's ledger", description="Counts, sizes and the head of a run's ledger.", epilog="examples:\n" + '  amnesiac ledger info runs/digits\n  amnesiac ledger info runs/digits --json\n', formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("run", help="run directory")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.set_defaults(func=run_info)
    ver = ls.add_parser("verify", help="audit a run: manifest, index, initial weights, model, blobs", epilog="examples:\n" + '  amnesiac ledger verify runs/digits\n  amnesiac ledger verify runs/digits --deep --json\n', formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Audit a run and its ledger: the manifest against its recorded checksum, SQLite's "
                                    "integrity check, every index row's checksum, the id -> steps table against the "
                                    "ids stored with each step, the initial weights and the model against their "
                                    "recorded checksums and the ledger's head, a pending journal, and the presence "
                                    "and size of every stored update. --deep also reads every update and checks its "
                                    "checksum, hashes the weights, and, when every applied step stores its update, "
                                    "checks that initial weights + the sum of the updates = the model. Exit 0 when "
                                    "all is well, 1 when something is wrong (each finding is listed).")
    ver.add_argument("run", help="run directory")
    ver.add_argument("--deep", action="store_true", help="read every stored update and check the reconstruction")
    ver.add_argument("--json", action="store_true", help="print the findings as JSON")
    ver.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ver.set_defaults(func=run_verify)
    rec = ls.add_parser("recover", help="finish or roll back a change that a crash interrupted", epilog="examples:\n" + '  amnesiac ledger recover runs/digits\n', formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Take the run's lock and complete (if its commit point was reached) or roll back "
                                    "an interrupted training epoch or forget. Every command that takes the lock does "
                                    "this anyway; this one does only that.")
    rec.add_argument("run", help="run directory")
    rec.set_defaults(func=run_recover)
    est = ls.add_parser("estimate", help="estimate a ledger's size before training",
                        description="The disk a ledger would take, before training.", epilog="examples:\n" + '  amnesiac ledger estimate --model resnet18 --dataset mnist --epochs 10 --batch-size 64\n  amnesiac ledger estimate --model resnet18 --dataset mnist --epochs 10 --watch 100 --dtype float16\n  amnesiac ledger estimate --model resnet18 --dataset mnist --epochs 10 --dtype float16 --shards 100\n', formatter_class=argparse.RawDescriptionHelpFormatter)
    est.add_argument("--model", required=True)
    est.add_argument("--dataset", required=True)
    est.add_argument("--epochs", type=int, required=True, help="passes over the training data")
    est.add_argument("--batch-size", type=int, default=64)
    est.add_argument("--watch", type=int, default=None, help="size of the watch-list (record only steps that hold one)")
    est.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    shard = est.add_mutually_exclusive_group()
    shard.add_argument("--shards", type=int, default=None,
                       help="a shard ledger with this many shards (one stored sum each; see train --batching shards)")
    shard.add_argument("--shard-size", type=int, default=None, help="a shard ledger with shards of this many records")
    est.add_argument("--train-size", type=int, default=None, help="training examples (default: the dataset's own)")
    est.add_argument("--no-buffers", action="store_true")
    est.add_argument("--json", action="store_true", help="print the result as JSON")
    est.set_defaults(func=run_estimate)
    p.set_defaults(func=lambda args: _help(p))


TRAIN_SIZES = {"digits": 1438, "mnist": 60000, "fashion-mnist": 60000, "cifar10": 50000, "cifar100": 50000}


def run_info(args: argparse.Namespace) -> int:
    from ..ledger import (
        human_bytes,  # noqa: F401
        is_bare_ledger,
        reading_ledger,
    )
    from ..run import RunDir

    if is_bare_ledger(args.run):  # a ledger recorded from your own loop
        with reading_ledger(args.run) as store:
            s = store.summary()
    else:
        run = RunDir.open(args.run)
        with run.reading():
            if not run.has_ledger():
                raise LedgerError(run.no_ledger_reason())
            with run.open_ledger() as store:
                s = store.summary()
    if args.json:
        emit_json(s)
        return 0
    pol = s["policy"] or {}
    print(f"ledger          {s['path']}")
    if s["kind"] == "shards":
        print("kind            shard ledger: one stored sum per shard of records, whatever the epochs")
        print(f"shards          {s['steps']} indexed: {s['stored_blobs']} sums stored, {s['destroyed_blobs']} destroyed by "
              f"deletions; {s['reverted_steps']} subtracted")
    else:
        print(f"steps           {s['steps']} indexed; {s['recorded_steps']} recorded an update: {s['stored_blobs']} still "
              f"stored, {s['destroyed_blobs']} destroyed by deletions; {s['reverted_steps']} reverted")
    print(f"sample ids      {s['distinct_ids']}")
    print(f"stored bytes    {human_bytes(s['bytes'])} in {s['stored_blobs']} blobs")
    print(f"dtype           {s['storage_dtype']} (buffers {'recorded' if s['include_buffers'] else 'not recorded'})")
    print(f"policy          {pol.get('kind')}" + (f" ({pol.get('watch')} watched ids)" if pol.get("watch") is not None else ""))
    print(f"optimizer       {(s['optimizer'] or {}).get('class')}")
    print(f"training        {'complete' if s['training_complete'] else 'INCOMPLETE'}; head {str(s['head_hash'])[:16]}"
          f" at step {s['head_step']}")
    return 0


def _bare_ledger_audit(path: Path, *, deep: bool, progress: bool | None) -> Any:
    """The audit of a ledger recorded from your own loop (no run directory around it): everything in it;
    the model is checked against the head when you forget (``forget_records``), not here."""
    from ..ledger import reading_ledger, verify_ledger
    from ..run import RunAudit

    rep = RunAudit(ledger=None)
    try:
        with reading_ledger(path, interrupted_ok=True) as store:  # a deletion in flight: "being changed"
            rep.ledger = verify_ledger(store, deep=deep, progress=progress)
        rep.checks.append("a ledger without a run directory: manifest, index, initial weights and blobs")
    except PendingChangeError:
        raise
    except LedgerError as err:
        rep.problems.append(str(err))
    return rep


def run_verify(args: argparse.Namespace) -> int:
    from ..ledger import is_bare_ledger
    from ..run import RunDir

    progress = False if args.no_progress else None
    where = Path(args.run)
    if is_bare_ledger(where):
        rep = _bare_ledger_audit(where, deep=args.deep, progress=progress)  # a ledger from your own loop
    else:
        run = RunDir.open(args.run)
        where = run.path
        rep = run.audit(deep=args.deep, progress=progress)
    led = rep.ledger
    if args.json:
        emit_json({"ok": rep.ok, "deep": args.deep, "checks": rep.checks, "problems": rep.problems,
                   "ledger": None if led is None else {
                       "ok": led.ok, "steps": led.steps, "checked": led.checked, "bad": led.bad,
                       "orphans": led.orphans, "problems": led.problems, "unchecked_rows": led.unchecked_rows}})
        return 0 if rep.ok else 1
    if led is None and not rep.problems:
        print(in_flags(f"{RunDir.open(where).no_ledger_reason()}; config checked"))
        return 0
    if led is not None:
        what = f"{led.checked} stored updates read and checked" if args.deep else f"{led.recorded} recorded updates present"
        print(f"{led.steps} steps, {what}")
    for c in rep.checks:
        print(f"  checked: {c}")
    findings = rep.problems + (led.problems if led is not None else [])
    for p in findings:
        print(f"  PROBLEM: {in_flags(p)}")
    if led is not None:
        for step, why in sorted(led.bad.items())[:50]:
            print(f"  step {step}: {why}")
        if len(led.bad) > 50:
            print(f"  ... {len(led.bad) - 50} more bad steps")
        if led.orphans:
            print(f"  {len(led.orphans)} file(s) in blobs/ that no index row names (left alone): {', '.join(led.orphans[:5])}")
        if led.unchecked_rows:
            print(f"  note: {led.unchecked_rows} index rows predate row checksums and were checked by the id table only")
    print("all good" if rep.ok else f"NOT OK: {len(findings) + (len(led.bad) if led is not None else 0)} finding(s)")
    return 0 if rep.ok else 1


def run_recover(args: argparse.Namespace) -> int:
    from ..ledger import is_bare_ledger
    from ..run import RunDir

    if is_bare_ledger(args.run):  # a ledger of your own loop: complete a deletion that died after committing
        from ..unlearn.library import finish_interrupted_deletion, writing_ledger

        with writing_ledger(args.run) as store:
            done = finish_interrupted_deletion(store)
        print(f"{args.run}: nothing to recover" if done is None else
              f"{args.run}: the interrupted deletion had committed; it is now complete"
              + (f" ({done['target']} holds the new model)" if done.get("target") else ""))
        return 0
    run = RunDir.open(args.run)
    with run.lock(wait=False, recover=False):
        outcome = run.finish_pending_commit()
    print({None: f"{run.path}: nothing to recover",
           "rolled-forward": f"{run.path}: the interrupted change had committed; it is now complete",
           "rolled-back": f"{run.path}: the interrupted change had not committed; the previous state stands"}[outcome])
    return 0


def run_estimate(args: argparse.Namespace) -> int:
    from ..data import dataset_info
    from ..ledger import estimate_for_model, human_bytes
    from ..models import build_model

    info = dataset_info(args.dataset)
    model = build_model(args.model, in_channels=info.channels, num_classes=info.num_classes, image_size=info.image_size)
    n = args.train_size or TRAIN_SIZES.get(args.dataset, 0)
    shards = args.shards
    if args.shard_size is not None:
        if args.shard_size <= 0:
            raise ConfigError(f"--shard-size must be a positive integer, got {args.shard_size}")
        shards = -(-n // args.shard_size)
    every = estimate_for_model(model, include_buffers=not args.no_buffers, num_examples=n, batch_size=args.batch_size,
                               epochs=args.epochs, dtype=args.dtype, watch=args.watch)
    est = every if shards is None else estimate_for_model(
        model, include_buffers=not args.no_buffers, num_examples=n, batch_size=args.batch_size, epochs=args.epochs,
        dtype=args.dtype, shards=shards)
    if args.json:
        emit_json({**est.as_dict(), **({"every_step_total_bytes": every.total_bytes} if shards is not None else {})})
        return 0
    print(f"{args.model} on {args.dataset} ({n} examples), {args.epochs} epochs, batch {args.batch_size}, {args.dtype}")
    print(f"  steps              {est.steps} ({est.steps_per_epoch} per epoch)")
    if args.watch is not None:
        print(f"  watched steps      {est.recorded_steps:.0f} expected ({100 * est.watch_step_fraction:.1f}% of steps hold one of {args.watch} ids)")
    print(f"  bytes per step     {human_bytes(est.bytes_per_step)}")
    print(f"  update blobs       {human_bytes(est.blob_bytes)}")
    print(f"  index              {human_bytes(est.index_bytes)}")
    print(f"  total              {human_bytes(est.total_bytes)}")
    if shards is not None:
        print(f"  shard ledger       {shards} stored sums, whatever the epochs; up to {human_bytes(est.peak_bytes)} "
              "during an epoch (old and new sums until its commit)")
        print(f"  every-step ledger  {human_bytes(every.total_bytes)} ({every.total_bytes / est.total_bytes:.0f} times more)")
    return 0


def _help(parser: argparse.ArgumentParser) -> int:
    """The subcommand named without an action: its help, exit 0."""
    parser.print_help()
    return 0
