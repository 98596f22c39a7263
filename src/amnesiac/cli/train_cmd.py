"""``amnesiac train``: train a model into a run directory, recording a ledger."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import TrainConfig
from ..errors import ConfigError
from ..names import OPTIMIZERS, RECORD_CHOICES
from .common import add_subparser, emit_json, table

EXAMPLES = """\
  amnesiac train --dataset digits --model small-cnn --epochs 5 --out runs/digits
  amnesiac train --dataset fashion-mnist --model small-cnn --epochs 3 --out runs/fmnist --ledger-dtype float16
  amnesiac train --dataset mnist --data-dir ~/data --model resnet18 --epochs 10 \\
      --limit-class 3:100 --eval-class 3 --record watch --watch-class 3 --out runs/mnist-amnesiac
  amnesiac train --resume --out runs/digits        # continue after an interruption
  amnesiac train --dataset digits --nproc 2 --out runs/digits-ddp              # DistributedDataParallel, 2 processes
  amnesiac train --dataset digits --batching shards --shard-size 64 --out runs/digits-shards
  amnesiac train --dataset digits --batching shards --shard-by-subject subjects.json --out runs/by-subject
"""


def _limit(text: str) -> tuple[int, int]:
    try:
        c, n = text.split(":")
        return int(c), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CLASS:COUNT such as 3:100, got {text!r}") from None


def add_parser(sub: Any) -> None:
    p = add_subparser(sub, "train", help="train a model into a run directory (with a ledger)",
                      description="Train a model with a seeded loop, writing model, config, metrics and the "
                                  "update ledger into the run directory --out.", examples=EXAMPLES)
    d = TrainConfig()
    p.add_argument("--out", required=True, help="run directory to create (or to resume with --resume)")
    p.add_argument("--dataset", default=d.dataset, help=f"dataset name (default {d.dataset}; see `amnesiac datasets`)")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset files")
    p.add_argument("--download", action="store_true", help="download missing MNIST/Fashion-MNIST files (checksums verified)")
    p.add_argument("--model", default=d.model, help=f"architecture (default {d.model}; see `amnesiac models`)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the training data (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"records per optimizer step (default {d.batch_size})")
    p.add_argument("--optimizer", default=d.optimizer, help=f"one of {', '.join(OPTIMIZERS)} (default {d.optimizer}, as in the paper)")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"L2 penalty (default {d.weight_decay})")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"seeds initialisation and batch order: the same seed gives the same weights on CPU (default {d.seed})")
    p.add_argument("--limit-class", type=_limit, action="append", default=[], metavar="C:N",
                   help="keep only the first N training examples of class C (repeatable)")
    p.add_argument("--eval-class", type=int, default=None, help="also report test accuracy on this class and on the rest")
    p.add_argument("--record", default=d.record, choices=RECORD_CHOICES,
                   help="which updates the ledger stores: auto (all if it fits on disk), all, watch, none")
    p.add_argument("--watch-ids", default=None, metavar="FILE", help="file of deletable sample ids (for --record watch)")
    p.add_argument("--watch-class", type=int, default=None, help="treat every example of this class as deletable")
    p.add_argument("--ledger-dtype", default=d.ledger_dtype, choices=["float32", "float16", "bfloat16"])
    p.add_argument("--no-buffers", action="store_true", help="do not record BatchNorm statistics (the paper's code did not)")
    p.add_argument("--batching", default=d.batching, choices=["random", "shards"],
                   help="random: fresh random batches each epoch, one stored update per step (the paper's ledger); "
                        "shards: every step draws from one fixed shard of records, one stored sum per shard "
                        "whatever the epochs (a shard ledger)")
    p.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="records per shard (with --batching shards; default: the batch size, one-batch shards)")
    p.add_argument("--shards", type=int, default=None, metavar="N", help="number of shards instead of --shard-size")
    p.add_argument("--shard-by-subject", default=None, metavar="MAP",
                   help="subject map (JSON or CSV, as for forget --subjects-file): all records of one subject "
                        "share a shard, subjects packed into shards of --shard-size records")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last saved epoch")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train on N processes with DistributedDataParallel (gloo on CPU, nccl on GPUs, one per "
                        "process); one ledger, written by rank 0 with each step's global batch")
    p.add_argument("--oversubscribe", action="store_true",
                   help="allow --nproc above the number of CPU cores (at most four processes per core)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
    _PARSER.append(p)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from pathlib import Path

    from ..utils import read_ids_file

    limits: dict[int, int] = {}
    for c, n in args.limit_class:
        if c in limits:
            raise ConfigError(f"--limit-class names class {c} twice")
        limits[c] = n
    return TrainConfig(
        dataset=args.dataset, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        seed=args.seed, data_dir=args.data_dir, download=args.download, limit_class=limits,
        eval_class=args.eval_class, record=args.record,
        watch_ids=read_ids_file(args.watch_ids) if args.watch_ids else None,
        watch_class=args.watch_class, ledger_dtype=args.ledger_dtype, include_buffers=not args.no_buffers,
        batching="shards" if args.batching == "shards" or args.shard_by_subject else args.batching,
        shard_size=args.shard_size, num_shards=args.shards,
        shard_subjects=str(Path(args.shard_by_subject).resolve()) if args.shard_by_subject else None,
    ).validate()


# flags that set the recipe (config.json); on --resume the run's own recipe holds, so giving one is refused
RECIPE_FLAGS = {"dataset": "dataset", "data_dir": "data_dir", "download": "download", "model": "model",
                "epochs": "epochs", "batch_size": "batch_size", "optimizer": "optimizer", "lr": "lr",
                "momentum": "momentum", "weight_decay": "weight_decay", "seed": "seed", "limit_class": None,
                "eval_class": "eval_class", "record": "record", "watch_ids": None, "watch_class": "watch_class",
                "ledger_dtype": "ledger_dtype", "no_buffers": None, "batching": "batching",
                "shard_size": "shard_size", "shards": "num_shards", "shard_by_subject": None, "overwrite": None}


def check_resume_flags(args: argparse.Namespace, config: TrainConfig) -> None:
    """On --resume: a recipe flag that would change the run's recipe is refused, naming each (never ignored).
    A flag equal to what the run already has is accepted."""
    defaults = vars(_defaults())
    changed = []
    for name, field in RECIPE_FLAGS.items():
        value = getattr(args, name)
        if value == defaults[name]:
            continue
        if field is not None and getattr(config, field) == value:
            continue
        flag = "--" + name.replace("_", "-")
        has = f" (the run has {getattr(config, field)!r})" if field is not None else ""
        changed.append(f"{flag} {value if not isinstance(value, bool) else ''}".rstrip() + has)
    if changed:
        raise ConfigError("--resume continues the run with its own recipe (config.json); these flags would change "
                          f"it and are not applied: {'; '.join(changed)}. Drop them, or train a new run with another "
                          "--out (or --overwrite)")


_PARSER: list[argparse.ArgumentParser] = []  # the train subparser, kept by add_parser for its defaults


def _defaults() -> argparse.Namespace:
    return _PARSER[-1].parse_args(["--out", "-"])


def run(args: argparse.Namespace) -> int:
    from ..run import RunDir, train_run

    if args.resume:
        config = RunDir.open(args.out).config
        check_resume_flags(args, config)
    else:
        config = config_from_args(args)
    if args.nproc != 1:
        from ..run import train_run_distributed

        result = train_run_distributed(config, args.out, nproc=args.nproc, resume=args.resume,
                                       overwrite=args.overwrite, device=args.device,
                                       oversubscribe=args.oversubscribe)
    else:
        result = train_run(config, args.out, resume=args.resume, overwrite=args.overwrite,
                           progress=False if args.no_progress else None, device=args.device)
    summary = {"run": str(result.run.path), "record": result.record, "epochs": config.epochs,
               "final": result.final, "history": result.history}
    if args.json:
        emit_json(summary)
        return 0
    cols = [k for k in result.history[-1] if k not in ("epoch", "step")] if result.history else []
    rows = [[r["epoch"], r["step"]] + [r.get(k, "") for k in cols] for r in result.history]
    print(table(rows, ["epoch", "step"] + cols))
    print(f"\nrun directory: {result.run.path}  (ledger: {result.record})")
    print("test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in result.final.items()))
    return 0
