"""``amnesiac reproduce``: regenerate the paper's results as a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from ..experiments.presets import DESCRIPTIONS, PRESETS, PROFILES, settings_for
from ..names import STAGES
from .common import add_subparser, table

EXAMPLES = """\
  amnesiac reproduce --list
  amnesiac reproduce fashion-mnist --profile default --out results/fmnist     # took 61 min for fashion-mnist on 2 shared CPU cores
  amnesiac reproduce mnist --profile smoke --out /tmp/smoke                   # 2-6 minutes per preset on 2 CPU cores
  amnesiac reproduce fashion-mnist --stages membership_inference --out results/fmnist-mia   # Table 1 only
  amnesiac reproduce mnist --profile paper --data-dir ~/data --out results/mnist-paper
  amnesiac reproduce cifar100 --profile paper --data-dir ~/data --out results/cifar-paper --device cuda
"""


def add_parser(sub: Any) -> None:
    p = add_subparser(sub, "reproduce", help="reproduce the paper's experiments as a report",
                      description="Run a preset of the paper's experiments and write report.md, the figures, "
                                  "results.json and the resolved config into --out. Finished stages are not "
                                  "recomputed when the same command runs again.", examples=EXAMPLES)
    p.add_argument("preset", nargs="?", help="mnist, cifar100 or fashion-mnist")
    p.add_argument("--list", action="store_true", help="list the presets and profiles")
    p.add_argument("--profile", default="default", choices=PROFILES,
                   help="smoke: a few minutes per preset on 2 CPU cores (checks that everything runs); default: "
                        "sized for CPU (61 min for fashion-mnist on 2 shared cores); paper: the paper's settings, "
                        "for a GPU")
    p.add_argument("--out", default=None, help="directory for the report")
    p.add_argument("--data-dir", default=None, help="where the dataset files are")
    p.add_argument("--seeds", type=int, default=1, help="independently trained models for Figure 7 (default 1)")
    p.add_argument("--device", default="cpu",
                   help="cpu (default), cuda, cuda:N or auto: where models train, unlearn and are attacked")
    p.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated subset of {', '.join(STAGES)} (default: all); finished ones are read back")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (long work still prints a line now and then)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list or not args.preset:
        rows = []
        for name in PRESETS:
            for prof in PROFILES:
                s = settings_for(name, prof)
                rows.append([name, prof, s.dataset, s.model, f"{s.epochs}+{s.post_epochs}", DESCRIPTIONS[name] if prof == "paper" else ""])
        print(table(rows, ["preset", "profile", "dataset", "model", "epochs", "reproduces"]))
        return 0
    if not args.out:
        from ..errors import ConfigError

        raise ConfigError("--out is required: the directory for the report")
    command = "amnesiac " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["reproduce"] else None
    from ..experiments.runner import reproduce as _reproduce

    results = _reproduce(args.preset, profile=args.profile, out=args.out, data_dir=args.data_dir, seeds=args.seeds, device=args.device,
                        stages=tuple(st.strip() for st in args.stages.split(",") if st.strip()),
                        progress=False if args.no_progress else None, command=command)
    print(f"report: {args.out}/report.md")
    from ..report.checks import judge

    for check in judge(results, settings_for(args.preset, args.profile).dataset):
        print(f"  [{check.verdict}] {check.claim}: {check.evidence}")
    return 0
