"""``amnesiac datasets``: list the datasets and where their files come from."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_subparser, emit_json, table


def add_parser(sub: Any) -> None:
    p = add_subparser(sub, "datasets", help="list the available datasets",
                      description="List the datasets amnesiac can load, with their shape and source.",
                      examples="  amnesiac datasets\n  amnesiac datasets --json\n")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import DATASETS, dataset_info

    infos = [dataset_info(n) for n in DATASETS.names()]
    if args.json:
        emit_json([{"name": i.name, "channels": i.channels, "image_size": i.image_size,
                    "num_classes": i.num_classes, "description": i.description} for i in infos])
        return 0
    rows = [(i.name, f"{i.channels}x{i.image_size}x{i.image_size}", i.num_classes, i.description) for i in infos]
    print(table(rows, ["name", "shape", "classes", "description"]))
    return 0
