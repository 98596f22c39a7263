"""``amnesiac models``: list the model architectures."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_subparser, emit_json, table


def add_parser(sub: Any) -> None:
    p = add_subparser(sub, "models", help="list the available models",
                      description="List the model architectures, with their parameter counts for 1x28x28 input.",
                      examples="  amnesiac models\n")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import MODELS, build_model, count_parameters

    rows = []
    for name in MODELS.names():
        n = count_parameters(build_model(name, in_channels=1, num_classes=10, image_size=28))
        rows.append((name, f"{n / 1e6:.2f}M", MODELS.help(name)))
    if args.json:
        emit_json([{"name": r[0], "parameters_28x28": r[1], "description": r[2]} for r in rows])
    else:
        print(table(rows, ["name", "params (1x28x28, 10 classes)", "description"]))
    return 0
