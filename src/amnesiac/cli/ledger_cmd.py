"""``amnesiac ledger``: inspect, verify and size update ledgers."""

from __future__ import annotations

import argparse
from typing import Any

from ..data import dataset_info
from ..errors import LedgerError
from ..ledger import estimate_for_model, human_bytes
from ..models import build_model
from ..run import RunDir
from .common import add_subparser, emit_json

EXAMPLES = """\
  amnesiac ledger info runs/digits
  amnesiac ledger verify runs/digits
  amnesiac ledger estimate --model resnet18 --dataset mnist --epochs 10 --batch-size 64
  amnesiac ledger estimate --model resnet18 --dataset mnist --epochs 10 --watch 100 --dtype float16
"""


def add_parser(sub: Any) -> None:
    p = add_subparser(sub, "ledger", help="inspect, verify or size an update ledger",
                      description="Inspect, verify or estimate the size of the update ledger of a run.",
                      examples=EXAMPLES)
    ls = p.add_subparsers(dest="ledger_command", metavar="ACTION")
    info = ls.add_parser("info", help="summarise a run's ledger")
    info.add_argument("run", help="run directory")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=run_info)
    ver = ls.add_parser("verify", help="check every stored update against its checksum")
    ver.add_argument("run", help="run directory")
    ver.add_argument("--json", action="store_true")
    ver.set_defaults(func=run_verify)
    est = ls.add_parser("estimate", help="estimate a ledger's size before training")
    est.add_argument("--model", required=True)
    est.add_argument("--dataset", required=True)
    est.add_argument("--epochs", type=int, required=True)
    est.add_argument("--batch-size", type=int, default=64)
    est.add_argument("--watch", type=int, default=None, help="size of the watch-list (record only steps that hold one)")
    est.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    est.add_argument("--train-size", type=int, default=None, help="training examples (default: the dataset's own)")
    est.add_argument("--no-buffers", action="store_true")
    est.add_argument("--json", action="store_true")
    est.set_defaults(func=run_estimate)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


TRAIN_SIZES = {"digits": 1438, "mnist": 60000, "fashion-mnist": 60000, "cifar10": 50000, "cifar100": 50000}


def run_info(args: argparse.Namespace) -> int:
    run = RunDir.open(args.run)
    if not run.has_ledger():
        raise LedgerError(f"{run.path} has no ledger (it was trained with --record none)")
    with run.open_ledger() as store:
        s = store.summary()
    if args.json:
        emit_json(s)
        return 0
    pol = s["policy"] or {}
    print(f"ledger          {s['path']}")
    print(f"steps           {s['steps']} indexed, {s['recorded_steps']} with a stored update, {s['reverted_steps']} reverted")
    print(f"sample ids      {s['distinct_ids']}")
    print(f"stored bytes    {human_bytes(s['bytes'])} in {s['stored_blobs']} blobs")
    print(f"dtype           {s['storage_dtype']} (buffers {'recorded' if s['include_buffers'] else 'not recorded'})")
    print(f"policy          {pol.get('kind')}" + (f" ({pol.get('watch')} watched ids)" if pol.get("watch") is not None else ""))
    print(f"optimizer       {(s['optimizer'] or {}).get('class')}")
    print(f"training        {'complete' if s['training_complete'] else 'INCOMPLETE'}; head {str(s['head_hash'])[:16]}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    run = RunDir.open(args.run)
    with run.open_ledger() as store:
        rep = store.verify()
    if args.json:
        emit_json({"ok": rep.ok, "steps": rep.steps, "checked": rep.checked, "bad": rep.bad, "orphans": rep.orphans})
    else:
        print(f"{rep.steps} steps, {rep.checked} stored updates checked: " + ("all good" if rep.ok else f"{len(rep.bad)} bad"))
        for step, why in sorted(rep.bad.items()):
            print(f"  step {step}: {why}")
    return 0 if rep.ok else 1


def run_estimate(args: argparse.Namespace) -> int:
    info = dataset_info(args.dataset)
    model = build_model(args.model, in_channels=info.channels, num_classes=info.num_classes, image_size=info.image_size)
    n = args.train_size or TRAIN_SIZES.get(args.dataset, 0)
    est = estimate_for_model(model, include_buffers=not args.no_buffers, num_examples=n, batch_size=args.batch_size,
                             epochs=args.epochs, dtype=args.dtype, watch=args.watch)
    if args.json:
        emit_json(est.as_dict())
        return 0
    print(f"{args.model} on {args.dataset} ({n} examples), {args.epochs} epochs, batch {args.batch_size}, {args.dtype}")
    print(f"  steps              {est.steps} ({est.steps_per_epoch} per epoch)")
    if args.watch is not None:
        print(f"  watched steps      {est.recorded_steps:.0f} expected ({100 * est.watch_step_fraction:.1f}% of steps hold one of {args.watch} ids)")
    print(f"  bytes per step     {human_bytes(est.bytes_per_step)}")
    print(f"  update blobs       {human_bytes(est.blob_bytes)}")
    print(f"  index              {human_bytes(est.index_bytes)}")
    print(f"  total              {human_bytes(est.total_bytes)}")
    return 0
